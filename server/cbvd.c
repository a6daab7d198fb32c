/*
 * cbvd.c - the callout server: a mailfromd-compatible callout daemon on the
 * exim-cbv core.  This file sets the process up; cbvd_loop.c serves.
 *
 *   cbvd [-c FILE] [-l URL]... [-f] [-d]
 *
 * Order matters: read the config, bind every listener (as root if need
 * be), become a daemon, drop root for good (setgroups/setgid/setuid to the
 * server block's user, Debian-exim if it exists, else nobody), then serve.
 * inet listeners must be loopback addresses unless the server block says
 * allow_remote = yes: the protocol has no authentication.
 * SIGTERM or SIGINT end the loop through a self-pipe; SIGPIPE is ignored.
 */
#define _GNU_SOURCE /* pipe2(), daemon() */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cbv.h"
#include "cbvd.h"

#define EX_USAGE 64
#define EX_CONFIG 78

static int sig_pipe[2] = { -1, -1 };
static int use_stderr;

static void usage(void)
{
	fprintf(stderr, "usage: cbvd [-c FILE] [-l URL]... [-f] [-d]\n"
	                "  -c FILE  cbv.conf (default %s)\n"
	                "  -l URL   also listen on unix:///PATH or inet://127.0.0.1:PORT\n"
	                "  -f       stay in the foreground, log to stderr\n"
	                "  -d       log each SMTP command and reply (debug)\n"
	                "  -V       print the version and exit\n",
	        CBV_CONF_DEFAULT);
	exit(EX_USAGE);
}

static void log_sink(enum cbv_log_level level, const char *line, void *arg)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	static const char *const name[] = { "error", "warning", "info", "debug" };

	static long pid; /* stderr is the foreground's: no fork follows */

	(void)arg;
	if (pid == 0)
		pid = (long)getpid();
	if (use_stderr)
		fprintf(stderr, "cbvd[%ld]: %s: %s\n", pid, name[level], line);
	else
		syslog(prio[level], "%s", line);
}

static void on_signal(int sig)
{
	int saved = errno;
	char b = (char)sig;

	if (write(sig_pipe[1], &b, 1) < 0) {
		/* the pipe is full: a stop is already pending */
	}
	errno = saved;
}

/* Fatal setup error: to stderr before daemonizing, to the log after. */
static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void die(int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cbv_log(CBV_LOG_ERR, "cbvd: %s", msg);
	if (!use_stderr)
		fprintf(stderr, "cbvd: %s\n", msg);
	exit(code);
}

