/*
 * cbv_verify.c - policy: host order, reply -> verdict (see cbv_verify.h).
 *
 * The verdict table is DESIGN.md's.  The reason word comes from the stage,
 * the reply code and the RFC 3463 enhanced code, never from reply text.
 * Every doubt is transient: a host that times out, closes, or answers 4xx
 * sends us to the next one, and if it was the last, the answer is
 * "try again later", never a guess.
 */
#include "cbv_verify.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "cbv_addr.h"
#include "cbv_cache.h"
#include "cbv_cache_async.h"
#include "cbv_cidr.h"
#include "cbv_clock.h"
#include "cbv_dns.h"
#include "cbv_hold.h"
#include "cbv_log.h"
#include "cbv_map.h"
#include "cbv_net.h"
#include "cbv_reply.h"
#include "cbv_session.h"
#include "cbv_tls.h"
#include "cbv_tracemux.h"
#include "cbv_share.h"

/* VS_FLIGHT: another verification of the same key is running; we poll the store. */
/* VS_HOLD: a group member ready for DNS, waiting to be grouped (cbv_verify_group);
 * VS_FOLLOW: a member whose leader looks up and calls out for it. */
/* VS_CACHE: a cache call is out (a Redis store driven without blocking, cbv_cache_async.h). */
enum vstate { VS_FLIGHT, VS_DNS, VS_SESSION, VS_DONE, VS_HOLD, VS_FOLLOW, VS_CACHE };

/* How often a verification waiting on another's flight looks again (ms). */
#define FLIGHT_POLL_MS 50
/* A flight or slot outlives the overall timeout by this much (s). */
#define LEASE_MARGIN_S 5

struct cbv_verify {
	struct cbv_profile p;        /* own copy, holds a map reference */
	struct cbv_request req;      /* trace hook only; strings copied below */
	char helo[CBV_DOMAIN_MAX + 1];
	struct cbv_addr addr;
	char domain[CBV_DOMAIN_MAX + 1]; /* after the map; A-labels */
	char shown[2 * CBV_DOMAIN_MAX + 4]; /* domain for messages: "bücher.test (xn--...)" */
	char rcpt[CBV_PATH_MAX + 1];
	char sender[CBV_PATH_MAX + 1];
	char probe[CBV_DOMAIN_MAX + 32]; /* catch-all probe RCPT, "" = none */
	int utf8;

	enum vstate state;
	int64_t start_us;
	int64_t deadline_ms;
	struct cbv_dns *dns;
	/* Hosts to try, in order: owned (cbv_malloc'd), sized to what the
	 * lookups gave (most domains: 1-5 addresses), at most CBV_HOSTS_MAX. */
	struct cbv_host *hosts;
	size_t nhosts, next_host;
	size_t tried;
	struct cbv_session *sess;
	size_t sess_host;            /* index into hosts of the current session */
	int plain_retry;             /* current session is the no-TLS retry */
	struct cbv_tls_store tls_store; /* the sessions' TLS store (cbv_share.h) */
	int reused;                  /* current session came from cbv_hold (parked) */
	int no_reuse;                /* a reused session failed: fresh ones only */
	char host[CBV_DOMAIN_MAX + 1]; /* the request's host, checked; "" if none */
	int phase_host[2];           /* lookup phases: 1 = the host, 0 = the MX hosts */
	int nphases, phase;
	int lookup_error;            /* a lookup failure is in the result already */
	size_t denied;               /* addresses dropped by deny_networks */
	size_t capped;               /* hosts skipped at host_max_concurrency */

	struct cbv_result *res;
	int res_taken;

	/* The cache and abuse controls; cache NULL = off (see cache_start()). */
	struct cbv_cache *cache;
	struct cbv_cache_key key;
	char *fp;                    /* the key's profile fingerprint (cbv_malloc'd) */
	struct cbv_cache_caps caps;
	struct cbv_cache_ttl ttl;
	uint64_t flight;             /* our single-flight ticket, 0 if none */
	uint64_t dslot;              /* our domain slot, 0 if none */
	uint64_t hslot;              /* our slot at the current host's IP, 0 if none */
	char hslot_ip[80];
	int64_t flight_wake;         /* VS_FLIGHT: when to look again */
	int no_store;                /* the result is not from a callout: never store it */
	/* VS_CACHE: the call out, the step its answer goes to, the state to go back to */
	struct cbv_cache_call call;
	void (*cache_next)(struct cbv_verify *v);
	enum vstate cache_back;
	size_t cache_host;           /* host_take(): the host whose slot is asked for */
	int cache_asked;     /* stats: cache_start() was reached */
	/* stats: the domain cap that refused us */
	enum cbv_cache_limit limited;

	/* Groups (cbv_verify_group_new): a leader does the DNS and the sessions
	 * for itself and its followers (same domain after the map, same
	 * SMTPUTF8 need), which are separate machines with their own result
	 * and cache key.  A follower decided at a host is finished at once; a
	 * decided leader waits (decided = 1) until the group is. */
	int hold;                    /* stop before DNS (VS_HOLD) */
	int decided;                 /* leader: its own verdict is final */
	int64_t decided_us;          /* ... since then (its elapsed time) */
	size_t decided_tried;        /* ... after this many hosts */
	struct cbv_verify **group;   /* leader: its followers (cbv_malloc'd; not owned) */
	size_t ngroup;
	int trace_each;              /* members have their own transcript (req trace_args) */
	struct cbv_tracemux *mux;    /* leader: splits its sessions' lines (cbv_malloc'd) */
};

/*
 * cbv_sanitize() made every 8-bit byte of text a '?' in clean (same
 * offsets).  Puts back the UTF-8 of name, our own domain in the form
 * cbv_addr_domain_show() made from A-labels it checked, where text has it:
 * it is not remote text.
 */
static void show_own_name(char *clean, const char *text, const char *name)
{
	size_t n = strlen(name), len = strlen(clean);
	const char *p = text, *q = name;

	while (*q != '\0' && (unsigned char)*q < 0x80)
		q++;
	if (*q == '\0')
		return; /* ASCII (or empty): cbv_sanitize left it as it was */
	while ((p = strstr(p, name)) != NULL && (size_t)(p - text) + n <= len) {
		memcpy(clean + (p - text), name, n);
		p += n;
	}
}

/*
 * The members still open in v's group, leader first (if undecided), into
 * out (CBV_RCPTS_MAX entries); returns the count.  Without a group: v.
 */
static size_t open_members(struct cbv_verify *v, struct cbv_verify **out)
{
	size_t n = 0;

	if (!v->decided)
		out[n++] = v;
	for (size_t i = 0; i < v->ngroup && n < CBV_RCPTS_MAX; i++) {
		if (v->group[i]->state != VS_DONE)
			out[n++] = v->group[i];
	}
	return n;
}

/* Sets the verdict and a synthesized DSN "CODE X.Y.Z text", for v alone. */
static void vsynth_one(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                       int code, const char *ecode, const char *fmt, va_list ap)
	__attribute__((format(printf, 6, 0)));

static void vsynth_one(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                       int code, const char *ecode, const char *fmt, va_list ap)
{
	char text[1024], clean[1024];

	if (vsnprintf(text, sizeof(text), fmt, ap) < 0)
		text[0] = '\0';
	/* Parts of the text may come from DNS or the peer: print them safely. */
	cbv_sanitize(text, strlen(text), clean, sizeof(clean));
	show_own_name(clean, text, v->shown);
	(void)cbv_result_set_synth_clean(v->res, vd, reason, code, ecode, clean);
}

