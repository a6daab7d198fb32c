/*
 * cbv_limits.h - every size and time limit of exim-cbv in one place.
 *
 * Each bound on untrusted input names the RFC text it follows or the reason
 * we are more lenient than the RFC.  Nothing in core/ reads peer or user
 * input without one of these bounds.
 */
#ifndef CBV_LIMITS_H
#define CBV_LIMITS_H

/* RFC 5321 4.5.3.1.1: local part at most 64 octets. */
#define CBV_LOCALPART_MAX 64
/* RFC 5321 4.5.3.1.2: domain at most 255 octets. */
#define CBV_DOMAIN_MAX 255
/* RFC 5321 4.5.3.1.3: path (with the angle brackets) at most 256 octets. */
#define CBV_PATH_MAX 256
/* RFC 1035 2.3.4: a DNS label is at most 63 octets. */
#define CBV_LABEL_MAX 63

/* RFC 5321 4.5.3.1.5 says 512 octets a reply line: lenient, never unbounded. */
#define CBV_REPLY_LINE_MAX 2048
/* Lines in one multi-line reply (RFC 5321 sets no limit; we do). */
#define CBV_REPLY_LINES_MAX 64
/* Bytes of one reply kept for the result and the log. */
#define CBV_REPLY_KEEP_MAX 16384
/* Receive buffer: one maximal line plus its CRLF, plus room for a second. */
#define CBV_BUF_SIZE (2 * CBV_REPLY_LINE_MAX + 4)
/* A command line we send: "RCPT TO:<" path ">" params CRLF, RFC 5321 4.5.3.1.4 (512). */
#define CBV_CMD_MAX 512

/* Addresses kept after DNS (all exchangers' A and AAAA records together). */
#define CBV_HOSTS_MAX 64
/* recipients in one SMTP transaction of a group verification (RFC 5321
 * 4.5.3.1.8 requires servers to take at least 100; we stay well below) */
#define CBV_RCPTS_MAX 32
/* MX records looked at in one answer. */
#define CBV_MX_MAX 32

/* Config file: size, line length, number of map entries and profiles. */
#define CBV_CONFIG_FILE_MAX (1024 * 1024)
#define CBV_CONFIG_LINE_MAX 4096
#define CBV_CONFIG_PROFILES_MAX 64
#define CBV_MAP_ENTRIES_MAX 4096
#define CBV_DENY_MAX 64
#define CBV_NAME_MAX 64
#define CBV_DNS_SERVERS_MAX 512
#define CBV_URL_MAX 512
/* Verifying TLS contexts kept at once, one per distinct ca_dir. */
#define CBV_TLS_CTX_MAX 4
/*
 * TLS sessions kept for resumption in one process (least recently used
 * goes first), the largest serialized session kept (one leaf certificate
 * and a ticket; RFC 8446 4.6.1 allows tickets up to 2^16-1 octets, we keep
 * none that big), and how long at most, in seconds, whatever the server's
 * lifetime says (RFC 8446 4.6.1: 7 days): a resumed session is not checked
 * against the CA directory again, so a verified one must not grow old.
 */
#define CBV_TLS_SESSIONS_MAX 64
#define CBV_TLS_SESSION_BYTES_MAX 8192
#define CBV_TLS_SESSION_TTL_MAX (2 * 3600)

/* PCRE2 limits for map regexes: a pathological pattern costs at most this. */
#define CBV_PCRE2_MATCH_LIMIT 100000
#define CBV_PCRE2_DEPTH_LIMIT 1000
/* Number of capture groups usable in a map replacement: $1..$9. */
#define CBV_MAP_GROUPS_MAX 9

/* Time limits, milliseconds.  Defaults match DESIGN.md's cbv.conf. */
#define CBV_TIMEOUT_DEFAULT_MS 30000
#define CBV_CONNECT_TIMEOUT_DEFAULT_MS 10000
#define CBV_COMMAND_TIMEOUT_DEFAULT_MS 10000
#define CBV_TIMEOUT_MAX_MS (24 * 3600 * 1000)
#define CBV_MAX_HOSTS_DEFAULT 5
#define CBV_PORT_DEFAULT 25

/* The verification cache (core/cbv_cache.h): next to Exim's own hints. */
#ifndef CBV_CACHE_PATH_DEFAULT
#define CBV_CACHE_PATH_DEFAULT "/var/spool/exim4/db/cbv"
#endif
/* Longest cache lifetime a key accepts: one year, seconds. */
#define CBV_CACHE_TTL_MAX_S (366U * 24 * 3600)
/* Largest per-domain or per-host cap (concurrency, or events per window). */
#define CBV_CAP_MAX 100000
/*
 * DNS kept in process (cbv_dns): c-ares channels, one per (dns_servers,
 * retry timeout), and answers cached for their TTL (RFC 1035 3.2.1),
 * bounded in count and bytes.  Negative answers (RFC 2308 5: the SOA
 * MINIMUM and TTL) and RFC 7505 null MX are kept at most 5 minutes.
 */
#define CBV_DNS_CHANNELS_MAX 8
#define CBV_DNS_CACHE_MAX 1024
#define CBV_DNS_CACHE_BYTES_MAX (1024 * 1024)
#define CBV_DNS_ANSWER_CACHE_MAX 4096
#define CBV_DNS_TTL_MAX_S 3600
#define CBV_DNS_NEG_TTL_MAX_S 300

#endif
