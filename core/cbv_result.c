/*
 * cbv_result.c - construction and field access for struct cbv_result,
 * the reason words and the one mapping from a reply to a verdict.
 */
#include "cbv_result_impl.h"

#include <stdio.h>
#include <string.h>

#include "cbv_reply.h"
#include "cbv_status.h"

/* Indexed by enum cbv_reason; the only place a reason word is spelled. */
static const char *const reason_names[CBV_R_COUNT] = {
	[CBV_R_ACCEPTED] = "accepted",
	[CBV_R_MAILBOX_UNKNOWN] = "mailbox_unknown",
	[CBV_R_MAILBOX_DISABLED] = "mailbox_disabled",
	[CBV_R_MAILBOX_FULL] = "mailbox_full",
	[CBV_R_BAD_SYNTAX] = "bad_syntax",
	[CBV_R_NO_DOMAIN] = "no_domain",
	[CBV_R_NULL_MX] = "null_mx",
	[CBV_R_NO_MAIL_HOST] = "no_mail_host",
	[CBV_R_POLICY_REFUSED] = "policy_refused",
	[CBV_R_SENDER_REFUSED] = "sender_refused",
	[CBV_R_GREETING_REFUSED] = "greeting_refused",
	[CBV_R_TLS_REQUIRED] = "tls_required",
	[CBV_R_TLS_FAILED] = "tls_failed",
	[CBV_R_GREYLISTED] = "greylisted",
	[CBV_R_TEMP_FAILURE] = "temp_failure",
	[CBV_R_TIMEOUT] = "timeout",
	[CBV_R_CONNECT_FAILED] = "connect_failed",
	[CBV_R_DNS_FAILURE] = "dns_failure",
	[CBV_R_FORBIDDEN_TARGET] = "forbidden_target",
	[CBV_R_PROTOCOL_ERROR] = "protocol_error",
	[CBV_R_CATCH_ALL] = "catch_all",
	[CBV_R_RATE_LIMITED] = "rate_limited",
};

const char *cbv_reason_name(enum cbv_reason r)
{
	if ((unsigned)r >= CBV_R_COUNT)
		return reason_names[CBV_R_PROTOCOL_ERROR];
	return reason_names[r];
}

int cbv_reason_parse(const char *word)
{
	for (int i = 0; i < CBV_R_COUNT; i++)
		if (strcmp(word, reason_names[i]) == 0)
			return i;
	return -1;
}

/*
 * Splits an RFC 3463 code "class.subject.detail" (1-3 digits each part
 * after the class, as cbv_reply reads it) whose class is cls; 0 if e is
 * not one, so a wrong class never decides anything.
 */
static int ecode_split(const char *e, int cls, int *subj, int *det)
{
	int part[2] = { 0, 0 };
	size_t i = 2;

	if (e == NULL || e[0] != (char)('0' + cls) || e[1] != '.')
		return 0;
	for (int k = 0; k < 2; k++) {
		size_t n = 0;

		while (e[i] >= '0' && e[i] <= '9' && n < 4) {
			part[k] = part[k] * 10 + (e[i++] - '0');
			n++;
		}
		if (n == 0 || n > 3 || e[i] != (k == 0 ? '.' : '\0'))
			return 0;
		i++;
	}
	*subj = part[0];
	*det = part[1];
	return 1;
}

static struct cbv_judgement judged(enum cbv_verdict v, enum cbv_reason r, int definitive)
{
	struct cbv_judgement j = { v, r, definitive };

	return j;
}

/* A 4xx (421 included) at MAIL or RCPT: docs/verdicts.md. */
static enum cbv_reason temp_reason(const char *ecode)
{
	int s, d;

	if (!ecode_split(ecode, 4, &s, &d))
		return CBV_R_TEMP_FAILURE;
	if (s == 7)
		return CBV_R_GREYLISTED;
	if (s == 2 && d == 2)
		return CBV_R_MAILBOX_FULL;
	if (s == 1 && (d == 7 || d == 8))
		return CBV_R_SENDER_REFUSED;
	return CBV_R_TEMP_FAILURE;
}

