/*
 * profile - where the time of one verification goes, phase by phase.
 * Prints numbers; asserts nothing.  bench/profile.sh runs it (with perf
 * and strace around it) inside the loopback rig.
 *
 *   profile [-n N] CASE      N warm verifications in this process, then a
 *                            table: per phase, the median wall time and
 *                            the median CPU time of this process (user +
 *                            system); wall - CPU = waiting for the peer
 *   profile -1 CASE          one cold verification (a fresh process: the
 *                            per-process setup lands in the phases), the
 *                            same table with n=1; run it N times
 *   profile -1P CASE         the same after cbv_tls_preload() for the case's
 *                            TLS policy (what a daemon may do before it forks)
 *   profile -l N CASE        N verifications, no output (for perf/strace)
 *   profile -d SO            dlopen(SO, RTLD_LAZY) as Exim's ${dlfunc}
 *                            does: its wall and CPU time
 *   profile -c CONF          cbv_config_load(CONF): its wall and CPU time
 *
 * CASE: fast-literal (alice@[127.0.0.30], no DNS), fast (alice@fast.test),
 * exim (alice@exim.test, plain), exim-tls (STARTTLS, not verified),
 * exim-tls-verify (STARTTLS, verified against $CBV_RIG_CA_DIR).
 *
 * Phases are the gaps between the events of the SMTP conversation, from
 * the core's debug log (">>>" a command queued, "<<<" a reply parsed,
 * "TLS up") and its transcript hook (connecting), plus the call's start
 * and return.  A run whose event sequence differs from the first is not
 * counted.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cbv.h"
#include "cbv_clock.h"
#include "cbv_tls.h"

#define EV_MAX 32
#define LABEL_MAX 40

struct ev {
	char label[LABEL_MAX];
	int64_t wall_ns, cpu_ns;
};

static struct ev evs[EV_MAX];
static int nev;

static int64_t ns_of(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void mark(const char *label)
{
	if (nev >= EV_MAX)
		return;
	evs[nev].wall_ns = ns_of(CLOCK_MONOTONIC);
	evs[nev].cpu_ns = ns_of(CLOCK_PROCESS_CPUTIME_ID);
	snprintf(evs[nev].label, LABEL_MAX, "%s", label);
	nev++;
}

/* "host[ip] >>> EHLO x" -> ">EHLO"; "<<< 250-..." -> "<250"; "TLS up" */
static void log_sink(enum cbv_log_level level, const char *line, void *arg)
{
	const char *p;
	char label[LABEL_MAX];

	(void)arg;
	if (level != CBV_LOG_DEBUG)
		return;
	if ((p = strstr(line, "] >>> ")) != NULL) {
		size_t n = strcspn(p + 6, " :");

		snprintf(label, sizeof(label), ">%.*s", (int)(n < 12 ? n : 12), p + 6);
		mark(label);
	} else if ((p = strstr(line, "] <<< ")) != NULL) {
		snprintf(label, sizeof(label), "<%.3s", p + 6);
		mark(label);
	} else if (strstr(line, "] TLS up") != NULL) {
		mark("TLS up");
	}
}

static void trace(void *arg, enum cbv_trace kind, const char *text)
{
	(void)arg;
	(void)text;
	if (kind == CBV_TRACE_INIT)
		mark("connect");
}

static const struct {
	const char *name, *addr, *opts;
} cases[] = {
	{ "fast-literal", "alice@[127.0.0.30]", "starttls=never" },
	{ "fast", "alice@fast.test", "starttls=never" },
	{ "exim", "alice@exim.test", "starttls=never" },
	{ "exim-tls", "alice@exim.test", "starttls=require tls_verify=no" },
	{ "exim-tls-verify", "alice@exim.test", "starttls=require tls_verify=yes" },
};

static int setup(struct cbv_profile *p, const char *opts)
{
	struct cbv_err err;
	const char *ca = getenv("CBV_RIG_CA_DIR");
	char buf[256], *save = NULL;

	cbv_profile_defaults(p);
	if (cbv_profile_set(p, "cache", "", &err) != CBV_OK ||
	    cbv_profile_set(p, "dns_servers", getenv("CBV_RIG_DNS"), &err) != CBV_OK ||
	    cbv_profile_set(p, "port", getenv("CBV_RIG_PORT"), &err) != CBV_OK ||
	    cbv_profile_set(p, "deny_networks", "", &err) != CBV_OK ||
	    cbv_profile_set(p, "helo", "bench.test", &err) != CBV_OK ||
	    cbv_profile_set(p, "ca_dir", ca != NULL ? ca : "", &err) != CBV_OK) {
		fprintf(stderr, "profile: %s\n", err.msg);
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *kv = strtok_r(buf, " ", &save); kv != NULL; kv = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(kv, '=');

		if (eq == NULL)
			continue;
		*eq = '\0';
		if (cbv_profile_set(p, kv, eq + 1, &err) != CBV_OK) {
			fprintf(stderr, "profile: %s\n", err.msg);
			return -1;
		}
	}
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static double median_us(int64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_i64);
	return (n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0) / 1000.0;
}

