/*
 * cbv_config.h - cbv.conf: Momentum-style smtp_cbv blocks -> profiles.
 *
 * Syntax (a Momentum smtp_cbv block pastes in as is):
 *
 *   # comment to end of line
 *   smtp_cbv "default" {
 *     key = value          # bare word, "quoted string" (\" \\ escapes) or
 *     key = [ a b "c" ]    # list; map lists hold  PATTERN = "REPLACEMENT"
 *   }
 *   smtp_cbv { ... }       # unnamed block: named "default"
 *
 * The keys, their types, limits, defaults and docs are the rows of one
 * table, cbv_profile_keys() (the server block's: cbv_server_keys()); the
 * parser, the defaults, cbv_profile_format() and cbv_profile_set() all
 * walk it, so a new key is one row plus its field.  Durations take Exim's
 * form (30s, 2m, 1h, 1m30s, a bare number is seconds).  Unknown keys,
 * duplicate blocks and any malformed value are errors; a config with any
 * error is refused whole.  Errors read "FILE:LINE:COL: what".
 *
 * The profile named "default", else the first block, is the default.
 *
 * One optional top-level block configures the callout server, cbvd:
 *
 *   server {
 *     listen = [ "unix:///run/cbvd.sock" "inet://127.0.0.1:3535" ]
 *     max_clients = 256      # connections; more are told "NO" and closed
 *     max_inflight = 1024    # verifications running at once; more queue
 *     user = "Debian-exim"   # "" = Debian-exim if it exists, else nobody
 *     profile = "default"    # smtp_cbv block used for requests
 *     allow_remote = no      # yes: inet listen on non-loopback addresses
 *     metrics_listen = ""    # "inet://127.0.0.1:9464": Prometheus metrics over HTTP
 *     metrics_allow_remote = no  # yes: metrics_listen on a non-loopback address
 *   }
 */
#ifndef CBV_CONFIG_H
#define CBV_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "cbv_cidr.h"
#include "cbv_limits.h"
#include "cbv_status.h"

struct cbv_map;

enum cbv_starttls {
	CBV_STARTTLS_NEVER,
	CBV_STARTTLS_OPPORTUNISTIC, /* use when offered; fall back to plain if the handshake fails */
	CBV_STARTTLS_ONDEMAND,      /* plain, but retry with TLS after 530 (RFC 3207) */
	CBV_STARTTLS_REQUIRE        /* no TLS offered or handshake fails: error/tls_required */
};

/* A rate limit: count events per per_ms milliseconds; count 0 = unlimited. */
struct cbv_rate {
	unsigned count;
	unsigned per_ms;
};

/* One smtp_cbv block with every key resolved to its effective value. */
struct cbv_profile {
	char name[CBV_NAME_MAX + 1];
	char mailfrom[CBV_PATH_MAX + 1];   /* "" = null sender <> */
	char helo[CBV_DOMAIN_MAX + 1];     /* "" = host decides (Exim: primary_hostname) */
	unsigned port;
	unsigned timeout_ms;               /* overall deadline */
	unsigned connect_timeout_ms;
	unsigned command_timeout_ms;       /* greeting and each reply */
	unsigned max_hosts;
	enum cbv_starttls starttls;
	int tls_verify;                    /* 1: verify the MX certificate (default 0: opportunistic) */
	char ca_dir[CBV_URL_MAX + 1];      /* "" = OpenSSL's default CA directory */
	char dns_servers[CBV_DNS_SERVERS_MAX + 1]; /* "" = system; "127.0.0.1:5353,[::1]:53" */
	struct cbv_cidr deny[CBV_DENY_MAX]; /* default: cbv_cidr_nonglobal() ("nonglobal") */
	size_t ndeny;
	char vars_acl[CBV_NAME_MAX + 1];
	char callout_url[CBV_URL_MAX + 1];
	char phase[CBV_NAME_MAX + 1];
	struct cbv_map *map;               /* owned reference; NULL = no map */
	/* The verification cache and abuse controls (core/cbv_cache.h). */
	char cache[CBV_PATH_MAX + 1];      /* LMDB file; "" = no cache, no caps */
	uint64_t cache_size;               /* LMDB map size, bytes */
	unsigned cache_pass_ttl;           /* seconds each; 0 = never stored */
	unsigned cache_fail_ttl;
	unsigned cache_error_ttl;
	unsigned cache_transient_ttl;
	unsigned cache_domain_ttl;         /* domain refuses the null sender */
	unsigned cache_unreachable_ttl;    /* every host of the domain unreachable */
	unsigned cache_catchall_ttl;
	int cache_refresh;                 /* 1: verify again and overwrite the record */
	int cache_tls_sessions;            /* 1: TLS sessions shared through the cache */
	int cache_dns;                     /* 1: DNS answers shared through the cache */
	/* The Redis backend (cache = "redis://..."; core/cbv_cache_redis.h). */
	unsigned cache_timeout_ms;                  /* connect and each reply */
	char cache_fallback[CBV_PATH_MAX + 1];      /* LMDB while Redis is down; "" = none */
	char cache_password_file[CBV_PATH_MAX + 1]; /* AUTH secret; "" = no AUTH */
	char cache_prefix[CBV_NAME_MAX + 1];        /* key prefix */
	int catchall_probe;                /* 1: also RCPT a random local part */
	int session_reuse;                 /* 1: park clean sessions for later RCPTs (cbv_hold.h) */
	unsigned session_idle_ms;          /* a parked session's idle limit */
	unsigned domain_max_concurrency;   /* callouts at once per domain; 0 = unlimited */
	struct cbv_rate domain_max_rate;   /* callouts per window per domain; 0 = unlimited */
	unsigned host_max_concurrency;     /* sessions at once per MX IP; 0 = unlimited */
};

