/*
 * cbv_config_keys.c - the config keys: one row each.
 *
 * Each key of an smtp_cbv block (profile_keys[]) and of the server block
 * (server_keys[]) is one row of struct cbv_key: name, type, where its
 * field lives (offsetof), limits, default, an example and a line of doc.
 * The rows drive the parser, the defaults, cbv_profile_format() (what
 * `cbv check-config` prints) and cbv_profile_set() (cbv.so OPTIONS and
 * `cbv -o`); tests/unit/check_config_keys.c round-trips every row.  A new
 * key is a field in its struct plus one row here, and a line in README's
 * key table and exim-conf/cbv.conf (a test checks both).  The value types
 * are in cbv_config_value.c; checks for string values are below.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cbv_addr.h"
#include "cbv_cache_redis.h"
#include "cbv_config_impl.h"
#include "cbv_map.h"
#include "cbv_reply.h"
#include "cbv_url.h"

/* ---- string checks (cbv_key_check_fn) ---- */

static int valid_name(const char *s, size_t len, const char *extra)
{
	if (len == 0 || len > CBV_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		/* strchr() finds the terminator too: rule '\0' out first. */
		if (ch == '\0' || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		                    (ch >= '0' && ch <= '9') || strchr(extra, ch) != NULL))
			return 0;
	}
	return 1;
}

enum cbv_status cbv_config_check_name(const char *s, size_t len)
{
	return valid_name(s, len, "_-.") ? CBV_OK : CBV_EINVAL;
}

/* MAIL FROM: an RFC 5321 address, "" or "<>" for the null sender. */
static enum cbv_status check_mailfrom(const char *s, size_t len, char *out, size_t n,
                                      struct cbv_err *err)
{
	struct cbv_addr addr;
	enum cbv_status st;

	if (len == 2 && memcmp(s, "<>", 2) == 0)
		len = 0; /* Momentum and Exim write the null sender so */
	if (len > 0 && (st = cbv_addr_parse(s, len, &addr, err)) != CBV_OK)
		return st;
	if (len > CBV_PATH_MAX - 2)
		return cbv_err_set(err, CBV_EINVAL, "address too long");
	return cbv_config_put(s, len, out, n, err);
}

/* EHLO name: a domain, lowercased; "" = the host decides. */
static enum cbv_status check_helo(const char *s, size_t len, char *out, size_t n,
                                  struct cbv_err *err)
{
	char dom[CBV_DOMAIN_MAX + 1];
	enum cbv_status st;

	if (len == 0)
		return cbv_config_put("", 0, out, n, err);
	if ((st = cbv_addr_check_domain(s, len, dom, err)) != CBV_OK)
		return st;
	return cbv_config_put(dom, strlen(dom), out, n, err);
}

/* An ACL name: expanded as ${acl{NAME}}, so '$', '{' or '}' would be code. */
static enum cbv_status check_acl(const char *s, size_t len, char *out, size_t n,
                                 struct cbv_err *err)
{
	char show[SHOW_MAX + 1];

	cbv_sanitize(s, len, show, sizeof(show));
	if (len > 0 && !valid_name(s, len, "_-"))
		return cbv_err_set(err, CBV_EINVAL,
		                   "\"%s\": an ACL name is 1 to %d letters, digits, '_' or '-'",
		                   show, CBV_NAME_MAX);
	return cbv_config_put(s, len, out, n, err);
}

/* A login name; "" keeps the default (Debian-exim or nobody). */
static enum cbv_status check_user(const char *s, size_t len, char *out, size_t n,
                                  struct cbv_err *err)
{
	char show[SHOW_MAX + 1];

	cbv_sanitize(s, len, show, sizeof(show));
	if (len > 0 && !valid_name(s, len, "_-."))
		return cbv_err_set(
			err, CBV_EINVAL,
			"\"%s\": a user name is 1 to %d letters, digits, '_', '-' or '.'", show,
			CBV_NAME_MAX);
	return cbv_config_put(s, len, out, n, err);
}

