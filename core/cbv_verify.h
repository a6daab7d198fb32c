/*
 * cbv_verify.h - one callback verification from address to verdict.
 *
 * Orchestrates the other modules (DESIGN.md "Algorithm"): parse the
 * address and sender, apply the map, look the domain up (cbv_dns), drop
 * addresses in deny_networks, try hosts in order with one cbv_session
 * each, and turn what happened into a verdict.  This is the only module
 * that decides what a reply or a failure means.
 *
 * Like the session it is a non-blocking machine (pollfds/process), so the
 * callout server can run thousands at once; cbv_verify() runs one to
 * completion with poll(2) for cbv.so and the CLI.
 *
 * The cache and abuse controls (cbv_cache.h; profile key cache, "" = off).
 * The process keeps one handle per store path (at most 8 paths), opened
 * on first use and again after fork.  After the address, the sender and
 * the map are known and before any DNS:
 *   1. lookup (skipped with cache_refresh): the address record, else a
 *      domain fact (catch-all -> pass/catch_all, refuses the null sender
 *      -> error/sender_refused, every host unreachable ->
 *      transient/connect_failed).  A hit is the stored result whole (last
 *      poll, message, elapsed time of the original callout) with cache = 1,
 *      age = seconds since it was stored, and address and rcpt the
 *      request's own; nothing is sent.
 *   2. single flight per key across processes: while another verification
 *      of the key runs, wait (wake time every 50 ms, never sleeping) until
 *      its result is stored (a hit), its holder dies or its lease ends, or
 *      our own deadline passes (transient/timeout, nothing sent).
 *   3. domain caps (domain_max_concurrency, domain_max_rate, per domain
 *      after the map): over one, transient/rate_limited "451 4.7.0 ...
 *      CAP reached", nothing sent, nothing stored.
 *   4. per host: host_max_concurrency per MX IP; a host at its cap is
 *      skipped; all of them skipped: transient/rate_limited.
 *   5. after the verdict: stored for its verdict's TTL (0 = not stored;
 *      transient by default), with the domain fact it implies; never a
 *      rate_limited result, a transient one when a capped host was
 *      skipped, or our own failure to start a session.
 * The key: domain after the map, local part as sent, MAIL FROM used,
 * port, and a fingerprint of starttls, tls_verify, ca_dir, dns_servers,
 * deny_networks, max_hosts, the request's host and mode (when a host is
 * used) and catchall_probe (see key_build(); not the helo, which differs
 * per host of a fleet).  A store
 * that cannot be used never fails a verification: it runs uncached and
 * the result says cache_use OFF.  catchall_probe = yes (and no record
 * answered): the session also RCPTs cbv-probe-<16 random hex>@domain; a
 * 2xx to both makes the verdict pass/catch_all (sent, recv and message
 * stay the real RCPT's), stored as a domain fact.
 * On a Redis store in a process that asked for non-blocking calls
 * (cbv_cache_async_set(1): cbvd), the machine waits for each cache call
 * like for DNS: its pollfds then hold the store's connection, shared
 * with the other machines; the answers are the same.
 */
#ifndef CBV_VERIFY_H
#define CBV_VERIFY_H

#include <poll.h>
#include <stdint.h>

#include "cbv_config.h"
#include "cbv_log.h"
#include "cbv_result.h"
#include "cbv_status.h"

/*
 * Where to call out (mailfromd's VRFY MODE=): the domain's MX hosts,
 * an explicit host, or both in either order.  Without a host, every mode
 * but hostonly means "the MX hosts".
 */
enum cbv_host_mode {
	CBV_MODE_MXFIRST = 0, /* MX hosts, then the host (default) */
	CBV_MODE_MXONLY,      /* MX hosts only; the host is ignored */
	CBV_MODE_HOSTFIRST,   /* the host, then the MX hosts */
	CBV_MODE_HOSTONLY     /* the host only, no MX lookup */
};

struct cbv_request {
	const char *address;      /* untrusted; required */
	const char *host;         /* NULL, or a host name or IP address to call out to */
	enum cbv_host_mode mode;  /* how host combines with the MX hosts */
	const char *sender;       /* NULL: the profile's mailfrom; "" = <> */
	const char *default_helo; /* used when the profile's helo is ""; NULL = "localhost" */
	cbv_trace_fn *trace;      /* transcript hook, may be NULL */
	void *trace_arg;
	/* Groups only: address i's own trace_arg (n of them), so that each
	 * sees the lines its own session would show (cbv_tracemux.h); NULL:
	 * trace_arg gets every session's lines as sent. */
	void *const *trace_args;
};

/* Most pollfds a verification asks for at once (DNS sockets or one session). */
#define CBV_VERIFY_POLLFDS_MAX 32

struct cbv_verify;

/*
 * Starts a verification under profile p (copied: p may go away).  Returns
 * a new machine (free with cbv_verify_free()) or NULL with err
 * (CBV_ENOMEM; CBV_EINVAL if req->address is NULL, or if req->mode is
 * CBV_MODE_HOSTONLY without a host).  Bad address syntax
 * is not an error here: the machine is returned already done with
 * fail/bad_syntax, and nothing was sent.
 */
