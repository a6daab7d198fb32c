/*
 * cbv_cidr.c - network prefixes: parse, format, match.
 *
 * Parsing is strict: inet_pton() for the address (no zone ids, no short
 * IPv4 forms such as "10.1" or octal "010.0.0.1"), a decimal prefix length
 * without sign or leading zeros, and nothing else.  Host bits are cleared
 * so "192.0.2.1/24" means 192.0.2.0/24.
 */
#include "cbv_cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Longest text we accept: a full IPv6 address with embedded IPv4, "/128". */
#define CIDR_TEXT_MAX (INET6_ADDRSTRLEN + 4)

/* Parses the prefix length: 1 to 3 decimal digits, no leading zero. */
static int parse_bits(const char *s, size_t len, unsigned max, unsigned *out)
{
	unsigned v = 0;

	if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* Clears every bit of addr (alen bytes) after the first bits. */
static void clear_host_bits(unsigned char *addr, size_t alen, unsigned bits)
{
	for (size_t i = 0; i < alen; i++) {
		if (bits >= 8) {
			bits -= 8;
			continue;
		}
		addr[i] &= (unsigned char)(0xff00u >> bits);
		bits = 0;
	}
}

/*
 * Parses len bytes of "addr[/bits]" into *out (zeroed on failure).
 * Returns CBV_OK or CBV_EINVAL with err->msg.
 */
enum cbv_status cbv_cidr_parse(const char *s, size_t len, struct cbv_cidr *out,
                               struct cbv_err *err)
{
	char text[CIDR_TEXT_MAX + 1];
	const char *slash;
	size_t alen;
	unsigned max;
	struct cbv_cidr c;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	if (len == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty network");
	if (len > CIDR_TEXT_MAX || memchr(s, '\0', len) != NULL)
		return cbv_err_set(err, CBV_EINVAL, "\"%.*s\": not a network",
		                   (int)(len > 60 ? 60 : len), s);
	memcpy(text, s, len);
	text[len] = '\0';
	slash = strchr(text, '/');
	alen = slash != NULL ? (size_t)(slash - text) : len;
	text[alen] = '\0';
	if (memchr(text, ':', alen) != NULL) {
		c.family = AF_INET6;
		max = 128;
	} else {
		c.family = AF_INET;
		max = 32;
	}
	if (inet_pton(c.family, text, c.addr) != 1)
		return cbv_err_set(err, CBV_EINVAL, "\"%s\": not an IP address", text);
	c.bits = max;
	if (slash != NULL && parse_bits(slash + 1, len - alen - 1, max, &c.bits) != 0)
		return cbv_err_set(err, CBV_EINVAL, "\"%.*s\": prefix length must be 0 to %u",
		                   (int)len, s, max);
	clear_host_bits(c.addr, max / 8, c.bits);
	*out = c;
	return CBV_OK;
}

/* Writes "addr/bits" into buf (n bytes, truncated; nothing if n is 0). */
void cbv_cidr_format(const struct cbv_cidr *c, char *buf, size_t n)
{
	char addr[INET6_ADDRSTRLEN];

	if (n == 0)
		return;
	if (inet_ntop(c->family, c->addr, addr, sizeof(addr)) == NULL) {
		buf[0] = '\0';
		return;
	}
	snprintf(buf, n, "%s/%u", addr, c->bits);
}

/* Returns 1 if the first bits of a and b are equal. */
static int prefix_equal(const unsigned char *a, const unsigned char *b,
                        unsigned bits)
{
	size_t whole = bits / 8;
	unsigned rest = bits % 8;
	unsigned char mask;

	if (memcmp(a, b, whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xff00u >> rest);
	return (a[whole] & mask) == (b[whole] & mask);
}

/* Returns 1 if the address (family, bytes) lies in one of the prefixes. */
static int match_one(const struct cbv_cidr *list, size_t n, int family,
                     const unsigned char *addr)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].family == family && prefix_equal(list[i].addr, addr, list[i].bits))
			return 1;
	return 0;
}

/* Returns 1 if the 16 bytes of a6 start with the first bits of prefix. */
static int v6_has_prefix(const unsigned char *a6, const char *prefix, unsigned bits)
{
	unsigned char p[16];

	return inet_pton(AF_INET6, prefix, p) == 1 && prefix_equal(a6, p, bits);
}

/*
 * Returns a pointer to the IPv4 address an IPv6 address carries when the
 * host or a gateway would connect to that IPv4 address, else NULL.
 */
static const unsigned char *embedded_v4(const unsigned char *a6)
{
	/* ::ffff:127.0.0.1 is 127.0.0.1 to the kernel (RFC 4291 2.5.5.2). */
	if (v6_has_prefix(a6, "::ffff:0:0", 96))
		return a6 + 12;
	/* A NAT64 gateway must not translate the well-known prefix to a
	 * non-global IPv4 address (RFC 6052 3.1); do not count on it. */
	if (v6_has_prefix(a6, "64:ff9b::", 96))
		return a6 + 12;
	/* 6to4: a local 6to4 tunnel sends 2002:0a00:0001:: to 10.0.0.1 (RFC 3056 2). */
	if (v6_has_prefix(a6, "2002::", 16))
		return a6 + 2;
	return NULL;
}