static void synth_one(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                      int code, const char *ecode, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void synth_one(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                      int code, const char *ecode, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsynth_one(v, vd, reason, code, ecode, fmt, ap);
	va_end(ap);
}

/* synth_one() for v and every open member of its group: what is not about one address. */
static void synth(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                  int code, const char *ecode, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void synth(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                  int code, const char *ecode, const char *fmt, ...)
{
	struct cbv_verify *m[CBV_RCPTS_MAX];
	size_t n = open_members(v, m);

	for (size_t i = 0; i < n; i++) {
		va_list ap;

		va_start(ap, fmt);
		vsynth_one(m[i], vd, reason, code, ecode, fmt, ap);
		va_end(ap);
	}
}

/* no_store for v and every open member of its group. */
static void set_no_store(struct cbv_verify *v)
{
	struct cbv_verify *m[CBV_RCPTS_MAX];
	size_t n = open_members(v, m);

	for (size_t i = 0; i < n; i++)
		m[i]->no_store = 1;
}

/* ---- the cache and the abuse controls (cbv_cache.h) ---- */

/*
 * The process's cache handles, one per store path, kept for the life of
 * the process: cbv_cache opens the store on first use and again in a
 * forked child (an LMDB environment must not cross fork()), and LMDB
 * allows one environment per file per process, so a second profile naming
 * the same path shares the handle, with the map size of the first.
 * Bounded: beyond CACHES_MAX distinct paths a verification runs uncached
 * (logged once).
 */
#define CACHES_MAX 8
static struct cached_handle {
	char path[CBV_PATH_MAX + 1];
	char prefix[CBV_NAME_MAX + 1]; /* Redis: two prefixes are two stores */
	struct cbv_cache *c;
} caches[CACHES_MAX];
static size_t ncaches;
static int caches_full_logged;

/*
 * The handle for p's store, or NULL (no cache configured, ENOMEM, a bad
 * Redis option, registry full).  One per (path, prefix): the first
 * profile's cache_size, cache_timeout, cache_fallback and
 * cache_password_file apply to it.
 */
static struct cbv_cache *cache_handle(const struct cbv_profile *p)
{
	struct cbv_cache *c;

	if (p->cache[0] == '\0')
		return NULL;
	for (size_t i = 0; i < ncaches; i++) {
		if (strcmp(caches[i].path, p->cache) == 0 &&
		    strcmp(caches[i].prefix, p->cache_prefix) == 0)
			return caches[i].c;
	}
	if (ncaches >= CACHES_MAX) {
		if (!caches_full_logged)
			cbv_log(CBV_LOG_ERR, "cbv: cache %s: more than %d cache paths in one process; "
			        "running uncached", p->cache, CACHES_MAX);
		caches_full_logged = 1;
		return NULL;
	}
	c = cbv_cache_new(p->cache, p->cache_size > SIZE_MAX ? SIZE_MAX : (size_t)p->cache_size);
	if (c == NULL)
		return NULL; /* out of memory: uncached this time, tried again next time */
	{
		struct cbv_cache_opts o = { p->cache_timeout_ms, p->cache_prefix,
			                    p->cache_password_file, p->cache_fallback };

		if (cbv_cache_set_options(c, &o) != 0) {
			cbv_cache_free(c);
			return NULL;
		}
	}
	snprintf(caches[ncaches].path, sizeof(caches[ncaches].path), "%s", p->cache);
	snprintf(caches[ncaches].prefix, sizeof(caches[ncaches].prefix), "%s", p->cache_prefix);
	caches[ncaches++].c = c;
	return c;
}

/* Adds printf output to fp at *len; 0 if it did not fit. */
static int fp_add(char *fp, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fp_add(char *fp, size_t *len, const char *fmt, ...)
{
	/* fp has CBV_CACHE_FP_MAX bytes */
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(fp + *len, CBV_CACHE_FP_MAX - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= CBV_CACHE_FP_MAX - *len)
		return 0;
	*len += (size_t)n;
	return 1;
}

/*
 * Builds v->key: the domain after the map, the local part as sent, the
 * MAIL FROM used and the port, plus a fingerprint of everything else that
 * can change the answer:
 *   starttls, tls_verify, ca_dir  TLS policy decides tls_required/tls_failed
 *                                 and which hosts answer at all;
 *   dns_servers                   another resolver, other hosts (split DNS);
 *   deny_networks                 which hosts may be tried (forbidden_target);
 *   max_hosts                     how far the search over hosts goes;
 *   host and mode (of the request, only when a host is used) where we call;
 *   catchall_probe                whether pass can become catch_all.
 * Timeouts are not in it: they only change transient outcomes, which are
 * not stored by default (cache_transient_ttl = 0).  Nor is the HELO name:
 * like our IP address it says who asks, not what is asked, and it differs
 * per host ($primary_hostname), so with it in the key the MX hosts of a
 * fleet sharing one Redis would never share a record.  The map is in it
 * through the mapped domain.  Returns 0 if the key cannot be built (the
 * verification then runs uncached).
 */
static int key_build(struct cbv_verify *v, enum cbv_host_mode mode)
{
	char fp[CBV_CACHE_FP_MAX];
	size_t len = 0;
	char net[64];

	if (!fp_add(fp, &len, "v1 starttls=%d tls_verify=%d ca_dir=%s dns=%s "
	            "max_hosts=%u host=%s mode=%d probe=%d deny=", (int)v->p.starttls,
	            v->p.tls_verify, v->p.ca_dir, v->p.dns_servers, v->p.max_hosts,
	            v->host, v->host[0] != '\0' ? (int)mode : 0, v->p.catchall_probe))
		return 0;
	for (size_t i = 0; i < v->p.ndeny; i++) {
		cbv_cidr_format(&v->p.deny[i], net, sizeof(net));
		if (!fp_add(fp, &len, "%s,", net))
			return 0;
	}
	/* kept only while a cache is in use: cbvd runs thousands of these */
	v->fp = cbv_malloc(len);
	if (v->fp == NULL)
		return 0;
	memcpy(v->fp, fp, len);
	v->key.domain = v->domain;
	v->key.local = v->addr.local;
	v->key.sender = v->sender;
	v->key.port = v->p.port;
	v->key.fp = v->fp;
	v->key.fp_len = len;
	return 1;
}

/* Releases the slot at the current host's IP, if we hold one. */
static void host_release(struct cbv_verify *v)
{
	if (v->hslot != 0)
		cbv_cache_host_release(v->cache, v->hslot_ip, v->hslot);
	v->hslot = 0;
}

/* Gives back every flight and slot held (the verification ends or is aborted). */
static void cache_release(struct cbv_verify *v)
{
	host_release(v);
	if (v->flight != 0)
		cbv_cache_flight_end(v->cache, &v->key, v->flight);
	v->flight = 0;
	if (v->dslot != 0)
		cbv_cache_domain_release(v->cache, v->domain, v->dslot);
	v->dslot = 0;
}

/*
 * The counters for operators (cbv_stats.h): this process's, and the
 * store's (left with the handle, written with the store or by
 * cbv_cache_count_flush()).  Returns the handle to flush, or NULL.
 */
static struct cbv_cache *count_end(struct cbv_verify *v)
{
	const struct cbv_result *r = v->res;
	struct cbv_stats_event ev = { r->verdict, r->reason, CBV_STATS_NONE, CBV_STATS_NOT_ASKED,
		                      CBV_STATS_CAP_NONE, (uint64_t)(cbv_now_us() - v->start_us) };
	struct cbv_cache *c = v->cache;

	if (v->p.cache[0] != '\0')
		ev.backend = cbv_cache_is_redis(v->p.cache) ? CBV_STATS_REDIS : CBV_STATS_LMDB;
	if (v->cache_asked)
		ev.lookup = r->cache_use == CBV_CACHE_USE_HIT ? CBV_STATS_HIT
		            : r->cache_use == CBV_CACHE_USE_MISS || ev.backend == CBV_STATS_NONE
		                    ? CBV_STATS_MISS
		                    : CBV_STATS_ERROR;
	if (r->reason == CBV_R_RATE_LIMITED)
		ev.cap = v->limited == CBV_LIMIT_DOMAIN_RATE          ? CBV_STATS_CAP_RATE
		         : v->limited == CBV_LIMIT_DOMAIN_CONCURRENCY ? CBV_STATS_CAP_CONCURRENCY
		                                                      : CBV_STATS_CAP_HOST;
	cbv_stats_end(&ev);
	if (c == NULL && !v->cache_asked)
		c = cache_handle(&v->p); /* ended before the lookup (bad syntax, ...) */
	cbv_cache_count(c, &ev);
	return c;
}

static void finish(struct cbv_verify *v)
{
	struct cbv_cache *counted;
	struct cbv_result *r = v->res;
	char age[32] = "";

	if (v->state == VS_CACHE)
		cbv_cache_call_cancel(&v->call); /* (the overall deadline) */
	/* a leader ends its group: the followers still open share its outcome */
	for (size_t i = 0; i < v->ngroup; i++) {
		if (v->group[i]->state != VS_DONE) {
			v->group[i]->tried = v->tried;
			finish(v->group[i]);
		}
	}
	host_release(v);
	cbv_session_free(v->sess);
	v->sess = NULL;
	cbv_dns_free(v->dns);
	v->dns = NULL;
	if (!r->cache) {
		/* a hit keeps the original's elapsed time and hosts tried */
		/* a leader decided before its group: as of its decision */
		int64_t end = v->decided ? v->decided_us : cbv_now_us();

		r->elapsed_ms = (unsigned long)((end - v->start_us + 500) / 1000);
		r->hosts_tried = (unsigned)(v->decided ? v->decided_tried : v->tried);
	}
	counted = count_end(v);
	if (v->cache != NULL && !r->cache && !v->no_store) {
		/* the store also ends our flight, in the same transaction */
		(void)cbv_cache_store(v->cache, &v->key, r, &v->ttl, v->flight);
		v->flight = 0;
	}
	cbv_cache_count_flush(counted);
	cache_release(v);
	v->state = VS_DONE;
	if (r->cache)
		snprintf(age, sizeof(age), " age=%lus", r->age);
	cbv_log(CBV_LOG_INFO,
	        "cbv: <%s> sender=<%s> %s/%s host=%s [%s] elapsed=%lums cache=%s%s: %s",
	        r->address, r->sender, cbv_verdict_name(r->verdict), cbv_reason_name(r->reason),
	        r->host[0] ? r->host : "-", r->ip[0] ? r->ip : "-", r->elapsed_ms,
	        r->cache_use == CBV_CACHE_USE_HIT    ? "hit"
	        : r->cache_use == CBV_CACHE_USE_MISS ? "miss"
	                                             : "off",
	        age, r->message);
}

/*
 * What one host's session means (DESIGN.md "Verdicts"): the one mapping.
 * A pass whose catch-all probe (a random local part) was accepted too is
 * pass/catch_all: the domain takes any address, so the pass says nothing
 * about this one.
 */
static struct cbv_judgement judge(const struct cbv_session_outcome *o)
{
	struct cbv_judgement j;

	if (o->status != CBV_OK)
		return cbv_reason_for_status(o->stage, o->status, o->tls_not_offered);
	j = cbv_reason_for(o->stage, o->reply.code, o->reply.ecode);
	if (j.verdict == CBV_PASS && o->probe_code >= 200 && o->probe_code < 300)
		j.reason = CBV_R_CATCH_ALL;
	return j;
}

/* Copies one host's conversation into the last-poll record. */
static void record_poll(struct cbv_verify *v, const struct cbv_host *h,
                        const struct cbv_session_outcome *o)
{
	struct cbv_result *r = v->res;
	char ip[80];

	cbv_net_format((const struct sockaddr *)&h->addr, ip, sizeof(ip));
	if (cbv_result_set(&r->host, h->name) != 0 || cbv_result_set(&r->ip, ip) != 0 ||
	    cbv_result_set(&r->greeting, cbv_reply_text(&o->greeting)) != 0 ||
	    cbv_result_set(&r->helo, cbv_reply_text(&o->ehlo)) != 0 ||
	    cbv_result_set(&r->sent, o->sent) != 0 ||
	    cbv_result_set(&r->recv, cbv_reply_text(&o->reply)) != 0)
		cbv_log(CBV_LOG_ERR, "cbv: out of memory recording the last poll");
	snprintf(r->tls, sizeof(r->tls), "%s", o->tls);
}

/* Sets the result from one host's outcome. */
static void conclude_host(struct cbv_verify *v, const struct cbv_host *h,
                          const struct cbv_session_outcome *o, struct cbv_judgement vd)
{
	record_poll(v, h, o);
	if (o->status == CBV_OK) {
		v->res->verdict = vd.verdict;
		v->res->reason = vd.reason;
		v->res->code = o->reply.code;
		snprintf(v->res->ecode, sizeof(v->res->ecode), "%s", o->reply.ecode);
		if (cbv_result_set(&v->res->message, cbv_reply_text(&o->reply)) != 0)
			v->res->message[0] = '\0';
		return;
	}
	switch (o->status) {
	case CBV_ETIMEOUT:
	case CBV_ECONNECT:
		/* RFC 3463: 4.4.1 no answer from host, 4.4.2 bad connection */
		synth_one(v, vd.verdict, vd.reason, 451,
		          o->stage == CBV_STAGE_CONNECT ? "4.4.1" : "4.4.2", "%s", o->err.msg);
		break;
	case CBV_ETLS:
		if (o->tls_not_offered)
			synth_one(v, vd.verdict, vd.reason, 530, "5.7.10", "%s", o->err.msg);
		else
			synth_one(v, vd.verdict, vd.reason, 454, "4.7.5", "%s", o->err.msg);
		break;
	default:
		if (o->smtputf8_missing)
			synth_one(v, vd.verdict, vd.reason, 553, "5.6.7", "%s", o->err.msg);
		else
			synth_one(v, vd.verdict, vd.reason, 451, "4.5.0", "%s", o->err.msg);
		break;
	}
}

static void start_next_host(struct cbv_verify *v);

/*
 * A group session whose members each have a transcript: their lines go
 * through the leader's mux (cbv_tracemux.h), each member seeing what its
 * own session would show.  Out of memory: no transcript, never a mixed one.
 */
static void trace_split(struct cbv_verify *v, struct cbv_verify *const *m, size_t nm,
                        struct cbv_session_opts *o)
{
	cbv_trace_fn *fn[CBV_RCPTS_MAX];
	void *arg[CBV_RCPTS_MAX];

	if (!v->trace_each || nm == 0)
		return;
	if (nm == 1) { /* one member (not always the leader, when it has decided) */
		o->trace = m[0]->req.trace;
		o->trace_arg = m[0]->req.trace_arg;
		return;
	}
	if (v->mux == NULL && (v->mux = cbv_malloc(sizeof(*v->mux))) == NULL) {
		o->trace = NULL;
		return;
	}
	for (size_t k = 0; k < nm; k++) {
		fn[k] = m[k]->req.trace;
		arg[k] = m[k]->req.trace_arg;
	}
	cbv_tracemux_begin(v->mux, fn, arg, nm);
	o->trace = cbv_tracemux_trace;
	o->trace_arg = v->mux;
}

/* Starts a session with hosts[i]; plain = 1 forces starttls=never. */
static void start_session(struct cbv_verify *v, size_t i, int plain)
{
	struct cbv_session_opts o;
	struct cbv_host *h = &v->hosts[i];
	struct cbv_err err;
	struct cbv_verify *m[CBV_RCPTS_MAX];
	const char *more[CBV_RCPTS_MAX];
	size_t nm = open_members(v, m);

	/* the group's open members, in order: one MAIL, one RCPT each */
	for (size_t k = 1; k < nm; k++)
		more[k - 1] = m[k]->rcpt;
	memset(&o, 0, sizeof(o));
	o.host = h->name;
	o.helo = v->helo;
	o.mail_from = v->sender;
	o.rcpt_to = m[0]->rcpt;
	o.more_rcpts = nm > 1 ? more : NULL;
	o.nmore = nm - 1;
	o.probe_rcpt = v->probe[0] != '\0' ? v->probe : NULL;
	o.utf8 = v->utf8;
	o.starttls = plain ? CBV_STARTTLS_NEVER : v->p.starttls;
	o.tls_verify = v->p.tls_verify;
	o.ca_dir = v->p.ca_dir;
	cbv_share_tls_store(v->p.cache_tls_sessions ? cache_handle(&v->p) : NULL, &v->tls_store);
	o.tls_store = &v->tls_store;
	o.connect_timeout_ms = v->p.connect_timeout_ms;
	o.command_timeout_ms = v->p.command_timeout_ms;
	o.deadline_ms = v->deadline_ms;
	o.trace = v->req.trace;
	o.trace_arg = v->req.trace_arg;
	trace_split(v, m, nm, &o);
	o.hold = v->p.session_reuse && v->p.starttls != CBV_STARTTLS_ONDEMAND;
	cbv_net_set_port((struct sockaddr *)&h->addr, v->p.port);
	/* Session reuse: a parked session to this very host and options (cbv_hold.h). */
	v->sess = NULL;
	v->reused = 0;
	if (o.hold && !v->no_reuse &&
	    (v->sess = cbv_hold_take((const struct sockaddr *)&h->addr, &o,
	                             nm + (o.probe_rcpt != NULL))) != NULL) {
		v->reused = cbv_session_reuse(v->sess, &o, &err) == 0;
		if (!v->reused) {
			cbv_session_free(v->sess);
			v->sess = NULL;
		}
	}
	if (v->sess == NULL)
		v->sess = cbv_session_new((const struct sockaddr *)&h->addr, h->addrlen, &o, &err);
	v->sess_host = i;
	v->plain_retry = plain;
	v->tried++;
	if (v->sess == NULL) {
		set_no_store(v); /* our own trouble (out of memory), not the domain's */
		synth(v, CBV_ERROR, CBV_R_PROTOCOL_ERROR, 451, "4.3.0", "cannot start a session: %s",
		      err.msg);
		finish(v);
		return;
	}
	v->state = VS_SESSION;
}

/*
 * Member k's view of a group session: its own RCPT and reply when it got
 * one; else the session's outcome (MAIL refused, 421, a failure), as it
 * would have been alone.  *view is a shallow copy (valid while o is).
 */
static const struct cbv_session_outcome *member_outcome(const struct cbv_session_outcome *o,
                                                       size_t k,
                                                       struct cbv_session_outcome *view)
{
	if (o->nrcpts == 0 || k >= o->nrcpts || !o->rcpts[k].replied)
		return o;
	*view = *o;
	view->status = CBV_OK;
	view->stage = CBV_STAGE_RCPT;
	view->reply = o->rcpts[k].reply;
	memcpy(view->sent, o->rcpts[k].sent, sizeof(view->sent));
	return view;
}

/*
 * Judges each open member of the session by its own reply; a follower
 * decided (definitive) is finished at once.  Returns 1 when no member is
 * left open.
 */
static int conclude_members(struct cbv_verify *v, const struct cbv_host *h,
                            const struct cbv_session_outcome *o)
{
	struct cbv_session_outcome view;
	struct cbv_verify *m[CBV_RCPTS_MAX];
	size_t nm = open_members(v, m), open = 0;

	for (size_t k = 0; k < nm; k++) {
		const struct cbv_session_outcome *mo = member_outcome(o, k, &view);
		struct cbv_judgement vd = judge(mo);

		conclude_host(m[k], h, mo, vd);
		if (!vd.definitive) {
			open++;
		} else if (m[k] == v) {
			v->decided = 1;
			v->decided_us = cbv_now_us();
			v->decided_tried = v->tried;
		} else {
			m[k]->tried = v->tried;
			finish(m[k]);
		}
	}
	return open == 0;
}

/* The current session ended: judge it, then stop or go on. */
static void session_done(struct cbv_verify *v)
{
	const struct cbv_session_outcome *o = cbv_session_outcome(v->sess);
	struct cbv_judgement vd = judge(o);
	const struct cbv_host *h = &v->hosts[v->sess_host];
	int all_decided;

	/* A reused session that did not answer (closed, 421, 452, a 50x,
	 * ...): its outcome is no verdict; a fresh session decides. */
	if (v->reused && !cbv_session_outcome_answered(o)) {
		cbv_log(CBV_LOG_DEBUG, "cbv: %s: reused session did not answer cleanly; "
		        "a fresh one", h->name);
		cbv_session_free(v->sess);
		v->sess = NULL;
		v->tried--; /* the same host again */
		v->no_reuse = 1;
		start_session(v, v->sess_host, v->plain_retry);
		return;
	}
	if (v->ngroup == 0) {
		conclude_host(v, h, o, vd);
		all_decided = vd.definitive;
	} else {
		all_decided = conclude_members(v, h, o);
	}
	/* Opportunistic TLS that failed in the handshake: same host, plain. */
	if (o->status == CBV_ETLS && !o->tls_not_offered && !v->plain_retry &&
	    v->p.starttls != CBV_STARTTLS_REQUIRE && cbv_now_ms() < v->deadline_ms) {
		cbv_log(CBV_LOG_WARN, "cbv: %s: %s; retrying without TLS", h->name, o->err.msg);
		cbv_session_free(v->sess);
		v->sess = NULL;
		v->tried--; /* the same host again */
		start_session(v, v->sess_host, 1);
		return;
	}
	cbv_hold_park(v->sess, v->p.session_idle_ms); /* frees it unless parkable */
	v->sess = NULL;
	host_release(v);
	if (all_decided) {
		finish(v);
		return;
	}
	start_next_host(v);
}

/*
 * Waits for v->call (VS_CACHE; next(v) takes its answer) unless it is
 * answered already (done = 1): then returns 1 and the caller goes on.
 */
static int cache_wait(struct cbv_verify *v, int done, void (*next)(struct cbv_verify *))
{
	if (done)
		return 1;
	v->cache_next = next;
	v->cache_back = v->state;
	v->state = VS_CACHE;
	return 0;
}

/* The host slot's answer (v->call): 1 if the host may be tried, 0 if it is at its cap. */
static int host_taken(struct cbv_verify *v)
{
	const struct cbv_host *h = &v->hosts[v->cache_host];

	v->hslot = v->call.ticket;
	if (v->call.st == CBV_CACHE_LIMITED) {
		cbv_log(CBV_LOG_INFO, "cbv: %s: %s [%s] is at host_max_concurrency (%u), skipped",
		        v->domain, h->name, v->hslot_ip, v->caps.host_concurrency);
		v->capped++;
		return 0;
	}
	return 1;
}

/* host_take() waited: the session, or the next host. */
static void host_next(struct cbv_verify *v)
{
	if (host_taken(v))
		start_session(v, v->cache_host, 0);
	else
		start_next_host(v);
}

/*
 * Takes a slot at hosts[i]'s IP address (host_max_concurrency, across
 * processes).  1 if the host may be tried (a slot, no cap, or no cache),
 * 0 if it is at its cap: skip it; -1: waiting (host_next() goes on).
 */
static int host_take(struct cbv_verify *v, size_t i)
{
	if (v->cache == NULL || v->caps.host_concurrency == 0)
		return 1;
	cbv_net_ntop((const struct sockaddr *)&v->hosts[i].addr, v->hslot_ip, sizeof(v->hslot_ip));
	v->cache_host = i;
	if (!cache_wait(v, cbv_cache_call_host(v->cache, v->hslot_ip, &v->caps, &v->call),
	                host_next))
		return -1;
	return host_taken(v);
}

static void start_next_host(struct cbv_verify *v)
{
	size_t i;
	int took;

	struct cbv_verify *m[CBV_RCPTS_MAX];
	size_t nm = open_members(v, m);

	/* next_phase() starts us only with hosts to try, so the result is set. */
	do {
		if (v->next_host >= v->nhosts || v->tried >= v->p.max_hosts) {
			if (v->tried == 0 && v->capped > 0) {
				set_no_store(v);
				synth(v, CBV_TRANSIENT, CBV_R_RATE_LIMITED, 451, "4.7.0",
				      "verification of %s deferred: every host is at "
				      "host_max_concurrency", v->shown);
			} else if (v->capped > 0) {
				for (size_t k = 0; k < nm; k++) {
					if (m[k]->res->verdict == CBV_TRANSIENT)
						m[k]->no_store = 1; /* hosts we skipped might have answered */
				}
			}
			finish(v);
			return;
		}
		if (v->tried > 0 && cbv_now_ms() >= v->deadline_ms) {
			/* Keep the last host's outcome, but say why we stopped. */
			for (size_t k = 0; k < nm; k++) {
				if (m[k]->res->verdict != CBV_TRANSIENT)
					synth_one(m[k], CBV_TRANSIENT, CBV_R_TIMEOUT, 451, "4.4.7",
					          "overall deadline reached after %zu host(s)", v->tried);
			}
			finish(v);
			return;
		}
		i = v->next_host++;
	} while ((took = host_take(v, i)) == 0);
	if (took > 0)
		start_session(v, i, 0);
}

/* 1 if the address of h is in deny_networks (and says so in the log). */
static int denied_host(struct cbv_verify *v, const struct cbv_host *h, int say)
{
	char ip[80];

	if (!cbv_cidr_match(v->p.deny, v->p.ndeny, (const struct sockaddr *)&h->addr))
		return 0;
	if (say) {
		cbv_net_ntop((const struct sockaddr *)&h->addr, ip, sizeof(ip));
		cbv_log(CBV_LOG_WARN, "cbv: %s: %s [%s] is in deny_networks, skipped", v->domain,
		        h->name, ip);
		v->denied++;
	}
	return 1;
}

/*
 * Appends hosts outside deny_networks to the list to try, in order.  The
 * list grows to exactly what it holds (at most CBV_HOSTS_MAX).  Returns 0,
 * or -1 out of memory with the list unchanged.
 */
static int add_hosts(struct cbv_verify *v, const struct cbv_host *hosts, size_t n)
{
	size_t keep = 0, room = CBV_HOSTS_MAX - v->nhosts;
	struct cbv_host *list;

	for (size_t i = 0; i < n && keep < room; i++)
		keep += !denied_host(v, &hosts[i], 0);
	if (keep > 0) {
		list = cbv_malloc((v->nhosts + keep) * sizeof(*list));
		if (list == NULL)
			return -1;
		if (v->nhosts > 0)
			memcpy(list, v->hosts, v->nhosts * sizeof(*list));
		cbv_free(v->hosts);
		v->hosts = list;
	}
	for (size_t i = 0; i < n && v->nhosts < CBV_HOSTS_MAX; i++)
		if (!denied_host(v, &hosts[i], 1))
			v->hosts[v->nhosts++] = hosts[i];
	return 0;
}

/* add_hosts() ran out of memory: our trouble, not the domain's. */
static void hosts_oom(struct cbv_verify *v)
{
	v->no_store = 1;
	synth(v, CBV_ERROR, CBV_R_PROTOCOL_ERROR, 451, "4.3.0", "out of memory for the host list");
	finish(v);
}

/*
 * An IP address as a host: "192.0.2.1", "2001:db8::1", or a domain
 * literal "[192.0.2.1]" / "[ipv6:2001:db8::1]" (RFC 5321 4.1.3).
 * Returns 0 and fills *h, or -1 if s is not one.
 */
static int ip_host(const char *s, struct cbv_host *h)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&h->addr;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&h->addr;
	char ip[CBV_DOMAIN_MAX + 1];
	size_t len = strlen(s);

	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", s);
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
		if (len > 5 && strncasecmp(s, "ipv6:", 5) == 0) {
			s += 5;
			len -= 5;
		}
	}
	if (len >= sizeof(ip))
		return -1;
	memcpy(ip, s, len);
	ip[len] = '\0';
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		h->addrlen = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		h->addrlen = sizeof(*s6);
		return 0;
	}
	return -1;
}

