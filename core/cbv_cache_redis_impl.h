/*
 * cbv_cache_redis_impl.h - what the Redis backend's two drivers share:
 * the synchronous one (cbv_cache_redis.c: one command, then its reply,
 * under poll(2), for cbv.so and the cbv tool) and the non-blocking one
 * (cbv_cache_redis_async.c: commands pipelined on one connection per
 * handle, replies matched in order, driven by the caller's poll loop, for
 * cbvd).  The protocol - keys, scripts, arguments, what a reply means -
 * exists once, in cbv_cache_redis.c: an operation is built into a struct
 * cbv_redis_cmd and its reply read by a cbv_cache_redis_read_*()
 * function, whichever driver carries it.  Private to the Redis backend.
 */
#ifndef CBV_CACHE_REDIS_IMPL_H
#define CBV_CACHE_REDIS_IMPL_H

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/types.h>

#include "cbv_cache_redis.h"

/* Keys: prefix, kind, ':', domain, ':', 64 hex digits. */
#define CBV_REDIS_KEY_MAX (CBV_REDIS_PREFIX_MAX + 2 + CBV_DOMAIN_MAX + 1 + 64 + 1)
/* Arguments of one operation's command, at most. */
#define CBV_REDIS_ARGS_MAX 11

struct cbv_redis_async; /* cbv_cache_redis_async.c */

struct cbv_cache_redis {
	char *url;
	struct cbv_redis_url u;
	char prefix[CBV_REDIS_PREFIX_MAX + 1];
	char *password_file;
	unsigned timeout_ms;
	redisContext *ctx; /* connected in process pid, else NULL */
	pid_t pid;
	int down;         /* in an outage: logged, retry at retry_ms */
	int64_t retry_ms; /* monotonic */
	int64_t backoff_ms;
	int logged_damaged;
	uint32_t serial;
	unsigned long used;            /* commands answered on this connection */
	struct cbv_redis_async *async; /* the non-blocking connection, NULL until used */
	int skip_ok; /* CLIENT REPLY SKIP: 0 untried, 1 works, -1 refused (no counters) */
};

/* The Lua scripts, by number (0: a plain command). */
enum cbv_redis_script { CBV_RS_NONE,
	                CBV_RS_FLIGHT,
	                CBV_RS_STORE,
	                CBV_RS_UNLOCK,
	                CBV_RS_CAPS,
	                CBV_RS_COUNT };

/*
 * One operation as a command.  argv[2..argc) are filled by a builder,
 * pointing into the struct's own storage (and, for a store, into the
 * caller's values); with a script, argv[0..1] are "EVALSHA" and its SHA-1
 * or "EVAL" and its source, set by the driver.  ticket: what a flight or
 * a slot would be held under; lease: the key that holds it.
 */
struct cbv_redis_cmd {
	int argc;
	enum cbv_redis_script script;
	const char *argv[CBV_REDIS_ARGS_MAX];
	size_t lens[CBV_REDIS_ARGS_MAX];
	char k[3][CBV_REDIS_KEY_MAX];
	char n[5][24];
	uint64_t ticket;
	int lease; /* index in k of the lease key, -1: none */
};

/* Builders: 1, or 0 if a key is out of bounds (the operation is OFF). */
int cbv_cache_redis_build_lookup(const struct cbv_cache_redis *r, const struct cbv_cache_key *k,
                                 struct cbv_redis_cmd *c);
int cbv_cache_redis_build_store(const struct cbv_cache_redis *r, const struct cbv_cache_key *k,
                                const unsigned char *aval, size_t alen, unsigned attl,
                                const unsigned char *dval, size_t dlen, unsigned dttl,
                                uint64_t ticket, struct cbv_redis_cmd *c);
int cbv_cache_redis_build_flight(struct cbv_cache_redis *r, const struct cbv_cache_key *k,
                                 unsigned lease_s, struct cbv_redis_cmd *c);
/* Ends the flight held in lease key kf (as built) under ticket. */
int cbv_cache_redis_build_unlock(const char *kf, uint64_t ticket, struct cbv_redis_cmd *c);
int cbv_cache_redis_build_acquire(struct cbv_cache_redis *r, char kind, const char *name,
                                  unsigned max, unsigned rate_count, unsigned rate_window_s,
                                  unsigned lease_s, struct cbv_redis_cmd *c);
/* Gives back the slot held in lease key kc (as built) under ticket. */
int cbv_cache_redis_build_release(const char *kc, uint64_t ticket, struct cbv_redis_cmd *c);

/*
 * Readers: what reply rep (NULL: an error reply, already logged) means, on
 * the caller's wall clock now.  *why is set when the reply breaks the
 * protocol: the caller's driver then starts an outage with that text.
 */
