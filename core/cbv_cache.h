/*
 * cbv_cache.h - the verification cache and the abuse controls, in one
 * LMDB file shared by every process on the host (each Exim process, cbvd,
 * the cbv tool).  It remembers verdicts (per address, and facts about
 * whole domains) and holds the cross-process controls: single flight per
 * address key, per-domain concurrency and rate caps, per-MX-IP
 * concurrency caps.
 *
 * Never worse than no cache.  Every call answers CBV_CACHE_OFF when the
 * store cannot be used (missing or unwritable directory, a file that is not
 * LMDB, another format version, a full map after reclaiming, out of
 * memory): the caller then runs uncached and without caps.  Each kind of
 * failure is logged once per process (ERR), never more.  Expired records
 * are never returned.  Nothing here sleeps: a call that must wait answers
 * BUSY or LIMITED with a wake time and the caller polls again (a write
 * transaction can wait for another process's, which lasts microseconds;
 * LMDB's robust mutex frees it if that process dies).
 *
 * Files.  The store is one file (MDB_NOSUBDIR) plus "PATH-lock", opened
 * lazily on first use and re-opened in a forked child (an LMDB
 * environment must not cross fork(); the parent's is left alone, not
 * closed, in the child).  A missing store is created when its directory
 * exists: the files are made with O_EXCL|O_NOFOLLOW, mode 0660, and, when
 * running as root, owned by the directory's owner and group before LMDB
 * sees them, so `cbv` run as root never leaves a cache Exim cannot open.
 * Root also opens them with that owner's file-system identity (setfsuid)
 * and symlinks are refused, so a link planted in the Exim-owned directory
 * cannot make root write elsewhere.
 * 0660 rather than 0640: every process that opens an LMDB store writes its
 * lock file (reader table) and the cache is written by each user of it,
 * so cbvd or an administrator's `cbv` running as another member of the
 * Exim group needs group write.  The directory (/var/spool/exim4/db is
 * 0750 Debian-exim) keeps everybody else out.  Only one handle per path
 * per process (LMDB's rule: its fcntl locks are per process).  Writes are
 * not fsync'ed per transaction (MDB_NOSYNC, like Exim's own hints files):
 * a host crash may lose recent records, never answers.
 *
 * Keys.  An address key is 'A', the domain after the map (lower-cased),
 * NUL, and SHA-256 over the length-prefixed local part as sent, MAIL FROM
 * used, port and profile fingerprint: the domain stays readable for
 * listing and forgetting a domain; a collision needs a SHA-256 collision,
 * so no crafted local part can share another address's record.  Domain
 * facts are 'D' keys over the same fields without the local part.
 *
 * TTLs are the caller's (seconds, 0 = never stored).  Times come from the
 * wall clock in ms, or a clock the caller injects (tests).
 *
 * Fleets.  A path "redis://HOST:PORT[/DB]" or "redis+unix:///PATH[?db=N]"
 * puts the same calls, records and meanings on one Redis shared by many
 * MX hosts (cbv_cache_redis.h; options with cbv_cache_set_options()).
 * OFF then also means Redis is down, slow or refusing us (logged once per
 * outage, retried with backoff), unless a local LMDB fallback is set.
 * Tickets of the Redis backend have their top bit set; the others are the
 * fallback's, so each ends where it was taken.
 */
#ifndef CBV_CACHE_H
#define CBV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "cbv_cache_rec.h"
#include "cbv_limits.h"
#include "cbv_result.h"
#include "cbv_status.h"
#include "cbv_stats.h"

/* Defaults the config table will use. */
#define CBV_CACHE_PATH_DEFAULT "/var/spool/exim4/db/cbv"
#define CBV_CACHE_MAP_DEFAULT ((size_t)256 * 1024 * 1024)
#define CBV_CACHE_MAP_MIN ((size_t)64 * 1024)
/* Profile fingerprint bytes hashed into a key, at most. */
#define CBV_CACHE_FP_MAX 4096

enum cbv_cache_status {
	CBV_CACHE_OFF = 0, /* store unusable (logged once) or not there: run uncached */
	CBV_CACHE_MISS,    /* lookup: nothing (or nothing valid) stored */
	CBV_CACHE_HIT,     /* lookup: *out filled */
	CBV_CACHE_OK,      /* store done, slot or token taken */
	CBV_CACHE_OWN,     /* flight: you verify; end with store or flight_end */
	CBV_CACHE_BUSY,    /* flight: another verification runs; poll again */
	CBV_CACHE_READY,   /* flight: a result is stored; lookup now */
	CBV_CACHE_LIMITED  /* a cap is reached; *which says which */
};

