/*
 * cbvd_loop.c - the event loop: callout protocol clients and the core
 * verification machines they run, all in one poll(2) loop.
 *
 * One pollfd array: the signal pipe and the listeners (set once), then
 * every client and the fds of every running verification
 * (cbv_verify_pollfds(), the same machine cbv_verify() drives for cbv.so),
 * rebuilt each turn.  A turn (loop_turn()) waits until the earliest
 * deadline, then advances in a fixed order so nothing is freed while its
 * pollfds are being looked at:
 *
 *   1. verifications with events or past their wake time; finished ones
 *      report to their client (which may complete its RUN);
 *   2. clients: read, parse, write; the dead are freed here, cancelling
 *      their verifications;
 *   3. listeners: accept;
 *   4. queued verifications start while fewer than max_inflight run.
 *
 * Progress lines are written the moment the core reports them (TCP_NODELAY
 * is set on accepted sockets), and a RUN's final line the moment its last
 * verification ends: the core returns at the RCPT reply and never waits
 * for the 221 to QUIT, so neither do we.
 *
 * The VRFYs of one RUN that can share SMTP sessions run as one core group
 * machine instead (struct group, "groups" below), on their own list, with
 * each job still reported on its own.
 *
 * A client cannot hurt others: input is read at most CBVD_IN_MAX bytes a
 * turn, a line longer than that is answered "NO line too long" and skipped,
 * input is not read while CBVD_OUT_HIGH bytes of answers wait for it, and
 * a client that lets CBVD_OUT_MAX pile up is dropped.  A client that goes
 * away mid-RUN has its verifications freed at once (connections closed),
 * unless its profile has a cache: then each running one is detached and
 * finishes in the background, within the profile's own timeout, so that
 * its result is stored and the sender's retry is answered from the cache
 * (calloutd does the same).  Detached verifications still count against
 * max_inflight; queued ones are dropped.  At shutdown all are cancelled.
 */
#define _GNU_SOURCE /* accept4(), POLLRDHUP */

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cbv.h"
#include "cbvd.h"

/* J_GROUP: running inside its group's machine (struct group), on no list. */
enum job_state { J_PENDING, J_QUEUED, J_RUNNING, J_DONE, J_GROUP };

/* One VRFY: from the request to its verdict word. */
struct job {
	struct job *prev, *next;   /* the global running list or wait queue */
	struct job *cnext;         /* the client's batch, in ID order */
	struct client *c;          /* NULL once detached (its client went away) */
	unsigned id;
	enum job_state state;
	struct cbv_verify *v;
	int pfd_off, npfd;         /* this turn's pollfds; pfd_off -1: none */
	int64_t wake;
	const char *word;          /* mailfromd verdict once done */
	char *email;
	char *host;                /* VRFY HOST=, NULL: none */
	enum cbv_host_mode mode;   /* VRFY MODE= */
	char *ehlo;                /* NULL: the connection's */
	char *mailfrom;            /* NULL: the connection's */
	/* SENT lines held until their reply is in, so that a client keeping
	 * the last SENT and RECV (mailfromd's last_poll_*) sees a true pair */
	char sent_held[2][CBV_CMD_MAX];
	int nheld;
	int sent_any, recv_any;    /* a SENT / RECV line went out */
	struct group *grp;         /* sharing sessions with other jobs until reported; NULL: alone */
};

struct jlist {
	struct job *head, *tail;
	size_t n;
};

/* One protocol connection. */
struct client {
	struct client *prev, *next;
	int fd;
	int pfd;                   /* index in this turn's pollfds, -1: none */
	int dead;                  /* free at the end of phase 2 */
	int closing;               /* QUIT answered: close once flushed */
	int skipping;              /* discarding the rest of an overlong line */
	int resume;                /* a RUN ended: parse what is buffered */
	char *in;                  /* owned; grown by doubling up to CBVD_IN_MAX */
	size_t inlen, incap;
	char *out;
	size_t olen, ocap;
	/* connection settings (SET, TIMEOUT, SID) */
	const struct cbv_profile *profile;
	char sid[CBV_CPROTO_SID_MAX + 1];
	char ehlo[CBV_DOMAIN_MAX + 1];
	char mailfrom[CBV_CPROTO_VALUE_MAX + 1];
	int has_mailfrom;
	char starttls[16];         /* "" = the profile's */
	int warned_tls;            /* a weaker STARTTLS than the profile's was logged */
	int transcript;
	unsigned timeouts[CBV_CPROTO_TIMEOUTS];
	int has_timeouts;
	/* the batch: VRFYs since the last RUN, and the RUN in progress */
	struct job *batch, *batch_tail;
	size_t nbatch;
	unsigned next_id;
	int running;               /* a RUN is in progress */
	size_t unfinished;         /* jobs of the RUN not done */
};

struct loop {
	const struct cbvd_loop_conf *lc;
	struct client *clients;
	size_t nclients;
	struct jlist running, queue;
	struct group *groups;      /* running groups (their jobs count in inflight) */
	size_t inflight;
	int stop;
	struct pollfd *pfds;
	size_t pfd_cap;
};

