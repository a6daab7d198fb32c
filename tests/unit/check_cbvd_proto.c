/*
 * check_cbvd_proto.c - the callout server's request parser (cbv_cproto):
 * every command of the mailfromd callout protocol, quoting as callout.mfl
 * writes it, calloutd's error words, bounds and hostile input; and listen
 * URLs.
 */
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_cproto.h"
#include "cbv_url.h"

/* ---- good requests: line -> command and the field that matters ---- */

static const struct {
	const char *line;
	enum cbv_cproto_cmd cmd;
	const char *field; /* sid / value / email, by command */
} good[] = {
	{ "SID local:", CBV_CPROTO_SID, "local:" },
	{ "sid 127.0.0.1:4QbC1x2", CBV_CPROTO_SID, "127.0.0.1:4QbC1x2" },
	{ "SET TRANSCRIPT=\"OFF\"", CBV_CPROTO_SET, "OFF" },
	{ "SET TRANSCRIPT=\"on\"", CBV_CPROTO_SET, "ON" },
	{ "SET STARTTLS=\"ondemand\"", CBV_CPROTO_SET, "ondemand" },
	{ "SET STARTTLS=\"Always\"", CBV_CPROTO_SET, "always" },
	{ "set ehlo=\"x.test\"", CBV_CPROTO_SET, "x.test" },
	{ "SET EHLO=bare.test", CBV_CPROTO_SET, "bare.test" },
	{ "SET MAILFROM=\"\"", CBV_CPROTO_SET, "" },
	{ "SET MAILFROM=\"a\\\"b@x.test\"", CBV_CPROTO_SET, "a\"b@x.test" }, /* mfl's sed escape */
	{ "SET PROFILE=\"strict\"", CBV_CPROTO_SET, "strict" },
	{ "VRFY \"alice@exim.test\"", CBV_CPROTO_VRFY, "alice@exim.test" },
	{ "vrfy alice@exim.test", CBV_CPROTO_VRFY, "alice@exim.test" },
	{ "VRFY \"\"", CBV_CPROTO_VRFY, "" },
	{ "VRFY \"a\\\\b@x.test\"", CBV_CPROTO_VRFY, "a\\b@x.test" },
	{ "VRFY \"a b\"@x.test", CBV_CPROTO_VRFY, "a b@x.test" },
	{ "VRFY \"x@fast.test\" MODE=mxonly", CBV_CPROTO_VRFY, "x@fast.test" },
	{ "VRFY \"x@y\" MODE=hostonly HOST=127.0.0.30", CBV_CPROTO_VRFY, "x@y" },
	{ "VRFY \"x@y\" EHLO=\"e.test\" MAILFROM=\"<>\"", CBV_CPROTO_VRFY, "x@y" },
	{ "VRFY\t\"x@y\"\t", CBV_CPROTO_VRFY, "x@y" },
	{ "  RUN  ", CBV_CPROTO_RUN, NULL },
	{ "QUIT", CBV_CPROTO_QUIT, NULL },
	{ "GET EHLO MAILFROM", CBV_CPROTO_GET, NULL },
	{ "TIMEOUT 1 2 3 4 5 6 7", CBV_CPROTO_TIMEOUT, NULL },
};

START_TEST(parse_good)
{
	struct cbv_cproto_req rq;
	struct cbv_err err;
	const char *line = good[_i].line;
	const char *got = NULL;

	memset(&rq, 0x5a, sizeof(rq));
	ck_assert_int_eq(cbv_cproto_parse(line, strlen(line), &rq, &err), CBV_OK);
	ck_assert_int_eq(rq.cmd, good[_i].cmd);
	switch (rq.cmd) {
	case CBV_CPROTO_SID: got = rq.sid; break;
	case CBV_CPROTO_SET: got = rq.value; break;
	case CBV_CPROTO_VRFY: got = rq.email; break;
	default: break;
	}
	if (good[_i].field != NULL)
		ck_assert_str_eq(got, good[_i].field);
}
END_TEST

