/*
 * check_cidr.c - network prefixes: parsing, canonical form, matching
 * (including IPv4-mapped IPv6 against IPv4 prefixes).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "cbv_cidr.h"

/* ---- parse: valid input -> canonical form ---- */

static const struct {
	const char *in;
	const char *canon;
	int family;
} valid[] = {
	{ "192.0.2.0/24", "192.0.2.0/24", AF_INET },
	{ "192.0.2.77/24", "192.0.2.0/24", AF_INET },      /* host bits cleared */
	{ "10.255.255.255/9", "10.128.0.0/9", AF_INET },
	{ "10.0.0.1", "10.0.0.1/32", AF_INET },            /* no length: host */
	{ "0.0.0.0/0", "0.0.0.0/0", AF_INET },
	{ "255.255.255.255/32", "255.255.255.255/32", AF_INET },
	{ "127.0.0.1/8", "127.0.0.0/8", AF_INET },
	{ "2001:db8::/32", "2001:db8::/32", AF_INET6 },
	{ "2001:DB8:ffff::1/32", "2001:db8::/32", AF_INET6 },
	{ "::1", "::1/128", AF_INET6 },
	{ "::/0", "::/0", AF_INET6 },
	{ "::/128", "::/128", AF_INET6 },
	{ "fe80::1/10", "fe80::/10", AF_INET6 },
	{ "ff02::1/8", "ff00::/8", AF_INET6 },
	{ "2001:db8::1/127", "2001:db8::/127", AF_INET6 },
	{ "2001:db8::ff/121", "2001:db8::80/121", AF_INET6 },
	{ "::ffff:192.0.2.1", "::ffff:192.0.2.1/128", AF_INET6 },
	{ "::ffff:192.0.2.1/120", "::ffff:192.0.2.0/120", AF_INET6 },
};

START_TEST(parse_valid)
{
	struct cbv_cidr c;
	struct cbv_err err;
	char buf[64];

	ck_assert_int_eq(cbv_cidr_parse(valid[_i].in, strlen(valid[_i].in), &c, &err), CBV_OK);
	ck_assert_int_eq(c.family, valid[_i].family);
	cbv_cidr_format(&c, buf, sizeof(buf));
	ck_assert_str_eq(buf, valid[_i].canon);
}
END_TEST

/* ---- parse: junk is refused ---- */

static const struct {
	const char *in;
	size_t len; /* 0: strlen */
	const char *msg;
} invalid[] = {
	{ "", 0, "empty" },
	{ "/24", 0, "not an IP address" },
	{ "192.0.2.0/", 0, "prefix length" },
	{ "192.0.2.0/33", 0, "prefix length must be 0 to 32" },
	{ "2001:db8::/129", 0, "prefix length must be 0 to 128" },
	{ "::1/1280", 0, "prefix length" },
	{ "192.0.2.0/024", 0, "prefix length" },   /* leading zero */
	{ "192.0.2.0/-1", 0, "prefix length" },
	{ "192.0.2.0/+8", 0, "prefix length" },
	{ "192.0.2.0/8x", 0, "prefix length" },
	{ "192.0.2.0/ 8", 0, "prefix length" },
	{ "192.0.2.0/24/8", 0, "prefix length" },
	{ "192.0.2/24", 0, "not an IP address" },  /* short forms */
	{ "10.1", 0, "not an IP address" },
	{ "010.0.0.1", 0, "not an IP address" },   /* octal? no */
	{ "0x7f.0.0.1", 0, "not an IP address" },
	{ "256.0.0.0", 0, "not an IP address" },
	{ "1.2.3.4.5", 0, "not an IP address" },
	{ " 192.0.2.0/24", 0, "not an IP address" },
	{ "192.0.2.0/24 ", 0, "prefix length" },
	{ "fe80::1%eth0", 0, "not an IP address" },
	{ "fe80::1%eth0/64", 0, "not an IP address" },
	{ "2001:db8:::1", 0, "not an IP address" },
	{ "hello", 0, "not an IP address" },
	{ "192.0.2.0\0/8", 12, "not a network" },  /* NUL inside */
	{ "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb/64", 0, "not a network" },
};

START_TEST(parse_invalid)
{
	struct cbv_cidr c;
	struct cbv_err err;
	size_t len = invalid[_i].len ? invalid[_i].len : strlen(invalid[_i].in);

	memset(&c, 0xaa, sizeof(c));
	ck_assert_int_eq(cbv_cidr_parse(invalid[_i].in, len, &c, &err), CBV_EINVAL);
	ck_assert_int_eq(err.code, CBV_EINVAL);
	ck_assert_msg(strstr(err.msg, invalid[_i].msg) != NULL, "%s: got \"%s\"",
	              invalid[_i].in, err.msg);
	ck_assert_int_eq(c.family, 0); /* out reset on failure */
}
END_TEST

START_TEST(parse_not_terminated)
{
	/* len bounds the read: the rest of the buffer is not looked at. */
	const char buf[] = "10.0.0.0/8 and junk";
	struct cbv_cidr c;
	char out[64];

	ck_assert_int_eq(cbv_cidr_parse(buf, 10, &c, NULL), CBV_OK);
	cbv_cidr_format(&c, out, sizeof(out));
	ck_assert_str_eq(out, "10.0.0.0/8");
}
END_TEST