/* Listen URLs in one server block. */
#define CBV_LISTEN_MAX 16
/* Bounds of max_clients and max_inflight. */
#define CBV_SERVER_CLIENTS_MAX 65536
#define CBV_SERVER_INFLIGHT_MAX 65536

/* The server { } block, with defaults for what it does not set. */
struct cbv_server_conf {
	char listen[CBV_LISTEN_MAX][CBV_URL_MAX + 1]; /* checked URLs */
	size_t nlisten;
	unsigned max_clients;          /* default 256 */
	unsigned max_inflight;         /* default 1024 */
	char user[CBV_NAME_MAX + 1];   /* "" = Debian-exim if it exists, else nobody */
	char profile[CBV_NAME_MAX + 1]; /* "" = the default profile; else exists */
	int allow_remote;              /* default 0: loopback and UNIX only */
	char metrics_listen[CBV_URL_MAX + 1]; /* "" = off; inet://IP:PORT or inet6:// */
	int metrics_allow_remote;      /* default 0: metrics_listen on loopback only */
};

struct cbv_config;

/*
 * Value types of a key row.  The C type of the field each one writes is
 * given; the row's min and max bound the value in the unit shown.
 */
enum cbv_key_type {
	CBV_KEY_STRING, /* char[size]; row.check validates and canonicalizes */
	CBV_KEY_BOOL,   /* int 0/1: yes no true false 1 0 (caseless) */
	CBV_KEY_UINT,   /* unsigned, [min, max] */
	CBV_KEY_PORT,   /* unsigned, 1..65535 */
	CBV_KEY_MS,     /* unsigned milliseconds: 30s, 1m30s, 500ms; [min, max] ms */
	CBV_KEY_SECS,   /* unsigned seconds: 24h, 7d, 2w (no ms); [min, max] s */
	CBV_KEY_SIZE,   /* uint64_t bytes: 4096, 64K, 256M, 2G (1024-based); [min, max] */
	CBV_KEY_RATE,   /* struct cbv_rate: N/DURATION (60/1m), 0 = unlimited; N <= max */
	CBV_KEY_ENUM,   /* row.words: int index when size is 0, else the word in char[size] */
	CBV_KEY_NETS,   /* struct cbv_cidr[max] + size_t count at count_offset */
	CBV_KEY_DNS,    /* char[size]: DNS servers, canonical "ip:port,[ip6]:port" */
	CBV_KEY_LIST,   /* char[max][size] + size_t count; each item through row.check */
	CBV_KEY_MAP     /* struct cbv_map * (owned reference) */
};


/*
 * Checks a string value s[0..len) and writes its canonical form into out
 * (n bytes).  CBV_OK, or CBV_EINVAL with err->msg (without the key name).
 */
typedef enum cbv_status cbv_key_check_fn(const char *s, size_t len, char *out, size_t n,
                                         struct cbv_err *err);

/*
 * One config key: a row of cbv_profile_keys() or cbv_server_keys().  def
 * and example are written as in cbv.conf and parsed by the same code as
 * the file, so a default can never be a value the parser would refuse.
 */