/* ---- bad requests: line -> the text after "NO " (calloutd's words) ---- */

static const struct {
	const char *line;
	size_t len; /* 0: strlen */
	const char *msg;
} bad[] = {
	{ "", 0, "empty command" },
	{ "   ", 0, "empty command" },
	{ "HELP", 0, "unknown command" },
	{ "VRFYX \"a\"", 0, "unknown command" },
	{ "SID", 0, "invalid arguments" },
	{ "SID a b", 0, "invalid arguments" },
	{ "SET", 0, "invalid arguments" },
	{ "SET A=1 B=2", 0, "invalid arguments" },
	{ "SET EHLO", 0, "bad assignment EHLO" },
	{ "SET FOO=\"bar\"", 0, "bad assignment FOO=bar" },
	{ "SET TRANSCRIPT=\"maybe\"", 0, "bad assignment TRANSCRIPT=maybe" },
	{ "SET STARTTLS=\"bogus\"", 0, "unrecognized starttls mode: bogus" },
	{ "SET F\xc3\xa9=\"x\"", 0, "bad assignment F?" "?=x" }, /* 8-bit shown as '?' */
	{ "GET", 0, "invalid arguments" },
	{ "GET A B C D E F G H I", 0, "invalid arguments" },
	{ "TIMEOUT 1 2", 0, "invalid arguments" },
	{ "TIMEOUT 1s 2 3 4 5 6 7", 0, "syntax error in #1" },
	{ "TIMEOUT 1 2 3 0 5 6 7", 0, "syntax error in #4" },
	{ "TIMEOUT 1 2 3 4 5 6 9999999", 0, "syntax error in #7" },
	{ "TIMEOUT 1 2 3 4 5 6 -1", 0, "syntax error in #7" },
	{ "VRFY", 0, "invalid arguments" },
	{ "VRFY \"a\" MODE=bogus", 0, "unrecognized value for mode" },
	{ "VRFY \"a@b\" MODE=hostonly", 0, "mode requires host" },
	{ "VRFY \"a@b\" MODE=hostfirst", 0, "mode requires host" },
	{ "VRFY \"a@b\" FOO=bar", 0, "unknown attribute" },
	{ "VRFY \"a@b\" bare", 0, "unknown attribute" },
	{ "VRFY \"a@b\" HOST=", 0, "invalid value for HOST" },
	{ "VRFY \"a@b", 0, "cannot parse line" },
	{ "VRFY a@b\\", 0, "cannot parse line" },
	{ "RUN now", 0, "invalid arguments" },
	{ "QUIT x", 0, "invalid arguments" },
	/* bytes that would smuggle a line or hide text */
	{ "VRFY \"a@b\rRCPT TO:<x>\"", 0, "bad input" },
	{ "VRFY \"a@b\x01\"", 0, "bad input" },
	{ "VRFY \"a@b\x7f\"", 0, "bad input" },
	{ "VRFY \"a\tb@c\"", 0, "bad input" },       /* a quoted TAB */
	{ "VRFY a\\\tb@c", 0, "bad input" },          /* an escaped TAB */
	{ "VRFY \"a\0b@c\"", 12, "bad input" },
	{ "a b c d e f g h i j k l m n o p q", 0, "invalid arguments" },
};

START_TEST(parse_bad)
{
	struct cbv_cproto_req rq;
	struct cbv_err err;
	size_t len = bad[_i].len ? bad[_i].len : strlen(bad[_i].line);

	ck_assert_int_eq(cbv_cproto_parse(bad[_i].line, len, &rq, &err), CBV_EINVAL);
	ck_assert_str_eq(err.msg, bad[_i].msg);
	ck_assert(strpbrk(err.msg, "\r\n") == NULL);
}
END_TEST