/* RFC 3463 X.7.10 / X.7.11 (RFC 5248), X.7.30 (RFC 8689): TLS needed. */
static int tls_detail(int d)
{
	return d == 10 || d == 11 || d == 30;
}

/*
 * A 5xx to RCPT TO, by enhanced code (RFC 3463, the IANA registry), else
 * by code.  Rows are docs/verdicts.md's.  Definitive either way: another
 * MX of the same domain would answer alike.
 */
static struct cbv_judgement rcpt_5xx(int code, const char *ecode)
{
	int s, d;

	if (ecode_split(ecode, 5, &s, &d)) {
		switch (s) {
		case 1: /* address status */
			switch (d) {
			case 2: return judged(CBV_FAIL, CBV_R_NO_DOMAIN, 1);
			case 3: return judged(CBV_FAIL, CBV_R_BAD_SYNTAX, 1);
			case 5: /* "destination address valid": contradicts a 5xx */
			case 9: /* "relayed to non-compliant mailer": not a refusal */
				return judged(CBV_ERROR, CBV_R_PROTOCOL_ERROR, 1);
			case 6: return judged(CBV_FAIL, CBV_R_MAILBOX_DISABLED, 1);
			case 7: /* bad sender's mailbox address syntax */
			case 8: /* bad sender's system address: about our MAIL FROM */
				return judged(CBV_ERROR, CBV_R_SENDER_REFUSED, 1);
			case 10: return judged(CBV_FAIL, CBV_R_NULL_MX, 1);
			default: return judged(CBV_FAIL, CBV_R_MAILBOX_UNKNOWN, 1);
			}
		case 2: /* mailbox status */
			return judged(CBV_FAIL, d == 2 ? CBV_R_MAILBOX_FULL : CBV_R_MAILBOX_DISABLED, 1);
		case 3: /* mail system, protocol, content: not about the address */
		case 5:
		case 6:
			return judged(CBV_ERROR, CBV_R_PROTOCOL_ERROR, 1);
		case 7: /* security or policy: about us, not the address */
			if (code == 530 || tls_detail(d))
				return judged(CBV_ERROR, CBV_R_TLS_REQUIRED, 1);
			if (d == 27) /* sender address has null MX (RFC 7505) */
				return judged(CBV_ERROR, CBV_R_SENDER_REFUSED, 1);
			return judged(CBV_ERROR, CBV_R_POLICY_REFUSED, 1);
		default: /* X.0.x other, X.4.x routing (e.g. Microsoft's 5.4.1) */
			return judged(CBV_FAIL, CBV_R_MAILBOX_UNKNOWN, 1);
		}
	}
	switch (code) {
	case 530: return judged(CBV_ERROR, CBV_R_TLS_REQUIRED, 1);
	case 501: return judged(CBV_FAIL, CBV_R_BAD_SYNTAX, 1);
	case 500:
	case 502:
	case 503:
	case 504: return judged(CBV_ERROR, CBV_R_PROTOCOL_ERROR, 1);
	case 552: return judged(CBV_FAIL, CBV_R_MAILBOX_FULL, 1);
	default: return judged(CBV_FAIL, CBV_R_MAILBOX_UNKNOWN, 1);
	}
}

struct cbv_judgement cbv_reason_for(enum cbv_stage stage, int code, const char *ecode)
{
	int cls = code / 100, s, d;

