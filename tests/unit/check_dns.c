/*
 * check_dns.c - cbv_dns against the rig's dnsmasq (tests/rig/dnsmasq.conf).
 *
 * Uses the dnsmasq named by CBV_RIG_DNS ("127.0.0.1:PORT") when set, else
 * starts its own on a free loopback port and stops it at the end, so the
 * suite also runs alone.  Only 127.0.0.1 is ever queried.  The machine is
 * driven with a poll() loop as cbv_verify would; no test asserts timing.
 */
#include <ares.h>
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
#include <sys/mman.h>
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
static const struct cbv_dns_store *use_store; /* resolve()'s shared store, NULL = none */

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
	d = cbv_dns_start(domain, srv, cbv_now_ms() + ms, 0, use_store, &err);
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

/*
 * Fails the Nth allocation until a lookup gets through; no leaks (ASan).
 * A failed channel or ticket is a temporary failure, a failed cache entry
 * only an answer not kept.
 */
START_TEST(test_oom)
{
	int ok = 0;
	long n;

	/* No channel and nothing cached: every allocation is on the path. */
	cbv_dns_shutdown();
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

/* ---- a scripted fake DNS server (loopback, forked child) ---- */

/*
 * The fake answers from a table, counts every query it gets in memory
 * shared with the test, and can play the hostile server of the SIGPIPE
 * case.  Names, types and TTLs are the test's own.
 */
enum fake_kind { F_ANSWER,
	         F_NODATA,
	         F_NXDOMAIN,
	         F_SERVFAIL };

struct fake_rr {
	const char *name;
	int qtype;
	enum fake_kind kind;
	uint32_t ttl;     /* of the answer, or of the SOA */
	const char *data; /* MX: "pref target" ("." = null MX); A/AAAA: address */
	uint32_t soa_min; /* SOA MINIMUM; 0 = no SOA in negative answers */
};

static const struct fake_rr fake_zone[] = {
	{ "ttl.test", 15, F_ANSWER, 300, "10 mx.ttl.test", 0 },
	{ "mx.ttl.test", 1, F_ANSWER, 60, "127.0.0.10", 0 },
	{ "mx.ttl.test", 28, F_NODATA, 600, NULL, 120 },
	{ "long.test", 15, F_ANSWER, 86400, "10 mx.long.test", 0 },
	{ "mx.long.test", 1, F_ANSWER, 86400, "127.0.0.11", 0 },
	{ "mx.long.test", 28, F_NODATA, 86400, NULL, 86400 },
	{ "nx.test", 15, F_NXDOMAIN, 600, NULL, 30 },
	{ "nosoa.test", 15, F_NXDOMAIN, 0, NULL, 0 },
	{ "null.test", 15, F_ANSWER, 3600, "0 .", 0 },
	{ "fail.test", 15, F_SERVFAIL, 0, NULL, 0 },
	{ "other.test", 15, F_ANSWER, 300, "10 mx.other.test", 0 },
	{ "mx.other.test", 1, F_ANSWER, 300, "127.0.0.12", 0 },
	{ "mx.other.test", 28, F_ANSWER, 300, "::1", 0 },
};

/* The second server of the resolv.conf case: same names, another address. */
static const struct fake_rr fake_zone2[] = {
	{ "ttl.test", 15, F_ANSWER, 300, "10 mx.ttl.test", 0 },
	{ "mx.ttl.test", 1, F_ANSWER, 60, "127.0.0.13", 0 },
	{ "mx.ttl.test", 28, F_NODATA, 600, NULL, 120 },
};

struct fake {
	pid_t pid;
	unsigned port;
	char servers[64];
	unsigned *count; /* queries received, shared with the child (atomics) */
};

/* Appends a name in wire form; 0 if it does not fit. */
static size_t put_name(unsigned char *p, size_t room, const char *name)
{
	size_t n = 0;

	while (*name != '\0' && strcmp(name, ".") != 0) {
		size_t l = strcspn(name, ".");

		if (n + 1 + l >= room)
			return 0;
		p[n++] = (unsigned char)l;
		memcpy(p + n, name, l);
		n += l;
		name += l;
		if (*name == '.')
			name++;
	}
	if (n + 1 > room)
		return 0;
	p[n++] = 0;
	return n;
}

static size_t put_rr_head(unsigned char *p, int type, uint32_t ttl, size_t rdlen)
{
	p[0] = 0xc0; /* the question's name */
	p[1] = 12;
	p[2] = (unsigned char)(type >> 8);
	p[3] = (unsigned char)type;
	p[4] = 0;
	p[5] = 1;
	p[6] = (unsigned char)(ttl >> 24);
	p[7] = (unsigned char)(ttl >> 16);
	p[8] = (unsigned char)(ttl >> 8);
	p[9] = (unsigned char)ttl;
	p[10] = (unsigned char)(rdlen >> 8);
	p[11] = (unsigned char)rdlen;
	return 12;
}

/*
 * Builds the answer to query q (qlen bytes) from zone into out; returns
 * its length, or 0 to stay silent.  tc: a truncated empty answer.
 */
static size_t fake_answer(const unsigned char *q, size_t qlen,
                          const struct fake_rr *zone_, size_t nzone, int tc,
                          unsigned char *out, size_t room)
{
	char name[256];
	size_t off = 12, nl = 0, n, i;
	int qtype;
	const struct fake_rr *rr = NULL;

	if (qlen < 17 || room < 512)
		return 0;
	while (off < qlen && q[off] != 0) {
		size_t l = q[off];

		if (off + 1 + l >= qlen || nl + l + 1 >= sizeof(name))
			return 0;
		if (nl > 0)
			name[nl++] = '.';
		memcpy(name + nl, q + off + 1, l);
		nl += l;
		off += 1 + l;
	}
	name[nl] = '\0';
	off++;
	if (off + 4 > qlen)
		return 0;
	qtype = q[off] << 8 | q[off + 1];
	off += 4;
	memcpy(out, q, off);                            /* header and question */
	out[2] = (unsigned char)(0x84 | (q[2] & 0x01)); /* QR AA, RD copied */
	out[3] = 0x80;                                  /* RA, NOERROR */
	memset(out + 6, 0, 6);
	if (tc) {
		out[2] |= 0x02;
		return off;
	}
	for (i = 0; i < nzone; i++)
		if (strcasecmp(zone_[i].name, name) == 0 && zone_[i].qtype == qtype)
			rr = &zone_[i];
	n = off;
	if (rr == NULL || rr->kind == F_NXDOMAIN) {
		out[3] |= 3;
	} else if (rr->kind == F_SERVFAIL) {
		out[3] |= 2;
		return n;
	} else if (rr->kind == F_ANSWER) {
		unsigned char rd[300];
		size_t rdlen = 0;

		if (qtype == 15) {
			unsigned pref = (unsigned)atoi(rr->data);

			rd[0] = (unsigned char)(pref >> 8);
			rd[1] = (unsigned char)pref;
			rdlen = 2 + put_name(rd + 2, sizeof(rd) - 2, strchr(rr->data, ' ') + 1);
		} else if (qtype == 1) {
			inet_pton(AF_INET, rr->data, rd);
			rdlen = 4;
		} else {
			inet_pton(AF_INET6, rr->data, rd);
			rdlen = 16;
		}
		n += put_rr_head(out + n, qtype, rr->ttl, rdlen);
		memcpy(out + n, rd, rdlen);
		n += rdlen;
		out[7] = 1;
		return n;
	}
	/* NODATA or NXDOMAIN: an SOA in the authority section if the row has one. */
	if (rr != NULL && rr->soa_min != 0) {
		unsigned char rd[300];
		size_t rdlen = put_name(rd, sizeof(rd), "ns.test");
		uint32_t v[5] = { 1, 3600, 600, 86400, rr->soa_min };

		rdlen += put_name(rd + rdlen, sizeof(rd) - rdlen, "hostmaster.test");
		for (i = 0; i < 5; i++) {
			rd[rdlen++] = (unsigned char)(v[i] >> 24);
			rd[rdlen++] = (unsigned char)(v[i] >> 16);
			rd[rdlen++] = (unsigned char)(v[i] >> 8);
			rd[rdlen++] = (unsigned char)v[i];
		}
		n += put_rr_head(out + n, 6, rr->ttl, rdlen);
		memcpy(out + n, rd, rdlen);
		n += rdlen;
		out[9] = 1;
	}
	return n;
}

/*
 * The child's loop.  hostile = 0: answer from zone.  hostile = 1 (the
 * SIGPIPE case): the first query gets a truncated answer at once, the
 * second is held; a TCP connection is accepted and closed at once (FIN),
 * and only then (50 ms later) does the held query get its truncated
 * answer.
 */
static void fake_serve(int u, int l, const struct fake_rr *zone_, size_t nzone,
                       int hostile, unsigned *count)
{
	unsigned char held[512];
	struct sockaddr_storage held_from;
	socklen_t held_fromlen = 0;
	size_t held_len = 0;
	unsigned seen = 0;

	for (;;) {
		struct pollfd p[2] = { { u, POLLIN, 0 }, { l, POLLIN, 0 } };

		if (poll(p, l >= 0 ? 2 : 1, -1) < 0)
			continue;
		if (p[0].revents & POLLIN) {
			unsigned char q[512], a[1024];
			struct sockaddr_storage from;
			socklen_t fl = sizeof(from);
			ssize_t k = recvfrom(u, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
			size_t n;

			if (k <= 0)
				continue;
			__atomic_add_fetch(count, 1, __ATOMIC_SEQ_CST);
			if (hostile && seen++ == 1 && held_len == 0) {
				memcpy(held, q, (size_t)k);
				held_len = (size_t)k;
				held_from = from;
				held_fromlen = fl;
				continue;
			}
			n = fake_answer(q, (size_t)k, zone_, nzone, hostile, a, sizeof(a));
			if (n > 0)
				sendto(u, a, n, 0, (struct sockaddr *)&from, fl);
		}
		if (l >= 0 && (p[1].revents & POLLIN)) {
			int c = accept(l, NULL, NULL);

			if (c >= 0)
				close(c);
			if (held_len > 0) {
				unsigned char a[1024];
				/* Let the client finish reading the first answer first. */
				poll(NULL, 0, 50);
				size_t n = fake_answer(held, held_len, zone_, nzone, 1, a, sizeof(a));

				sendto(u, a, n, 0, (struct sockaddr *)&held_from, held_fromlen);
				held_len = 0;
			}
		}
	}
}

/*
 * Starts a fake on ip (port 0: one the kernel picks, for UDP and TCP
 * alike).  Returns 0, or -1 if the port cannot be had.
 */
static int fake_start(struct fake *f, const char *ip, unsigned port,
                      const struct fake_rr *zone_, size_t nzone, int hostile)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int u, l = -1, one = 1;

	memset(f, 0, sizeof(*f));
	f->count = mmap(NULL, sizeof(*f->count), PROT_READ | PROT_WRITE,
	                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(f->count, MAP_FAILED);
	/*
	 * The kernel picks the UDP port; the hostile fake needs the same
	 * number on TCP, which another process may hold: then another pick.
	 */
	for (int tries = 0;; tries++) {
		u = socket(AF_INET, SOCK_DGRAM, 0);
		ck_assert_int_ge(u, 0);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, ip, &sin.sin_addr);
		if (bind(u, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
			close(u);
			munmap(f->count, sizeof(*f->count));
			return -1;
		}
		len = sizeof(sin);
		ck_assert_int_eq(getsockname(u, (struct sockaddr *)&sin, &len), 0);
		f->port = ntohs(sin.sin_port);
		if (!hostile)
			break;
		l = socket(AF_INET, SOCK_STREAM, 0);
		ck_assert_int_ge(l, 0);
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(l, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			break;
		close(l);
		close(u);
		l = -1;
		ck_assert_msg(port == 0 && tries < 32, "no port free for both UDP and TCP");
	}
	if (hostile)
		ck_assert_int_eq(listen(l, 8), 0);
	snprintf(f->servers, sizeof(f->servers), "%s:%u", ip, f->port);
	f->pid = fork();
	ck_assert_int_ge(f->pid, 0);
	if (f->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fake_serve(u, l, zone_, nzone, hostile, f->count);
		_exit(0);
	}
	close(u);
	if (l >= 0)
		close(l);
	return 0;
}

static void fake_stop(struct fake *f)
{
	int status;

	if (f->pid > 0) {
		kill(f->pid, SIGKILL);
		while (waitpid(f->pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	f->pid = 0;
	munmap(f->count, sizeof(*f->count));
}

static unsigned fake_count(const struct fake *f)
{
	return __atomic_load_n(f->count, __ATOMIC_SEQ_CST);
}

#define NZ(z) (sizeof(z) / sizeof((z)[0]))

/* ---- SIGPIPE (issue 11.1): c-ares writes with MSG_NOSIGNAL ---- */

static int sock_type(int fd)
{
	int t = 0;
	socklen_t l = sizeof(t);

	getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l);
	return t;
}

/*
 * The hostile server truncates the A answer (c-ares moves to TCP), closes
 * the TCP connection at once, then truncates the AAAA answer.  The loop
 * below replays one interleaving an event loop can see: poll() found the
 * new TCP socket writable before the server's FIN came in, and the
 * AAAA answer is read after that write.  The query is then written into
 * a connection the server has reset: with plain writev() (c-ares' own)
 * that is SIGPIPE, and SIGPIPE is at SIG_DFL here, so the process dies.
 * We must instead get a temporary failure.
 */
START_TEST(test_sigpipe)
{
	struct fake f;
	struct cbv_err err;
	struct cbv_dns *d;
	const char *detail;
	int64_t limit;
	int staged = 0;

	signal(SIGPIPE, SIG_DFL);
	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 1), 0);
	d = cbv_dns_new_host("mx.ttl.test", f.servers, cbv_now_ms() + 5000, &err);
	ck_assert_ptr_nonnull(d);
	limit = cbv_now_ms() + 10000;
	while (cbv_dns_outcome(d, NULL, NULL, NULL, NULL) == CBV_DNS_PENDING) {
		struct pollfd fds[16], tmp;
		int64_t wake, t;
		int n = cbv_dns_pollfds(d, fds, 16, &wake), i, tcp = -1, udp = -1;

		ck_assert_msg(cbv_now_ms() < limit, "DNS machine never finished");
		t = wake - cbv_now_ms();
		poll(fds, (nfds_t)n, t < 0 ? 0 : (int)t);
		for (i = 0; i < n; i++) {
			if (sock_type(fds[i].fd) == SOCK_STREAM)
				tcp = i;
			else
				udp = i;
		}
		if (!staged && tcp >= 0 && udp >= 0 && (fds[tcp].revents & POLLOUT)) {
			struct pollfd w = { fds[udp].fd, POLLIN, 0 };

			/* The AAAA answer comes after the FIN: wait for it. */
			ck_assert_int_eq(poll(&w, 1, 5000), 1);
			fds[tcp].revents = POLLOUT;
			fds[udp].revents = POLLIN;
			if (tcp > udp) {
				tmp = fds[tcp];
				fds[tcp] = fds[udp];
				fds[udp] = tmp;
			}
			staged = 1;
		}
		cbv_dns_process(d, fds, n);
	}
	ck_assert_msg(staged, "c-ares never moved to TCP");
	ck_assert_int_eq(cbv_dns_outcome(d, NULL, NULL, &detail, NULL), CBV_DNS_TEMP);
	ck_assert_msg(strstr(detail, "mx.ttl.test") != NULL, "detail: %s", detail);
	cbv_dns_free(d);
	fake_stop(&f);
}
END_TEST

/* ---- answers kept for their TTL ---- */

static int64_t fake_now;

static int64_t fake_clock(void)
{
	return fake_now;
}

/* Resolves domain through the fake; returns how many queries it cost. */
static unsigned counted(const struct fake *f, const char *domain,
                        struct outcome *out)
{
	unsigned before = fake_count(f);

	resolve(domain, f->servers, RUN_MS, out);
	return fake_count(f) - before;
}

static void cache_setup(void)
{
	cbv_dns_cache_flush();
	fake_now = 1000000;
	cbv_dns_cache_clock(fake_clock);
}

static void cache_teardown(void)
{
	cbv_dns_cache_clock(NULL);
	cbv_dns_cache_flush();
}

/* The second address at a domain needs no DNS at all. */
START_TEST(test_cache_second_lookup)
{
	struct fake f;
	struct outcome r;
	char buf[INET6_ADDRSTRLEN];

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3); /* MX, A, AAAA */
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 0);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	ck_assert_uint_eq(r.n, 1);
	ck_assert_str_eq(r.hosts[0].name, "mx.ttl.test");
	ck_assert_str_eq(ip(&r.hosts[0], buf, sizeof(buf)), "127.0.0.10");
	/* Names compare without case. */
	ck_assert_uint_eq(counted(&f, "TTL.test", &r), 0);
	fake_stop(&f);
}
END_TEST

/* Each record lives its own TTL: A 60 s, MX 300 s, AAAA NODATA 120 s (SOA MINIMUM). */
START_TEST(test_cache_ttl)
{
	struct fake f;
	struct outcome r;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	fake_now += 59999;
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 0);
	fake_now += 1; /* 60 s: A expired */
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 1);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	fake_now += 59999;
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 0);
	fake_now += 1; /* 120 s: A again, AAAA */
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 2);
	fake_now += 180000; /* 300 s: all three */
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	fake_stop(&f);
}
END_TEST

