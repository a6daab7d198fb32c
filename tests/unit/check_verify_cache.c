/*
 * check_verify_cache.c - cbv_verify() with the LMDB cache and the abuse
 * controls (issue 7), against the loopback rig: real LMDB files in a temp
 * directory, real processes (fork), and fakesmtp servers that count the
 * RCPTs they get in $CBV_RIG_DIR/rcpt.log (count.test 127.0.0.65,
 * count2.test 127.0.0.66 then .67, catchall.test 127.0.0.60).  Run inside
 * `tests/rig/rig.sh run`.
 *
 * One store serves the suite (made in main()): a process keeps one cache
 * handle per path, so with CK_FORK=no every test shares it.  Each test
 * uses its own addresses (with the pid) or domains, so none sees
 * another's records, caps or counts.
 */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cbv.h"
#include "cbv_cache.h"

static char store_dir[64];
static char store[128];

static int contacted;

static void count_init(void *arg, enum cbv_trace kind, const char *text)
{
	(void)text;
	if (kind == CBV_TRACE_INIT) {
		contacted++;
		if (arg != NULL) /* tell a waiting parent we are connecting */
			(void)!write(*(int *)arg, "c", 1);
	}
}

/* The rig profile with the suite's store and no rate cap, then extra "k=v;k=v". */
static void rig_profile(struct cbv_profile *p, const char *extra)
{
	const char *dns = getenv("CBV_RIG_DNS");
	const char *port = getenv("CBV_RIG_PORT");
	struct cbv_err err;
	char buf[512], *save = NULL;

	ck_assert_msg(dns != NULL && port != NULL, "run inside tests/rig/rig.sh run");
	cbv_profile_defaults(p);
	ck_assert_int_eq(cbv_profile_set(p, "cache", store, &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "cache_size", "16M", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "domain_max_rate", "0", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "dns_servers", dns, &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "port", port, &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "deny_networks", "", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "timeout", "10s", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "starttls", "never", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "helo", "verifier.test", &err), CBV_OK);
	snprintf(buf, sizeof(buf), "%s", extra);
	for (char *kv = strtok_r(buf, ";", &save); kv != NULL; kv = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(kv, '=');

		ck_assert_ptr_nonnull(eq);
		*eq = '\0';
		ck_assert_msg(cbv_profile_set(p, kv, eq + 1, &err) == CBV_OK, "%s: %s", kv, err.msg);
	}
}

/* One verification under the rig profile + extra; contacted counts connections. */
static struct cbv_result *verify(const char *address, const char *extra)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = address, .trace = count_init };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	rig_profile(&p, extra);
	contacted = 0;
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	ck_assert_ptr_nonnull(r);
	cbv_profile_clear(&p);
	return r;
}

/* How many RCPTs the rig server at ip has logged: of <address>, or (prefix) starting so. */
static int count_rcpts(const char *ip, const char *address, int prefix)
{
	char path[512], want[512], line[1024];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/rcpt.log", getenv("CBV_RIG_DIR"));
	snprintf(want, sizeof(want), prefix ? "%s <%s" : "%s <%s>", ip, address);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		n += prefix ? strncmp(line, want, strlen(want)) == 0 : strcmp(line, want) == 0;
	}
	fclose(f);
	return n;
}

static int rcpts(const char *ip, const char *address)
{
	return count_rcpts(ip, address, 0);
}

#define VERDICT(r, v, why)                                                                  \
	ck_assert_msg((r)->verdict == (v) && strcmp(cbv_reason_name((r)->reason), why) == 0,    \
	              "got %s/%s (%s), want %s/%s", cbv_verdict_name((r)->verdict),             \
	              cbv_reason_name((r)->reason), (r)->message, cbv_verdict_name(v), why)

