/*
 * cbv_tracemux.h - one group session's transcript, split per address.
 *
 * A group (cbv_verify_group_new) sends one MAIL FROM and one RCPT per
 * open member over one session, so the session's trace hook sees one
 * stream.  When each address has a transcript of its own (cbvd: one
 * VRFY's progress lines), the mux hands each member what its own
 * session would have shown: the connection, greeting, EHLO, STARTTLS and
 * MAIL lines (and their replies) to every member, the k-th RCPT of the
 * transaction and its reply to member k alone, and the catch-all probe
 * RCPT to every member, its reply to those whose RCPT got a 2xx (a lone
 * session reads the probe's reply only then).  Replies are matched to
 * commands in the order sent (RFC 2920: replies come in command order),
 * so pipelined and one-at-a-time sessions split alike.
 *
 * Pure: no I/O, no allocation; the owner embeds or allocates it.
 */
#ifndef CBV_TRACEMUX_H
#define CBV_TRACEMUX_H

#include <stddef.h>

#include "cbv_limits.h"
#include "cbv_log.h"

/* Commands whose reply may be outstanding: MAIL, every RCPT, the probe. */
#define CBV_TRACEMUX_PENDING (CBV_RCPTS_MAX + 4)

struct cbv_tracemux {
	cbv_trace_fn *fn[CBV_RCPTS_MAX];
	void *arg[CBV_RCPTS_MAX];
	size_t n;                                 /* members, in RCPT order */
	signed char owner[CBV_TRACEMUX_PENDING];  /* commands awaiting a reply, oldest first */
	size_t npending;
	size_t next_rcpt;                         /* RCPTs sent in this transaction */
	unsigned char ok[CBV_RCPTS_MAX];          /* member's RCPT got a 2xx */
};

/*
 * Starts a session's split: member k (k < n <= CBV_RCPTS_MAX) is the
 * k-th RCPT and gets its lines through fn[k](arg[k], ...); a NULL fn
 * gets nothing.
 */
void cbv_tracemux_begin(struct cbv_tracemux *m, cbv_trace_fn *const *fn, void *const *arg,
                        size_t n);

/* The session's trace hook: arg is the struct cbv_tracemux. */
void cbv_tracemux_trace(void *arg, enum cbv_trace kind, const char *text);

#endif