/* A day's TTL is kept an hour; a day's negative TTL five minutes. */
START_TEST(test_cache_caps)
{
	struct fake f;
	struct outcome r;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	ck_assert_uint_eq(counted(&f, "long.test", &r), 3);
	fake_now += CBV_DNS_NEG_TTL_MAX_S * 1000 - 1;
	ck_assert_uint_eq(counted(&f, "long.test", &r), 0);
	fake_now += 1; /* AAAA NODATA */
	ck_assert_uint_eq(counted(&f, "long.test", &r), 1);
	fake_now += (CBV_DNS_TTL_MAX_S - CBV_DNS_NEG_TTL_MAX_S) * 1000 - 1;
	ck_assert_uint_eq(counted(&f, "long.test", &r), 1); /* AAAA again, not MX/A */
	fake_now += 1;
	ck_assert_uint_eq(counted(&f, "long.test", &r), 2); /* MX and A: one hour */
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	fake_stop(&f);
}
END_TEST

static const struct {
	const char *domain;
	enum cbv_dns_outcome o;
	int64_t keep_ms; /* 0: never kept */
} negative[] = {
	{ "nx.test", CBV_DNS_NXDOMAIN, 30000 },                        /* SOA MINIMUM 30 < TTL 600 */
	{ "null.test", CBV_DNS_NULLMX, CBV_DNS_NEG_TTL_MAX_S * 1000 }, /* TTL 3600 */
	{ "nosoa.test", CBV_DNS_NXDOMAIN, 0 },                         /* RFC 2308: no SOA */
	{ "fail.test", CBV_DNS_TEMP, 0 },                              /* errors never */
};

