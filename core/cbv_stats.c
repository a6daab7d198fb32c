/*
 * cbv_stats.c - the process's counters, their store fields and the
 * Prometheus text rendering (cbv_stats.h).
 */
#include "cbv_stats.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static struct cbv_stats global;
static uint64_t outages_in_store; /* of global.redis_outages, counted in a store */

/* Bucket upper bounds in microseconds and as rendered; the +Inf one last. */
static const uint64_t bounds_us[CBV_STATS_BUCKETS] = {
	5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 30000000, 60000000
};
static const char *const bounds_le[CBV_STATS_BUCKETS + 1] = {
	"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
	"1", "2.5", "5", "10", "30", "60", "+Inf"
};
static const char *const backend_names[CBV_STATS_BACKENDS] = { "none", "lmdb", "redis" };
static const char *const lookup_names[CBV_STATS_LOOKUPS] = { "hit", "miss", "error" };
static const char *const cap_names[CBV_STATS_CAPS] = { "domain_max_rate",
	                                               "domain_max_concurrency",
	                                               "host_max_concurrency" };
static const enum cbv_verdict verdicts[] = { CBV_PASS, CBV_FAIL, CBV_TRANSIENT, CBV_ERROR };

struct cbv_stats *cbv_stats_global(void)
{
	return &global;
}

void cbv_stats_begin(void)
{
	global.in_flight++;
}

void cbv_stats_abort(void)
{
	if (global.in_flight > 0)
		global.in_flight--;
}

void cbv_stats_end(const struct cbv_stats_event *ev)
{
	cbv_stats_abort();
	cbv_stats_add(&global, ev);
}

void cbv_stats_redis_outage(void)
{
	global.redis_outages++;
}

uint64_t cbv_stats_outages_pending(void)
{
	return global.redis_outages - outages_in_store;
}

void cbv_stats_outages_stored(uint64_t n)
{
	outages_in_store += n;
	if (outages_in_store > global.redis_outages)
		outages_in_store = global.redis_outages;
}

size_t cbv_stats_bucket(uint64_t duration_us)
{
	size_t i = 0;

	while (i < CBV_STATS_BUCKETS && duration_us > bounds_us[i])
		i++;
	return i;
}

const char *cbv_stats_bucket_le(size_t i)
{
	return i <= CBV_STATS_BUCKETS ? bounds_le[i] : "+Inf";
}

const char *cbv_stats_backend_name(enum cbv_stats_backend b)
{
	return (unsigned)b < CBV_STATS_BACKENDS ? backend_names[b] : "none";
}

const char *cbv_stats_lookup_name(enum cbv_stats_lookup l)
{
	return l >= 0 && l < CBV_STATS_LOOKUPS ? lookup_names[l] : "none";
}

const char *cbv_stats_cap_name(enum cbv_stats_cap c)
{
	return c >= 0 && c < CBV_STATS_CAPS ? cap_names[c] : "none";
}

/* 1 if ev's enums are in range (a caller's bug otherwise: count nothing). */
static int event_ok(const struct cbv_stats_event *ev)
{
	return (unsigned)ev->verdict <= CBV_ERROR && (unsigned)ev->reason < CBV_R_COUNT &&
	       (unsigned)ev->backend < CBV_STATS_BACKENDS && ev->lookup < CBV_STATS_LOOKUPS &&
	       ev->cap < CBV_STATS_CAPS;
}

void cbv_stats_add(struct cbv_stats *st, const struct cbv_stats_event *ev)
{
	if (!event_ok(ev))
		return;
	st->verifications[ev->verdict][ev->reason]++;
	if (ev->lookup >= 0)
		st->cache[ev->backend][ev->lookup]++;
	if (ev->cap >= 0)
		st->limited[ev->cap]++;
	st->bucket[cbv_stats_bucket(ev->duration_us)]++;
	st->sum_us += ev->duration_us;
}

