/*
 * check_session.c - the SMTP client state machine (cbv_session) against
 * a scripted peer that the test itself runs: a fork()ed child on a
 * loopback listener (127.0.0.1, a port the kernel picks) that replays a
 * script of steps - send, drip, expect a command line, expect silence,
 * expect the end without QUIT - and exits non-zero on the first step the
 * session does not match.  Nothing leaves 127.0.0.1.
 *
 * The session is driven with poll() as cbv_verify() drives it.  Each row
 * checks the outcome (status, stage, deciding reply code) and that the
 * peer saw exactly the commands it expected; no row asserts timing.  The
 * drip rows use deadlines far shorter than the drip, so a deadline that
 * restarted on each byte would let the reply complete and the row fail.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cbv_clock.h"
#include "cbv_session.h"
#include "cbv_status.h"

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

#define PEER_WAIT_MS 5000 /* the peer gives up on a silent client after this */
#define QUIET_MS 200      /* how long the peer listens for a command that must not come */
#define DRIP_GAP_MS 20    /* between two dripped bytes */
#define CMD_MS 3000       /* default command_timeout for rows */
#define RUN_MS 8000       /* default overall deadline for rows */

/* ---- the scripted peer ------------------------------------------------ */

enum op {
	END,      /* script done: read until the client closes, ignore what it says */
	SEND,     /* one write of arg */
	DRIP,     /* arg one byte at a time; a client that closes ends the script */
	EXPECT,   /* the next line from the client is exactly arg (CRLF removed) */
	QUIET,    /* the client says nothing for QUIET_MS (it must wait for a reply) */
	EOF_ONLY, /* the client closes without another byte (no QUIT after 421) */
	TLS_HELLO /* the next byte is a TLS handshake record (0x16); then close */
};

struct step {
	enum op op;
	const char *arg;
};

#define S(x) { SEND, x }
#define D(x) { DRIP, x }
#define E(x) { EXPECT, x }
#define QUIET_ { QUIET, NULL }
#define NO_QUIT { EOF_ONLY, NULL }
#define HELLO { TLS_HELLO, NULL }
#define DONE { END, NULL }
#define SCRIPT(...) ((const struct step[]){ __VA_ARGS__ })

#define HELO_NAME "client.test"
#define RCPT_ADDR "user@example.test"
#define GREET S("220 peer.test ESMTP\r\n"), E("EHLO " HELO_NAME)
#define EHLO_PLAIN S("250 peer.test\r\n")
#define EHLO_PIPE S("250-peer.test\r\n250 PIPELINING\r\n")
#define EHLO_TLS S("250-peer.test\r\n250 STARTTLS\r\n")
#define EHLO_PIPE_TLS S("250-peer.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
#define MAIL E("MAIL FROM:<>")
#define RCPT E("RCPT TO:<" RCPT_ADDR ">")
#define NEED_TLS "530 5.7.0 Must issue a STARTTLS command first\r\n"

/* What the client sent: buf[off..len) is unread.  Never compacted: one
 * conversation is far smaller than buf (a full buf fails the step). */
struct peer_io {
	int fd;
	char buf[16384];
	size_t off, len;
};

/* Waits up to ms for bytes; returns what recv() said, 0 on EOF, -1 on timeout/error. */
static ssize_t peer_fill(struct peer_io *p, int ms)
{
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
	ssize_t n;

	if (p->len == sizeof(p->buf))
		return -1;
	if (poll(&pfd, 1, ms) <= 0)
		return -1;
	n = recv(p->fd, p->buf + p->len, sizeof(p->buf) - p->len, 0);
	if (n > 0)
		p->len += (size_t)n;
	return n < 0 ? -1 : n;
}

/* Reads one line (without CRLF) into line; 0 ok, -1 on EOF or timeout. */
static int peer_line(struct peer_io *p, char *line, size_t n)
{
	int64_t end = cbv_now_ms() + PEER_WAIT_MS;

	for (;;) {
		char *start = p->buf + p->off;
		char *lf = memchr(start, '\n', p->len - p->off);

		if (lf != NULL) {
			size_t len = (size_t)(lf - start);
			size_t keep = len > 0 && lf[-1] == '\r' ? len - 1 : len;

			snprintf(line, n, "%.*s", (int)keep, start);
			p->off += len + 1;
			return 0;
		}
		if (cbv_now_ms() >= end || peer_fill(p, (int)(end - cbv_now_ms())) <= 0)
			return -1;
	}
}

