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
 * Keys: mailfrom helo port timeout connect_timeout command_timeout
 * max_hosts starttls dns_servers deny_networks vars_acl callout_url map
 * phase tls_verify ca_dir.  Durations take Exim's form (30s, 2m, 1h,
 * 1m30s, a bare number is seconds).  Unknown keys, duplicate blocks and any
 * malformed value are errors; a config with any error is refused whole.
 * Errors read "FILE:LINE:COL: what".
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
 *   }
 */
#ifndef CBV_CONFIG_H
#define CBV_CONFIG_H

#include <stddef.h>

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
	struct cbv_cidr deny[CBV_DENY_MAX];
	size_t ndeny;
	char vars_acl[CBV_NAME_MAX + 1];
	char callout_url[CBV_URL_MAX + 1];
	char phase[CBV_NAME_MAX + 1];
	struct cbv_map *map;               /* owned reference; NULL = no map */
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
};

struct cbv_config;

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
 * just the default profile and *missing = 1 (missing may be NULL).
 * Returns a new config (free with cbv_config_free()) or NULL with err
 * filled: CBV_ECONFIG "FILE:LINE:COL: what" or CBV_ENOMEM.
 */
struct cbv_config *cbv_config_load(const char *path, int *missing,
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

/* Number of profiles and the i-th, for check-config. */
size_t cbv_config_count(const struct cbv_config *c);
const struct cbv_profile *cbv_config_at(const struct cbv_config *c, size_t i);

/*
 * Parses an Exim-style duration ("30s", "2m", "1h30m", "500ms", bare
 * number = seconds) into milliseconds, 0 < result <= CBV_TIMEOUT_MAX_MS.
 * Returns CBV_OK or CBV_EINVAL.
 */
enum cbv_status cbv_duration_parse(const char *s, size_t len, unsigned *ms,
                                   struct cbv_err *err);

/* Parses a decimal unsigned in [min, max], no sign, no junk. */
enum cbv_status cbv_uint_parse(const char *s, size_t len, unsigned min,
                               unsigned max, unsigned *out, struct cbv_err *err);

#endif
