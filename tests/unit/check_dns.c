/*
 * check_dns.c - cbv_dns against the rig's dnsmasq (tests/rig/dnsmasq.conf).
 *
 * Uses the dnsmasq named by CBV_RIG_DNS ("127.0.0.1:PORT") when set, else
 * starts its own on a free loopback port and stops it at the end, so the
 * suite also runs alone.  Only 127.0.0.1 is ever queried.  The machine is
 * driven with a poll() loop as cbv_verify would; no test asserts timing.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cbv_clock.h"
#include "cbv_dns.h"
#include "cbv_status.h"

#define DEFAULT_CONF "tests/rig/dnsmasq.conf"
#define RUN_MS 10000 /* deadline for lookups that should answer at once */

static char servers[64];
static pid_t dnsmasq_pid;

struct outcome {
	enum cbv_dns_outcome o;
	struct cbv_host hosts[CBV_HOSTS_MAX];
	size_t n;
	char detail[512];
	int partial;
};

/* Drives d to an outcome with poll(), as the synchronous API does. */
static enum cbv_dns_outcome run(struct cbv_dns *d)
{
	int64_t limit = cbv_now_ms() + 30000;
	struct pollfd fds[16];

	while (cbv_dns_outcome(d, NULL, NULL, NULL, NULL) == CBV_DNS_PENDING) {
		int64_t wake, t;
		int n = cbv_dns_pollfds(d, fds, 16, &wake);

		ck_assert_int_ge(n, 0);
		ck_assert_msg(cbv_now_ms() < limit, "DNS machine never finished");
		t = wake - cbv_now_ms();
		if (t < 0)
			t = 0;
		if (poll(fds, (nfds_t)n, (int)t) < 0)
			ck_assert_int_eq(errno, EINTR);
		cbv_dns_process(d, fds, n);
	}
	return cbv_dns_outcome(d, NULL, NULL, NULL, NULL);
}

/* Resolves domain through srv with a deadline ms from now into *out. */
static void resolve(const char *domain, const char *srv, int64_t ms,
                    struct outcome *out)
{
	struct cbv_err err;
	struct cbv_dns *d;
	const struct cbv_host *h;
	const char *detail;

	memset(out, 0, sizeof(*out));
	d = cbv_dns_new(domain, srv, cbv_now_ms() + ms, &err);
	ck_assert_msg(d != NULL, "cbv_dns_new(%s): %s", domain, err.msg);
	run(d);
	out->o = cbv_dns_outcome(d, &h, &out->n, &detail, &out->partial);
	ck_assert_ptr_nonnull(detail);
	snprintf(out->detail, sizeof(out->detail), "%s", detail);
	ck_assert_uint_le(out->n, CBV_HOSTS_MAX);
	if (out->n > 0)
		memcpy(out->hosts, h, out->n * sizeof(*h));
	cbv_dns_free(d);
}

/* The host's address as text, port checked to be left 0. */
static const char *ip(const struct cbv_host *h, char *buf, size_t len)
{
	if (h->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&h->addr;

		ck_assert_uint_eq(h->addrlen, sizeof(*sin));
		ck_assert_uint_eq(sin->sin_port, 0);
		return inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)len);
	}
	ck_assert_int_eq(h->addr.ss_family, AF_INET6);
	{
		const struct sockaddr_in6 *sin6 =
			(const struct sockaddr_in6 *)&h->addr;

		ck_assert_uint_eq(h->addrlen, sizeof(*sin6));
		ck_assert_uint_eq(sin6->sin6_port, 0);
		return inet_ntop(AF_INET6, &sin6->sin6_addr, buf, (socklen_t)len);
	}
}

/* ---- the zone, name by name ---- */

struct want_host {
	const char *name;
	const char *ip;
	unsigned pref;
};

/* Every field named: clang's -Wmissing-field-initializers also checks nested braces. */
#define NO_HOSTS { { NULL, NULL, 0 } }