/* Records the first lookup failure as the verdict, in case no host is found. */
static void lookup_failed(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                          int code, const char *ecode, const char *what, const char *detail)
{
	if (v->lookup_error)
		return;
	v->lookup_error = 1;
	synth(v, vd, reason, code, ecode, "%s (%s)", what, detail);
}

static void start_phase(struct cbv_verify *v);

/* One lookup phase is over: start the next, or the hosts. */
static void next_phase(struct cbv_verify *v)
{
	cbv_dns_free(v->dns);
	v->dns = NULL;
	if (++v->phase < v->nphases) {
		start_phase(v);
		return;
	}
	if (v->nhosts == 0) {
		if (v->denied > 0)
			synth(v, CBV_ERROR, CBV_R_FORBIDDEN_TARGET, 550, "5.7.1",
			      "every mail exchanger address of %s is in deny_networks", v->shown);
		finish(v);
		return;
	}
	v->next_host = 0;
	start_next_host(v);
}

static void dns_done(struct cbv_verify *v)
{
	const struct cbv_host *hosts = NULL;
	const char *detail = NULL;
	size_t n = 0;
	enum cbv_dns_outcome out = cbv_dns_outcome(v->dns, &hosts, &n, &detail, NULL);
	char what[sizeof(v->shown) + 64];

	if (detail == NULL)
		detail = "";
	if (out == CBV_DNS_PENDING)
		return;
	if (out == CBV_DNS_OK) {
		if (add_hosts(v, hosts, n) != 0) {
			hosts_oom(v);
			return;
		}
	} else if (v->phase_host[v->phase]) {
		/* The host the caller named: not a fact about the address. */
		snprintf(what, sizeof(what), "host %s has no usable address", v->host);
		if (out == CBV_DNS_TEMP)
			lookup_failed(v, CBV_TRANSIENT, CBV_R_DNS_FAILURE, 451, "4.4.3", what, detail);
		else
			lookup_failed(v, CBV_ERROR, CBV_R_CONNECT_FAILED, 550, "5.4.4", what, detail);
	} else {
		switch (out) {
		case CBV_DNS_NXDOMAIN:
			/* Definitive whatever other hosts we were given. */
			v->lookup_error = 0;
			synth(v, CBV_FAIL, CBV_R_NO_DOMAIN, 550, "5.1.2", "domain %s does not exist",
			      v->shown);
			finish(v);
			return;
		case CBV_DNS_NULLMX:
			/* RFC 7505 4.2: 556 5.1.10 */
			v->lookup_error = 0;
			synth(v, CBV_FAIL, CBV_R_NULL_MX, 556, "5.1.10",
			      "domain %s accepts no mail (null MX)", v->shown);
			finish(v);
			return;
		case CBV_DNS_NOHOST:
			snprintf(what, sizeof(what), "domain %s has no mail exchanger and no address",
			         v->shown);
			lookup_failed(v, CBV_FAIL, CBV_R_NO_MAIL_HOST, 550, "5.1.2", what, detail);
			break;
		default:
			snprintf(what, sizeof(what), "DNS lookup for %s failed", v->shown);
			lookup_failed(v, CBV_TRANSIENT, CBV_R_DNS_FAILURE, 451, "4.4.3", what, detail);
			break;
		}
	}
	next_phase(v);
}

