/*
 * check_verify_redis.c - verification machines on a Redis cache whose
 * calls never block (cbv_cache_async.h), as cbvd runs them: many machines
 * under one poll loop sharing one Redis connection.  A real redis-server
 * (kernel-picked loopback port, no persistence) and a fakesmtp MX
 * ("counting": RCPT unknown* -> 550 5.1.1, else 250; each RCPT logged)
 * are started by main() for the whole suite and stopped at the end; the
 * machines call out to 127.0.0.1 (mode hostonly: no DNS).  Run it inside
 * `unshare -n` like every test that starts servers.
 *
 * What is checked: the same verdict, reason, message, cache hit or miss and
 * caps whether the cache answers synchronously or not; the replies of
 * one pipelined connection reach the right machines; with Redis stopped
 * (SIGSTOP) every machine goes on uncached after cache_timeout (2 s here) while a
 * verification without a cache finishes before any of them (it was never
 * held up); Redis killed and restarted, or closing while idle: caching
 * resumes without a restart; garbage, partial and oversized replies:
 * OFF, no crash; a cancelled call gives its lease back; a failed
 * fire-and-forget reply is counted and logged.
 *
 * One Redis URL serves the suite (cbv_verify keeps one handle per cache
 * path for the life of the process, so with CK_FORK=no every test shares
 * it); tests FLUSHALL it and use addresses of their own.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cbv.h"
#include "redis_fixture.h"
#include "cbv_cache.h"
#include "cbv_cache_async.h"

static char dir[64], url[96], sock[128], fakesmtp[4096];
static int rport, sport;
static pid_t redis_pid, smtp_pid;
static int errs;
static char last_err[2048];

static void capture(enum cbv_log_level level, const char *line, void *arg)
{
	(void)arg;
	if (getenv("CACHE_DEBUG"))
		fprintf(stderr, "[%d] %s\n", (int)getpid(), line);
	if (level == CBV_LOG_ERR) {
		errs++;
		snprintf(last_err, sizeof(last_err), "%s", line);
	}
}

static redisContext *raw(void)
{
	struct timeval tv = { 1, 0 };
	redisContext *rc = redisConnectWithTimeout("127.0.0.1", rport, tv);

	if (rc != NULL && rc->err != 0) {
		redisFree(rc);
		rc = NULL;
	}
	return rc;
}

/* A command on a connection of its own (behind the cache's back); the reply's integer. */
static long long rawcmd(const char *cmd)
{
	redisContext *rc = raw();
	redisReply *rep;
	long long v = -1;

	ck_assert_ptr_nonnull(rc);
	rep = redisCommand(rc, cmd);
	ck_assert_ptr_nonnull(rep);
	if (rep->type == REDIS_REPLY_INTEGER)
		v = rep->integer;
	freeReplyObject(rep);
	redisFree(rc);
	return v;
}

/* The "total_connections_received" Redis has counted. */
static long long redis_connections(void)
{
	redisContext *rc = raw();
	redisReply *rep;
	long long v = -1;
	const char *p;

	ck_assert_ptr_nonnull(rc);
	rep = redisCommand(rc, "INFO stats");
	ck_assert_ptr_nonnull(rep);
	p = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "total_connections_received:") : NULL;
	if (p != NULL)
		v = atoll(p + strlen("total_connections_received:"));
	freeReplyObject(rep);
	redisFree(rc);
	return v;
}

static int redis_start(void)
{
	char p[16];
	const char *argv[] = { "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "",
		               "--appendonly", "no", "--dir", dir, "--loglevel", "warning",
		               "--logfile", "", "--unixsocket", sock, "--unixsocketperm", "700",
		               NULL };

	snprintf(p, sizeof(p), "%d", rport);
	/* its own session: a test that restarts Redis leaves it to the next ones */
	redis_pid = fixture_spawn(argv, 1);
	if (redis_pid < 0)
		return -1;
	return fixture_redis_wait(raw);
}

/*
 * The running redis-server's pid, from Redis itself: a test that restarts
 * it runs in a forked child (CK_FORK), so redis_pid may be stale.
 */
static pid_t server_pid(void)
{
	redisContext *rc = raw();
	redisReply *rep;
	pid_t pid = redis_pid;
	const char *p;

	if (rc == NULL)
		return pid;
	rep = redisCommand(rc, "INFO server");
	p = rep != NULL && rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "process_id:") : NULL;
	if (p != NULL)
		pid = (pid_t)atol(p + strlen("process_id:"));
	if (rep != NULL)
		freeReplyObject(rep);
	redisFree(rc);
	return pid;
}

static void redis_stop(void)
{
	pid_t pid = server_pid();

	if (pid > 0) {
		kill(pid, SIGCONT);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0); /* ECHILD if another test process started it */
		for (int i = 0; i < 200; i++) {
			redisContext *rc = raw();

			if (rc == NULL)
				break;
			redisFree(rc);
			usleep(10000);
		}
	}
	redis_pid = 0;
}

static int smtp_start(void)
{
	char spec[64];
	int fd;
	struct sockaddr_in sa = { .sin_family = AF_INET };

	snprintf(spec, sizeof(spec), "127.0.0.1:%d=counting", sport);
	fflush(NULL);
	smtp_pid = fork();
	if (smtp_pid < 0)
		return -1;
	if (smtp_pid == 0) {
		execl(fakesmtp, "fakesmtp", "-r", dir, spec, (char *)NULL);
		_exit(127);
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)sport);
	for (int i = 0; i < 500; i++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(fd);
			return 0;
		}
		if (fd >= 0)
			close(fd);
		usleep(10000);
	}
	return -1;
}

