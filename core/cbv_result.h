/*
 * cbv_result.h - the outcome of one verification: verdict, reason word,
 * DSN-shaped message, and the last poll record (mailfromd's last_poll_*,
 * kept richer).  Every string is NUL-terminated and printable except for
 * '\n' between the lines of a multi-line reply; remote text has been
 * sanitized (controls and 8-bit bytes -> '?') before it gets here.
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

struct cbv_result {
	enum cbv_verdict verdict;
	const char *reason;  /* static word: "accepted", "mailbox_unknown", ... */
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
	int cache;           /* 1 if the answer came from a cache */
};

/* Returns a new result with every string "" (free with cbv_result_free()), NULL on ENOMEM. */
struct cbv_result *cbv_result_new(void);

/* Frees; accepts NULL. */
void cbv_result_free(struct cbv_result *r);

/* Replaces one of r's strings (*field) with a copy of s.  CBV-style: 0 or -1 (ENOMEM). */
int cbv_result_set(char **field, const char *s);

/* "pass" "fail" "transient" "error". */
const char *cbv_verdict_name(enum cbv_verdict v);

/* mailfromd's names: "success" "not_found" "temp_failure" "failure". */
const char *cbv_verdict_mfd_name(enum cbv_verdict v);

/* The last_poll field names, NULL-terminated: status reason message host ip
 * greeting helo sent recv ecode tls elapsed cache. */
extern const char *const cbv_result_fields[];

/*
 * Writes the value of field name into buf (size n, truncated) and returns
 * buf, or NULL if there is no such field.  Numbers are decimal.
 */
const char *cbv_result_field(const struct cbv_result *r, const char *name,
                             char *buf, size_t n);

/*
 * Returns a pointer to r's string for a text field (no copy; valid while r
 * lives), or NULL for a numeric/unknown field.
 */
const char *cbv_result_text(const struct cbv_result *r, const char *name);

#endif
