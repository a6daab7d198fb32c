/*
 * check_stats.c - counters for operators (cbv_stats.h): histogram
 * buckets at their edges, label escaping, store fields that read back to
 * the same counters, unknown fields, the Prometheus text (families,
 * cumulative buckets, _sum/_count, truncation), the in-flight gauge, and
 * the counters kept in an LMDB store (cbv_cache_count()) adding up across
 * handles, with and without a store in the same transaction.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cbv_cache.h"
#include "cbv_stats.h"

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- buckets: an upper bound is inclusive ("le") ---- */

static const struct {
	uint64_t us;
	size_t bucket;
	const char *le;
} bucket_rows[] = {
	{ 0, 0, "0.005" },
	{ 5000, 0, "0.005" },
	{ 5001, 1, "0.01" },
	{ 10000, 1, "0.01" },
	{ 10001, 2, "0.025" },
	{ 99999, 4, "0.1" },
	{ 100000, 4, "0.1" },
	{ 999999, 7, "1" },
	{ 1000000, 7, "1" },
	{ 2500000, 8, "2.5" },
	{ 30000000, 11, "30" },
	{ 30000001, 12, "60" },
	{ 60000000, 12, "60" },
	{ 60000001, 13, "+Inf" },
	{ UINT64_MAX, 13, "+Inf" },
};

START_TEST(bucket_edges)
{
	ck_assert_uint_eq(cbv_stats_bucket(bucket_rows[_i].us), bucket_rows[_i].bucket);
	ck_assert_str_eq(cbv_stats_bucket_le(bucket_rows[_i].bucket), bucket_rows[_i].le);
}
END_TEST

/* ---- label values (exposition format: \\, \", \n) ---- */

static const struct {
	const char *in;
	size_t cap;
	const char *out;
} esc_rows[] = {
	{ "0.1.0", 64, "0.1.0" },
	{ "a\"b", 64, "a\\\"b" },
	{ "a\\b", 64, "a\\\\b" },
	{ "a\nb", 64, "a\\nb" },
	{ "\"\"", 64, "\\\"\\\"" },
	{ "", 64, "" },
	{ "abc", 3, "ab" },
	{ "a\"", 3, "a" }, /* never half an escape */
	{ "a\"", 4, "a\\\"" },
	{ "x", 1, "" },
};

START_TEST(escape_table)
{
	char out[64];

	memset(out, 'Z', sizeof(out));
	cbv_stats_escape(esc_rows[_i].in, out, esc_rows[_i].cap);
	ck_assert_str_eq(out, esc_rows[_i].out);
}
END_TEST

/* ---- store fields read back into the same counters ---- */

static const struct cbv_stats_event ev_rows[] = {
	{ CBV_PASS, CBV_R_ACCEPTED, CBV_STATS_LMDB, CBV_STATS_MISS, CBV_STATS_CAP_NONE, 120000 },
	{ CBV_PASS, CBV_R_ACCEPTED, CBV_STATS_LMDB, CBV_STATS_HIT, CBV_STATS_CAP_NONE, 300 },
	{ CBV_FAIL, CBV_R_MAILBOX_UNKNOWN, CBV_STATS_REDIS, CBV_STATS_ERROR, CBV_STATS_CAP_NONE,
	  7000000 },
	{ CBV_FAIL, CBV_R_BAD_SYNTAX, CBV_STATS_NONE, CBV_STATS_NOT_ASKED, CBV_STATS_CAP_NONE, 1 },
	{ CBV_TRANSIENT, CBV_R_RATE_LIMITED, CBV_STATS_REDIS, CBV_STATS_MISS, CBV_STATS_CAP_RATE,
	  900 },
	{ CBV_TRANSIENT, CBV_R_RATE_LIMITED, CBV_STATS_LMDB, CBV_STATS_MISS,
	  CBV_STATS_CAP_CONCURRENCY, 900 },
	{ CBV_TRANSIENT, CBV_R_RATE_LIMITED, CBV_STATS_LMDB, CBV_STATS_MISS, CBV_STATS_CAP_HOST,
	  90000000 },
	{ CBV_ERROR, CBV_R_PROTOCOL_ERROR, CBV_STATS_NONE, CBV_STATS_MISS, CBV_STATS_CAP_NONE,
	  61000000 },
	{ CBV_TRANSIENT, CBV_R_TIMEOUT, CBV_STATS_LMDB, CBV_STATS_MISS, CBV_STATS_CAP_NONE,
	  30000000 },
};

