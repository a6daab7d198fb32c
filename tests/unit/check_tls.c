/*
 * check_tls.c - TLS session resumption (cbv_tls) against the loopback rig's
 * Exim 4.96: 127.0.0.12 (mx2.grey.test) issues session tickets
 * (tls_resumption_hosts), 127.0.0.10 (mx.exim.test) is a stock Exim that
 * issues none.  Run inside `tests/rig/rig.sh run` (CBV_RIG_PORT,
 * CBV_RIG_CA_DIR).  The built-in store's bounds, expiry and OOM are
 * checked without the network.
 */
#define _GNU_SOURCE /* nftw's FTW_DEPTH|FTW_PHYS */
#include <arpa/inet.h>
#include <check.h>
#include <ftw.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cbv.h"
#include "cbv_clock.h"
#include "cbv_limits.h"
#include "cbv_session.h"
#include "cbv_share.h"
#include "cbv_tls.h"

#define RESUMES "127.0.0.12" /* Exim with tls_resumption_hosts */
#define RESUMES_NAME "mx2.grey.test"
#define STOCK "127.0.0.10" /* Exim as Debian ships it: no tickets */
#define STOCK_NAME "mx.exim.test"

static struct cbv_session_outcome out; /* codes and flags: its reply texts die with the session */
static const struct cbv_tls_store *run_store; /* run()'s sessions' store; NULL = the process's */
static int last_child;                        /* exit status of child_resumes()'s child */

static const char *ca_dir(void)
{
	const char *ca = getenv("CBV_RIG_CA_DIR");

	ck_assert_msg(ca != NULL && getenv("CBV_RIG_PORT") != NULL,
	              "run inside tests/rig/rig.sh run");
	return ca;
}

/*
 * One SMTP session with STARTTLS required, verifying alice@exim.test at
 * ip under the MX name host.  Fills out; returns 0, or -1 if
 * cbv_session_new() failed (err says why).
 */
static int run(const char *ip, const char *host, int verify, struct cbv_err *err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct cbv_session_opts o;
	struct cbv_session *s;
	struct pollfd pfd;
	int64_t wake;

	ck_assert_int_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	sa.sin_port = htons((uint16_t)atoi(getenv("CBV_RIG_PORT")));
	memset(&o, 0, sizeof(o));
	o.host = host;
	o.helo = "verifier.test";
	o.mail_from = "";
	o.rcpt_to = "alice@exim.test";
	o.starttls = CBV_STARTTLS_REQUIRE;
	o.tls_verify = verify;
	o.ca_dir = verify ? ca_dir() : "";
	o.tls_store = run_store;
	o.connect_timeout_ms = 10000;
	o.command_timeout_ms = 10000;
	o.deadline_ms = cbv_now_ms() + 20000;
	s = cbv_session_new((struct sockaddr *)&sa, sizeof(sa), &o, err);
	if (s == NULL)
		return -1;
	while (cbv_session_pollfd(s, &pfd, &wake)) {
		int64_t t = wake - cbv_now_ms();
		int n = poll(&pfd, 1, t < 0 ? 0 : (int)t);

		cbv_session_process(s, n > 0 ? pfd.revents : 0);
	}
	out = *cbv_session_outcome(s);
	cbv_session_free(s);
	return 0;
}

/* run() that must end with 250 to RCPT over TLS. */
static void run_ok(const char *ip, const char *host, int verify)
{
	struct cbv_err err;

	ck_assert_msg(run(ip, host, verify, &err) == 0, "%s", err.msg);
	ck_assert_msg(out.status == CBV_OK && out.stage == CBV_STAGE_RCPT && out.reply.code == 250,
	              "%s [%s]: %s at %s: %s", host, ip, cbv_strstatus(out.status),
	              cbv_stage_name(out.stage), out.err.msg);
	ck_assert_msg(strncmp(out.tls, "TLSv1.", 6) == 0, "tls \"%s\"", out.tls);
	ck_assert_msg(strstr(out.tls, verify ? ":verified" : ":unverified") != NULL, "tls \"%s\"",
	              out.tls);
}

static int resumed(void)
{
	size_t n = strlen(out.tls);

	return n > 8 && strcmp(out.tls + n - 8, ":resumed") == 0;
}

/* ---- resumption against the rig ------------------------------------------ */

