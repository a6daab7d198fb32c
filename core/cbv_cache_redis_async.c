/*
 * cbv_cache_redis_async.c - the Redis backend's non-blocking driver, for
 * processes that set cbv_cache_async_set(1) (cbvd): one connection per
 * handle and process, every command pipelined on it, the replies matched
 * to their commands in order (RESP answers in order).  Nothing here
 * blocks: connect(2) is non-blocking, sends and reads stop at EAGAIN, and
 * the caller's poll loop wakes us (cbv_cache_redis_async_pollfd()).
 *
 * The protocol is cbv_cache_redis.c's: commands come built
 * (struct cbv_redis_cmd), replies are read by its cbv_cache_redis_read_*()
 * functions.  So are the outage rules: a command not answered within
 * cache_timeout of being sent (connect: within cache_timeout, then the
 * replies), a refused connect, AUTH or SELECT, a closed connection with
 * commands out, or bytes that are not RESP all end the connection: every
 * waiting call is answered OFF at once, one line is logged per outage,
 * and the shared backoff holds off the next connect.  A connection closed
 * while idle (Redis restarted) is made again at once, without an outage.
 *
 * On a new connection AUTH (when a password file is set), SELECT or PING,
 * and SCRIPT LOAD of each script go first, so a script run by EVALSHA on
 * it is known there; until a SHA-1 is known the script itself is sent
 * (EVAL).  NOSCRIPT (SCRIPT FLUSH under us) answers that call OFF and
 * loads the script again.
 *
 * Bounds: at most CBV_REDIS_ASYNC_OPS_MAX commands out and
 * CBV_REDIS_ASYNC_OUT_MAX bytes unsent (beyond: calls are OFF at once,
 * counted), a reply of at most CBV_REDIS_ASYNC_IN_MAX bytes (beyond: an
 * outage), at most CBV_REDIS_ASYNC_READ_TURN bytes read per pump (the
 * loop has other work).  A host name in the URL is resolved once with
 * getaddrinfo(3), which may block: use an IP address or a UNIX socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cbv_cache_async.h"
#include "cbv_cache_redis.h"
#include "cbv_cache_redis_impl.h"
#include "cbv_clock.h"
#include "cbv_log.h"

#define CBV_REDIS_ASYNC_OPS_MAX 16384
#define CBV_REDIS_ASYNC_OUT_MAX ((size_t)16 * 1024 * 1024)
#define CBV_REDIS_ASYNC_IN_MAX ((size_t)2 * CBV_CACHE_REC_MAX + 65536)
#define CBV_REDIS_ASYNC_READ_TURN ((size_t)1024 * 1024)

static int async_on;
/* every handle's counters together, for the process's metrics */
static struct cbv_cache_async_stats totals;
#define COUNT(a, f) ((a)->stats.f++, totals.f++)

void cbv_cache_async_set(int on)
{
	async_on = on != 0;
}

int cbv_cache_redis_async_on(void)
{
	return async_on;
}

/* What a queued command is. */
enum rkind {
	RK_AUTH,   /* handshake: AUTH */
	RK_HELLO,  /* handshake: PING or SELECT, the last that must succeed */
	RK_SCRIPT, /* SCRIPT LOAD */
	RK_OP      /* an operation (lookup, flight, acquire, fire and forget) */
};

struct rop {
	struct rop *next;
	enum rkind kind;
	enum cbv_redis_wait w;
	enum cbv_redis_script script;  /* the script it runs or loads */
	int64_t deadline;              /* monotonic ms */
	struct cbv_cache_call *call;   /* who waits; NULL: nobody (any more) */
	const char *name;              /* for messages */
	char capkind;                  /* acquire: 'C' or 'H' */
	uint64_t ticket;               /* flight, acquire: the ticket offered */
	char lease[CBV_REDIS_KEY_MAX]; /* ... and the key holding it ("" none) */
};

enum cstate { C_NONE,
	      C_CONNECTING,
	      C_UP };

