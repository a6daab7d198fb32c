/*
 * cbv_verify.c - policy: host order, reply -> verdict (see cbv_verify.h).
 *
 * The verdict table is DESIGN.md's.  The reason word comes from the stage,
 * the reply code and the RFC 3463 enhanced code, never from reply text.
 * Every doubt is transient: a host that times out, closes, or answers 4xx
 * sends us to the next one, and if it was the last, the answer is
 * "try again later", never a guess.
 */
#include "cbv_verify.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cbv_addr.h"
#include "cbv_cidr.h"
#include "cbv_clock.h"
#include "cbv_dns.h"
#include "cbv_log.h"
#include "cbv_map.h"
#include "cbv_net.h"
#include "cbv_reply.h"
#include "cbv_session.h"

enum vstate { VS_DNS, VS_SESSION, VS_DONE };

struct cbv_verify {
	struct cbv_profile p;        /* own copy, holds a map reference */
	struct cbv_request req;      /* trace hook only; strings copied below */
	char helo[CBV_DOMAIN_MAX + 1];
	struct cbv_addr addr;
	char domain[CBV_DOMAIN_MAX + 1]; /* after the map; A-labels */
	char shown[2 * CBV_DOMAIN_MAX + 4]; /* domain for messages: "bücher.test (xn--...)" */
	char rcpt[CBV_PATH_MAX + 1];
	char sender[CBV_PATH_MAX + 1];
	int utf8;

	enum vstate state;
	int64_t start_us;
	int64_t deadline_ms;
	struct cbv_dns *dns;
	struct cbv_host hosts[CBV_HOSTS_MAX];
	size_t nhosts, next_host;
	size_t tried;
	struct cbv_session *sess;
	size_t sess_host;            /* index into hosts of the current session */
	int plain_retry;             /* current session is the no-TLS retry */
	char host[CBV_DOMAIN_MAX + 1]; /* the request's host, checked; "" if none */
	int phase_host[2];           /* lookup phases: 1 = the host, 0 = the MX hosts */
	int nphases, phase;
	int lookup_error;            /* a lookup failure is in the result already */
	size_t denied;               /* addresses dropped by deny_networks */

	struct cbv_result *res;
	int res_taken;
};

/*
 * cbv_sanitize() made every 8-bit byte of text a '?' in clean (same
 * offsets).  Puts back the UTF-8 of name, our own domain in the form
 * cbv_addr_domain_show() made from A-labels it checked, where text has it:
 * it is not remote text.
 */
static void show_own_name(char *clean, const char *text, const char *name)
{
	size_t n = strlen(name), len = strlen(clean);
	const char *p = text, *q = name;

	while (*q != '\0' && (unsigned char)*q < 0x80)
		q++;
	if (*q == '\0')
		return; /* ASCII (or empty): cbv_sanitize left it as it was */
	while ((p = strstr(p, name)) != NULL && (size_t)(p - text) + n <= len) {
		memcpy(clean + (p - text), name, n);
		p += n;
	}
}

/* Sets the verdict and a synthesized DSN "CODE X.Y.Z text". */
static void synth(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                  int code, const char *ecode, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static void synth(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                  int code, const char *ecode, const char *fmt, ...)
{
	char text[1024], clean[1024];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(text, sizeof(text), fmt, ap) < 0)
		text[0] = '\0';
	va_end(ap);
	/* Parts of the text may come from DNS or the peer: print them safely. */
	cbv_sanitize(text, strlen(text), clean, sizeof(clean));
	show_own_name(clean, text, v->shown);
	(void)cbv_result_set_synth_clean(v->res, vd, reason, code, ecode, clean);
}

