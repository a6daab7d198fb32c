/*
 * check_map.c - domain map: entry syntax checked at add time, lookup
 * semantics (exact, wildcard, regex with groups, first match wins,
 * caseless), bad results and PCRE2 limits counting as no match,
 * reference counting and OOM.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_log.h"
#include "cbv_map.h"

/* Log lines seen at WARN, for the checks that a limit or a bad result
 * was reported. */
static int warns;
static char last_warn[2048];

static void capture(enum cbv_log_level level, const char *line, void *arg)
{
	(void)arg;
	if (level == CBV_LOG_WARN) {
		warns++;
		strncpy(last_warn, line, sizeof(last_warn) - 1);
	}
}

static void setup_log(void)
{
	warns = 0;
	last_warn[0] = '\0';
	cbv_log_set(capture, NULL, CBV_LOG_DEBUG);
}

/* ---- add: bad entries are refused with a reason ---- */

static const struct {
	const char *pattern;
	const char *replacement;
	const char *msg;
} bad_entries[] = {
	{ "", "a.test", "empty pattern" },
	{ "*example.com", "x.test", "wildcard must be \"*.\"" },
	{ "*", "x.test", "wildcard" },
	{ "*.", "x.test", "pattern \"*.\"" },
	{ "a.*.example", "x.test", "pattern \"a.*.example\"" },
	{ "not a domain", "x.test", "pattern \"not a domain\"" },
	{ "a..test", "x.test", "pattern \"a..test\"" },
	{ "[192.0.2.1]", "x.test", "pattern" },
	{ "^(a", "x.test", "missing closing parenthesis" },
	{ "^a[", "x.test", "pattern \"^a[\"" },
	{ "^(?<n>a", "x.test", "pattern" },
	{ "^(.+)\\.x$", "$2.test", "$2 but the pattern has 1 group" },
	{ "^x$", "$1.test", "$1 but the pattern has 0 groups" },
	{ "a.test", "$1.test", "has 0 groups" },
	{ "*.a.test", "$1.test", "has 0 groups" },
	{ "a.test", "$x.test", "'$' must be followed by 1-9 or '$'" },
	{ "a.test", "b.test$", "'$' must be followed" },
	{ "^(a)$", "$0.test", "'$' must be followed" },
	{ "a.test", "", "replacement \"\"" },
	{ "a.test", "b..test", "replacement \"b..test\"" },
	{ "a.test", "b test", "replacement" },
	{ "a.test", "a$$b.test", "replacement" }, /* "$" is no domain byte */
	{ "a.test", "-b.test", "replacement" },
};

START_TEST(add_invalid)
{
	struct cbv_map *m = cbv_map_new();
	struct cbv_err err;

	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(cbv_map_add(m, bad_entries[_i].pattern, bad_entries[_i].replacement, &err),
	                 CBV_EINVAL);
	ck_assert_msg(strstr(err.msg, bad_entries[_i].msg) != NULL, "%s = %s: got \"%s\"",
	              bad_entries[_i].pattern, bad_entries[_i].replacement, err.msg);
	ck_assert_uint_eq(cbv_map_count(m), 0);
	cbv_map_free(m);
}
END_TEST

START_TEST(add_bounds)
{
	struct cbv_map *m = cbv_map_new();
	struct cbv_err err;
	char *big = malloc(CBV_CONFIG_LINE_MAX + 2);
	char pat[32];

	ck_assert_ptr_nonnull(m);
	memset(big, 'a', CBV_CONFIG_LINE_MAX + 1);
	big[0] = '^';
	big[CBV_CONFIG_LINE_MAX + 1] = '\0';
	ck_assert_int_eq(cbv_map_add(m, big, "x.test", &err), CBV_EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "longer than"));
	ck_assert_int_eq(cbv_map_add(m, "a.test", big + 1, &err), CBV_EINVAL);
	ck_assert_int_eq(cbv_map_add(NULL, "a.test", "b.test", &err), CBV_EINVAL);
	ck_assert_int_eq(cbv_map_add(m, NULL, "b.test", &err), CBV_EINVAL);
	for (int i = 0; i < CBV_MAP_ENTRIES_MAX; i++) {
		snprintf(pat, sizeof(pat), "d%d.test", i);
		ck_assert_int_eq(cbv_map_add(m, pat, "x.test", &err), CBV_OK);
	}
	ck_assert_int_eq(cbv_map_add(m, "one.more", "x.test", &err), CBV_EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "more than"));
	ck_assert_uint_eq(cbv_map_count(m), CBV_MAP_ENTRIES_MAX);
	free(big);
	cbv_map_free(m);
}
END_TEST

/* ---- lookup ---- */