/* A profile name (checked against the smtp_cbv blocks after the parse). */
static enum cbv_status check_profile(const char *s, size_t len, char *out, size_t n,
                                     struct cbv_err *err)
{
	char show[SHOW_MAX + 1];

	cbv_sanitize(s, len, show, sizeof(show));
	if (len > 0 && !valid_name(s, len, "_-."))
		return cbv_err_set(err, CBV_EINVAL,
		                   "profile name \"%s\": 1 to %d letters, digits, '_', '-' or '.'",
		                   show, CBV_NAME_MAX);
	return cbv_config_put(s, len, out, n, err);
}

/* A callout server to connect to: cbv_url.h's grammar, names allowed. */
static enum cbv_status check_callout_url(const char *s, size_t len, char *out, size_t n,
                                         struct cbv_err *err)
{
	struct cbv_url u;
	enum cbv_status st;

	if (len > 0 && (st = cbv_url_parse(s, len, 0, &u, err)) != CBV_OK)
		return st;
	return cbv_config_put(s, len, out, n, err);
}

/* A cbvd listen URL: the same grammar, numeric hosts only. */
static enum cbv_status check_listen_url(const char *s, size_t len, char *out, size_t n,
                                        struct cbv_err *err)
{
	struct cbv_url u;
	enum cbv_status st;

	if ((st = cbv_url_parse(s, len, CBV_URL_NUMERIC, &u, err)) != CBV_OK)
		return st;
	return cbv_config_put(s, len, out, n, err);
}

/* cbvd's metrics listener: "" (off) or an inet/inet6 URL, numeric hosts only. */
static enum cbv_status check_metrics_url(const char *s, size_t len, char *out, size_t n,
                                         struct cbv_err *err)
{
	struct cbv_url u;
	enum cbv_status st;

	if (len > 0 && (st = cbv_url_parse(s, len, CBV_URL_NUMERIC, &u, err)) != CBV_OK)
		return st;
	if (len > 0 && u.family == AF_UNIX)
		return cbv_err_set(err, CBV_EINVAL, "metrics are served over TCP: "
		                                    "inet://IP:PORT or inet6://[IP6]:PORT");
	return cbv_config_put(s, len, out, n, err);
}

/* An absolute path, or "" for the built-in choice. */
static enum cbv_status check_abs_path(const char *s, size_t len, char *out, size_t n,
                                      struct cbv_err *err)
{
	if (len > 0 && (s[0] != '/' || len >= n))
		return cbv_err_set(err, CBV_EINVAL, "must be an absolute path of at most %zu bytes",
		                   n - 1);
	return cbv_config_put(s, len, out, n, err);
}

/*
 * The cache: an absolute LMDB path, a Redis URL (cbv_cache_redis.h's
 * grammar; credentials never in it: cache_password_file), or "".
 */
static enum cbv_status check_cache(const char *s, size_t len, char *out, size_t n,
                                   struct cbv_err *err)
{
	struct cbv_redis_url u;
	enum cbv_status st;

	if (!cbv_cache_redis_is_url(s, len))
		return check_abs_path(s, len, out, n, err);
	if (len >= n)
		return cbv_err_set(err, CBV_EINVAL, "a Redis URL of at most %zu bytes", n - 1);
	if ((st = cbv_cache_redis_url_parse(s, len, &u, err)) != CBV_OK)
		return st;
	return cbv_config_put(s, len, out, n, err);
}

/* A Redis key prefix: 1 to CBV_NAME_MAX letters, digits and _ - . : / */
static enum cbv_status check_prefix(const char *s, size_t len, char *out, size_t n,
                                    struct cbv_err *err)
{
	char show[SHOW_MAX + 1];

	cbv_sanitize(s, len, show, sizeof(show));
	if (!valid_name(s, len, "_-.:/") || len > CBV_REDIS_PREFIX_MAX)
		return cbv_err_set(err, CBV_EINVAL,
		                   "\"%s\": a prefix is 1 to %d letters, digits, '_', '-', '.', "
		                   "':' or '/'",
		                   show, CBV_REDIS_PREFIX_MAX);
	return cbv_config_put(s, len, out, n, err);
}