/* RCPTs the fake MX logged for <address>. */
static int rcpts(const char *address)
{
	char path[128], want[512], line[1024];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/rcpt.log", dir);
	snprintf(want, sizeof(want), "127.0.0.1 <%s>", address);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		n += strcmp(line, want) == 0;
	}
	fclose(f);
	return n;
}

/* The suite's profile: the Redis cache (cache = "" when nocache), no caps, then "k=v;k=v". */
static void profile(struct cbv_profile *p, int nocache, const char *extra)
{
	struct cbv_err err;
	char port[16], buf[512], *save = NULL;

	snprintf(port, sizeof(port), "%d", sport);
	cbv_profile_defaults(p);
	ck_assert_int_eq(cbv_profile_set(p, "cache", nocache ? "" : url, &err), CBV_OK);
	/* cbv_verify keeps one handle per path: its options are the first profile's */
	ck_assert_int_eq(cbv_profile_set(p, "cache_timeout", "2s", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "port", port, &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "deny_networks", "", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "timeout", "10s", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "starttls", "never", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "helo", "verifier.test", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "domain_max_rate", "0", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "domain_max_concurrency", "0", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "host_max_concurrency", "0", &err), CBV_OK);
	snprintf(buf, sizeof(buf), "%s", extra != NULL ? extra : "");
	for (char *kv = strtok_r(buf, ";", &save); kv != NULL; kv = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(kv, '=');

		ck_assert_ptr_nonnull(eq);
		*eq = '\0';
		ck_assert_msg(cbv_profile_set(p, kv, eq + 1, &err) == CBV_OK, "%s: %s", kv, err.msg);
	}
}

/* One machine of a run: its address and profile, then its result and when it ended. */
struct job {
	char address[128];
	int nocache;
	const char *extra;
	struct cbv_verify *v;
	struct cbv_result *r;
	int order; /* 1 = finished first */
	int nfd, off;
	int64_t wake;
};

/*
 * Runs the jobs at once under one poll(2) loop, as cbvd does: a machine is
 * processed when one of its fds has an event or its wake time is past.
 */
static void run(struct job *jobs, size_t n)
{
	struct pollfd *fds = calloc(n * CBV_VERIFY_POLLFDS_MAX, sizeof(*fds));
	size_t left = n;
	int order = 0;

	ck_assert_ptr_nonnull(fds);
	for (size_t i = 0; i < n; i++) {
		struct cbv_profile p;
		struct cbv_request req = { .address = jobs[i].address, .host = "127.0.0.1", .mode = CBV_MODE_HOSTONLY };
		struct cbv_err err;

		profile(&p, jobs[i].nocache, jobs[i].extra);
		jobs[i].v = cbv_verify_new(&p, &req, &err);
		cbv_profile_clear(&p);
		ck_assert_ptr_nonnull(jobs[i].v);
		jobs[i].r = NULL;
		jobs[i].order = 0;
	}
	while (left > 0) {
		int64_t wake = INT64_MAX, now;
		size_t k = 0;
		int tmo;

		for (size_t i = 0; i < n; i++) {
			struct job *j = &jobs[i];
			int64_t w = 0;
			int c;

			j->nfd = 0;
			if (j->r != NULL)
				continue;
			c = cbv_verify_pollfds(j->v, fds + k, CBV_VERIFY_POLLFDS_MAX, &w);
			j->off = (int)k;
			j->nfd = c < 0 ? 0 : c;
			j->wake = c < 0 ? 1 : w;
			k += (size_t)j->nfd;
			if (j->wake != 0 && j->wake < wake)
				wake = j->wake;
		}
		now = cbv_now_ms();
		tmo = wake == INT64_MAX ? 1000 : wake <= now ? 0
		                                             : (int)(wake - now);
		ck_assert_int_ge(poll(fds, (nfds_t)k, tmo), 0);
		now = cbv_now_ms();
		for (size_t i = 0; i < n; i++) {
			struct job *j = &jobs[i];
			int ev = 0;

			if (j->r != NULL)
				continue;
			for (int f = 0; f < j->nfd; f++)
				ev |= fds[j->off + f].revents;
			if (ev == 0 && (j->wake == 0 || j->wake > now))
				continue;
			cbv_verify_process(j->v, fds + j->off, j->nfd);
			if (cbv_verify_done(j->v)) {
				j->r = cbv_verify_take_result(j->v);
				ck_assert_ptr_nonnull(j->r);
				j->order = ++order;
				cbv_verify_free(j->v);
				j->v = NULL;
				left--;
			}
		}
	}
	free(fds);
}

static void jobs_free(struct job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		cbv_result_free(jobs[i].r);
		jobs[i].r = NULL;
	}
}

static struct cbv_result *verify1(const char *address, const char *extra)
{
	struct job j;
	struct cbv_result *r;

	memset(&j, 0, sizeof(j));
	snprintf(j.address, sizeof(j.address), "%s", address);
	j.extra = extra;
	run(&j, 1);
	r = j.r;
	return r;
}

#define VERDICT(r, v, why)                                                                   \
	ck_assert_msg((r)->verdict == (v) && strcmp(cbv_reason_name((r)->reason), why) == 0, \
	              "%s: got %s/%s (%s), want %s/%s", (r)->address,                        \
	              cbv_verdict_name((r)->verdict), cbv_reason_name((r)->reason),          \
	              (r)->message, cbv_verdict_name(v), why)

static void setup(void)
{
	errs = 0;
	last_err[0] = '\0';
	cbv_log_set(capture, NULL, CBV_LOG_DEBUG);
	cbv_cache_async_set(1);
	rawcmd("FLUSHALL");
}

