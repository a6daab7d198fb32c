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

/*
 * Returns 1 if sa lies in one of the n prefixes, IPv4-mapped IPv6
 * addresses also judged by the IPv4 prefixes; 0 otherwise.
 */
int cbv_cidr_match(const struct cbv_cidr *list, size_t n,
                   const struct sockaddr *sa)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;

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
	/* ::ffff:127.0.0.1 reaches 127.0.0.1: judge it by the IPv4 list too. */
	if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
		return match_one(list, n, AF_INET, sin6->sin6_addr.s6_addr + 12);
	return 0;
}
