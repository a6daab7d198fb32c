/*
 * check_cache_redis.c - the Redis backend of cbv_cache against a real
 * redis-server that each test starts in its own temp directory (on a
 * kernel-picked loopback port and a UNIX socket, no persistence) and
 * stops: round trips between two handles ("hosts"), lifetimes, domain
 * facts, single flight across handles and processes, caps that hold
 * across handles, outages (killed, restarted, wrong AUTH, a password file
 * others can read, a fake Redis that answers garbage), values of the
 * wrong type or format, the LMDB fallback, maintenance.  Run it inside
 * `unshare -n` like every test that starts servers.
 */
#define _GNU_SOURCE /* nftw's FTW_DEPTH|FTW_PHYS */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_fixture.h"
#include "cbv_cache.h"
#include "cbv_cache_redis.h"
#include "cbv_config.h"
#include "cbv_log.h"
#include "cbv_status.h"

static char dir[64], sock[128], url[160], uurl[200];
static int port;
static pid_t redis_pid;
static int errs, infos;
static char last_err[2048];
static int64_t fake_now;

static void capture(enum cbv_log_level level, const char *line, void *arg)
{
	(void)arg;
	if (getenv("CACHE_DEBUG"))
		fprintf(stderr, "[%d] %s\n", (int)getpid(), line);
	if (level == CBV_LOG_ERR) {
		errs++;
		snprintf(last_err, sizeof(last_err), "%s", line);
	} else if (level == CBV_LOG_INFO) {
		infos++;
	}
}

static int64_t test_clock(void *arg)
{
	(void)arg;
	return fake_now;
}


/* A raw client for checks behind the cache's back. */
static redisContext *raw(void)
{
	struct timeval tv = { 1, 0 };
	redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);

	ck_assert_ptr_nonnull(rc);
	return rc->err == 0 ? rc : (redisFree(rc), NULL);
}

/* Starts redis-server (requirepass pass unless NULL) and waits until it answers. */
static void redis_start(const char *pass)
{
	char p[16];
	const char *argv[24] = { "redis-server", "--port", p, "--bind", "127.0.0.1",
		                 "--save", "", "--appendonly", "no", "--dir", dir,
		                 "--unixsocket", sock, "--unixsocketperm", "700",
		                 "--loglevel", "warning", "--logfile", "" };
	int n = 19;

	snprintf(p, sizeof(p), "%d", port);
	if (pass != NULL) {
		argv[n++] = "--requirepass";
		argv[n++] = pass;
	}
	argv[n] = NULL;
	redis_pid = fixture_spawn(argv, 0);
	ck_assert_int_ge(redis_pid, 0);
	if (fixture_redis_wait(raw) != 0)
		ck_abort_msg("redis-server did not start");
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
	snprintf(dir, sizeof(dir), "/tmp/check_cache_redis.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
	port = fixture_free_port();
	ck_assert_int_gt(port, 0);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	snprintf(uurl, sizeof(uurl), "redis+unix://%s?db=2", sock);
	errs = infos = 0;
	last_err[0] = '\0';
	fake_now = 0;
	cbv_log_set(capture, NULL, CBV_LOG_DEBUG);
	redis_start(NULL);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p);
}

static void teardown(void)
{
	redis_stop();
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	cbv_log_set(NULL, NULL, CBV_LOG_INFO);
}

static struct cbv_cache *open_redis(const char *u, const char *prefix)
{
	struct cbv_cache *c = cbv_cache_new(u, 0);
	struct cbv_cache_opts o = { 0, prefix, NULL, NULL };

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(cbv_cache_set_options(c, &o), 0);
	if (fake_now != 0)
		cbv_cache_set_clock(c, test_clock, NULL);
	return c;
}

static struct cbv_cache_key key_of(const char *domain, const char *local)
{
	struct cbv_cache_key k = { domain, local, "", 25, "starttls=1", 10 };

	return k;
}

static struct cbv_result *result(enum cbv_verdict vd, const char *reason, int code,
                                 const char *rcpt)
{
	struct cbv_result *r = cbv_result_new();

	ck_assert_ptr_nonnull(r);
	r->verdict = vd;
	r->reason = (enum cbv_reason)cbv_reason_parse(reason);
	r->code = code;
	snprintf(r->ecode, sizeof(r->ecode), "%d.1.5", code / 100);
	cbv_result_set(&r->message, "250-first\n250 2.1.5 ok");
	cbv_result_set(&r->address, rcpt);
	cbv_result_set(&r->rcpt, rcpt);
	cbv_result_set(&r->sender, "");
	cbv_result_set(&r->host, "mx1.example.test");
	cbv_result_set(&r->ip, "192.0.2.1:25");
	snprintf(r->tls, sizeof(r->tls), "TLSv1.3");
	r->elapsed_ms = 42;
	r->hosts_tried = 1;
	return r;
}

static void ttl_all(struct cbv_cache_ttl *t)
{
	cbv_cache_ttl_defaults(t);
}

/* ---- URL grammar ---- */

static const struct {
	const char *url;
	int ok;
	int unix_socket;
	unsigned port, db;
} urls[] = {
	{ "redis://127.0.0.1:6379", 1, 0, 6379, 0 },
	{ "redis://127.0.0.1:6379/3", 1, 0, 6379, 3 },
	{ "redis://[::1]:6380/1", 1, 0, 6380, 1 },
	{ "redis://redis.example.net:6379", 1, 0, 6379, 0 },
	{ "redis+unix:///run/redis/redis.sock", 1, 1, 0, 0 },
	{ "redis+unix:///run/redis/redis.sock?db=5", 1, 1, 0, 5 },
	{ "redis://127.0.0.1", 0, 0, 0, 0 }, /* no port */
	{ "redis://127.0.0.1:0", 0, 0, 0, 0 },
	{ "redis://127.0.0.1:65536", 0, 0, 0, 0 },
	{ "redis://:secret@127.0.0.1:6379", 0, 0, 0, 0 }, /* credentials: never in the URL */
	{ "redis://127.0.0.1:6379/x", 0, 0, 0, 0 },
	{ "redis://127.0.0.1:6379/99999", 0, 0, 0, 0 },
	{ "redis://a b:6379", 0, 0, 0, 0 },
	{ "redis+unix://relative.sock", 0, 0, 0, 0 },
	{ "redis+unix:///s.sock?db=", 0, 0, 0, 0 },
	{ "redis+unix:///s.sock?x=1", 0, 0, 0, 0 },
	{ "rediss://127.0.0.1:6379", 0, 0, 0, 0 },          /* TLS: not supported */
	{ "redis-sentinel://127.0.0.1:26379", 0, 0, 0, 0 }, /* Sentinel: not supported */
};

