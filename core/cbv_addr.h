/*
 * cbv_addr.h - RFC 5321 Mailbox parser.
 *
 * Accepts exactly one bare address, local@domain (no angle brackets, no
 * comments, no display name, no surrounding spaces).  Local part:
 * Dot-string or Quoted-string (RFC 5321 4.1.2), with UTF-8 allowed
 * (RFC 6531) and flagged so the caller can demand SMTPUTF8.  Domain: a
 * hostname of LDH labels or UTF-8 U-labels, with an optional trailing dot
 * removed, or an address literal [IPv4] / [IPv6:...].  U-labels are
 * converted to A-labels (IDNA2008, UTS #46 non-transitional mapping,
 * libidn2): every domain that leaves this module is ASCII, and a name that
 * does not convert (disallowed code point, label over 63 octets as an
 * A-label) is refused like any other syntax error.
 * Refuses CR, LF, NUL, every other control byte, '<' '>' outside a quoted
 * local part, a local part > 64, a domain > 255 and a path > 256 octets.
 * No I/O.
 */
#ifndef CBV_ADDR_H
#define CBV_ADDR_H

#include <stddef.h>

#include "cbv_limits.h"
#include "cbv_status.h"

struct cbv_addr {
	char local[CBV_LOCALPART_MAX + 1];  /* as sent on the wire (quotes kept) */
	char domain[CBV_DOMAIN_MAX + 1];    /* ASCII (A-labels), lower-cased; literal keeps [] */
	int literal;                        /* domain is [address literal] */
	int utf8;                           /* non-ASCII local part: needs SMTPUTF8 */
};

/*
 * Parses len bytes at in (need not be NUL-terminated; a NUL inside is an
 * error).  On success fills *out and returns CBV_OK; otherwise returns
 * CBV_EINVAL with err->msg saying what is wrong ("local part longer than
 * 64 octets"), and *out is zeroed.  CBV_ENOMEM if libidn2 ran out of
 * memory.  The path limit applies to the A-label form.
 */
enum cbv_status cbv_addr_parse(const char *in, size_t len, struct cbv_addr *out,
                               struct cbv_err *err);

/*
 * Checks a domain name alone (same rules as the domain of an address,
 * literals excluded) and writes its lower-cased A-label form without a
 * trailing dot to out (CBV_DOMAIN_MAX + 1 bytes).  Used for map patterns
 * and results, HELO and host names, so all of them are ASCII.
 */
enum cbv_status cbv_addr_check_domain(const char *in, size_t len, char *out,
                                      struct cbv_err *err);

/*
 * Writes "local@domain" into buf (size n), using domain instead of
 * a->domain when domain is not NULL.  Returns CBV_OK, or CBV_EINVAL if the
 * result would exceed CBV_PATH_MAX - 2 octets or n.
 */
enum cbv_status cbv_addr_format(const struct cbv_addr *a, const char *domain,
                                char *buf, size_t n, struct cbv_err *err);

/*
 * Writes the Unicode form of an ASCII domain (A-labels decoded) to out, n
 * bytes.  Shown only if it converts back to exactly ascii and is clean
 * UTF-8.  Returns 1 if out differs from ascii, else 0 with out a copy of
 * ascii (truncated to n).  Used for messages, and for RCPT under SMTPUTF8.
 */
int cbv_addr_domain_utf8(const char *ascii, char *out, size_t n);

/*
 * Writes the domain for messages: "bücher.test (xn--bcher-kva.test)" for
 * an IDN, the ASCII name alone otherwise (n bytes, truncated).
 */
void cbv_addr_domain_show(const char *ascii, char *out, size_t n);

#endif
