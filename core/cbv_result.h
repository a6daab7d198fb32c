/*
 * cbv_result.h - the outcome of one verification: verdict, reason word,
 * DSN-shaped message, and the last poll record (mailfromd's last_poll_*,
 * kept richer).  Every string is NUL-terminated and printable except for
 * '\n' between the lines of a multi-line reply; remote text has been
 * sanitized (controls and 8-bit bytes -> '?') before it gets here.
 * How a reply becomes a verdict is core-private: cbv_result_impl.h.
 */
#ifndef CBV_RESULT_H
#define CBV_RESULT_H

#include <stddef.h>

enum cbv_verdict {
	CBV_PASS,      /* an MX accepted RCPT TO */
	CBV_FAIL,      /* the address is known bad */
	CBV_TRANSIENT, /* try again later */
	CBV_ERROR      /* the check itself was refused or impossible */
};

/*
 * Reason words (DESIGN.md "Verdicts"): one enum, one name table
 * (cbv_reason_name()).  README, the man pages and docs/verdicts.md list
 * them; tests/unit/check_reason.c checks those lists against the table.
 */
enum cbv_reason {
	CBV_R_ACCEPTED,
	CBV_R_MAILBOX_UNKNOWN,
	CBV_R_MAILBOX_DISABLED,
	CBV_R_MAILBOX_FULL,
	CBV_R_BAD_SYNTAX,
	CBV_R_NO_DOMAIN,
	CBV_R_NULL_MX,
	CBV_R_NO_MAIL_HOST,
	CBV_R_POLICY_REFUSED,
	CBV_R_SENDER_REFUSED,
	CBV_R_GREETING_REFUSED,
	CBV_R_TLS_REQUIRED,
	CBV_R_TLS_FAILED,
	CBV_R_GREYLISTED,
	CBV_R_TEMP_FAILURE,
	CBV_R_TIMEOUT,
	CBV_R_CONNECT_FAILED,
	CBV_R_DNS_FAILURE,
	CBV_R_FORBIDDEN_TARGET,
	CBV_R_PROTOCOL_ERROR,
	CBV_R_CATCH_ALL,      /* pass: the domain accepts any local part (cache issue) */
	CBV_R_RATE_LIMITED,   /* transient: over a per-domain or per-host cap, nothing sent */
	CBV_R_COUNT
};

/* The word for r ("accepted", ...); "protocol_error" for a bad value. */
const char *cbv_reason_name(enum cbv_reason r);

/* The reason named word, or -1 if there is none. */
int cbv_reason_parse(const char *word);

struct cbv_result {
	enum cbv_verdict verdict;
	enum cbv_reason reason; /* cbv_reason_name(): "accepted", "mailbox_unknown", ... */
	char *message;       /* full DSN: remote reply or synthesized, never NULL */
	int code;            /* deciding SMTP code (remote or synthesized) */
	char ecode[16];      /* RFC 3463 enhanced code or "" */
	char *address;       /* the address as given (sanitized) */
	char *rcpt;          /* what was sent in RCPT TO (after the map) */
	char *sender;        /* what was sent in MAIL FROM ("" = <>) */
	/* last poll */
	char *host;          /* MX name of the last host tried, "" if none */
	char *ip;            /* "ip:port" / "[ip6]:port", "" if none */
	char *greeting;      /* full greeting, "" if none */
	char *helo;          /* full EHLO/HELO reply, "" if none */
	char *sent;          /* last command sent, "" if none */
	char *recv;          /* last reply received (full), "" if none */
	char tls[128];       /* "TLSv1.3:CIPHER:unverified" or "" */
	unsigned long elapsed_ms;
	unsigned hosts_tried;
	int cache;           /* 1 if the answer came from the cache, else 0 */
	unsigned long age;   /* cache hit: seconds since the callout; else 0 */
	enum cbv_cache_use {
		CBV_CACHE_USE_OFF, /* no cache configured, or it was unusable */
		CBV_CACHE_USE_MISS,
		CBV_CACHE_USE_HIT
	} cache_use;         /* for the log: cache=off|miss|hit */
};

/* Returns a new result with every string "" (free with cbv_result_free()), NULL on ENOMEM. */
struct cbv_result *cbv_result_new(void);

/* Frees; accepts NULL. */
void cbv_result_free(struct cbv_result *r);

/* Replaces one of r's strings (*field) with a copy of s.  CBV-style: 0 or -1 (ENOMEM). */
int cbv_result_set(char **field, const char *s);

/*
 * Returns a new result for an outcome nothing remote decided (bad input,
 * a callout server lost, ...): verdict, reason, code, ecode as given,
 * message "CODE ECODE text" (text sanitized), address (sanitized; NULL =
 * "").  Free with cbv_result_free(); NULL on ENOMEM.
 */
struct cbv_result *cbv_result_synth(const char *address, enum cbv_verdict v,
                                    enum cbv_reason reason, int code, const char *ecode,
                                    const char *text);

/* "pass" "fail" "transient" "error". */
const char *cbv_verdict_name(enum cbv_verdict v);

/* mailfromd's names: "success" "not_found" "temp_failure" "failure". */
const char *cbv_verdict_mfd_name(enum cbv_verdict v);

/* The last_poll field names, NULL-terminated: status reason message host ip
 * greeting helo sent recv ecode tls elapsed cache age. */
extern const char *const cbv_result_fields[];

/*
 * Writes the value of field name into buf (size n, truncated) and returns
 * buf, or NULL if there is no such field.  Numbers are decimal.
 */
const char *cbv_result_field(const struct cbv_result *r, const char *name,
                             char *buf, size_t n);

/*
 * mailfromd's view of the last poll (its last_poll_host, _greeting,
 * _helo, _sent, _recv variables, as callout.mfl fills them from
 * calloutd's lines): name is one of "last_poll_host", "last_poll_greeting",
 * "last_poll_helo", "last_poll_sent", "last_poll_recv"; the value is the
 * first line only, and "nothing" for an empty sent or recv.  Writes it
 * into buf (size n, truncated) and returns buf, or NULL for another name.
 */
const char *cbv_result_mfd_field(const struct cbv_result *r, const char *name, char *buf,
                                 size_t n);

/*
 * Returns a pointer to r's string for a text field (no copy; valid while r
 * lives), or NULL for a numeric/unknown field.
 */
const char *cbv_result_text(const struct cbv_result *r, const char *name);

#endif
