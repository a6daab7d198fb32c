/*
 * check_cache.c - the verification cache on real LMDB files in a mkdtemp
 * directory, with real processes: key derivation, the record codec, TTLs
 * on an injected clock, domain facts, eviction on a small map, stores
 * that cannot be used (another format, not LMDB, damaged, unwritable or
 * missing directory), ownership of created files, OOM, single flight and
 * caps across forked processes, a purge during writes, maintenance.
 */
#define _GNU_SOURCE /* nftw's FTW_DEPTH|FTW_PHYS */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cbv_cache.h"
#include "cbv_log.h"
#include "cbv_status.h"

/* ---- fixture: a fresh directory, a log capture and a clock ---- */

static char dir[64];
static char path[128];
static int errs;
static char last_err[2048];
static int64_t fake_now; /* 0: the real clock */

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

static int64_t test_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/check_cache.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/cbv", dir);
	errs = 0;
	last_err[0] = '\0';
	fake_now = 1700000000000LL;
	cbv_log_set(capture, NULL, CBV_LOG_DEBUG);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p);
}

static void teardown(void)
{
	chmod(dir, 0700);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	cbv_log_set(NULL, NULL, CBV_LOG_INFO);
}

static struct cbv_cache *open_cache(size_t map)
{
	struct cbv_cache *c = cbv_cache_new(path, map);

	ck_assert_ptr_nonnull(c);
	cbv_cache_set_clock(c, test_clock, NULL);
	return c;
}

static struct cbv_cache_key key_of(const char *domain, const char *local)
{
	struct cbv_cache_key k = { domain, local, "", 25, "starttls=1", 10 };

	return k;
}

/* A result with every field set, as cbv_verify would return it. */
static struct cbv_result *full_result(enum cbv_verdict vd, const char *reason, int code)
{
	struct cbv_result *r = cbv_result_new();

	ck_assert_ptr_nonnull(r);
	r->verdict = vd;
	r->reason = (enum cbv_reason)cbv_reason_parse(reason);
	r->code = code;
	snprintf(r->ecode, sizeof(r->ecode), "%d.1.1", code / 100);
	cbv_result_set(&r->message, "550-5.1.1 first line\n550 5.1.1 <bob@example.test> unknown");
	cbv_result_set(&r->address, "bob@alias.test");
	cbv_result_set(&r->rcpt, "bob@example.test");
	cbv_result_set(&r->sender, "");
	cbv_result_set(&r->host, "mx1.example.test");
	cbv_result_set(&r->ip, "192.0.2.7:25");
	cbv_result_set(&r->greeting, "220 mx1.example.test ESMTP");
	cbv_result_set(&r->helo, "250-mx1.example.test\n250-PIPELINING\n250 STARTTLS");
	cbv_result_set(&r->sent, "RCPT TO:<bob@example.test>");
	cbv_result_set(&r->recv, "550 5.1.1 unknown");
	snprintf(r->tls, sizeof(r->tls), "TLSv1.3:TLS_AES_256_GCM_SHA384:unverified");
	r->elapsed_ms = 5123;
	r->hosts_tried = 2;
	return r;
}

static const struct cbv_cache_ttl ttl = { 100, 50, 30, 0, 200, 300, 40 };

/* ---- key derivation ---- */

static const char big_fp[] = "starttls=1 mode=0 host= helo=mx.test max_hosts=5";

/* Each row changes one field of the base key; the key must change. */
static const struct {
	const char *what;
	struct cbv_cache_key k;
} key_rows[] = {
	{ "domain", { "example.net", "bob", "", 25, "starttls=1", 10 } },
	{ "domain suffix", { "example.test.x", "bob", "", 25, "starttls=1", 10 } },
	{ "local", { "example.test", "bob2", "", 25, "starttls=1", 10 } },
	{ "local case", { "example.test", "Bob", "", 25, "starttls=1", 10 } },
	{ "sender", { "example.test", "bob", "a@b.test", 25, "starttls=1", 10 } },
	{ "port", { "example.test", "bob", "", 587, "starttls=1", 10 } },
	{ "fingerprint", { "example.test", "bob", "", 25, "starttls=0", 10 } },
	{ "fingerprint length", { "example.test", "bob", "", 25, "starttls=1", 9 } },
	{ "no fingerprint", { "example.test", "bob", "", 25, NULL, 0 } },
	{ "long fingerprint", { "example.test", "bob", "", 25, big_fp, sizeof(big_fp) - 1 } },
	/* length prefixes: moving a byte from local to sender is another key */
	{ "shifted fields", { "example.test", "bo", "b", 25, "starttls=1", 10 } },
};

START_TEST(key_changes)
{
	struct cbv_cache_key base = key_of("example.test", "bob");
	unsigned char a[CBV_CACHE_KEY_MAX], b[CBV_CACHE_KEY_MAX];
	size_t na = cbv_cache_key_derive(&base, 'A', a, sizeof(a));
	size_t nb = cbv_cache_key_derive(&key_rows[_i].k, 'A', b, sizeof(b));

	ck_assert_uint_gt(na, 0);
	ck_assert_uint_gt(nb, 0);
	ck_assert_msg(na != nb || memcmp(a, b, na) != 0, "%s: same key", key_rows[_i].what);
	/* the domain fact key changes too, unless only the local part differs */
	na = cbv_cache_key_derive(&base, 'D', a, sizeof(a));
	nb = cbv_cache_key_derive(&key_rows[_i].k, 'D', b, sizeof(b));
	if (strncmp(key_rows[_i].what, "local", 5) == 0)
		ck_assert(na == nb && memcmp(a, b, na) == 0);
	else if (strcmp(key_rows[_i].what, "shifted fields") != 0)
		ck_assert_msg(na != nb || memcmp(a, b, na) != 0, "%s: same D key", key_rows[_i].what);
}
END_TEST

START_TEST(key_shape)
{
	struct cbv_cache_key k = key_of("Example.TEST", "bob"), k2 = key_of("example.test", "bob");
	unsigned char a[CBV_CACHE_KEY_MAX], b[CBV_CACHE_KEY_MAX];
	char dom[300];
	size_t n = cbv_cache_key_derive(&k, 'A', a, sizeof(a));

	/* 'A' domain NUL hash; the domain is case-insensitive */
	ck_assert_uint_eq(n, 1 + 12 + 1 + 32);
	ck_assert_int_eq(a[0], 'A');
	ck_assert_str_eq((const char *)a + 1, "example.test");
	ck_assert_uint_eq(cbv_cache_key_derive(&k2, 'A', b, sizeof(b)), n);
	ck_assert_mem_eq(a, b, n);
	ck_assert_uint_eq(cbv_cache_key_derive(&k, 'A', a, sizeof(a)), n); /* stable */
	ck_assert_mem_eq(a, b, n);
	/* out of bounds: nothing */
	k.domain = "";
	ck_assert_uint_eq(cbv_cache_key_derive(&k, 'A', a, sizeof(a)), 0);
	memset(dom, 'a', sizeof(dom));
	dom[256] = '\0';
	k.domain = dom;
	ck_assert_uint_eq(cbv_cache_key_derive(&k, 'A', a, sizeof(a)), 0);
	dom[255] = '\0';
	ck_assert_uint_eq(cbv_cache_key_derive(&k, 'A', a, sizeof(a)), CBV_CACHE_KEY_MAX);
	k = key_of("example.test", "");
	ck_assert_uint_eq(cbv_cache_key_derive(&k, 'A', a, sizeof(a)), 0);
	ck_assert_uint_gt(cbv_cache_key_derive(&k, 'D', a, sizeof(a)), 0);
	k = key_of("example.test", "bob");
	k.fp_len = CBV_CACHE_FP_MAX + 1;
	ck_assert_uint_eq(cbv_cache_key_derive(&k, 'A', a, sizeof(a)), 0);
	k = key_of("example.test", "bob");
	k.sender = NULL;
	ck_assert_uint_eq(cbv_cache_key_derive(&k, 'A', a, sizeof(a)), 0);
	k = key_of("example.test", "bob");
	k.port = 70000;
	ck_assert_uint_eq(cbv_cache_key_derive(&k, 'A', a, sizeof(a)), 0);
	ck_assert_uint_eq(cbv_cache_key_derive(&k2, 'X', a, sizeof(a)), 0);
	ck_assert_uint_eq(cbv_cache_key_derive(&k2, 'A', a, 10), 0);
}
END_TEST

/* ---- the record codec ---- */