START_TEST(url_grammar)
{
	struct cbv_redis_url u;
	struct cbv_err err;
	const char *s = urls[_i].url;
	enum cbv_status st = cbv_cache_redis_url_parse(s, strlen(s), &u, &err);

	ck_assert_msg((st == CBV_OK) == urls[_i].ok, "%s: %s", s, st == CBV_OK ? "ok" : err.msg);
	if (urls[_i].ok) {
		ck_assert_int_eq(u.unix_socket, urls[_i].unix_socket);
		ck_assert_uint_eq(u.port, urls[_i].port);
		ck_assert_uint_eq(u.db, urls[_i].db);
	}
}
END_TEST

/* The profile keys: what cbv.conf (and per-call OPTIONS) accept. */
static const struct {
	const char *key, *value;
	int ok;
} key_rows[] = {
	{ "cache", "redis://127.0.0.1:6379/2", 1 },
	{ "cache", "\"redis+unix:///run/redis/redis.sock?db=1\"", 1 }, /* quoted: = ends a bare word */
	{ "cache", "/var/spool/exim4/db/cbv", 1 },
	{ "cache", "", 1 },
	{ "cache", "redis://:secret@127.0.0.1:6379", 0 },
	{ "cache", "redis://127.0.0.1", 0 },
	{ "cache", "relative/path", 0 },
	{ "cache_timeout", "50ms", 1 },
	{ "cache_timeout", "0", 0 },
	{ "cache_timeout", "11s", 0 },
	{ "cache_fallback", "/var/spool/exim4/db/cbv", 1 },
	{ "cache_fallback", "redis://127.0.0.1:6379", 0 },
	{ "cache_password_file", "/etc/exim4/cbv-redis.secret", 1 },
	{ "cache_password_file", "secret.txt", 0 },
	{ "cache_prefix", "mx-eu:", 1 },
	{ "cache_prefix", "a b", 0 },
	{ "cache_prefix", "x*", 0 },
	{ "cache_prefix", "", 0 },
};

START_TEST(profile_keys)
{
	struct cbv_profile p;
	struct cbv_err err;
	enum cbv_status st;

	cbv_profile_defaults(&p);
	ck_assert_uint_eq(p.cache_timeout_ms, 100);
	ck_assert_str_eq(p.cache_prefix, "cbv:");
	ck_assert_str_eq(p.cache_password_file, "");
	ck_assert_str_eq(p.cache_fallback, "");
	st = cbv_profile_set(&p, key_rows[_i].key, key_rows[_i].value, &err);
	ck_assert_msg((st == CBV_OK) == key_rows[_i].ok, "%s = %s: %s", key_rows[_i].key, key_rows[_i].value,
	              st == CBV_OK ? "accepted" : err.msg);
	/* a refused URL never echoes a secret it held */
	if (st != CBV_OK)
		ck_assert_ptr_null(strstr(err.msg, "secret@"));
	cbv_profile_clear(&p);
}
END_TEST

/* ---- records ---- */

