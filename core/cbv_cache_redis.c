/*
 * cbv_cache_redis.c - the Redis backend behind cbv_cache.h (see
 * cbv_cache_redis.h for the keys and the outage rules).  hiredis
 * connects (within cache_timeout), formats commands and parses replies;
 * we send (MSG_NOSIGNAL) and read under poll(2) ourselves, so each reply
 * arrives within cache_timeout in all.  Our values go through
 * cbv_cache_rec_decode(), so nothing Redis sends is trusted.
 */
#include "cbv_cache_redis.h"
#include "cbv_cache_redis_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cbv_limits.h"
#include "cbv_log.h"
#include "cbv_stats.h"

/* Keys: prefix, kind, ':', domain, ':', 64 hex digits. */
#define RKEY_MAX CBV_REDIS_KEY_MAX
/* Keys per SCAN step (a hint to Redis) and values fetched per MGET. */
#define SCAN_COUNT "500"

/* ---- URLs and secrets ---- */

int cbv_cache_redis_is_url(const char *s, size_t len)
{
	return (len >= 8 && memcmp(s, "redis://", 8) == 0) ||
	       (len >= 13 && memcmp(s, "redis+unix://", 13) == 0);
}

/* Digits s[0..len) as a number <= max; -1 if not. */
static long number(const char *s, size_t len, long max)
{
	long v = 0;

	if (len == 0 || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

enum cbv_status cbv_cache_redis_url_parse(const char *s, size_t len, struct cbv_redis_url *u,
                                          struct cbv_err *err)
{
	const char *p, *end = s + len;
	long v;

	memset(u, 0, sizeof(*u));
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return cbv_err_set(err, CBV_EINVAL, "a Redis URL holds no spaces or controls");
	if (len >= 13 && memcmp(s, "redis+unix://", 13) == 0) {
		const char *q;

		p = s + 13;
		q = memchr(p, '?', (size_t)(end - p));
		if (q == NULL)
			q = end;
		if (p == q || p[0] != '/' || (size_t)(q - p) >= sizeof(u->path))
			return cbv_err_set(err, CBV_EINVAL,
			                   "redis+unix:///PATH[?db=N]: an absolute socket path of at "
			                   "most %zu bytes",
			                   sizeof(u->path) - 1);
		memcpy(u->path, p, (size_t)(q - p));
		u->unix_socket = 1;
		if (q < end) {
			if (end - q < 5 || memcmp(q, "?db=", 4) != 0 ||
			    (v = number(q + 4, (size_t)(end - q - 4), 1023)) < 0)
				return cbv_err_set(err, CBV_EINVAL, "redis+unix: expected ?db=N (0-1023)");
			u->db = (unsigned)v;
		}
		return CBV_OK;
	}
	if (len < 8 || memcmp(s, "redis://", 8) != 0)
		return cbv_err_set(err, CBV_EINVAL, "expected redis://HOST:PORT[/DB] or "
		                                    "redis+unix:///PATH[?db=N]");
	p = s + 8;
	if (memchr(p, '@', (size_t)(end - p)) != NULL)
		return cbv_err_set(err, CBV_EINVAL, "no credentials in the URL: use "
		                                    "cache_password_file");
	const char *hend, *colon;

	if (p < end && *p == '[') {
		hend = memchr(p, ']', (size_t)(end - p));
		if (hend == NULL || hend == p + 1 || (size_t)(hend - p - 1) >= sizeof(u->host))
			return cbv_err_set(err, CBV_EINVAL, "redis://[IPv6]:PORT: bad address");
		memcpy(u->host, p + 1, (size_t)(hend - p - 1));
		colon = hend + 1;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		if (colon == NULL || colon == p || (size_t)(colon - p) >= sizeof(u->host))
			return cbv_err_set(err, CBV_EINVAL, "redis://HOST:PORT: host and port needed");
		memcpy(u->host, p, (size_t)(colon - p));
		for (const char *h = p; h < colon; h++)
			if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
			      (*h >= '0' && *h <= '9') || *h == '.' || *h == '-' || *h == '_'))
				return cbv_err_set(err, CBV_EINVAL, "redis://HOST:PORT: bad host name");
	}
	if (colon >= end || *colon != ':')
		return cbv_err_set(err, CBV_EINVAL, "redis://HOST:PORT: the port is needed");
	const char *slash = memchr(colon, '/', (size_t)(end - colon));

	if (slash == NULL)
		slash = end;
	if ((v = number(colon + 1, (size_t)(slash - colon - 1), 65535)) <= 0)
		return cbv_err_set(err, CBV_EINVAL, "redis://HOST:PORT: port 1-65535");
	u->port = (unsigned)v;
	if (slash < end) {
		if ((v = number(slash + 1, (size_t)(end - slash - 1), 1023)) < 0)
			return cbv_err_set(err, CBV_EINVAL, "redis://HOST:PORT/DB: DB 0-1023");
		u->db = (unsigned)v;
	}
	return CBV_OK;
}

enum cbv_status cbv_cache_redis_read_secret(const char *path, char *out, size_t n,
                                            struct cbv_err *err)
{
	struct stat st;
	ssize_t got;
	size_t len;
	int fd;

	out[0] = '\0';
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return cbv_err_set(err, CBV_ECONFIG, "cache_password_file %s: %s", path,
		                   strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cbv_err_set(err, CBV_ECONFIG, "cache_password_file %s: not a regular file",
		                   path);
	}
	if ((st.st_mode & 077) != 0) {
		close(fd);
		return cbv_err_set(err, CBV_ECONFIG,
		                   "cache_password_file %s: mode %04o lets group or others at the "
		                   "secret; refused (chmod 600)",
		                   path, (unsigned)(st.st_mode & 07777));
	}
	got = read(fd, out, n - 1);
	close(fd);
	if (got < 0)
		return cbv_err_set(err, CBV_ECONFIG, "cache_password_file %s: %s", path,
		                   strerror(errno));
	len = (size_t)got;
	if (len == n - 1)
		return cbv_err_set(err, CBV_ECONFIG, "cache_password_file %s: over %zu bytes", path,
		                   n - 2);
	out[len] = '\0';
	if (len > 0 && out[len - 1] == '\n')
		out[--len] = '\0';
	if (len > 0 && out[len - 1] == '\r')
		out[--len] = '\0';
	if (len == 0 || strchr(out, '\n') != NULL || strlen(out) != len)
		return cbv_err_set(err, CBV_ECONFIG, "cache_password_file %s: expected one line",
		                   path);
	return CBV_OK;
}

/* ---- handle ---- */

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct cbv_cache_redis *cbv_cache_redis_new(const char *url)
{
	struct cbv_cache_redis *r;
	struct cbv_err err;

	r = cbv_calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	if (cbv_cache_redis_url_parse(url, strlen(url), &r->u, &err) != CBV_OK ||
	    (r->url = cbv_strdup(url)) == NULL) {
		cbv_free(r);
		return NULL;
	}
	strcpy(r->prefix, "cbv:");
	r->timeout_ms = CBV_REDIS_TIMEOUT_DEFAULT_MS;
	r->pid = getpid();
	return r;
}

void cbv_cache_redis_free(struct cbv_cache_redis *r)
{
	if (r == NULL)
		return;
	/* in a forked child the socket is the parent's too: closing our fd is harmless */
	if (r->ctx != NULL)
		redisFree(r->ctx);
	cbv_cache_redis_async_free(r);
	cbv_free(r->password_file);
	cbv_free(r->url);
	cbv_free(r);
}

int cbv_cache_redis_configure(struct cbv_cache_redis *r, unsigned timeout_ms,
                              const char *prefix, const char *password_file)
{
	if (timeout_ms > 0)
		r->timeout_ms = timeout_ms;
	if (prefix != NULL && prefix[0] != '\0') {
		if (strlen(prefix) > CBV_REDIS_PREFIX_MAX)
			return -1;
		strcpy(r->prefix, prefix);
	}
	cbv_free(r->password_file);
	r->password_file = NULL;
	if (password_file != NULL && password_file[0] != '\0' &&
	    (r->password_file = cbv_strdup(password_file)) == NULL)
		return -1;
	return 0;
}

