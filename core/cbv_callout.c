/*
 * cbv_callout.c - blocking client for the mailfromd callout protocol.
 * See cbv_callout.h, cbv_callout_impl.h and docs/callout-protocol.md.
 */
#include "cbv_callout_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cbv_buf.h"
#include "cbv_clock.h"
#include "cbv_log.h"
#include "cbv_net.h"
#include "cbv_reply.h"
#include "cbv_text.h"
#include "cbv_url.h"

#define PROTO "e_callout_proto: "

struct cbv_callout {
	int fd;
	char peer[CBV_URL_MAX + 1];      /* the URL, for messages */
	char greeting[CBV_CALLOUT_LINE_MAX + 1];
	struct cbv_buf in;
};

/* ---- pure parsers ---------------------------------------------------- */

static int ascii_ieq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen != blen)
		return 0;
	for (size_t i = 0; i < alen; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

		if (x >= 'a' && x <= 'z')
			x = (unsigned char)(x - 'a' + 'A');
		if (y >= 'a' && y <= 'z')
			y = (unsigned char)(y - 'a' + 'A');
		if (x != y)
			return 0;
	}
	return 1;
}

/* A server URL: cbv_url's grammar, host names allowed (we connect). */
static enum cbv_status url_parse(const char *url, struct cbv_url *u, struct cbv_err *err)
{
	struct cbv_err e;

	if (cbv_url_parse(url, url == NULL ? 0 : strnlen(url, CBV_URL_MAX + 1), 0, u, &e) != CBV_OK)
		return cbv_err_set(err, CBV_EINVAL, "callout URL: %s", e.msg);
	return CBV_OK;
}

/* Key k is bit 1u << k of cbv_callout_rest_parse()'s *keys (CBV_REST_*). */
static const char *const rest_keys[] = { "MODE", "HOST", "EHLO", "MAILFROM", NULL };
static const char *const modes[] = { "mxfirst", "mxonly", "hostonly", "hostfirst", NULL };

/* Appends s (len bytes) to out at *pos, size n; -1 if it does not fit. */
static int put(char *out, size_t n, size_t *pos, const char *s, size_t len)
{
	if (*pos + len + 1 > n)
		return -1;
	memcpy(out + *pos, s, len);
	*pos += len;
	out[*pos] = '\0';
	return 0;
}

/* Appends "value" with '"' and '\' escaped, as callout.mfl's setvar does. */
static int put_quoted(char *out, size_t n, size_t *pos, const char *v, size_t len)
{
	if (put(out, n, pos, "\"", 1) < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if ((v[i] == '"' || v[i] == '\\') && put(out, n, pos, "\\", 1) < 0)
			return -1;
		if (put(out, n, pos, v + i, 1) < 0)
			return -1;
	}
	return put(out, n, pos, "\"", 1);
}

enum cbv_status cbv_callout_rest_format(const char *rest, char *out, size_t n,
                                        struct cbv_err *err)
{
	unsigned keys;

	return cbv_callout_rest_parse(rest, out, n, &keys, err);
}

enum cbv_status cbv_callout_rest_parse(const char *rest, char *out, size_t n, unsigned *keys,
                                       struct cbv_err *err)
{
	size_t pos = 0, i = 0, len;
	unsigned seen = 0;

	*keys = 0;
	if (n == 0)
		return cbv_err_set(err, CBV_EINVAL, "REST: no room");
	out[0] = '\0';
	if (rest == NULL)
		return CBV_OK;
	len = strnlen(rest, CBV_CALLOUT_REQ_MAX + 1);
	if (len > CBV_CALLOUT_REQ_MAX)
		return cbv_err_set(err, CBV_EINVAL, "REST: longer than %d bytes", CBV_CALLOUT_REQ_MAX);
	for (;;) {
		char val[CBV_CALLOUT_VALUE_MAX + 1];
		size_t vlen = 0, kstart, klen;
		int k;

		while (i < len && (rest[i] == ' ' || rest[i] == '\t'))
			i++;
		if (i >= len)
			break;
		kstart = i;
		while (i < len && rest[i] != '=' && rest[i] != ' ' && rest[i] != '\t')
			i++;
		klen = i - kstart;
		if (i >= len || rest[i] != '=')
			return cbv_err_set(err, CBV_EINVAL, "REST: expected KEY=VALUE at offset %zu", kstart);
		for (k = 0; rest_keys[k] != NULL; k++)
			if (ascii_ieq(rest + kstart, klen, rest_keys[k]))
				break;
		if (rest_keys[k] == NULL)
			return cbv_err_set(err, CBV_EINVAL, "REST: unknown key at offset %zu "
			                   "(MODE, HOST, EHLO, MAILFROM)", kstart);
		if (seen & (1u << k))
			return cbv_err_set(err, CBV_EINVAL, "REST: %s given twice", rest_keys[k]);
		seen |= 1u << k;
		i++; /* '=' */
		if (i < len && rest[i] == '"') {
			/* callout.mfl's quoting: '\' escapes any byte. */
			size_t used;

			switch (cbv_text_unquote(rest + i + 1, len - i - 1,
			                         CBV_TEXT_UNQ_ANYESC | CBV_TEXT_UNQ_NOCTL, val, sizeof(val),
			                         &vlen, &used)) {
			case CBV_TEXT_UNQ_OK: break;
			case CBV_TEXT_UNQ_OPEN:
				return cbv_err_set(err, CBV_EINVAL, "REST: %s: unterminated quote",
				                   rest_keys[k]);
			case CBV_TEXT_UNQ_CTL:
				return cbv_err_set(err, CBV_EINVAL, "REST: %s: control character",
				                   rest_keys[k]);
			case CBV_TEXT_UNQ_LONG:
				return cbv_err_set(err, CBV_EINVAL, "REST: %s: value too long",
				                   rest_keys[k]);
			}
			i += 1 + used;
			if (i < len && rest[i] != ' ' && rest[i] != '\t')
				return cbv_err_set(err, CBV_EINVAL, "REST: %s: text after closing quote",
				                   rest_keys[k]);
		} else {
			while (i < len && rest[i] != ' ' && rest[i] != '\t') {
				char ch = rest[i++];

				if (cbv_text_is_ctl((unsigned char)ch) || ch == '"' || ch == '\\')
					return cbv_err_set(err, CBV_EINVAL, "REST: %s: control character or "
					                   "quote in a bare value", rest_keys[k]);
				if (vlen >= CBV_CALLOUT_VALUE_MAX)
					return cbv_err_set(err, CBV_EINVAL, "REST: %s: value too long",
					                   rest_keys[k]);
				val[vlen++] = ch;
			}
		}
		if (vlen == 0)
			return cbv_err_set(err, CBV_EINVAL, "REST: %s: empty value", rest_keys[k]);
		val[vlen] = '\0';
		if ((pos > 0 && put(out, n, &pos, " ", 1) < 0) ||
		    put(out, n, &pos, rest_keys[k], strlen(rest_keys[k])) < 0 ||
		    put(out, n, &pos, "=", 1) < 0)
			goto toolong;
		if (k == 0) {
			int m;

			for (m = 0; modes[m] != NULL; m++)
				if (ascii_ieq(val, vlen, modes[m]))
					break;
			if (modes[m] == NULL)
				return cbv_err_set(err, CBV_EINVAL, "REST: MODE: expected mxfirst, mxonly, "
				                   "hostonly or hostfirst");
			if (put(out, n, &pos, modes[m], strlen(modes[m])) < 0)
				goto toolong;
		} else if (put_quoted(out, n, &pos, val, vlen) < 0) {
			goto toolong;
		}
	}
	*keys = seen;
	return CBV_OK;
toolong:
	out[0] = '\0';
	return cbv_err_set(err, CBV_EINVAL, "REST: too long");
}