/* Copies a NUL-terminated string into a field of size n, truncating. */
static void copy_str(char *dst, size_t n, const char *src)
{
	size_t len = strnlen(src, n - 1);

	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* ---- lists ---- */

static void jl_append(struct jlist *l, struct job *j)
{
	j->next = NULL;
	j->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
	l->n++;
}

static void jl_remove(struct jlist *l, struct job *j)
{
	if (j->prev != NULL)
		j->prev->next = j->next;
	else
		l->head = j->next;
	if (j->next != NULL)
		j->next->prev = j->prev;
	else
		l->tail = j->prev;
	j->prev = j->next = NULL;
	l->n--;
}

/* ---- output ---- */

/* Sends what is buffered without blocking; marks the client dead on error. */
static void flush(struct client *c)
{
	while (c->olen > 0 && !c->dead) {
		ssize_t n = send(c->fd, c->out, c->olen, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				c->dead = 1;
			return;
		}
		memmove(c->out, c->out + n, c->olen - (size_t)n);
		c->olen -= (size_t)n;
	}
}

/*
 * Appends len bytes to the output.  They go out at the end of this turn
 * (flush_clients()): one send(2) for all the lines a turn wrote, not one
 * per line (a verification writes some 25 lines).
 */
static void put(struct client *c, const char *s, size_t len)
{
	if (c->dead)
		return;
	if (c->olen + len > CBVD_OUT_MAX) {
		cbv_log(CBV_LOG_WARN, "cbvd: client %s: %u bytes of answers unread, dropped",
		        c->sid[0] ? c->sid : "-", (unsigned)c->olen);
		c->dead = 1;
		return;
	}
	if (c->olen + len > c->ocap) {
		size_t cap = c->ocap ? c->ocap : 1024;
		char *p;

		while (cap < c->olen + len)
			cap *= 2;
		p = cbv_malloc(cap);
		if (p == NULL) {
			c->dead = 1;
			return;
		}
		if (c->olen > 0)
			memcpy(p, c->out, c->olen);
		cbv_free(c->out);
		c->out = p;
		c->ocap = cap;
	}
	memcpy(c->out + c->olen, s, len);
	c->olen += len;
}

static void reply(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes one protocol line; the text is ours or already printable. */
static void reply(struct client *c, const char *fmt, ...)
{
	char line[CBV_REPLY_LINE_MAX + 64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	memcpy(line + n, "\r\n", 2);
	put(c, line, (size_t)n + 2);
}

/* ---- verifications ---- */

static const char *const trace_kind[] = { "INIT", "GRTNG", "HELO", "SENT", "RECV" };

/* Writes "* ID KIND text", text cut at its first line end. */
static void progress(struct job *j, const char *kind, const char *text, size_t len)
{
	struct client *c = j->c;

	if (len > CBV_REPLY_LINE_MAX)
		len = CBV_REPLY_LINE_MAX;
	reply(c, "* %010u %s %.*s", j->id, kind, (int)len, text);
	if (c->transcript)
		cbv_log(CBV_LOG_INFO, "cbvd: %s %010u %s %.*s", c->sid[0] ? c->sid : "-", j->id,
		        kind, (int)len, text);
}

/*
 * The core's trace hook: one "* ID KIND text" line.  As calloutd does,
 * INIT names the host only and a reply shows its first line; the QUIT we
 * send after the verdict is not reported.  A SENT line is held until the
 * reply to it is in (HELO or RECV), then both go out at once: with
 * pipelining, MAIL and RCPT are written together, and a client keeping
 * the last SENT and RECV must never pair the RCPT with the MAIL reply.
 */
static void on_trace(void *arg, enum cbv_trace kind, const char *text)
{
	struct job *j = arg;

	if (j->c == NULL || (unsigned)kind >= sizeof(trace_kind) / sizeof(trace_kind[0]))
		return; /* detached: nobody to tell */
	switch (kind) {
	case CBV_TRACE_SENT:
		if (strcmp(text, "QUIT") == 0)
			return;
		if (j->nheld < 2)
			snprintf(j->sent_held[j->nheld++], sizeof(j->sent_held[0]), "%s", text);
		return;
	case CBV_TRACE_INIT: {
		const char *sp = strstr(text, " [");

		j->nheld = 0; /* a new host: nothing is outstanding */
		progress(j, "INIT", text, sp != NULL ? (size_t)(sp - text) : strlen(text));
		return;
	}
	case CBV_TRACE_HELO:
	case CBV_TRACE_RECV:
		if (j->nheld > 0) {
			progress(j, "SENT", j->sent_held[0], strcspn(j->sent_held[0], "\r\n"));
			memmove(j->sent_held[0], j->sent_held[1], sizeof(j->sent_held[0]));
			j->nheld--;
			j->sent_any = 1;
		}
		j->recv_any |= kind == CBV_TRACE_RECV;
		break;
	default:
		break;
	}
	progress(j, trace_kind[kind], text, strcspn(text, "\r\n"));
}

/* Sends a multi-line field as "* ID XCBV key line" lines; nothing if "". */
static void ext_field(struct job *j, const char *key, const char *value)
{
	while (*value != '\0') {
		size_t len = strcspn(value, "\n");

		if (len > CBV_REPLY_LINE_MAX)
			len = CBV_REPLY_LINE_MAX;
		reply(j->c, "* %010u XCBV %s %.*s", j->id, key, (int)len, value);
		value += len;
		value += strspn(value, "\n");
	}
}

/*
 * The end of a job's progress.  As calloutd: "SENT nothing" when no
 * command got a reply, and "RECV" the deciding reply (the greeting when
 * it refused us) or "nothing".  Then the XCBV extension lines (the
 * verdict, reason, code, message and full last poll as decided here, so
 * that our own client shows what an in-process verification shows);
 * mailfromd's callout.mfl matches them as "* ID WORD text" and ignores an
 * unknown word, calloutd is never a client.  docs/callout-protocol.md.
 */
static void job_report(struct job *j, const struct cbv_result *r)
{
	char num[32];

	if (!j->sent_any)
		progress(j, "SENT", "nothing", 7);
	if (!j->recv_any) {
		if (r->recv[0] != '\0')
			progress(j, "RECV", r->recv, strcspn(r->recv, "\n"));
		else
			progress(j, "RECV", "nothing", 7);
	}
	ext_field(j, "status", cbv_verdict_name(r->verdict));
	ext_field(j, "reason", cbv_reason_name(r->reason));
	snprintf(num, sizeof(num), "%d", r->code);
	ext_field(j, "code", num);
	ext_field(j, "ecode", r->ecode);
	snprintf(num, sizeof(num), "%lu", r->elapsed_ms);
	ext_field(j, "elapsed", num);
	snprintf(num, sizeof(num), "%u", r->hosts_tried);
	ext_field(j, "tried", num);
	ext_field(j, "host", r->host);
	ext_field(j, "ip", r->ip);
	ext_field(j, "tls", r->tls);
	ext_field(j, "message", r->message);
	ext_field(j, "greeting", r->greeting);
	ext_field(j, "helo", r->helo);
	ext_field(j, "sent", r->sent);
	ext_field(j, "recv", r->recv);
}

/* Frees a job that is on no global list. */
static void job_free(struct job *j)
{
	if (j == NULL)
		return;
	cbv_verify_free(j->v);
	cbv_free(j->email);
	cbv_free(j->host);
	cbv_free(j->ehlo);
	cbv_free(j->mailfrom);
	cbv_free(j);
}

/* Called when the last job of a RUN is done: "OK ID=word ...". */
static void run_complete(struct client *c)
{
	char line[CBVD_BATCH_MAX * 24 + 8];
	size_t n = 0;
	struct job *j, *next;

	n += (size_t)snprintf(line, sizeof(line), "OK");
	for (j = c->batch; j != NULL; j = next) {
		next = j->cnext;
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %010u=%s", j->id, j->word);
		job_free(j);
	}
	c->batch = c->batch_tail = NULL;
	c->nbatch = 0;
	c->running = 0;
	c->resume = 1;
	reply(c, "%s", line);
}

/* A job's verification has ended (or could not start): record, report. */
static void job_done(struct loop *L, struct job *j, const struct cbv_result *r)
{
	struct client *c = j->c;

	if (j->state == J_RUNNING) {
		jl_remove(&L->running, j);
		L->inflight--;
	} else if (j->state == J_GROUP) {
		L->inflight--;
	}
	j->state = J_DONE;
	if (c == NULL) {
		/* detached: the core has logged and stored the result */
		cbv_log(CBV_LOG_INFO, "cbvd: - %010u <%s> %s finished in the background", j->id,
		        j->email, r != NULL ? cbv_verdict_name(r->verdict) : "-");
		job_free(j);
		return;
	}
	j->word = r != NULL ? cbv_verdict_mfd_name(r->verdict) : "temp_failure";
	if (r != NULL)
		job_report(j, r);
	if (r != NULL)
		cbv_log(CBV_LOG_INFO, "cbvd: %s %010u <%s> %s %s/%s %s", c->sid[0] ? c->sid : "-",
		        j->id, r->address, j->word, cbv_verdict_name(r->verdict), cbv_reason_name(r->reason),
		        r->message);
	cbv_verify_free(j->v);
	j->v = NULL;
	if (--c->unfinished == 0)
		run_complete(c);
}

/*
 * Builds the job's profile (cbv_profile_clear() it) and request: the
 * client's settings with the job's own VRFY parameters.
 */
static void job_profile(struct loop *L, struct job *j, struct cbv_profile *pp,
                        struct cbv_request *rp)
{
	struct client *c = j->c;
	struct cbv_profile p;
	struct cbv_request req;
	const char *ehlo = j->ehlo != NULL ? j->ehlo : c->ehlo;
	char tmp[32];

	cbv_profile_copy(&p, c->profile);
	/* Values were checked when the client set them; a failure here
	 * leaves the profile's value in place. */
	if (ehlo[0] != '\0')
		cbv_profile_set(&p, "helo", ehlo, NULL);
	if (c->starttls[0] != '\0') {
		/* mailfromd's "always" is "use it when offered". */
		const char *pol = strcmp(c->starttls, "always") == 0 ? "opportunistic" : c->starttls;

		/* A client may strengthen our STARTTLS policy, never weaken a
		 * profile's require (issue 11.7). */
		if (p.starttls == CBV_STARTTLS_REQUIRE && strcmp(pol, "require") != 0) {
			if (!c->warned_tls)
				cbv_log(CBV_LOG_WARN, "cbvd: %s: SET STARTTLS=\"%s\" ignored: profile %s "
				        "requires STARTTLS", c->sid[0] ? c->sid : "-", c->starttls,
				        p.name);
			c->warned_tls = 1;
		} else {
			cbv_profile_set(&p, "starttls", pol, NULL);
		}
	}
	if (c->has_timeouts) {
		unsigned cmd = 0;

		snprintf(tmp, sizeof(tmp), "%us", c->timeouts[0]);
		cbv_profile_set(&p, "connect_timeout", tmp, NULL);
		/* initial-response, helo, mail, rcpt: our one command timeout */
		for (int i = 1; i <= 4; i++)
			if (c->timeouts[i] > cmd)
				cmd = c->timeouts[i];
		snprintf(tmp, sizeof(tmp), "%us", cmd);
		cbv_profile_set(&p, "command_timeout", tmp, NULL);
	}
	memset(&req, 0, sizeof(req));
	req.address = j->email;
	req.host = j->host;
	req.mode = j->mode;
	req.sender = j->mailfrom != NULL ? j->mailfrom : c->has_mailfrom ? c->mailfrom : NULL;
	req.default_helo = L->lc->hostname;
	req.trace = on_trace;
	req.trace_arg = j;
	*pp = p;
	*rp = req;
}

/* Builds the job's profile and request and starts its machine. */
static void job_start(struct loop *L, struct job *j)
{
	struct cbv_profile p;
	struct cbv_request req;
	struct cbv_result *r;
	struct cbv_err err;

	job_profile(L, j, &p, &req);
	j->v = cbv_verify_new(&p, &req, &err);
	cbv_profile_clear(&p);
	j->state = J_RUNNING;
	jl_append(&L->running, j);
	L->inflight++;
	if (j->v == NULL) {
		cbv_log(CBV_LOG_ERR, "cbvd: cannot start a verification: %s", err.msg);
		job_done(L, j, NULL);
		return;
	}
	if (cbv_verify_done(j->v)) {
		r = cbv_verify_take_result(j->v);
		job_done(L, j, r);
		cbv_result_free(r);
	}
}

/* ---- groups: VRFYs of one RUN sharing SMTP sessions ---- */

/*
 * Jobs of one RUN that may share sessions (cbv_cproto_group(): same HOST,
 * MODE, EHLO, MAIL FROM) run as one core group machine: one DNS lookup
 * and one session per domain after the map (one MAIL FROM, one RCPT
 * each).  Each job still gets its own progress lines (the core splits the
 * session's transcript, cbv_tracemux.h), XCBV lines, verdict and log line,
 * as soon as its own verdict is known.  A job points at its group until it
 * is reported; the group is freed when its last job is reported, or when
 * its client goes (cancelled; detached to finish for the cache as a lone
 * job would be).  A group counts one in-flight verification per job not
 * yet reported, and starts only when all of them fit under max_inflight.
 */
struct group {
	struct group *prev, *next; /* L->groups once started */
	struct cbv_verify_group *g; /* NULL until started */
	struct job *job[CBV_RCPTS_MAX]; /* in ID order */
	void *targ[CBV_RCPTS_MAX];  /* the same, as the core's trace_args */
	unsigned char reported[CBV_RCPTS_MAX];
	size_t n, open;             /* jobs; jobs not yet reported */
	int pfd_off, npfd;          /* this turn's pollfds; pfd_off -1: none */
	int64_t wake;
};

/* Unlinks a started group and frees it with its machine (connections closed). */
static void group_free(struct loop *L, struct group *grp)
{
	if (grp->g != NULL) {
		if (grp->prev != NULL)
			grp->prev->next = grp->next;
		else
			L->groups = grp->next;
		if (grp->next != NULL)
			grp->next->prev = grp->prev;
		cbv_verify_group_free(grp->g);
	}
	cbv_free(grp);
}

/*
 * At RUN: plans the batch's groups (cbv_cproto_group()) and ties their
 * jobs together; out of memory, the jobs run alone, as before.  With
 * STARTTLS on demand the session sends the RCPTs after the first one at
 * a time (a 530 may call for RSET and TLS), and the jobs' lines are still
 * their own; only when a server does answer 530 and TLS follows, the
 * jobs after the first lack the RCPT and 530 of the plain-text attempt
 * (their verdicts are unchanged).
 */
static void group_plan(struct loop *L, struct client *c)
{
	struct cbv_cproto_job pj[CBVD_BATCH_MAX];
	struct job *jobs[CBVD_BATCH_MAX];
	size_t gid[CBVD_BATCH_MAX], n = 0, ngroups, max = CBV_RCPTS_MAX;
	struct job *j;

	if (c->nbatch < 2 || c->nbatch > CBVD_BATCH_MAX)
		return;
	if (L->lc->max_inflight < max)
		max = L->lc->max_inflight;
	if (max < 2)
		return;
	for (j = c->batch; j != NULL; j = j->cnext) {
		jobs[n] = j;
		pj[n] = (struct cbv_cproto_job){
			.email = j->email,
			.host = j->host,
			.mode = (int)j->mode,
			.ehlo = j->ehlo != NULL ? j->ehlo : c->ehlo,
			.mailfrom = j->mailfrom != NULL ? j->mailfrom : c->has_mailfrom ? c->mailfrom : NULL,
		};
		n++;
	}
	ngroups = cbv_cproto_group(pj, n, max, gid);
	for (size_t g = 0; g < ngroups; g++) {
		struct group *grp = NULL;
		size_t k, m = 0;

		for (k = 0; k < n; k++)
			m += gid[k] == g;
		if (m < 2 || (grp = cbv_calloc(1, sizeof(*grp))) == NULL)
			continue;
		grp->pfd_off = -1;
		for (k = 0; k < n && grp->n < CBV_RCPTS_MAX; k++) {
			if (gid[k] != g)
				continue;
			jobs[k]->grp = grp;
			grp->job[grp->n] = jobs[k];
			grp->targ[grp->n++] = jobs[k];
		}
		grp->open = grp->n;
	}
}

/*
 * Reports the jobs whose verdict is in (each one's lines and log line
 * through job_done()); when the last one is, the group goes first, as
 * job_done() may end the RUN and free the jobs.
 */
static void group_collect(struct loop *L, struct group *grp)
{
	struct job *done[CBV_RCPTS_MAX];
	struct cbv_result *res[CBV_RCPTS_MAX];
	size_t nd = 0;

	for (size_t i = 0; i < grp->n; i++) {
		struct cbv_result *r;

		if (grp->reported[i] || (r = cbv_verify_group_take_result(grp->g, i)) == NULL)
			continue;
		grp->reported[i] = 1;
		grp->open--;
		grp->job[i]->grp = NULL;
		done[nd] = grp->job[i];
		res[nd++] = r;
	}
	if (grp->open == 0)
		group_free(L, grp);
	for (size_t k = 0; k < nd; k++) {
		job_done(L, done[k], res[k]);
		cbv_result_free(res[k]);
	}
}

/*
 * Starts the group whose first job heads the queue: 0 (nothing done)
 * while its jobs do not all fit under max_inflight, else 1.
 */
static int group_start(struct loop *L, struct group *grp)
{
	const char *emails[CBV_RCPTS_MAX];
	struct cbv_profile p;
	struct cbv_request req;
	struct cbv_err err;

	if (L->inflight + grp->n > L->lc->max_inflight)
		return 0;
	for (size_t i = 0; i < grp->n; i++) {
		jl_remove(&L->queue, grp->job[i]);
		grp->job[i]->state = J_GROUP;
		emails[i] = grp->job[i]->email;
	}
	L->inflight += grp->n;
	job_profile(L, grp->job[0], &p, &req);
	req.trace_args = grp->targ;
	grp->g = cbv_verify_group_new(&p, &req, emails, grp->n, &err);
	cbv_profile_clear(&p);
	if (grp->g == NULL) {
		struct job *jobs[CBV_RCPTS_MAX];
		size_t n = grp->n;

		cbv_log(CBV_LOG_ERR, "cbvd: cannot start a verification: %s", err.msg);
		memcpy(jobs, grp->job, sizeof(jobs));
		for (size_t i = 0; i < n; i++)
			jobs[i]->grp = NULL;
		group_free(L, grp);
		for (size_t i = 0; i < n; i++)
			job_done(L, jobs[i], NULL);
		return 1;
	}
	grp->next = L->groups;
	if (L->groups != NULL)
		L->groups->prev = grp;
	L->groups = grp;
	group_collect(L, grp); /* bad syntax, cache hits: done at once */
	return 1;
}

/*
 * The client c is going: for each group of its batch, a started one
 * whose profile has a cache and that may finish (not at shutdown) keeps
 * running with its jobs detached (client_free() detaches them); any
 * other is cancelled, and its jobs are freed with the client's.
 */
static void group_release(struct loop *L, struct client *c)
{
	for (struct job *j = c->batch; j != NULL; j = j->cnext) {
		struct group *grp = j->grp;

		if (grp == NULL || (grp->g != NULL && !L->stop && c->profile->cache[0] != '\0'))
			continue;
		if (grp->g != NULL)
			L->inflight -= grp->open;
		for (size_t i = 0; i < grp->n; i++) {
			if (!grp->reported[i])
				grp->job[i]->grp = NULL;
		}
		group_free(L, grp);
	}
}

/* The running groups' pollfds, from index n (as job_pollfds()). */
static size_t group_pollfds(struct loop *L, size_t n, int64_t *wake)
{
	for (struct group *grp = L->groups; grp != NULL; grp = grp->next) {
		int64_t w = 0;
		int k = cbv_verify_group_pollfds(grp->g, L->pfds + n,
		                                 (int)grp->open * CBV_VERIFY_POLLFDS_MAX, &w);

		if (k < 0) { /* done without telling us: process at once */
			k = 0;
			w = 1;
		}
		grp->pfd_off = (int)n;
		grp->npfd = k;
		grp->wake = w;
		n += (size_t)k;
		if (w != 0 && w < *wake)
			*wake = w;
	}
	return n;
}

/* Phase 1 for groups: those with events or past their wake time. */
static void process_groups(struct loop *L, int64_t now)
{
	struct group *grp, *gnext;

	for (grp = L->groups; grp != NULL; grp = gnext) {
		int ev = 0, off = grp->pfd_off;

		gnext = grp->next;
		if (off < 0)
			continue;
		grp->pfd_off = -1;
		for (int k = 0; k < grp->npfd; k++)
			ev |= L->pfds[off + k].revents;
		if (ev == 0 && grp->wake > now)
			continue;
		cbv_verify_group_process(grp->g, L->pfds + off, grp->npfd);
		group_collect(L, grp);
	}
}

/* At shutdown: the groups still running (detached) are cancelled. */
static void group_cancel_all(struct loop *L)
{
	while (L->groups != NULL) {
		struct group *grp = L->groups;
		struct job *jobs[CBV_RCPTS_MAX];
		size_t n = 0;

		for (size_t i = 0; i < grp->n; i++) {
			if (!grp->reported[i])
				jobs[n++] = grp->job[i];
		}
		L->inflight -= grp->open;
		group_free(L, grp);
		for (size_t i = 0; i < n; i++)
			job_free(jobs[i]);
	}
}

/* Frees a client and everything it started. */
static void client_free(struct loop *L, struct client *c)
{
	struct job *j, *next;

	group_release(L, c);
	for (j = c->batch; j != NULL; j = next) {
		next = j->cnext;
		if (j->state == J_GROUP && j->grp != NULL) { /* its group goes on: group_release() */
			j->c = NULL;
			j->cnext = NULL;
			continue;
		}
		if (j->state == J_RUNNING && !L->stop && j->v != NULL &&
		    c->profile->cache[0] != '\0' && !cbv_verify_done(j->v)) {
			/* finish in the background, for the cache (the file comment) */
			j->c = NULL;
			j->cnext = NULL;
			continue;
		}
		if (j->state == J_RUNNING) {
			jl_remove(&L->running, j);
			L->inflight--;
		} else if (j->state == J_QUEUED) {
			jl_remove(&L->queue, j);
		}
		job_free(j); /* cbv_verify_free() closes its connections now */
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		L->clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	L->nclients--;
	close(c->fd);
	cbv_free(c->in);
	cbv_free(c->out);
	cbv_free(c);
}

/* ---- requests ---- */

/* Checks a value against the profile key it will set; 0 with a NO sent. */
static int check_value(struct client *c, const char *key, const char *name,
                       const char *value)
{
	struct cbv_profile tmp;
	struct cbv_err err;
	enum cbv_status st;
	char shown[80];

	cbv_profile_copy(&tmp, c->profile);
	st = cbv_profile_set(&tmp, key, value, &err);
	cbv_profile_clear(&tmp);
	if (st == CBV_OK)
		return 1;
	cbv_sanitize(value, strlen(value), shown, sizeof(shown));
	reply(c, "NO bad assignment %s=%s", name, shown);
	return 0;
}

static char *dup_or_null(const char *s, int given)
{
	return given ? cbv_strdup(s) : NULL;
}

/* The domain of an address: after the last '@', or "" if none. */
static const char *email_domain(const char *email)
{
	const char *at = strrchr(email, '@');

	return at != NULL ? at + 1 : "";
}

/* Domain names equal but for case and one trailing dot. */
static int same_domain(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && la > 0 && strncasecmp(a, b, la) == 0;
}

/*
 * VRFY MODE= and HOST= -> the core's host mode, as calloutd reads them:
 * no MODE is mxfirst; mxonly, hostonly and hostfirst need HOST ("NO mode
 * requires host", calloutd's words; the parser checks the last two).
 * calloutd's mxonly polls the MX hosts of HOST, not of the address's
 * domain; the core cannot aim at another domain's MX hosts without also
 * changing the RCPT address, so mxonly is taken only when HOST is the
 * address's own domain and refused otherwise, rather than verifying
 * something else.  Returns 1, or 0 with a NO sent.
 */
static int vrfy_mode(struct client *c, const struct cbv_cproto_req *rq, enum cbv_host_mode *mode)
{
	switch (rq->mode) {
	case CBV_CPROTO_MODE_DEFAULT:
	case CBV_CPROTO_MODE_MXFIRST:
		*mode = CBV_MODE_MXFIRST;
		return 1;
	case CBV_CPROTO_MODE_MXONLY:
		if (rq->host[0] == '\0') {
			reply(c, "NO mode requires host");
			return 0;
		}
		if (!same_domain(rq->host, email_domain(rq->email))) {
			reply(c, "NO mode not supported: mxonly with a HOST other than the address's domain");
			return 0;
		}
		*mode = CBV_MODE_MXONLY;
		return 1;
	case CBV_CPROTO_MODE_HOSTONLY:
		*mode = CBV_MODE_HOSTONLY;
		return 1;
	case CBV_CPROTO_MODE_HOSTFIRST:
		*mode = CBV_MODE_HOSTFIRST;
		return 1;
	}
	reply(c, "NO unrecognized value for mode");
	return 0;
}

static void do_vrfy(struct client *c, struct cbv_cproto_req *rq)
{
	struct job *j;
	enum cbv_host_mode mode;

	if (!vrfy_mode(c, rq, &mode))
		return;
	if (c->nbatch >= CBVD_BATCH_MAX) {
		reply(c, "NO too many pending requests");
		return;
	}
	if (rq->ehlo[0] != '\0' && !check_value(c, "helo", "EHLO", rq->ehlo))
		return;
	if (rq->has_mailfrom) {
		cbv_cproto_unbracket(rq->mailfrom);
		if (!check_value(c, "mailfrom", "MAILFROM", rq->mailfrom))
			return;
	}
	j = cbv_calloc(1, sizeof(*j));
	if (j == NULL || (j->email = cbv_strdup(rq->email)) == NULL ||
	    (rq->host[0] != '\0' && (j->host = cbv_strdup(rq->host)) == NULL) ||
	    (rq->ehlo[0] != '\0' && (j->ehlo = cbv_strdup(rq->ehlo)) == NULL) ||
	    (rq->has_mailfrom && (j->mailfrom = dup_or_null(rq->mailfrom, 1)) == NULL)) {
		job_free(j);
		reply(c, "NO out of memory");
		return;
	}
	j->c = c;
	j->mode = mode;
	j->id = c->next_id++;
	j->state = J_PENDING;
	j->pfd_off = -1;
	if (c->batch_tail != NULL)
		c->batch_tail->cnext = j;
	else
		c->batch = j;
	c->batch_tail = j;
	c->nbatch++;
	reply(c, "OK %010u", j->id);
}

static void do_run(struct loop *L, struct client *c)
{
	struct job *j;

	if (c->nbatch == 0) {
		reply(c, "OK");
		return;
	}
	c->running = 1;
	c->unfinished = c->nbatch;
	for (j = c->batch; j != NULL; j = j->cnext) {
		j->state = J_QUEUED;
		jl_append(&L->queue, j);
	}
	group_plan(L, c);
}

static void do_set(struct client *c, struct cbv_cproto_req *rq)
{
	switch (rq->var) {
	case CBV_CPROTO_VAR_EHLO:
		if (rq->value[0] != '\0' && !check_value(c, "helo", "EHLO", rq->value))
			return;
		copy_str(c->ehlo, sizeof(c->ehlo), rq->value);
		break;
	case CBV_CPROTO_VAR_MAILFROM:
		cbv_cproto_unbracket(rq->value);
		if (!check_value(c, "mailfrom", "MAILFROM", rq->value))
			return;
		copy_str(c->mailfrom, sizeof(c->mailfrom), rq->value);
		c->has_mailfrom = 1;
		break;
	case CBV_CPROTO_VAR_STARTTLS:
		copy_str(c->starttls, sizeof(c->starttls), rq->value);
		break;
	case CBV_CPROTO_VAR_TRANSCRIPT:
		c->transcript = strcmp(rq->value, "ON") == 0;
		break;
	default: /* PROFILE is handled by the caller */
		break;
	}
	reply(c, "OK");
}

/* The value GET shows for a variable ("" is not shown, as calloutd). */
static const char *get_value(const struct client *c, enum cbv_cproto_var v)
{
	switch (v) {
	case CBV_CPROTO_VAR_EHLO: return c->ehlo[0] ? c->ehlo : c->profile->helo;
	case CBV_CPROTO_VAR_MAILFROM: return c->has_mailfrom ? c->mailfrom : c->profile->mailfrom;
	case CBV_CPROTO_VAR_STARTTLS:
		if (c->starttls[0])
			return c->starttls;
		/* calloutd's words; require has none: shown as ours */
		return cbv_callout_starttls_word(c->profile->starttls, 0) != NULL
		               ? cbv_callout_starttls_word(c->profile->starttls, 0)
		               : "require";
	case CBV_CPROTO_VAR_TRANSCRIPT: return c->transcript ? "ON" : "OFF";
	case CBV_CPROTO_VAR_PROFILE: return c->profile->name;
	default: return "";
	}
}

/* Handles one request line (without its line end). */
static void handle_line(struct loop *L, struct client *c, const char *line, size_t len)
{
	struct cbv_cproto_req rq;
	struct cbv_err err;

	if (cbv_cproto_parse(line, len, &rq, &err) != CBV_OK) {
		reply(c, "NO %s", err.msg);
		return;
	}
	switch (rq.cmd) {
	case CBV_CPROTO_SID:
		cbv_sanitize(rq.sid, strlen(rq.sid), c->sid, sizeof(c->sid));
		reply(c, "OK");
		break;
	case CBV_CPROTO_SET:
		if (rq.var == CBV_CPROTO_VAR_PROFILE) {
			const struct cbv_profile *p = cbv_config_profile(L->lc->cfg, rq.value);
			char shown[80];

			if (p == NULL || rq.value[0] == '\0') {
				cbv_sanitize(rq.value, strlen(rq.value), shown, sizeof(shown));
				reply(c, "NO bad assignment PROFILE=%s", shown);
				break;
			}
			c->profile = p;
			reply(c, "OK");
			break;
		}
		do_set(c, &rq);
		break;
	case CBV_CPROTO_GET:
		for (size_t i = 0; i < rq.nget; i++) {
			const char *v = get_value(c, rq.get[i]);

			if (v[0] != '\0')
				reply(c, "* %s=%s", rq.get_name[i], v);
		}
		reply(c, "OK");
		break;
	case CBV_CPROTO_TIMEOUT:
		memcpy(c->timeouts, rq.timeouts, sizeof(c->timeouts));
		c->has_timeouts = 1;
		reply(c, "OK timeouts set");
		break;
	case CBV_CPROTO_VRFY:
		do_vrfy(c, &rq);
		break;
	case CBV_CPROTO_RUN:
		do_run(L, c);
		break;
	case CBV_CPROTO_QUIT:
		reply(c, "OK bye");
		c->closing = 1;
		break;
	}
}

/* Parses complete lines from the input buffer while no RUN is running. */
static void parse_input(struct loop *L, struct client *c)
{
	size_t off = 0;

	while (!c->running && !c->closing && !c->dead && c->olen < CBVD_OUT_HIGH) {
		char *lf = off < c->inlen ? memchr(c->in + off, '\n', c->inlen - off) : NULL;
		size_t len;

		if (lf == NULL)
			break;
		len = (size_t)(lf - (c->in + off));
		if (c->skipping) {
			c->skipping = 0; /* the tail of an overlong line */
		} else {
			if (len > 0 && c->in[off + len - 1] == '\r')
				len--;
			handle_line(L, c, c->in + off, len);
		}
		off = (size_t)(lf - c->in) + 1;
	}
	if (off > 0) {
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
	/* A full buffer with no line end: the line is too long. */
	if (c->inlen == CBVD_IN_MAX && !c->running && !c->closing) {
		if (!c->skipping)
			reply(c, "NO line too long");
		c->skipping = 1;
		c->inlen = 0;
	}
}

/*
 * Makes room in the input buffer: most clients send short lines, so it
 * starts at CBVD_IN_FIRST and doubles only for longer input, up to
 * CBVD_IN_MAX.  0, or -1 out of memory (the client is dead).
 */
static int in_grow(struct client *c)
{
	size_t cap = c->incap == 0 ? CBVD_IN_FIRST : c->incap * 2;
	char *p;

	if (cap > CBVD_IN_MAX)
		cap = CBVD_IN_MAX;
	p = cbv_malloc(cap);
	if (p == NULL) {
		c->dead = 1;
		return -1;
	}
	if (c->inlen > 0)
		memcpy(p, c->in, c->inlen);
	cbv_free(c->in);
	c->in = p;
	c->incap = cap;
	return 0;
}

/* Reads what the client sent; EOF or error marks it dead. */
static void client_read(struct loop *L, struct client *c)
{
	ssize_t n;

	if (c->inlen == CBVD_IN_MAX)
		return;
	if (c->inlen == c->incap && in_grow(c) != 0)
		return;
	n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, MSG_DONTWAIT);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			c->dead = 1;
		return;
	}
	if (n == 0) {
		/* Gone (or half-closed: we cannot tell, and would not be read). */
		if (c->running)
			cbv_log(CBV_LOG_INFO, "cbvd: client %s left during RUN; %zu cancelled",
			        c->sid[0] ? c->sid : "-", c->unfinished);
		c->dead = 1;
		return;
	}
	c->inlen += (size_t)n;
	parse_input(L, c);
}

/* Phase 2 for one client. */
static void client_process(struct loop *L, struct client *c, short rev)
{
	if (rev & (POLLERR | POLLNVAL))
		c->dead = 1;
	if (!c->dead && (rev & POLLOUT))
		flush(c);
	if (!c->dead && (rev & (POLLIN | POLLHUP | POLLRDHUP)))
		client_read(L, c);
	if (!c->dead && c->resume) {
		c->resume = 0;
		parse_input(L, c);
	} else if (!c->dead && !c->running && c->olen < CBVD_OUT_HIGH && c->inlen > 0) {
		parse_input(L, c); /* input held back by output pressure */
	}
	if (c->closing && c->olen == 0)
		c->dead = 1;
}

static void set_nodelay(int fd)
{
	int one = 1;

	/* Progress lines are small and must leave now: no Nagle. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void accept_clients(struct loop *L, size_t i)
{
	const struct cbvd_loop_conf *lc = L->lc;

	for (int k = 0; k < CBVD_ACCEPT_BURST; k++) {
		int fd = accept4(lc->listen_fds[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct client *c;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				cbv_log(CBV_LOG_ERR, "cbvd: accept: %s", strerror(errno));
			return;
		}
		if (!lc->listen_unix[i])
			set_nodelay(fd);
		if (L->nclients >= lc->max_clients) {
			static const char busy[] = "NO too many clients\r\n";

			if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* nothing more to do for it */
			}
			close(fd);
			continue;
		}
		c = cbv_calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->pfd = -1;
		c->profile = lc->profile;
		c->next = L->clients;
		if (L->clients != NULL)
			L->clients->prev = c;
		L->clients = c;
		L->nclients++;
		/* "XCBV": cbvd's extensions (docs/callout-protocol.md); callout.mfl
		 * only matches "OK.*". */
		reply(c, "OK mailfromd callout server ready (cbvd " CBV_VERSION " XCBV)");
	}
}