static void finish(struct cbv_verify *v)
{
	struct cbv_result *r = v->res;

	/* A result cache would store the verdict here (DESIGN.md "Coming next"). */
	cbv_session_free(v->sess);
	v->sess = NULL;
	cbv_dns_free(v->dns);
	v->dns = NULL;
	r->elapsed_ms = (unsigned long)((cbv_now_us() - v->start_us + 500) / 1000);
	r->hosts_tried = (unsigned)v->tried;
	v->state = VS_DONE;
	cbv_log(CBV_LOG_INFO, "cbv: <%s> sender=<%s> %s/%s host=%s [%s] elapsed=%lums: %s",
	        r->address, r->sender, cbv_verdict_name(r->verdict), cbv_reason_name(r->reason),
	        r->host[0] ? r->host : "-", r->ip[0] ? r->ip : "-", r->elapsed_ms,
	        r->message);
}

/* What one host's session means (DESIGN.md "Verdicts"): the one mapping. */
static struct cbv_judgement judge(const struct cbv_session_outcome *o)
{
	if (o->status != CBV_OK)
		return cbv_reason_for_status(o->stage, o->status, o->tls_not_offered);
	return cbv_reason_for(o->stage, o->reply.code, o->reply.ecode);
}

/* Copies one host's conversation into the last-poll record. */
static void record_poll(struct cbv_verify *v, const struct cbv_host *h,
                        const struct cbv_session_outcome *o)
{
	struct cbv_result *r = v->res;
	char ip[80];

	cbv_net_format((const struct sockaddr *)&h->addr, ip, sizeof(ip));
	if (cbv_result_set(&r->host, h->name) != 0 || cbv_result_set(&r->ip, ip) != 0 ||
	    cbv_result_set(&r->greeting, cbv_reply_text(&o->greeting)) != 0 ||
	    cbv_result_set(&r->helo, cbv_reply_text(&o->ehlo)) != 0 ||
	    cbv_result_set(&r->sent, o->sent) != 0 ||
	    cbv_result_set(&r->recv, cbv_reply_text(&o->reply)) != 0)
		cbv_log(CBV_LOG_ERR, "cbv: out of memory recording the last poll");
	snprintf(r->tls, sizeof(r->tls), "%s", o->tls);
}

/* Sets the result from one host's outcome. */
static void conclude_host(struct cbv_verify *v, const struct cbv_host *h,
                          const struct cbv_session_outcome *o, struct cbv_judgement vd)
{
	record_poll(v, h, o);
	if (o->status == CBV_OK) {
		v->res->verdict = vd.verdict;
		v->res->reason = vd.reason;
		v->res->code = o->reply.code;
		snprintf(v->res->ecode, sizeof(v->res->ecode), "%s", o->reply.ecode);
		if (cbv_result_set(&v->res->message, cbv_reply_text(&o->reply)) != 0)
			v->res->message[0] = '\0';
		return;
	}
	switch (o->status) {
	case CBV_ETIMEOUT:
	case CBV_ECONNECT:
		/* RFC 3463: 4.4.1 no answer from host, 4.4.2 bad connection */
		synth(v, vd.verdict, vd.reason, 451, o->stage == CBV_STAGE_CONNECT ? "4.4.1" : "4.4.2",
		      "%s", o->err.msg);
		break;
	case CBV_ETLS:
		if (o->tls_not_offered)
			synth(v, vd.verdict, vd.reason, 530, "5.7.10", "%s", o->err.msg);
		else
			synth(v, vd.verdict, vd.reason, 454, "4.7.5", "%s", o->err.msg);
		break;
	default:
		if (o->smtputf8_missing)
			synth(v, vd.verdict, vd.reason, 553, "5.6.7", "%s", o->err.msg);
		else
			synth(v, vd.verdict, vd.reason, 451, "4.5.0", "%s", o->err.msg);
		break;
	}
}

static void start_next_host(struct cbv_verify *v);