enum cbv_callout_kind cbv_callout_line_parse(const char *line, size_t len,
                                             struct cbv_callout_line *out)
{
	size_t i, start;

	memset(out, 0, sizeof(*out));
	out->kind = CBV_CALLOUT_LINE_BAD;
	out->text = line;
	if (len >= 2 && (ascii_ieq(line, 2, "OK") || ascii_ieq(line, 2, "NO")) &&
	    (len == 2 || line[2] == ' ')) {
		out->kind = (line[0] == 'O' || line[0] == 'o') ? CBV_CALLOUT_LINE_OK
		                                                : CBV_CALLOUT_LINE_NO;
		out->text = line + (len > 2 ? 3 : 2);
		out->text_len = len > 2 ? len - 3 : 0;
		return out->kind;
	}
	if (len < 2 || line[0] != '*' || line[1] != ' ')
		return out->kind;
	/* "* ID TAG[ text]": ID 1..CBV_CALLOUT_ID_MAX digits, TAG 1..7 letters. */
	i = start = 2;
	while (i < len && line[i] >= '0' && line[i] <= '9')
		i++;
	if (i == start || i - start > CBV_CALLOUT_ID_MAX || i >= len || line[i] != ' ')
		return out->kind;
	memcpy(out->id, line + start, i - start);
	out->id[i - start] = '\0';
	start = ++i;
	while (i < len && line[i] >= 'A' && line[i] <= 'Z')
		i++;
	if (i == start || i - start >= sizeof(out->tag) || (i < len && line[i] != ' '))
		return out->kind;
	memcpy(out->tag, line + start, i - start);
	out->tag[i - start] = '\0';
	if (i < len)
		i++;
	out->text = line + i;
	out->text_len = len - i;
	out->kind = CBV_CALLOUT_LINE_PROGRESS;
	return out->kind;
}

static const char *const words[] = { "success", "not_found", "failure", "temp_failure",
	                             "timeout", NULL };

int cbv_callout_final_parse(const char *text, size_t len, const char *id,
                            const char **word)
{
	size_t i = 0, idlen = strlen(id);
	int found = 0;

	*word = NULL;
	while (i < len) {
		size_t s, e, ws;

		while (i < len && text[i] == ' ')
			i++;
		if (i >= len)
			break;
		s = i;
		while (i < len && text[i] >= '0' && text[i] <= '9')
			i++;
		e = i;
		if (e == s || e - s > CBV_CALLOUT_ID_MAX || i >= len || text[i] != '=')
			goto bad;
		ws = ++i;
		while (i < len && text[i] != ' ')
			i++;
		if (e - s == idlen && memcmp(text + s, id, idlen) == 0) {
			int w;

			for (w = 0; words[w] != NULL; w++)
				if (strlen(words[w]) == i - ws && memcmp(text + ws, words[w], i - ws) == 0)
					break;
			if (words[w] == NULL)
				goto bad;
			*word = words[w];
			found = 1;
		}
	}
	return found;
bad:
	/* The whole line is suspect, not only the pair that broke. */
	*word = NULL;
	return -1;
}

enum cbv_verdict cbv_callout_word_verdict(const char *word)
{
	if (strcmp(word, "success") == 0)
		return CBV_PASS;
	if (strcmp(word, "not_found") == 0)
		return CBV_FAIL;
	if (strcmp(word, "failure") == 0)
		return CBV_ERROR;
	return CBV_TRANSIENT;
}

/* ---- I/O ------------------------------------------------------------- */

static int remaining(int64_t deadline)
{
	int64_t left = deadline - cbv_now_ms();

	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

static enum cbv_status wait_fd(struct cbv_callout *c, short events, int64_t deadline,
                               const char *stage, struct cbv_err *err)
{
	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = events };
		int left = remaining(deadline), n;

		if (left == 0)
			return cbv_err_set(err, CBV_ETIMEOUT, "%s: timed out during %s", c->peer, stage);
		n = poll(&pfd, 1, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return cbv_err_set_errno(err, CBV_ECONNECT, errno, "%s: poll: %s", c->peer,
			                         strerror(errno));
		if (n > 0)
			return CBV_OK;
	}
}