static void teardown(void)
{
	cbv_cache_async_set(0);
	cbv_log_set(NULL, NULL, CBV_LOG_INFO);
}

/* Until caching works again after an outage (the backoff, 1 s doubling): at most ~40 s. */
static void await_cache(const char *tag)
{
	for (int i = 0; i < 400; i++) {
		char a[128];
		struct cbv_result *r;
		int use;

		snprintf(a, sizeof(a), "probe-%s-%d@resume.test", tag, i);
		r = verify1(a, NULL);
		use = r->cache_use;
		cbv_result_free(r);
		if (use != CBV_CACHE_USE_OFF)
			return;
		usleep(100000);
	}
	ck_abort_msg("caching did not resume");
}

/*
 * The same answers either way.  Each row runs its steps with the cache
 * answering synchronously, then (Redis emptied) asynchronously; every
 * step's verdict, reason, message, cache flag and use must agree.
 *   steps: addresses verified one after the other, "|"-separated;
 *   prep: what is put in Redis first ("" none; "dslot:DOMAIN" a domain slot
 *   taken with cap 1; "hslot" the MX's slot taken with cap 1).
 */
struct same_row {
	const char *steps;
	const char *extra;
	const char *prep;
};

static const struct same_row same_rows[] = {
	{ "ok1@same.test|ok1@same.test", "", "" },                              /* miss, then hit */
	{ "unknown1@same.test|unknown1@same.test", "", "" },                    /* fail stored, then hit */
	{ "ok2@same.test|ok2@same.test", "cache_pass_ttl=0", "" },              /* not stored */
	{ "ok3@capped.test", "domain_max_concurrency=1", "dslot:capped.test" }, /* over the cap */
	{ "ok4@hcap.test", "host_max_concurrency=1", "hslot" },                 /* MX at its cap */
	{ "ok5@same.test|ok5@same.test", "cache_refresh=yes", "" },             /* refresh: no hit */
	{ "ok6@rate.test|ok7@rate.test", "domain_max_rate=1/1m", "" },          /* rate: second deferred */
};

struct snap {
	int verdict, reason, cache, use;
	char message[512];
};

static void prep(const char *what)
{
	struct cbv_cache *c;
	struct cbv_cache_caps caps;
	uint64_t t = 0;

	if (what[0] == '\0')
		return;
	c = cbv_cache_new(url, 0);
	ck_assert_ptr_nonnull(c);
	cbv_cache_caps_defaults(&caps);
	caps.domain_concurrency = 1;
	caps.host_concurrency = 1;
	caps.rate_count = 0;
	cbv_cache_async_set(0); /* a plain synchronous client, as another host */
	if (strncmp(what, "dslot:", 6) == 0)
		ck_assert_int_eq(cbv_cache_domain_acquire(c, what + 6, &caps, &t, NULL, NULL),
		                 CBV_CACHE_OK);
	else
		ck_assert_int_eq(cbv_cache_host_acquire(c, "127.0.0.1", &caps, &t, NULL), CBV_CACHE_OK);
	cbv_cache_free(c);
}

START_TEST(same_answers)
{
	const struct same_row *row = &same_rows[_i];
	struct snap got[2][8];
	int nsteps = 0;

	for (int mode = 0; mode < 2; mode++) {
		char steps[256], *save = NULL;
		int s = 0;

		rawcmd("FLUSHALL");
		prep(row->prep);
		cbv_cache_async_set(mode);
		snprintf(steps, sizeof(steps), "%s", row->steps);
		for (char *a = strtok_r(steps, "|", &save); a != NULL; a = strtok_r(NULL, "|", &save)) {
			struct cbv_result *r = verify1(a, row->extra);

			got[mode][s].verdict = (int)r->verdict;
			got[mode][s].reason = (int)r->reason;
			got[mode][s].cache = r->cache;
			got[mode][s].use = (int)r->cache_use;
			snprintf(got[mode][s].message, sizeof(got[mode][s].message), "%s", r->message);
			ck_assert_msg(r->cache_use != CBV_CACHE_USE_OFF, "%s: ran uncached (mode %d)", a,
			              mode);
			cbv_result_free(r);
			s++;
		}
		nsteps = s;
	}
	for (int s = 0; s < nsteps; s++) {
		ck_assert_int_eq(got[0][s].verdict, got[1][s].verdict);
		ck_assert_int_eq(got[0][s].reason, got[1][s].reason);
		ck_assert_int_eq(got[0][s].cache, got[1][s].cache);
		ck_assert_int_eq(got[0][s].use, got[1][s].use);
		ck_assert_str_eq(got[0][s].message, got[1][s].message);
	}
	/* the rows mean what they say */
	if (strstr(row->steps, "|") != NULL && row->extra[0] == '\0')
		ck_assert_int_eq(got[1][1].cache, 1);
	if (row->prep[0] != '\0' || strstr(row->extra, "rate") != NULL)
		ck_assert_int_eq(got[1][nsteps - 1].reason, cbv_reason_parse("rate_limited"));
	ck_assert_int_eq(errs, 0);
}
END_TEST

/*
 * Many machines at once on one connection: 30 addresses stored first
 * (half of them unknown), then 60 machines (those 30 and 30 new ones) in
 * one loop.  Each gets its own answer: hits carry their own RCPT in the
 * last poll, misses their own verdict, and Redis saw one connection.
 */
