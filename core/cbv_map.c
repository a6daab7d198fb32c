/*
 * cbv_map.c - domain map: exact, "*." wildcard and PCRE2 entries, first
 * match wins.
 *
 * Every allocation, PCRE2's included, goes through cbv_malloc() (a PCRE2
 * general context carries our allocator), so OOM tests reach the regex
 * compiler too.  Regexes are compiled once in cbv_map_add(), caseless,
 * without UTF and without JIT: the interpreter honours both the match and
 * the depth limit, so a pathological pattern such as ^(a+)+$ costs a
 * bounded amount of work per lookup instead of hanging the ACL.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "cbv_map.h"

#include <pcre2.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cbv_addr.h"
#include "cbv_log.h"
#include "cbv_reply.h"

/* Longest pattern or replacement we keep (one config line). */
#define MAP_TEXT_MAX CBV_CONFIG_LINE_MAX
/* Bytes of a pattern or domain quoted in a message. */
#define SHOW_MAX 64

enum entry_kind { ENTRY_EXACT, ENTRY_WILDCARD, ENTRY_REGEX };

struct map_entry {
	enum entry_kind kind;
	char *pattern;     /* as given, for cbv_map_entry() */
	char *replacement; /* as given: $1..$9 and $$ expanded at lookup */
	char *key;         /* exact: the domain; wildcard: ".suffix"; lower-case */
	size_t keylen;
	pcre2_code *re;    /* ENTRY_REGEX only */
	unsigned groups;   /* capture groups in the pattern (0 unless regex) */
};

struct cbv_map {
	unsigned refs;
	struct map_entry *v;
	size_t n, cap;
	pcre2_general_context *gctx; /* routes PCRE2's memory to cbv_malloc */
	pcre2_match_context *mctx;   /* carries the match and depth limits */
};

static void *pcre_alloc(PCRE2_SIZE n, void *data)
{
	(void)data;
	return cbv_malloc(n);
}

static void pcre_release(void *p, void *data)
{
	(void)data;
	cbv_free(p);
}

static void entry_clear(struct map_entry *e)
{
	cbv_free(e->pattern);
	cbv_free(e->replacement);
	cbv_free(e->key);
	pcre2_code_free(e->re);
	memset(e, 0, sizeof(*e));
}

/* Returns a new empty map with refcount 1; NULL on ENOMEM. */
struct cbv_map *cbv_map_new(void)
{
	struct cbv_map *m = cbv_calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->refs = 1;
	m->gctx = pcre2_general_context_create(pcre_alloc, pcre_release, NULL);
	if (m->gctx == NULL)
		goto fail;
	m->mctx = pcre2_match_context_create(m->gctx);
	if (m->mctx == NULL)
		goto fail;
	pcre2_set_match_limit(m->mctx, CBV_PCRE2_MATCH_LIMIT);
	pcre2_set_depth_limit(m->mctx, CBV_PCRE2_DEPTH_LIMIT);
	return m;
fail:
	pcre2_general_context_free(m->gctx);
	cbv_free(m);
	return NULL;
}

/* Takes one more reference; returns m (NULL stays NULL). */
struct cbv_map *cbv_map_ref(struct cbv_map *m)
{
	if (m != NULL)
		m->refs++;
	return m;
}

/* Drops one reference and frees the map on the last; accepts NULL. */
void cbv_map_free(struct cbv_map *m)
{
	if (m == NULL || --m->refs > 0)
		return;
	for (size_t i = 0; i < m->n; i++)
		entry_clear(&m->v[i]);
	cbv_free(m->v);
	pcre2_match_context_free(m->mctx);
	pcre2_general_context_free(m->gctx);
	cbv_free(m);
}

/*
 * Checks the replacement against the pattern's groups: '$' must be followed
 * by '$' or by a digit 1-9 naming an existing group.  A replacement without
 * group references is a fixed domain and must be valid now, not at the
 * first lookup.
 */
static enum cbv_status check_replacement(const char *rep, unsigned groups,
                                         struct cbv_err *err)
{
	char fixed[CBV_DOMAIN_MAX + 2];
	char canon[CBV_DOMAIN_MAX + 1];
	char show[SHOW_MAX + 1];
	size_t len = strlen(rep), flen = 0;
	int refs = 0;
	struct cbv_err e;