static size_t encode_full(unsigned char *buf, size_t cap, struct cbv_cache_rec *rec)
{
	static const char *const texts[CBV_CACHE_NSTR] = {
		"mailbox_unknown", "5.1.1", "550 5.1.1 no\n550 5.1.1 such user", "bob@alias.test",
		"bob@example.test", "", "mx1.example.test", "[2001:db8::7]:25", "220 hi",
		"250 ok", "RCPT TO:<bob@example.test>", "550 5.1.1 no", "TLSv1.3:X:verified",
	};

	memset(rec, 0, sizeof(*rec));
	rec->kind = CBV_CACHE_ADDRESS;
	rec->verdict = CBV_FAIL;
	rec->code = 550;
	rec->port = 25;
	rec->hosts_tried = 3;
	rec->elapsed_ms = 77;
	rec->stored_ms = 1000;
	rec->expires_ms = 2000;
	for (int i = 0; i < CBV_CACHE_NSTR; i++)
		rec->s[i] = texts[i];
	return cbv_cache_rec_encode(rec, buf, cap);
}

START_TEST(rec_roundtrip)
{
	static unsigned char buf[CBV_CACHE_REC_MAX];
	struct cbv_cache_rec in, out;
	size_t n = encode_full(buf, sizeof(buf), &in);

	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(cbv_cache_rec_decode(buf, n, &out), CBV_REC_OK);
	ck_assert_int_eq(out.kind, in.kind);
	ck_assert_int_eq(out.verdict, in.verdict);
	ck_assert_uint_eq(out.code, 550);
	ck_assert_uint_eq(out.port, 25);
	ck_assert_uint_eq(out.hosts_tried, 3);
	ck_assert_uint_eq(out.elapsed_ms, 77);
	ck_assert_int_eq(out.stored_ms, 1000);
	ck_assert_int_eq(out.expires_ms, 2000);
	for (int i = 0; i < CBV_CACHE_NSTR; i++)
		ck_assert_str_eq(out.s[i], in.s[i]);
	/* too small a buffer: nothing, never a truncated record */
	ck_assert_uint_eq(encode_full(buf, n - 1, &in), 0);
}
END_TEST

START_TEST(rec_damage)
{
	static unsigned char buf[CBV_CACHE_REC_MAX];
	struct cbv_cache_rec rec;
	size_t n = encode_full(buf, sizeof(buf), &rec);

	/* every single-byte change and every truncation is refused */
	for (size_t i = 0; i < n; i++) {
		buf[i] ^= 0x20;
		ck_assert_msg(cbv_cache_rec_decode(buf, n, &rec) != CBV_REC_OK, "byte %zu", i);
		ck_assert_ptr_null(rec.s[0]);
		buf[i] ^= 0x20;
	}
	for (size_t len = 0; len < n; len++)
		ck_assert_msg(cbv_cache_rec_decode(buf, len, &rec) != CBV_REC_OK, "len %zu", len);
	ck_assert_int_eq(cbv_cache_rec_decode(buf, n, &rec), CBV_REC_OK);
}
END_TEST

static void reseal(unsigned char *buf, size_t n)
{
	cbv_cache_rec_reseal(buf, n);
}

START_TEST(rec_bounds)
{
	static unsigned char buf[CBV_CACHE_REC_MAX];
	static char big[CBV_REPLY_KEEP_MAX + CBV_CMD_MAX + 2];
	struct cbv_cache_rec rec, out;
	size_t n;

	encode_full(buf, sizeof(buf), &rec);
	/* every long string at its bound still fits in one record */
	memset(big, 'x', sizeof(big) - 1);
	for (int i = 0; i < CBV_CACHE_NSTR; i++) {
		size_t max = cbv_cache_str_max(i);

		big[max] = '\0';
		rec.s[i] = strdup(big);
		big[max] = 'x';
	}
	n = cbv_cache_rec_encode(&rec, buf, sizeof(buf));
	ck_assert_uint_gt(n, 0);
	ck_assert_int_eq(cbv_cache_rec_decode(buf, n, &out), CBV_REC_OK);
	ck_assert_uint_eq(strlen(out.s[CBV_CS_RECV]), CBV_REPLY_KEEP_MAX);
	for (int i = 0; i < CBV_CACHE_NSTR; i++)
		free((char *)(uintptr_t)rec.s[i]);
	/* one byte over a bound, a control byte, a bad kind or verdict: refused */
	encode_full(buf, sizeof(buf), &rec);
	big[cbv_cache_str_max(CBV_CS_ECODE) + 1] = '\0';
	rec.s[CBV_CS_ECODE] = big;
	ck_assert_uint_eq(cbv_cache_rec_encode(&rec, buf, sizeof(buf)), 0);
	big[cbv_cache_str_max(CBV_CS_ECODE) + 1] = 'x';
	encode_full(buf, sizeof(buf), &rec);
	rec.s[CBV_CS_RECV] = "550 \r\n";
	ck_assert_uint_eq(cbv_cache_rec_encode(&rec, buf, sizeof(buf)), 0);
	encode_full(buf, sizeof(buf), &rec);
	rec.kind = 9;
	ck_assert_uint_eq(cbv_cache_rec_encode(&rec, buf, sizeof(buf)), 0);
	encode_full(buf, sizeof(buf), &rec);
	rec.expires_ms = rec.stored_ms - 1;
	ck_assert_uint_eq(cbv_cache_rec_encode(&rec, buf, sizeof(buf)), 0);
	/* a forged value with a good sum but a control byte or bad verdict */
	n = encode_full(buf, sizeof(buf), &rec);
	buf[4] = 7;
	reseal(buf, n);
	ck_assert_int_eq(cbv_cache_rec_decode(buf, n, &out), CBV_REC_ECORRUPT);
	n = encode_full(buf, sizeof(buf), &rec);
	buf[n - 6] = '\t'; /* inside the last string */
	reseal(buf, n);
	ck_assert_int_eq(cbv_cache_rec_decode(buf, n, &out), CBV_REC_ECORRUPT);
	/* another format version, well formed */
	n = encode_full(buf, sizeof(buf), &rec);
	buf[2] = CBV_CACHE_FORMAT + 1;
	reseal(buf, n);
	ck_assert_int_eq(cbv_cache_rec_decode(buf, n, &out), CBV_REC_EVERSION);
}
END_TEST

START_TEST(leases_codec)
{
	struct cbv_cache_lease in[3] = { { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 } }, out[CBV_CACHE_SLOTS_MAX];
	struct cbv_cache_bucket b = { 12345, 678 }, b2;
	unsigned char buf[6 + CBV_CACHE_SLOTS_MAX * 20 + 4];
	size_t n = cbv_cache_leases_encode(in, 3, buf, sizeof(buf)), m;

	ck_assert_uint_eq(n, 6 + 60 + 4);
	ck_assert_int_eq(cbv_cache_leases_decode(buf, n, out, &m), CBV_REC_OK);
	ck_assert_uint_eq(m, 3);
	ck_assert(out[2].pid == 7 && out[2].ticket == 8 && out[2].expires_ms == 9);
	buf[10] ^= 1;
	ck_assert_int_eq(cbv_cache_leases_decode(buf, n, out, &m), CBV_REC_ECORRUPT);
	ck_assert_uint_eq(m, 0);
	ck_assert_uint_eq(cbv_cache_leases_encode(in, CBV_CACHE_SLOTS_MAX + 1, buf, sizeof(buf)), 0);
	n = cbv_cache_bucket_encode(&b, buf, sizeof(buf));
	ck_assert_int_eq(cbv_cache_bucket_decode(buf, n, &b2), CBV_REC_OK);
	ck_assert(b2.mtokens == 12345 && b2.last_ms == 678);
	/* one kind's value is not another's */
	ck_assert_int_eq(cbv_cache_leases_decode(buf, n, out, &m), CBV_REC_ECORRUPT);
	ck_assert_int_eq(cbv_cache_rec_decode(buf, n, &(struct cbv_cache_rec){ 0 }), CBV_REC_ECORRUPT);
}
END_TEST

/* ---- the store ---- */

/* A key out of bounds is never cached, and says so without a log line. */
START_TEST(bad_key)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_cache_key k = key_of("", "bob");
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250), *got;
	uint64_t ticket;

	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 5, &ticket, NULL), CBV_CACHE_OFF);
	k = key_of("example.test", "bob");
	k.sender = NULL;
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OFF);
	k.sender = "";
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(errs, 0);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