/* The second verification is answered from the store: no connection, same last poll. */
START_TEST(hit_after_miss)
{
	char a[128];
	struct cbv_result *r1, *r2;

	snprintf(a, sizeof(a), "hit%d@count.test", (int)getpid());
	r1 = verify(a, "");
	VERDICT(r1, CBV_PASS, "accepted");
	ck_assert_int_eq(contacted, 1);
	ck_assert_int_eq(r1->cache, 0);
	ck_assert_int_eq(r1->cache_use, CBV_CACHE_USE_MISS);
	r2 = verify(a, "");
	ck_assert_int_eq(contacted, 0);
	ck_assert_int_eq(rcpts("127.0.0.65", a), 1);
	ck_assert_int_eq(r2->cache, 1);
	ck_assert_int_eq(r2->cache_use, CBV_CACHE_USE_HIT);
	ck_assert_uint_le(r2->age, 5);
	VERDICT(r2, CBV_PASS, "accepted");
	ck_assert_int_eq(r2->code, r1->code);
	ck_assert_str_eq(r2->ecode, r1->ecode);
	ck_assert_uint_eq(r2->elapsed_ms, r1->elapsed_ms);
	ck_assert_uint_eq(r2->hosts_tried, r1->hosts_tried);
	static const char *const fields[] = { "message", "host",  "ip",   "greeting",
		                              "helo",    "sent",  "recv", "tls" };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		ck_assert_str_eq(cbv_result_text(r2, fields[i]), cbv_result_text(r1, fields[i]));
	ck_assert_str_eq(r2->address, a);
	ck_assert_str_eq(r2->rcpt, r1->rcpt);
	ck_assert_str_eq(r2->sender, r1->sender);
	cbv_result_free(r1);
	cbv_result_free(r2);
}
END_TEST

/*
 * Which verdicts are kept, by their TTLs: pass, fail and error by default,
 * transient never (cache_transient_ttl = 0); a TTL of 0 keeps nothing and
 * a TTL set for transient keeps it.
 */
struct ttl_row {
	const char *local;  /* + pid + @domain */
	const char *domain;
	const char *opts;
	enum cbv_verdict verdict;
	const char *reason;
	int stored;
};

static const struct ttl_row ttl_rows[] = {
	{ "pass", "count.test", "", CBV_PASS, "accepted", 1 },
	{ "pass0", "count.test", "cache_pass_ttl=0", CBV_PASS, "accepted", 0 },
	{ "unknown", "count.test", "", CBV_FAIL, "mailbox_unknown", 1 },
	{ "unknown0", "count.test", "cache_fail_ttl=0", CBV_FAIL, "mailbox_unknown", 0 },
	{ "x", "policy.test", "", CBV_ERROR, "policy_refused", 1 },
	{ "y", "policy.test", "cache_error_ttl=0", CBV_ERROR, "policy_refused", 0 },
	{ "grey", "exim.test", "", CBV_TRANSIENT, "greylisted", 0 },
	{ "grey", "exim.test", "cache_transient_ttl=1h", CBV_TRANSIENT, "greylisted", 1 },
};

START_TEST(ttls)
{
	const struct ttl_row *t = &ttl_rows[_i];
	char a[128];
	struct cbv_result *r;

	/* grey is a known user of the rig's Exim: no pid in it, a map gives a new key */
	if (strcmp(t->local, "grey") == 0)
		snprintf(a, sizeof(a), "grey@exim.test");
	else
		snprintf(a, sizeof(a), "%s%d@%s", t->local, (int)getpid(), t->domain);
	for (int i = 0; i < 2; i++) {
		char opts[256];

		/* a MAIL FROM of its own per row: its own key */
		snprintf(opts, sizeof(opts), "%s%smailfrom=ttl%d-%d@verifier.test", t->opts,
		         t->opts[0] ? ";" : "", _i, (int)getpid());
		r = verify(a, opts);
		VERDICT(r, t->verdict, t->reason);
		if (i == 1) {
			/* (grey@exim.test is tried at each of exim.test's hosts) */
			ck_assert_msg(t->stored ? contacted == 0 : contacted > 0, "%s [%s]: contacted %d",
			              a, t->opts, contacted);
			ck_assert_int_eq(r->cache, t->stored);
			ck_assert_int_eq(r->cache_use, t->stored ? CBV_CACHE_USE_HIT : CBV_CACHE_USE_MISS);
		}
		cbv_result_free(r);
	}
}
END_TEST

/*
 * The helo is not in the key: it names the host that asks (each MX host
 * of a fleet has its own), so another helo is a hit on the same record.
 */