struct cbv_key {
	const char *name;
	enum cbv_key_type type;
	size_t offset;           /* offsetof() the field in its struct */
	size_t size;             /* sizeof the field (STRING, ENUM word, DNS); LIST item */
	size_t count_offset;     /* NETS, LIST: offsetof() the size_t count */
	unsigned long long min, max; /* numbers (unit of the type); NETS, LIST: max items */
	const char *const *words;    /* ENUM: NULL-terminated */
	cbv_key_check_fn *check;     /* STRING, LIST items; NULL = any printable text */
	const char *def;             /* default value; NULL = empty / zero */
	const char *example;         /* a valid value other than def (tests, docs) */
	const char *doc;             /* one line for check-config and the docs */
};

/* The smtp_cbv keys, in cbv_profile_format() order; *n gets the count. */
const struct cbv_key *cbv_profile_keys(size_t *n);

/* The server block's keys; *n gets the count. */
const struct cbv_key *cbv_server_keys(size_t *n);

/* Fills p with the built-in defaults (DESIGN.md), name "default", no map. */
void cbv_profile_defaults(struct cbv_profile *p);

/* Copies src into dst taking a new map reference.  dst must not own one. */
void cbv_profile_copy(struct cbv_profile *dst, const struct cbv_profile *src);

/* Drops the map reference.  The struct itself is the caller's. */
void cbv_profile_clear(struct cbv_profile *p);

/*
 * Sets one key from text, with the same names and value syntax as
 * cbv.conf (value "" clears lists: "deny_networks=" gives no networks;
 * lists may be written "[ a b ]" or space/comma-separated; "map" takes
 * "[ pat = \"rep\" ... ]").  Used by `cbv -o` and the dlfunc OPTIONS.
 * Returns CBV_OK or CBV_ECONFIG with err->msg "KEY: what"; p is unchanged
 * on error.
 */
enum cbv_status cbv_profile_set(struct cbv_profile *p, const char *key,
                                const char *value, struct cbv_err *err);

/*
 * Writes the effective values as cbv.conf text (a complete smtp_cbv block)
 * into a new string; free with cbv_free().  NULL on ENOMEM.
 */
char *cbv_profile_format(const struct cbv_profile *p);

/*
 * Reads and parses a file.  A missing file (ENOENT) gives a config with
 * just the default profile and *missing = 1 (missing may be NULL), but
 * only when missing_ok is set: a file the admin named explicitly (cbv.so
 * OPTIONS config=, cbv -c, cbvd -c) must exist, and ENOENT is then
 * CBV_ECONFIG "PATH: No such file or directory".  Only the built-in
 * default path is loaded with missing_ok.  Returns a new config (free
 * with cbv_config_free()) or NULL with err filled: CBV_ECONFIG
 * "FILE:LINE:COL: what" or CBV_ENOMEM.
 */
struct cbv_config *cbv_config_load(const char *path, int missing_ok, int *missing,
                                   struct cbv_err *err);

/* Parses len bytes of text; name is used in error messages. */
struct cbv_config *cbv_config_parse(const char *text, size_t len,
                                    const char *name, struct cbv_err *err);

/* Frees the config and its profiles; accepts NULL. */
void cbv_config_free(struct cbv_config *c);

/*
 * Returns the profile called name, or the default profile when name is
 * NULL or "".  NULL if no such profile.  Valid while c lives.
 */
const struct cbv_profile *cbv_config_profile(const struct cbv_config *c,
                                             const char *name);

/*
 * The server block (the defaults when the file has none).  Never NULL for
 * a non-NULL config; valid while c lives.
 */
const struct cbv_server_conf *cbv_config_server(const struct cbv_config *c);

/* Fills s with the server block's defaults. */
void cbv_server_conf_defaults(struct cbv_server_conf *s);

/* Writes s as a server { } block into a new string (cbv_free()); NULL on ENOMEM. */
char *cbv_server_conf_format(const struct cbv_server_conf *s);

/* Number of profiles and the i-th, for check-config. */
size_t cbv_config_count(const struct cbv_config *c);
const struct cbv_profile *cbv_config_at(const struct cbv_config *c, size_t i);

/*
 * Parses an Exim-style duration ("30s", "2m", "1h30m", "500ms", bare
 * number = seconds) into milliseconds, 0 < result <= CBV_TIMEOUT_MAX_MS.
 * Returns CBV_OK or CBV_EINVAL.  (CBV_KEY_MS with min 1, max
 * CBV_TIMEOUT_MAX_MS.)
 */
enum cbv_status cbv_duration_parse(const char *s, size_t len, unsigned *ms,
                                   struct cbv_err *err);

/* Parses a decimal unsigned in [min, max], no sign, no junk. */
enum cbv_status cbv_uint_parse(const char *s, size_t len, unsigned min,
                               unsigned max, unsigned *out, struct cbv_err *err);

#endif