static const char *const entries[][2] = {
	{ "yahoo.net", "yahoo.com" },
	{ "*.legacy.example", "example.com" },
	{ "^(.+)\\.example\\.net$", "$1.example.com" },
	{ "^([a-z]+)-([a-z]+)\\.swap\\.test$", "$2-$1.swap.test" },
	{ "first.test", "one.test" },
	{ "first.test", "two.test" },           /* never reached */
	{ "*.first.test", "wild.test" },
	{ "^.*\\.first\\.test$", "regex.test" }, /* never reached */
	{ "Upper.CASE.test", "Lower.Case.TEST" },
	{ "^CASE\\.(RE)\\.test$", "$1.example" },
	{ "^(.*)\\.bad\\.test$", "$1..bad" },   /* result never valid */
	{ "*.bad.test", "fallback.test" },      /* so this one answers */
	{ "^(x)\\.dollar\\.test$", "$1$$.test" },
	{ "^(x)?y\\.opt\\.test$", "$1z.opt.test" }, /* unset group = "" */
	{ "^(.*)\\.long\\.test$", "$1.$1.$1.$1.$1.long" },
	{ "^(.+)\\.dot\\.test$", "$1.example." },  /* trailing dot dropped */
	{ "^(a+)+$", "evil.test" },            /* catastrophic backtracking */
	{ "^(a|b|ab)*c$", "evil2.test" },
	{ "^(.+)\\.nine\\.(a)(b)(c)(d)(e)(f)(g)(h)$", "$9$8$7.$1" },
	{ "^(a+)+$-never", "never.test" },
};

static struct cbv_map *map;

static void setup_map(void)
{
	struct cbv_err err;

	setup_log();
	map = cbv_map_new();
	ck_assert_ptr_nonnull(map);
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++)
		ck_assert_msg(cbv_map_add(map, entries[i][0], entries[i][1], &err) == CBV_OK,
		              "%s: %s", entries[i][0], err.msg);
}

static void teardown_map(void)
{
	cbv_map_free(map);
	map = NULL;
	cbv_log_set(NULL, NULL, CBV_LOG_INFO);
}

#define A30 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define L60 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

static const struct {
	const char *domain;
	const char *expect; /* NULL: no match */
	int warn;           /* a WARN must be logged */
} lookups[] = {
	{ "yahoo.net", "yahoo.com", 0 },
	{ "YAHOO.NET", "yahoo.com", 0 },          /* caseless */
	{ "www.yahoo.net", NULL, 0 },             /* exact is exact */
	{ "yahoo.net.evil", NULL, 0 },
	{ "a.legacy.example", "example.com", 0 },
	{ "a.b.legacy.example", "example.com", 0 },
	{ "legacy.example", NULL, 0 },            /* not the bare parent */
	{ "xlegacy.example", NULL, 0 },           /* label boundary */
	{ "A.LEGACY.Example", "example.com", 0 },
	{ "foo.example.net", "foo.example.com", 0 },
	{ "a.b.example.net", "a.b.example.com", 0 },
	{ "FOO.Example.NET", "foo.example.com", 0 }, /* result lower-cased */
	{ "example.net", NULL, 0 },
	{ "left-right.swap.test", "right-left.swap.test", 0 },
	{ "first.test", "one.test", 0 },          /* first match wins */
	{ "sub.first.test", "wild.test", 0 },
	{ "upper.case.test", "lower.case.test", 0 },
	{ "case.re.test", "re.example", 0 },
	{ "z.bad.test", "fallback.test", 1 },     /* invalid result: next entry */
	{ "x.dollar.test", NULL, 1 },             /* "x$.test" is no domain */
	{ "y.opt.test", "z.opt.test", 0 },
	{ "xy.opt.test", "xz.opt.test", 0 },
	{ L60 ".long.test", NULL, 1 },            /* result over 255 bytes */
	{ "x.dot.test", "x.example", 0 },
	{ A30 "b", NULL, 1 },                     /* match limit: no match */
	{ A30 A30 A30 "b", NULL, 1 },
	{ "aaaa", "evil.test", 0 },               /* the same regex still works */
	{ "ababababababababababababababababababababcd", NULL, 1 },
	{ "abc", "evil2.test", 0 },
	{ "s.nine.abcdefgh", "hgf.s", 0 },
	{ "nothing.matches", NULL, 0 },
};

START_TEST(lookup_table)
{
	char out[CBV_DOMAIN_MAX + 1];
	int r;

	memset(out, '#', sizeof(out));
	out[sizeof(out) - 1] = '\0';
	r = cbv_map_lookup(map, lookups[_i].domain, out);
	if (lookups[_i].expect == NULL) {
		ck_assert_msg(r == 0, "%s: expected no match, got %d \"%s\"", lookups[_i].domain, r,
		              out);
		ck_assert_int_eq(out[0], '#'); /* out untouched */
	} else {
		ck_assert_msg(r == 1, "%s: expected %s, got %d", lookups[_i].domain,
		              lookups[_i].expect, r);
		ck_assert_str_eq(out, lookups[_i].expect);
	}
	if (lookups[_i].warn)
		ck_assert_msg(warns > 0, "%s: no WARN logged", lookups[_i].domain);
	else
		ck_assert_msg(warns == 0, "%s: unexpected WARN: %s", lookups[_i].domain, last_warn);
}
END_TEST