START_TEST(fields_round_trip)
{
	struct cbv_stats a, b;
	struct cbv_stats_field f[CBV_STATS_FIELDS_MAX];
	size_t n;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	cbv_stats_add(&a, &ev_rows[_i]);
	n = cbv_stats_fields(&ev_rows[_i], 3, f);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_le(n, CBV_STATS_FIELDS_MAX);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(cbv_stats_field_add(&b, f[i].name, strlen(f[i].name), f[i].add), 0);
	ck_assert_uint_eq(b.redis_outages, 3);
	b.redis_outages = 0;
	ck_assert_mem_eq(&a, &b, sizeof(a));
}
END_TEST

/* An out-of-range enum (a caller's bug) counts nothing. */
START_TEST(bad_event_counts_nothing)
{
	struct cbv_stats a, zero;
	struct cbv_stats_field f[CBV_STATS_FIELDS_MAX];
	struct cbv_stats_event ev = ev_rows[0];

	memset(&a, 0, sizeof(a));
	memset(&zero, 0, sizeof(zero));
	ev.reason = CBV_R_COUNT;
	cbv_stats_add(&a, &ev);
	ck_assert_uint_eq(cbv_stats_fields(&ev, 0, f), 0);
	ev = ev_rows[0];
	ev.backend = CBV_STATS_BACKENDS;
	cbv_stats_add(&a, &ev);
	ck_assert_mem_eq(&a, &zero, sizeof(a));
}
END_TEST

static const char *const unknown_fields[] = {
	"",
	"e",
	"e:",
	"hsx",
	"x:y",
	"oo",
	"v:pass:accepted",
	"c:lmdb:hit",
	"e:pass:accepted:lmdb:hit:-",         /* five words */
	"e:pass:accepted:lmdb:hit:-:0.005:x", /* seven */
	"e:maybe:accepted:lmdb:hit:-:0.005",
	"e:pass:nonsense:lmdb:hit:-:0.005",
	"e:pass:accepted:memcached:hit:-:0.005",
	"e:pass:accepted:lmdb:maybe:-:0.005",
	"e:pass:accepted:lmdb:hit:rate:0.005",
	"e:pass:accepted:lmdb:hit:-:0.3",
	"e:pass:accepted:lmdb:hit:-:",
	"e:pass:accepted:lmdb:-:-:-",
	"e::::::",
	"e:pass:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:lmdb:hit:-:1",
};

START_TEST(unknown_field)
{
	struct cbv_stats a, zero;

	memset(&a, 0, sizeof(a));
	memset(&zero, 0, sizeof(zero));
	ck_assert_int_eq(cbv_stats_field_add(&a, unknown_fields[_i], strlen(unknown_fields[_i]), 5),
	                 -1);
	ck_assert_mem_eq(&a, &zero, sizeof(a));
}
END_TEST

/* ---- the text ---- */

static char *render(const struct cbv_stats *st, const struct cbv_stats_info *info)
{
	static char out[CBV_STATS_TEXT_MAX];
	size_t n = cbv_stats_render(st, info, out, sizeof(out));

	ck_assert_uint_lt(n, sizeof(out));
	ck_assert_uint_eq(strlen(out), n);
	return out;
}

