/*
 * cbv_cache_async.c - cache calls an event loop waits for without
 * blocking (cbv_cache_async.h).  A call on a Redis store in a process
 * that asked for it goes out on the store's non-blocking connection
 * (cbv_cache_redis_async.c); its answer is read by the same functions as
 * the synchronous path's, and an OFF answer goes on to the LMDB fallback
 * as cbv_cache.c does.  Every other call is the synchronous function,
 * answered at once.
 */
#include "cbv_cache_async.h"

#include <string.h>

#include "cbv_cache_redis_impl.h"
#include "cbv_clock.h"
#include "cbv_status.h"

enum { OP_LOOKUP = 1,
       OP_FLIGHT,
       OP_DOMAIN,
       OP_HOST };

/* Call states (struct cbv_cache_call.state); answered calls are idle again. */
enum { CS_IDLE,
       CS_WAITING,
       CS_REPLIED };

static void begin(struct cbv_cache_call *call, struct cbv_cache *c, int op)
{
	call->st = CBV_CACHE_OFF;
	call->hit = NULL;
	call->age = 0;
	call->ticket = 0;
	call->wake_ms = 0;
	call->which = CBV_LIMIT_NONE;
	call->state = CS_IDLE;
	call->op = op;
	call->c = c;
	call->out = NULL;
	call->val = NULL;
	call->vlen = 0;
}

/* The Redis backend to send to, or NULL: answer with the synchronous function. */
static struct cbv_cache_redis *async_redis(struct cbv_cache *c)
{
	return cbv_cache_redis_async_on() ? cbv_cache_redis_of(c) : NULL;
}

/* Redis answered (or was OFF): the answer as cbv_cache.h's functions give it. */
static void conclude(struct cbv_cache_call *call)
{
	struct cbv_cache *fb = cbv_cache_fallback_of(call->c);
	struct cbv_cache_rec rec;

	if (call->op == OP_LOOKUP && call->st == CBV_CACHE_HIT) {
		if (cbv_cache_rec_decode(call->val, call->vlen, &rec) == CBV_REC_OK)
			call->st = cbv_cache_hit_of(call->c, &rec, call->now, &call->hit, &call->age);
		else
			call->st = CBV_CACHE_MISS; /* checked when read: cannot happen */
	}
	cbv_free(call->val);
	call->val = NULL;
	if (call->st == CBV_CACHE_OFF && fb != NULL) {
		/* Redis is down: the local store, as cbv_cache.c does */
		switch (call->op) {
		case OP_LOOKUP:
			call->st = cbv_cache_lookup(fb, call->k, &call->hit, &call->age);
			break;
		case OP_FLIGHT:
			call->st = cbv_cache_flight_begin(fb, call->k, call->lease_s, &call->ticket,
			                                  &call->wake_ms);
			break;
		case OP_DOMAIN:
			call->st = cbv_cache_domain_acquire(fb, call->name, call->caps, &call->ticket,
			                                    &call->wake_ms, &call->which);
			break;
		case OP_HOST:
			call->st = cbv_cache_host_acquire(fb, call->name, call->caps, &call->ticket,
			                                  &call->wake_ms);
			break;
		}
	}
	call->state = CS_IDLE; /* the answer is the caller's now */
}

/* After a send: 1 if answered (OFF at once, or replied already), 0 if waiting. */
static int sent(struct cbv_cache_call *call, int queued)
{
	if (!queued) {
		call->st = CBV_CACHE_OFF;
		call->state = CS_REPLIED;
	}
	if (call->state == CS_REPLIED) {
		conclude(call);
		return 1;
	}
	return 0;
}

int cbv_cache_call_lookup(struct cbv_cache *c, const struct cbv_cache_key *k,
                          struct cbv_cache_call *call)
{
	struct cbv_cache_redis *r = async_redis(c);
	struct cbv_redis_cmd cmd;

	begin(call, c, OP_LOOKUP);
	call->k = k;
	if (r == NULL || !cbv_cache_key_valid(k)) {
		call->st = cbv_cache_lookup(c, k, &call->hit, &call->age);
		return 1;
	}
	call->now = cbv_cache_now(c);
	return sent(call, cbv_cache_redis_build_lookup(r, k, &cmd) &&
	                          cbv_cache_redis_async_send(r, &cmd, CBV_RW_LOOKUP, call));
}

int cbv_cache_call_flight(struct cbv_cache *c, const struct cbv_cache_key *k, unsigned lease_s,
                          struct cbv_cache_call *call)
{
	struct cbv_cache_redis *r = async_redis(c);
	struct cbv_redis_cmd cmd;