static const struct {
	const char *domain;
	enum cbv_dns_outcome o;
	const char *detail; /* substring */
	int implicit;
	int partial;
	size_t n;
	struct want_host h[3];
} zone[] = {
	{ "exim.test", CBV_DNS_OK, "1 exchanger, 2 addresses", 0, 0, 2,
	  { { "mx.exim.test", "127.0.0.10", 10 }, { "mx.exim.test", "::1", 10 } } },
	{ "two.test", CBV_DNS_OK, "2 exchangers", 0, 0, 2,
	  { { "dead.two.test", "127.0.0.50", 10 },
	    { "mx.two.test", "127.0.0.10", 20 } } },
	{ "grey.test", CBV_DNS_OK, NULL, 0, 0, 2,
	  { { "mx1.grey.test", "127.0.0.10", 10 },
	    { "mx2.grey.test", "127.0.0.12", 20 } } },
	{ "dead.test", CBV_DNS_OK, NULL, 0, 0, 2,
	  { { "a.dead.test", "127.0.0.50", 10 },
	    { "b.dead.test", "127.0.0.51", 20 } } },
	{ "tarpit.test", CBV_DNS_OK, NULL, 0, 0, 1,
	  { { "mx.tarpit.test", "127.0.0.20", 10 } } },
	{ "implicit.test", CBV_DNS_OK, "implicit MX", 1, 0, 1,
	  { { "implicit.test", "127.0.0.10", 0 } } },
	{ "partial.test", CBV_DNS_OK, NULL, 0, 1, 1,
	  { { "mx.partial.test", "127.0.0.10", 10 } } },
	{ "nullmx.test", CBV_DNS_NULLMX, "null MX", 0, 0, 0, NO_HOSTS },
	{ "nomail.test", CBV_DNS_NOHOST, "no MX and no A/AAAA", 0, 0, 0,
	  NO_HOSTS },
	{ "nohost.test", CBV_DNS_NOHOST, "no MX host has an address", 0, 0, 0,
	  NO_HOSTS },
	{ "no-such-name.test", CBV_DNS_NXDOMAIN,
	  "MX lookup for no-such-name.test: NXDOMAIN", 0, 0, 0, NO_HOSTS },
	{ "sub.no-such-name.test", CBV_DNS_NXDOMAIN, "NXDOMAIN", 0, 0, 0,
	  NO_HOSTS },
	{ "servfail.test", CBV_DNS_TEMP, "MX lookup for servfail.test: ", 0, 0, 0,
	  NO_HOSTS },
	{ "tempmx.test", CBV_DNS_TEMP, "lookup for mx.servfail.test: ", 0, 1, 0,
	  NO_HOSTS },
};

START_TEST(test_zone)
{
	struct outcome r;
	char buf[INET6_ADDRSTRLEN];
	size_t i;

	resolve(zone[_i].domain, servers, RUN_MS, &r);
	ck_assert_msg(r.o == zone[_i].o, "%s: outcome %d, want %d (%s)",
	              zone[_i].domain, r.o, zone[_i].o, r.detail);
	if (zone[_i].detail != NULL)
		ck_assert_msg(strstr(r.detail, zone[_i].detail) != NULL,
		              "%s: detail \"%s\" lacks \"%s\"", zone[_i].domain,
		              r.detail, zone[_i].detail);
	ck_assert_int_eq(r.partial, zone[_i].partial);
	ck_assert_uint_eq(r.n, zone[_i].n);
	for (i = 0; i < r.n; i++) {
		ck_assert_str_eq(r.hosts[i].name, zone[_i].h[i].name);
		ck_assert_str_eq(ip(&r.hosts[i], buf, sizeof(buf)), zone[_i].h[i].ip);
		ck_assert_uint_eq(r.hosts[i].pref, zone[_i].h[i].pref);
		ck_assert_int_eq(r.hosts[i].implicit, zone[_i].implicit);
	}
}
END_TEST

/* ---- deadlines ---- */