START_TEST(helo_not_in_key)
{
	char a[128];
	struct cbv_result *r;

	snprintf(a, sizeof(a), "helo%d@count.test", (int)getpid());
	r = verify(a, "helo=mx1.fleet.test");
	VERDICT(r, CBV_PASS, "accepted");
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_MISS);
	cbv_result_free(r);
	r = verify(a, "helo=mx2.fleet.test");
	VERDICT(r, CBV_PASS, "accepted");
	ck_assert_int_eq(contacted, 0);
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_HIT);
	cbv_result_free(r);
	ck_assert_int_eq(rcpts("127.0.0.65", a), 1);
}
END_TEST

/* cache_refresh=yes verifies again (and rewrites); cache="" is off. */
START_TEST(refresh_and_off)
{
	char a[128];
	struct cbv_result *r;

	snprintf(a, sizeof(a), "refresh%d@count.test", (int)getpid());
	cbv_result_free(verify(a, ""));
	r = verify(a, "cache_refresh=yes");
	ck_assert_int_eq(contacted, 1);
	ck_assert_int_eq(r->cache, 0);
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_MISS);
	cbv_result_free(r);
	ck_assert_int_eq(rcpts("127.0.0.65", a), 2);
	r = verify(a, "");
	ck_assert_int_eq(contacted, 0);
	cbv_result_free(r);

	snprintf(a, sizeof(a), "off%d@count.test", (int)getpid());
	for (int i = 0; i < 2; i++) {
		r = verify(a, "cache=");
		VERDICT(r, CBV_PASS, "accepted");
		ck_assert_int_eq(contacted, 1);
		ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_OFF);
		cbv_result_free(r);
	}
	ck_assert_int_eq(rcpts("127.0.0.65", a), 2);
}
END_TEST

/* An unusable store never fails a verification: it runs uncached. */
START_TEST(unusable)
{
	char a[128], junk[160], opt[200];
	struct cbv_result *r;
	FILE *f;

	snprintf(a, sizeof(a), "unusable%d@count.test", (int)getpid());
	r = verify(a, "cache=/nonexistent-cbv-dir/cbv");
	VERDICT(r, CBV_PASS, "accepted");
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_OFF);
	cbv_result_free(r);

	snprintf(junk, sizeof(junk), "%s/not-lmdb", store_dir);
	f = fopen(junk, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 2000; i++)
		fputs("this is not an LMDB file\n", f);
	fclose(f);
	snprintf(opt, sizeof(opt), "cache=%s", junk);
	for (int i = 0; i < 2; i++) {
		r = verify(a, opt);
		VERDICT(r, CBV_PASS, "accepted");
		ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_OFF);
		ck_assert_int_eq(contacted, 1);
		cbv_result_free(r);
	}
}
END_TEST

/*
 * Domain facts answer every address of the domain with no connection:
 * the MX refused the null sender; every host was unreachable.
 */
START_TEST(domain_facts)
{
	char a[128], b[128];
	const char *opts = ""; /* nullsender.test refuses only the null sender */
	struct cbv_result *r;

	snprintf(a, sizeof(a), "a%d@nullsender.test", (int)getpid());
	snprintf(b, sizeof(b), "b%d@nullsender.test", (int)getpid());
	r = verify(a, opts);
	VERDICT(r, CBV_ERROR, "sender_refused");
	ck_assert_int_gt(contacted, 0);
	cbv_result_free(r);
	r = verify(b, opts);
	VERDICT(r, CBV_ERROR, "sender_refused");
	ck_assert_int_eq(contacted, 0);
	ck_assert_int_eq(r->cache, 1);
	ck_assert_str_eq(r->address, b);
	ck_assert_str_eq(r->rcpt, b);
	cbv_result_free(r);

	snprintf(a, sizeof(a), "a%d@dead.test", (int)getpid());
	snprintf(b, sizeof(b), "b%d@dead.test", (int)getpid());
	r = verify(a, opts);
	VERDICT(r, CBV_TRANSIENT, "connect_failed");
	ck_assert_int_gt(contacted, 0);
	cbv_result_free(r);
	r = verify(b, opts);
	VERDICT(r, CBV_TRANSIENT, "connect_failed");
	ck_assert_int_eq(contacted, 0);
	ck_assert_int_eq(r->cache, 1);
	cbv_result_free(r);
}
END_TEST

