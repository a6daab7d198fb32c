/*
 * cbvd_bench - a callout protocol client for load and latency tests of a
 * callout server (cbvd or mailfromd's calloutd).  One poll(2) loop drives
 * C connections; each speaks exactly as mailfromd's callout.mfl does
 * (greeting, SID, SET TRANSCRIPT, SET STARTTLS, then per address:
 * VRFY "addr", wait for OK, RUN, read progress lines until the final OK),
 * until N verifications are done.  Prints numbers; asserts nothing, but
 * exits 1 if any request failed at the protocol level.
 *
 *   cbvd_bench -s unix:///PATH|inet://IP:PORT [-c CONC] [-n TOTAL]
 *              [-b PER_RUN] [-T "c i h m r s q"] ADDRESS...
 *
 * -b K: K VRFYs (the next K addresses, cycling) before each RUN, as a
 * client verifying several recipients at once; each counts as one
 * verification, its latency from the first VRFY to the RUN's final line.
 *
 * Output (one line, key=value): n, errors, seconds, rate (verifications
 * per second), lat_median_ms, lat_p95_ms, lat_max_ms, and a count per
 * result word (success=.. not_found=.. ...).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cbv.h"
#include "cbv_clock.h"
#include "cbv_cproto.h"

enum cstate { S_GREET, S_SETUP, S_VRFY, S_RUN, S_DONE };

struct conn {
	int fd;
	enum cstate st;
	int setup_left;
	char in[8192];
	size_t inlen;
	char out[1024];
	size_t outlen;
	int64_t t0;
	const char *addr;
	long batch, vrfy_left;     /* VRFYs in this RUN; still to send */
};