static enum cbv_status send_all(struct cbv_callout *c, const char *s, size_t len,
                                int64_t deadline, const char *stage, struct cbv_err *err)
{
	size_t off = 0;

	while (off < len) {
		ssize_t w = cbv_net_send(c->fd, s + off, len - off);

		if (w < 0)
			return cbv_err_set_errno(err, CBV_ECONNECT, errno, "%s: send during %s: %s",
			                         c->peer, stage, strerror(errno));
		if (w == 0) {
			enum cbv_status st = wait_fd(c, POLLOUT, deadline, stage, err);

			if (st != CBV_OK)
				return st;
			continue;
		}
		off += (size_t)w;
	}
	return CBV_OK;
}

/* Sends one request line (no CRLF in line, checked) followed by CRLF. */
static enum cbv_status send_line(struct cbv_callout *c, const char *line, int64_t deadline,
                                 const char *stage, struct cbv_err *err)
{
	char buf[CBV_CALLOUT_REQ_MAX + 3];
	size_t len = strlen(line);
	enum cbv_status st;

	if (len > CBV_CALLOUT_REQ_MAX)
		return cbv_err_set(err, CBV_EINVAL, "%s: request too long", stage);
	if (cbv_text_span(line, len, CBV_TEXT_NOCTL, NULL) < len)
		return cbv_err_set(err, CBV_EINVAL, "%s: control character in request", stage);
	memcpy(buf, line, len);
	memcpy(buf + len, "\r\n", 2);
	if (cbv_log_enabled(CBV_LOG_DEBUG))
		cbv_log(CBV_LOG_DEBUG, "callout %s C: %s", c->peer, line);
	st = send_all(c, buf, len + 2, deadline, stage, err);
	return st;
}

/*
 * Reads one line (CR LF removed) into *line and *len (pointer into c->in).
 * calloutd ends some NO lines with a bare LF: accepted.
 */
static enum cbv_status read_line(struct cbv_callout *c, int64_t deadline, const char *stage,
                                 const char **line, size_t *len, struct cbv_err *err)
{
	for (;;) {
		int r = cbv_buf_getline(&c->in, CBV_CALLOUT_LINE_MAX, line, len);
		char *space;
		size_t avail;
		ssize_t n;
		enum cbv_status st;

		if (r == 1) {
			if (cbv_log_enabled(CBV_LOG_DEBUG)) {
				char tmp[CBV_CALLOUT_LINE_MAX + 1];

				cbv_sanitize(*line, *len, tmp, sizeof(tmp));
				cbv_log(CBV_LOG_DEBUG, "callout %s S: %s", c->peer, tmp);
			}
			return CBV_OK;
		}
		if (r < 0)
			return cbv_err_set(err, CBV_EPROTO, PROTO "%s: line too long during %s",
			                   c->peer, stage);
		space = cbv_buf_space(&c->in, &avail);
		if (avail == 0)
			return cbv_err_set(err, CBV_EPROTO, PROTO "%s: line too long during %s",
			                   c->peer, stage);
		n = cbv_net_recv(c->fd, space, avail);
		if (n > 0) {
			cbv_buf_commit(&c->in, (size_t)n);
			continue;
		}
		if (n == -2)
			return cbv_err_set(err, CBV_ECONNECT, "%s: connection closed during %s", c->peer,
			                   stage);
		if (n < 0)
			return cbv_err_set_errno(err, CBV_ECONNECT, errno, "%s: recv during %s: %s",
			                         c->peer, stage, strerror(errno));
		st = wait_fd(c, POLLIN, deadline, stage, err);
		if (st != CBV_OK)
			return st;
	}
}

/* Reads a reply that must be "OK ...": NO or anything else is EPROTO. */
static enum cbv_status expect_ok(struct cbv_callout *c, int64_t deadline, const char *stage,
                                 struct cbv_callout_line *pl, struct cbv_err *err)
{
	const char *line;
	size_t len;
	enum cbv_status st = read_line(c, deadline, stage, &line, &len, err);
	char tmp[200];

	if (st != CBV_OK)
		return st;
	if (cbv_callout_line_parse(line, len, pl) == CBV_CALLOUT_LINE_OK)
		return CBV_OK;
	cbv_sanitize(line, len, tmp, sizeof(tmp));
	return cbv_err_set(err, CBV_EPROTO, PROTO "%s: %s: %s", c->peer, stage, tmp);
}

static int connect_url(const struct cbv_url *u, struct cbv_callout *c,
                       int64_t deadline, struct cbv_err *err)
{
	if (u->family == AF_UNIX) {
		struct sockaddr_un sun;
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

		if (fd < 0)
			return cbv_err_set_errno(err, CBV_ECONNECT, errno, "%s: socket: %s", c->peer,
			                         strerror(errno));
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		memcpy(sun.sun_path, u->path, strlen(u->path) + 1);
		c->fd = fd;
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return CBV_OK;
		if (errno != EINPROGRESS)
			return cbv_err_set_errno(err, CBV_ECONNECT, errno, "%s: connect: %s", c->peer,
			                         strerror(errno));
	} else {
		/* Numeric first; a name goes through the system resolver (blocking,
		 * not bounded by the deadline: the admin chose it). */
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
			                  .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG };
		struct addrinfo *res = NULL;
		char port[8];
		int rc;

		snprintf(port, sizeof(port), "%u", u->port);
		rc = getaddrinfo(u->host, port, &hints, &res);
		if (rc != 0 || res == NULL)
			return cbv_err_set(err, CBV_ECONNECT, "%s: cannot resolve %s: %s", c->peer,
			                   u->host, gai_strerror(rc));
		c->fd = cbv_net_connect(res->ai_addr, res->ai_addrlen, err);
		freeaddrinfo(res);
		if (c->fd < 0)
			return err ? err->code : CBV_ECONNECT;
	}
	{
		enum cbv_status st = wait_fd(c, POLLOUT, deadline, "connect", err);

		if (st != CBV_OK)
			return st;
		if (u->family != AF_UNIX)
			return cbv_net_connect_result(c->fd, err);
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)
			return cbv_err_set_errno(err, CBV_ECONNECT, soerr, "%s: connect: %s", c->peer,
			                         strerror(soerr));
	}
	return CBV_OK;
}