/* A deadline already reached: no query, a timeout at once. */
START_TEST(test_deadline_passed)
{
	static const int64_t offset[] = { 0, -1, -60000 };
	struct cbv_err err;
	struct cbv_dns *d;
	const char *detail;
	size_t i;

	for (i = 0; i < sizeof(offset) / sizeof(offset[0]); i++) {
		d = cbv_dns_new("exim.test", servers, cbv_now_ms() + offset[i], &err);
		ck_assert_ptr_nonnull(d);
		ck_assert_int_eq(run(d), CBV_DNS_TEMP);
		cbv_dns_outcome(d, NULL, NULL, &detail, NULL);
		ck_assert_msg(strstr(detail, "timeout") != NULL, "detail: %s", detail);
		cbv_dns_free(d);
	}
}
END_TEST

/* A server that never answers: a UDP socket nobody reads. */
START_TEST(test_silent_server)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char srv[64];
	struct outcome r;
	int fd;

	fd = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_ge(fd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(srv, sizeof(srv), "127.0.0.1:%u", ntohs(sin.sin_port));
	resolve("exim.test", srv, 1000, &r);
	ck_assert_int_eq(r.o, CBV_DNS_TEMP);
	ck_assert_msg(strstr(r.detail, "timeout") != NULL, "detail: %s", r.detail);
	ck_assert_uint_eq(r.n, 0);
	close(fd);
}
END_TEST

/* Dropping a machine mid-lookup cancels cleanly (ASan/valgrind check). */
START_TEST(test_free_pending)
{
	struct pollfd fds[16];
	struct cbv_err err;
	struct cbv_dns *d;
	int64_t wake;

	d = cbv_dns_new("exim.test", servers, cbv_now_ms() + RUN_MS, &err);
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(cbv_dns_outcome(d, NULL, NULL, NULL, NULL),
	                 CBV_DNS_PENDING);
	ck_assert_int_ge(cbv_dns_pollfds(d, fds, 16, &wake), 1);
	cbv_dns_free(d);
	cbv_dns_free(NULL);
}
END_TEST

/* ---- arguments ---- */

static const char *const bad_servers[] = {
	"not a server", "127.0.0.1:99999", "127.0.0.1:0", "1.2.3.4.5",
	"127.0.0.1:",   ",",               "127.0.0.1,",  ",127.0.0.1",
	"[::1",         "[::1]x",          "[::1]:",      "127.0.0.1:53x",
	"localhost",    "127.0.0.1:53,,::1", "[::1]",
};

START_TEST(test_bad_servers)
{
	struct cbv_err err;

	memset(&err, 0, sizeof(err));
	ck_assert_ptr_null(
		cbv_dns_new("exim.test", bad_servers[_i], cbv_now_ms() + RUN_MS, &err));
	ck_assert_int_eq(err.code, CBV_ECONFIG);
	ck_assert_msg(strstr(err.msg, "DNS servers") != NULL, "msg: %s", err.msg);
}
END_TEST

static const char *const good_servers[] = {
	"", "127.0.0.1", "127.0.0.1:53", "::1", "[::1]:5353",
	"127.0.0.1:53,[::1]:53,127.0.0.2",
};

/*
 * Accepted lists ("" = the system resolver); the deadline is past, so
 * nothing is sent anywhere.
 */
START_TEST(test_good_servers)
{
	struct cbv_err err;
	struct cbv_dns *d;

	d = cbv_dns_new("exim.test", good_servers[_i], cbv_now_ms() - 1, &err);
	ck_assert_msg(d != NULL, "%s: %s", good_servers[_i], err.msg);
	ck_assert_int_eq(cbv_dns_outcome(d, NULL, NULL, NULL, NULL), CBV_DNS_TEMP);
	cbv_dns_free(d);
}
END_TEST

START_TEST(test_bad_domain)
{
	char longname[CBV_DOMAIN_MAX + 2];
	struct cbv_err err;

	ck_assert_ptr_null(cbv_dns_new("", servers, cbv_now_ms() + RUN_MS, &err));
	ck_assert_int_eq(err.code, CBV_EINVAL);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_ptr_null(
		cbv_dns_new(longname, servers, cbv_now_ms() + RUN_MS, &err));
	ck_assert_int_eq(err.code, CBV_EINVAL);
}
END_TEST

