/*
 * cbv_config.c - cbv.conf reader: Momentum-style blocks -> cbv_profile.
 *
 * The module is four files:
 *   cbv_config_lex.c    prescan, lexer and lists (bounded, with line:col);
 *   cbv_config_value.c  value types and the walkers that read, default and
 *                       format every key of a table;
 *   cbv_config_keys.c   the key tables (one row per key), their string
 *                       checks, and the cbv_profile_* functions;
 *   cbv_config.c        this file: top-level blocks, files, lookups.
 * Any error refuses the whole config: nothing half-parsed is returned.
 */
#include "cbv_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbv_cache.h"
#include "cbv_config_impl.h"
#include "cbv_map.h"

struct cbv_config {
	size_t n;
	size_t def; /* index of the default profile */
	struct cbv_profile *v[CBV_CONFIG_PROFILES_MAX];
	struct cbv_server_conf server;
	int has_server;               /* a server block was read */
	unsigned server_profile_line; /* where its profile was named, for */
	unsigned server_profile_col;  /* "no such profile" after the parse */
};

struct block_type {
	const char *name;
	enum cbv_status (*parse)(struct cbv_config *c, struct lexer *lx);
};

static enum cbv_status parse_smtp_cbv(struct cbv_config *c, struct lexer *lx);
static enum cbv_status parse_server(struct cbv_config *c, struct lexer *lx);

/* Top-level block types. */
static const struct block_type block_types[] = {
	{ "smtp_cbv", parse_smtp_cbv },
	{ "server", parse_server },
};

/* A place in the text. */
struct pos {
	unsigned line, col;
};

/*
 * Inside a block, at a word token: reads "KEY =" for one of keys[0..n),
 * refusing unknown and repeated keys (seen[] holds the line each key was
 * set on).  Leaves the lexer on the '=' and *k on the key's row.
 */
static enum cbv_status read_key(struct lexer *lx, const struct cbv_key *keys, size_t n,
                                const char *block, unsigned *seen, const struct cbv_key **k)
{
	char show[SHOW_MAX + 8];
	enum cbv_status st;
	size_t i;

	if (lx->tok.type != TOK_WORD)
		return cbv_config_lx_error(lx, lx->tok.line, lx->tok.col, "expected a key, got %s",
		                           cbv_config_lx_show(lx, show, sizeof(show)));
	*k = cbv_config_key_find(keys, n, lx->tok.text);
	if (*k == NULL)
		return cbv_config_lx_error(lx, lx->tok.line, lx->tok.col, "unknown key %s in %s",
		                           cbv_config_lx_show(lx, show, sizeof(show)), block);
	i = (size_t)(*k - keys);
	if (seen[i] != 0)
		return cbv_config_lx_error(lx, lx->tok.line, lx->tok.col,
		                           "duplicate key \"%s\" (first set on line %u)",
		                           (*k)->name, seen[i]);
	seen[i] = lx->tok.line;
	if ((st = cbv_config_lx_next(lx)) != CBV_OK)
		return st;
	if (lx->tok.type != TOK_EQUALS)
		return cbv_config_lx_error(lx, lx->tok.line, lx->tok.col,
		                           "expected '=' after \"%s\", got %s", (*k)->name,
		                           cbv_config_lx_show(lx, show, sizeof(show)));
	return CBV_OK;
}

/*
 * Reads "{ key = value ... }" of one block into base (the lexer is on
 * the '{'); bline:bcol is where the block started, for "not closed".
 * at (NULL or n entries) gets the line:col of each value's last token.
 */
static enum cbv_status parse_keys(struct lexer *lx, const struct cbv_key *keys, size_t n,
                                  void *base, const char *block, const char *unclosed,
                                  unsigned bline, unsigned bcol, struct pos *at)
{
	unsigned seen[64] = { 0 };
	const struct cbv_key *k = NULL;
	enum cbv_status st;

	if (n > sizeof(seen) / sizeof(seen[0]))
		return cbv_config_lx_error(lx, bline, bcol, "internal: key table too long");

	for (;;) {
		if ((st = cbv_config_lx_next(lx)) != CBV_OK)
			return st;
		if (lx->tok.type == TOK_RBRACE)
			return CBV_OK;
		if (lx->tok.type == TOK_EOF)
			return cbv_config_lx_error(lx, bline, bcol, "%s not closed with '}'",
			                           unclosed);
		if ((st = read_key(lx, keys, n, block, seen, &k)) != CBV_OK)
			return st;
		lx->key = k->name;
		st = cbv_config_key_parse(lx, k, base);
		lx->key = NULL;
		if (st != CBV_OK)
			return st;
		if (at != NULL) {
			at[k - keys].line = lx->tok.line;
			at[k - keys].col = lx->tok.col;
		}
	}
}

