/*
 * cbv_reply.h - bounded SMTP reply parser (RFC 5321 4.2, RFC 3463).
 *
 * Lines are fed one at a time (CRLF already removed, see cbv_buf).  A line
 * is three digits, the first 2-5, then ' ', '-' or end of line; every line
 * of one reply carries the same code; at most CBV_REPLY_LINES_MAX lines of
 * at most CBV_REPLY_LINE_MAX octets.  The enhanced status code (RFC 3463,
 * "class.subject.detail", class 2, 4 or 5 matching the reply's first
 * digit) is read from the first line if present.  The text kept is made
 * printable (controls and 8-bit bytes become '?'), lines joined by '\n',
 * at most CBV_REPLY_KEEP_MAX - 1 bytes: a longer reply is CBV_EPROTO
 * "reply longer than ..." (DESIGN.md: beyond that is protocol_error).
 * No I/O.
 */
#ifndef CBV_REPLY_H
#define CBV_REPLY_H

#include <stddef.h>

#include "cbv_limits.h"
#include "cbv_status.h"
#include "cbv_text.h" /* cbv_sanitize(), which the reply text goes through */

struct cbv_reply {
	int code;          /* 200..599, 0 until the first line */
	char ecode[16];    /* "5.1.1" or "" */
	unsigned nlines;
	int complete;      /* the final line (code + ' ' or code alone) was seen */
	size_t len;        /* strlen(text) */
	char text[CBV_REPLY_KEEP_MAX]; /* full reply, lines joined by '\n', NUL-terminated */
};

/* Empties r for a new reply. */
void cbv_reply_init(struct cbv_reply *r);

/*
 * Adds one line.  Returns CBV_OK (check r->complete) or CBV_EPROTO with
 * err->msg naming the fault ("bad reply code", "code changed inside a
 * multi-line reply", "more than 64 lines in a reply", "reply longer than 16383 bytes", "reply line too
 * long").  Feeding after completion is CBV_EINVAL.
 */
enum cbv_status cbv_reply_feed(struct cbv_reply *r, const char *line,
                               size_t len, struct cbv_err *err);

/*
 * Parses one whole reply from a byte buffer with CRLF line ends (used by
 * tests and the fuzz target).  On CBV_OK, r->complete is 1 and *used is
 * the number of bytes consumed; if the buffer ends before the final line,
 * returns CBV_EPROTO "incomplete reply".
 */
enum cbv_status cbv_reply_parse(const char *buf, size_t len,
                                struct cbv_reply *r, size_t *used,
                                struct cbv_err *err);

/*
 * Reads the code and RFC 3463 enhanced code of one reply line ("550
 * 5.1.1 text", "250-x", "421"), with the rules cbv_reply_feed() uses:
 * code 2xx-5xx followed by ' ', '-' or the end; ecode class equal to the
 * code's first digit, subject and detail 1-3 digits, then ' ' or the end.
 * Returns the code and fills ecode (16 bytes, "" if none), or 0 if the
 * line is not a reply line.  For text from a callout server's RECV line.
 */
int cbv_reply_code_parse(const char *line, size_t len, char ecode[16]);

#endif