START_TEST(shared_connection)
{
	enum { N = 30 };
	struct job *jobs = calloc(2 * N, sizeof(*jobs));
	long long before;

	ck_assert_ptr_nonnull(jobs);
	for (int i = 0; i < N; i++) {
		snprintf(jobs[i].address, sizeof(jobs[i].address), "%s%d@shared.test",
		         i % 2 ? "unknown" : "user", i);
		snprintf(jobs[N + i].address, sizeof(jobs[N + i].address), "%s%d@shared2.test",
		         i % 3 ? "user" : "unknown", i);
	}
	run(jobs, N); /* stores them */
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(jobs[i].r->cache_use, CBV_CACHE_USE_MISS);
	jobs_free(jobs, N);
	before = redis_connections();
	run(jobs, 2 * N);
	for (int i = 0; i < 2 * N; i++) {
		struct cbv_result *r = jobs[i].r;
		int unknown = strncmp(jobs[i].address, "unknown", 7) == 0;
		char want[160];

		ck_assert_str_eq(r->address, jobs[i].address);
		if (unknown)
			VERDICT(r, CBV_FAIL, "mailbox_unknown");
		else
			VERDICT(r, CBV_PASS, "accepted");
		ck_assert_int_eq(r->cache, i < N);
		ck_assert_int_eq(r->cache_use, i < N ? CBV_CACHE_USE_HIT : CBV_CACHE_USE_MISS);
		/* the record's own last poll: a reply matched to another machine would show */
		snprintf(want, sizeof(want), "RCPT TO:<%s>", jobs[i].address);
		ck_assert_msg(strstr(cbv_result_text(r, "sent"), want) != NULL, "%s: sent %s",
		              jobs[i].address, cbv_result_text(r, "sent"));
		ck_assert_int_eq(rcpts(jobs[i].address), 1);
	}
	/* the one new connection is redis_connections()'s own: the machines used the old one */
	ck_assert_int_eq(redis_connections(), before + 1);
	ck_assert_int_eq(errs, 0);
	jobs_free(jobs, 2 * N);
	free(jobs);
}
END_TEST

/* Single flight among machines of one loop: one RCPT, the others wait and hit. */
START_TEST(flight_in_one_loop)
{
	enum { N = 8 };
	struct job jobs[N];

	memset(jobs, 0, sizeof(jobs));
	for (int i = 0; i < N; i++)
		snprintf(jobs[i].address, sizeof(jobs[i].address), "flight%d@flight.test", getpid());
	run(jobs, N);
	for (int i = 0; i < N; i++)
		VERDICT(jobs[i].r, CBV_PASS, "accepted");
	ck_assert_int_eq(rcpts(jobs[0].address), 1);
	jobs_free(jobs, N);
}
END_TEST

/*
 * Redis stopped (SIGSTOP) with the connection up: 20 machines wait for it
 * (cache_timeout 2 s) while a machine without a cache, started after
 * them against the same fast MX, finishes first: it never waited behind
 * them.  Then each of the 20 goes on uncached with its true verdict (not
 * a deadline), one line is logged for the outage, and after SIGCONT and
 * the backoff caching resumes.
 */
START_TEST(redis_stopped)
{
	enum { N = 21 };
	struct job jobs[N];
	struct cbv_result *r;

	memset(jobs, 0, sizeof(jobs));
	r = verify1("warm@stopped.test", NULL); /* the connection is up */
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_MISS);
	cbv_result_free(r);
	for (int i = 0; i < N - 1; i++)
		snprintf(jobs[i].address, sizeof(jobs[i].address), "s%d-%d@stopped.test", i, getpid());
	snprintf(jobs[N - 1].address, sizeof(jobs[N - 1].address), "fast%d@nocache.test", getpid());
	jobs[N - 1].nocache = 1;
	pid_t pid = server_pid();

	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	run(jobs, N);
	kill(pid, SIGCONT);
	ck_assert_int_eq(jobs[N - 1].order, 1);
	VERDICT(jobs[N - 1].r, CBV_PASS, "accepted");
	for (int i = 0; i < N - 1; i++) {
		VERDICT(jobs[i].r, CBV_PASS, "accepted");
		ck_assert_int_eq(jobs[i].r->cache_use, CBV_CACHE_USE_OFF);
	}
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, "no answer within cache_timeout"));
	jobs_free(jobs, N);
	await_cache("stopped");
	r = verify1("after@stopped.test", NULL);
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_MISS);
	cbv_result_free(r);
	r = verify1("after@stopped.test", NULL);
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_HIT);
	cbv_result_free(r);
	ck_assert_int_eq(errs, 1);
}
END_TEST

/* Killed mid-run: uncached with true verdicts, logged once; restarted: caching resumes. */
START_TEST(redis_restarted)
{
	enum { N = 10 };
	struct job jobs[N];
	struct cbv_result *r;

	memset(jobs, 0, sizeof(jobs));
	r = verify1("warm@restart.test", NULL);
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_MISS);
	cbv_result_free(r);
	for (int i = 0; i < N; i++)
		snprintf(jobs[i].address, sizeof(jobs[i].address), "%s%d@restart.test",
		         i % 2 ? "unknown" : "k", i);
	redis_stop();
	run(jobs, N);
	for (int i = 0; i < N; i++) {
		if (i % 2)
			VERDICT(jobs[i].r, CBV_FAIL, "mailbox_unknown");
		else
			VERDICT(jobs[i].r, CBV_PASS, "accepted");
		ck_assert_int_eq(jobs[i].r->cache_use, CBV_CACHE_USE_OFF);
	}
	jobs_free(jobs, N);
	ck_assert_int_eq(errs, 1);
	ck_assert_int_eq(redis_start(), 0);
	await_cache("restart");
	run(jobs, N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(jobs[i].r->cache_use, CBV_CACHE_USE_MISS);
	jobs_free(jobs, N);
	run(jobs, N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(jobs[i].r->cache_use, CBV_CACHE_USE_HIT);
	jobs_free(jobs, N);
	ck_assert_int_eq(errs, 1);
}
END_TEST

/* Redis restarted while the connection was idle: a new one at once, no outage. */
START_TEST(restarted_while_idle)
{
	struct cbv_result *r = verify1("idle@idle.test", NULL);

	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_MISS);
	cbv_result_free(r);
	redis_stop();
	ck_assert_int_eq(redis_start(), 0);
	r = verify1("idle@idle.test", NULL);
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_MISS); /* a new, empty Redis: not OFF */
	cbv_result_free(r);
	r = verify1("idle@idle.test", NULL);
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_HIT);
	cbv_result_free(r);
	ck_assert_int_eq(errs, 0);
}
END_TEST