START_TEST(test_cache_negative)
{
	struct fake f;
	struct outcome r;
	unsigned first;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	first = counted(&f, negative[_i].domain, &r);
	ck_assert_uint_ge(first, 1);
	ck_assert_int_eq(r.o, negative[_i].o);
	if (negative[_i].keep_ms > 0) {
		fake_now += negative[_i].keep_ms - 1;
		ck_assert_uint_eq(counted(&f, negative[_i].domain, &r), 0);
		ck_assert_int_eq(r.o, negative[_i].o);
		fake_now += 1;
	}
	ck_assert_uint_eq(counted(&f, negative[_i].domain, &r), first);
	ck_assert_int_eq(r.o, negative[_i].o);
	fake_stop(&f);
}
END_TEST

/* The cache is keyed by the servers too: other servers, other answers. */
START_TEST(test_cache_servers)
{
	struct fake f, g;
	struct outcome r;
	char buf[INET6_ADDRSTRLEN];

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	ck_assert_int_eq(fake_start(&g, "127.0.0.1", 0, fake_zone2, NZ(fake_zone2), 0), 0);
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	ck_assert_str_eq(ip(&r.hosts[0], buf, sizeof(buf)), "127.0.0.10");
	ck_assert_uint_eq(counted(&g, "ttl.test", &r), 3);
	ck_assert_str_eq(ip(&r.hosts[0], buf, sizeof(buf)), "127.0.0.13");
	fake_stop(&f);
	fake_stop(&g);
}
END_TEST