START_TEST(lookup_limit_logged)
{
	char out[CBV_DOMAIN_MAX + 1];

	ck_assert_int_eq(cbv_map_lookup(map, A30 "b", out), 0);
	ck_assert_int_eq(warns, 1);
	ck_assert_ptr_nonnull(strstr(last_warn, "limit"));
	ck_assert_int_eq(cbv_map_lookup(map, "x.dollar.test", out), 0);
	ck_assert_ptr_nonnull(strstr(last_warn, "is not a domain"));
}
END_TEST

START_TEST(lookup_edges)
{
	char out[CBV_DOMAIN_MAX + 1];
	char big[CBV_DOMAIN_MAX + 2];
	struct cbv_map *empty = cbv_map_new();

	ck_assert_int_eq(cbv_map_lookup(NULL, "yahoo.net", out), 0);
	ck_assert_int_eq(cbv_map_lookup(map, NULL, out), 0);
	ck_assert_int_eq(cbv_map_lookup(map, "", out), 0);
	ck_assert_int_eq(cbv_map_lookup(empty, "yahoo.net", out), 0);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(cbv_map_lookup(map, big, out), 0); /* over 255: never */
	cbv_map_free(empty);
}
END_TEST

START_TEST(entries_listed)
{
	const char *p, *r;

	ck_assert_uint_eq(cbv_map_count(map), sizeof(entries) / sizeof(entries[0]));
	ck_assert_uint_eq(cbv_map_count(NULL), 0);
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
		cbv_map_entry(map, i, &p, &r);
		ck_assert_str_eq(p, entries[i][0]); /* as written */
		ck_assert_str_eq(r, entries[i][1]);
	}
}
END_TEST

START_TEST(refcount)
{
	struct cbv_map *m = cbv_map_new();
	char out[CBV_DOMAIN_MAX + 1];

	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(cbv_map_add(m, "^(.+)\\.a$", "$1.b", NULL), CBV_OK);
	ck_assert_ptr_eq(cbv_map_ref(m), m);
	ck_assert_ptr_eq(cbv_map_ref(m), m);
	ck_assert_ptr_null(cbv_map_ref(NULL));
	cbv_map_free(m);
	cbv_map_free(m);
	/* One reference left: still usable (ASan would see a use after free). */
	ck_assert_int_eq(cbv_map_lookup(m, "x.a", out), 1);
	ck_assert_str_eq(out, "x.b");
	cbv_map_free(m);
	cbv_map_free(NULL);
}
END_TEST

/* ---- OOM: every allocation failure is reported, nothing leaks ---- */

START_TEST(oom_new_add)
{
	static const char *const e[][2] = {
		{ "a.test", "b.test" },
		{ "*.w.test", "c.test" },
		{ "^(.+)\\.r\\.test$", "$1.d.test" },
	};
	char out[CBV_DOMAIN_MAX + 1];
	struct cbv_err err;
	int done = 0;

	for (long n = 0; n < 10000 && !done; n++) {
		struct cbv_map *m;
		enum cbv_status st = CBV_OK;
		int r;

		cbv_alloc_fail_after(n);
		m = cbv_map_new();
		if (m == NULL)
			continue;
		for (size_t i = 0; i < 3 && st == CBV_OK; i++) {
			st = cbv_map_add(m, e[i][0], e[i][1], &err);
			ck_assert(st == CBV_OK || st == CBV_ENOMEM);
			if (st == CBV_ENOMEM)
				ck_assert_uint_eq(cbv_map_count(m), i); /* nothing half-added */
		}
		if (st == CBV_OK) {
			r = cbv_map_lookup(m, "x.r.test", out);
			ck_assert(r == 1 || r == -1);
			if (r == 1) {
				ck_assert_str_eq(out, "x.d.test");
				done = 1;
			}
		}
		cbv_alloc_fail_after(-1);
		cbv_map_free(m);
	}
	cbv_alloc_fail_after(-1);
	ck_assert(done);
}
END_TEST

static Suite *map_suite(void)
{
	Suite *s = suite_create("map");
	TCase *tc;

	tc = tcase_create("add_invalid");
	tcase_add_loop_test(tc, add_invalid, 0, sizeof(bad_entries) / sizeof(bad_entries[0]));
	tcase_add_test(tc, add_bounds);
	suite_add_tcase(s, tc);

	tc = tcase_create("lookup");
	tcase_add_checked_fixture(tc, setup_map, teardown_map);
	tcase_add_loop_test(tc, lookup_table, 0, sizeof(lookups) / sizeof(lookups[0]));
	tcase_add_test(tc, lookup_limit_logged);
	tcase_add_test(tc, lookup_edges);
	tcase_add_test(tc, entries_listed);
	suite_add_tcase(s, tc);

	tc = tcase_create("refcount");
	tcase_add_test(tc, refcount);
	suite_add_tcase(s, tc);

	tc = tcase_create("oom");
	tcase_add_test(tc, oom_new_add);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(map_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
