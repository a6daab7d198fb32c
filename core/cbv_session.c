/*
 * cbv_session.c - the SMTP client state machine (see cbv_session.h).
 *
 * One loop does all the work: flush what we queued, read lines into the
 * bounded buffer, feed them to the reply parser, and act on each complete
 * reply.  Deadlines are checked after I/O, so a reply that is already
 * there is never lost to a timer, and a peer dripping bytes cannot
 * stretch a stage: the stage deadline covers the whole reply.
 */
#include "cbv_session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cbv_buf.h"
#include "cbv_clock.h"
#include "cbv_log.h"
#include "cbv_net.h"
#include "cbv_text.h"
#include "cbv_tls.h"

enum phase { PH_CONNECT, PH_SMTP, PH_HANDSHAKE, PH_DONE };

struct cbv_session {
	char host[CBV_DOMAIN_MAX + 1];
	char helo[CBV_DOMAIN_MAX + 1];
	char mail_from[CBV_PATH_MAX + 1];
	char rcpt_to[CBV_PATH_MAX + 1];
	char probe_rcpt[CBV_PATH_MAX + 1];
	char (*more)[CBV_PATH_MAX + 1]; /* more_rcpts' copies (cbv_malloc'd), NULL if none */
	size_t nreal;              /* real recipients: 1 + nmore */
	char ca_dir[CBV_URL_MAX + 1];
	char peer[80];             /* "ip:port" */
	struct cbv_session_opts o; /* strings point at the copies above */

	int fd;
	struct cbv_tls *tls;
	enum phase phase;
	enum cbv_stage stage;      /* the reply we are waiting for */
	short want;                /* poll events wanted */
	int64_t stage_deadline;

	char out_inline[3 * CBV_CMD_MAX];
	char *out;                 /* queued command bytes: out_inline, or cbv_malloc'd for a group */
	size_t out_cap, out_len, out_off;
	struct cbv_buf in;
	struct cbv_reply cur;      /* reply being read */

	/* Commands sent whose reply is not read yet, oldest first (MAIL and
	 * RCPT when pipelined): res.sent becomes one only when its reply is
	 * in, so sent and reply are always a true pair. */
	char pending_inline[3][CBV_CMD_MAX];
	char (*pending)[CBV_CMD_MAX]; /* pending_inline, or cbv_malloc'd for a group */
	int npending, pending_max;
	size_t rcpt_replied;       /* real RCPTs answered in this transaction */
	int any_ok;                /* one of them got 2xx (the probe is worth waiting for) */
	int rcpts_pipelined;       /* every real RCPT went out behind MAIL */
	/* The probe RCPT: 0 none (or done), 1 pipelined behind the real RCPT,
	 * 2 its reply is the one we wait for. */
	int probe_state;

	int pipelined;             /* an RCPT reply follows the MAIL reply */
	int ondemand;              /* a 530 asked for TLS (starttls=ondemand) */
	int skip_rcpt;             /* read and drop the pipelined RCPT reply */
	int cap_starttls, cap_pipelining, cap_utf8;
	int peer_closed;
	int await_reply;           /* a command (or the connection) just went out */
	int held;                  /* done, connection kept open (o.hold, clean end) */
	unsigned txn_rcpts;        /* RCPTs sent in this MAIL transaction */
	unsigned txn_errors;       /* 5xx replies in it (Postfix counts them per session) */

	struct cbv_session_outcome res;
};

const char *cbv_stage_name(enum cbv_stage s)
{
	switch (s) {
	case CBV_STAGE_CONNECT: return "connect";
	case CBV_STAGE_GREETING: return "greeting";
	case CBV_STAGE_EHLO: return "EHLO";
	case CBV_STAGE_HELO: return "HELO";
	case CBV_STAGE_STARTTLS: return "STARTTLS";
	case CBV_STAGE_TLS: return "TLS handshake";
	case CBV_STAGE_RSET: return "RSET";
	case CBV_STAGE_MAIL: return "MAIL FROM";
	case CBV_STAGE_RCPT: return "RCPT TO";
	case CBV_STAGE_DONE: return "done";
	}
	return "?";
}

static void trace(struct cbv_session *s, enum cbv_trace kind, const char *text)
{
	if (s->o.trace != NULL)
		s->o.trace(s->o.trace_arg, kind, text);
}

/* Copies a string we will put on the wire; refuses controls (CR/LF injection). */
static int copy_wire(char *dst, size_t n, const char *src, const char *what,
                     struct cbv_err *err)
{
	size_t len = strlen(src != NULL ? src : "");

	if (len >= n) {
		cbv_err_set(err, CBV_EINVAL, "%s too long", what);
		return -1;
	}
	if (cbv_text_span(src != NULL ? src : "", len, CBV_TEXT_NOCTL, NULL) < len) {
		cbv_err_set(err, CBV_EINVAL, "control character in %s", what);
		return -1;
	}
	memcpy(dst, src != NULL ? src : "", len + 1);
	return 0;
}

static void set_deadline(struct cbv_session *s, unsigned timeout_ms)
{
	s->stage_deadline = cbv_deadline_min(cbv_now_ms() + (int64_t)timeout_ms,
	                                     s->o.deadline_ms);
}

