/*
 * cbv - command-line SMTP callback verification.
 *
 *   cbv verify [-c FILE] [-p PROFILE] [-f SENDER] [-o KEY=VALUE]... [--json] [-v]
 *              [-S URL [-R REST]] ADDRESS...
 *   cbv check-config [-c FILE] [-p PROFILE]
 *   cbv cache [-c FILE] [-p PROFILE] [-o KEY=VALUE]... [--json] COMMAND  (cbv_cache_cmd.c)
 *
 * One line per address: ADDRESS STATUS REASON MESSAGE, control characters
 * escaped as \xHH so a result never spans lines; or one JSON object per
 * line with --json.  Exit: 0 all pass; else 1 if any fail, else 2 if any
 * transient, else 3 (error); 64 for usage or config errors.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cbv.h"
#include "cbv_cli.h"

#define EX_USAGE_CBV 64

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: cbv verify [-c FILE] [-p PROFILE] [-f SENDER] [-o KEY=VALUE]... [--json] [-v]\n"
	        "                  [-S|--server URL [-R|--rest REST]] ADDRESS...\n"
	        "       cbv check-config [-c FILE] [-p PROFILE]\n"
	        "       cbv cache [-c FILE] [-p PROFILE] [-o KEY=VALUE]... [--json]\n"
	        "                 show ADDRESS|DOMAIN | list | forget ADDRESS|DOMAIN | purge | stats\n"
	        "       cbv --version\n"
	        "Default config: %s (missing file = built-in defaults)\n",
	        CBV_CONF_DEFAULT);
}

/*
 * Prints s with control and DEL bytes as \xHH, so one result stays on one
 * line.  8-bit bytes go out as they are: the address is the caller's own
 * argument, and core text is sanitized already (remote text) or UTF-8 that
 * core validated (an IDN or a UTF-8 local part).
 */
static void put_escaped_n(FILE *f, const char *s, size_t len)
{
	char buf[4 * 256 + 1]; /* an escape is at most 4 bytes */

	for (size_t off = 0; off < len; off += 256) {
		cbv_text_escape(s + off, len - off < 256 ? len - off : 256, buf, sizeof(buf), 0);
		fputs(buf, f);
	}
}

static void put_escaped(FILE *f, const char *s)
{
	put_escaped_n(f, s, strlen(s));
}

/* Prints s as a JSON string (RFC 8259). */
static void put_json(FILE *f, const char *s)
{
	int utf8 = cbv_text_utf8_valid(s, strlen(s));

	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (cbv_text_is_ctl(*p))
			fprintf(f, "\\u%04x", *p);
		else if (*p >= 0x80 && !utf8)
			fputc('?', f);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void print_json(const char *address, const struct cbv_result *r)
{
	static const char *const text[] = { "status", "reason", "message", "host", "ip",
		                            "greeting", "helo", "sent", "recv", "ecode", "tls" };

	fputs("{\"address\":", stdout);
	put_json(stdout, address);
	for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
		printf(",\"%s\":", text[i]);
		put_json(stdout, cbv_result_text(r, text[i]));
	}
	printf(",\"elapsed_ms\":%lu,\"cache\":%s,\"age\":%lu}\n", r->elapsed_ms,
	       r->cache ? "true" : "false", r->age);
}

static void print_line(const char *address, const struct cbv_result *r)
{
	put_escaped(stdout, address);
	printf(" %s %s ", cbv_verdict_name(r->verdict), cbv_reason_name(r->reason));
	put_escaped(stdout, r->message);
	putchar('\n');
}

/* -v: the SMTP transcript on stderr. */
static void trace_stderr(void *arg, enum cbv_trace kind, const char *text)
{
	const char *prefix = "<<< ";

	(void)arg;
	switch (kind) {
	case CBV_TRACE_INIT:
		fputs("*** connecting to ", stderr);
		put_escaped(stderr, text);
		fputc('\n', stderr);
		return;
	case CBV_TRACE_SENT:
		prefix = ">>> ";
		break;
	default:
		break;
	}
	/* Multi-line replies: one prefixed line each. */
	fputs(prefix, stderr);
	for (const char *p = text, *nl;; p = nl + 1) {
		nl = strchr(p, '\n');
		put_escaped_n(stderr, p, nl != NULL ? (size_t)(nl - p) : strlen(p));
		if (nl == NULL)
			break;
		fprintf(stderr, "\n%s", prefix);
	}
	fputc('\n', stderr);
}

static void log_stderr(enum cbv_log_level level, const char *line, void *arg)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };

	(void)arg;
	fprintf(stderr, "cbv: %s: ", names[level]);
	put_escaped(stderr, line);
	fputc('\n', stderr);
}