/* ---- config ---- */

/* Frees c, its profiles and their map references; accepts NULL. */
void cbv_config_free(struct cbv_config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		cbv_profile_clear(c->v[i]);
		cbv_free(c->v[i]);
	}
	cbv_free(c);
}

/* Appends a profile with the defaults, named name.  NULL on ENOMEM. */
static struct cbv_profile *add_profile(struct cbv_config *c, const char *name)
{
	struct cbv_profile *p = cbv_calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	cbv_profile_defaults(p);
	snprintf(p->name, sizeof(p->name), "%s", name);
	c->v[c->n++] = p;
	return p;
}

/* smtp_cbv ["NAME"] { key = value ... } */
static enum cbv_status parse_smtp_cbv(struct cbv_config *c, struct lexer *lx)
{
	char name[CBV_NAME_MAX + 1] = "default";
	char show[SHOW_MAX + 8], what[CBV_NAME_MAX + 16];
	unsigned bline = lx->tok.line, bcol = lx->tok.col;
	const struct cbv_key *keys;
	struct cbv_profile *p;
	size_t n;
	enum cbv_status st;

	if ((st = cbv_config_lx_next(lx)) != CBV_OK)
		return st;
	if (cbv_config_lx_is_value(lx)) {
		/* Names travel in "profile=NAME" options: a safe alphabet only. */
		if (cbv_config_check_name(lx->tok.text, lx->tok.len) != CBV_OK)
			return cbv_config_lx_error(
				lx, lx->tok.line, lx->tok.col,
				"profile name %s: 1 to %d letters, digits, '_', '-' or '.'",
				cbv_config_lx_show(lx, show, sizeof(show)), CBV_NAME_MAX);
		memcpy(name, lx->tok.text, lx->tok.len + 1);
		if ((st = cbv_config_lx_next(lx)) != CBV_OK)
			return st;
	}
	if (lx->tok.type != TOK_LBRACE)
		return cbv_config_lx_error(lx, lx->tok.line, lx->tok.col, "expected '{', got %s",
		                           cbv_config_lx_show(lx, show, sizeof(show)));
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i]->name, name) == 0)
			return cbv_config_lx_error(lx, bline, bcol, "duplicate profile \"%s\"",
			                           name);
	if (c->n >= CBV_CONFIG_PROFILES_MAX)
		return cbv_config_lx_error(lx, bline, bcol, "more than %d profiles",
		                           CBV_CONFIG_PROFILES_MAX);
	p = add_profile(c, name);
	if (p == NULL)
		return cbv_config_lx_oom(lx->err);
	keys = cbv_profile_keys(&n);
	snprintf(what, sizeof(what), "smtp_cbv \"%s\"", name);
	return parse_keys(lx, keys, n, p, "smtp_cbv block", what, bline, bcol, NULL);
}

/* ---- the server block (cbvd) ---- */

/* server { key = value ... } */
static enum cbv_status parse_server(struct cbv_config *c, struct lexer *lx)
{
	char show[SHOW_MAX + 8];
	unsigned bline = lx->tok.line, bcol = lx->tok.col;
	const struct cbv_key *keys;
	struct pos at[16] = { { 0, 0 } };
	size_t n;
	enum cbv_status st;

	if (c->has_server)
		return cbv_config_lx_error(lx, bline, bcol, "duplicate server block");
	c->has_server = 1;
	if ((st = cbv_config_lx_next(lx)) != CBV_OK)
		return st;
	if (lx->tok.type != TOK_LBRACE)
		return cbv_config_lx_error(lx, lx->tok.line, lx->tok.col,
		                           "expected '{' after server, got %s",
		                           cbv_config_lx_show(lx, show, sizeof(show)));
	keys = cbv_server_keys(&n);
	if (n > sizeof(at) / sizeof(at[0]))
		return cbv_config_lx_error(lx, bline, bcol, "internal: server key table too long");
	st = parse_keys(lx, keys, n, &c->server, "server block", "server block", bline, bcol, at);
	/* The smtp_cbv block profile names may come later in the file: keep
	 * where it was named for the check after the parse. */
	c->server_profile_line = at[cbv_config_key_find(keys, n, "profile") - keys].line;
	c->server_profile_col = at[cbv_config_key_find(keys, n, "profile") - keys].col;
	return st;
}

/* Returns the server block, or the defaults when there was none. */
const struct cbv_server_conf *cbv_config_server(const struct cbv_config *c)
{
	return c == NULL ? NULL : &c->server;
}