/* -d SO / -c CONF: one timed step of the per-process setup. */
static int one_step(const char *what, const char *arg)
{
	int64_t w0 = ns_of(CLOCK_MONOTONIC), c0 = ns_of(CLOCK_PROCESS_CPUTIME_ID);
	int ok;

	if (strcmp(what, "-d") == 0) {
		ok = dlopen(arg, RTLD_LAZY) != NULL;
	} else {
		struct cbv_err err;
		struct cbv_config *c = cbv_config_load(arg, 0, NULL, &err);

		ok = c != NULL;
		cbv_config_free(c);
	}
	if (!ok) {
		fprintf(stderr, "profile: %s %s failed\n", what, arg);
		return 1;
	}
	printf("%s %.1f %.1f\n", what, (ns_of(CLOCK_MONOTONIC) - w0) / 1000.0,
	       (ns_of(CLOCK_PROCESS_CPUTIME_ID) - c0) / 1000.0);
	return 0;
}

int main(int argc, char **argv)
{
	int n = 200, quiet = 0, counted = 0, ref_nev = 0, preload = 0, c;
	struct ev ref[EV_MAX];
	int64_t *wall[EV_MAX], *cpu[EV_MAX], *tot_w, *tot_c;
	struct cbv_profile p;
	const char *name;
	size_t k;

	if (argc == 3 && (strcmp(argv[1], "-d") == 0 || strcmp(argv[1], "-c") == 0))
		return one_step(argv[1], argv[2]);
	if (argc == 4 && strcmp(argv[1], "-n") == 0) {
		n = atoi(argv[2]);
	} else if (argc == 4 && strcmp(argv[1], "-l") == 0) {
		n = atoi(argv[2]);
		quiet = 1;
	} else if (argc == 3 && (strcmp(argv[1], "-1") == 0 || strcmp(argv[1], "-1P") == 0)) {
		n = 1;
		preload = argv[1][2] == 'P';
	} else if (argc != 2) {
		n = 0;
	}
	name = argv[argc - 1];
	for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
		if (strcmp(cases[k].name, name) == 0)
			break;
	if (n < 1 || k == sizeof(cases) / sizeof(cases[0]) || getenv("CBV_RIG_DNS") == NULL ||
	    getenv("CBV_RIG_PORT") == NULL) {
		fprintf(stderr, "usage: profile [-n N | -1 | -1P | -l N] CASE | -d SO | -c CONF"
		                "  (inside tests/rig/rig.sh run)\n");
		return 64;
	}
	if (setup(&p, cases[k].opts) != 0)
		return 1;
	if (preload) {
		struct cbv_err err;

		if (cbv_tls_preload(p.tls_verify, p.ca_dir, &err) != 0) {
			fprintf(stderr, "profile: %s\n", err.msg);
			return 1;
		}
	}
	cbv_log_set(log_sink, NULL, CBV_LOG_DEBUG);
	for (int i = 0; i < EV_MAX; i++) {
		wall[i] = calloc((size_t)n, sizeof(int64_t));
		cpu[i] = calloc((size_t)n, sizeof(int64_t));
		if (wall[i] == NULL || cpu[i] == NULL)
			return 70;
	}
	tot_w = calloc((size_t)n, sizeof(int64_t));
	tot_c = calloc((size_t)n, sizeof(int64_t));
	if (tot_w == NULL || tot_c == NULL)
		return 70;
	for (int i = 0; i < n; i++) {
		struct cbv_request req = { .address = cases[k].addr, .trace = trace };
		struct cbv_result *r = NULL;
		struct cbv_err err;
		int same;

		nev = 0;
		mark("start");
		if (cbv_verify(&p, &req, &r, &err) != CBV_OK) {
			fprintf(stderr, "profile: %s\n", err.msg);
			return 1;
		}
		mark("return");
		if (r->verdict != CBV_PASS) {
			fprintf(stderr, "profile: %s: %s %s\n", name, cbv_verdict_name(r->verdict),
			        r->message);
			return 1;
		}
		cbv_result_free(r);
		if (i == 0) {
			memcpy(ref, evs, sizeof(ref));
			ref_nev = nev;
		}
		same = nev == ref_nev;
		for (int e = 0; same && e < nev; e++)
			same = strcmp(evs[e].label, ref[e].label) == 0;
		if (!same)
			continue;
		for (int e = 1; e < nev; e++) {
			wall[e][counted] = evs[e].wall_ns - evs[e - 1].wall_ns;
			cpu[e][counted] = evs[e].cpu_ns - evs[e - 1].cpu_ns;
		}
		tot_w[counted] = evs[nev - 1].wall_ns - evs[0].wall_ns;
		tot_c[counted] = evs[nev - 1].cpu_ns - evs[0].cpu_ns;
		counted++;
	}
	cbv_profile_clear(&p);
	if (quiet)
		return 0;
	printf("# %s: %s (%s), %d of %d runs with the same events\n", name, cases[k].addr,
	       cases[k].opts, counted, n);
	printf("%-28s %10s %10s %10s\n", "phase (from > to)", "wall us", "cpu us", "wait us");
	for (c = 1; c < ref_nev; c++) {
		char label[2 * LABEL_MAX + 4];
		double w = median_us(wall[c], counted), u = median_us(cpu[c], counted);

		snprintf(label, sizeof(label), "%.39s > %.39s", ref[c - 1].label, ref[c].label);
		printf("%-28s %10.1f %10.1f %10.1f\n", label, w, u, w > u ? w - u : 0.0);
	}
	{
		double w = median_us(tot_w, counted), u = median_us(tot_c, counted);

		printf("%-28s %10.1f %10.1f %10.1f\n", "total (median of totals)", w, u,
		       w > u ? w - u : 0.0);
	}
	return 0;
}
