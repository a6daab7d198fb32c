/*
 * cbv_cache_async.h - the cache calls that wait (lookup, single flight,
 * caps) as calls an event loop can wait for without blocking: a call
 * starts, and is either answered at once or hands out a pollfd and a wake
 * time until cbv_cache_call_process() says it is answered.  The answers
 * are exactly those of cbv_cache_lookup(), cbv_cache_flight_begin(),
 * cbv_cache_domain_acquire() and cbv_cache_host_acquire() (cbv_cache.h),
 * the LMDB fallback included.
 *
 * Only a Redis store in a process that asked for it (cbv_cache_async_set(1):
 * cbvd) really waits: every call of the process then goes out on one
 * non-blocking connection per store, pipelined, the replies matched in
 * order, each within cache_timeout of being sent (connecting first: within
 * cache_timeout of the connect).  An overdue reply is an outage of the
 * store, with the same rules as cbv_cache.h's (logged once, backoff, calls
 * answered OFF at once meanwhile).  The calls that do not wait
 * (cbv_cache_store(), cbv_cache_flight_end() and the releases) are then
 * sent without waiting; their replies are read by later calls and a
 * failure is counted and logged.  Elsewhere (LMDB; cbv.so and the cbv
 * tool, which never ask) a call is answered at once by the synchronous
 * function.
 */
#ifndef CBV_CACHE_ASYNC_H
#define CBV_CACHE_ASYNC_H

#include <poll.h>
#include <stdint.h>

#include "cbv_cache.h"

/* Process-wide: 1 = Redis calls never block (an event loop drives them). */
void cbv_cache_async_set(int on);

/*
 * One call.  The caller owns the struct (zeroed before first use) and must
 * keep it, and the key or name it was given, until the call is answered
 * or cancelled.
 */
struct cbv_cache_call {
	/* the answer, once cbv_cache_call_start_*() or _process() returned 1 */
	enum cbv_cache_status st;
	struct cbv_result *hit;     /* lookup HIT: the caller's, free with cbv_result_free() */
	unsigned long age;          /* lookup HIT: seconds since stored */
	uint64_t ticket;            /* OWN / OK */
	int64_t wake_ms;            /* BUSY / LIMITED */
	enum cbv_cache_limit which; /* LIMITED */

	/* private */
	int state; /* 0 idle (or answered), 1 waiting, 2 replied */
	int op;
	struct cbv_cache *c;
	void *out; /* the queued command, while waiting */
	const struct cbv_cache_key *k;
	const char *name;
	const struct cbv_cache_caps *caps;
	unsigned lease_s;
	char kind;          /* 'C' domain, 'H' host */
	int64_t now;        /* wall clock (ms) when the call started */
	unsigned char *val; /* lookup: the record Redis gave (cbv_malloc'd) */
	size_t vlen;
};

/*
 * Start a call; 1 if answered already (the fields above are set), 0 if
 * waiting.  Arguments as the synchronous functions of cbv_cache.h.  Once
 * a call has answered (here or in cbv_cache_call_process()), the answer
 * is the caller's: hit to free, a ticket to end or release.
 */
int cbv_cache_call_lookup(struct cbv_cache *c, const struct cbv_cache_key *k,
                          struct cbv_cache_call *call);
int cbv_cache_call_flight(struct cbv_cache *c, const struct cbv_cache_key *k, unsigned lease_s,
                          struct cbv_cache_call *call);
int cbv_cache_call_domain(struct cbv_cache *c, const char *domain,
                          const struct cbv_cache_caps *caps, struct cbv_cache_call *call);
int cbv_cache_call_host(struct cbv_cache *c, const char *ip, const struct cbv_cache_caps *caps,
                        struct cbv_cache_call *call);

/*
 * While waiting: fills *pfd (the store's connection; several calls may
 * share it) and returns 1, with *wake_ms the time to process by; returns 0
 * with *wake_ms = now when the answer is in (process at once).
 */
int cbv_cache_call_pollfd(struct cbv_cache_call *call, struct pollfd *pfd, int64_t *wake_ms);

/* Reads what the connection has (any revents); 1 once the call is answered. */
int cbv_cache_call_process(struct cbv_cache_call *call);

/*
 * Abandons a call (its caller goes away): a reply still due is read and
 * dropped, and a flight or slot it took is given back; an answer not yet
 * taken (hit, ticket) is freed or given back too.  Idle calls: nothing.
 */
void cbv_cache_call_cancel(struct cbv_cache_call *call);

/* Counters of one store's non-blocking connection (zeros for others). */
struct cbv_cache_async_stats {
	unsigned long sent;     /* commands sent */
	unsigned long replies;  /* replies read */
	unsigned long failed;   /* error or unexpected replies */
	unsigned long timeouts; /* replies overdue (each starts an outage) */
	unsigned long outages;  /* connections dropped (refused, closed, garbage, timeouts) */
	unsigned long refused;  /* calls answered OFF at once (down, or the queue full) */
};

void cbv_cache_async_stats(struct cbv_cache *c, struct cbv_cache_async_stats *st);

/* The same counters summed over every store of the process (metrics). */
void cbv_cache_async_totals(struct cbv_cache_async_stats *st);

#endif