	cbv_sanitize(rep, len, show, sizeof(show));
	for (size_t i = 0; i < len; i++) {
		if (rep[i] != '$') {
			if (flen < sizeof(fixed) - 1)
				fixed[flen++] = rep[i];
			continue;
		}
		i++;
		if (i < len && rep[i] == '$') {
			if (flen < sizeof(fixed) - 1)
				fixed[flen++] = '$';
			continue;
		}
		if (i >= len || rep[i] < '1' || rep[i] > '9')
			return cbv_err_set(err, CBV_EINVAL,
			                   "replacement \"%s\": '$' must be followed by 1-9 or '$'",
			                   show);
		if ((unsigned)(rep[i] - '0') > groups)
			return cbv_err_set(err, CBV_EINVAL,
			                   "replacement \"%s\": $%c but the pattern has %u group%s",
			                   show, rep[i], groups, groups == 1 ? "" : "s");
		refs = 1;
	}
	if (refs)
		return CBV_OK;
	if (cbv_addr_check_domain(fixed, flen, canon, &e) != CBV_OK)
		return cbv_err_set(err, CBV_EINVAL, "replacement \"%s\": %s", show, e.msg);
	return CBV_OK;
}

/* Compiles a '^' pattern into e->re and counts its groups. */
static enum cbv_status compile_regex(struct cbv_map *m, struct map_entry *e,
                                     struct cbv_err *err)
{
	pcre2_compile_context *cctx;
	PCRE2_UCHAR msg[120];
	PCRE2_SIZE off = 0;
	char show[SHOW_MAX + 1];
	uint32_t groups = 0;
	int code = 0;
	enum cbv_status st = CBV_OK;

	cctx = pcre2_compile_context_create(m->gctx);
	if (cctx == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	/* No UTF, UCP or \C: the subject is a domain, matched byte by byte. */
	e->re = pcre2_compile((PCRE2_SPTR)e->pattern, strlen(e->pattern),
	                      PCRE2_CASELESS | PCRE2_DOLLAR_ENDONLY | PCRE2_NEVER_UTF |
	                              PCRE2_NEVER_UCP | PCRE2_NEVER_BACKSLASH_C,
	                      &code, &off, cctx);
	pcre2_compile_context_free(cctx);
	if (e->re == NULL) {
		if (code == PCRE2_ERROR_HEAP_FAILED) {
			st = cbv_err_set(err, CBV_ENOMEM, "out of memory");
			goto done;
		}
		if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
			strcpy((char *)msg, "invalid regular expression");
		cbv_sanitize(e->pattern, strlen(e->pattern), show, sizeof(show));
		st = cbv_err_set(err, CBV_EINVAL, "pattern \"%s\": %s at offset %zu", show,
		                 (const char *)msg, (size_t)off);
		goto done;
	}
	if (pcre2_pattern_info(e->re, PCRE2_INFO_CAPTURECOUNT, &groups) != 0)
		groups = 0;
	e->groups = groups;
done:
	return st;
}

/* Classifies the pattern and fills e->kind, e->key or e->re. */
static enum cbv_status parse_pattern(struct cbv_map *m, struct map_entry *e,
                                     struct cbv_err *err)
{
	char canon[CBV_DOMAIN_MAX + 2]; /* room for a wildcard's leading '.' */
	char show[SHOW_MAX + 1];
	const char *p = e->pattern;
	size_t len = strlen(p);
	struct cbv_err e2;

	cbv_sanitize(p, len, show, sizeof(show));
	if (p[0] == '^') {
		e->kind = ENTRY_REGEX;
		return compile_regex(m, e, err);
	}
	if (p[0] == '*') {
		/* Exim's "*.example" form; "*example" or "a.*.b" would surprise. */
		if (p[1] != '.')
			return cbv_err_set(err, CBV_EINVAL,
			                   "pattern \"%s\": a wildcard must be \"*.\" then a domain",
			                   show);
		if (cbv_addr_check_domain(p + 2, len - 2, canon + 1, &e2) != CBV_OK)
			return cbv_err_set(err, CBV_EINVAL, "pattern \"%s\": %s", show, e2.msg);
		canon[0] = '.';
		e->kind = ENTRY_WILDCARD;
	} else {
		if (cbv_addr_check_domain(p, len, canon, &e2) != CBV_OK)
			return cbv_err_set(err, CBV_EINVAL, "pattern \"%s\": %s", show, e2.msg);
		e->kind = ENTRY_EXACT;
	}
	e->key = cbv_strdup(canon);
	if (e->key == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	e->keylen = strlen(e->key);
	return CBV_OK;
}

/* Makes room for one more entry. */
static enum cbv_status grow(struct cbv_map *m, struct cbv_err *err)
{
	struct map_entry *v;
	size_t cap;