/* ---- equal preferences ---- */

/*
 * shuffle.test has four MX at preference 10.  Over 50 lookups more than
 * one order must appear (all 50 alike by chance: 24^-49).
 */
START_TEST(test_shuffle)
{
	char first[64] = "", order[64];
	int i, differs = 0;
	size_t j;

	for (i = 0; i < 50; i++) {
		struct outcome r;
		unsigned seen = 0;

		resolve("shuffle.test", servers, RUN_MS, &r);
		ck_assert_int_eq(r.o, CBV_DNS_OK);
		ck_assert_uint_eq(r.n, 4);
		order[0] = '\0';
		for (j = 0; j < r.n; j++) {
			const struct sockaddr_in *sin =
				(const struct sockaddr_in *)&r.hosts[j].addr;
			unsigned last = ntohl(sin->sin_addr.s_addr) & 0xff;
			char num[8];

			ck_assert_uint_eq(r.hosts[j].pref, 10);
			ck_assert_int_eq(sin->sin_family, AF_INET);
			ck_assert_uint_ge(last, 61);
			ck_assert_uint_le(last, 64);
			/* The name travels with its address. */
			ck_assert_int_eq(r.hosts[j].name[2], (int)('0' + last - 60));
			seen |= 1u << (last - 61);
			snprintf(num, sizeof(num), "%u,", last);
			strcat(order, num);
		}
		ck_assert_uint_eq(seen, 0xf);
		if (i == 0)
			snprintf(first, sizeof(first), "%s", order);
		else if (strcmp(first, order) != 0)
			differs = 1;
	}
	ck_assert_msg(differs, "50 lookups, always %s", first);
}
END_TEST

/* ---- allocation failures ---- */

/* Fails the Nth allocation until a lookup gets through; no leaks (ASan). */
START_TEST(test_oom)
{
	int ok = 0;
	long n;

	for (n = 0; n < 200 && !ok; n++) {
		struct cbv_err err;
		struct cbv_dns *d;
		const struct cbv_host *h;
		const char *detail;
		size_t nh;

		memset(&err, 0, sizeof(err));
		cbv_alloc_fail_after(n);
		d = cbv_dns_new("exim.test", servers, cbv_now_ms() + RUN_MS, &err);
		if (d == NULL) {
			cbv_alloc_fail_after(-1);
			ck_assert_int_eq(err.code, CBV_ENOMEM);
			continue;
		}
		run(d);
		cbv_alloc_fail_after(-1);
		switch (cbv_dns_outcome(d, &h, &nh, &detail, NULL)) {
		case CBV_DNS_OK:
			ck_assert_uint_eq(nh, 2);
			ck_assert_str_eq(h[0].name, "mx.exim.test");
			ok = 1;
			break;
		case CBV_DNS_TEMP:
			ck_assert_msg(strstr(detail, "out of memory") != NULL,
			              "n=%ld: %s", n, detail);
			break;
		default:
			ck_abort_msg("n=%ld: unexpected outcome (%s)", n, detail);
		}
		cbv_dns_free(d);
	}
	ck_assert_msg(ok, "never succeeded");
	ck_assert_int_gt(n, 1);
}
END_TEST

/* ---- the suite's own dnsmasq ---- */

/* A loopback port free for both UDP and TCP right now, or 0. */
static unsigned free_port(void)
{
	int tries;

	for (tries = 0; tries < 50; tries++) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		int t = socket(AF_INET, SOCK_STREAM, 0);
		unsigned port = 0;

		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (u >= 0 && t >= 0 &&
		    bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
		    getsockname(u, (struct sockaddr *)&sin, &len) == 0 &&
		    ntohs(sin.sin_port) >= 10000 &&
		    bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			port = ntohs(sin.sin_port);
		if (u >= 0)
			close(u);
		if (t >= 0)
			close(t);
		if (port != 0)
			return port;
	}
	return 0;
}

