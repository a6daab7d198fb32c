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
 *
 * Memory: the text lives on the heap, owned by the struct cbv_reply, and
 * grows with the reply (doubling from CBV_REPLY_ALLOC_MIN, never past
 * CBV_REPLY_KEEP_MAX), so a typical reply of a few hundred octets costs
 * a few hundred octets, not 16 KiB.  A zeroed struct (or one after
 * cbv_reply_init()) is an empty reply owning nothing; cbv_reply_clear()
 * frees the text.  Never copy a struct cbv_reply by value (both copies
 * would own one buffer): cbv_reply_copy() makes a right-sized copy.
 */
#ifndef CBV_REPLY_H
#define CBV_REPLY_H

#include <stddef.h>

#include "cbv_limits.h"
#include "cbv_status.h"
#include "cbv_text.h" /* cbv_sanitize(), which the reply text goes through */

/* First allocation for a reply's text: most replies fit (RFC 5321 4.5.3.1.5). */
#define CBV_REPLY_ALLOC_MIN 256

struct cbv_reply {
	int code;          /* 200..599, 0 until the first line */
	char ecode[16];    /* "5.1.1" or "" */
	unsigned nlines;
	int complete;      /* the final line (code + ' ' or code alone) was seen */
	size_t len;        /* strlen(text) */
	char *text;        /* owned: full reply, lines joined by '\n', NUL-terminated;
	                    * NULL until a line was fed (cbv_reply_text() gives "") */
	size_t cap;        /* bytes allocated at text */
};

/* Makes fresh memory an empty reply owning nothing (as zeroing does). */
void cbv_reply_init(struct cbv_reply *r);

/* Empties r for a new reply, keeping its buffer for the next one. */
void cbv_reply_reset(struct cbv_reply *r);

/* Frees r's text; r is then empty, as after cbv_reply_init().  NULL ok. */
void cbv_reply_clear(struct cbv_reply *r);

/*
 * Makes dst (an initialized reply) a copy of src: dst's buffer is reused
 * when the text fits, else replaced by one of the text's real size.
 * CBV_OK, or CBV_ENOMEM with dst left empty.
 */
enum cbv_status cbv_reply_copy(struct cbv_reply *dst, const struct cbv_reply *src,
                               struct cbv_err *err);

/* The reply's text, "" if none; valid until r changes. */
const char *cbv_reply_text(const struct cbv_reply *r);

/*
 * Adds one line.  Returns CBV_OK (check r->complete) or CBV_EPROTO with
 * err->msg naming the fault ("bad reply code", "code changed inside a
 * multi-line reply", "more than 64 lines in a reply", "reply longer than 16383 bytes", "reply line too
 * long"), CBV_ENOMEM when the text cannot grow, and CBV_EINVAL when
 * fed after completion.  On error r is unchanged.
 */
enum cbv_status cbv_reply_feed(struct cbv_reply *r, const char *line,
                               size_t len, struct cbv_err *err);

/*
 * Parses one whole reply from a byte buffer with CRLF line ends (used by
 * tests and the fuzz target) into r, an initialized reply whose buffer is
 * reused.  On CBV_OK, r->complete is 1 and *used is the number of bytes
 * consumed; if the buffer ends before the final line, returns CBV_EPROTO
 * "incomplete reply".  On any error r is empty.
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
