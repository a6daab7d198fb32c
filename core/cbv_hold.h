/*
 * cbv_hold.h - parked SMTP sessions, per process ("session reuse").
 *
 * Exim forks one process per incoming connection and calls cbv.so once
 * per RCPT; each call used to open its own session (and TLS handshake) to
 * the target MX.  With session_reuse, a verification whose session ended
 * cleanly in the MAIL transaction (cbv_session_parkable()) leaves it here
 * instead of sending QUIT, and a later verification in the same process
 * whose chosen host and options match (cbv_session_matches()) sends only
 * RCPT TO on it.  Exim's own callout keeps its connection the same way
 * ("callout hold", for cutthrough delivery).
 *
 * Owns at most CBV_HOLD_MAX sessions.  A parked session is given out only
 *   - in the process that parked it (after fork() it is closed without a
 *     byte written: the connection is the parent's);
 *   - within its idle limit (session_idle; past it: QUIT, at the next call);
 *   - while quiet (cbv_session_alive(): nothing readable, no EOF, no 421);
 *   - while its transaction has room: at most CBV_HOLD_RCPTS_MAX RCPTs
 *     and fewer than CBV_HOLD_ERRORS_MAX 5xx replies (Postfix slows a
 *     session down after smtpd_soft_error_limit = 10 errors).
 * No timers, signals or threads: every rule is applied when the pool is
 * used.  cbv_hold_shutdown() (and process exit, through atexit) sends
 * QUIT on each parked session, never waiting for the 221.
 */
#ifndef CBV_HOLD_H
#define CBV_HOLD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cbv_session.h"

#define CBV_HOLD_MAX 4        /* sessions parked per process */
#define CBV_HOLD_RCPTS_MAX 32 /* RCPTs per held transaction (CBV_RCPTS_MAX) */
#define CBV_HOLD_ERRORS_MAX 5 /* 5xx replies per held transaction */

/*
 * Takes out the parked session for sa (port set) and o, if one is there,
 * alive, within idle_ms of being parked and with room for `need` more
 * RCPTs; the caller then calls cbv_session_reuse() on it and owns it.
 * Returns NULL otherwise (expired, dead or full ones are closed).
 */
struct cbv_session *cbv_hold_take(const struct sockaddr *sa,
                                  const struct cbv_session_opts *o, size_t need);

/*
 * Parks s (cbv_session_parkable()) for idle_ms; the pool owns it from now
 * on.  When full, the longest parked session is closed with QUIT.  A
 * session that cannot be parked is freed.
 */
void cbv_hold_park(struct cbv_session *s, unsigned idle_ms);

/* Sessions parked now (in this process). */
size_t cbv_hold_count(void);

/* Closes every parked session: QUIT (in the process that parked it). */
void cbv_hold_shutdown(void);

/* Closes (QUIT) the parked sessions past their idle limit and those of
 * another process (silently); returns when the next one expires
 * (cbv_now_ms()), INT64_MAX if none is parked. */
int64_t cbv_hold_sweep(void);

#endif