/* An absolute LMDB path for the Redis fallback, or "". */
static enum cbv_status check_fallback(const char *s, size_t len, char *out, size_t n,
                                      struct cbv_err *err)
{
	if (cbv_cache_redis_is_url(s, len))
		return cbv_err_set(err, CBV_EINVAL, "the fallback is a local LMDB path, not Redis");
	return check_abs_path(s, len, out, n, err);
}

/* ---- the tables ---- */

#define PF(f)                                                                                      \
	.offset = offsetof(struct cbv_profile, f), .size = sizeof(((struct cbv_profile *)0)->f)
#define SF(f)                                                                                      \
	.offset = offsetof(struct cbv_server_conf, f),                                             \
	.size = sizeof(((struct cbv_server_conf *)0)->f)
#define STR_(x) #x
#define STR(x)  STR_(x)

static const char *const starttls_words[] = { "never", "opportunistic", "ondemand", "require",
	                                      NULL };
static const char *const phase_words[] = { "connect", "ehlo", "mailfrom", "rcptto", "data", NULL };

/* The smtp_cbv keys, in DESIGN.md's order (which check-config prints). */
static const struct cbv_key profile_keys[] = {
	{ .name = "mailfrom",
	  .type = CBV_KEY_STRING,
	  PF(mailfrom),
	  .check = check_mailfrom,
	  .example = "probe@example.com",
	  .doc = "MAIL FROM; \"\" = null sender <>" },
	{ .name = "helo",
	  .type = CBV_KEY_STRING,
	  PF(helo),
	  .check = check_helo,
	  .example = "mx.example.com",
	  .doc = "EHLO name; \"\" = Exim's $primary_hostname (CLI: FQDN)" },
	{ .name = "port",
	  .type = CBV_KEY_PORT,
	  PF(port),
	  .min = 1,
	  .max = 65535,
	  .def = STR(CBV_PORT_DEFAULT),
	  .example = "2525",
	  .doc = "SMTP port of the MX hosts" },
	{ .name = "timeout",
	  .type = CBV_KEY_MS,
	  PF(timeout_ms),
	  .min = 1,
	  .max = CBV_TIMEOUT_MAX_MS,
	  .def = STR(CBV_TIMEOUT_DEFAULT_MS) "ms",
	  .example = "1m30s",
	  .doc = "overall deadline, DNS and every host" },
	{ .name = "connect_timeout",
	  .type = CBV_KEY_MS,
	  PF(connect_timeout_ms),
	  .min = 1,
	  .max = CBV_TIMEOUT_MAX_MS,
	  .def = STR(CBV_CONNECT_TIMEOUT_DEFAULT_MS) "ms",
	  .example = "5s",
	  .doc = "TCP connect, per host" },
	{ .name = "command_timeout",
	  .type = CBV_KEY_MS,
	  PF(command_timeout_ms),
	  .min = 1,
	  .max = CBV_TIMEOUT_MAX_MS,
	  .def = STR(CBV_COMMAND_TIMEOUT_DEFAULT_MS) "ms",
	  .example = "2500ms",
	  .doc = "greeting and each reply" },
	{ .name = "max_hosts",
	  .type = CBV_KEY_UINT,
	  PF(max_hosts),
	  .min = 1,
	  .max = CBV_HOSTS_MAX,
	  .def = STR(CBV_MAX_HOSTS_DEFAULT),
	  .example = "2",
	  .doc = "MX addresses tried at most" },
	{ .name = "starttls",
	  .type = CBV_KEY_ENUM,
	  .offset = offsetof(struct cbv_profile, starttls),
	  .words = starttls_words,
	  .def = "opportunistic",
	  .example = "require",
	  .doc = "never | opportunistic | ondemand | require" },
	{ .name = "dns_servers",
	  .type = CBV_KEY_DNS,
	  PF(dns_servers),
	  .example = "127.0.0.1:5353 ::1",
	  .doc = "\"\" = system resolver; \"127.0.0.1:5353,[::1]:53\"" },
	{ .name = "deny_networks",
	  .type = CBV_KEY_NETS,
	  .offset = offsetof(struct cbv_profile, deny),
	  .count_offset = offsetof(struct cbv_profile, ndeny),
	  .max = CBV_DENY_MAX,
	  .def = "nonglobal",
	  .example = "127.0.0.0/8 ::1",
	  .doc = "never connect here; nonglobal = every non-global range (IANA)" },
	{ .name = "vars_acl",
	  .type = CBV_KEY_STRING,
	  PF(vars_acl),
	  .check = check_acl,
	  .example = "acl_cbv_vars",
	  .doc = "ACL expanded after each verification" },
	{ .name = "callout_url",
	  .type = CBV_KEY_STRING,
	  PF(callout_url),
	  .check = check_callout_url,
	  .example = "inet://[::1]:3535",
	  .doc = "default callout server for `callout`" },
	{ .name = "map",
	  .type = CBV_KEY_MAP,
	  .offset = offsetof(struct cbv_profile, map),
	  .example = "[ a.example = \"b.example\" \"^(.+)\\.c\\.example$\" = \"$1.d.example\" ]",
	  .doc = "domain rewrites: exact, *.wildcard or ^PCRE2" },
	{ .name = "phase",
	  .type = CBV_KEY_ENUM,
	  PF(phase),
	  .words = phase_words,
	  .def = "mailfrom",
	  .example = "rcptto",
	  .doc = "accepted for Momentum configs; the ACL is the phase" },
	{ .name = "tls_verify",
	  .type = CBV_KEY_BOOL,
	  .offset = offsetof(struct cbv_profile, tls_verify),
	  .def = "no",
	  .example = "yes",
	  .doc = "verify the MX certificate" },
	{ .name = "ca_dir",
	  .type = CBV_KEY_STRING,
	  PF(ca_dir),
	  .check = check_abs_path,
	  .example = "/etc/ssl/certs",
	  .doc = "\"\" = OpenSSL's default CA directory" },
	{ .name = "cache",
	  .type = CBV_KEY_STRING,
	  PF(cache),
	  .check = check_cache,
	  .def = "\"" CBV_CACHE_PATH_DEFAULT "\"",
	  .example = "/var/lib/cbv/cache",
	  .doc = "LMDB verification cache shared by every process, or redis://HOST:PORT[/DB] "
	         "or redis+unix:///PATH[?db=N] for a fleet; \"\" = off" },
	{ .name = "cache_size",
	  .type = CBV_KEY_SIZE,
	  .offset = offsetof(struct cbv_profile, cache_size),
	  .min = 1024 * 1024,
	  .max = 1024ULL * 1024 * 1024 * 1024,
	  .def = "256M",
	  .example = "1G",
	  .doc = "LMDB map size (the most the cache file can grow to)" },
	{ .name = "cache_pass_ttl",
	  .type = CBV_KEY_SECS,
	  PF(cache_pass_ttl),
	  .max = CBV_CACHE_TTL_MAX_S,
	  .def = "24h",
	  .example = "12h",
	  .doc = "how long a pass is remembered; 0 = never stored" },
	{ .name = "cache_fail_ttl",
	  .type = CBV_KEY_SECS,
	  PF(cache_fail_ttl),
	  .max = CBV_CACHE_TTL_MAX_S,
	  .def = "2h",
	  .example = "1h",
	  .doc = "how long a fail is remembered; 0 = never stored" },
	{ .name = "cache_error_ttl",
	  .type = CBV_KEY_SECS,
	  PF(cache_error_ttl),
	  .max = CBV_CACHE_TTL_MAX_S,
	  .def = "1h",
	  .example = "30m",
	  .doc = "how long an error is remembered; 0 = never stored" },
	{ .name = "cache_transient_ttl",
	  .type = CBV_KEY_SECS,
	  PF(cache_transient_ttl),
	  .max = CBV_CACHE_TTL_MAX_S,
	  .def = "0",
	  .example = "1m",
	  .doc = "how long a transient is remembered; 0 = never (a greylisted sender retries)" },
	{ .name = "cache_domain_ttl",
	  .type = CBV_KEY_SECS,
	  PF(cache_domain_ttl),
	  .max = CBV_CACHE_TTL_MAX_S,
	  .def = "3h",
	  .example = "1h",
	  .doc = "negative domain record: the MX refuses the null sender" },
	{ .name = "cache_unreachable_ttl",
	  .type = CBV_KEY_SECS,
	  PF(cache_unreachable_ttl),
	  .max = CBV_CACHE_TTL_MAX_S,
	  .def = "10m",
	  .example = "30m",
	  .doc = "negative domain record: every host unreachable" },
	{ .name = "cache_catchall_ttl",
	  .type = CBV_KEY_SECS,
	  PF(cache_catchall_ttl),
	  .max = CBV_CACHE_TTL_MAX_S,
	  .def = "7d",
	  .example = "1d",
	  .doc = "domain record: the domain accepts any local part" },
	{ .name = "cache_refresh",
	  .type = CBV_KEY_BOOL,
	  .offset = offsetof(struct cbv_profile, cache_refresh),
	  .def = "no",
	  .example = "yes",
	  .doc = "verify again and overwrite the record (per call)" },
	{ .name = "cache_tls_sessions",
	  .type = CBV_KEY_BOOL,
	  .offset = offsetof(struct cbv_profile, cache_tls_sessions),
	  .def = "yes",
	  .example = "no",
	  .doc = "keep TLS sessions in the cache for other processes to resume (they hold secrets)" },
	{ .name = "cache_dns",
	  .type = CBV_KEY_BOOL,
	  .offset = offsetof(struct cbv_profile, cache_dns),
	  .def = "yes",
	  .example = "no",
	  .doc = "keep DNS answers (MX, A, AAAA) in the cache for their TTL, for other processes" },
	{ .name = "cache_timeout",
	  .type = CBV_KEY_MS,
	  PF(cache_timeout_ms),
	  .min = 1,
	  .max = 10000,
	  .def = "100ms",
	  .example = "50ms",
	  .doc = "Redis: connect and each reply; past it the call runs uncached" },
	{ .name = "cache_fallback",
	  .type = CBV_KEY_STRING,
	  PF(cache_fallback),
	  .check = check_fallback,
	  .example = "/var/spool/exim4/db/cbv",
	  .doc = "Redis: local LMDB store used while Redis is down; \"\" = uncached" },
	{ .name = "cache_password_file",
	  .type = CBV_KEY_STRING,
	  PF(cache_password_file),
	  .check = check_abs_path,
	  .example = "/etc/exim4/cbv-redis.secret",
	  .doc = "Redis: file holding the AUTH password (mode 0600 or 0400); \"\" = no AUTH" },
	{ .name = "cache_prefix",
	  .type = CBV_KEY_STRING,
	  PF(cache_prefix),
	  .check = check_prefix,
	  .def = "\"cbv:\"",
	  .example = "mx-eu:",
	  .doc = "Redis: prefix of every key, so a shared Redis holds other things too" },
	{ .name = "catchall_probe",
	  .type = CBV_KEY_BOOL,
	  .offset = offsetof(struct cbv_profile, catchall_probe),
	  .def = "no",
	  .example = "yes",
	  .doc = "also RCPT a random local part: is the domain a catch-all?" },
	{ .name = "session_reuse",
	  .type = CBV_KEY_BOOL,
	  .offset = offsetof(struct cbv_profile, session_reuse),
	  .def = "yes",
	  .example = "no",
	  .doc = "keep a clean session open for the next RCPT of this process" },
	{ .name = "session_idle",
	  .type = CBV_KEY_MS,
	  PF(session_idle_ms),
	  .min = 1,
	  .max = CBV_TIMEOUT_MAX_MS,
	  .def = "10s",
	  .example = "30s",
	  .doc = "a parked session unused this long is closed (QUIT) at the next call" },
	{ .name = "domain_max_concurrency",
	  .type = CBV_KEY_UINT,
	  PF(domain_max_concurrency),
	  .max = CBV_CAP_MAX,
	  .def = "4",
	  .example = "2",
	  .doc = "callouts at once per target domain, all processes; 0 = unlimited" },
	{ .name = "domain_max_rate",
	  .type = CBV_KEY_RATE,
	  .offset = offsetof(struct cbv_profile, domain_max_rate),
	  .max = CBV_CAP_MAX,
	  .def = "60/1m",
	  .example = "3/1m",
	  .doc = "callouts per window per target domain, all processes; 0 = unlimited" },
	{ .name = "host_max_concurrency",
	  .type = CBV_KEY_UINT,
	  PF(host_max_concurrency),
	  .max = CBV_CAP_MAX,
	  .def = "8",
	  .example = "4",
	  .doc = "sessions at once per MX address, all processes; 0 = unlimited" },
};