/* Loads the config; prints the error and returns NULL on failure. */
static struct cbv_config *load_config(const char *path, int explicit_path)
{
	struct cbv_err err;
	/* Only the default path may be missing: -c names a file that must exist. */
	struct cbv_config *c = cbv_config_load(path, !explicit_path, NULL, &err);

	if (c == NULL) {
		fprintf(stderr, "cbv: %s\n", err.msg);
		return NULL;
	}
	return c;
}

/*
 * --server: a result for an address the callout server could not answer
 * (connection lost, deadline, protocol violation), shaped like the
 * in-process ones so output and exit codes stay the same.
 */
static struct cbv_result *synth_result(const char *address, const struct cbv_err *err)
{
	/* A lost server or a deadline came back as a result already. */
	switch (err->code) {
	case CBV_EINVAL: /* the REST string */
		return cbv_result_synth(address, CBV_FAIL, CBV_R_BAD_SYNTAX, 553, "5.1.3", err->msg);
	default:
		return cbv_result_synth(address, CBV_ERROR, CBV_R_PROTOCOL_ERROR, 451, "4.5.0", err->msg);
	}
}

/* -v with --server: the last poll record the server reported. */
static void trace_result(const struct cbv_result *r)
{
	static const char *const f[] = { "host", "ip", "greeting", "helo", "sent", "recv", NULL };

	for (int i = 0; f[i] != NULL; i++) {
		fprintf(stderr, "*** %s: ", f[i]);
		put_escaped(stderr, cbv_result_text(r, f[i]));
		fputc('\n', stderr);
	}
	fprintf(stderr, "*** cache: %d\n", r->cache);
}

/* What `cbv verify` was asked to do. */
struct verify_opts {
	const char *path, *profile, *sender;
	const char *server, *rest; /* -S, -R; NULL: verify in process */
	char **opts;               /* -o KEY=VALUE, nopts of them */
	int nopts, json, verbose, explicit_path;
};

/*
 * Reads the options into *o (o->opts is calloc'd: the caller frees it).
 * Returns 0, 1 after --help (printed), or -1 after a usage error
 * (printed); -2 if out of memory.
 */
