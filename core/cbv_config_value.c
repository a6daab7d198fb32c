/*
 * cbv_config_value.c - the value types of config keys and the walkers
 * over a key table (struct cbv_key, cbv_config.h).
 *
 * These are the only code that knows how a key is read, defaulted and
 * written: reading a value (the file, cbv_profile_set(), cbv.so OPTIONS,
 * cbv -o), the defaults (parsed from each row's text by the same code),
 * and the check-config dump.  The rows themselves are in
 * cbv_config_keys.c.  Model: Postfix's CONFIG_*_TABLE rows in
 * mail_params.h / smtp_params.c, walked by get_mail_conf_*_table().
 *
 * Numbers never go through atoi(): every value has a min/max parser that
 * saturates instead of overflowing and names the bound it broke.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cbv_config_impl.h"
#include "cbv_map.h"
#include "cbv_reply.h"
#include "cbv_url.h"

/* Past any bound a row can have: totals saturate here, never overflow. */
#define SAT_MAX (1ULL << 62)

/* ---- numbers ---- */

/*
 * Parses len bytes of decimal digits into *out if within [min, max].
 * Returns CBV_OK or CBV_EINVAL (*out untouched).
 */
enum cbv_status cbv_uint_parse(const char *s, size_t len, unsigned min, unsigned max, unsigned *out,
                               struct cbv_err *err)
{
	char show[SHOW_MAX + 1];
	unsigned long long v = 0;

	cbv_sanitize(s, len, show, sizeof(show));
	if (len == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty number");
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return cbv_err_set(err, CBV_EINVAL, "\"%s\" is not a number", show);
		/* Saturate: any value past max is as wrong as the next. */
		if (v <= max)
			v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < min || v > max)
		return cbv_err_set(err, CBV_EINVAL, "%s out of range %u..%u", show, min, max);
	*out = (unsigned)v;
	return CBV_OK;
}

/* Exim's time units (readconf_readtime()), largest first. */
static const struct {
	char unit;
	unsigned long long ms;
} time_units[] = {
	{ 'w', 7ULL * 86400 * 1000 }, { 'd', 86400 * 1000 }, { 'h', 3600 * 1000 },
	{ 'm', 60 * 1000 },           { 's', 1000 },
};

/*
 * Parses an Exim duration (30s, 1m30s, 500ms, bare seconds) into *ms,
 * saturated at SAT_MAX.  Returns CBV_OK or CBV_EINVAL.
 */
static enum cbv_status parse_time(const char *s, size_t len, unsigned long long *ms,
                                  struct cbv_err *err)
{
	char show[SHOW_MAX + 1];
	unsigned long long total = 0;
	size_t i = 0;

	cbv_sanitize(s, len, show, sizeof(show));
	if (len == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty duration");
	while (i < len) {
		unsigned long long v = 0, mult = 0;
		size_t digits = 0;

		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++)
			v = v > SAT_MAX / 10 ? SAT_MAX : v * 10 + (unsigned)(s[i] - '0');
		if (digits == 0)
			goto bad;
		/* A number without unit is seconds. */
		if (i == len) {
			mult = 1000;
		} else if (s[i] == 'm' && i + 1 < len && s[i + 1] == 's') {
			mult = 1;
			i += 2;
		} else {
			for (size_t u = 0; u < sizeof(time_units) / sizeof(time_units[0]); u++)
				if (s[i] == time_units[u].unit)
					mult = time_units[u].ms;
			if (mult == 0)
				goto bad;
			i++;
		}
		if (v > SAT_MAX / mult)
			total = SAT_MAX;
		else if (total <= SAT_MAX)
			total += v * mult;
	}
	*ms = total > SAT_MAX ? SAT_MAX : total;
	return CBV_OK;
bad:
	return cbv_err_set(err, CBV_EINVAL,
	                   "\"%s\" is not a duration (such as 30s, 2m, 1m30s, 500ms)", show);
}