/* The server { } block (cbvd). */
static const struct cbv_key server_keys[] = {
	{ .name = "listen",
	  .type = CBV_KEY_LIST,
	  .offset = offsetof(struct cbv_server_conf, listen),
	  .size = CBV_URL_MAX + 1,
	  .count_offset = offsetof(struct cbv_server_conf, nlisten),
	  .max = CBV_LISTEN_MAX,
	  .check = check_listen_url,
	  .example = "[ \"unix:///run/cbvd.sock\" \"inet6://[::1]:3535\" ]",
	  .doc = "unix:///PATH, inet://IP:PORT or inet6://[IP6]:PORT" },
	{ .name = "max_clients",
	  .type = CBV_KEY_UINT,
	  SF(max_clients),
	  .min = 1,
	  .max = CBV_SERVER_CLIENTS_MAX,
	  .def = "256",
	  .example = "10",
	  .doc = "connections; more are told NO and closed" },
	{ .name = "max_inflight",
	  .type = CBV_KEY_UINT,
	  SF(max_inflight),
	  .min = 1,
	  .max = CBV_SERVER_INFLIGHT_MAX,
	  .def = "1024",
	  .example = "20",
	  .doc = "verifications running at once; more queue" },
	{ .name = "user",
	  .type = CBV_KEY_STRING,
	  SF(user),
	  .check = check_user,
	  .example = "Debian-exim",
	  .doc = "\"\" = Debian-exim if it exists, else nobody" },
	{ .name = "profile",
	  .type = CBV_KEY_STRING,
	  SF(profile),
	  .check = check_profile,
	  .example = "default",
	  .doc = "smtp_cbv block used for requests; \"\" = the default" },
	{ .name = "allow_remote",
	  .type = CBV_KEY_BOOL,
	  .offset = offsetof(struct cbv_server_conf, allow_remote),
	  .def = "no",
	  .example = "yes",
	  .doc = "yes: inet listen on non-loopback addresses" },
	{ .name = "metrics_listen",
	  .type = CBV_KEY_STRING,
	  SF(metrics_listen),
	  .check = check_metrics_url,
	  .example = "\"inet://127.0.0.1:9464\"",
	  .doc = "Prometheus metrics over HTTP (GET /metrics); \"\" = off" },
	{ .name = "metrics_allow_remote",
	  .type = CBV_KEY_BOOL,
	  .offset = offsetof(struct cbv_server_conf, metrics_allow_remote),
	  .def = "no",
	  .example = "yes",
	  .doc = "yes: metrics_listen on a non-loopback address" },
};

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))