/* Removes a stale UNIX socket (nobody accepting on it); refuses others. */
static void clear_unix_path(const char *url, const struct cbv_url *u)
{
	struct stat sb;
	int fd, r;

	if (lstat(u->path, &sb) != 0)
		return;
	if (!S_ISSOCK(sb.st_mode))
		die(EX_CONFIG, "%s: %s exists and is not a socket", url, u->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die(1, "socket: %s", strerror(errno));
	r = connect(fd, (const struct sockaddr *)&u->sa, u->salen);
	close(fd);
	if (r == 0)
		die(1, "%s: a server is already listening there", url);
	if (unlink(u->path) != 0)
		die(1, "%s: cannot remove stale socket: %s", url, strerror(errno));
}

static int open_listener(const char *url, const struct cbv_url *u)
{
	int fd, one = 1;

	if (u->family == AF_UNIX)
		clear_unix_path(url, u);
	fd = socket(u->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die(1, "%s: socket: %s", url, strerror(errno));
	if (u->family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&u->sa, u->salen) != 0)
		die(1, "%s: bind: %s", url, strerror(errno));
	/* Exim and mailfromd connect as their own users: owner and group only
	 * (the owner becomes the server user below). */
	if (u->family == AF_UNIX && chmod(u->path, 0660) != 0)
		die(1, "%s: chmod: %s", url, strerror(errno));
	if (listen(fd, 1024) != 0)
		die(1, "%s: listen: %s", url, strerror(errno));
	return fd;
}

/* The user to run as: the configured one, else Debian-exim, else nobody. */
static struct passwd *server_user(const char *name)
{
	struct passwd *pw;

	if (name[0] != '\0') {
		if ((pw = getpwnam(name)) == NULL)
			die(EX_CONFIG, "server user \"%s\" does not exist", name);
		return pw;
	}
	if ((pw = getpwnam("Debian-exim")) != NULL)
		return pw;
	if ((pw = getpwnam("nobody")) != NULL)
		return pw;
	die(EX_CONFIG, "neither Debian-exim nor nobody exists: set server { user = ... }");
}

static void drop_root(const char *name, struct cbv_url *urls, size_t n)
{
	struct passwd *pw;
	uid_t uid;
	gid_t gid;

	if (geteuid() != 0) {
		cbv_log(CBV_LOG_INFO, "cbvd: not root, running as uid %ld", (long)geteuid());
		return;
	}
	pw = server_user(name);
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	if (uid == 0)
		die(EX_CONFIG, "refusing to run as root (server user \"%s\")", pw->pw_name);
	for (size_t i = 0; i < n; i++)
		if (urls[i].family == AF_UNIX && chown(urls[i].path, uid, gid) != 0)
			die(1, "%s: chown: %s", urls[i].path, strerror(errno));
	if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
		die(1, "cannot switch to user %s: %s", pw->pw_name, strerror(errno));
	/* Make sure it is for good. */
	if (setuid(0) == 0 || geteuid() == 0)
		die(1, "still root after dropping privileges");
	cbv_log(CBV_LOG_INFO, "cbvd: running as %s (uid %ld)", pw->pw_name, (long)uid);
}

int main(int argc, char **argv)
{
	const char *conf = CBV_CONF_DEFAULT, *cli_urls[CBV_LISTEN_MAX];
	struct cbv_url urls[2 * CBV_LISTEN_MAX];
	const char *url_text[2 * CBV_LISTEN_MAX];
	int fds[2 * CBV_LISTEN_MAX], is_unix[2 * CBV_LISTEN_MAX];
	size_t ncli = 0, n = 0;
	int opt, foreground = 0, debug = 0, conf_given = 0, missing = 0, rc;
	const struct cbv_server_conf *sc;
	const struct cbv_profile *prof;
	struct cbvd_loop_conf lc;
	struct cbv_config *cfg;
	struct sigaction sa;
	struct cbv_err err;
	char host[256];
	struct cbv_url murl;
	int mfd = -1;
	time_t started = time(NULL);

	while ((opt = getopt(argc, argv, "c:l:fdhV")) != -1) {
		switch (opt) {
		case 'V': printf("cbvd %s\n", CBV_VERSION); return 0;
		case 'c': conf = optarg; conf_given = 1; break;
		case 'l':
			if (ncli == CBV_LISTEN_MAX) {
				fprintf(stderr, "cbvd: more than %d -l options\n", CBV_LISTEN_MAX);
				return EX_USAGE;
			}
			cli_urls[ncli++] = optarg;
			break;
		case 'f': foreground = 1; break;
		case 'd': debug = 1; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	use_stderr = foreground;
	if (!foreground)
		openlog("cbvd", LOG_PID | LOG_NDELAY, LOG_MAIL);
	cbv_log_set(log_sink, NULL, debug ? CBV_LOG_DEBUG : CBV_LOG_INFO);

	cfg = cbv_config_load(conf, !conf_given, &missing, &err);
	if (cfg == NULL)
		die(EX_CONFIG, "%s", err.msg);
	sc = cbv_config_server(cfg);
	prof = cbv_config_profile(cfg, sc->profile);
	if (prof == NULL)
		die(EX_CONFIG, "no profile \"%s\"", sc->profile);

	for (size_t i = 0; i < sc->nlisten; i++)
		url_text[n++] = sc->listen[i];
	for (size_t i = 0; i < ncli; i++)
		url_text[n++] = cli_urls[i];
	if (n == 0)
		die(EX_USAGE, "nothing to listen on: use -l URL or server { listen = [ ... ] }");
	for (size_t i = 0; i < n; i++) {
		/* Numeric hosts only: we bind, and never resolve to do it. */
		if (cbv_url_parse(url_text[i], strnlen(url_text[i], CBV_URL_MAX + 1), CBV_URL_NUMERIC,
		                  &urls[i], &err) != CBV_OK)
			die(EX_USAGE, "%.200s: %s", url_text[i], err.msg);
		if (!urls[i].loopback && !sc->allow_remote)
			die(EX_USAGE, "%s: not a loopback address (the protocol has no "
			              "authentication; set server { allow_remote = yes } to allow it)",
			    url_text[i]);
	}
	for (size_t i = 0; i < n; i++) {
		fds[i] = open_listener(url_text[i], &urls[i]);
		is_unix[i] = urls[i].family == AF_UNIX;
	}
	/* Metrics (cbvd_metrics.h): counters only, but loopback unless asked. */
	if (sc->metrics_listen[0] != '\0') {
		if (cbv_url_parse(sc->metrics_listen, strlen(sc->metrics_listen), CBV_URL_NUMERIC,
		                  &murl, &err) != CBV_OK ||
		    murl.family == AF_UNIX)
			die(EX_USAGE, "metrics_listen %.200s: not an inet URL", sc->metrics_listen);
		if (!murl.loopback && !sc->metrics_allow_remote)
			die(EX_USAGE, "metrics_listen %s: not a loopback address (set server "
			              "{ metrics_allow_remote = yes } to serve metrics beyond this host)",
			    sc->metrics_listen);
		mfd = open_listener(sc->metrics_listen, &murl);
	}

	if (!foreground && daemon(0, 0) != 0)
		die(1, "daemon: %s", strerror(errno));
	drop_root(sc->user, urls, n);

	if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
		die(1, "pipe: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';

	memset(&lc, 0, sizeof(lc));
	lc.cfg = cfg;
	lc.profile = prof;
	lc.listen_fds = fds;
	lc.listen_unix = is_unix;
	lc.nlisten = n;
	lc.max_clients = sc->max_clients;
	lc.max_inflight = sc->max_inflight;
	lc.hostname = host;
	lc.signal_fd = sig_pipe[0];
	if (mfd >= 0) {
		lc.metrics = cbvd_metrics_new(mfd, CBV_VERSION, (int64_t)started);
		if (lc.metrics == NULL)
			die(1, "out of memory");
		cbv_log(CBV_LOG_INFO, "cbvd: metrics on %s (GET /metrics)", sc->metrics_listen);
	}
	cbv_log(CBV_LOG_INFO, "cbvd %s: ready, %zu listeners, profile %s, max_clients %u, "
	                      "max_inflight %u",
	        CBV_VERSION, n, prof->name, sc->max_clients, sc->max_inflight);
	/* Redis calls go out without blocking the loop (cbv_cache_async.h) */
	cbv_cache_async_set(1);
	rc = cbvd_loop_run(&lc);
	cbvd_metrics_free(lc.metrics);

	for (size_t i = 0; i < n; i++) {
		close(fds[i]);
		/* Only works if the socket's directory is ours; harmless if not. */
		if (urls[i].family == AF_UNIX)
			unlink(urls[i].path);
	}
	close(sig_pipe[0]);
	close(sig_pipe[1]);
	cbv_config_free(cfg);
	cbv_log(CBV_LOG_INFO, "cbvd: stopped");
	return rc;
}