/* Writes ms in Exim's form (1m30s, 500ms, 7d) into buf. */
static void format_time(unsigned long long ms, char *buf, size_t n)
{
	unsigned long long secs = ms / 1000;
	size_t used = 0;

	buf[0] = '\0';
	if (ms == 0) {
		snprintf(buf, n, "0"); /* a bare number is seconds: right for both kinds */
		return;
	}
	if (ms % 1000 != 0) {
		snprintf(buf, n, "%llums", ms);
		return;
	}
	for (size_t i = 0; i < sizeof(time_units) / sizeof(time_units[0]) && used < n; i++) {
		unsigned long long u = time_units[i].ms / 1000;

		if (secs >= u) {
			int w = snprintf(buf + used, n - used, "%llu%c", secs / u,
			                 time_units[i].unit);

			used += w > 0 ? (size_t)w : 0;
			secs %= u;
		}
	}
}

/* Checks a duration of ms milliseconds against [min, max] (in ms). */
static enum cbv_status time_bounds(const char *s, size_t len, unsigned long long ms,
                                   unsigned long long min, unsigned long long max,
                                   struct cbv_err *err)
{
	char show[SHOW_MAX + 1], lim[64];

	cbv_sanitize(s, len, show, sizeof(show));
	if (ms < min && ms == 0)
		return cbv_err_set(err, CBV_EINVAL, "duration \"%s\" must be more than 0", show);
	if (ms < min) {
		format_time(min, lim, sizeof(lim));
		return cbv_err_set(err, CBV_EINVAL, "duration \"%s\" shorter than %s", show, lim);
	}
	if (ms > max) {
		/* Timeouts have always said their bound in seconds. */
		if (max < 7ULL * 86400 * 1000)
			snprintf(lim, sizeof(lim), "%llus", max / 1000);
		else
			format_time(max, lim, sizeof(lim));
		return cbv_err_set(err, CBV_EINVAL, "duration \"%s\" longer than %s", show, lim);
	}
	return CBV_OK;
}

/*
 * Parses an Exim duration into milliseconds, 0 < *ms <= CBV_TIMEOUT_MAX_MS.
 * Returns CBV_OK or CBV_EINVAL.
 */
enum cbv_status cbv_duration_parse(const char *s, size_t len, unsigned *ms, struct cbv_err *err)
{
	unsigned long long v;
	enum cbv_status st;

	if ((st = parse_time(s, len, &v, err)) != CBV_OK ||
	    (st = time_bounds(s, len, v, 1, CBV_TIMEOUT_MAX_MS, err)) != CBV_OK)
		return st;
	*ms = (unsigned)v;
	return CBV_OK;
}

/* Size suffixes, 1024-based as in Exim and LMDB's mapsize. */
static const struct {
	char unit;
	unsigned long long mult;
} size_units[] = { { 'G', 1ULL << 30 }, { 'M', 1ULL << 20 }, { 'K', 1ULL << 10 } };

/* Writes a size with the largest exact suffix: 256M, 1536K, 100. */
static void format_size(unsigned long long v, char *buf, size_t n)
{
	for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		if (v != 0 && v % size_units[i].mult == 0) {
			snprintf(buf, n, "%llu%c", v / size_units[i].mult, size_units[i].unit);
			return;
		}
	}
	snprintf(buf, n, "%llu", v);
}