/* A group (one session per domain) whose members wait for Redis: verdicts, then hits. */
static void run_group(const char *const *addrs, size_t n, struct cbv_result **out)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = "", .host = "127.0.0.1", .mode = CBV_MODE_HOSTONLY };
	struct pollfd fds[8 * CBV_VERIFY_POLLFDS_MAX];
	struct cbv_verify_group *g;
	struct cbv_err err;

	profile(&p, 0, "");
	g = cbv_verify_group_new(&p, &req, addrs, n, &err);
	cbv_profile_clear(&p);
	ck_assert_ptr_nonnull(g);
	while (!cbv_verify_group_done(g)) {
		int64_t wake = 0, now;
		int k = cbv_verify_group_pollfds(g, fds, (int)(sizeof(fds) / sizeof(fds[0])), &wake);

		if (k < 0)
			break;
		now = cbv_now_ms();
		(void)poll(fds, (nfds_t)k, wake == INT64_MAX || wake == 0 ? 1000 : wake <= now ? 0
		                                                                               : (int)(wake - now));
		cbv_verify_group_process(g, fds, k);
	}
	for (size_t i = 0; i < n; i++) {
		out[i] = cbv_verify_group_take_result(g, i);
		ck_assert_ptr_nonnull(out[i]);
	}
	cbv_verify_group_free(g);
}

START_TEST(group_waits)
{
	static const char *const addrs[] = { "g1@grp.test", "unknown-g2@grp.test", "g3@grp.test",
		                             "g4@grp2.test" };
	enum { N = sizeof(addrs) / sizeof(addrs[0]) };
	struct cbv_result *r[N];

	for (int round = 0; round < 2; round++) {
		run_group(addrs, N, r);
		for (size_t i = 0; i < N; i++) {
			if (strncmp(addrs[i], "unknown", 7) == 0)
				VERDICT(r[i], CBV_FAIL, "mailbox_unknown");
			else
				VERDICT(r[i], CBV_PASS, "accepted");
			ck_assert_int_eq(r[i]->cache_use, round == 0 ? CBV_CACHE_USE_MISS : CBV_CACHE_USE_HIT);
			ck_assert_int_eq(rcpts(addrs[i]), 1);
			cbv_result_free(r[i]);
		}
	}
	ck_assert_int_eq(errs, 0);
}
END_TEST

/*
 * cache_fallback while Redis is down (nothing listens on its port): the
 * calls answered OFF by the non-blocking driver go on to the local LMDB
 * store, as the synchronous ones do: a miss stored there, then a hit.
 */
START_TEST(fallback_while_down)
{
	char extra[512];
	struct cbv_result *r;
	int dead = fixture_free_port();

	snprintf(extra, sizeof(extra), "cache=redis://127.0.0.1:%d;cache_fallback=%s/fallback", dead,
	         dir);
	r = verify1("fb@fallback.test", extra);
	VERDICT(r, CBV_PASS, "accepted");
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_MISS);
	cbv_result_free(r);
	r = verify1("fb@fallback.test", extra);
	VERDICT(r, CBV_PASS, "accepted");
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_HIT);
	cbv_result_free(r);
	ck_assert_int_eq(rcpts("fb@fallback.test"), 1);
	ck_assert_int_eq(errs, 1); /* the outage, once */
	ck_assert_ptr_nonnull(strstr(last_err, "cannot connect"));
}
END_TEST

static void await_call(struct cbv_cache_call *call, int started);

/* A password file for handles of this test; mode 0600. */
static const char *secret_file(const char *name, const char *secret)
{
	static char path[2][128];
	static int n;
	char *p = path[n++ % 2];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs(secret, f);
	fclose(f);
	ck_assert_int_eq(chmod(p, 0600), 0);
	return p;
}

/*
 * A UNIX socket and a database other than 0 (SELECT in the handshake):
 * a record stored through it is in db 2, not in db 0.
 */