START_TEST(round_trip_two_hosts)
{
	struct cbv_cache *h1 = open_redis(url, "t1:"), *h2 = open_redis(url, "t1:");
	struct cbv_cache *other = open_redis(url, "t2:");
	struct cbv_cache_key k = key_of("Example.TEST", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@example.test"), *got = NULL;
	struct cbv_cache_ttl ttl;
	unsigned long age = 99;
	redisContext *rc;
	redisReply *rep;

	ttl_all(&ttl);
	ck_assert_int_eq(cbv_cache_lookup(h1, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_store(h1, &k, r, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(h2, &k, &got, &age), CBV_CACHE_HIT);
	ck_assert_int_eq(got->verdict, CBV_PASS);
	ck_assert_int_eq(got->reason, CBV_R_ACCEPTED);
	ck_assert_int_eq(got->code, 250);
	ck_assert_str_eq(got->message, r->message);
	ck_assert_str_eq(got->host, "mx1.example.test");
	ck_assert_str_eq(got->tls, "TLSv1.3");
	ck_assert_int_eq(got->cache, 1);
	ck_assert_uint_le(age, 1);
	cbv_result_free(got);
	/* another prefix is another store */
	ck_assert_int_eq(cbv_cache_lookup(other, &k, &got, NULL), CBV_CACHE_MISS);
	/* the key is readable, prefixed, and Redis expires it (PX = pass TTL) */
	rc = raw();
	ck_assert_ptr_nonnull(rc);
	rep = redisCommand(rc, "SCAN 0 MATCH t1:A:example.test:* COUNT 1000");
	ck_assert_ptr_nonnull(rep);
	ck_assert_int_eq((int)rep->element[1]->elements, 1);
	{
		redisReply *p = redisCommand(rc, "PTTL %s", rep->element[1]->element[0]->str);

		ck_assert_int_gt(p->integer, 23 * 3600 * 1000LL);
		ck_assert_int_le(p->integer, 24 * 3600 * 1000LL);
		freeReplyObject(p);
	}
	freeReplyObject(rep);
	redisFree(rc);
	ck_assert_int_eq(errs, 0);
	cbv_result_free(r);
	cbv_cache_free(h1);
	cbv_cache_free(h2);
	cbv_cache_free(other);
}
END_TEST

START_TEST(lifetimes)
{
	struct cbv_cache *c;
	struct cbv_cache_key k = key_of("example.test", "bob"), k2 = key_of("example.test", "tom");
	struct cbv_result *r = result(CBV_FAIL, "mailbox_unknown", 550, "bob@example.test"), *got;
	struct cbv_result *t = result(CBV_TRANSIENT, "greylisted", 451, "tom@example.test");
	struct cbv_cache_ttl ttl;
	redisContext *rc;
	redisReply *rep;

	fake_now = 1700000000000LL;
	c = open_redis(url, NULL);
	ttl_all(&ttl);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	fake_now += 2 * 3600 * 1000LL - 1;
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	fake_now += 1; /* the record's own expiry holds even before Redis drops it */
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_ptr_null(got);
	/* transient TTL 0: not stored at all */
	ck_assert_int_eq(cbv_cache_store(c, &k2, t, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(c, &k2, &got, NULL), CBV_CACHE_MISS);
	/* a 1 s lifetime: Redis itself drops the key */
	ttl.transient = 1;
	ck_assert_int_eq(cbv_cache_store(c, &k2, t, &ttl, 0), CBV_CACHE_OK);
	rc = raw();
	rep = redisCommand(rc, "DBSIZE");
	ck_assert_int_eq(rep->integer, 2);
	freeReplyObject(rep);
	usleep(1300 * 1000);
	rep = redisCommand(rc, "DBSIZE");
	ck_assert_int_eq(rep->integer, 1);
	freeReplyObject(rep);
	redisFree(rc);
	cbv_result_free(r);
	cbv_result_free(t);
	cbv_cache_free(c);
}
END_TEST

START_TEST(domain_facts)
{
	struct cbv_cache *h1 = open_redis(url, NULL), *h2 = open_redis(uurl, NULL);
	struct cbv_cache *h3 = open_redis(url, NULL);
	struct cbv_cache_key k = key_of("catch.test", "bob"), k2 = key_of("catch.test", "zed");
	struct cbv_cache_key k3 = key_of("refuse.test", "a"), k4 = key_of("refuse.test", "b");
	struct cbv_result *ca = result(CBV_PASS, "catch_all", 250, "bob@catch.test");
	struct cbv_result *sr = result(CBV_ERROR, "sender_refused", 550, "a@refuse.test"), *got;
	struct cbv_cache_ttl ttl;

	ttl_all(&ttl);
	ck_assert_int_eq(cbv_cache_store(h1, &k, ca, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(h3, &k2, &got, NULL), CBV_CACHE_HIT);
	ck_assert_int_eq(got->reason, CBV_R_CATCH_ALL);
	cbv_result_free(got);
	ck_assert_int_eq(cbv_cache_store(h1, &k3, sr, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(h3, &k4, &got, NULL), CBV_CACHE_HIT);
	ck_assert_int_eq(got->verdict, CBV_ERROR);
	cbv_result_free(got);
	/* the UNIX socket URL with db=2 is another database: nothing there */
	ck_assert_int_eq(cbv_cache_lookup(h2, &k2, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_store(h2, &k, ca, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(h2, &k2, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	ck_assert_int_eq(errs, 0);
	cbv_result_free(ca);
	cbv_result_free(sr);
	cbv_cache_free(h1);
	cbv_cache_free(h2);
	cbv_cache_free(h3);
}
END_TEST

/* ---- single flight ---- */

START_TEST(flight_two_hosts)
{
	struct cbv_cache *h1 = open_redis(url, NULL), *h2 = open_redis(url, NULL);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@example.test");
	struct cbv_cache_ttl ttl;
	uint64_t t1 = 0, t2 = 0;
	int64_t wake = 0;

	ttl_all(&ttl);
	ck_assert_int_eq(cbv_cache_flight_begin(h1, &k, 60, &t1, NULL), CBV_CACHE_OWN);
	ck_assert_uint_ne(t1, 0);
	ck_assert_int_eq(cbv_cache_flight_begin(h2, &k, 60, &t2, &wake), CBV_CACHE_BUSY);
	ck_assert_uint_eq(t2, 0);
	ck_assert_int_gt(wake, 0);
	/* a wrong ticket does not end it */
	cbv_cache_flight_end(h2, &k, t1 ^ 1);
	ck_assert_int_eq(cbv_cache_flight_begin(h2, &k, 60, &t2, NULL), CBV_CACHE_BUSY);
	cbv_cache_flight_end(h1, &k, t1);
	ck_assert_int_eq(cbv_cache_flight_begin(h2, &k, 60, &t2, NULL), CBV_CACHE_OWN);
	/* the store ends the flight and answers the waiters */
	ck_assert_int_eq(cbv_cache_store(h2, &k, r, &ttl, t2), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_flight_begin(h1, &k, 60, &t1, NULL), CBV_CACHE_READY);
	cbv_result_free(r);
	cbv_cache_free(h1);
	cbv_cache_free(h2);
}
END_TEST

/* Scripts flushed from Redis (a restart, SCRIPT FLUSH): EVAL takes over from EVALSHA. */
START_TEST(scripts_flushed)
{
	struct cbv_cache *c = open_redis(url, NULL);
	struct cbv_cache_key k = key_of("example.test", "bob");
	uint64_t t = 0;
	redisContext *rc = raw();

	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 60, &t, NULL), CBV_CACHE_OWN);
	cbv_cache_flight_end(c, &k, t);
	freeReplyObject(redisCommand(rc, "SCRIPT FLUSH"));
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 60, &t, NULL), CBV_CACHE_OWN);
	/* EVAL loaded it again: the next EVALSHA finds it */
	cbv_cache_flight_end(c, &k, t);
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 60, &t, NULL), CBV_CACHE_OWN);
	ck_assert_int_eq(errs, 0);
	redisFree(rc);
	cbv_cache_free(c);
}
END_TEST

START_TEST(flight_owner_killed)
{
	struct cbv_cache *c = open_redis(url, NULL);
	struct cbv_cache_key k = key_of("example.test", "bob");
	uint64_t t = 0;
	int fds[2];
	char ch;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cbv_cache *mine = open_redis(url, NULL);
		uint64_t tt = 0;

		ch = cbv_cache_flight_begin(mine, &k, 1, &tt, NULL) == CBV_CACHE_OWN ? 'y' : 'n';
		if (write(fds[1], &ch, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(fds[0], &ch, 1), 1);
	ck_assert_int_eq(ch, 'y');
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 60, &t, NULL), CBV_CACHE_BUSY);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* another host cannot see the pid: the lease lasts its 1 s, then is ours */
	usleep(1200 * 1000);
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 60, &t, NULL), CBV_CACHE_OWN);
	close(fds[0]);
	close(fds[1]);
	cbv_cache_free(c);
}
END_TEST

/*
 * A storm over four "hosts" (processes, each its own handle): every one
 * verifies each of 10 addresses 5 times, in its own order.  Exactly one
 * callout per address (OWN), the rest wait (BUSY) and get the answer
 * (READY, then a HIT).
 */
START_TEST(storm_four_hosts)
{
	int fds[2], owns = 0, hits = 0, bad = 0, status;
	pid_t kids[4];
	char ch;

	ck_assert_int_eq(pipe(fds), 0);
	for (int h = 0; h < 4; h++) {
		kids[h] = fork();
		ck_assert_int_ge(kids[h], 0);
		if (kids[h] != 0)
			continue;
		close(fds[0]);
		struct cbv_cache *c = open_redis(url, NULL);
		struct cbv_cache_ttl ttl;

		ttl_all(&ttl);
		for (int n = 0; n < 50; n++) {
			char local[16], rcpt[64];
			int a = (n * (h + 1) + h) % 10;
			struct cbv_cache_key k;

			snprintf(local, sizeof(local), "u%d", a);
			snprintf(rcpt, sizeof(rcpt), "u%d@storm.test", a);
			k = key_of("storm.test", local);
			for (;;) {
				uint64_t t = 0;
				struct cbv_result *got = NULL;
				enum cbv_cache_status st = cbv_cache_flight_begin(c, &k, 60, &t, NULL);

				if (st == CBV_CACHE_OWN) {
					struct cbv_result *r = result(CBV_PASS, "accepted", 250, rcpt);

					usleep(5000); /* the callout */
					ch = cbv_cache_store(c, &k, r, &ttl, t) == CBV_CACHE_OK ? 'O' : 'X';
					cbv_result_free(r);
				} else if (st == CBV_CACHE_READY) {
					ch = cbv_cache_lookup(c, &k, &got, NULL) == CBV_CACHE_HIT ? 'H' : 'X';
					cbv_result_free(got);
				} else if (st == CBV_CACHE_BUSY) {
					usleep(1000);
					continue;
				} else {
					ch = 'X';
				}
				break;
			}
			if (write(fds[1], &ch, 1) != 1)
				_exit(2);
		}
		cbv_cache_free(c);
		_exit(0);
	}
	close(fds[1]);
	while (read(fds[0], &ch, 1) == 1) {
		owns += ch == 'O';
		hits += ch == 'H';
		bad += ch == 'X';
	}
	close(fds[0]);
	for (int h = 0; h < 4; h++) {
		ck_assert_int_eq(waitpid(kids[h], &status, 0), kids[h]);
		ck_assert_int_eq(WEXITSTATUS(status), 0);
	}
	ck_assert_int_eq(bad, 0);
	ck_assert_int_eq(owns, 10);
	ck_assert_int_eq(hits, 4 * 50 - 10);
}
END_TEST

/* ---- caps ---- */

START_TEST(rate_cap_across_hosts)
{
	struct cbv_cache *h[2] = { open_redis(url, NULL), open_redis(url, NULL) };
	struct cbv_cache_caps caps;
	enum cbv_cache_limit which = CBV_LIMIT_NONE;
	int ok = 0, limited = 0, status;
	int64_t wake = 0;
	uint64_t t;
	pid_t pid;

	cbv_cache_caps_defaults(&caps);
	caps.rate_count = 3;
	caps.rate_window_s = 60;
	caps.domain_concurrency = 0;
	/* a third "host" in another process takes one */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cbv_cache *mine = open_redis(url, NULL);

		_exit(cbv_cache_domain_acquire(mine, "rate.test", &caps, &t, NULL, NULL) ==
		                      CBV_CACHE_OK
		              ? 0
		              : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	for (int i = 0; i < 6; i++) {
		enum cbv_cache_status st =
			cbv_cache_domain_acquire(h[i % 2], "RATE.test", &caps, &t, &wake, &which);

		if (st == CBV_CACHE_OK) {
			ok++;
			cbv_cache_domain_release(h[i % 2], "rate.test", t);
		} else if (st == CBV_CACHE_LIMITED) {
			limited++;
			ck_assert_int_eq(which, CBV_LIMIT_DOMAIN_RATE);
			ck_assert_int_gt(wake, 0);
		}
	}
	ck_assert_int_eq(ok, 2); /* 3 in all: one was the child's */
	ck_assert_int_eq(limited, 4);
	ck_assert_int_eq(errs, 0);
	cbv_cache_free(h[0]);
	cbv_cache_free(h[1]);
}
END_TEST

START_TEST(concurrency_cap_across_hosts)
{
	struct cbv_cache *h1 = open_redis(url, NULL), *h2 = open_redis(url, NULL);
	struct cbv_cache_caps caps;
	enum cbv_cache_limit which = CBV_LIMIT_NONE;
	uint64_t a = 0, b = 0, c = 0;

	cbv_cache_caps_defaults(&caps);
	caps.rate_count = 0;
	caps.domain_concurrency = 2;
	caps.host_concurrency = 1;
	ck_assert_int_eq(cbv_cache_domain_acquire(h1, "c.test", &caps, &a, NULL, NULL),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_domain_acquire(h2, "c.test", &caps, &b, NULL, NULL),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_domain_acquire(h1, "c.test", &caps, &c, NULL, &which),
	                 CBV_CACHE_LIMITED);
	ck_assert_int_eq(which, CBV_LIMIT_DOMAIN_CONCURRENCY);
	cbv_cache_domain_release(h2, "c.test", b);
	ck_assert_int_eq(cbv_cache_domain_acquire(h1, "c.test", &caps, &c, NULL, NULL),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_host_acquire(h1, "192.0.2.1", &caps, &a, NULL), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_host_acquire(h2, "192.0.2.1", &caps, &b, NULL),
	                 CBV_CACHE_LIMITED);
	cbv_cache_host_release(h1, "192.0.2.1", a);
	ck_assert_int_eq(cbv_cache_host_acquire(h2, "192.0.2.1", &caps, &b, NULL), CBV_CACHE_OK);
	cbv_cache_free(h1);
	cbv_cache_free(h2);
}
END_TEST

/* ---- outages ---- */

START_TEST(killed_then_restarted)
{
	struct cbv_cache *c = open_redis(url, NULL);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@example.test"), *got;
	struct cbv_cache_ttl ttl;
	struct cbv_cache_caps caps;
	uint64_t t;

	ttl_all(&ttl);
	cbv_cache_caps_defaults(&caps);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	redis_stop();
	/* every call answers OFF; one log line for the outage, not one per call */
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, url));
	for (int i = 0; i < 50; i++) {
		ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
		ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OFF);
		ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 60, &t, NULL), CBV_CACHE_OFF);
		ck_assert_int_eq(cbv_cache_domain_acquire(c, "x.test", &caps, &t, NULL, NULL),
		                 CBV_CACHE_OFF);
	}
	ck_assert_int_eq(errs, 1);
	/* back at once, but the backoff (1 s) holds: no reconnect yet */
	redis_start(NULL);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	usleep(1100 * 1000);
	/* the same handle resumes (the restarted Redis is empty) */
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	ck_assert_int_eq(errs, 1);
	/* a second outage is a second line */
	redis_stop();
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_int_eq(errs, 2);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