/* ---- answers shared with other processes (struct cbv_dns_store) ---- */

/*
 * A store standing for the cache: a few values with their expiry on the
 * test clock, and ways to spoil what it hands back.
 */
enum spoil { SP_NONE,
	     SP_KEY,
	     SP_STATUS,
	     SP_SWAP,
	     SP_SHORT,
	     SP_RCODE,
	     SP_LONG_TTL };

static struct {
	struct {
		char key[CBV_DNS_SHARED_KEY_MAX];
		size_t keylen;
		unsigned char val[CBV_DNS_SHARED_VALUE_MAX];
		size_t len;
		int64_t expires;
	} e[16];
	size_t n;
	unsigned puts, gets;
	enum spoil spoil;
} ts;

static size_t ts_get(void *arg, const char *name, const char *key, size_t keylen,
                     unsigned char *buf, size_t n, int64_t *ttl_ms)
{
	(void)arg;
	ck_assert_ptr_nonnull(name);
	ts.gets++;
	*ttl_ms = 0;
	for (size_t i = 0; i < ts.n; i++) {
		size_t len = ts.e[i].len;

		if (ts.e[i].keylen != keylen || memcmp(ts.e[i].key, key, keylen) != 0 ||
		    ts.e[i].expires <= fake_now || len > n)
			continue;
		memcpy(buf, ts.e[i].val, len);
		*ttl_ms = ts.e[i].expires - fake_now;
		switch (ts.spoil) {
		case SP_NONE: break;
		case SP_KEY: buf[keylen - 1] ^= 1; break;                /* names another key */
		case SP_STATUS: buf[keylen + 1] = ARES_ESERVFAIL; break; /* never kept */
		case SP_SWAP:                                            /* NOERROR with answers said to be NODATA, and back */
			buf[keylen + 1] = buf[keylen + 1] == ARES_SUCCESS ? ARES_ENODATA : ARES_SUCCESS;
			break;
		case SP_SHORT: len = keylen + 2 + 11; break;    /* shorter than a DNS header */
		case SP_RCODE: buf[keylen + 2 + 3] ^= 3; break; /* RCODE no longer matches */
		case SP_LONG_TTL: *ttl_ms = 86400000LL * 30; break;
		}
		return len;
	}
	return 0;
}

