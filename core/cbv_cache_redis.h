/*
 * cbv_cache_redis.h - the Redis backend of the verification cache, for
 * fleets of MX hosts sharing one Redis.  Only cbv_cache.c calls it: the
 * public API stays cbv_cache.h, which dispatches here when the cache path
 * is "redis://HOST:PORT[/DB]" or "redis+unix:///PATH[?db=N]".
 *
 * Same records as the LMDB store (values are cbv_cache_rec encodings),
 * same meanings; Redis expiry (PX) does the lifetimes.  Keys, under a
 * prefix (default "cbv:"):
 *   P "A:" domain ":" hex(sha256)   address record      (string)
 *   P "D:" domain ":" hex(sha256)   domain fact         (string)
 *   P "F:" domain ":" hex(sha256)   single-flight lease (string: ticket)
 *   P "C:" domain                   domain concurrency  (zset ticket -> expiry)
 *   P "R:" domain                   domain rate bucket  (hash m, l)
 *   P "H:" ip                       host concurrency    (zset)
 *   P "T:" ip:port ":" hex(sha256)  TLS session blob    (string, PX)
 *   P "N:" name ":" hex(sha256)     DNS answer blob     (string, PX)
 * Leases, caps and the flight's compare-and-delete are Lua scripts
 * (EVALSHA, EVAL on NOSCRIPT) run on Redis's clock, so two hosts never
 * both take the last slot and their clocks need not agree.
 *
 * Never holds mail: one connection per handle and process, opened lazily
 * with cache_timeout for the connect and for each reply; any failure (down,
 * slow, refused AUTH, garbage) drops the connection, logs one line per
 * outage, and keeps the backend DOWN for a backoff (1 s doubling to 30 s)
 * during which calls return at once without touching the network.  The
 * caller (cbv_cache.c) then runs uncached or on the LMDB fallback.
 *
 * Two drivers carry the same commands (cbv_cache_redis_impl.h): this
 * synchronous one, and in a process that called cbv_cache_async_set(1)
 * (cbvd) a non-blocking one, pipelined on a connection of its own
 * (cbv_cache_redis_async.c); the store, flight end and releases then go
 * out without waiting, the lookups, flights and caps through
 * cbv_cache_async.h.
 */
#ifndef CBV_CACHE_REDIS_H
#define CBV_CACHE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "cbv_cache.h"
#include "cbv_stats.h"
#include "cbv_status.h"

/* The longest prefix, and the secret read from cache_password_file. */
#define CBV_REDIS_PREFIX_MAX 64
#define CBV_REDIS_SECRET_MAX 512
#define CBV_REDIS_TIMEOUT_DEFAULT_MS 100
#define CBV_REDIS_BACKOFF_MIN_MS 1000
#define CBV_REDIS_BACKOFF_MAX_MS 30000

/* A parsed cache URL. */
struct cbv_redis_url {
	int unix_socket; /* 1: path; 0: host and port */
	char host[256];  /* name or IP (brackets removed) */
	unsigned port;
	char path[108]; /* sun_path */
	unsigned db;    /* SELECT, 0..15 by default config; we allow 0..1023 */
};

/* 1 if s (len bytes) starts like a Redis URL ("redis://" or "redis+unix://"). */
int cbv_cache_redis_is_url(const char *s, size_t len);

/* Parses a Redis cache URL; CBV_EINVAL with err->msg when malformed. */
enum cbv_status cbv_cache_redis_url_parse(const char *s, size_t len, struct cbv_redis_url *u,
                                          struct cbv_err *err);

/*
 * Reads the AUTH secret from path into out (n bytes, NUL-terminated, one
 * trailing newline dropped).  Refuses anything but a regular file that
 * group and others cannot read or write, and symlinks.  CBV_OK, or
 * CBV_ECONFIG with err->msg (which never holds the secret).
 */
enum cbv_status cbv_cache_redis_read_secret(const char *path, char *out, size_t n,
                                            struct cbv_err *err);

struct cbv_cache_redis;

/* A new handle for url (nothing connected); NULL on ENOMEM or a bad URL. */
struct cbv_cache_redis *cbv_cache_redis_new(const char *url);
void cbv_cache_redis_free(struct cbv_cache_redis *r);

