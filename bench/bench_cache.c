/*
 * bench_cache - what the verification cache costs: a lookup that hits
 * (the library call cbv.so makes before DNS), a store, a single-flight
 * lease and a domain cap, on a small store and on one holding N records
 * (default 1 million), with the file size.  Prints numbers; asserts
 * nothing.  Needs no rig: it works in a mkdtemp directory under TMPDIR.
 *
 * Then the same through Redis (when redis-server is installed): it starts
 * one on a free loopback port (no persistence), measures a hit, a miss, a
 * flight and a cap, bytes per record (INFO used_memory over 10000
 * records), a storm over 4 simulated hosts, and an outage: the first call
 * after Redis dies, and the calls during the backoff.  Run it in `unshare -n` like other servers.
 *
 *   bench_cache [-n RECORDS] [-m MAP_MB] [-l LOOKUPS] [-R]   (-R: Redis only)
 *
 * Records look like real ones: a two-line RCPT reply, an EHLO reply of
 * eight lines, a greeting, a TLS description (about 600 bytes of text).
 */
#define _GNU_SOURCE /* nftw's FTW_DEPTH|FTW_PHYS */
#include <arpa/inet.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cbv_cache.h"
#include "cbv_log.h"

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *name, int64_t *ns, long n)
{
	qsort(ns, (size_t)n, sizeof(*ns), cmp_i64);
	printf("%-44s n=%-8ld median %8.2f us  p99 %8.2f us  max %9.2f us\n", name, n,
	       ns[n / 2] / 1000.0, ns[(n * 99) / 100] / 1000.0, ns[n - 1] / 1000.0);
}

static void sink(enum cbv_log_level level, const char *line, void *arg)
{
	(void)arg;
	if (level <= CBV_LOG_WARN)
		fprintf(stderr, "bench_cache: %s\n", line);
}

static struct cbv_result *sample(void)
{
	struct cbv_result *r = cbv_result_new();

	if (r == NULL)
		exit(1);
	r->verdict = CBV_PASS;
	r->reason = CBV_R_ACCEPTED;
	r->code = 250;
	snprintf(r->ecode, sizeof(r->ecode), "2.1.5");
	cbv_result_set(&r->message, "250 2.1.5 <someone@example.test>... Recipient ok");
	cbv_result_set(&r->rcpt, "someone@example.test");
	cbv_result_set(&r->address, "someone@example.test");
	cbv_result_set(&r->host, "mx1.mail.example.test");
	cbv_result_set(&r->ip, "192.0.2.25:25");
	cbv_result_set(&r->greeting, "220 mx1.mail.example.test ESMTP Exim 4.96 Tue, 01 Dec 2026 "
	                             "12:00:00 +0000");
	cbv_result_set(&r->helo, "250-mx1.mail.example.test Hello verifier.example.org [198.51.100.7]\n"
	                         "250-SIZE 52428800\n250-8BITMIME\n250-PIPELINING\n"
	                         "250-PIPE_CONNECT\n250-CHUNKING\n250-STARTTLS\n250-SMTPUTF8\n"
	                         "250 HELP");
	cbv_result_set(&r->sent, "RCPT TO:<someone@example.test>");
	cbv_result_set(&r->recv, "250 2.1.5 <someone@example.test>... Recipient ok");
	snprintf(r->tls, sizeof(r->tls), "TLSv1.3:TLS_AES_256_GCM_SHA384:unverified");
	r->elapsed_ms = 5;
	r->hosts_tried = 1;
	return r;
}

static char dir[256];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p);
}

static void key_for(long i, char *local, size_t n, struct cbv_cache_key *k, char *domain,
                    size_t dn)
{
	snprintf(local, n, "user%ld", i);
	snprintf(domain, dn, "d%ld.example.test", i % 5000);
	k->domain = domain;
	k->local = local;
	k->sender = "";
	k->port = 25;
	k->fp = "starttls=1 mode=0 host= helo= max_hosts=5";
	k->fp_len = strlen(k->fp);
}

/* ---- Redis ---- */

static pid_t redis_pid;
static int redis_port;

