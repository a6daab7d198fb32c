/*
 * cbv_dns.h - mail exchanger lookup through c-ares, as a non-blocking
 * state machine (c-ares 1.18.1: ares_getsock/ares_process_fd/ares_timeout).
 *
 * One cbv_dns resolves one domain (RFC 5321 5.1):
 *   1. MX query.  NXDOMAIN -> CBV_DNS_NXDOMAIN.  SERVFAIL, REFUSED,
 *      timeout, malformed answer -> CBV_DNS_TEMP.  A single MX with target
 *      "." (RFC 7505 null MX) -> CBV_DNS_NULLMX.
 *   2. No MX records (NODATA) -> implicit MX: the domain itself, pref 0.
 *   3. A and AAAA for every exchanger (at most CBV_MX_MAX), in preference
 *      order, equal preferences shuffled.  An exchanger whose name does not
 *      resolve is skipped; one whose lookup fails temporarily sets
 *      `partial`.
 *   4. Hosts found -> CBV_DNS_OK.  None, and some lookup failed
 *      temporarily -> CBV_DNS_TEMP.  None (all definitive) ->
 *      CBV_DNS_NOHOST.
 * Each host's order: exchangers by preference; for one exchanger, its
 * IPv4 addresses then its IPv6 addresses.  At most CBV_HOSTS_MAX hosts.
 * The machine stops at the deadline given to cbv_dns_new (CBV_DNS_TEMP,
 * detail "DNS timeout").
 *
 * Kept per process (never per machine):
 *   - c-ares channels, one per (servers, retry timeout), at most
 *     CBV_DNS_CHANNELS_MAX.  Machines running at once share them: each
 *     machine hands out the channel's sockets, the channel reads each
 *     socket once per poll round (a round starts at the first
 *     cbv_dns_pollfds() after a cbv_dns_process()), and every answer goes
 *     to the machine that asked.  A channel of the system resolver is
 *     replaced when /etc/resolv.conf changes (inode, size, mtime); every
 *     channel is replaced in a forked child (getpid()).
 *   - answers (MX, A, AAAA; NOERROR, NODATA, NXDOMAIN) for their TTL, keyed
 *     by (servers, name, type): at most CBV_DNS_TTL_MAX_S, negative answers
 *     and null MX at most CBV_DNS_NEG_TTL_MAX_S (RFC 2308: the SOA's
 *     MINIMUM and TTL; no SOA, no caching).  SERVFAIL, timeouts and other
 *     errors are never kept.
 * c-ares' sockets are ours (ares_set_socket_functions): non-blocking,
 * close-on-exec, and written with MSG_NOSIGNAL, so a server closing a TCP
 * connection can never raise SIGPIPE in the process that embeds us.
 */
#ifndef CBV_DNS_H
#define CBV_DNS_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cbv_limits.h"
#include "cbv_status.h"

enum cbv_dns_outcome {
	CBV_DNS_PENDING,
	CBV_DNS_OK,
	CBV_DNS_NXDOMAIN,  /* the domain does not exist */
	CBV_DNS_NULLMX,    /* RFC 7505: the domain accepts no mail */
	CBV_DNS_NOHOST,    /* exists, but no MX and no A/AAAA (or no MX resolves) */
	CBV_DNS_TEMP       /* SERVFAIL, timeout, ...: try again later */
};

struct cbv_host {
	char name[CBV_DOMAIN_MAX + 1];  /* exchanger name */
	unsigned pref;                  /* MX preference (0 for implicit MX) */
	int implicit;                   /* from the implicit MX rule */
	struct sockaddr_storage addr;   /* port left 0: the caller sets it */
	socklen_t addrlen;
};

struct cbv_dns;

/*
 * Starts resolving domain (lower case, no trailing dot, no literal).
 * servers: "" = system resolver (/etc/resolv.conf); else a list for
 * ares_set_servers_ports_csv ("127.0.0.1:5353,[::1]:53").  deadline_ms is
 * absolute on cbv_now_ms().  Returns a new machine (free with
 * cbv_dns_free()) or NULL with err (CBV_ENOMEM, CBV_ECONFIG for bad
 * servers, CBV_EDNS if c-ares cannot start).
 */
struct cbv_dns *cbv_dns_new(const char *domain, const char *servers,
                            int64_t deadline_ms, struct cbv_err *err);

/*
 * The same for one named host (callout HOST=, mailfromd's hostonly and
 * hostfirst modes): its A and AAAA records only, no MX query.  A name
 * without addresses gives CBV_DNS_NOHOST (or CBV_DNS_NXDOMAIN).
 */