/*
 * What identifies one answer: everything that can change it.  A key with
 * a field out of bounds (no domain or local part, domain over 255 bytes,
 * local part or sender over 256, port over 65535, fingerprint over
 * CBV_CACHE_FP_MAX, sender NULL) is never cached: calls with it say OFF.
 */
struct cbv_cache_key {
	const char *domain;  /* after the map; compared case-insensitively */
	const char *local;   /* local part as sent in RCPT TO */
	const char *sender;  /* MAIL FROM used; "" = <> */
	unsigned port;
	/*
	 * Profile settings that affect the verdict (starttls, tls_verify, host
	 * mode and host, helo, max_hosts, deny_networks, ...), as bytes the
	 * caller builds in a fixed way, e.g. "starttls=1 mode=0 host=": any
	 * difference gives another key.  fp_len <= CBV_CACHE_FP_MAX.
	 */
	const void *fp;
	size_t fp_len;
};

/* Lifetimes in seconds; 0 = not stored. */
struct cbv_cache_ttl {
	unsigned pass, fail, error, transient;
	unsigned domain;      /* domain facts: sender refused */
	unsigned catchall;    /* domain fact: catch-all */
	unsigned unreachable; /* domain fact: every host unreachable */
};

/* Issue 7's defaults: 24h 2h 1h 0 3h 7d; unreachable 10 minutes. */
void cbv_cache_ttl_defaults(struct cbv_cache_ttl *t);

enum cbv_cache_limit {
	CBV_LIMIT_NONE,
	CBV_LIMIT_DOMAIN_CONCURRENCY,
	CBV_LIMIT_DOMAIN_RATE,
	CBV_LIMIT_HOST_CONCURRENCY
};

/* "domain_max_concurrency", "domain_max_rate", "host_max_concurrency". */
const char *cbv_cache_limit_name(enum cbv_cache_limit l);

struct cbv_cache;

/*
 * Returns a new handle for the store at path (nothing is opened yet; the
 * first call that needs the store opens it), map_size bytes of map (0 =
 * CBV_CACHE_MAP_DEFAULT, at least CBV_CACHE_MAP_MIN).  NULL on ENOMEM or
 * an empty path.  Free with cbv_cache_free().
 */
struct cbv_cache *cbv_cache_new(const char *path, size_t map_size);

/*
 * Redis (path "redis://HOST:PORT[/DB]" or "redis+unix:///PATH[?db=N]"):
 * the same calls, the same records and meanings, shared by every host
 * using that Redis (cbv_cache_redis.h).  These options apply to it; an
 * LMDB handle ignores them.  NULL or 0 fields keep the defaults.
 */
struct cbv_cache_opts {
	unsigned timeout_ms;       /* connect and each reply; 0 = 100 ms */
	const char *prefix;        /* key prefix; "" = "cbv:" */
	const char *password_file; /* AUTH secret, a file only its owner can read */
	const char *fallback;      /* LMDB path used while Redis is down; "" = none */
};

/* Sets o on c (before its first use).  0, or -1 on ENOMEM or a bad option. */
int cbv_cache_set_options(struct cbv_cache *c, const struct cbv_cache_opts *o);

/* 1 if path names a Redis store (redis:// or redis+unix://). */
int cbv_cache_is_redis(const char *path);

/*
 * Reads a cache_password_file as the Redis store would (owner-only mode,
 * one line, bounded) and forgets the secret: CBV_OK, or CBV_ECONFIG with
 * err saying why (`cbv check-config`).
 */
enum cbv_status cbv_cache_secret_check(const char *path, struct cbv_err *err);

/* Closes (in the process that opened it) and frees; accepts NULL. */
void cbv_cache_free(struct cbv_cache *c);

/* Injects the wall clock in ms (tests); NULL restores the real one. */
void cbv_cache_set_clock(struct cbv_cache *c, int64_t (*now_ms)(void *arg),
                         void *arg);

/* Opens the store if needed.  1 if usable, 0 if OFF (logged once). */
int cbv_cache_usable(struct cbv_cache *c);

/*
 * The lookup before DNS: the address record, else a domain fact
 * (catch-all -> pass; sender refused -> error; unreachable -> transient).
 * HIT: *out is a new result with cache = 1 (free with cbv_result_free())
 * and *age_s the seconds since it was stored (age_s may be NULL).  MISS
 * or OFF: *out = NULL.  A damaged or other-version record is a MISS (one
 * log line per process).
 */
enum cbv_cache_status cbv_cache_lookup(struct cbv_cache *c,
                                       const struct cbv_cache_key *k,
                                       struct cbv_result **out,
                                       unsigned long *age_s);