START_TEST(render_counts)
{
	struct cbv_stats st;
	struct cbv_stats_info info = { "cbv", "0.1\"x", "cbvd", 1700000000, 1 };
	const char *t;

	memset(&st, 0, sizeof(st));
	for (int i = 0; i < NROWS(ev_rows); i++)
		cbv_stats_add(&st, &ev_rows[i]);
	st.in_flight = 4;
	st.redis_outages = 2;
	t = render(&st, &info);
	ck_assert_ptr_nonnull(strstr(t, "# HELP cbv_verifications_total "));
	ck_assert_ptr_nonnull(strstr(t, "# TYPE cbv_verifications_total counter\n"));
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbv_verifications_total{status=\"pass\",reason=\"accepted\"} 2\n"));
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbv_verifications_total{status=\"transient\",reason=\"rate_limited\"} 3\n"));
	/* a pair that never happened is not there */
	ck_assert_ptr_null(strstr(t, "status=\"pass\",reason=\"mailbox_unknown\""));
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbv_cache_requests_total{backend=\"lmdb\",result=\"hit\"} 1\n"));
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbv_cache_requests_total{backend=\"lmdb\",result=\"miss\"} 4\n"));
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbv_cache_requests_total{backend=\"redis\",result=\"error\"} 1\n"));
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbv_cache_requests_total{backend=\"none\",result=\"hit\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(t, "\ncbv_rate_limited_total{cap=\"domain_max_rate\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "\ncbv_rate_limited_total{cap=\"host_max_concurrency\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "\ncbv_redis_outages_total 2\n"));
	ck_assert_ptr_nonnull(strstr(t, "# TYPE cbv_in_flight gauge\ncbv_in_flight 4\n"));
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbvd_build_info{version=\"0.1\\\"x\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "# TYPE cbvd_build_info gauge\n"));
	ck_assert_ptr_nonnull(strstr(t, "\nprocess_start_time_seconds 1700000000\n"));
	ck_assert_ptr_nonnull(strstr(t, "# TYPE cbv_verification_duration_seconds histogram\n"));
	/* cumulative: 300us, 1us, 900us, 900us in the first; 120 ms by 0.25 */
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbv_verification_duration_seconds_bucket{le=\"0.005\"} 4\n"));
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbv_verification_duration_seconds_bucket{le=\"0.25\"} 5\n"));
	ck_assert_ptr_nonnull(strstr(t, "\ncbv_verification_duration_seconds_bucket{le=\"30\"} 7\n"));
	ck_assert_ptr_nonnull(strstr(t, "\ncbv_verification_duration_seconds_bucket{le=\"60\"} 7\n"));
	ck_assert_ptr_nonnull(
		strstr(t, "\ncbv_verification_duration_seconds_bucket{le=\"+Inf\"} 9\n"));
	ck_assert_ptr_nonnull(strstr(t, "\ncbv_verification_duration_seconds_count 9\n"));
	/* 120000+300+7000000+1+900+900+90000000+61000000+30000000 us */
	ck_assert_ptr_nonnull(strstr(t, "\ncbv_verification_duration_seconds_sum 188.122101\n"));
	ck_assert_int_eq(t[strlen(t) - 1], '\n');
}
END_TEST

/* No build_info, start time or gauge unless asked (the store's view). */
START_TEST(render_store_view)
{
	struct cbv_stats st;
	struct cbv_stats_info info = { "cbv", NULL, NULL, 0, 0 };
	const char *t;

	memset(&st, 0, sizeof(st));
	t = render(&st, &info);
	ck_assert_ptr_null(strstr(t, "build_info"));
	ck_assert_ptr_null(strstr(t, "start_time"));
	ck_assert_ptr_null(strstr(t, "in_flight"));
	ck_assert_ptr_null(strstr(t, "cbv_verifications_total{"));
	ck_assert_ptr_nonnull(strstr(t, "\ncbv_verification_duration_seconds_sum 0.000000\n"));
	ck_assert_ptr_nonnull(strstr(t, "\ncbv_verification_duration_seconds_count 0\n"));
}
END_TEST

/* A small buffer: snprintf's contract, and every series fits the maximum. */
START_TEST(render_truncates)
{
	struct cbv_stats st;
	struct cbv_stats_info info = { "cbv", "v", "cbvd", 1, 1 };
	char small[100], *big = malloc(CBV_STATS_TEXT_MAX);
	size_t need, need2;

	ck_assert_ptr_nonnull(big);
	memset(&st, 0xff, sizeof(st)); /* every series, the longest numbers */
	st.in_flight = INT64_MIN;
	need = cbv_stats_render(&st, &info, small, sizeof(small));
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	need2 = cbv_stats_render(&st, &info, big, CBV_STATS_TEXT_MAX);
	ck_assert_uint_eq(need, need2);
	ck_assert_uint_lt(need, CBV_STATS_TEXT_MAX);
	ck_assert_uint_eq(strlen(big), need);
	ck_assert_int_eq(strncmp(big, small, sizeof(small) - 1), 0);
	free(big);
}
END_TEST

/* ---- the process's set ---- */

START_TEST(global_in_flight)
{
	struct cbv_stats *g = cbv_stats_global();
	int64_t base = g->in_flight;
	uint64_t pass = g->verifications[CBV_PASS][CBV_R_ACCEPTED];

	cbv_stats_begin();
	cbv_stats_begin();
	ck_assert_int_eq(g->in_flight, base + 2);
	cbv_stats_end(&ev_rows[0]);
	ck_assert_int_eq(g->in_flight, base + 1);
	ck_assert_uint_eq(g->verifications[CBV_PASS][CBV_R_ACCEPTED], pass + 1);
	cbv_stats_abort();
	ck_assert_int_eq(g->in_flight, base);
	ck_assert_uint_eq(g->verifications[CBV_PASS][CBV_R_ACCEPTED], pass + 1);
	cbv_stats_redis_outage();
	ck_assert_uint_ge(cbv_stats_outages_pending(), 1);
	cbv_stats_outages_stored(cbv_stats_outages_pending());
	ck_assert_uint_eq(cbv_stats_outages_pending(), 0);
}
END_TEST

/* ---- counters in an LMDB store ---- */

static char dir[64];

static void store_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/check_stats.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void store_teardown(void)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/cbv", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/cbv-lock", dir);
	unlink(p);
	rmdir(dir);
}