/* ---- connection and outages ---- */

/* Drops the connection and starts (or continues) an outage; logs its start once. */
static void outage(struct cbv_cache_redis *r, const char *what)
{
	if (r->ctx != NULL)
		redisFree(r->ctx);
	r->ctx = NULL;
	if (!r->down) {
		r->down = 1;
		r->backoff_ms = CBV_REDIS_BACKOFF_MIN_MS;
		cbv_stats_redis_outage();
		cbv_log(CBV_LOG_ERR, "cache %s: %s; retrying with backoff; verifying without it",
		        r->url, what);
	} else if (r->backoff_ms < CBV_REDIS_BACKOFF_MAX_MS) {
		r->backoff_ms *= 2;
		if (r->backoff_ms > CBV_REDIS_BACKOFF_MAX_MS)
			r->backoff_ms = CBV_REDIS_BACKOFF_MAX_MS;
	}
	r->retry_ms = mono_ms() + r->backoff_ms;
}

/*
 * Sends the formatted command ourselves with MSG_NOSIGNAL: hiredis writes
 * with write(2), which raises SIGPIPE on a closed connection, and cbv.so
 * lives in Exim's process.  SO_SNDTIMEO (cache_timeout) bounds each send.
 * 0, or -1 with ctx->err set as hiredis would.
 */