/* Redis restarted between two calls: the stale connection is made again, no outage. */
START_TEST(restarted_while_idle)
{
	struct cbv_cache *c = open_redis(url, NULL);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@example.test"), *got;
	struct cbv_cache_ttl ttl;

	ttl_all(&ttl);
	signal(SIGPIPE, SIG_DFL); /* a write on the dead connection must not raise it */
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	redis_stop();
	redis_start(NULL);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	ck_assert_int_eq(errs, 0);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

/* A Redis that stops answering (SIGSTOP: connected, silent): OFF, then backoff, then back. */
START_TEST(silent_redis)
{
	struct cbv_cache *c = open_redis(url, NULL);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@example.test"), *got;
	struct cbv_cache_ttl ttl;

	ttl_all(&ttl);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	kill(redis_pid, SIGSTOP);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_ptr_nonnull(strstr(last_err, "no answer within cache_timeout"));
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_int_eq(errs, 1);
	kill(redis_pid, SIGCONT);
	usleep(1100 * 1000);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	ck_assert_int_eq(errs, 1);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

START_TEST(fallback_while_down)
{
	struct cbv_cache *c = cbv_cache_new(url, 0);
	char fb[128];
	struct cbv_cache_opts o = { 50, NULL, NULL, fb };
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@example.test"), *got;
	struct cbv_cache_ttl ttl;
	uint64_t t = 0;

	snprintf(fb, sizeof(fb), "%s/fallback", dir);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(cbv_cache_set_options(c, &o), 0);
	ttl_all(&ttl);
	redis_stop();
	ck_assert_int_eq(cbv_cache_usable(c), 1);
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 60, &t, NULL), CBV_CACHE_OWN);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, t), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	ck_assert_int_eq(access(fb, F_OK), 0);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