struct cbv_redis_async {
	pid_t pid;
	enum cstate st;
	int fd;
	int64_t connect_deadline;
	int busy; /* in pump(): a release sent from a reply waits for the next one */
	redisReader *reader;
	char *out; /* formatted commands not yet sent */
	size_t olen, ocap;
	struct rop *head, *tail;
	size_t nops;
	unsigned long answered; /* replies on this connection */
	int drops;              /* connections closed under us since an operation's reply */
	struct sockaddr_storage sa;
	socklen_t salen;                      /* 0: not resolved yet */
	unsigned char buf[CBV_CACHE_REC_MAX]; /* a lookup's value, decoded */
	struct cbv_cache_async_stats stats;
};

static void pump(struct cbv_cache_redis *r);

/* ---- the connection ---- */

static void drop_ops(struct cbv_redis_async *a, int answer)
{
	struct rop *op, *next;

	for (op = a->head; op != NULL; op = next) {
		next = op->next;
		if (answer && op->call != NULL) {
			op->call->st = CBV_CACHE_OFF;
			op->call->out = NULL;
			op->call->state = 2;
		}
		cbv_free(op);
	}
	a->head = a->tail = NULL;
	a->nops = 0;
}

/* Closes the connection; answer = 1: waiting calls are answered OFF. */
static void disconnect(struct cbv_redis_async *a, int answer)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	a->st = C_NONE;
	if (a->reader != NULL)
		redisReaderFree(a->reader);
	a->reader = NULL;
	a->olen = 0;
	a->answered = 0;
	drop_ops(a, answer);
}

/* An outage: the connection goes, the waiting calls are OFF, one line is logged. */
static void fail(struct cbv_cache_redis *r, const char *what)
{
	disconnect(r->async, 1);
	COUNT(r->async, outages);
	cbv_cache_redis_outage(r, what);
}

/* r's driver state in this process; NULL on ENOMEM. */
static struct cbv_redis_async *state(struct cbv_cache_redis *r)
{
	struct cbv_redis_async *a = r->async;

	if (a != NULL && a->pid != getpid()) {
		/* a forked child: the parent's calls and socket are not ours */
		if (a->fd >= 0)
			close(a->fd);
		a->fd = -1;
		a->st = C_NONE;
		a->olen = 0;
		drop_ops(a, 0);
		if (a->reader != NULL)
			redisReaderFree(a->reader);
		a->reader = NULL;
		a->pid = getpid();
	}
	if (a == NULL) {
		a = cbv_calloc(1, sizeof(*a));
		if (a == NULL)
			return NULL;
		a->fd = -1;
		a->pid = getpid();
		r->async = a;
	}
	return a;
}

void cbv_cache_redis_async_free(struct cbv_cache_redis *r)
{
	struct cbv_redis_async *a = r->async;

	if (a == NULL)
		return;
	/* the calls still waiting belong to callers that are going away too */
	for (struct rop *op = a->head; op != NULL; op = op->next)
		if (op->call != NULL)
			op->call->out = NULL;
	disconnect(a, 0);
	cbv_free(a->out);
	cbv_free(a);
	r->async = NULL;
}

int cbv_cache_redis_async_usable(struct cbv_cache_redis *r)
{
	struct cbv_redis_async *a = r->async;

	if (a != NULL && a->pid == getpid() && a->st != C_NONE)
		return 1;
	return !r->down || cbv_now_ms() >= r->retry_ms;
}

