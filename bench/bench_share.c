/*
 * bench_share.c - what the cache store saves a fresh process (issue 9,
 * items 1 and 2): each verification runs in a new child process (forked
 * from a parent that never touched OpenSSL, c-ares or the cache, so the
 * child starts as an Exim connection's process does), STARTTLS required,
 * alice@exim.test at the rig's Exim 127.0.0.12 that issues TLS tickets,
 * DNS from a dnsmasq with TTLs (bench/share_bench.sh starts it).  The
 * child times cbv_verify() alone and reports it, whether it resumed, and
 * how many DNS queries it sent.
 *
 *   cold      an empty store each time: full handshake, MX + A + AAAA
 *   warm      the store of the runs before: resumed, no DNS
 *   warm, no TLS sessions   cache_tls_sessions = no: full handshake, no DNS
 *   warm, no DNS answers    cache_dns = no: resumed, with DNS
 *   no cache  cache = "": full handshake, DNS
 *   plain text, warm store  starttls = never: no TLS at all, no DNS (what
 *             a fresh process costs without the handshake)
 * The same for tls_verify = yes (verified against the rig's CA), and the
 * warm case on Redis when BENCH_REDIS names one.
 *
 * Usage: bench_share [-n N]   (environment: CBV_RIG_PORT, CBV_RIG_CA_DIR,
 * BENCH_DNS "127.0.0.1:PORT", BENCH_DIR a scratch directory, BENCH_REDIS)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cbv.h"
#include "cbv_clock.h"
#include "cbv_dns.h"

struct sample {
	int64_t us;
	int ok, tls, resumed;
	unsigned long queries;
};

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Builds the profile: the rig, caps off, verdicts never cached, opts "k=v k=v". */
static int profile(struct cbv_profile *p, const char *cache, const char *opts)
{
	struct cbv_err err;
	char buf[512], *save = NULL;
	const char *ca = getenv("CBV_RIG_CA_DIR");
	static const char *const fixed[][2] = {
		{ "deny_networks", "" },
		{ "starttls", "require" },
		{ "helo", "bench.test" },
		{ "cache_pass_ttl", "0" },
		{ "domain_max_concurrency", "0" },
		{ "domain_max_rate", "0" },
		{ "host_max_concurrency", "0" },
	};

	cbv_profile_defaults(p);
	if (cbv_profile_set(p, "cache", cache, &err) != CBV_OK ||
	    cbv_profile_set(p, "dns_servers", getenv("BENCH_DNS"), &err) != CBV_OK ||
	    cbv_profile_set(p, "port", getenv("CBV_RIG_PORT"), &err) != CBV_OK ||
	    cbv_profile_set(p, "ca_dir", ca != NULL ? ca : "", &err) != CBV_OK) {
		fprintf(stderr, "bench_share: %s\n", err.msg);
		return -1;
	}
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (cbv_profile_set(p, fixed[i][0], fixed[i][1], &err) != CBV_OK) {
			fprintf(stderr, "bench_share: %s: %s\n", fixed[i][0], err.msg);
			return -1;
		}
	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *kv = strtok_r(buf, " ", &save); kv != NULL; kv = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(kv, '=');

		if (eq != NULL)
			*eq = '\0';
		if (eq == NULL || cbv_profile_set(p, kv, eq + 1, &err) != CBV_OK) {
			fprintf(stderr, "bench_share: %s: bad option\n", kv);
			return -1;
		}
	}
	return 0;
}

/* One verification in a new process; its sample. */
static struct sample one(const struct cbv_profile *p)
{
	struct sample s = { 0, 0, 0, 0, 0 };
	int fd[2], status;
	pid_t pid;

