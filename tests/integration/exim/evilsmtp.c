/*
 * evilsmtp.c - a tiny scripted SMTP server for the end-to-end tests: it
 * greets with a caller-chosen (hostile) text and accepts everything, and
 * writes every connection and command line it receives to a log, so a
 * test can prove that nothing was sent.  Loopback only, one connection at
 * a time, each bounded to 10 s.  Built by the tests themselves:
 *
 *   cc -O2 -o evilsmtp evilsmtp.c
 *   evilsmtp 127.0.0.62:2525 'GREETING TEXT' LOGFILE PIDFILE &
 *
 * The reply to EHLO/HELO, MAIL and RCPT is 250, to QUIT 221.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static FILE *logf;

static void say(int fd, const char *s)
{
	size_t n = strlen(s);

	if (send(fd, s, n, MSG_NOSIGNAL) != (ssize_t)n)
		fprintf(logf, "send failed\n");
}

/* Serves one client until QUIT, EOF, junk or 10 s. */
static void serve(int fd, const char *greeting)
{
	char buf[4096], reply[4200];
	size_t have = 0;
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	snprintf(reply, sizeof(reply), "220 %s\r\n", greeting);
	say(fd, reply);
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		struct timespec now;
		char *nl;
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec >= 10 || poll(&p, 1, 1000) < 0)
			return;
		if (p.revents == 0)
			continue;
		n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		if (n <= 0)
			return;
		have += (size_t)n;
		buf[have] = '\0';
		while ((nl = strchr(buf, '\n')) != NULL) {
			*nl = '\0';
			if (nl > buf && nl[-1] == '\r')
				nl[-1] = '\0';
			fprintf(logf, "C: %s\n", buf);
			fflush(logf);
			if (strncasecmp(buf, "QUIT", 4) == 0) {
				say(fd, "221 bye\r\n");
				return;
			} else if (strncasecmp(buf, "EHLO", 4) == 0 || strncasecmp(buf, "HELO", 4) == 0) {
				say(fd, "250 evil.test\r\n");
			} else {
				say(fd, "250 2.0.0 ok\r\n");
			}
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have + 1);
		}
		if (have >= sizeof(buf) - 1)
			return;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { 0 };
	char *colon;
	int lfd, one = 1;
	FILE *pf;

	if (argc != 5 || (colon = strchr(argv[1], ':')) == NULL) {
		fprintf(stderr, "usage: evilsmtp IP:PORT GREETING LOGFILE PIDFILE\n");
		return 2;
	}
	*colon = '\0';
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)atoi(colon + 1));
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 || strncmp(argv[1], "127.", 4) != 0) {
		fprintf(stderr, "evilsmtp: %s: need a 127.x address\n", argv[1]);
		return 2;
	}
	logf = fopen(argv[3], "a");
	if (logf == NULL)
		return 1;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 16) != 0) {
		perror("evilsmtp: bind");
		return 1;
	}
	pf = fopen(argv[4], "w");
	if (pf != NULL) {
		fprintf(pf, "%ld\n", (long)getpid());
		fclose(pf);
	}
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			continue;
		fprintf(logf, "CONNECT\n");
		fflush(logf);
		serve(fd, argv[2]);
		close(fd);
	}
}
