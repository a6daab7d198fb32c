/*
 * check_stats_redis.c - the counters for operators kept in a Redis store
 * (cbv_cache_count() on a redis:// cache), against a real redis-server
 * each test starts on a kernel-picked loopback port and stops: two
 * handles ("hosts", or two Exim processes) add up in the prefixed hash;
 * HINCRBYs sent without awaiting replies leave the connection in step
 * for the lookups and stores that follow; another prefix is another set;
 * counts made while Redis is down are dropped but the outage itself is
 * counted once Redis is back.  Run it inside `unshare -n`.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "redis_fixture.h"
#include "cbv_cache.h"
#include "cbv_log.h"
#include "cbv_stats.h"

static char dir[64], url[160];
static int port;
static pid_t redis_pid;

static int errs;
static char last_err[512];

static void quiet(enum cbv_log_level level, const char *line, void *arg)
{
	(void)arg;
	if (level == CBV_LOG_ERR) {
		errs++;
		snprintf(last_err, sizeof(last_err), "%s", line);
	}
}

static redisContext *raw(void)
{
	struct timeval tv = { 1, 0 };
	redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);

	ck_assert_ptr_nonnull(rc);
	return rc->err == 0 ? rc : (redisFree(rc), NULL);
}

/* no_client: CLIENT renamed away, as a proxy that refuses it would. */
static void redis_start_as(int no_client)
{
	char p[16];
	const char *argv[] = { "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
		               "--appendonly", "no", "--dir", dir, "--loglevel", "warning",
		               "--logfile", "", no_client ? "--rename-command" : NULL,
		               "CLIENT", "", NULL };

	snprintf(p, sizeof(p), "%d", port);
	redis_pid = fixture_spawn(argv, 0);
	ck_assert_int_ge(redis_pid, 0);
	if (fixture_redis_wait(raw) != 0)
		ck_abort_msg("redis-server did not start");
}

static void redis_start(void)
{
	redis_start_as(0);
}

static void redis_stop(void)
{
	if (redis_pid > 0) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
	}
	redis_pid = 0;
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/check_stats_redis.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	port = fixture_free_port();
	ck_assert_int_gt(port, 0);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	cbv_log_set(quiet, NULL, CBV_LOG_DEBUG);
	redis_start();
}

static void teardown(void)
{
	redis_stop();
	rmdir(dir);
	cbv_log_set(NULL, NULL, CBV_LOG_INFO);
}

static struct cbv_cache *open_redis(const char *prefix)
{
	struct cbv_cache *c = cbv_cache_new(url, 0);
	struct cbv_cache_opts o = { 0, prefix, NULL, NULL };

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(cbv_cache_set_options(c, &o), 0);
	return c;
}

static const struct cbv_stats_event pass_hit = { CBV_PASS, CBV_R_ACCEPTED, CBV_STATS_REDIS,
	                                         CBV_STATS_HIT, CBV_STATS_CAP_NONE, 700 };
static const struct cbv_stats_event fail_miss = { CBV_FAIL, CBV_R_MAILBOX_UNKNOWN,
	                                          CBV_STATS_REDIS, CBV_STATS_MISS,
	                                          CBV_STATS_CAP_NONE, 120000 };
static const struct cbv_stats_event limited = { CBV_TRANSIENT, CBV_R_RATE_LIMITED,
	                                        CBV_STATS_REDIS, CBV_STATS_MISS,
	                                        CBV_STATS_CAP_RATE, 300 };

static void count(struct cbv_cache *c, const struct cbv_stats_event *ev, struct cbv_stats *want)
{
	cbv_cache_count(c, ev);
	cbv_cache_count_flush(c);
	if (want != NULL)
		cbv_stats_add(want, ev);
}