START_TEST(roundtrip)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_cache_key k = key_of("Example.test", "bob");
	struct cbv_result *r = full_result(CBV_FAIL, "mailbox_unknown", 550), *got = NULL;
	unsigned long age = 99;
	struct stat st;

	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, &age), CBV_CACHE_MISS);
	ck_assert_ptr_null(got);
	ck_assert_int_eq(age, 0);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	fake_now += 7500;
	k.domain = "example.TEST";
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, &age), CBV_CACHE_HIT);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(age, 7);
	ck_assert_int_eq(got->cache, 1);
	ck_assert_int_eq(got->verdict, CBV_FAIL);
	ck_assert_str_eq(cbv_reason_name(got->reason), "mailbox_unknown");
	ck_assert_int_eq(got->code, 550);
	ck_assert_str_eq(got->ecode, r->ecode);
	ck_assert_str_eq(got->message, r->message);
	ck_assert_str_eq(got->address, r->address);
	ck_assert_str_eq(got->rcpt, r->rcpt);
	ck_assert_str_eq(got->sender, r->sender);
	ck_assert_str_eq(got->host, r->host);
	ck_assert_str_eq(got->ip, r->ip);
	ck_assert_str_eq(got->greeting, r->greeting);
	ck_assert_str_eq(got->helo, r->helo);
	ck_assert_str_eq(got->sent, r->sent);
	ck_assert_str_eq(got->recv, r->recv);
	ck_assert_str_eq(got->tls, r->tls);
	ck_assert_uint_eq(got->elapsed_ms, 5123);
	ck_assert_uint_eq(got->hosts_tried, 2);
	cbv_result_free(got);
	/* files: the store and its lock, mode 0660 */
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0660);
	ck_assert_int_eq(errs, 0);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

/* TTL rows: verdict -> seconds it lives (ttl above); 0 = never stored. */
static const struct {
	enum cbv_verdict vd;
	const char *reason;
	unsigned live_s;
} ttl_rows[] = {
	{ CBV_PASS, "accepted", 100 },
	{ CBV_FAIL, "mailbox_unknown", 50 },
	{ CBV_ERROR, "policy_refused", 30 },
	{ CBV_TRANSIENT, "greylisted", 0 },
};

START_TEST(ttl_expiry)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = full_result(ttl_rows[_i].vd, ttl_rows[_i].reason, 250), *got;
	int64_t t0 = fake_now;

	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	if (ttl_rows[_i].live_s == 0) {
		ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	} else {
		fake_now = t0 + (int64_t)ttl_rows[_i].live_s * 1000 - 1;
		ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
		ck_assert_int_eq(got->verdict, ttl_rows[_i].vd);
		cbv_result_free(got);
		fake_now = t0 + (int64_t)ttl_rows[_i].live_s * 1000;
		ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
		ck_assert_ptr_null(got);
		/* expired records are kept until purged, then gone */
		ck_assert_int_eq(cbv_cache_purge(c), 1);
		ck_assert_int_eq(cbv_cache_purge(c), 0);
	}
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

/* Domain facts: a result at one address answers others at the domain. */
static const struct {
	enum cbv_verdict vd;
	const char *reason;
	unsigned live_s; /* the fact's TTL in ttl */
} fact_rows[] = {
	{ CBV_PASS, "catch_all", 300 },
	{ CBV_ERROR, "sender_refused", 200 },
	{ CBV_TRANSIENT, "connect_failed", 40 },
};

START_TEST(domain_facts)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_cache_key k = key_of("example.test", "bob"), other = key_of("example.test", "carol");
	struct cbv_result *r = full_result(fact_rows[_i].vd, fact_rows[_i].reason, 550), *got;
	int64_t t0 = fake_now;

	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	fake_now = t0 + (int64_t)fact_rows[_i].live_s * 1000 - 1;
	ck_assert_int_eq(cbv_cache_lookup(c, &other, &got, NULL), CBV_CACHE_HIT);
	ck_assert_int_eq(got->verdict, fact_rows[_i].vd);
	ck_assert_str_eq(cbv_reason_name(got->reason), fact_rows[_i].reason);
	ck_assert_int_eq(got->cache, 1);
	cbv_result_free(got);
	/* another sender or port is another answer */
	other.sender = "postmaster@here.test";
	ck_assert_int_eq(cbv_cache_lookup(c, &other, &got, NULL), CBV_CACHE_MISS);
	other.sender = "";
	other.port = 26;
	ck_assert_int_eq(cbv_cache_lookup(c, &other, &got, NULL), CBV_CACHE_MISS);
	other.port = 25;
	fake_now = t0 + (int64_t)fact_rows[_i].live_s * 1000;
	ck_assert_int_eq(cbv_cache_lookup(c, &other, &got, NULL), CBV_CACHE_MISS);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

START_TEST(eviction)
{
	struct cbv_cache *c = open_cache(1024 * 1024); /* 1 MB */
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250), *got;
	struct cbv_cache_stats st;
	char local[32], *msg = malloc(8001);
	struct cbv_cache_key k;
	unsigned long total;

	memset(msg, 'm', 8000);
	msg[8000] = '\0';
	cbv_result_set(&r->message, msg);
	cbv_result_set(&r->recv, msg);
	/* ~16 KB a record, 400 records: six times the map */
	for (int i = 0; i < 400; i++) {
		snprintf(local, sizeof(local), "user%d", i);
		k = key_of("example.test", local);
		fake_now += 1000;
		ck_assert_msg(cbv_cache_store(c, &k, r, &ttl, 0) == CBV_CACHE_OK, "store %d: %s", i,
		              last_err);
	}
	ck_assert_int_eq(cbv_cache_stats(c, &st), 0);
	total = st.by_kind[CBV_CACHE_ADDRESS];
	ck_assert_uint_lt(total, 400);
	ck_assert_uint_gt(total, 10);
	ck_assert_uint_le(st.used_bytes, st.map_bytes);
	/* the newest is there, the oldest went first */
	k = key_of("example.test", "user399");
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	k = key_of("example.test", "user0");
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(errs, 0);
	free(msg);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

/* A record that cannot fit even in an empty map: uncached, once logged. */
START_TEST(map_full)
{
	struct cbv_cache *c = open_cache(CBV_CACHE_MAP_MIN);
	struct cbv_result *big = full_result(CBV_PASS, "accepted", 250), *got;
	struct cbv_result *small = full_result(CBV_FAIL, "mailbox_unknown", 550);
	struct cbv_cache_key k = key_of("example.test", "big"), k2 = key_of("example.test", "small");
	char *text = malloc(CBV_REPLY_KEEP_MAX + 1);
	uint64_t ticket;

	memset(text, 't', CBV_REPLY_KEEP_MAX);
	text[CBV_REPLY_KEEP_MAX] = '\0';
	cbv_result_set(&big->greeting, text);
	cbv_result_set(&big->helo, text);
	cbv_result_set(&big->recv, text);
	cbv_result_set(&big->sent, text);
	ck_assert_int_eq(cbv_cache_store(c, &k2, small, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 10, &ticket, NULL), CBV_CACHE_OWN);
	ck_assert_int_eq(cbv_cache_store(c, &k, big, &ttl, ticket), CBV_CACHE_OFF);
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, "map full"));
	ck_assert_int_eq(cbv_cache_store(c, &k, big, &ttl, 0), CBV_CACHE_OFF);
	ck_assert_int_eq(errs, 1);
	/* the flight was ended anyway, and the store still works */
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 10, &ticket, NULL), CBV_CACHE_OWN);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_store(c, &k2, small, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(c, &k2, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	free(text);
	cbv_result_free(big);
	cbv_result_free(small);
	cbv_cache_free(c);
}
END_TEST

/* Opens path with LMDB directly and puts key = val. */
static void raw_put(const void *key, size_t klen, const void *val, size_t vlen)
{
	MDB_env *env;
	MDB_txn *t;
	MDB_dbi dbi;
	MDB_val k = { klen, (void *)(uintptr_t)key }, v = { vlen, (void *)(uintptr_t)val };

	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_open(env, path, MDB_NOSUBDIR, 0660), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &t), 0);
	ck_assert_int_eq(mdb_dbi_open(t, NULL, 0, &dbi), 0);
	ck_assert_int_eq(mdb_put(t, dbi, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(t), 0);
	mdb_env_close(env);
}

START_TEST(format_newer)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250), *got;
	unsigned char v99[4] = { 99, 0, 0, 0 };
	uint64_t ticket;

	ck_assert(cbv_cache_usable(c));
	cbv_cache_free(c);
	raw_put("#format", 7, v99, 4);
	c = open_cache(0);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_ptr_null(got);
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, "another format version (format 99"));
	/* every call is OFF, and the line is not repeated */
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 5, &ticket, NULL), CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_purge(c), -1);
	ck_assert_int_eq(errs, 1);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

