/*
 * cbv_session.h - one SMTP client conversation with one host, as a
 * non-blocking state machine.
 *
 *   connect -> greeting -> EHLO (HELO on 5xx) -> [STARTTLS -> TLS -> EHLO]
 *   -> MAIL FROM -> RCPT TO -> done (QUIT sent, never waited for)
 *
 * MAIL and RCPT go out in one write when the server offers PIPELINING
 * (RFC 2920).  An optional second RCPT (the catch-all probe, a random
 * local part) follows the real one: in the same write when pipelining
 * (except with starttls=ondemand, whose 530 retry needs the stream to
 * itself), else after a 2xx to the real RCPT.  The real RCPT's reply is
 * the deciding one (outcome.reply and outcome.sent, a true pair); the
 * probe's is kept apart (outcome.probe, outcome.probe_sent) and is
 * waited for only when the real RCPT got 2xx.  A probe that times out or
 * is cut off costs nothing: the outcome is the real RCPT's.
 *
 * Several recipients (a group at one domain): more_rcpts follow rcpt_to
 * in the same transaction, before the probe, all pipelined behind MAIL
 * when PIPELINING is offered (one at a time otherwise, and with
 * starttls=ondemand).  Every one of them gets its reply, whatever the
 * others got: the session stops early only at a 421 or a failure.  Each
 * recipient's RCPT and reply are kept in outcome.rcpts[] (a true pair);
 * the probe is waited for when any of them got 2xx.  STARTTLS follows the profile's policy; with "ondemand" a
 * 530 to MAIL or RCPT sends (RSET and) STARTTLS and tries again
 * (RFC 3207).  The session stops at the first reply that decides
 * anything, and at the RCPT reply: the verdict is known then, so it does
 * not wait for the 221 to QUIT (Exim holds that reply for 200 ms).
 *
 * The session only reports what happened (stage, status, reply); what it
 * means is decided in cbv_verify.c.  Every read is bounded (cbv_buf,
 * cbv_reply), every stage has a deadline: connect_timeout for the
 * connection, command_timeout for the greeting, each reply and the TLS
 * handshake, all capped by the overall deadline.
 *
 * Driving it: cbv_session_pollfd() says which fd/events/time to wait for,
 * cbv_session_process() is called with what poll() returned (0 on a
 * timeout), until cbv_session_done().
 */
#ifndef CBV_SESSION_H
#define CBV_SESSION_H

#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cbv_config.h"
#include "cbv_limits.h"
#include "cbv_log.h"
#include "cbv_reply.h"
#include "cbv_result_impl.h"
#include "cbv_status.h"

struct cbv_tls_store;

/* enum cbv_stage is in cbv_result_impl.h (the verdict mapping needs it). */

/* Returns "connect", "greeting", "EHLO", ... for messages. */
const char *cbv_stage_name(enum cbv_stage s);

/* enum cbv_trace and cbv_trace_fn, the transcript hook, are in cbv_log.h. */

struct cbv_session_opts {
	const char *host;          /* MX name: SNI, messages; may be an IP */
	const char *helo;          /* our EHLO/HELO name */
	const char *mail_from;     /* address without <>, "" = null sender */
	const char *rcpt_to;       /* address without <> */
	const char *const *more_rcpts; /* further RCPTs after rcpt_to (a group), without <> */
	size_t nmore;              /* how many; at most CBV_RCPTS_MAX - 1 */
	const char *probe_rcpt;    /* NULL, or a last RCPT (catch-all probe), without <> */
	int utf8;                  /* the addresses need SMTPUTF8 */
	enum cbv_starttls starttls;
	int tls_verify;
	const char *ca_dir;
	const struct cbv_tls_store *tls_store; /* NULL: the process's (cbv_tls.h) */
	unsigned connect_timeout_ms;
	unsigned command_timeout_ms;
	int64_t deadline_ms;       /* overall, absolute (cbv_now_ms) */
	cbv_trace_fn *trace;       /* may be NULL */
	void *trace_arg;
	int hold;                  /* 1: keep the connection open after a clean RCPT
	                            * answer, to park it (cbv_hold.h); no QUIT then */
};

/* One recipient's RCPT and its reply (sessions with more_rcpts). */
struct cbv_session_rcpt {
	int replied;               /* 1: reply and sent are a true pair */
	struct cbv_reply reply;
	char sent[CBV_CMD_MAX];
};

