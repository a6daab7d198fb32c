/*
 * cbv_url.h - the one grammar for socket URLs and DNS server lists.
 *
 * A callout server URL (callout_url, `cbv --server`, callout_open) and a
 * cbvd listen URL (server { listen }, `cbvd -l`) are written the same way:
 *
 *   unix:///ABSOLUTE/PATH     (also unix:/ABSOLUTE/PATH, mailfromd's form)
 *   inet://IPV4:PORT          inet://[IPV6]:PORT      inet6://[IPV6]:PORT
 *   inet://NAME:PORT          a host name, resolved when connecting
 *
 * PORT is 1 to 5 digits, 1..65535; "localhost" means 127.0.0.1.  Host
 * names are accepted where we connect and refused with CBV_URL_NUMERIC
 * where we listen: cbvd binds before any resolver is trusted, and whether
 * a listener is loopback-only must not depend on DNS.  No user, query,
 * fragment, trailing text, space, control or 8-bit byte; at most
 * CBV_URL_MAX bytes; a UNIX path must fit sun_path.
 *
 * A DNS server list ("127.0.0.1:5353,[::1]:53") is parsed by one function
 * too, used by cbv.conf's dns_servers and checked again by the resolver.
 * No I/O, no DNS.
 */
#ifndef CBV_URL_H
#define CBV_URL_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "cbv_limits.h"
#include "cbv_status.h"

/* cbv_url_parse() flag: refuse host names (listen URLs). */
#define CBV_URL_NUMERIC 1u

struct cbv_url {
	int family; /* AF_UNIX, AF_INET, AF_INET6; AF_UNSPEC: host is a name */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* AF_UNIX */
	char host[CBV_DOMAIN_MAX + 1]; /* inet: as written, IPv6 without [] */
	unsigned port;                 /* inet: 1..65535 */
	struct sockaddr_storage sa;    /* AF_UNIX, AF_INET, AF_INET6: port set */
	socklen_t salen;               /* 0 for a host name */
	int loopback;                  /* AF_UNIX, 127.0.0.0/8 or ::1 */
};

/*
 * Parses len bytes of s (need not be NUL-terminated) into *u, which is
 * zeroed first.  flags: 0 or CBV_URL_NUMERIC.  Returns CBV_OK or
 * CBV_EINVAL with err->msg saying what is wrong (without the URL).
 */
enum cbv_status cbv_url_parse(const char *s, size_t len, unsigned flags, struct cbv_url *u,
                              struct cbv_err *err);

/*
 * Parses one DNS server (IPv4, IPv4:PORT, [IPv6], [IPv6]:PORT or a bare
 * IPv6 address; port 53 when none) and appends it to the NUL-terminated
 * list out (capacity n bytes) in the form c-ares 1.18's
 * ares_set_servers_ports_csv() reads without ambiguity ("ip:port",
 * "[ip6]:port", comma-separated; a bare "::1" would read as "::" port 1).
 * Returns CBV_OK or CBV_EINVAL (out unchanged).
 */
enum cbv_status cbv_url_dns_server_add(char *out, size_t n, const char *s, size_t len,
                                       struct cbv_err *err);

/*
 * Checks a whole server list ("" is valid: the system resolver) as the
 * resolver receives it: returns 1 if every comma-separated item parses
 * with cbv_url_dns_server_add() and the list fits CBV_DNS_SERVERS_MAX.
 */
int cbv_url_dns_servers_valid(const char *list);

#endif