START_TEST(format_older_and_records)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250), *got;
	unsigned char v0[4] = { 0, 0, 0, 0 }, kb[CBV_CACHE_KEY_MAX], buf[1024];
	struct cbv_cache_rec rec;
	size_t kl = cbv_cache_key_derive(&k, 'A', kb, sizeof(kb)), n;

	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	cbv_cache_free(c);
	/* an older store: replaced, then usable */
	raw_put("#format", 7, v0, 4);
	c = open_cache(0);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	cbv_cache_free(c);
	ck_assert_int_eq(errs, 0);
	/* one record of another version: a miss and one line */
	n = encode_full(buf, sizeof(buf), &rec);
	buf[2] = CBV_CACHE_FORMAT + 1;
	reseal(buf, n);
	raw_put(kb, kl, buf, n);
	c = open_cache(0);
	fake_now = 1500;
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, "another format version"));
	/* a damaged value: a miss and one more line, once */
	buf[40] ^= 0xff;
	cbv_cache_free(c);
	raw_put(kb, kl, buf, n);
	c = open_cache(0);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_MISS);
	ck_assert_int_eq(errs, 2);
	ck_assert_ptr_nonnull(strstr(last_err, "damaged record"));
	/* and a store over it works */
	fake_now = 1700000000000LL;
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

static void write_file(const char *p, const char *text, size_t n, off_t at)
{
	int fd = open(p, O_WRONLY | O_CREAT, 0660);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, text, n, at), (ssize_t)n);
	close(fd);
}

/* Every call on an unusable store answers OFF without crashing. */
static void all_off(struct cbv_cache *c)
{
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250), *got = (void *)1;
	struct cbv_cache_caps caps;
	struct cbv_cache_stats st;
	uint64_t ticket = 1;

	cbv_cache_caps_defaults(&caps);
	ck_assert(!cbv_cache_usable(c));
	ck_assert_int_eq(cbv_cache_lookup(c, &k, &got, NULL), CBV_CACHE_OFF);
	ck_assert_ptr_null(got);
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_flight_begin(c, &k, 5, &ticket, NULL), CBV_CACHE_OFF);
	ck_assert_int_eq(ticket, 0);
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "example.test", &caps, &ticket, NULL, NULL),
	                 CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_host_acquire(c, "192.0.2.1", &caps, &ticket, NULL), CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_purge(c), -1);
	ck_assert_int_eq(cbv_cache_forget(c, "example.test", NULL), -1);
	ck_assert_int_eq(cbv_cache_stats(c, &st), -1);
	cbv_result_free(r);
}

START_TEST(not_lmdb)
{
	struct cbv_cache *c;
	static const char junk[] = "this is a mail log, not a cache\n";

	write_file(path, junk, sizeof(junk) - 1, 0);
	c = open_cache(0);
	all_off(c);
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, "verifying without it"));
	cbv_cache_free(c);
	/* the file is left alone: it may be someone's */
	{
		char back[64] = "";
		int fd = open(path, O_RDONLY);

		ck_assert_int_eq(read(fd, back, sizeof(back)), (ssize_t)sizeof(junk) - 1);
		close(fd);
		ck_assert_str_eq(back, junk);
	}
}
END_TEST

START_TEST(corrupt_file)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250);
	static char junk[8192];

	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	cbv_cache_free(c);
	/* both meta pages overwritten */
	memset(junk, 0xa5, sizeof(junk));
	write_file(path, junk, sizeof(junk), 0);
	c = open_cache(0);
	all_off(c);
	ck_assert_int_eq(errs, 1);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

START_TEST(missing_dir)
{
	struct cbv_cache *c;

	snprintf(path, sizeof(path), "%s/no/such/dir/cbv", dir);
	c = open_cache(0);
	all_off(c);
	ck_assert_int_eq(errs, 1);
	ck_assert_ptr_nonnull(strstr(last_err, "directory is missing"));
	cbv_cache_free(c);
	/* a plain file where the directory should be */
	snprintf(path, sizeof(path), "%s/file", dir);
	write_file(path, "x", 1, 0);
	snprintf(path, sizeof(path), "%s/file/cbv", dir);
	c = open_cache(0);
	all_off(c);
	cbv_cache_free(c);
}
END_TEST

/* A symlink planted where the files go is refused; its target untouched. */
START_TEST(symlink_refused)
{
	char lock[160], victim[160], back[16] = "";
	struct cbv_cache *c;
	int fd;

	snprintf(victim, sizeof(victim), "%s/victim", dir);
	write_file(victim, "precious", 8, 0);
	for (int which = 0; which < 2; which++) {
		snprintf(lock, sizeof(lock), "%s%s", path, which == 0 ? "" : "-lock");
		ck_assert_int_eq(symlink(victim, lock), 0);
		c = open_cache(0);
		all_off(c);
		ck_assert_ptr_nonnull(strstr(last_err, "not a regular file"));
		cbv_cache_free(c);
		ck_assert_int_eq(unlink(lock), 0);
	}
	ck_assert_int_eq(errs, 2);
	fd = open(victim, O_RDONLY);
	ck_assert_int_eq(read(fd, back, sizeof(back)), 8);
	close(fd);
	ck_assert_str_eq(back, "precious");
	/* and with the links gone the store is made and works */
	c = open_cache(0);
	ck_assert(cbv_cache_usable(c));
	cbv_cache_free(c);
}
END_TEST

/* Runs fn in a child as nobody; returns its exit status. */
static int as_nobody(void (*fn)(void))
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		fn();
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

static void nobody_off(void)
{
	struct cbv_cache *c = cbv_cache_new(path, 0);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *got = NULL;

	if (c == NULL || cbv_cache_lookup(c, &k, &got, NULL) != CBV_CACHE_OFF || got != NULL)
		_exit(1);
	if (errs != 1 || strstr(last_err, "cannot create it (Permission denied)") == NULL)
		_exit(2);
	cbv_cache_free(c);
}

START_TEST(unwritable_dir)
{
	if (geteuid() != 0) {
		/* not root: the directory itself is ours to make unwritable */
		ck_assert_int_eq(chmod(dir, 0500), 0);
		nobody_off();
		return;
	}
	ck_assert_int_eq(chmod(dir, 0755), 0);
	ck_assert_int_eq(as_nobody(nobody_off), 0);
	ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

static void nobody_uses(void)
{
	struct cbv_cache *c = cbv_cache_new(path, 0);
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250), *got = NULL;

	if (cbv_cache_lookup(c, &k, &got, NULL) != CBV_CACHE_HIT)
		_exit(1);
	if (cbv_cache_store(c, &k, r, &ttl, 0) != CBV_CACHE_OK)
		_exit(2);
	cbv_result_free(got);
	cbv_result_free(r);
	cbv_cache_free(c);
}

/* Root creates the store: it belongs to the directory's owner, 0660. */
START_TEST(ownership)
{
	struct cbv_cache *c;
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250);
	char lock[160];
	struct stat st;
	mode_t old;

	if (geteuid() != 0)
		return; /* only root can give files away */
	ck_assert_int_eq(chown(dir, 65534, 65534), 0);
	ck_assert_int_eq(chmod(dir, 0750), 0);
	old = umask(077);
	fake_now = 0;
	c = cbv_cache_new(path, 0); /* real clock: the child uses it too */
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	umask(old);
	snprintf(lock, sizeof(lock), "%s-lock", path);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_uid, 65534);
	ck_assert_int_eq(st.st_gid, 65534);
	ck_assert_int_eq(st.st_mode & 0777, 0660);
	ck_assert_int_eq(stat(lock, &st), 0);
	ck_assert_int_eq(st.st_uid, 65534);
	ck_assert_int_eq(st.st_mode & 0777, 0660);
	/* the Exim user can read and write what root made */
	ck_assert_int_eq(as_nobody(nobody_uses), 0);
	cbv_result_free(r);
	cbv_cache_free(c);
}
END_TEST

START_TEST(oom)
{
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = full_result(CBV_FAIL, "mailbox_unknown", 550), *got;
	enum cbv_cache_status st;
	int done = 0;

	for (long n = 0; n < 200 && !done; n++) {
		struct cbv_cache *c;

		cbv_alloc_fail_after(n);
		c = cbv_cache_new(path, 0);
		if (c != NULL) {
			cbv_cache_set_clock(c, test_clock, NULL);
			cbv_cache_store(c, &k, r, &ttl, 0);
			st = cbv_cache_lookup(c, &k, &got, NULL);
			ck_assert(st == CBV_CACHE_HIT || st == CBV_CACHE_MISS);
			ck_assert((st == CBV_CACHE_HIT) == (got != NULL));
			if (got != NULL) {
				ck_assert_str_eq(got->message, r->message);
				done = 1;
			}
			cbv_result_free(got);
		}
		cbv_alloc_fail_after(-1);
		cbv_cache_free(c);
	}
	ck_assert(done);
	cbv_result_free(r);
}
END_TEST

/* ---- processes ---- */

#define NPROC 8

/*
 * Forks n children that wait at a barrier, then run fn(i) and exit with
 * its value (0..255).  Returns after the barrier opened; pids[] filled.
 */