/* Writes a password file with mode m; returns its path. */
static const char *secret_file(const char *text, mode_t m)
{
	static char p[128];
	FILE *f;

	snprintf(p, sizeof(p), "%s/secret", dir);
	unlink(p);
	f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(p, m), 0);
	return p;
}

START_TEST(auth)
{
	struct cbv_cache *c;
	struct cbv_cache_opts o = { 0, NULL, NULL, NULL };
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *got;

	redis_stop();
	redis_start("s3cret-right");
	/* no password: refused */
	c = open_redis(url, NULL);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_int_eq(errs, 1);
	cbv_cache_free(c);
	/* a wrong one: a clear line, without the secret */
	o.password_file = secret_file("s3cret-wrong\n", 0600);
	c = cbv_cache_new(url, 0);
	ck_assert_int_eq(cbv_cache_set_options(c, &o), 0);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_int_eq(errs, 2);
	ck_assert_ptr_nonnull(strstr(last_err, "AUTH refused"));
	ck_assert_ptr_null(strstr(last_err, "s3cret"));
	cbv_cache_free(c);
	/* the right one */
	o.password_file = secret_file("s3cret-right\n", 0400);
	c = cbv_cache_new(url, 0);
	ck_assert_int_eq(cbv_cache_set_options(c, &o), 0);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(errs, 2);
	cbv_cache_free(c);
}
END_TEST

START_TEST(password_file_mode)
{
	static const mode_t bad[] = { 0640, 0604, 0660, 0644 };
	char out[CBV_REDIS_SECRET_MAX + 2];
	struct cbv_err err;
	struct cbv_cache *c;
	struct cbv_cache_opts o = { 0, NULL, NULL, NULL };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *p = secret_file("s3cret\n", bad[i]);

		ck_assert_int_eq(cbv_cache_redis_read_secret(p, out, sizeof(out), &err),
		                 CBV_ECONFIG);
		ck_assert_ptr_nonnull(strstr(err.msg, "refused"));
		ck_assert_ptr_null(strstr(err.msg, "s3cret"));
	}
	ck_assert_int_eq(cbv_cache_redis_read_secret(secret_file("s3cret\n", 0600), out,
	                                             sizeof(out), &err),
	                 CBV_OK);
	ck_assert_str_eq(out, "s3cret");
	/* through the cache: refused, so OFF, with the reason logged */
	o.password_file = secret_file("s3cret\n", 0644);
	c = cbv_cache_new(url, 0);
	ck_assert_int_eq(cbv_cache_set_options(c, &o), 0);
	ck_assert_int_eq(cbv_cache_usable(c), 0);
	ck_assert_ptr_nonnull(strstr(last_err, "group or others"));
	cbv_cache_free(c);
	/* a symlink to a good file is refused too */
	{
		char l[160];

		snprintf(l, sizeof(l), "%s/link", dir);
		ck_assert_int_eq(symlink(secret_file("s3cret\n", 0600), l), 0);
		ck_assert_int_eq(cbv_cache_redis_read_secret(l, out, sizeof(out), &err), CBV_ECONFIG);
	}
}
END_TEST