static void ts_put(void *arg, const char *name, const char *key, size_t keylen,
                   const unsigned char *data, size_t len, int64_t ttl_ms)
{
	(void)arg;
	ck_assert_ptr_nonnull(name);
	ck_assert_uint_le(keylen, CBV_DNS_SHARED_KEY_MAX);
	ck_assert_uint_le(len, CBV_DNS_SHARED_VALUE_MAX);
	ck_assert_int_gt(ttl_ms, 0);
	ts.puts++;
	for (size_t i = 0; i < ts.n; i++)
		if (ts.e[i].keylen == keylen && memcmp(ts.e[i].key, key, keylen) == 0) {
			memcpy(ts.e[i].val, data, len);
			ts.e[i].len = len;
			ts.e[i].expires = fake_now + ttl_ms;
			return;
		}
	ck_assert_uint_lt(ts.n, 16);
	memcpy(ts.e[ts.n].key, key, keylen);
	ts.e[ts.n].keylen = keylen;
	memcpy(ts.e[ts.n].val, data, len);
	ts.e[ts.n].len = len;
	ts.e[ts.n].expires = fake_now + ttl_ms;
	ts.n++;
}

static const struct cbv_dns_store test_store = { ts_get, ts_put, NULL };

static void shared_setup(void)
{
	cache_setup();
	memset(&ts, 0, sizeof(ts));
	use_store = &test_store;
}