static void run_children(int n, int (*fn)(int), pid_t *pids, int hold)
{
	int gate[2];

	ck_assert_int_eq(pipe(gate), 0);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			char ch;
			int rc;

			close(gate[1]);
			if (read(gate[0], &ch, 1) != 0)
				_exit(250);
			rc = fn(i);
			if (hold)
				pause(); /* keep slots/leases held until killed */
			_exit(rc);
		}
	}
	close(gate[0]);
	close(gate[1]); /* all start at once */
}

static int child_status(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

static struct cbv_cache *shared; /* opened by the parent, used across fork */
static int results_fd = -1;

static void report(unsigned char what)
{
	ck_assert_int_eq(write(results_fd, &what, 1), 1);
}

static int flight_child(int i)
{
	struct cbv_cache_key k = key_of("example.test", "bob");
	uint64_t ticket;

	(void)i;
	cbv_cache_set_clock(shared, NULL, NULL);
	report((unsigned char)cbv_cache_flight_begin(shared, &k, 60, &ticket, NULL));
	return 0;
}

/* Reads n one-byte reports and counts each status. */
static void count_reports(int fd, int n, int *counts, int ncounts)
{
	for (int i = 0; i < n; i++) {
		unsigned char ch;

		ck_assert_int_eq(read(fd, &ch, 1), 1);
		ck_assert_int_lt(ch, ncounts);
		counts[ch]++;
	}
}

START_TEST(flight_one_wins)
{
	struct cbv_cache_key k = key_of("example.test", "bob");
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250), *got;
	int p[2], counts[16] = { 0 };
	pid_t pids[NPROC];
	uint64_t ticket;
	int64_t wake;

	ck_assert_int_eq(pipe(p), 0);
	results_fd = p[1];
	shared = cbv_cache_new(path, 0);
	ck_assert(cbv_cache_usable(shared)); /* the parent's env, not to be used by the children */
	run_children(NPROC, flight_child, pids, 1);
	count_reports(p[0], NPROC, counts, 16);
	ck_assert_int_eq(counts[CBV_CACHE_OWN], 1);
	ck_assert_int_eq(counts[CBV_CACHE_BUSY], NPROC - 1);
	/* the parent, too, sees a live holder */
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 60, &ticket, &wake), CBV_CACHE_BUSY);
	ck_assert_int_gt(wake, 0);
	for (int i = 0; i < NPROC; i++)
		kill(pids[i], SIGKILL);
	for (int i = 0; i < NPROC; i++)
		child_status(pids[i]);
	/* the holder is dead: the lease is taken over, then a store ends it */
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 60, &ticket, NULL), CBV_CACHE_OWN);
	ck_assert_int_ne(ticket, 0);
	ck_assert_int_eq(cbv_cache_store(shared, &k, r, &ttl, ticket), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 60, &ticket, NULL), CBV_CACHE_READY);
	ck_assert_int_eq(cbv_cache_lookup(shared, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	close(p[0]);
	close(p[1]);
	cbv_result_free(r);
	cbv_cache_free(shared);
}
END_TEST

static int hold_child(int i)
{
	struct cbv_cache_key k = key_of("example.test", "bob");
	uint64_t ticket;

	(void)i;
	cbv_cache_set_clock(shared, NULL, NULL);
	report((unsigned char)cbv_cache_flight_begin(shared, &k, 10, &ticket, NULL));
	return 0;
}

static int64_t real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(flight_holder_killed)
{
	struct cbv_cache_key k = key_of("example.test", "bob");
	int p[2], counts[16] = { 0 };
	pid_t pid;
	uint64_t ticket, t2;

	ck_assert_int_eq(pipe(p), 0);
	results_fd = p[1];
	shared = cbv_cache_new(path, 0);
	run_children(1, hold_child, &pid, 1);
	count_reports(p[0], 1, counts, 16);
	ck_assert_int_eq(counts[CBV_CACHE_OWN], 1);
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 10, &ticket, NULL), CBV_CACHE_BUSY);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	/* a zombie still answers kill(pid, 0): its lease holds until it is reaped */
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 10, &ticket, NULL), CBV_CACHE_BUSY);
	ck_assert_int_eq(child_status(pid), 100 + SIGKILL);
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 10, &ticket, NULL), CBV_CACHE_OWN);
	/* the same process verifying the same key again waits for itself */
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 10, &t2, NULL), CBV_CACHE_BUSY);
	cbv_cache_flight_end(shared, &k, ticket + 1); /* not its ticket: no effect */
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 10, &t2, NULL), CBV_CACHE_BUSY);
	cbv_cache_flight_end(shared, &k, ticket);
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 10, &t2, NULL), CBV_CACHE_OWN);
	close(p[0]);
	close(p[1]);
	cbv_cache_free(shared);
}
END_TEST

/* A live holder (stopped, say) keeps the flight only for its lease. */
START_TEST(flight_lease_expires)
{
	struct cbv_cache_key k = key_of("example.test", "bob");
	int p[2], counts[16] = { 0 };
	pid_t pid;
	uint64_t ticket;

	ck_assert_int_eq(pipe(p), 0);
	results_fd = p[1];
	shared = cbv_cache_new(path, 0);
	run_children(1, hold_child, &pid, 1); /* lease 10 s on the real clock */
	count_reports(p[0], 1, counts, 16);
	ck_assert_int_eq(counts[CBV_CACHE_OWN], 1);
	cbv_cache_set_clock(shared, test_clock, NULL);
	fake_now = real_ms() + 5000;
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 10, &ticket, NULL), CBV_CACHE_BUSY);
	fake_now = real_ms() + 11000;
	ck_assert_int_eq(cbv_cache_flight_begin(shared, &k, 10, &ticket, NULL), CBV_CACHE_OWN);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	child_status(pid);
	close(p[0]);
	close(p[1]);
	cbv_cache_free(shared);
}
END_TEST

/* Caps across processes: each child takes a slot (and holds it). */
static struct cbv_cache_caps child_caps;
static int caps_host;

static int cap_child(int i)
{
	uint64_t ticket;
	enum cbv_cache_limit which = CBV_LIMIT_NONE;
	enum cbv_cache_status st;

	(void)i;
	cbv_cache_set_clock(shared, NULL, NULL);
	if (caps_host) {
		st = cbv_cache_host_acquire(shared, "192.0.2.7", &child_caps, &ticket, NULL);
		which = CBV_LIMIT_HOST_CONCURRENCY;
	} else
		st = cbv_cache_domain_acquire(shared, "Example.test", &child_caps, &ticket, NULL,
		                              &which);
	/* OK, or LIMITED + 10 * which */
	report((unsigned char)(st == CBV_CACHE_OK ? 0 : st == CBV_CACHE_LIMITED ? 10 + which : 99));
	return 0;
}

static const struct {
	const char *what;
	struct cbv_cache_caps caps;
	int host;
	int ok;               /* children that get through */
	enum cbv_cache_limit which;
} cap_rows[] = {
	{ "domain concurrency", { 3, 0, 0, 0, 60 }, 0, 3, CBV_LIMIT_DOMAIN_CONCURRENCY },
	{ "domain rate", { 0, 5, 3600, 0, 60 }, 0, 5, CBV_LIMIT_DOMAIN_RATE },
	{ "both, rate first", { 6, 2, 3600, 0, 60 }, 0, 2, CBV_LIMIT_DOMAIN_RATE },
	{ "host concurrency", { 0, 0, 0, 2, 60 }, 1, 2, CBV_LIMIT_HOST_CONCURRENCY },
	{ "unlimited", { 0, 0, 0, 0, 60 }, 0, NPROC, CBV_LIMIT_NONE },
};

START_TEST(caps_across_processes)
{
	int p[2], counts[128] = { 0 };
	pid_t pids[NPROC];
	uint64_t ticket;
	enum cbv_cache_limit which;
	struct cbv_cache_caps caps = cap_rows[_i].caps;

	ck_assert_int_eq(pipe(p), 0);
	results_fd = p[1];
	child_caps = caps;
	caps_host = cap_rows[_i].host;
	shared = cbv_cache_new(path, 0);
	run_children(NPROC, cap_child, pids, 1);
	count_reports(p[0], NPROC, counts, 128);
	ck_assert_msg(counts[0] == cap_rows[_i].ok, "%s: %d got through", cap_rows[_i].what, counts[0]);
	if (cap_rows[_i].ok < NPROC)
		ck_assert_int_eq(counts[10 + cap_rows[_i].which], NPROC - cap_rows[_i].ok);
	for (int i = 0; i < NPROC; i++)
		kill(pids[i], SIGKILL);
	for (int i = 0; i < NPROC; i++)
		child_status(pids[i]);
	/* the holders died: concurrency slots come back; rate tokens do not */
	cbv_cache_set_clock(shared, NULL, NULL);
	if (caps_host) {
		ck_assert_int_eq(cbv_cache_host_acquire(shared, "192.0.2.7", &caps, &ticket, NULL),
		                 CBV_CACHE_OK);
		cbv_cache_host_release(shared, "192.0.2.7", ticket);
	} else if (caps.rate_count == 0) {
		ck_assert_int_eq(cbv_cache_domain_acquire(shared, "example.test", &caps, &ticket, NULL,
		                                          &which),
		                 CBV_CACHE_OK);
	} else {
		int64_t wake = 0;

		ck_assert_int_eq(cbv_cache_domain_acquire(shared, "example.test", &caps, &ticket, &wake,
		                                          &which),
		                 CBV_CACHE_LIMITED);
		ck_assert_int_eq(which, CBV_LIMIT_DOMAIN_RATE);
		ck_assert_int_gt(wake, 0);
	}
	close(p[0]);
	close(p[1]);
	cbv_cache_free(shared);
}
END_TEST

