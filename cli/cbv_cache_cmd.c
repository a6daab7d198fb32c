/*
 * cbv_cache_cmd.c - `cbv cache`: look into and maintain the verification
 * cache that cbv.so, cbvd and `cbv verify` share (core/cbv_cache.h).
 *
 *   cbv cache [-c FILE] [-p PROFILE] [-o KEY=VALUE]... [--json] COMMAND
 *     show ADDRESS|DOMAIN   the records that answer it, in full
 *     list                  every record, one line (or JSON object) each
 *     forget ADDRESS|DOMAIN delete its records (a domain: all of them)
 *     purge                 delete expired records and stale leases
 *     stats                 records by kind and verdict, file size, map use,
 *                           and the counters every process using the store
 *                           keeps there (verdicts, cache answers, caps,
 *                           durations); --prometheus: only those, in
 *                           Prometheus text format (node_exporter textfile)
 *
 * The store is the profile's `cache` path, read from the same cbv.conf as
 * cbv.so.  A store that does not exist is never created here (root
 * running `cbv cache show` must not leave a file behind, and there is
 * nothing to show); one that exists is opened by the core, which does so
 * with the directory owner's identity when run as root.
 *
 * Exit: 0 done; 1 show found no record; 64 usage, config error or the
 * cache off in the profile; 66 no store at the path; 69 the store cannot
 * be used (not LMDB, another format, no permission); 70 out of memory.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cbv.h"
#include "cbv_cli.h"

#define EX_NOSTORE 66
#define EX_UNUSABLE 69
#define EX_NOMEM 70

static void cache_usage(FILE *f)
{
	fputs("usage: cbv cache [-c FILE] [-p PROFILE] [-o KEY=VALUE]... [--json] COMMAND\n"
	      "  show ADDRESS|DOMAIN    the records that answer it\n"
	      "  list                   every record, one line each\n"
	      "  forget ADDRESS|DOMAIN  delete its records\n"
	      "  purge                  delete expired records\n"
	      "  stats                  records by kind and verdict, size, map use, counters\n"
	      "                         (--prometheus: counters in Prometheus text format)\n",
	      f);
}

/*
 * The core's log lines on stderr.  Its "unusable" line ends in
 * "; verifying without it", which is what a verification does; here
 * nothing is verified, the command just stops.
 */
static void log_stderr(enum cbv_log_level level, const char *line, void *arg)
{
	static const char tail[] = "; verifying without it";
	size_t n = strlen(line), tl = sizeof(tail) - 1;

	(void)arg;
	(void)level;
	if (n >= tl && strcmp(line + n - tl, tail) == 0)
		n -= tl;
	fputs("cbv: ", stderr);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)line[i];

		if (ch < 0x20 || ch == 0x7f)
			fprintf(stderr, "\\x%02x", ch);
		else
			fputc(ch, stderr);
	}
	fputc('\n', stderr);
}

/* ISO 8601 UTC of a wall-clock time in ms. */
static const char *iso(int64_t ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, n, "?");
	return buf;
}

/* A span in seconds as 1d2h3m4s (0s for 0). */
static const char *span(int64_t s, char *buf, size_t n)
{
	static const struct {
		char unit;
		int64_t secs;
	} u[] = {
		{ 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 }
	};
	size_t o = 0;

	buf[0] = '\0';
	if (s < 0)
		s = 0;
	for (size_t i = 0; i < sizeof(u) / sizeof(u[0]) && o < n; i++) {
		int64_t q = s / u[i].secs;

		if (q == 0 && !(i == 3 && o == 0))
			continue;
		int w = snprintf(buf + o, n - o, "%lld%c", (long long)q, u[i].unit);

		if (w < 0)
			break;
		o += (size_t)w;
		s -= q * u[i].secs;
	}
	return buf;
}

struct walk {
	const char *local; /* show ADDRESS: the RCPT local part; NULL = all */
	int json, full;    /* full: show's block; else list's one line */
	int64_t now_ms;
	long shown;
};

/* 1 if an address record's RCPT local part is w->local. */
static int wanted(const struct walk *w, const struct cbv_cache_rec *rec)
{
	const char *rcpt = rec->s[CBV_CS_RCPT], *at;

	if (w->local == NULL || rec->kind != CBV_CACHE_ADDRESS)
		return 1; /* domain facts answer every address of their domain */
	at = strrchr(rcpt, '@');
	return at != NULL && (size_t)(at - rcpt) == strlen(w->local) &&
	       memcmp(rcpt, w->local, (size_t)(at - rcpt)) == 0;
}