enum cbv_cache_status cbv_cache_redis_read_lookup(struct cbv_cache_redis *r, int64_t now,
                                                  const redisReply *rep, unsigned char *buf,
                                                  size_t cap, struct cbv_cache_rec *rec,
                                                  const char **why);
enum cbv_cache_status cbv_cache_redis_read_flight(const redisReply *rep, int64_t now,
                                                  uint64_t offered, unsigned lease_s,
                                                  uint64_t *ticket, int64_t *wake_ms);
enum cbv_cache_status cbv_cache_redis_read_acquire(const redisReply *rep, int64_t now, char kind,
                                                   uint64_t offered, uint64_t *ticket,
                                                   int64_t *wake_ms, enum cbv_cache_limit *which);

/* A script's source, and its SHA-1 as Redis named it ("" until known). */
const char *cbv_cache_redis_script_src(enum cbv_redis_script s);
const char *cbv_cache_redis_script_sha(enum cbv_redis_script s);
/* Takes rep (an answer to SCRIPT LOAD of s) as s's SHA-1 if it is one. */
void cbv_cache_redis_script_learn(enum cbv_redis_script s, const redisReply *rep);

/* Drops the synchronous connection and starts or continues an outage (logged once). */
void cbv_cache_redis_outage(struct cbv_cache_redis *r, const char *what);
/* An outage is over: logged once, backoff reset. */
void cbv_cache_redis_reachable(struct cbv_cache_redis *r);
/* Logs a per-key problem once per process (not an outage). */
void cbv_cache_redis_damaged(struct cbv_cache_redis *r, const char *what);

/* ---- from cbv_cache.c, for the non-blocking calls (cbv_cache_async.c) ---- */

/* A lookup's record as the result it answers (HIT), as cbv_cache_lookup() does. */
enum cbv_cache_status cbv_cache_hit_of(struct cbv_cache *c, const struct cbv_cache_rec *rec,
                                       int64_t now, struct cbv_result **out,
                                       unsigned long *age_s);
/* c's Redis backend, NULL if c is not one; its LMDB fallback (NULL: none). */
struct cbv_cache_redis *cbv_cache_redis_of(struct cbv_cache *c);
struct cbv_cache *cbv_cache_fallback_of(struct cbv_cache *c);
/* c's wall clock (ms), injected by tests. */
int64_t cbv_cache_now(const struct cbv_cache *c);
/* 1 if k can be cached (fields within bounds). */
int cbv_cache_key_valid(const struct cbv_cache_key *k);
/* The rate cap asked with a slot of kind ('C', 'H') and max; *none = 1: no cap at all. */
unsigned cbv_cache_slot_rate(char kind, unsigned max, const struct cbv_cache_caps *caps,
                             int *none);

/* ---- the non-blocking driver (cbv_cache_redis_async.c) ---- */

/* 1 if this process drives Redis without blocking (cbv_cache_async_set()). */
int cbv_cache_redis_async_on(void);

/* What a reply completes (enum in cbv_cache_redis_async.c's order). */
enum cbv_redis_wait { CBV_RW_LOOKUP,
	              CBV_RW_FLIGHT,
	              CBV_RW_ACQUIRE,
	              CBV_RW_FIRE };

struct cbv_cache_call;

/*
 * Queues c on r's connection (connecting if needed, without blocking);
 * call (NULL: nobody waits, the reply is only checked) is answered by a
 * later cbv_cache_redis_async_pump().  1 if queued, 0 if Redis is down
 * or the queue full: the operation is OFF now.
 */
int cbv_cache_redis_async_send(struct cbv_cache_redis *r, struct cbv_redis_cmd *c,
                               enum cbv_redis_wait w, struct cbv_cache_call *call);
/* Sends and reads what it can without blocking; times out overdue commands. */
void cbv_cache_redis_async_pump(struct cbv_cache_redis *r);
/* The connection's pollfd and the next deadline; 0 if nothing is out. */
int cbv_cache_redis_async_pollfd(struct cbv_cache_redis *r, struct pollfd *pfd, int64_t *wake);
/* The call will not be waited for: its reply is read and any lease given back. */
void cbv_cache_redis_async_forget(struct cbv_cache_redis *r, struct cbv_cache_call *call);
void cbv_cache_redis_async_free(struct cbv_cache_redis *r);
/* 1 unless an outage holds off a new connection. */
int cbv_cache_redis_async_usable(struct cbv_cache_redis *r);
struct cbv_cache_async_stats;
/* Copies r's counters into *st (left alone if r never went non-blocking). */
void cbv_cache_async_stats_redis(struct cbv_cache_redis *r, struct cbv_cache_async_stats *st);

#endif