struct resume_row {
	const char *ip, *host;
	int verify;
	int resumes; /* the server issues tickets: the second handshake resumes */
};

static const struct resume_row resume_rows[] = {
	{ RESUMES, RESUMES_NAME, 0, 1 },
	{ RESUMES, RESUMES_NAME, 1, 1 },
	{ RESUMES, RESUMES, 0, 1 }, /* IP literal: no SNI, still resumes */
	{ STOCK, STOCK_NAME, 0, 0 },
	{ STOCK, STOCK_NAME, 1, 0 },
};

/*
 * The first session is a full handshake; its TLS 1.3 tickets, sent after
 * the handshake, are read with the EHLO reply, so the store holds one
 * when the session ends at the RCPT reply (it never waits for the 221).
 * The second one to the same MX resumes, and says so.
 */
START_TEST(second_resumes)
{
	const struct resume_row *t = &resume_rows[_i];

	cbv_tls_set_store(NULL);
	cbv_tls_cache_clear();
	run_ok(t->ip, t->host, t->verify);
	ck_assert_msg(!resumed(), "first: %s", out.tls);
	ck_assert_uint_eq(cbv_tls_cache_count(), t->resumes ? 1 : 0);
	for (int i = 0; i < 3; i++) {
		run_ok(t->ip, t->host, t->verify);
		ck_assert_msg(resumed() == t->resumes, "%s [%s] #%d: tls \"%s\"", t->host, t->ip,
		              i + 2, out.tls);
		/* Each resumption brings fresh tickets, replacing the old one. */
		ck_assert_uint_eq(cbv_tls_cache_count(), t->resumes ? 1 : 0);
	}
	cbv_tls_cache_clear();
}
END_TEST

