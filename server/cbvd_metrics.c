/*
 * cbvd_metrics.c - cbvd's metrics listener (cbvd_metrics.h): accept, read
 * one request head, answer once, close; all non-blocking inside the
 * loop's poll(2).
 */
#define _GNU_SOURCE /* accept4() */

#include "cbvd_metrics.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cbv.h"

struct conn {
	int fd;              /* -1: free */
	int pfd;             /* index in this turn's pollfds, -1: none */
	int64_t deadline_ms; /* monotonic: closed then, whatever its state */
	char in[CBV_HTTP_HEAD_MAX];
	size_t inlen;
	char *out; /* the answer once decided (cbv_malloc'd), else NULL */
	size_t olen, off;
};

struct cbvd_metrics {
	int lfd;
	int lpfd; /* the listener's index this turn, -1: not polled */
	char version[64];
	int64_t start_time_s;
	struct conn c[CBVD_METRICS_CONNS];
	unsigned long served;
	int accept_logged;
	int64_t pause_until; /* accept failed (no fds): listener not polled until then */
};

struct cbvd_metrics *cbvd_metrics_new(int listen_fd, const char *version, int64_t start_time_s)
{
	struct cbvd_metrics *m = cbv_calloc(1, sizeof(*m));

	if (m == NULL) {
		close(listen_fd);
		return NULL;
	}
	m->lfd = listen_fd;
	m->lpfd = -1;
	snprintf(m->version, sizeof(m->version), "%s", version);
	m->start_time_s = start_time_s;
	for (size_t i = 0; i < CBVD_METRICS_CONNS; i++) {
		m->c[i].fd = -1;
		m->c[i].pfd = -1;
	}
	return m;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	cbv_free(c->out);
	c->out = NULL;
	c->fd = -1;
	c->pfd = -1;
	c->inlen = c->olen = c->off = 0;
}

void cbvd_metrics_free(struct cbvd_metrics *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < CBVD_METRICS_CONNS; i++)
		conn_close(&m->c[i]);
	close(m->lfd);
	cbv_free(m);
}

size_t cbvd_metrics_pollfds(struct cbvd_metrics *m, struct pollfd *pfds, size_t n,
                            int64_t *wake_ms)
{
	int free_slot = 0;

	if (m == NULL)
		return n;
	for (size_t i = 0; i < CBVD_METRICS_CONNS; i++) {
		struct conn *c = &m->c[i];

		if (c->fd < 0) {
			free_slot = 1;
			continue;
		}
		c->pfd = (int)n;
		pfds[n++] = (struct pollfd){ .fd = c->fd, .events = c->out != NULL ? POLLOUT : POLLIN };
		if (c->deadline_ms < *wake_ms)
			*wake_ms = c->deadline_ms;
	}
	m->lpfd = -1;
	if (free_slot && m->pause_until != 0) {
		if (cbv_now_ms() < m->pause_until) {
			free_slot = 0;
			if (m->pause_until < *wake_ms)
				*wake_ms = m->pause_until;
		} else {
			m->pause_until = 0;
		}
	}
	if (free_slot) { /* full: new scrapers wait in the backlog */
		m->lpfd = (int)n;
		pfds[n++] = (struct pollfd){ .fd = m->lfd, .events = POLLIN };
	}
	return n;
}

/* The answer: status line, headers, and (GET only) the body. */
static void respond(struct cbvd_metrics *m, struct conn *c, int code, const char *why,
                    const char *extra, const char *body, size_t blen, int head_only)
{
	char hdr[512];
	int hl = snprintf(hdr, sizeof(hdr),
	                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                  "%sConnection: close\r\n\r\n",
	                  code, why,
	                  code == 200 ? "text/plain; version=0.0.4; charset=utf-8"
	                              : "text/plain; charset=utf-8",
	                  blen, extra);
	size_t total = (size_t)hl + (head_only ? 0 : blen);

	(void)m;
	c->out = cbv_malloc(total);
	if (c->out == NULL) {
		conn_close(c); /* out of memory: the scraper sees a closed connection */
		return;
	}
	memcpy(c->out, hdr, (size_t)hl);
	if (!head_only)
		memcpy(c->out + hl, body, blen);
	c->olen = total;
	c->off = 0;
}