START_TEST(vrfy_attributes)
{
	struct cbv_cproto_req rq;
	struct cbv_err err;
	const char *l = "VRFY \"x@y\" mode=HOSTFIRST HOST=\"mx.y\" EHLO=e.test MAILFROM=\"<a@b>\"";

	ck_assert_int_eq(cbv_cproto_parse(l, strlen(l), &rq, &err), CBV_OK);
	ck_assert_int_eq(rq.mode, CBV_CPROTO_MODE_HOSTFIRST);
	ck_assert_str_eq(rq.host, "mx.y");
	ck_assert_str_eq(rq.ehlo, "e.test");
	ck_assert_int_eq(rq.has_mailfrom, 1);
	cbv_cproto_unbracket(rq.mailfrom);
	ck_assert_str_eq(rq.mailfrom, "a@b");
	l = "VRFY \"x@y\"";
	ck_assert_int_eq(cbv_cproto_parse(l, strlen(l), &rq, &err), CBV_OK);
	ck_assert_int_eq(rq.mode, CBV_CPROTO_MODE_DEFAULT);
	ck_assert_int_eq(rq.has_mailfrom, 0);
	ck_assert_str_eq(rq.host, "");
}
END_TEST

START_TEST(get_and_timeout)
{
	struct cbv_cproto_req rq;
	struct cbv_err err;
	const char *l = "GET ehlo FOO Starttls";

	ck_assert_int_eq(cbv_cproto_parse(l, strlen(l), &rq, &err), CBV_OK);
	ck_assert_uint_eq(rq.nget, 2);
	ck_assert_int_eq(rq.get[0], CBV_CPROTO_VAR_EHLO);
	ck_assert_str_eq(rq.get_name[0], "ehlo"); /* echoed as given, as calloutd */
	ck_assert_int_eq(rq.get[1], CBV_CPROTO_VAR_STARTTLS);
	l = "TIMEOUT 10 20 30 40 50 60 70";
	ck_assert_int_eq(cbv_cproto_parse(l, strlen(l), &rq, &err), CBV_OK);
	for (int i = 0; i < CBV_CPROTO_TIMEOUTS; i++)
		ck_assert_uint_eq(rq.timeouts[i], (unsigned)(10 * (i + 1)));
}
END_TEST

START_TEST(bounds)
{
	static char line[CBV_CPROTO_LINE_MAX + 16];
	struct cbv_cproto_req rq;
	struct cbv_err err;
	size_t n;

	/* The longest line is accepted whole (the core refuses the address). */
	memcpy(line, "VRFY ", 5);
	memset(line + 5, 'a', CBV_CPROTO_LINE_MAX - 5);
	ck_assert_int_eq(cbv_cproto_parse(line, CBV_CPROTO_LINE_MAX, &rq, &err), CBV_OK);
	ck_assert_uint_eq(strlen(rq.email), CBV_CPROTO_LINE_MAX - 5);
	/* One more byte is refused before anything is looked at. */
	line[CBV_CPROTO_LINE_MAX] = 'a';
	ck_assert_int_eq(cbv_cproto_parse(line, CBV_CPROTO_LINE_MAX + 1, &rq, &err), CBV_EINVAL);
	ck_assert_str_eq(err.msg, "line too long");
	/* An overlong SID or SET value is refused, not truncated. */
	n = (size_t)snprintf(line, sizeof(line), "SID %0*d", CBV_CPROTO_SID_MAX + 1, 0);
	ck_assert_int_eq(cbv_cproto_parse(line, n, &rq, &err), CBV_EINVAL);
	n = (size_t)snprintf(line, sizeof(line), "SET EHLO=%0*d", CBV_CPROTO_VALUE_MAX + 1, 0);
	ck_assert_int_eq(cbv_cproto_parse(line, n, &rq, &err), CBV_EINVAL);
	ck_assert(strlen(err.msg) < 100); /* the message shows a bounded excerpt */
}
END_TEST

/* ---- listen URLs ---- */

