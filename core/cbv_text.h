/*
 * cbv_text.h - text hygiene: the one place that decides which bytes are
 * controls, how untrusted text is made printable, how it is shown with
 * escapes, what well-formed UTF-8 is, and how a "quoted string" is read.
 * Every other file calls these instead of testing bytes itself (the model
 * is Postfix's printable(): one function, every caller uses it).
 *
 * Classes of bytes, all ASCII-only (the C locale's idea, without ctype's
 * locale and sign traps):
 *   control   0x00-0x1f and 0x7f (C0 and DEL), cbv_text_is_ctl();
 *   printable 0x20-0x7e;  visible 0x21-0x7e (printable without space).
 * 8-bit bytes are neither controls nor printable: UTF-8 is checked with
 * cbv_text_utf8_seq(), and sanitizing makes each such byte a '?'.
 *
 * Every function takes a length and reads no more than that; none
 * allocates, none does I/O.  Output buffers are the caller's, always
 * NUL-terminated when n > 0.
 *
 * Quoted strings.  Four tokenisers read "..." values; cbv_text_unquote()
 * is the part they have in common: after the opening '"', copy bytes up
 * to the closing '"', bounded, with backslash escapes.  What stays their
 * own, on purpose:
 *   cbv.conf lexer    only \" and \\ are escapes, any other \x is kept as
 *                     the two bytes (regexes keep "\." as written); a
 *                     string ends at the line's end; controls were refused
 *                     by the prescan already.
 *   dlfunc OPTIONS    the same escapes as cbv.conf (the values are the
 *                     same keys); the string may span the whole argument.
 *   callout REST      mailfromd's callout.mfl: a backslash escapes any
 *                     byte; control bytes are refused, escaped or not;
 *                     a value has at most CBV_CALLOUT_VALUE_MAX bytes.
 *   cproto split      calloutd's words, a different grammar: a quote only
 *                     toggles quoting and may open or close in the middle
 *                     of a word (a"b c"d is one word, ab cd), a backslash
 *                     escapes the next byte outside quotes too, and a TAB
 *                     is refused inside a word.  It does not use
 *                     cbv_text_unquote().
 */
#ifndef CBV_TEXT_H
#define CBV_TEXT_H

#include <stddef.h>

/* 1 if c is a C0 control byte or DEL (0x00-0x1f, 0x7f), else 0. */
int cbv_text_is_ctl(unsigned char c);

/* Classes for cbv_text_span(). */
enum cbv_text_class {
	CBV_TEXT_NOCTL,  /* any byte but a control: 8-bit bytes pass */
	CBV_TEXT_PRINT,  /* printable ASCII, 0x20-0x7e */
	CBV_TEXT_VISIBLE /* visible ASCII, 0x21-0x7e: no space */
};

/*
 * Returns the length of the initial part of s (len bytes) whose bytes are
 * all in class cls or in allow (a string of extra bytes, NULL for none;
 * NUL can never be allowed).  So the result is len when every byte
 * passes, else the offset of the first one that does not:
 *   if (cbv_text_span(line, len, CBV_TEXT_NOCTL, NULL) < len) refuse;
 */
size_t cbv_text_span(const char *s, size_t len, enum cbv_text_class cls, const char *allow);

/*
 * Copies at most n-1 bytes of s (len bytes) to out, each byte that is not
 * printable ASCII (a control, DEL or an 8-bit byte) replaced by '?', and
 * NUL-terminates.  Returns the bytes written, not counting the NUL (0 when
 * n is 0).  out may be s itself (same offsets).  This is what "remote text
 * is made printable" means everywhere (DESIGN.md).
 */
size_t cbv_text_sanitize(const char *s, size_t len, char *out, size_t n);

/* The name callers have always used; the same function. */
static inline size_t cbv_sanitize(const char *s, size_t len, char *out, size_t n)
{
	return cbv_text_sanitize(s, len, out, n);
}

/*
 * cbv_text_sanitize() for a message that shows a piece of input: when s
 * does not fit in n-1 bytes it is cut and ends in "..." (within n-1), so
 * the reader knows there was more.  Returns the bytes written.
 */
size_t cbv_text_show(const char *s, size_t len, char *out, size_t n);

/* Flags for cbv_text_escape(). */
#define CBV_TEXT_ESC_QUOTE 1u /* '"' and '\' become \" and \\ (a quoted value) */
#define CBV_TEXT_ESC_NL 2u    /* LF becomes \n instead of \x0a */

/*
 * Writes s (len bytes) to out (size n) with each control byte and DEL as
 * \xHH (lower-case hex), so text stays on one line and a terminal or log
 * reader sees what was there; 8-bit bytes are copied as they are (the
 * caller sanitizes or validates them).  An escape is never cut in half:
 * output stops before the first piece that does not fit in n-1 bytes.
 * NUL-terminates when n > 0.  Returns the length the whole escaped text
 * needs (like snprintf), so n = 0 measures and a result >= n means cut.
 */
size_t cbv_text_escape(const char *s, size_t len, char *out, size_t n, unsigned flags);

/*
 * Reads the UTF-8 character at s (len bytes, len > 0 to find one).
 * Returns its length (1 for ASCII, 2..4) and sets *cp, or 0 if the bytes
 * are not well-formed UTF-8: a stray continuation byte, a truncated
 * sequence, an overlong form, a surrogate or a value beyond U+10FFFF
 * (RFC 3629 3 and 10: overlong forms have been used to sneak '/' or '.'
 * past filters that looked only for the short form).
 */
size_t cbv_text_utf8_seq(const char *s, size_t len, unsigned long *cp);

/* 1 if s (len bytes) is well-formed UTF-8 (ASCII included), else 0. */
int cbv_text_utf8_valid(const char *s, size_t len);

/* Flags for cbv_text_unquote(). */
#define CBV_TEXT_UNQ_ANYESC 1u /* '\' escapes any byte; default: only \" and \\ */
#define CBV_TEXT_UNQ_NOCTL 2u  /* a control byte in the value is an error */

/* Results of cbv_text_unquote(). */
enum cbv_text_unq {
	CBV_TEXT_UNQ_OK = 0,
	CBV_TEXT_UNQ_OPEN, /* no closing quote before the end */
	CBV_TEXT_UNQ_CTL,  /* a control byte (with CBV_TEXT_UNQ_NOCTL) */
	CBV_TEXT_UNQ_LONG  /* the value does not fit in n-1 bytes */
};

/*
 * Reads a quoted string from s (len bytes), which starts just after the
 * opening '"'.  Copies the value, escapes resolved, to out (size n > 0,
 * NUL-terminated, *outlen bytes) and sets *used to the bytes consumed,
 * the closing quote included.  Without CBV_TEXT_UNQ_ANYESC only \" and \\
 * are escapes, and a backslash before anything else is kept as it is.
 * The first fault in reading order wins.  On error *outlen and *used say
 * how far it got.  The grammars that call this are in the header comment.
 */
enum cbv_text_unq cbv_text_unquote(const char *s, size_t len, unsigned flags, char *out,
                                   size_t n, size_t *outlen, size_t *used);

#endif