	if (code < 200 || code > 599)
		return judged(CBV_ERROR, CBV_R_PROTOCOL_ERROR, 0);
	if (cls == 4) {
		if (stage == CBV_STAGE_MAIL || stage == CBV_STAGE_RCPT)
			return judged(CBV_TRANSIENT, temp_reason(ecode), 0);
		return judged(CBV_TRANSIENT, CBV_R_TEMP_FAILURE, 0);
	}
	switch (stage) {
	case CBV_STAGE_GREETING:
	case CBV_STAGE_EHLO:
	case CBV_STAGE_HELO:
		if (cls == 5)
			return judged(CBV_ERROR, CBV_R_GREETING_REFUSED, 0);
		break;
	case CBV_STAGE_STARTTLS:
		if (cls == 5)
			return judged(CBV_ERROR, CBV_R_TLS_FAILED, 0);
		break;
	case CBV_STAGE_MAIL:
		if (cls != 5)
			break;
		/* 530 (RFC 3207 4) or X.7.10: another MX may offer TLS. */
		if (code == 530 || (ecode_split(ecode, 5, &s, &d) && s == 7 && tls_detail(d)))
			return judged(CBV_ERROR, CBV_R_TLS_REQUIRED, 0);
		return judged(CBV_ERROR, CBV_R_SENDER_REFUSED, 1);
	case CBV_STAGE_RCPT:
		if (cls == 2)
			return judged(CBV_PASS, CBV_R_ACCEPTED, 1);
		if (cls == 5)
			return rcpt_5xx(code, ecode);
		break;
	default:
		break;
	}
	return judged(CBV_ERROR, CBV_R_PROTOCOL_ERROR, 0);
}

struct cbv_judgement cbv_reason_for_status(enum cbv_stage stage, int status,
                                           int tls_not_offered)
{
	(void)stage;
	switch (status) {
	case CBV_ETIMEOUT: return judged(CBV_TRANSIENT, CBV_R_TIMEOUT, 0);
	case CBV_ECONNECT: return judged(CBV_TRANSIENT, CBV_R_CONNECT_FAILED, 0);
	case CBV_ETLS:
		return judged(CBV_ERROR, tls_not_offered ? CBV_R_TLS_REQUIRED : CBV_R_TLS_FAILED, 0);
	default: return judged(CBV_ERROR, CBV_R_PROTOCOL_ERROR, 0);
	}
}

const char *const cbv_result_fields[] = {
	"status", "reason", "message", "host", "ip", "greeting", "helo",
	"sent", "recv", "ecode", "tls", "elapsed", "cache", "age", NULL
};

struct cbv_result *cbv_result_new(void)
{
	struct cbv_result *r = cbv_calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	char **strs[] = { &r->message, &r->address, &r->rcpt, &r->sender, &r->host,
		          &r->ip,      &r->greeting, &r->helo, &r->sent,   &r->recv };

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (cbv_result_set(strs[i], "") != 0) {
			cbv_result_free(r);
			return NULL;
		}
	}
	r->verdict = CBV_ERROR;
	r->reason = CBV_R_PROTOCOL_ERROR;
	return r;
}

int cbv_result_set_synth(struct cbv_result *r, enum cbv_verdict v, enum cbv_reason reason,
                         int code, const char *ecode, const char *text)
{
	char clean[1024];

	/* Parts of the text may come from DNS or a peer: print them safely. */
	cbv_sanitize(text, strlen(text), clean, sizeof(clean));
	return cbv_result_set_synth_clean(r, v, reason, code, ecode, clean);
}

int cbv_result_set_synth_clean(struct cbv_result *r, enum cbv_verdict v,
                               enum cbv_reason reason, int code, const char *ecode,
                               const char *clean)
{
	char msg[1200];

	if (ecode[0] != '\0')
		snprintf(msg, sizeof(msg), "%d %s %s", code, ecode, clean);
	else
		snprintf(msg, sizeof(msg), "%d %s", code, clean);
	r->verdict = v;
	r->reason = reason;
	r->code = code;
	snprintf(r->ecode, sizeof(r->ecode), "%s", ecode);
	if (cbv_result_set(&r->message, msg) != 0) {
		r->message[0] = '\0'; /* the old string stays valid */
		return -1;
	}
	return 0;
}