const struct cbv_key *cbv_profile_keys(size_t *n)
{
	*n = NKEYS(profile_keys);
	return profile_keys;
}

const struct cbv_key *cbv_server_keys(size_t *n)
{
	*n = NKEYS(server_keys);
	return server_keys;
}

/* ---- profiles ---- */

/* Fills p with the table's defaults: profile "default", no map. */
void cbv_profile_defaults(struct cbv_profile *p)
{
	memset(p, 0, sizeof(*p));
	strcpy(p->name, "default");
	p->map = NULL;
	cbv_config_keys_defaults(profile_keys, NKEYS(profile_keys), p);
}

/* Copies src to dst, taking a new reference on the map. */
void cbv_profile_copy(struct cbv_profile *dst, const struct cbv_profile *src)
{
	*dst = *src;
	dst->map = cbv_map_ref(src->map);
}

/* Drops p's map reference; accepts NULL. */
void cbv_profile_clear(struct cbv_profile *p)
{
	if (p == NULL)
		return;
	cbv_map_free(p->map);
	p->map = NULL;
}

/*
 * Sets key from value text with the file's value syntax.  Returns CBV_OK,
 * CBV_ECONFIG ("KEY: what") or CBV_ENOMEM; p is unchanged on error.
 */
enum cbv_status cbv_profile_set(struct cbv_profile *p, const char *key, const char *value,
                                struct cbv_err *err)
{
	char keyshow[SHOW_MAX + 1];
	char show[SHOW_MAX + 8];
	struct cbv_profile tmp;
	const struct cbv_key *k;
	struct lexer lx;
	size_t len;
	enum cbv_status st;

