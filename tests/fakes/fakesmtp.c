/*
 * fakesmtp: scripted, hostile and fast fake SMTP servers for the loopback
 * test rig (tests/rig/PLAN.md).
 *
 *   fakesmtp [-v] [-p PIDFILE] [-r DIR] IP:PORT=SCENARIO ...  (IPv6: [::1]:PORT)
 *
 * One process, one poll(2) loop, non-blocking sockets, any number of
 * listeners and concurrent connections. It only ever binds 127.0.0.0/8 or
 * ::1 and refuses anything else. SIGTERM/SIGINT end it cleanly (listeners
 * closed, pidfile removed). With -v every connection and command is logged
 * to stderr. Standalone on purpose: it must not share code (or bugs) with
 * the client it tests.
 *
 * Scenarios ("normal" = fast):
 *   tarpit      accept, never send, read and discard
 *   drip        "220 drip.test ESMTP slow\r\n" at one byte a second, then fast
 *   multiline   greeting, then endless "250-xxxxxxxx" lines to EHLO
 *   longline    "220 " + 100 kB of 'x' + CRLF as greeting, then fast
 *   garbage     4 kB of random binary (NUL included, no CR/LF), then silence
 *   earlyclose  greeting, then close
 *   mid421      normal until MAIL: "421 4.3.2 Service shutting down", close
 *   greet554    "554 5.3.2 No service here", then 503 to all but QUIT
 *   nullsender  normal, MAIL FROM:<> -> "550 5.7.1 Null sender refused"
 *   policy      normal, RCPT -> "550 5.7.1 Client host blocked by policy"
 *   fast        instant replies; RCPT to unknown* -> 550 5.1.1; QUIT -> 221
 *               and close at once
 *   tlsclose    normal, offers STARTTLS; STARTTLS -> "220 2.0.0 Ready to
 *               start TLS", then close at once (no lingering): the client's
 *               ClientHello meets a closed socket, so an alert it writes
 *               after that gets EPIPE (SIGPIPE without MSG_NOSIGNAL)
 *   sender518   normal, RCPT -> "550 5.1.8 ... Sender address rejected" (Postfix
 *               smtpd_delay_reject: the sender refused at RCPT time)
 *   mail530     normal (no STARTTLS offered), MAIL -> "530 5.7.0 Must issue a
 *               STARTTLS command first"
 *   bigreply    normal, RCPT -> a 550 of 9 lines x 2000 bytes (over 16 KiB)
 *   greet421    "421 4.3.2 Too busy, try later", close
 *   mixgreet    "220-mixgreet.test" then "554 5.3.2 changed its mind"
 *   chatty      greeting and an unsolicited "250 chatty" line right after it
 *   rcptmix     normal, RCPT -> "250-OK" then "550 5.1.1 no" (mixed codes)
 *   counting    fast, and each RCPT is counted: a line "IP <address>" appended
 *               to DIR/rcpt.log (-r DIR), for the cache tests
 *   catchall    counting, but every RCPT -> 250 (a catch-all domain)
 *   slowcount   counting, but the greeting comes after SLOW_GREETING_MS
 *               Counting scenarios also append "IP" to DIR/conn.log for each
 *               connection, and (session reuse tests) answer RCPT
 *               close*  with 250, then close the connection;
 *               r421*   after the first RCPT of a connection: 421, close;
 *               r452*   after the first RCPT of a connection: 452 4.5.3.
 *
 * Input lines are bounded (LINE_MAX_IN bytes with CRLF); a longer line gets
 * a 500 and the connection is closed. Closing is "lingering": our side is
 * shut down first (the client sees EOF at once) and unread input is drained
 * for a while, so a pipelining client never gets a RST that eats the last
 * reply.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_IN 4096          /* one command line, CRLF included */