/* A fake Redis on loopback that answers every request with reply (drip: a byte each 40 ms). */
static pid_t fake_redis_drip(const char *reply, int *fport, int drip)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	pid_t pid;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	*fport = ntohs(sa.sin_port);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		for (;;) {
			int c = accept(fd, NULL, NULL);
			char buf[4096];

			if (c < 0)
				_exit(0);
			while (read(c, buf, sizeof(buf)) > 0) {
				for (size_t i = 0; drip && i < strlen(reply); i++) {
					usleep(40000);
					if (write(c, reply + i, 1) < 0)
						break;
				}
				if (!drip && write(c, reply, strlen(reply)) < 0)
					break;
			}
			close(c);
		}
	}
	close(fd);
	return pid;
}

static pid_t fake_redis(const char *reply, int *fport)
{
	return fake_redis_drip(reply, fport, 0);
}

/* A Redis that drips its answers: each read is quick, the reply is not: OFF. */
START_TEST(dripping_server)
{
	int fport = 0;
	pid_t pid = fake_redis_drip("+PONG\r\n", &fport, 1);
	char u[64];
	struct cbv_cache *c;

	snprintf(u, sizeof(u), "redis://127.0.0.1:%d", fport);
	c = open_redis(u, NULL);
	ck_assert_int_eq(cbv_cache_usable(c), 0);
	ck_assert_ptr_nonnull(strstr(last_err, "no answer within cache_timeout"));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cbv_cache_free(c);
}
END_TEST

static const char *const garbage[] = {
	"garbage\r\n",                             /* not RESP */
	"$999999999999\r\nabc",                    /* a bulk longer than it is, then silence */
	"*2\r\n:1\r\n",                            /* a short array, then silence */
	"+PONG\r\n",                               /* PING answered, every other command too */
	"-ERR no\r\n",                             /* errors to everything */
	"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", /* arrays of the wrong size */
};

START_TEST(garbage_server)
{
	int fport = 0;
	pid_t pid = fake_redis(garbage[_i], &fport);
	char u[64];
	struct cbv_cache *c;
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@example.test"), *got = NULL;
	struct cbv_cache_ttl ttl;
	struct cbv_cache_caps caps;
	struct cbv_cache_stats st;
	uint64_t t = 0;
	enum cbv_cache_status s;

	snprintf(u, sizeof(u), "redis://127.0.0.1:%d", fport);
	c = open_redis(u, NULL);
	ttl_all(&ttl);
	cbv_cache_caps_defaults(&caps);
	s = cbv_cache_lookup(c, &k, &got, NULL);
	ck_assert(s == CBV_CACHE_OFF || s == CBV_CACHE_MISS);
	ck_assert_ptr_null(got);
	s = cbv_cache_flight_begin(c, &k, 60, &t, NULL);
	ck_assert(s == CBV_CACHE_OFF);
	(void)cbv_cache_store(c, &k, r, &ttl, 0);
	s = cbv_cache_domain_acquire(c, "x.test", &caps, &t, NULL, NULL);
	ck_assert(s == CBV_CACHE_OFF);
	(void)cbv_cache_stats(c, &st);
	(void)cbv_cache_forget(c, "x.test", NULL);
	ck_assert_int_ge(errs, 1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

START_TEST(wrong_values)
{
	struct cbv_cache *c = open_redis(url, "w:");
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@example.test"), *got = NULL;
	struct cbv_cache_ttl ttl;
	struct cbv_cache_caps caps;
	redisContext *rc = raw();
	redisReply *rep, *keys;
	static char big[200 * 1024];
	uint64_t t;

	ttl_all(&ttl);
	cbv_cache_caps_defaults(&caps);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	keys = redisCommand(rc, "KEYS w:A:*"); /* the test may; the code never does */
	ck_assert_int_eq((int)keys->elements, 1);
	/* a hash where a record belongs: a miss */
	freeReplyObject(redisCommand(rc, "DEL %s", keys->element[0]->str));
	freeReplyObject(redisCommand(rc, "HSET %s a b", keys->element[0]->str));
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	/* bytes that are no record; then one of another format version */
	freeReplyObject(redisCommand(rc, "DEL %s", keys->element[0]->str));
	freeReplyObject(redisCommand(rc, "SET %s %s", keys->element[0]->str, "cv\x02garbage"));
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	/* larger than any record */
	memset(big, 'x', sizeof(big));
	freeReplyObject(redisCommand(rc, "SET %s %b", keys->element[0]->str, big, sizeof(big)));
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_ptr_null(got);
	ck_assert_int_eq(errs, 1); /* logged once per process */
	/* a lease of the wrong type, or one that never expires, does not block the flight */
	freeReplyObject(redisCommand(rc, "DEL %s", keys->element[0]->str));
	{
		char fk[512];

		snprintf(fk, sizeof(fk), "w:F:%s", keys->element[0]->str + 4);
		freeReplyObject(redisCommand(rc, "HSET %s a b", fk));
		ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 60, &t, NULL), CBV_CACHE_OWN);
		freeReplyObject(redisCommand(rc, "SET %s 12345", fk));
		ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 60, &t, NULL), CBV_CACHE_OWN);
	}
	freeReplyObject(keys);
	/* caps keys of the wrong type are reset */
	freeReplyObject(redisCommand(rc, "SET w:C:x.test junk"));
	freeReplyObject(redisCommand(rc, "LPUSH w:R:x.test junk"));
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "x.test", &caps, &t, NULL, NULL),
	                 CBV_CACHE_OK);
	rep = redisCommand(rc, "TYPE w:C:x.test");
	ck_assert_str_eq(rep->str, "zset");
	freeReplyObject(rep);
	redisFree(rc);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