/* How the session ended. */
struct cbv_session_outcome {
	enum cbv_stage stage;      /* where it stopped (CBV_STAGE_DONE never) */
	enum cbv_status status;    /* CBV_OK: `reply` is the deciding reply */
	struct cbv_err err;        /* why, when status != CBV_OK */
	struct cbv_reply reply;    /* last complete reply (deciding one if OK) */
	struct cbv_reply greeting; /* the greeting, if received */
	struct cbv_reply ehlo;     /* last EHLO/HELO reply, if received */
	char sent[CBV_CMD_MAX];    /* the command `reply` answers ("" for the greeting or
	                            * none): with reply, a true pair; no CRLF */
	int probe_code;            /* reply code to the probe RCPT, 0: none received */
	char probe_recv[512];      /* its first 511 bytes (logs); the whole reply is not kept */
	char probe_sent[CBV_CMD_MAX]; /* the probe command it answers, "" if none */
	char tls[128];             /* cbv_tls_describe() or "" */
	int tls_offered;           /* STARTTLS was in the EHLO reply */
	int tls_not_offered;       /* policy required TLS, none offered */
	int smtputf8_missing;      /* utf8 address, no SMTPUTF8 offered */
	/* With more_rcpts: rcpt_to's and each further RCPT's pair, in order
	 * (nrcpts = 1 + nmore); a recipient without a reply shares the
	 * session's outcome (MAIL refused, 421, a failure).  NULL/0 without. */
	struct cbv_session_rcpt *rcpts;
	size_t nrcpts;
};

struct cbv_session;

/*
 * Starts connecting to sa (port set) with the given options (strings are
 * copied).  Returns a new session (free with cbv_session_free()) or NULL
 * with err: CBV_ENOMEM, CBV_EINVAL (a string with CR/LF/NUL or too long).
 * A connect() that fails at once is not an error here: the session is
 * returned already done with a CBV_ECONNECT outcome.
 */
struct cbv_session *cbv_session_new(const struct sockaddr *sa, socklen_t salen,
                                    const struct cbv_session_opts *o,
                                    struct cbv_err *err);

/*
 * What to wait for: fills *pfd (fd, events) and *wake_ms (absolute time at
 * which cbv_session_process() must be called anyway).  Returns 1, or 0 if
 * the session is done (nothing to wait for).
 */
int cbv_session_pollfd(struct cbv_session *s, struct pollfd *pfd,
                       int64_t *wake_ms);

/* Advances the machine with the revents poll() gave (0 if none). */
void cbv_session_process(struct cbv_session *s, short revents);

/* 1 when the session has ended. */
int cbv_session_done(const struct cbv_session *s);

/* The outcome; meaningful once done.  Valid while s lives. */
const struct cbv_session_outcome *cbv_session_outcome(const struct cbv_session *s);

/* Ends the session (QUIT if possible, never waiting), closes, frees.  NULL ok. */
void cbv_session_free(struct cbv_session *s);

/*
 * Session reuse (cbv_hold.h).  A session started with o->hold that ends
 * cleanly in the MAIL transaction keeps its connection: every real RCPT
 * answered 2xx or 55x (not X.5.3, too many recipients), the probe (if
 * any) answered and not 421, no command or byte left in flight, and not
 * with starttls=ondemand.  cbv_session_outcome_clean() is that test on an
 * outcome; cbv_session_parkable() says the connection was kept.
 */
int cbv_session_outcome_clean(const struct cbv_session_outcome *o);

/*
 * Looser: every real RCPT got an answer about its address, 4xx included
 * (greylisting) but not 421, 452 or X.5.3 (too many recipients).  A
 * reused session whose outcome is not this is retried on a fresh one.
 */
int cbv_session_outcome_answered(const struct cbv_session_outcome *o);
int cbv_session_parkable(const struct cbv_session *s);

/* RCPTs sent and 5xx replies got in the current MAIL transaction (the bounds). */
unsigned cbv_session_txn_rcpts(const struct cbv_session *s);
unsigned cbv_session_txn_errors(const struct cbv_session *s);

/*
 * 1 if a parked session would start with the same peer (sa, port set) and
 * options: host (SNI), HELO, MAIL FROM, SMTPUTF8, STARTTLS policy,
 * tls_verify, ca_dir and the timeouts.  The recipients, trace and
 * deadline may differ.
 */
int cbv_session_matches(const struct cbv_session *s, const struct sockaddr *sa,
                        const struct cbv_session_opts *o);

/*
 * 1 if a parked session's connection is quiet: nothing readable (EOF, a
 * 421, anything unsolicited), nothing buffered in TLS.  Never blocks.
 */
int cbv_session_alive(const struct cbv_session *s);

/*
 * Reuses a parked session for o's recipients (and probe): RCPT TO only,
 * in the same MAIL transaction, under o's deadline.  The outcome keeps the
 * session's greeting, EHLO reply and TLS description; the rest is the new
 * transaction's.  Returns 0 (drive it as a new session), or -1 with err
 * (CBV_EINVAL, CBV_ENOMEM): free it then.
 */
int cbv_session_reuse(struct cbv_session *s, const struct cbv_session_opts *o,
                      struct cbv_err *err);

/* Closes and frees without writing a byte (no QUIT, no TLS close_notify):
 * a dead peer, or a connection inherited across fork().  NULL ok. */
void cbv_session_abandon(struct cbv_session *s);

#endif
