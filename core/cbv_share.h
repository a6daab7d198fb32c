/*
 * cbv_share.h - the cache store (cbv_cache.h) behind the hooks of other
 * modules, so state that saves work survives the process: TLS sessions
 * (cbv_tls.h, struct cbv_tls_store) and DNS answers (cbv_dns.h, struct
 * cbv_dns_store), kept as blobs ('T', 'N') for their own lifetimes.
 *
 * TLS: the process's own store (CBV_TLS_SESSIONS_MAX, in memory) is asked
 * first; a miss asks the cache, and what it returns is kept in process
 * too.  New sessions go to both.  The blob is labelled with the MX's
 * "IP:port" and named by the whole session key (peer, SNI, verify or
 * not, CA directory), and the value names that key again, so a session
 * made without verification is never offered to a verifying connection;
 * cbv_tls checks what it gets as it checks its own (d2i, resumable,
 * expiry, and with tls_verify the stored verify result and name, then
 * again after the handshake).
 *
 * DNS: answers the in-process cache keeps are offered to the cache for
 * the same lifetime, labelled with the queried name; cbv_dns checks what
 * comes back (cbv_dns.h).
 *
 * Nothing here owns memory: the handles point at the cache handle, which
 * must outlive every connection and lookup started with them (cbv_verify
 * keeps its handles for the life of the process).  A cache that is OFF
 * only loses resumptions and answers.
 */
#ifndef CBV_SHARE_H
#define CBV_SHARE_H

#include "cbv_cache.h"
#include "cbv_dns.h"
#include "cbv_tls.h"

/* Fills *out with the layered TLS store over c (c NULL: the process's only). */
void cbv_share_tls_store(struct cbv_cache *c, struct cbv_tls_store *out);

/* Fills *out with the DNS store over c (c NULL: none, all hooks NULL). */
void cbv_share_dns_store(struct cbv_cache *c, struct cbv_dns_store *out);

#endif
