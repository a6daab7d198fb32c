/*
 * check_url.c - the one URL grammar (unix://, inet://, inet6://) and the
 * one DNS server list parser, table-driven.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_url.h"

/* ---- URLs ---- */

static const struct {
	const char *in;
	unsigned flags;
	enum cbv_status st;
	int family;        /* when CBV_OK */
	const char *where; /* path (AF_UNIX) or host; or error substring */
	unsigned port;
	int loopback;
} urls[] = {
	{ "unix:///run/cbvd.sock", 0, CBV_OK, AF_UNIX, "/run/cbvd.sock", 0, 1 },
	{ "unix:/run/cbvd.sock", 0, CBV_OK, AF_UNIX, "/run/cbvd.sock", 0, 1 },
	{ "unix:///run/cbvd.sock", CBV_URL_NUMERIC, CBV_OK, AF_UNIX, "/run/cbvd.sock", 0, 1 },
	{ "inet://127.0.0.1:3535", 0, CBV_OK, AF_INET, "127.0.0.1", 3535, 1 },
	{ "inet://127.1.2.3:1", CBV_URL_NUMERIC, CBV_OK, AF_INET, "127.1.2.3", 1, 1 },
	{ "inet://192.0.2.1:65535", 0, CBV_OK, AF_INET, "192.0.2.1", 65535, 0 },
	{ "inet://localhost:3535", CBV_URL_NUMERIC, CBV_OK, AF_INET, "localhost", 3535, 1 },
	{ "inet://[::1]:3535", 0, CBV_OK, AF_INET6, "::1", 3535, 1 },
	{ "inet6://[::1]:3535", CBV_URL_NUMERIC, CBV_OK, AF_INET6, "::1", 3535, 1 },
	{ "inet6://[2001:db8::1]:25", 0, CBV_OK, AF_INET6, "2001:db8::1", 25, 0 },
	{ "inet://[::ffff:127.0.0.1]:25", 0, CBV_OK, AF_INET6, "::ffff:127.0.0.1", 25, 0 },
	{ "inet://cbvd.example:3535", 0, CBV_OK, AF_UNSPEC, "cbvd.example", 3535, 0 },
	{ "inet://cbvd_1.example:03535", 0, CBV_OK, AF_UNSPEC, "cbvd_1.example", 3535, 0 },
	/* names where we bind: refused (cbvd used to refuse them only at start) */
	{ "inet://mail.example:3535", CBV_URL_NUMERIC, CBV_EINVAL, 0, "IP address here", 0, 0 },
	{ "unix://relative.sock", 0, CBV_EINVAL, 0, "absolute path", 0, 0 },
	{ "unix:///", 0, CBV_EINVAL, 0, "absolute path", 0, 0 },
	{ "unix://", 0, CBV_EINVAL, 0, "absolute path", 0, 0 },
	{ "unix:///x?y", 0, CBV_EINVAL, 0, "query", 0, 0 },
	{ "unix:///x#y", 0, CBV_EINVAL, 0, "query", 0, 0 },
	{ "unix:///tmp/a b", 0, CBV_EINVAL, 0, "not a URL", 0, 0 },
	{ "UNIX:///x", 0, CBV_EINVAL, 0, "must be unix:///PATH or inet://HOST:PORT", 0, 0 },
	{ "tcp://127.0.0.1:25", 0, CBV_EINVAL, 0, "must be unix", 0, 0 },
	{ "http://x", 0, CBV_EINVAL, 0, "must be unix", 0, 0 },
	{ "inet://127.0.0.1", 0, CBV_EINVAL, 0, "inet:// needs HOST:PORT", 0, 0 },
	{ "inet://:3535", 0, CBV_EINVAL, 0, "inet:// needs HOST:PORT", 0, 0 },
	{ "inet://", 0, CBV_EINVAL, 0, "inet:// needs HOST:PORT", 0, 0 },
	{ "inet://127.0.0.1:", 0, CBV_EINVAL, 0, "port", 0, 0 },
	{ "inet://127.0.0.1:0", 0, CBV_EINVAL, 0, "port", 0, 0 },
	{ "inet://127.0.0.1:65536", 0, CBV_EINVAL, 0, "port", 0, 0 },
	{ "inet://127.0.0.1:0003535", 0, CBV_EINVAL, 0, "port", 0, 0 },
	{ "inet://127.0.0.1:35x", 0, CBV_EINVAL, 0, "port", 0, 0 },
	{ "inet://127.0.0.1:-1", 0, CBV_EINVAL, 0, "port", 0, 0 },
	{ "inet://127.0.0.1:3535/", 0, CBV_EINVAL, 0, "port", 0, 0 },
	{ "inet://u@127.0.0.1:3535", 0, CBV_EINVAL, 0, "bad host", 0, 0 },
	{ "inet://::1:3535", 0, CBV_EINVAL, 0, "[ADDRESS]", 0, 0 },
	{ "inet://[::1]3535", 0, CBV_EINVAL, 0, "[IPV6]:PORT", 0, 0 },
	{ "inet://[::1:25", 0, CBV_EINVAL, 0, "[IPV6]:PORT", 0, 0 },
	{ "inet://[::g]:3535", 0, CBV_EINVAL, 0, "IPv6", 0, 0 },
	{ "inet://[127.0.0.1]:3535", 0, CBV_EINVAL, 0, "IPv6", 0, 0 },
	{ "inet://[]:3535", 0, CBV_EINVAL, 0, "IPv6", 0, 0 },
	{ "inet6://127.0.0.1:3535", 0, CBV_EINVAL, 0, "[ADDRESS]", 0, 0 },
	{ "inet6://[fe80::1%eth0]:25", 0, CBV_EINVAL, 0, "IPv6", 0, 0 },
	{ "inet://127.0.0.1:3535\r\n", 0, CBV_EINVAL, 0, "not a URL", 0, 0 },
	{ "inet://h\xc3\xa9.example:25", 0, CBV_EINVAL, 0, "not a URL", 0, 0 },
	{ "", 0, CBV_EINVAL, 0, "empty URL", 0, 0 },
};