static int peer_send(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Plays one step; 0 to go on, 1 when the script is over, -1 on a mismatch. */
static int peer_step(struct peer_io *p, const struct step *st, int i)
{
	char line[1024];
	struct timespec gap = { 0, DRIP_GAP_MS * 1000000L };

	switch (st->op) {
	case END:
		while (peer_fill(p, PEER_WAIT_MS) > 0)
			p->off = p->len = 0;
		return 1;
	case SEND:
		return peer_send(p->fd, st->arg, strlen(st->arg)) == 0 ? 0 : -1;
	case DRIP:
		for (const char *c = st->arg; *c != '\0'; c++) {
			if (peer_send(p->fd, c, 1) != 0)
				return 1; /* the client gave up: what a drip is for */
			nanosleep(&gap, NULL);
		}
		return 0;
	case EXPECT:
		if (peer_line(p, line, sizeof(line)) != 0) {
			fprintf(stderr, "peer step %d: no line, want \"%s\"\n", i, st->arg);
			return -1;
		}
		if (strcmp(line, st->arg) != 0) {
			fprintf(stderr, "peer step %d: got \"%s\", want \"%s\"\n", i, line, st->arg);
			return -1;
		}
		return 0;
	case QUIET:
		if (p->off == p->len && peer_fill(p, QUIET_MS) < 0)
			return 0;
		fprintf(stderr, "peer step %d: the client spoke before the reply: \"%.*s\"\n", i,
		        (int)(p->len - p->off), p->buf + p->off);
		return -1;
	case EOF_ONLY:
		if (p->off == p->len && peer_fill(p, PEER_WAIT_MS) == 0)
			return 1;
		fprintf(stderr, "peer step %d: want a close, got \"%.*s\"\n", i,
		        (int)(p->len - p->off), p->buf + p->off);
		return -1;
	case TLS_HELLO:
		if (p->off == p->len && peer_fill(p, PEER_WAIT_MS) <= 0)
			return -1;
		if ((unsigned char)p->buf[p->off] != 0x16) {
			fprintf(stderr, "peer step %d: no TLS handshake record: \"%.*s\"\n", i,
			        (int)(p->len - p->off), p->buf + p->off);
			return -1;
		}
		return 1;
	}
	return -1;
}

/* The child: accepts one connection and plays the script.  Never returns. */
static void peer_main(int lfd, const struct step *script)
{
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };
	static struct peer_io p = { .fd = -1 };
	int one = 1;

	if (poll(&pfd, 1, PEER_WAIT_MS) != 1 || (p.fd = accept(lfd, NULL, NULL)) < 0)
		_exit(2);
	setsockopt(p.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int i = 0;; i++) {
		int r = peer_step(&p, &script[i], i);

		if (r < 0)
			_exit(10 + i);
		if (r > 0)
			break;
	}
	close(p.fd);
	_exit(0);
}

/* ---- driving a session against the peer ------------------------------- */

struct row {
	const char *name;
	const struct step *peer;
	enum cbv_starttls starttls;
	unsigned command_ms;   /* 0: CMD_MS */
	unsigned overall_ms;   /* 0: RUN_MS */
	enum cbv_status status;
	enum cbv_stage stage;
	int code;              /* the outcome's reply code (0: none) */
	const char *ecode;     /* NULL: not checked */
	enum { ANY, OFFERED, NOT_OFFERED } tls_offered; /* the EHLO reply's STARTTLS */
};

struct run {
	struct cbv_session_outcome o;
	int peer_exit;         /* the child's exit status: 0 = script followed */
	struct {               /* o.rcpts[] copied before the session is freed */
		int replied, code;
		char sent[CBV_CMD_MAX];
	} rcpts[3];
	size_t nrcpts;
};

/* Runs one session against a peer playing script; fills *out. */
/* The catch-all probe RCPT the next session sends (NULL: none); the probe rows set it. */
static const char *probe_rcpt;
/* Further recipients of the next session (a group); the group rows set them. */
static const char *const *more_rcpts;
static size_t nmore;

static void run_session(const struct row *row, struct run *out)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);
	struct cbv_session_opts o;
	struct cbv_session *s;
	struct cbv_err err;
	int lfd, status;
	pid_t pid;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 1), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &salen), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		peer_main(lfd, row->peer);

	memset(&o, 0, sizeof(o));
	o.host = "peer.test";
	o.helo = HELO_NAME;
	o.mail_from = "";
	o.rcpt_to = RCPT_ADDR;
	o.probe_rcpt = probe_rcpt;
	o.more_rcpts = more_rcpts;
	o.nmore = nmore;
	o.starttls = row->starttls;
	o.ca_dir = "";
	o.connect_timeout_ms = CMD_MS;
	o.command_timeout_ms = row->command_ms ? row->command_ms : CMD_MS;
	o.deadline_ms = cbv_now_ms() + (row->overall_ms ? row->overall_ms : RUN_MS);
	s = cbv_session_new((struct sockaddr *)&sa, salen, &o, &err);
	if (s != NULL) {
		struct pollfd pfd;
		int64_t wake;

		while (cbv_session_pollfd(s, &pfd, &wake)) {
			int64_t t = wake - cbv_now_ms();
			int n = poll(&pfd, 1, t < 0 ? 0 : (int)t);

			cbv_session_process(s, n > 0 ? pfd.revents : 0);
		}
		out->o = *cbv_session_outcome(s);
		for (size_t i = 0; i < out->o.nrcpts && i < 3; i++) {
			out->rcpts[i].replied = out->o.rcpts[i].replied;
			out->rcpts[i].code = out->o.rcpts[i].reply.code;
			snprintf(out->rcpts[i].sent, sizeof(out->rcpts[i].sent), "%s",
			         out->o.rcpts[i].sent);
		}
		out->nrcpts = out->o.nrcpts;
		out->o.rcpts = NULL; /* freed with the session */
		cbv_session_free(s);
	}
	close(lfd);
	/* The peer ends when the session closes (or after PEER_WAIT_MS). */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	out->peer_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	ck_assert_msg(s != NULL, "%s: cbv_session_new: %s", row->name, err.msg);
}