static const struct {
	const char *url;
	int ok, family, loopback;
} urls[] = {
	{ "unix:///run/cbvd.sock", 1, AF_UNIX, 1 },
	{ "unix:/run/cbvd.sock", 1, AF_UNIX, 1 },
	{ "inet://127.0.0.1:3535", 1, AF_INET, 1 },
	{ "inet://127.1.2.3:1", 1, AF_INET, 1 },
	{ "inet://localhost:3535", 1, AF_INET, 1 },
	{ "inet://192.0.2.1:3535", 1, AF_INET, 0 },
	{ "inet://[::1]:3535", 1, AF_INET6, 1 },
	{ "inet6://[::1]:3535", 1, AF_INET6, 1 },
	{ "inet6://[2001:db8::1]:3535", 1, AF_INET6, 0 },
	{ "unix://relative.sock", 0, 0, 0 },
	{ "inet://127.0.0.1", 0, 0, 0 },
	{ "inet://127.0.0.1:0", 0, 0, 0 },
	{ "inet://127.0.0.1:65536", 0, 0, 0 },
	{ "inet://127.0.0.1:35x", 0, 0, 0 },
	{ "inet://mx.example:25", 0, 0, 0 },
	{ "inet://[::1:25", 0, 0, 0 },
	{ "tcp://127.0.0.1:25", 0, 0, 0 },
	{ "", 0, 0, 0 },
};

START_TEST(url_table)
{
	struct cbv_url u;
	struct cbv_err err;
	enum cbv_status st = cbv_url_parse(urls[_i].url, strlen(urls[_i].url), CBV_URL_NUMERIC, &u, &err);

	ck_assert_int_eq(st == CBV_OK, urls[_i].ok);
	if (st == CBV_OK) {
		ck_assert_int_eq(u.family, urls[_i].family);
		ck_assert_int_eq(u.loopback, urls[_i].loopback);
	}
}
END_TEST

START_TEST(url_unix_too_long)
{
	char url[200];
	struct cbv_url u;
	struct cbv_err err;

	snprintf(url, sizeof(url), "unix:///%0150d", 0);
	ck_assert_int_eq(cbv_url_parse(url, strlen(url), CBV_URL_NUMERIC, &u, &err), CBV_EINVAL);
}
END_TEST


/* ---- sharing sessions: which VRFYs of a RUN run as one group ---- */

#define J(e) { e, NULL, 0, NULL, NULL }
static const struct {
	const char *name;
	size_t max, n;
	struct cbv_cproto_job jobs[8];
	size_t want[8];
	size_t ngroups;
} plans[] = {
	{ "five at one domain", 32, 5,
	  { J("a@x.test"), J("b@x.test"), J("c@x.test"), J("d@x.test"), J("e@x.test") },
	  { 0, 0, 0, 0, 0 }, 1 },
	{ "mixed domains: same settings, sorted by domain", 32, 4,
	  { J("a@y.test"), J("b@x.test"), J("c@Y.TEST"), J("d@x.test") }, { 0, 0, 0, 0 }, 1 },
	{ "cut at max in domain order", 2, 5,
	  { J("a@y.test"), J("b@x.test"), J("c@y.test"), J("d@x.test"), J("e@x.test") },
	  { 1, 0, 2, 0, 1 }, 3 },
	{ "max 1: each alone", 1, 3, { J("a@x.test"), J("b@x.test"), J("c@x.test") }, { 0, 1, 2 },
	  3 },
	{ "other HOST or MODE: apart", 32, 5,
	  { J("a@x.test"),
	    { "b@x.test", "127.0.0.30", 3, NULL, NULL },
	    { "c@x.test", "127.0.0.30", 2, NULL, NULL },
	    { "d@x.test", "127.0.0.30", 3, NULL, NULL },
	    { "e@x.test", "MX.x.test", 1, NULL, NULL } },
	  { 0, 1, 2, 1, 3 }, 4 },
	{ "other EHLO or MAIL FROM: apart", 32, 6,
	  { J("a@x.test"),
	    { "b@x.test", NULL, 0, "e.test", NULL },
	    { "c@x.test", NULL, 0, NULL, "" },
	    { "d@x.test", NULL, 0, NULL, "s@x.test" },
	    { "e@x.test", "", 0, "", NULL },
	    { "f@x.test", NULL, 0, NULL, "" } },
	  { 0, 1, 2, 3, 0, 2 }, 4 },
	{ "host case and no @", 32, 3,
	  { { "a@x.test", "MX.X.TEST", 1, NULL, NULL },
	    { "b@x.test", "mx.x.test", 1, NULL, NULL },
	    J("nodomain") },
	  { 0, 0, 1 }, 2 },
};