static int send_all(redisContext *ctx, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(ctx->fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ctx->err = REDIS_ERR_IO;
			snprintf(ctx->errstr, sizeof(ctx->errstr), "%s",
			         n < 0 ? strerror(errno) : "nothing sent");
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Reads one reply within timeout_ms in all: poll(2) gets what is left, so
 * a server dripping bytes cannot stretch a call past cache_timeout (the
 * socket's own SO_RCVTIMEO bounds only each read).  hiredis parses.
 */
static void *read_reply(redisContext *ctx, unsigned timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	void *rep = NULL;
	char buf[16384];

	for (;;) {
		struct pollfd pfd = { ctx->fd, POLLIN, 0 };
		int64_t left;
		ssize_t n;
		int rc;

		if (redisGetReplyFromReader(ctx, &rep) != REDIS_OK)
			return NULL; /* a protocol error: ctx->err set */
		if (rep != NULL)
			return rep;
		left = deadline - mono_ms();
		if (left <= 0 || (rc = poll(&pfd, 1, (int)left)) == 0) {
			ctx->err = REDIS_ERR_IO;
			errno = EAGAIN;
			snprintf(ctx->errstr, sizeof(ctx->errstr), "timed out");
			return NULL;
		}
		if (rc < 0 && errno == EINTR)
			continue;
		n = rc < 0 ? -1 : recv(ctx->fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ctx->err = n == 0 ? REDIS_ERR_EOF : REDIS_ERR_IO;
			snprintf(ctx->errstr, sizeof(ctx->errstr), "%s",
			         n == 0 ? "Server closed the connection" : strerror(errno));
			return NULL;
		}
		if (redisReaderFeed(ctx->reader, buf, (size_t)n) != REDIS_OK) {
			ctx->err = REDIS_ERR_OOM;
			snprintf(ctx->errstr, sizeof(ctx->errstr), "out of memory");
			return NULL;
		}
	}
}

/* One command on the connection; NULL (ctx->err set) on failure. */
static redisReply *roundtrip(redisContext *ctx, int argc, const char **argv,
                             const size_t *lens, unsigned timeout_ms)
{
	char *cmd = NULL;
	void *rep = NULL;
	int len = redisFormatCommandArgv(&cmd, argc, argv, lens);

	if (len < 0 || cmd == NULL) {
		ctx->err = REDIS_ERR_OOM;
		snprintf(ctx->errstr, sizeof(ctx->errstr), "out of memory");
		return NULL;
	}
	if (send_all(ctx, cmd, (size_t)len) == 0)
		rep = read_reply(ctx, timeout_ms);
	redisFreeCommand(cmd);
	return rep;
}

static int connect_now(struct cbv_cache_redis *r);

/*
 * Answer of one command; NULL after an outage (logged).  Free with
 * freeReplyObject.  A connection that served earlier commands and is now
 * found closed (Redis restarted, a proxy dropped it while idle) is made
 * again once, at once, before this counts as an outage.
 */
static redisReply *command(struct cbv_cache_redis *r, int argc, const char **argv,
                           const size_t *lens)
{
	redisReply *rep = roundtrip(r->ctx, argc, argv, lens, r->timeout_ms);
	char what[160];
	int e = errno;

	if ((rep == NULL || r->ctx->err != 0) && r->used > 0 &&
	    (r->ctx->err == REDIS_ERR_EOF ||
	     (r->ctx->err == REDIS_ERR_IO && (e == ECONNRESET || e == EPIPE)))) {
		if (rep != NULL)
			freeReplyObject(rep);
		redisFree(r->ctx);
		r->ctx = NULL;
		if (!connect_now(r))
			return NULL; /* an outage, logged */
		rep = roundtrip(r->ctx, argc, argv, lens, r->timeout_ms);
		e = errno;
	}
	if (rep == NULL || r->ctx->err != 0) {
		snprintf(what, sizeof(what), "%s failed: %s", argv[0],
		         r->ctx->err == REDIS_ERR_IO && (e == EAGAIN || e == EWOULDBLOCK)
		                 ? "no answer within cache_timeout"
		                 : r->ctx->errstr);
		if (rep != NULL)
			freeReplyObject(rep);
		outage(r, what);
		return NULL;
	}
	r->used++;
	return rep;
}

/* Logs a per-key problem once per process (not an outage). */
static void damaged_once(struct cbv_cache_redis *r, const char *what)
{
	if (r->logged_damaged)
		return;
	r->logged_damaged = 1;
	cbv_log(CBV_LOG_ERR, "cache %s: %s; ignored", r->url, what);
}

/* 1 if connected (connecting when due), 0 when down. */
static int ensure(struct cbv_cache_redis *r)
{
	if (r->pid != getpid()) {
		/* a forked child: the parent's connection is not ours to talk on */
		if (r->ctx != NULL) {
			close(r->ctx->fd);
			r->ctx->fd = -1;
			redisFree(r->ctx);
		}
		r->ctx = NULL;
		r->pid = getpid();
		r->down = 0;
	}
	if (r->ctx != NULL)
		return 1;
	if (r->down && mono_ms() < r->retry_ms)
		return 0;
	return connect_now(r);
}

/* Connects, AUTHs and SELECTs (or PINGs); 1 if usable, else an outage (0). */
static int connect_now(struct cbv_cache_redis *r)
{
	struct timeval tv = { (time_t)(r->timeout_ms / 1000),
		              (suseconds_t)(r->timeout_ms % 1000) * 1000 };
	char secret[CBV_REDIS_SECRET_MAX + 2], what[320], db[16];
	struct cbv_err err;
	redisReply *rep;

	r->used = 0;
	r->ctx = r->u.unix_socket ? redisConnectUnixWithTimeout(r->u.path, tv)
	                          : redisConnectWithTimeout(r->u.host, (int)r->u.port, tv);
	if (r->ctx == NULL) {
		outage(r, "cannot connect: out of memory");
		return 0;
	}
	if (r->ctx->err != 0) {
		snprintf(what, sizeof(what), "cannot connect: %s", r->ctx->errstr);
		outage(r, what);
		return 0;
	}
	if (redisSetTimeout(r->ctx, tv) != REDIS_OK) {
		outage(r, "cannot set its timeout");
		return 0;
	}
	if (r->password_file != NULL) {
		const char *argv[2] = { "AUTH", secret };
		size_t lens[2] = { 4, 0 };

		if (cbv_cache_redis_read_secret(r->password_file, secret, sizeof(secret), &err) !=
		    CBV_OK) {
			outage(r, err.msg);
			return 0;
		}
		lens[1] = strlen(secret);
		rep = command(r, 2, argv, lens);
		explicit_bzero(secret, sizeof(secret));
		if (rep == NULL)
			return 0;
		if (rep->type != REDIS_REPLY_STATUS) {
			snprintf(what, sizeof(what), "AUTH refused (%.100s)",
			         rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
			freeReplyObject(rep);
			outage(r, what);
			return 0;
		}
		freeReplyObject(rep);
	}
	/* PING (or SELECT) proves the server answers and needs no AUTH we lack */
	{
		const char *argv[2] = { r->u.db > 0 ? "SELECT" : "PING", db };
		size_t lens[2] = { strlen(argv[0]), 0 };

		snprintf(db, sizeof(db), "%u", r->u.db);
		lens[1] = strlen(db);
		rep = command(r, r->u.db > 0 ? 2 : 1, argv, lens);
		if (rep == NULL)
			return 0;
		if (rep->type != REDIS_REPLY_STATUS) {
			snprintf(what, sizeof(what), "%s refused (%.100s)", argv[0],
			         rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
			freeReplyObject(rep);
			outage(r, what);
			return 0;
		}
		freeReplyObject(rep);
	}
	cbv_cache_redis_reachable(r);
	return 1;
}

void cbv_cache_redis_reachable(struct cbv_cache_redis *r)
{
	if (r->down)
		cbv_log(CBV_LOG_INFO, "cache %s: reachable again", r->url);
	r->down = 0;
	r->backoff_ms = 0;
}

int cbv_cache_redis_usable(struct cbv_cache_redis *r)
{
	if (r != NULL && cbv_cache_redis_async_on())
		return cbv_cache_redis_async_usable(r); /* never a blocking connect */
	return r != NULL && ensure(r);
}

/* ---- keys ---- */

/* P kind ':' domain [':' hex] from the derived binary key; its length or 0. */
static size_t rkey(const struct cbv_cache_redis *r, const struct cbv_cache_key *k, char kind,
                   char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char kb[CBV_CACHE_KEY_MAX];
	size_t n = cbv_cache_key_derive(k, kind == 'F' ? 'A' : kind, kb, sizeof(kb));
	size_t dl, o;

	if (n == 0)
		return 0;
	dl = n - 34;
	o = (size_t)snprintf(out, RKEY_MAX, "%s%c:%.*s:", r->prefix, kind, (int)dl,
	                     (const char *)kb + 1);
	for (size_t i = 0; i < 32; i++) {
		out[o++] = hex[kb[2 + dl + i] >> 4];
		out[o++] = hex[kb[2 + dl + i] & 15];
	}
	out[o] = '\0';
	return o;
}

/* P kind ':' name, name lower-cased; its length or 0. */
static size_t nkey(const struct cbv_cache_redis *r, char kind, const char *name, char *out)
{
	size_t n = name != NULL ? strnlen(name, CBV_DOMAIN_MAX + 1) : 0;
	size_t o;

	if (n == 0 || n > CBV_DOMAIN_MAX)
		return 0;
	o = (size_t)snprintf(out, RKEY_MAX, "%s%c:", r->prefix, kind);
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		out[o++] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	out[o] = '\0';
	return o;
}

/* Appends s to out at *o with SCAN's glob characters escaped. */
static void glob_escape(char *out, size_t cap, size_t *o, const char *s)
{
	for (; *s != '\0' && *o + 3 < cap; s++) {
		if (strchr("*?[]\\", *s) != NULL)
			out[(*o)++] = '\\';
		out[(*o)++] = *s;
	}
	out[*o] = '\0';
}

/*
 * A SCAN MATCH pattern: the prefix, kind ':' (kind 0: any), then for a
 * domain (lower-cased) domain ":*", else "*".  Glob characters in the
 * prefix or the domain (an address literal has brackets) are escaped.
 */
static void match(const struct cbv_cache_redis *r, char kind, const char *domain, char *out,
                  size_t cap)
{
	char low[CBV_DOMAIN_MAX + 1];
	size_t o = 0, n = domain != NULL ? strnlen(domain, CBV_DOMAIN_MAX) : 0;

	out[0] = '\0';
	glob_escape(out, cap, &o, r->prefix);
	if (kind != 0 && o + 3 < cap) {
		out[o++] = kind;
		out[o++] = ':';
	}
	for (size_t i = 0; i < n; i++)
		low[i] = domain[i] >= 'A' && domain[i] <= 'Z' ? (char)(domain[i] - 'A' + 'a')
		                                              : domain[i];
	low[n] = '\0';
	glob_escape(out, cap, &o, low);
	if (o + 3 < cap) {
		if (n > 0)
			out[o++] = ':';
		out[o++] = '*';
	}
	out[o] = '\0';
}

/* ---- scripts ---- */

struct script {
	const char *src;
	char sha[41];
};

/*
 * Flight: READY if a record answers, else SET NX PX; BUSY with its PTTL.
 * A lease key of another type or without an expiry is none of ours (it
 * would block every verification of the address): it is replaced.
 */
static struct script flight_lua = {
	"if redis.call('EXISTS', KEYS[1]) + redis.call('EXISTS', KEYS[2]) > 0 then "
	"return {1, 0} end "
	"local ty = redis.call('TYPE', KEYS[3]).ok "
	"if (ty ~= 'string' and ty ~= 'none') or redis.call('PTTL', KEYS[3]) == -1 then "
	"redis.call('DEL', KEYS[3]) end "
	"if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, 0} end "
	"return {2, redis.call('PTTL', KEYS[3])}",
	""
};

/* Store: the address record, the domain fact, then our flight (compare and delete). */
static struct script store_lua = {
	"if ARGV[2] ~= '0' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end "
	"if ARGV[4] ~= '0' then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4]) end "
	"if ARGV[5] ~= '0' and redis.pcall('GET', KEYS[3]) == ARGV[5] then "
	"redis.call('DEL', KEYS[3]) end "
	"return 1",
	""
};

/* Ends a flight that is still ours. */
static struct script unlock_lua = {
	"if redis.pcall('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
	"return 0",
	""
};

/*
 * Caps on Redis's clock: drop expired slots; at the concurrency cap answer
 * {1, ms until the first slot expires}; out of rate tokens {2, ms until
 * one is due}; else take a token and a slot, {0, 0}.  A key of the wrong
 * type is reset (as a damaged LMDB value is).  Rate: a token bucket of
 * ARGV[2] tokens per ARGV[3] ms, in milli-tokens.
 */
static struct script caps_lua = {
	"local t = redis.call('TIME') "
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
	"local max = tonumber(ARGV[1]) "
	"local ty = redis.call('TYPE', KEYS[1]).ok "
	"if ty ~= 'zset' and ty ~= 'none' then redis.call('DEL', KEYS[1]) end "
	"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
	"local n = redis.call('ZCARD', KEYS[1]) "
	"if (max > 0 and n >= max) or n >= 256 then "
	"  local f = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES') "
	"  return {1, tonumber(f[2]) - now} end "
	"local count = tonumber(ARGV[2]) "
	"if count > 0 then "
	"  local win = tonumber(ARGV[3]) "
	"  ty = redis.call('TYPE', KEYS[2]).ok "
	"  if ty ~= 'hash' and ty ~= 'none' then redis.call('DEL', KEYS[2]) end "
	"  local b = redis.call('HMGET', KEYS[2], 'm', 'l') "
	"  local cap = count * 1000 "
	"  local m = tonumber(b[1]) local l = tonumber(b[2]) "
	"  if m == nil or l == nil or m < 0 or m > cap then m = cap l = now end "
	"  local el = now - l if el < 0 then el = 0 end if el > win then el = win end "
	"  m = math.min(cap, m + math.floor(el * count * 1000 / win)) "
	"  if m < 1000 then return {2, math.floor((1000 - m) * win / cap) + 1} end "
	"  redis.call('HSET', KEYS[2], 'm', m - 1000, 'l', now) "
	"  redis.call('PEXPIRE', KEYS[2], win) "
	"end "
	"redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[5]) "
	"local p = redis.call('PTTL', KEYS[1]) "
	"if p < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end "
	"return {0, 0}",
	""
};

/* 1 if rep is a SHA-1 in hex, as SCRIPT LOAD answers. */
static int sha_reply(const redisReply *rep)
{
	int ok = rep != NULL && rep->type == REDIS_REPLY_STRING && rep->len == 40;

	for (size_t i = 0; ok && i < 40; i++)
		ok = (rep->str[i] >= '0' && rep->str[i] <= '9') || (rep->str[i] >= 'a' && rep->str[i] <= 'f');
	return ok;
}

/*
 * The script's SHA-1 in hex, as Redis names it: asked of Redis once per
 * process (SCRIPT LOAD), not computed here - the first OpenSSL EVP digest
 * of a process costs ~0.8 ms of provider set-up, and most Exim processes
 * make a handful of cache calls.  "" if Redis would not say.
 */
static const char *script_sha(struct cbv_cache_redis *r, struct script *s)
{
	const char *argv[3] = { "SCRIPT", "LOAD", s->src };
	size_t lens[3] = { 6, 4, strlen(s->src) };
	redisReply *rep;

	if (s->sha[0] != '\0')
		return s->sha;
	if ((rep = command(r, 3, argv, lens)) == NULL)
		return "";
	if (sha_reply(rep)) {
		memcpy(s->sha, rep->str, 40);
		s->sha[40] = '\0';
	}
	freeReplyObject(rep);
	return s->sha;
}

/*
 * Runs s with nkeys keys then the other args (argv[3..]) by EVALSHA, by
 * EVAL when Redis does not know it yet.  NULL after an outage or an error
 * reply (logged once, not an outage: e.g. a script error on a bad value).
 */
static redisReply *eval(struct cbv_cache_redis *r, struct script *s, int argc,
                        const char **argv, size_t *lens)
{
	redisReply *rep;

	argv[0] = "EVALSHA";
	lens[0] = 7;
	argv[1] = script_sha(r, s);
	lens[1] = strlen(argv[1]);
	if (r->ctx == NULL)
		return NULL; /* SCRIPT LOAD met an outage */
	rep = lens[1] == 40 ? command(r, argc, argv, lens) : NULL;
	/* not loaded (Redis restarted, SCRIPT FLUSH) or no SHA: the script itself */
	if (lens[1] != 40 || (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
	                      strncmp(rep->str, "NOSCRIPT", 8) == 0)) {
		if (rep != NULL)
			freeReplyObject(rep);
		if (r->ctx == NULL)
			return NULL;
		argv[0] = "EVAL";
		lens[0] = 4;
		argv[1] = s->src;
		lens[1] = strlen(s->src);
		rep = command(r, argc, argv, lens);
	}
	if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
		char what[200];

		snprintf(what, sizeof(what), "a script failed (%.120s)", rep->str);
		damaged_once(r, what);
		freeReplyObject(rep);
		return NULL;
	}
	return rep;
}

/* 1 if rep is an array of two integers; fills a and b. */
static int pair(const redisReply *rep, long long *a, long long *b)
{
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER ||
	    rep->element[1]->type != REDIS_REPLY_INTEGER)
		return 0;
	*a = rep->element[0]->integer;
	*b = rep->element[1]->integer;
	return 1;
}

/* A new ticket: 63 random bits under the top bit (the backend's mark), never 0. */
static uint64_t new_ticket(struct cbv_cache_redis *r)
{
	uint64_t t = 0;

	if (getrandom(&t, sizeof(t), GRND_NONBLOCK) != (ssize_t)sizeof(t))
		t = (uint64_t)(uint32_t)getpid() << 32 ^ (uint64_t)mono_ms() << 8;
	t ^= ++r->serial;
	return t | (uint64_t)1 << 63;
}

/* ---- records ---- */

/* Copies a string reply into buf and decodes it; 1 if a valid record. */
static int take_value(struct cbv_cache_redis *r, const redisReply *v, unsigned char *buf,
                      size_t cap, struct cbv_cache_rec *rec)
{
	enum cbv_cache_rec_status st;

	if (v == NULL || v->type != REDIS_REPLY_STRING)
		return 0;
	if (v->len > cap || v->len > CBV_CACHE_REC_MAX) {
		damaged_once(r, "a value larger than any record");
		return 0;
	}
	memcpy(buf, v->str, v->len);
	st = cbv_cache_rec_decode(buf, v->len, rec);
	if (st == CBV_REC_EVERSION)
		damaged_once(r, "a record of another format version");
	else if (st != CBV_REC_OK)
		damaged_once(r, "a damaged record");
	return st == CBV_REC_OK;
}

/* ---- operations: built once, carried by either driver (cbv_cache_redis_impl.h) ---- */

/* Sets argv[i] to c->n[j] holding v, its length in lens[i]. */
static void num_arg(struct cbv_redis_cmd *c, int i, int j, unsigned long long v)
{
	snprintf(c->n[j], sizeof(c->n[j]), "%llu", v);
	c->argv[i] = c->n[j];
	c->lens[i] = strlen(c->n[j]);
}

/* Sets argv[i] to key c->k[j] (of length len). */
static void key_arg(struct cbv_redis_cmd *c, int i, int j, size_t len)
{
	c->argv[i] = c->k[j];
	c->lens[i] = len;
}

static void cmd_init(struct cbv_redis_cmd *c, enum cbv_redis_script script, int argc)
{
	c->argc = argc;
	c->script = script;
	c->ticket = 0;
	c->lease = -1;
	c->argv[0] = c->argv[1] = NULL;
	c->lens[0] = c->lens[1] = 0;
}

int cbv_cache_redis_build_lookup(const struct cbv_cache_redis *r, const struct cbv_cache_key *k,
                                 struct cbv_redis_cmd *c)
{
	size_t la, ld;

	cmd_init(c, CBV_RS_NONE, 3);
	if ((la = rkey(r, k, 'A', c->k[0])) == 0 || (ld = rkey(r, k, 'D', c->k[1])) == 0)
		return 0;
	c->argv[0] = "MGET";
	c->lens[0] = 4;
	key_arg(c, 1, 0, la);
	key_arg(c, 2, 1, ld);
	return 1;
}

enum cbv_cache_status cbv_cache_redis_read_lookup(struct cbv_cache_redis *r, int64_t now,
                                                  const redisReply *rep, unsigned char *buf,
                                                  size_t cap, struct cbv_cache_rec *rec,
                                                  const char **why)
{
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
		*why = "MGET: unexpected reply";
		return CBV_CACHE_OFF;
	}
	for (int i = 0; i < 2; i++) {
		if (take_value(r, rep->element[i], buf, cap, rec) && rec->expires_ms > now &&
		    (i == 0) == (rec->kind == CBV_CACHE_ADDRESS))
			return CBV_CACHE_HIT;
	}
	return CBV_CACHE_MISS;
}

/* The script's struct (its SHA-1 lives there, shared by both drivers). */
static struct script *script_of(enum cbv_redis_script s)
{
	static struct script *const scripts[CBV_RS_COUNT] = { NULL, &flight_lua, &store_lua,
		                                              &unlock_lua, &caps_lua };

	return s > CBV_RS_NONE && s < CBV_RS_COUNT ? scripts[s] : NULL;
}

/* The synchronous driver: one operation's reply (NULL after an outage or an error reply). */
static redisReply *run(struct cbv_cache_redis *r, struct cbv_redis_cmd *c)
{
	if (c->script != CBV_RS_NONE)
		return eval(r, script_of(c->script), c->argc, c->argv, c->lens);
	return command(r, c->argc, c->argv, c->lens);
}

enum cbv_cache_status cbv_cache_redis_lookup(struct cbv_cache_redis *r, int64_t now,
                                             const struct cbv_cache_key *k,
                                             unsigned char *buf, size_t cap,
                                             struct cbv_cache_rec *rec)
{
	struct cbv_redis_cmd c;
	const char *why = NULL;
	enum cbv_cache_status st;
	redisReply *rep;

	if (!cbv_cache_redis_build_lookup(r, k, &c))
		return CBV_CACHE_OFF;
	if (!ensure(r) || (rep = run(r, &c)) == NULL)
		return CBV_CACHE_OFF;
	st = cbv_cache_redis_read_lookup(r, now, rep, buf, cap, rec, &why);
	freeReplyObject(rep);
	if (why != NULL)
		outage(r, why);
	return st;
}

int cbv_cache_redis_build_store(const struct cbv_cache_redis *r, const struct cbv_cache_key *k,
                                const unsigned char *aval, size_t alen, unsigned attl,
                                const unsigned char *dval, size_t dlen, unsigned dttl,
                                uint64_t ticket, struct cbv_redis_cmd *c)
{
	size_t l[3];

	cmd_init(c, CBV_RS_STORE, 11);
	if ((l[0] = rkey(r, k, 'A', c->k[0])) == 0 || (l[1] = rkey(r, k, 'D', c->k[1])) == 0 ||
	    (l[2] = rkey(r, k, 'F', c->k[2])) == 0)
		return 0;
	c->argv[2] = "3";
	c->lens[2] = 1;
	for (int i = 0; i < 3; i++)
		key_arg(c, 3 + i, i, l[i]);
	c->argv[6] = alen > 0 ? (const char *)aval : "";
	c->lens[6] = alen;
	num_arg(c, 7, 0, alen > 0 ? (unsigned long long)attl * 1000 : 0ULL);
	c->argv[8] = dlen > 0 ? (const char *)dval : "";
	c->lens[8] = dlen;
	num_arg(c, 9, 1, dlen > 0 ? (unsigned long long)dttl * 1000 : 0ULL);
	num_arg(c, 10, 2, (unsigned long long)ticket);
	return 1;
}

enum cbv_cache_status cbv_cache_redis_store(struct cbv_cache_redis *r,
                                            const struct cbv_cache_key *k,
                                            const unsigned char *aval, size_t alen,
                                            unsigned attl, const unsigned char *dval,
                                            size_t dlen, unsigned dttl, uint64_t ticket)
{
	struct cbv_redis_cmd c;
	redisReply *rep;

	if (!cbv_cache_redis_build_store(r, k, aval, alen, attl, dval, dlen, dttl, ticket, &c))
		return CBV_CACHE_OFF;
	if (cbv_cache_redis_async_on()) /* sent; its reply is checked later */
		return cbv_cache_redis_async_send(r, &c, CBV_RW_FIRE, NULL) ? CBV_CACHE_OK
		                                                           : CBV_CACHE_OFF;
	if (!ensure(r))
		return CBV_CACHE_OFF;
	rep = run(r, &c);
	if (rep == NULL)
		return CBV_CACHE_OFF;
	freeReplyObject(rep);
	return CBV_CACHE_OK;
}

int cbv_cache_redis_build_flight(struct cbv_cache_redis *r, const struct cbv_cache_key *k,
                                 unsigned lease_s, struct cbv_redis_cmd *c)
{
	size_t l[3];

	cmd_init(c, CBV_RS_FLIGHT, 8);
	if ((l[0] = rkey(r, k, 'A', c->k[0])) == 0 || (l[1] = rkey(r, k, 'D', c->k[1])) == 0 ||
	    (l[2] = rkey(r, k, 'F', c->k[2])) == 0)
		return 0;
	c->ticket = new_ticket(r);
	c->lease = 2;
	c->argv[2] = "3";
	c->lens[2] = 1;
	for (int i = 0; i < 3; i++)
		key_arg(c, 3 + i, i, l[i]);
	num_arg(c, 6, 0, (unsigned long long)c->ticket);
	num_arg(c, 7, 1, (unsigned long long)lease_s * 1000);
	return 1;
}

enum cbv_cache_status cbv_cache_redis_read_flight(const redisReply *rep, int64_t now,
                                                  uint64_t offered, unsigned lease_s,
                                                  uint64_t *ticket, int64_t *wake_ms)
{
	long long a, b;

	if (!pair(rep, &a, &b))
		return CBV_CACHE_OFF;
	if (a == 0) {
		*ticket = offered;
		*wake_ms = now + (int64_t)lease_s * 1000;
		return CBV_CACHE_OWN;
	}
	if (a == 1)
		return CBV_CACHE_READY;
	*wake_ms = now + (b > 0 ? b : 1);
	return CBV_CACHE_BUSY;
}

enum cbv_cache_status cbv_cache_redis_flight_begin(struct cbv_cache_redis *r, int64_t now,
                                                   const struct cbv_cache_key *k,
                                                   unsigned lease_s, uint64_t *ticket,
                                                   int64_t *wake_ms)
{
	struct cbv_redis_cmd c;
	enum cbv_cache_status st;
	redisReply *rep;

	if (!cbv_cache_redis_build_flight(r, k, lease_s, &c))
		return CBV_CACHE_OFF;
	if (!ensure(r) || (rep = run(r, &c)) == NULL)
		return CBV_CACHE_OFF;
	st = cbv_cache_redis_read_flight(rep, now, c.ticket, lease_s, ticket, wake_ms);
	freeReplyObject(rep);
	return st;
}

int cbv_cache_redis_build_unlock(const char *kf, uint64_t ticket, struct cbv_redis_cmd *c)
{
	size_t l = strnlen(kf, RKEY_MAX);

	cmd_init(c, CBV_RS_UNLOCK, 5);
	if (l == 0 || l >= RKEY_MAX)
		return 0;
	memcpy(c->k[0], kf, l + 1);
	c->argv[2] = "1";
	c->lens[2] = 1;
	key_arg(c, 3, 0, l);
	num_arg(c, 4, 0, (unsigned long long)ticket);
	return 1;
}

/*
 * Sends a command that nobody waits for: now, or later in the non-blocking
 * driver (its queue reads and checks the reply).  1 if it was sent (and,
 * on the blocking connection, answered), 0 if Redis was not reached.
 */
static int fire(struct cbv_cache_redis *r, struct cbv_redis_cmd *c)
{
	redisReply *rep;

	if (cbv_cache_redis_async_on())
		return cbv_cache_redis_async_send(r, c, CBV_RW_FIRE, NULL);
	if (!ensure(r) || (rep = run(r, c)) == NULL)
		return 0;
	freeReplyObject(rep);
	return 1;
}

void cbv_cache_redis_flight_end(struct cbv_cache_redis *r, const struct cbv_cache_key *k,
                                uint64_t ticket)
{
	char kf[RKEY_MAX];
	struct cbv_redis_cmd c;

	if (rkey(r, k, 'F', kf) == 0 || !cbv_cache_redis_build_unlock(kf, ticket, &c))
		return;
	(void)fire(r, &c);
}

int cbv_cache_redis_build_acquire(struct cbv_cache_redis *r, char kind, const char *name,
                                  unsigned max, unsigned rate_count, unsigned rate_window_s,
                                  unsigned lease_s, struct cbv_redis_cmd *c)
{
	size_t lc, lr;

	cmd_init(c, CBV_RS_CAPS, 10);
	if ((lc = nkey(r, kind, name, c->k[0])) == 0 || (lr = nkey(r, 'R', name, c->k[1])) == 0)
		return 0;
	c->ticket = new_ticket(r);
	c->lease = 0;
	c->argv[2] = "2";
	c->lens[2] = 1;
	key_arg(c, 3, 0, lc);
	key_arg(c, 4, 1, lr);
	/* bounded like the LMDB bucket, so the arithmetic stays exact in Lua's doubles */
	num_arg(c, 5, 0, max);
	num_arg(c, 6, 1, rate_window_s > 0 && rate_count < 1000000 ? rate_count : rate_window_s > 0 ? 1000000
	                                                                                             : 0);
	num_arg(c, 7, 2, (unsigned long long)(rate_window_s < 1000000 ? rate_window_s : 1000000) * 1000);
	num_arg(c, 8, 3, (unsigned long long)(lease_s == 0 ? 1 : lease_s) * 1000);
	num_arg(c, 9, 4, (unsigned long long)c->ticket);
	return 1;
}

enum cbv_cache_status cbv_cache_redis_read_acquire(const redisReply *rep, int64_t now, char kind,
                                                   uint64_t offered, uint64_t *ticket,
                                                   int64_t *wake_ms, enum cbv_cache_limit *which)
{
	long long a, b;

	if (!pair(rep, &a, &b))
		return CBV_CACHE_OFF;
	if (a == 0) {
		*ticket = offered;
		return CBV_CACHE_OK;
	}
	*wake_ms = now + (b > 0 ? b : 1);
	*which = a == 2        ? CBV_LIMIT_DOMAIN_RATE
	         : kind == 'H' ? CBV_LIMIT_HOST_CONCURRENCY
	                       : CBV_LIMIT_DOMAIN_CONCURRENCY;
	return CBV_CACHE_LIMITED;
}

enum cbv_cache_status cbv_cache_redis_acquire(struct cbv_cache_redis *r, int64_t now,
                                              char kind, const char *name, unsigned max,
                                              unsigned rate_count, unsigned rate_window_s,
                                              unsigned lease_s, uint64_t *ticket,
                                              int64_t *wake_ms, enum cbv_cache_limit *which)
{
	struct cbv_redis_cmd c;
	enum cbv_cache_status st;
	redisReply *rep;

	if (!cbv_cache_redis_build_acquire(r, kind, name, max, rate_count, rate_window_s, lease_s,
	                                   &c))
		return CBV_CACHE_OFF;
	if (!ensure(r) || (rep = run(r, &c)) == NULL)
		return CBV_CACHE_OFF;
	st = cbv_cache_redis_read_acquire(rep, now, kind, c.ticket, ticket, wake_ms, which);
	freeReplyObject(rep);
	return st;
}

int cbv_cache_redis_build_release(const char *kc, uint64_t ticket, struct cbv_redis_cmd *c)
{
	size_t l = strnlen(kc, RKEY_MAX);

	cmd_init(c, CBV_RS_NONE, 3);
	if (l == 0 || l >= RKEY_MAX)
		return 0;
	memcpy(c->k[0], kc, l + 1);
	c->argv[0] = "ZREM";
	c->lens[0] = 4;
	key_arg(c, 1, 0, l);
	num_arg(c, 2, 0, (unsigned long long)ticket);
	return 1;
}

void cbv_cache_redis_release(struct cbv_cache_redis *r, char kind, const char *name,
                             uint64_t ticket)
{
	char kc[RKEY_MAX];
	struct cbv_redis_cmd c;

	if (nkey(r, kind, name, kc) == 0 || !cbv_cache_redis_build_release(kc, ticket, &c))
		return;
	(void)fire(r, &c);
}

/* ---- shared with the non-blocking driver ---- */

const char *cbv_cache_redis_script_src(enum cbv_redis_script s)
{
	struct script *sc = script_of(s);

	return sc != NULL ? sc->src : "";
}

const char *cbv_cache_redis_script_sha(enum cbv_redis_script s)
{
	struct script *sc = script_of(s);

	return sc != NULL ? sc->sha : "";
}

void cbv_cache_redis_script_learn(enum cbv_redis_script s, const redisReply *rep)
{
	struct script *sc = script_of(s);

	if (sc != NULL && sha_reply(rep)) {
		memcpy(sc->sha, rep->str, 40);
		sc->sha[40] = '\0';
	}
}

void cbv_cache_redis_outage(struct cbv_cache_redis *r, const char *what)
{
	outage(r, what);
}

void cbv_cache_redis_damaged(struct cbv_cache_redis *r, const char *what)
{
	damaged_once(r, what);
}

/* ---- maintenance: SCAN, never KEYS ---- */

/* Called with each batch of keys from SCAN; returns 0 to go on, 1 to stop, -1 on failure. */
typedef int batch_fn(struct cbv_cache_redis *r, redisReply *keys, void *arg);

/* SCANs keys matching pat; -1 when down. */
static int scan(struct cbv_cache_redis *r, const char *pat, batch_fn *fn, void *arg)
{
	char cursor[32] = "0";
	const char *argv[6] = { "SCAN", cursor, "MATCH", pat, "COUNT", SCAN_COUNT };
	size_t lens[6];
	redisReply *rep;
	int rc = 0;

	if (!ensure(r))
		return -1;
	do {
		for (int i = 0; i < 6; i++)
			lens[i] = strlen(argv[i]);
		if ((rep = command(r, 6, argv, lens)) == NULL)
			return -1;
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING ||
		    rep->element[0]->len >= sizeof(cursor) ||
		    rep->element[1]->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(rep);
			outage(r, "SCAN: unexpected reply");
			return -1;
		}
		memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
		cursor[rep->element[0]->len] = '\0';
		if (rep->element[1]->elements > 0)
			rc = fn(r, rep->element[1], arg);
		freeReplyObject(rep);
	} while (rc == 0 && strcmp(cursor, "0") != 0);
	return rc < 0 ? -1 : 0;
}

/* MGET of the keys of a SCAN batch; NULL when down or odd. */
static redisReply *mget(struct cbv_cache_redis *r, const redisReply *keys)
{
	const char **argv = cbv_calloc(keys->elements + 1, sizeof(*argv));
	size_t *lens = cbv_calloc(keys->elements + 1, sizeof(*lens));
	redisReply *rep = NULL;

	if (argv == NULL || lens == NULL)
		goto done;
	argv[0] = "MGET";
	lens[0] = 4;
	for (size_t i = 0; i < keys->elements; i++) {
		if (keys->element[i]->type != REDIS_REPLY_STRING)
			goto done;
		argv[i + 1] = keys->element[i]->str;
		lens[i + 1] = keys->element[i]->len;
	}
	rep = command(r, (int)keys->elements + 1, argv, lens);
	if (rep != NULL && (rep->type != REDIS_REPLY_ARRAY || rep->elements != keys->elements)) {
		freeReplyObject(rep);
		rep = NULL;
	}
done:
	cbv_free(argv);
	cbv_free(lens);
	return rep;
}

struct each_arg {
	int64_t now;
	cbv_cache_each_fn *fn;
	void *arg;
	long count;
	unsigned char buf[CBV_CACHE_REC_MAX];
};

static int each_batch(struct cbv_cache_redis *r, redisReply *keys, void *arg)
{
	struct each_arg *a = arg;
	size_t pl = strlen(r->prefix);
	struct cbv_cache_entry e;
	char dom[CBV_DOMAIN_MAX + 1];
	redisReply *vals = mget(r, keys);
	int stop = 0;

	if (vals == NULL)
		return -1;
	for (size_t i = 0; i < keys->elements && !stop; i++) {
		const redisReply *kr = keys->element[i];
		const char *d = kr->str + pl + 2, *colon;

		/* P kind ':' domain ':' 64 hex */
		if (kr->len < pl + 2 + 1 + 65 || kr->str[kr->len - 65] != ':')
			continue;
		colon = kr->str + kr->len - 65;
		if ((size_t)(colon - d) > CBV_DOMAIN_MAX ||
		    !take_value(r, vals->element[i], a->buf, sizeof(a->buf), &e.rec))
			continue;
		memcpy(dom, d, (size_t)(colon - d));
		dom[colon - d] = '\0';
		e.domain = dom;
		e.expired = e.rec.expires_ms <= a->now;
		a->count++;
		stop = a->fn(&e, a->arg) != 0;
	}
	freeReplyObject(vals);
	return stop;
}

long cbv_cache_redis_each(struct cbv_cache_redis *r, int64_t now, const char *domain,
                          cbv_cache_each_fn *fn, void *arg)
{
	struct each_arg *a = cbv_malloc(sizeof(*a));
	char pat[2 * RKEY_MAX + 2];
	long count = -1;

	if (a == NULL || (domain != NULL && nkey(r, 'A', domain, pat) == 0)) {
		cbv_free(a);
		return -1;
	}
	a->now = now;
	a->fn = fn;
	a->arg = arg;
	a->count = 0;
	for (const char *kd = "AD"; *kd != '\0'; kd++) {
		match(r, *kd, domain, pat, sizeof(pat));
		if (scan(r, pat, each_batch, a) < 0)
			goto done;
	}
	count = a->count;
done:
	cbv_free(a);
	return count;
}

struct forget_arg {
	const char *local;
	long deleted;
	unsigned char buf[CBV_CACHE_REC_MAX];
};

/* DELs the keys of a batch that forget_arg selects. */
static int forget_batch(struct cbv_cache_redis *r, redisReply *keys, void *arg)
{
	struct forget_arg *a = arg;
	redisReply *vals = NULL, *rep;
	const char **argv = cbv_calloc(keys->elements + 1, sizeof(*argv));
	size_t *lens = cbv_calloc(keys->elements + 1, sizeof(*lens));
	struct cbv_cache_rec rec;
	int n = 1, rc = -1;

	if (argv == NULL || lens == NULL)
		goto done;
	if (a->local != NULL && (vals = mget(r, keys)) == NULL)
		goto done;
	argv[0] = "DEL";
	lens[0] = 3;
	for (size_t i = 0; i < keys->elements; i++) {
		if (keys->element[i]->type != REDIS_REPLY_STRING)
			continue;
		if (a->local != NULL) {
			const char *rcpt, *at;

			if (!take_value(r, vals->element[i], a->buf, sizeof(a->buf), &rec))
				continue;
			rcpt = rec.s[CBV_CS_RCPT];
			at = strrchr(rcpt, '@');
			if (at == NULL || (size_t)(at - rcpt) != strlen(a->local) ||
			    memcmp(rcpt, a->local, (size_t)(at - rcpt)) != 0)
				continue;
		}
		argv[n] = keys->element[i]->str;
		lens[n++] = keys->element[i]->len;
	}
	rc = 0;
	if (n > 1) {
		if ((rep = command(r, n, argv, lens)) == NULL) {
			rc = -1;
			goto done;
		}
		if (rep->type == REDIS_REPLY_INTEGER)
			a->deleted += rep->integer;
		freeReplyObject(rep);
	}
done:
	if (vals != NULL)
		freeReplyObject(vals);
	cbv_free(argv);
	cbv_free(lens);
	return rc;
}

long cbv_cache_redis_forget(struct cbv_cache_redis *r, const char *domain, const char *local)
{
	struct forget_arg *a = cbv_malloc(sizeof(*a));
	char low[RKEY_MAX], pat[2 * RKEY_MAX + 2];
	const char *kinds = local != NULL ? "A" : "ADF";
	long total = -1;

	if (a == NULL)
		return -1;
	a->local = local;
	a->deleted = 0;
	if (nkey(r, 'A', domain, low) == 0)
		goto done;
	for (const char *kd = kinds; *kd != '\0'; kd++) {
		match(r, *kd, domain, pat, sizeof(pat));
		if (scan(r, pat, forget_batch, a) < 0)
			goto done;
	}
	if (local == NULL) {
		char kc[RKEY_MAX], kr[RKEY_MAX];
		const char *argv[3] = { "DEL", kc, kr };
		size_t lens[3] = { 3, nkey(r, 'C', domain, kc), nkey(r, 'R', domain, kr) };
		redisReply *rep = command(r, 3, argv, lens);

		if (rep == NULL)
			goto done;
		if (rep->type == REDIS_REPLY_INTEGER)
			a->deleted += rep->integer;
		freeReplyObject(rep);
	}
	total = a->deleted;
done:
	cbv_free(a);
	return total;
}

struct stats_arg {
	int64_t now;
	size_t plen;
	struct cbv_cache_stats *st;
	unsigned char buf[CBV_CACHE_REC_MAX];
};

static int stats_batch(struct cbv_cache_redis *r, redisReply *keys, void *arg)
{
	struct stats_arg *a = arg;
	struct cbv_cache_rec rec;
	redisReply *vals = mget(r, keys);

	if (vals == NULL)
		return -1;
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *kr = keys->element[i];
		char kind = kr->len > a->plen ? kr->str[a->plen] : '\0';

		if (kind == 'A' || kind == 'D') {
			const redisReply *v = vals->element[i];

			if (v->type != REDIS_REPLY_STRING || v->len > sizeof(a->buf)) {
				a->st->damaged++;
				continue;
			}
			memcpy(a->buf, v->str, v->len);
			if (cbv_cache_rec_decode(a->buf, v->len, &rec) != CBV_REC_OK) {
				a->st->damaged++;
				continue;
			}
			a->st->by_kind[rec.kind]++;
			if (rec.kind == CBV_CACHE_ADDRESS)
				a->st->by_verdict[rec.verdict]++;
			if (rec.expires_ms <= a->now)
				a->st->expired++;
		} else if (kind == 'F' || kind == 'C' || kind == 'H') {
			a->st->leases++;
		} else if (kind == 'R') {
			a->st->buckets++;
		}
	}
	freeReplyObject(vals);
	return 0;
}