static struct run result; /* 50 kB: not on Check's stack */

static void check_row(const struct row *row)
{
	const struct cbv_session_outcome *o = &result.o;

	memset(&result, 0, sizeof(result));
	run_session(row, &result);
	ck_assert_msg(result.peer_exit == 0, "%s: peer script failed at step %d (exit %d)",
	              row->name, result.peer_exit - 10, result.peer_exit);
	ck_assert_msg(o->status == row->status, "%s: status %s, want %s (%s)", row->name,
	              cbv_strstatus(o->status), cbv_strstatus(row->status), o->err.msg);
	ck_assert_msg(o->stage == row->stage, "%s: stage %s, want %s (%s)", row->name,
	              cbv_stage_name(o->stage), cbv_stage_name(row->stage), o->err.msg);
	if (row->status == CBV_OK)
		ck_assert_msg(o->reply.code == row->code, "%s: reply %d, want %d", row->name,
		              o->reply.code, row->code);
	if (row->ecode != NULL)
		ck_assert_str_eq(o->reply.ecode, row->ecode);
	if (row->tls_offered != ANY)
		ck_assert_int_eq(o->tls_offered, row->tls_offered == OFFERED);
}

/* ---- HELO fallback (RFC 5321 3.2) --------------------------------------- */

static const struct row helo_rows[] = {
	{ "EHLO 500 -> HELO, then plain MAIL and RCPT",
	  SCRIPT(GREET, S("500 5.5.1 command unrecognized\r\n"), E("HELO " HELO_NAME),
	         S("250 peer.test\r\n"), MAIL, QUIET_, S("250 2.1.0 ok\r\n"), RCPT,
	         S("250 2.1.5 ok\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	{ "EHLO 502 -> HELO 550",
	  SCRIPT(GREET, S("502 not implemented\r\n"), E("HELO " HELO_NAME),
	         S("550 go away\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_HELO, 550, NULL, ANY },
	{ "EHLO 451: no HELO",
	  SCRIPT(GREET, S("451 4.3.0 try later\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_EHLO, 451, "4.3.0", ANY },
	{ "HELO forgets PIPELINING and STARTTLS",
	  SCRIPT(GREET, S("500-PIPELINING\r\n500 STARTTLS\r\n"), E("HELO " HELO_NAME),
	         S("250 peer.test\r\n"), MAIL, QUIET_, S("250 ok\r\n"), RCPT,
	         S("550 5.1.1 no such user\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_OPPORTUNISTIC, 0, 0, CBV_OK, CBV_STAGE_RCPT, 550, "5.1.1", NOT_OFFERED },
};

START_TEST(test_helo)
{
	check_row(&helo_rows[_i]);
	/* The EHLO/HELO reply kept is the last one: HELO's after a fallback. */
	if (helo_rows[_i].stage != CBV_STAGE_EHLO)
		ck_assert_int_eq(result.o.ehlo.code, helo_rows[_i].stage == CBV_STAGE_HELO ? 550 : 250);
}
END_TEST

/* ---- PIPELINING (RFC 2920) -------------------------------------------- */

static const struct row pipe_rows[] = {
	{ "MAIL and RCPT replies in one packet",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, S("250 2.1.0 ok\r\n250 2.1.5 ok\r\n"), E("QUIT"),
	         DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	{ "RCPT 550 in the same packet",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, S("250 2.1.0 ok\r\n550 5.1.1 unknown\r\n"),
	         E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 550, "5.1.1", ANY },
	{ "MAIL 550 decides, the RCPT reply is left unread",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT,
	         S("550 5.7.1 no null sender\r\n554 5.5.1 no valid recipients\r\n"), E("QUIT"),
	         DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_MAIL, 550, "5.7.1", ANY },
	{ "packet boundary inside the RCPT reply",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, S("250 ok\r\n25"), S("0-first\r\n"),
	         S("250 2.1.5 last\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, NULL, ANY },
	{ "multi-line EHLO split over packets still offers PIPELINING",
	  SCRIPT(GREET, S("250-peer.test\r\n250-SIZE 10"), S("000\r\n250-PIPEL"),
	         S("INING\r\n250 8BITMIME\r\n"), MAIL, RCPT, S("250 ok\r\n250 ok\r\n"),
	         E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, NULL, ANY },
	{ "no PIPELINING: RCPT waits for the MAIL reply",
	  SCRIPT(GREET, EHLO_PLAIN, MAIL, QUIET_, S("250 ok\r\n"), RCPT, S("250 ok\r\n"),
	         E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, NULL, ANY },
};

START_TEST(test_pipelining)
{
	check_row(&pipe_rows[_i]);
}
END_TEST

/* ---- the catch-all probe: a second RCPT, its reply kept apart ----------- */

#define PROBE_ADDR "cbv-probe-0123456789abcdef@example.test"
#define PROBE E("RCPT TO:<" PROBE_ADDR ">")

static const struct row probe_rows[] = {
	{ "pipelined with MAIL and RCPT; both accepted",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, PROBE, S("250 ok\r\n250 2.1.5 ok\r\n250 2.1.5 probe\r\n"),
	         E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	{ "pipelined; the probe refused",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, PROBE, S("250 ok\r\n250 2.1.5 ok\r\n"),
	         S("550 5.1.1 no\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	{ "pipelined; the real RCPT refused decides, the probe reply is not awaited",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, PROBE, S("250 ok\r\n550 5.1.1 unknown\r\n"),
	         E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 550, "5.1.1", ANY },
	{ "pipelined; the probe never answered: the real 250 stands",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, PROBE, S("250 ok\r\n250 2.1.5 ok\r\n"),
	         E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 300, 0, CBV_OK, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	{ "not pipelined: the probe after the real 250",
	  SCRIPT(GREET, EHLO_PLAIN, MAIL, S("250 ok\r\n"), RCPT, QUIET_, S("250 2.1.5 ok\r\n"),
	         PROBE, S("250 2.1.5 probe\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	{ "not pipelined: no probe after a 550",
	  SCRIPT(GREET, EHLO_PLAIN, MAIL, S("250 ok\r\n"), RCPT, S("550 5.1.1 unknown\r\n"),
	         E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 550, "5.1.1", ANY },
};

/* The probe's reply code per row (0: none received). */
static const int probe_codes[] = { 250, 550, 0, 0, 250, 0 };

START_TEST(test_probe)
{
	probe_rcpt = PROBE_ADDR;
	check_row(&probe_rows[_i]);
	probe_rcpt = NULL;
	ck_assert_int_eq(result.o.probe_code, probe_codes[_i]);
	/* sent and reply stay the real RCPT's pair */
	ck_assert_str_eq(result.o.sent, "RCPT TO:<" RCPT_ADDR ">");
	ck_assert_str_eq(result.o.probe_sent, probe_codes[_i] ? "RCPT TO:<" PROBE_ADDR ">" : "");
}
END_TEST

/* ---- several recipients in one transaction ----------------------------- */

#define RCPT_B "b@example.test"
#define RCPT_C "c@example.test"
#define RCPTB E("RCPT TO:<" RCPT_B ">")
#define RCPTC E("RCPT TO:<" RCPT_C ">")

static const char *const group_more[] = { RCPT_B, RCPT_C };

struct group_row {
	struct row r;
	int probe;      /* the session also sends the probe */
	int codes[3];   /* each recipient's reply code, 0: none received */
	int probe_code; /* the probe's, 0: none */
};

static const struct group_row group_rows[] = {
	{ { "pipelined: MAIL and three RCPTs in one write, all accepted",
	    SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, RCPTB, RCPTC,
	           S("250 ok\r\n250 2.1.5 a\r\n250 2.1.5 b\r\n250 2.1.5 c\r\n"), E("QUIT"), DONE),
	    CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	  0, { 250, 250, 250 }, 0 },
	{ { "pipelined: mixed replies, each its own (a 4xx and a 5xx do not spill)",
	    SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, RCPTB, RCPTC, S("250 ok\r\n550 5.1.1 a unknown\r\n"),
	           S("451 4.7.1 b greylisted\r\n250 2.1.5 c\r\n"), E("QUIT"), DONE),
	    CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	  0, { 550, 451, 250 }, 0 },
	{ { "pipelined: one 4xx among 2xx",
	    SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, RCPTB, RCPTC,
	           S("250 ok\r\n250 2.1.5 a\r\n450 4.2.0 b busy\r\n250 2.1.5 c\r\n"), E("QUIT"), DONE),
	    CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	  0, { 250, 450, 250 }, 0 },
	{ { "pipelined: MAIL 5xx answers for all; the RCPT replies are not awaited",
	    SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, RCPTB, RCPTC, S("550 5.7.1 no null sender\r\n"),
	           E("QUIT"), DONE),
	    CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_MAIL, 550, "5.7.1", ANY },
	  0, { 0, 0, 0 }, 0 },
	{ { "no PIPELINING: one RCPT at a time, each after the previous reply",
	    SCRIPT(GREET, EHLO_PLAIN, MAIL, QUIET_, S("250 ok\r\n"), RCPT, QUIET_,
	           S("550 5.1.1 a\r\n"), RCPTB, QUIET_, S("250 2.1.5 b\r\n"), RCPTC, QUIET_,
	           S("451 4.3.0 c\r\n"), E("QUIT"), DONE),
	    CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 451, "4.3.0", ANY },
	  0, { 550, 250, 451 }, 0 },
	{ { "421 to the second RCPT: the server leaves, the third is unanswered",
	    SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, RCPTB, RCPTC,
	           S("250 ok\r\n250 2.1.5 a\r\n421 4.3.2 bye\r\n"), NO_QUIT),
	    CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 421, "4.3.2", ANY },
	  0, { 250, 421, 0 }, 0 },
	{ { "no third reply (timeout): the two replies stand, the third has none",
	    SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, RCPTB, RCPTC,
	           S("250 ok\r\n550 5.1.1 a\r\n250 2.1.5 b\r\n"), DONE),
	    CBV_STARTTLS_NEVER, 300, 0, CBV_ETIMEOUT, CBV_STAGE_RCPT, 250, "2.1.5", ANY },
	  0, { 550, 250, 0 }, 0 },
	{ { "pipelined with the probe last; awaited since one RCPT got 2xx",
	    SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, RCPTB, RCPTC, PROBE,
	           S("250 ok\r\n550 5.1.1 a\r\n250 2.1.5 b\r\n550 5.1.1 c\r\n550 5.1.1 p\r\n"),
	           E("QUIT"), DONE),
	    CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 550, "5.1.1", ANY },
	  1, { 550, 250, 550 }, 550 },
	{ { "pipelined with the probe; none accepted: the probe is not awaited",
	    SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, RCPTB, RCPTC, PROBE,
	           S("250 ok\r\n550 5.1.1 a\r\n550 5.1.1 b\r\n550 5.1.1 c\r\n"), E("QUIT"), DONE),
	    CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 550, "5.1.1", ANY },
	  1, { 550, 550, 550 }, 0 },
};

START_TEST(test_group)
{
	const struct group_row *g = &group_rows[_i];
	static const char *const addrs[] = { RCPT_ADDR, RCPT_B, RCPT_C };
	char want[CBV_CMD_MAX];

	more_rcpts = group_more;
	nmore = 2;
	probe_rcpt = g->probe ? PROBE_ADDR : NULL;
	check_row(&g->r);
	more_rcpts = NULL;
	nmore = 0;
	probe_rcpt = NULL;
	ck_assert_uint_eq(result.nrcpts, 3);
	ck_assert_int_eq(result.o.probe_code, g->probe_code);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(result.rcpts[i].replied, g->codes[i] != 0);
		ck_assert_int_eq(result.rcpts[i].code, g->codes[i]);
		/* sent and reply: a true pair */
		snprintf(want, sizeof(want), "RCPT TO:<%s>", addrs[i]);
		ck_assert_str_eq(result.rcpts[i].sent, g->codes[i] ? want : "");
	}
}
END_TEST

/* ---- STARTTLS on demand (RFC 3207 4: 530 before MAIL) ------------------ */

static const struct row ondemand_rows[] = {
	{ "pipelined: 530 to MAIL, the RCPT reply is skipped, then STARTTLS",
	  SCRIPT(GREET, EHLO_PIPE_TLS, MAIL, RCPT, S(NEED_TLS NEED_TLS), E("STARTTLS"),
	         S("454 4.7.0 TLS not available\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_ONDEMAND, 0, 0, CBV_OK, CBV_STAGE_STARTTLS, 454, "4.7.0", OFFERED },
	{ "pipelined: STARTTLS waits for the pipelined RCPT reply",
	  SCRIPT(GREET, EHLO_PIPE_TLS, MAIL, RCPT, S(NEED_TLS), QUIET_, S(NEED_TLS),
	         E("STARTTLS"), S("454 4.7.0 TLS not available\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_ONDEMAND, 0, 0, CBV_OK, CBV_STAGE_STARTTLS, 454, NULL, OFFERED },
	{ "pipelined: then the handshake starts",
	  SCRIPT(GREET, EHLO_PIPE_TLS, MAIL, RCPT, S(NEED_TLS NEED_TLS), E("STARTTLS"),
	         S("220 2.0.0 go ahead\r\n"), HELLO),
	  CBV_STARTTLS_ONDEMAND, 0, 0, CBV_ETLS, CBV_STAGE_TLS, 0, NULL, OFFERED },
	{ "not pipelined: 530 to MAIL -> STARTTLS",
	  SCRIPT(GREET, EHLO_TLS, MAIL, S(NEED_TLS), E("STARTTLS"),
	         S("454 4.7.0 TLS not available\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_ONDEMAND, 0, 0, CBV_OK, CBV_STAGE_STARTTLS, 454, NULL, OFFERED },
	{ "not pipelined: 530 to RCPT -> RSET, STARTTLS",
	  SCRIPT(GREET, EHLO_TLS, MAIL, S("250 ok\r\n"), RCPT, S(NEED_TLS), E("RSET"),
	         S("250 ok\r\n"), E("STARTTLS"), S("454 4.7.0 TLS not available\r\n"),
	         E("QUIT"), DONE),
	  CBV_STARTTLS_ONDEMAND, 0, 0, CBV_OK, CBV_STAGE_STARTTLS, 454, NULL, OFFERED },
	{ "RSET refused",
	  SCRIPT(GREET, EHLO_TLS, MAIL, S("250 ok\r\n"), RCPT, S(NEED_TLS), E("RSET"),
	         S("503 no\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_ONDEMAND, 0, 0, CBV_OK, CBV_STAGE_RSET, 503, NULL, OFFERED },
	{ "530 but no STARTTLS offered: the 530 decides",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, S(NEED_TLS NEED_TLS), E("QUIT"), DONE),
	  CBV_STARTTLS_ONDEMAND, 0, 0, CBV_OK, CBV_STAGE_MAIL, 530, "5.7.0", NOT_OFFERED },
	{ "starttls=never: the 530 decides",
	  SCRIPT(GREET, EHLO_PIPE_TLS, MAIL, RCPT, S(NEED_TLS NEED_TLS), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_MAIL, 530, NULL, OFFERED },
};

START_TEST(test_ondemand)
{
	check_row(&ondemand_rows[_i]);
}
END_TEST

/* ---- STARTTLS: nothing may follow the 220 (CVE-2011-0411) --------------- */

static const struct row starttls_rows[] = {
	{ "data after 220 in the same packet: refused, no handshake",
	  SCRIPT(GREET, EHLO_TLS, E("STARTTLS"), S("220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n"),
	         NO_QUIT),
	  CBV_STARTTLS_OPPORTUNISTIC, 0, 0, CBV_EPROTO, CBV_STAGE_STARTTLS, 0, NULL, OFFERED },
	{ "a partial line after 220: refused",
	  SCRIPT(GREET, EHLO_TLS, E("STARTTLS"), S("220 go ahead\r\nMAIL"), NO_QUIT),
	  CBV_STARTTLS_REQUIRE, 0, 0, CBV_EPROTO, CBV_STAGE_STARTTLS, 0, NULL, OFFERED },
	{ "a clean 220: the handshake starts",
	  SCRIPT(GREET, EHLO_TLS, E("STARTTLS"), S("220 2.0.0 go ahead\r\n"), HELLO),
	  CBV_STARTTLS_OPPORTUNISTIC, 0, 0, CBV_ETLS, CBV_STAGE_TLS, 0, NULL, OFFERED },
	{ "opportunistic: 454 goes on in plain text",
	  SCRIPT(GREET, EHLO_TLS, E("STARTTLS"), S("454 4.7.0 not now\r\n"), MAIL,
	         S("250 ok\r\n"), RCPT, S("250 ok\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_OPPORTUNISTIC, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, NULL, OFFERED },
	{ "require: 454 decides",
	  SCRIPT(GREET, EHLO_TLS, E("STARTTLS"), S("454 4.7.0 not now\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_REQUIRE, 0, 0, CBV_OK, CBV_STAGE_STARTTLS, 454, NULL, OFFERED },
	{ "require, not offered: no MAIL",
	  SCRIPT(GREET, EHLO_PIPE, NO_QUIT),
	  CBV_STARTTLS_REQUIRE, 0, 0, CBV_ETLS, CBV_STAGE_STARTTLS, 0, NULL, NOT_OFFERED },
	{ "never: STARTTLS offered but not used",
	  SCRIPT(GREET, EHLO_TLS, MAIL, S("250 ok\r\n"), RCPT, S("250 ok\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, NULL, OFFERED },
};

START_TEST(test_starttls)
{
	const struct row *row = &starttls_rows[_i];

	check_row(row);
	ck_assert_int_eq(result.o.tls_not_offered, row->status == CBV_ETLS &&
	                                           row->stage == CBV_STAGE_STARTTLS);
	ck_assert_str_eq(result.o.tls, "");
}
END_TEST

/* ---- 421: the server is leaving; no QUIT (RFC 5321 3.8) ------------------ */

static const struct row r421_rows[] = {
	{ "421 greeting",
	  SCRIPT(S("421 4.3.2 too busy\r\n"), NO_QUIT),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_GREETING, 421, "4.3.2", ANY },
	{ "421 to EHLO",
	  SCRIPT(GREET, S("421 4.3.2 shutting down\r\n"), NO_QUIT),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_EHLO, 421, NULL, ANY },
	{ "421 to MAIL",
	  SCRIPT(GREET, EHLO_PLAIN, MAIL, S("421 4.3.2 shutting down\r\n"), NO_QUIT),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_MAIL, 421, NULL, ANY },
	{ "421 to a pipelined RCPT",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, S("250 ok\r\n421 4.4.2 timeout\r\n"), NO_QUIT),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 421, "4.4.2", ANY },
	{ "421 then close",
	  SCRIPT(GREET, EHLO_PLAIN, MAIL, S("421 bye\r\n"), NO_QUIT),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_MAIL, 421, NULL, ANY },
	{ "control: 451 to MAIL gets a QUIT",
	  SCRIPT(GREET, EHLO_PLAIN, MAIL, S("451 4.3.0 later\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_MAIL, 451, NULL, ANY },
};

START_TEST(test_421)
{
	check_row(&r421_rows[_i]);
}
END_TEST

/* ---- a drip: the stage deadline covers the whole reply ------------------- */

#define LONG_GREETING "220 peer.test ESMTP this greeting takes two seconds to arrive, " \
	              "one byte every twenty milliseconds\r\n"

static const struct row drip_rows[] = {
	{ "greeting dripped past command_timeout",
	  SCRIPT(D(LONG_GREETING), DONE),
	  CBV_STARTTLS_NEVER, 300, 0, CBV_ETIMEOUT, CBV_STAGE_GREETING, 0, NULL, ANY },
	{ "RCPT reply dripped past command_timeout",
	  SCRIPT(GREET, EHLO_PLAIN, MAIL, S("250 ok\r\n"), RCPT,
	         D("250 2.1.5 this reply takes two seconds, one byte every twenty ms ....\r\n"),
	         DONE),
	  CBV_STARTTLS_NEVER, 300, 0, CBV_ETIMEOUT, CBV_STAGE_RCPT, 0, NULL, ANY },
	{ "multi-line EHLO dripped past command_timeout",
	  SCRIPT(GREET, D("250-peer.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n"
	                  "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n"),
	         DONE),
	  CBV_STARTTLS_NEVER, 300, 0, CBV_ETIMEOUT, CBV_STAGE_EHLO, 0, NULL, ANY },
	{ "greeting dripped past the overall deadline",
	  SCRIPT(D(LONG_GREETING), DONE),
	  CBV_STARTTLS_NEVER, 10000, 400, CBV_ETIMEOUT, CBV_STAGE_GREETING, 0, NULL, ANY },
	{ "control: a short drip within the deadline is reassembled",
	  SCRIPT(D("220 ok\r\n"), E("EHLO " HELO_NAME), D("250 ok\r\n"), MAIL, D("250 ok\r\n"),
	         RCPT, D("550 5.1.1 no\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 5000, 0, CBV_OK, CBV_STAGE_RCPT, 550, "5.1.1", ANY },
};

START_TEST(test_drip)
{
	check_row(&drip_rows[_i]);
}
END_TEST

/* ---- early talkers: replies to commands not yet sent ---------------------- */

static const struct row early_rows[] = {
	{ "greeting and an EHLO reply in one packet",
	  SCRIPT(S("220 peer.test\r\n250 peer.test\r\n"), NO_QUIT),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_EPROTO, CBV_STAGE_GREETING, 0, NULL, ANY },
	{ "EHLO reply and a MAIL reply in one packet",
	  SCRIPT(GREET, S("250 peer.test\r\n250 2.1.0 ok\r\n"), NO_QUIT),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_EPROTO, CBV_STAGE_EHLO, 0, NULL, ANY },
	{ "MAIL and RCPT replies without PIPELINING",
	  SCRIPT(GREET, EHLO_PLAIN, MAIL, S("250 ok\r\n250 ok\r\n"), NO_QUIT),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_EPROTO, CBV_STAGE_MAIL, 0, NULL, ANY },
	{ "a third reply after the pipelined pair",
	  SCRIPT(GREET, EHLO_PIPE, MAIL, RCPT, S("250 ok\r\n250 ok\r\n250 extra\r\n"), NO_QUIT),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_EPROTO, CBV_STAGE_RCPT, 0, NULL, ANY },
	{ "control: EHLO waits for the end of a multi-line greeting",
	  SCRIPT(S("220-peer.test\r\n"), QUIET_, S("220 ready\r\n"), E("EHLO " HELO_NAME),
	         EHLO_PLAIN, MAIL, S("250 ok\r\n"), RCPT, S("250 ok\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, NULL, ANY },
	{ "control: MAIL waits for the end of a multi-line EHLO reply",
	  SCRIPT(GREET, S("250-peer.test\r\n"), QUIET_, S("250 PIPELINING\r\n"), MAIL, RCPT,
	         S("250 ok\r\n250 ok\r\n"), E("QUIT"), DONE),
	  CBV_STARTTLS_NEVER, 0, 0, CBV_OK, CBV_STAGE_RCPT, 250, NULL, ANY },
};

START_TEST(test_early)
{
	check_row(&early_rows[_i]);
}
END_TEST

/* ---- the constructor ---------------------------------------------------- */

struct new_row {
	const char *helo, *mail_from, *rcpt_to;
	enum cbv_status st;
};

static const struct new_row new_rows[] = {
	{ HELO_NAME, "", "a\r\nRSET@example.test", CBV_EINVAL },
	{ HELO_NAME, "x\n@example.test", RCPT_ADDR, CBV_EINVAL },
	{ "client\rtest", "", RCPT_ADDR, CBV_EINVAL },
	{ "", "", RCPT_ADDR, CBV_EINVAL },
	{ HELO_NAME, "", "", CBV_EINVAL },
	{ HELO_NAME, "", RCPT_ADDR, CBV_ENOMEM }, /* with the first allocation failing */
};

START_TEST(test_new)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(9) };
	struct cbv_session_opts o = { .host = "peer.test", .ca_dir = "",
	                              .connect_timeout_ms = 100, .command_timeout_ms = 100 };
	struct cbv_session *s;
	struct cbv_err err;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	o.helo = new_rows[_i].helo;
	o.mail_from = new_rows[_i].mail_from;
	o.rcpt_to = new_rows[_i].rcpt_to;
	o.deadline_ms = cbv_now_ms() + 100;
	if (new_rows[_i].st == CBV_ENOMEM)
		cbv_alloc_fail_after(0);
	s = cbv_session_new((struct sockaddr *)&sa, sizeof(sa), &o, &err);
	cbv_alloc_fail_after(-1);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(err.code, new_rows[_i].st);
}
END_TEST

/* A group's recipients: bounded, checked like rcpt_to, and each allocation may fail. */
START_TEST(test_new_group)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(9) };
	struct cbv_session_opts o = { .host = "peer.test", .helo = HELO_NAME, .mail_from = "",
	                              .rcpt_to = RCPT_ADDR, .ca_dir = "",
	                              .connect_timeout_ms = 100, .command_timeout_ms = 100 };
	static const char *const bad[] = { RCPT_B, "c@x.test\r\nDATA" };
	static const char *const empty[] = { RCPT_B, "" };
	const char *many[CBV_RCPTS_MAX];
	struct cbv_session *s;
	struct cbv_err err;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < CBV_RCPTS_MAX; i++)
		many[i] = RCPT_B;
	o.deadline_ms = cbv_now_ms() + 100;
	o.more_rcpts = bad;
	o.nmore = 2;
	ck_assert_ptr_null(cbv_session_new((struct sockaddr *)&sa, sizeof(sa), &o, &err));
	ck_assert_int_eq(err.code, CBV_EINVAL);
	o.more_rcpts = empty;
	ck_assert_ptr_null(cbv_session_new((struct sockaddr *)&sa, sizeof(sa), &o, &err));
	ck_assert_int_eq(err.code, CBV_EINVAL);
	o.more_rcpts = many;
	o.nmore = CBV_RCPTS_MAX; /* one too many with rcpt_to */
	ck_assert_ptr_null(cbv_session_new((struct sockaddr *)&sa, sizeof(sa), &o, &err));
	ck_assert_int_eq(err.code, CBV_EINVAL);
	o.nmore = CBV_RCPTS_MAX - 1;
	for (long n = 0; n < 6; n++) {
		cbv_alloc_fail_after(n);
		s = cbv_session_new((struct sockaddr *)&sa, sizeof(sa), &o, &err);
		cbv_alloc_fail_after(-1);
		if (n < 5) { /* the session, its copies, replies, output, pending */
			ck_assert_ptr_null(s);
			ck_assert_int_eq(err.code, CBV_ENOMEM);
		}
		cbv_session_free(s);
	}
	s = cbv_session_new((struct sockaddr *)&sa, sizeof(sa), &o, &err);
	ck_assert_ptr_nonnull(s);
	cbv_session_free(s);
}
END_TEST

/* A closed port: the session ends at the connect stage, never OK. */
START_TEST(test_refused)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);
	struct cbv_session_opts o = { .host = "peer.test", .helo = HELO_NAME, .mail_from = "",
	                              .rcpt_to = RCPT_ADDR, .ca_dir = "",
	                              .connect_timeout_ms = CMD_MS, .command_timeout_ms = CMD_MS };
	const struct cbv_session_outcome *out;
	struct cbv_session *s;
	struct cbv_err err;
	struct pollfd pfd;
	int64_t wake;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* A port the kernel just gave us and nobody listens on. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
	o.deadline_ms = cbv_now_ms() + RUN_MS;
	s = cbv_session_new((struct sockaddr *)&sa, salen, &o, &err);
	ck_assert_ptr_nonnull(s);
	while (cbv_session_pollfd(s, &pfd, &wake)) {
		int64_t t = wake - cbv_now_ms();
		int n = poll(&pfd, 1, t < 0 ? 0 : (int)t);

		cbv_session_process(s, n > 0 ? pfd.revents : 0);
	}
	out = cbv_session_outcome(s);
	ck_assert_int_eq(out->status, CBV_ECONNECT);
	ck_assert_int_eq(out->stage, CBV_STAGE_CONNECT);
	ck_assert_int_eq(out->reply.code, 0);
	cbv_session_free(s);
	close(fd);
}
END_TEST

static void add_loop(Suite *s, const char *name, const TTest *t, int n)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, t, 0, n);
	suite_add_tcase(s, tc);
}

static Suite *session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc;

	add_loop(s, "helo_fallback", test_helo, NROWS(helo_rows));
	add_loop(s, "pipelining", test_pipelining, NROWS(pipe_rows));
	add_loop(s, "probe", test_probe, NROWS(probe_rows));
	add_loop(s, "group", test_group, NROWS(group_rows));
	add_loop(s, "ondemand", test_ondemand, NROWS(ondemand_rows));
	add_loop(s, "starttls", test_starttls, NROWS(starttls_rows));
	add_loop(s, "reply_421", test_421, NROWS(r421_rows));
	add_loop(s, "drip", test_drip, NROWS(drip_rows));
	add_loop(s, "early_talker", test_early, NROWS(early_rows));
	add_loop(s, "new", test_new, NROWS(new_rows));
	tc = tcase_create("new_group");
	tcase_add_test(tc, test_new_group);
	suite_add_tcase(s, tc);
	tc = tcase_create("refused");
	tcase_add_test(tc, test_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(session_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