/* In one process: release frees a slot; tokens come back with time. */
START_TEST(caps_release_and_refill)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_cache_caps caps = { 2, 2, 60, 0, 60 };
	uint64_t t[3];
	int64_t wake;
	enum cbv_cache_limit which;

	ck_assert_int_eq(cbv_cache_domain_acquire(c, "a.test", &caps, &t[0], NULL, NULL), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "a.test", &caps, &t[1], NULL, NULL), CBV_CACHE_OK);
	ck_assert_int_ne(t[0], t[1]);
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "a.test", &caps, &t[2], &wake, &which),
	                 CBV_CACHE_LIMITED);
	ck_assert_int_eq(which, CBV_LIMIT_DOMAIN_CONCURRENCY);
	ck_assert_int_eq(t[2], 0);
	ck_assert_int_eq(wake, fake_now + 60000); /* when the first slot's lease ends */
	/* another domain is not affected */
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "b.test", &caps, &t[2], NULL, NULL), CBV_CACHE_OK);
	cbv_cache_domain_release(c, "a.test", t[0]);
	/* a slot is free, but both tokens of the minute are spent */
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "a.test", &caps, &t[2], &wake, &which),
	                 CBV_CACHE_LIMITED);
	ck_assert_int_eq(which, CBV_LIMIT_DOMAIN_RATE);
	ck_assert_int_eq(wake, fake_now + 30000 + 1); /* one token per 30 s */
	fake_now += 30001;
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "a.test", &caps, &t[2], NULL, NULL), CBV_CACHE_OK);
	/* slots expire with their lease even if never released */
	fake_now += 60000;
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "a.test", &caps, &t[0], NULL, NULL), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "a.test", &caps, &t[1], NULL, NULL), CBV_CACHE_OK);
	cbv_cache_free(c);
}
END_TEST

/* Writers in children while the parent purges everything, repeatedly. */
static int writer_child(int i)
{
	struct cbv_cache *c = cbv_cache_new(path, 0);
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250), *got;
	char local[32];
	int bad = 0;

	for (int j = 0; j < 300; j++) {
		struct cbv_cache_key k;

		snprintf(local, sizeof(local), "w%d-%d", i, j);
		k = key_of("example.test", local);
		if (cbv_cache_store(c, &k, r, &ttl, 0) != CBV_CACHE_OK)
			bad++;
		if (cbv_cache_lookup(c, &k, &got, NULL) == CBV_CACHE_OFF)
			bad++;
		cbv_result_free(got);
	}
	cbv_result_free(r);
	cbv_cache_free(c);
	return bad > 250 ? 250 : bad;
}

START_TEST(purge_during_writes)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_cache_stats st;
	pid_t pids[4];
	long purged = 0, n;

	ck_assert(cbv_cache_usable(c));
	fake_now = real_ms() + 1000LL * 1000 * 1000; /* everything is expired to the purger */
	run_children(4, writer_child, pids, 0);
	for (int i = 0; i < 50; i++) {
		n = cbv_cache_purge(c);
		ck_assert_int_ge(n, 0);
		purged += n;
	}
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(child_status(pids[i]), 0);
	n = cbv_cache_purge(c);
	ck_assert_int_ge(n, 0);
	purged += n;
	ck_assert_int_eq(purged, 4 * 300);
	ck_assert_int_eq(cbv_cache_stats(c, &st), 0);
	ck_assert_int_eq(st.by_kind[CBV_CACHE_ADDRESS], 0);
	ck_assert_int_eq(st.damaged, 0);
	ck_assert_int_eq(errs, 0);
	cbv_cache_free(c);
}
END_TEST

/* The parent's handle works in a forked child (its own env) and after. */
static int reopen_child(int i)
{
	struct cbv_cache_key k = key_of("example.test", "child");
	struct cbv_result *r = full_result(CBV_PASS, "accepted", 250), *got;
	int rc = 0;

	(void)i;
	if (cbv_cache_store(shared, &k, r, &ttl, 0) != CBV_CACHE_OK)
		rc = 1;
	else if (cbv_cache_lookup(shared, &k, &got, NULL) != CBV_CACHE_HIT)
		rc = 2;
	else
		cbv_result_free(got);
	cbv_result_free(r);
	cbv_cache_free(shared);
	return rc;
}

START_TEST(fork_reopen)
{
	struct cbv_cache_key k = key_of("example.test", "child");
	struct cbv_result *got;
	pid_t pid;

	shared = open_cache(0);
	ck_assert_int_eq(cbv_cache_lookup(shared, &k, &got, NULL), CBV_CACHE_MISS);
	run_children(1, reopen_child, &pid, 0);
	ck_assert_int_eq(child_status(pid), 0);
	ck_assert_int_eq(cbv_cache_lookup(shared, &k, &got, NULL), CBV_CACHE_HIT);
	cbv_result_free(got);
	cbv_cache_free(shared);
}
END_TEST

/* ---- maintenance ---- */

struct seen {
	int n, expired;
	char last[64];
};

static int collect(const struct cbv_cache_entry *e, void *arg)
{
	struct seen *s = arg;

	s->n++;
	s->expired += e->expired;
	snprintf(s->last, sizeof(s->last), "%s %s %s", e->domain, cbv_cache_kind_name(e->rec.kind),
	         e->rec.s[CBV_CS_RCPT]);
	return 0;
}

START_TEST(maintenance)
{
	struct cbv_cache *c = open_cache(0);
	struct cbv_result *r = full_result(CBV_FAIL, "mailbox_unknown", 550);
	struct cbv_result *ca = full_result(CBV_PASS, "catch_all", 250);
	struct cbv_cache_caps caps = { 4, 60, 60, 8, 60 };
	struct cbv_cache_key k;
	struct cbv_cache_stats st;
	struct seen s = { 0 };
	uint64_t ticket;

	k = key_of("a.test", "bob");
	cbv_result_set(&r->rcpt, "bob@a.test");
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	k.sender = "x@y.test"; /* the same address, another sender */
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	k = key_of("a.test", "carol");
	cbv_result_set(&r->rcpt, "carol@a.test");
	ck_assert_int_eq(cbv_cache_store(c, &k, r, &ttl, 0), CBV_CACHE_OK);
	k = key_of("b.test", "dave");
	cbv_result_set(&ca->rcpt, "dave@b.test");
	ck_assert_int_eq(cbv_cache_store(c, &k, ca, &ttl, 0), CBV_CACHE_OK); /* + a domain fact */
	ck_assert_int_eq(cbv_cache_domain_acquire(c, "a.test", &caps, &ticket, NULL, NULL),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_stats(c, &st), 0);
	ck_assert_int_eq(st.by_kind[CBV_CACHE_ADDRESS], 4);
	ck_assert_int_eq(st.by_kind[CBV_CACHE_CATCH_ALL], 1);
	ck_assert_int_eq(st.by_verdict[CBV_FAIL], 3);
	ck_assert_int_eq(st.by_verdict[CBV_PASS], 1);
	ck_assert_int_eq(st.leases, 1);
	ck_assert_int_eq(st.buckets, 1);
	ck_assert_uint_gt(st.file_bytes, 0);
	ck_assert_uint_gt(st.used_bytes, 0);
	ck_assert_uint_eq(st.map_bytes, CBV_CACHE_MAP_DEFAULT);
	ck_assert_int_eq(cbv_cache_each(c, NULL, collect, &s), 5);
	ck_assert_int_eq(s.n, 5);
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(cbv_cache_each(c, "B.test", collect, &s), 2);
	ck_assert_str_eq(s.last, "b.test catch_all dave@b.test");
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(cbv_cache_each(c, "test", collect, &s), 0);
	/* forget one address: both senders' records */
	ck_assert_int_eq(cbv_cache_forget(c, "a.test", "bob"), 2);
	ck_assert_int_eq(cbv_cache_forget(c, "a.test", "bob"), 0);
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(cbv_cache_each(c, "a.test", collect, &s), 1);
	ck_assert_str_eq(s.last, "a.test address carol@a.test");
	/* forget a domain: records, slots and bucket */
	ck_assert_int_eq(cbv_cache_forget(c, "a.test", NULL), 3);
	ck_assert_int_eq(cbv_cache_stats(c, &st), 0);
	ck_assert_int_eq(st.by_kind[CBV_CACHE_ADDRESS], 1);
	ck_assert_int_eq(st.leases + st.buckets, 0);
	/* expired ones are listed as such */
	fake_now += 1000LL * 1000;
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(cbv_cache_each(c, NULL, collect, &s), 2);
	ck_assert_int_eq(s.expired, 2);
	ck_assert_int_eq(cbv_cache_purge(c), 2);
	cbv_result_free(r);
	cbv_result_free(ca);
	cbv_cache_free(c);
}
END_TEST

