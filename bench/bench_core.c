/*
 * bench_core - how long one verification takes through the core engine,
 * against the loopback rig, compared with a bare socket exchange of the
 * same SMTP commands.  Prints numbers; asserts nothing.
 *
 *   bench_core [-n N]      (inside tests/rig/rig.sh run; needs CBV_RIG_DNS/PORT)
 *
 * Cases:
 *   exim    alice@exim.test (real Exim MX, DNS, STARTTLS never / opportunistic)
 *   fast    alice@fast.test (scripted fast MTA, DNS)
 *   fast-literal  alice@[127.0.0.30] (no DNS)  vs  bare: connect, greeting,
 *           EHLO, MAIL+RCPT (pipelined, as cbv does), QUIT, close
 *   exim-bare     the same bare exchange with the Exim MX, waiting for the 221
 *           as a classic client does (what Exim's own callout pays)
 *   five    5 addresses at one domain (Exim MX plain and STARTTLS, fast MTA):
 *           one group call (one session) vs 5 single calls (issue 9.3)
 *   dns     fast.test's MX and A/AAAA alone (cbv_dns driven with poll(2)),
 *           the DNS part of the "fast" case; answers cached for their TTL,
 *           and again with the cache flushed before each lookup (only the
 *           process's c-ares channel kept)
 *   tls-resume    STARTTLS verifications (alice@exim.test, host only) at
 *           mx2.grey.test, the rig's Exim that issues session tickets: a full
 *           handshake each time (session store emptied) vs resumed; and at
 *           mx.exim.test, a stock Exim 4.96 that issues none
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cbv.h"
#include "cbv_clock.h"
#include "cbv_dns.h"
#include "cbv_tls.h"

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *name, int64_t *us, int n)
{
	double sum = 0;

	qsort(us, (size_t)n, sizeof(*us), cmp_i64);
	for (int i = 0; i < n; i++)
		sum += (double)us[i];
	printf("%-34s n=%-5d median %8.3f ms  mean %8.3f ms  p95 %8.3f ms\n", name, n,
	       us[n / 2] / 1000.0, sum / n / 1000.0, us[(n * 95) / 100] / 1000.0);
}

static double median_ms(int64_t *us, int n)
{
	qsort(us, (size_t)n, sizeof(*us), cmp_i64);
	return us[n / 2] / 1000.0;
}

/* Reads one full SMTP reply (blocking); returns its code or -1. */
static int read_reply(int fd, char *buf, size_t cap)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
		char *line;

		if (n <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = '\0';
		/* the final line is "NNN " ... CRLF */
		line = buf;
		for (;;) {
			char *eol = strstr(line, "\r\n");

			if (eol == NULL)
				break;
			if (eol - line >= 3 && (line[3] == ' ' || eol - line == 3))
				return atoi(line);
			line = eol + 2;
		}
		if (len + 1 >= cap)
			return -1;
	}
}

/* One bare exchange; wait_221: also wait for the QUIT reply. */
static int bare(const char *ip, unsigned port, int pipelined, int wait_221)
{
	struct sockaddr_in sa;
	char buf[8192];
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1, code = -1;
	static const char both[] = "MAIL FROM:<>\r\nRCPT TO:<alice@fast.test>\r\n";

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, ip, &sa.sin_addr);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || read_reply(fd, buf, sizeof(buf)) != 220)
		goto done;
	if (send(fd, "EHLO bench.test\r\n", 17, 0) != 17 || read_reply(fd, buf, sizeof(buf)) != 250)
		goto done;
	if (pipelined) {
		if (send(fd, both, sizeof(both) - 1, 0) != (ssize_t)sizeof(both) - 1 ||
		    read_reply(fd, buf, sizeof(buf)) != 250)
			goto done;
		/* the RCPT reply may already be in buf after the MAIL reply */
		if (strstr(buf, "\r\n250 2.1.5") == NULL && strstr(buf, "\r\n250 Accepted") == NULL &&
		    read_reply(fd, buf, sizeof(buf)) < 0)
			goto done;
	} else {
		if (send(fd, "MAIL FROM:<>\r\n", 14, 0) != 14 || read_reply(fd, buf, sizeof(buf)) != 250)
			goto done;
		if (send(fd, "RCPT TO:<alice@exim.test>\r\n", 27, 0) != 27 ||
		    read_reply(fd, buf, sizeof(buf)) != 250)
			goto done;
	}
	code = 250;
	if (send(fd, "QUIT\r\n", 6, MSG_NOSIGNAL) != 6)
		goto done;
	if (wait_221 && read_reply(fd, buf, sizeof(buf)) != 221)
		code = -1;