/* Two handles (two processes' worth) add up; the store sees both. */
START_TEST(store_adds_up)
{
	char path[128];
	struct cbv_cache *a, *b;
	struct cbv_stats st, want;

	snprintf(path, sizeof(path), "%s/cbv", dir);
	a = cbv_cache_new(path, 0);
	b = cbv_cache_new(path, 0);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	memset(&want, 0, sizeof(want));
	for (int i = 0; i < NROWS(ev_rows); i++) {
		cbv_cache_count(i % 2 ? a : b, &ev_rows[i]);
		cbv_cache_count_flush(i % 2 ? a : b);
		cbv_stats_add(&want, &ev_rows[i]);
	}
	ck_assert_int_eq(cbv_cache_counters(a, &st), 0);
	ck_assert_mem_eq(&st, &want, sizeof(st));
	/* a count waits for the store's transaction: not there before it */
	cbv_cache_count(a, &ev_rows[0]);
	ck_assert_int_eq(cbv_cache_counters(b, &st), 0);
	ck_assert_mem_eq(&st, &want, sizeof(st));
	cbv_cache_count_flush(a);
	cbv_stats_add(&want, &ev_rows[0]);
	ck_assert_int_eq(cbv_cache_counters(b, &st), 0);
	ck_assert_mem_eq(&st, &want, sizeof(st));
	/* counters are no result records: stats and purge leave them alone */
	ck_assert_int_eq(cbv_cache_purge(a), 0);
	ck_assert_int_eq(cbv_cache_counters(b, &st), 0);
	ck_assert_mem_eq(&st, &want, sizeof(st));
	cbv_cache_free(a);
	cbv_cache_free(b);
}
END_TEST

/* The store of a verdict writes the pending counters in its transaction. */
START_TEST(store_same_transaction)
{
	char path[128];
	struct cbv_cache *a;
	struct cbv_stats st, want;
	struct cbv_result *r = cbv_result_new();
	struct cbv_cache_key k = { "example.com", "u", "", 25, "fp", 2 };
	struct cbv_cache_ttl ttl;

	ck_assert_ptr_nonnull(r);
	cbv_cache_ttl_defaults(&ttl);
	snprintf(path, sizeof(path), "%s/cbv", dir);
	a = cbv_cache_new(path, 0);
	ck_assert_ptr_nonnull(a);
	memset(&want, 0, sizeof(want));
	cbv_cache_count(a, &ev_rows[0]);
	cbv_stats_add(&want, &ev_rows[0]);
	ck_assert_int_eq(cbv_cache_store(a, &k, r, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_counters(a, &st), 0);
	ck_assert_mem_eq(&st, &want, sizeof(st));
	cbv_cache_count_flush(a); /* nothing left: no double count */
	ck_assert_int_eq(cbv_cache_counters(a, &st), 0);
	ck_assert_mem_eq(&st, &want, sizeof(st));
	cbv_result_free(r);
	cbv_cache_free(a);
}
END_TEST

/* No handle (no cache): nothing happens, nothing crashes. */
START_TEST(store_null)
{
	struct cbv_stats st;

	cbv_cache_count(NULL, &ev_rows[0]);
	cbv_cache_count_flush(NULL);
	ck_assert_int_eq(cbv_cache_counters(NULL, &st), -1);
}
END_TEST

static Suite *stats_suite(void)
{
	Suite *s = suite_create("stats");
	TCase *tc;

	tc = tcase_create("buckets");
	tcase_add_loop_test(tc, bucket_edges, 0, NROWS(bucket_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("escape");
	tcase_add_loop_test(tc, escape_table, 0, NROWS(esc_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("fields");
	tcase_add_loop_test(tc, fields_round_trip, 0, NROWS(ev_rows));
	tcase_add_test(tc, bad_event_counts_nothing);
	tcase_add_loop_test(tc, unknown_field, 0, NROWS(unknown_fields));
	suite_add_tcase(s, tc);
	tc = tcase_create("render");
	tcase_add_test(tc, render_counts);
	tcase_add_test(tc, render_store_view);
	tcase_add_test(tc, render_truncates);
	suite_add_tcase(s, tc);
	tc = tcase_create("global");
	tcase_add_test(tc, global_in_flight);
	suite_add_tcase(s, tc);
	tc = tcase_create("store");
	tcase_add_checked_fixture(tc, store_setup, store_teardown);
	tcase_add_test(tc, store_adds_up);
	tcase_add_test(tc, store_same_transaction);
	tcase_add_test(tc, store_null);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stats_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