enum cbv_status cbv_callout_open(const char *url, unsigned timeout_ms,
                                 struct cbv_callout **out, struct cbv_err *err)
{
	struct cbv_url u;
	struct cbv_callout *c = NULL;
	struct cbv_callout_line pl;
	int64_t deadline = cbv_now_ms() + timeout_ms;
	enum cbv_status st;

	*out = NULL;
	st = url_parse(url, &u, err);
	if (st != CBV_OK)
		return st;
	c = cbv_calloc(1, sizeof(*c));
	if (c == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	c->fd = -1;
	snprintf(c->peer, sizeof(c->peer), "%s", url);
	cbv_buf_init(&c->in);
	st = connect_url(&u, c, deadline, err);
	if (st != CBV_OK)
		goto done;
	st = expect_ok(c, deadline, "greeting", &pl, err);
	if (st != CBV_OK)
		goto done;
	cbv_sanitize(pl.text, pl.text_len, c->greeting, sizeof(c->greeting));
	*out = c;
	c = NULL;
done:
	cbv_callout_free(c);
	return st;
}

const char *cbv_callout_greeting(const struct cbv_callout *c)
{
	return c->greeting;
}

int cbv_callout_fd(const struct cbv_callout *c)
{
	return c->fd;
}

enum cbv_status cbv_callout_sid(struct cbv_callout *c, const char *sid,
                                unsigned timeout_ms, struct cbv_err *err)
{
	char line[CBV_NAME_MAX + 8];
	struct cbv_callout_line pl;
	int64_t deadline = cbv_now_ms() + timeout_ms;
	size_t len = strnlen(sid, CBV_NAME_MAX + 1);
	enum cbv_status st;

	if (len == 0 || len > CBV_NAME_MAX)
		return cbv_err_set(err, CBV_EINVAL, "SID: 1 to %d characters", CBV_NAME_MAX);
	if (cbv_text_span(sid, len, CBV_TEXT_VISIBLE, NULL) < len)
		return cbv_err_set(err, CBV_EINVAL, "SID: printable, no spaces");
	snprintf(line, sizeof(line), "SID %s", sid);
	st = send_line(c, line, deadline, "SID", err);
	if (st == CBV_OK)
		st = expect_ok(c, deadline, "SID", &pl, err);
	return st;
}

enum cbv_status cbv_callout_set(struct cbv_callout *c, const char *name,
                                const char *value, unsigned timeout_ms,
                                struct cbv_err *err)
{
	static const char *const names[] = { "MAILFROM", "EHLO", "STARTTLS", "TRANSCRIPT", NULL };
	char line[CBV_CALLOUT_REQ_MAX + 1];
	size_t pos = 0, vlen = strnlen(value, CBV_CALLOUT_VALUE_MAX + 1);
	struct cbv_callout_line pl;
	int64_t deadline = cbv_now_ms() + timeout_ms;
	enum cbv_status st;
	int k;

	for (k = 0; names[k] != NULL; k++)
		if (strcmp(name, names[k]) == 0)
			break;
	if (names[k] == NULL)
		return cbv_err_set(err, CBV_EINVAL, "SET: unknown name \"%.32s\"", name);
	if (vlen > CBV_CALLOUT_VALUE_MAX)
		return cbv_err_set(err, CBV_EINVAL, "SET %s: value too long", name);
	if (cbv_text_span(value, vlen, CBV_TEXT_NOCTL, NULL) < vlen)
		return cbv_err_set(err, CBV_EINVAL, "SET %s: control character", name);
	if (put(line, sizeof(line), &pos, "SET ", 4) < 0 ||
	    put(line, sizeof(line), &pos, name, strlen(name)) < 0 ||
	    put(line, sizeof(line), &pos, "=", 1) < 0 ||
	    put_quoted(line, sizeof(line), &pos, value, vlen) < 0)
		return cbv_err_set(err, CBV_EINVAL, "SET %s: too long", name);
	st = send_line(c, line, deadline, "SET", err);
	if (st == CBV_OK)
		st = expect_ok(c, deadline, "SET", &pl, err);
	return st;
}

/* Copies a progress text (sanitized) into a result field. */
static int set_text(char **field, const char *s, size_t len)
{
	char tmp[CBV_CALLOUT_LINE_MAX + 1];

	/* calloutd writes "nothing" for a stage it never reached. */
	if (len == 7 && memcmp(s, "nothing", 7) == 0)
		len = 0;
	cbv_sanitize(s, len, tmp, sizeof(tmp));
	return cbv_result_set(field, tmp);
}

/* INIT text: "name", "addr" or cbvd's "name [addr]:port". */
static int set_init(struct cbv_result *r, const char *s, size_t len)
{
	char tmp[CBV_CALLOUT_LINE_MAX + 1], *br;

	cbv_sanitize(s, len, tmp, sizeof(tmp));
	br = strstr(tmp, " [");
	if (br != NULL) {
		*br = '\0';
		if (cbv_result_set(&r->ip, br + 1) < 0)
			return -1;
	} else if (cbv_result_set(&r->ip, "") < 0) {
		return -1;
	}
	return cbv_result_set(&r->host, tmp);
}

/*
 * The stage a calloutd transcript stopped at, from its last SENT line
 * ("" or "nothing": the greeting).  calloutd reports only the last
 * command, so this is all the mapping can know.
 */
static enum cbv_stage sent_stage(const char *sent)
{
	static const struct {
		const char *prefix;
		enum cbv_stage stage;
	} cmds[] = {
		{ "EHLO", CBV_STAGE_EHLO },         { "HELO", CBV_STAGE_HELO },
		{ "STARTTLS", CBV_STAGE_STARTTLS }, { "RSET", CBV_STAGE_RSET },
		{ "MAIL FROM", CBV_STAGE_MAIL },    { "RCPT TO", CBV_STAGE_RCPT },
	};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strncasecmp(sent, cmds[i].prefix, strlen(cmds[i].prefix)) == 0)
			return cmds[i].stage;
	return CBV_STAGE_GREETING;
}