START_TEST(url_table)
{
	struct cbv_url u;
	struct cbv_err err;
	enum cbv_status st;

	memset(&err, 0, sizeof(err));
	st = cbv_url_parse(urls[_i].in, strlen(urls[_i].in), urls[_i].flags, &u, &err);
	ck_assert_msg(st == urls[_i].st, "%s: status %d, want %d (%s)", urls[_i].in, st,
	              urls[_i].st, err.msg);
	if (st != CBV_OK) {
		ck_assert_msg(strstr(err.msg, urls[_i].where) != NULL, "%s: \"%s\" not in \"%s\"",
		              urls[_i].in, urls[_i].where, err.msg);
		ck_assert_int_eq(u.family, AF_UNSPEC); /* nothing half-filled */
		ck_assert_uint_eq(u.salen, 0);
		return;
	}
	ck_assert_int_eq(u.family, urls[_i].family);
	ck_assert_int_eq(u.loopback, urls[_i].loopback);
	if (u.family == AF_UNIX) {
		ck_assert_str_eq(u.path, urls[_i].where);
	} else {
		ck_assert_str_eq(u.host, urls[_i].where);
		ck_assert_uint_eq(u.port, urls[_i].port);
	}
	if (u.family == AF_INET)
		ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&u.sa)->sin_port), urls[_i].port);
	if (u.family == AF_INET6)
		ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&u.sa)->sin6_port), urls[_i].port);
	ck_assert_int_eq(u.salen == 0, u.family == AF_UNSPEC);
}
END_TEST

/* Bounds: length, NUL inside, a socket path that does not fit sun_path. */
START_TEST(url_bounds)
{
	char big[CBV_URL_MAX + 20], path[200];
	struct cbv_url u;
	struct cbv_err err;

	memset(big, 'a', sizeof(big));
	memcpy(big, "inet://", 7);
	memcpy(big + CBV_URL_MAX - 3, ":25", 3);
	ck_assert_int_eq(cbv_url_parse(big, CBV_URL_MAX, 0, &u, &err), CBV_EINVAL); /* host > 255 */
	ck_assert_int_eq(cbv_url_parse(big, CBV_URL_MAX + 1, 0, &u, &err), CBV_EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "longer than"));
	ck_assert_int_eq(cbv_url_parse("inet://127.0.0.1:25\0x", 21, 0, &u, &err), CBV_EINVAL);
	/* Only len bytes are read: a prefix of a longer buffer is a URL. */
	ck_assert_int_eq(cbv_url_parse("inet://127.0.0.1:25junk", 19, 0, &u, &err), CBV_OK);
	ck_assert_uint_eq(u.port, 25);
	snprintf(path, sizeof(path), "unix:///%0107d", 0); /* 108-byte path: too long */
	ck_assert_int_eq(cbv_url_parse(path, strlen(path), 0, &u, &err), CBV_EINVAL);
	snprintf(path, sizeof(path), "unix:///%0106d", 0); /* 107 bytes: fits */
	ck_assert_int_eq(cbv_url_parse(path, strlen(path), 0, &u, &err), CBV_OK);
	ck_assert_int_eq(cbv_url_parse(NULL, 0, 0, &u, NULL), CBV_EINVAL);
}
END_TEST

/* ---- DNS servers ---- */