static unsigned long long redis_used_memory(void)
{
	struct timeval tv = { 1, 0 };
	redisContext *rc = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
	redisReply *rep;
	unsigned long long v = 0;
	const char *p;

	if (rc == NULL || rc->err != 0) {
		if (rc != NULL)
			redisFree(rc);
		return 0;
	}
	rep = redisCommand(rc, "INFO memory");
	if (rep != NULL && rep->type == REDIS_REPLY_STRING &&
	    (p = strstr(rep->str, "\nused_memory:")) != NULL)
		v = strtoull(p + 13, NULL, 10);
	if (rep != NULL)
		freeReplyObject(rep);
	redisFree(rc);
	return v;
}

/* Starts redis-server on a free loopback port; 0 when it answers. */
static int redis_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char p[16];

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		return -1;
	redis_port = ntohs(sa.sin_port);
	close(fd);
	snprintf(p, sizeof(p), "%d", redis_port);
	fflush(NULL); /* the child must not print our buffered lines again */
	redis_pid = fork();
	if (redis_pid < 0)
		return -1;
	if (redis_pid == 0) {
		const char *argv[] = { "redis-server", "--port", p, "--bind", "127.0.0.1",
			               "--save", "", "--appendonly", "no", "--dir", dir,
			               "--loglevel", "warning", "--logfile", "", NULL };

		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(126);
		execvp("redis-server", (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		if (redis_used_memory() > 0)
			return 0;
		usleep(10000);
	}
	return -1;
}

static void redis_stop(void)
{
	if (redis_pid > 0) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
	}
	redis_pid = 0;
}

/*
 * The storm over 4 simulated hosts (processes, a handle each) sharing one
 * Redis: each verifies 250 times among 50 addresses of one domain, a
 * "callout" being a 20 ms sleep under the single-flight lease.  Prints the
 * callouts made (1 per address is the goal) and the wall time.
 */
static void storm(const char *url, struct cbv_result *r)
{
	int fds[2], callouts = 0, answered = 0;
	int64_t t0 = now_ns();
	pid_t kids[4];
	char ch;

	if (pipe(fds) != 0)
		return;
	fflush(NULL);
	for (int h = 0; h < 4; h++) {
		kids[h] = fork();
		if (kids[h] != 0)
			continue;
		close(fds[0]);
		struct cbv_cache *c = cbv_cache_new(url, 0);
		struct cbv_cache_ttl ttl;

		cbv_cache_ttl_defaults(&ttl);
		for (int n = 0; n < 250 && c != NULL; n++) {
			char local[16];
			struct cbv_cache_key k = { "storm.example.test", local, "", 25, "fp", 2 };

			snprintf(local, sizeof(local), "u%d", (n * 7 + h * 13) % 50);
			for (;;) {
				uint64_t t = 0;
				struct cbv_result *got = NULL;
				enum cbv_cache_status st = cbv_cache_flight_begin(c, &k, 60, &t, NULL);

				if (st == CBV_CACHE_BUSY) {
					usleep(2000);
					continue;
				}
				if (st == CBV_CACHE_OWN || st == CBV_CACHE_OFF) {
					usleep(20000);
					cbv_cache_store(c, &k, r, &ttl, t);
					ch = 'C';
				} else {
					cbv_cache_lookup(c, &k, &got, NULL);
					cbv_result_free(got);
					ch = 'A';
				}
				break;
			}
			if (write(fds[1], &ch, 1) != 1)
				_exit(1);
		}
		cbv_cache_free(c);
		_exit(0);
	}
	close(fds[1]);
	while (read(fds[0], &ch, 1) == 1) {
		callouts += ch == 'C';
		answered += ch == 'A';
	}
	close(fds[0]);
	for (int h = 0; h < 4; h++)
		if (kids[h] > 0)
			waitpid(kids[h], NULL, 0); /* not wait(): redis-server is our child too */
	printf("%-44s %d callouts for 50 addresses, %d answered by the cache, %.0f ms wall\n",
	       "redis storm, 4 hosts x 250 verifications", callouts, answered,
	       (now_ns() - t0) / 1e6);
}