/* The server's address (resolving a name once); 0, or -1 with *what. */
static int address(struct cbv_cache_redis *r, struct cbv_redis_async *a, const char **what)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a->sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->sa;
	struct sockaddr_un *su = (struct sockaddr_un *)&a->sa;
	struct addrinfo hints, *res = NULL;
	char port[8];

	if (a->salen != 0)
		return 0;
	memset(&a->sa, 0, sizeof(a->sa));
	if (r->u.unix_socket) {
		su->sun_family = AF_UNIX;
		snprintf(su->sun_path, sizeof(su->sun_path), "%s", r->u.path);
		a->salen = sizeof(*su);
		return 0;
	}
	if (inet_pton(AF_INET, r->u.host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)r->u.port);
		a->salen = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, r->u.host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)r->u.port);
		a->salen = sizeof(*s6);
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", r->u.port);
	if (getaddrinfo(r->u.host, port, &hints, &res) != 0 || res == NULL ||
	    res->ai_addrlen > sizeof(a->sa)) {
		if (res != NULL)
			freeaddrinfo(res);
		*what = "cannot connect: the host name does not resolve";
		return -1;
	}
	memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
	a->salen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* Appends a formatted command; 0, or -1 out of memory or over the bound. */
static int put(struct cbv_redis_async *a, int argc, const char **argv, const size_t *lens)
{
	char *cmd = NULL;
	int len = redisFormatCommandArgv(&cmd, argc, argv, lens);

	if (len < 0 || cmd == NULL)
		return -1;
	if (a->olen + (size_t)len > CBV_REDIS_ASYNC_OUT_MAX) {
		redisFreeCommand(cmd);
		return -1;
	}
	if (a->olen + (size_t)len > a->ocap) {
		size_t cap = a->ocap > 0 ? a->ocap : 4096;
		char *n;

		while (cap < a->olen + (size_t)len)
			cap *= 2;
		n = cbv_malloc(cap);
		if (n == NULL) {
			redisFreeCommand(cmd);
			return -1;
		}
		if (a->olen > 0)
			memcpy(n, a->out, a->olen);
		cbv_free(a->out);
		a->out = n;
		a->ocap = cap;
	}
	memcpy(a->out + a->olen, cmd, (size_t)len);
	a->olen += (size_t)len;
	redisFreeCommand(cmd);
	return 0;
}

/* Links a new op of kind at the tail, with its deadline; NULL on ENOMEM. */
static struct rop *link_op(struct cbv_cache_redis *r, struct cbv_redis_async *a, enum rkind kind,
                           const char *name)
{
	struct rop *op = cbv_calloc(1, sizeof(*op));
	int64_t base = a->st == C_CONNECTING ? a->connect_deadline : cbv_now_ms();

	if (op == NULL)
		return NULL;
	op->kind = kind;
	op->name = name;
	/* never earlier than the one before: replies come in order */
	op->deadline = base + r->timeout_ms;
	if (a->tail != NULL && a->tail->deadline > op->deadline)
		op->deadline = a->tail->deadline;
	if (a->tail != NULL)
		a->tail->next = op;
	else
		a->head = op;
	a->tail = op;
	a->nops++;
	COUNT(a, sent);
	return op;
}

/* A command of the handshake; 0, or -1 (out of memory). */
static int hello(struct cbv_cache_redis *r, struct cbv_redis_async *a, enum rkind kind,
                 enum cbv_redis_script s, int argc, const char **argv, const size_t *lens)
{
	struct rop *op;

	if (put(a, argc, argv, lens) != 0 || (op = link_op(r, a, kind, argv[0])) == NULL)
		return -1;
	op->script = s;
	return 0;
}