/*
 * Verdict from the server's word; reason, code, ecode and message from
 * what calloutd's progress lines say, through the one mapping
 * (cbv_reason_for): the RECV reply at the stage of the last SENT.
 * Without a reply, the reason says what the word can: no host answered.
 */
static int finish_result(struct cbv_result *r, const char *word, int saw_init)
{
	char text[256];
	size_t rlen = strcspn(r->recv, "\n");

	r->code = cbv_reply_code_parse(r->recv, rlen, r->ecode);
	if (r->code != 0) {
		struct cbv_judgement j = cbv_reason_for(sent_stage(r->sent), r->code, r->ecode);

		/* Through a callout server the server's word is the verdict. */
		r->reason = j.reason;
		return cbv_result_set(&r->message, r->recv);
	}
	snprintf(text, sizeof(text), "callout server: %s%s%s", word, r->host[0] ? " " : "",
	         r->host);
	switch (r->verdict) {
	case CBV_PASS:
		return cbv_result_set_synth(r, r->verdict, CBV_R_ACCEPTED, 250, "2.1.5", text);
	case CBV_FAIL:
		return cbv_result_set_synth(r, r->verdict, CBV_R_NO_MAIL_HOST, 550, "5.1.2", text);
	case CBV_TRANSIENT:
		if (strcmp(word, "timeout") == 0)
			return cbv_result_set_synth(r, r->verdict, CBV_R_TIMEOUT, 451, "4.4.2", text);
		return cbv_result_set_synth(r, r->verdict,
		                            saw_init ? CBV_R_CONNECT_FAILED : CBV_R_DNS_FAILURE, 451,
		                            "4.4.0", text);
	case CBV_ERROR:
		break;
	}
	return cbv_result_set_synth(r, r->verdict, CBV_R_NO_MAIL_HOST, 550, "5.4.4", text);
}

/* Appends "\n" and a sanitized line to *field ("" stays without "\n"). */
static int append_text(char **field, const char *s, size_t len)
{
	size_t old = strlen(*field);
	char *buf = cbv_malloc(old + 1 + len + 1);
	int rc;

	if (buf == NULL)
		return -1;
	memcpy(buf, *field, old);
	if (old > 0)
		buf[old++] = '\n';
	cbv_sanitize(s, len, buf + old, len + 1);
	rc = cbv_result_set(field, buf);
	cbv_free(buf);
	return rc;
}

/* A decimal number of at most 9 digits; -1 if s is not one. */
static long small_number(const char *s, size_t len)
{
	long n = 0;

	if (len == 0 || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (s[i] - '0');
	}
	return n;
}

/*
 * One cbvd extension line "* ID XCBV key text" into x (the server's own
 * result, docs/callout-protocol.md "cbvd extensions").  Text fields
 * repeat for multi-line values.  Returns 0, -1 on ENOMEM, 1 if malformed.
 */
static int ext_line(struct cbv_result *x, const char *s, size_t len)
{
	static const struct {
		const char *key;
		size_t off;
	} texts[] = {
		{ "message", offsetof(struct cbv_result, message) },
		{ "host", offsetof(struct cbv_result, host) },
		{ "ip", offsetof(struct cbv_result, ip) },
		{ "greeting", offsetof(struct cbv_result, greeting) },
		{ "helo", offsetof(struct cbv_result, helo) },
		{ "sent", offsetof(struct cbv_result, sent) },
		{ "recv", offsetof(struct cbv_result, recv) },
	};
	size_t klen = 0, vlen;
	const char *v;
	char word[32];
	long n;

	while (klen < len && s[klen] != ' ')
		klen++;
	v = klen < len ? s + klen + 1 : s + len;
	vlen = (size_t)(s + len - v);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		if (klen == strlen(texts[i].key) && memcmp(s, texts[i].key, klen) == 0)
			return append_text((char **)(void *)((char *)x + texts[i].off), v, vlen);
	if (klen == 3 && memcmp(s, "tls", 3) == 0) {
		cbv_sanitize(v, vlen, x->tls, sizeof(x->tls));
		return 0;
	}
	if (vlen >= sizeof(word))
		vlen = sizeof(word) - 1; /* too long for any known key's value */
	memcpy(word, v, vlen);
	word[vlen] = '\0';
	if (klen == 6 && memcmp(s, "status", 6) == 0) {
		static const char *const names[] = { "pass", "fail", "transient", "error" };

		for (int i = 0; i < 4; i++)
			if (strcmp(word, names[i]) == 0) {
				x->verdict = (enum cbv_verdict)i;
				return 0;
			}
		return 1;
	}
	if (klen == 6 && memcmp(s, "reason", 6) == 0) {
		int r = cbv_reason_parse(word);

		if (r < 0)
			return 1;
		x->reason = (enum cbv_reason)r;
		return 0;
	}
	if (klen == 5 && memcmp(s, "ecode", 5) == 0) {
		char tmp[40], e[16];

		snprintf(tmp, sizeof(tmp), "500 %s", word);
		tmp[0] = word[0]; /* the class must match: "X00 X.Y.Z" */
		if (cbv_reply_code_parse(tmp, strlen(tmp), e) == 0 || strcmp(e, word) != 0)
			return 1;
		snprintf(x->ecode, sizeof(x->ecode), "%s", e);
		return 0;
	}
	n = small_number(v, vlen);
	if (klen == 4 && memcmp(s, "code", 4) == 0) {
		if (n != 0 && (n < 200 || n > 599))
			return 1;
		x->code = (int)n;
	} else if (klen == 7 && memcmp(s, "elapsed", 7) == 0) {
		if (n < 0)
			return 1;
		x->elapsed_ms = (unsigned long)n;
	} else if (klen == 5 && memcmp(s, "tried", 5) == 0) {
		if (n < 0)
			return 1;
		x->hosts_tried = (unsigned)n;
	}
	return 0; /* a key this client does not know: ignored (newer cbvd) */
}