static const char *entry_name(const struct cbv_cache_entry *e)
{
	const struct cbv_cache_rec *r = &e->rec;

	if (r->kind != CBV_CACHE_ADDRESS)
		return e->domain;
	return r->s[CBV_CS_ADDRESS][0] != '\0' ? r->s[CBV_CS_ADDRESS] : r->s[CBV_CS_RCPT];
}

static void print_json_entry(const struct cbv_cache_entry *e, int64_t now)
{
	static const enum cbv_cache_str text[] = { CBV_CS_ADDRESS, CBV_CS_RCPT, CBV_CS_SENDER,
		                                   CBV_CS_MESSAGE, CBV_CS_ECODE, CBV_CS_HOST,
		                                   CBV_CS_IP, CBV_CS_GREETING, CBV_CS_HELO,
		                                   CBV_CS_SENT, CBV_CS_RECV, CBV_CS_TLS };
	const struct cbv_cache_rec *r = &e->rec;
	char t1[32], t2[32];

	printf("{\"kind\":\"%s\",\"domain\":", cbv_cache_kind_name(r->kind));
	cbv_cli_put_json(stdout, e->domain);
	printf(",\"status\":\"%s\",\"reason\":", cbv_verdict_name(r->verdict));
	cbv_cli_put_json(stdout, r->s[CBV_CS_REASON]);
	for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
		printf(",\"%s\":", cbv_cache_str_name(text[i]));
		cbv_cli_put_json(stdout, r->s[text[i]]);
	}
	printf(",\"code\":%u,\"port\":%u,\"hosts_tried\":%u,\"elapsed_ms\":%lu,"
	       "\"stored\":\"%s\",\"expires\":\"%s\",\"age\":%lld,\"expired\":%s}\n",
	       r->code, r->port, r->hosts_tried, (unsigned long)r->elapsed_ms,
	       iso(r->stored_ms, t1, sizeof(t1)), iso(r->expires_ms, t2, sizeof(t2)),
	       (long long)(now > r->stored_ms ? (now - r->stored_ms) / 1000 : 0),
	       e->expired ? "true" : "false");
}

/* list: KIND NAME sender=<S> STATUS/REASON stored= expires= age=: MESSAGE */
static void print_line_entry(const struct cbv_cache_entry *e, int64_t now)
{
	const struct cbv_cache_rec *r = &e->rec;
	char t1[32], t2[32], a[32];

	printf("%s ", cbv_cache_kind_name(r->kind));
	cbv_cli_put_escaped(stdout, entry_name(e));
	fputs(" sender=<", stdout);
	cbv_cli_put_escaped(stdout, r->s[CBV_CS_SENDER]);
	printf("> %s/", cbv_verdict_name(r->verdict));
	cbv_cli_put_escaped(stdout, r->s[CBV_CS_REASON]);
	printf(" stored=%s expires=%s%s age=%s: ", iso(r->stored_ms, t1, sizeof(t1)),
	       iso(r->expires_ms, t2, sizeof(t2)), e->expired ? "(expired)" : "",
	       span((now - r->stored_ms) / 1000, a, sizeof(a)));
	cbv_cli_put_escaped(stdout, r->s[CBV_CS_MESSAGE]);
	putchar('\n');
}

/* One "name  value" row of show; the lines of a multi-line value indented. */
static void row(const char *name, const char *value)
{
	printf("  %-12s", name);
	for (const char *p = value; *p != '\0'; p++) {
		if (*p == '\n') {
			printf("\n  %-12s", "");
		} else if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			printf("\\x%02x", (unsigned char)*p);
		} else {
			putchar(*p);
		}
	}
	putchar('\n');
}