/* ---- the loop ---- */

/*
 * The client part of this turn's pollfds, from index n; returns the new
 * count.  *busy is set when a client has buffered input to parse (its
 * RUN just ended), so poll() must not wait.
 */
static size_t client_pollfds(struct loop *L, size_t n, int *busy)
{
	for (struct client *c = L->clients; c != NULL; c = c->next) {
		short ev = 0;

		if (c->olen > 0)
			ev |= POLLOUT;
		if (c->inlen < CBVD_IN_MAX && c->olen < CBVD_OUT_HIGH)
			ev |= POLLIN;
		else
			ev |= POLLRDHUP; /* still notice a client that leaves */
		if (c->resume)
			*busy = 1;
		c->pfd = (int)n;
		L->pfds[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
	}
	return n;
}

/*
 * The running verifications' pollfds, from index n; returns the new
 * count and lowers *wake to the earliest time one must be processed.
 */
static size_t job_pollfds(struct loop *L, size_t n, int64_t *wake)
{
	for (struct job *j = L->running.head; j != NULL; j = j->next) {
		int64_t w = 0;
		int k = cbv_verify_pollfds(j->v, L->pfds + n, CBV_VERIFY_POLLFDS_MAX, &w);

		if (k < 0) { /* done without telling us: process at once */
			k = 0;
			w = 1;
		}
		j->pfd_off = (int)n;
		j->npfd = k;
		j->wake = w;
		n += (size_t)k;
		if (w != 0 && w < *wake)
			*wake = w;
	}
	return n;
}

/* poll()'s timeout: 0 when busy, -1 with nothing to wake for, else at most 60 s. */
static int poll_timeout(int64_t wake, int busy)
{
	int64_t now = cbv_now_ms();

	if (busy)
		return 0;
	if (wake == INT64_MAX)
		return -1;
	if (wake <= now)
		return 0;
	return wake - now > 60000 ? 60000 : (int)(wake - now);
}

/* Phase 1: verifications with events or past their wake time. */
static void process_jobs(struct loop *L, int64_t now)
{
	struct job *j, *jnext;

	for (j = L->running.head; j != NULL; j = jnext) {
		int ev = 0;

		jnext = j->next;
		if (j->pfd_off < 0)
			continue;
		for (int k = 0; k < j->npfd; k++)
			ev |= L->pfds[j->pfd_off + k].revents;
		if (ev == 0 && j->wake > now)
			continue;
		cbv_verify_process(j->v, L->pfds + j->pfd_off, j->npfd);
		if (cbv_verify_done(j->v)) {
			struct cbv_result *res = cbv_verify_take_result(j->v);

			job_done(L, j, res);
			cbv_result_free(res);
		}
	}
	for (j = L->running.head; j != NULL; j = j->next)
		j->pfd_off = -1;
}

/* Phase 2: clients read, parse and write; the dead are freed. */
static void process_clients(struct loop *L)
{
	struct client *c, *cnext;

	for (c = L->clients; c != NULL; c = cnext) {
		cnext = c->next;
		if (!c->dead && c->pfd >= 0)
			client_process(L, c, L->pfds[c->pfd].revents);
		else if (!c->dead && c->resume)
			client_process(L, c, 0);
		c->pfd = -1;
		if (c->dead)
			client_free(L, c);
	}
}

/* Phase 4: queued verifications start, oldest first, up to max_inflight. */
static void start_queued(struct loop *L)
{
	struct client *c, *cnext;

	while (L->inflight < L->lc->max_inflight && L->queue.head != NULL) {
		struct job *j = L->queue.head;

		if (j->grp != NULL) {
			if (!group_start(L, j->grp))
				break; /* it waits for room, and the queue behind it */
			continue;
		}
		jl_remove(&L->queue, j);
		job_start(L, j);
	}
	/* Clients whose RUN ended here (bad syntax ends at once) are dealt
	 * with at the top of the next turn; dead ones are freed now. */
	for (c = L->clients; c != NULL; c = cnext) {
		cnext = c->next;
		if (c->dead)
			client_free(L, c);
	}
}

/*
 * Phase 5: what this turn wrote to each client goes out, one send(2) per
 * client.  A client whose input parse_input() held back (CBVD_OUT_HIGH
 * reached within the turn) and whose output is now below it parses again
 * next turn; one that said QUIT is closed once its answer is out.
 */
static void flush_clients(struct loop *L)
{
	struct client *c, *cnext;

	for (c = L->clients; c != NULL; c = cnext) {
		int held = c->olen >= CBVD_OUT_HIGH;

		cnext = c->next;
		if (!c->dead && c->olen > 0)
			flush(c);
		if (held && !c->dead && !c->running && c->olen < CBVD_OUT_HIGH && c->inlen > 0)
			c->resume = 1;
		if (c->closing && c->olen == 0)
			c->dead = 1;
		if (c->dead)
			client_free(L, c);
	}
}

/*
 * One turn: poll everything, then the five phases in their order.  The
 * signal pipe and the listeners sit at fixed indexes, set once by
 * cbvd_loop_run(); clients and verifications change every turn (a
 * machine asks for other fds as it moves on), so they are rebuilt.
 * Returns 0, or -1 if poll() failed.
 */
static int loop_turn(struct loop *L)
{
	const struct cbvd_loop_conf *lc = L->lc;
	size_t n = 1 + lc->nlisten;
	int64_t wake = INT64_MAX;
	int r, busy = 0;

	n = client_pollfds(L, n, &busy);
	n = job_pollfds(L, n, &wake);
	n = group_pollfds(L, n, &wake);
	n = cbvd_metrics_pollfds(lc->metrics, L->pfds, n, &wake);
	{
		int64_t idle = cbv_verify_idle(); /* parked sessions past session_idle: QUIT */

		if (idle < wake)
			wake = idle;
	}
	r = poll(L->pfds, (nfds_t)n, poll_timeout(wake, busy));
	if (r < 0) {
		if (errno == EINTR)
			return 0;
		cbv_log(CBV_LOG_ERR, "cbvd: poll: %s", strerror(errno));
		return -1;
	}
	if (L->pfds[0].revents & POLLIN) {
		char b[16];

		if (read(lc->signal_fd, b, sizeof(b)) > 0)
			L->stop = 1;
	}
	process_jobs(L, cbv_now_ms());
	process_groups(L, cbv_now_ms());
	cbvd_metrics_process(lc->metrics, L->pfds); /* never waits: non-blocking, bounded */
	process_clients(L);
	for (size_t i = 0; i < lc->nlisten; i++) /* phase 3 */
		if (L->pfds[1 + i].revents & POLLIN)
			accept_clients(L, i);
	start_queued(L);
	flush_clients(L);
	return 0;
}

int cbvd_loop_run(const struct cbvd_loop_conf *lc)
{
	struct loop L;

	memset(&L, 0, sizeof(L));
	L.lc = lc;
	L.pfd_cap = 1 + lc->nlisten + lc->max_clients +
	            (size_t)lc->max_inflight * CBV_VERIFY_POLLFDS_MAX + CBVD_METRICS_PFDS;
	L.pfds = cbv_calloc(L.pfd_cap, sizeof(*L.pfds));
	if (L.pfds == NULL) {
		cbv_log(CBV_LOG_ERR, "cbvd: out of memory");
		return 1;
	}
	L.pfds[0] = (struct pollfd){ .fd = lc->signal_fd, .events = POLLIN };
	for (size_t i = 0; i < lc->nlisten; i++)
		L.pfds[1 + i] = (struct pollfd){ .fd = lc->listen_fds[i], .events = POLLIN };
	while (!L.stop && loop_turn(&L) == 0)
		;
	cbv_log(CBV_LOG_INFO, "cbvd: shutting down: %zu clients, %zu running, %zu queued",
	        L.nclients, L.inflight, L.queue.n);
	while (L.clients != NULL)
		client_free(&L, L.clients);
	group_cancel_all(&L);
	while (L.running.head != NULL) { /* detached ones (L.stop: no more are) */
		struct job *j = L.running.head;
		jl_remove(&L.running, j);
		job_free(j);
	}
	cbv_free(L.pfds);
	return 0;
}
