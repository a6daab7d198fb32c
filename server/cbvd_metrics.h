/*
 * cbvd_metrics.h - cbvd's metrics listener: Prometheus text format over
 * a tiny HTTP/1.0-1.1 responder that lives in the event loop's poll(2)
 * (server { metrics_listen = "inet://127.0.0.1:9464" }).
 *
 * It never blocks the loop: every socket is non-blocking; a connection
 * gets CBVD_METRICS_TIMEOUT_MS in all to send its request and take the
 * answer, its request head at most CBV_HTTP_HEAD_MAX bytes, and at most
 * CBVD_METRICS_CONNS connections are open (further ones wait in the
 * listen backlog: the listener is not polled meanwhile).  A slow or
 * hostile scraper costs one pollfd and a buffer until its time is up;
 * verifications never wait for it.  GET (or HEAD) /metrics answers 200
 * "text/plain; version=0.0.4"; another path 404, another method 405, a
 * malformed head 400, an overlong one 431; every answer closes.
 */
#ifndef CBVD_METRICS_H
#define CBVD_METRICS_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

/* Scrapes served at once. */
#define CBVD_METRICS_CONNS 8
/* pollfds the listener needs in one turn, at most. */
#define CBVD_METRICS_PFDS (1 + CBVD_METRICS_CONNS)
/* A connection's whole life: request in, answer out. */
#define CBVD_METRICS_TIMEOUT_MS 5000

struct cbvd_metrics;

/*
 * A new responder on listen_fd (bound, listening, non-blocking; owned
 * from now on), reporting version and the process start time.  NULL on
 * ENOMEM (listen_fd is closed then too).  Free with cbvd_metrics_free().
 */
struct cbvd_metrics *cbvd_metrics_new(int listen_fd, const char *version, int64_t start_time_s);

/* Closes every connection and the listener; accepts NULL. */
void cbvd_metrics_free(struct cbvd_metrics *m);

/*
 * Appends this turn's pollfds at pfds[n] (room for CBVD_METRICS_PFDS) and
 * lowers *wake_ms (monotonic) to the earliest connection deadline.
 * Returns the new count.  m NULL: none.
 */
size_t cbvd_metrics_pollfds(struct cbvd_metrics *m, struct pollfd *pfds, size_t n,
                            int64_t *wake_ms);

/* Reads, answers, accepts and times out, after poll(2) filled pfds. */
void cbvd_metrics_process(struct cbvd_metrics *m, const struct pollfd *pfds);

#endif