/* Takes the server's own result x (cbvd) into r, keeping r's address. */
static int take_ext(struct cbv_result *r, const struct cbv_result *x)
{
	r->verdict = x->verdict;
	r->reason = x->reason;
	r->code = x->code;
	snprintf(r->ecode, sizeof(r->ecode), "%s", x->ecode);
	snprintf(r->tls, sizeof(r->tls), "%s", x->tls);
	r->elapsed_ms = x->elapsed_ms;
	r->hosts_tried = x->hosts_tried;
	if (cbv_result_set(&r->message, x->message) < 0 || cbv_result_set(&r->host, x->host) < 0 ||
	    cbv_result_set(&r->ip, x->ip) < 0 || cbv_result_set(&r->greeting, x->greeting) < 0 ||
	    cbv_result_set(&r->helo, x->helo) < 0 || cbv_result_set(&r->sent, x->sent) < 0 ||
	    cbv_result_set(&r->recv, x->recv) < 0)
		return -1;
	return 0;
}

enum cbv_status cbv_callout_verify(struct cbv_callout *c, const char *address,
                                   const char *rest, unsigned timeout_ms,
                                   struct cbv_result **out, struct cbv_err *err)
{
	char line[CBV_CALLOUT_REQ_MAX + 1], params[CBV_CALLOUT_REQ_MAX + 1];
	char id[CBV_CALLOUT_ID_MAX + 1], tmp[200];
	int64_t start = cbv_now_us(), deadline = cbv_now_ms() + timeout_ms;
	size_t pos = 0, alen;
	struct cbv_result *r = NULL, *x = NULL;
	struct cbv_callout_line pl;
	const char *word = NULL;
	int nprogress = 0, saw_init = 0, ext_bad = 0;
	enum cbv_status st;

	*out = NULL;
	alen = strnlen(address, CBV_PATH_MAX + 1);
	if (alen == 0 || alen > CBV_PATH_MAX)
		return cbv_err_set(err, CBV_EINVAL, "VRFY: address empty or longer than %d bytes",
		                   CBV_PATH_MAX);
	if (cbv_text_span(address, alen, CBV_TEXT_NOCTL, NULL) < alen)
		return cbv_err_set(err, CBV_EINVAL, "VRFY: control character in address");
	st = cbv_callout_rest_format(rest, params, sizeof(params), err);
	if (st != CBV_OK)
		return st;
	if (put(line, sizeof(line), &pos, "VRFY ", 5) < 0 ||
	    put_quoted(line, sizeof(line), &pos, address, alen) < 0 ||
	    (params[0] != '\0' && (put(line, sizeof(line), &pos, " ", 1) < 0 ||
	                           put(line, sizeof(line), &pos, params, strlen(params)) < 0)))
		return cbv_err_set(err, CBV_EINVAL, "VRFY: request too long");

