/*
 * check_cidr.c - network prefixes: parsing, canonical form, matching
 * (including IPv4-mapped, NAT64 and 6to4 IPv6 against IPv4 prefixes), and
 * the default deny list of every non-global range.
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

/* ---- the default list: every non-global range (IANA registries) ---- */

static const struct {
	const char *addr;
	int denied;
} nonglobal[] = {
	/* one address in each IPv4 range, and its first and last neighbours */
	{ "0.0.0.0", 1 },         { "0.255.255.255", 1 },   { "1.0.0.0", 0 },
	{ "10.0.0.1", 1 },        { "10.255.255.255", 1 },  { "11.0.0.0", 0 },  { "9.255.255.255", 0 },
	{ "100.64.0.1", 1 },      { "100.127.255.255", 1 }, { "100.63.255.255", 0 }, { "100.128.0.0", 0 },
	{ "127.0.0.1", 1 },       { "127.255.255.254", 1 },
	{ "169.254.169.254", 1 }, /* cloud metadata service */
	{ "172.16.0.1", 1 },      { "172.31.255.255", 1 },  { "172.15.255.255", 0 }, { "172.32.0.0", 0 },
	{ "192.0.0.1", 1 },       { "192.0.0.170", 1 },     { "192.0.1.0", 0 },
	{ "192.0.2.1", 1 },       { "192.88.99.1", 1 },
	{ "192.168.1.1", 1 },     { "192.167.255.255", 0 }, { "192.169.0.0", 0 },
	{ "198.18.0.1", 1 },      { "198.19.255.255", 1 },  { "198.17.255.255", 0 }, { "198.20.0.0", 0 },
	{ "198.51.100.7", 1 },    { "203.0.113.9", 1 },
	{ "224.0.0.1", 1 },       { "239.255.255.255", 1 }, { "240.0.0.1", 1 },
	{ "255.255.255.255", 1 },
	/* globally reachable: never denied */
	{ "8.8.8.8", 0 },         { "192.31.196.1", 0 },    { "192.52.193.1", 0 },
	{ "192.175.48.1", 0 },    { "223.255.255.255", 0 },
	/* IPv6 ranges */
	{ "::", 1 },              { "::1", 1 },             { "::2", 0 },
	{ "64:ff9b:1::1", 1 },    { "100::1", 1 },          { "100:0:0:1::1", 1 },
	{ "2001::1", 1 },         { "2001:0:ffff::1", 1 },  { "2001:2::1", 1 },
	{ "2001:10::1", 1 },      { "2001:1f::1", 1 },      { "2001:db8::25", 1 },
	{ "3fff::1", 1 },         { "3fff:fff::1", 1 },     { "5f00::1", 1 },
	{ "fc00::1", 1 },         { "fd12:3456::1", 1 },    { "fe80::1", 1 },
	{ "fec0::1", 1 },         { "ff02::1", 1 },
	{ "2a00:1450:4001::1b", 0 }, { "2001:4860::8888", 0 }, { "2001:1::1", 0 },
	{ "2001:4:112::1", 0 },   { "2001:20::1", 0 },      { "2620:4f:8000::1", 0 },
	{ "4000::1", 0 },
	/* IPv4-mapped: judged by the IPv4 entries */
	{ "::ffff:10.0.0.1", 1 }, { "::ffff:100.64.0.1", 1 }, { "::ffff:127.0.0.1", 1 },
	{ "::ffff:169.254.169.254", 1 }, { "::ffff:172.16.0.1", 1 }, { "::ffff:192.0.0.1", 1 },
	{ "::ffff:192.168.0.1", 1 }, { "::ffff:198.18.0.1", 1 }, { "::ffff:203.0.113.1", 1 },
	{ "::ffff:224.0.0.1", 1 }, { "::ffff:255.255.255.255", 1 }, { "::ffff:0.0.0.0", 1 },
	{ "::ffff:8.8.8.8", 0 },
	/* NAT64 well-known prefix (RFC 6052) and 6to4 (RFC 3056): the same */
	{ "64:ff9b::10.0.0.1", 1 }, { "64:ff9b::127.0.0.1", 1 }, { "64:ff9b::192.168.1.1", 1 },
	{ "64:ff9b::8.8.8.8", 0 },
	{ "2002:a00:1::1", 1 },   { "2002:7f00:1::", 1 },   { "2002:c0a8:101::1", 1 },
	{ "2002:808:808::1", 0 },
};

/* Fills a sockaddr for text; returns it. */
static const struct sockaddr *to_sa(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, text, &sin->sin_addr), 1);
	}
	return (const struct sockaddr *)ss;
}

START_TEST(nonglobal_table)
{
	struct cbv_cidr def[CBV_NONGLOBAL_COUNT];
	struct sockaddr_storage ss;
	size_t n = cbv_cidr_nonglobal(def, CBV_NONGLOBAL_COUNT);

	ck_assert_uint_eq(n, CBV_NONGLOBAL_COUNT);
	ck_assert_msg(cbv_cidr_match(def, n, to_sa(nonglobal[_i].addr, &ss)) == nonglobal[_i].denied,
	              "%s: expected %s", nonglobal[_i].addr,
	              nonglobal[_i].denied ? "denied" : "allowed");
}
END_TEST

START_TEST(nonglobal_bounds)
{
	struct cbv_cidr def[CBV_NONGLOBAL_COUNT + 1];
	char buf[64];

	memset(def, 0, sizeof(def));
	ck_assert_uint_eq(cbv_cidr_nonglobal(def, 3), 3); /* never past max */
	ck_assert_int_eq(def[3].family, 0);
	ck_assert_uint_eq(cbv_cidr_nonglobal(def, CBV_NONGLOBAL_COUNT + 1), CBV_NONGLOBAL_COUNT);
	cbv_cidr_format(&def[0], buf, sizeof(buf));
	ck_assert_str_eq(buf, "0.0.0.0/8");
	cbv_cidr_format(&def[CBV_NONGLOBAL_COUNT - 1], buf, sizeof(buf));
	ck_assert_str_eq(buf, "ff00::/8");
}
END_TEST

/* The embedded-IPv4 rule applies to any list, not only the default. */
START_TEST(embedded_v4_own_list)
{
	struct cbv_cidr lo;
	struct sockaddr_storage ss;

	ck_assert_int_eq(cbv_cidr_parse("127.0.0.0/8", 11, &lo, NULL), CBV_OK);
	ck_assert_int_eq(cbv_cidr_match(&lo, 1, to_sa("::ffff:127.0.0.1", &ss)), 1);
	ck_assert_int_eq(cbv_cidr_match(&lo, 1, to_sa("64:ff9b::7f00:1", &ss)), 1);
	ck_assert_int_eq(cbv_cidr_match(&lo, 1, to_sa("2002:7f00:1::", &ss)), 1);
	ck_assert_int_eq(cbv_cidr_match(&lo, 1, to_sa("64:ff9b:0:0:1::7f00:1", &ss)), 0);
	ck_assert_int_eq(cbv_cidr_match(&lo, 1, to_sa("2003:7f00:1::", &ss)), 0);
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

	tc = tcase_create("nonglobal");
	tcase_add_loop_test(tc, nonglobal_table, 0, sizeof(nonglobal) / sizeof(nonglobal[0]));
	tcase_add_test(tc, nonglobal_bounds);
	tcase_add_test(tc, embedded_v4_own_list);
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