/* Starts a session with hosts[i]; plain = 1 forces starttls=never. */
static void start_session(struct cbv_verify *v, size_t i, int plain)
{
	struct cbv_session_opts o;
	struct cbv_host *h = &v->hosts[i];
	struct cbv_err err;

	memset(&o, 0, sizeof(o));
	o.host = h->name;
	o.helo = v->helo;
	o.mail_from = v->sender;
	o.rcpt_to = v->rcpt;
	o.utf8 = v->utf8;
	o.starttls = plain ? CBV_STARTTLS_NEVER : v->p.starttls;
	o.tls_verify = v->p.tls_verify;
	o.ca_dir = v->p.ca_dir;
	o.connect_timeout_ms = v->p.connect_timeout_ms;
	o.command_timeout_ms = v->p.command_timeout_ms;
	o.deadline_ms = v->deadline_ms;
	o.trace = v->req.trace;
	o.trace_arg = v->req.trace_arg;
	cbv_net_set_port((struct sockaddr *)&h->addr, v->p.port);
	v->sess = cbv_session_new((const struct sockaddr *)&h->addr, h->addrlen, &o, &err);
	v->sess_host = i;
	v->plain_retry = plain;
	v->tried++;
	if (v->sess == NULL) {
		synth(v, CBV_ERROR, CBV_R_PROTOCOL_ERROR, 451, "4.3.0", "cannot start a session: %s",
		      err.msg);
		finish(v);
		return;
	}
	v->state = VS_SESSION;
}

/* The current session ended: judge it, then stop or go on. */
static void session_done(struct cbv_verify *v)
{
	const struct cbv_session_outcome *o = cbv_session_outcome(v->sess);
	struct cbv_judgement vd = judge(o);
	const struct cbv_host *h = &v->hosts[v->sess_host];

	conclude_host(v, h, o, vd);
	/* Opportunistic TLS that failed in the handshake: same host, plain. */
	if (o->status == CBV_ETLS && !o->tls_not_offered && !v->plain_retry &&
	    v->p.starttls != CBV_STARTTLS_REQUIRE && cbv_now_ms() < v->deadline_ms) {
		cbv_log(CBV_LOG_WARN, "cbv: %s: %s; retrying without TLS", h->name, o->err.msg);
		cbv_session_free(v->sess);
		v->sess = NULL;
		v->tried--; /* the same host again */
		start_session(v, v->sess_host, 1);
		return;
	}
	cbv_session_free(v->sess);
	v->sess = NULL;
	if (vd.definitive) {
		finish(v);
		return;
	}
	start_next_host(v);
}

static void start_next_host(struct cbv_verify *v)
{
	/* next_phase() starts us only with hosts to try, so the result is set. */
	if (v->next_host >= v->nhosts || v->tried >= v->p.max_hosts) {
		finish(v);
		return;
	}
	if (v->tried > 0 && cbv_now_ms() >= v->deadline_ms) {
		/* Keep the last host's outcome, but say why we stopped. */
		if (v->res->verdict != CBV_TRANSIENT)
			synth(v, CBV_TRANSIENT, CBV_R_TIMEOUT, 451, "4.4.7",
			      "overall deadline reached after %zu host(s)", v->tried);
		finish(v);
		return;
	}
	start_session(v, v->next_host++, 0);
}

/* Appends hosts outside deny_networks to the list to try, in order. */
static void add_hosts(struct cbv_verify *v, const struct cbv_host *hosts, size_t n)
{
	for (size_t i = 0; i < n && v->nhosts < CBV_HOSTS_MAX; i++) {
		if (cbv_cidr_match(v->p.deny, v->p.ndeny, (const struct sockaddr *)&hosts[i].addr)) {
			char ip[80];

			cbv_net_ntop((const struct sockaddr *)&hosts[i].addr, ip, sizeof(ip));
			cbv_log(CBV_LOG_WARN, "cbv: %s: %s [%s] is in deny_networks, skipped",
			        v->domain, hosts[i].name, ip);
			v->denied++;
			continue;
		}
		v->hosts[v->nhosts++] = hosts[i];
	}
}