static int verify_getopt(int argc, char **argv, struct verify_opts *o)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "config", required_argument, NULL, 'c' },
		{ "profile", required_argument, NULL, 'p' },
		{ "sender", required_argument, NULL, 'f' },
		{ "option", required_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "server", required_argument, NULL, 'S' },
		{ "rest", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->path = CBV_CONF_DEFAULT;
	o->opts = calloc((size_t)argc + 1, sizeof(*o->opts));
	if (o->opts == NULL)
		return -2;
	while ((c = getopt_long(argc, argv, "+c:p:f:o:vjhS:R:", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->path = optarg;
			o->explicit_path = 1;
			break;
		case 'p':
			o->profile = optarg;
			break;
		case 'f':
			o->sender = optarg;
			break;
		case 'o':
			o->opts[o->nopts++] = optarg;
			break;
		case 'v':
			o->verbose++;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'S':
			o->server = optarg;
			break;
		case 'R':
			o->rest = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* -S and -R are checked before anything is loaded.  0, or -1 (printed). */
static int check_server_opts(const struct verify_opts *o)
{
	struct cbv_err err;

	if (o->rest != NULL) {
		char canon[CBV_CALLOUT_REQ_MAX + 1];

		if (o->server == NULL) {
			fprintf(stderr, "cbv: -R needs -S URL\n");
			return -1;
		}
		if (cbv_callout_rest_format(o->rest, canon, sizeof(canon), &err) != CBV_OK) {
			fprintf(stderr, "cbv: -R: %s\n", err.msg);
			return -1;
		}
	}
	if (o->server != NULL) {
		struct cbv_url u;

		if (cbv_url_parse(o->server, strnlen(o->server, CBV_URL_MAX + 1), 0, &u, &err) !=
		    CBV_OK) {
			fprintf(stderr, "cbv: -S: callout URL: %s\n", err.msg);
			return -1;
		}
	}
	return 0;
}

int cbv_cli_profile(const char *path, int explicit_path, const char *profile, char **opts,
                    int nopts, struct cbv_config **conf, struct cbv_profile *p,
                    int *have_profile)
{
	*conf = load_config(path, explicit_path);
	if (*conf == NULL)
		return -1;
	if (cbv_config_profile(*conf, profile) == NULL) {
		fprintf(stderr, "cbv: %s: no profile \"%s\"\n", path, profile);
		return -1;
	}
	cbv_profile_copy(p, cbv_config_profile(*conf, profile));
	*have_profile = 1;
	for (int i = 0; i < nopts; i++) {
		struct cbv_err err;
		char *eq = strchr(opts[i], '=');

		if (eq == NULL) {
			fprintf(stderr, "cbv: -o %s: expected KEY=VALUE\n", opts[i]);
			return -1;
		}
		*eq = '\0';
		if (cbv_profile_set(p, opts[i], eq + 1, &err) != CBV_OK) {
			fprintf(stderr, "cbv: -o: %s\n", err.msg);
			return -1;
		}
	}
	return 0;
}

/* The local path: one in-process verification.  NULL (printed) if none could be made. */
static struct cbv_result *verify_local(const struct cbv_profile *p, const struct verify_opts *o,
                                       const char *address, const char *hostname)
{
	struct cbv_request req = { .address = address, .sender = o->sender, .default_helo = hostname };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	if (o->verbose)
		req.trace = trace_stderr;
	if (cbv_verify(p, &req, &r, &err) != CBV_OK) {
		fprintf(stderr, "cbv: %s: %s\n", address, err.msg);
		return NULL;
	}
	return r;
}

/*
 * The local path for n > 1 addresses: one group verification (one SMTP
 * session per domain and host), a result each into r[] (NULL, printed,
 * for all if none could be made).
 */
static void verify_local_multi(const struct cbv_profile *p, const struct verify_opts *o,
                               char **addresses, size_t n, const char *hostname,
                               struct cbv_result **r)
{
	struct cbv_request req = { .sender = o->sender, .default_helo = hostname };
	struct cbv_err err;

	if (o->verbose)
		req.trace = trace_stderr;
	if (cbv_verify_multi(p, &req, (const char *const *)addresses, n, r, &err) != CBV_OK)
		fprintf(stderr, "cbv: %s ...: %s\n", addresses[0], err.msg);
}

/*
 * The server path: one verification through the callout server, the slot
 * made on first use.  Returns the result, or NULL (printed) with *stop
 * set when nothing more can be verified: 1 for starttls = require
 * against calloutd (never weakened), -1 when no slot could be made (a
 * usage-class failure: exit 64).
 */
static struct cbv_result *verify_server(struct cbv_callout_slot **slot,
                                        const struct cbv_profile *p,
                                        const struct verify_opts *o, const char *address,
                                        const char *hostname, int *stop)
{
	struct cbv_result *r = NULL;
	struct cbv_err err;
	enum cbv_status st;

	if (*slot == NULL) {
		char sid[64];

		snprintf(sid, sizeof(sid), "cbv:%ld", (long)getpid());
		*slot = cbv_callout_slot_new(o->server, sid, &err);
		if (*slot == NULL) {
			fprintf(stderr, "cbv: --server: %s\n", err.msg);
			*stop = -1;
			return NULL;
		}
		cbv_callout_slot_configure(*slot, p, o->sender, hostname, o->verbose);
	}
	st = cbv_callout_slot_verify(*slot, address, o->rest, &r, &err);
	if (o->verbose && cbv_callout_slot_greeting(*slot)[0] != '\0')
		fprintf(stderr, "*** callout server %s: OK %s\n", o->server,
		        cbv_callout_slot_greeting(*slot));
	if (st == CBV_ECONFIG) {
		fprintf(stderr, "cbv: %s\n", err.msg);
		*stop = 1;
		return NULL;
	}
	if (st == CBV_OK) {
		if (o->verbose)
			trace_result(r);
		return r;
	}
	if (o->verbose)
		fprintf(stderr, "cbv: %s: %s\n", address, err.msg);
	r = synth_result(address, &err);
	if (r == NULL)
		fprintf(stderr, "cbv: %s: out of memory\n", address);
	return r;
}

static int cmd_verify(int argc, char **argv)
{
	struct verify_opts o;
	struct cbv_callout_slot *slot = NULL;
	struct cbv_config *conf = NULL;
	struct cbv_profile p;
	char hostname[256];
	int have_profile = 0, any_fail = 0, any_temp = 0, any_error = 0, stop = 0;
	int rc = EX_USAGE_CBV;
	enum cbv_log_level level = CBV_LOG_WARN;

	switch (verify_getopt(argc, argv, &o)) {
	case -2:
		return 70;
	case 1:
		rc = 0;
		goto done;
	case -1:
		goto done;
	}
	if (check_server_opts(&o) != 0)
		goto done;
	if (o.verbose)
		level = o.verbose >= 2 ? CBV_LOG_DEBUG : CBV_LOG_INFO;
	cbv_log_set(log_stderr, NULL, level);
	if (cbv_cli_profile(o.path, o.explicit_path, o.profile, o.opts, o.nopts, &conf, &p,
	                    &have_profile) != 0)
		goto done;
	if (gethostname(hostname, sizeof(hostname)) != 0)
		snprintf(hostname, sizeof(hostname), "localhost");
	hostname[sizeof(hostname) - 1] = '\0';

	/* in-process, the addresses go in groups of up to CBV_RCPTS_MAX: one
	 * SMTP session per domain and host for each group */
	for (int i = optind, k; i < argc && !stop; i += k) {
		struct cbv_result *rs[CBV_RCPTS_MAX] = { NULL };

		k = o.server != NULL || argc - i == 1 ? 1
		    : argc - i > CBV_RCPTS_MAX       ? CBV_RCPTS_MAX
		                                     : argc - i;
		if (o.server != NULL)
			rs[0] = verify_server(&slot, &p, &o, argv[i], hostname, &stop);
		else if (k == 1)
			rs[0] = verify_local(&p, &o, argv[i], hostname);
		else
			verify_local_multi(&p, &o, argv + i, (size_t)k, hostname, rs);
		if (stop < 0)
			goto done;
		for (int j = 0; j < k; j++) {
			struct cbv_result *r = rs[j];

			if (r == NULL) {
				any_error = 1;
				continue;
			}
			if (o.json)
				print_json(argv[i + j], r);
			else
				print_line(argv[i + j], r);
			fflush(stdout);
			any_fail |= r->verdict == CBV_FAIL;
			any_temp |= r->verdict == CBV_TRANSIENT;
			any_error |= r->verdict == CBV_ERROR;
			cbv_result_free(r);
		}
	}
	rc = any_fail ? 1 : any_temp ? 2 : any_error ? 3 : 0;
done:
	cbv_callout_slot_free(slot, 1000);
	if (have_profile)
		cbv_profile_clear(&p);
	cbv_config_free(conf);
	free(o.opts);
	return rc;
}

static int cmd_check_config(int argc, char **argv)
{
	const char *path = CBV_CONF_DEFAULT, *profile = NULL;
	int explicit_path = 0, c, rc = EX_USAGE_CBV, bad_secret = 0;
	struct cbv_config *conf;

	while ((c = getopt(argc, argv, "+c:p:h")) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			explicit_path = 1;
			break;
		case 'p':
			profile = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EX_USAGE_CBV;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EX_USAGE_CBV;
	}
	conf = load_config(path, explicit_path);
	if (conf == NULL)
		return EX_USAGE_CBV;
	printf("# %s: OK, %zu profile(s); default \"%s\"\n", path, cbv_config_count(conf),
	       cbv_config_profile(conf, NULL)->name);
	for (size_t i = 0; i < cbv_config_count(conf); i++) {
		const struct cbv_profile *p = cbv_config_at(conf, i);
		char *text;

		if (profile != NULL && strcmp(profile, p->name) != 0)
			continue;
		text = cbv_profile_format(p);
		if (text == NULL) {
			fprintf(stderr, "cbv: out of memory\n");
			goto done;
		}
		fputs(text, stdout);
		cbv_free(text);
		/* what the store would refuse at its first use, said now */
		if (p->cache_password_file[0] != '\0' && cbv_cache_is_redis(p->cache)) {
			struct cbv_err err;

			if (cbv_cache_secret_check(p->cache_password_file, &err) != CBV_OK) {
				fprintf(stderr, "cbv: %s: profile \"%s\": %s\n", path, p->name, err.msg);
				bad_secret = 1;
			}
		}
	}
	if (bad_secret)
		goto done;
	if (profile != NULL && cbv_config_profile(conf, profile) == NULL) {
		fprintf(stderr, "cbv: %s: no profile \"%s\"\n", path, profile);
		goto done;
	}
	rc = 0;
done:
	cbv_config_free(conf);
	return rc;
}

/* For the other subcommands' files (cbv_cli.h). */
void cbv_cli_put_escaped(FILE *f, const char *s)
{
	put_escaped(f, s);
}

void cbv_cli_put_json(FILE *f, const char *s)
{
	put_json(f, s);
}

int main(int argc, char **argv)
{
	/* libcbv never raises SIGPIPE itself (MSG_NOSIGNAL, its own TLS BIO);
	 * this also covers our stdout going to a closed pipe: we see EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "check-config") == 0)
		return cmd_check_config(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "cache") == 0)
		return cbv_cache_cmd(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("cbv %s\n", CBV_VERSION);
		return 0;
	}
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return EX_USAGE_CBV;
}