/* Starts finding the hosts of the current phase: the domain's, or the named host. */
static void start_phase(struct cbv_verify *v)
{
	int is_host = v->phase_host[v->phase];
	const char *name = is_host ? v->host : v->domain;
	struct cbv_host h;
	struct cbv_err err;
	struct cbv_dns_store ds;

	if (is_host ? ip_host(v->host, &h) == 0 : v->addr.literal) {
		if (!is_host && ip_host(v->domain, &h) != 0) {
			synth(v, CBV_FAIL, CBV_R_BAD_SYNTAX, 553, "5.1.3", "bad address literal");
			finish(v);
			return;
		}
		if (add_hosts(v, &h, 1) != 0) {
			hosts_oom(v);
			return;
		}
		next_phase(v);
		return;
	}
	v->state = VS_DNS;
	cbv_share_dns_store(v->p.cache_dns ? cache_handle(&v->p) : NULL, &ds);
	v->dns = cbv_dns_start(name, v->p.dns_servers, v->deadline_ms, is_host, &ds, &err);
	if (v->dns == NULL) {
		lookup_failed(v, CBV_TRANSIENT, CBV_R_DNS_FAILURE, 451, "4.4.3", "DNS", err.msg);
		next_phase(v);
		return;
	}
	dns_done(v); /* c-ares may answer at once */
}

