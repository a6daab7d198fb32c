/*
 * redis_fixture.h - what the Redis suites share (check_cache_redis,
 * check_stats_redis, check_verify_redis): a free loopback port, a
 * redis-server started as a child, and the wait until it answers.  Each
 * suite keeps its own arguments (passwords, sockets, renamed commands) and
 * its own raw client.  Header-only: static inline, for test programs.
 */
#ifndef CBV_REDIS_FIXTURE_H
#define CBV_REDIS_FIXTURE_H

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* A free loopback port, picked by the kernel; -1 on error. */
static inline int fixture_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), p = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		p = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

/*
 * Forks argv (NULL-terminated, argv[0] the program) with stdout on
 * /dev/null; with own_session in a session of its own (Check kills a forked
 * test's process group when it ends, and a server restarted by one test
 * serves the next ones).  The child's pid, or -1.
 */
static inline pid_t fixture_spawn(const char *const *argv, int own_session)
{
	pid_t pid;

	fflush(NULL); /* the child must not print our buffered lines again */
	pid = fork();
	if (pid == 0) {
		if (own_session)
			(void)setsid();
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(126);
		execvp(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	return pid;
}

/* Until connect() gives a connection that answers PING (5 s at most): 0, or -1. */
static inline int fixture_redis_wait(redisContext *(*connect)(void))
{
	for (int i = 0; i < 500; i++) {
		redisContext *rc = connect();

		if (rc != NULL) {
			redisReply *rep = redisCommand(rc, "PING");
			int up = rep != NULL;

			if (rep != NULL)
				freeReplyObject(rep);
			redisFree(rc);
			if (up)
				return 0;
		}
		usleep(10000);
	}
	return -1;
}

#endif
