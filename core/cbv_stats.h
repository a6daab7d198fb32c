/*
 * cbv_stats.h - counters for operators: how many verifications ended, with
 * which verdict and reason, how the cache answered, how many calls a cap
 * turned away, Redis outages, verifications in flight and how long they
 * took.  One process-wide set (cbv_stats_global()), fed from one place in
 * core (cbv_verify.c's finish(), through cbv_stats_end()); no threads in
 * core, so plain integers.
 *
 * Two consumers.  cbvd serves the process's set over HTTP in Prometheus
 * text exposition format 0.0.4 (cbv_stats_render()).  cbv.so processes
 * live for one SMTP connection, so their counters would die with them:
 * each verification's increments also go to the cache store as named
 * fields (cbv_stats_fields(); cbv_cache_count() writes them), and
 * `cbv cache stats` reads them back (cbv_stats_field_add()) and renders
 * the same text.  Field names are the store's format: words, never
 * enum values, so a renumbered enum never changes what a field means.
 * One field per kind of verification end, so that a verification costs
 * the store two increments, not six:
 *
 *   e:STATUS:REASON:BACKEND:LOOKUP:CAP:LE   verifications that ended so
 *        (LOOKUP "-" when the cache was not asked, CAP "-" when no cap
 *        refused it, LE the histogram bucket as rendered, or +Inf)
 *   hs   sum of durations, microseconds        o   Redis outages
 */
#ifndef CBV_STATS_H
#define CBV_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "cbv_result.h"

/* Latency histogram upper bounds, microseconds (SMTP scale: 5 ms .. 60 s). */
#define CBV_STATS_BUCKETS 13
/* Fields one verification adds to the store, at most. */
#define CBV_STATS_FIELDS_MAX 3
/* The longest field name (the "e:" one is at most about 75 bytes). */
#define CBV_STATS_FIELD_MAX 96
/* A rendering never needs more (every series of every family). */
#define CBV_STATS_TEXT_MAX 65536

enum cbv_stats_backend { CBV_STATS_NONE,
	                 CBV_STATS_LMDB,
	                 CBV_STATS_REDIS,
	                 CBV_STATS_BACKENDS };

/* What the cache said to the lookup before DNS. */
enum cbv_stats_lookup {
	CBV_STATS_NOT_ASKED = -1, /* the verification ended before it (bad syntax, ...) */
	CBV_STATS_HIT,
	CBV_STATS_MISS,  /* also: no cache configured (backend none) */
	CBV_STATS_ERROR, /* a cache is configured but was unusable */
	CBV_STATS_LOOKUPS
};

/* Which cap turned a call away; the words are the config keys. */
enum cbv_stats_cap {
	CBV_STATS_CAP_NONE = -1,
	CBV_STATS_CAP_RATE,        /* domain_max_rate */
	CBV_STATS_CAP_CONCURRENCY, /* domain_max_concurrency */
	CBV_STATS_CAP_HOST,        /* host_max_concurrency */
	CBV_STATS_CAPS
};

/* One verification's end. */
struct cbv_stats_event {
	enum cbv_verdict verdict;
	enum cbv_reason reason;
	enum cbv_stats_backend backend;
	enum cbv_stats_lookup lookup;
	enum cbv_stats_cap cap;
	uint64_t duration_us;
};

struct cbv_stats {
	uint64_t verifications[CBV_ERROR + 1][CBV_R_COUNT];
	uint64_t cache[CBV_STATS_BACKENDS][CBV_STATS_LOOKUPS];
	uint64_t limited[CBV_STATS_CAPS];
	uint64_t redis_outages;
	uint64_t bucket[CBV_STATS_BUCKETS + 1]; /* per bucket, last = +Inf; not cumulative */
	uint64_t sum_us;
	int64_t in_flight;
};

/* The process's counters. */
struct cbv_stats *cbv_stats_global(void);

/* A verification starts (in flight +1). */
void cbv_stats_begin(void);

/* A verification ends: in flight -1, and ev counted into the process's set. */
void cbv_stats_end(const struct cbv_stats_event *ev);

/* A verification is freed before it ended (aborted): in flight -1 only. */
void cbv_stats_abort(void);

/* One Redis outage began (cbv_cache_redis.c logs its one line there). */
void cbv_stats_redis_outage(void);

/* Adds ev to st (no in-flight change). */
void cbv_stats_add(struct cbv_stats *st, const struct cbv_stats_event *ev);

/* "none", "lmdb", "redis"; "hit", "miss", "error"; the cap's config key. */
const char *cbv_stats_backend_name(enum cbv_stats_backend b);
const char *cbv_stats_lookup_name(enum cbv_stats_lookup l);
const char *cbv_stats_cap_name(enum cbv_stats_cap c);

/* The bucket ev's duration falls in: 0 .. CBV_STATS_BUCKETS (+Inf). */
size_t cbv_stats_bucket(uint64_t duration_us);

/* Upper bound of bucket i as rendered ("0.005", ..., "60", "+Inf"). */
const char *cbv_stats_bucket_le(size_t i);

/* A store field and how much to add to it. */
struct cbv_stats_field {
	char name[CBV_STATS_FIELD_MAX];
	uint64_t add;
};

/*
 * The store fields ev adds to (at most CBV_STATS_FIELDS_MAX, into f),
 * plus "o" with the Redis outages this process saw and has not yet put
 * in a store (outages_pending; 0 = none).  Returns the count.
 */
size_t cbv_stats_fields(const struct cbv_stats_event *ev, uint64_t outages_pending,
                        struct cbv_stats_field *f);

/* Outages this process saw that no store has counted yet. */
uint64_t cbv_stats_outages_pending(void);

/* n of them are now in a store. */
void cbv_stats_outages_stored(uint64_t n);

/*
 * Adds value to the counter a store field names (name is name_len bytes,
 * not NUL-terminated).  0, or -1 for a name this version does not know
 * (ignored: a newer version's field).
 */
int cbv_stats_field_add(struct cbv_stats *st, const char *name, size_t name_len,
                        uint64_t value);

/* What the rendering says besides the counters. */
struct cbv_stats_info {
	const char *prefix;   /* metric name prefix: "cbv" (cbvd) */
	const char *version;  /* PROGRAM_build_info{version=...}; NULL: none */
	const char *program;  /* its name prefix, a metric name ("cbvd"); NULL: none */
	int64_t start_time_s; /* process_start_time_seconds; 0: not rendered */
	int in_flight;        /* 1: render the in-flight gauge (a live process) */
};

/*
 * Renders st as Prometheus text exposition format 0.0.4 into out (cap
 * bytes, NUL-terminated): # HELP and # TYPE lines, counters with _total,
 * the histogram's cumulative _bucket{le=...}, _sum (seconds) and _count.
 * Verification series with a zero count are left out (the status and
 * reason pairs that happen are few); the others are all there.  Returns
 * the length the whole text needs (as snprintf: out is complete if it is
 * below cap); never above CBV_STATS_TEXT_MAX.
 */
size_t cbv_stats_render(const struct cbv_stats *st, const struct cbv_stats_info *info,
                        char *out, size_t cap);

/*
 * Escapes a label value (backslash, double quote, newline) into out (cap
 * bytes, NUL-terminated, truncated on a character boundary).  Returns out.
 */
char *cbv_stats_escape(const char *s, char *out, size_t cap);

#endif