	if (pipe(fd) != 0)
		return s;
	pid = fork();
	if (pid == 0) {
		struct cbv_request req = { .address = "alice@exim.test" };
		struct cbv_result *r = NULL;
		struct cbv_dns_stats st;
		struct cbv_err err;
		int64_t t0;
		size_t n;

		close(fd[0]);
		t0 = cbv_now_us();
		if (cbv_verify(p, &req, &r, &err) == CBV_OK) {
			s.us = cbv_now_us() - t0;
			n = strlen(r->tls);
			s.ok = r->verdict == CBV_PASS;
			s.tls = n > 0;
			s.resumed = n > 8 && strcmp(r->tls + n - 8, ":resumed") == 0;
			if (!s.ok)
				fprintf(stderr, "bench_share: %s %s: %s [%s]\n",
				        cbv_verdict_name(r->verdict), cbv_reason_name(r->reason),
				        r->message, r->tls);
		}
		cbv_dns_stats(&st);
		s.queries = st.queries;
		if (write(fd[1], &s, sizeof(s)) != (ssize_t)sizeof(s))
			_exit(1);
		_exit(0);
	}
	close(fd[1]);
	if (pid < 0 || read(fd[0], &s, sizeof(s)) != (ssize_t)sizeof(s))
		memset(&s, 0, sizeof(s));
	close(fd[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	return s;
}

/* Removes the LMDB store at path (and its lock file). */
static void wipe(const char *path)
{
	char lock[600];

	snprintf(lock, sizeof(lock), "%s-lock", path);
	unlink(path);
	unlink(lock);
}

/*
 * n fresh-process verifications with cache and opts; cold: the store
 * wiped before each.  Prints a line; returns the median in ms, -1 on error.
 */
static double run(const char *name, const char *cache, const char *opts, int cold, int n,
                  int64_t *us)
{
	struct cbv_profile p;
	int resumed = 0;
	unsigned long queries = 0;

	if (profile(&p, cache, opts) != 0)
		return -1;
	if (!cold)
		(void)one(&p); /* warms the store, unmeasured */
	for (int i = 0; i < n; i++) {
		struct sample s;

		if (cold && strncmp(cache, "redis", 5) != 0)
			wipe(cache);
		s = one(&p);
		if (!s.ok || (!s.tls && strstr(opts, "starttls=never") == NULL)) {
			fprintf(stderr, "bench_share: %s: no pass over TLS\n", name);
			cbv_profile_clear(&p);
			return -1;
		}
		us[i] = s.us;
		resumed += s.resumed;
		queries += s.queries;
	}
	cbv_profile_clear(&p);
	qsort(us, (size_t)n, sizeof(*us), cmp_i64);
	printf("%-40s n=%-4d median %7.3f ms  p10 %7.3f  p90 %7.3f  resumed %3d/%d  DNS queries %.1f\n",
	       name, n, us[n / 2] / 1000.0, us[n / 10] / 1000.0, us[(n * 9) / 10] / 1000.0, resumed,
	       n, (double)queries / n);
	return us[n / 2] / 1000.0;
}

int main(int argc, char **argv)
{
	const char *dir = getenv("BENCH_DIR"), *redis = getenv("BENCH_REDIS");
	char store[512];
	int n = 100, opt;
	int64_t *us;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n' || (n = atoi(optarg)) < 10) {
			fprintf(stderr, "usage: bench_share [-n N>=10]\n");
			return 64;
		}
	}
	if (dir == NULL || getenv("BENCH_DNS") == NULL || getenv("CBV_RIG_PORT") == NULL) {
		fprintf(stderr, "bench_share: run from bench/share_bench.sh inside the rig\n");
		return 64;
	}
	us = calloc((size_t)n, sizeof(*us));
	if (us == NULL)
		return 1;
	{
		double plain;

		snprintf(store, sizeof(store), "%s/cbv-plain", dir);
		plain = run("plain text (starttls=never): warm store", store, "starttls=never", 0, n,
		            us);
		wipe(store);
		if (plain < 0)
			return 1;
		printf("RESULT shared_store_plain_warm_median_ms %.3f\n", plain);
	}
	for (int v = 0; v < 2; v++) {
		const char *vo = v ? "tls_verify=yes" : "tls_verify=no";
		const char *what = v ? "verified" : "unverified";
		char name[5][96], o2[128], o3[128];
		double cold, warm, notls, nodns, none;

		snprintf(store, sizeof(store), "%s/cbv-%s", dir, what);
		snprintf(name[0], sizeof(name[0]), "%s: cold store", what);
		snprintf(name[1], sizeof(name[1]), "%s: warm store", what);
		snprintf(name[2], sizeof(name[2]), "%s: warm, cache_tls_sessions=no", what);
		snprintf(name[3], sizeof(name[3]), "%s: warm, cache_dns=no", what);
		snprintf(name[4], sizeof(name[4]), "%s: no cache", what);
		snprintf(o2, sizeof(o2), "%s cache_tls_sessions=no", vo);
		snprintf(o3, sizeof(o3), "%s cache_dns=no", vo);
		cold = run(name[0], store, vo, 1, n, us);
		wipe(store);
		warm = run(name[1], store, vo, 0, n, us);
		wipe(store);
		notls = run(name[2], store, o2, 0, n, us);
		wipe(store);
		nodns = run(name[3], store, o3, 0, n, us);
		wipe(store);
		none = run(name[4], "", vo, 0, n, us);
		if (cold < 0 || warm < 0 || notls < 0 || nodns < 0 || none < 0)
			return 1;
		printf("RESULT shared_store_%s_median_ms cold %.3f warm %.3f (%.2fx) "
		       "warm_no_tls %.3f warm_no_dns %.3f no_cache %.3f\n",
		       what, cold, warm, cold / warm, notls, nodns, none);
		if (redis != NULL && redis[0] != '\0') {
			char rn[96];
			double r;

			snprintf(rn, sizeof(rn), "%s: warm Redis store", what);
			r = run(rn, redis, vo, 0, n, us);
			if (r < 0)
				return 1;
			printf("RESULT shared_store_%s_redis_median_ms warm %.3f\n", what, r);
		}
	}
	free(us);
	return 0;
}