/*
 * The store after the verdict: writes r under k for the TTL of its
 * verdict, and the domain fact it implies (reason sender_refused with the
 * null sender, catch_all, connect_failed) for that fact's TTL; with a
 * ticket from cbv_cache_flight_begin() also ends that flight, in the same
 * transaction (ticket 0: no flight).  OK if written or if the TTL said
 * not to; OFF if the store is unusable (the flight, if any, is ended).
 */
enum cbv_cache_status cbv_cache_store(struct cbv_cache *c,
                                      const struct cbv_cache_key *k,
                                      const struct cbv_result *r,
                                      const struct cbv_cache_ttl *ttl,
                                      uint64_t ticket);

/*
 * Single flight for key k, lease_s seconds at most (the verification's
 * overall timeout plus a margin).  OWN: *ticket identifies the lease;
 * verify and call cbv_cache_store() or cbv_cache_flight_end().  BUSY:
 * another live process (or another verification of this one) holds it
 * until *wake_ms; poll again sooner (e.g. every 50 ms).  READY: a
 * record (address or domain) answers k: call cbv_cache_lookup().  A
 * lease whose pid is gone (kill(pid, 0) says ESRCH) or whose time is up
 * is taken over.  wake_ms may be NULL.
 */
enum cbv_cache_status cbv_cache_flight_begin(struct cbv_cache *c,
                                             const struct cbv_cache_key *k,
                                             unsigned lease_s, uint64_t *ticket,
                                             int64_t *wake_ms);

/* Ends a flight without a result (error paths).  Only ticket's lease goes. */
void cbv_cache_flight_end(struct cbv_cache *c, const struct cbv_cache_key *k,
                          uint64_t ticket);

/* Caps; 0 in a field = unlimited. */
struct cbv_cache_caps {
	unsigned domain_concurrency; /* default 4 */
	unsigned rate_count;         /* default 60 ... */
	unsigned rate_window_s;      /* ... per 60 s */
	unsigned host_concurrency;   /* default 8 */
	unsigned lease_s;            /* a slot's longest life (overall timeout + margin) */
};

void cbv_cache_caps_defaults(struct cbv_cache_caps *caps);

/*
 * Takes a concurrency slot and a rate token for domain (after the map),
 * both or neither, in one transaction.  OK: *ticket identifies the slot
 * (release with cbv_cache_domain_release()).  LIMITED: *which says which
 * cap and *wake_ms when a slot or token is due.  OFF: run without caps.
 * Slots of dead pids and expired slots are reclaimed.  which and wake_ms
 * may be NULL.
 */
enum cbv_cache_status cbv_cache_domain_acquire(struct cbv_cache *c,
                                               const char *domain,
                                               const struct cbv_cache_caps *caps,
                                               uint64_t *ticket, int64_t *wake_ms,
                                               enum cbv_cache_limit *which);
void cbv_cache_domain_release(struct cbv_cache *c, const char *domain,
                              uint64_t ticket);

/* The same for one MX IP address (text form, as in the result's ip). */
enum cbv_cache_status cbv_cache_host_acquire(struct cbv_cache *c, const char *ip,
                                             const struct cbv_cache_caps *caps,
                                             uint64_t *ticket, int64_t *wake_ms);
void cbv_cache_host_release(struct cbv_cache *c, const char *ip, uint64_t ticket);

/* ---- maintenance, for `cbv cache` ---- */

/* One stored result, decoded; valid only during the callback. */
struct cbv_cache_entry {
	const char *domain;          /* from the key */
	int expired;                 /* 1 if expired (kept until purged) */
	struct cbv_cache_rec rec;    /* kind, verdict, strings, times */
};

/* Return 0 to go on, anything else to stop. */
typedef int cbv_cache_each_fn(const struct cbv_cache_entry *e, void *arg);

/*
 * Calls fn for each result record (address records and domain facts) in
 * key order, of one domain or all (domain NULL), expired ones included
 * and marked.  Damaged records are skipped (counted in stats).  Returns
 * the number of records visited, or -1 if OFF.
 */
long cbv_cache_each(struct cbv_cache *c, const char *domain,
                    cbv_cache_each_fn *fn, void *arg);

/*
 * Deletes the records of one address (local != NULL: every address
 * record at domain whose RCPT local part is local, whatever the sender
 * or profile) or of a whole domain (local NULL: its address records,
 * domain facts, leases and caps).  Returns the count deleted, -1 if OFF.
 */
long cbv_cache_forget(struct cbv_cache *c, const char *domain, const char *local);

/*
 * Deletes expired records and stale leases, in short transactions so
 * writers are never held up long.  Returns the count deleted, -1 if OFF.
 */