/* Options; 0 or -1 (ENOMEM, prefix too long).  NULL/"" fields keep defaults. */
int cbv_cache_redis_configure(struct cbv_cache_redis *r, unsigned timeout_ms,
                              const char *prefix, const char *password_file);

/* 1 if connected (connecting if due), 0 if down. */
int cbv_cache_redis_usable(struct cbv_cache_redis *r);

/*
 * The operations of cbv_cache.h, with the caller's wall clock now (ms) for
 * what records hold.  They answer CBV_CACHE_OFF when Redis is down (the
 * caller may fall back), and the same statuses as the LMDB store
 * otherwise.  Maintenance returns -1 when down.  A lookup HIT copies the
 * value into buf (cap >= CBV_CACHE_REC_MAX) and *rec points into it.
 */
enum cbv_cache_status cbv_cache_redis_lookup(struct cbv_cache_redis *r, int64_t now,
                                             const struct cbv_cache_key *k,
                                             unsigned char *buf, size_t cap,
                                             struct cbv_cache_rec *rec);
enum cbv_cache_status cbv_cache_redis_store(struct cbv_cache_redis *r,
                                            const struct cbv_cache_key *k,
                                            const unsigned char *aval, size_t alen,
                                            unsigned attl, const unsigned char *dval,
                                            size_t dlen, unsigned dttl, uint64_t ticket);
enum cbv_cache_status cbv_cache_redis_flight_begin(struct cbv_cache_redis *r, int64_t now,
                                                   const struct cbv_cache_key *k,
                                                   unsigned lease_s, uint64_t *ticket,
                                                   int64_t *wake_ms);
void cbv_cache_redis_flight_end(struct cbv_cache_redis *r, const struct cbv_cache_key *k,
                                uint64_t ticket);
enum cbv_cache_status cbv_cache_redis_acquire(struct cbv_cache_redis *r, int64_t now,
                                              char kind, const char *name, unsigned max,
                                              unsigned rate_count, unsigned rate_window_s,
                                              unsigned lease_s, uint64_t *ticket,
                                              int64_t *wake_ms, enum cbv_cache_limit *which);
void cbv_cache_redis_release(struct cbv_cache_redis *r, char kind, const char *name,
                             uint64_t ticket);
long cbv_cache_redis_each(struct cbv_cache_redis *r, int64_t now, const char *domain,
                          cbv_cache_each_fn *fn, void *arg);
long cbv_cache_redis_forget(struct cbv_cache_redis *r, const char *domain, const char *local);
int cbv_cache_redis_stats(struct cbv_cache_redis *r, int64_t now, struct cbv_cache_stats *st);

/*
 * Counters (cbv_stats.h) in the hash P "S": adds each field (and "o",
 * outages, when not 0) with HINCRBY, each behind CLIENT REPLY SKIP, in
 * one send and without waiting for anything (the handle's first time: and
 * an awaited PING; a server refusing CLIENT REPLY is logged once and sent
 * no counters again).  0, or -1 when down or refused.
 */
int cbv_cache_redis_count(struct cbv_cache_redis *r, const struct cbv_stats_field *f, size_t n,
                          uint64_t outages);
/* Adds the hash's fields to *st.  0, or -1 when down. */
int cbv_cache_redis_counters(struct cbv_cache_redis *r, struct cbv_stats *st);

/*
 * Blobs (cbv_cache_blob_*): kb is the binary key of cbv_cache_blob_key(),
 * stored as P kind ":" label ":" hex.  get copies the raw value into buf
 * (HIT, *len) for the caller to check; a value larger than cap is a MISS.
 * put keeps the value for ttl_ms (Redis PX).
 */
enum cbv_cache_status cbv_cache_redis_blob_get(struct cbv_cache_redis *r,
                                               const unsigned char *kb, size_t klen,
                                               unsigned char *buf, size_t cap, size_t *len);
enum cbv_cache_status cbv_cache_redis_blob_put(struct cbv_cache_redis *r,
                                               const unsigned char *kb, size_t klen,
                                               const unsigned char *val, size_t vlen,
                                               uint64_t ttl_ms);
enum cbv_cache_status cbv_cache_redis_blob_del(struct cbv_cache_redis *r,
                                               const unsigned char *kb, size_t klen);

/* 1 if ticket was made by this backend (its top bit is set). */
static inline int cbv_cache_redis_ticket(uint64_t ticket)
{
	return (ticket >> 63) != 0;
}

#endif