struct cbv_dns *cbv_dns_new_host(const char *host, const char *servers,
                                 int64_t deadline_ms, struct cbv_err *err);

/*
 * Answers shared with other processes (the cache store, cbv_share.c).
 * Consulted after the in-process cache misses, before a query is sent;
 * every answer the in-process cache keeps is offered to put with the same
 * lifetime.  name is the queried name (readable, for the store's key);
 * key (keylen bytes, at most CBV_DNS_SHARED_KEY_MAX) names servers, name
 * and type; values are opaque (at most CBV_DNS_SHARED_VALUE_MAX bytes).
 *   get: copies the value into buf (n bytes) and *ttl_ms its remaining
 *        life; returns its length, 0 if none (or it does not fit).
 *   put: keeps len bytes for ttl_ms.
 * A value taken back is checked as if it came from the network, must
 * name its key, and lives no longer than its own TTLs and our caps allow.
 */
#define CBV_DNS_SHARED_KEY_MAX (CBV_DNS_SERVERS_MAX + CBV_DOMAIN_MAX + 32)
#define CBV_DNS_SHARED_VALUE_MAX (CBV_DNS_SHARED_KEY_MAX + 2 + CBV_DNS_ANSWER_CACHE_MAX)
struct cbv_dns_store {
	size_t (*get)(void *arg, const char *name, const char *key, size_t keylen,
	              unsigned char *buf, size_t n, int64_t *ttl_ms);
	void (*put)(void *arg, const char *name, const char *key, size_t keylen,
	            const unsigned char *data, size_t len, int64_t ttl_ms);
	void *arg;
};

/*
 * cbv_dns_new (host_only 0) or cbv_dns_new_host (1), with store (copied;
 * NULL = none) for answers shared across processes.
 */
struct cbv_dns *cbv_dns_start(const char *name, const char *servers, int64_t deadline_ms,
                              int host_only, const struct cbv_dns_store *store,
                              struct cbv_err *err);

/*
 * Fills at most max pollfds with the sockets c-ares waits on and sets
 * *wake_ms to the absolute time by which cbv_dns_process() must be called
 * even without events (the earlier of c-ares' next retry and the deadline).
 * Returns the number of pollfds filled (0 is valid: only a timer).
 */
int cbv_dns_pollfds(struct cbv_dns *d, struct pollfd *fds, int max,
                    int64_t *wake_ms);

/*
 * Processes poll results for the fds cbv_dns_pollfds() returned (others
 * are ignored), then timeouts.  Call after every poll, events or not.
 */
void cbv_dns_process(struct cbv_dns *d, const struct pollfd *fds, int n);

/*
 * The outcome so far.  When CBV_DNS_OK, *hosts and *nhosts give the ordered
 * list (valid while d lives).  *detail (may be NULL) is a printable
 * explanation for logs and synthesized replies ("MX lookup for x.test:
 * SERVFAIL"); *partial (may be NULL) is 1 if some exchanger's lookup
 * failed temporarily.
 */
enum cbv_dns_outcome cbv_dns_outcome(const struct cbv_dns *d,
                                     const struct cbv_host **hosts,
                                     size_t *nhosts, const char **detail,
                                     int *partial);

/* Cancels outstanding queries and frees; accepts NULL. */
void cbv_dns_free(struct cbv_dns *d);

/* Counters of this process, for tests and benchmarks. */
struct cbv_dns_stats {
	unsigned long queries;    /* queries handed to c-ares */
	unsigned long cache_hits; /* answers taken from the cache */
	unsigned long shared_hits; /* answers taken from the shared store */
	unsigned long channels;   /* c-ares channels created */
	size_t cache_entries;
};
void cbv_dns_stats(struct cbv_dns_stats *out);

/* Forgets every cached answer. */
void cbv_dns_cache_flush(void);

/*
 * Test hooks.  cbv_dns_cache_clock: the clock TTLs are measured on
 * (milliseconds; NULL = cbv_now_ms).  cbv_dns_resolv_conf: the file
 * standing for /etc/resolv.conf (NULL = that one); the path is kept, not
 * copied.
 */
void cbv_dns_cache_clock(int64_t (*now_ms)(void));
void cbv_dns_resolv_conf(const char *path);

/*
 * Frees the idle channels and the cache (channels still in use go when
 * their last machine is freed).  For tests and leak checkers; the next
 * lookup starts afresh.
 */
void cbv_dns_shutdown(void);

#endif