/* Parses "4096", "64K", "256M", "2G" (suffix caseless) within [min, max]. */
static enum cbv_status parse_size(const char *s, size_t len, unsigned long long min,
                                  unsigned long long max, uint64_t *out, struct cbv_err *err)
{
	char show[SHOW_MAX + 1], lo[32], hi[32];
	unsigned long long v = 0, mult = 1;
	size_t i = 0, digits;

	cbv_sanitize(s, len, show, sizeof(show));
	if (len == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty size");
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		v = v > SAT_MAX / 10 ? SAT_MAX : v * 10 + (unsigned)(s[i] - '0');
	digits = i;
	if (digits > 0 && i + 1 == len) {
		mult = 0;
		for (size_t u = 0; u < sizeof(size_units) / sizeof(size_units[0]); u++)
			if ((s[i] & ~0x20) == size_units[u].unit)
				mult = size_units[u].mult;
		i++;
	}
	if (digits == 0 || i != len || mult == 0)
		return cbv_err_set(err, CBV_EINVAL,
		                   "\"%s\" is not a size (such as 4096, 64K, 256M, 2G)", show);
	v = v > SAT_MAX / mult ? SAT_MAX : v * mult;
	if (v < min || v > max) {
		format_size(min, lo, sizeof(lo));
		format_size(max, hi, sizeof(hi));
		return cbv_err_set(err, CBV_EINVAL, "%s out of range %s..%s", show, lo, hi);
	}
	*out = v;
	return CBV_OK;
}

/* Parses "N/DURATION" (60/1m) or "0" (unlimited); N <= max. */
static enum cbv_status parse_rate(const char *s, size_t len, unsigned long long max,
                                  struct cbv_rate *out, struct cbv_err *err)
{
	char show[SHOW_MAX + 1];
	const char *slash = memchr(s, '/', len);
	unsigned long long per;
	unsigned n;
	struct cbv_err e;

	cbv_sanitize(s, len, show, sizeof(show));
	if (cbv_uint_parse(s, slash != NULL ? (size_t)(slash - s) : len, 0,
	                   max > UINT32_MAX ? UINT32_MAX : (unsigned)max, &n, &e) != CBV_OK)
		return cbv_err_set(err, CBV_EINVAL,
		                   "\"%s\": count %s (write N/DURATION such as 60/1m)", show,
		                   e.msg);
	if (n == 0) {
		out->count = 0;
		out->per_ms = 0;
		return CBV_OK;
	}
	if (slash == NULL)
		return cbv_err_set(err, CBV_EINVAL, "\"%s\": write N/DURATION such as 60/1m", show);
	if (parse_time(slash + 1, (size_t)(s + len - slash - 1), &per, &e) != CBV_OK ||
	    time_bounds(slash + 1, (size_t)(s + len - slash - 1), per, 1, 7ULL * 86400 * 1000,
	                &e) != CBV_OK)
		return cbv_err_set(err, CBV_EINVAL, "\"%s\": %s", show, e.msg);
	out->count = n;
	out->per_ms = (unsigned)per;
	return CBV_OK;
}

/* Returns the index of s in the NULL-terminated words (caseless) or -1. */
int cbv_config_word(const char *const *words, const char *s)
{
	for (int i = 0; words[i] != NULL; i++)
		if (strcasecmp(words[i], s) == 0)
			return i;
	return -1;
}

/* Copies s[0..len) into out (n bytes); CBV_EINVAL if it does not fit. */
enum cbv_status cbv_config_put(const char *s, size_t len, char *out, size_t n, struct cbv_err *err)
{
	if (len >= n)
		return cbv_err_set(err, CBV_EINVAL, "longer than %zu bytes", n - 1);
	memcpy(out, s, len);
	out[len] = '\0';
	return CBV_OK;
}

/* Names travel in "key=value" option strings and into ${acl{NAME}}, so
 * nothing but letters, digits and the bytes in extra. */
const struct cbv_key *cbv_config_key_find(const struct cbv_key *keys, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* ---- reading values ---- */

/* Where a row's field lives in the struct at base. */
#define FIELD(base, k, type) ((type *)(void *)((char *)(base) + (k)->offset))
#define COUNT(base, k)       ((size_t *)(void *)((char *)(base) + (k)->count_offset))

/* Calls fn on each comma- or space-separated piece of s. */
static enum cbv_status split_items(const char *s, size_t len,
                                   enum cbv_status (*fn)(const struct cbv_key *k, void *base,
                                                         const char *item, size_t ilen,
                                                         struct cbv_err *err),
                                   const struct cbv_key *k, void *base, struct cbv_err *err)
{
	size_t i = 0, start;
	enum cbv_status st;

	while (i < len) {
		while (i < len && strchr(", \t", s[i]) != NULL)
			i++;
		start = i;
		while (i < len && strchr(", \t", s[i]) == NULL)
			i++;
		if (i > start && (st = fn(k, base, s + start, i - start, err)) != CBV_OK)
			return st;
	}
	return CBV_OK;
}

/* One deny_networks item: a prefix, or "nonglobal" for the IANA list. */
static enum cbv_status net_item(const struct cbv_key *k, void *base, const char *s, size_t len,
                                struct cbv_err *err)
{
	struct cbv_cidr *v = FIELD(base, k, struct cbv_cidr);
	size_t *n = COUNT(base, k);

	if (len == 9 && strncasecmp(s, "nonglobal", 9) == 0) {
		if (*n + CBV_NONGLOBAL_COUNT > k->max)
			return cbv_err_set(err, CBV_EINVAL, "more than %llu networks", k->max);
		*n += cbv_cidr_nonglobal(v + *n, CBV_NONGLOBAL_COUNT);
		return CBV_OK;
	}
	if (*n >= k->max)
		return cbv_err_set(err, CBV_EINVAL, "more than %llu networks", k->max);
	return cbv_cidr_parse(s, len, &v[(*n)++], err);
}

static enum cbv_status dns_item(const struct cbv_key *k, void *base, const char *s, size_t len,
                                struct cbv_err *err)
{
	return cbv_url_dns_server_add(FIELD(base, k, char), k->size, s, len, err);
}

/* NETS, DNS and LIST values: a list, each item checked as it is read. */
static enum cbv_status parse_list(struct lexer *lx, const struct cbv_key *k, void *base)
{
	char item[CBV_CONFIG_LINE_MAX + 1];
	struct list l;
	struct cbv_err e;
	enum cbv_status st;
	int r;

	if (k->type == CBV_KEY_DNS)
		FIELD(base, k, char)[0] = '\0';
	else
		*COUNT(base, k) = 0;
	if ((st = cbv_config_lx_list_open(lx, &l)) != CBV_OK)
		return st;
	while ((r = cbv_config_lx_list_item(lx, &l, &st)) == 1) {
		if (k->type == CBV_KEY_NETS) {
			st = split_items(lx->tok.text, lx->tok.len, net_item, k, base, &e);
		} else if (k->type == CBV_KEY_DNS) {
			st = split_items(lx->tok.text, lx->tok.len, dns_item, k, base, &e);
		} else if (*COUNT(base, k) >= k->max) {
			st = cbv_err_set(&e, CBV_EINVAL, "more than %llu values", k->max);
		} else {
			st = k->check != NULL
			             ? k->check(lx->tok.text, lx->tok.len, item, k->size, &e)
			             : cbv_config_put(lx->tok.text, lx->tok.len, item, k->size, &e);
			if (st == CBV_OK)
				memcpy(FIELD(base, k, char) + k->size * (*COUNT(base, k))++, item,
				       strlen(item) + 1);
		}
		if (st == CBV_ENOMEM)
			return cbv_config_lx_oom(lx->err);
		if (st != CBV_OK)
			return cbv_config_lx_error(lx, lx->tok.line, lx->tok.col, "%s", e.msg);
	}
	return r < 0 ? st : CBV_OK;
}

/* Reads map = [ PATTERN = "REPLACEMENT" ... ] into a new map. */
static enum cbv_status parse_map(struct lexer *lx, const struct cbv_key *k, void *base)
{
	char pat[CBV_CONFIG_LINE_MAX + 1];
	char show[SHOW_MAX + 8];
	struct cbv_map **field = FIELD(base, k, struct cbv_map *);
	struct cbv_map *m;
	struct list l;
	struct cbv_err e;
	unsigned line, col;
	enum cbv_status st;
	int r;

	m = cbv_map_new();
	if (m == NULL)
		return cbv_config_lx_oom(lx->err);
	if ((st = cbv_config_lx_list_open(lx, &l)) != CBV_OK)
		goto done;
	while ((r = cbv_config_lx_list_item(lx, &l, &st)) == 1) {
		line = lx->tok.line;
		col = lx->tok.col;
		memcpy(pat, lx->tok.text, lx->tok.len + 1);
		if ((st = cbv_config_lx_next(lx)) != CBV_OK)
			goto done;
		if (lx->tok.type != TOK_EQUALS) {
			st = cbv_config_lx_error(lx, lx->tok.line, lx->tok.col,
			                         "expected '=' after a map pattern, got %s",
			                         cbv_config_lx_show(lx, show, sizeof(show)));
			goto done;
		}
		if ((st = cbv_config_lx_next(lx)) != CBV_OK)
			goto done;
		if (!cbv_config_lx_is_value(lx)) {
			st = cbv_config_lx_error(lx, lx->tok.line, lx->tok.col,
			                         "expected a replacement after '=', got %s",
			                         cbv_config_lx_show(lx, show, sizeof(show)));
			goto done;
		}
		st = cbv_map_add(m, pat, lx->tok.text, &e);
		if (st == CBV_ENOMEM) {
			cbv_config_lx_oom(lx->err);
			goto done;
		}
		if (st != CBV_OK) {
			st = cbv_config_lx_error(lx, line, col, "%s", e.msg);
			goto done;
		}
	}
	if (r < 0)
		goto done;
	if (cbv_map_count(m) == 0) {
		cbv_map_free(m);
		m = NULL;
	}
	cbv_map_free(*field);
	*field = m;
	m = NULL;
done:
	cbv_map_free(m);
	return st;
}

/* Builds "must be a, b or c" from a word list. */
static void must_be(const char *const *words, char *buf, size_t n)
{
	size_t used = (size_t)snprintf(buf, n, "must be");

	for (size_t i = 0; words[i] != NULL && used < n; i++) {
		int w = snprintf(buf + used, n - used, "%s %s",
		                 i == 0         ? ""
		                 : words[i + 1] ? ","
		                                : " or",
		                 words[i]);

		used += w > 0 ? (size_t)w : 0;
	}
}

/* A scalar value s[0..len) for row k, stored into base. */
static enum cbv_status parse_scalar(const struct cbv_key *k, void *base, const char *s, size_t len,
                                    struct cbv_err *e)
{
	static const char *const bools[] = { "no", "yes", "false", "true", "0", "1", NULL };
	char show[SHOW_MAX + 1], words[256];
	unsigned long long v;
	enum cbv_status st;
	int i;

	cbv_sanitize(s, len, show, sizeof(show));
	switch (k->type) {
	case CBV_KEY_STRING:
		if (k->check != NULL)
			return k->check(s, len, FIELD(base, k, char), k->size, e);
		return cbv_config_put(s, len, FIELD(base, k, char), k->size, e);
	case CBV_KEY_BOOL:
		if ((i = cbv_config_word(bools, s)) < 0)
			return cbv_err_set(e, CBV_EINVAL, "\"%s\": must be yes or no", show);
		*FIELD(base, k, int) = i % 2;
		return CBV_OK;
	case CBV_KEY_UINT:
	case CBV_KEY_PORT:
		return cbv_uint_parse(s, len, k->type == CBV_KEY_PORT ? 1 : (unsigned)k->min,
		                      k->type == CBV_KEY_PORT ? 65535 : (unsigned)k->max,
		                      FIELD(base, k, unsigned), e);
	case CBV_KEY_MS:
	case CBV_KEY_SECS:
		if ((st = parse_time(s, len, &v, e)) != CBV_OK)
			return st;
		if (k->type == CBV_KEY_MS) {
			if ((st = time_bounds(s, len, v, k->min, k->max, e)) == CBV_OK)
				*FIELD(base, k, unsigned) = (unsigned)v;
			return st;
		}
		if ((st = time_bounds(s, len, v, k->min * 1000, k->max * 1000, e)) != CBV_OK)
			return st;
		if (v % 1000 != 0)
			return cbv_err_set(e, CBV_EINVAL, "duration \"%s\": whole seconds only",
			                   show);
		*FIELD(base, k, unsigned) = (unsigned)(v / 1000);
		return CBV_OK;
	case CBV_KEY_SIZE: return parse_size(s, len, k->min, k->max, FIELD(base, k, uint64_t), e);
	case CBV_KEY_RATE: return parse_rate(s, len, k->max, FIELD(base, k, struct cbv_rate), e);
	case CBV_KEY_ENUM:
		if ((i = cbv_config_word(k->words, s)) < 0) {
			must_be(k->words, words, sizeof(words));
			return cbv_err_set(e, CBV_EINVAL, "\"%s\": %s", show, words);
		}
		if (k->size > 0)
			return cbv_config_put(k->words[i], strlen(k->words[i]),
			                      FIELD(base, k, char), k->size, e);
		*FIELD(base, k, int) = i;
		return CBV_OK;
	default: return cbv_err_set(e, CBV_EINVAL, "not a scalar key");
	}
}

/* Reads the value of row k from the next token into the struct at base. */
enum cbv_status cbv_config_key_parse(struct lexer *lx, const struct cbv_key *k, void *base)
{
	char show[SHOW_MAX + 8];
	unsigned line, col;
	struct cbv_err e;
	enum cbv_status st;

	/* dns_servers = 127.0.0.1,[::1]:53 must work bare, as with -o. */
	lx->ipv6_words = k->type == CBV_KEY_DNS;
	st = cbv_config_lx_next(lx);
	lx->ipv6_words = 0;
	if (st != CBV_OK)
		return st;
	if (k->type == CBV_KEY_MAP)
		return parse_map(lx, k, base);
	if (k->type == CBV_KEY_NETS || k->type == CBV_KEY_DNS || k->type == CBV_KEY_LIST) {
		lx->ipv6_words = k->type == CBV_KEY_DNS;
		st = parse_list(lx, k, base);
		lx->ipv6_words = 0;
		return st;
	}
	line = lx->tok.line;
	col = lx->tok.col;
	/* Scalars: one word or string; `-o key=` means the empty string. */
	if (!cbv_config_lx_is_value(lx) && !(lx->set_mode && lx->tok.type == TOK_EOF))
		return cbv_config_lx_error(lx, line, col, "expected a value, got %s",
		                           cbv_config_lx_show(lx, show, sizeof(show)));
	cbv_err_clear(&e);
	st = parse_scalar(k, base, lx->tok.text, lx->tok.len, &e);
	if (st == CBV_ENOMEM)
		return cbv_config_lx_oom(lx->err);
	if (st != CBV_OK)
		return cbv_config_lx_error(lx, line, col, "%s", e.msg);
	return CBV_OK;
}

/* Sets every row to its default: the row's text through the value parser. */
void cbv_config_keys_defaults(const struct cbv_key *keys, size_t n, void *base)
{
	struct lexer lx;
	struct cbv_err err;

	for (size_t i = 0; i < n; i++) {
		if (keys[i].def == NULL)
			continue;
		cbv_config_lx_init(&lx, keys[i].def, strlen(keys[i].def), "default", &err);
		lx.set_mode = 1;
		lx.key = keys[i].name;
		/* check_config's defaults_parse test proves every default parses. */
		(void)cbv_config_key_parse(&lx, &keys[i], base);
	}
}

/* ---- writing values ---- */

/* Output buffer for cbv_config_keys_format(): counts when buf is NULL. */
struct out {
	char *buf;
	size_t len;
};

static void out_str(struct out *o, const char *s, size_t len)
{
	if (o->buf != NULL)
		memcpy(o->buf + o->len, s, len);
	o->len += len;
}

static void out_cstr(struct out *o, const char *s)
{
	out_str(o, s, strlen(s));
}

/* Writes s as a "string" with \" and \\ escaped. */
static void out_quoted(struct out *o, const char *s)
{
	out_cstr(o, "\"");
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			out_cstr(o, "\\");
		out_str(o, s, 1);
	}
	out_cstr(o, "\"");
}

/* Writes "  name = value\n" for row k of the struct at base. */
static void format_key(struct out *o, const struct cbv_key *k, const void *base)
{
	void *b = (void *)(uintptr_t)base; /* FIELD() is read-only here */
	char tmp[128];
	const char *pat, *rep;
	size_t n;
	int i;

	out_cstr(o, "  ");
	out_cstr(o, k->name);
	out_cstr(o, " = ");
	tmp[0] = '\0';
	switch (k->type) {
	case CBV_KEY_STRING:
	case CBV_KEY_DNS: out_quoted(o, FIELD(b, k, char)); break;
	case CBV_KEY_BOOL: out_cstr(o, *FIELD(b, k, int) ? "yes" : "no"); break;
	case CBV_KEY_UINT:
	case CBV_KEY_PORT: snprintf(tmp, sizeof(tmp), "%u", *FIELD(b, k, unsigned)); break;
	case CBV_KEY_MS: format_time(*FIELD(b, k, unsigned), tmp, sizeof(tmp)); break;
	case CBV_KEY_SECS: format_time(1000ULL * *FIELD(b, k, unsigned), tmp, sizeof(tmp)); break;
	case CBV_KEY_SIZE: format_size(*FIELD(b, k, uint64_t), tmp, sizeof(tmp)); break;
	case CBV_KEY_RATE: {
		const struct cbv_rate *r = FIELD(b, k, struct cbv_rate);
		char per[64];

		format_time(r->per_ms, per, sizeof(per));
		if (r->count == 0)
			snprintf(tmp, sizeof(tmp), "0");
		else
			snprintf(tmp, sizeof(tmp), "%u/%s", r->count, per);
		break;
	}
	case CBV_KEY_ENUM:
		if (k->size > 0) {
			out_quoted(o, FIELD(b, k, char));
			break;
		}
		i = *FIELD(b, k, int);
		for (n = 0; k->words[n] != NULL; n++)
			;
		out_cstr(o, k->words[i >= 0 && (size_t)i < n ? (size_t)i : 0]);
		break;
	case CBV_KEY_NETS:
		out_cstr(o, "[");
		for (size_t j = 0; j < *COUNT(b, k); j++) {
			cbv_cidr_format(&FIELD(b, k, struct cbv_cidr)[j], tmp, sizeof(tmp));
			out_cstr(o, " ");
			out_cstr(o, tmp);
		}
		out_cstr(o, " ]");
		tmp[0] = '\0';
		break;
	case CBV_KEY_LIST:
		out_cstr(o, "[");
		for (size_t j = 0; j < *COUNT(b, k); j++) {
			out_cstr(o, " ");
			out_quoted(o, FIELD(b, k, char) + j * k->size);
		}
		out_cstr(o, " ]");
		break;
	case CBV_KEY_MAP:
		n = cbv_map_count(*FIELD(b, k, struct cbv_map *));
		out_cstr(o, "[");
		for (size_t j = 0; j < n; j++) {
			cbv_map_entry(*FIELD(b, k, struct cbv_map *), j, &pat, &rep);
			out_cstr(o, "\n    ");
			out_quoted(o, pat);
			out_cstr(o, " = ");
			out_quoted(o, rep);
		}
		out_cstr(o, n > 0 ? "\n  ]" : " ]");
		break;
	}
	out_cstr(o, tmp);
	out_cstr(o, "\n");
}

static void format_block(struct out *o, const struct cbv_key *keys, size_t n, const void *base,
                         const char *head)
{
	out_cstr(o, head);
	out_cstr(o, " {\n");
	for (size_t i = 0; i < n; i++)
		format_key(o, &keys[i], base);
	out_cstr(o, "}\n");
}

/* Writes a block into a new string (cbv_free()); NULL on ENOMEM. */
char *cbv_config_keys_format(const struct cbv_key *keys, size_t n, const void *base,
                             const char *head)
{
	struct out o = { NULL, 0 };

	/* Two passes: measure, then write; a map can be long. */
	format_block(&o, keys, n, base, head);
	o.buf = cbv_malloc(o.len + 1);
	if (o.buf == NULL)
		return NULL;
	o.len = 0;
	format_block(&o, keys, n, base, head);
	o.buf[o.len] = '\0';
	return o.buf;
}