/* A request head is complete (or hopeless): decide the answer. */
static void answer(struct cbvd_metrics *m, struct conn *c, enum cbv_http_parse st,
                   const struct cbv_http_req *rq)
{
	static const char nf[] = "not found: try /metrics\n";
	int head = st == CBV_HTTP_DONE && strcmp(rq->method, "HEAD") == 0;

	if (st == CBV_HTTP_BAD) {
		respond(m, c, 400, "Bad Request", "", "bad request\n", 12, 0);
	} else if (st == CBV_HTTP_TOO_BIG) {
		respond(m, c, 431, "Request Header Fields Too Large", "", "request too large\n", 18, 0);
	} else if (strcmp(rq->method, "GET") != 0 && !head) {
		respond(m, c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
		        "method not allowed\n", 19, 0);
	} else if (strcmp(rq->path, "/metrics") != 0) {
		respond(m, c, 404, "Not Found", "", nf, sizeof(nf) - 1, head);
	} else {
		struct cbv_stats_info info = { "cbv", m->version, "cbvd", m->start_time_s, 1 };
		char *body = cbv_malloc(CBV_STATS_TEXT_MAX);
		size_t bl;

		if (body == NULL) {
			conn_close(c);
			return;
		}
		bl = cbv_stats_render(cbv_stats_global(), &info, body, CBV_STATS_TEXT_MAX);
		if (bl >= CBV_STATS_TEXT_MAX)
			bl = strlen(body); /* cannot happen (cbv_stats.h's bound) */
		respond(m, c, 200, "OK", "", body, bl, head);
		cbv_free(body);
		m->served++;
	}
}

static void conn_write(struct conn *c);

static void conn_read(struct cbvd_metrics *m, struct conn *c)
{
	struct cbv_http_req rq;
	enum cbv_http_parse st;
	ssize_t r = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);

	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (r <= 0) {
		conn_close(c); /* gone before asking */
		return;
	}
	c->inlen += (size_t)r;
	st = cbv_http_parse_request(c->in, c->inlen, &rq);
	/* a full buffer is TOO_BIG, never MORE (cbv_http.h) */
	if (st == CBV_HTTP_MORE)
		return;
	answer(m, c, st, &rq);
	if (c->fd >= 0 && c->out != NULL)
		conn_write(c); /* most answers fit the socket buffer: done at once */
}

static void conn_write(struct conn *c)
{
	ssize_t w = send(c->fd, c->out + c->off, c->olen - c->off, MSG_NOSIGNAL);

	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (w <= 0) {
		conn_close(c);
		return;
	}
	c->off += (size_t)w;
	if (c->off == c->olen) {
		/* whatever else it sent is not read: say so with FIN, not RST */
		shutdown(c->fd, SHUT_WR);
		conn_close(c);
	}
}

static void accept_conns(struct cbvd_metrics *m)
{
	for (size_t i = 0; i < CBVD_METRICS_CONNS; i++) {
		struct conn *c = &m->c[i];
		int fd;

		if (c->fd >= 0)
			continue;
		fd = accept4(m->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			/* out of fds, say: logged once, and the listener rests a second
			 * rather than waking every poll(2) */
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED) {
				m->pause_until = cbv_now_ms() + 1000;
				if (!m->accept_logged)
					cbv_log(CBV_LOG_WARN, "cbvd: metrics: accept: %s", strerror(errno));
				m->accept_logged = 1;
			}
			return;
		}
		c->fd = fd;
		c->pfd = -1;
		c->inlen = c->olen = c->off = 0;
		c->deadline_ms = cbv_now_ms() + CBVD_METRICS_TIMEOUT_MS;
	}
}

void cbvd_metrics_process(struct cbvd_metrics *m, const struct pollfd *pfds)
{
	int64_t now;

	if (m == NULL)
		return;
	now = cbv_now_ms();
	for (size_t i = 0; i < CBVD_METRICS_CONNS; i++) {
		struct conn *c = &m->c[i];
		short rev;

		if (c->fd < 0)
			continue;
		rev = c->pfd >= 0 ? pfds[c->pfd].revents : 0;
		c->pfd = -1;
		if (now >= c->deadline_ms) {
			conn_close(c); /* too slow: its time is up whatever it was doing */
			continue;
		}
		if (c->out == NULL && (rev & (POLLIN | POLLHUP | POLLERR)))
			conn_read(m, c);
		else if (c->out != NULL && (rev & (POLLOUT | POLLHUP | POLLERR)))
			conn_write(c);
	}
	if (m->lpfd >= 0 && (pfds[m->lpfd].revents & POLLIN))
		accept_conns(m);
	m->lpfd = -1;
}