	if (m->n < m->cap)
		return CBV_OK;
	cap = m->cap == 0 ? 8 : m->cap * 2;
	if (cap > CBV_MAP_ENTRIES_MAX)
		cap = CBV_MAP_ENTRIES_MAX;
	v = cbv_calloc(cap, sizeof(*v));
	if (v == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	if (m->n > 0)
		memcpy(v, m->v, m->n * sizeof(*v));
	cbv_free(m->v);
	m->v = v;
	m->cap = cap;
	return CBV_OK;
}

/*
 * Appends pattern = replacement after checking both (see cbv_map.h).
 * Returns CBV_OK, CBV_ENOMEM or CBV_EINVAL; the map is unchanged on error.
 */
enum cbv_status cbv_map_add(struct cbv_map *m, const char *pattern,
                            const char *replacement, struct cbv_err *err)
{
	struct map_entry e;
	size_t plen, rlen;
	enum cbv_status st;

	memset(&e, 0, sizeof(e));
	if (m == NULL || pattern == NULL || replacement == NULL)
		return cbv_err_set(err, CBV_EINVAL, "no map, pattern or replacement");
	plen = strnlen(pattern, MAP_TEXT_MAX + 1);
	rlen = strnlen(replacement, MAP_TEXT_MAX + 1);
	if (plen == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty pattern");
	if (plen > MAP_TEXT_MAX || rlen > MAP_TEXT_MAX)
		return cbv_err_set(err, CBV_EINVAL, "pattern or replacement longer than %d bytes",
		                   MAP_TEXT_MAX);
	if (m->n >= CBV_MAP_ENTRIES_MAX)
		return cbv_err_set(err, CBV_EINVAL, "more than %d map entries",
		                   CBV_MAP_ENTRIES_MAX);
	st = grow(m, err);
	if (st != CBV_OK)
		goto done;
	e.pattern = cbv_strdup(pattern);
	e.replacement = cbv_strdup(replacement);
	if (e.pattern == NULL || e.replacement == NULL) {
		st = cbv_err_set(err, CBV_ENOMEM, "out of memory");
		goto done;
	}
	st = parse_pattern(m, &e, err);
	if (st != CBV_OK)
		goto done;
	st = check_replacement(e.replacement, e.groups, err);
	if (st != CBV_OK)
		goto done;
	m->v[m->n++] = e;
	memset(&e, 0, sizeof(e));
done:
	entry_clear(&e);
	return st;
}

/* Returns the number of entries (0 for NULL). */
size_t cbv_map_count(const struct cbv_map *m)
{
	return m == NULL ? 0 : m->n;
}

/* Points *pattern and *replacement at entry i as written; valid while m lives. */
void cbv_map_entry(const struct cbv_map *m, size_t i, const char **pattern,
                   const char **replacement)
{
	*pattern = m->v[i].pattern;
	*replacement = m->v[i].replacement;
}

/*
 * Expands e's replacement with the groups in ov (ngroups pairs, group 0
 * the whole match; NULL when there are none) into out.  Returns the
 * length, or -1 if the result exceeds CBV_DOMAIN_MAX.
 */
static long expand(const struct map_entry *e, const char *subject,
                   const PCRE2_SIZE *ov, unsigned npairs, char *out)
{
	const char *r = e->replacement;
	size_t n = 0;

	for (size_t i = 0; r[i] != '\0'; i++) {
		const char *piece = r + i;
		size_t plen = 1;

		if (r[i] == '$') {
			/* cbv_map_add() checked: "$$" or "$1".."$9" within the groups. */
			i++;
			if (r[i] != '$') {
				unsigned g = (unsigned)(r[i] - '0');

				plen = 0;
				if (ov != NULL && g < npairs && ov[2 * g] != PCRE2_UNSET) {
					piece = subject + ov[2 * g];
					plen = ov[2 * g + 1] - ov[2 * g];
				}
			} else {
				piece = r + i;
			}
		}
		if (plen > CBV_DOMAIN_MAX - n)
			return -1;
		memcpy(out + n, piece, plen);
		n += plen;
	}
	out[n] = '\0';
	return (long)n;
}

/*
 * Builds the result of entry i for domain and checks it is a domain.
 * Returns 1 (out written), 0 (counts as no match, logged) or -1.
 */
static int finish(const struct map_entry *e, size_t i, const char *domain,
                  const PCRE2_SIZE *ov, unsigned npairs, char *out)
{
	char tmp[CBV_DOMAIN_MAX + 1];
	char canon[CBV_DOMAIN_MAX + 1];
	char show[SHOW_MAX + 1];
	char showres[SHOW_MAX + 1];
	long n;
	struct cbv_err err;

	n = expand(e, domain, ov, npairs, tmp);
	cbv_sanitize(domain, strlen(domain), show, sizeof(show));
	if (n < 0) {
		cbv_log(CBV_LOG_WARN, "map entry %zu: result for %s longer than %d bytes, ignored",
		        i + 1, show, CBV_DOMAIN_MAX);
		return 0;
	}
	if (cbv_addr_check_domain(tmp, (size_t)n, canon, &err) != CBV_OK) {
		cbv_sanitize(tmp, (size_t)n, showres, sizeof(showres));
		cbv_log(CBV_LOG_WARN, "map entry %zu: result \"%s\" for %s is not a domain (%s), ignored",
		        i + 1, showres, show, err.msg);
		return 0;
	}
	memcpy(out, canon, strlen(canon) + 1);
	return 1;
}

/* Runs regex entry i on domain.  Returns 1, 0 or -1 like finish(). */
static int match_regex(const struct cbv_map *m, const struct map_entry *e,
                       size_t i, const char *domain, size_t len, char *out)
{
	pcre2_match_data *md;
	char show[SHOW_MAX + 1];
	int rc, ret = 0;

	md = pcre2_match_data_create_from_pattern(e->re, m->gctx);
	if (md == NULL)
		return -1;
	rc = pcre2_match(e->re, (PCRE2_SPTR)domain, len, 0, 0, md, m->mctx);
	if (rc > 0) {
		ret = finish(e, i, domain, pcre2_get_ovector_pointer(md), (unsigned)rc, out);
	} else if (rc == PCRE2_ERROR_NOMEMORY) {
		ret = -1;
	} else if (rc != PCRE2_ERROR_NOMATCH) {
		/* Match, depth or heap limit: someone wrote a pattern that
		 * backtracks without bound.  Bounded cost, logged, no match. */
		cbv_sanitize(domain, len, show, sizeof(show));
		cbv_log(CBV_LOG_WARN, "map entry %zu: regex failed on %s (PCRE2 error %d%s), no match",
		        i + 1, show, rc,
		        rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
		                        rc == PCRE2_ERROR_HEAPLIMIT
		                ? ": limit hit"
		                : "");
	}
	pcre2_match_data_free(md);
	return ret;
}

/*
 * Maps domain: 1 with out (CBV_DOMAIN_MAX + 1 bytes) written, 0 for no
 * match (out untouched), -1 on ENOMEM.
 */
int cbv_map_lookup(const struct cbv_map *m, const char *domain, char *out)
{
	size_t len;
	int r = 0;

	if (m == NULL || domain == NULL)
		return 0;
	len = strnlen(domain, CBV_DOMAIN_MAX + 1);
	if (len == 0 || len > CBV_DOMAIN_MAX)
		return 0;
	for (size_t i = 0; i < m->n && r == 0; i++) {
		const struct map_entry *e = &m->v[i];

		switch (e->kind) {
		case ENTRY_EXACT:
			if (strcasecmp(domain, e->key) == 0)
				r = finish(e, i, domain, NULL, 0, out);
			break;
		case ENTRY_WILDCARD:
			/* ".suffix" is stored with its dot: the parent itself is
			 * shorter than the key plus one label and never matches. */
			if (len > e->keylen && strcasecmp(domain + len - e->keylen, e->key) == 0)
				r = finish(e, i, domain, NULL, 0, out);
			break;
		case ENTRY_REGEX:
			r = match_regex(m, e, i, domain, len, out);
			break;
		}
	}
	return r;
}