START_TEST(unix_socket_db)
{
	char u[200];
	struct cbv_cache_key k = { "unix.test", "bob", "", 25, "fp", 2 };
	struct cbv_result *r = cbv_result_new();
	struct cbv_cache_ttl ttl;
	struct cbv_cache *c;
	struct cbv_cache_call call;
	redisContext *rc;
	redisReply *rep;
	long long n2 = -1, n0 = -1;

	snprintf(u, sizeof(u), "redis+unix://%s?db=2", sock);
	c = cbv_cache_new(u, 0);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(r);
	r->verdict = CBV_PASS;
	r->reason = (enum cbv_reason)cbv_reason_parse("accepted");
	r->code = 250;
	cbv_result_set(&r->message, "250 2.1.5 unix ok");
	cbv_result_set(&r->address, "bob@unix.test");
	cbv_result_set(&r->rcpt, "bob@unix.test");
	cbv_result_set(&r->sender, "");
	cbv_cache_ttl_defaults(&ttl);
	memset(&call, 0, sizeof(call));
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	await_call(&call, cbv_cache_call_lookup(c, &k, &call));
	ck_assert_int_eq(call.st, CBV_CACHE_HIT);
	ck_assert_str_eq(call.hit->message, "250 2.1.5 unix ok");
	cbv_result_free(call.hit);
	rc = raw();
	ck_assert_ptr_nonnull(rc);
	rep = redisCommand(rc, "DBSIZE");
	n0 = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
	freeReplyObject(rep);
	freeReplyObject(redisCommand(rc, "SELECT 2"));
	rep = redisCommand(rc, "DBSIZE");
	n2 = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
	freeReplyObject(rep);
	redisFree(rc);
	ck_assert_int_eq(n0, 0);
	ck_assert_int_ge(n2, 1);
	ck_assert_int_eq(errs, 0);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

/* AUTH on the non-blocking connection: the right password works, a wrong one is OFF, logged. */
START_TEST(auth)
{
	struct cbv_cache_key k = { "auth.test", "bob", "", 25, "fp", 2 };
	struct cbv_cache_opts good = { 0, NULL, secret_file("good", "s3cret\n"), NULL };
	struct cbv_cache_opts wrong = { 0, NULL, secret_file("wrong", "nope\n"), NULL };
	struct cbv_cache *c1 = cbv_cache_new(url, 0), *c2 = cbv_cache_new(url, 0);
	struct cbv_cache_call call;
	redisContext *rc = raw();
	redisReply *rep;

	ck_assert_ptr_nonnull(rc);
	rep = redisCommand(rc, "CONFIG SET requirepass s3cret");
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	ck_assert_int_eq(cbv_cache_set_options(c1, &good), 0);
	ck_assert_int_eq(cbv_cache_set_options(c2, &wrong), 0);
	memset(&call, 0, sizeof(call));
	await_call(&call, cbv_cache_call_lookup(c1, &k, &call));
	ck_assert_int_eq(call.st, CBV_CACHE_MISS);
	await_call(&call, cbv_cache_call_lookup(c2, &k, &call));
	ck_assert_int_eq(call.st, CBV_CACHE_OFF);
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, "AUTH refused"));
	ck_assert_ptr_null(strstr(last_err, "s3cret"));
	ck_assert_ptr_null(strstr(last_err, "nope"));
	rep = redisCommand(rc, "CONFIG SET requirepass %s", "");
	ck_assert_ptr_nonnull(rep);
	freeReplyObject(rep);
	redisFree(rc);
	cbv_cache_free(c1);
	cbv_cache_free(c2);
}
END_TEST

/* ---- garbage, partial and oversized replies, on the calls themselves ---- */

/* A fake Redis answering each read with reply (len bytes). */
static pid_t fake_redis(const char *reply, size_t len, int *fport)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	pid_t pid;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	*fport = ntohs(sa.sin_port);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		for (;;) {
			int c = accept(fd, NULL, NULL);
			char buf[4096];

			if (c < 0)
				_exit(0);
			while (read(c, buf, sizeof(buf)) > 0) {
				size_t off = 0;

				while (off < len) {
					ssize_t n = write(c, reply + off, len - off);

					if (n <= 0)
						break;
					off += (size_t)n;
				}
			}
			close(c);
		}
	}
	close(fd);
	return pid;
}

static char big[400 * 1024];

static const char *const garbage[] = {
	"garbage\r\n",                             /* not RESP */
	"$999999999999\r\nabc",                    /* a bulk longer than it is, then silence */
	"*2\r\n:1\r\n",                            /* a short array, then silence */
	"+PONG\r\n",                               /* PING answered, every other command too */
	"-ERR no\r\n",                             /* errors to everything */
	"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", /* arrays of the wrong size */
	"*2\r\n$5\r\nvalue\r\n$-1\r\n",            /* a lookup's shape, not a record */
	big,                                       /* a bulk of 400 kB: over any record */
};

/* Drives call until answered (at most ~5 s: cache_timeout is 100 ms). */
static void await_call(struct cbv_cache_call *call, int started)
{
	for (int i = 0; i < 500 && !started; i++) {
		struct pollfd p;
		int64_t wake = 0;
		int n = cbv_cache_call_pollfd(call, &p, &wake);
		int64_t left = wake - cbv_now_ms();

		(void)poll(&p, (nfds_t)n, left < 0 ? 0 : left > 100 ? 100
		                                                    : (int)left);
		started = cbv_cache_call_process(call);
	}
	ck_assert_msg(started, "the call was never answered");
}