/* Starts a connection and queues its handshake; 0, or -1 after an outage. */
static int connect_start(struct cbv_cache_redis *r, struct cbv_redis_async *a)
{
	char secret[CBV_REDIS_SECRET_MAX + 2], db[16], what[320];
	const char *why = NULL;
	struct cbv_err err;
	int one = 1, rc;

	if (address(r, a, &why) != 0) {
		fail(r, why);
		return -1;
	}
	a->fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	a->reader = redisReaderCreate();
	if (a->fd < 0 || a->reader == NULL) {
		snprintf(what, sizeof(what), "cannot connect: %s",
		         a->fd < 0 ? strerror(errno) : "out of memory");
		fail(r, what);
		return -1;
	}
	if (a->sa.ss_family != AF_UNIX)
		(void)setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	a->connect_deadline = cbv_now_ms() + r->timeout_ms;
	rc = connect(a->fd, (struct sockaddr *)&a->sa, a->salen);
	if (rc != 0 && errno != EINPROGRESS && errno != EAGAIN) {
		snprintf(what, sizeof(what), "cannot connect: %s", strerror(errno));
		fail(r, what);
		return -1;
	}
	/* EAGAIN: a UNIX socket's backlog is full; wait for it as for TCP */
	a->st = rc == 0 ? C_UP : C_CONNECTING;
	if (r->password_file != NULL) {
		const char *argv[2] = { "AUTH", secret };
		size_t lens[2] = { 4, 0 };

		if (cbv_cache_redis_read_secret(r->password_file, secret, sizeof(secret), &err) !=
		    CBV_OK) {
			fail(r, err.msg);
			return -1;
		}
		lens[1] = strlen(secret);
		rc = hello(r, a, RK_AUTH, CBV_RS_NONE, 2, argv, lens);
		explicit_bzero(secret, sizeof(secret));
		if (rc != 0)
			goto oom;
	}
	{
		const char *argv[2] = { r->u.db > 0 ? "SELECT" : "PING", db };
		size_t lens[2] = { strlen(argv[0]), 0 };

		snprintf(db, sizeof(db), "%u", r->u.db);
		lens[1] = strlen(db);
		if (hello(r, a, RK_HELLO, CBV_RS_NONE, r->u.db > 0 ? 2 : 1, argv, lens) != 0)
			goto oom;
	}
	for (int s = CBV_RS_NONE + 1; s < CBV_RS_COUNT; s++) {
		const char *argv[3] = { "SCRIPT", "LOAD", cbv_cache_redis_script_src(s) };
		size_t lens[3] = { 6, 4, strlen(argv[2]) };

		if (hello(r, a, RK_SCRIPT, s, 3, argv, lens) != 0)
			goto oom;
	}
	return 0;
oom:
	fail(r, "cannot connect: out of memory");
	return -1;
}

/* ---- replies ---- */

/* Sends a release for a lease nobody waits for (its caller went away). */
static void give_back(struct cbv_cache_redis *r, const struct rop *op)
{
	struct cbv_redis_cmd c;
	int ok = op->w == CBV_RW_FLIGHT ? cbv_cache_redis_build_unlock(op->lease, op->ticket, &c)
	                                : cbv_cache_redis_build_release(op->lease, op->ticket, &c);

	if (ok)
		(void)cbv_cache_redis_async_send(r, &c, CBV_RW_FIRE, NULL);
}

/*
 * An error reply to an operation: NOSCRIPT loads the script again (the
 * calls already sent behind it fail the same way, once each); other
 * errors are logged once (a script error on a bad value, a key of the
 * wrong type), never an outage.
 */
static void op_error(struct cbv_cache_redis *r, struct cbv_redis_async *a, const struct rop *op,
                     const redisReply *rep)
{
	char what[200];

	COUNT(a, failed);
	if (op->script != CBV_RS_NONE && rep->len >= 8 && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
		const char *argv[3] = { "SCRIPT", "LOAD", cbv_cache_redis_script_src(op->script) };
		size_t lens[3] = { 6, 4, strlen(argv[2]) };

		(void)hello(r, a, RK_SCRIPT, op->script, 3, argv, lens);
		return;
	}
	snprintf(what, sizeof(what), "%s failed (%.120s)",
	         op->script != CBV_RS_NONE ? "a script" : op->name, rep->str);
	cbv_cache_redis_damaged(r, what);
}

