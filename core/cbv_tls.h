/*
 * cbv_tls.h - STARTTLS client through OpenSSL 3, non-blocking.
 *
 * Contexts are made lazily, on the first STARTTLS of the process, and kept
 * for its life (one without certificate checks, and one that checks per
 * CA directory, up to CBV_TLS_CTX_MAX directories).  The CA directory is read lazily by OpenSSL, one hashed
 * file per certificate needed: loading the whole default bundle costs
 * about 28 ms per Exim process, so we never do that.
 *
 * Verification policy: by default (verify = 0) the certificate is not
 * checked - opportunistic TLS as every MTA does it; with verify = 1 the
 * chain must verify against ca_dir (or OpenSSL's default directory) and
 * the name must match the MX host name.  SNI carries the MX host name.
 *
 * OpenSSL reads and writes the socket through a BIO of ours that sends
 * with MSG_NOSIGNAL, so nothing here raises SIGPIPE, whatever the
 * caller's signal disposition (an alert written to a peer that closed
 * after "220" to STARTTLS used to).
 */
#ifndef CBV_TLS_H
#define CBV_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "cbv_status.h"

struct cbv_tls;

/*
 * Starts a client TLS connection on fd (already connected, after the
 * server's 220 to STARTTLS).  sni: host name for SNI and name checks
 * (NULL or an IP literal: none).  Returns a new cbv_tls (free with
 * cbv_tls_free()) or NULL with err (CBV_ETLS, CBV_ENOMEM).
 */
struct cbv_tls *cbv_tls_new(int fd, const char *sni, int verify,
                            const char *ca_dir, struct cbv_err *err);

/*
 * Advances the handshake.  Returns 1 when done, 0 when it must wait for
 * *events (POLLIN or POLLOUT) on fd, -1 on failure with err (CBV_ETLS,
 * message with OpenSSL's reason and, for verify failures, why).
 */
int cbv_tls_handshake(struct cbv_tls *t, short *events, struct cbv_err *err);

/*
 * Reads or writes like cbv_net_recv/cbv_net_send: bytes moved, 0 = wait
 * for *events, -2 = peer closed (read only), -1 = error with err.
 */
ssize_t cbv_tls_read(struct cbv_tls *t, void *buf, size_t len, short *events,
                     struct cbv_err *err);
ssize_t cbv_tls_write(struct cbv_tls *t, const void *buf, size_t len,
                      short *events, struct cbv_err *err);

/* "TLSv1.3:TLS_AES_256_GCM_SHA384:verified|unverified" into buf. */
void cbv_tls_describe(const struct cbv_tls *t, char *buf, size_t n);

/*
 * Sends close_notify if it can go out at once (never waits) and frees.
 * The fd is not closed.  Accepts NULL.
 */
void cbv_tls_free(struct cbv_tls *t);

#endif