START_TEST(garbage_replies)
{
	const char *reply = garbage[_i];
	size_t len = strlen(reply);
	int fport = 0;
	pid_t pid;
	char u[64];
	struct cbv_cache *c;
	struct cbv_cache_key k = { "example.test", "bob", "", 25, "fp", 2 };
	struct cbv_cache_caps caps;
	struct cbv_cache_call call;
	struct cbv_cache_async_stats st;

	if (reply == big) {
		int h = snprintf(big, sizeof(big), "$%zu\r\n", sizeof(big) - 32);

		memset(big + h, 'x', sizeof(big) - (size_t)h - 1);
		big[sizeof(big) - 1] = '\0';
		len = strlen(big);
	}
	pid = fake_redis(reply, len, &fport);
	snprintf(u, sizeof(u), "redis://127.0.0.1:%d", fport);
	c = cbv_cache_new(u, 0);
	ck_assert_ptr_nonnull(c);
	cbv_cache_caps_defaults(&caps);
	memset(&call, 0, sizeof(call));
	await_call(&call, cbv_cache_call_lookup(c, &k, &call));
	ck_assert(call.st == CBV_CACHE_OFF || call.st == CBV_CACHE_MISS);
	ck_assert_ptr_null(call.hit);
	await_call(&call, cbv_cache_call_flight(c, &k, 60, &call));
	ck_assert(call.st == CBV_CACHE_OFF);
	await_call(&call, cbv_cache_call_domain(c, "x.test", &caps, &call));
	ck_assert(call.st == CBV_CACHE_OFF);
	cbv_cache_async_stats(c, &st);
	ck_assert_uint_ge(st.failed + st.timeouts + st.outages + st.refused, 1);
	ck_assert_int_ge(errs, 1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cbv_cache_free(c);
}
END_TEST

/* The same through a machine: a Redis answering garbage, a verdict as without a cache. */
START_TEST(garbage_machine)
{
	int fport = 0;
	pid_t pid = fake_redis("garbage\r\n", 9, &fport);
	char u[64], extra[96];
	struct cbv_result *r;

	snprintf(u, sizeof(u), "redis://127.0.0.1:%d", fport);
	snprintf(extra, sizeof(extra), "cache=%s", u);
	r = verify1("g1@garbage.test", extra);
	VERDICT(r, CBV_PASS, "accepted");
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_OFF);
	cbv_result_free(r);
	r = verify1("unknown-g2@garbage.test", extra);
	VERDICT(r, CBV_FAIL, "mailbox_unknown");
	cbv_result_free(r);
	ck_assert_int_eq(errs, 1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}
END_TEST

/* A call abandoned while out: the flight it took is given back when its reply comes. */
START_TEST(cancelled_flight)
{
	struct cbv_cache *c = cbv_cache_new(url, 0), *other = cbv_cache_new(url, 0);
	struct cbv_cache_key k = { "cancel.test", "bob", "", 25, "fp", 2 };
	struct cbv_cache_call call, probe;
	uint64_t t = 0;
	pid_t pid = server_pid();

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(other);
	memset(&call, 0, sizeof(call));
	memset(&probe, 0, sizeof(probe));
	await_call(&probe, cbv_cache_call_lookup(c, &k, &probe)); /* connected */
	ck_assert_int_eq(probe.st, CBV_CACHE_MISS);
	/* Redis stopped: the flight's reply cannot come before the cancel */
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	ck_assert_int_eq(cbv_cache_call_flight(c, &k, 60, &call), 0);
	cbv_cache_call_cancel(&call);
	kill(pid, SIGCONT);
	/* later calls read the flight's reply (OWN: the release goes out) and the release's */
	await_call(&probe, cbv_cache_call_lookup(c, &k, &probe));
	await_call(&probe, cbv_cache_call_lookup(c, &k, &probe));
	ck_assert_int_eq(probe.st, CBV_CACHE_MISS);
	cbv_cache_async_set(0);
	ck_assert_int_eq(cbv_cache_flight_begin(other, &k, 60, &t, NULL), CBV_CACHE_OWN);
	cbv_cache_flight_end(other, &k, t);
	cbv_cache_free(other);
	cbv_cache_free(c);
	ck_assert_int_eq(errs, 0);
}
END_TEST

/* A release nobody waits for fails (a key of the wrong type): counted, logged once. */
START_TEST(fire_and_forget_failure)
{
	struct cbv_cache *c = cbv_cache_new(url, 0);
	struct cbv_cache_key k = { "fire.test", "bob", "", 25, "fp", 2 };
	struct cbv_cache_call probe;
	struct cbv_cache_async_stats st, all0, all1;

	ck_assert_ptr_nonnull(c);
	memset(&probe, 0, sizeof(probe));
	rawcmd("SET cbv:H:192.0.2.9 notazset");
	await_call(&probe, cbv_cache_call_lookup(c, &k, &probe)); /* connected */
	cbv_cache_async_totals(&all0);
	cbv_cache_host_release(c, "192.0.2.9", (uint64_t)1 << 63 | 7);
	await_call(&probe, cbv_cache_call_lookup(c, &k, &probe));
	cbv_cache_async_stats(c, &st);
	cbv_cache_async_totals(&all1);
	ck_assert_uint_eq(st.failed, 1);
	ck_assert_uint_eq(st.outages, 0);
	ck_assert_uint_eq(all1.failed, all0.failed + 1); /* the process's totals too */
	ck_assert_uint_eq(all1.replies, all0.replies + 2);
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, "WRONGTYPE"));
	ck_assert_int_eq(probe.st, CBV_CACHE_MISS); /* the connection is fine */
	cbv_cache_free(c);
}
END_TEST

/*
 * Blobs (TLS sessions, DNS answers) under the non-blocking driver: a put
 * is sent without waiting and reaches Redis (another host reads it); a
 * get is a MISS at once, never a wait (cbvd keeps its own in process).
 */