/* Answers op's call (or gives back what it took for nobody); -1 after an outage. */
static int answer(struct cbv_cache_redis *r, struct cbv_redis_async *a, struct rop *op,
                  const redisReply *rep)
{
	struct cbv_cache_call *call = op->call;
	const redisReply *ok = rep->type == REDIS_REPLY_ERROR ? NULL : rep;
	enum cbv_cache_status st = CBV_CACHE_OFF;
	uint64_t ticket = 0;
	int64_t wake = 0, now = call != NULL ? call->now : 0;
	enum cbv_cache_limit which = CBV_LIMIT_NONE;
	const char *why = NULL;
	struct cbv_cache_rec rec;

	if (ok == NULL && op->w != CBV_RW_LOOKUP)
		op_error(r, a, op, rep);
	switch (op->w) {
	case CBV_RW_LOOKUP:
		st = cbv_cache_redis_read_lookup(r, now, rep, a->buf, sizeof(a->buf), &rec, &why);
		if (why != NULL) {
			COUNT(a, failed);
			if (call != NULL) { /* unlinked already: fail() does not see it */
				call->st = CBV_CACHE_OFF;
				call->out = NULL;
				call->state = 2;
			}
			fail(r, why);
			return -1;
		}
		if (st == CBV_CACHE_HIT && call != NULL) {
			/* element 0 is the address record, 1 the domain fact (the reader's rule) */
			const redisReply *v = rep->element[rec.kind == CBV_CACHE_ADDRESS ? 0 : 1];

			call->val = cbv_malloc(v->len > 0 ? v->len : 1);
			if (call->val == NULL)
				st = CBV_CACHE_MISS; /* no memory for it: as if not stored */
			else
				memcpy(call->val, v->str, v->len);
			call->vlen = v->len;
		}
		break;
	case CBV_RW_FLIGHT:
		st = cbv_cache_redis_read_flight(ok, now, op->ticket, call != NULL ? call->lease_s : 1,
		                                 &ticket, &wake);
		if (ok != NULL && st == CBV_CACHE_OFF)
			COUNT(a, failed);
		break;
	case CBV_RW_ACQUIRE:
		st = cbv_cache_redis_read_acquire(ok, now, op->capkind, op->ticket, &ticket, &wake,
		                                  &which);
		if (ok != NULL && st == CBV_CACHE_OFF)
			COUNT(a, failed);
		break;
	case CBV_RW_FIRE:
		return 0;
	}
	if (call == NULL) {
		if ((st == CBV_CACHE_OWN || (st == CBV_CACHE_OK && op->w == CBV_RW_ACQUIRE)) &&
		    ticket != 0)
			give_back(r, op);
		return 0;
	}
	call->st = st;
	call->ticket = ticket;
	call->wake_ms = wake;
	call->which = which;
	call->out = NULL;
	call->state = 2;
	return 0;
}