static const char *words[] = { "success", "not_found", "failure", "temp_failure", "timeout" };
static long counts[6];
static long errors;

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int dial(const struct cbv_url *u)
{
	int fd = socket(u->family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)&u->sa, u->salen) != 0) {
		close(fd);
		return -1;
	}
	if (u->family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static void queue(struct conn *c, const char *s)
{
	size_t len = strlen(s);

	if (c->outlen + len <= sizeof(c->out)) {
		memcpy(c->out + c->outlen, s, len);
		c->outlen += len;
	}
}

static void count_word(const char *w)
{
	for (size_t i = 0; i < 5; i++)
		if (strcmp(w, words[i]) == 0) {
			counts[i]++;
			return;
		}
	counts[5]++;
}

int main(int argc, char **argv)
{
	const char *server = NULL, *timeouts = NULL;
	long conc = 1, total = 1, started = 0, done = 0, per_run = 1;
	int opt;
	struct cbv_url u;
	struct cbv_err err;
	struct conn *cs;
	struct pollfd *pf;
	int64_t *lat, t_start, t_end;
	size_t naddr, next_addr = 0;
	char tline[128];
	const char *setup[] = { "SID local:\r\n", "SET TRANSCRIPT=\"OFF\"\r\n",
		                "SET STARTTLS=\"ondemand\"\r\n", NULL, NULL };

	while ((opt = getopt(argc, argv, "s:c:n:b:T:")) != -1) {
		switch (opt) {
		case 'b': per_run = atol(optarg); break;
		case 's': server = optarg; break;
		case 'c': conc = atol(optarg); break;
		case 'n': total = atol(optarg); break;
		case 'T': timeouts = optarg; break;
		default: goto usage;
		}
	}
	naddr = (size_t)(argc - optind);
	if (server == NULL || naddr == 0 || conc < 1 || total < 1 || per_run < 1 || per_run > 64) {
	usage:
		fprintf(stderr, "usage: cbvd_bench -s URL [-c CONC] [-n TOTAL] [-b PER_RUN (1-64)] "
		                "[-T TIMEOUTS] ADDRESS...\n");
		return 64;
	}
	if (timeouts != NULL) {
		snprintf(tline, sizeof(tline), "TIMEOUT %s\r\n", timeouts);
		setup[3] = tline;
	}
	if (cbv_url_parse(server, strnlen(server, CBV_URL_MAX + 1), CBV_URL_NUMERIC, &u, &err) !=
	    CBV_OK) {
		fprintf(stderr, "cbvd_bench: %s: %s\n", server, err.msg);
		return 64;
	}
	if (conc > total)
		conc = total;
	cs = calloc((size_t)conc, sizeof(*cs));
	pf = calloc((size_t)conc, sizeof(*pf));
	lat = calloc((size_t)total, sizeof(*lat));
	if (cs == NULL || pf == NULL || lat == NULL)
		return 1;
	t_start = cbv_now_us();
	for (long i = 0; i < conc; i++) {
		cs[i].fd = dial(&u);
		if (cs[i].fd < 0) {
			fprintf(stderr, "cbvd_bench: connect %s: %s\n", server, strerror(errno));
			return 1;
		}
		cs[i].st = S_GREET;
	}
	while (done < total) {
		int active = 0;

		for (long i = 0; i < conc; i++) {
			struct conn *c = &cs[i];

			pf[i].fd = c->st == S_DONE ? -1 : c->fd;
			pf[i].events = (short)(POLLIN | (c->outlen ? POLLOUT : 0));
			pf[i].revents = 0;
			active += c->st != S_DONE;
		}
		if (!active)
			break;
		if (poll(pf, (nfds_t)conc, 120000) <= 0) {
			fprintf(stderr, "cbvd_bench: stalled\n");
			errors++;
			break;
		}
		for (long i = 0; i < conc; i++) {
			struct conn *c = &cs[i];
			char *lf;

			if (c->st == S_DONE)
				continue;
			if ((pf[i].revents & POLLOUT) && c->outlen) {
				ssize_t n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);

				if (n > 0) {
					memmove(c->out, c->out + n, c->outlen - (size_t)n);
					c->outlen -= (size_t)n;
				}
			}
			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			{
				ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - 1 - c->inlen, 0);

				if (n <= 0) {
					if (n < 0 && errno == EAGAIN)
						continue;
					fprintf(stderr, "cbvd_bench: server closed connection %ld\n", i);
					errors++;
					c->st = S_DONE;
					close(c->fd);
					continue;
				}
				c->inlen += (size_t)n;
			}
			while ((lf = memchr(c->in, '\n', c->inlen)) != NULL) {
				size_t len = (size_t)(lf - c->in) + 1;
				char line[8192];

				memcpy(line, c->in, len);
				line[len] = '\0';
				line[strcspn(line, "\r\n")] = '\0';
				memmove(c->in, c->in + len, c->inlen - len);
				c->inlen -= len;
				if (c->st == S_RUN && line[0] == '*')
					continue;
				if (strncmp(line, "OK", 2) != 0) {
					fprintf(stderr, "cbvd_bench: unexpected \"%s\"\n", line);
					errors++;
					c->st = S_DONE;
					close(c->fd);
					break;
				}
				switch (c->st) {
				case S_GREET:
				case S_SETUP:
					/* One command, one answer: as callout.mfl does. */
					if (c->st == S_GREET)
						c->setup_left = 0;
					if (setup[c->setup_left] != NULL) {
						queue(c, setup[c->setup_left++]);
						c->st = S_SETUP;
						break;
					}
					__attribute__((fallthrough));
				case S_DONE:
				case S_RUN:
					if (c->st == S_RUN) {
						/* "OK ID=word ID=word ...": one per VRFY */
						char *eq = line;
						long got = 0;

						while ((eq = strchr(eq, '=')) != NULL && done < total) {
							size_t wl = strcspn(eq + 1, " ");
							char w[32];

							snprintf(w, sizeof(w), "%.*s", (int)wl, eq + 1);
							lat[done++] = cbv_now_us() - c->t0;
							count_word(w);
							eq += 1 + wl;
							got++;
						}
						if (got != c->batch) {
							fprintf(stderr, "cbvd_bench: %ld words for %ld VRFYs\n", got,
							        c->batch);
							errors++;
						}
					}
					if (started >= total) {
						queue(c, "QUIT\r\n");
						c->st = S_DONE;
						/* best effort: the server answers OK bye */
						if (send(c->fd, c->out, c->outlen, MSG_NOSIGNAL) < 0) {
						}
						close(c->fd);
						break;
					}
					c->batch = total - started < per_run ? total - started : per_run;
					c->vrfy_left = c->batch;
					started += c->batch;
					c->t0 = cbv_now_us();
					__attribute__((fallthrough));
				case S_VRFY:
					if (c->vrfy_left > 0) {
						char v[600];

						c->addr = argv[optind + (int)(next_addr++ % naddr)];
						snprintf(v, sizeof(v), "VRFY \"%s\"\r\n", c->addr);
						queue(c, v);
						c->vrfy_left--;
						c->st = S_VRFY;
						break;
					}
					queue(c, "RUN\r\n");
					c->st = S_RUN;
					break;
				}
				if (c->st == S_DONE)
					break;
			}
		}
	}
	t_end = cbv_now_us();
	for (long i = 0; i < conc; i++)
		if (cs[i].st != S_DONE)
			close(cs[i].fd);
	if (done > 0)
		qsort(lat, (size_t)done, sizeof(*lat), cmp_i64);
	printf("n=%ld errors=%ld seconds=%.3f rate=%.1f lat_median_ms=%.3f lat_p95_ms=%.3f "
	       "lat_max_ms=%.3f",
	       done, errors, (t_end - t_start) / 1e6,
	       done / ((t_end - t_start) / 1e6), done ? lat[done / 2] / 1000.0 : 0.0,
	       done ? lat[(done * 95) / 100] / 1000.0 : 0.0, done ? lat[done - 1] / 1000.0 : 0.0);
	for (size_t i = 0; i < 5; i++)
		printf(" %s=%ld", words[i], counts[i]);
	printf(" other=%ld\n", counts[5]);
	free(cs);
	free(pf);
	free(lat);
	return errors ? 1 : 0;
}