START_TEST(format_small_buffer)
{
	struct cbv_cidr c;
	char out[8];

	ck_assert_int_eq(cbv_cidr_parse("192.0.2.0/24", 12, &c, NULL), CBV_OK);
	memset(out, 'x', sizeof(out));
	cbv_cidr_format(&c, out, sizeof(out));
	ck_assert_str_eq(out, "192.0.2");
	cbv_cidr_format(&c, out, 0); /* must not write */
}
END_TEST

/* ---- match ---- */

static const char *const nets[] = {
	"0.0.0.0/8", "127.0.0.0/8",  "::1/128",     "169.254.0.0/16", "fe80::/10",
	"224.0.0.0/4", "ff00::/8",  "::/128",      "240.0.0.0/4",    "10.128.0.0/9",
	"2001:db8:1::/48",
};

static const struct {
	const char *addr;
	int expect;
} matches[] = {
	{ "127.0.0.1", 1 },
	{ "127.255.255.255", 1 },
	{ "128.0.0.1", 0 },
	{ "126.255.255.255", 0 },
	{ "0.1.2.3", 1 },
	{ "169.254.1.1", 1 },
	{ "169.255.1.1", 0 },
	{ "224.0.0.1", 1 },
	{ "239.255.255.255", 1 },
	{ "240.0.0.1", 1 },
	{ "255.255.255.255", 1 },
	{ "192.0.2.1", 0 },
	{ "10.127.255.255", 0 },   /* just below 10.128.0.0/9 */
	{ "10.128.0.0", 1 },
	{ "10.255.255.255", 1 },
	{ "::1", 1 },
	{ "::2", 0 },
	{ "::", 1 },
	{ "fe80::1", 1 },
	{ "febf::1", 1 },
	{ "fec0::1", 0 },
	{ "ff02::1", 1 },
	{ "2001:db8:1:ffff::1", 1 },
	{ "2001:db8:2::1", 0 },
	{ "::ffff:127.0.0.1", 1 },  /* mapped: judged as IPv4 */
	{ "::ffff:10.200.0.1", 1 },
	{ "::ffff:192.0.2.1", 0 },
	{ "::127.0.0.1", 0 },       /* IPv4-compatible is not mapped */
	{ "2001:db8::7f00:1", 0 },
};

static struct cbv_cidr list[sizeof(nets) / sizeof(nets[0])];

static void setup_list(void)
{
	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++)
		ck_assert_int_eq(cbv_cidr_parse(nets[i], strlen(nets[i]), &list[i], NULL), CBV_OK);
}

START_TEST(match_table)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	const struct sockaddr *sa;

	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (strchr(matches[_i].addr, ':') != NULL) {
		sin6.sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, matches[_i].addr, &sin6.sin6_addr), 1);
		sa = (const struct sockaddr *)&sin6;
	} else {
		sin.sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, matches[_i].addr, &sin.sin_addr), 1);
		sa = (const struct sockaddr *)&sin;
	}
	ck_assert_msg(cbv_cidr_match(list, sizeof(list) / sizeof(list[0]), sa) == matches[_i].expect,
	              "%s: expected %d", matches[_i].addr, matches[_i].expect);
}
END_TEST

START_TEST(match_edges)
{
	struct cbv_cidr all4, all6;
	struct sockaddr_in6 sin6;
	struct sockaddr_un sun;

	ck_assert_int_eq(cbv_cidr_parse("0.0.0.0/0", 9, &all4, NULL), CBV_OK);
	ck_assert_int_eq(cbv_cidr_parse("::/0", 4, &all6, NULL), CBV_OK);
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
	/* An IPv4 /0 says nothing about native IPv6... */
	ck_assert_int_eq(cbv_cidr_match(&all4, 1, (struct sockaddr *)&sin6), 0);
	ck_assert_int_eq(cbv_cidr_match(&all6, 1, (struct sockaddr *)&sin6), 1);
	/* ...but covers a mapped address. */
	inet_pton(AF_INET6, "::ffff:198.51.100.1", &sin6.sin6_addr);
	ck_assert_int_eq(cbv_cidr_match(&all4, 1, (struct sockaddr *)&sin6), 1);
	/* Empty list, NULL address, other families: never a match. */
	ck_assert_int_eq(cbv_cidr_match(&all6, 0, (struct sockaddr *)&sin6), 0);
	ck_assert_int_eq(cbv_cidr_match(&all4, 1, NULL), 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert_int_eq(cbv_cidr_match(&all4, 1, (struct sockaddr *)&sun), 0);
}
END_TEST

static Suite *cidr_suite(void)
{
	Suite *s = suite_create("cidr");
	TCase *tc;

	tc = tcase_create("parse_valid");
	tcase_add_loop_test(tc, parse_valid, 0, sizeof(valid) / sizeof(valid[0]));
	tcase_add_test(tc, parse_not_terminated);
	suite_add_tcase(s, tc);

	tc = tcase_create("parse_invalid");
	tcase_add_loop_test(tc, parse_invalid, 0, sizeof(invalid) / sizeof(invalid[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("format");
	tcase_add_test(tc, format_small_buffer);
	suite_add_tcase(s, tc);

	tc = tcase_create("match");
	tcase_add_checked_fixture(tc, setup_list, NULL);
	tcase_add_loop_test(tc, match_table, 0, sizeof(matches) / sizeof(matches[0]));
	tcase_add_test(tc, match_edges);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cidr_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