/* The reply to the head of the queue; -1 after an outage. */
static int dispatch(struct cbv_cache_redis *r, struct cbv_redis_async *a, redisReply *rep)
{
	struct rop *op = a->head;
	char what[200];
	int rc = 0;

	if (op == NULL) {
		freeReplyObject(rep);
		COUNT(a, failed);
		fail(r, "a reply to no command");
		return -1;
	}
	a->head = op->next;
	if (a->head == NULL)
		a->tail = NULL;
	a->nops--;
	a->answered++;
	COUNT(a, replies);
	switch (op->kind) {
	case RK_AUTH:
	case RK_HELLO:
		if (rep->type != REDIS_REPLY_STATUS) {
			snprintf(what, sizeof(what), "%s refused (%.100s)", op->name,
			         rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
			COUNT(a, failed);
			fail(r, what);
			rc = -1;
		} else if (op->kind == RK_HELLO) {
			cbv_cache_redis_reachable(r);
		}
		break;
	case RK_SCRIPT:
		if (rep->type == REDIS_REPLY_ERROR) {
			snprintf(what, sizeof(what), "SCRIPT LOAD failed (%.120s)", rep->str);
			COUNT(a, failed);
			cbv_cache_redis_damaged(r, what);
		}
		cbv_cache_redis_script_learn(op->script, rep);
		break;
	case RK_OP:
		a->drops = 0;
		rc = answer(r, a, op, rep);
		break;
	}
	freeReplyObject(rep);
	cbv_free(op);
	return rc;
}

/* ---- driving ---- */

static void closed(struct cbv_cache_redis *r, struct cbv_redis_async *a, const char *what);

/* Sends what it can; -1 after an outage. */
static int flush_out(struct cbv_cache_redis *r, struct cbv_redis_async *a)
{
	size_t off = 0;
	char what[200];

	while (off < a->olen) {
		ssize_t n = send(a->fd, a->out + off, a->olen - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			snprintf(what, sizeof(what), "%s failed: %s", a->head != NULL ? a->head->name : "send",
			         n < 0 ? strerror(errno) : "nothing sent");
			if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
				closed(r, a, what);
			else
				fail(r, what);
			return -1;
		}
		off += (size_t)n;
	}
	if (off > 0) {
		memmove(a->out, a->out + off, a->olen - off);
		a->olen -= off;
	}
	return 0;
}

/*
 * The connection closed under us (EOF, ECONNRESET, EPIPE).  One that had
 * answered (Redis restarted, a proxy's idle timeout) is dropped quietly
 * and made again by the next call: the calls waiting on it are OFF this
 * once, the fire-and-forget commands on it may or may not have run.  A
 * second in a row without an operation answered between is an outage.
 */
static void closed(struct cbv_cache_redis *r, struct cbv_redis_async *a, const char *what)
{
	if (a->answered > 0 && a->drops == 0) {
		a->drops++;
		disconnect(a, 1);
		return;
	}
	fail(r, what);
}

/* Reads and dispatches what has come; -1 after an outage (or a quiet close). */
static int read_in(struct cbv_cache_redis *r, struct cbv_redis_async *a)
{
	char buf[16384], what[200];
	size_t total = 0;

	while (total < CBV_REDIS_ASYNC_READ_TURN) {
		ssize_t n = recv(a->fd, buf, sizeof(buf), MSG_DONTWAIT);
		void *rep = NULL;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			snprintf(what, sizeof(what), "%s failed: %s",
			         a->head != NULL ? a->head->name : "the connection",
			         n == 0 ? "Server closed the connection" : strerror(errno));
			if (n == 0 || errno == ECONNRESET)
				closed(r, a, what);
			else
				fail(r, what);
			return -1;
		}
		total += (size_t)n;
		if (redisReaderFeed(a->reader, buf, (size_t)n) != REDIS_OK) {
			fail(r, "out of memory");
			return -1;
		}
		for (;;) {
			if (redisReaderGetReply(a->reader, &rep) != REDIS_OK) {
				snprintf(what, sizeof(what), "protocol error (%.100s)", a->reader->errstr);
				COUNT(a, failed);
				fail(r, what);
				return -1;
			}
			if (rep == NULL)
				break;
			if (dispatch(r, a, rep) != 0)
				return -1;
			rep = NULL;
		}
		/* a reply still incomplete may not grow without bound */
		if (a->reader->len - a->reader->pos > CBV_REDIS_ASYNC_IN_MAX) {
			COUNT(a, failed);
			fail(r, "a reply larger than any record");
			return -1;
		}
	}
	return 0;
}

static void step(struct cbv_cache_redis *r, struct cbv_redis_async *a);

static void pump(struct cbv_cache_redis *r)
{
	struct cbv_redis_async *a = r->async;

	if (a == NULL || a->pid != getpid() || a->st == C_NONE || a->busy)
		return;
	a->busy = 1;
	step(r, a);
	/* fail() keeps a: only the connection goes */
	a->busy = 0;
}

