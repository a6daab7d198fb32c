/*
 * fuzz_url.c - libFuzzer target for the URL grammar and the DNS server
 * list parser (cbv_url.h).
 *
 * The whole input is parsed as a URL, with and without CBV_URL_NUMERIC;
 * an accepted URL must be self-consistent (family, sockaddr, port), and a
 * numeric-only parse may only accept what the plain parse accepts.  Each
 * line is also appended as a DNS server: the list that results must pass
 * the resolver's check and stay within CBV_DNS_SERVERS_MAX.
 */
#include <stdint.h>
#include <string.h>

#include "cbv_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Traps unless u is a consistent result of a successful parse. */
static void check_url(const struct cbv_url *u)
{
	switch (u->family) {
	case AF_UNIX:
		if (u->path[0] != '/' || u->salen == 0 || !u->loopback)
			__builtin_trap();
		break;
	case AF_INET:
	case AF_INET6:
		if (u->port == 0 || u->port > 65535 || u->salen == 0 ||
		    u->sa.ss_family != u->family)
			__builtin_trap();
		break;
	case AF_UNSPEC:
		if (u->host[0] == '\0' || u->salen != 0 || u->loopback)
			__builtin_trap();
		break;
	default: __builtin_trap();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *end = s + size;
	char list[CBV_DNS_SERVERS_MAX + 1] = "";
	struct cbv_url u, n;
	int ok;

	ok = cbv_url_parse(s, size, 0, &u, NULL) == CBV_OK;
	if (ok)
		check_url(&u);
	if (cbv_url_parse(s, size, CBV_URL_NUMERIC, &n, NULL) == CBV_OK) {
		check_url(&n);
		if (!ok || n.family == AF_UNSPEC || memcmp(&u, &n, sizeof(u)) != 0)
			__builtin_trap();
	}
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl != NULL ? (size_t)(nl - s) : (size_t)(end - s);

		(void)cbv_url_dns_server_add(list, sizeof(list), s, len, NULL);
		if (strlen(list) > CBV_DNS_SERVERS_MAX || !cbv_url_dns_servers_valid(list))
			__builtin_trap();
		if (nl == NULL)
			break;
		s = nl + 1;
	}
	return 0;
}