static void shared_teardown(void)
{
	use_store = NULL;
	cache_teardown();
}

static unsigned long shared_hits(void)
{
	struct cbv_dns_stats st;

	cbv_dns_stats(&st);
	return st.shared_hits;
}

/* Another process (this one with its own cache flushed) sends no query. */
START_TEST(test_shared_other_process)
{
	struct fake f;
	struct outcome r;
	char buf[INET6_ADDRSTRLEN];
	unsigned long h0;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	ck_assert_uint_eq(ts.puts, 3); /* MX, A, AAAA NODATA (with SOA) */
	cbv_dns_cache_flush();
	h0 = shared_hits();
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 0);
	ck_assert_uint_eq(shared_hits(), h0 + 3);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	ck_assert_uint_eq(r.n, 1);
	ck_assert_str_eq(ip(&r.hosts[0], buf, sizeof(buf)), "127.0.0.10");
	/* what came from the store is kept in process too */
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 0);
	ck_assert_uint_eq(shared_hits(), h0 + 3);
	/* each answer for its own TTL: at 60 s the A, at 120 s the AAAA */
	cbv_dns_cache_flush();
	fake_now += 60000;
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 1);
	cbv_dns_cache_flush();
	fake_now += 60000;
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 2); /* AAAA, and the A put at 60 s */
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	fake_stop(&f);
}
END_TEST

/* Negative answers per RFC 2308 as in process; errors are never offered. */
static const struct {
	const char *domain;
	enum cbv_dns_outcome o;
	unsigned puts;
} shared_neg[] = {
	{ "nx.test", CBV_DNS_NXDOMAIN, 1 },
	{ "null.test", CBV_DNS_NULLMX, 1 },
	{ "nosoa.test", CBV_DNS_NXDOMAIN, 0 },
	{ "fail.test", CBV_DNS_TEMP, 0 },
};

START_TEST(test_shared_negative)
{
	struct fake f;
	struct outcome r;
	unsigned first;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	first = counted(&f, shared_neg[_i].domain, &r);
	ck_assert_int_eq(r.o, shared_neg[_i].o);
	ck_assert_uint_eq(ts.puts, shared_neg[_i].puts);
	cbv_dns_cache_flush();
	ck_assert_uint_eq(counted(&f, shared_neg[_i].domain, &r),
	                  shared_neg[_i].puts > 0 ? 0 : first);
	ck_assert_int_eq(r.o, shared_neg[_i].o);
	fake_stop(&f);
}
END_TEST

/* A spoiled value is not believed: the query goes out, the answer is right. */
static const enum spoil spoils[] = { SP_KEY, SP_STATUS, SP_SWAP, SP_SHORT, SP_RCODE };

START_TEST(test_shared_spoiled)
{
	struct fake f;
	struct outcome r;
	char buf[INET6_ADDRSTRLEN];
	unsigned long h0;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	cbv_dns_cache_flush();
	ts.spoil = spoils[_i];
	h0 = shared_hits();
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	ck_assert_uint_eq(shared_hits(), h0);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	ck_assert_str_eq(ip(&r.hosts[0], buf, sizeof(buf)), "127.0.0.10");
	fake_stop(&f);
}
END_TEST

/* A store that promises more life than the answer's TTL: our caps still hold. */
START_TEST(test_shared_ttl_capped)
{
	struct fake f;
	struct outcome r;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	cbv_dns_cache_flush();
	ts.spoil = SP_LONG_TTL;
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 0);
	/* kept in process no longer than the A's own 60 s */
	use_store = NULL;
	fake_now += 59999;
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 0);
	fake_now += 1;
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 1);
	fake_stop(&f);
}
END_TEST

/* Other servers, other answers: the servers are part of the shared key. */
START_TEST(test_shared_servers)
{
	struct fake f, g;
	struct outcome r;
	char buf[INET6_ADDRSTRLEN];

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	ck_assert_int_eq(fake_start(&g, "127.0.0.1", 0, fake_zone2, NZ(fake_zone2), 0), 0);
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	cbv_dns_cache_flush();
	ck_assert_uint_eq(counted(&g, "ttl.test", &r), 3);
	ck_assert_str_eq(ip(&r.hosts[0], buf, sizeof(buf)), "127.0.0.13");
	fake_stop(&f);
	fake_stop(&g);
}
END_TEST