/* Two hosts add up; the hash is under the prefix, its fields are words. */
START_TEST(two_hosts_add_up)
{
	struct cbv_cache *h1 = open_redis("m1:"), *h2 = open_redis("m1:"), *other = open_redis("m2:");
	struct cbv_stats want, got;
	redisContext *rc;
	redisReply *rep;

	memset(&want, 0, sizeof(want));
	for (int i = 0; i < 10; i++) {
		count(h1, &pass_hit, &want);
		count(h2, i % 2 ? &fail_miss : &limited, &want);
	}
	/* counts are not awaited: a command on each connection puts them in */
	ck_assert_int_eq(cbv_cache_counters(h1, &got), 0);
	ck_assert_int_eq(cbv_cache_counters(h2, &got), 0);
	ck_assert_int_eq(cbv_cache_counters(h1, &got), 0);
	got.redis_outages = want.redis_outages = 0;
	ck_assert_mem_eq(&got, &want, sizeof(got));
	ck_assert_int_eq(cbv_cache_counters(h2, &got), 0);
	got.redis_outages = 0;
	ck_assert_mem_eq(&got, &want, sizeof(got));
	ck_assert_uint_eq(got.verifications[CBV_PASS][CBV_R_ACCEPTED], 10);
	ck_assert_uint_eq(got.limited[CBV_STATS_CAP_RATE], 5);
	/* another prefix, another set */
	ck_assert_int_eq(cbv_cache_counters(other, &got), 0);
	ck_assert_uint_eq(got.verifications[CBV_PASS][CBV_R_ACCEPTED], 0);
	rc = raw();
	ck_assert_ptr_nonnull(rc);
	rep = redisCommand(rc, "HGET m1:S e:pass:accepted:redis:hit:-:0.005");
	ck_assert_ptr_nonnull(rep);
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "10");
	freeReplyObject(rep);
	rep = redisCommand(rc, "HLEN m1:S"); /* three kinds of end, the sum */
	ck_assert_int_eq(rep->integer, 4);
	freeReplyObject(rep);
	redisFree(rc);
	cbv_cache_free(h1);
	cbv_cache_free(h2);
	cbv_cache_free(other);
}
END_TEST