/* The number after "name:" in INFO text; 0 if absent. */
static unsigned long long info_field(const char *text, const char *name)
{
	const char *p = strstr(text, name);
	unsigned long long v = 0;

	if (p == NULL)
		return 0;
	for (p += strlen(name); *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (unsigned long long)(*p - '0');
	return v;
}

int cbv_cache_redis_stats(struct cbv_cache_redis *r, int64_t now, struct cbv_cache_stats *st)
{
	struct stats_arg *a = cbv_malloc(sizeof(*a));
	char pat[2 * CBV_REDIS_PREFIX_MAX + 2];
	const char *argv[2] = { "INFO", "memory" };
	size_t lens[2] = { 4, 6 };
	redisReply *rep;
	int rc = -1;

	if (a == NULL)
		return -1;
	a->now = now;
	a->plen = strlen(r->prefix);
	a->st = st;
	match(r, 0, NULL, pat, sizeof(pat));
	if (scan(r, pat, stats_batch, a) < 0)
		goto done;
	if ((rep = command(r, 2, argv, lens)) == NULL)
		goto done;
	if (rep->type == REDIS_REPLY_STRING) {
		/* used_memory (all of Redis, not only our keys) and maxmemory (0 = none) */
		st->used_bytes = info_field(rep->str, "\nused_memory:");
		st->map_bytes = info_field(rep->str, "\nmaxmemory:");
	}
	freeReplyObject(rep);
	rc = 0;
done:
	cbv_free(a);
	return rc;
}

/* ---- counters for operators (cbv_stats.h): the hash P "S" ---- */

/*
 * cbv_cache_redis_count() under the non-blocking driver (cbvd): each
 * HINCRBY is sent without waiting, on the driver's one connection, whose
 * queue reads and checks the replies; nothing here may block the loop.
 */
static int count_async(struct cbv_cache_redis *r, const struct cbv_stats_field *f, size_t n,
                       uint64_t outages)
{
	struct cbv_redis_cmd c;
	size_t klen;

	for (size_t i = 0; i <= n; i++) {
		uint64_t add = i < n ? f[i].add : outages;

		if (add == 0)
			continue;
		cmd_init(&c, CBV_RS_NONE, 4);
		klen = (size_t)snprintf(c.k[0], sizeof(c.k[0]), "%sS", r->prefix);
		c.argv[0] = "HINCRBY";
		c.lens[0] = 7;
		key_arg(&c, 1, 0, klen);
		c.argv[2] = i < n ? f[i].name : "o";
		c.lens[2] = strlen(c.argv[2]);
		num_arg(&c, 3, 0, (unsigned long long)add);
		if (!fire(r, &c))
			return -1;
	}
	return 0;
}

int cbv_cache_redis_count(struct cbv_cache_redis *r, const struct cbv_stats_field *f, size_t n,
                          uint64_t outages)
{
	/* CLIENT REPLY SKIP + HINCRBY per field: nothing comes back, so nothing is
	 * awaited and the replies of the next command stay in step.  The first
	 * time in a process a PING follows, awaited: a server (or a proxy) that
	 * refuses CLIENT REPLY answers it out of step, and is then never sent
	 * counters again (the connection is made afresh). */
	char buf[(CBV_STATS_FIELDS_MAX + 1) * 2 * (96 + CBV_REDIS_PREFIX_MAX + CBV_STATS_FIELD_MAX) +
	         16];
	char key[CBV_REDIS_PREFIX_MAX + 2], num[24], what[160];
	static const char ping[] = "*1\r\n$4\r\nPING\r\n";
	redisReply *rep;
	size_t len = 0;

	if (cbv_cache_redis_async_on())
		return count_async(r, f, n, outages);
	if (r->skip_ok < 0)
		return 0;
	if (!ensure(r))
		return -1;
	snprintf(key, sizeof(key), "%sS", r->prefix);
	for (size_t i = 0; i <= n; i++) {
		const char *name = i < n ? f[i].name : "o";
		uint64_t add = i < n ? f[i].add : outages;
		const char *skip[3] = { "CLIENT", "REPLY", "SKIP" };
		const char *argv[4] = { "HINCRBY", key, name, num };
		char *c1 = NULL, *c2 = NULL;
		int l1, l2;

		if (add == 0)
			continue;
		snprintf(num, sizeof(num), "%llu", (unsigned long long)add);
		l1 = redisFormatCommandArgv(&c1, 3, skip, NULL);
		l2 = redisFormatCommandArgv(&c2, 4, argv, NULL);
		/* both or neither: a SKIP without its command would skip another's reply */
		if (l1 > 0 && l2 > 0 && c1 != NULL && c2 != NULL &&
		    len + (size_t)l1 + (size_t)l2 + sizeof(ping) <= sizeof(buf)) {
			memcpy(buf + len, c1, (size_t)l1);
			memcpy(buf + len + (size_t)l1, c2, (size_t)l2);
			len += (size_t)l1 + (size_t)l2;
		}
		redisFreeCommand(c1);
		redisFreeCommand(c2);
	}
	if (len == 0)
		return 0;
	if (r->skip_ok == 0) {
		memcpy(buf + len, ping, sizeof(ping) - 1);
		len += sizeof(ping) - 1;
	}
	if (send_all(r->ctx, buf, len) != 0) {
		snprintf(what, sizeof(what), "HINCRBY failed: %s", r->ctx->errstr);
		outage(r, what);
		return -1;
	}
	if (r->skip_ok != 0)
		return 0;
	if ((rep = read_reply(r->ctx, r->timeout_ms)) == NULL) {
		snprintf(what, sizeof(what), "PING failed: %s", r->ctx->errstr);
		outage(r, what);
		return -1;
	}
	if (rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0) {
		r->skip_ok = 1;
	} else {
		r->skip_ok = -1;
		cbv_log(CBV_LOG_ERR, "cache %s: CLIENT REPLY refused: no counters in the store "
		                     "(verifications go on)",
		        r->url);
		redisFree(r->ctx); /* its replies are out of step: a fresh connection */
		r->ctx = NULL;
	}
	freeReplyObject(rep);
	return r->skip_ok > 0 ? 0 : -1;
}

int cbv_cache_redis_counters(struct cbv_cache_redis *r, struct cbv_stats *st)
{
	char key[CBV_REDIS_PREFIX_MAX + 2];
	const char *argv[2] = { "HGETALL", key };
	redisReply *rep;

	if (!ensure(r))
		return -1;
	snprintf(key, sizeof(key), "%sS", r->prefix);
	if ((rep = command(r, 2, argv, NULL)) == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements % 2 == 0) {
		for (size_t i = 0; i + 1 < rep->elements; i += 2) {
			const redisReply *k = rep->element[i], *v = rep->element[i + 1];
			unsigned long long n = 0;
			size_t j;

			if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
			    v->len == 0 || v->len > 20)
				continue;
			for (j = 0; j < v->len && v->str[j] >= '0' && v->str[j] <= '9'; j++)
				n = n * 10 + (unsigned long long)(v->str[j] - '0');
			if (j == v->len)
				(void)cbv_stats_field_add(st, k->str, k->len, n);
		}
	} else if (rep->type != REDIS_REPLY_ARRAY) {
		damaged_once(r, "the counters hash is not a hash");
	}
	freeReplyObject(rep);
	return 0;
}