/* ---- channels kept per process ---- */

static unsigned long channels(void)
{
	struct cbv_dns_stats st;

	cbv_dns_stats(&st);
	return st.channels;
}

/* Lookups after the first use the same channel; other servers get their own. */
START_TEST(test_channel_reuse)
{
	struct fake f, g;
	struct outcome r;
	unsigned long c0;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	ck_assert_int_eq(fake_start(&g, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	c0 = channels();
	resolve("ttl.test", f.servers, RUN_MS, &r);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	ck_assert_uint_eq(channels(), c0 + 1);
	cbv_dns_cache_flush();
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	ck_assert_uint_eq(channels(), c0 + 1);
	ck_assert_uint_eq(counted(&g, "ttl.test", &r), 3);
	ck_assert_uint_eq(channels(), c0 + 2);
	fake_stop(&f);
	fake_stop(&g);
}
END_TEST

/*
 * Several machines at once on one channel, driven as cbvd does: every
 * machine's fds in one poll set (the channel's sockets more than once),
 * then every machine processed.  Each gets its own answer.
 */
START_TEST(test_concurrent)
{
	static const char *const dom[] = { "ttl.test", "other.test", "nx.test",
		                           "ttl.test", "null.test", "other.test" };
	enum { N = sizeof(dom) / sizeof(dom[0]) };
	static const enum cbv_dns_outcome want[N] = {
		CBV_DNS_OK,
		CBV_DNS_OK,
		CBV_DNS_NXDOMAIN,
		CBV_DNS_OK,
		CBV_DNS_NULLMX,
		CBV_DNS_OK,
	};
	struct cbv_dns *d[N];
	struct fake f;
	struct cbv_err err;
	unsigned long c0 = channels();
	int64_t limit = cbv_now_ms() + 20000;
	int i, left = N;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	for (i = 0; i < N; i++) {
		d[i] = cbv_dns_new(dom[i], f.servers, cbv_now_ms() + RUN_MS, &err);
		ck_assert_ptr_nonnull(d[i]);
	}
	while (left > 0) {
		struct pollfd fds[N * 16];
		int off[N], cnt[N], n = 0;
		int64_t wake = INT64_MAX, t;

		ck_assert_msg(cbv_now_ms() < limit, "machines never finished");
		for (i = 0; i < N; i++) {
			int64_t w;

			off[i] = n;
			cnt[i] = cbv_dns_pollfds(d[i], fds + n, 16, &w);
			n += cnt[i];
			if (cbv_dns_outcome(d[i], NULL, NULL, NULL, NULL) == CBV_DNS_PENDING &&
			    w < wake)
				wake = w;
		}
		t = wake == INT64_MAX ? 0 : wake - cbv_now_ms();
		poll(fds, (nfds_t)n, t < 0 ? 0 : (int)t);
		left = 0;
		for (i = 0; i < N; i++) {
			cbv_dns_process(d[i], fds + off[i], cnt[i]);
			if (cbv_dns_outcome(d[i], NULL, NULL, NULL, NULL) == CBV_DNS_PENDING)
				left++;
		}
	}
	for (i = 0; i < N; i++) {
		const struct cbv_host *h;
		size_t nh;
		char buf[INET6_ADDRSTRLEN];

		ck_assert_msg(cbv_dns_outcome(d[i], &h, &nh, NULL, NULL) == want[i],
		              "%s: outcome %d", dom[i],
		              cbv_dns_outcome(d[i], NULL, NULL, NULL, NULL));
		if (want[i] == CBV_DNS_OK)
			ck_assert_str_eq(ip(&h[0], buf, sizeof(buf)),
			                 strcmp(dom[i], "ttl.test") == 0 ? "127.0.0.10"
			                                                 : "127.0.0.12");
	}
	ck_assert_uint_eq(channels(), c0 + 1);
	/* Freed while another still runs: nothing dangles (ASan). */
	for (i = 0; i < N; i++)
		cbv_dns_free(d[i]);
	fake_stop(&f);
}
END_TEST

/* One machine freed mid-lookup, another on the same channel carries on. */
START_TEST(test_free_one_of_two)
{
	struct fake f;
	struct cbv_err err;
	struct cbv_dns *a, *b;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	a = cbv_dns_new("ttl.test", f.servers, cbv_now_ms() + RUN_MS, &err);
	b = cbv_dns_new("other.test", f.servers, cbv_now_ms() + RUN_MS, &err);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	cbv_dns_free(a);
	ck_assert_int_eq(run(b), CBV_DNS_OK);
	cbv_dns_free(b);
	fake_stop(&f);
}
END_TEST

/*
 * The system resolver's channel is made again when resolv.conf changes,
 * and what the old resolver said is forgotten.  Needs 127.0.0.1:53 and
 * 127.0.0.2:53 for the fakes (root, in the rig's network namespace):
 * c-ares 1.18 reads no port from resolv.conf.
 */
START_TEST(test_resolv_conf_change)
{
	char path[] = "/tmp/check_dns_resolv.XXXXXX";
	struct fake f, g;
	struct outcome r;
	char buf[INET6_ADDRSTRLEN];
	unsigned long c0;
	FILE *fp;
	int fd;

	if (fake_start(&f, "127.0.0.1", 53, fake_zone, NZ(fake_zone), 0) != 0) {
		fprintf(stderr, "check_dns: resolv.conf case skipped: 127.0.0.1:53 "
		                "unavailable (run in the rig as root)\n");
		return;
	}
	ck_assert_int_eq(fake_start(&g, "127.0.0.2", 53, fake_zone2, NZ(fake_zone2), 0), 0);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "nameserver 127.0.0.1\n", 21), 21);
	close(fd);
	cbv_dns_resolv_conf(path);
	c0 = channels();
	resolve("ttl.test", "", RUN_MS, &r);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	ck_assert_str_eq(ip(&r.hosts[0], buf, sizeof(buf)), "127.0.0.10");
	ck_assert_uint_eq(channels(), c0 + 1);
	cbv_dns_cache_flush();
	resolve("ttl.test", "", RUN_MS, &r);
	ck_assert_uint_eq(channels(), c0 + 1);
	/* A new file (new inode, size) in its place. */
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("# changed\nnameserver 127.0.0.2\n", fp);
	fclose(fp);
	resolve("ttl.test", "", RUN_MS, &r);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	ck_assert_str_eq(ip(&r.hosts[0], buf, sizeof(buf)), "127.0.0.13");
	ck_assert_uint_eq(channels(), c0 + 2);
	cbv_dns_resolv_conf(NULL);
	unlink(path);
	fake_stop(&f);
	fake_stop(&g);
}
END_TEST