/*
 * local@domain as it goes on the wire (domain NULL: a's own).  Domains are
 * A-labels (cbv_addr), and that is what we send unless the local part is
 * UTF-8: it needs SMTPUTF8 anyway (RFC 6531 3.3), so the address keeps its
 * Unicode domain too, when that fits the path limit.
 */
static enum cbv_status wire_address(const struct cbv_addr *a, const char *domain, char *buf,
                                    size_t n, struct cbv_err *err)
{
	char u[CBV_DOMAIN_MAX + 1];

	if (a->utf8 && cbv_addr_domain_utf8(domain != NULL ? domain : a->domain, u, sizeof(u)) &&
	    cbv_addr_format(a, u, buf, n, NULL) == CBV_OK)
		return CBV_OK;
	return cbv_addr_format(a, domain, buf, n, err);
}

/* Parses and maps; returns 0 to go on, -1 if finished (verdict set). */
static int prepare(struct cbv_verify *v, const char *address, const char *sender)
{
	struct cbv_err err;
	struct cbv_addr s;
	enum cbv_status st;

	st = cbv_addr_parse(address, strlen(address), &v->addr, &err);
	if (st == CBV_ENOMEM) {
		synth(v, CBV_TRANSIENT, CBV_R_TEMP_FAILURE, 451, "4.3.0", "out of memory");
		return -1;
	}
	if (st != CBV_OK) {
		synth(v, CBV_FAIL, CBV_R_BAD_SYNTAX, 553, "5.1.3", "bad address syntax: %s", err.msg);
		return -1;
	}
	if (sender[0] != '\0') {
		if (cbv_addr_parse(sender, strlen(sender), &s, &err) != CBV_OK) {
			synth(v, CBV_ERROR, CBV_R_BAD_SYNTAX, 553, "5.1.7", "bad sender address syntax: %s",
			      err.msg);
			return -1;
		}
		if (wire_address(&s, NULL, v->sender, sizeof(v->sender), &err) != CBV_OK) {
			synth(v, CBV_ERROR, CBV_R_BAD_SYNTAX, 553, "5.1.7", "bad sender address: %s", err.msg);
			return -1;
		}
		v->utf8 |= s.utf8;
	}
	v->utf8 |= v->addr.utf8;
	snprintf(v->domain, sizeof(v->domain), "%s", v->addr.domain);
	if (!v->addr.literal) {
		int m = cbv_map_lookup(v->p.map, v->addr.domain, v->domain);

		if (m < 0) {
			synth(v, CBV_TRANSIENT, CBV_R_TEMP_FAILURE, 451, "4.3.0", "out of memory in the map");
			return -1;
		}
		if (m > 0)
			cbv_log(CBV_LOG_DEBUG, "cbv: map: %s -> %s", v->addr.domain, v->domain);
	}
	cbv_addr_domain_show(v->domain, v->shown, sizeof(v->shown));
	if (wire_address(&v->addr, v->domain, v->rcpt, sizeof(v->rcpt), &err) != CBV_OK) {
		synth(v, CBV_FAIL, CBV_R_BAD_SYNTAX, 553, "5.1.3", "mapped address: %s", err.msg);
		return -1;
	}
	if (cbv_result_set(&v->res->rcpt, v->rcpt) != 0 ||
	    cbv_result_set(&v->res->sender, v->sender) != 0) {
		synth(v, CBV_TRANSIENT, CBV_R_TEMP_FAILURE, 451, "4.3.0", "out of memory");
		return -1;
	}
	return 0;
}