/* ---- blobs: TLS sessions and DNS answers kept for other processes ---- */

/* Encodes a 'T' blob of n bytes (0xAB..) expiring at exp into buf. */
static size_t blob_of(unsigned char *buf, size_t cap, char kind, size_t n, int64_t exp)
{
	static unsigned char data[CBV_CACHE_BLOB_MAX + 1];
	struct cbv_cache_blob b = { kind, exp, data, n };

	memset(data, 0xab, sizeof(data));
	return cbv_cache_blob_encode(&b, buf, cap);
}

/* What a damaged value decodes to: {offset, xor, reseal, want kind, status}. */
static const struct {
	const char *name;
	size_t at;       /* byte changed (SIZE_MAX: none) */
	unsigned char x; /* xor'ed into it */
	int reseal;      /* make the sum right again */
	char want;       /* kind asked for */
	enum cbv_cache_rec_status st;
} blob_rows[] = {
	{ "intact", SIZE_MAX, 0, 0, 'T', CBV_REC_OK },
	{ "intact, any kind", SIZE_MAX, 0, 0, 0, CBV_REC_OK },
	{ "asked as a DNS answer", SIZE_MAX, 0, 0, 'N', CBV_REC_ECORRUPT },
	{ "a data byte flipped", 40, 0x01, 0, 'T', CBV_REC_ECORRUPT },
	{ "the sum flipped", SIZE_MAX - 1, 0x80, 0, 'T', CBV_REC_ECORRUPT },
	{ "another format version", 2, 0x03, 1, 'T', CBV_REC_EVERSION },
	{ "another version, sum wrong", 2, 0x03, 0, 'T', CBV_REC_ECORRUPT },
	{ "a result kind byte", 3, 0x42 ^ 0x01, 1, 'T', CBV_REC_ECORRUPT },
	{ "an unknown blob kind", 4, 'T' ^ 'Z', 1, 0, CBV_REC_ECORRUPT },
	{ "flags set", 5, 0x01, 1, 'T', CBV_REC_ECORRUPT },
	{ "reserved set", 9, 0x10, 1, 'T', CBV_REC_ECORRUPT },
	{ "length one more", 20, 0x01 ^ 0x00, 1, 'T', CBV_REC_ECORRUPT },
	{ "length over the bound", 22, 0x01, 1, 'T', CBV_REC_ECORRUPT },
	{ "expiry negative", 19, 0x80, 1, 'T', CBV_REC_ECORRUPT },
	{ "bad magic", 0, 0x01, 1, 'T', CBV_REC_ECORRUPT },
};

START_TEST(blob_codec)
{
	unsigned char buf[256];
	struct cbv_cache_blob b;
	size_t n = blob_of(buf, sizeof(buf), 'T', 100, 1700000000000LL);
	size_t at = blob_rows[_i].at;

	ck_assert_uint_eq(n, 24 + 100 + 4);
	if (at == SIZE_MAX - 1)
		at = n - 1;
	if (at != SIZE_MAX)
		buf[at] ^= blob_rows[_i].x;
	if (blob_rows[_i].reseal)
		cbv_cache_rec_reseal(buf, n);
	ck_assert_msg(cbv_cache_blob_decode(buf, n, blob_rows[_i].want, &b) == blob_rows[_i].st,
	              "%s", blob_rows[_i].name);
	if (blob_rows[_i].st == CBV_REC_OK) {
		ck_assert_int_eq(b.kind, 'T');
		ck_assert_int_eq(b.expires_ms, 1700000000000LL);
		ck_assert_uint_eq(b.len, 100);
		ck_assert(b.data == buf + 24 && b.data[99] == 0xab);
	} else {
		ck_assert(b.data == NULL && b.len == 0);
	}
	/* a value that ends early or goes on is never a blob */
	ck_assert_int_eq(cbv_cache_blob_decode(buf, n - 1, 0, &b), CBV_REC_ECORRUPT);
	ck_assert_int_eq(cbv_cache_blob_decode(buf, 8, 0, &b), CBV_REC_ECORRUPT);
}
END_TEST

START_TEST(blob_bounds)
{
	static unsigned char buf[CBV_CACHE_BLOB_MAX + 64];
	struct cbv_cache_blob b;
	size_t n;

	/* the largest blob fits; one byte more is never written */
	n = blob_of(buf, sizeof(buf), 'N', CBV_CACHE_BLOB_MAX, 1);
	ck_assert_uint_eq(n, 24 + CBV_CACHE_BLOB_MAX + 4);
	ck_assert_int_eq(cbv_cache_blob_decode(buf, n, 'N', &b), CBV_REC_OK);
	ck_assert_uint_eq(blob_of(buf, sizeof(buf), 'N', CBV_CACHE_BLOB_MAX + 1, 1), 0);
	/* no room, a kind that is not a blob's, no expiry */
	ck_assert_uint_eq(blob_of(buf, 24 + 10 + 3, 'T', 10, 1), 0);
	ck_assert_uint_eq(blob_of(buf, sizeof(buf), 'A', 10, 1), 0);
	ck_assert_uint_eq(blob_of(buf, sizeof(buf), 'T', 10, 0), 0);
	/* an empty blob is a blob */
	n = blob_of(buf, sizeof(buf), 'T', 0, 5);
	ck_assert_int_eq(cbv_cache_blob_decode(buf, n, 'T', &b), CBV_REC_OK);
	ck_assert_uint_eq(b.len, 0);
	/* other values are not blobs, blobs are not other values */
	{
		struct cbv_cache_bucket bk = { 5, 6 };
		struct cbv_cache_rec rec;

		n = cbv_cache_bucket_encode(&bk, buf, sizeof(buf));
		ck_assert_int_eq(cbv_cache_blob_decode(buf, n, 0, &b), CBV_REC_ECORRUPT);
		n = blob_of(buf, sizeof(buf), 'T', 30, 5);
		ck_assert_int_eq(cbv_cache_rec_decode(buf, n, &rec), CBV_REC_ECORRUPT);
		ck_assert_int_eq(cbv_cache_bucket_decode(buf, n, &bk), CBV_REC_ECORRUPT);
	}
}
END_TEST

START_TEST(blob_key)
{
	unsigned char a[CBV_CACHE_KEY_MAX], b[CBV_CACHE_KEY_MAX];
	static char big[CBV_CACHE_BLOB_NAME_MAX + 2];
	size_t na, nb;

	na = cbv_cache_blob_key('T', "127.0.0.12:25", "k1", 2, a, sizeof(a));
	ck_assert_uint_eq(na, 1 + 13 + 1 + 32);
	ck_assert(a[0] == 'T' && memcmp(a + 1, "127.0.0.12:25", 14) == 0);
	/* kind, label and name each make another key */
	nb = cbv_cache_blob_key('N', "127.0.0.12:25", "k1", 2, b, sizeof(b));
	ck_assert(nb == na && memcmp(a + 1, b + 1, na - 1) != 0);
	nb = cbv_cache_blob_key('T', "127.0.0.13:25", "k1", 2, b, sizeof(b));
	ck_assert(memcmp(a, b, na) != 0);
	nb = cbv_cache_blob_key('T', "127.0.0.12:25", "k2", 2, b, sizeof(b));
	ck_assert(nb == na && memcmp(a, b, na) != 0);
	/* a name is bytes: its length counts */
	nb = cbv_cache_blob_key('T', "127.0.0.12:25", "k1\0", 3, b, sizeof(b));
	ck_assert(nb == na && memcmp(a, b, na) != 0);
	/* the label is lower-cased, as domains are */
	na = cbv_cache_blob_key('N', "Exim.TEST", "x", 1, a, sizeof(a));
	nb = cbv_cache_blob_key('N', "exim.test", "x", 1, b, sizeof(b));
	ck_assert(na == nb && memcmp(a, b, na) == 0);
	/* out of bounds: never a key */
	memset(big, 'x', sizeof(big) - 1);
	ck_assert_uint_eq(cbv_cache_blob_key('A', "x", "x", 1, a, sizeof(a)), 0);
	ck_assert_uint_eq(cbv_cache_blob_key('T', "", "x", 1, a, sizeof(a)), 0);
	ck_assert_uint_eq(cbv_cache_blob_key('T', NULL, "x", 1, a, sizeof(a)), 0);
	ck_assert_uint_eq(cbv_cache_blob_key('T', big, "x", 1, a, sizeof(a)), 0);
	ck_assert_uint_eq(cbv_cache_blob_key('T', "x", big, CBV_CACHE_BLOB_NAME_MAX + 1, a,
	                                     sizeof(a)),
	                  0);
	ck_assert_uint_eq(cbv_cache_blob_key('T', "x", big, CBV_CACHE_BLOB_NAME_MAX, a, sizeof(a)),
	                  1 + 1 + 1 + 32);
	ck_assert_uint_eq(cbv_cache_blob_key('T', "x", "x", 1, a, CBV_CACHE_KEY_MAX - 1), 0);
}
END_TEST

