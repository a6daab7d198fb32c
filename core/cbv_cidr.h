/*
 * cbv_cidr.h - network prefixes (192.0.2.0/24, 2001:db8::/32) and the
 * deny_networks check that stops a forged MX from pointing us at internal
 * services.  No I/O.
 */
#ifndef CBV_CIDR_H
#define CBV_CIDR_H

#include <stddef.h>
#include <sys/socket.h>

#include "cbv_status.h"

struct cbv_cidr {
	int family;              /* AF_INET or AF_INET6 */
	unsigned char addr[16];  /* network byte order; host bits cleared */
	unsigned bits;           /* 0..32 or 0..128 */
};

/*
 * Parses "a.b.c.d[/n]" or "ipv6[/n]" (no prefix length = host route).
 * Returns CBV_OK or CBV_EINVAL with err->msg.
 */
enum cbv_status cbv_cidr_parse(const char *s, size_t len, struct cbv_cidr *out,
                               struct cbv_err *err);

/* Writes the canonical "addr/bits" form into buf (at least 50 bytes). */
void cbv_cidr_format(const struct cbv_cidr *c, char *buf, size_t n);

/*
 * Returns 1 if sa (AF_INET or AF_INET6) lies in any of the n prefixes.
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is also checked as IPv4.
 */
int cbv_cidr_match(const struct cbv_cidr *list, size_t n,
                   const struct sockaddr *sa);

#endif