/* Whether something accepts TCP connections on 127.0.0.1:port. */
static int listening(unsigned port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int ok;

	if (fd < 0)
		return 0;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

/* Starts dnsmasq on a free port and fills servers; 0 on success. */
static int start_dnsmasq(void)
{
	const char *conf = getenv("CBV_DNSMASQ_CONF");
	char conf_arg[600], port_arg[32];
	unsigned port = free_port();
	int i;

	if (conf == NULL || conf[0] == '\0')
		conf = DEFAULT_CONF;
	if (access(conf, R_OK) != 0) {
		fprintf(stderr, "check_dns: %s: %s (run from the source tree)\n",
		        conf, strerror(errno));
		return -1;
	}
	if (port == 0) {
		fprintf(stderr, "check_dns: no free port\n");
		return -1;
	}
	snprintf(conf_arg, sizeof(conf_arg), "--conf-file=%s", conf);
	snprintf(port_arg, sizeof(port_arg), "--port=%u", port);
	dnsmasq_pid = fork();
	if (dnsmasq_pid < 0) {
		perror("check_dns: fork");
		return -1;
	}
	if (dnsmasq_pid == 0) {
		int null = open("/dev/null", O_RDWR);

		/* Dies with us even if we are killed. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		execl("/usr/sbin/dnsmasq", "dnsmasq", conf_arg, port_arg,
		      "--listen-address=127.0.0.1", "--bind-interfaces",
		      "--no-daemon", (char *)NULL);
		execlp("dnsmasq", "dnsmasq", conf_arg, port_arg,
		       "--listen-address=127.0.0.1", "--bind-interfaces",
		       "--no-daemon", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 250; i++) {
		int status;

		if (listening(port)) {
			snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
			return 0;
		}
		if (waitpid(dnsmasq_pid, &status, WNOHANG) == dnsmasq_pid) {
			fprintf(stderr, "check_dns: dnsmasq exited (status %d)\n",
			        status);
			dnsmasq_pid = 0;
			return -1;
		}
		poll(NULL, 0, 20);
	}
	fprintf(stderr, "check_dns: dnsmasq did not start on port %u\n", port);
	return -1;
}

static void stop_dnsmasq(void)
{
	int status;

	if (dnsmasq_pid <= 0)
		return;
	kill(dnsmasq_pid, SIGTERM);
	while (waitpid(dnsmasq_pid, &status, 0) < 0 && errno == EINTR)
		;
	dnsmasq_pid = 0;
}

static Suite *dns_suite(void)
{
	Suite *s = suite_create("dns");
	TCase *tc;

	tc = tcase_create("zone");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_zone, 0, sizeof(zone) / sizeof(zone[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("deadline");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_deadline_passed);
	tcase_add_test(tc, test_silent_server);
	tcase_add_test(tc, test_free_pending);
	suite_add_tcase(s, tc);

	tc = tcase_create("arguments");
	tcase_add_loop_test(tc, test_bad_servers, 0,
	                    sizeof(bad_servers) / sizeof(bad_servers[0]));
	tcase_add_loop_test(tc, test_good_servers, 0,
	                    sizeof(good_servers) / sizeof(good_servers[0]));
	tcase_add_test(tc, test_bad_domain);
	suite_add_tcase(s, tc);

	tc = tcase_create("shuffle");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_shuffle);
	suite_add_tcase(s, tc);

	tc = tcase_create("oom");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_oom);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *rig = getenv("CBV_RIG_DNS");
	SRunner *sr;
	int failed;

	if (rig != NULL && rig[0] != '\0') {
		snprintf(servers, sizeof(servers), "%s", rig);
	} else if (start_dnsmasq() != 0) {
		stop_dnsmasq();
		return 1;
	}
	sr = srunner_create(dns_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	stop_dnsmasq();
	return failed == 0 ? 0 : 1;
}