/* Reads top-level blocks until the end of the text. */
static enum cbv_status parse_blocks(struct cbv_config *c, struct lexer *lx)
{
	char show[SHOW_MAX + 8];
	enum cbv_status st;
	size_t i;

	for (;;) {
		if ((st = cbv_config_lx_next(lx)) != CBV_OK)
			return st;
		if (lx->tok.type == TOK_EOF)
			return CBV_OK;
		for (i = 0; i < sizeof(block_types) / sizeof(block_types[0]); i++)
			if (lx->tok.type == TOK_WORD &&
			    strcasecmp(lx->tok.text, block_types[i].name) == 0)
				break;
		if (i == sizeof(block_types) / sizeof(block_types[0]))
			return cbv_config_lx_error(
				lx, lx->tok.line, lx->tok.col,
				"expected a block such as smtp_cbv \"NAME\" { }, got %s",
				cbv_config_lx_show(lx, show, sizeof(show)));
		if ((st = block_types[i].parse(c, lx)) != CBV_OK)
			return st;
	}
}

/*
 * Parses len bytes of cbv.conf text (name in messages).  Returns a new
 * config (cbv_config_free()) or NULL with err: CBV_ECONFIG or CBV_ENOMEM.
 */
/* a's LMDB file names (its cache if LMDB, its fallback if Redis) include path. */
static int uses_lmdb(const struct cbv_profile *a, const char *path)
{
	if (path[0] == '\0' || a->cache[0] == '\0')
		return 0;
	return cbv_cache_is_redis(a->cache) ? strcmp(a->cache_fallback, path) == 0
	                          : strcmp(a->cache, path) == 0;
}

/*
 * A process keeps one store handle per cache (and, for Redis, per
 * cache_prefix), made with the first profile's options; LMDB allows one
 * environment per file per process.  So profiles sharing a Redis store
 * must agree on the options of its connection, and the LMDB file of one
 * handle (a cache, or a Redis store's fallback) must not be another
 * handle's.  Refused here, at load, rather than silently using another
 * profile's password file.
 */
static enum cbv_status check_shared_stores(const struct cbv_config *c, const char *name,
                                           struct cbv_err *err)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct cbv_profile *a = c->v[i];

		for (size_t j = i + 1; j < c->n && cbv_cache_is_redis(a->cache); j++) {
			const struct cbv_profile *b = c->v[j];
			const char *what = NULL;

			if (strcmp(a->cache, b->cache) != 0 || strcmp(a->cache_prefix, b->cache_prefix) != 0)
				continue;
			if (a->cache_timeout_ms != b->cache_timeout_ms)
				what = "cache_timeout";
			else if (strcmp(a->cache_password_file, b->cache_password_file) != 0)
				what = "cache_password_file";
			else if (strcmp(a->cache_fallback, b->cache_fallback) != 0)
				what = "cache_fallback";
			if (what != NULL)
				return cbv_err_set(err, CBV_ECONFIG,
				                   "%s: smtp_cbv \"%s\" and \"%s\" share cache %s (prefix "
				                   "\"%s\") but set %s differently: one connection "
				                   "serves both, give them the same %s",
				                   name, a->name, b->name, a->cache, a->cache_prefix, what,
				                   what);
		}
		if (!cbv_cache_is_redis(a->cache) || a->cache_fallback[0] == '\0')
			continue;
		for (size_t j = 0; j < c->n; j++) {
			const struct cbv_profile *b = c->v[j];

			if (j == i || (strcmp(a->cache, b->cache) == 0 &&
			               strcmp(a->cache_prefix, b->cache_prefix) == 0))
				continue; /* the same handle */
			if (uses_lmdb(b, a->cache_fallback))
				return cbv_err_set(err, CBV_ECONFIG,
				                   "%s: smtp_cbv \"%s\": cache_fallback %s is also the "
				                   "LMDB store of smtp_cbv \"%s\"; an LMDB file may be "
				                   "open once per process: give it a path of its own",
				                   name, a->name, a->cache_fallback, b->name);
		}
	}
	return CBV_OK;
}

struct cbv_config *cbv_config_parse(const char *text, size_t len, const char *name,
                                    struct cbv_err *err)
{
	struct cbv_config *c = NULL;
	struct lexer *lx = NULL;
	enum cbv_status st;