done:
	close(fd);
	return code;
}

/* The rig profile, no cache, then opts "k=v k=v"; 0, or -1 (printed). */
static int bench_profile(struct cbv_profile *p, const char *opts)
{
	struct cbv_err err;
	char buf[256], *save = NULL;

	cbv_profile_defaults(p);
	if (cbv_profile_set(p, "cache", "", &err) != CBV_OK ||
	    cbv_profile_set(p, "dns_servers", getenv("CBV_RIG_DNS"), &err) != CBV_OK ||
	    cbv_profile_set(p, "port", getenv("CBV_RIG_PORT"), &err) != CBV_OK ||
	    cbv_profile_set(p, "deny_networks", "", &err) != CBV_OK ||
	    cbv_profile_set(p, "helo", "bench.test", &err) != CBV_OK ||
	    /* each case measures a fresh session unless it turns reuse on */
	    cbv_profile_set(p, "session_reuse", "no", &err) != CBV_OK) {
		fprintf(stderr, "bench_core: %s\n", err.msg);
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *kv = strtok_r(buf, " ", &save); kv != NULL; kv = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(kv, '=');

		if (eq == NULL)
			continue;
		*eq = '\0';
		if (cbv_profile_set(p, kv, eq + 1, &err) != CBV_OK) {
			fprintf(stderr, "bench_core: %s\n", err.msg);
			return -1;
		}
	}
	return 0;
}

/*
 * Five addresses at one domain (issue 9.3): n rounds of one group call
 * (grouped) or of five single calls; us[i] is one round.  Every verdict
 * must be the expected one.
 */
static int run_five(const char *name, const char *const addrs[5], const enum cbv_verdict want[5],
                    const char *opts, int grouped, int n, int64_t *us)
{
	struct cbv_profile p;
	struct cbv_err err;

	if (bench_profile(&p, opts) != 0)
		return -1;
	for (int i = 0; i < n; i++) {
		struct cbv_result *r[5] = { NULL };
		struct cbv_request req = { 0 };
		int64_t t0 = cbv_now_us();
		int bad = 0;

		if (grouped) {
			bad = cbv_verify_multi(&p, &req, addrs, 5, r, &err) != CBV_OK;
		} else {
			for (int k = 0; k < 5 && !bad; k++) {
				req.address = addrs[k];
				bad = cbv_verify(&p, &req, &r[k], &err) != CBV_OK;
			}
		}
		us[i] = cbv_now_us() - t0;
		for (int k = 0; k < 5; k++) {
			if (!bad && r[k]->verdict != want[k]) {
				fprintf(stderr, "bench_core: %s: %s: %s %s\n", name, addrs[k],
				        cbv_verdict_name(r[k]->verdict), r[k]->message);
				bad = 1;
			}
			cbv_result_free(r[k]);
		}
		if (bad) {
			cbv_profile_clear(&p);
			return -1;
		}
	}
	cbv_profile_clear(&p);
	report(name, us, n);
	return 0;
}

static int run_cbv(const char *name, const char *addr, const char *opts, int n, int64_t *us)
{
	struct cbv_profile p;
	struct cbv_err err;

	if (bench_profile(&p, opts) != 0)
		return -1;
	for (int i = 0; i < n; i++) {
		struct cbv_request req = { .address = addr };
		struct cbv_result *r;
		int64_t t0 = cbv_now_us();

		if (cbv_verify(&p, &req, &r, &err) != CBV_OK) {
			fprintf(stderr, "bench_core: %s\n", err.msg);
			return -1;
		}
		us[i] = cbv_now_us() - t0;
		if (r->verdict != CBV_PASS) {
			fprintf(stderr, "bench_core: %s: %s %s %s\n", name, cbv_verdict_name(r->verdict),
			        cbv_reason_name(r->reason), r->message);
			cbv_result_free(r);
			return -1;
		}
		cbv_result_free(r);
	}
	cbv_profile_clear(&p);
	report(name, us, n);
	return 0;
}