size_t cbv_stats_fields(const struct cbv_stats_event *ev, uint64_t outages_pending,
                        struct cbv_stats_field *f)
{
	size_t n = 0;

	if (!event_ok(ev))
		return 0;
	snprintf(f[n].name, sizeof(f[n].name), "e:%s:%s:%s:%s:%s:%s", cbv_verdict_name(ev->verdict),
	         cbv_reason_name(ev->reason), backend_names[ev->backend],
	         ev->lookup >= 0 ? lookup_names[ev->lookup] : "-",
	         ev->cap >= 0 ? cap_names[ev->cap] : "-", bounds_le[cbv_stats_bucket(ev->duration_us)]);
	f[n++].add = 1;
	snprintf(f[n].name, sizeof(f[n].name), "hs");
	f[n++].add = ev->duration_us;
	if (outages_pending > 0) {
		snprintf(f[n].name, sizeof(f[n].name), "o");
		f[n++].add = outages_pending;
	}
	return n;
}

/* The index of the word (w, wl bytes) in names[n], or -1; "-" is none (-2) if dash. */
static int word_index(const char *const *names, int n, const char *w, size_t wl, int dash)
{
	if (dash && wl == 1 && w[0] == '-')
		return -2;
	for (int i = 0; i < n; i++)
		if (strlen(names[i]) == wl && memcmp(names[i], w, wl) == 0)
			return i;
	return -1;
}

int cbv_stats_field_add(struct cbv_stats *st, const char *name, size_t len, uint64_t value)
{
	static const char *const vnames[] = { "pass", "fail", "transient", "error" };
	const char *part[6];
	size_t plen[6], np = 0;
	char reason[CBV_STATS_FIELD_MAX];
	int v, r, b, l, c, h;

	if (len == 1 && name[0] == 'o') {
		st->redis_outages += value;
		return 0;
	}
	if (len == 2 && memcmp(name, "hs", 2) == 0) {
		st->sum_us += value;
		return 0;
	}
	if (len < 2 || memcmp(name, "e:", 2) != 0)
		return -1;
	/* six words after "e:", split at ':' */
	for (size_t i = 2, s = 2; i <= len; i++) {
		if (i == len || name[i] == ':') {
			if (np == 6)
				return -1;
			part[np] = name + s;
			plen[np++] = i - s;
			s = i + 1;
		}
	}
	if (np != 6 || plen[1] >= sizeof(reason))
		return -1;
	memcpy(reason, part[1], plen[1]);
	reason[plen[1]] = '\0';
	v = word_index(vnames, 4, part[0], plen[0], 0);
	r = cbv_reason_parse(reason);
	b = word_index(backend_names, CBV_STATS_BACKENDS, part[2], plen[2], 0);
	l = word_index(lookup_names, CBV_STATS_LOOKUPS, part[3], plen[3], 1);
	c = word_index(cap_names, CBV_STATS_CAPS, part[4], plen[4], 1);
	h = word_index(bounds_le, CBV_STATS_BUCKETS + 1, part[5], plen[5], 0);
	if (v < 0 || r < 0 || b < 0 || l == -1 || c == -1 || h < 0)
		return -1;
	st->verifications[verdicts[v]][r] += value;
	if (l >= 0)
		st->cache[b][l] += value;
	if (c >= 0)
		st->limited[c] += value;
	st->bucket[h] += value;
	return 0;
}

char *cbv_stats_escape(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return out;
	for (; *s != '\0'; s++) {
		const char *rep = *s == '\\' ? "\\\\" : *s == '"' ? "\\\""
		                                : *s == '\n'      ? "\\n"
		                                                  : NULL;
		size_t rl = rep != NULL ? 2 : 1;

		if (o + rl >= cap)
			break;
		if (rep != NULL)
			memcpy(out + o, rep, 2);
		else
			out[o] = *s;
		o += rl;
	}
	out[o] = '\0';
	return out;
}