/* The public API: last_poll's tls field of the second verification. */
START_TEST(last_poll_resumed)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = "alice@exim.test", .host = RESUMES_NAME,
		                   .mode = CBV_MODE_HOSTONLY };
	struct cbv_err err;

	cbv_tls_set_store(NULL);
	cbv_tls_cache_clear();
	cbv_profile_defaults(&p);
	/* No cache: the second verification must make a connection. */
	ck_assert_int_eq(cbv_profile_set(&p, "cache", "", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(&p, "dns_servers", getenv("CBV_RIG_DNS"), &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(&p, "port", getenv("CBV_RIG_PORT"), &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(&p, "deny_networks", "", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(&p, "helo", "verifier.test", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(&p, "starttls", "require", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(&p, "tls_verify", "yes", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(&p, "ca_dir", ca_dir(), &err), CBV_OK);
	for (int i = 0; i < 2; i++) {
		struct cbv_result *r = NULL;
		size_t n;

		ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
		ck_assert_msg(r->verdict == CBV_PASS, "%s/%s %s", cbv_verdict_name(r->verdict),
		              cbv_reason_name(r->reason), r->message);
		n = strlen(r->tls);
		ck_assert_msg(strncmp(r->tls, "TLSv1.3:", 8) == 0, "tls %s", r->tls);
		ck_assert_msg(strstr(r->tls, ":verified") != NULL, "tls %s", r->tls);
		ck_assert_msg((n > 8 && strcmp(r->tls + n - 8, ":resumed") == 0) == (i == 1),
		              "#%d tls %s", i, r->tls);
		cbv_result_free(r);
	}
	cbv_profile_clear(&p);
	cbv_tls_cache_clear();
}
END_TEST

/* ---- verification policy ------------------------------------------------- */

/* A session made without verification is never offered by a verifying
 * connection: it does a full, verified handshake and keeps its own. */
START_TEST(unverified_not_reused)
{
	cbv_tls_set_store(NULL);
	cbv_tls_cache_clear();
	run_ok(RESUMES, RESUMES_NAME, 0);
	ck_assert_uint_eq(cbv_tls_cache_count(), 1);
	run_ok(RESUMES, RESUMES_NAME, 1);
	ck_assert_msg(!resumed(), "verified connection resumed an unverified session: %s",
	              out.tls);
	ck_assert_uint_eq(cbv_tls_cache_count(), 2);
	run_ok(RESUMES, RESUMES_NAME, 1);
	ck_assert_msg(resumed(), "tls %s", out.tls);
	cbv_tls_cache_clear();
}
END_TEST

/*
 * A store that cannot be trusted to keep keys apart (the shared cache of
 * the next round might key by IP and name only, or be tampered with).
 * It remembers values per key and answers get() according to `mode`.
 */
enum fake_mode {
	FAKE_ANY,   /* the last value put, whatever key is asked for */
	FAKE_FORGE, /* the session of `forge_from`, relabelled with the key asked for */
	FAKE_AGED,  /* the honest value, made 100 s ago with a 50 s timeout */
	FAKE_HONEST /* the value put under that key */
};

static struct {
	enum fake_mode mode;
	char keys[4][CBV_TLS_KEY_MAX];
	unsigned char vals[4][CBV_TLS_KEY_MAX + CBV_TLS_SESSION_BYTES_MAX];
	size_t lens[4];
	int n, last;
	int forge_from;
	int gets, puts, dels;
	time_t expires;
} fake;

static int fake_find(const char *key)
{
	for (int i = 0; i < fake.n; i++)
		if (strcmp(fake.keys[i], key) == 0)
			return i;
	return -1;
}

static void fake_put(void *arg, const char *key, const unsigned char *data, size_t len,
                     time_t expires)
{
	int i = fake_find(key);

	(void)arg;
	ck_assert_uint_le(len, sizeof(fake.vals[0]));
	if (i < 0) {
		ck_assert_int_lt(fake.n, 4);
		i = fake.n++;
		snprintf(fake.keys[i], sizeof(fake.keys[i]), "%s", key);
	}
	memcpy(fake.vals[i], data, len);
	fake.lens[i] = len;
	fake.last = i;
	fake.puts++;
	fake.expires = expires;
}

static void fake_del(void *arg, const char *key)
{
	(void)arg;
	(void)key;
	fake.dels++;
}

/* The DER part of a stored value (after "key\0"). */
static const unsigned char *der_of(int i, size_t *len)
{
	size_t kl = strlen((const char *)fake.vals[i]);

	*len = fake.lens[i] - kl - 1;
	return fake.vals[i] + kl + 1;
}

static size_t relabel(const char *key, const unsigned char *der, size_t dlen,
                      unsigned char *buf, size_t n)
{
	size_t kl = strlen(key);

	ck_assert_uint_le(kl + 1 + dlen, n);
	memcpy(buf, key, kl + 1);
	memcpy(buf + kl + 1, der, dlen);
	return kl + 1 + dlen;
}

static size_t fake_get(void *arg, const char *key, unsigned char *buf, size_t n)
{
	const unsigned char *der, *p;
	unsigned char aged[CBV_TLS_SESSION_BYTES_MAX], *q = aged;
	SSL_SESSION *sess;
	size_t dlen;
	int i = fake_find(key), alen;

	(void)arg;
	fake.gets++;
	switch (fake.mode) {
	case FAKE_ANY:
		if (fake.n == 0 || fake.lens[fake.last] > n)
			return 0;
		memcpy(buf, fake.vals[fake.last], fake.lens[fake.last]);
		return fake.lens[fake.last];
	case FAKE_FORGE:
		der = der_of(fake.forge_from, &dlen);
		return relabel(key, der, dlen, buf, n);
	case FAKE_AGED:
		if (i < 0)
			return 0;
		der = der_of(i, &dlen);
		p = der;
		sess = d2i_SSL_SESSION(NULL, &p, (long)dlen);
		ck_assert_ptr_nonnull(sess);
		/* The ticket's lifetime hint (7200 s) still holds: OpenSSL
		 * would offer it and the server take it.  Only our check stops it. */
		SSL_SESSION_set_time(sess, (long)(time(NULL) - 100));
		SSL_SESSION_set_timeout(sess, 50);
		alen = i2d_SSL_SESSION(sess, NULL);
		ck_assert_int_gt(alen, 0);
		ck_assert_uint_le((size_t)alen, sizeof(aged));
		ck_assert_int_eq(i2d_SSL_SESSION(sess, &q), alen);
		SSL_SESSION_free(sess);
		return relabel(key, aged, (size_t)alen, buf, n);
	case FAKE_HONEST:
		break;
	}
	if (i < 0 || fake.lens[i] > n)
		return 0;
	memcpy(buf, fake.vals[i], fake.lens[i]);
	return fake.lens[i];
}

static void use_fake(enum fake_mode mode)
{
	static const struct cbv_tls_store st = { fake_get, fake_put, fake_del, NULL };

	memset(&fake, 0, sizeof(fake));
	fake.mode = mode;
	cbv_tls_set_store(&st);
}

/* The hook interface: one put per ticket, under a key naming the peer, the
 * name and the policy, bound by the ticket lifetime. */
START_TEST(hook_put_get)
{
	time_t now = time(NULL);

	use_fake(FAKE_HONEST);
	run_ok(RESUMES, RESUMES_NAME, 1);
	ck_assert_int_eq(fake.gets, 1);
	ck_assert_int_ge(fake.puts, 1); /* GnuTLS sends two tickets: one put each */
	ck_assert_int_eq(fake.n, 1);
	ck_assert_msg(strstr(fake.keys[0], "127.0.0.12:") != NULL &&
	                      strstr(fake.keys[0], " 13:" RESUMES_NAME " verify ") != NULL &&
	                      strstr(fake.keys[0], ca_dir()) != NULL,
	              "key %s", fake.keys[0]);
	ck_assert_msg(fake.expires > now && fake.expires <= time(NULL) + CBV_TLS_SESSION_TTL_MAX,
	              "expires in %lld s", (long long)(fake.expires - now));
	run_ok(RESUMES, RESUMES_NAME, 1);
	ck_assert_msg(resumed(), "tls %s", out.tls);
	ck_assert_int_eq(fake.gets, 2);
	cbv_tls_set_store(NULL);
}
END_TEST

/* A store handing out another key's value: the unverified session is not
 * believed under the verifying key. */
START_TEST(mixed_up_store)
{
	use_fake(FAKE_ANY);
	run_ok(RESUMES, RESUMES_NAME, 0);
	ck_assert_int_eq(fake.n, 1);
	run_ok(RESUMES, RESUMES_NAME, 1);
	ck_assert_int_eq(fake.gets, 2);
	ck_assert_msg(!resumed(), "verified connection resumed an unverified session: %s",
	              out.tls);
	cbv_tls_set_store(NULL);
}
END_TEST

/* Even relabelled with the verifying key, a session whose certificate was
 * never verified (verify result not X509_V_OK) is not offered. */
START_TEST(forged_unverified)
{
	use_fake(FAKE_HONEST);
	run_ok(RESUMES, RESUMES_NAME, 0);
	ck_assert_int_eq(fake.n, 1);
	fake.mode = FAKE_FORGE;
	fake.forge_from = 0;
	run_ok(RESUMES, RESUMES_NAME, 1);
	ck_assert_int_eq(fake.gets, 2);
	ck_assert_msg(!resumed(), "verified connection resumed a forged session: %s", out.tls);
	cbv_tls_set_store(NULL);
}
END_TEST

/* A session verified for one name, offered for a name its certificate does
 * not carry: the connection fails verification as a full handshake would. */
START_TEST(forged_name)
{
	struct cbv_err err;

	use_fake(FAKE_HONEST);
	run_ok(RESUMES, RESUMES_NAME, 1);
	fake.mode = FAKE_FORGE;
	fake.forge_from = 0;
	ck_assert_int_eq(run(RESUMES, "not-in-the-cert.test", 1, &err), 0);
	ck_assert_int_eq(fake.gets, 2);
	ck_assert_msg(out.status == CBV_ETLS && out.stage == CBV_STAGE_TLS, "%s at %s: %s (%s)",
	              cbv_strstatus(out.status), cbv_stage_name(out.stage), out.err.msg, out.tls);
	cbv_tls_set_store(NULL);
}
END_TEST

/* ---- lifetime ------------------------------------------------------------ */

/* A session past its timeout is not offered, whatever the store says. */
START_TEST(expired_not_offered)
{
	use_fake(FAKE_HONEST);
	run_ok(RESUMES, RESUMES_NAME, 0);
	fake.mode = FAKE_AGED;
	run_ok(RESUMES, RESUMES_NAME, 0);
	ck_assert_int_eq(fake.gets, 2);
	ck_assert_msg(!resumed(), "an expired session was resumed: %s", out.tls);
	fake.mode = FAKE_HONEST;
	run_ok(RESUMES, RESUMES_NAME, 0);
	ck_assert_msg(resumed(), "tls %s", out.tls);
	cbv_tls_set_store(NULL);
}
END_TEST

/* The built-in store drops what has expired when it meets it. */
START_TEST(store_expiry)
{
	unsigned char buf[16];
	time_t now = time(NULL);

	cbv_tls_cache_clear();
	cbv_tls_cache_put(NULL, "old", (const unsigned char *)"v", 1, now - 1);
	ck_assert_uint_eq(cbv_tls_cache_count(), 0);
	cbv_tls_cache_put(NULL, "k", (const unsigned char *)"value", 5, now + 100);
	ck_assert_uint_eq(cbv_tls_cache_count(), 1);
	ck_assert_uint_eq(cbv_tls_cache_get(NULL, "k", buf, sizeof(buf)), 5);
	ck_assert_int_eq(memcmp(buf, "value", 5), 0);
	ck_assert_uint_eq(cbv_tls_cache_get(NULL, "k", buf, 4), 0); /* does not fit */
	/* a put that is already stale replaces, and so removes, the old value */
	cbv_tls_cache_put(NULL, "k", (const unsigned char *)"value", 5, now);
	ck_assert_uint_eq(cbv_tls_cache_get(NULL, "k", buf, sizeof(buf)), 0);
	ck_assert_uint_eq(cbv_tls_cache_count(), 0);
	cbv_tls_cache_clear();
}
END_TEST

/* ---- bounds and OOM ------------------------------------------------------- */

START_TEST(store_bounded)
{
	enum { EXTRA = 10 };
	unsigned char buf[32], big[CBV_TLS_KEY_MAX + CBV_TLS_SESSION_BYTES_MAX + 1];
	char key[CBV_TLS_KEY_MAX + 1];
	time_t later = time(NULL) + 3600;

	cbv_tls_cache_clear();
	for (int i = 0; i < CBV_TLS_SESSIONS_MAX + EXTRA; i++) {
		snprintf(key, sizeof(key), "key%d", i);
		cbv_tls_cache_put(NULL, key, (const unsigned char *)key, strlen(key), later);
		if (i == CBV_TLS_SESSIONS_MAX - 1) /* key0 used: key1 is now the oldest */
			ck_assert_uint_gt(cbv_tls_cache_get(NULL, "key0", buf, sizeof(buf)), 0);
	}
	ck_assert_uint_eq(cbv_tls_cache_count(), CBV_TLS_SESSIONS_MAX);
	ck_assert_uint_eq(cbv_tls_cache_get(NULL, "key0", buf, sizeof(buf)), 4);
	for (int i = 1; i <= EXTRA; i++) {
		snprintf(key, sizeof(key), "key%d", i);
		ck_assert_msg(cbv_tls_cache_get(NULL, key, buf, sizeof(buf)) == 0, "%s kept", key);
	}
	for (int i = EXTRA + 1; i < CBV_TLS_SESSIONS_MAX + EXTRA; i++) {
		snprintf(key, sizeof(key), "key%d", i);
		ck_assert_msg(cbv_tls_cache_get(NULL, key, buf, sizeof(buf)) == strlen(key),
		              "%s lost", key);
	}
	/* too big a value, too long a key: not kept */
	cbv_tls_cache_clear();
	memset(big, 'x', sizeof(big));
	cbv_tls_cache_put(NULL, "big", big, sizeof(big), later);
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	cbv_tls_cache_put(NULL, key, (const unsigned char *)"v", 1, later);
	ck_assert_uint_eq(cbv_tls_cache_count(), 0);
	cbv_tls_cache_del(NULL, "nothing");
	cbv_tls_cache_put(NULL, "k", (const unsigned char *)"v", 1, later);
	cbv_tls_cache_del(NULL, "k");
	ck_assert_uint_eq(cbv_tls_cache_count(), 0);
}
END_TEST

/* A put that gets no memory keeps nothing and breaks nothing. */
START_TEST(store_oom)
{
	unsigned char buf[8];
	time_t later = time(NULL) + 3600;

	cbv_tls_cache_clear();
	cbv_tls_cache_put(NULL, "a", (const unsigned char *)"1", 1, later);
	cbv_alloc_fail_after(0);
	cbv_tls_cache_put(NULL, "b", (const unsigned char *)"2", 1, later);
	cbv_tls_cache_put(NULL, "a", (const unsigned char *)"3", 1, later);
	cbv_alloc_fail_after(-1);
	/* "a" was replaced by nothing: a stale value is never kept */
	ck_assert_uint_eq(cbv_tls_cache_count(), 0);
	ck_assert_uint_eq(cbv_tls_cache_get(NULL, "b", buf, sizeof(buf)), 0);
	cbv_tls_cache_put(NULL, "b", (const unsigned char *)"2", 1, later);
	ck_assert_uint_eq(cbv_tls_cache_get(NULL, "b", buf, sizeof(buf)), 1);
	cbv_tls_cache_clear();
}
END_TEST

/*
 * Whole sessions with the Nth allocation failing: each either fails with
 * CBV_ENOMEM or verifies; one whose session could not be stored still
 * verifies, and the next one then does a full handshake.
 */
START_TEST(session_oom)
{
	int stored_lost = 0, ok = 0;

	cbv_tls_set_store(NULL);
	for (long n = 0; n < 200 && !ok; n++) {
		struct cbv_err err;
		int r;

		cbv_tls_cache_clear();
		cbv_alloc_fail_after(n);
		r = run(RESUMES, RESUMES_NAME, 1, &err);
		cbv_alloc_fail_after(-1);
		if (r != 0) {
			ck_assert_int_eq(err.code, CBV_ENOMEM);
			continue;
		}
		if (out.status == CBV_ENOMEM)
			continue;
		ck_assert_msg(out.status == CBV_OK && out.reply.code == 250, "n=%ld: %s: %s", n,
		              cbv_strstatus(out.status), out.err.msg);
		if (cbv_tls_cache_count() == 0) {
			stored_lost++;
			run_ok(RESUMES, RESUMES_NAME, 1);
			ck_assert_msg(!resumed(), "tls %s", out.tls);
			continue;
		}
		ok = 1;
	}
	ck_assert_msg(ok, "never stored a session");
	ck_assert_msg(stored_lost > 0, "no run lost its session to OOM");
	cbv_tls_cache_clear();
}
END_TEST

/* ---- preload: the set-up a process does once, before any connection ----- */

static const struct {
	int verify;
} preload_rows[] = { { 0 }, { 1 } };

/*
 * cbv_tls_preload() makes the context a session then uses; a second call
 * changes nothing; and a child forked after it (as Exim's daemon forks its
 * connection processes) verifies with what it inherited.
 */
START_TEST(preload_then_session)
{
	struct cbv_err err;
	int verify = preload_rows[_i].verify, status = -1;
	const char *dir = verify ? ca_dir() : "";
	pid_t pid;

	ck_assert_msg(cbv_tls_preload(verify, dir, &err) == 0, "%s", err.msg);
	ck_assert_msg(cbv_tls_preload(verify, dir, &err) == 0, "%s", err.msg);
	run_ok(STOCK, STOCK_NAME, verify);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int ok = run(STOCK, STOCK_NAME, verify, &err) == 0 && out.status == CBV_OK &&
		         out.reply.code == 250 && strncmp(out.tls, "TLSv1.", 6) == 0;

		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "the forked child's STARTTLS session failed (status %d)", status);
}
END_TEST

/* ---- the store per connection, and the cache store across processes ---- */

/*
 * A session's store is the one its options name (cbv_session_opts
 * tls_store), not the process's: two profiles in one cbvd keep their
 * sessions apart.
 */
START_TEST(store_per_connection)
{
	struct cbv_tls_store st = { fake_get, fake_put, fake_del, NULL };
	struct cbv_err err;

	cbv_tls_set_store(NULL);
	cbv_tls_cache_clear();
	memset(&fake, 0, sizeof(fake));
	fake.mode = FAKE_HONEST;
	run_store = &st;
	run_ok(RESUMES, RESUMES_NAME, 0);
	ck_assert_int_gt(fake.puts, 0);
	ck_assert_uint_eq(cbv_tls_cache_count(), 0); /* nothing in the process's store */
	run_ok(RESUMES, RESUMES_NAME, 0);
	ck_assert_msg(resumed(), "tls %s", out.tls);
	/* the process's store has none: a full handshake */
	run_store = NULL;
	ck_assert_msg(run(RESUMES, RESUMES_NAME, 0, &err) == 0, "%s", err.msg);
	ck_assert_msg(!resumed(), "tls %s", out.tls);
	cbv_tls_cache_clear();
}
END_TEST

static char cdir[64];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb, (void)flag, (void)f;
	return remove(p);
}

static struct cbv_cache *parent_cache;

/*
 * In a child with a fresh process store and its own handle on the store
 * at path: one session through the cache; last_child = 0 if it resumed,
 * 1 if not, 2 if it failed.  The child frees what it made, and the
 * parent holds no LMDB environment across fork() (under valgrind, a
 * child's copy of one reads as leaked).
 */
static void child_resumes(const char *path, int verify)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cbv_tls_store st;
		struct cbv_cache *c = cbv_cache_new(path, 0);
		struct cbv_err err;
		int rc = 2;

		cbv_tls_cache_clear();
		cbv_share_tls_store(c, &st);
		run_store = &st;
		if (c != NULL && run(RESUMES, RESUMES_NAME, verify, &err) == 0 && out.status == CBV_OK)
			rc = resumed() ? 0 : 1;
		cbv_cache_free(c);
		cbv_tls_cache_clear();
		_exit(rc);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	last_child = WEXITSTATUS(status);
}

/*
 * Sessions through the cache (cbv_share.c) reach other processes: a
 * child with an empty process store resumes the parent's session; a
 * verifying child does not get the unverified one; with the cache off
 * (unusable path) nothing breaks.
 */
START_TEST(shared_across_processes)
{
	static const char nodir[] = "/nonexistent-dir/cbv";
	struct cbv_tls_store st;
	char path[128];

	snprintf(cdir, sizeof(cdir), "/tmp/check_tls.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(cdir));
	snprintf(path, sizeof(path), "%s/cbv", cdir);
	parent_cache = cbv_cache_new(path, 0);
	ck_assert_ptr_nonnull(parent_cache);
	cbv_tls_set_store(NULL);
	cbv_tls_cache_clear();
	cbv_share_tls_store(parent_cache, &st);
	run_store = &st;
	run_ok(RESUMES, RESUMES_NAME, 0);
	ck_assert(!resumed());
	cbv_cache_free(parent_cache);
	parent_cache = cbv_cache_new(path, 0); /* not opened until used */
	cbv_share_tls_store(parent_cache, &st);
	child_resumes(path, 0);
	ck_assert_int_eq(last_child, 0);
	child_resumes(path, 1);
	ck_assert_int_eq(last_child, 1); /* full, verified handshake */
	child_resumes(path, 1);
	ck_assert_int_eq(last_child, 0); /* the verified session the last child kept */
	/* the process store answers first: the parent resumes without asking */
	run_ok(RESUMES, RESUMES_NAME, 0);
	ck_assert(resumed());
	cbv_cache_free(parent_cache);
	/* a cache that cannot be used: only resumptions are lost */
	parent_cache = cbv_cache_new(nodir, 0);
	cbv_tls_cache_clear();
	cbv_share_tls_store(parent_cache, &st);
	run_ok(RESUMES, RESUMES_NAME, 0);
	child_resumes(nodir, 0);
	ck_assert_int_eq(last_child, 1);
	cbv_cache_free(parent_cache);
	parent_cache = NULL;
	run_store = NULL;
	cbv_tls_cache_clear();
	nftw(cdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

static Suite *tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("resume");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, second_resumes, 0,
	                    (int)(sizeof(resume_rows) / sizeof(resume_rows[0])));
	tcase_add_test(tc, last_poll_resumed);
	suite_add_tcase(s, tc);
	tc = tcase_create("verify");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, unverified_not_reused);
	tcase_add_test(tc, hook_put_get);
	tcase_add_test(tc, mixed_up_store);
	tcase_add_test(tc, forged_unverified);
	tcase_add_test(tc, forged_name);
	suite_add_tcase(s, tc);
	tc = tcase_create("shared");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, store_per_connection);
	tcase_add_test(tc, shared_across_processes);
	suite_add_tcase(s, tc);
	tc = tcase_create("expiry");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, expired_not_offered);
	tcase_add_test(tc, store_expiry);
	suite_add_tcase(s, tc);
	tc = tcase_create("bounds");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, store_bounded);
	tcase_add_test(tc, store_oom);
	tcase_add_test(tc, session_oom);
	suite_add_tcase(s, tc);
	tc = tcase_create("preload");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, preload_then_session, 0,
	                    (int)(sizeof(preload_rows) / sizeof(preload_rows[0])));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tls_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