/*
 * What the counters for operators (cbv_cache_count()) add to one
 * verification: a hit (lookup, then the counters on their own: an LMDB
 * write transaction, or HINCRBYs sent without awaiting a reply) and a
 * miss's store (the counters in the store's own transaction on LMDB).
 * Records 0..have-1 exist; keys from fresh on are new.
 */
static void bench_counters(struct cbv_cache *c, const char *tag, struct cbv_result *r, long have,
                           long fresh, long n, int64_t *ns)
{
	static const struct cbv_stats_event hit = { CBV_PASS, CBV_R_ACCEPTED, CBV_STATS_LMDB,
		                                    CBV_STATS_HIT, CBV_STATS_CAP_NONE, 400 };
	static const struct cbv_stats_event miss = { CBV_PASS, CBV_R_ACCEPTED, CBV_STATS_LMDB,
		                                     CBV_STATS_MISS, CBV_STATS_CAP_NONE, 120000 };
	char local[64], domain[64], name[64];
	struct cbv_cache_key k;
	struct cbv_cache_ttl ttl;
	struct cbv_result *got;
	int64_t t0, t1, *alone = malloc((size_t)n * sizeof(*alone));

	if (alone == NULL)
		return;
	cbv_cache_ttl_defaults(&ttl);
	for (int with = 0; with < 2; with++) {
		for (long i = 0; i < n; i++) {
			key_for(i % have, local, sizeof(local), &k, domain, sizeof(domain));
			t0 = now_ns();
			if (cbv_cache_lookup(c, &k, &got, NULL) == CBV_CACHE_HIT)
				cbv_result_free(got);
			t1 = now_ns();
			if (with) {
				cbv_cache_count(c, &hit);
				cbv_cache_count_flush(c);
			}
			ns[i] = now_ns() - t0;
			alone[i] = now_ns() - t1;
		}
		snprintf(name, sizeof(name), "%shit%s", tag, with ? " + counters" : "");
		report(name, ns, n);
	}
	snprintf(name, sizeof(name), "%sthe counters' call alone", tag);
	report(name, alone, n);
	free(alone);
	for (int with = 0; with < 2; with++) {
		for (long i = 0; i < n; i++) {
			key_for(fresh + with * n + i, local, sizeof(local), &k, domain, sizeof(domain));
			t0 = now_ns();
			if (with)
				cbv_cache_count(c, &miss);
			cbv_cache_store(c, &k, r, &ttl, 0);
			if (with)
				cbv_cache_count_flush(c);
			ns[i] = now_ns() - t0;
		}
		snprintf(name, sizeof(name), "%sstore%s", tag, with ? " + counters" : "");
		report(name, ns, n);
	}
}

