/*
 * cbv_exim.c - cbv.so, the Exim adapter: ${dlfunc} entry points only.
 *
 *   ${dlfunc{/usr/lib/exim4/modules/cbv.so}{smtp_callback_verify}{ADDRESS}{SENDER}{OPTIONS}}
 *       -> pass | fail | transient | error
 *   ${dlfunc{...}{smtp_callback_verify}{A B C}{SENDER}{OPTIONS}}
 *       -> one word per address, space-separated, in order: several
 *          addresses (at most CBV_RCPTS_MAX), one session per domain
 *   ${dlfunc{...}{last_poll}{FIELD}}   one field of the last verification
 *                                      (after several: the last address's)
 *   ${dlfunc{...}{last_poll}{FIELD}{N}} address N's (1 = first) of the last call
 *   ${dlfunc{...}{last_poll}}          every field as key="value" ...
 *   ${dlfunc{...}{callout}{ADDRESS}{SENDER}{OPTIONS}}
 *       -> success | not_found | temp_failure | failure   (mailfromd names)
 *       through the profile's callout_url when set, else in-process
 *   ${dlfunc{...}{callout_open}{URL}{OPTIONS}}   -> descriptor (1..16)
 *   ${dlfunc{...}{callout_do}{FD}{ADDRESS}{REST}}
 *       -> success | not_found | temp_failure | failure
 *   ${dlfunc{...}{callout_close}{FD}}            -> ""
 *   ${dlfunc{...}{default_callout_server_url}{OPTIONS}} -> the profile's callout_url
 *   ${dlfunc{...}{preload}{OPTIONS}}   -> "": the per-process set-up now
 *       (cbv.conf, OpenSSL), for Exim's daemon to do once before it forks
 *
 * Each call turns argv into one core call and the answer into *yield.
 * Every verification outcome returns OK with the verdict word; ERROR (which
 * Exim writes to the panic log, and which makes the ACL answer 451) is kept
 * for misuse: argument count, unknown field or option, broken cbv.conf.
 *
 * State kept between calls, all in malloc'd memory this file owns (Exim
 * caches the dlopen handle for the life of the process but resets its own
 * store per message): the last poll record, a few parsed config files,
 * each re-read when the file's identity (device, inode, size, mtime)
 * changes, and the callout server connections (mailfromd's descriptors:
 * a table of CALLOUT_SLOTS, plus the one `callout` uses for callout_url).
 * Nobody keeps a pointer to an Exim string.
 *
 * Taint: text that came from the network (greeting, replies, host names
 * from DNS...) is returned with string_copy_taint(s, GET_TAINTED), so Exim
 * refuses it as a file name or command; the verdict and reason words are
 * ours and returned clean.  Remote text is never placed in a string we
 * expand: the vars_acl ACL fetches values itself through last_poll.
 *
 * Logging: the core's INFO/WARN/ERR lines go to mainlog (one INFO line per
 * verification), DEBUG lines (the SMTP transcript) to debug_printf when
 * Exim runs with -d.
 */
#define DLFUNC_IMPL
/* Exim's header has an old-style "void (*fn)()" (optionlist). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <local_scan.h>
#pragma GCC diagnostic pop

#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cbv.h"

#ifndef CBV_CONF_DEFAULT
#define CBV_CONF_DEFAULT "/etc/exim4/cbv.conf"
#endif

#define EXPORT __attribute__((visibility("default")))

/* The exported entry points (exim_dlfunc_t); nothing else leaves the .so. */
EXPORT int smtp_callback_verify(uschar **yield, int argc, uschar *argv[]);
EXPORT int last_poll(uschar **yield, int argc, uschar *argv[]);
EXPORT int callout(uschar **yield, int argc, uschar *argv[]);
EXPORT int callout_open(uschar **yield, int argc, uschar *argv[]);
EXPORT int callout_do(uschar **yield, int argc, uschar *argv[]);
EXPORT int callout_close(uschar **yield, int argc, uschar *argv[]);
EXPORT int default_callout_server_url(uschar **yield, int argc, uschar *argv[]);
EXPORT int preload(uschar **yield, int argc, uschar *argv[]);

#define OPTIONS_MAX 8192 /* bytes of one OPTIONS argument */
#define CONF_SLOTS 4     /* distinct config files cached per process */
#define CALLOUT_SLOTS 16 /* callout_open descriptors open at once */
#define CALLOUT_QUIT_MS 1000 /* wait for "OK bye" at callout_close */

/* One parsed config file and the identity of the file it came from. */
struct conf_slot {
	char *path;             /* malloc'd; NULL = free slot */
	int missing;            /* the file did not exist: built-in defaults */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct cbv_config *cfg; /* NULL when error is set */
	char *error;            /* malloc'd "FILE:LINE:COL: what", or NULL */
	unsigned long used;     /* LRU stamp */
};

static struct conf_slot slots[CONF_SLOTS];
static unsigned long slot_clock;
static struct cbv_result *last;  /* the last poll; owned, malloc'd */
/* After a call with several addresses: each one's poll, owned, in order
 * (last is polls[npolls - 1]); npolls 0 after a single one. */
static struct cbv_result *polls[CBV_RCPTS_MAX];
static size_t npolls;
static int in_vars_acl;          /* re-entry guard for vars_acl */
static char helo_default[CBV_DOMAIN_MAX + 1];

/* ---- Exim glue ---------------------------------------------------------- */