#define OUT_HIGH_WATER (64 * 1024) /* stop reading while this much is unsent */
#define LONGLINE_LEN (100 * 1024)  /* 'x' bytes in the longline greeting */
#define GARBAGE_LEN 4096
#define MULTI_CHUNK 16384          /* bytes of 250- lines queued at once */
#define DRIP_INTERVAL_MS 1000
#define SLOW_GREETING_MS 2000
#define LINGER_MS 2000             /* drain input this long after our FIN */
#define MAX_LISTENERS 64

enum scenario {
	SC_TARPIT,
	SC_DRIP,
	SC_MULTILINE,
	SC_LONGLINE,
	SC_GARBAGE,
	SC_EARLYCLOSE,
	SC_MID421,
	SC_GREET554,
	SC_NULLSENDER,
	SC_POLICY,
	SC_FAST,
	SC_TLSCLOSE,
	SC_SENDER518,
	SC_MAIL530,
	SC_BIGREPLY,
	SC_GREET421,
	SC_MIXGREET,
	SC_CHATTY,
	SC_RCPTMIX,
	SC_COUNTING,
	SC_CATCHALL,
	SC_SLOWCOUNT,
	SC_COUNT
};

static const char *const scenario_names[SC_COUNT] = {
	"tarpit", "drip",     "multiline",  "longline", "garbage", "earlyclose",
	"mid421", "greet554", "nullsender", "policy",   "fast",
	"tlsclose",
	"sender518", "mail530", "bigreply", "greet421", "mixgreet", "chatty", "rcptmix",
	"counting", "catchall", "slowcount",
};

/* -r DIR: where counting scenarios append their RCPT lines (NULL: nowhere). */
static const char *rcpt_dir;

static const char drip_greeting[] = "220 drip.test ESMTP slow\r\n";

enum state {
	ST_DRIP,    /* greeting trickling out, input buffered */
	ST_CMD,     /* command/reply dialogue */
	ST_MULTI,   /* endless continuation lines, input discarded */
	ST_SILENT,  /* nothing more to say, input discarded */
	ST_CLOSING, /* flush output, then shut down our side */
	ST_LINGER,  /* our side shut down, drain input until EOF or deadline */
	ST_DROP,    /* flush output, then close at once (no lingering) */
};

struct listener {
	int fd;
	enum scenario sc;
	char name[80]; /* "IP:PORT" for logs */
};

struct conn {
	int fd;
	unsigned long id;
	enum scenario sc;
	enum state st;
	char *out; /* pending output: out[outoff..outlen) */
	size_t outlen, outoff, outcap;
	char in[LINE_MAX_IN];
	size_t inlen;
	size_t drip_pos;
	char local_ip[INET6_ADDRSTRLEN]; /* for the RCPT count */
	unsigned nrcpt; /* RCPTs in this connection so far */
	int64_t timer_ms; /* drip: next byte; linger: give up; else unused */
};