/* Counts sent without awaiting replies: what follows still gets its own answers. */
START_TEST(replies_stay_in_step)
{
	struct cbv_cache *c = open_redis("s:");
	struct cbv_cache_key k = { "example.test", "bob", "", 25, "fp", 2 };
	struct cbv_result *r = cbv_result_new(), *got = NULL;
	struct cbv_cache_ttl ttl;
	struct cbv_stats want, st;

	ck_assert_ptr_nonnull(r);
	cbv_result_set(&r->message, "250 2.1.5 ok");
	cbv_cache_ttl_defaults(&ttl);
	memset(&want, 0, sizeof(want));
	for (int i = 0; i < 50; i++) {
		r->verdict = i % 2 ? CBV_PASS : CBV_FAIL;
		r->reason = i % 2 ? CBV_R_ACCEPTED : CBV_R_MAILBOX_UNKNOWN;
		count(c, &pass_hit, &want);
		ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
		count(c, &fail_miss, &want);
		ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
		ck_assert_int_eq(got->verdict, r->verdict);
		cbv_result_free(got);
	}
	ck_assert_int_eq(cbv_cache_counters(c, &st), 0);
	st.redis_outages = want.redis_outages = 0;
	ck_assert_mem_eq(&st, &want, sizeof(st));
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

/* Down: counts are dropped, calls return at once; back: the outage is counted. */
START_TEST(outage_counted_when_back)
{
	struct cbv_cache *c = open_redis("o:");
	struct cbv_cache_key k = { "example.test", "bob", "", 25, "fp", 2 };
	struct cbv_result *got = NULL;
	struct cbv_stats st;

	count(c, &pass_hit, NULL);
	cbv_stats_outages_stored(cbv_stats_outages_pending());
	redis_stop();
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_uint_eq(cbv_stats_outages_pending(), 1);
	count(c, &pass_hit, NULL); /* dropped */
	ck_assert_int_eq(cbv_cache_counters(c, &st), -1);
	redis_start();
	usleep(1100 * 1000); /* the backoff */
	count(c, &fail_miss, NULL);
	ck_assert_uint_eq(cbv_stats_outages_pending(), 0);
	ck_assert_int_eq(cbv_cache_counters(c, &st), 0);
	/* the restarted Redis is empty: only what came after it */
	ck_assert_uint_eq(st.verifications[CBV_PASS][CBV_R_ACCEPTED], 0);
	ck_assert_uint_eq(st.verifications[CBV_FAIL][CBV_R_MAILBOX_UNKNOWN], 1);
	ck_assert_uint_eq(st.redis_outages, 1);
	cbv_cache_free(c);
}
END_TEST

/* A hash of the wrong type, or junk fields: no crash, nothing counted from them. */
START_TEST(wrong_hash)
{
	struct cbv_cache *c = open_redis("w:");
	struct cbv_stats st;
	redisContext *rc = raw();
	redisReply *rep;

	ck_assert_ptr_nonnull(rc);
	rep = redisCommand(rc, "HSET w:S e:pass:accepted:lmdb:hit:-:1 12x nonsense 5 o 2 hs 99999999999999999999999");
	freeReplyObject(rep);
	ck_assert_int_eq(cbv_cache_counters(c, &st), 0);
	ck_assert_uint_eq(st.verifications[CBV_PASS][CBV_R_ACCEPTED], 0);
	ck_assert_uint_eq(st.redis_outages, 2);
	ck_assert_uint_eq(st.sum_us, 0);
	rep = redisCommand(rc, "DEL w:S");
	freeReplyObject(rep);
	rep = redisCommand(rc, "SET w:S x");
	freeReplyObject(rep);
	redisFree(rc);
	ck_assert_int_eq(cbv_cache_counters(c, &st), 0);
	ck_assert_uint_eq(st.redis_outages, 0);
	count(c, &pass_hit, NULL); /* WRONGTYPE, unheard: the next commands get their own answers */
	{
		struct cbv_cache_key k = { "example.test", "bob", "", 25, "fp", 2 };
		struct cbv_result *r = cbv_result_new(), *got = NULL;
		struct cbv_cache_ttl ttl;

		ck_assert_ptr_nonnull(r);
		cbv_cache_ttl_defaults(&ttl);
		r->verdict = CBV_FAIL;
		r->reason = CBV_R_MAILBOX_UNKNOWN;
		ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
		ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
		count(c, &pass_hit, NULL);
		ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
		ck_assert_int_eq(got->verdict, CBV_FAIL);
		cbv_result_free(got);
		cbv_result_free(r);
	}
	cbv_cache_free(c);
}
END_TEST

/*
 * A server that refuses CLIENT REPLY (renamed away here; some proxies do):
 * found out at the first count, one log line, no counters from then on,
 * and the lookups and stores that follow still get their own answers.
 */
START_TEST(client_reply_refused)
{
	struct cbv_cache *c;
	struct cbv_cache_key k = { "example.test", "bob", "", 25, "fp", 2 };
	struct cbv_result *r = cbv_result_new(), *got = NULL;
	struct cbv_cache_ttl ttl;
	struct cbv_stats st;

	redis_stop();
	redis_start_as(1);
	c = open_redis("n:");
	ck_assert_ptr_nonnull(r);
	cbv_cache_ttl_defaults(&ttl);
	r->verdict = CBV_FAIL;
	r->reason = CBV_R_MAILBOX_UNKNOWN;
	errs = 0;
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	for (int i = 0; i < 20; i++) {
		count(c, &pass_hit, NULL);
		ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
		ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
		ck_assert_int_eq(got->verdict, CBV_FAIL);
		cbv_result_free(got);
	}
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, "CLIENT REPLY refused"));
	/* the first count's HINCRBY ran (only its SKIP was refused); none after */
	ck_assert_int_eq(cbv_cache_counters(c, &st), 0);
	ck_assert_uint_le(st.verifications[CBV_PASS][CBV_R_ACCEPTED], 1);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

static Suite *stats_redis_suite(void)
{
	Suite *s = suite_create("stats_redis");
	TCase *tc = tcase_create("redis");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, two_hosts_add_up);
	tcase_add_test(tc, replies_stay_in_step);
	tcase_add_test(tc, outage_counted_when_back);
	tcase_add_test(tc, wrong_hash);
	tcase_add_test(tc, client_reply_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stats_redis_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