	if (key == NULL)
		key = "";
	if (value == NULL)
		value = "";
	cbv_sanitize(key, strnlen(key, SHOW_MAX), keyshow, sizeof(keyshow));
	k = cbv_config_key_find(profile_keys, NKEYS(profile_keys), key);
	if (k == NULL)
		return cbv_err_set(err, CBV_ECONFIG, "%s: unknown key", keyshow);
	len = strnlen(value, CBV_CONFIG_FILE_MAX + 1);
	if (len > CBV_CONFIG_FILE_MAX)
		return cbv_err_set(err, CBV_ECONFIG, "%s: value too long", keyshow);
	cbv_profile_copy(&tmp, p);
	cbv_config_lx_init(&lx, value, len, keyshow, err);
	lx.set_mode = 1;
	lx.key = k->name;
	if ((st = cbv_config_lx_prescan(&lx)) != CBV_OK)
		goto done;
	if ((st = cbv_config_key_parse(&lx, k, &tmp)) != CBV_OK)
		goto done;
	if ((st = cbv_config_lx_next(&lx)) != CBV_OK)
		goto done;
	if (lx.tok.type != TOK_EOF)
		st = cbv_config_lx_error(&lx, lx.tok.line, lx.tok.col,
		                         "unexpected %s after the value",
		                         cbv_config_lx_show(&lx, show, sizeof(show)));
done:
	if (st == CBV_OK) {
		cbv_profile_clear(p);
		*p = tmp;
	} else {
		cbv_profile_clear(&tmp);
	}
	return st;
}

/* Returns p as an smtp_cbv block in a new string (cbv_free()); NULL on ENOMEM. */
char *cbv_profile_format(const struct cbv_profile *p)
{
	char head[CBV_NAME_MAX + 16];

	/* Profile names are letters, digits, '_', '-', '.': nothing to escape. */
	snprintf(head, sizeof(head), "smtp_cbv \"%s\"", p->name);
	return cbv_config_keys_format(profile_keys, NKEYS(profile_keys), p, head);
}

/* Fills s with the server block's defaults. */
void cbv_server_conf_defaults(struct cbv_server_conf *s)
{
	memset(s, 0, sizeof(*s));
	cbv_config_keys_defaults(server_keys, NKEYS(server_keys), s);
}

/* Returns s as a server block in a new string (cbv_free()); NULL on ENOMEM. */
char *cbv_server_conf_format(const struct cbv_server_conf *s)
{
	return cbv_config_keys_format(server_keys, NKEYS(server_keys), s, "server");
}