/* Runs one verification in a child; its exit code is the verdict, 15 for
 * rate_limited, 9 for no result. */
static pid_t verify_child(const char *address, const char *extra, int notify_fd)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cbv_profile p;
		struct cbv_request req = { .address = address, .trace = count_init,
			                   .trace_arg = notify_fd >= 0 ? &notify_fd : NULL };
		struct cbv_result *r = NULL;
		struct cbv_err err;

		rig_profile(&p, extra);
		if (cbv_verify(&p, &req, &r, &err) != CBV_OK)
			_exit(9);
		_exit(r->reason == CBV_R_RATE_LIMITED ? 15 : (int)r->verdict);
	}
	return pid;
}

static int child_exit(pid_t pid)
{
	int st;

	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* N processes verify one new address at once: exactly one RCPT reaches the MX. */
START_TEST(single_flight)
{
	enum { N = 8 };
	char a[128];
	pid_t pids[N];

	snprintf(a, sizeof(a), "flight%d@count.test", (int)getpid());
	for (int i = 0; i < N; i++)
		pids[i] = verify_child(a, "", -1);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(child_exit(pids[i]), CBV_PASS);
	ck_assert_int_eq(rcpts("127.0.0.65", a), 1);
}
END_TEST

/*
 * A flight holder stuck at a tarpit: a second process waits for it until
 * its own deadline and connects nowhere.  Killed with SIGKILL, the holder's
 * lease goes at once (its pid is gone), and the next one verifies itself.
 */
START_TEST(flight_holder_killed)
{
	char a[128];
	int fds[2];
	pid_t holder;
	char c;
	struct cbv_result *r;

	snprintf(a, sizeof(a), "holder%d@tarpit.test", (int)getpid());
	ck_assert_int_eq(pipe(fds), 0);
	holder = verify_child(a, "timeout=30s", fds[1]);
	ck_assert_int_eq(read(fds[0], &c, 1), 1); /* it connects: the flight is its */
	r = verify(a, "timeout=1s");
	VERDICT(r, CBV_TRANSIENT, "timeout");
	ck_assert_int_eq(contacted, 0);
	ck_assert_msg(strstr(r->message, "waiting for another verification") != NULL, "%s",
	              r->message);
	ck_assert_int_eq(r->cache_use, CBV_CACHE_USE_MISS);
	cbv_result_free(r);
	kill(holder, SIGKILL);
	ck_assert_int_eq(waitpid(holder, NULL, 0), holder);
	r = verify(a, "timeout=1s");
	VERDICT(r, CBV_TRANSIENT, "timeout");
	ck_assert_int_eq(contacted, 1);
	cbv_result_free(r);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* domain_max_rate across processes: over it, rate_limited and no RCPT. */
START_TEST(rate_cap)
{
	const char *opts = "domain_max_rate=2/1h";
	char a[3][128];
	int limited = 0;

	for (int i = 0; i < 3; i++) {
		snprintf(a[i], sizeof(a[i]), "rate%d-%d@[127.0.0.65]", i, (int)getpid());
		int code = child_exit(verify_child(a[i], opts, -1));

		ck_assert_msg(code == (i < 2 ? CBV_PASS : 15), "%d: exit %d", i, code);
		limited += code == 15;
	}
	ck_assert_int_eq(limited, 1);
	ck_assert_int_eq(rcpts("127.0.0.65", a[0]) + rcpts("127.0.0.65", a[1]), 2);
	ck_assert_int_eq(rcpts("127.0.0.65", a[2]), 0);
}
END_TEST

/* domain_max_concurrency across processes, and its message names the cap. */
START_TEST(concurrency_cap)
{
	const char *opts = "domain_max_concurrency=1;timeout=30s";
	char a[128], b[128], c;
	int fds[2];
	pid_t holder;
	struct cbv_result *r;

	snprintf(a, sizeof(a), "conc-a%d@[127.0.0.20]", (int)getpid());
	snprintf(b, sizeof(b), "conc-b%d@[127.0.0.20]", (int)getpid());
	ck_assert_int_eq(pipe(fds), 0);
	holder = verify_child(a, opts, fds[1]);
	ck_assert_int_eq(read(fds[0], &c, 1), 1);
	r = verify(b, opts);
	VERDICT(r, CBV_TRANSIENT, "rate_limited");
	ck_assert_int_eq(contacted, 0);
	ck_assert_int_eq(r->code, 451);
	ck_assert_str_eq(r->ecode, "4.7.0");
	ck_assert_msg(strstr(r->message, "domain_max_concurrency") != NULL, "%s", r->message);
	cbv_result_free(r);
	kill(holder, SIGKILL);
	ck_assert_int_eq(waitpid(holder, NULL, 0), holder);
	/* the dead holder's slot is reclaimed: the next one is not limited */
	r = verify(b, "domain_max_concurrency=1;timeout=1s");
	VERDICT(r, CBV_TRANSIENT, "timeout");
	ck_assert_int_eq(contacted, 1);
	cbv_result_free(r);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/*
 * host_max_concurrency: a child process holds the slots of the given IPs
 * until the pipe closes.  Returns its pid once it holds them.
 */
static pid_t hold_hosts(const char *const *ips, int n, int *release_fd)
{
	int up[2], down[2];
	char c;
	pid_t pid;

	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(down), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cbv_cache *cache = cbv_cache_new(store, 16 << 20);
		struct cbv_cache_caps caps;
		uint64_t t;

		close(down[1]); /* or the read below never sees EOF */
		close(up[0]);
		cbv_cache_caps_defaults(&caps);
		caps.host_concurrency = 1;
		for (int i = 0; i < n; i++) {
			if (cbv_cache_host_acquire(cache, ips[i], &caps, &t, NULL) != CBV_CACHE_OK)
				_exit(1);
		}
		(void)!write(up[1], "h", 1);
		(void)!read(down[0], &c, 1);
		_exit(0);
	}
	close(down[0]);
	close(up[1]);
	ck_assert_int_eq(read(up[0], &c, 1), 1);
	close(up[0]);
	*release_fd = down[1];
	return pid;
}

START_TEST(host_cap)
{
	static const char *const mx1[] = { "127.0.0.66" };
	static const char *const both[] = { "127.0.0.66", "127.0.0.67" };
	char a[128], b[128];
	int fd;
	pid_t holder;
	struct cbv_result *r;

	snprintf(a, sizeof(a), "hostcap%d@count2.test", (int)getpid());
	holder = hold_hosts(mx1, 1, &fd);
	r = verify(a, "host_max_concurrency=1");
	VERDICT(r, CBV_PASS, "accepted");
	ck_assert_str_eq(r->host, "mx2.count2.test");
	ck_assert_int_eq(contacted, 1);
	cbv_result_free(r);
	ck_assert_int_eq(rcpts("127.0.0.66", a), 0);
	ck_assert_int_eq(rcpts("127.0.0.67", a), 1);
	close(fd);
	ck_assert_int_eq(child_exit(holder), 0);

	snprintf(b, sizeof(b), "hostcap-all%d@count2.test", (int)getpid());
	holder = hold_hosts(both, 2, &fd);
	r = verify(b, "host_max_concurrency=1");
	VERDICT(r, CBV_TRANSIENT, "rate_limited");
	ck_assert_int_eq(contacted, 0);
	ck_assert_msg(strstr(r->message, "host_max_concurrency") != NULL, "%s", r->message);
	cbv_result_free(r);
	close(fd);
	ck_assert_int_eq(child_exit(holder), 0);
	/* not stored: with the slots free it verifies */
	r = verify(b, "host_max_concurrency=1");
	VERDICT(r, CBV_PASS, "accepted");
	ck_assert_int_eq(contacted, 1);
	cbv_result_free(r);
}
END_TEST

/*
 * catchall_probe: the first verification at a catch-all domain also RCPTs
 * a random local part (pipelined); accepted too, the domain is a
 * catch-all, stored as a domain record that answers every later address
 * with no connection.  sent/recv stay the real RCPT's.
 */
START_TEST(catch_all)
{
	char a[128], b[128], opts[96];
	struct cbv_result *r;
	int probes = count_rcpts("127.0.0.60", "cbv-probe-", 1);

	snprintf(opts, sizeof(opts), "catchall_probe=yes;mailfrom=ca%d@verifier.test",
	         (int)getpid());
	snprintf(a, sizeof(a), "a%d@catchall.test", (int)getpid());
	snprintf(b, sizeof(b), "b%d@catchall.test", (int)getpid());
	r = verify(a, opts);
	VERDICT(r, CBV_PASS, "catch_all");
	ck_assert_int_eq(contacted, 1);
	ck_assert_int_eq(r->code, 250);
	ck_assert_msg(strncmp(r->sent, "RCPT TO:<a", 10) == 0, "sent %s", r->sent);
	ck_assert_msg(strncmp(r->recv, "250 ", 4) == 0, "recv %s", r->recv);
	cbv_result_free(r);
	ck_assert_int_eq(rcpts("127.0.0.60", a), 1);
	ck_assert_int_eq(count_rcpts("127.0.0.60", "cbv-probe-", 1), probes + 1);
	r = verify(b, opts);
	VERDICT(r, CBV_PASS, "catch_all");
	ck_assert_int_eq(contacted, 0);
	ck_assert_int_eq(r->cache, 1);
	ck_assert_str_eq(r->address, b);
	cbv_result_free(r);
	ck_assert_int_eq(rcpts("127.0.0.60", b), 0);
	ck_assert_int_eq(count_rcpts("127.0.0.60", "cbv-probe-", 1), probes + 1);
	/* without the probe the same domain is an ordinary pass */
	r = verify(b, "helo=noprobe.test");
	VERDICT(r, CBV_PASS, "accepted");
	cbv_result_free(r);
}
END_TEST

/* The probe refused (a real MX): the real RCPT's reply decides, pass or fail. */
struct probe_row {
	const char *address;
	enum cbv_verdict verdict;
	const char *reason;
};

static const struct probe_row probe_rows[] = {
	{ "alice@exim.test", CBV_PASS, "accepted" },
	{ "nobody@exim.test", CBV_FAIL, "mailbox_unknown" },
	{ "alice@fast.test", CBV_PASS, "catch_all" }, /* fast takes any local part but unknown* */
};

START_TEST(probe_refused)
{
	const struct probe_row *t = &probe_rows[_i];
	char opts[96];
	struct cbv_result *r;

	snprintf(opts, sizeof(opts), "catchall_probe=yes;cache=;helo=pr%d.test", (int)getpid());
	r = verify(t->address, opts);
	VERDICT(r, t->verdict, t->reason);
	ck_assert_int_eq(contacted, 1);
	ck_assert_msg(strstr(r->sent, "cbv-probe-") == NULL, "sent %s", r->sent);
	cbv_result_free(r);
}
END_TEST

/* Failed allocations with the cache on: ENOMEM or a complete result, no leak. */
START_TEST(oom)
{
	char a[128];
	int ok = 0;

	snprintf(a, sizeof(a), "oom%d@count.test", (int)getpid());
	for (long n = 0; n < 300 && !ok; n++) {
		struct cbv_profile p;
		struct cbv_request req = { .address = a };
		struct cbv_result *r = NULL;
		struct cbv_err err;
		enum cbv_status st;

		rig_profile(&p, "cache_refresh=yes");
		cbv_alloc_fail_after(n);
		st = cbv_verify(&p, &req, &r, &err);
		cbv_alloc_fail_after(-1);
		if (st == CBV_OK) {
			ck_assert_ptr_nonnull(r);
			ok = r->verdict == CBV_PASS;
			cbv_result_free(r);
		} else {
			ck_assert_int_eq(st, CBV_ENOMEM);
			ck_assert_ptr_null(r);
		}
		cbv_profile_clear(&p);
	}
	ck_assert_msg(ok, "never succeeded");
}
END_TEST

/* A group (issue 9.3): the cache per address; a cached address is not sent, each result stored. */
static void verify_group(const char *const *addrs, size_t n, const char *extra,
                         struct cbv_result **out)
{
	struct cbv_profile p;
	struct cbv_request req = { .trace = count_init };
	struct cbv_err err;

	rig_profile(&p, extra);
	contacted = 0;
	ck_assert_int_eq(cbv_verify_multi(&p, &req, addrs, n, out, &err), CBV_OK);
	cbv_profile_clear(&p);
}

START_TEST(group_cache)
{
	char a[128], b[128], u[128];
	const char *addrs[3] = { a, b, u };
	struct cbv_result *r[3];

	snprintf(a, sizeof(a), "ga%d@count.test", (int)getpid());
	snprintf(b, sizeof(b), "gb%d@count.test", (int)getpid());
	snprintf(u, sizeof(u), "unknowng%d@count.test", (int)getpid());
	r[0] = verify(a, "");
	VERDICT(r[0], CBV_PASS, "accepted");
	cbv_result_free(r[0]);
	verify_group(addrs, 3, "", r);
	ck_assert_int_eq(contacted, 1); /* b and u, in one session */
	ck_assert_int_eq(rcpts("127.0.0.65", a), 1); /* a came from the store */
	ck_assert_int_eq(rcpts("127.0.0.65", b), 1);
	ck_assert_int_eq(rcpts("127.0.0.65", u), 1);
	VERDICT(r[0], CBV_PASS, "accepted");
	ck_assert_int_eq(r[0]->cache, 1);
	VERDICT(r[1], CBV_PASS, "accepted");
	ck_assert_int_eq(r[1]->cache, 0);
	VERDICT(r[2], CBV_FAIL, "mailbox_unknown");
	ck_assert_int_eq(r[2]->cache, 0);
	for (int i = 0; i < 3; i++)
		cbv_result_free(r[i]);
	/* each result was stored: all three from the store now */
	verify_group(addrs, 3, "", r);
	ck_assert_int_eq(contacted, 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(r[i]->cache, 1);
		cbv_result_free(r[i]);
	}
	/* the catch-all probe: one for the group, after the real RCPTs */
	{
		int probes = count_rcpts("127.0.0.60", "cbv-probe-", 1);
		char opts[96];

		snprintf(opts, sizeof(opts), "catchall_probe=yes;mailfrom=gca%d@verifier.test",
		         (int)getpid());
		snprintf(a, sizeof(a), "ga%d@catchall.test", (int)getpid());
		snprintf(b, sizeof(b), "gb%d@catchall.test", (int)getpid());
		verify_group(addrs, 2, opts, r);
		ck_assert_int_eq(contacted, 1);
		ck_assert_int_eq(count_rcpts("127.0.0.60", "cbv-probe-", 1), probes + 1);
		VERDICT(r[0], CBV_PASS, "catch_all");
		VERDICT(r[1], CBV_PASS, "catch_all");
		ck_assert_msg(strncmp(r[1]->sent, "RCPT TO:<gb", 11) == 0, "sent %s", r[1]->sent);
		cbv_result_free(r[0]);
		cbv_result_free(r[1]);
	}
}
END_TEST

static Suite *verify_cache_suite(void)
{
	Suite *s = suite_create("verify_cache");
	TCase *tc = tcase_create("cache");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, hit_after_miss);
	tcase_add_loop_test(tc, ttls, 0, (int)(sizeof(ttl_rows) / sizeof(ttl_rows[0])));
	tcase_add_test(tc, helo_not_in_key);
	tcase_add_test(tc, refresh_and_off);
	tcase_add_test(tc, unusable);
	tcase_add_test(tc, domain_facts);
	tcase_add_test(tc, catch_all);
	tcase_add_loop_test(tc, probe_refused, 0, (int)(sizeof(probe_rows) / sizeof(probe_rows[0])));
	tcase_add_test(tc, group_cache);
	suite_add_tcase(s, tc);
	tc = tcase_create("processes");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, single_flight);
	tcase_add_test(tc, flight_holder_killed);
	tcase_add_test(tc, rate_cap);
	tcase_add_test(tc, concurrency_cap);
	tcase_add_test(tc, host_cap);
	suite_add_tcase(s, tc);
	tc = tcase_create("oom");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, oom);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;
	char cmd[128];

	snprintf(store_dir, sizeof(store_dir), "/tmp/cbv-vcache.XXXXXX");
	if (mkdtemp(store_dir) == NULL) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	snprintf(store, sizeof(store), "%s/cbv", store_dir);
	sr = srunner_create(verify_cache_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", store_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", store_dir);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