/*
 * An IP address as a host: "192.0.2.1", "2001:db8::1", or a domain
 * literal "[192.0.2.1]" / "[ipv6:2001:db8::1]" (RFC 5321 4.1.3).
 * Returns 0 and fills *h, or -1 if s is not one.
 */
static int ip_host(const char *s, struct cbv_host *h)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&h->addr;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&h->addr;
	char ip[CBV_DOMAIN_MAX + 1];
	size_t len = strlen(s);

	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", s);
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
		if (len > 5 && strncasecmp(s, "ipv6:", 5) == 0) {
			s += 5;
			len -= 5;
		}
	}
	if (len >= sizeof(ip))
		return -1;
	memcpy(ip, s, len);
	ip[len] = '\0';
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		h->addrlen = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		h->addrlen = sizeof(*s6);
		return 0;
	}
	return -1;
}

/* Records the first lookup failure as the verdict, in case no host is found. */
static void lookup_failed(struct cbv_verify *v, enum cbv_verdict vd, enum cbv_reason reason,
                          int code, const char *ecode, const char *what, const char *detail)
{
	if (v->lookup_error)
		return;
	v->lookup_error = 1;
	synth(v, vd, reason, code, ecode, "%s (%s)", what, detail);
}

static void start_phase(struct cbv_verify *v);

/* One lookup phase is over: start the next, or the hosts. */
static void next_phase(struct cbv_verify *v)
{
	cbv_dns_free(v->dns);
	v->dns = NULL;
	if (++v->phase < v->nphases) {
		start_phase(v);
		return;
	}
	if (v->nhosts == 0) {
		if (v->denied > 0)
			synth(v, CBV_ERROR, CBV_R_FORBIDDEN_TARGET, 550, "5.7.1",
			      "every mail exchanger address of %s is in deny_networks", v->shown);
		finish(v);
		return;
	}
	v->next_host = 0;
	start_next_host(v);
}

static void dns_done(struct cbv_verify *v)
{
	const struct cbv_host *hosts = NULL;
	const char *detail = NULL;
	size_t n = 0;
	enum cbv_dns_outcome out = cbv_dns_outcome(v->dns, &hosts, &n, &detail, NULL);
	char what[sizeof(v->shown) + 64];

	if (detail == NULL)
		detail = "";
	if (out == CBV_DNS_PENDING)
		return;
	if (out == CBV_DNS_OK) {
		add_hosts(v, hosts, n);
	} else if (v->phase_host[v->phase]) {
		/* The host the caller named: not a fact about the address. */
		snprintf(what, sizeof(what), "host %s has no usable address", v->host);
		if (out == CBV_DNS_TEMP)
			lookup_failed(v, CBV_TRANSIENT, CBV_R_DNS_FAILURE, 451, "4.4.3", what, detail);
		else
			lookup_failed(v, CBV_ERROR, CBV_R_CONNECT_FAILED, 550, "5.4.4", what, detail);
	} else {
		switch (out) {
		case CBV_DNS_NXDOMAIN:
			/* Definitive whatever other hosts we were given. */
			v->lookup_error = 0;
			synth(v, CBV_FAIL, CBV_R_NO_DOMAIN, 550, "5.1.2", "domain %s does not exist",
			      v->shown);
			finish(v);
			return;
		case CBV_DNS_NULLMX:
			/* RFC 7505 4.2: 556 5.1.10 */
			v->lookup_error = 0;
			synth(v, CBV_FAIL, CBV_R_NULL_MX, 556, "5.1.10",
			      "domain %s accepts no mail (null MX)", v->shown);
			finish(v);
			return;
		case CBV_DNS_NOHOST:
			snprintf(what, sizeof(what), "domain %s has no mail exchanger and no address",
			         v->shown);
			lookup_failed(v, CBV_FAIL, CBV_R_NO_MAIL_HOST, 550, "5.1.2", what, detail);
			break;
		default:
			snprintf(what, sizeof(what), "DNS lookup for %s failed", v->shown);
			lookup_failed(v, CBV_TRANSIENT, CBV_R_DNS_FAILURE, 451, "4.4.3", what, detail);
			break;
		}
	}
	next_phase(v);
}

