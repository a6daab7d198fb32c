/*
 * cbv_addr.h - RFC 5321 Mailbox parser.
 *
 * Accepts exactly one bare address, local@domain (no angle brackets, no
 * comments, no display name, no surrounding spaces).  Local part:
 * Dot-string or Quoted-string (RFC 5321 4.1.2), with UTF-8 allowed
 * (RFC 6531) and flagged so the caller can demand SMTPUTF8.  Domain: a
 * hostname of LDH labels (or UTF-8 labels, flagged), with an optional
 * trailing dot removed, or an address literal [IPv4] / [IPv6:...].
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
	char domain[CBV_DOMAIN_MAX + 1];    /* lower-cased; literal keeps [] */
	int literal;                        /* domain is [address literal] */
	int utf8;                           /* non-ASCII anywhere: needs SMTPUTF8 */
};

/*
 * Parses len bytes at in (need not be NUL-terminated; a NUL inside is an
 * error).  On success fills *out and returns CBV_OK; otherwise returns
 * CBV_EINVAL with err->msg saying what is wrong ("local part longer than
 * 64 octets"), and *out is zeroed.
 */
enum cbv_status cbv_addr_parse(const char *in, size_t len, struct cbv_addr *out,
                               struct cbv_err *err);

/*
 * Checks a domain name alone (same rules as the domain of an address,
 * literals excluded) and writes its lower-cased form without a trailing
 * dot to out (CBV_DOMAIN_MAX + 1 bytes).  Used for map results and HELO.
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

#endif
