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
 * An IPv6 address that carries an IPv4 address the host or a gateway
 * would connect to is also judged by the IPv4 prefixes: IPv4-mapped
 * (::ffff:a.b.c.d, RFC 4291 2.5.5.2), the NAT64 well-known prefix
 * (64:ff9b::a.b.c.d, RFC 6052 2.1) and 6to4 (2002:AABB:CCDD::/48, RFC 3056).
 */
int cbv_cidr_match(const struct cbv_cidr *list, size_t n,
                   const struct sockaddr *sa);

/*
 * The networks no callout may reach by default: every block that the IANA
 * IPv4 and IPv6 special-purpose registries (RFC 6890 and updates) mark as
 * not globally reachable, plus multicast and the reserved space.  Fills up
 * to max entries of out and returns the number written (CBV_NONGLOBAL_COUNT
 * when max is large enough).
 */
#define CBV_NONGLOBAL_COUNT 30
size_t cbv_cidr_nonglobal(struct cbv_cidr *out, size_t max);

#endif
