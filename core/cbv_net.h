/*
 * cbv_net.h - non-blocking TCP: connect, send, receive, and address text.
 *
 * Sockets are non-blocking and close-on-exec, with TCP_NODELAY (our
 * commands are small and we wait for each reply: Nagle would only add
 * delay).  Sends use MSG_NOSIGNAL: Exim owns the process and its signal
 * handlers, so a peer that closes early must never raise SIGPIPE.
 */
#ifndef CBV_NET_H
#define CBV_NET_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "cbv_status.h"

/*
 * Creates a socket and starts connecting to sa.  Returns the fd (connect
 * in progress or done: wait for POLLOUT, then cbv_net_connect_result()),
 * or -1 with err (CBV_ECONNECT; CBV_ENOMEM-like failures of socket() are
 * reported as CBV_ECONNECT too, with errno).
 */
int cbv_net_connect(const struct sockaddr *sa, socklen_t salen,
                    struct cbv_err *err);

/* After POLLOUT on a connecting fd: CBV_OK or CBV_ECONNECT with errno. */
enum cbv_status cbv_net_connect_result(int fd, struct cbv_err *err);

/*
 * send()/recv() that never block or signal.  Return bytes moved, 0 when
 * nothing could be moved now (EAGAIN) - for recv, -2 means the peer
 * closed - or -1 on error with errno kept.
 */
ssize_t cbv_net_send(int fd, const void *buf, size_t len);
ssize_t cbv_net_recv(int fd, void *buf, size_t len);

/* "192.0.2.1" / "2001:db8::1" (no port) into buf; "?" if unknown. */
void cbv_net_ntop(const struct sockaddr *sa, char *buf, size_t n);

/* "192.0.2.1:25" / "[2001:db8::1]:25" into buf. */
void cbv_net_format(const struct sockaddr *sa, char *buf, size_t n);

/* Sets the port of an AF_INET/AF_INET6 sockaddr. */
void cbv_net_set_port(struct sockaddr *sa, unsigned port);

#endif