/* Fail the Nth allocation: NULL or a working handle, never a crash or a leak. */
START_TEST(oom)
{
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@example.test"), *got;
	struct cbv_cache_ttl ttl;
	char fb[128];
	struct cbv_cache_opts o = { 0, "o:", NULL, fb };
	int done = 0, n0 = 0;

	snprintf(fb, sizeof(fb), "%s/fallback", dir);
	ttl_all(&ttl);
	for (long n = 0; n < 200 && !done; n++) {
		struct cbv_cache *c;
		enum cbv_cache_status st;

		cbv_alloc_fail_after(n);
		c = cbv_cache_new(url, 0);
		if (c != NULL && cbv_cache_set_options(c, &o) == 0) {
			cbv_cache_store(c, &k, r, &ttl, 0);
			st = cbv_cache_lookup(c, &k, &got, NULL);
			ck_assert(st == CBV_CACHE_HIT || st == CBV_CACHE_MISS);
			ck_assert((st == CBV_CACHE_HIT) == (got != NULL));
			if (got != NULL) {
				ck_assert_str_eq(got->message, r->message);
				n0 = (int)n;
				done = 1;
			}
			cbv_result_free(got);
		}
		cbv_alloc_fail_after(-1);
		cbv_cache_free(c);
	}
	ck_assert(done);
	ck_assert_int_gt(n0, 0); /* some allocation did fail on the way */
	cbv_result_free(r);
}
END_TEST

/* ---- maintenance ---- */

static int count_entry(const struct cbv_cache_entry *e, void *arg)
{
	ck_assert_str_eq(e->domain, "[192.0.2.9]");
	(*(int *)arg)++;
	return 0;
}

static int count_any(const struct cbv_cache_entry *e, void *arg)
{
	(void)e;
	(*(int *)arg)++;
	return 0;
}

