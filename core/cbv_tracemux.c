/*
 * cbv_tracemux.c - one group session's transcript, split per address
 * (see cbv_tracemux.h).
 */
#include "cbv_tracemux.h"

#include <string.h>

/* Owners of a command besides a member index. */
#define OWN_ALL (-1)   /* every member: connection, EHLO, STARTTLS, MAIL, RSET */
#define OWN_PROBE (-2) /* the catch-all probe RCPT */

void cbv_tracemux_begin(struct cbv_tracemux *m, cbv_trace_fn *const *fn, void *const *arg,
                        size_t n)
{
	memset(m, 0, sizeof(*m));
	if (n > CBV_RCPTS_MAX)
		n = CBV_RCPTS_MAX;
	for (size_t i = 0; i < n; i++) {
		m->fn[i] = fn[i];
		m->arg[i] = arg[i];
	}
	m->n = n;
}

static void to_one(struct cbv_tracemux *m, size_t k, enum cbv_trace kind, const char *text)
{
	if (k < m->n && m->fn[k] != NULL)
		m->fn[k](m->arg[k], kind, text);
}

/* Delivers a line to the owner: one member, all, or (probe) the members with a 2xx. */
static void deliver(struct cbv_tracemux *m, int owner, enum cbv_trace kind, const char *text)
{
	if (owner >= 0) {
		to_one(m, (size_t)owner, kind, text);
		return;
	}
	for (size_t k = 0; k < m->n; k++) {
		if (owner == OWN_ALL || m->ok[k])
			to_one(m, k, kind, text);
	}
}

/*
 * Who a command line belongs to; pushes it to await its reply (not QUIT).
 * The probe line itself goes to every member while replies are still
 * outstanding (pipelined behind MAIL: a lone session sends it before any
 * RCPT reply too), else to the members whose RCPT got a 2xx.
 */
static int sent_owner(struct cbv_tracemux *m, const char *text)
{
	int owner = OWN_ALL, shown;

	if (strncmp(text, "MAIL FROM:", 10) == 0) {
		/* a new transaction (again after STARTTLS on demand) */
		m->next_rcpt = 0;
		memset(m->ok, 0, sizeof(m->ok));
	} else if (strncmp(text, "RCPT TO:", 8) == 0) {
		owner = m->next_rcpt < m->n ? (int)m->next_rcpt : OWN_PROBE;
		m->next_rcpt++;
	} else if (strcmp(text, "QUIT") == 0) {
		return OWN_ALL; /* its reply is never traced */
	}
	shown = owner == OWN_PROBE && m->npending > 0 ? OWN_ALL : owner;
	if (m->npending < CBV_TRACEMUX_PENDING)
		m->owner[m->npending++] = (signed char)owner;
	return shown;
}

/* Who a reply belongs to: the oldest command awaiting one. */
static int reply_owner(struct cbv_tracemux *m, const char *text)
{
	int owner = OWN_ALL;

	if (m->npending > 0) {
		owner = m->owner[0];
		memmove(m->owner, m->owner + 1, --m->npending);
	}
	if (owner >= 0 && (size_t)owner < m->n)
		m->ok[owner] = text[0] == '2';
	return owner;
}

void cbv_tracemux_trace(void *arg, enum cbv_trace kind, const char *text)
{
	struct cbv_tracemux *m = arg;

	switch (kind) {
	case CBV_TRACE_INIT:
		m->npending = 0;
		m->next_rcpt = 0;
		deliver(m, OWN_ALL, kind, text);
		return;
	case CBV_TRACE_GRTNG:
		deliver(m, OWN_ALL, kind, text); /* answers no command */
		return;
	case CBV_TRACE_SENT:
		deliver(m, sent_owner(m, text), kind, text);
		return;
	case CBV_TRACE_HELO:
	case CBV_TRACE_RECV:
		deliver(m, reply_owner(m, text), kind, text);
		return;
	}
}