/* ---- blobs (cbv_cache_blob_*) ---- */

/* P kind ':' label ':' hex from a blob's binary key; its length or 0. */
static size_t bkey(const struct cbv_cache_redis *r, const unsigned char *kb, size_t klen,
                   char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t dl, o;

	if (klen < 35 || klen > CBV_CACHE_KEY_MAX)
		return 0;
	dl = klen - 34;
	o = (size_t)snprintf(out, RKEY_MAX, "%s%c:%.*s:", r->prefix, (char)kb[0], (int)dl,
	                     (const char *)kb + 1);
	for (size_t i = 0; i < 32; i++) {
		out[o++] = hex[kb[2 + dl + i] >> 4];
		out[o++] = hex[kb[2 + dl + i] & 15];
	}
	out[o] = '\0';
	return o;
}

enum cbv_cache_status cbv_cache_redis_blob_get(struct cbv_cache_redis *r,
                                               const unsigned char *kb, size_t klen,
                                               unsigned char *buf, size_t cap, size_t *len)
{
	char key[RKEY_MAX];
	const char *argv[2] = { "GET", key };
	size_t lens[2] = { 3, 0 };
	enum cbv_cache_status st = CBV_CACHE_MISS;
	redisReply *rep;

	*len = 0;
	if ((lens[1] = bkey(r, kb, klen, key)) == 0)
		return CBV_CACHE_OFF;
	/*
	 * Under the non-blocking driver (cbvd) a GET would have to be waited
	 * for: cbvd keeps its sessions and answers in process instead, and
	 * only publishes them (blob put and del, through fire()) to the fleet.
	 */
	if (cbv_cache_redis_async_on())
		return CBV_CACHE_MISS;
	if (!ensure(r) || (rep = command(r, 2, argv, lens)) == NULL)
		return CBV_CACHE_OFF;
	if (rep->type == REDIS_REPLY_STRING) {
		if (rep->len > cap) {
			damaged_once(r, "a value larger than any record");
		} else {
			memcpy(buf, rep->str, rep->len);
			*len = rep->len;
			st = CBV_CACHE_HIT;
		}
	} else if (rep->type == REDIS_REPLY_ERROR) {
		damaged_once(r, "a value of another type"); /* WRONGTYPE: SET replaces it */
	} else if (rep->type != REDIS_REPLY_NIL) {
		freeReplyObject(rep);
		outage(r, "GET: unexpected reply");
		return CBV_CACHE_OFF;
	}
	freeReplyObject(rep);
	return st;
}