	r = cbv_result_new();
	if (r == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	if (set_text(&r->address, address, alen) < 0 || set_text(&r->rcpt, address, alen) < 0) {
		st = cbv_err_set(err, CBV_ENOMEM, "out of memory");
		goto done;
	}
	st = send_line(c, line, deadline, "VRFY", err);
	if (st == CBV_OK)
		st = expect_ok(c, deadline, "VRFY", &pl, err);
	if (st != CBV_OK)
		goto done;
	/* "OK ID": the job id, digits only. */
	if (pl.text_len == 0 || pl.text_len > CBV_CALLOUT_ID_MAX ||
	    strspn(pl.text, "0123456789") < pl.text_len) {
		cbv_sanitize(pl.text, pl.text_len, tmp, sizeof(tmp));
		st = cbv_err_set(err, CBV_EPROTO, PROTO "%s: VRFY: expected OK ID, got \"OK %s\"",
		                 c->peer, tmp);
		goto done;
	}
	memcpy(id, pl.text, pl.text_len);
	id[pl.text_len] = '\0';
	st = send_line(c, "RUN", deadline, "RUN", err);
	if (st != CBV_OK)
		goto done;
	for (int n = 0;; n++) {
		const char *l;
		size_t len;
		int rc;

		if (n > CBV_CALLOUT_RUN_LINES_MAX) {
			st = cbv_err_set(err, CBV_EPROTO, PROTO "%s: RUN: more than %d lines", c->peer,
			                 CBV_CALLOUT_RUN_LINES_MAX);
			goto done;
		}
		st = read_line(c, deadline, "RUN", &l, &len, err);
		if (st != CBV_OK)
			goto done;
		switch (cbv_callout_line_parse(l, len, &pl)) {
		case CBV_CALLOUT_LINE_PROGRESS:
			if (strcmp(pl.id, id) != 0)
				continue; /* another queued job of this session */
			nprogress++;
			rc = 0;
			if (strcmp(pl.tag, "INIT") == 0) {
				saw_init = 1;
				r->hosts_tried++;
				rc = set_init(r, pl.text, pl.text_len);
			} else if (strcmp(pl.tag, "GRTNG") == 0) {
				rc = set_text(&r->greeting, pl.text, pl.text_len);
			} else if (strcmp(pl.tag, "HELO") == 0) {
				rc = set_text(&r->helo, pl.text, pl.text_len);
			} else if (strcmp(pl.tag, "SENT") == 0) {
				rc = set_text(&r->sent, pl.text, pl.text_len);
			} else if (strcmp(pl.tag, "RECV") == 0) {
				rc = set_text(&r->recv, pl.text, pl.text_len);
			} else if (strcmp(pl.tag, "XCBV") == 0 && !ext_bad) {
				if (x == NULL && (x = cbv_result_new()) == NULL)
					rc = -1;
				else if ((rc = ext_line(x, pl.text, pl.text_len)) > 0)
					ext_bad = 1, rc = 0;
			}
			if (rc < 0) {
				st = cbv_err_set(err, CBV_ENOMEM, "out of memory");
				goto done;
			}
			continue;
		case CBV_CALLOUT_LINE_OK:
			rc = cbv_callout_final_parse(pl.text, pl.text_len, id, &word);
			if (rc == 1)
				break;
			cbv_sanitize(l, len, tmp, sizeof(tmp));
			st = cbv_err_set(err, CBV_EPROTO, PROTO "%s: RUN: %s for job %s: %s", c->peer,
			                 rc == 0 ? "no result" : "malformed result", id, tmp);
			goto done;
		default:
			cbv_sanitize(l, len, tmp, sizeof(tmp));
			st = cbv_err_set(err, CBV_EPROTO, PROTO "%s: RUN: %s", c->peer, tmp);
			goto done;
		}
		break;
	}
	r->verdict = cbv_callout_word_verdict(word);
	r->cache = nprogress == 0;
	/* cbvd's own result when it sent one that agrees with its word;
	 * else what calloutd's lines say, through the one mapping. */
	if (x != NULL && !ext_bad && x->verdict == r->verdict) {
		if (take_ext(r, x) < 0) {
			st = cbv_err_set(err, CBV_ENOMEM, "out of memory");
			goto done;
		}
	} else {
		if (x != NULL)
			cbv_log(CBV_LOG_WARN, "callout %s: job %s: ignoring a malformed or contradicting "
			        "XCBV report", c->peer, id);
		if (finish_result(r, word, saw_init) < 0) {
			st = cbv_err_set(err, CBV_ENOMEM, "out of memory");
			goto done;
		}
	}
	/* calloutd keeps failed jobs queued and runs them again on every RUN:
	 * drop ours.  Either answer will do (cbvd may not know DROP). */
	if (r->verdict == CBV_TRANSIENT || r->verdict == CBV_ERROR) {
		const char *l;
		size_t len;

		snprintf(line, sizeof(line), "DROP %s", id);
		st = send_line(c, line, deadline, "DROP", err);
		if (st == CBV_OK)
			st = read_line(c, deadline, "DROP", &l, &len, err);
		if (st == CBV_OK && cbv_callout_line_parse(l, len, &pl) == CBV_CALLOUT_LINE_BAD) {
			cbv_sanitize(l, len, tmp, sizeof(tmp));
			st = cbv_err_set(err, CBV_EPROTO, PROTO "%s: DROP: %s", c->peer, tmp);
		}
		if (st != CBV_OK)
			goto done;
	}
	if (r->elapsed_ms == 0)
		r->elapsed_ms = (unsigned long)((cbv_now_us() - start + 500) / 1000);
	*out = r;
	r = NULL;
done:
	cbv_result_free(r);
	cbv_result_free(x);
	return st;
}

void cbv_callout_close(struct cbv_callout *c, unsigned timeout_ms)
{
	const char *l;
	size_t len;

	if (c == NULL)
		return;
	if (c->fd >= 0) {
		int64_t deadline = cbv_now_ms() + timeout_ms;

		if (send_line(c, "QUIT", deadline, "QUIT", NULL) == CBV_OK)
			(void)read_line(c, deadline, "QUIT", &l, &len, NULL);
	}
	cbv_callout_free(c);
}

void cbv_callout_free(struct cbv_callout *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	cbv_free(c);
}

/* ---- extensions, STARTTLS words, the kept connection ------------------ */

int cbv_callout_extended(const struct cbv_callout *c)
{
	return strstr(c->greeting, "XCBV") != NULL;
}

const char *cbv_callout_starttls_word(enum cbv_starttls t, int extended)
{
	switch (t) {
	case CBV_STARTTLS_NEVER: return "never";
	case CBV_STARTTLS_OPPORTUNISTIC: return extended ? "opportunistic" : "always";
	case CBV_STARTTLS_ONDEMAND: return "ondemand";
	case CBV_STARTTLS_REQUIRE: return extended ? "require" : NULL;
	}
	return NULL;
}

struct cbv_callout_slot {
	char url[CBV_URL_MAX + 1];
	char sid[CBV_NAME_MAX + 1];
	struct cbv_callout *conn;
	unsigned open_ms, cmd_ms, verify_ms;
	enum cbv_starttls starttls;
	int transcript;
	/* wanted session settings, and what this connection was told */
	char ehlo[CBV_DOMAIN_MAX + 1], mailfrom[CBV_PATH_MAX + 3];
	char told_starttls[16], told_ehlo[CBV_DOMAIN_MAX + 1], told_mailfrom[CBV_PATH_MAX + 3];
	int told_transcript;
};

struct cbv_callout_slot *cbv_callout_slot_new(const char *url, const char *sid,
                                              struct cbv_err *err)
{
	struct cbv_url u;
	struct cbv_callout_slot *s;

