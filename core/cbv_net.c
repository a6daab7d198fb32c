/*
 * cbv_net.c - non-blocking socket helpers.  No policy here: the session
 * decides what a failure means.
 */
#include "cbv_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int cbv_net_connect(const struct sockaddr *sa, socklen_t salen,
                    struct cbv_err *err)
{
	char peer[64];
	int one = 1;
	int fd;

	cbv_net_format(sa, peer, sizeof(peer));
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		cbv_err_set_errno(err, CBV_ECONNECT, errno, "%s: socket: %s", peer,
		                  strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, sa, salen) != 0 && errno != EINPROGRESS) {
		int e = errno;

		close(fd);
		cbv_err_set_errno(err, CBV_ECONNECT, e, "connection to %s failed: %s",
		                  peer, strerror(e));
		return -1;
	}
	return fd;
}

enum cbv_status cbv_net_connect_result(int fd, struct cbv_err *err)
{
	int e = 0;
	socklen_t len = sizeof(e);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
		e = errno;
	if (e != 0)
		return cbv_err_set_errno(err, CBV_ECONNECT, e, "%s", strerror(e));
	return CBV_OK;
}

ssize_t cbv_net_send(int fd, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send(fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	return n;
}

ssize_t cbv_net_recv(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return -2;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	return n;
}

void cbv_net_ntop(const struct sockaddr *sa, char *buf, size_t n)
{
	const void *src = NULL;

	if (sa->sa_family == AF_INET)
		src = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		src = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (src == NULL || inet_ntop(sa->sa_family, src, buf, (socklen_t)n) == NULL)
		snprintf(buf, n, "?");
}

void cbv_net_format(const struct sockaddr *sa, char *buf, size_t n)
{
	char ip[INET6_ADDRSTRLEN];
	unsigned port = 0;

	cbv_net_ntop(sa, ip, sizeof(ip));
	if (sa->sa_family == AF_INET)
		port = ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	else if (sa->sa_family == AF_INET6)
		port = ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	if (sa->sa_family == AF_INET6)
		snprintf(buf, n, "[%s]:%u", ip, port);
	else
		snprintf(buf, n, "%s:%u", ip, port);
}

void cbv_net_set_port(struct sockaddr *sa, unsigned port)
{
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)(void *)sa)->sin_port = htons((uint16_t)port);
	else if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)(void *)sa)->sin6_port = htons((uint16_t)port);
}