/* The text being rendered: snprintf semantics over the whole of it. */
struct text {
	char *out;
	size_t cap, len;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(t->len < t->cap ? t->out + t->len : NULL,
	              t->len < t->cap ? t->cap - t->len : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n;
}

static void family(struct text *t, const char *p, const char *name, const char *type,
                   const char *help)
{
	put(t, "# HELP %s_%s %s\n# TYPE %s_%s %s\n", p, name, help, p, name, type);
}

size_t cbv_stats_render(const struct cbv_stats *st, const struct cbv_stats_info *info,
                        char *out, size_t cap)
{
	const char *p = info->prefix != NULL && info->prefix[0] != '\0' ? info->prefix : "cbv";
	struct text t = { out, cap, 0 };
	char ver[128], prog[64];
	uint64_t acc = 0;

	if (cap > 0)
		out[0] = '\0';
	if (info->version != NULL && info->program != NULL) {
		cbv_stats_escape(info->program, prog, sizeof(prog));
		family(&t, prog, "build_info", "gauge", "Version of the program serving these metrics.");
		put(&t, "%s_build_info{version=\"%s\"} 1\n", prog,
		    cbv_stats_escape(info->version, ver, sizeof(ver)));
	}
	if (info->start_time_s > 0) {
		family(&t, "process", "start_time_seconds", "gauge",
		       "Start time of the process since the Unix epoch, in seconds.");
		put(&t, "process_start_time_seconds %" PRId64 "\n", info->start_time_s);
	}
	family(&t, p, "verifications_total", "counter",
	       "Verifications ended, by verdict (status) and reason word.");
	for (size_t i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++)
		for (int r = 0; r < CBV_R_COUNT; r++)
			if (st->verifications[verdicts[i]][r] > 0)
				put(&t, "%s_verifications_total{status=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				    p, cbv_verdict_name(verdicts[i]), cbv_reason_name((enum cbv_reason)r),
				    st->verifications[verdicts[i]][r]);
	family(&t, p, "cache_requests_total", "counter",
	       "Cache lookups before DNS, by backend (none: no cache) and result.");
	for (int b = 0; b < CBV_STATS_BACKENDS; b++)
		for (int l = 0; l < CBV_STATS_LOOKUPS; l++)
			put(&t, "%s_cache_requests_total{backend=\"%s\",result=\"%s\"} %" PRIu64 "\n", p,
			    backend_names[b], lookup_names[l], st->cache[b][l]);
	family(&t, p, "rate_limited_total", "counter",
	       "Verifications answered transient/rate_limited without a callout, by cap.");
	for (int c = 0; c < CBV_STATS_CAPS; c++)
		put(&t, "%s_rate_limited_total{cap=\"%s\"} %" PRIu64 "\n", p, cap_names[c],
		    st->limited[c]);
	family(&t, p, "redis_outages_total", "counter",
	       "Redis outages begun (each logged once), while the cache ran without it.");
	put(&t, "%s_redis_outages_total %" PRIu64 "\n", p, st->redis_outages);
	if (info->in_flight) {
		family(&t, p, "in_flight", "gauge", "Verifications running now.");
		put(&t, "%s_in_flight %" PRId64 "\n", p, st->in_flight);
	}
	family(&t, p, "verification_duration_seconds", "histogram",
	       "Wall time of each verification, cache hits included.");
	for (size_t i = 0; i <= CBV_STATS_BUCKETS; i++) {
		acc += st->bucket[i];
		put(&t, "%s_verification_duration_seconds_bucket{le=\"%s\"} %" PRIu64 "\n", p,
		    bounds_le[i], acc);
	}
	put(&t, "%s_verification_duration_seconds_sum %" PRIu64 ".%06" PRIu64 "\n", p,
	    st->sum_us / 1000000, st->sum_us % 1000000);
	put(&t, "%s_verification_duration_seconds_count %" PRIu64 "\n", p, acc);
	return t.len;
}