static int verbose;
static volatile sig_atomic_t stop_signal;
static int sigpipe_fds[2] = {-1, -1};
static struct listener listeners[MAX_LISTENERS];
static size_t nlisteners;
static struct conn **conns;
static size_t nconns, conncap;
static unsigned long next_conn_id = 1;
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static void vlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void vlog(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	fputs("fakesmtp: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("fakesmtp: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*: deterministic junk for the garbage scenario. */
static uint8_t rng_byte(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint8_t)((rng_state * 0x2545f4914f6cdd1du) >> 56);
}

static void on_signal(int sig)
{
	int saved = errno;
	char c = 0;

	stop_signal = sig;
	if (sigpipe_fds[1] >= 0 && write(sigpipe_fds[1], &c, 1) < 0) {
		/* pipe full: a wakeup is already pending */
	}
	errno = saved;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Printable copy of peer input for the log: controls and 8-bit -> '?'. */
static void printable(char *dst, size_t cap, const char *src, size_t n)
{
	size_t i, j = 0;

	for (i = 0; i < n && j + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[j] = '\0';
}

/* ---- output ---- */

static void out_append(struct conn *c, const char *data, size_t n)
{
	if (c->outoff > 0 && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + n > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 1024;
		char *p;

		/* compact first: what is sent is never needed again */
		if (c->outoff > 0) {
			memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		while (c->outlen + n > cap)
			cap *= 2;
		p = realloc(c->out, cap);
		if (p == NULL)
			die("out of memory");
		c->out = p;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, data, n);
	c->outlen += n;
}

static void reply(struct conn *c, const char *text)
{
	vlog("#%lu > %s", c->id, text);
	out_append(c, text, strlen(text));
	out_append(c, "\r\n", 2);
}

static size_t out_pending(const struct conn *c)
{
	return c->outlen - c->outoff;
}

static void start_close(struct conn *c)
{
	c->st = ST_CLOSING;
}

/* ---- SMTP dialogue ---- */

/* Case-insensitive "line starts with the word w" (followed by end, space or ':'). */
static int is_cmd(const char *line, const char *w)
{
	size_t n = strlen(w);

	if (strncasecmp(line, w, n) != 0)
		return 0;
	return line[n] == '\0' || line[n] == ' ' || line[n] == ':';
}

/* Points past "PREFIX" and optional spaces, or NULL if line lacks the prefix. */
static const char *after_prefix(const char *line, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncasecmp(line, prefix, n) != 0)
		return NULL;
	line += n;
	while (*line == ' ')
		line++;
	return line;
}

static void greet(struct conn *c)
{
	char buf[128];

	switch (c->sc) {
	case SC_GREET554:
		reply(c, "554 5.3.2 No service here");
		c->st = ST_CMD;
		break;
	case SC_LONGLINE: {
		char *big = malloc(LONGLINE_LEN + 6);

		if (big == NULL)
			die("out of memory");
		memcpy(big, "220 ", 4);
		memset(big + 4, 'x', LONGLINE_LEN);
		memcpy(big + 4 + LONGLINE_LEN, "\r\n", 2);
		vlog("#%lu > 220 xxx... (%d bytes)", c->id, LONGLINE_LEN);
		out_append(c, big, LONGLINE_LEN + 6);
		free(big);
		c->st = ST_CMD;
		break;
	}
	case SC_GARBAGE: {
		char junk[GARBAGE_LEN];
		size_t i;

		for (i = 0; i < sizeof junk; i++) {
			uint8_t b;
			do
				b = rng_byte();
			while (b == '\r' || b == '\n');
			junk[i] = (char)b;
		}
		junk[0] = '\0'; /* make sure a NUL is in there, first thing */
		vlog("#%lu > %d bytes of garbage", c->id, GARBAGE_LEN);
		out_append(c, junk, sizeof junk);
		c->st = ST_SILENT;
		break;
	}
	case SC_TARPIT:
		c->st = ST_SILENT;
		break;
	case SC_GREET421:
		reply(c, "421 4.3.2 Too busy, try later");
		start_close(c);
		break;
	case SC_MIXGREET:
		reply(c, "220-mixgreet.test");
		reply(c, "554 5.3.2 changed its mind");
		c->st = ST_CMD;
		break;
	case SC_CHATTY:
		reply(c, "220 chatty.test ESMTP fakesmtp");
		reply(c, "250 chatty");
		c->st = ST_CMD;
		break;
	case SC_DRIP:
		c->st = ST_DRIP;
		c->drip_pos = 0;
		c->timer_ms = now_ms(); /* first byte right away */
		break;
	case SC_SLOWCOUNT:
		c->st = ST_DRIP; /* the whole greeting at once, when the timer fires */
		c->timer_ms = now_ms() + SLOW_GREETING_MS;
		break;
	default:
		snprintf(buf, sizeof buf, "220 %s.test ESMTP fakesmtp",
			 scenario_names[c->sc]);
		reply(c, buf);
		c->st = c->sc == SC_EARLYCLOSE ? ST_CLOSING : ST_CMD;
		break;
	}
}

static void do_rcpt(struct conn *c, const char *line)
{
	const char *p = after_prefix(line, "RCPT TO:");

	if (c->sc == SC_POLICY) {
		reply(c, "550 5.7.1 Client host blocked by policy");
		return;
	}
	if (c->sc == SC_SENDER518) {
		reply(c, "550 5.1.8 <>: Sender address rejected: Domain not found");
		return;
	}
	if (c->sc == SC_RCPTMIX) {
		reply(c, "250-OK");
		reply(c, "550 5.1.1 no");
		return;
	}
	if ((c->sc == SC_COUNTING || c->sc == SC_CATCHALL || c->sc == SC_SLOWCOUNT) &&
	    rcpt_dir != NULL && p != NULL) {
		char path[4096], rec[LINE_MAX_IN + 64];
		int fd, n;

		snprintf(path, sizeof path, "%s/rcpt.log", rcpt_dir);
		n = snprintf(rec, sizeof rec, "%s %s\n", c->local_ip, p);
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			/* one write with O_APPEND: lines never interleave */
			if (write(fd, rec, (size_t)n) < 0)
				vlog("#%lu rcpt.log: %s", c->id, strerror(errno));
			close(fd);
		}
	}
	if (c->sc == SC_CATCHALL) {
		reply(c, "250 2.1.5 Recipient OK");
		return;
	}
	if ((c->sc == SC_COUNTING || c->sc == SC_SLOWCOUNT) && p != NULL) {
		const char *lp = p + (*p == '<');

		c->nrcpt++;
		if (strncasecmp(lp, "close", 5) == 0) {
			reply(c, "250 2.1.5 Recipient OK");
			start_close(c);
			return;
		}
		if (c->nrcpt > 1 && strncasecmp(lp, "r421", 4) == 0) {
			reply(c, "421 4.3.2 Service shutting down");
			start_close(c);
			return;
		}
		if (c->nrcpt > 1 && strncasecmp(lp, "r452", 4) == 0) {
			reply(c, "452 4.5.3 Too many recipients");
			return;
		}
	}
	if (c->sc == SC_BIGREPLY) {
		static char big[2001];

		for (int i = 0; i < 9; i++) {
			memset(big, 'x', sizeof big - 1);
			memcpy(big, i < 8 ? "550-5.1.1 " : "550 5.1.1 ", 10);
			big[sizeof big - 1] = '\0';
			reply(c, big);
		}
		return;
	}
	if (p == NULL) {
		reply(c, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (*p == '<')
		p++;
	if (strncasecmp(p, "unknown", 7) == 0)
		reply(c, "550 5.1.1 No such user here");
	else
		reply(c, "250 2.1.5 Recipient OK");
}

static void do_mail(struct conn *c, const char *line)
{
	const char *p = after_prefix(line, "MAIL FROM:");

	if (c->sc == SC_MID421) {
		reply(c, "421 4.3.2 Service shutting down");
		start_close(c);
		return;
	}
	if (p == NULL) {
		reply(c, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (c->sc == SC_MAIL530)
		reply(c, "530 5.7.0 Must issue a STARTTLS command first");
	else if (c->sc == SC_NULLSENDER && strncmp(p, "<>", 2) == 0)
		reply(c, "550 5.7.1 Null sender refused");
	else
		reply(c, "250 2.1.0 Sender OK");
}

/* One complete command line (CRLF stripped). */
static void command(struct conn *c, const char *line)
{
	char buf[128];

	if (c->sc == SC_GREET554) {
		if (is_cmd(line, "QUIT")) {
			reply(c, "221 2.0.0 bye");
			start_close(c);
		} else {
			reply(c, "503 5.5.1 No service here");
		}
		return;
	}
	if (is_cmd(line, "EHLO")) {
		if (c->sc == SC_MULTILINE) {
			vlog("#%lu > 250-xxxxxxxx ... (endless)", c->id);
			c->st = ST_MULTI;
			return;
		}
		snprintf(buf, sizeof buf, "250-%s.test", scenario_names[c->sc]);
		reply(c, buf);
		reply(c, "250-PIPELINING");
		if (c->sc == SC_TLSCLOSE)
			reply(c, "250-STARTTLS");
		reply(c, "250 8BITMIME");
	} else if (c->sc == SC_TLSCLOSE && is_cmd(line, "STARTTLS")) {
		reply(c, "220 2.0.0 Ready to start TLS");
		c->st = ST_DROP;
	} else if (is_cmd(line, "HELO")) {
		snprintf(buf, sizeof buf, "250 %s.test", scenario_names[c->sc]);
		reply(c, buf);
	} else if (is_cmd(line, "MAIL")) {
		do_mail(c, line);
	} else if (is_cmd(line, "RCPT")) {
		do_rcpt(c, line);
	} else if (is_cmd(line, "RSET")) {
		reply(c, "250 2.0.0 OK");
	} else if (is_cmd(line, "NOOP")) {
		reply(c, "250 2.0.0 OK");
	} else if (is_cmd(line, "QUIT")) {
		reply(c, "221 2.0.0 bye");
		start_close(c);
	} else {
		reply(c, "500 5.5.2 Command not recognized");
	}
}

/* Run every complete line in c->in (pipelining), keep the partial rest. */
static void process_input(struct conn *c)
{
	size_t start = 0;

	while (c->st == ST_CMD) {
		char *lf = memchr(c->in + start, '\n', c->inlen - start);
		size_t len;
		char logbuf[256];

		if (lf == NULL)
			break;
		len = (size_t)(lf - (c->in + start));
		*lf = '\0';
		if (len > 0 && c->in[start + len - 1] == '\r')
			c->in[start + len - 1] = '\0';
		if (verbose) {
			printable(logbuf, sizeof logbuf, c->in + start,
				  strlen(c->in + start));
			vlog("#%lu < %s", c->id, logbuf);
		}
		command(c, c->in + start);
		start += len + 1;
	}
	if (c->st != ST_CMD && c->st != ST_DRIP) {
		c->inlen = 0; /* after QUIT/421/EHLO-multiline the rest is ignored */
		return;
	}
	memmove(c->in, c->in + start, c->inlen - start);
	c->inlen -= start;
	if (c->inlen == sizeof c->in) {
		/* a full buffer and no LF: refuse rather than grow */
		vlog("#%lu < line longer than %d bytes", c->id, LINE_MAX_IN);
		reply(c, "500 5.5.2 Line too long");
		c->inlen = 0;
		start_close(c);
	}
}

/* ---- connections ---- */

static void conn_free(struct conn *c)
{
	vlog("#%lu closed", c->id);
	close(c->fd);
	free(c->out);
	free(c);
}

static void conn_add(int fd, enum scenario sc, const char *peer, const char *local)
{
	struct conn *c;

	if (nconns == conncap) {
		size_t cap = conncap ? conncap * 2 : 64;
		struct conn **p = realloc(conns, cap * sizeof *p);

		if (p == NULL)
			die("out of memory");
		conns = p;
		conncap = cap;
	}
	c = calloc(1, sizeof *c);
	if (c == NULL)
		die("out of memory");
	c->fd = fd;
	c->sc = sc;
	c->id = next_conn_id++;
	/* local is the listener's "IP:PORT" or "[IP6]:PORT": keep the IP */
	snprintf(c->local_ip, sizeof c->local_ip, "%s", local);
	if (strrchr(c->local_ip, ':') != NULL)
		*strrchr(c->local_ip, ':') = '\0';
	conns[nconns++] = c;
	vlog("#%lu connect from %s to %s (%s)", c->id, peer, local,
	     scenario_names[sc]);
	if ((sc == SC_COUNTING || sc == SC_CATCHALL || sc == SC_SLOWCOUNT) && rcpt_dir != NULL) {
		char path[4096], rec[INET6_ADDRSTRLEN + 2];
		int lfd, n;

		snprintf(path, sizeof path, "%s/conn.log", rcpt_dir);
		n = snprintf(rec, sizeof rec, "%s\n", c->local_ip);
		lfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (lfd >= 0) {
			if (write(lfd, rec, (size_t)n) < 0)
				vlog("#%lu conn.log: %s", c->id, strerror(errno));
			close(lfd);
		}
	}
	greet(c);
}

static void do_accept(const struct listener *l)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		char host[INET6_ADDRSTRLEN] = "?", peer[INET6_ADDRSTRLEN + 16];
		int port = 0;
		int fd = accept(l->fd, (struct sockaddr *)&ss, &sl);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				fprintf(stderr, "fakesmtp: accept on %s: %s\n",
					l->name, strerror(errno));
			return;
		}
		if (set_nonblock(fd) < 0) {
			close(fd);
			continue;
		}
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
			port = ntohs(s4->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
			port = ntohs(s6->sin6_port);
		}
		snprintf(peer, sizeof peer, "%s:%d", host, port);
		conn_add(fd, l->sc, peer, l->name);
	}
}

/* Returns -1 when the connection is finished and must be freed. */
static int do_read(struct conn *c)
{
	for (;;) {
		char discard[16384];
		ssize_t n;

		if (c->st == ST_CMD || c->st == ST_DRIP) {
			size_t room = sizeof c->in - c->inlen;
			n = recv(c->fd, c->in + c->inlen, room, 0);
			if (n > 0) {
				c->inlen += (size_t)n;
				if (c->st == ST_CMD)
					process_input(c);
				else if (c->inlen == sizeof c->in) {
					reply(c, "500 5.5.2 Line too long");
					start_close(c);
				}
				if (out_pending(c) > OUT_HIGH_WATER)
					return 0;
				continue;
			}
		} else {
			n = recv(c->fd, discard, sizeof discard, 0);
			if (n > 0)
				continue;
		}
		if (n == 0) {
			vlog("#%lu client closed", c->id);
			return -1;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		vlog("#%lu read: %s", c->id, strerror(errno));
		return -1;
	}
}

static int do_write(struct conn *c)
{
	while (out_pending(c) > 0 || c->st == ST_MULTI) {
		ssize_t n;

		if (out_pending(c) == 0) {
			/* endless multiline: refill, never a final line */
			static const char line[] = "250-xxxxxxxx\r\n";
			char chunk[MULTI_CHUNK];
			size_t i, len = sizeof line - 1;

			for (i = 0; i + len <= sizeof chunk; i += len)
				memcpy(chunk + i, line, len);
			out_append(c, chunk, i);
		}
		n = send(c->fd, c->out + c->outoff, out_pending(c), MSG_NOSIGNAL);
		if (n > 0) {
			c->outoff += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		vlog("#%lu write: %s", c->id, n < 0 ? strerror(errno) : "0 bytes");
		return -1;
	}
	c->outoff = c->outlen = 0;
	if (c->st == ST_DROP)
		return -1;
	if (c->st == ST_CLOSING) {
		shutdown(c->fd, SHUT_WR);
		c->st = ST_LINGER;
		c->timer_ms = now_ms() + LINGER_MS;
	}
	return 0;
}

/* Timers: drip bytes and linger deadlines. Returns -1 to free the conn. */
static int do_timer(struct conn *c, int64_t now)
{
	if (c->st == ST_LINGER && now >= c->timer_ms)
		return -1;
	if (c->st == ST_DRIP && now >= c->timer_ms && c->sc == SC_SLOWCOUNT) {
		reply(c, "220 slowcount.test ESMTP fakesmtp");
		c->st = ST_CMD;
		process_input(c);
		return 0;
	}
	if (c->st == ST_DRIP && now >= c->timer_ms) {
		out_append(c, drip_greeting + c->drip_pos, 1);
		c->drip_pos++;
		c->timer_ms = now + DRIP_INTERVAL_MS;
		if (c->drip_pos == sizeof drip_greeting - 1) {
			vlog("#%lu > %s (dripped)", c->id, "220 drip.test ESMTP slow");
			c->st = ST_CMD;
			process_input(c); /* commands sent early wait till now */
		}
	}
	return 0;
}

/* ---- setup ---- */

static int parse_spec(const char *spec, struct listener *l, struct sockaddr_storage *ss,
		      socklen_t *sl)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *eq = strrchr(spec, '=');
	const char *colon, *portstr, *hstart = spec;
	size_t hlen;
	char *end;
	long port;
	int i;

	if (eq == NULL)
		return -1;
	l->sc = SC_COUNT;
	for (i = 0; i < SC_COUNT; i++)
		if (strcmp(eq + 1, scenario_names[i]) == 0)
			l->sc = (enum scenario)i;
	if (l->sc == SC_COUNT) {
		fprintf(stderr, "fakesmtp: unknown scenario '%s'\n", eq + 1);
		return -1;
	}
	if (spec[0] == '[') {
		const char *rb = memchr(spec, ']', (size_t)(eq - spec));
		if (rb == NULL || rb[1] != ':')
			return -1;
		hstart = spec + 1;
		hlen = (size_t)(rb - hstart);
		colon = rb + 1;
	} else {
		colon = NULL;
		for (const char *p = spec; p < eq; p++)
			if (*p == ':')
				colon = p;
		if (colon == NULL)
			return -1;
		hlen = (size_t)(colon - spec);
	}
	if (hlen == 0 || hlen >= sizeof host)
		return -1;
	memcpy(host, hstart, hlen);
	host[hlen] = '\0';
	portstr = colon + 1;
	errno = 0;
	port = strtol(portstr, &end, 10);
	if (errno != 0 || end != eq || end == portstr || port < 1 || port > 65535)
		return -1;

	memset(ss, 0, sizeof *ss);
	if (spec[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -1;
		/* loopback only: a test fake must never be reachable from outside */
		if (!IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr)) {
			fprintf(stderr, "fakesmtp: refusing non-loopback %s\n", host);
			return -1;
		}
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*sl = sizeof *s6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -1;
		if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127) {
			fprintf(stderr, "fakesmtp: refusing non-loopback %s\n", host);
			return -1;
		}
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*sl = sizeof *s4;
	}
	snprintf(l->name, sizeof l->name, "%.*s", (int)(eq - spec), spec);
	return 0;
}

static void open_listener(const char *spec)
{
	struct listener *l;
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1;

	if (nlisteners == MAX_LISTENERS)
		die("too many listeners (max %d)", MAX_LISTENERS);
	l = &listeners[nlisteners];
	if (parse_spec(spec, l, &ss, &sl) < 0)
		die("bad listener '%s' (want IP:PORT=SCENARIO, [::1]:PORT=SCENARIO, "
		    "loopback only)", spec);
	l->fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (l->fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ss.ss_family == AF_INET6)
		setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(l->fd, (struct sockaddr *)&ss, sl) < 0)
		die("bind %s: %s", l->name, strerror(errno));
	if (listen(l->fd, 1024) < 0)
		die("listen %s: %s", l->name, strerror(errno));
	if (set_nonblock(l->fd) < 0)
		die("fcntl: %s", strerror(errno));
	vlog("listening on %s (%s)", l->name, scenario_names[l->sc]);
	nlisteners++;
}

static void usage(void)
{
	size_t i;

	fputs("usage: fakesmtp [-v] [-p PIDFILE] [-r DIR] IP:PORT=SCENARIO ...\n"
	      "       IPv6 as [::1]:PORT; loopback addresses only\n"
	      "scenarios:",
	      stderr);
	for (i = 0; i < SC_COUNT; i++)
		fprintf(stderr, " %s", scenario_names[i]);
	fputc('\n', stderr);
	exit(2);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	const char *pidfile = NULL;
	struct pollfd *pfds = NULL;
	size_t pfdcap = 0;
	struct sigaction sa;
	int opt, i;

	while ((opt = getopt(argc, argv, "vp:r:h")) != -1) {
		switch (opt) {
		case 'v':
			verbose = 1;
			break;
		case 'p':
			pidfile = optarg;
			break;
		case 'r':
			rcpt_dir = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();

	raise_fd_limit();
	if (pipe(sigpipe_fds) < 0 || set_nonblock(sigpipe_fds[0]) < 0 ||
	    set_nonblock(sigpipe_fds[1]) < 0)
		die("pipe: %s", strerror(errno));
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	for (i = optind; i < argc; i++)
		open_listener(argv[i]);

	/* the pidfile appears only once every listener is bound */
	if (pidfile != NULL) {
		FILE *f = fopen(pidfile, "w");
		if (f == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0)
			die("pidfile %s: %s", pidfile, strerror(errno));
	}

	while (!stop_signal) {
		size_t np = 1 + nlisteners + nconns, k, j;
		int64_t now = now_ms(), next = -1;
		int timeout, r;

		if (np > pfdcap) {
			struct pollfd *p = realloc(pfds, np * 2 * sizeof *p);
			if (p == NULL)
				die("out of memory");
			pfds = p;
			pfdcap = np * 2;
		}
		pfds[0].fd = sigpipe_fds[0];
		pfds[0].events = POLLIN;
		for (k = 0; k < nlisteners; k++) {
			pfds[1 + k].fd = listeners[k].fd;
			pfds[1 + k].events = POLLIN;
		}
		for (k = 0; k < nconns; k++) {
			struct conn *c = conns[k];
			struct pollfd *p = &pfds[1 + nlisteners + k];

			p->fd = c->fd;
			p->events = 0;
			p->revents = 0;
			if (out_pending(c) <= OUT_HIGH_WATER || c->st == ST_LINGER)
				p->events |= POLLIN;
			if (out_pending(c) > 0 || c->st == ST_MULTI)
				p->events |= POLLOUT;
			if (c->st == ST_DRIP || c->st == ST_LINGER)
				if (next < 0 || c->timer_ms < next)
					next = c->timer_ms;
		}
		timeout = next < 0 ? -1 : (next <= now ? 0 : (int)(next - now));
		r = poll(pfds, np, timeout);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (pfds[0].revents) {
			char drain[64];
			while (read(sigpipe_fds[0], drain, sizeof drain) > 0) {
			}
		}
		/* connections first: accepting appends to conns[] */
		now = now_ms();
		for (k = 0, j = 0; k < nconns; k++) {
			struct conn *c = conns[k];
			short rev = pfds[1 + nlisteners + k].revents;
			int dead = 0;

			if (rev & POLLOUT)
				dead = do_write(c) < 0;
			if (!dead && (rev & (POLLIN | POLLHUP | POLLERR)))
				dead = do_read(c) < 0;
			if (!dead)
				dead = do_timer(c, now) < 0;
			/* replies produced by read/timer go out without another round */
			if (!dead && (out_pending(c) > 0 || c->st == ST_CLOSING ||
				      c->st == ST_DROP))
				dead = do_write(c) < 0;
			if (dead)
				conn_free(c);
			else
				conns[j++] = c;
		}
		nconns = j;
		for (k = 0; k < nlisteners; k++)
			if (pfds[1 + k].revents & POLLIN)
				do_accept(&listeners[k]);
	}

	vlog("signal %d, exiting", (int)stop_signal);
	for (size_t k = 0; k < nconns; k++)
		conn_free(conns[k]);
	for (size_t k = 0; k < nlisteners; k++)
		close(listeners[k].fd);
	free(conns);
	free(pfds);
	if (pidfile != NULL)
		unlink(pidfile);
	return 0;
}