/*
 * A forked child never uses its parent's channel (the sockets would be
 * shared): it makes its own; the parent's keeps working.
 */
START_TEST(test_fork)
{
	struct fake f;
	struct outcome r;
	unsigned long c0;
	pid_t pid;
	int status;

	ck_assert_int_eq(fake_start(&f, "127.0.0.1", 0, fake_zone, NZ(fake_zone), 0), 0);
	resolve("ttl.test", f.servers, RUN_MS, &r);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	c0 = channels();
	cbv_dns_cache_flush();
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct outcome cr;

		resolve("ttl.test", f.servers, RUN_MS, &cr);
		_exit(cr.o == CBV_DNS_OK && channels() == c0 + 1 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "child: status %d", status);
	ck_assert_uint_eq(counted(&f, "ttl.test", &r), 3);
	ck_assert_int_eq(r.o, CBV_DNS_OK);
	ck_assert_uint_eq(channels(), c0);
	fake_stop(&f);
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

	tc = tcase_create("sigpipe");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_sigpipe);
	suite_add_tcase(s, tc);

	tc = tcase_create("cache");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, cache_setup, cache_teardown);
	tcase_add_test(tc, test_cache_second_lookup);
	tcase_add_test(tc, test_cache_ttl);
	tcase_add_test(tc, test_cache_caps);
	tcase_add_loop_test(tc, test_cache_negative, 0,
	                    sizeof(negative) / sizeof(negative[0]));
	tcase_add_test(tc, test_cache_servers);
	suite_add_tcase(s, tc);

	tc = tcase_create("shared");
	tcase_add_checked_fixture(tc, shared_setup, shared_teardown);
	tcase_add_test(tc, test_shared_other_process);
	tcase_add_loop_test(tc, test_shared_negative, 0,
	                    sizeof(shared_neg) / sizeof(shared_neg[0]));
	tcase_add_loop_test(tc, test_shared_spoiled, 0, sizeof(spoils) / sizeof(spoils[0]));
	tcase_add_test(tc, test_shared_ttl_capped);
	tcase_add_test(tc, test_shared_servers);
	suite_add_tcase(s, tc);

	tc = tcase_create("channel");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, cache_setup, cache_teardown);
	tcase_add_test(tc, test_channel_reuse);
	tcase_add_test(tc, test_concurrent);
	tcase_add_test(tc, test_free_one_of_two);
	tcase_add_test(tc, test_resolv_conf_change);
	tcase_add_test(tc, test_fork);
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
	cbv_dns_shutdown();
	stop_dnsmasq();
	return failed == 0 ? 0 : 1;
}
