/*
 * cbv_url.c - socket URLs and DNS server lists: the one parser of each.
 *
 * Every check reads the bytes given and nothing beyond: lengths first,
 * then the character set, then the parts.  Addresses go through
 * inet_pton(), so "0x7f.1", "127.1" and zone ids are refused.
 */
#include "cbv_url.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "cbv_reply.h"
#include "cbv_text.h"

/* Bytes of an input quoted in a DNS server message. */
#define SHOW_MAX 48

/* Parses 1 to 5 decimal digits, 1..65535, that make up all of s[0..len). */
static int parse_port(const char *s, size_t len, unsigned *port)
{
	unsigned v = 0;

	if (len == 0 || len > 5)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return 0;
	*port = v;
	return 1;
}

/* Letters, digits, '-', '_' and '.': what a host name may hold. */
static int is_name(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
			return 0;
	}
	return len > 0;
}

static enum cbv_status parse_unix(const char *path, size_t plen, struct cbv_url *u,
                                  struct cbv_err *err)
{
	struct sockaddr_un *sun = (struct sockaddr_un *)(void *)&u->sa;

	if (plen < 2 || path[0] != '/')
		return cbv_err_set(err, CBV_EINVAL, "unix:// needs an absolute path");
	if (plen >= sizeof(u->path))
		return cbv_err_set(err, CBV_EINVAL, "socket path longer than %zu bytes",
		                   sizeof(u->path) - 1);
	if (memchr(path, '?', plen) != NULL || memchr(path, '#', plen) != NULL)
		return cbv_err_set(err, CBV_EINVAL, "no query or fragment allowed");
	memcpy(u->path, path, plen);
	u->path[plen] = '\0';
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, u->path, plen + 1);
	u->family = AF_UNIX;
	u->salen = (socklen_t)sizeof(*sun);
	u->loopback = 1;
	return CBV_OK;
}

/* Fills u->sa from u->host when it is an address (or "localhost"). */
static void set_numeric(struct cbv_url *u)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&u->sa;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&u->sa;
	const char *h = strcmp(u->host, "localhost") == 0 ? "127.0.0.1" : u->host;

	if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((unsigned short)u->port);
		u->family = AF_INET;
		u->salen = (socklen_t)sizeof(*sin);
		u->loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	} else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((unsigned short)u->port);
		u->family = AF_INET6;
		u->salen = (socklen_t)sizeof(*sin6);
		u->loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
	}
}

/* HOST:PORT after inet:// or inet6:// (v6only: the host must be [IPv6]). */
static enum cbv_status parse_inet(const char *h, size_t len, int v6only, unsigned flags,
                                  struct cbv_url *u, struct cbv_err *err)
{
	const char *end = h + len, *colon, *host;
	size_t hlen;

	if (len > 0 && h[0] == '[') {
		const char *rb = memchr(h, ']', len);

		if (rb == NULL || rb + 1 == end || rb[1] != ':')
			return cbv_err_set(err, CBV_EINVAL, "expected [IPV6]:PORT");
		host = h + 1;
		hlen = (size_t)(rb - host);
		colon = rb + 1;
		if (hlen == 0 || hlen >= sizeof(u->host) || memchr(host, ':', hlen) == NULL)
			return cbv_err_set(err, CBV_EINVAL, "bad IPv6 address");
	} else {
		colon = NULL;
		for (const char *p = h; p < end; p++)
			if (*p == ':')
				colon = p;
		if (colon == NULL || colon == h)
			return cbv_err_set(err, CBV_EINVAL, "inet:// needs HOST:PORT");
		host = h;
		hlen = (size_t)(colon - h);
		if (memchr(host, ':', hlen) != NULL || v6only)
			return cbv_err_set(err, CBV_EINVAL, "write an IPv6 host as [ADDRESS]");
		if (hlen > CBV_DOMAIN_MAX || !is_name(host, hlen))
			return cbv_err_set(err, CBV_EINVAL, "bad host");
	}
	if (!parse_port(colon + 1, (size_t)(end - colon - 1), &u->port))
		return cbv_err_set(err, CBV_EINVAL, "port must be 1 to 65535");
	memcpy(u->host, host, hlen);
	u->host[hlen] = '\0';
	set_numeric(u);
	if (h[0] == '[' && u->family != AF_INET6)
		return cbv_err_set(err, CBV_EINVAL, "bad IPv6 address");
	if (u->family == AF_UNSPEC && (flags & CBV_URL_NUMERIC))
		return cbv_err_set(err, CBV_EINVAL, "host must be an IP address here, not a name");
	return CBV_OK;
}

/* Parses s[0..len) as a socket URL (see cbv_url.h). */
enum cbv_status cbv_url_parse(const char *s, size_t len, unsigned flags, struct cbv_url *u,
                              struct cbv_err *err)
{
	enum cbv_status st;