static void print_full_entry(const struct cbv_cache_entry *e, int64_t now)
{
	static const enum cbv_cache_str poll[] = { CBV_CS_HOST, CBV_CS_IP, CBV_CS_GREETING,
		                                   CBV_CS_HELO, CBV_CS_SENT, CBV_CS_RECV,
		                                   CBV_CS_TLS };
	const struct cbv_cache_rec *r = &e->rec;
	char b[64], t[32], s[32];

	printf("%s ", r->kind == CBV_CACHE_ADDRESS ? "address" : "domain");
	cbv_cli_put_escaped(stdout, entry_name(e));
	putchar('\n');
	row("kind", cbv_cache_kind_name(r->kind));
	if (r->kind != CBV_CACHE_ADDRESS)
		row("learned from", r->s[CBV_CS_ADDRESS]);
	row("rcpt", r->s[CBV_CS_RCPT]);
	snprintf(b, sizeof(b), "<%.60s>", r->s[CBV_CS_SENDER]);
	if (strlen(r->s[CBV_CS_SENDER]) <= 60)
		row("sender", b);
	else
		row("sender", r->s[CBV_CS_SENDER]);
	row("status", cbv_verdict_name(r->verdict));
	row("reason", r->s[CBV_CS_REASON]);
	row("message", r->s[CBV_CS_MESSAGE]);
	row("ecode", r->s[CBV_CS_ECODE]);
	for (size_t i = 0; i < sizeof(poll) / sizeof(poll[0]); i++)
		row(cbv_cache_str_name(poll[i]), r->s[poll[i]]);
	snprintf(b, sizeof(b), "%lums, %u host(s) tried", (unsigned long)r->elapsed_ms,
	         r->hosts_tried);
	row("elapsed", b);
	row("stored", iso(r->stored_ms, t, sizeof(t)));
	if (e->expired)
		snprintf(b, sizeof(b), "%s (expired %s ago)", iso(r->expires_ms, t, sizeof(t)),
		         span((now - r->expires_ms) / 1000, s, sizeof(s)));
	else
		snprintf(b, sizeof(b), "%s (in %s)", iso(r->expires_ms, t, sizeof(t)),
		         span((r->expires_ms - now) / 1000, s, sizeof(s)));
	row("expires", b);
	row("age", span((now - r->stored_ms) / 1000, s, sizeof(s)));
}