/* pump()'s work: connect, send, read, time out. */
static void step(struct cbv_cache_redis *r, struct cbv_redis_async *a)
{
	char what[200];

	if (a->st == C_CONNECTING) {
		struct pollfd p = { a->fd, POLLOUT, 0 };
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (poll(&p, 1, 0) > 0) {
			if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
				soerr = errno;
			if (soerr != 0) {
				snprintf(what, sizeof(what), "cannot connect: %s", strerror(soerr));
				fail(r, what);
				return;
			}
			a->st = C_UP;
		} else if (cbv_now_ms() >= a->connect_deadline) {
			fail(r, "cannot connect: timed out");
			return;
		} else {
			return;
		}
	}
	/* replies may have queued releases: those go out in the same turn */
	if (flush_out(r, a) != 0 || read_in(r, a) != 0 || (a->olen > 0 && flush_out(r, a) != 0))
		return;
	if (a->head != NULL && cbv_now_ms() >= a->head->deadline) {
		snprintf(what, sizeof(what), "%s failed: no answer within cache_timeout", a->head->name);
		COUNT(a, timeouts);
		fail(r, what);
	}
}

void cbv_cache_redis_async_pump(struct cbv_cache_redis *r)
{
	pump(r);
}

int cbv_cache_redis_async_send(struct cbv_cache_redis *r, struct cbv_redis_cmd *c,
                               enum cbv_redis_wait w, struct cbv_cache_call *call)
{
	struct cbv_redis_async *a = state(r);
	struct rop *op;

	if (a == NULL)
		return 0;
	if (a->st == C_UP)
		pump(r); /* notices a connection closed under us before queuing on it */
	if (a->st == C_NONE) {
		if (r->down && cbv_now_ms() < r->retry_ms) {
			COUNT(a, refused);
			return 0;
		}
		if (connect_start(r, a) != 0) {
			COUNT(a, refused);
			return 0;
		}
	}
	if (a->nops >= CBV_REDIS_ASYNC_OPS_MAX) {
		COUNT(a, refused);
		return 0;
	}
	if (c->script != CBV_RS_NONE) {
		const char *sha = cbv_cache_redis_script_sha(c->script);

		c->argv[0] = sha[0] != '\0' ? "EVALSHA" : "EVAL";
		c->argv[1] = sha[0] != '\0' ? sha : cbv_cache_redis_script_src(c->script);
		c->lens[0] = strlen(c->argv[0]);
		c->lens[1] = strlen(c->argv[1]);
	}
	if (put(a, c->argc, c->argv, c->lens) != 0) {
		COUNT(a, refused); /* over the bound or out of memory: the queue is as it was */
		return 0;
	}
	if ((op = link_op(r, a, RK_OP, c->argv[0])) == NULL) {
		fail(r, "out of memory"); /* a command without its op would shift every reply */
		return 0;
	}
	op->w = w;
	op->script = c->script;
	op->ticket = c->ticket;
	if (c->lease >= 0)
		snprintf(op->lease, sizeof(op->lease), "%s", c->k[c->lease]);
	if (call != NULL) {
		op->call = call;
		call->out = op;
		call->state = 1;
	}
	pump(r); /* out now, as far as the socket takes it */
	return 1;
}

int cbv_cache_redis_async_pollfd(struct cbv_cache_redis *r, struct pollfd *pfd, int64_t *wake)
{
	struct cbv_redis_async *a = r->async;

	if (a == NULL || a->st == C_NONE || a->head == NULL)
		return 0;
	pfd->fd = a->fd;
	pfd->events = POLLIN;
	if (a->st == C_CONNECTING || a->olen > 0)
		pfd->events |= POLLOUT;
	pfd->revents = 0;
	*wake = a->st == C_CONNECTING && a->connect_deadline < a->head->deadline
	                ? a->connect_deadline
	                : a->head->deadline;
	return 1;
}

void cbv_cache_redis_async_forget(struct cbv_cache_redis *r, struct cbv_cache_call *call)
{
	struct rop *op = call->out;

	(void)r;
	if (op != NULL)
		op->call = NULL;
	call->out = NULL;
}

void cbv_cache_async_stats_redis(struct cbv_cache_redis *r, struct cbv_cache_async_stats *st)
{
	if (r->async != NULL)
		*st = r->async->stats;
}

void cbv_cache_async_totals(struct cbv_cache_async_stats *st)
{
	*st = totals;
}