/* Wall time of one verification that must end transient/timeout; -1 on error. */
static int64_t time_one(const char *addr, const char *opt)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = addr };
	struct cbv_result *r;
	struct cbv_err err;
	int64_t t0, t;
	char buf[64];
	char *eq;

	cbv_profile_defaults(&p);
	snprintf(buf, sizeof(buf), "%s", opt);
	eq = strchr(buf, '=');
	if (eq == NULL)
		return -1;
	*eq = '\0';
	if (cbv_profile_set(&p, "cache", "", &err) != CBV_OK ||
	    cbv_profile_set(&p, "dns_servers", getenv("CBV_RIG_DNS"), &err) != CBV_OK ||
	    cbv_profile_set(&p, "port", getenv("CBV_RIG_PORT"), &err) != CBV_OK ||
	    cbv_profile_set(&p, "deny_networks", "", &err) != CBV_OK ||
	    cbv_profile_set(&p, "session_reuse", "no", &err) != CBV_OK ||
	    cbv_profile_set(&p, buf, eq + 1, &err) != CBV_OK)
		return -1;
	t0 = cbv_now_us();
	if (cbv_verify(&p, &req, &r, &err) != CBV_OK)
		return -1;
	t = cbv_now_us() - t0;
	if (r->verdict != CBV_TRANSIENT) {
		fprintf(stderr, "bench_core: %s: %s/%s\n", addr, cbv_verdict_name(r->verdict), cbv_reason_name(r->reason));
		t = -1;
	}
	cbv_result_free(r);
	cbv_profile_clear(&p);
	return t;
}

/*
 * DNS alone: n lookups of domain through the rig's dnsmasq; flush: forget
 * cached answers before each (the process keeps its c-ares channel).
 */
static int run_dns(const char *name, const char *domain, const char *servers, int flush, int n,
                   int64_t *us)
{
	for (int i = 0; i < n; i++) {
		struct pollfd fds[16];
		struct cbv_err err;
		struct cbv_dns *d;
		int64_t t0;

		if (flush)
			cbv_dns_cache_flush();
		t0 = cbv_now_us();
		d = cbv_dns_new(domain, servers, cbv_now_ms() + 5000, &err);
		if (d == NULL) {
			fprintf(stderr, "bench_core: %s: %s\n", name, err.msg);
			return -1;
		}
		while (cbv_dns_outcome(d, NULL, NULL, NULL, NULL) == CBV_DNS_PENDING) {
			int64_t wake, t;
			int k = cbv_dns_pollfds(d, fds, 16, &wake);

			t = wake - cbv_now_ms();
			if (poll(fds, (nfds_t)k, t < 0 ? 0 : (int)t) < 0 && errno != EINTR)
				break;
			cbv_dns_process(d, fds, k);
		}
		us[i] = cbv_now_us() - t0;
		if (cbv_dns_outcome(d, NULL, NULL, NULL, NULL) != CBV_DNS_OK) {
			fprintf(stderr, "bench_core: %s: lookup failed\n", name);
			cbv_dns_free(d);
			return -1;
		}
		cbv_dns_free(d);
	}
	report(name, us, n);
	return 0;
}

static int run_bare(const char *name, const char *ip, int pipelined, int wait_221, int n, int64_t *us)
{
	unsigned port = (unsigned)atoi(getenv("CBV_RIG_PORT"));

	for (int i = 0; i < n; i++) {
		int64_t t0 = cbv_now_us();

		if (bare(ip, port, pipelined, wait_221) != 250) {
			fprintf(stderr, "bench_core: %s: bare exchange failed\n", name);
			return -1;
		}
		us[i] = cbv_now_us() - t0;
	}
	report(name, us, n);
	return 0;
}