struct cbv_verify *cbv_verify_new(const struct cbv_profile *p,
                                  const struct cbv_request *req,
                                  struct cbv_err *err);

/*
 * Fills at most max pollfds (CBV_VERIFY_POLLFDS_MAX is always enough) and
 * *wake_ms, the absolute time by which cbv_verify_process() must be called
 * anyway.  Returns the count (0 with a wake time is valid), or -1 if done.
 */
int cbv_verify_pollfds(struct cbv_verify *v, struct pollfd *fds, int max,
                       int64_t *wake_ms);

/* Advances with the results of poll() on the fds cbv_verify_pollfds() gave. */
void cbv_verify_process(struct cbv_verify *v, const struct pollfd *fds, int n);

/* 1 once the verdict is known. */
int cbv_verify_done(const struct cbv_verify *v);

/*
 * Hands over the result (caller frees with cbv_result_free()); NULL if not
 * done or already taken.
 */
struct cbv_result *cbv_verify_take_result(struct cbv_verify *v);

/* Aborts if not done (connections closed at once) and frees.  NULL ok. */
void cbv_verify_free(struct cbv_verify *v);

/*
 * Synchronous verification: runs the machine with poll(2) until done.
 * Returns CBV_OK and *out (free with cbv_result_free()) for every
 * verification outcome, including bad syntax; CBV_ENOMEM or CBV_EINVAL
 * (with err) only when no verification could be made.
 */
enum cbv_status cbv_verify(const struct cbv_profile *p,
                           const struct cbv_request *req,
                           struct cbv_result **out, struct cbv_err *err);

/*
 * Groups: several addresses under one profile and request (its address is
 * ignored), at most CBV_RCPTS_MAX.  Each address is a verification of its
 * own (syntax, map, cache lookup, single flight, caps, store: per
 * address); those that reach DNS with the same domain after the map, or
 * with CBV_MODE_HOSTONLY and no catch-all probe (the same host for all),
 * and the same SMTPUTF8 need, share the lookup and one SMTP session per host:
 * one MAIL FROM and one RCPT each, pipelined when offered.  Each gets the
 * verdict, reason, message and last poll (its own RCPT and reply) it
 * would get alone: a RCPT reply decides only its address, a MAIL
 * refusal or a failed host counts for every address still open, and the
 * undecided ones go on to the next host together, under the overall
 * deadline.  The machine API mirrors the single one; results by index.
 */
struct cbv_verify_group;

/* Returns a new group (free with cbv_verify_group_free()) or NULL with err
 * (CBV_ENOMEM; CBV_EINVAL: no address, more than CBV_RCPTS_MAX, or as
 * cbv_verify_new()). */
struct cbv_verify_group *cbv_verify_group_new(const struct cbv_profile *p,
                                              const struct cbv_request *req,
                                              const char *const *addresses, size_t n,
                                              struct cbv_err *err);

/* As cbv_verify_pollfds(); n * CBV_VERIFY_POLLFDS_MAX is always enough. */
int cbv_verify_group_pollfds(struct cbv_verify_group *g, struct pollfd *fds, int max,
                             int64_t *wake_ms);
void cbv_verify_group_process(struct cbv_verify_group *g, const struct pollfd *fds, int n);
int cbv_verify_group_done(const struct cbv_verify_group *g);

/* Address i's result (free with cbv_result_free()); NULL if not done or taken. */
struct cbv_result *cbv_verify_group_take_result(struct cbv_verify_group *g, size_t i);
void cbv_verify_group_free(struct cbv_verify_group *g);

/*
 * Synchronous group: out[0..n-1] get one result each (free each with
 * cbv_result_free()), in the order of addresses.  Statuses as cbv_verify().
 */
enum cbv_status cbv_verify_multi(const struct cbv_profile *p, const struct cbv_request *req,
                                 const char *const *addresses, size_t n,
                                 struct cbv_result **out, struct cbv_err *err);

/*
 * Does now, with no connection, what the first verification with p would
 * do once per process: with STARTTLS possible (starttls is not never),
 * the OpenSSL context for p's TLS policy and OpenSSL's own lazy set-up
 * (about 2-4 ms of CPU with OpenSSL 3.0).  Opens no socket, no file
 * but p's CA directory and starts no thread: a process may call it and
 * then fork (Exim's daemon, for its connection processes: see cbv.so's
 * preload).  CBV_OK, or CBV_ETLS / CBV_ENOMEM with err.
 */
enum cbv_status cbv_verify_preload(const struct cbv_profile *p, struct cbv_err *err);

/*
 * Ends what the process keeps between verifications: the parked sessions
 * of session_reuse get QUIT (never waiting for the 221).  Also run at
 * exit (atexit); a forked child never touches its parent's.  The next
 * verification starts afresh.  Defined in cbv_hold.c.
 */
void cbv_verify_shutdown(void);

/*
 * For a long-lived process (cbvd), now and then: QUIT on the parked
 * sessions past their idle limit (session_idle), which would otherwise
 * wait for the next verification.  Returns when to call it again
 * (cbv_now_ms()), INT64_MAX if nothing is parked.
 */
int64_t cbv_verify_idle(void);

#endif
