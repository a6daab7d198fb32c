/*
 * bench_redis_async - what a Redis cache costs cbvd's event loop, with the
 * cache's calls synchronous (as before: each blocks the loop up to
 * cache_timeout) and non-blocking (cbv_cache_async_set(1), as cbvd runs
 * now).  The loop is cbvd's: many verification machines under one
 * poll(2), a machine processed when its fds have events or its wake time
 * is past, a new one started as soon as one ends.  Prints numbers;
 * asserts nothing.
 *
 * It starts its own redis-server (free loopback port, no persistence) and
 * a fakesmtp MX ("counting", next to this program in $(B)/), so run it in
 * `unshare -n` like other servers:
 *
 *   bench_redis_async [-n TOTAL] [-c CONCURRENCY] [-s SECONDS]
 *
 *   hit:     TOTAL verifications of 500 addresses all stored in Redis
 *            (every one a cache hit), CONCURRENCY at once: rate, and the
 *            longest loop turn.
 *   stopped: Redis SIGSTOPped (the connection up) for SECONDS while the
 *            loop runs CONCURRENCY verifications at once, half of them on
 *            the Redis profile and half on a profile without a cache,
 *            against the fast MX: verifications done, the longest loop turn
 *            (how long the loop was held), the time held in turns over
 *            10 ms, and the median and max latency of the uncached ones
 *            (what everybody else in cbvd pays for a stuck Redis).
 *   slow:    the same with Redis busy 90 ms out of every 100 (DEBUG SLEEP)
 *            instead of stopped: replies late, most within cache_timeout.
 * Each measurement runs in a process of its own (fresh cache handles).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cbv.h"
#include "cbv_cache_async.h"

static char dir[64], url[96];
static int rport, sport;
static pid_t redis_pid, smtp_pid;

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), p;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		return -1;
	p = ntohs(sa.sin_port);
	close(fd);
	return p;
}

static int up(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static pid_t spawn(const char *const argv[])
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(126);
		execvp(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	return pid;
}

static void quiet(enum cbv_log_level level, const char *line, void *arg)
{
	(void)level;
	(void)line;
	(void)arg;
}

static void profile(struct cbv_profile *p, int nocache)
{
	char port[16];

	snprintf(port, sizeof(port), "%d", sport);
	cbv_profile_defaults(p);
	cbv_profile_set(p, "cache", nocache ? "" : url, NULL);
	cbv_profile_set(p, "port", port, NULL);
	cbv_profile_set(p, "deny_networks", "", NULL);
	cbv_profile_set(p, "timeout", "10s", NULL);
	cbv_profile_set(p, "starttls", "never", NULL);
	cbv_profile_set(p, "helo", "bench.test", NULL);
	cbv_profile_set(p, "domain_max_rate", "0", NULL);
	cbv_profile_set(p, "domain_max_concurrency", "0", NULL);
	cbv_profile_set(p, "host_max_concurrency", "0", NULL);
}

struct slot {
	struct cbv_verify *v;
	int nocache;
	int64_t t0, wake;
	int off, nfd;
};

struct stats {
	long done, hits;
	int64_t max_turn_us, held_us; /* longest turn; sum of turns over 10 ms */
	int64_t *lat_us;              /* uncached verifications' latency */
	long nlat, lat_cap;
};

static long seq;

static void start(struct slot *s, struct cbv_profile *pc, struct cbv_profile *pn, long naddr)
{
	char a[96];
	struct cbv_request req = { .address = a, .host = "127.0.0.1", .mode = CBV_MODE_HOSTONLY };

	if (s->nocache)
		snprintf(a, sizeof(a), "n%ld@nocache.test", seq++);
	else
		snprintf(a, sizeof(a), "u%ld@bench.test", naddr > 0 ? seq++ % naddr : seq++);
	s->t0 = cbv_now_us();
	s->v = cbv_verify_new(s->nocache ? pn : pc, &req, NULL);
}

/*
 * The loop: conc machines at once until total are done (total 0: until
 * end_ms).  mixed: every other slot runs without a cache.
 */