/*
 * The rig's dnsmasq gives its records TTL 0 (dnsmasq's local-ttl), so
 * nothing it says may be cached.  A second one on port 53536 with
 * --local-ttl=300 shows the cache.  Returns its pid (fills servers), or -1.
 */
static pid_t start_ttl_dnsmasq(char *servers, size_t len)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		execlp("dnsmasq", "dnsmasq", "--conf-file=tests/rig/dnsmasq.conf", "--port=53536",
		       "--listen-address=127.0.0.1", "--bind-interfaces", "--no-daemon", "--local-ttl=300",
		       "--log-facility=/dev/null", (char *)NULL);
		_exit(127);
	}
	snprintf(servers, len, "127.0.0.1:53536");
	for (int i = 0; i < 250; i++) {
		struct sockaddr_in sa;
		int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_port = htons(53536);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (fd >= 0)
			close(fd);
		if (ok)
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		poll(NULL, 0, 20);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return -1;
}

/*
 * n verifications of alice@exim.test at host only, STARTTLS required,
 * opts ("key=value ..."); full: empty the TLS session store before each
 * one, so every handshake is a full one.  Returns the median in ms, or -1.
 */
static double run_tls(const char *name, const char *host, const char *opts, int full, int n,
                      int64_t *us)
{
	struct cbv_profile p;
	struct cbv_err err;
	const char *ca = getenv("CBV_RIG_CA_DIR");
	char buf[256], *save = NULL;
	int resumed = 0;

	cbv_profile_defaults(&p);
	if (cbv_profile_set(&p, "cache", "", &err) != CBV_OK ||
	    cbv_profile_set(&p, "dns_servers", getenv("CBV_RIG_DNS"), &err) != CBV_OK ||
	    cbv_profile_set(&p, "port", getenv("CBV_RIG_PORT"), &err) != CBV_OK ||
	    cbv_profile_set(&p, "deny_networks", "", &err) != CBV_OK ||
	    cbv_profile_set(&p, "helo", "bench.test", &err) != CBV_OK ||
	    cbv_profile_set(&p, "starttls", "require", &err) != CBV_OK ||
	    cbv_profile_set(&p, "session_reuse", "no", &err) != CBV_OK ||
	    cbv_profile_set(&p, "ca_dir", ca != NULL ? ca : "", &err) != CBV_OK) {
		fprintf(stderr, "bench_core: %s\n", err.msg);
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *kv = strtok_r(buf, " ", &save); kv != NULL; kv = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(kv, '=');

		if (eq != NULL)
			*eq = '\0';
		if (eq == NULL || cbv_profile_set(&p, kv, eq + 1, &err) != CBV_OK) {
			fprintf(stderr, "bench_core: %s: bad option\n", kv);
			return -1;
		}
	}
	cbv_tls_cache_clear();
	for (int i = -1; i < n; i++) { /* i = -1: a first, unmeasured one */
		struct cbv_request req = { .address = "alice@exim.test", .host = host,
			                   .mode = CBV_MODE_HOSTONLY };
		struct cbv_result *r;
		int64_t t0;
		size_t len;

		if (full)
			cbv_tls_cache_clear();
		t0 = cbv_now_us();
		if (cbv_verify(&p, &req, &r, &err) != CBV_OK) {
			fprintf(stderr, "bench_core: %s\n", err.msg);
			return -1;
		}
		if (i >= 0)
			us[i] = cbv_now_us() - t0;
		len = strlen(r->tls);
		if (i >= 0 && len > 8 && strcmp(r->tls + len - 8, ":resumed") == 0)
			resumed++;
		if (r->verdict != CBV_PASS || r->tls[0] == '\0') {
			fprintf(stderr, "bench_core: %s: %s %s %s [%s]\n", name,
			        cbv_verdict_name(r->verdict), cbv_reason_name(r->reason), r->message, r->tls);
			cbv_result_free(r);
			return -1;
		}
		cbv_result_free(r);
	}
	cbv_profile_clear(&p);
	cbv_tls_cache_clear();
	printf("%-34s resumed %d/%d\n", name, resumed, n);
	report(name, us, n);
	return median_ms(us, n);
}

