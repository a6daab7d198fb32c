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
 * Session resumption: after a handshake the server's session (a TLS 1.2
 * session ID or ticket; TLS 1.3 tickets, which arrive after the handshake
 * and are read with the first reply) is kept under a key naming all that
 * must match for it to be offered again: peer IP and port (from the
 * socket), SNI name, whether the certificate is verified and against which
 * CA directory.  The next connection with the same key offers it
 * (SSL_set_session).  A session is kept until the earliest of its own
 * timeout, the server's ticket lifetime hint and CBV_TLS_SESSION_TTL_MAX.
 * Where sessions live is a hook (struct cbv_tls_store: get/put/del of
 * serialized sessions by key); the built-in store keeps
 * CBV_TLS_SESSIONS_MAX of them in this process.  A stored value names the
 * key it was made under and is used only under that key, so a store that
 * mixes keys up cannot hand a session made without verification to a
 * verifying connection.  With verify = 1, a session is offered only if it
 * was verified (verify result X509_V_OK, peer certificate present and
 * matching the name), and a resumed handshake is checked again the same
 * way before the connection is used: resumption skips the certificate
 * exchange, never the policy.
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
#include <time.h>

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

/*
 * "TLSv1.3:TLS_AES_256_GCM_SHA384:verified|unverified" into buf, with
 * ":resumed" after it when the handshake resumed a stored session.
 */
void cbv_tls_describe(const struct cbv_tls *t, char *buf, size_t n);

/*
 * Sends close_notify if it can go out at once (never waits) and frees.
 * The fd is not closed.  Accepts NULL.
 */
void cbv_tls_free(struct cbv_tls *t);

/* Frees t without writing (no close_notify): the peer is gone, or t came
 * across fork() and belongs to the parent's connection.  NULL ok. */
void cbv_tls_abandon(struct cbv_tls *t);

/* 1 if t holds bytes read from the socket and not yet returned. */
int cbv_tls_pending(const struct cbv_tls *t);

/* 1 if t's session could be resumed by a new connection (a ticket came). */
int cbv_tls_resumable(const struct cbv_tls *t);

/* 1 if the handshake resumed a stored session, else 0. */
int cbv_tls_resumed(const struct cbv_tls *t);

/*
 * Does now, without a connection, what the first STARTTLS of a process
 * with this policy would do once: makes (and keeps) its context, and
 * runs OpenSSL's lazy set-up that the first handshake would pay (the
 * algorithm and decoder stores: a key exchange key made and its public
 * key decoded back).  Opens no socket and starts no thread, so a process
 * may call it and fork: Exim's daemon, for the connection processes it
 * forks.  0, or -1 with err (CBV_ETLS, CBV_ENOMEM).
 */
int cbv_tls_preload(int verify, const char *ca_dir, struct cbv_err *err);

/* Longest session key, NUL included (see the key format in cbv_tls.c). */
#define CBV_TLS_KEY_MAX 1024

/*
 * Where sessions are kept between connections.  Values are opaque bytes
 * (at most CBV_TLS_SESSION_BYTES_MAX + CBV_TLS_KEY_MAX).  A store may drop
 * anything at any time; failures are never errors, only lost resumptions.
 *   get: copies the value stored under key into buf (n bytes of room) and
 *        returns its length; 0 if there is none, it has expired or it does
 *        not fit.
 *   put: keeps len bytes of data under key until expires (time(2)
 *        seconds), replacing what was there.
 *   del: forgets key.
 * arg is passed back as given.  None is called with a key longer than
 * CBV_TLS_KEY_MAX - 1.
 */
struct cbv_tls_store {
	size_t (*get)(void *arg, const char *key, unsigned char *buf, size_t n);
	void (*put)(void *arg, const char *key, const unsigned char *data, size_t len,
	            time_t expires);
	void (*del)(void *arg, const char *key);
	void *arg;
};

/*
 * cbv_tls_new() with the store this connection's sessions are taken from
 * and kept in (copied; NULL = the process's, cbv_tls_set_store()).
 */
struct cbv_tls *cbv_tls_new_with(int fd, const char *sni, int verify, const char *ca_dir,
                                 const struct cbv_tls_store *st, struct cbv_err *err);

/*
 * Sets the store for the connections started from now on (copied).  NULL
 * restores the built-in in-process store; a store whose get is NULL turns
 * resumption off.
 */
void cbv_tls_set_store(const struct cbv_tls_store *st);

/*
 * The built-in store, as hook functions (arg unused): CBV_TLS_SESSIONS_MAX
 * entries, least recently used dropped first, expired ones dropped when
 * met.  Memory comes from cbv_malloc(); a put that finds none keeps nothing.
 */
size_t cbv_tls_cache_get(void *arg, const char *key, unsigned char *buf, size_t n);
void cbv_tls_cache_put(void *arg, const char *key, const unsigned char *data, size_t len,
                       time_t expires);
void cbv_tls_cache_del(void *arg, const char *key);

/* Entries in the built-in store now (expired ones not yet met included). */
size_t cbv_tls_cache_count(void);

/* Empties the built-in store and frees its memory. */
void cbv_tls_cache_clear(void);

#endif