static const struct {
	const char *in;
	const char *canon; /* NULL: refused */
	const char *msg;   /* error substring */
} servers[] = {
	{ "127.0.0.1", "127.0.0.1:53", NULL },
	{ "127.0.0.1:5353", "127.0.0.1:5353", NULL },
	{ "::1", "[::1]:53", NULL },
	{ "[::1]", "[::1]:53", NULL },
	{ "[2001:DB8::1]:5353", "[2001:db8::1]:5353", NULL },
	{ "2001:db8::1", "[2001:db8::1]:53", NULL },
	{ "1.2.3.4:0", NULL, "\"1.2.3.4:0\": port 0 out of range" },
	{ "1.2.3.4:65536", NULL, "port 65536 out of range" },
	{ "1.2.3.4:", NULL, "port empty number" },
	{ "1.2.3", NULL, "\"1.2.3\": not an IPv4 address" },
	{ "1.2.3.4.5", NULL, "not an IPv4 address" },
	{ "ns.example", NULL, "not an IPv4 address" },
	{ "::1:53x", NULL, "not an IPv6 address" },
	{ "[::1", NULL, "missing ']'" },
	{ "[::1]x", NULL, "junk after ']'" },
	{ "[1.2.3.4]:53", NULL, "not an IPv6 address" },
	{ "[]:53", NULL, "not an IP address" },
	{ "", NULL, "not an IP address" },
};

START_TEST(dns_server_table)
{
	char list[CBV_DNS_SERVERS_MAX + 1] = "";
	struct cbv_err err;
	enum cbv_status st;

	memset(&err, 0, sizeof(err));
	st = cbv_url_dns_server_add(list, sizeof(list), servers[_i].in, strlen(servers[_i].in),
	                            &err);
	if (servers[_i].canon != NULL) {
		ck_assert_msg(st == CBV_OK, "%s: %s", servers[_i].in, err.msg);
		ck_assert_str_eq(list, servers[_i].canon);
		/* What the parser writes, the resolver's check accepts. */
		ck_assert_int_eq(cbv_url_dns_servers_valid(list), 1);
	} else {
		ck_assert_int_eq(st, CBV_EINVAL);
		ck_assert_str_eq(list, "");
		ck_assert_msg(strstr(err.msg, servers[_i].msg) != NULL, "%s: \"%s\" not in \"%s\"",
		              servers[_i].in, servers[_i].msg, err.msg);
	}
}
END_TEST

/* Whole lists as the resolver gets them. */
static const struct {
	const char *list;
	int valid;
} lists[] = {
	{ "", 1 },
	{ "127.0.0.1", 1 },
	{ "127.0.0.1:53,[::1]:53,127.0.0.2", 1 },
	{ "::1", 1 },
	{ "[::1]:5353", 1 },
	{ "[::1]", 0 }, /* c-ares 1.18 wants the port after brackets */
	{ "not a server", 0 },
	{ "127.0.0.1:99999", 0 },
	{ "127.0.0.1:0", 0 },
	{ "1.2.3.4.5", 0 },
	{ "127.0.0.1:", 0 },
	{ ",", 0 },
	{ "127.0.0.1,", 0 },
	{ ",127.0.0.1", 0 },
	{ "127.0.0.1:53,,::1", 0 },
	{ "localhost", 0 },
	{ "127.0.0.1 127.0.0.2", 0 },
};

START_TEST(dns_list_table)
{
	ck_assert_msg(cbv_url_dns_servers_valid(lists[_i].list) == lists[_i].valid, "\"%s\"",
	              lists[_i].list);
}
END_TEST

START_TEST(dns_list_bounds)
{
	char list[CBV_DNS_SERVERS_MAX + 64] = "";
	struct cbv_err err;
	int n = 0;

	/* Append until full: the list never exceeds CBV_DNS_SERVERS_MAX. */
	while (cbv_url_dns_server_add(list, sizeof(list), "[2001:db8::1]:5353", 18, &err) == CBV_OK)
		n++;
	ck_assert_int_gt(n, 10);
	ck_assert_uint_le(strlen(list), CBV_DNS_SERVERS_MAX);
	ck_assert_ptr_nonnull(strstr(err.msg, "list longer than 512 bytes"));
	ck_assert_int_eq(cbv_url_dns_servers_valid(list), 1);
	memset(list, '1', CBV_DNS_SERVERS_MAX + 1);
	list[CBV_DNS_SERVERS_MAX + 1] = '\0';
	ck_assert_int_eq(cbv_url_dns_servers_valid(list), 0);
}
END_TEST

static Suite *url_suite(void)
{
	Suite *s = suite_create("url");
	TCase *tc = tcase_create("url");

	tcase_add_loop_test(tc, url_table, 0, sizeof(urls) / sizeof(urls[0]));
	tcase_add_test(tc, url_bounds);
	suite_add_tcase(s, tc);
	tc = tcase_create("dns_servers");
	tcase_add_loop_test(tc, dns_server_table, 0, sizeof(servers) / sizeof(servers[0]));
	tcase_add_loop_test(tc, dns_list_table, 0, sizeof(lists) / sizeof(lists[0]));
	tcase_add_test(tc, dns_list_bounds);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(url_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