/* Decides the lookup phases from the request's host and mode; -1 if finished. */
static int plan(struct cbv_verify *v, const struct cbv_request *req)
{
	struct cbv_host h;
	struct cbv_err err;
	int have_host = req->host != NULL && req->host[0] != '\0' && req->mode != CBV_MODE_MXONLY;

	if (have_host) {
		/* A name we will resolve, or an IP address: nothing else reaches DNS. */
		if (ip_host(req->host, &h) == 0)
			snprintf(v->host, sizeof(v->host), "%s", req->host);
		else if (cbv_addr_check_domain(req->host, strlen(req->host), v->host, &err) != CBV_OK) {
			synth(v, CBV_ERROR, CBV_R_BAD_SYNTAX, 501, "5.5.4", "bad host: %s", err.msg);
			return -1;
		}
	}
	v->nphases = 0;
	if (have_host && (req->mode == CBV_MODE_HOSTFIRST || req->mode == CBV_MODE_HOSTONLY))
		v->phase_host[v->nphases++] = 1;
	if (req->mode != CBV_MODE_HOSTONLY)
		v->phase_host[v->nphases++] = 0;
	if (have_host && req->mode == CBV_MODE_MXFIRST)
		v->phase_host[v->nphases++] = 1;
	v->phase = 0;
	return 0;
}

/*
 * A hit: the stored result replaces ours whole (verdict, message, the last
 * poll of the original callout, its elapsed time), with cache = 1, its
 * age, and the request's own address and RCPT (a domain fact was learnt
 * at another local part of the domain; an address record has the same).
 */
static void answer_hit(struct cbv_verify *v, struct cbv_result *hit, unsigned long age)
{
	if (cbv_result_set(&hit->address, v->res->address) != 0 ||
	    cbv_result_set(&hit->rcpt, v->rcpt) != 0) {
		/* out of memory: the hit is no use; verify as if it were a miss */
		cbv_result_free(hit);
		return;
	}
	cbv_result_free(v->res);
	v->res = hit;
	hit->cache = 1;
	hit->age = age;
	hit->cache_use = CBV_CACHE_USE_HIT;
	finish(v);
}

/* Goes on to DNS, or holds there (a group member, to be grouped). */
static void proceed(struct cbv_verify *v)
{
	if (v->hold)
		v->state = VS_HOLD;
	else
		start_phase(v);
}

/* The domain caps' answer (v->call), then DNS.  Over a cap: transient/rate_limited. */
static void caps_done(struct cbv_verify *v)
{
	v->dslot = v->call.ticket;
	if (v->call.st == CBV_CACHE_LIMITED) {
		v->no_store = 1; /* no callout was made: nothing to remember */
		v->limited = v->call.which;
		synth(v, CBV_TRANSIENT, CBV_R_RATE_LIMITED, 451, "4.7.0",
		      "verification of %s deferred: %s reached", v->shown,
		      cbv_cache_limit_name(v->call.which));
		finish(v);
		return;
	}
	proceed(v);
}

/* The per-domain caps, then DNS.  Over a cap: transient/rate_limited, nothing sent. */
static void caps_step(struct cbv_verify *v)
{
	if (v->cache == NULL) {
		proceed(v);
		return;
	}
	if (cache_wait(v, cbv_cache_call_domain(v->cache, v->domain, &v->caps, &v->call), caps_done))
		caps_done(v);
}

/*
 * Single flight: one verification per key across every process.  BUSY:
 * wait (VS_FLIGHT, through the wake time; never sleeping) and ask again,
 * within our own deadline; READY: the other's answer is stored, look it
 * up.  OWN: ours to verify; OFF: verify without it.
 */
static void ready_done(struct cbv_verify *v);
static void flight_done(struct cbv_verify *v);

static void flight_step(struct cbv_verify *v)
{
	if (cache_wait(v, cbv_cache_call_flight(v->cache, &v->key, v->caps.lease_s, &v->call),
	               flight_done))
		flight_done(v);
}

/* The flight's answer (v->call). */
static void flight_done(struct cbv_verify *v)
{
	int64_t wake = v->call.wake_ms, now;

	v->flight = v->call.ticket;
	switch (v->call.st) {
	case CBV_CACHE_BUSY:
		now = cbv_now_ms();
		if (now >= v->deadline_ms) {
			v->no_store = 1;
			synth(v, CBV_TRANSIENT, CBV_R_TIMEOUT, 451, "4.4.7",
			      "overall deadline reached waiting for another verification of %s",
			      v->res->address);
			finish(v);
			return;
		}
		v->state = VS_FLIGHT;
		v->flight_wake = cbv_deadline_min(wake > now ? wake : now, now + FLIGHT_POLL_MS);
		v->flight_wake = cbv_deadline_min(v->flight_wake, v->deadline_ms);
		return;
	case CBV_CACHE_READY:
		/* refresh: a record exists, and we mean to replace it (no flight then) */
		if (!v->p.cache_refresh) {
			if (cache_wait(v, cbv_cache_call_lookup(v->cache, &v->key, &v->call), ready_done))
				ready_done(v);
			return;
		}
		break;
	default:
		break; /* OWN: ours (v->flight); OFF: without */
	}
	caps_step(v);
}

/* The lookup after READY (v->call): the other's answer, else on to the caps. */
static void ready_done(struct cbv_verify *v)
{
	struct cbv_result *hit = v->call.hit;

	v->call.hit = NULL;
	if (v->call.st == CBV_CACHE_HIT) {
		answer_hit(v, hit, v->call.age);
		if (v->state == VS_DONE)
			return;
	}
	caps_step(v);
}

/*
 * The lookup before DNS (after the address, the sender and the map are
 * known), then single flight and caps.  A cache that fails never fails
 * the verification: it runs uncached (cache_use off).
 */
/*
 * catchall_probe: a local part nobody can guess (so a hostile MX cannot
 * single it out and refuse it), cbv-probe-<16 hex> from getrandom(2), at
 * the domain we call out to.  Without randomness there is no probe.
 */
static void make_probe(struct cbv_verify *v)
{
	unsigned char r[8];

	v->probe[0] = '\0';
	if (!v->p.catchall_probe || v->addr.literal)
		return;
	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		cbv_log(CBV_LOG_WARN, "cbv: no randomness for the catch-all probe: %s",
		        strerror(errno));
		return;
	}
	snprintf(v->probe, sizeof(v->probe), "cbv-probe-%02x%02x%02x%02x%02x%02x%02x%02x@%s",
	         r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], v->domain);
	if (strlen(v->probe) > CBV_PATH_MAX)
		v->probe[0] = '\0'; /* over the path limit (RFC 5321 4.5.3.1.3): no probe */
}

static void lookup_done(struct cbv_verify *v);