	if (name == NULL)
		name = "config";
	if (text == NULL)
		len = 0;
	if (len > CBV_CONFIG_FILE_MAX) {
		cbv_err_set(err, CBV_ECONFIG, "%s: larger than %d bytes", name,
		            CBV_CONFIG_FILE_MAX);
		goto fail;
	}
	/* The lexer holds a line-sized token: keep it off the stack. */
	lx = cbv_malloc(sizeof(*lx));
	c = cbv_calloc(1, sizeof(*c));
	if (lx == NULL || c == NULL) {
		cbv_config_lx_oom(err);
		goto fail;
	}
	cbv_server_conf_defaults(&c->server);
	cbv_config_lx_init(lx, text == NULL ? "" : text, len, name, err);
	if ((st = cbv_config_lx_prescan(lx)) != CBV_OK || (st = parse_blocks(c, lx)) != CBV_OK)
		goto fail;
	if (c->server.profile[0] != '\0') {
		size_t i;

		for (i = 0; i < c->n; i++)
			if (strcmp(c->v[i]->name, c->server.profile) == 0)
				break;
		if (i == c->n) {
			lx->key = "profile";
			cbv_config_lx_error(lx, c->server_profile_line, c->server_profile_col,
			                    "no smtp_cbv block named \"%s\"", c->server.profile);
			goto fail;
		}
	}
	if (c->n == 0 && add_profile(c, "default") == NULL) {
		cbv_config_lx_oom(err);
		goto fail;
	}
	if (check_shared_stores(c, name, err) != CBV_OK)
		goto fail;
	c->def = 0;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i]->name, "default") == 0)
			c->def = i;
	cbv_free(lx);
	return c;
fail:
	cbv_free(lx);
	cbv_config_free(c);
	return NULL;
}

/*
 * Reads path (a regular file of at most CBV_CONFIG_FILE_MAX bytes) and
 * parses it; a missing file gives the defaults and *missing = 1 when
 * missing_ok, else an error naming the path.  Returns a new config or
 * NULL with err.
 */
struct cbv_config *cbv_config_load(const char *path, int missing_ok, int *missing,
                                   struct cbv_err *err)
{
	struct cbv_config *c = NULL;
	struct stat sb;
	char *buf = NULL;
	size_t n = 0, cap;
	ssize_t r;
	int fd;

	if (missing != NULL)
		*missing = 0;
	if (path == NULL) {
		cbv_err_set(err, CBV_ECONFIG, "no config file named");
		return NULL;
	}
	/* O_NONBLOCK: a FIFO planted at the path must not hang Exim. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		/* Only the built-in default path may be absent: a path the admin
		 * typed and mistyped must not silently mean "port 25, system DNS". */
		if (errno == ENOENT && missing_ok) {
			if (missing != NULL)
				*missing = 1;
			return cbv_config_parse("", 0, path, err);
		}
		cbv_err_set_errno(err, CBV_ECONFIG, errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &sb) != 0) {
		cbv_err_set_errno(err, CBV_ECONFIG, errno, "%s: %s", path, strerror(errno));
		goto done;
	}
	if (!S_ISREG(sb.st_mode)) {
		cbv_err_set(err, CBV_ECONFIG, "%s: not a regular file", path);
		goto done;
	}
	if (sb.st_size > CBV_CONFIG_FILE_MAX) {
		cbv_err_set(err, CBV_ECONFIG, "%s: larger than %d bytes", path,
		            CBV_CONFIG_FILE_MAX);
		goto done;
	}
	/* One byte more than fstat said, to notice a file that grew. */
	cap = (size_t)sb.st_size + 1;
	buf = cbv_malloc(cap);
	if (buf == NULL) {
		cbv_config_lx_oom(err);
		goto done;
	}
	while (n < cap) {
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cbv_err_set_errno(err, CBV_ECONFIG, errno, "%s: %s", path, strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n == cap) {
		cbv_err_set(err, CBV_ECONFIG, "%s: file changed while being read", path);
		goto done;
	}
	c = cbv_config_parse(buf, n, path, err);
done:
	cbv_free(buf);
	close(fd);
	return c;
}

/* Returns the profile called name, the default one for NULL or "", else NULL. */
const struct cbv_profile *cbv_config_profile(const struct cbv_config *c, const char *name)
{
	if (c == NULL || c->n == 0)
		return NULL;
	if (name == NULL || name[0] == '\0')
		return c->v[c->def];
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i]->name, name) == 0)
			return c->v[i];
	return NULL;
}

/* Returns the number of profiles (0 for NULL). */
size_t cbv_config_count(const struct cbv_config *c)
{
	return c == NULL ? 0 : c->n;
}

/* Returns profile i, or NULL when i is out of range. */
const struct cbv_profile *cbv_config_at(const struct cbv_config *c, size_t i)
{
	return c == NULL || i >= c->n ? NULL : c->v[i];
}