/* Closes the connection.  A QUIT goes out only if it can without waiting. */
static void close_conn(struct cbv_session *s, int send_quit)
{
	static const char quit[] = "QUIT\r\n";
	short ev;

	if (s->fd < 0)
		return;
	if (send_quit && !s->peer_closed && s->out_off == s->out_len) {
		ssize_t n;

		if (s->tls != NULL)
			n = cbv_tls_write(s->tls, quit, sizeof(quit) - 1, &ev, NULL);
		else
			n = cbv_net_send(s->fd, quit, sizeof(quit) - 1);
		if (n > 0)
			trace(s, CBV_TRACE_SENT, "QUIT");
	}
	cbv_tls_free(s->tls);
	s->tls = NULL;
	close(s->fd);
	s->fd = -1;
}

/* Ends the session with this status at the current stage. */
static void finish(struct cbv_session *s, enum cbv_status st)
{
	s->res.stage = s->stage;
	s->res.status = st;
	if (st == CBV_OK)
		s->res.err.code = CBV_OK;
	s->phase = PH_DONE;
	/* Session reuse: a clean end in the MAIL transaction keeps the connection. */
	if (st == CBV_OK && s->o.hold && s->npending == 0 && cbv_buf_pending(&s->in) == 0 &&
	    !s->peer_closed && !s->ondemand && s->fd >= 0 && s->res.probe_code != 421 &&
	    s->o.starttls != CBV_STARTTLS_ONDEMAND && cbv_session_outcome_clean(&s->res)) {
		s->held = 1;
		/* The transcript hook belongs to this verification, which is
		 * ending: a later QUIT (cbv_hold) must not call it. */
		s->o.trace = NULL;
		s->o.trace_arg = NULL;
		return;
	}
	/* QUIT only after a normal reply; not after 421 (the server is leaving). */
	close_conn(s, st == CBV_OK && s->res.reply.code != 421);
}

/* Recipient i of the transaction (0: rcpt_to). */
static const char *rcpt_addr(const struct cbv_session *s, size_t i)
{
	return i == 0 ? s->rcpt_to : s->more[i - 1];
}

/* Ends the session with the error already set in s->res.err. */
static void failed(struct cbv_session *s)
{
	cbv_log(CBV_LOG_DEBUG, "%s[%s] %s: %s", s->host, s->peer,
	        cbv_stage_name(s->stage), s->res.err.msg);
	if (s->probe_state == 2) {
		/* Only the probe is lost: the real RCPT's 2xx stands. */
		s->probe_state = 0;
		finish(s, CBV_OK);
		return;
	}
	finish(s, s->res.err.code);
}

/* Sets the error (cbv_err_set's arguments after the session) and ends. */
#define fail(s, ...) (cbv_err_set(&(s)->res.err, __VA_ARGS__), failed(s))