static void bench_redis(struct cbv_result *r, long lookups, int64_t *ns)
{
	char url[64], local[64], domain[64];
	struct cbv_cache_key k;
	struct cbv_cache_ttl ttl;
	struct cbv_cache_caps caps;
	struct cbv_result *got;
	struct cbv_cache *c;
	unsigned long long m0, m1;
	uint64_t ticket;
	int64_t t0;
	long n = 10000;

	if (redis_start() != 0) {
		printf("redis: SKIP (no redis-server)\n");
		redis_stop();
		return;
	}
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", redis_port);
	printf("redis %s (hiredis, cache_timeout 100ms, loopback)\n", url);
	cbv_cache_ttl_defaults(&ttl);
	cbv_cache_caps_defaults(&caps);
	caps.rate_count = 0;
	c = cbv_cache_new(url, 0);
	if (c == NULL || !cbv_cache_usable(c)) {
		printf("redis: cannot use %s\n", url);
		cbv_cache_free(c);
		redis_stop();
		return;
	}
	m0 = redis_used_memory();
	for (long i = 0; i < n; i++) {
		key_for(i, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		cbv_cache_store(c, &k, r, &ttl, 0);
		ns[i] = now_ns() - t0;
	}
	m1 = redis_used_memory();
	report("redis store (10000 records)", ns, n);
	printf("%-44s %.0f bytes a record (INFO used_memory over %ld records)\n", "redis size",
	       m1 > m0 ? (double)(m1 - m0) / (double)n : 0.0, n);
	for (long i = 0; i < lookups; i++) {
		key_for(i % n, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		if (cbv_cache_lookup(c, &k, &got, NULL) != CBV_CACHE_HIT) {
			printf("redis: record %ld missing\n", i % n);
			break;
		}
		ns[i] = now_ns() - t0;
		cbv_result_free(got);
		if (i == lookups - 1)
			report("redis lookup, hit, result built", ns, lookups);
	}
	for (long i = 0; i < lookups; i++) {
		key_for(n + i, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		cbv_cache_lookup(c, &k, &got, NULL);
		ns[i] = now_ns() - t0;
	}
	report("redis lookup, miss", ns, lookups);
	for (long i = 0; i < n; i++) {
		key_for(2 * n + lookups + i, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		cbv_cache_flight_begin(c, &k, 60, &ticket, NULL);
		cbv_cache_store(c, &k, r, &ttl, ticket);
		ns[i] = now_ns() - t0;
	}
	report("redis flight_begin + store", ns, n);
	for (long i = 0; i < n; i++) {
		key_for(i, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		if (cbv_cache_domain_acquire(c, domain, &caps, &ticket, NULL, NULL) == CBV_CACHE_OK)
			cbv_cache_domain_release(c, domain, ticket);
		ns[i] = now_ns() - t0;
	}
	report("redis domain_acquire + release", ns, n);
	bench_counters(c, "redis counters: ", r, n, 10 * n, n, ns);
	storm(url, r);
	/* the outage: Redis dies; the first call finds out, the next ones are in backoff */
	redis_stop();
	key_for(0, local, sizeof(local), &k, domain, sizeof(domain));
	t0 = now_ns();
	cbv_cache_lookup(c, &k, &got, NULL);
	printf("%-44s %8.2f us (connection refused; a silent host costs cache_timeout)\n",
	       "redis down: first call", (now_ns() - t0) / 1000.0);
	for (long i = 0; i < n; i++) {
		t0 = now_ns();
		cbv_cache_lookup(c, &k, &got, NULL);
		ns[i] = now_ns() - t0;
	}
	report("redis down: lookup in backoff (added/call)", ns, n);
	cbv_cache_free(c);
}

int main(int argc, char **argv)
{
	long records = 1000000, lookups = 200000;
	size_t map_mb = 2048;
	const char *tmp = getenv("TMPDIR");
	char path[300], local[64], domain[64];
	struct cbv_cache_key k;
	struct cbv_cache_ttl ttl;
	struct cbv_cache_caps caps;
	struct cbv_cache_stats st;
	struct cbv_result *r = sample(), *got;
	struct cbv_cache *c;
	int64_t *ns, t0, fill0;
	uint64_t ticket;
	int opt, redis_only = 0;

	while ((opt = getopt(argc, argv, "n:m:l:R")) != -1) {
		if (opt == 'R')
			redis_only = 1;
		else if (opt == 'n')
			records = atol(optarg);
		else if (opt == 'm')
			map_mb = (size_t)atol(optarg);
		else if (opt == 'l')
			lookups = atol(optarg);
		else {
			fprintf(stderr, "usage: bench_cache [-n RECORDS] [-m MAP_MB] [-l LOOKUPS] [-R]\n");
			return 2;
		}
	}
	if (records < 1000)
		records = 1000;
	if (lookups < 100)
		lookups = 100;
	snprintf(dir, sizeof(dir), "%s/bench_cache.XXXXXX", tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror(dir);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/cbv", dir);
	cbv_log_set(sink, NULL, CBV_LOG_WARN);
	cbv_cache_ttl_defaults(&ttl);
	cbv_cache_caps_defaults(&caps);
	caps.rate_count = 0;
	c = cbv_cache_new(path, map_mb * 1024 * 1024);
	ns = malloc(sizeof(*ns) * (size_t)(lookups > records ? lookups : records) + 10000 * sizeof(*ns));
	if (c == NULL || ns == NULL || !cbv_cache_usable(c)) {
		fprintf(stderr, "bench_cache: cannot open %s\n", path);
		return 1;
	}
	printf("store %s, map %zu MB, MDB_NOSYNC\n", path, map_mb);

	/* a small store: 1000 records */
	for (long i = 0; i < 1000; i++) {
		key_for(i, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		cbv_cache_store(c, &k, r, &ttl, 0);
		ns[i] = now_ns() - t0;
	}
	report("store (1000 records)", ns, 1000);
	for (long i = 0; i < lookups; i++) {
		key_for(i % 1000, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		if (cbv_cache_lookup(c, &k, &got, NULL) != CBV_CACHE_HIT)
			return 1;
		ns[i] = now_ns() - t0;
		cbv_result_free(got);
	}
	report("lookup, hit, result built (1000 records)", ns, lookups);
	for (long i = 0; i < lookups; i++) {
		key_for(1000 + i, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		cbv_cache_lookup(c, &k, &got, NULL);
		ns[i] = now_ns() - t0;
	}
	report("lookup, miss (1000 records)", ns, lookups);
	for (long i = 0; i < 10000; i++) {
		key_for(100000 + i, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		cbv_cache_flight_begin(c, &k, 60, &ticket, NULL);
		cbv_cache_store(c, &k, r, &ttl, ticket);
		ns[i] = now_ns() - t0;
	}
	report("flight_begin + store (ends the flight)", ns, 10000);
	for (long i = 0; i < 10000; i++) {
		key_for(i, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		if (cbv_cache_domain_acquire(c, domain, &caps, &ticket, NULL, NULL) == CBV_CACHE_OK)
			cbv_cache_domain_release(c, domain, ticket);
		ns[i] = now_ns() - t0;
	}
	report("domain_acquire + release", ns, 10000);
	bench_counters(c, "counters: ", r, 1000, 300000, 10000, ns);
	bench_redis(r, lookups, ns);
	if (redis_only)
		records = 0;

	/* the big store */
	if (records == 0)
		goto done;
	fill0 = now_ns();
	for (long i = 0; i < records; i++) {
		key_for(i, local, sizeof(local), &k, domain, sizeof(domain));
		cbv_cache_store(c, &k, r, &ttl, 0);
	}
	printf("%-44s %ld records in %.1f s (%.1f us each)\n", "fill", records,
	       (now_ns() - fill0) / 1e9, (now_ns() - fill0) / 1e3 / (double)records);
	srand(7);
	for (long i = 0; i < lookups; i++) {
		long j = ((long)rand() * 65536L + rand()) % records;

		key_for(j, local, sizeof(local), &k, domain, sizeof(domain));
		t0 = now_ns();
		if (cbv_cache_lookup(c, &k, &got, NULL) != CBV_CACHE_HIT) {
			fprintf(stderr, "bench_cache: record %ld missing (evicted: map too small?)\n", j);
			break;
		}
		ns[i] = now_ns() - t0;
		cbv_result_free(got);
		if (i == lookups - 1) {
			char name[64];

			snprintf(name, sizeof(name), "lookup, hit, random of %ld", records);
			report(name, ns, lookups);
		}
	}
	if (cbv_cache_stats(c, &st) == 0)
		printf("%-44s %lu address records, file %.1f MB, in use %.1f MB of a %.0f MB map "
		       "(%.0f bytes a record)\n",
		       "size", st.by_kind[CBV_CACHE_ADDRESS], st.file_bytes / 1048576.0,
		       st.used_bytes / 1048576.0, st.map_bytes / 1048576.0,
		       st.by_kind[CBV_CACHE_ADDRESS] ? (double)st.used_bytes /
		                                         (double)st.by_kind[CBV_CACHE_ADDRESS]
		                                   : 0.0);
	{
		long purged;

		t0 = now_ns();
		purged = cbv_cache_purge(c);
		printf("%-44s %ld expired (none due): %.1f ms for a full scan\n", "purge", purged,
		       (now_ns() - t0) / 1e6);
	}
done:
	cbv_cache_free(c);
	cbv_result_free(r);
	free(ns);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