	begin(call, c, OP_FLIGHT);
	call->k = k;
	call->lease_s = lease_s == 0 ? 1 : lease_s; /* as cbv_cache_flight_begin() */
	if (r == NULL || !cbv_cache_key_valid(k)) {
		call->st = cbv_cache_flight_begin(c, k, lease_s, &call->ticket, &call->wake_ms);
		return 1;
	}
	call->now = cbv_cache_now(c);
	return sent(call, cbv_cache_redis_build_flight(r, k, call->lease_s, &cmd) &&
	                          cbv_cache_redis_async_send(r, &cmd, CBV_RW_FLIGHT, call));
}

/* Domain and host slots: kind 'C' or 'H', name the domain or the IP. */
static int slot(struct cbv_cache *c, char kind, const char *name, unsigned max,
                const struct cbv_cache_caps *caps, struct cbv_cache_call *call)
{
	struct cbv_cache_redis *r = async_redis(c);
	struct cbv_redis_cmd cmd;
	int none;
	unsigned rate = cbv_cache_slot_rate(kind, max, caps, &none);

	begin(call, c, kind == 'C' ? OP_DOMAIN : OP_HOST);
	call->name = name;
	call->caps = caps;
	call->kind = kind;
	if (r == NULL || none ||
	    !cbv_cache_redis_build_acquire(r, kind, name, max, rate, caps->rate_window_s,
	                                   caps->lease_s, &cmd)) {
		/* not Redis, no cap to ask, or a name out of bounds: as ever */
		if (kind == 'C')
			call->st = cbv_cache_domain_acquire(c, name, caps, &call->ticket, &call->wake_ms,
			                                    &call->which);
		else
			call->st = cbv_cache_host_acquire(c, name, caps, &call->ticket, &call->wake_ms);
		return 1;
	}
	call->now = cbv_cache_now(c);
	return sent(call, cbv_cache_redis_async_send(r, &cmd, CBV_RW_ACQUIRE, call));
}

int cbv_cache_call_domain(struct cbv_cache *c, const char *domain,
                          const struct cbv_cache_caps *caps, struct cbv_cache_call *call)
{
	return slot(c, 'C', domain, caps->domain_concurrency, caps, call);
}

int cbv_cache_call_host(struct cbv_cache *c, const char *ip, const struct cbv_cache_caps *caps,
                        struct cbv_cache_call *call)
{
	return slot(c, 'H', ip, caps->host_concurrency, caps, call);
}

int cbv_cache_call_pollfd(struct cbv_cache_call *call, struct pollfd *pfd, int64_t *wake_ms)
{
	if (call->state == CS_WAITING &&
	    cbv_cache_redis_async_pollfd(cbv_cache_redis_of(call->c), pfd, wake_ms))
		return 1;
	*wake_ms = cbv_now_ms(); /* answered: process at once */
	return 0;
}

int cbv_cache_call_process(struct cbv_cache_call *call)
{
	if (call->state == CS_WAITING)
		cbv_cache_redis_async_pump(cbv_cache_redis_of(call->c));
	if (call->state == CS_REPLIED) {
		conclude(call);
		return 1;
	}
	return call->state == CS_IDLE;
}

void cbv_cache_call_cancel(struct cbv_cache_call *call)
{
	if (call->state == CS_WAITING) {
		/* the reply is read when it comes, and a lease it took given back */
		cbv_cache_redis_async_forget(cbv_cache_redis_of(call->c), call);
	} else if (call->state == CS_REPLIED) {
		/* answered, but not taken: what it took goes back */
		conclude(call);
		cbv_result_free(call->hit);
		if (call->ticket != 0) {
			if (call->op == OP_FLIGHT && call->st == CBV_CACHE_OWN)
				cbv_cache_flight_end(call->c, call->k, call->ticket);
			else if (call->op == OP_DOMAIN && call->st == CBV_CACHE_OK)
				cbv_cache_domain_release(call->c, call->name, call->ticket);
			else if (call->op == OP_HOST && call->st == CBV_CACHE_OK)
				cbv_cache_host_release(call->c, call->name, call->ticket);
		}
	}
	cbv_free(call->val);
	begin(call, call->c, call->op);
}

void cbv_cache_async_stats(struct cbv_cache *c, struct cbv_cache_async_stats *st)
{
	struct cbv_cache_redis *r = cbv_cache_redis_of(c);

	memset(st, 0, sizeof(*st));
	if (r != NULL)
		cbv_cache_async_stats_redis(r, st);
}