struct cbv_result *cbv_result_synth(const char *address, enum cbv_verdict v,
                                    enum cbv_reason reason, int code, const char *ecode,
                                    const char *text)
{
	struct cbv_result *r = cbv_result_new();
	char addr[CBV_PATH_MAX + 1];

	if (r == NULL)
		return NULL;
	address = address != NULL ? address : "";
	cbv_sanitize(address, strlen(address), addr, sizeof(addr));
	if (cbv_result_set_synth(r, v, reason, code, ecode, text) != 0 ||
	    cbv_result_set(&r->address, addr) != 0) {
		cbv_result_free(r);
		return NULL;
	}
	return r;
}

void cbv_result_free(struct cbv_result *r)
{
	if (r == NULL)
		return;
	cbv_free(r->message);
	cbv_free(r->address);
	cbv_free(r->rcpt);
	cbv_free(r->sender);
	cbv_free(r->host);
	cbv_free(r->ip);
	cbv_free(r->greeting);
	cbv_free(r->helo);
	cbv_free(r->sent);
	cbv_free(r->recv);
	cbv_free(r);
}

int cbv_result_set(char **field, const char *s)
{
	char *copy = cbv_strdup(s != NULL ? s : "");

	if (copy == NULL)
		return -1;
	cbv_free(*field);
	*field = copy;
	return 0;
}

const char *cbv_verdict_name(enum cbv_verdict v)
{
	switch (v) {
	case CBV_PASS: return "pass";
	case CBV_FAIL: return "fail";
	case CBV_TRANSIENT: return "transient";
	case CBV_ERROR: return "error";
	}
	return "error";
}

const char *cbv_verdict_mfd_name(enum cbv_verdict v)
{
	switch (v) {
	case CBV_PASS: return "success";
	case CBV_FAIL: return "not_found";
	case CBV_TRANSIENT: return "temp_failure";
	case CBV_ERROR: return "failure";
	}
	return "failure";
}

const char *cbv_result_text(const struct cbv_result *r, const char *name)
{
	if (strcmp(name, "status") == 0)
		return cbv_verdict_name(r->verdict);
	if (strcmp(name, "reason") == 0)
		return cbv_reason_name(r->reason);
	if (strcmp(name, "message") == 0)
		return r->message;
	if (strcmp(name, "host") == 0)
		return r->host;
	if (strcmp(name, "ip") == 0)
		return r->ip;
	if (strcmp(name, "greeting") == 0)
		return r->greeting;
	if (strcmp(name, "helo") == 0)
		return r->helo;
	if (strcmp(name, "sent") == 0)
		return r->sent;
	if (strcmp(name, "recv") == 0)
		return r->recv;
	if (strcmp(name, "ecode") == 0)
		return r->ecode;
	if (strcmp(name, "tls") == 0)
		return r->tls;
	return NULL;
}

const char *cbv_result_mfd_field(const struct cbv_result *r, const char *name, char *buf,
                                 size_t n)
{
	static const char *const names[] = { "last_poll_host", "last_poll_greeting",
		                             "last_poll_helo", "last_poll_sent", "last_poll_recv" };
	const char *v = NULL;
	int known = 0;
	size_t len;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0) {
			known = 1;
			v = cbv_result_text(r, name + 10); /* "last_poll_" */
		}
	if (!known || n == 0)
		return NULL;
	if (v == NULL)
		v = "";
	len = strcspn(v, "\n");
	if (len == 0 && (strcmp(name, "last_poll_sent") == 0 || strcmp(name, "last_poll_recv") == 0))
		v = "nothing", len = 7;
	snprintf(buf, n, "%.*s", (int)len, v);
	return buf;
}

const char *cbv_result_field(const struct cbv_result *r, const char *name,
                             char *buf, size_t n)
{
	const char *t = cbv_result_text(r, name);

	if (t != NULL)
		snprintf(buf, n, "%s", t);
	else if (strcmp(name, "elapsed") == 0)
		snprintf(buf, n, "%lu", r->elapsed_ms);
	else if (strcmp(name, "cache") == 0)
		snprintf(buf, n, "%d", r->cache);
	else if (strcmp(name, "age") == 0)
		snprintf(buf, n, "%lu", r->age);
	else
		return NULL;
	return buf;
}