/* Starts finding the hosts of the current phase: the domain's, or the named host. */
static void start_phase(struct cbv_verify *v)
{
	int is_host = v->phase_host[v->phase];
	const char *name = is_host ? v->host : v->domain;
	struct cbv_host h;
	struct cbv_err err;

	if (is_host ? ip_host(v->host, &h) == 0 : v->addr.literal) {
		if (!is_host && ip_host(v->domain, &h) != 0) {
			synth(v, CBV_FAIL, CBV_R_BAD_SYNTAX, 553, "5.1.3", "bad address literal");
			finish(v);
			return;
		}
		add_hosts(v, &h, 1);
		next_phase(v);
		return;
	}
	v->state = VS_DNS;
	v->dns = is_host ? cbv_dns_new_host(name, v->p.dns_servers, v->deadline_ms, &err)
	                 : cbv_dns_new(name, v->p.dns_servers, v->deadline_ms, &err);
	if (v->dns == NULL) {
		lookup_failed(v, CBV_TRANSIENT, CBV_R_DNS_FAILURE, 451, "4.4.3", "DNS", err.msg);
		next_phase(v);
		return;
	}
	dns_done(v); /* c-ares may answer at once */
}

/*
 * local@domain as it goes on the wire (domain NULL: a's own).  Domains are
 * A-labels (cbv_addr), and that is what we send unless the local part is
 * UTF-8: it needs SMTPUTF8 anyway (RFC 6531 3.3), so the address keeps its
 * Unicode domain too, when that fits the path limit.
 */
static enum cbv_status wire_address(const struct cbv_addr *a, const char *domain, char *buf,
                                    size_t n, struct cbv_err *err)
{
	char u[CBV_DOMAIN_MAX + 1];

	if (a->utf8 && cbv_addr_domain_utf8(domain != NULL ? domain : a->domain, u, sizeof(u)) &&
	    cbv_addr_format(a, u, buf, n, NULL) == CBV_OK)
		return CBV_OK;
	return cbv_addr_format(a, domain, buf, n, err);
}

/* Parses and maps; returns 0 to go on, -1 if finished (verdict set). */
static int prepare(struct cbv_verify *v, const char *address, const char *sender)
{
	struct cbv_err err;
	struct cbv_addr s;
	enum cbv_status st;

	st = cbv_addr_parse(address, strlen(address), &v->addr, &err);
	if (st == CBV_ENOMEM) {
		synth(v, CBV_TRANSIENT, CBV_R_TEMP_FAILURE, 451, "4.3.0", "out of memory");
		return -1;
	}
	if (st != CBV_OK) {
		synth(v, CBV_FAIL, CBV_R_BAD_SYNTAX, 553, "5.1.3", "bad address syntax: %s", err.msg);
		return -1;
	}
	if (sender[0] != '\0') {
		if (cbv_addr_parse(sender, strlen(sender), &s, &err) != CBV_OK) {
			synth(v, CBV_ERROR, CBV_R_BAD_SYNTAX, 553, "5.1.7", "bad sender address syntax: %s",
			      err.msg);
			return -1;
		}
		if (wire_address(&s, NULL, v->sender, sizeof(v->sender), &err) != CBV_OK) {
			synth(v, CBV_ERROR, CBV_R_BAD_SYNTAX, 553, "5.1.7", "bad sender address: %s", err.msg);
			return -1;
		}
		v->utf8 |= s.utf8;
	}
	v->utf8 |= v->addr.utf8;
	snprintf(v->domain, sizeof(v->domain), "%s", v->addr.domain);
	if (!v->addr.literal) {
		int m = cbv_map_lookup(v->p.map, v->addr.domain, v->domain);

		if (m < 0) {
			synth(v, CBV_TRANSIENT, CBV_R_TEMP_FAILURE, 451, "4.3.0", "out of memory in the map");
			return -1;
		}
		if (m > 0)
			cbv_log(CBV_LOG_DEBUG, "cbv: map: %s -> %s", v->addr.domain, v->domain);
	}
	cbv_addr_domain_show(v->domain, v->shown, sizeof(v->shown));
	if (wire_address(&v->addr, v->domain, v->rcpt, sizeof(v->rcpt), &err) != CBV_OK) {
		synth(v, CBV_FAIL, CBV_R_BAD_SYNTAX, 553, "5.1.3", "mapped address: %s", err.msg);
		return -1;
	}
	if (cbv_result_set(&v->res->rcpt, v->rcpt) != 0 ||
	    cbv_result_set(&v->res->sender, v->sender) != 0) {
		synth(v, CBV_TRANSIENT, CBV_R_TEMP_FAILURE, 451, "4.3.0", "out of memory");
		return -1;
	}
	return 0;
}