static void cache_start(struct cbv_verify *v, enum cbv_host_mode mode)
{

	/* no domain record answered (else we stop at the lookup): probe if asked */
	make_probe(v);
	v->cache_asked = 1;
	v->cache = cache_handle(&v->p);
	if (v->cache != NULL && !key_build(v, mode)) {
		cbv_log(CBV_LOG_DEBUG, "cbv: %s: profile too large for a cache key; uncached",
		        v->res->address);
		v->cache = NULL;
	}
	if (v->cache == NULL) {
		proceed(v);
		return;
	}
	cbv_cache_ttl_defaults(&v->ttl);
	v->ttl.pass = v->p.cache_pass_ttl;
	v->ttl.fail = v->p.cache_fail_ttl;
	v->ttl.error = v->p.cache_error_ttl;
	v->ttl.transient = v->p.cache_transient_ttl;
	v->ttl.domain = v->p.cache_domain_ttl;
	v->ttl.unreachable = v->p.cache_unreachable_ttl;
	v->ttl.catchall = v->p.cache_catchall_ttl;
	v->caps.domain_concurrency = v->p.domain_max_concurrency;
	v->caps.rate_count = v->p.domain_max_rate.count;
	v->caps.rate_window_s = v->p.domain_max_rate.count == 0 ? 0
	                        : v->p.domain_max_rate.per_ms < 1000
	                            ? 1
	                            : v->p.domain_max_rate.per_ms / 1000;
	v->caps.host_concurrency = v->p.host_max_concurrency;
	v->caps.lease_s = v->p.timeout_ms / 1000 + LEASE_MARGIN_S;
	if (v->p.cache_refresh)
		v->call.st = cbv_cache_usable(v->cache) ? CBV_CACHE_MISS : CBV_CACHE_OFF;
	else if (!cache_wait(v, cbv_cache_call_lookup(v->cache, &v->key, &v->call), lookup_done))
		return;
	lookup_done(v);
}

/* The lookup's answer (v->call): a hit ends here, OFF runs uncached. */
static void lookup_done(struct cbv_verify *v)
{
	struct cbv_result *hit = v->call.hit;

	v->call.hit = NULL;
	if (v->call.st == CBV_CACHE_OFF) {
		v->cache = NULL;
		proceed(v);
		return;
	}
	v->res->cache_use = CBV_CACHE_USE_MISS;
	if (v->call.st == CBV_CACHE_HIT) {
		answer_hit(v, hit, v->call.age);
		if (v->state == VS_DONE)
			return;
	}
	flight_step(v);
}