START_TEST(maintenance)
{
	struct cbv_cache *c = open_redis(url, "m*[x]:");
	struct cbv_cache_key a = key_of("[192.0.2.9]", "bob"), b = key_of("[192.0.2.9]", "tom");
	struct cbv_cache_key d = key_of("other.test", "bob");
	struct cbv_result *r = result(CBV_PASS, "accepted", 250, "bob@[192.0.2.9]");
	struct cbv_result *r2 = result(CBV_FAIL, "mailbox_unknown", 550, "tom@[192.0.2.9]");
	struct cbv_cache_ttl ttl;
	struct cbv_cache_stats st;
	int n = 0;

	ttl_all(&ttl);
	ck_assert_int_eq(cbv_cache_store(c, &a, r, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_store(c, &b, r2, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_store(c, &d, r, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_each(c, "[192.0.2.9]", count_entry, &n), 2);
	ck_assert_int_eq(n, 2);
	n = 0;
	ck_assert_int_eq(cbv_cache_each(c, NULL, count_any, &n), 3);
	ck_assert_int_eq(cbv_cache_stats(c, &st), 0);
	ck_assert_uint_eq(st.by_kind[CBV_CACHE_ADDRESS], 3);
	ck_assert_uint_eq(st.by_verdict[CBV_PASS], 2);
	ck_assert_uint_eq(st.by_verdict[CBV_FAIL], 1);
	ck_assert_uint_gt(st.used_bytes, 0);
	ck_assert_int_eq(cbv_cache_forget(c, "[192.0.2.9]", "tom"), 1);
	n = 0;
	ck_assert_int_eq(cbv_cache_each(c, NULL, count_any, &n), 2);
	ck_assert_int_eq(cbv_cache_forget(c, "[192.0.2.9]", NULL), 1);
	ck_assert_int_eq(cbv_cache_purge(c), 0);
	n = 0;
	ck_assert_int_eq(cbv_cache_each(c, NULL, count_any, &n), 1);
	ck_assert_int_eq(errs, 0);
	cbv_result_free(r);
	cbv_result_free(r2);
	cbv_cache_free(c);
}
END_TEST

/*
 * Blobs on Redis: shared between two handles (two hosts), PX does the
 * lifetime, the key is P kind ":" label ":" hex; a damaged, oversized,
 * other-version value or a value of another type is a miss; down is
 * OFF, and the LMDB fallback serves while down.
 */
START_TEST(blobs)
{
	struct cbv_cache *a = open_redis(url, "b:"), *b = open_redis(url, "b:");
	struct cbv_cache *other = open_redis(url, "o:");
	unsigned char buf[64];
	static unsigned char big[200 * 1024];
	size_t len, vlen;
	int64_t exp, now = cbv_cache_now_ms(a);
	redisContext *rc = raw();
	redisReply *keys, *rep;
	char k[512];

	ck_assert_int_eq(cbv_cache_blob_put(a, 'T', "127.0.0.12:25", "tls1 key", 8, "sess", 4,
	                                    now + 60000),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_blob_get(b, 'T', "127.0.0.12:25", "tls1 key", 8, buf,
	                                    sizeof(buf), &len, &exp),
	                 CBV_CACHE_HIT);
	ck_assert(len == 4 && memcmp(buf, "sess", 4) == 0 && exp == now + 60000);
	/* another prefix, kind or name: not it */
	ck_assert_int_eq(cbv_cache_blob_get(other, 'T', "127.0.0.12:25", "tls1 key", 8, buf,
	                                    sizeof(buf), &len, &exp),
	                 CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_blob_get(b, 'N', "127.0.0.12:25", "tls1 key", 8, buf,
	                                    sizeof(buf), &len, &exp),
	                 CBV_CACHE_MISS);
	keys = redisCommand(rc, "KEYS b:T:*");
	ck_assert_int_eq((int)keys->elements, 1);
	ck_assert_int_eq(strncmp(keys->element[0]->str, "b:T:127.0.0.12:25:", 18), 0);
	ck_assert_uint_eq(strlen(keys->element[0]->str), 18 + 64);
	snprintf(k, sizeof(k), "%s", keys->element[0]->str);
	freeReplyObject(keys);
	rep = redisCommand(rc, "PTTL %s", k);
	ck_assert(rep->integer > 50000 && rep->integer <= 60000);
	freeReplyObject(rep);
	/* damaged (a byte flipped), another version, too large, a hash: misses */
	rep = redisCommand(rc, "GET %s", k);
	ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
	memcpy(big, rep->str, rep->len);
	vlen = rep->len;
	freeReplyObject(rep);
	big[vlen - 6] ^= 1;
	freeReplyObject(redisCommand(rc, "SET %s %b", k, big, vlen));
	ck_assert_int_eq(cbv_cache_blob_get(b, 'T', "127.0.0.12:25", "tls1 key", 8, buf,
	                                    sizeof(buf), &len, &exp),
	                 CBV_CACHE_MISS);
	ck_assert_int_eq(errs, 1);
	big[vlen - 6] ^= 1;
	big[2] = 7;
	cbv_cache_rec_reseal(big, vlen);
	freeReplyObject(redisCommand(rc, "SET %s %b", k, big, vlen));
	ck_assert_int_eq(cbv_cache_blob_get(b, 'T', "127.0.0.12:25", "tls1 key", 8, buf,
	                                    sizeof(buf), &len, &exp),
	                 CBV_CACHE_MISS);
	memset(big, 'x', sizeof(big));
	freeReplyObject(redisCommand(rc, "SET %s %b", k, big, sizeof(big)));
	ck_assert_int_eq(cbv_cache_blob_get(b, 'T', "127.0.0.12:25", "tls1 key", 8, buf,
	                                    sizeof(buf), &len, &exp),
	                 CBV_CACHE_MISS);
	freeReplyObject(redisCommand(rc, "DEL %s", k));
	freeReplyObject(redisCommand(rc, "HSET %s a b", k));
	ck_assert_int_eq(cbv_cache_blob_get(b, 'T', "127.0.0.12:25", "tls1 key", 8, buf,
	                                    sizeof(buf), &len, &exp),
	                 CBV_CACHE_MISS); /* WRONGTYPE: a miss, not an outage */
	/* put replaces whatever is there; del forgets */
	ck_assert_int_eq(cbv_cache_blob_put(a, 'T', "127.0.0.12:25", "tls1 key", 8, "new", 3,
	                                    now + 60000),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_blob_get(b, 'T', "127.0.0.12:25", "tls1 key", 8, buf,
	                                    sizeof(buf), &len, &exp),
	                 CBV_CACHE_HIT);
	cbv_cache_blob_del(a, 'T', "127.0.0.12:25", "tls1 key", 8);
	ck_assert_int_eq(cbv_cache_blob_get(b, 'T', "127.0.0.12:25", "tls1 key", 8, buf,
	                                    sizeof(buf), &len, &exp),
	                 CBV_CACHE_MISS);
	redisFree(rc);
	cbv_cache_free(a);
	cbv_cache_free(b);
	cbv_cache_free(other);
}
END_TEST

START_TEST(blobs_down)
{
	struct cbv_cache *c = cbv_cache_new(url, 0), *nofb = open_redis(url, NULL);
	char fb[128];
	struct cbv_cache_opts o = { 50, NULL, NULL, fb };
	unsigned char buf[16];
	size_t len;
	int64_t exp;

	snprintf(fb, sizeof(fb), "%s/fallback", dir);
	ck_assert_int_eq(cbv_cache_set_options(c, &o), 0);
	redis_stop();
	ck_assert_int_eq(cbv_cache_blob_put(nofb, 'N', "x.test", "k", 1, "v", 1, INT64_MAX),
	                 CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_blob_get(nofb, 'N', "x.test", "k", 1, buf, sizeof(buf), &len,
	                                    &exp),
	                 CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_blob_put(c, 'N', "x.test", "k", 1, "v", 1,
	                                    cbv_cache_now_ms(c) + 10000),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'N', "x.test", "k", 1, buf, sizeof(buf), &len,
	                                    &exp),
	                 CBV_CACHE_HIT);
	ck_assert(len == 1 && buf[0] == 'v');
	cbv_cache_blob_del(c, 'N', "x.test", "k", 1);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'N', "x.test", "k", 1, buf, sizeof(buf), &len,
	                                    &exp),
	                 CBV_CACHE_MISS);
	cbv_cache_free(c);
	cbv_cache_free(nofb);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("cache_redis");
	TCase *tc;

	tc = tcase_create("url");
	tcase_add_loop_test(tc, url_grammar, 0, (int)(sizeof(urls) / sizeof(urls[0])));
	suite_add_tcase(s, tc);
	tc = tcase_create("profile_keys");
	tcase_add_loop_test(tc, profile_keys, 0, (int)(sizeof(key_rows) / sizeof(key_rows[0])));
	suite_add_tcase(s, tc);
#define ADD(name, fn)                                   \
	tc = tcase_create(name);                        \
	tcase_add_checked_fixture(tc, setup, teardown); \
	tcase_set_timeout(tc, 20);                      \
	tcase_add_test(tc, fn);                         \
	suite_add_tcase(s, tc)
	ADD("round_trip", round_trip_two_hosts);
	ADD("lifetimes", lifetimes);
	ADD("domain_facts", domain_facts);
	ADD("flight", flight_two_hosts);
	ADD("flight_killed", flight_owner_killed);
	ADD("scripts_flushed", scripts_flushed);
	ADD("storm", storm_four_hosts);
	ADD("rate_cap", rate_cap_across_hosts);
	ADD("concurrency_cap", concurrency_cap_across_hosts);
	ADD("outage", killed_then_restarted);
	ADD("restarted_idle", restarted_while_idle);
	ADD("silent", silent_redis);
	ADD("fallback", fallback_while_down);
	ADD("auth", auth);
	ADD("password_mode", password_file_mode);
	ADD("wrong_values", wrong_values);
	ADD("maintenance", maintenance);
	ADD("oom", oom);
	ADD("dripping", dripping_server);
	ADD("blobs", blobs);
	ADD("blobs_down", blobs_down);
	tc = tcase_create("garbage");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_loop_test(tc, garbage_server, 0, (int)(sizeof(garbage) / sizeof(garbage[0])));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