/* An untainted copy of a C string in Exim's store. */
static uschar *clean_copy(const char *s)
{
	return string_copy((const uschar *)s);
}

/* A tainted copy: for anything derived from remote data. */
static uschar *tainted_copy(const char *s)
{
	return string_copy_taint((const uschar *)s, GET_TAINTED);
}

/* ERROR with a message (Exim writes it to the panic log). */
static int misuse(uschar **yield, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int misuse(uschar **yield, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	*yield = clean_copy(msg);
	return ERROR;
}

/*
 * The core's log sink.  One mainlog line must stay one line: the newlines
 * between the lines of a multi-line reply are written as "\n", any other
 * control byte as \xHH.
 */
static void log_sink(enum cbv_log_level level, const char *line, void *arg)
{
	char out[4096];

	(void)arg;
	if (level == CBV_LOG_DEBUG) {
		if (debug_selector != 0)
			debug_printf("%s\n", line);
		return;
	}
	cbv_text_escape(line, strlen(line), out, sizeof(out), CBV_TEXT_ESC_NL);
	log_write(0, LOG_MAIN, "%s", out);
}

static void log_setup(void)
{
	static int announced; /* the version, once per Exim process */

	cbv_log_set(log_sink, NULL, debug_selector != 0 ? CBV_LOG_DEBUG : CBV_LOG_INFO);
	if (!announced++)
		log_write(0, LOG_MAIN, "cbv.so %s loaded", CBV_VERSION);
}

/* Exim's $primary_hostname, looked up once per process. */
static const char *default_helo(void)
{
	static char expr[] = "$primary_hostname";
	uschar *h;

	if (helo_default[0] == '\0') {
		h = expand_string((uschar *)expr);
		if (h != NULL)
			snprintf(helo_default, sizeof(helo_default), "%s", (const char *)h);
	}
	return helo_default[0] != '\0' ? helo_default : NULL;
}

/* ---- config cache ------------------------------------------------------- */

static void slot_clear(struct conf_slot *s)
{
	free(s->path);
	free(s->error);
	cbv_config_free(s->cfg);
	memset(s, 0, sizeof(*s));
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);

	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

/*
 * Returns the parsed config at path, loading it if it is new or its file
 * changed.  NULL with *why set (a message in slot or static storage, valid
 * until the next call) when the file is unreadable or broken.
 */
static const struct cbv_config *config_get(const char *path, int named, const char **why)
{
	static char msg[1200];
	struct conf_slot *s = NULL, *victim = &slots[0];
	struct stat st;
	int missing = 0;
	struct cbv_err err;

	if (stat(path, &st) != 0) {
		if (errno != ENOENT) {
			snprintf(msg, sizeof(msg), "%s: %s", path, strerror(errno));
			*why = msg;
			return NULL;
		}
		/* config= named a file: it must exist (only the default may not). */
		if (named) {
			snprintf(msg, sizeof(msg), "%s: %s", path, strerror(errno));
			*why = msg;
			return NULL;
		}
		memset(&st, 0, sizeof(st));
		missing = 1;
	}
	for (int i = 0; i < CONF_SLOTS; i++) {
		if (slots[i].path != NULL && strcmp(slots[i].path, path) == 0)
			s = &slots[i];
		if (slots[i].path == NULL || slots[i].used < victim->used)
			victim = &slots[i];
	}
	if (s != NULL && s->missing == missing && s->dev == st.st_dev && s->ino == st.st_ino &&
	    s->size == st.st_size && s->mtime.tv_sec == st.st_mtim.tv_sec &&
	    s->mtime.tv_nsec == st.st_mtim.tv_nsec) {
		s->used = ++slot_clock;
		*why = s->error;
		return s->cfg;
	}
	if (s == NULL)
		s = victim;
	slot_clear(s);
	s->path = xstrdup(path);
	if (s->path == NULL) {
		*why = "out of memory";
		return NULL;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->size = st.st_size;
	s->mtime = st.st_mtim;
	s->used = ++slot_clock;
	s->cfg = cbv_config_load(path, !named, &missing, &err);
	s->missing = missing;
	if (s->cfg == NULL) {
		s->error = xstrdup(err.msg);
		if (s->error == NULL) {
			slot_clear(s); /* try again next time */
			*why = "out of memory";
			return NULL;
		}
	}
	*why = s->error;
	return s->cfg;
}

/* ---- OPTIONS: key=value key="a b" --------------------------------------- */

typedef int option_fn(const char *key, const char *value, void *arg);

/*
 * Splits OPTIONS into key=value pairs and calls fn for each, stopping at
 * the first non-zero return.  Values are bare words or "quoted" with \"
 * and \\ escapes.  Returns fn's non-zero value, 0, or -1 with *why set on
 * a syntax error.
 */
static int options_walk(const char *opts, option_fn *fn, void *arg, char *why, size_t whylen)
{
	char buf[OPTIONS_MAX + 1];
	const char *p = opts;
	int rc;

	while (*p != '\0') {
		size_t k = 0, v;
		const char *key;

		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (*p == '\0')
			break;
		key = buf;
		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		       (*p >= '0' && *p <= '9') || *p == '_')
			buf[k++] = *p++;
		if (k == 0 || *p != '=') {
			snprintf(why, whylen, "expected key=value at \"%.40s\"", p);
			return -1;
		}
		buf[k++] = '\0';
		p++;
		v = k;
		if (*p == '"') {
			/* cbv.conf's strings: only \" and \\ are escapes. */
			size_t vlen, used;

			if (cbv_text_unquote(p + 1, strlen(p + 1), 0, buf + k, sizeof(buf) - k, &vlen,
			                     &used) != CBV_TEXT_UNQ_OK) {
				snprintf(why, whylen, "unterminated quote in value of %.64s", key);
				return -1;
			}
			v += vlen;
			p += 1 + used;
			if (*p != '\0' && *p != ' ' && *p != '\t') {
				snprintf(why, whylen, "junk after the quoted value of %.64s", key);
				return -1;
			}
		} else {
			while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
				buf[v++] = *p++;
		}
		buf[v] = '\0';
		rc = fn(key, buf + k, arg);
		if (rc != 0)
			return rc;
	}
	return 0;
}

struct opt_ctx {
	char config[1024];
	int config_named;          /* config= given: the file must exist */
	char profile[CBV_NAME_MAX + 1];
	struct cbv_profile *p;
	char why[512];
};

/* Pass 1: config= and profile= choose the profile the others modify. */
static int opt_select(const char *key, const char *value, void *arg)
{
	struct opt_ctx *c = arg;

	if (strcmp(key, "config") == 0) {
		if (value[0] != '/' || strlen(value) >= sizeof(c->config)) {
			snprintf(c->why, sizeof(c->why), "config=%s: must be an absolute path", value);
			return -1;
		}
		snprintf(c->config, sizeof(c->config), "%s", value);
		c->config_named = 1;
	} else if (strcmp(key, "profile") == 0) {
		if (strlen(value) >= sizeof(c->profile)) {
			snprintf(c->why, sizeof(c->why), "profile=%.40s...: name too long", value);
			return -1;
		}
		snprintf(c->profile, sizeof(c->profile), "%s", value);
	}
	return 0;
}

/* Pass 2: every other key overrides the profile copy. */
static int opt_apply(const char *key, const char *value, void *arg)
{
	struct opt_ctx *c = arg;
	struct cbv_err err;

	if (strcmp(key, "config") == 0 || strcmp(key, "profile") == 0)
		return 0;
	if (cbv_profile_set(c->p, key, value, &err) != CBV_OK) {
		snprintf(c->why, sizeof(c->why), "%s", err.msg);
		return -1;
	}
	return 0;
}

/* ---- verification ------------------------------------------------------- */

/* The vars_acl name goes into an expansion string: letters, digits, _ - only. */
static int acl_name_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

/*
 * Expands ${acl{NAME}} so the admin's ACL can copy the last poll into ACL
 * variables (Exim has no API to set them).  Only the name, checked above,
 * is in the string: the ACL reads remote text through last_poll itself.
 */
static void run_vars_acl(const char *name)
{
	char expr[CBV_NAME_MAX + 16];

	if (in_vars_acl || name[0] == '\0')
		return;
	snprintf(expr, sizeof(expr), "${acl{%s}}", name);
	in_vars_acl = 1;
	if (expand_string((uschar *)expr) == NULL)
		log_write(0, LOG_MAIN, "cbv: vars_acl %s: %s", name,
		          expand_string_message != NULL ? (const char *)expand_string_message
		                                        : "expansion failed");
	in_vars_acl = 0;
}

/*
 * 1 if s lies in Exim's tainted store (or we cannot tell), 0 if clean.
 *
 * Exim 4.96's own test, is_tainted(), is an inline in its private store.h
 * that calls is_tainted_fn(), and Debian's exim4 does not export that
 * symbol to modules.  What a module does get is store_get(size, proto):
 * Exim allocates from the tainted twin of the current pool exactly when
 * proto is tainted (data quoted for a lookup goes to a quoted pool,
 * tainted too).  The pools are bump allocators, so two tainted probes
 * give the step, and an allocation with s as its prototype lands right
 * after them iff s is tainted, or right before a clean probe iff it is
 * clean.  A block boundary can hide both: then once more, and if still
 * undecided, tainted (refusing clean OPTIONS is loud and safe; the
 * reverse is not).  The probes are released.
 */
static int exim_tainted(const void *s)
{
	/* store_mark() and store_reset() work on the clean pool and its twin
	 * only (Exim panics otherwise). */
	int can_reset = store_pool < POOL_TAINT_BASE;

	for (int attempt = 0; attempt < 2; attempt++) {
		rmark mark = can_reset ? store_mark() : NULL;
		uintptr_t t1 = (uintptr_t)store_get(1, GET_TAINTED);
		uintptr_t t2 = (uintptr_t)store_get(1, GET_TAINTED);
		uintptr_t x = (uintptr_t)store_get(1, s);
		uintptr_t u = (uintptr_t)store_get(1, GET_UNTAINTED);
		uintptr_t step = t2 - t1;
		int verdict = x == t2 + step ? 1 : u == x + step ? 0 : -1;

		if (mark != NULL)
			store_reset(mark);
		if (verdict >= 0)
			return verdict;
	}
	return 1;
}

/*
 * OPTIONS -> the profile they choose (config=, profile=) with every other
 * key applied, copied into *prof (the caller clears it with
 * cbv_profile_clear()).  Returns OK, or ERROR through misuse() with *prof
 * untouched.
 */
static int options_profile(const char *fname, const char *opts, uschar **yield,
                           struct cbv_profile *prof)
{
	struct opt_ctx *c;
	const struct cbv_config *cfg;
	const struct cbv_profile *base;
	const char *why = NULL;
	int rc;

	if (strlen(opts) > OPTIONS_MAX)
		return misuse(yield, "cbv: %s: OPTIONS longer than %d bytes", fname, OPTIONS_MAX);
	/*
	 * OPTIONS built from message or connection data ("helo=$sender_...")
	 * would hand the sender our option parser (config=, dns_servers=).
	 * ADDRESS and SENDER may be tainted: they are checked as addresses.
	 */
	if (opts[0] != '\0' && exim_tainted(opts))
		return misuse(yield,
		              "cbv: %s: OPTIONS are tainted (built from message or connection "
		              "data); pass the sender as the SENDER argument, never in OPTIONS",
		              fname);
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return misuse(yield, "cbv: %s: out of memory", fname);
	snprintf(c->config, sizeof(c->config), "%s", CBV_CONF_DEFAULT);
	rc = options_walk(opts, opt_select, c, c->why, sizeof(c->why));
	if (rc != 0) {
		rc = misuse(yield, "cbv: %s: bad OPTIONS: %s", fname, c->why);
		goto done;
	}
	cfg = config_get(c->config, c->config_named, &why);
	if (cfg == NULL) {
		rc = misuse(yield, "cbv: %s: config %s", fname, why != NULL ? why : "unusable");
		goto done;
	}
	base = cbv_config_profile(cfg, c->profile);
	if (base == NULL) {
		rc = misuse(yield, "cbv: %s: no profile \"%s\" in %s", fname, c->profile, c->config);
		goto done;
	}
	cbv_profile_copy(prof, base);
	c->p = prof;
	rc = options_walk(opts, opt_apply, c, c->why, sizeof(c->why));
	if (rc != 0) {
		cbv_profile_clear(prof);
		rc = misuse(yield, "cbv: %s: bad OPTIONS: %s", fname, c->why);
		goto done;
	}
	if (prof->vars_acl[0] != '\0' && !acl_name_ok(prof->vars_acl)) {
		rc = misuse(yield, "cbv: %s: vars_acl \"%s\" is not an ACL name", fname, prof->vars_acl);
		cbv_profile_clear(prof);
		goto done;
	}
	rc = OK;
done:
	free(c);
	return rc;
}

/* Frees the polls of the previous call. */
static void polls_clear(void)
{
	if (npolls == 0)
		cbv_result_free(last);
	for (size_t i = 0; i < npolls; i++)
		cbv_result_free(polls[i]);
	npolls = 0;
	last = NULL;
}

/* Makes r the last poll (taking it) and runs the vars_acl. */
static void set_last(struct cbv_result *r, const char *vars_acl)
{
	polls_clear();
	last = r;
	run_vars_acl(vars_acl);
}

/* ---- callout servers (mailfromd's callout_open/_do/_close) ---------------- */

/*
 * Connections to callout servers: core's cbv_callout_slot (reconnection,
 * SID and SETs, the STARTTLS words), malloc'd and kept for the life of the
 * Exim process, each with the vars_acl of the profile it was opened with.
 */
struct cslot {
	struct cbv_callout_slot *slot;
	char vars_acl[CBV_NAME_MAX + 1];
};

static struct cslot *cslots[CALLOUT_SLOTS]; /* descriptor n is cslots[n - 1] */
static struct cslot *cdefault;              /* `callout` through callout_url */

static void slot_free(struct cslot *s)
{
	if (s == NULL)
		return;
	cbv_callout_slot_free(s->slot, CALLOUT_QUIT_MS);
	free(s);
}

/* Returns a new slot for url (ERROR through misuse, *rc, on NULL). */
static struct cslot *slot_new(const char *fname, const char *url, uschar **yield, int *rc)
{
	struct cslot *s = calloc(1, sizeof(*s));
	struct cbv_err err;

	if (s == NULL) {
		*rc = misuse(yield, "cbv: %s: out of memory", fname);
		return NULL;
	}
	s->slot = cbv_callout_slot_new(url, NULL, &err);
	if (s->slot == NULL) {
		free(s);
		*rc = misuse(yield, "cbv: %s: %s", fname, err.msg);
		return NULL;
	}
	return s;
}

/* The profile's settings for the server (sender NULL: the profile's). */
static void slot_settings(struct cslot *s, const struct cbv_profile *p, const char *sender)
{
	cbv_callout_slot_configure(s->slot, p, sender, default_helo(), 0);
	snprintf(s->vars_acl, sizeof(s->vars_acl), "%s", p->vars_acl);
}

/* mailfromd's session id: "CLIENT_ADDR:" or "local:". */
static void session_id(char *sid, size_t n)
{
	static char expr[] = "$sender_host_address";
	const uschar *a = expand_string((uschar *)expr);
	size_t o = 0;

	if (a != NULL)
		for (; *a != '\0' && o + 2 < n; a++)
			if ((*a >= '0' && *a <= '9') || (*a >= 'a' && *a <= 'f') ||
			    (*a >= 'A' && *a <= 'F') || *a == '.' || *a == ':')
				sid[o++] = (char)*a;
	if (o == 0)
		o = (size_t)snprintf(sid, n, "local");
	snprintf(sid + o, n - o, ":");
}

/*
 * Verifies address through slot s with mailfromd REST parameters (may be
 * NULL): on OK, last holds the poll, the vars_acl has run and *verdict is
 * set.  A lost connection or a deadline is a transient verdict and the
 * slot reconnects next time; a peer that does not speak the protocol is
 * ERROR naming e_callout_proto, and so is starttls = require against
 * calloutd (it cannot honour it: refused, never weakened).
 */
static int slot_verify(const char *fname, struct cslot *s, const char *address, const char *rest,
                       uschar **yield, enum cbv_verdict *verdict)
{
	char canon[CBV_CALLOUT_REQ_MAX + 1], sid[64];
	struct cbv_result *r = NULL;
	struct cbv_err err;
	unsigned keys;

	log_setup();
	if (cbv_callout_rest_parse(rest, canon, sizeof(canon), &keys, &err) != CBV_OK)
		return misuse(yield, "cbv: %s: bad REST: %s", fname, err.msg);
	/*
	 * REST built from message or connection data may name the sender
	 * (MAILFROM=$sender_address), never where or how to connect: a
	 * tainted HOST would let a sender aim our callouts at any host.
	 */
	if ((keys & ~CBV_REST_MAILFROM) != 0 && exim_tainted(rest))
		return misuse(yield, "cbv: %s: REST is tainted (built from message or connection "
		              "data): only MAILFROM may come from there, not MODE, HOST or EHLO",
		              fname);
	/* callout.mfl: an empty address (after its angle brackets) is success
	 * at once, nothing asked. */
	if (address[0] == '\0' || strcmp(address, "<>") == 0) {
		r = cbv_result_synth("", CBV_PASS, CBV_R_ACCEPTED, 250, "2.1.0",
		                     "empty address: not verified (as mailfromd's callout_do)");
		if (r == NULL)
			return misuse(yield, "cbv: %s: out of memory", fname);
		*verdict = CBV_PASS;
		set_last(r, s->vars_acl);
		return OK;
	}
	session_id(sid, sizeof(sid));
	cbv_callout_slot_sid(s->slot, sid);
	if (cbv_callout_slot_verify(s->slot, address, rest, &r, &err) != CBV_OK)
		return misuse(yield, "cbv: %s: %s", fname, err.msg);
	cbv_log(CBV_LOG_INFO, "cbv: <%s> via %s: %s/%s host=%s%s elapsed=%lums: %s", r->address,
	        cbv_callout_slot_url(s->slot), cbv_verdict_name(r->verdict),
	        cbv_reason_name(r->reason), r->host[0] ? r->host : "-",
	        r->cache ? " (cache)" : "", r->elapsed_ms, r->message);
	*verdict = r->verdict;
	set_last(r, s->vars_acl);
	return OK;
}

/* ---- verification ------------------------------------------------------- */

/*
 * The SENDER and OPTIONS arguments of a verification call (argv[1],
 * argv[2]; "<>" is the null sender) -> *sender (NULL: the profile's) and
 * the profile they choose in *prof, with its vars_acl copied out.  OK, or
 * ERROR through misuse() with *prof untouched.
 */
static int call_profile(const char *fname, int argc, uschar *argv[], uschar **yield,
                        struct cbv_profile *prof, const char **sender,
                        char vars_acl[CBV_NAME_MAX + 1])
{
	const char *opts = "";
	int rc;

	if (argc >= 2 && argv[1] != NULL && argv[1][0] != '\0')
		*sender = strcmp((const char *)argv[1], "<>") == 0 ? "" : (const char *)argv[1];
	if (argc >= 3 && argv[2] != NULL)
		opts = (const char *)argv[2];
	log_setup();
	rc = options_profile(fname, opts, yield, prof);
	if (rc != OK)
		return rc;
	snprintf(vars_acl, CBV_NAME_MAX + 1, "%s", prof->vars_acl);
	return OK;
}

/*
 * The shared body of smtp_callback_verify and callout.  With via_server,
 * a profile whose callout_url is set verifies through that server (the
 * connection kept in cdefault).  On OK, *verdict is the result's verdict
 * and last holds the poll.
 */
static int do_verify(const char *fname, uschar **yield, int argc, uschar *argv[], int via_server,
                     enum cbv_verdict *verdict)
{
	struct cbv_profile prof;
	struct cbv_request req = { 0 };
	struct cbv_result *r = NULL;
	struct cbv_err err;
	const char *sender = NULL;
	char vars_acl[CBV_NAME_MAX + 1];
	int rc;

	if (argc < 1 || argc > 3)
		return misuse(yield, "cbv: %s: expects 1 to 3 arguments (ADDRESS [SENDER [OPTIONS]]), got %d",
		              fname, argc);
	rc = call_profile(fname, argc, argv, yield, &prof, &sender, vars_acl);
	if (rc != OK)
		return rc;

	if (via_server && prof.callout_url[0] != '\0') {
		if (cdefault != NULL &&
		    strcmp(cbv_callout_slot_url(cdefault->slot), prof.callout_url) != 0) {
			slot_free(cdefault);
			cdefault = NULL;
		}
		if (cdefault == NULL &&
		    (cdefault = slot_new(fname, prof.callout_url, yield, &rc)) == NULL) {
			cbv_profile_clear(&prof);
			return rc;
		}
		if (sender != NULL && strlen(sender) > CBV_PATH_MAX) {
			/* As in-process: a bad sender is error/bad_syntax, nothing sent
			 * (and never a truncated MAIL FROM). */
			cbv_profile_clear(&prof);
			r = cbv_result_synth(argv[0] != NULL ? (const char *)argv[0] : "", CBV_ERROR,
			                 CBV_R_BAD_SYNTAX, 501, "5.1.7", "sender longer than 256 octets");
			if (r == NULL)
				return misuse(yield, "cbv: %s: out of memory", fname);
			*verdict = CBV_ERROR;
			set_last(r, vars_acl);
			return OK;
		}
		slot_settings(cdefault, &prof, sender);
		cbv_profile_clear(&prof);
		return slot_verify(fname, cdefault, argv[0] != NULL ? (const char *)argv[0] : "", NULL,
		                   yield, verdict);
	}

	req.address = argv[0] != NULL ? (const char *)argv[0] : "";
	req.sender = sender;
	req.default_helo = default_helo();
	if (cbv_verify(&prof, &req, &r, &err) != CBV_OK) {
		cbv_profile_clear(&prof);
		return misuse(yield, "cbv: %s: %s", fname, err.msg);
	}
	cbv_profile_clear(&prof);
	*verdict = r->verdict;
	set_last(r, vars_acl);
	return OK;
}

/*
 * Splits ADDRESS at white space outside double quotes (a quoted local
 * part may hold spaces, RFC 5321 4.1.2) into at most max words, each
 * cut in place.  Returns the count, or max + 1 if there are more.
 */
static size_t split_addresses(char *s, char **words, size_t max)
{
	size_t n = 0;

	for (;;) {
		int quoted = 0;

		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			return n;
		if (n == max)
			return max + 1;
		words[n++] = s;
		for (; *s != '\0' && (quoted || (*s != ' ' && *s != '\t')); s++) {
			if (*s == '"')
				quoted = !quoted;
			else if (*s == '\\' && quoted && s[1] != '\0')
				s++;
		}
		if (*s != '\0')
			*s++ = '\0';
	}
}

/*
 * smtp_callback_verify with several addresses (words, n >= 2): one group
 * verification, one verdict word each.  Afterwards last_poll shows the
 * last address, and last_poll{FIELD}{N} address N.
 */
static int do_verify_multi(const char *fname, uschar **yield, int argc, uschar *argv[],
                           char **words, size_t n)
{
	struct cbv_profile prof;
	struct cbv_request req = { 0 };
	struct cbv_result *r[CBV_RCPTS_MAX];
	struct cbv_err err;
	const char *sender = NULL;
	char vars_acl[CBV_NAME_MAX + 1];
	char out[CBV_RCPTS_MAX * 16];
	size_t len = 0;
	int rc;

	rc = call_profile(fname, argc, argv, yield, &prof, &sender, vars_acl);
	if (rc != OK)
		return rc;
	req.sender = sender;
	req.default_helo = default_helo();
	if (cbv_verify_multi(&prof, &req, (const char *const *)words, n, r, &err) != CBV_OK) {
		cbv_profile_clear(&prof);
		return misuse(yield, "cbv: %s: %s", fname, err.msg);
	}
	cbv_profile_clear(&prof);
	/* our own words ("transient" is the longest): clean */
	for (size_t i = 0; i < n && len < sizeof(out); i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s", i > 0 ? " " : "",
		                        cbv_verdict_name(r[i]->verdict));
	polls_clear();
	for (size_t i = 0; i < n; i++)
		polls[i] = r[i];
	npolls = n;
	last = r[n - 1];
	run_vars_acl(vars_acl);
	*yield = clean_copy(out);
	return OK;
}

int smtp_callback_verify(uschar **yield, int argc, uschar *argv[])
{
	enum cbv_verdict v;
	int rc;

	if (argc >= 1 && argc <= 3 && argv[0] != NULL && strpbrk((const char *)argv[0], " \t")) {
		/* several addresses?  (one with a quoted space stays one) */
		char *copy = (char *)string_copy_taint(argv[0], GET_TAINTED), *words[CBV_RCPTS_MAX];
		size_t n = split_addresses(copy, words, CBV_RCPTS_MAX);

		if (n > CBV_RCPTS_MAX)
			return misuse(yield, "cbv: smtp_callback_verify: more than %d addresses",
			              CBV_RCPTS_MAX);
		if (n >= 2)
			return do_verify_multi("smtp_callback_verify", yield, argc, argv, words, n);
	}
	rc = do_verify("smtp_callback_verify", yield, argc, argv, 0, &v);

	if (rc == OK)
		*yield = clean_copy(cbv_verdict_name(v));
	return rc;
}

int callout(uschar **yield, int argc, uschar *argv[])
{
	enum cbv_verdict v;
	int rc = do_verify("callout", yield, argc, argv, 1, &v);

	if (rc == OK)
		*yield = clean_copy(cbv_verdict_mfd_name(v));
	return rc;
}

/* FD argument -> its open slot; NULL (and ERROR through misuse) otherwise. */
static struct cslot *slot_get(const char *fname, const uschar *arg, uschar **yield, int *rc)
{
	const char *a = arg != NULL ? (const char *)arg : "";
	unsigned n;
	char shown[24];

	if (cbv_uint_parse(a, strlen(a), 1, CALLOUT_SLOTS, &n, NULL) == CBV_OK && cslots[n - 1] != NULL)
		return cslots[n - 1];
	cbv_sanitize(a, strnlen(a, sizeof(shown)), shown, sizeof(shown));
	*rc = misuse(yield, "cbv: %s: bad descriptor \"%s\" (not one callout_open returned, "
	             "or closed)", fname, shown);
	return NULL;
}

int callout_open(uschar **yield, int argc, uschar *argv[])
{
	struct cbv_profile prof;
	struct cbv_err err;
	struct cslot *s;
	enum cbv_status st;
	const char *url;
	char num[16], sid[64];
	int i, rc = ERROR;

	if (argc < 1 || argc > 2 || argv[0] == NULL)
		return misuse(yield, "cbv: callout_open: expects 1 or 2 arguments (URL [OPTIONS]), got %d",
		              argc);
	url = (const char *)argv[0];
	log_setup();
	for (i = 0; i < CALLOUT_SLOTS && cslots[i] != NULL; i++)
		;
	if (i == CALLOUT_SLOTS)
		return misuse(yield, "cbv: callout_open: all %d descriptors are open (callout_close "
		              "the ones not needed)", CALLOUT_SLOTS);
	rc = options_profile("callout_open", argc >= 2 && argv[1] != NULL ? (const char *)argv[1] : "",
	                     yield, &prof);
	if (rc != OK)
		return rc;
	s = slot_new("callout_open", url, yield, &rc);
	if (s == NULL) {
		cbv_profile_clear(&prof);
		return rc;
	}
	slot_settings(s, &prof, NULL);
	cbv_profile_clear(&prof);
	session_id(sid, sizeof(sid));
	cbv_callout_slot_sid(s->slot, sid);
	st = cbv_callout_slot_connect(s->slot, &err);
	switch (st) {
	case CBV_OK:
		break;
	case CBV_ECONNECT:
	case CBV_ETIMEOUT:
		/* The server may come back: callout_do reconnects, and answers
		 * temp_failure while it cannot. */
		cbv_log(CBV_LOG_WARN, "cbv: callout_open: %s (callout_do will retry)", err.msg);
		break;
	default: /* CBV_EPROTO: "e_callout_proto: ..."; CBV_EINVAL: EHLO/MAILFROM;
	          * CBV_ECONFIG: starttls = require against calloutd */
		slot_free(s);
		return misuse(yield, "cbv: callout_open: %s", err.msg);
	}
	cslots[i] = s;
	snprintf(num, sizeof(num), "%d", i + 1);
	*yield = clean_copy(num);
	return OK;
}

int callout_do(uschar **yield, int argc, uschar *argv[])
{
	struct cslot *s;
	enum cbv_verdict v;
	int rc = ERROR;

	if (argc < 2 || argc > 3)
		return misuse(yield, "cbv: callout_do: expects 2 or 3 arguments (FD ADDRESS [REST]), got %d",
		              argc);
	s = slot_get("callout_do", argv[0], yield, &rc);
	if (s == NULL)
		return rc;
	rc = slot_verify("callout_do", s, argv[1] != NULL ? (const char *)argv[1] : "",
	                 argc >= 3 && argv[2] != NULL ? (const char *)argv[2] : NULL, yield, &v);
	if (rc == OK)
		*yield = clean_copy(cbv_verdict_mfd_name(v));
	return rc;
}

int callout_close(uschar **yield, int argc, uschar *argv[])
{
	struct cslot *s;
	int rc = ERROR;

	if (argc != 1)
		return misuse(yield, "cbv: callout_close: expects 1 argument (FD), got %d", argc);
	s = slot_get("callout_close", argv[0], yield, &rc);
	if (s == NULL)
		return rc;
	for (int i = 0; i < CALLOUT_SLOTS; i++)
		if (cslots[i] == s)
			cslots[i] = NULL;
	slot_free(s);
	*yield = clean_copy("");
	return OK;
}

/* mailfromd's default_callout_server_url(): the profile's callout_url
 * ("" when unset); OPTIONS (optional) choose config= and profile=. */
int default_callout_server_url(uschar **yield, int argc, uschar *argv[])
{
	struct cbv_profile prof;
	int rc;

	if (argc > 1)
		return misuse(yield, "cbv: default_callout_server_url: expects 0 or 1 argument "
		              "(OPTIONS), got %d", argc);
	log_setup();
	rc = options_profile("default_callout_server_url",
	                     argc == 1 && argv[0] != NULL ? (const char *)argv[0] : "", yield, &prof);
	if (rc != OK)
		return rc;
	*yield = clean_copy(prof.callout_url);
	cbv_profile_clear(&prof);
	return OK;
}

/*
 * preload: what the first verification of a process would set up once,
 * done now: OPTIONS' cbv.conf parsed and kept, $primary_hostname, and
 * with STARTTLS possible the OpenSSL context and OpenSSL's own lazy
 * set-up (2-4 ms of CPU with OpenSSL 3.0; cbv_verify_preload()).  No
 * socket, DNS channel or cache is opened, so a process may call it and
 * then fork.  Exim's daemon expands smtp_accept_max_per_host in its own
 * process before it forks each connection process, so
 *     smtp_accept_max_per_host = ${dlfunc{CBV_SO}{preload}{CBV_OPTIONS}}LIMIT
 * (LIMIT as before, or nothing for no limit) gives every connection
 * process cbv.so loaded and ready.  Later calls only stat cbv.conf.
 * Yields ""; a TLS set-up failure is logged, not an error (the first
 * STARTTLS tries again).
 */
int preload(uschar **yield, int argc, uschar *argv[])
{
	struct cbv_profile prof;
	struct cbv_err err;
	int rc;

	if (argc > 1)
		return misuse(yield, "cbv: preload: expects 0 or 1 argument (OPTIONS), got %d", argc);
	log_setup();
	rc = options_profile("preload", argc == 1 && argv[0] != NULL ? (const char *)argv[0] : "",
	                     yield, &prof);
	if (rc != OK)
		return rc;
	(void)default_helo();
	if (cbv_verify_preload(&prof, &err) != CBV_OK)
		log_write(0, LOG_MAIN, "cbv: preload: %s", err.msg);
	cbv_profile_clear(&prof);
	*yield = clean_copy("");
	return OK;
}

/* ---- last_poll ---------------------------------------------------------- */

/* Fields that are our own words or numbers, not remote data. */
static int field_is_local(const char *name)
{
	return strcmp(name, "status") == 0 || strcmp(name, "reason") == 0 ||
	       strcmp(name, "elapsed") == 0 || strcmp(name, "cache") == 0 ||
	       strcmp(name, "age") == 0;
}

/* The value of a known field of r, "" if r is NULL (no such verification). */
static const char *poll_value(const struct cbv_result *r, const char *name, char *num, size_t n)
{
	const char *t;

	if (r == NULL)
		return "";
	t = cbv_result_text(r, name);
	if (t == NULL)
		t = cbv_result_field(r, name, num, n);
	if (t == NULL) /* mailfromd's last_poll_* view: first line, "nothing" */
		t = cbv_result_mfd_field(r, name, num, n);
	return t != NULL ? t : "";
}

/* The value of a known field of the last poll, "" before the first verification. */
static const char *field_value(const char *name, char *num, size_t n)
{
	return poll_value(last, name, num, n);
}

/* Address n's (1-based) poll of the last call, NULL if it had fewer. */
static const struct cbv_result *poll_at(unsigned long n)
{
	if (npolls == 0)
		return n == 1 ? last : NULL;
	return n >= 1 && n <= npolls ? polls[n - 1] : NULL;
}

static int field_known(const char *name)
{
	static const struct cbv_result empty;
	char tmp[2];

	for (size_t i = 0; cbv_result_fields[i] != NULL; i++)
		if (strcmp(cbv_result_fields[i], name) == 0)
			return 1;
	return cbv_result_mfd_field(&empty, name, tmp, sizeof(tmp)) != NULL;
}

/* Writes v quoted for ${extract}: \ and " escaped, controls as \xHH.
 * Returns the length; writes only when out is not NULL, which the caller
 * sized by measuring the same text first (so no bound is needed here). */
static size_t quote(char *out, const char *v)
{
	return cbv_text_escape(v, strlen(v), out, out != NULL ? SIZE_MAX : 0, CBV_TEXT_ESC_QUOTE);
}

/* key="value" for every field, space-separated; out NULL = just measure. */
static size_t all_fields(char *out)
{
	char num[32];
	size_t n = 0;

	for (size_t i = 0; cbv_result_fields[i] != NULL; i++) {
		const char *k = cbv_result_fields[i];
		size_t kl = strlen(k);

		if (i > 0) {
			if (out != NULL)
				out[n] = ' ';
			n++;
		}
		if (out != NULL) {
			memcpy(out + n, k, kl);
			out[n + kl] = '=';
			out[n + kl + 1] = '"';
		}
		n += kl + 2;
		n += quote(out != NULL ? out + n : NULL, field_value(k, num, sizeof(num)));
		if (out != NULL)
			out[n] = '"';
		n++;
	}
	if (out != NULL)
		out[n] = '\0';
	return n;
}

int last_poll(uschar **yield, int argc, uschar *argv[])
{
	char num[CBV_REPLY_LINE_MAX + 1];
	const char *name;

	if (argc == 0) {
		size_t n = all_fields(NULL);
		char *out;

		if (n >= (size_t)0x7fffffff)
			return misuse(yield, "cbv: last_poll: record too large");
		out = store_get((int)n + 1, GET_TAINTED);
		all_fields(out);
		*yield = (uschar *)out;
		return OK;
	}
	if (argc < 1 || argc > 2 || argv[0] == NULL)
		return misuse(yield, "cbv: last_poll: expects 0 to 2 arguments (FIELD [N]), got %d",
		              argc);
	name = (const char *)argv[0];
	if (argc == 2) {
		/* N: which address of the last call, 1 = first */
		const char *a = argv[1] != NULL ? (const char *)argv[1] : "";
		char *end = NULL;
		unsigned long n = strtoul(a, &end, 10);

		if (a[0] < '1' || a[0] > '9' || *end != '\0' || n > CBV_RCPTS_MAX)
			return misuse(yield, "cbv: last_poll: N must be 1 to %d, not \"%.16s\"",
			              CBV_RCPTS_MAX, a);
		if (!field_known(name))
			return misuse(yield, "cbv: last_poll: unknown field \"%.64s\"", name);
		if (field_is_local(name))
			*yield = clean_copy(poll_value(poll_at(n), name, num, sizeof(num)));
		else
			*yield = tainted_copy(poll_value(poll_at(n), name, num, sizeof(num)));
		return OK;
	}
	if (!field_known(name))
		return misuse(yield, "cbv: last_poll: unknown field \"%.64s\" (status reason message "
		              "host ip greeting helo sent recv ecode tls elapsed cache age, or mailfromd's "
		              "last_poll_host _greeting _helo _sent _recv)", name);
	if (field_is_local(name))
		*yield = clean_copy(field_value(name, num, sizeof(num)));
	else
		*yield = tainted_copy(field_value(name, num, sizeof(num)));
	return OK;
}
