/*
 * cbv_hold.c - parked SMTP sessions, per process (see cbv_hold.h).
 *
 * A small array: CBV_HOLD_MAX slots, each a session, the pid that parked
 * it and when.  Every call first sweeps it: sessions of another process
 * (we were forked) are dropped without a byte written, expired ones get
 * QUIT.
 */
#include "cbv_hold.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "cbv_clock.h"
#include "cbv_log.h"
#include "cbv_verify.h"

static struct slot {
	struct cbv_session *s; /* NULL: free */
	pid_t pid;             /* the process that parked it */
	int64_t since_ms;      /* when (cbv_now_ms) */
	unsigned idle_ms;      /* its idle limit */
} slots[CBV_HOLD_MAX];

static int exit_hook; /* atexit(cbv_hold_shutdown) done */

/* Empties slot i: QUIT if quit and ours, else not a byte. */
static void drop(struct slot *sl, int quit)
{
	if (quit && sl->pid == getpid())
		cbv_session_free(sl->s);
	else
		cbv_session_abandon(sl->s);
	sl->s = NULL;
}

/* Drops what another process parked and what has been idle too long. */
static void sweep(void)
{
	int64_t now = cbv_now_ms();
	pid_t me = getpid();

	for (size_t i = 0; i < CBV_HOLD_MAX; i++) {
		struct slot *sl = &slots[i];

		if (sl->s == NULL)
			continue;
		if (sl->pid != me)
			drop(sl, 0);
		else if (now - sl->since_ms >= (int64_t)sl->idle_ms)
			drop(sl, 1);
	}
}

struct cbv_session *cbv_hold_take(const struct sockaddr *sa,
                                  const struct cbv_session_opts *o, size_t need)
{
	sweep();
	for (size_t i = 0; i < CBV_HOLD_MAX; i++) {
		struct slot *sl = &slots[i];
		struct cbv_session *s = sl->s;

		if (s == NULL || !cbv_session_matches(s, sa, o))
			continue;
		if (!cbv_session_alive(s)) {
			/* EOF, a 421 or anything unsolicited: gone, as if never parked */
			cbv_log(CBV_LOG_DEBUG, "cbv: parked session to %s closed by the peer", o->host);
			drop(sl, 0);
			continue;
		}
		if (cbv_session_txn_rcpts(s) + need > CBV_HOLD_RCPTS_MAX ||
		    cbv_session_txn_errors(s) >= CBV_HOLD_ERRORS_MAX) {
			drop(sl, 1);
			continue;
		}
		cbv_log(CBV_LOG_DEBUG, "cbv: %s: reusing a parked session (%u RCPTs in its transaction)",
		        o->host, cbv_session_txn_rcpts(s));
		sl->s = NULL;
		return s;
	}
	return NULL;
}

void cbv_hold_park(struct cbv_session *s, unsigned idle_ms)
{
	struct slot *sl = NULL;

	if (!cbv_session_parkable(s) || idle_ms == 0) {
		cbv_session_free(s);
		return;
	}
	sweep();
	for (size_t i = 0; i < CBV_HOLD_MAX; i++) {
		if (slots[i].s == NULL) {
			sl = &slots[i];
			break;
		}
		if (sl == NULL || slots[i].since_ms < sl->since_ms)
			sl = &slots[i]; /* the longest parked, if none is free */
	}
	if (sl->s != NULL)
		drop(sl, 1);
	if (!exit_hook)
		exit_hook = atexit(cbv_hold_shutdown) == 0;
	sl->s = s;
	sl->pid = getpid();
	sl->since_ms = cbv_now_ms();
	sl->idle_ms = idle_ms;
}

size_t cbv_hold_count(void)
{
	size_t n = 0;
	pid_t me = getpid();

	for (size_t i = 0; i < CBV_HOLD_MAX; i++)
		n += slots[i].s != NULL && slots[i].pid == me;
	return n;
}

void cbv_hold_shutdown(void)
{
	for (size_t i = 0; i < CBV_HOLD_MAX; i++) {
		if (slots[i].s != NULL)
			drop(&slots[i], 1);
	}
}

int64_t cbv_hold_sweep(void)
{
	int64_t next = INT64_MAX;

	sweep();
	for (size_t i = 0; i < CBV_HOLD_MAX; i++)
		if (slots[i].s != NULL && slots[i].since_ms + (int64_t)slots[i].idle_ms < next)
			next = slots[i].since_ms + (int64_t)slots[i].idle_ms;
	return next;
}

void cbv_verify_shutdown(void)
{
	cbv_hold_shutdown();
}

int64_t cbv_verify_idle(void)
{
	return cbv_hold_sweep();
}