/*
 * Returns 1 if sa lies in one of the n prefixes, an IPv6 address that
 * carries an IPv4 one also judged by the IPv4 prefixes; 0 otherwise.
 */
int cbv_cidr_match(const struct cbv_cidr *list, size_t n,
                   const struct sockaddr *sa)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	const unsigned char *v4;

	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)(const void *)sa;
		return match_one(list, n, AF_INET, (const unsigned char *)&sin->sin_addr);
	}
	if (sa->sa_family != AF_INET6)
		return 0;
	sin6 = (const struct sockaddr_in6 *)(const void *)sa;
	if (match_one(list, n, AF_INET6, sin6->sin6_addr.s6_addr))
		return 1;
	v4 = embedded_v4(sin6->sin6_addr.s6_addr);
	return v4 != NULL && match_one(list, n, AF_INET, v4);
}

/*
 * The default deny_networks: what a forged MX must never make us connect
 * to.  Sources, checked 2026-12:
 *   IANA IPv4 Special-Purpose Address Registry
 *     https://www.iana.org/assignments/iana-ipv4-special-registry
 *   IANA IPv6 Special-Purpose Address Registry
 *     https://www.iana.org/assignments/iana-ipv6-special-registry
 * (RFC 6890, updated by RFC 8190), every block whose "Globally Reachable"
 * is False or N/A, plus multicast (IPv4 and IPv6 multicast registries)
 * and deprecated space.  Blocks inside a listed one are not repeated:
 * 0.0.0.0/32 is in 0/8, 192.0.0.0/29 (DS-Lite) and 192.0.0.170/31 (NAT64
 * discovery) in 192.0.0.0/24, 255.255.255.255/32 in 240/4.  Left out on
 * purpose: the globally reachable anycast and AS112 blocks (192.31.196/24,
 * 192.52.193/24, 192.175.48/24, 2001:1::1-3, 2001:3::/32, 2001:4:112::/48,
 * 2001:20::/28, 2001:30::/28, 2620:4f:8000::/48), and 64:ff9b::/96 and
 * 2002::/16 whose embedded IPv4 address cbv_cidr_match() judges instead
 * (a DNS64 resolver gives IPv6-only hosts 64:ff9b:: names for real MXs).
 * IPv4-mapped ::ffff:0:0/96 is judged the same way.
 */
static const char *const nonglobal[CBV_NONGLOBAL_COUNT] = {
	"0.0.0.0/8",       /* "this network" (RFC 791) */
	"10.0.0.0/8",      /* private (RFC 1918) */
	"100.64.0.0/10",   /* shared address space, CGNAT (RFC 6598) */
	"127.0.0.0/8",     /* loopback (RFC 1122) */
	"169.254.0.0/16",  /* link local (RFC 3927) */
	"172.16.0.0/12",   /* private (RFC 1918) */
	"192.0.0.0/24",    /* IETF protocol assignments (RFC 6890) */
	"192.0.2.0/24",    /* documentation TEST-NET-1 (RFC 5737) */
	"192.88.99.0/24",  /* deprecated 6to4 relay anycast (RFC 7526) */
	"192.168.0.0/16",  /* private (RFC 1918) */
	"198.18.0.0/15",   /* benchmarking (RFC 2544) */
	"198.51.100.0/24", /* documentation TEST-NET-2 (RFC 5737) */
	"203.0.113.0/24",  /* documentation TEST-NET-3 (RFC 5737) */
	"224.0.0.0/4",     /* multicast (RFC 5771) */
	"240.0.0.0/4",     /* reserved, and limited broadcast (RFC 1112, RFC 919) */
	"::/128",          /* unspecified (RFC 4291) */
	"::1/128",         /* loopback (RFC 4291) */
	"64:ff9b:1::/48",  /* local-use IPv4/IPv6 translation (RFC 8215) */
	"100::/64",        /* discard-only (RFC 6666) */
	"100:0:0:1::/64",  /* dummy prefix (RFC 9780) */
	"2001::/32",       /* TEREDO (RFC 4380) */
	"2001:2::/48",     /* benchmarking (RFC 5180) */
	"2001:10::/28",    /* deprecated ORCHID (RFC 4843) */
	"2001:db8::/32",   /* documentation (RFC 3849) */
	"3fff::/20",       /* documentation (RFC 9637) */
	"5f00::/16",       /* segment routing SIDs (RFC 9602) */
	"fc00::/7",        /* unique local (RFC 4193) */
	"fe80::/10",       /* link local (RFC 4291) */
	"fec0::/10",       /* deprecated site local (RFC 3879) */
	"ff00::/8",        /* multicast (RFC 4291) */
};

/* Fills out with up to max of the non-global blocks; returns how many. */
size_t cbv_cidr_nonglobal(struct cbv_cidr *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < CBV_NONGLOBAL_COUNT && nonglobal[i] != NULL && n < max; i++)
		if (cbv_cidr_parse(nonglobal[i], strlen(nonglobal[i]), &out[n], NULL) == CBV_OK)
			n++;
	return n;
}