/* cbv_verify_new(); hold = 1: a group member, stopping before DNS (VS_HOLD). */
static struct cbv_verify *verify_new(const struct cbv_profile *p, const struct cbv_request *req,
                                     int hold, struct cbv_err *err)
{
	struct cbv_verify *v;
	char clean[CBV_PATH_MAX * 2];
	const char *sender;

	if (req == NULL || req->address == NULL || p == NULL) {
		cbv_err_set(err, CBV_EINVAL, "no address to verify");
		return NULL;
	}
	if (req->mode == CBV_MODE_HOSTONLY && (req->host == NULL || req->host[0] == '\0')) {
		cbv_err_set(err, CBV_EINVAL, "mode hostonly requires a host");
		return NULL;
	}
	v = cbv_calloc(1, sizeof(*v));
	if (v == NULL) {
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	v->res = cbv_result_new();
	if (v->res == NULL) {
		cbv_free(v);
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	cbv_stats_begin(); /* in flight until finish() or cbv_verify_free() */
	cbv_profile_copy(&v->p, p);
	v->hold = hold;
	v->req.trace = req->trace;
	v->req.trace_arg = req->trace_arg;
	v->start_us = cbv_now_us();
	v->deadline_ms = cbv_now_ms() + (int64_t)v->p.timeout_ms;
	snprintf(v->helo, sizeof(v->helo), "%s",
	         v->p.helo[0] != '\0' ? v->p.helo
	                              : (req->default_helo != NULL && req->default_helo[0] != '\0'
	                                     ? req->default_helo
	                                     : "localhost"));
	sender = req->sender != NULL ? req->sender : v->p.mailfrom;
	cbv_sanitize(req->address, strnlen(req->address, sizeof(clean) - 1), clean, sizeof(clean));
	if (cbv_result_set(&v->res->address, clean) != 0) {
		cbv_verify_free(v);
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	cbv_sanitize(sender, strnlen(sender, sizeof(clean) - 1), clean, sizeof(clean));
	if (cbv_result_set(&v->res->sender, clean) != 0) {
		cbv_verify_free(v);
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	if (prepare(v, req->address, sender) != 0 || plan(v, req) != 0) {
		finish(v);
		return v;
	}
	cache_start(v, req->mode);
	return v;
}

struct cbv_verify *cbv_verify_new(const struct cbv_profile *p,
                                  const struct cbv_request *req,
                                  struct cbv_err *err)
{
	return verify_new(p, req, 0, err);
}

int cbv_verify_pollfds(struct cbv_verify *v, struct pollfd *fds, int max,
                       int64_t *wake_ms)
{
	int64_t wake = 0;
	int n = 0;

	switch (v->state) {
	case VS_DONE:
		return -1;
	case VS_HOLD:
	case VS_FOLLOW:
		break; /* its leader (or the group) moves it */
	case VS_FLIGHT:
		wake = v->flight_wake;
		break;
	case VS_CACHE:
		if (max > 0)
			n = cbv_cache_call_pollfd(&v->call, fds, &wake);
		else
			wake = cbv_now_ms() + 1;
		break;
	case VS_DNS:
		n = cbv_dns_pollfds(v->dns, fds, max, &wake);
		break;
	case VS_SESSION:
		n = max > 0 ? cbv_session_pollfd(v->sess, fds, &wake) : 0;
		break;
	}
	*wake_ms = cbv_deadline_min(wake, v->deadline_ms);
	return n;
}

void cbv_verify_process(struct cbv_verify *v, const struct pollfd *fds, int n)
{
	switch (v->state) {
	case VS_DONE:
	case VS_HOLD:
	case VS_FOLLOW:
		return; /* its leader (or the group) moves it */
	case VS_FLIGHT:
		if (cbv_now_ms() >= v->flight_wake)
			flight_step(v);
		break;
	case VS_CACHE:
		if (cbv_cache_call_process(&v->call)) {
			v->state = v->cache_back;
			v->cache_next(v);
		}
		break;
	case VS_DNS:
		cbv_dns_process(v->dns, fds, n);
		dns_done(v);
		break;
	case VS_SESSION:
		cbv_session_process(v->sess, n > 0 ? fds[0].revents : 0);
		if (cbv_session_done(v->sess))
			session_done(v);
		break;
	}
	/* Sessions and DNS keep the overall deadline themselves; this is the backstop. */
	if (v->state != VS_DONE && cbv_now_ms() >= v->deadline_ms + 1000) {
		synth(v, CBV_TRANSIENT, CBV_R_TIMEOUT, 451, "4.4.7", "overall deadline reached");
		finish(v);
	}
}

int cbv_verify_done(const struct cbv_verify *v)
{
	return v->state == VS_DONE;
}

struct cbv_result *cbv_verify_take_result(struct cbv_verify *v)
{
	struct cbv_result *r;

	if (v->state != VS_DONE || v->res_taken)
		return NULL;
	r = v->res;
	v->res = NULL;
	v->res_taken = 1;
	return r;
}

void cbv_verify_free(struct cbv_verify *v)
{
	if (v == NULL)
		return;
	if (v->state == VS_CACHE)
		cbv_cache_call_cancel(&v->call);
	if (v->state != VS_DONE) {
		cache_release(v); /* aborted: let the others go */
		cbv_stats_abort();
	}
	cbv_free(v->fp);
	cbv_session_free(v->sess);
	cbv_free(v->mux); /* after the session that traced through it */
	cbv_dns_free(v->dns);
	cbv_free(v->hosts);
	cbv_result_free(v->res);
	cbv_profile_clear(&v->p);
	cbv_free(v->group);
	cbv_free(v);
}

/*
 * One poll(2) of the synchronous drivers: waits on fds until wake_ms at
 * the latest (at most a minute), and marks every fd POLLERR if poll
 * fails, so the machine sees the failure instead of spinning.
 */
static void poll_until(struct pollfd *fds, int n, int64_t wake_ms)
{
	int64_t wait = wake_ms - cbv_now_ms();

	if (wait < 0)
		wait = 0;
	if (wait > 60000)
		wait = 60000;
	if (poll(fds, (nfds_t)n, (int)wait) < 0 && errno != EINTR) {
		for (int i = 0; i < n; i++)
			fds[i].revents = POLLERR;
	}
}

enum cbv_status cbv_verify(const struct cbv_profile *p,
                           const struct cbv_request *req,
                           struct cbv_result **out, struct cbv_err *err)
{
	struct pollfd fds[CBV_VERIFY_POLLFDS_MAX];
	struct cbv_verify *v;
	struct cbv_err local;

	*out = NULL;
	if (err == NULL)
		err = &local; /* the status says why, even without a message */
	v = cbv_verify_new(p, req, err);
	if (v == NULL)
		return err->code;
	while (!cbv_verify_done(v)) {
		int64_t wake = 0;
		int n = cbv_verify_pollfds(v, fds, CBV_VERIFY_POLLFDS_MAX, &wake);

		if (n < 0)
			break;
		poll_until(fds, n, wake);
		cbv_verify_process(v, fds, n);
	}
	*out = cbv_verify_take_result(v);
	cbv_verify_free(v);
	if (*out == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	return CBV_OK;
}

/* ---- groups: several addresses, one session per domain ---- */

struct cbv_verify_group {
	struct cbv_verify **m;       /* one machine per address, in order */
	size_t n;
	int *nfds;                   /* pollfds each member was given last */
};

/*
 * Members that may share sessions: the same SMTPUTF8 need, and the same
 * domain after the map, or (mode hostonly: no MX lookup) the same named
 * host, then without a catch-all probe (a probe is at one domain).
 */
static int same_target(const struct cbv_verify *a, const struct cbv_verify *b)
{
	int a_host = a->nphases == 1 && a->phase_host[0], b_host = b->nphases == 1 && b->phase_host[0];

	if (a->utf8 != b->utf8)
		return 0;
	if (strcmp(a->domain, b->domain) == 0)
		return 1;
	return a_host && b_host && strcmp(a->host, b->host) == 0 && a->probe[0] == '\0' &&
	       b->probe[0] == '\0';
}

/*
 * Starts the members held before DNS: each first one of a target
 * (same_target()) leads the others of its kind (at most CBV_RCPTS_MAX in
 * all).  Without memory for a group, members go alone.
 */
static void group_form(struct cbv_verify_group *g)
{
	for (size_t i = 0; i < g->n; i++) {
		struct cbv_verify *lead = g->m[i];

		if (lead->state != VS_HOLD)
			continue;
		lead->hold = 0;
		for (size_t j = i + 1; j < g->n && lead->ngroup < CBV_RCPTS_MAX - 1; j++) {
			struct cbv_verify *f = g->m[j];

			if (f->state != VS_HOLD || !same_target(lead, f))
				continue;
			if (lead->group == NULL) {
				lead->group = cbv_calloc(CBV_RCPTS_MAX - 1, sizeof(*lead->group));
				if (lead->group == NULL)
					break;
			}
			f->hold = 0;
			f->state = VS_FOLLOW;
			lead->group[lead->ngroup++] = f;
		}
		start_phase(lead);
	}
}

struct cbv_verify_group *cbv_verify_group_new(const struct cbv_profile *p,
                                              const struct cbv_request *req,
                                              const char *const *addresses, size_t n,
                                              struct cbv_err *err)
{
	struct cbv_verify_group *g;

	if (req == NULL || addresses == NULL || p == NULL || n == 0 || n > CBV_RCPTS_MAX) {
		cbv_err_set(err, CBV_EINVAL, "from 1 to %d addresses in a group", CBV_RCPTS_MAX);
		return NULL;
	}
	g = cbv_calloc(1, sizeof(*g));
	if (g == NULL || (g->m = cbv_calloc(n, sizeof(*g->m))) == NULL ||
	    (g->nfds = cbv_calloc(n, sizeof(*g->nfds))) == NULL) {
		cbv_verify_group_free(g);
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		struct cbv_request r = *req;

		r.address = addresses[i];
		if (req->trace_args != NULL)
			r.trace_arg = req->trace_args[i];
		g->m[i] = verify_new(p, &r, 1, err);
		if (g->m[i] == NULL) {
			cbv_verify_group_free(g);
			return NULL;
		}
		g->m[i]->trace_each = req->trace_args != NULL;
		g->n++;
	}
	group_form(g);
	return g;
}

int cbv_verify_group_pollfds(struct cbv_verify_group *g, struct pollfd *fds, int max,
                             int64_t *wake_ms)
{
	int used = 0, open = 0;
	int64_t wake = INT64_MAX;

	for (size_t i = 0; i < g->n; i++) {
		int64_t w = 0;
		int k = cbv_verify_pollfds(g->m[i], fds + used, max - used, &w);

		g->nfds[i] = k < 0 ? 0 : k;
		if (k < 0)
			continue;
		open = 1;
		used += k;
		if (g->m[i]->state != VS_FOLLOW)
			wake = cbv_deadline_min(wake, w);
	}
	*wake_ms = wake;
	return open ? used : -1;
}

void cbv_verify_group_process(struct cbv_verify_group *g, const struct pollfd *fds, int n)
{
	int used = 0;

	for (size_t i = 0; i < g->n && used <= n; i++) {
		cbv_verify_process(g->m[i], fds + used, g->nfds[i]);
		used += g->nfds[i];
		g->nfds[i] = 0;
	}
	group_form(g); /* members back from a single flight */
}

int cbv_verify_group_done(const struct cbv_verify_group *g)
{
	for (size_t i = 0; i < g->n; i++) {
		if (!cbv_verify_done(g->m[i]))
			return 0;
	}
	return 1;
}

struct cbv_result *cbv_verify_group_take_result(struct cbv_verify_group *g, size_t i)
{
	return i < g->n ? cbv_verify_take_result(g->m[i]) : NULL;
}

void cbv_verify_group_free(struct cbv_verify_group *g)
{
	if (g == NULL)
		return;
	/* leaders first (their sessions go), then the followers they pointed at */
	for (size_t i = 0; i < g->n; i++) {
		if (g->m[i]->state != VS_FOLLOW) {
			cbv_verify_free(g->m[i]);
			g->m[i] = NULL;
		}
	}
	for (size_t i = 0; i < g->n; i++)
		cbv_verify_free(g->m[i]);
	cbv_free(g->m);
	cbv_free(g->nfds);
	cbv_free(g);
}

enum cbv_status cbv_verify_multi(const struct cbv_profile *p, const struct cbv_request *req,
                                 const char *const *addresses, size_t n,
                                 struct cbv_result **out, struct cbv_err *err)
{
	struct cbv_verify_group *g;
	struct pollfd *fds;
	struct cbv_err local;
	enum cbv_status st = CBV_OK;
	int max = (int)n * CBV_VERIFY_POLLFDS_MAX;

	if (err == NULL)
		err = &local;
	for (size_t i = 0; out != NULL && i < n; i++)
		out[i] = NULL;
	if (out == NULL || n == 0 || n > CBV_RCPTS_MAX)
		return cbv_err_set(err, CBV_EINVAL, "from 1 to %d addresses in a group", CBV_RCPTS_MAX);
	fds = cbv_calloc((size_t)max, sizeof(*fds));
	if (fds == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	g = cbv_verify_group_new(p, req, addresses, n, err);
	if (g == NULL) {
		cbv_free(fds);
		return err->code;
	}
	while (!cbv_verify_group_done(g)) {
		int64_t wake = 0;
		int k = cbv_verify_group_pollfds(g, fds, max, &wake);

		if (k < 0)
			break;
		poll_until(fds, k, wake);
		cbv_verify_group_process(g, fds, k);
	}
	for (size_t i = 0; i < n; i++) {
		out[i] = cbv_verify_group_take_result(g, i);
		if (out[i] == NULL)
			st = CBV_ENOMEM;
	}
	cbv_verify_group_free(g);
	cbv_free(fds);
	if (st != CBV_OK) {
		for (size_t i = 0; i < n; i++) {
			cbv_result_free(out[i]);
			out[i] = NULL;
		}
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	}
	return CBV_OK;
}

enum cbv_status cbv_verify_preload(const struct cbv_profile *p, struct cbv_err *err)
{
	struct cbv_err e;

	if (p->starttls == CBV_STARTTLS_NEVER)
		return CBV_OK;
	if (cbv_tls_preload(p->tls_verify, p->ca_dir, &e) == 0)
		return CBV_OK;
	return cbv_err_set(err, e.code == CBV_ENOMEM ? CBV_ENOMEM : CBV_ETLS, "%s", e.msg);
}