static void loop(long total, int conc, int mixed, long naddr, int64_t end_ms, struct stats *st)
{
	struct slot *slots = calloc((size_t)conc, sizeof(*slots));
	struct pollfd *fds = calloc((size_t)conc * CBV_VERIFY_POLLFDS_MAX, sizeof(*fds));
	struct cbv_profile pc, pn;
	long started = 0;
	int running = 0;

	profile(&pc, 0);
	profile(&pn, 1);
	for (int i = 0; i < conc && (total == 0 || started < total); i++, started++, running++) {
		slots[i].nocache = mixed && i % 2;
		start(&slots[i], &pc, &pn, naddr);
	}
	while (running > 0) {
		int64_t wake = INT64_MAX, now, t0;
		size_t k = 0;
		int tmo;

		for (int i = 0; i < conc; i++) {
			struct slot *s = &slots[i];
			int64_t w = 0;
			int c;

			s->nfd = 0;
			if (s->v == NULL)
				continue;
			c = cbv_verify_pollfds(s->v, fds + k, CBV_VERIFY_POLLFDS_MAX, &w);
			s->off = (int)k;
			s->nfd = c < 0 ? 0 : c;
			s->wake = c < 0 ? 1 : w;
			k += (size_t)s->nfd;
			if (s->wake != 0 && s->wake < wake)
				wake = s->wake;
		}
		now = cbv_now_ms();
		tmo = wake == INT64_MAX ? 1000 : wake <= now ? 0
		                                             : (int)(wake - now);
		(void)poll(fds, (nfds_t)k, tmo);
		t0 = cbv_now_us();
		now = cbv_now_ms();
		for (int i = 0; i < conc; i++) {
			struct slot *s = &slots[i];
			int ev = 0;

			if (s->v == NULL)
				continue;
			for (int f = 0; f < s->nfd; f++)
				ev |= fds[s->off + f].revents;
			if (ev == 0 && (s->wake == 0 || s->wake > now))
				continue;
			cbv_verify_process(s->v, fds + s->off, s->nfd);
			if (!cbv_verify_done(s->v))
				continue;
			{
				struct cbv_result *r = cbv_verify_take_result(s->v);

				st->done++;
				st->hits += r != NULL && r->cache;
				if (s->nocache && st->nlat < st->lat_cap)
					st->lat_us[st->nlat++] = cbv_now_us() - s->t0;
				cbv_result_free(r);
			}
			cbv_verify_free(s->v);
			s->v = NULL;
			running--;
			if ((total > 0 && started < total) || (total == 0 && cbv_now_ms() < end_ms)) {
				start(s, &pc, &pn, naddr);
				started++;
				running++;
			}
		}
		{
			int64_t turn = cbv_now_us() - t0;

			if (turn > st->max_turn_us)
				st->max_turn_us = turn;
			if (turn > 10000)
				st->held_us += turn;
		}
	}
	cbv_profile_clear(&pc);
	cbv_profile_clear(&pn);
	free(slots);
	free(fds);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* One measurement in a child process (fresh cache handles); prints its line. */
/*
 * "slow": Redis busy 90 ms out of every 100 (DEBUG SLEEP 0.09 in a loop on
 * a connection of its own) for secs seconds: every reply comes late, most
 * within cache_timeout (100 ms).  The pid of the process doing it.
 */
static pid_t slow_start(int secs)
{
	pid_t pid = fork();

	if (pid == 0) {
		redisContext *rc = redisConnect("127.0.0.1", rport);
		int64_t end = cbv_now_ms() + secs * 1000;

		while (rc != NULL && rc->err == 0 && cbv_now_ms() < end) {
			redisReply *rep = redisCommand(rc, "DEBUG SLEEP 0.09");

			if (rep == NULL)
				break;
			freeReplyObject(rep);
			usleep(10000);
		}
		_exit(0);
	}
	return pid;
}

static void measure(const char *name, int async, long total, int conc, int secs)
{
	pid_t pid, sleeper = 0;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct stats st;
		int64_t t0;
		double s;

		memset(&st, 0, sizeof(st));
		st.lat_cap = 1000000;
		st.lat_us = calloc((size_t)st.lat_cap, sizeof(*st.lat_us));
		cbv_log_set(quiet, NULL, CBV_LOG_ERR);
		cbv_cache_async_set(async);
		seq = 0;
		if (secs == 0) {
			t0 = cbv_now_us();
			loop(total, conc, 0, 500, 0, &st);
			s = (double)(cbv_now_us() - t0) / 1e6;
			printf("%-8s %-6s n=%ld hits=%ld seconds=%.2f rate=%.0f/s max_turn_ms=%.2f\n", name,
			       async ? "async" : "sync", st.done, st.hits, s, (double)st.done / s,
			       (double)st.max_turn_us / 1000.0);
		} else {
			redisContext *rc;
			redisReply *rep;

			/* the connection up first, then Redis stopped */
			loop(conc, conc, 0, 0, 0, &st);
			memset(&st, 0, sizeof(st));
			st.lat_cap = 1000000;
			st.lat_us = calloc((size_t)st.lat_cap, sizeof(*st.lat_us));
			if (strcmp(name, "slow") == 0)
				sleeper = slow_start(secs);
			else
				kill(redis_pid, SIGSTOP);
			t0 = cbv_now_us();
			loop(0, conc, 1, 0, cbv_now_ms() + secs * 1000, &st);
			s = (double)(cbv_now_us() - t0) / 1e6;
			kill(redis_pid, SIGCONT);
			if (sleeper > 0)
				waitpid(sleeper, NULL, 0);
			qsort(st.lat_us, (size_t)st.nlat, sizeof(*st.lat_us), cmp_i64);
			printf("%-8s %-6s n=%ld seconds=%.2f rate=%.0f/s max_turn_ms=%.2f held_ms=%.0f "
			       "uncached_lat_median_ms=%.2f uncached_lat_max_ms=%.2f\n",
			       name, async ? "async" : "sync", st.done, s, (double)st.done / s,
			       (double)st.max_turn_us / 1000.0, (double)st.held_us / 1000.0,
			       st.nlat > 0 ? (double)st.lat_us[st.nlat / 2] / 1000.0 : 0.0,
			       st.nlat > 0 ? (double)st.lat_us[st.nlat - 1] / 1000.0 : 0.0);
			/* let Redis answer what piled up, so the next measurement starts clean */
			rc = redisConnect("127.0.0.1", rport);
			if (rc != NULL && (rep = redisCommand(rc, "PING")) != NULL)
				freeReplyObject(rep);
			if (rc != NULL)
				redisFree(rc);
		}
		fflush(NULL);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
	long total = 20000;
	int conc = 64, secs = 3, opt;
	char self[4096], fake[4096], rp[16], spec[64], cmd[128];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	while ((opt = getopt(argc, argv, "n:c:s:")) != -1) {
		switch (opt) {
		case 'n': total = atol(optarg); break;
		case 'c': conc = atoi(optarg); break;
		case 's': secs = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench_redis_async [-n TOTAL] [-c CONC] [-s SECONDS]\n");
			return 2;
		}
	}
	if (n <= 0 || total <= 0 || conc <= 0 || secs <= 0)
		return 2;
	self[n] = '\0';
	snprintf(fake, sizeof(fake), "%s/../fakesmtp", dirname(self));
	snprintf(dir, sizeof(dir), "/tmp/bench_redis_async.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	rport = free_port();
	sport = free_port();
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", rport);
	snprintf(rp, sizeof(rp), "%d", rport);
	snprintf(spec, sizeof(spec), "127.0.0.1:%d=counting", sport);
	{
		const char *ra[] = { "redis-server", "--port", rp, "--bind", "127.0.0.1", "--save", "",
			             "--appendonly", "no", "--dir", dir, "--loglevel", "warning",
			             "--enable-debug-command", "local", NULL };
		const char *fa[] = { fake, spec, NULL };

		redis_pid = spawn(ra);
		smtp_pid = spawn(fa);
	}
	for (int i = 0; i < 500 && !(up(rport) && up(sport)); i++)
		usleep(10000);
	if (!up(rport) || !up(sport)) {
		printf("bench_redis_async: SKIP (cannot start redis-server or %s)\n", fake);
	} else {
		printf("bench_redis_async: one poll loop as in cbvd, cache_timeout 100ms, "
		       "%d at once, loopback\n",
		       conc);
		/* store the 500 addresses once, then every verification is a hit */
		measure("fill", 0, 500, conc, 0);
		measure("hit", 0, total, conc, 0);
		measure("hit", 1, total, conc, 0);
		measure("stopped", 0, 0, conc, secs);
		measure("stopped", 1, 0, conc, secs);
		measure("slow", 0, 0, conc, secs);
		measure("slow", 1, 0, conc, secs);
	}
	kill(redis_pid, SIGCONT);
	kill(redis_pid, SIGKILL);
	kill(smtp_pid, SIGTERM);
	waitpid(redis_pid, NULL, 0);
	waitpid(smtp_pid, NULL, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : 1;
}