/* Decides the lookup phases from the request's host and mode; -1 if finished. */
static int plan(struct cbv_verify *v, const struct cbv_request *req)
{
	struct cbv_host h;
	struct cbv_err err;
	int have_host = req->host != NULL && req->host[0] != '\0' && req->mode != CBV_MODE_MXONLY;

	if (have_host) {
		/* A name we will resolve, or an IP address: nothing else reaches DNS. */
		if (ip_host(req->host, &h) == 0)
			snprintf(v->host, sizeof(v->host), "%s", req->host);
		else if (cbv_addr_check_domain(req->host, strlen(req->host), v->host, &err) != CBV_OK) {
			synth(v, CBV_ERROR, CBV_R_BAD_SYNTAX, 501, "5.5.4", "bad host: %s", err.msg);
			return -1;
		}
	}
	v->nphases = 0;
	if (have_host && (req->mode == CBV_MODE_HOSTFIRST || req->mode == CBV_MODE_HOSTONLY))
		v->phase_host[v->nphases++] = 1;
	if (req->mode != CBV_MODE_HOSTONLY)
		v->phase_host[v->nphases++] = 0;
	if (have_host && req->mode == CBV_MODE_MXFIRST)
		v->phase_host[v->nphases++] = 1;
	v->phase = 0;
	return 0;
}

struct cbv_verify *cbv_verify_new(const struct cbv_profile *p,
                                  const struct cbv_request *req,
                                  struct cbv_err *err)
{
	struct cbv_verify *v;
	char clean[CBV_PATH_MAX * 2];
	const char *sender;