START_TEST(group_plan)
{
	size_t got[8];

	memset(got, 0xff, sizeof(got));
	ck_assert_uint_eq(cbv_cproto_group(plans[_i].jobs, plans[_i].n, plans[_i].max, got),
	                  plans[_i].ngroups);
	for (size_t k = 0; k < plans[_i].n; k++)
		ck_assert_msg(got[k] == plans[_i].want[k], "%s: job %zu in group %zu, want %zu",
		              plans[_i].name, k, got[k], plans[_i].want[k]);
}
END_TEST

/* The largest RUN: 64 jobs, 40 at one domain and 24 at another, cut at 32. */
START_TEST(group_bounds)
{
	struct cbv_cproto_job jobs[CBV_CPROTO_GROUP_JOBS_MAX + 1];
	size_t got[CBV_CPROTO_GROUP_JOBS_MAX + 1], per[4] = { 0 };

	for (size_t k = 0; k <= CBV_CPROTO_GROUP_JOBS_MAX; k++)
		jobs[k] = (struct cbv_cproto_job){ k % 8 < 5 ? "u@a.test" : "u@b.test", NULL, 0, NULL,
			                           NULL };
	ck_assert_uint_eq(cbv_cproto_group(jobs, CBV_CPROTO_GROUP_JOBS_MAX, 32, got), 2);
	for (size_t k = 0; k < CBV_CPROTO_GROUP_JOBS_MAX; k++)
		per[got[k]]++;
	ck_assert_uint_eq(per[0], 32); /* a.test's 40: 32 here ... */
	ck_assert_uint_eq(per[1], 32); /* ... 8 here with b.test's 24 */
	ck_assert_uint_eq(got[0], 0);
	ck_assert_uint_eq(got[5], 1);
	/* beyond the bound, and max 0: nobody shares */
	ck_assert_uint_eq(cbv_cproto_group(jobs, CBV_CPROTO_GROUP_JOBS_MAX + 1, 32, got),
	                  CBV_CPROTO_GROUP_JOBS_MAX + 1);
	ck_assert_uint_eq(cbv_cproto_group(jobs, 3, 0, got), 3);
	ck_assert_uint_eq(cbv_cproto_group(jobs, 0, 32, got), 0);
}
END_TEST

static Suite *cproto_suite(void)
{
	Suite *s = suite_create("cbvd_proto");
	TCase *tc;

	tc = tcase_create("good");
	tcase_add_loop_test(tc, parse_good, 0, sizeof(good) / sizeof(good[0]));
	tcase_add_test(tc, vrfy_attributes);
	tcase_add_test(tc, get_and_timeout);
	suite_add_tcase(s, tc);
	tc = tcase_create("bad");
	tcase_add_loop_test(tc, parse_bad, 0, sizeof(bad) / sizeof(bad[0]));
	tcase_add_test(tc, bounds);
	suite_add_tcase(s, tc);
	tc = tcase_create("url");
	tcase_add_loop_test(tc, url_table, 0, sizeof(urls) / sizeof(urls[0]));
	tcase_add_test(tc, url_unix_too_long);
	suite_add_tcase(s, tc);
	tc = tcase_create("group");
	tcase_add_loop_test(tc, group_plan, 0, sizeof(plans) / sizeof(plans[0]));
	tcase_add_test(tc, group_bounds);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cproto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