static int print_entry(const struct cbv_cache_entry *e, void *arg)
{
	struct walk *w = arg;

	if (!wanted(w, &e->rec))
		return 0;
	if (w->json)
		print_json_entry(e, w->now_ms);
	else if (w->full) {
		if (w->shown > 0)
			putchar('\n');
		print_full_entry(e, w->now_ms);
	} else {
		print_line_entry(e, w->now_ms);
	}
	w->shown++;
	return 0;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * ADDRESS or DOMAIN -> the domain its records are kept under (the map
 * applied, lower-case A-labels) and, for an address, its local part as
 * sent.  Returns 0, or prints why not and returns -1.
 */
static int target(const struct cbv_profile *p, const char *arg, char *domain, char *local)
{
	struct cbv_err err;
	struct cbv_addr a;
	char mapped[CBV_DOMAIN_MAX + 1];

	local[0] = '\0';
	if (strchr(arg, '@') != NULL) {
		if (cbv_addr_parse(arg, strlen(arg), &a, &err) != CBV_OK) {
			fprintf(stderr, "cbv: cache: %s: %s\n", arg, err.msg);
			return -1;
		}
		snprintf(local, CBV_LOCALPART_MAX + 1, "%s", a.local);
		snprintf(domain, CBV_DOMAIN_MAX + 1, "%s", a.domain);
	} else if (cbv_addr_check_domain(arg, strlen(arg), domain, &err) != CBV_OK) {
		fprintf(stderr, "cbv: cache: %s: %s\n", arg, err.msg);
		return -1;
	}
	if (cbv_map_lookup(p->map, domain, mapped) == 1)
		snprintf(domain, CBV_DOMAIN_MAX + 1, "%s", mapped);
	return 0;
}

/* Human size: 1.5 MiB. */
static const char *size_text(unsigned long long n, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", v, unit[u]);
	return buf;
}

/* JSON: one object, left open for the counters (the caller closes it). */
static void print_stats(const char *path, const struct cbv_cache_stats *st, int json)
{
	unsigned long total = 0;
	char b1[32], b2[32], b3[32];
	double pct = st->map_bytes > 0 ? 100.0 * (double)st->used_bytes / (double)st->map_bytes
	                               : 0.0;

	for (int k = CBV_CACHE_ADDRESS; k <= CBV_CACHE_KIND_MAX; k++)
		total += st->by_kind[k];
	if (json) {
		fputs("{\"cache\":", stdout);
		cbv_cli_put_json(stdout, path);
		printf(",\"records\":%lu", total);
		for (int k = CBV_CACHE_ADDRESS; k <= CBV_CACHE_KIND_MAX; k++)
			printf(",\"%s\":%lu", cbv_cache_kind_name((enum cbv_cache_kind)k),
			       st->by_kind[k]);
		for (int v = CBV_PASS; v <= CBV_ERROR; v++)
			printf(",\"%s\":%lu", cbv_verdict_name((enum cbv_verdict)v), st->by_verdict[v]);
		printf(",\"expired\":%lu,\"damaged\":%lu,\"leases\":%lu,\"buckets\":%lu,"
		       "\"file_bytes\":%llu,\"map_bytes\":%llu,\"used_bytes\":%llu",
		       st->expired, st->damaged, st->leases, st->buckets, st->file_bytes,
		       st->map_bytes, st->used_bytes);
		return;
	}
	printf("cache      %s\n", path);
	printf("records    %lu:", total);
	for (int k = CBV_CACHE_ADDRESS; k <= CBV_CACHE_KIND_MAX; k++)
		printf("%s %s %lu", k == CBV_CACHE_ADDRESS ? "" : ",",
		       cbv_cache_kind_name((enum cbv_cache_kind)k), st->by_kind[k]);
	printf("\naddresses ");
	for (int v = CBV_PASS; v <= CBV_ERROR; v++)
		printf("%s %s %lu", v == CBV_PASS ? "" : ",", cbv_verdict_name((enum cbv_verdict)v),
		       st->by_verdict[v]);
	printf("\nexpired    %lu (removed by `cbv cache purge`)\n", st->expired);
	printf("damaged    %lu\n", st->damaged);
	printf("leases     %lu flights and slots, %lu rate buckets\n", st->leases, st->buckets);
	if (cbv_cache_is_redis(path)) {
		/* Redis: its whole memory (not only our keys) and maxmemory (0 = none) */
		printf("redis      %s used_memory, maxmemory %s\n",
		       size_text(st->used_bytes, b2, sizeof(b2)),
		       st->map_bytes > 0 ? size_text(st->map_bytes, b3, sizeof(b3)) : "none");
		return;
	}
	printf("file       %s (%llu bytes)\n", size_text(st->file_bytes, b1, sizeof(b1)),
	       st->file_bytes);
	printf("map        %s in use of %s (%.1f%%)\n", size_text(st->used_bytes, b2, sizeof(b2)),
	       size_text(st->map_bytes, b3, sizeof(b3)), pct);
}

/*
 * 0 if a store exists at path; else prints why not and returns
 * EX_NOSTORE.  Nothing is created: only looked at.
 */
static int store_exists(const char *path)
{
	struct stat st;
	char dir[CBV_PATH_MAX + 1];
	const char *slash;

	if (lstat(path, &st) == 0)
		return 0;
	if (errno != ENOENT) {
		fprintf(stderr, "cbv: cache %s: %s\n", path, strerror(errno));
		return EX_UNUSABLE;
	}
	slash = strrchr(path, '/');
	snprintf(dir, sizeof(dir), "%.*s", slash != NULL && slash != path ? (int)(slash - path) : 1,
	         slash != NULL ? path : ".");
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		fprintf(stderr, "cbv: cache %s: its directory %s is missing: the cache is off "
		                "until it exists\n",
		        path, dir);
	else
		fprintf(stderr, "cbv: cache %s: no store yet (it is made by the first cached "
		                "verification)\n",
		        path);
	return EX_NOSTORE;
}

/* The store's counters (cbv_stats.h), after print_stats(); JSON: one object, no newline. */
static void print_counters(const struct cbv_stats *s, int json)
{
	uint64_t n = 0, c = 0;
	const char *sep = "";

	for (size_t i = 0; i <= CBV_STATS_BUCKETS; i++)
		c += s->bucket[i];
	if (json) {
		printf("{\"verifications\":{");
		for (int v = CBV_PASS; v <= CBV_ERROR; v++)
			for (int r = 0; r < CBV_R_COUNT; r++)
				if (s->verifications[v][r] > 0) {
					printf("%s\"%s/%s\":%llu", sep, cbv_verdict_name((enum cbv_verdict)v),
					       cbv_reason_name((enum cbv_reason)r),
					       (unsigned long long)s->verifications[v][r]);
					sep = ",";
				}
		printf("},\"cache_requests\":{");
		for (int b = 0; b < CBV_STATS_BACKENDS; b++)
			for (int l = 0; l < CBV_STATS_LOOKUPS; l++)
				printf("%s\"%s/%s\":%llu", b + l == 0 ? "" : ",",
				       cbv_stats_backend_name((enum cbv_stats_backend)b),
				       cbv_stats_lookup_name((enum cbv_stats_lookup)l),
				       (unsigned long long)s->cache[b][l]);
		printf("},\"rate_limited\":{");
		for (int k = 0; k < CBV_STATS_CAPS; k++)
			printf("%s\"%s\":%llu", k == 0 ? "" : ",",
			       cbv_stats_cap_name((enum cbv_stats_cap)k),
			       (unsigned long long)s->limited[k]);
		printf("},\"redis_outages\":%llu,\"duration_count\":%llu,\"duration_sum_us\":%llu}",
		       (unsigned long long)s->redis_outages, (unsigned long long)c,
		       (unsigned long long)s->sum_us);
		return;
	}
	for (int v = CBV_PASS; v <= CBV_ERROR; v++)
		for (int r = 0; r < CBV_R_COUNT; r++)
			n += s->verifications[v][r];
	printf("verified   %llu (counted by every process using this store)\n",
	       (unsigned long long)n);
	for (int v = CBV_PASS; v <= CBV_ERROR; v++)
		for (int r = 0; r < CBV_R_COUNT; r++)
			if (s->verifications[v][r] > 0)
				printf("  %-9s %-17s %llu\n", cbv_verdict_name((enum cbv_verdict)v),
				       cbv_reason_name((enum cbv_reason)r),
				       (unsigned long long)s->verifications[v][r]);
	printf("lookups   ");
	for (int b = 0; b < CBV_STATS_BACKENDS; b++)
		for (int l = 0; l < CBV_STATS_LOOKUPS; l++)
			if (s->cache[b][l] > 0) {
				printf("%s %s %s %llu", sep, cbv_stats_backend_name((enum cbv_stats_backend)b),
				       cbv_stats_lookup_name((enum cbv_stats_lookup)l),
				       (unsigned long long)s->cache[b][l]);
				sep = ",";
			}
	if (sep[0] == '\0')
		printf(" none");
	printf("\nlimited   ");
	for (int k = 0; k < CBV_STATS_CAPS; k++)
		printf("%s %s %llu", k == 0 ? "" : ",", cbv_stats_cap_name((enum cbv_stats_cap)k),
		       (unsigned long long)s->limited[k]);
	printf("\noutages    %llu Redis outages\n", (unsigned long long)s->redis_outages);
	printf("durations  %llu, mean %.3f s; by bucket (s):", (unsigned long long)c,
	       c > 0 ? (double)s->sum_us / 1e6 / (double)c : 0.0);
	for (size_t i = 0; i <= CBV_STATS_BUCKETS; i++)
		if (s->bucket[i] > 0)
			printf(" <=%s %llu", cbv_stats_bucket_le(i), (unsigned long long)s->bucket[i]);
	printf("\n");
}

int cbv_cache_cmd(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'P' },
		{ "config", required_argument, NULL, 'c' },
		{ "profile", required_argument, NULL, 'p' },
		{ "option", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = CBV_CONF_DEFAULT, *profile = NULL, *cmd, *arg = NULL;
	char **opts = NULL;
	int prometheus = 0;
	int nopts = 0, json = 0, explicit_path = 0, have_profile = 0, c, nargs;
	int rc = CBV_EX_USAGE;
	struct cbv_config *conf = NULL;
	struct cbv_cache *cache = NULL;
	struct cbv_profile p;

	opts = calloc((size_t)argc + 1, sizeof(*opts));
	if (opts == NULL)
		return EX_NOMEM;
	while ((c = getopt_long(argc, argv, "c:p:o:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			explicit_path = 1;
			break;
		case 'p':
			profile = optarg;
			break;
		case 'o':
			opts[nopts++] = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'P':
			prometheus = 1;
			break;
		case 'h':
			cache_usage(stdout);
			rc = 0;
			goto done;
		default:
			cache_usage(stderr);
			goto done;
		}
	}
	if (optind >= argc) {
		cache_usage(stderr);
		goto done;
	}
	cmd = argv[optind];
	nargs = argc - optind - 1;
	if (strcmp(cmd, "show") == 0 || strcmp(cmd, "forget") == 0) {
		if (nargs != 1) {
			fprintf(stderr, "cbv: cache %s: expects ADDRESS or DOMAIN\n", cmd);
			goto done;
		}
		arg = argv[optind + 1];
	} else if (strcmp(cmd, "list") == 0 || strcmp(cmd, "purge") == 0 ||
	           strcmp(cmd, "stats") == 0) {
		if (nargs != 0) {
			fprintf(stderr, "cbv: cache %s: takes no argument\n", cmd);
			goto done;
		}
	} else {
		fprintf(stderr, "cbv: cache: unknown command \"%s\"\n", cmd);
		cache_usage(stderr);
		goto done;
	}

	cbv_log_set(log_stderr, NULL, CBV_LOG_WARN);
	if (cbv_cli_profile(path, explicit_path, profile, opts, nopts, &conf, &p, &have_profile) != 0)
		goto done;
	if (p.cache[0] == '\0') {
		fprintf(stderr, "cbv: cache: the cache is off in profile \"%s\" (cache = \"\")\n",
		        p.name);
		goto done;
	}
	if (!cbv_cache_is_redis(p.cache) && (rc = store_exists(p.cache)) != 0)
		goto done;
	cache = cbv_cache_new(p.cache, (size_t)p.cache_size);
	if (cache != NULL) {
		/* Redis: no fallback here; the tool looks at Redis itself */
		struct cbv_cache_opts o = { p.cache_timeout_ms, p.cache_prefix,
			                    p.cache_password_file, NULL };

		if (cbv_cache_set_options(cache, &o) != 0) {
			cbv_cache_free(cache);
			cache = NULL;
		}
	}
	if (cache == NULL) {
		fprintf(stderr, "cbv: out of memory\n");
		rc = EX_NOMEM;
		goto done;
	}
	if (!cbv_cache_usable(cache)) {
		fprintf(stderr, "cbv: cache %s cannot be used\n", p.cache);
		rc = EX_UNUSABLE;
		cbv_cache_free(cache);
		cache = NULL;
		goto done;
	}
	rc = EX_UNUSABLE; /* what any -1 from the store below means */
	if (strcmp(cmd, "show") == 0 || strcmp(cmd, "list") == 0) {
		char domain[CBV_DOMAIN_MAX + 1], local[CBV_LOCALPART_MAX + 1];
		struct walk w = { .json = json, .full = cmd[0] == 's', .now_ms = wall_ms() };

		if (arg != NULL) {
			if (target(&p, arg, domain, local) != 0) {
				rc = CBV_EX_USAGE;
				goto done;
			}
			w.local = local[0] != '\0' ? local : NULL;
		}
		if (cbv_cache_each(cache, arg != NULL ? domain : NULL, print_entry, &w) < 0)
			goto done;
		if (arg != NULL && w.shown == 0) {
			fprintf(stderr, "cbv: cache: no record for %s\n", arg);
			rc = 1;
			goto done;
		}
	} else if (strcmp(cmd, "forget") == 0) {
		char domain[CBV_DOMAIN_MAX + 1], local[CBV_LOCALPART_MAX + 1];
		long n;

		if (target(&p, arg, domain, local) != 0) {
			rc = CBV_EX_USAGE;
			goto done;
		}
		n = cbv_cache_forget(cache, domain, local[0] != '\0' ? local : NULL);
		if (n < 0)
			goto done;
		printf("forgot %ld record(s) of %s\n", n, arg);
	} else if (strcmp(cmd, "purge") == 0) {
		long n = cbv_cache_purge(cache);

		if (n < 0)
			goto done;
		printf("purged %ld expired record(s)\n", n);
	} else {
		struct cbv_cache_stats st;
		struct cbv_stats cs;

		if (cbv_cache_counters(cache, &cs) != 0)
			goto done;
		if (prometheus) {
			struct cbv_stats_info info = { "cbv", NULL, NULL, 0, 0 };
			char *text = malloc(CBV_STATS_TEXT_MAX);

			if (text == NULL) {
				rc = EX_NOMEM;
				goto done;
			}
			cbv_stats_render(&cs, &info, text, CBV_STATS_TEXT_MAX);
			fputs(text, stdout);
			free(text);
		} else {
			if (cbv_cache_stats(cache, &st) != 0)
				goto done;
			/* JSON: one object, the counters in "counters" */
			print_stats(p.cache, &st, json);
			if (json)
				fputs(",\"counters\":", stdout);
			print_counters(&cs, json);
			if (json)
				fputs("}\n", stdout);
		}
	}
	rc = 0;
done:
	if (rc == EX_UNUSABLE && cache != NULL && have_profile)
		fprintf(stderr, "cbv: cache %s: the store failed during %s\n", p.cache,
		        argv[optind]);
	fflush(stdout);
	cbv_cache_free(cache);
	if (have_profile)
		cbv_profile_clear(&p);
	cbv_config_free(conf);
	free(opts);
	return rc;
}