long cbv_cache_purge(struct cbv_cache *c);

struct cbv_cache_stats {
	unsigned long by_kind[CBV_CACHE_KIND_MAX + 1];  /* result records */
	unsigned long by_verdict[CBV_ERROR + 1];        /* address records */
	unsigned long expired;    /* result records past their expiry */
	unsigned long damaged;    /* values that do not decode */
	unsigned long leases;     /* flight and slot values */
	unsigned long buckets;    /* rate buckets */
	unsigned long long file_bytes; /* size of the data file */
	unsigned long long map_bytes;  /* map size */
	unsigned long long used_bytes; /* pages in use * page size */
};

/* Fills *st.  Returns 0, or -1 if OFF. */
int cbv_cache_stats(struct cbv_cache *c, struct cbv_cache_stats *st);

/*
 * Counters for operators (cbv_stats.h), kept in the store because cbv.so
 * processes are short-lived.  cbv_cache_count() adds ev's fields to what
 * this handle writes next: an LMDB cbv_cache_store() writes them in its
 * own transaction; cbv_cache_count_flush() writes what is left (one small
 * transaction; on Redis, HINCRBYs sent without awaiting a reply, so a hit
 * costs no extra round trip; the first in a process is followed by an
 * awaited PING, and a server refusing CLIENT REPLY gets no counters).  Redis down: the counts are dropped, the
 * outage itself is counted when Redis is back.  LMDB keys 'S' NAME hold
 * a uint64 (little-endian); Redis keeps the hash P "S".
 */
void cbv_cache_count(struct cbv_cache *c, const struct cbv_stats_event *ev);
void cbv_cache_count_flush(struct cbv_cache *c);

/* The store's counters into *st (zeroed first).  0, or -1 if OFF. */
int cbv_cache_counters(struct cbv_cache *c, struct cbv_stats *st);

/*
 * Derives the binary key of k into out (cap >= CBV_CACHE_KEY_MAX); kind
 * 'A' (address) or 'D' (domain facts).  Returns its length or 0 if k is
 * out of bounds.  Exposed for tests and the `cbv cache show` listing.
 */
#define CBV_CACHE_KEY_MAX (1 + CBV_DOMAIN_MAX + 1 + 32)
size_t cbv_cache_key_derive(const struct cbv_cache_key *k, char kind,
                            unsigned char *out, size_t cap);

/* ---- blobs: other modules' state shared across processes ---- */

/*
 * A blob is up to CBV_CACHE_BLOB_MAX opaque bytes with an expiry (wall
 * clock, ms), stored as a checked value (cbv_cache_rec.h) under
 *   kind label NUL sha256("cbv-" kind "1", name)
 * kind 'T' (a TLS session, cbv_share.c) or 'N' (a DNS answer); label a
 * readable part (the MX IP or the domain, 1..255 bytes, lower-cased);
 * name every byte that identifies the blob (at most
 * CBV_CACHE_BLOB_NAME_MAX).  On Redis: P kind ":" label ":" hex(sha256),
 * with Redis's own expiry.  The owner validates the bytes again: a blob
 * only promises that they are whole, of this kind and not expired.
 * Purge drops expired blobs; maintenance listings do not show them.
 */
#define CBV_CACHE_BLOB_NAME_MAX 1024

/* The binary key of a blob into out (cap >= CBV_CACHE_KEY_MAX); 0 if bad. */
size_t cbv_cache_blob_key(char kind, const char *label, const void *name, size_t name_len,
                          unsigned char *out, size_t cap);

/*
 * HIT: the blob's bytes copied into buf (cap bytes of room), *len and
 * *expires_ms set.  MISS: none, expired, damaged, of another version or
 * larger than cap (damage logged once).  OFF: the store is unusable.
 */
enum cbv_cache_status cbv_cache_blob_get(struct cbv_cache *c, char kind, const char *label,
                                         const void *name, size_t name_len,
                                         unsigned char *buf, size_t cap, size_t *len,
                                         int64_t *expires_ms);

/*
 * Keeps len bytes until expires_ms (wall clock ms), replacing what was
 * there.  OK (also when expires_ms has passed: nothing kept), or OFF.
 */
enum cbv_cache_status cbv_cache_blob_put(struct cbv_cache *c, char kind, const char *label,
                                         const void *name, size_t name_len,
                                         const void *data, size_t len, int64_t expires_ms);

/* Forgets a blob (nothing if OFF). */
void cbv_cache_blob_del(struct cbv_cache *c, char kind, const char *label, const void *name,
                        size_t name_len);

/* The handle's wall clock in ms (the injected one in tests). */
int64_t cbv_cache_now_ms(const struct cbv_cache *c);

#endif