int main(int argc, char **argv)
{
	int n = 200, rc = 0;
	char ttl_servers[64];
	pid_t ttl_pid;
	int64_t *us, *bare_us, *exim_bare;
	double m_cbv_lit, m_bare, m_exim, m_exim_bare, m_exim_floor;

	if (argc == 3 && strcmp(argv[1], "-n") == 0)
		n = atoi(argv[2]);
	if (n < 10 || getenv("CBV_RIG_DNS") == NULL || getenv("CBV_RIG_PORT") == NULL) {
		fprintf(stderr, "usage: bench_core [-n N>=10]  (inside tests/rig/rig.sh run)\n");
		return 64;
	}
	us = calloc((size_t)n, sizeof(*us));
	bare_us = calloc((size_t)n, sizeof(*us));
	exim_bare = calloc((size_t)(n / 10 + 1), sizeof(*us));
	if (us == NULL || bare_us == NULL || exim_bare == NULL)
		return 70;
	printf("bench_core: %d verifications per case, loopback rig\n", n);
	if (run_cbv("cbv exim.test (plain)", "alice@exim.test", "starttls=never", n, us) != 0)
		return 1;
	m_exim = median_ms(us, n);
	if (run_cbv("cbv exim.test (STARTTLS)", "alice@exim.test", "starttls=opportunistic", n, us) != 0)
		return 1;
	/* session_reuse: the same process's next verification on the parked session */
	if (run_cbv("cbv exim.test (plain), reuse", "alice@exim.test",
	            "starttls=never session_reuse=yes", n, us) != 0 ||
	    run_cbv("cbv exim.test (STARTTLS), reuse", "alice@exim.test",
	            "starttls=opportunistic session_reuse=yes", n, us) != 0)
		return 1;
	if (run_bare("bare exim, waits for 221", "127.0.0.10", 0, 1, n / 10, exim_bare) != 0)
		return 1;
	m_exim_bare = median_ms(exim_bare, n / 10);
	if (run_bare("bare exim, QUIT without waiting", "127.0.0.10", 0, 0, n, bare_us) != 0)
		return 1;
	m_exim_floor = median_ms(bare_us, n);
	if (run_cbv("cbv fast.test (DNS)", "alice@fast.test", "starttls=never", n, us) != 0)
		return 1;
	if (run_dns("DNS alone, fast.test MX+A/AAAA", "fast.test", getenv("CBV_RIG_DNS"), 0, n, us) != 0)
		return 1;
	if (run_dns("DNS alone, cache flushed each time", "fast.test", getenv("CBV_RIG_DNS"), 1, n, us) != 0)
		return 1;
	ttl_pid = start_ttl_dnsmasq(ttl_servers, sizeof(ttl_servers));
	if (ttl_pid > 0) {
		char opts[128];

		snprintf(opts, sizeof(opts), "starttls=never dns_servers=%s", ttl_servers);
		if (run_dns("DNS alone, TTL 300 s (cached)", "fast.test", ttl_servers, 0, n, us) != 0 ||
		    run_cbv("cbv fast.test (DNS, TTL 300 s)", "alice@fast.test", opts, n, us) != 0)
			rc = 1;
		kill(ttl_pid, SIGTERM);
		waitpid(ttl_pid, NULL, 0);
		if (rc != 0)
			return rc;
	} else {
		printf("(no second dnsmasq: TTL 300 s cases skipped)\n");
	}
	if (run_cbv("cbv alice@[127.0.0.30] (no DNS)", "alice@[127.0.0.30]", "starttls=never", n, us) != 0)
		return 1;
	m_cbv_lit = median_ms(us, n);
	if (run_bare("bare socket exchange, fast MTA", "127.0.0.30", 1, 0, n, bare_us) != 0)
		return 1;
	m_bare = median_ms(bare_us, n);
	for (int k = 0; k < 2; k++) {
		const char *addr = k == 0 ? "x@tarpit.test" : "x@drip.test";
		double worst = 0;

		for (int i = 0; i < 3; i++) {
			int64_t t = time_one(addr, "timeout=5s");

			if (t < 0)
				return 1;
			if (t / 1000.0 > worst)
				worst = t / 1000.0;
		}
		printf("RESULT %s_timeout5s_worst_ms %.1f (transient; target <= 5100)\n",
		       k == 0 ? "tarpit" : "drip", worst);
	}
	printf("RESULT exim_mx_median_ms %.3f (target < 5 ms; bare exchange without DNS or waiting: %.3f ms;"
	       " a client waiting for the 221: %.1f ms, %.0fx slower)\n",
	       m_exim, m_exim_floor, m_exim_bare, m_exim_bare / m_exim);
	printf("RESULT fast_mta_ratio %.2f (cbv %.3f ms / bare %.3f ms; target <= 1.5)\n",
	       m_cbv_lit / m_bare, m_cbv_lit, m_bare);
	{
		static const char *const exim5[5] = { "alice@exim.test", "bob@exim.test",
			                              "postmaster@exim.test", "nobody@exim.test",
			                              "x1@exim.test" };
		static const char *const fast5[5] = { "alice@fast.test", "bob@fast.test",
			                              "carol@fast.test", "unknown1@fast.test",
			                              "dave@fast.test" };
		static const enum cbv_verdict exim_want[5] = { CBV_PASS, CBV_PASS, CBV_PASS, CBV_FAIL,
			                                       CBV_FAIL };
		static const enum cbv_verdict fast_want[5] = { CBV_PASS, CBV_PASS, CBV_PASS, CBV_FAIL,
			                                       CBV_PASS };
		static const struct {
			const char *what, *key, *const *addrs, *opts;
			const enum cbv_verdict *want;
		} cases[] = {
			{ "exim plain", "exim_plain", exim5, "starttls=never", exim_want },
			{ "exim STARTTLS", "exim_starttls", exim5, "starttls=opportunistic", exim_want },
			{ "fast MTA", "fast_mta", fast5, "starttls=never", fast_want },
		};

		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			char name[2][80];
			double single, group;

			snprintf(name[0], sizeof(name[0]), "5 addresses, 5 calls, %s", cases[c].what);
			snprintf(name[1], sizeof(name[1]), "5 addresses, 1 group call, %s", cases[c].what);
			if (run_five(name[0], cases[c].addrs, cases[c].want, cases[c].opts, 0, n, us) != 0)
				return 1;
			single = median_ms(us, n);
			if (run_five(name[1], cases[c].addrs, cases[c].want, cases[c].opts, 1, n, us) != 0)
				return 1;
			group = median_ms(us, n);
			printf("RESULT five_addresses_%s_median_ms single %.3f group %.3f (%.2fx)\n",
			       cases[c].key, single, group, single / group);
		}
	}
	for (int v = 0; v < 2; v++) {
		const char *opts = v ? "tls_verify=yes" : "tls_verify=no";
		const char *what = v ? "verified" : "unverified";
		char name[3][64];
		double full, resumed, stock;

		snprintf(name[0], sizeof(name[0]), "tls %s, full handshakes", what);
		snprintf(name[1], sizeof(name[1]), "tls %s, resumed", what);
		snprintf(name[2], sizeof(name[2]), "tls %s, stock Exim (no tickets)", what);
		full = run_tls(name[0], "mx2.grey.test", opts, 1, n, us);
		resumed = run_tls(name[1], "mx2.grey.test", opts, 0, n, us);
		stock = run_tls(name[2], "mx.exim.test", opts, 0, n, us);
		if (full < 0 || resumed < 0 || stock < 0)
			return 1;
		printf("RESULT tls_resume_%s_median_ms full %.3f resumed %.3f (%.2fx; stock Exim,"
		       " store on: %.3f)\n",
		       what, full, resumed, full / resumed, stock);
	}
	free(us);
	free(bare_us);
	free(exim_bare);
	return 0;
}