enum cbv_cache_status cbv_cache_redis_blob_put(struct cbv_cache_redis *r,
                                               const unsigned char *kb, size_t klen,
                                               const unsigned char *val, size_t vlen,
                                               uint64_t ttl_ms)
{
	struct cbv_redis_cmd c;
	size_t l;

	cmd_init(&c, CBV_RS_NONE, 5);
	if ((l = bkey(r, kb, klen, c.k[0])) == 0 || ttl_ms == 0)
		return CBV_CACHE_OFF;
	c.argv[0] = "SET";
	c.lens[0] = 3;
	key_arg(&c, 1, 0, l);
	c.argv[2] = (const char *)val;
	c.lens[2] = vlen;
	c.argv[3] = "PX";
	c.lens[3] = 2;
	num_arg(&c, 4, 0, (unsigned long long)ttl_ms);
	/* under cbvd's non-blocking driver: sent without waiting */
	return fire(r, &c) ? CBV_CACHE_OK : CBV_CACHE_OFF;
}

enum cbv_cache_status cbv_cache_redis_blob_del(struct cbv_cache_redis *r,
                                               const unsigned char *kb, size_t klen)
{
	struct cbv_redis_cmd c;
	size_t l;

	cmd_init(&c, CBV_RS_NONE, 2);
	if ((l = bkey(r, kb, klen, c.k[0])) == 0)
		return CBV_CACHE_OFF;
	c.argv[0] = "DEL";
	c.lens[0] = 3;
	key_arg(&c, 1, 0, l);
	return fire(r, &c) ? CBV_CACHE_OK : CBV_CACHE_OFF;
}