	if (url_parse(url, &u, err) != CBV_OK)
		return NULL;
	s = cbv_calloc(1, sizeof(*s));
	if (s == NULL) {
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	snprintf(s->url, sizeof(s->url), "%s", url);
	snprintf(s->sid, sizeof(s->sid), "%s", sid != NULL ? sid : "");
	s->open_ms = s->cmd_ms = s->verify_ms = 10000;
	s->starttls = CBV_STARTTLS_NEVER;
	return s;
}

void cbv_callout_slot_sid(struct cbv_callout_slot *s, const char *sid)
{
	snprintf(s->sid, sizeof(s->sid), "%s", sid != NULL ? sid : "");
}

const char *cbv_callout_slot_url(const struct cbv_callout_slot *s)
{
	return s->url;
}

const char *cbv_callout_slot_greeting(const struct cbv_callout_slot *s)
{
	return s->conn != NULL ? s->conn->greeting : "";
}

void cbv_callout_slot_configure(struct cbv_callout_slot *s, const struct cbv_profile *p,
                                const char *sender, const char *default_helo, int transcript)
{
	const char *helo = p->helo[0] != '\0' ? p->helo : default_helo;
	const char *from = sender != NULL ? sender : p->mailfrom;

	s->starttls = p->starttls;
	snprintf(s->ehlo, sizeof(s->ehlo), "%s", helo != NULL ? helo : "");
	snprintf(s->mailfrom, sizeof(s->mailfrom), "%s", from[0] != '\0' ? from : "<>");
	s->open_ms = p->connect_timeout_ms;
	s->cmd_ms = p->command_timeout_ms;
	s->verify_ms = p->timeout_ms;
	s->transcript = transcript;
}

static void slot_disconnect(struct cbv_callout_slot *s)
{
	cbv_callout_free(s->conn);
	s->conn = NULL;
}

/* Sends SET name="want" unless this connection was told it already. */
static enum cbv_status slot_set(struct cbv_callout_slot *s, const char *name, const char *want,
                                char *told, size_t toldlen, struct cbv_err *err)
{
	enum cbv_status st;

	if (want[0] == '\0' || strcmp(want, told) == 0)
		return CBV_OK;
	st = cbv_callout_set(s->conn, name, want, s->cmd_ms, err);
	if (st == CBV_OK)
		snprintf(told, toldlen, "%s", want);
	return st;
}

/*
 * Connects if disconnected (greeting, SID), then sends the SETs this
 * connection has not been told.  Any failure but CBV_EINVAL (a value we
 * refuse to send) and CBV_ECONFIG leaves the slot disconnected.
 */
static enum cbv_status slot_sync(struct cbv_callout_slot *s, struct cbv_err *err)
{
	enum cbv_status st = CBV_OK;
	const char *tls;

	if (s->conn == NULL) {
		s->told_starttls[0] = s->told_ehlo[0] = s->told_mailfrom[0] = '\0';
		s->told_transcript = 0;
		st = cbv_callout_open(s->url, s->open_ms, &s->conn, err);
		if (st != CBV_OK)
			return st;
		if (s->sid[0] != '\0')
			st = cbv_callout_sid(s->conn, s->sid, s->cmd_ms, err);
	}
	if (st == CBV_OK && s->transcript && !s->told_transcript) {
		st = cbv_callout_set(s->conn, "TRANSCRIPT", "ON", s->cmd_ms, err);
		s->told_transcript = st == CBV_OK;
	}
	if (st == CBV_OK) {
		/* Never weaken a requirement: calloutd cannot be told "require". */
		tls = cbv_callout_starttls_word(s->starttls, cbv_callout_extended(s->conn));
		if (tls == NULL)
			return cbv_err_set(err, CBV_ECONFIG,
			                   "%s: starttls = require cannot be honoured by this callout "
			                   "server (calloutd has no such mode; use cbvd, or "
			                   "starttls = ondemand)", s->url);
		st = slot_set(s, "STARTTLS", tls, s->told_starttls, sizeof(s->told_starttls), err);
	}
	if (st == CBV_OK)
		st = slot_set(s, "EHLO", s->ehlo, s->told_ehlo, sizeof(s->told_ehlo), err);
	if (st == CBV_OK)
		st = slot_set(s, "MAILFROM", s->mailfrom, s->told_mailfrom, sizeof(s->told_mailfrom),
		              err);
	if (st != CBV_OK && st != CBV_EINVAL)
		slot_disconnect(s);
	return st;
}

enum cbv_status cbv_callout_slot_connect(struct cbv_callout_slot *s, struct cbv_err *err)
{
	return slot_sync(s, err);
}

enum cbv_status cbv_callout_slot_verify(struct cbv_callout_slot *s, const char *address,
                                        const char *rest, struct cbv_result **out,
                                        struct cbv_err *err)
{
	char canon[CBV_CALLOUT_REQ_MAX + 1];
	struct cbv_result *r = NULL;
	struct cbv_err e;
	int64_t start = cbv_now_us();
	enum cbv_status st;

	*out = NULL;
	if (err == NULL)
		err = &e;
	st = cbv_callout_rest_format(rest, canon, sizeof(canon), err);
	if (st != CBV_OK)
		return st;
	st = slot_sync(s, err);
	if (st == CBV_EINVAL) {
		/* EHLO or MAILFROM with a control character: nothing was sent. */
		r = cbv_result_synth(address, CBV_ERROR, CBV_R_BAD_SYNTAX, 501, "5.5.4", err->msg);
	} else if (st == CBV_OK) {
		st = cbv_callout_verify(s->conn, address, rest, s->verify_ms, &r, err);
		if (st == CBV_EINVAL) /* the address: REST was checked above */
			r = cbv_result_synth(address, CBV_FAIL, CBV_R_BAD_SYNTAX, 553, "5.1.3", err->msg);
		else if (st != CBV_OK)
			slot_disconnect(s);
	}
	switch (st) {
	case CBV_OK:
	case CBV_EINVAL:
		break;
	case CBV_ETIMEOUT:
		r = cbv_result_synth(address, CBV_TRANSIENT, CBV_R_TIMEOUT, 451, "4.4.2", err->msg);
		break;
	case CBV_ECONNECT:
		r = cbv_result_synth(address, CBV_TRANSIENT, CBV_R_CONNECT_FAILED, 451, "4.4.1",
		                     err->msg);
		break;
	default: /* CBV_EPROTO, CBV_ECONFIG, CBV_ENOMEM */
		return st;
	}
	if (r == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	if (r->elapsed_ms == 0)
		r->elapsed_ms = (unsigned long)((cbv_now_us() - start + 500) / 1000);
	*out = r;
	return CBV_OK;
}

void cbv_callout_slot_free(struct cbv_callout_slot *s, unsigned quit_ms)
{
	if (s == NULL)
		return;
	cbv_callout_close(s->conn, quit_ms);
	cbv_free(s);
}