/* Queues one command line and starts the wait for its reply. */
static void send_cmd(struct cbv_session *s, enum cbv_stage next, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void send_cmd(struct cbv_session *s, enum cbv_stage next, const char *fmt, ...)
{
	char line[CBV_CMD_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	/* Inputs are validated in cbv_session_new(); this is a programmer error. */
	if (n < 0 || (size_t)n >= sizeof(line) - 2 ||
	    s->out_len + (size_t)n + 2 > s->out_cap) {
		fail(s, CBV_EINVAL, "command too long");
		return;
	}
	cbv_log(CBV_LOG_DEBUG, "%s[%s] >>> %s", s->host, s->peer, line);
	trace(s, CBV_TRACE_SENT, line);
	if (s->npending < s->pending_max)
		snprintf(s->pending[s->npending++], sizeof(s->pending[0]), "%s", line);
	memcpy(s->out + s->out_len, line, (size_t)n);
	memcpy(s->out + s->out_len + n, "\r\n", 2);
	s->out_len += (size_t)n + 2;
	if (next == CBV_STAGE_RCPT)
		s->txn_rcpts++;
	s->stage = next;
	cbv_reply_reset(&s->cur);
	set_deadline(s, s->o.command_timeout_ms);
}

static void send_mail(struct cbv_session *s)
{
	const char *param = s->o.utf8 ? " SMTPUTF8" : "";

	/* a new transaction (again after STARTTLS on demand): no RCPT answered */
	s->rcpt_replied = 0;
	s->any_ok = 0;
	s->txn_rcpts = s->txn_errors = 0;
	for (size_t i = 0; i < s->res.nrcpts; i++) {
		s->res.rcpts[i].replied = 0;
		s->res.rcpts[i].sent[0] = '\0';
	}
	send_cmd(s, CBV_STAGE_MAIL, "MAIL FROM:<%s>%s", s->mail_from, param);
	if (s->phase == PH_DONE)
		return;
	/* RFC 2920: MAIL and RCPT may share a write when PIPELINING is offered.
	 * With starttls=ondemand only the first RCPT does: a 530 to it is
	 * followed by RSET, which must not race further RCPTs. */
	s->pipelined = s->cap_pipelining;
	s->rcpts_pipelined = s->pipelined && s->o.starttls != CBV_STARTTLS_ONDEMAND;
	if (s->pipelined) {
		send_cmd(s, CBV_STAGE_RCPT, "RCPT TO:<%s>", s->rcpt_to);
		for (size_t i = 1; i < s->nreal && s->rcpts_pipelined && s->phase != PH_DONE; i++)
			send_cmd(s, CBV_STAGE_RCPT, "RCPT TO:<%s>", rcpt_addr(s, i));
		if (s->probe_rcpt[0] != '\0' && s->rcpts_pipelined && s->phase != PH_DONE) {
			send_cmd(s, CBV_STAGE_RCPT, "RCPT TO:<%s>", s->probe_rcpt);
			s->probe_state = 1;
		}
		s->stage = CBV_STAGE_MAIL;
	}
}

/* Reads EHLO keywords (RFC 5321 4.1.1.1): the first word of each line. */
static void parse_caps(struct cbv_session *s, const struct cbv_reply *r)
{
	const char *p = r->text;

	s->cap_starttls = s->cap_pipelining = s->cap_utf8 = 0;
	/* The first line is the greeting-like domain line: skip it. */
	p = strchr(p, '\n');
	while (p != NULL) {
		const char *kw = p + 1 + 4; /* "250-" or "250 " */
		size_t len;

		if (strlen(p + 1) < 4)
			break;
		len = strcspn(kw, " \n");
		if (len == 8 && strncasecmp(kw, "STARTTLS", 8) == 0)
			s->cap_starttls = 1;
		else if (len == 10 && strncasecmp(kw, "PIPELINING", 10) == 0)
			s->cap_pipelining = 1;
		else if (len == 8 && strncasecmp(kw, "SMTPUTF8", 8) == 0)
			s->cap_utf8 = 1;
		p = strchr(p + 1, '\n');
	}
	if (s->cap_starttls)
		s->res.tls_offered = 1;
}

static void send_starttls(struct cbv_session *s)
{
	send_cmd(s, CBV_STAGE_STARTTLS, "STARTTLS");
}

/* After a 2xx to EHLO/HELO: STARTTLS or the transaction, per policy. */
static void after_ehlo(struct cbv_session *s)
{
	int want_tls = s->o.starttls == CBV_STARTTLS_OPPORTUNISTIC ||
	               s->o.starttls == CBV_STARTTLS_REQUIRE || s->ondemand;

	if (s->tls == NULL && want_tls && s->cap_starttls) {
		send_starttls(s);
		return;
	}
	if (s->tls == NULL && s->o.starttls == CBV_STARTTLS_REQUIRE) {
		s->res.tls_not_offered = 1;
		s->stage = CBV_STAGE_STARTTLS;
		fail(s, CBV_ETLS, "%s [%s] does not offer STARTTLS", s->host, s->peer);
		return;
	}
	if (s->o.utf8 && !s->cap_utf8) {
		s->res.smtputf8_missing = 1;
		s->stage = CBV_STAGE_MAIL;
		fail(s, CBV_EPROTO, "%s [%s] does not offer SMTPUTF8", s->host, s->peer);
		return;
	}
	send_mail(s);
}

static void start_tls(struct cbv_session *s)
{
	struct cbv_err err;

	/* RFC 3207 5 / CVE-2011-0411: bytes sent before the handshake would be
	 * read as if they came inside TLS.  Refuse them. */
	if (cbv_buf_pending(&s->in) != 0) {
		fail(s, CBV_EPROTO, "%s [%s] sent data after 220 to STARTTLS", s->host, s->peer);
		return;
	}
	s->stage = CBV_STAGE_TLS;
	s->tls = cbv_tls_new_with(s->fd, s->host, s->o.tls_verify, s->ca_dir, s->o.tls_store, &err);
	if (s->tls == NULL) {
		fail(s, err.code == CBV_ENOMEM ? CBV_ENOMEM : CBV_ETLS, "%s", err.msg);
		return;
	}
	s->phase = PH_HANDSHAKE;
	s->want = POLLOUT;
	set_deadline(s, s->o.command_timeout_ms);
}

/* 530 (RFC 3207 4: "Must issue a STARTTLS command first") and we may. */
static int ondemand_tls(const struct cbv_session *s, const struct cbv_reply *r)
{
	return r->code == 530 && s->o.starttls == CBV_STARTTLS_ONDEMAND &&
	       s->tls == NULL && s->cap_starttls && !s->ondemand;
}

/*
 * Copies r into the outcome's greeting or EHLO reply (whose buffer is
 * reused when it fits); -1 (session failed) on ENOMEM.
 */
static int keep_reply(struct cbv_session *s, struct cbv_reply *dst, const struct cbv_reply *r)
{
	if (cbv_reply_copy(dst, r, &s->res.err) == CBV_OK)
		return 0;
	failed(s);
	return -1;
}

/* Acts on one complete reply. */
static void on_reply(struct cbv_session *s)
{
	struct cbv_reply *r = &s->cur, swap;
	int ok = r->code >= 200 && r->code < 300;

	cbv_log(CBV_LOG_DEBUG, "%s[%s] <<< %s", s->host, s->peer, r->text);
	if (s->probe_state == 2) {
		/* The probe's reply: kept apart, so sent/recv stay the real RCPT's. */
		if (s->npending > 0) {
			snprintf(s->res.probe_sent, sizeof(s->res.probe_sent), "%s", s->pending[0]);
			s->npending--;
		}
		s->res.probe_code = r->code;
		s->txn_errors += r->code >= 500;
		{
			size_t n = strnlen(r->text, sizeof(s->res.probe_recv) - 1);

			memcpy(s->res.probe_recv, r->text, n);
			s->res.probe_recv[n] = '\0';
		}
		trace(s, CBV_TRACE_RECV, r->text);
		s->probe_state = 0;
		finish(s, CBV_OK);
		return;
	}
	/* The command this reply answers (none for the greeting). */
	if (s->npending > 0) {
		snprintf(s->res.sent, sizeof(s->res.sent), "%s", s->pending[0]);
		memmove(s->pending[0], s->pending[1],
		        sizeof(s->pending[0]) * (size_t)(s->pending_max - 1));
		s->npending--;
	}
	if (s->skip_rcpt && s->stage == CBV_STAGE_RCPT) {
		/* The pipelined RCPT after a 530 to MAIL: drop it, go to TLS. */
		trace(s, CBV_TRACE_RECV, r->text);
		s->skip_rcpt = 0;
		send_starttls(s);
		return;
	}
	/* The outcome's reply takes cur's buffer, cur the old one: no copy,
	 * and two buffers serve the whole conversation. */
	swap = s->res.reply;
	s->res.reply = s->cur;
	s->cur = swap;
	cbv_reply_reset(&s->cur);
	r = &s->res.reply;
	switch (s->stage) {
	case CBV_STAGE_GREETING:
		if (keep_reply(s, &s->res.greeting, r) != 0)
			return;
		trace(s, CBV_TRACE_GRTNG, r->text);
		if (!ok) {
			finish(s, CBV_OK);
			return;
		}
		send_cmd(s, CBV_STAGE_EHLO, "EHLO %s", s->helo);
		return;
	case CBV_STAGE_EHLO:
	case CBV_STAGE_HELO:
		if (keep_reply(s, &s->res.ehlo, r) != 0)
			return;
		trace(s, CBV_TRACE_HELO, r->text);
		if (ok) {
			if (s->stage == CBV_STAGE_EHLO)
				parse_caps(s, r);
			else
				s->cap_starttls = s->cap_pipelining = s->cap_utf8 = 0;
			after_ehlo(s);
		} else if (s->stage == CBV_STAGE_EHLO && r->code >= 500 && s->tls == NULL) {
			/* RFC 5321 3.2: a server that does not know EHLO gets HELO. */
			send_cmd(s, CBV_STAGE_HELO, "HELO %s", s->helo);
		} else {
			finish(s, CBV_OK);
		}
		return;
	default:
		break;
	}
	trace(s, CBV_TRACE_RECV, r->text);
	switch (s->stage) {
	case CBV_STAGE_STARTTLS:
		if (r->code == 220)
			start_tls(s);
		else if (s->o.starttls == CBV_STARTTLS_REQUIRE || s->ondemand)
			finish(s, CBV_OK);
		else
			send_mail(s); /* opportunistic: go on in plain text */
		return;
	case CBV_STAGE_RSET:
		if (ok)
			send_starttls(s);
		else
			finish(s, CBV_OK);
		return;
	case CBV_STAGE_MAIL:
		if (ok) {
			if (s->pipelined) {
				s->stage = CBV_STAGE_RCPT;
				cbv_reply_reset(&s->cur);
				set_deadline(s, s->o.command_timeout_ms);
			} else {
				send_cmd(s, CBV_STAGE_RCPT, "RCPT TO:<%s>", s->rcpt_to);
			}
		} else if (ondemand_tls(s, r)) {
			s->ondemand = 1;
			if (s->pipelined) {
				s->skip_rcpt = 1;
				s->stage = CBV_STAGE_RCPT;
				cbv_reply_reset(&s->cur);
			} else {
				send_starttls(s);
			}
		} else {
			finish(s, CBV_OK);
		}
		return;
	case CBV_STAGE_RCPT:
		if (s->rcpt_replied == 0 && ondemand_tls(s, r)) {
			s->ondemand = 1;
			send_cmd(s, CBV_STAGE_RSET, "RSET");
			return;
		}
		if (s->rcpt_replied < s->res.nrcpts) {
			struct cbv_session_rcpt *rr = &s->res.rcpts[s->rcpt_replied];

			if (cbv_reply_copy(&rr->reply, r, &s->res.err) != CBV_OK) {
				failed(s);
				return;
			}
			snprintf(rr->sent, sizeof(rr->sent), "%s", s->res.sent);
			rr->replied = 1;
		}
		s->rcpt_replied++;
		s->any_ok |= ok;
		s->txn_errors += r->code >= 500;
		if (s->rcpt_replied < s->nreal && r->code != 421) {
			/* the next recipient's reply, whatever this one got */
			if (s->rcpts_pipelined) {
				cbv_reply_reset(&s->cur);
				set_deadline(s, s->o.command_timeout_ms);
			} else {
				send_cmd(s, CBV_STAGE_RCPT, "RCPT TO:<%s>", rcpt_addr(s, s->rcpt_replied));
			}
			return;
		}
		ok = s->any_ok && r->code != 421;
		if (ok && s->probe_state == 1) {
			s->probe_state = 2; /* its reply is next in the stream */
			cbv_reply_reset(&s->cur); /* keeps its buffer (init would leak it) */
			set_deadline(s, s->o.command_timeout_ms);
		} else if (ok && s->probe_rcpt[0] != '\0' && s->probe_state == 0 &&
		           s->res.probe_sent[0] == '\0') {
			send_cmd(s, CBV_STAGE_RCPT, "RCPT TO:<%s>", s->probe_rcpt);
			s->probe_state = 2;
		} else {
			finish(s, CBV_OK);
		}
		return;
	default:
		fail(s, CBV_EPROTO, "reply in unexpected state");
		return;
	}
}

/* Sends queued bytes.  Returns 1 if all sent, 0 if waiting, -1 done(failed). */
static int flush_out(struct cbv_session *s)
{
	struct cbv_err err;

	while (s->out_off < s->out_len) {
		short ev = POLLOUT;
		ssize_t n;

		if (s->tls != NULL)
			n = cbv_tls_write(s->tls, s->out + s->out_off, s->out_len - s->out_off,
			                  &ev, &err);
		else
			n = cbv_net_send(s->fd, s->out + s->out_off, s->out_len - s->out_off);
		if (n == 0) {
			s->want = ev;
			return 0;
		}
		if (n < 0) {
			s->peer_closed = 1;
			if (s->tls != NULL)
				fail(s, CBV_ECONNECT, "%s [%s]: sending %s: %s", s->host, s->peer,
				     cbv_stage_name(s->stage), err.msg);
			else
				fail(s, CBV_ECONNECT, "%s [%s]: sending %s: %s", s->host, s->peer,
				     cbv_stage_name(s->stage), strerror(errno));
			return -1;
		}
		s->out_off += (size_t)n;
	}
	/* Plain text: the reply cannot be here yet, so the next read waits for
	 * poll() instead of costing a recv() that would say EAGAIN. */
	if (s->out_len != 0 && s->tls == NULL)
		s->await_reply = 1;
	s->out_off = s->out_len = 0;
	return 1;
}

/*
 * Reads until a complete reply is parsed (returns 1), nothing more can be
 * read now (0), or the session failed (-1).
 */
static int read_reply(struct cbv_session *s)
{
	struct cbv_err err;

	for (;;) {
		const char *line;
		size_t len, avail;
		short ev = POLLIN;
		ssize_t n;
		char *space;
		int got = cbv_buf_getline(&s->in, CBV_REPLY_LINE_MAX, &line, &len);

		if (got < 0) {
			fail(s, CBV_EPROTO, "%s [%s]: %s reply line longer than %d octets",
			     s->host, s->peer, cbv_stage_name(s->stage), CBV_REPLY_LINE_MAX);
			return -1;
		}
		if (got > 0) {
			enum cbv_status st = cbv_reply_feed(&s->cur, line, len, &err);

			if (st != CBV_OK) {
				fail(s, st == CBV_ENOMEM ? CBV_ENOMEM : CBV_EPROTO, "%s [%s]: %s reply: %s",
				     s->host, s->peer, cbv_stage_name(s->stage), err.msg);
				return -1;
			}
			if (s->cur.complete)
				return 1;
			continue;
		}
		if (s->await_reply) {
			s->await_reply = 0;
			s->want = POLLIN;
			return 0;
		}
		space = cbv_buf_space(&s->in, &avail);
		if (s->tls != NULL)
			n = cbv_tls_read(s->tls, space, avail, &ev, &err);
		else
			n = cbv_net_recv(s->fd, space, avail);
		if (n == 0) {
			s->want = ev;
			return 0;
		}
		if (n == -2) {
			s->peer_closed = 1;
			fail(s, CBV_ECONNECT, "%s [%s] closed the connection during %s",
			     s->host, s->peer, cbv_stage_name(s->stage));
			return -1;
		}
		if (n < 0) {
			s->peer_closed = 1;
			if (s->tls != NULL)
				fail(s, CBV_ETLS, "%s [%s]: %s: %s", s->host, s->peer,
				     cbv_stage_name(s->stage), err.msg);
			else
				fail(s, CBV_ECONNECT, "%s [%s]: reading %s reply: %s", s->host,
				     s->peer, cbv_stage_name(s->stage), strerror(errno));
			return -1;
		}
		cbv_buf_commit(&s->in, (size_t)n);
	}
}

/* The SMTP phase: write, read, act, until we must wait. */
static void run_smtp(struct cbv_session *s)
{
	while (s->phase == PH_SMTP) {
		int r = flush_out(s);

		if (r <= 0)
			return;
		r = read_reply(s);
		if (r <= 0)
			return;
		/* Nothing may follow a final line unless we pipelined more. */
		if (cbv_buf_pending(&s->in) != 0 && !(s->pipelined && s->stage == CBV_STAGE_MAIL) &&
		    !(s->stage == CBV_STAGE_RCPT && s->probe_state == 1) &&
		    !(s->stage == CBV_STAGE_RCPT && s->rcpts_pipelined && s->rcpt_replied + 1 < s->nreal) &&
		    s->stage != CBV_STAGE_STARTTLS) {
			fail(s, CBV_EPROTO, "%s [%s]: unexpected data after the %s reply",
			     s->host, s->peer, cbv_stage_name(s->stage));
			return;
		}
		on_reply(s);
	}
}

static void run_handshake(struct cbv_session *s)
{
	struct cbv_err err;
	short ev = POLLIN;
	int r = cbv_tls_handshake(s->tls, &ev, &err);

	if (r == 0) {
		s->want = ev;
		return;
	}
	if (r < 0) {
		s->peer_closed = 1;
		fail(s, CBV_ETLS, "%s [%s]: %s", s->host, s->peer, err.msg);
		return;
	}
	cbv_tls_describe(s->tls, s->res.tls, sizeof(s->res.tls));
	cbv_log(CBV_LOG_DEBUG, "%s[%s] TLS up: %s", s->host, s->peer, s->res.tls);
	s->phase = PH_SMTP;
	cbv_buf_init(&s->in);
	/* RFC 3207 4.2: forget what we knew; ask again. */
	s->cap_starttls = s->cap_pipelining = s->cap_utf8 = 0;
	send_cmd(s, CBV_STAGE_EHLO, "EHLO %s", s->helo);
	run_smtp(s);
}

/*
 * A group (o->nmore further recipients): copies them and sizes the
 * output queue and the pending commands for MAIL, every RCPT and the
 * probe in one write.  0, or -1 with err (CBV_EINVAL, CBV_ENOMEM).
 */
static int more_new(struct cbv_session *s, const struct cbv_session_opts *o,
                    struct cbv_err *err)
{
	size_t n = o->nmore;

	if (n > CBV_RCPTS_MAX - 1 || o->more_rcpts == NULL) {
		cbv_err_set(err, CBV_EINVAL, "more than %d recipients", CBV_RCPTS_MAX);
		return -1;
	}
	s->more = cbv_calloc(n, sizeof(*s->more));
	s->res.rcpts = cbv_calloc(n + 1, sizeof(*s->res.rcpts));
	s->out = cbv_malloc((n + 3) * CBV_CMD_MAX);
	s->pending = cbv_calloc(n + 3, sizeof(*s->pending));
	if (s->more == NULL || s->res.rcpts == NULL || s->out == NULL || s->pending == NULL) {
		if (s->out == NULL)
			s->out = s->out_inline;
		if (s->pending == NULL)
			s->pending = s->pending_inline;
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return -1;
	}
	s->res.nrcpts = n + 1;
	for (size_t i = 0; i <= n; i++)
		cbv_reply_init(&s->res.rcpts[i].reply);
	s->out_cap = (n + 3) * CBV_CMD_MAX;
	s->pending_max = (int)n + 3;
	s->nreal = n + 1;
	for (size_t i = 0; i < n; i++) {
		if (copy_wire(s->more[i], sizeof(s->more[i]), o->more_rcpts[i], "recipient", err) != 0)
			return -1;
		if (s->more[i][0] == '\0') {
			cbv_err_set(err, CBV_EINVAL, "empty recipient");
			return -1;
		}
	}
	return 0;
}

struct cbv_session *cbv_session_new(const struct sockaddr *sa, socklen_t salen,
                                    const struct cbv_session_opts *o,
                                    struct cbv_err *err)
{
	struct cbv_session *s = cbv_calloc(1, sizeof(*s));
	char init[CBV_DOMAIN_MAX + 100];

	if (s == NULL) {
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	s->fd = -1;
	s->out = s->out_inline;
	s->out_cap = sizeof(s->out_inline);
	s->pending = s->pending_inline;
	s->pending_max = 3;
	s->nreal = 1;
	if (o->nmore > 0 && more_new(s, o, err) != 0) {
		cbv_session_free(s);
		return NULL;
	}
	if (copy_wire(s->host, sizeof(s->host), o->host, "host name", err) != 0 ||
	    copy_wire(s->helo, sizeof(s->helo), o->helo, "HELO name", err) != 0 ||
	    copy_wire(s->mail_from, sizeof(s->mail_from), o->mail_from, "sender", err) != 0 ||
	    copy_wire(s->rcpt_to, sizeof(s->rcpt_to), o->rcpt_to, "recipient", err) != 0 ||
	    copy_wire(s->probe_rcpt, sizeof(s->probe_rcpt), o->probe_rcpt, "probe recipient",
	              err) != 0 ||
	    copy_wire(s->ca_dir, sizeof(s->ca_dir), o->ca_dir, "ca_dir", err) != 0) {
		cbv_session_free(s);
		return NULL;
	}
	if (s->helo[0] == '\0' || s->rcpt_to[0] == '\0') {
		cbv_err_set(err, CBV_EINVAL, "empty HELO name or recipient");
		cbv_session_free(s);
		return NULL;
	}
	s->o = *o;
	s->o.host = s->host;
	s->o.helo = s->helo;
	s->o.mail_from = s->mail_from;
	s->o.rcpt_to = s->rcpt_to;
	s->o.probe_rcpt = s->probe_rcpt[0] != '\0' ? s->probe_rcpt : NULL;
	s->o.more_rcpts = NULL; /* the copies are s->more */
	s->o.ca_dir = s->ca_dir;
	cbv_buf_init(&s->in);
	cbv_reply_init(&s->cur);
	cbv_reply_init(&s->res.reply);
	cbv_reply_init(&s->res.greeting);
	cbv_reply_init(&s->res.ehlo);
	cbv_net_format(sa, s->peer, sizeof(s->peer));
	snprintf(init, sizeof(init), "%s [%s]", s->host, s->peer);
	trace(s, CBV_TRACE_INIT, init);

	s->stage = CBV_STAGE_CONNECT;
	s->phase = PH_CONNECT;
	s->want = POLLOUT;
	set_deadline(s, s->o.connect_timeout_ms);
	s->fd = cbv_net_connect(sa, salen, &s->res.err);
	if (s->fd < 0) {
		s->peer_closed = 1;
		finish(s, CBV_ECONNECT);
	}
	return s;
}

int cbv_session_pollfd(struct cbv_session *s, struct pollfd *pfd, int64_t *wake_ms)
{
	if (s->phase == PH_DONE)
		return 0;
	pfd->fd = s->fd;
	pfd->events = s->want;
	pfd->revents = 0;
	*wake_ms = s->stage_deadline;
	return 1;
}

void cbv_session_process(struct cbv_session *s, short revents)
{
	struct cbv_err err;

	switch (s->phase) {
	case PH_DONE:
		return;
	case PH_CONNECT:
		if (revents & (POLLOUT | POLLERR | POLLHUP)) {
			/* Writable without error: connected, and SO_ERROR would say 0. */
			if ((revents & (POLLERR | POLLHUP)) != 0 &&
			    cbv_net_connect_result(s->fd, &err) != CBV_OK) {
				s->peer_closed = 1;
				cbv_err_set_errno(&s->res.err, CBV_ECONNECT, err.sys_errno,
				                  "connection to %s [%s] failed: %s", s->host, s->peer,
				                  err.msg);
				failed(s);
				return;
			}
			s->phase = PH_SMTP;
			s->stage = CBV_STAGE_GREETING;
			s->want = POLLIN;
			/* The greeting follows the connection: poll() for it first. */
			set_deadline(s, s->o.command_timeout_ms);
		}
		break;
	case PH_HANDSHAKE:
		run_handshake(s);
		break;
	case PH_SMTP:
		s->await_reply = 0; /* poll() has spoken: read what there is */
		run_smtp(s);
		break;
	}
	if (s->phase != PH_DONE && cbv_now_ms() >= s->stage_deadline) {
		int overall = s->stage_deadline >= s->o.deadline_ms;

		if (s->stage == CBV_STAGE_CONNECT)
			fail(s, CBV_ETIMEOUT, "connection to %s [%s] timed out%s", s->host,
			     s->peer, overall ? " (overall deadline)" : "");
		else
			fail(s, CBV_ETIMEOUT, "%s [%s] timed out waiting for the %s reply%s",
			     s->host, s->peer, cbv_stage_name(s->stage),
			     overall ? " (overall deadline)" : "");
	}
}

int cbv_session_done(const struct cbv_session *s)
{
	return s->phase == PH_DONE;
}

const struct cbv_session_outcome *cbv_session_outcome(const struct cbv_session *s)
{
	return &s->res;
}

void cbv_session_free(struct cbv_session *s)
{
	if (s == NULL)
		return;
	close_conn(s, s->held); /* a kept connection ends with QUIT */
	cbv_reply_clear(&s->cur);
	cbv_reply_clear(&s->res.reply);
	cbv_reply_clear(&s->res.greeting);
	cbv_reply_clear(&s->res.ehlo);
	for (size_t i = 0; i < s->res.nrcpts; i++)
		cbv_reply_clear(&s->res.rcpts[i].reply);
	cbv_free(s->res.rcpts);
	cbv_free(s->more);
	if (s->out != s->out_inline)
		cbv_free(s->out);
	if (s->pending != s->pending_inline)
		cbv_free(s->pending);
	cbv_free(s);
}

/* ---- session reuse (cbv_hold.h) ---- */

/*
 * A reply about the address that leaves the transaction as it was: 2xx,
 * or 55x other than X.5.3 (too many recipients, a limit of the
 * transaction); with temp = 1 also 4xx other than 421 (the server
 * leaves), 452 and X.5.3 (too many recipients).  50x (syntax, bad
 * sequence: the transaction is gone) never.
 */
static int clean_code(const struct cbv_reply *r, int temp)
{
	int many = r->ecode[0] != '\0' && strcmp(r->ecode + 1, ".5.3") == 0;

	if (r->code >= 200 && r->code < 300)
		return 1;
	if (r->code >= 550 && r->code <= 559)
		return !many;
	if (temp && r->code >= 400 && r->code < 500)
		return r->code != 421 && r->code != 452 && !many;
	return 0;
}

/* Every real RCPT answered by a clean_code(temp) reply. */
static int outcome_clean(const struct cbv_session_outcome *o, int temp)
{
	if (o->status != CBV_OK || o->stage != CBV_STAGE_RCPT)
		return 0;
	if (o->nrcpts == 0)
		return clean_code(&o->reply, temp);
	for (size_t i = 0; i < o->nrcpts; i++) {
		if (!o->rcpts[i].replied || !clean_code(&o->rcpts[i].reply, temp))
			return 0;
	}
	return 1;
}

int cbv_session_outcome_clean(const struct cbv_session_outcome *o)
{
	return outcome_clean(o, 0);
}

int cbv_session_outcome_answered(const struct cbv_session_outcome *o)
{
	return outcome_clean(o, 1);
}

int cbv_session_parkable(const struct cbv_session *s)
{
	return s != NULL && s->phase == PH_DONE && s->held && s->fd >= 0;
}

unsigned cbv_session_txn_rcpts(const struct cbv_session *s)
{
	return s->txn_rcpts;
}

unsigned cbv_session_txn_errors(const struct cbv_session *s)
{
	return s->txn_errors;
}

static int same_str(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

int cbv_session_matches(const struct cbv_session *s, const struct sockaddr *sa,
                        const struct cbv_session_opts *o)
{
	char peer[sizeof(s->peer)];

	cbv_net_format(sa, peer, sizeof(peer));
	return strcmp(peer, s->peer) == 0 && same_str(o->host, s->host) &&
	       same_str(o->helo, s->helo) && same_str(o->mail_from, s->mail_from) &&
	       same_str(o->ca_dir, s->ca_dir) && !o->utf8 == !s->o.utf8 &&
	       o->starttls == s->o.starttls && !o->tls_verify == !s->o.tls_verify &&
	       o->connect_timeout_ms == s->o.connect_timeout_ms &&
	       o->command_timeout_ms == s->o.command_timeout_ms;
}

int cbv_session_alive(const struct cbv_session *s)
{
	struct pollfd p;

	if (!cbv_session_parkable(s))
		return 0;
	if (s->tls != NULL && cbv_tls_pending(s->tls))
		return 0; /* bytes the peer sent unasked, already read from the socket */
	p.fd = s->fd;
	p.events = POLLIN;
	p.revents = 0;
	return poll(&p, 1, 0) == 0;
}

/* Back to one recipient: the last transaction's group buffers go. */
static void more_free(struct cbv_session *s)
{
	for (size_t i = 0; i < s->res.nrcpts; i++)
		cbv_reply_clear(&s->res.rcpts[i].reply);
	cbv_free(s->res.rcpts);
	s->res.rcpts = NULL;
	s->res.nrcpts = 0;
	cbv_free(s->more);
	s->more = NULL;
	if (s->out != s->out_inline)
		cbv_free(s->out);
	if (s->pending != s->pending_inline)
		cbv_free(s->pending);
	s->out = s->out_inline;
	s->out_cap = sizeof(s->out_inline);
	s->pending = s->pending_inline;
	s->pending_max = 3;
	s->nreal = 1;
}

int cbv_session_reuse(struct cbv_session *s, const struct cbv_session_opts *o,
                      struct cbv_err *err)
{
	char init[CBV_DOMAIN_MAX + 100];

	if (!cbv_session_parkable(s)) {
		cbv_err_set(err, CBV_EINVAL, "no parked session");
		return -1;
	}
	more_free(s);
	if ((o->nmore > 0 && more_new(s, o, err) != 0) ||
	    copy_wire(s->rcpt_to, sizeof(s->rcpt_to), o->rcpt_to, "recipient", err) != 0 ||
	    copy_wire(s->probe_rcpt, sizeof(s->probe_rcpt), o->probe_rcpt, "probe recipient",
	              err) != 0)
		return -1;
	if (s->rcpt_to[0] == '\0') {
		cbv_err_set(err, CBV_EINVAL, "empty recipient");
		return -1;
	}
	s->o.rcpt_to = s->rcpt_to;
	s->o.probe_rcpt = s->probe_rcpt[0] != '\0' ? s->probe_rcpt : NULL;
	s->o.more_rcpts = NULL;
	s->o.nmore = o->nmore;
	s->o.deadline_ms = o->deadline_ms;
	s->o.trace = o->trace;
	s->o.trace_arg = o->trace_arg;
	s->o.hold = o->hold;
	/* The outcome keeps the session's greeting, EHLO reply and TLS; the
	 * rest is this transaction's. */
	s->res.stage = CBV_STAGE_RCPT;
	s->res.status = CBV_OK;
	memset(&s->res.err, 0, sizeof(s->res.err));
	cbv_reply_reset(&s->res.reply);
	s->res.sent[0] = '\0';
	s->res.probe_code = 0;
	s->res.probe_recv[0] = '\0';
	s->res.probe_sent[0] = '\0';
	s->res.tls_not_offered = 0;
	s->res.smtputf8_missing = 0;
	/* tls says what a fresh connection would have had: no full handshake
	 * when the session could be resumed (as cbv_tls_describe() says it). */
	if (s->tls != NULL && cbv_tls_resumable(s->tls) && strstr(s->res.tls, ":resumed") == NULL) {
		size_t n = strlen(s->res.tls);

		snprintf(s->res.tls + n, sizeof(s->res.tls) - n, ":resumed");
	}
	s->held = 0;
	s->rcpt_replied = 0;
	s->any_ok = 0;
	s->probe_state = 0;
	s->skip_rcpt = 0;
	s->pipelined = 0;
	s->npending = 0;
	s->await_reply = 0;
	s->out_len = s->out_off = 0;
	cbv_reply_reset(&s->cur);
	s->rcpts_pipelined = s->cap_pipelining; /* never ondemand: not parked */
	snprintf(init, sizeof(init), "%s [%s]", s->host, s->peer);
	trace(s, CBV_TRACE_INIT, init);
	s->phase = PH_SMTP;
	send_cmd(s, CBV_STAGE_RCPT, "RCPT TO:<%s>", s->rcpt_to);
	for (size_t i = 1; i < s->nreal && s->rcpts_pipelined && s->phase != PH_DONE; i++)
		send_cmd(s, CBV_STAGE_RCPT, "RCPT TO:<%s>", rcpt_addr(s, i));
	if (s->probe_rcpt[0] != '\0' && s->rcpts_pipelined && s->phase != PH_DONE) {
		send_cmd(s, CBV_STAGE_RCPT, "RCPT TO:<%s>", s->probe_rcpt);
		s->probe_state = 1;
	}
	if (s->phase == PH_DONE) {
		cbv_err_set(err, s->res.err.code, "%s", s->res.err.msg);
		return -1;
	}
	s->stage = CBV_STAGE_RCPT;
	s->want = POLLOUT; /* the RCPTs go out at the first cbv_session_process() */
	return 0;
}

void cbv_session_abandon(struct cbv_session *s)
{
	if (s == NULL)
		return;
	if (s->tls != NULL)
		cbv_tls_abandon(s->tls);
	s->tls = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->held = 0;
	cbv_session_free(s);
}