	memset(u, 0, sizeof(*u));
	u->family = AF_UNSPEC;
	if (s == NULL || len == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty URL");
	if (len > CBV_URL_MAX)
		return cbv_err_set(err, CBV_EINVAL, "longer than %d bytes", CBV_URL_MAX);
	/* Space, controls and 8-bit bytes: log injection, and no URL needs them. */
	if (cbv_text_span(s, len, CBV_TEXT_VISIBLE, NULL) < len)
		return cbv_err_set(err, CBV_EINVAL, "not a URL: space, control or 8-bit byte");
	if (len >= 7 && memcmp(s, "unix://", 7) == 0)
		st = parse_unix(s + 7, len - 7, u, err);
	else if (len >= 6 && memcmp(s, "unix:/", 6) == 0)
		st = parse_unix(s + 5, len - 5, u, err);
	else if (len >= 7 && memcmp(s, "inet://", 7) == 0)
		st = parse_inet(s + 7, len - 7, 0, flags, u, err);
	else if (len >= 8 && memcmp(s, "inet6://", 8) == 0)
		st = parse_inet(s + 8, len - 8, 1, flags, u, err);
	else
		st = cbv_err_set(err, CBV_EINVAL, "must be unix:///PATH or inet://HOST:PORT");
	if (st != CBV_OK) {
		memset(u, 0, sizeof(*u));
		u->family = AF_UNSPEC;
	}
	return st;
}

/* One DNS server, split: the address text, its family, and the port. */
struct dns_item {
	char addr[INET6_ADDRSTRLEN];
	int family;
	unsigned port;
	int bracketed, has_port;
};

/* Parses IPv4[:PORT], [IPv6][:PORT] or a bare IPv6 into *it. */
static enum cbv_status dns_item_parse(const char *s, size_t len, struct dns_item *it,
                                      struct cbv_err *err)
{
	char addr[INET6_ADDRSTRLEN + 1], show[SHOW_MAX + 1];
	unsigned char bin[16];
	const char *a = s, *port = NULL;
	const char *colon = memchr(s, ':', len);
	size_t alen = len, plen = 0;

	memset(it, 0, sizeof(*it));
	it->family = AF_INET;
	it->port = 53;
	cbv_sanitize(s, len, show, sizeof(show));
	if (len > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', len);

		if (rb == NULL)
			return cbv_err_set(err, CBV_EINVAL, "\"%s\": missing ']'", show);
		a = s + 1;
		alen = (size_t)(rb - a);
		it->family = AF_INET6;
		it->bracketed = 1;
		if (rb + 1 < s + len) {
			if (rb[1] != ':')
				return cbv_err_set(err, CBV_EINVAL, "\"%s\": junk after ']'", show);
			port = rb + 2;
			plen = (size_t)(s + len - port);
		}
	} else if (colon != NULL && memchr(colon + 1, ':', (size_t)(s + len - colon - 1)) != NULL) {
		it->family = AF_INET6; /* bare IPv6, no port */
	} else if (colon != NULL) {
		alen = (size_t)(colon - s);
		port = colon + 1;
		plen = (size_t)(s + len - port);
	}
	if (alen == 0 || alen >= sizeof(addr))
		return cbv_err_set(err, CBV_EINVAL, "\"%s\": not an IP address", show);
	memcpy(addr, a, alen);
	addr[alen] = '\0';
	if (inet_pton(it->family, addr, bin) != 1 ||
	    inet_ntop(it->family, bin, it->addr, sizeof(it->addr)) == NULL)
		return cbv_err_set(err, CBV_EINVAL, "\"%s\": not an IP%s address", show,
		                   it->family == AF_INET6 ? "v6" : "v4");
	if (port != NULL) {
		it->has_port = 1;
		if (plen == 0)
			return cbv_err_set(err, CBV_EINVAL, "\"%s\": port empty number", show);
		if (!parse_port(port, plen, &it->port))
			return cbv_err_set(err, CBV_EINVAL,
			                   "\"%s\": port %.*s out of range 1..65535", show,
			                   (int)(plen > 8 ? 8 : plen), port);
	}
	return CBV_OK;
}

/* Appends one server in canonical form to the list out (n bytes). */
enum cbv_status cbv_url_dns_server_add(char *out, size_t n, const char *s, size_t len,
                                       struct cbv_err *err)
{
	struct dns_item it;
	char item[INET6_ADDRSTRLEN + 16];
	size_t used = strnlen(out, n), ilen;
	enum cbv_status st;

	if ((st = dns_item_parse(s, len, &it, err)) != CBV_OK)
		return st;
	snprintf(item, sizeof(item), it.family == AF_INET6 ? "[%s]:%u" : "%s:%u", it.addr, it.port);
	ilen = strlen(item);
	if (used + (used > 0) + ilen + 1 > n || used + (used > 0) + ilen > CBV_DNS_SERVERS_MAX)
		return cbv_err_set(err, CBV_EINVAL, "list longer than %d bytes",
		                   CBV_DNS_SERVERS_MAX);
	if (used > 0)
		out[used++] = ',';
	memcpy(out + used, item, ilen + 1);
	return CBV_OK;
}

/* Returns 1 if list is "" or comma-separated servers c-ares reads right. */
int cbv_url_dns_servers_valid(const char *list)
{
	size_t len = strnlen(list, CBV_DNS_SERVERS_MAX + 1);
	struct dns_item it;

	if (len > CBV_DNS_SERVERS_MAX)
		return 0;
	for (const char *p = list, *end = list + len; len > 0; p++) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t ilen = comma != NULL ? (size_t)(comma - p) : (size_t)(end - p);

		/* c-ares 1.18 wants a port after a bracketed address. */
		if (ilen == 0 || dns_item_parse(p, ilen, &it, NULL) != CBV_OK ||
		    (it.bracketed && !it.has_port))
			return 0;
		if (comma == NULL)
			break;
		p = comma;
	}
	return 1;
}
