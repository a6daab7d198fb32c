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
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cbv.h"
#include "cbv_clock.h"

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

static int run_cbv(const char *name, const char *addr, const char *opts, int n, int64_t *us)
{
	struct cbv_profile p;
	struct cbv_err err;
	char buf[256], *save = NULL;

	cbv_profile_defaults(&p);
	if (cbv_profile_set(&p, "cache", "", &err) != CBV_OK ||
	    cbv_profile_set(&p, "dns_servers", getenv("CBV_RIG_DNS"), &err) != CBV_OK ||
	    cbv_profile_set(&p, "port", getenv("CBV_RIG_PORT"), &err) != CBV_OK ||
	    cbv_profile_set(&p, "deny_networks", "", &err) != CBV_OK ||
	    cbv_profile_set(&p, "helo", "bench.test", &err) != CBV_OK) {
		fprintf(stderr, "bench_core: %s\n", err.msg);
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *kv = strtok_r(buf, " ", &save); kv != NULL; kv = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(kv, '=');

		if (eq == NULL)
			continue;
		*eq = '\0';
		if (cbv_profile_set(&p, kv, eq + 1, &err) != CBV_OK) {
			fprintf(stderr, "bench_core: %s\n", err.msg);
			return -1;
		}
	}
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

int main(int argc, char **argv)
{
	int n = 200;
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
	if (run_bare("bare exim, waits for 221", "127.0.0.10", 0, 1, n / 10, exim_bare) != 0)
		return 1;
	m_exim_bare = median_ms(exim_bare, n / 10);
	if (run_bare("bare exim, QUIT without waiting", "127.0.0.10", 0, 0, n, bare_us) != 0)
		return 1;
	m_exim_floor = median_ms(bare_us, n);
	if (run_cbv("cbv fast.test (DNS)", "alice@fast.test", "starttls=never", n, us) != 0)
		return 1;
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
	free(us);
	free(bare_us);
	free(exim_bare);
	return 0;
}
