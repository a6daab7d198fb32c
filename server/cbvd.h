/*
 * cbvd.h - the callout server's two halves: cbvd.c sets the process up
 * (options, config, sockets, privileges, logging, signals) and
 * cbvd_loop.c runs the event loop: clients speaking the mailfromd callout
 * protocol and the core verification machines they start.
 */
#ifndef CBVD_H
#define CBVD_H

#include <stddef.h>

#include "cbv.h"
#include "cbvd_metrics.h"

/* Bytes of unparsed input kept per client: one maximal request line. */
#define CBVD_IN_MAX (CBV_CPROTO_LINE_MAX + 2)
/* What a client's input buffer starts with (a VRFY line is far shorter). */
#define CBVD_IN_FIRST 512
/* Unsent output above which a client's input is no longer read. */
#define CBVD_OUT_HIGH (64 * 1024)
/* Unsent output at which a client that does not read is dropped. */
#define CBVD_OUT_MAX (1024 * 1024)
/* VRFY requests waiting for one RUN. */
#define CBVD_BATCH_MAX 64
/* Connections accepted per loop turn and listener. */
#define CBVD_ACCEPT_BURST 64

struct cbvd_loop_conf {
	const struct cbv_config *cfg;
	const struct cbv_profile *profile; /* base profile of new connections */
	const int *listen_fds;             /* non-blocking, listening */
	const int *listen_unix;            /* 1 if that listener is a UNIX socket */
	size_t nlisten;
	unsigned max_clients;
	unsigned max_inflight;
	const char *hostname;              /* EHLO when the profile's helo is "" */
	int signal_fd;                     /* read end of the self-pipe */
	struct cbvd_metrics *metrics;      /* metrics_listen's responder, NULL: none */
};

/*
 * Runs until a byte arrives on signal_fd (SIGTERM/SIGINT), then closes
 * every client, cancels every verification and returns 0 (1 if the loop
 * could not start: ENOMEM).
 */
int cbvd_loop_run(const struct cbvd_loop_conf *lc);

#endif