START_TEST(blobs_publish_only)
{
	struct cbv_cache *c = cbv_cache_new(url, 0), *other;
	struct cbv_cache_key k = { "blob.test", "bob", "", 25, "fp", 2 };
	struct cbv_cache_call probe;
	struct cbv_cache_async_stats st;
	unsigned char buf[64];
	size_t len = 0;
	int64_t exp = 0;

	ck_assert_ptr_nonnull(c);
	memset(&probe, 0, sizeof(probe));
	await_call(&probe, cbv_cache_call_lookup(c, &k, &probe)); /* connected */
	ck_assert_int_eq(cbv_cache_blob_put(c, 'T', "mx.blob.test", "n1", 2, "hello", 5,
	                                    cbv_cache_now_ms(c) + 60000),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "mx.blob.test", "n1", 2, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_MISS);
	await_call(&probe, cbv_cache_call_lookup(c, &k, &probe)); /* the SET's reply is read */
	cbv_cache_async_stats(c, &st);
	ck_assert_uint_eq(st.failed, 0);
	ck_assert_uint_eq(st.outages, 0);
	cbv_cache_async_set(0); /* another host, a synchronous client */
	other = cbv_cache_new(url, 0);
	ck_assert_ptr_nonnull(other);
	ck_assert_int_eq(cbv_cache_blob_get(other, 'T', "mx.blob.test", "n1", 2, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_HIT);
	ck_assert_uint_eq(len, 5);
	ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
	cbv_cache_free(other);
	cbv_cache_async_set(1);
	cbv_cache_blob_del(c, 'T', "mx.blob.test", "n1", 2);
	await_call(&probe, cbv_cache_call_lookup(c, &k, &probe)); /* the DEL's reply is read */
	cbv_cache_async_set(0);
	other = cbv_cache_new(url, 0);
	ck_assert_int_eq(cbv_cache_blob_get(other, 'T', "mx.blob.test", "n1", 2, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_MISS);
	cbv_cache_free(other);
	cbv_cache_async_set(1);
	cbv_cache_free(c);
}
END_TEST

/*
 * Out of memory at each allocation in turn (cbv_alloc_fail_after()): a
 * store sent without waiting, then a lookup waited for, on a new handle.
 * Never a crash or a leak (ASan); each answer is a hit with the right
 * message, a miss or OFF; some run gets the hit.
 */
START_TEST(oom)
{
	struct cbv_cache_key k = { "oom.test", "bob", "", 25, "fp", 2 };
	struct cbv_result *r = cbv_result_new();
	struct cbv_cache_ttl ttl;
	int done = 0, n0 = 0;

	ck_assert_ptr_nonnull(r);
	r->verdict = CBV_PASS;
	r->reason = (enum cbv_reason)cbv_reason_parse("accepted");
	r->code = 250;
	cbv_result_set(&r->message, "250 2.1.5 oom ok");
	cbv_result_set(&r->address, "bob@oom.test");
	cbv_result_set(&r->rcpt, "bob@oom.test");
	cbv_result_set(&r->sender, "");
	cbv_cache_ttl_defaults(&ttl);
	for (long n = 0; n < 300 && !done; n++) {
		struct cbv_cache *c;
		struct cbv_cache_call call;

		rawcmd("FLUSHALL");
		memset(&call, 0, sizeof(call));
		cbv_alloc_fail_after(n);
		c = cbv_cache_new(url, 0);
		if (c != NULL) {
			(void)cbv_cache_store(c, &k, r, &ttl, 0);
			await_call(&call, cbv_cache_call_lookup(c, &k, &call));
			ck_assert(call.st == CBV_CACHE_HIT || call.st == CBV_CACHE_MISS ||
			          call.st == CBV_CACHE_OFF);
			ck_assert((call.st == CBV_CACHE_HIT) == (call.hit != NULL));
			if (call.hit != NULL) {
				ck_assert_str_eq(call.hit->message, r->message);
				n0 = (int)n;
				done = 1;
			}
			cbv_result_free(call.hit);
		}
		cbv_alloc_fail_after(-1);
		cbv_cache_free(c);
	}
	ck_assert(done);
	ck_assert_int_gt(n0, 0); /* some allocation did fail on the way */
	cbv_result_free(r);
}
END_TEST

static Suite *verify_redis_suite(void)
{
	Suite *s = suite_create("verify_redis");
	TCase *tc = tcase_create("async");

	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, same_answers, 0, (int)(sizeof(same_rows) / sizeof(same_rows[0])));
	tcase_add_test(tc, shared_connection);
	tcase_add_test(tc, flight_in_one_loop);
	tcase_add_test(tc, group_waits);
	tcase_add_test(tc, fallback_while_down);
	tcase_add_test(tc, auth);
	tcase_add_test(tc, unix_socket_db);
	tcase_add_test(tc, cancelled_flight);
	tcase_add_test(tc, fire_and_forget_failure);
	tcase_add_loop_test(tc, garbage_replies, 0, (int)(sizeof(garbage) / sizeof(garbage[0])));
	tcase_add_test(tc, garbage_machine);
	tcase_add_test(tc, oom);
	tcase_add_test(tc, restarted_while_idle);
	tcase_add_test(tc, redis_stopped);
	tcase_add_test(tc, redis_restarted);
	tcase_add_test(tc, blobs_publish_only);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed = 1;
	char self[4096], cmd[128];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	(void)argc;
	(void)argv;
	/* servers a test restarts outlive its forked process: they become ours to reap */
	(void)prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (n <= 0)
		return EXIT_FAILURE;
	self[n] = '\0';
	/* build/tests/check_verify_redis -> build/fakesmtp */
	snprintf(fakesmtp, sizeof(fakesmtp), "%s/../fakesmtp", dirname(self));
	snprintf(dir, sizeof(dir), "/tmp/check_verify_redis.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return EXIT_FAILURE;
	rport = fixture_free_port();
	sport = fixture_free_port();
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", rport);
	snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
	if (rport < 0 || sport < 0 || redis_start() != 0 || smtp_start() != 0) {
		fprintf(stderr, "check_verify_redis: cannot start redis-server or %s\n", fakesmtp);
	} else {
		sr = srunner_create(verify_redis_suite());
		srunner_run_all(sr, CK_NORMAL);
		failed = srunner_ntests_failed(sr);
		srunner_free(sr);
	}
	redis_stop();
	if (smtp_pid > 0) {
		kill(smtp_pid, SIGTERM);
		waitpid(smtp_pid, NULL, 0);
	}
	while (waitpid(-1, NULL, WNOHANG) > 0)
		; /* the servers killed by tests */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