	if (req == NULL || req->address == NULL || p == NULL) {
		cbv_err_set(err, CBV_EINVAL, "no address to verify");
		return NULL;
	}
	if (req->mode == CBV_MODE_HOSTONLY && (req->host == NULL || req->host[0] == '\0')) {
		cbv_err_set(err, CBV_EINVAL, "mode hostonly requires a host");
		return NULL;
	}
	v = cbv_calloc(1, sizeof(*v));
	if (v == NULL) {
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	v->res = cbv_result_new();
	if (v->res == NULL) {
		cbv_free(v);
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	cbv_profile_copy(&v->p, p);
	v->req.trace = req->trace;
	v->req.trace_arg = req->trace_arg;
	v->start_us = cbv_now_us();
	v->deadline_ms = cbv_now_ms() + (int64_t)v->p.timeout_ms;
	snprintf(v->helo, sizeof(v->helo), "%s",
	         v->p.helo[0] != '\0' ? v->p.helo
	                              : (req->default_helo != NULL && req->default_helo[0] != '\0'
	                                     ? req->default_helo
	                                     : "localhost"));
	sender = req->sender != NULL ? req->sender : v->p.mailfrom;
	cbv_sanitize(req->address, strnlen(req->address, sizeof(clean) - 1), clean, sizeof(clean));
	if (cbv_result_set(&v->res->address, clean) != 0) {
		cbv_verify_free(v);
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	cbv_sanitize(sender, strnlen(sender, sizeof(clean) - 1), clean, sizeof(clean));
	if (cbv_result_set(&v->res->sender, clean) != 0) {
		cbv_verify_free(v);
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	if (prepare(v, req->address, sender) != 0 || plan(v, req) != 0) {
		finish(v);
		return v;
	}
	/* A result cache would be consulted here, before any DNS. */
	start_phase(v);
	return v;
}

int cbv_verify_pollfds(struct cbv_verify *v, struct pollfd *fds, int max,
                       int64_t *wake_ms)
{
	int64_t wake = 0;
	int n = 0;

	switch (v->state) {
	case VS_DONE:
		return -1;
	case VS_DNS:
		n = cbv_dns_pollfds(v->dns, fds, max, &wake);
		break;
	case VS_SESSION:
		n = max > 0 ? cbv_session_pollfd(v->sess, fds, &wake) : 0;
		break;
	}
	*wake_ms = cbv_deadline_min(wake, v->deadline_ms);
	return n;
}

void cbv_verify_process(struct cbv_verify *v, const struct pollfd *fds, int n)
{
	switch (v->state) {
	case VS_DONE:
		return;
	case VS_DNS:
		cbv_dns_process(v->dns, fds, n);
		dns_done(v);
		break;
	case VS_SESSION:
		cbv_session_process(v->sess, n > 0 ? fds[0].revents : 0);
		if (cbv_session_done(v->sess))
			session_done(v);
		break;
	}
	/* Sessions and DNS keep the overall deadline themselves; this is the backstop. */
	if (v->state != VS_DONE && cbv_now_ms() >= v->deadline_ms + 1000) {
		synth(v, CBV_TRANSIENT, CBV_R_TIMEOUT, 451, "4.4.7", "overall deadline reached");
		finish(v);
	}
}

int cbv_verify_done(const struct cbv_verify *v)
{
	return v->state == VS_DONE;
}

struct cbv_result *cbv_verify_take_result(struct cbv_verify *v)
{
	struct cbv_result *r;

	if (v->state != VS_DONE || v->res_taken)
		return NULL;
	r = v->res;
	v->res = NULL;
	v->res_taken = 1;
	return r;
}

void cbv_verify_free(struct cbv_verify *v)
{
	if (v == NULL)
		return;
	cbv_session_free(v->sess);
	cbv_dns_free(v->dns);
	cbv_result_free(v->res);
	cbv_profile_clear(&v->p);
	cbv_free(v);
}

enum cbv_status cbv_verify(const struct cbv_profile *p,
                           const struct cbv_request *req,
                           struct cbv_result **out, struct cbv_err *err)
{
	struct pollfd fds[CBV_VERIFY_POLLFDS_MAX];
	struct cbv_verify *v;
	struct cbv_err local;

	*out = NULL;
	if (err == NULL)
		err = &local; /* the status says why, even without a message */
	v = cbv_verify_new(p, req, err);
	if (v == NULL)
		return err->code;
	while (!cbv_verify_done(v)) {
		int64_t wake = 0, wait;
		int n = cbv_verify_pollfds(v, fds, CBV_VERIFY_POLLFDS_MAX, &wake);

		if (n < 0)
			break;
		wait = wake - cbv_now_ms();
		if (wait < 0)
			wait = 0;
		if (wait > 60000)
			wait = 60000;
		if (poll(fds, (nfds_t)n, (int)wait) < 0 && errno != EINTR) {
			for (int i = 0; i < n; i++)
				fds[i].revents = POLLERR;
		}
		cbv_verify_process(v, fds, n);
	}
	*out = cbv_verify_take_result(v);
	cbv_verify_free(v);
	if (*out == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	return CBV_OK;
}