START_TEST(blob_store)
{
	struct cbv_cache *c = open_cache(0);
	unsigned char buf[64], kb[CBV_CACHE_KEY_MAX];
	unsigned char junk[40];
	size_t len = 99, kl;
	int64_t exp = 0;
	int before;

	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "1.2.3.4:25", "key", 3, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_MISS);
	ck_assert(len == 0 && exp == 0);
	ck_assert_int_eq(cbv_cache_blob_put(c, 'T', "1.2.3.4:25", "key", 3, "session", 7,
	                                    fake_now + 60000),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "1.2.3.4:25", "key", 3, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_HIT);
	ck_assert(len == 7 && memcmp(buf, "session", 7) == 0 && exp == fake_now + 60000);
	/* another kind, label or name: not this blob */
	ck_assert_int_eq(cbv_cache_blob_get(c, 'N', "1.2.3.4:25", "key", 3, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "1.2.3.5:25", "key", 3, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "1.2.3.4:25", "kez", 3, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_MISS);
	/* too little room: a miss, nothing copied */
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "1.2.3.4:25", "key", 3, buf, 6, &len, &exp),
	                 CBV_CACHE_MISS);
	ck_assert_uint_eq(len, 0);
	/* expiry on the handle's clock; the last millisecond is already too late */
	fake_now += 59999;
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "1.2.3.4:25", "key", 3, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_HIT);
	fake_now += 1;
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "1.2.3.4:25", "key", 3, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_MISS);
	/* purge drops it; a live one stays */
	ck_assert_int_eq(cbv_cache_blob_put(c, 'N', "exim.test", "mx", 2, "answer", 6,
	                                    fake_now + 1000),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_purge(c), 1);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'N', "exim.test", "mx", 2, buf, sizeof(buf), &len,
	                                    &exp),
	                 CBV_CACHE_HIT);
	/* an expiry already past keeps nothing */
	ck_assert_int_eq(cbv_cache_blob_put(c, 'T', "x", "y", 1, "z", 1, fake_now), CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "x", "y", 1, buf, sizeof(buf), &len, &exp),
	                 CBV_CACHE_MISS);
	/* replaced, then deleted */
	ck_assert_int_eq(cbv_cache_blob_put(c, 'N', "exim.test", "mx", 2, "other", 5,
	                                    fake_now + 1000),
	                 CBV_CACHE_OK);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'N', "exim.test", "mx", 2, buf, sizeof(buf), &len,
	                                    &exp),
	                 CBV_CACHE_HIT);
	ck_assert(len == 5 && memcmp(buf, "other", 5) == 0);
	cbv_cache_blob_del(c, 'N', "exim.test", "mx", 2);
	cbv_cache_blob_del(c, 'N', "exim.test", "mx", 2); /* twice: nothing to delete */
	ck_assert_int_eq(cbv_cache_blob_get(c, 'N', "exim.test", "mx", 2, buf, sizeof(buf), &len,
	                                    &exp),
	                 CBV_CACHE_MISS);
	/* too large: not stored, logged */
	{
		static unsigned char big[CBV_CACHE_BLOB_MAX + 1];

		ck_assert_int_eq(cbv_cache_blob_put(c, 'T', "x", "big", 3, big, sizeof(big),
		                                    fake_now + 1000),
		                 CBV_CACHE_OK);
		ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "x", "big", 3, big, sizeof(big), &len,
		                                    &exp),
		                 CBV_CACHE_MISS);
	}
	/* result records are not blobs: the verification records are untouched */
	ck_assert_int_eq(cbv_cache_each(c, NULL, NULL, NULL), 0);
	/* a damaged value under a blob's key: a miss, logged once */
	cbv_cache_free(c);
	kl = cbv_cache_blob_key('T', "1.2.3.4:25", "key", 3, kb, sizeof(kb));
	memset(junk, 'j', sizeof(junk));
	raw_put(kb, kl, junk, sizeof(junk));
	c = open_cache(0);
	before = errs;
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "1.2.3.4:25", "key", 3, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_MISS);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "1.2.3.4:25", "key", 3, buf, sizeof(buf),
	                                    &len, &exp),
	                 CBV_CACHE_MISS);
	ck_assert_int_eq(errs, before + 1);
	ck_assert_ptr_nonnull(strstr(last_err, "damaged"));
	/* purge takes damaged blobs too */
	ck_assert_int_eq(cbv_cache_purge(c), 1);
	cbv_cache_free(c);
}
END_TEST

/* A store that cannot be opened: every blob call is OFF, nothing crashes. */
START_TEST(blob_off)
{
	struct cbv_cache *c = cbv_cache_new("/nonexistent-dir/cbv", 0);
	unsigned char buf[16];
	size_t len;
	int64_t exp;

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(cbv_cache_blob_put(c, 'T', "x", "y", 1, "z", 1, INT64_MAX),
	                 CBV_CACHE_OFF);
	ck_assert_int_eq(cbv_cache_blob_get(c, 'T', "x", "y", 1, buf, sizeof(buf), &len, &exp),
	                 CBV_CACHE_OFF);
	cbv_cache_blob_del(c, 'T', "x", "y", 1);
	ck_assert_int_eq(cbv_cache_blob_get(NULL, 'T', "x", "y", 1, buf, sizeof(buf), &len, &exp),
	                 CBV_CACHE_OFF);
	cbv_cache_free(c);
}
END_TEST

static Suite *cache_suite(void)
{
	Suite *s = suite_create("cache");
	TCase *tc;

	tc = tcase_create("key");
	tcase_add_loop_test(tc, key_changes, 0, sizeof(key_rows) / sizeof(key_rows[0]));
	tcase_add_test(tc, key_shape);
	suite_add_tcase(s, tc);

	tc = tcase_create("record");
	tcase_add_test(tc, rec_roundtrip);
	tcase_add_test(tc, rec_damage);
	tcase_add_test(tc, rec_bounds);
	tcase_add_test(tc, leases_codec);
	suite_add_tcase(s, tc);

	tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, roundtrip);
	tcase_add_test(tc, bad_key);
	tcase_add_loop_test(tc, ttl_expiry, 0, sizeof(ttl_rows) / sizeof(ttl_rows[0]));
	tcase_add_loop_test(tc, domain_facts, 0, sizeof(fact_rows) / sizeof(fact_rows[0]));
	tcase_add_test(tc, eviction);
	tcase_add_test(tc, map_full);
	tcase_add_test(tc, maintenance);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("blob");
	tcase_add_loop_test(tc, blob_codec, 0, sizeof(blob_rows) / sizeof(blob_rows[0]));
	tcase_add_test(tc, blob_bounds);
	tcase_add_test(tc, blob_key);
	suite_add_tcase(s, tc);

	tc = tcase_create("blob store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, blob_store);
	tcase_add_test(tc, blob_off);
	suite_add_tcase(s, tc);

	tc = tcase_create("unusable");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, format_newer);
	tcase_add_test(tc, format_older_and_records);
	tcase_add_test(tc, not_lmdb);
	tcase_add_test(tc, corrupt_file);
	tcase_add_test(tc, missing_dir);
	tcase_add_test(tc, unwritable_dir);
	tcase_add_test(tc, symlink_refused);
	tcase_add_test(tc, ownership);
	tcase_add_test(tc, oom);
	suite_add_tcase(s, tc);

	tc = tcase_create("processes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, flight_one_wins);
	tcase_add_test(tc, flight_holder_killed);
	tcase_add_test(tc, flight_lease_expires);
	tcase_add_loop_test(tc, caps_across_processes, 0, sizeof(cap_rows) / sizeof(cap_rows[0]));
	tcase_add_test(tc, caps_release_and_refill);
	tcase_add_test(tc, purge_during_writes);
	tcase_add_test(tc, fork_reopen);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cache_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
