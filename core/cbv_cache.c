/*
 * cbv_cache.c - the LMDB store behind cbv_cache.h: opening (lazily, per
 * process), keys, lookups and stores, leases and caps, reclaiming space,
 * maintenance.  Values are encoded and checked by cbv_cache_rec.c.
 *
 * Keys (one unnamed LMDB database):
 *   "#format"               u32 format version of the store
 *   'A' domain NUL sha256   address record       (cbv_cache_key_derive)
 *   'D' domain NUL sha256   domain fact
 *   'F' domain NUL sha256   single-flight lease of an address key
 *   'C' domain              domain concurrency slots
 *   'R' domain              domain rate bucket
 *   'H' ip                  host concurrency slots
 *   'T' ip:port NUL sha256  TLS session blob     (cbv_cache_blob_key)
 *   'N' name NUL sha256     DNS answer blob
 */
/*
 * SHA-256 through OpenSSL's low-level SHA256_*() calls, deprecated in 3.0:
 * the first EVP digest in a process fetches the provider and its algorithm
 * table, about 0.8 ms, which an Exim process answered from the cache would
 * pay once per connection; SHA256_Init() costs about 10 us the first time.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "cbv_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cbv_cache_redis.h"
#include "cbv_cache_redis_impl.h"
#include "cbv_log.h"
#include "cbv_stats.h"
#include "cbv_status.h"

#define META_KEY "#format"
#define MAXREADERS 1024
/* A store we could not open is tried again after this long (cbvd lives long). */
#define REOPEN_MS 60000
/* Deletions and keys looked at per write transaction when purging or
 * evicting: the writer lock is never held long (4096 keys: ~5 ms). */
#define BATCH 256
#define VISITS 4096
/* Reclaim before a store when live pages pass this share of the map (%). */
#define FILL_PCT 80
/* What a write op returns when it decided without writing (not an LMDB code). */
#define NO_WRITE (-1)
/* Rate buckets untouched this long are dropped by purge. */
#define BUCKET_IDLE_MS (24 * 3600 * 1000LL)

/* Kinds of failure, each logged once per process. */
enum fail {
	F_OPEN = 1 << 0,
	F_VERSION = 1 << 1,
	F_FULL = 1 << 2,
	F_DAMAGED = 1 << 3,
	F_WRITE = 1 << 4,
	F_NOMEM = 1 << 5,
	F_BIG = 1 << 6,
	F_READ = 1 << 7,
	F_OLDREC = 1 << 8
};

struct cbv_cache {
	char *path;
	size_t map_size;
	int64_t (*now_fn)(void *arg);
	void *now_arg;
	MDB_env *env;          /* open in process pid, else NULL */
	MDB_env *abandoned;    /* the parent's env after a fork: never touched */
	MDB_dbi dbi;
	MDB_txn *rtxn;         /* reset read transaction, renewed per lookup */
	pid_t pid;             /* the process these fields belong to */
	int broken;            /* OFF in this process until retry_ms */
	int64_t retry_ms;
	unsigned logged;       /* enum fail bits logged by this process */
	uint32_t serial;       /* ticket counter */
	unsigned char buf[CBV_CACHE_REC_MAX];
	/* path is a Redis URL: the calls go there (cbv_cache_redis.c) */
	struct cbv_cache_redis *redis;
	struct cbv_cache *fallback; /* LMDB used while Redis is down; NULL = none */
	unsigned char *buf2;        /* Redis: the domain fact's value (a second buffer) */
	/* counters waiting for this process's next write (cbv_cache_count()) */
	struct cbv_stats_field pend[2 * CBV_STATS_FIELDS_MAX];
	size_t npend;
};

/* The counters' part (at the end of this file). */
static int counters_put(struct cbv_cache *c, MDB_txn *t);
static void counters_written(struct cbv_cache *c);

/* The Redis dispatch (at the end of this file); each answers OFF when down. */
static enum cbv_cache_status redis_lookup(struct cbv_cache *c, const struct cbv_cache_key *k,
                                          struct cbv_result **out, unsigned long *age_s);
static enum cbv_cache_status redis_store(struct cbv_cache *c, const struct cbv_cache_key *k,
                                         const struct cbv_result *r,
                                         const struct cbv_cache_ttl *ttl, uint64_t ticket);

/* ---- the one dependency on how struct cbv_result holds its reason ---- */

/*
 * Stored records hold the reason as its word (cbv_reason_name()), so a
 * renumbered enum never changes what an old record means; a word this
 * build does not know makes the record a miss.
 */
static const char *result_reason_word(const struct cbv_result *r)
{
	return cbv_reason_name(r->reason);
}

static int result_set_reason(struct cbv_result *r, const char *word)
{
	int n = cbv_reason_parse(word);

	if (n < 0)
		return -1;
	r->reason = (enum cbv_reason)n;
	return 0;
}

/* Which domain fact a result establishes (0: none). */
static enum cbv_cache_kind domain_fact(const struct cbv_result *r)
{
	if (r->reason == CBV_R_CATCH_ALL)
		return CBV_CACHE_CATCH_ALL;
	if (r->verdict == CBV_ERROR && r->reason == CBV_R_SENDER_REFUSED)
		return CBV_CACHE_SENDER_REFUSED;
	if (r->verdict == CBV_TRANSIENT && r->reason == CBV_R_CONNECT_FAILED)
		return CBV_CACHE_UNREACHABLE;
	return 0;
}

/* ---- small helpers ---- */

void cbv_cache_ttl_defaults(struct cbv_cache_ttl *t)
{
	t->pass = 24 * 3600;
	t->fail = 2 * 3600;
	t->error = 3600;
	t->transient = 0;
	t->domain = 3 * 3600;
	t->catchall = 7 * 24 * 3600;
	t->unreachable = 600;
}

void cbv_cache_caps_defaults(struct cbv_cache_caps *caps)
{
	caps->domain_concurrency = 4;
	caps->rate_count = 60;
	caps->rate_window_s = 60;
	caps->host_concurrency = 8;
	caps->lease_s = 60;
}

const char *cbv_cache_limit_name(enum cbv_cache_limit l)
{
	switch (l) {
	case CBV_LIMIT_NONE: return "none";
	case CBV_LIMIT_DOMAIN_CONCURRENCY: return "domain_max_concurrency";
	case CBV_LIMIT_DOMAIN_RATE: return "domain_max_rate";
	case CBV_LIMIT_HOST_CONCURRENCY: return "host_max_concurrency";
	}
	return "none";
}

static int64_t real_now_ms(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(const struct cbv_cache *c)
{
	return c->now_fn(c->now_arg);
}

/* Logs one line for this kind of failure unless this process already did. */
static void fail_once(struct cbv_cache *c, enum fail kind, const char *what,
                      const char *detail)
{
	if (c->logged & kind)
		return;
	c->logged |= kind;
	cbv_log(CBV_LOG_ERR, "cache %s: %s (%s); verifying without it", c->path, what,
	        detail);
}

/* A new ticket: this pid and a serial, never 0. */
static uint64_t new_ticket(struct cbv_cache *c)
{
	if (++c->serial == 0)
		c->serial = 1;
	return (uint64_t)(uint32_t)getpid() << 32 | c->serial;
}

/*
 * 1 if a lease still holds: not expired, and its process not known dead.
 * kill(pid, 0) sees pids of this host (and pid namespace); EPERM means it
 * lives under another user.  A reused pid keeps a dead lease only until it
 * expires.
 */
static int lease_alive(const struct cbv_cache_lease *l, int64_t now)
{
	if (l->expires_ms <= now)
		return 0;
	if (l->pid == (uint32_t)getpid())
		return 1;
	if (l->pid == 0 || l->pid > (uint32_t)INT32_MAX)
		return 0;
	return kill((pid_t)l->pid, 0) == 0 || errno != ESRCH;
}

/* ---- keys ---- */

/* Copies domain lower-cased into out; returns its length or 0 if bad. */
static size_t put_domain(const char *domain, unsigned char *out)
{
	size_t n = domain != NULL ? strnlen(domain, CBV_DOMAIN_MAX + 1) : 0;

	if (n == 0 || n > CBV_DOMAIN_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)domain[i];

		out[i] = ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch - 'A' + 'a') : ch;
	}
	return n;
}

/* Appends a u32 length and the bytes to h (bounded by the caller). */
static size_t lv(unsigned char *h, size_t off, const void *p, size_t n)
{
	h[off] = (unsigned char)(n >> 24);
	h[off + 1] = (unsigned char)(n >> 16);
	h[off + 2] = (unsigned char)(n >> 8);
	h[off + 3] = (unsigned char)n;
	if (n > 0)
		memcpy(h + off + 4, p, n);
	return off + 4 + n;
}

size_t cbv_cache_key_derive(const struct cbv_cache_key *k, char kind,
                            unsigned char *out, size_t cap)
{
	unsigned char h[16 + 3 * (4 + CBV_PATH_MAX) + 4 + CBV_CACHE_FP_MAX];
	unsigned char port[2];
	size_t dl, off = 0, ll, sl;
	SHA256_CTX sha;

	if (cap < CBV_CACHE_KEY_MAX || (kind != 'A' && kind != 'D'))
		return 0;
	dl = put_domain(k->domain, out + 1);
	ll = k->local != NULL ? strnlen(k->local, CBV_PATH_MAX + 1) : 0;
	sl = k->sender != NULL ? strnlen(k->sender, CBV_PATH_MAX + 1) : CBV_PATH_MAX + 1;
	if (dl == 0 || (kind == 'A' && (ll == 0 || ll > CBV_PATH_MAX)) ||
	    sl > CBV_PATH_MAX || k->port > 65535 || k->fp_len > CBV_CACHE_FP_MAX ||
	    (k->fp == NULL && k->fp_len > 0))
		return 0;
	out[0] = (unsigned char)kind;
	out[1 + dl] = '\0';
	/* a tag per kind and format, then each field length-prefixed */
	off = lv(h, off, kind == 'A' ? "cbv-A1" : "cbv-D1", 6);
	if (kind == 'A')
		off = lv(h, off, k->local, ll);
	off = lv(h, off, k->sender, sl);
	port[0] = (unsigned char)(k->port >> 8);
	port[1] = (unsigned char)k->port;
	off = lv(h, off, port, 2);
	off = lv(h, off, k->fp, k->fp_len);
	if (SHA256_Init(&sha) != 1 || SHA256_Update(&sha, h, off) != 1 ||
	    SHA256_Final(out + 2 + dl, &sha) != 1)
		return 0;
	return 2 + dl + 32;
}

/* 'C'/'R'/'H' keys: the kind and the name, lower-cased. */
static size_t name_key(char kind, const char *name, unsigned char *out)
{
	size_t n = put_domain(name, out + 1);

	if (n == 0)
		return 0;
	out[0] = (unsigned char)kind;
	return n + 1;
}

/* ---- opening ---- */

/* Creates path with mode 0660 and the directory's owner if it is missing. */
static int create_file(const char *path, const struct stat *dir)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0660);
	int rc = 0;

	if (fd < 0)
		return errno == EEXIST ? 0 : -1;
	struct stat st;

	/* root must not leave files Exim's user cannot open */
	if (geteuid() == 0 && fstat(fd, &st) == 0 &&
	    (st.st_uid != dir->st_uid || st.st_gid != dir->st_gid) &&
	    fchown(fd, dir->st_uid, dir->st_gid) != 0)
		rc = -1;
	if (rc == 0 && fchmod(fd, 0660) != 0) /* the umask may have cut group write */
		rc = -1;
	if (rc != 0) {
		int e = errno;

		unlink(path);
		errno = e;
	}
	close(fd);
	return rc;
}

/* The directory of path into dir (size n); -1 if too long. */
static int dir_of(const char *path, char *dir, size_t n)
{
	const char *slash = strrchr(path, '/');
	size_t dl = slash == NULL ? 1 : (size_t)(slash - path);

	if (slash == NULL)
		return snprintf(dir, n, ".") < 0 ? -1 : 0;
	if (dl == 0)
		dl = 1; /* "/file" */
	if (dl >= n)
		return -1;
	memcpy(dir, path, dl);
	dir[dl] = '\0';
	return 0;
}

/* Makes the data and lock files if missing; -1 with errno and *what. */
static int create_files(struct cbv_cache *c, const char *lock, const char **what)
{
	char dir[4096];
	struct stat st;

	*what = "its directory is missing";
	if (dir_of(c->path, dir, sizeof(dir)) != 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (stat(dir, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	*what = "cannot create it";
	if (create_file(c->path, &st) != 0 || create_file(lock, &st) != 0)
		return -1;
	return 0;
}

static void close_env(struct cbv_cache *c)
{
	if (c->rtxn != NULL)
		mdb_txn_abort(c->rtxn);
	c->rtxn = NULL;
	if (c->env != NULL)
		mdb_env_close(c->env);
	c->env = NULL;
}

static int wbegin(struct cbv_cache *c, MDB_txn **t)
{
	int rc = mdb_txn_begin(c->env, NULL, 0, t);

	if (rc == MDB_MAP_RESIZED) { /* another process grew the map */
		mdb_env_set_mapsize(c->env, 0);
		rc = mdb_txn_begin(c->env, NULL, 0, t);
	}
	return rc;
}

/* Reads or writes "#format"; 0 if usable, else logs and returns -1. */
static int check_format(struct cbv_cache *c)
{
	MDB_txn *t = NULL;
	MDB_val k = { sizeof(META_KEY) - 1, (void *)(uintptr_t)META_KEY }, v;
	MDB_stat ms;
	unsigned char fmt[4] = { CBV_CACHE_FORMAT, 0, 0, 0 };
	char detail[96];
	int rc = wbegin(c, &t);
	uint32_t have;

	if (rc == 0)
		rc = mdb_dbi_open(t, NULL, 0, &c->dbi);
	if (rc != 0)
		goto lmdb_error;
	rc = mdb_get(t, c->dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		if ((rc = mdb_stat(t, c->dbi, &ms)) != 0)
			goto lmdb_error;
		if (ms.ms_entries > 0) {
			mdb_txn_abort(t);
			fail_once(c, F_VERSION, "not an exim-cbv cache", "LMDB without a format record");
			return -1;
		}
	} else if (rc != 0) {
		goto lmdb_error;
	} else {
		const unsigned char *p = v.mv_data;

		have = v.mv_size == 4 ? (uint32_t)p[0] | (uint32_t)p[1] << 8 |
		                            (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
		                      : UINT32_MAX;
		if (have == CBV_CACHE_FORMAT) {
			mdb_txn_abort(t);
			return 0;
		}
		if (have > CBV_CACHE_FORMAT) {
			mdb_txn_abort(t);
			snprintf(detail, sizeof(detail), "format %u, this program reads %u",
			         (unsigned)have, CBV_CACHE_FORMAT);
			fail_once(c, F_VERSION, "another format version", detail);
			return -1;
		}
		/* an older format: nothing in it can be read, start afresh */
		cbv_log(CBV_LOG_INFO, "cache %s: format %u replaced by %u", c->path,
		        (unsigned)have, CBV_CACHE_FORMAT);
		if ((rc = mdb_drop(t, c->dbi, 0)) != 0)
			goto lmdb_error;
	}
	v.mv_size = sizeof(fmt);
	v.mv_data = fmt;
	if ((rc = mdb_put(t, c->dbi, &k, &v, 0)) != 0)
		goto lmdb_error;
	rc = mdb_txn_commit(t);
	t = NULL;
	if (rc != 0)
		goto lmdb_error;
	return 0;
lmdb_error:
	if (t != NULL)
		mdb_txn_abort(t);
	fail_once(c, F_OPEN, "cannot use it", mdb_strerror(rc));
	return -1;
}

/* 0 if path is missing or a regular file, else -1 (a symlink, a device...). */
static int regular_or_missing(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -1;
	if (S_ISREG(st.st_mode))
		return 0;
	errno = S_ISLNK(st.st_mode) ? ELOOP : EINVAL;
	return -1;
}

/*
 * Creates (if missing) and opens the files.  LMDB opens them by name and
 * follows symlinks, and it writes the lock file: a symlink planted in the
 * Exim-owned directory could make root overwrite any file.  So symlinks
 * are refused, and root opens with the directory owner's file-system
 * identity (setfsuid, Linux): files it creates belong to that owner, and a
 * link swapped in after the check reaches only what that owner can.
 */
static int open_files(struct cbv_cache *c, const char **what, char *detail, size_t n)
{
	char lock[4096 + 8], dir[4096];
	struct stat st;
	int as_owner = 0, rc = 0;
	uid_t old_uid = 0;
	gid_t old_gid = 0;

	snprintf(lock, sizeof(lock), "%s-lock", c->path);
	if (geteuid() == 0 && dir_of(c->path, dir, sizeof(dir)) == 0 && stat(dir, &st) == 0 &&
	    st.st_uid != 0) {
		old_gid = (gid_t)setfsgid(st.st_gid);
		old_uid = (uid_t)setfsuid(st.st_uid);
		as_owner = 1;
	}
	if (regular_or_missing(c->path) != 0 || regular_or_missing(lock) != 0) {
		*what = "not a regular file";
		rc = errno;
	} else if ((access(c->path, F_OK) != 0 || access(lock, F_OK) != 0) && errno == ENOENT &&
	           create_files(c, lock, what) != 0) {
		rc = errno;
	} else {
		rc = mdb_env_open(c->env, c->path,
		                  MDB_NOSUBDIR | MDB_NOTLS | MDB_NOSYNC | MDB_NORDAHEAD, 0660);
		if (rc != 0)
			*what = rc == MDB_INVALID ? "not an LMDB file" : "cannot open it";
	}
	if (as_owner) {
		setfsuid(old_uid);
		setfsgid(old_gid);
	}
	/* LMDB's codes and errno values both read well through mdb_strerror() */
	snprintf(detail, n, "%s", mdb_strerror(rc));
	return rc == 0 ? 0 : -1;
}

/* Opens the store in this process; 1 if usable, 0 if OFF. */
static int do_open(struct cbv_cache *c)
{
	const char *what = "cannot open it";
	char detail[128];
	int rc, dead;

	rc = mdb_env_create(&c->env);
	if (rc == 0)
		rc = mdb_env_set_mapsize(c->env, c->map_size);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(c->env, MAXREADERS);
	if (rc != 0) {
		fail_once(c, F_OPEN, what, mdb_strerror(rc));
		close_env(c);
		goto off;
	}
	if (open_files(c, &what, detail, sizeof(detail)) != 0) {
		fail_once(c, F_OPEN, what, detail);
		close_env(c);
		goto off;
	}
	/* readers killed while reading leave their slot: free those */
	mdb_reader_check(c->env, &dead);
	if (check_format(c) != 0) {
		close_env(c);
		goto off;
	}
	c->broken = 0;
	return 1;
off:
	c->broken = 1;
	c->retry_ms = now_ms(c) + REOPEN_MS;
	return 0;
}

/* Makes the store ready in this process; 1 if usable, 0 if OFF. */
static int ensure_open(struct cbv_cache *c)
{
	pid_t pid = getpid();

	if (c->pid != pid) {
		/* a forked child: the parent's env is not ours to use or close */
		if (c->env != NULL)
			c->abandoned = c->env;
		c->env = NULL;
		c->rtxn = NULL;
		c->pid = pid;
		c->broken = 0;
		c->logged = 0;
	}
	if (c->env != NULL)
		return 1;
	if (c->broken && now_ms(c) < c->retry_ms)
		return 0;
	return do_open(c);
}

struct cbv_cache *cbv_cache_new(const char *path, size_t map_size)
{
	struct cbv_cache *c;

	if (path == NULL || path[0] == '\0' || strlen(path) >= 4096)
		return NULL;
	c = cbv_calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->path = cbv_strdup(path);
	if (c->path == NULL) {
		cbv_free(c);
		return NULL;
	}
	c->map_size = map_size == 0 ? CBV_CACHE_MAP_DEFAULT : map_size;
	if (c->map_size < CBV_CACHE_MAP_MIN)
		c->map_size = CBV_CACHE_MAP_MIN;
	c->now_fn = real_now_ms;
	c->pid = getpid();
	if (cbv_cache_redis_is_url(path, strlen(path)) &&
	    ((c->redis = cbv_cache_redis_new(path)) == NULL ||
	     (c->buf2 = cbv_malloc(CBV_CACHE_REC_MAX)) == NULL)) {
		cbv_cache_free(c);
		return NULL;
	}
	return c;
}

int cbv_cache_set_options(struct cbv_cache *c, const struct cbv_cache_opts *o)
{
	if (c == NULL || o == NULL || c->redis == NULL)
		return 0; /* LMDB: nothing to set */
	if (cbv_cache_redis_configure(c->redis, o->timeout_ms, o->prefix, o->password_file) != 0)
		return -1;
	cbv_cache_free(c->fallback);
	c->fallback = NULL;
	if (o->fallback != NULL && o->fallback[0] != '\0') {
		if (cbv_cache_redis_is_url(o->fallback, strlen(o->fallback)))
			return -1; /* the fallback is a local LMDB store */
		c->fallback = cbv_cache_new(o->fallback, c->map_size);
		if (c->fallback == NULL)
			return -1;
		cbv_cache_set_clock(c->fallback, c->now_fn, c->now_arg);
	}
	return 0;
}

int cbv_cache_is_redis(const char *path)
{
	return path != NULL && cbv_cache_redis_is_url(path, strlen(path));
}

enum cbv_status cbv_cache_secret_check(const char *path, struct cbv_err *err)
{
	char secret[CBV_REDIS_SECRET_MAX + 2];
	enum cbv_status st = cbv_cache_redis_read_secret(path, secret, sizeof(secret), err);

	explicit_bzero(secret, sizeof(secret));
	return st;
}

void cbv_cache_free(struct cbv_cache *c)
{
	if (c == NULL)
		return;
	if (c->pid == getpid())
		close_env(c);
	cbv_cache_redis_free(c->redis);
	cbv_cache_free(c->fallback);
	cbv_free(c->buf2);
	cbv_free(c->path);
	cbv_free(c);
}

void cbv_cache_set_clock(struct cbv_cache *c, int64_t (*fn)(void *arg), void *arg)
{
	c->now_fn = fn != NULL ? fn : real_now_ms;
	c->now_arg = fn != NULL ? arg : NULL;
	if (c->fallback != NULL)
		cbv_cache_set_clock(c->fallback, fn, arg);
}

int cbv_cache_usable(struct cbv_cache *c)
{
	if (c != NULL && c->redis != NULL)
		return cbv_cache_redis_usable(c->redis) ||
		       (c->fallback != NULL && cbv_cache_usable(c->fallback));
	return c != NULL && ensure_open(c);
}

/* ---- transactions ---- */

static int rbegin(struct cbv_cache *c)
{
	int rc;

	if (c->rtxn == NULL)
		rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &c->rtxn);
	else
		rc = mdb_txn_renew(c->rtxn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(c->env, 0);
		rc = c->rtxn == NULL ? mdb_txn_begin(c->env, NULL, MDB_RDONLY, &c->rtxn)
		                     : mdb_txn_renew(c->rtxn);
	}
	if (rc != 0) {
		if (c->rtxn != NULL)
			mdb_txn_abort(c->rtxn);
		c->rtxn = NULL;
		fail_once(c, F_READ, "cannot read it", mdb_strerror(rc));
	}
	return rc;
}

static void rend(struct cbv_cache *c)
{
	mdb_txn_reset(c->rtxn);
}

typedef int write_fn(struct cbv_cache *c, MDB_txn *t, void *arg);

static long reclaim(struct cbv_cache *c);

/*
 * Runs fn in a write transaction; fn returns 0 to commit, NO_WRITE when
 * it decided without writing, else an LMDB error.  A full map reclaims
 * space (expired records, then the oldest) and tries once more.  Returns
 * 0 when committed or NO_WRITE, else -1 (logged once).
 */
static int write_op(struct cbv_cache *c, write_fn *fn, void *arg)
{
	MDB_txn *t = NULL;
	int rc = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		rc = wbegin(c, &t);
		if (rc != 0)
			break;
		rc = fn(c, t, arg);
		if (rc == 0) {
			rc = mdb_txn_commit(t);
		} else {
			mdb_txn_abort(t);
			if (rc == NO_WRITE)
				return 0;
		}
		if (rc != MDB_MAP_FULL || attempt == 1)
			break;
		reclaim(c);
	}
	if (rc == 0)
		return 0;
	if (rc == MDB_MAP_FULL)
		fail_once(c, F_FULL, "map full after reclaiming space", mdb_strerror(rc));
	else
		fail_once(c, F_WRITE, "cannot write it", mdb_strerror(rc));
	return -1;
}

/* Decodes a result value; logs damage or another version once. */
static int decode_rec(struct cbv_cache *c, const MDB_val *v, struct cbv_cache_rec *rec)
{
	enum cbv_cache_rec_status st = cbv_cache_rec_decode(v->mv_data, v->mv_size, rec);

	if (st == CBV_REC_EVERSION)
		fail_once(c, F_OLDREC, "a record of another format version", "ignored");
	else if (st != CBV_REC_OK)
		fail_once(c, F_DAMAGED, "a damaged record", "ignored");
	return st == CBV_REC_OK ? 0 : -1;
}

/* 1 if k can be cached at all (every field within its bounds). */
static int key_ok(const struct cbv_cache_key *k)
{
	unsigned char kb[CBV_CACHE_KEY_MAX];

	return k != NULL && cbv_cache_key_derive(k, 'A', kb, sizeof(kb)) > 0;
}

/* ---- lookup ---- */

/* Builds a new result from rec (cache = 1); NULL on ENOMEM or a bad reason. */
static struct cbv_result *to_result(const struct cbv_cache_rec *rec)
{
	struct cbv_result *r = cbv_result_new();
	char **dst[CBV_CACHE_NSTR] = { NULL };

	if (r == NULL)
		return NULL;
	/* reason, ecode and tls are not strings of their own in the result */
	dst[CBV_CS_MESSAGE] = &r->message;
	dst[CBV_CS_ADDRESS] = &r->address;
	dst[CBV_CS_RCPT] = &r->rcpt;
	dst[CBV_CS_SENDER] = &r->sender;
	dst[CBV_CS_HOST] = &r->host;
	dst[CBV_CS_IP] = &r->ip;
	dst[CBV_CS_GREETING] = &r->greeting;
	dst[CBV_CS_HELO] = &r->helo;
	dst[CBV_CS_SENT] = &r->sent;
	dst[CBV_CS_RECV] = &r->recv;
	for (int i = 0; i < CBV_CACHE_NSTR; i++) {
		if (dst[i] != NULL && cbv_result_set(dst[i], rec->s[i]) != 0)
			goto fail;
	}
	if (result_set_reason(r, rec->s[CBV_CS_REASON]) != 0)
		goto fail;
	r->verdict = rec->verdict;
	r->code = (int)rec->code;
	snprintf(r->ecode, sizeof(r->ecode), "%s", rec->s[CBV_CS_ECODE]);
	snprintf(r->tls, sizeof(r->tls), "%s", rec->s[CBV_CS_TLS]);
	r->elapsed_ms = rec->elapsed_ms;
	r->hosts_tried = rec->hosts_tried;
	r->cache = 1;
	return r;
fail:
	cbv_result_free(r);
	return NULL;
}

/*
 * Finds the valid record answering k in txn t: the address record, else a
 * domain fact.  1 with *rec (pointing into the map), 0 if none.
 */
static int find_answer(struct cbv_cache *c, MDB_txn *t, const struct cbv_cache_key *k,
                       struct cbv_cache_rec *rec)
{
	unsigned char kb[CBV_CACHE_KEY_MAX];
	MDB_val key, v;
	int64_t now = now_ms(c);
	const char kinds[2] = { 'A', 'D' };

	for (int i = 0; i < 2; i++) {
		key.mv_size = cbv_cache_key_derive(k, kinds[i], kb, sizeof(kb));
		key.mv_data = kb;
		if (key.mv_size == 0 || mdb_get(t, c->dbi, &key, &v) != 0)
			continue;
		if (decode_rec(c, &v, rec) != 0 || rec->expires_ms <= now)
			continue;
		if ((kinds[i] == 'A') != (rec->kind == CBV_CACHE_ADDRESS))
			continue;
		return 1;
	}
	return 0;
}

enum cbv_cache_status cbv_cache_lookup(struct cbv_cache *c,
                                       const struct cbv_cache_key *k,
                                       struct cbv_result **out,
                                       unsigned long *age_s)
{
	struct cbv_cache_rec rec;
	enum cbv_cache_status st = CBV_CACHE_MISS;
	int64_t now;

	*out = NULL;
	if (age_s != NULL)
		*age_s = 0;
	if (c != NULL && c->redis != NULL) {
		st = redis_lookup(c, k, out, age_s);
		if (st != CBV_CACHE_OFF || c->fallback == NULL)
			return st;
		c = c->fallback;
		st = CBV_CACHE_MISS;
	}
	if (c == NULL || !key_ok(k) || !ensure_open(c) || rbegin(c) != 0)
		return CBV_CACHE_OFF;
	now = now_ms(c);
	if (find_answer(c, c->rtxn, k, &rec)) {
		*out = to_result(&rec);
		if (*out == NULL) {
			fail_once(c, F_NOMEM, "out of memory or an unknown reason word", "a miss");
		} else {
			st = CBV_CACHE_HIT;
			if (age_s != NULL)
				*age_s = now > rec.stored_ms ? (unsigned long)((now - rec.stored_ms) / 1000) : 0;
		}
	}
	rend(c);
	return st;
}

/* ---- store ---- */

struct store_arg {
	const struct cbv_cache_key *k;
	const struct cbv_result *r;
	unsigned addr_ttl, fact_ttl;
	enum cbv_cache_kind fact;
	uint64_t ticket;
};

static void rec_from_result(struct cbv_cache_rec *rec, const struct cbv_result *r,
                            const struct cbv_cache_key *k)
{
	memset(rec, 0, sizeof(*rec));
	rec->verdict = r->verdict;
	rec->code = r->code >= 0 && r->code <= 999 ? (unsigned)r->code : 0;
	rec->port = k->port;
	rec->hosts_tried = r->hosts_tried > 65535 ? 65535 : r->hosts_tried;
	rec->elapsed_ms = r->elapsed_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)r->elapsed_ms;
	rec->s[CBV_CS_REASON] = result_reason_word(r);
	rec->s[CBV_CS_ECODE] = r->ecode;
	rec->s[CBV_CS_MESSAGE] = r->message;
	rec->s[CBV_CS_ADDRESS] = r->address;
	rec->s[CBV_CS_RCPT] = r->rcpt;
	rec->s[CBV_CS_SENDER] = r->sender;
	rec->s[CBV_CS_HOST] = r->host;
	rec->s[CBV_CS_IP] = r->ip;
	rec->s[CBV_CS_GREETING] = r->greeting;
	rec->s[CBV_CS_HELO] = r->helo;
	rec->s[CBV_CS_SENT] = r->sent;
	rec->s[CBV_CS_RECV] = r->recv;
	rec->s[CBV_CS_TLS] = r->tls;
}

/* Deletes k's flight lease if ticket holds it. */
static int drop_flight(struct cbv_cache *c, MDB_txn *t, const struct cbv_cache_key *k,
                       uint64_t ticket)
{
	unsigned char kb[CBV_CACHE_KEY_MAX];
	struct cbv_cache_lease l[CBV_CACHE_SLOTS_MAX];
	MDB_val key = { 0, kb }, v;
	size_t n;
	int rc;

	if (ticket == 0 || (key.mv_size = cbv_cache_key_derive(k, 'A', kb, sizeof(kb))) == 0)
		return 0;
	kb[0] = 'F';
	rc = mdb_get(t, c->dbi, &key, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (cbv_cache_leases_decode(v.mv_data, v.mv_size, l, &n) == CBV_REC_OK &&
	    (n != 1 || l[0].ticket != ticket))
		return 0; /* someone else's by now */
	rc = mdb_del(t, c->dbi, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Puts one result record of kind under key kind ('A'/'D'). */
static int put_rec(struct cbv_cache *c, MDB_txn *t, const struct store_arg *a,
                   enum cbv_cache_kind kind, unsigned ttl)
{
	unsigned char kb[CBV_CACHE_KEY_MAX];
	struct cbv_cache_rec rec;
	MDB_val key = { 0, kb }, v;
	int64_t now = now_ms(c);

	key.mv_size = cbv_cache_key_derive(a->k, kind == CBV_CACHE_ADDRESS ? 'A' : 'D', kb,
	                                   sizeof(kb));
	if (key.mv_size == 0)
		return 0;
	rec_from_result(&rec, a->r, a->k);
	rec.kind = kind;
	rec.stored_ms = now;
	rec.expires_ms = now + (int64_t)ttl * 1000;
	v.mv_size = cbv_cache_rec_encode(&rec, c->buf, sizeof(c->buf));
	if (v.mv_size == 0) {
		fail_once(c, F_BIG, "a result out of the record's bounds", "not stored");
		return 0;
	}
	v.mv_data = c->buf;
	return mdb_put(t, c->dbi, &key, &v, 0);
}

/* Live pages of the database over the map's pages, in percent. */
static unsigned fill_pct(struct cbv_cache *c, MDB_txn *t)
{
	MDB_stat ms;
	MDB_envinfo ei;
	size_t pages;

	if (mdb_stat(t, c->dbi, &ms) != 0 || mdb_env_info(c->env, &ei) != 0 || ms.ms_psize == 0)
		return 0;
	pages = ei.me_mapsize / ms.ms_psize;
	if (pages == 0)
		return 100;
	return (unsigned)((ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages) * 100 /
	                  pages);
}

static int store_op(struct cbv_cache *c, MDB_txn *t, void *arg)
{
	struct store_arg *a = arg;
	int rc = 0;

	if (a->addr_ttl > 0)
		rc = put_rec(c, t, a, CBV_CACHE_ADDRESS, a->addr_ttl);
	if (rc == 0 && a->fact != 0 && a->fact_ttl > 0)
		rc = put_rec(c, t, a, a->fact, a->fact_ttl);
	if (rc == 0)
		rc = drop_flight(c, t, a->k, a->ticket);
	if (rc == 0)
		rc = counters_put(c, t); /* the verification's counters, same transaction */
	return rc;
}

static int end_flight_op(struct cbv_cache *c, MDB_txn *t, void *arg)
{
	const struct store_arg *a = arg;

	return drop_flight(c, t, a->k, a->ticket);
}

enum cbv_cache_status cbv_cache_store(struct cbv_cache *c,
                                      const struct cbv_cache_key *k,
                                      const struct cbv_result *r,
                                      const struct cbv_cache_ttl *ttl,
                                      uint64_t ticket)
{
	struct store_arg a = { k, r, 0, 0, 0, ticket };
	unsigned pct = 0;

	if (c != NULL && c->redis != NULL) {
		/* a ticket of the fallback's (taken while Redis was down) ends there */
		enum cbv_cache_status st =
			redis_store(c, k, r, ttl, cbv_cache_redis_ticket(ticket) ? ticket : 0);

		if (ticket != 0 && !cbv_cache_redis_ticket(ticket) && c->fallback != NULL)
			cbv_cache_flight_end(c->fallback, k, ticket);
		if (st != CBV_CACHE_OFF || c->fallback == NULL)
			return st;
		c = c->fallback;
		a.ticket = ticket = cbv_cache_redis_ticket(ticket) ? 0 : ticket;
	}
	if (c == NULL || !key_ok(k) || !ensure_open(c))
		return CBV_CACHE_OFF;
	switch (r->verdict) {
	case CBV_PASS: a.addr_ttl = ttl->pass; break;
	case CBV_FAIL: a.addr_ttl = ttl->fail; break;
	case CBV_ERROR: a.addr_ttl = ttl->error; break;
	case CBV_TRANSIENT: a.addr_ttl = ttl->transient; break;
	}
	a.fact = domain_fact(r);
	if (a.fact == CBV_CACHE_CATCH_ALL)
		a.fact_ttl = ttl->catchall;
	else if (a.fact == CBV_CACHE_SENDER_REFUSED)
		a.fact_ttl = ttl->domain;
	else if (a.fact == CBV_CACHE_UNREACHABLE)
		a.fact_ttl = ttl->unreachable;
	if (a.addr_ttl == 0 && a.fact_ttl == 0 && ticket == 0)
		return CBV_CACHE_OK;
	/* make room before the map is full, so deletions still find pages */
	if (a.addr_ttl + a.fact_ttl > 0 && rbegin(c) == 0) {
		pct = fill_pct(c, c->rtxn);
		rend(c);
		if (pct >= FILL_PCT)
			reclaim(c);
	}
	if (write_op(c, store_op, &a) == 0) {
		counters_written(c);
		return CBV_CACHE_OK;
	}
	/* not stored: at least let the waiters go */
	if (ticket != 0)
		write_op(c, end_flight_op, &a);
	return CBV_CACHE_OFF;
}

/* ---- single flight ---- */

struct flight_arg {
	const struct cbv_cache_key *k;
	unsigned lease_s;
	uint64_t ticket;
	int64_t wake_ms;
	enum cbv_cache_status st;
};

static int flight_op(struct cbv_cache *c, MDB_txn *t, void *arg)
{
	struct flight_arg *a = arg;
	struct cbv_cache_rec rec;
	struct cbv_cache_lease l[CBV_CACHE_SLOTS_MAX];
	unsigned char kb[CBV_CACHE_KEY_MAX], vb[64];
	MDB_val key = { 0, kb }, v;
	int64_t now = now_ms(c);
	size_t n = 0;
	int rc;

	if (find_answer(c, t, a->k, &rec)) {
		a->st = CBV_CACHE_READY;
		return NO_WRITE;
	}
	key.mv_size = cbv_cache_key_derive(a->k, 'A', kb, sizeof(kb));
	if (key.mv_size == 0) {
		a->st = CBV_CACHE_OFF; /* a key out of bounds is never cached */
		return NO_WRITE;
	}
	kb[0] = 'F';
	rc = mdb_get(t, c->dbi, &key, &v);
	if (rc == 0 && cbv_cache_leases_decode(v.mv_data, v.mv_size, l, &n) == CBV_REC_OK &&
	    n == 1 && lease_alive(&l[0], now)) {
		a->st = CBV_CACHE_BUSY;
		a->wake_ms = l[0].expires_ms;
		return NO_WRITE;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	l[0].pid = (uint32_t)getpid();
	l[0].ticket = a->ticket = new_ticket(c);
	l[0].expires_ms = now + (int64_t)a->lease_s * 1000;
	v.mv_size = cbv_cache_leases_encode(l, 1, vb, sizeof(vb));
	v.mv_data = vb;
	a->st = CBV_CACHE_OWN;
	a->wake_ms = l[0].expires_ms;
	return mdb_put(t, c->dbi, &key, &v, 0);
}

enum cbv_cache_status cbv_cache_flight_begin(struct cbv_cache *c,
                                             const struct cbv_cache_key *k,
                                             unsigned lease_s, uint64_t *ticket,
                                             int64_t *wake_ms)
{
	struct flight_arg a = { k, lease_s == 0 ? 1 : lease_s, 0, 0, CBV_CACHE_OFF };
	enum cbv_cache_status st;

	*ticket = 0;
	if (wake_ms != NULL)
		*wake_ms = 0;
	if (c != NULL && c->redis != NULL) {
		int64_t wake = 0;

		st = key_ok(k) ? cbv_cache_redis_flight_begin(c->redis, now_ms(c), k, a.lease_s,
		                                              ticket, &wake)
		               : CBV_CACHE_OFF;
		if (wake_ms != NULL)
			*wake_ms = wake;
		if (st != CBV_CACHE_OFF || c->fallback == NULL)
			return st;
		c = c->fallback;
	}
	if (c == NULL || !key_ok(k) || !ensure_open(c))
		return CBV_CACHE_OFF;
	st = write_op(c, flight_op, &a) == 0 ? a.st : CBV_CACHE_OFF;
	if (st == CBV_CACHE_OWN)
		*ticket = a.ticket;
	if (wake_ms != NULL)
		*wake_ms = a.wake_ms;
	return st;
}

void cbv_cache_flight_end(struct cbv_cache *c, const struct cbv_cache_key *k,
                          uint64_t ticket)
{
	struct store_arg a = { k, NULL, 0, 0, 0, ticket };

	if (c != NULL && c->redis != NULL) {
		if (cbv_cache_redis_ticket(ticket)) {
			if (key_ok(k))
				cbv_cache_redis_flight_end(c->redis, k, ticket);
			return;
		}
		c = c->fallback;
	}
	if (c == NULL || ticket == 0 || !ensure_open(c))
		return;
	write_op(c, end_flight_op, &a);
}

/* ---- caps ---- */

struct slot_arg {
	unsigned char key[1 + CBV_DOMAIN_MAX];
	size_t klen;
	unsigned max;            /* 0 = no concurrency cap */
	const struct cbv_cache_caps *caps; /* rate (domain only), else NULL */
	unsigned lease_s;
	uint64_t ticket;         /* release: this one; acquire: the new one */
	int release;
	int64_t wake_ms;
	enum cbv_cache_limit which;
	enum cbv_cache_status st;
};

/* Reads a lease list; a damaged one counts as empty. */
static int read_leases(struct cbv_cache *c, MDB_txn *t, MDB_val *key,
                       struct cbv_cache_lease *l, size_t *n)
{
	MDB_val v;
	int rc = mdb_get(t, c->dbi, key, &v);

	*n = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (cbv_cache_leases_decode(v.mv_data, v.mv_size, l, n) != CBV_REC_OK) {
		fail_once(c, F_DAMAGED, "a damaged record", "reset");
		*n = 0;
	}
	return 0;
}

static int write_leases(struct cbv_cache *c, MDB_txn *t, MDB_val *key,
                        const struct cbv_cache_lease *l, size_t n)
{
	unsigned char vb[6 + CBV_CACHE_SLOTS_MAX * 20 + 4];
	MDB_val v = { 0, vb };
	int rc;

	if (n == 0) {
		rc = mdb_del(t, c->dbi, key, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	v.mv_size = cbv_cache_leases_encode(l, n, vb, sizeof(vb));
	return mdb_put(t, c->dbi, key, &v, 0);
}

/* Takes a token from the rate bucket of a->key (kind 'R'); 1 if taken. */
static int take_token(struct cbv_cache *c, MDB_txn *t, struct slot_arg *a, int64_t now,
                      int *rc)
{
	const struct cbv_cache_caps *caps = a->caps;
	unsigned char kb[1 + CBV_DOMAIN_MAX], vb[32];
	struct cbv_cache_bucket b;
	MDB_val key = { a->klen, kb }, v;
	/* bounded so el * count * 1000 fits in 64 bits */
	uint64_t count = caps->rate_count < 1000000 ? caps->rate_count : 1000000;
	uint64_t cap_m = count * 1000;
	int64_t window = (int64_t)(caps->rate_window_s < 1000000 ? caps->rate_window_s : 1000000) *
	                 1000,
	        el;

	memcpy(kb, a->key, a->klen);
	kb[0] = 'R';
	*rc = mdb_get(t, c->dbi, &key, &v);
	if (*rc == 0 && cbv_cache_bucket_decode(v.mv_data, v.mv_size, &b) == CBV_REC_OK) {
		el = now - b.last_ms;
		if (el < 0)
			el = 0; /* the clock stepped back: no refill */
		if (el > window)
			el = window;
		/* count per window, in milli-tokens per ms: count/window * 1000 */
		b.mtokens += (uint64_t)el * count * 1000 / (uint64_t)window;
		if (b.mtokens > cap_m)
			b.mtokens = cap_m;
	} else if (*rc != 0 && *rc != MDB_NOTFOUND) {
		return 0;
	} else {
		b.mtokens = cap_m; /* a new (or damaged) bucket starts full */
	}
	*rc = 0;
	b.last_ms = now;
	if (b.mtokens < 1000) {
		a->wake_ms = now + (int64_t)((1000 - b.mtokens) * (uint64_t)window / cap_m) + 1;
		return 0;
	}
	b.mtokens -= 1000;
	v.mv_size = cbv_cache_bucket_encode(&b, vb, sizeof(vb));
	v.mv_data = vb;
	*rc = mdb_put(t, c->dbi, &key, &v, 0);
	return *rc == 0;
}

static int slot_op(struct cbv_cache *c, MDB_txn *t, void *arg)
{
	struct slot_arg *a = arg;
	struct cbv_cache_lease l[CBV_CACHE_SLOTS_MAX + 1];
	MDB_val key = { a->klen, a->key };
	int64_t now = now_ms(c), wake = 0;
	size_t n, m = 0;
	int rc = read_leases(c, t, &key, l, &n);

	if (rc != 0)
		return rc;
	/* keep live slots, except the one being released */
	for (size_t i = 0; i < n; i++) {
		if (a->release ? l[i].ticket == a->ticket : !lease_alive(&l[i], now))
			continue;
		if (wake == 0 || l[i].expires_ms < wake)
			wake = l[i].expires_ms;
		l[m++] = l[i];
	}
	if (!a->release) {
		if ((a->max > 0 && m >= a->max) || m >= CBV_CACHE_SLOTS_MAX) {
			a->st = CBV_CACHE_LIMITED;
			a->which = a->key[0] == 'H' ? CBV_LIMIT_HOST_CONCURRENCY
			                            : CBV_LIMIT_DOMAIN_CONCURRENCY;
			a->wake_ms = wake;
			return m == n ? NO_WRITE : write_leases(c, t, &key, l, m);
		}
		if (a->caps != NULL && a->caps->rate_count > 0 && a->caps->rate_window_s > 0 &&
		    !take_token(c, t, a, now, &rc)) {
			if (rc != 0)
				return rc;
			a->st = CBV_CACHE_LIMITED;
			a->which = CBV_LIMIT_DOMAIN_RATE;
			return m == n ? NO_WRITE : write_leases(c, t, &key, l, m);
		}
		l[m].pid = (uint32_t)getpid();
		l[m].ticket = a->ticket = new_ticket(c);
		l[m].expires_ms = now + (int64_t)a->lease_s * 1000;
		m++;
		a->st = CBV_CACHE_OK;
	}
	if (m == n && a->release)
		return NO_WRITE; /* not there */
	return write_leases(c, t, &key, l, m);
}

static enum cbv_cache_status slot_acquire(struct cbv_cache *c, char kind, const char *name,
                                          unsigned max, const struct cbv_cache_caps *caps,
                                          uint64_t *ticket, int64_t *wake_ms,
                                          enum cbv_cache_limit *which)
{
	struct slot_arg a;

	*ticket = 0;
	if (wake_ms != NULL)
		*wake_ms = 0;
	if (which != NULL)
		*which = CBV_LIMIT_NONE;
	memset(&a, 0, sizeof(a));
	a.klen = name_key(kind, name, a.key);
	if (c != NULL && c->redis != NULL && a.klen > 0) {
		enum cbv_cache_limit w = CBV_LIMIT_NONE;
		int64_t wake = 0;
		enum cbv_cache_status st;
		int none;
		unsigned rate = cbv_cache_slot_rate(kind, max, caps, &none);

		if (none)
			return CBV_CACHE_OK; /* no caps at all: nothing to ask */
		st = cbv_cache_redis_acquire(c->redis, now_ms(c), kind, name, max, rate,
		                             caps->rate_window_s, caps->lease_s, ticket, &wake, &w);
		if (wake_ms != NULL)
			*wake_ms = wake;
		if (which != NULL)
			*which = w;
		if (st != CBV_CACHE_OFF || c->fallback == NULL)
			return st;
		c = c->fallback;
	}
	if (c == NULL || a.klen == 0 || !ensure_open(c))
		return CBV_CACHE_OFF;
	a.max = max;
	a.caps = kind == 'C' ? caps : NULL;
	a.lease_s = caps->lease_s == 0 ? 1 : caps->lease_s;
	a.st = CBV_CACHE_OFF;
	if (kind == 'C' && max == 0 && (caps->rate_count == 0 || caps->rate_window_s == 0))
		return CBV_CACHE_OK; /* no caps at all: no write */
	if (kind == 'H' && max == 0)
		return CBV_CACHE_OK;
	if (write_op(c, slot_op, &a) != 0)
		a.st = CBV_CACHE_OFF;
	*ticket = a.st == CBV_CACHE_OK ? a.ticket : 0;
	if (wake_ms != NULL)
		*wake_ms = a.wake_ms;
	if (which != NULL)
		*which = a.which;
	return a.st;
}

static void slot_release(struct cbv_cache *c, char kind, const char *name, uint64_t ticket)
{
	struct slot_arg a;

	memset(&a, 0, sizeof(a));
	a.klen = name_key(kind, name, a.key);
	if (c != NULL && c->redis != NULL) {
		if (cbv_cache_redis_ticket(ticket)) {
			cbv_cache_redis_release(c->redis, kind, name, ticket);
			return;
		}
		c = c->fallback;
	}
	if (c == NULL || ticket == 0 || a.klen == 0 || !ensure_open(c))
		return;
	a.ticket = ticket;
	a.release = 1;
	write_op(c, slot_op, &a);
}

enum cbv_cache_status cbv_cache_domain_acquire(struct cbv_cache *c,
                                               const char *domain,
                                               const struct cbv_cache_caps *caps,
                                               uint64_t *ticket, int64_t *wake_ms,
                                               enum cbv_cache_limit *which)
{
	return slot_acquire(c, 'C', domain, caps->domain_concurrency, caps, ticket, wake_ms,
	                    which);
}

void cbv_cache_domain_release(struct cbv_cache *c, const char *domain, uint64_t ticket)
{
	slot_release(c, 'C', domain, ticket);
}

enum cbv_cache_status cbv_cache_host_acquire(struct cbv_cache *c, const char *ip,
                                             const struct cbv_cache_caps *caps,
                                             uint64_t *ticket, int64_t *wake_ms)
{
	return slot_acquire(c, 'H', ip, caps->host_concurrency, caps, ticket, wake_ms, NULL);
}

void cbv_cache_host_release(struct cbv_cache *c, const char *ip, uint64_t ticket)
{
	slot_release(c, 'H', ip, ticket);
}

/* ---- scanning: each, forget, purge, evict, stats ---- */

/* 1 if key is a result record ('A'/'D' + domain NUL + hash). */
static int result_key(const MDB_val *k)
{
	const unsigned char *p = k->mv_data;

	return k->mv_size > 34 && (p[0] == 'A' || p[0] == 'D') && p[k->mv_size - 33] == '\0';
}

/*
 * What a scan does with each entry: decides whether to delete it.  The
 * visitor sees the key and value inside the transaction.
 */
typedef int scan_fn(struct cbv_cache *c, const MDB_val *k, const MDB_val *v, void *arg);

/*
 * Walks keys from prefix (all keys if plen 0) in write transactions of at
 * most BATCH deletions and VISITS keys, deleting what fn says.  Deleting needs free pages
 * too (copy on write): when a full map refuses a batch, it is retried at
 * half the size, down to one deletion a transaction.  Returns the count
 * deleted or -1 on an LMDB error (logged).
 */
static long scan_delete(struct cbv_cache *c, const unsigned char *prefix, size_t plen,
                        scan_fn *fn, void *arg)
{
	unsigned char resume[CBV_CACHE_KEY_MAX], next[CBV_CACHE_KEY_MAX];
	size_t rlen = plen, nlen = 0;
	long deleted = 0;
	int more = 1, rc = 0, limit = BATCH;

	if (plen > 0)
		memcpy(resume, prefix, plen);
	while (more) {
		MDB_txn *t = NULL;
		MDB_cursor *cur = NULL;
		MDB_val k = { rlen, resume }, v;
		int batch = 0, next_more = 0, seen = 0;

		if ((rc = wbegin(c, &t)) != 0)
			break;
		if ((rc = mdb_cursor_open(t, c->dbi, &cur)) != 0) {
			mdb_txn_abort(t);
			break;
		}
		rc = rlen > 0 ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
		              : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		while (rc == 0) {
			if (plen > 0 && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
				break;
			if (k.mv_size > sizeof(next)) { /* not one of ours: step over */
				rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
				continue;
			}
			if (batch == limit || ++seen > VISITS) {
				/* the next transaction resumes at this key */
				nlen = k.mv_size;
				memcpy(next, k.mv_data, nlen);
				next_more = 1;
				break;
			}
			if (fn(c, &k, &v, arg)) {
				/* the key's bytes live in the page the delete changes */
				nlen = k.mv_size;
				memcpy(next, k.mv_data, nlen);
				if ((rc = mdb_cursor_del(cur, 0)) != 0)
					break;
				batch++;
				k.mv_size = nlen;
				k.mv_data = next;
				rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
				continue;
			}
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
		if (rc != 0 && rc != MDB_NOTFOUND)
			mdb_txn_abort(t);
		else
			rc = mdb_txn_commit(t);
		if (rc == MDB_MAP_FULL && limit > 1) {
			limit /= 2; /* the same keys again, fewer at a time */
			continue;
		}
		if (rc != 0)
			break;
		deleted += batch;
		more = next_more;
		if (more) {
			rlen = nlen;
			memcpy(resume, next, nlen);
		}
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		fail_once(c, F_WRITE, "cannot write it", mdb_strerror(rc));
		return -1;
	}
	return deleted;
}

static int expired_entry(struct cbv_cache *c, const MDB_val *k, const MDB_val *v, void *arg)
{
	const unsigned char *p = k->mv_data;
	int64_t now = *(const int64_t *)arg;
	struct cbv_cache_lease l[CBV_CACHE_SLOTS_MAX];
	struct cbv_cache_bucket b;
	struct cbv_cache_rec rec;
	size_t n;

	(void)c;
	if (k->mv_size == 0)
		return 0;
	switch (p[0]) {
	case 'A':
	case 'D':
		/* damaged or other-version values are of no use either */
		return cbv_cache_rec_decode(v->mv_data, v->mv_size, &rec) != CBV_REC_OK ||
		       rec.expires_ms <= now;
	case 'F':
	case 'C':
	case 'H':
		if (cbv_cache_leases_decode(v->mv_data, v->mv_size, l, &n) != CBV_REC_OK)
			return 1;
		for (size_t i = 0; i < n; i++)
			if (lease_alive(&l[i], now))
				return 0;
		return 1;
	case 'R':
		return cbv_cache_bucket_decode(v->mv_data, v->mv_size, &b) != CBV_REC_OK ||
		       now - b.last_ms > BUCKET_IDLE_MS;
	case 'T':
	case 'N': {
		struct cbv_cache_blob blob;

		return cbv_cache_blob_decode(v->mv_data, v->mv_size, (char)p[0], &blob) !=
		               CBV_REC_OK ||
		       blob.expires_ms <= now;
	}
	}
	return 0;
}

long cbv_cache_purge(struct cbv_cache *c)
{
	int64_t now;

	if (c != NULL && c->redis != NULL)
		return cbv_cache_redis_usable(c->redis) ? 0 : -1; /* Redis expires by itself */
	if (c == NULL || !ensure_open(c))
		return -1;
	now = now_ms(c);
	return scan_delete(c, NULL, 0, expired_entry, &now);
}

static int older_than(struct cbv_cache *c, const MDB_val *k, const MDB_val *v, void *arg)
{
	struct cbv_cache_rec rec;

	(void)c;
	return result_key(k) && cbv_cache_rec_decode(v->mv_data, v->mv_size, &rec) == CBV_REC_OK &&
	       rec.stored_ms <= *(const int64_t *)arg;
}

/*
 * Deletes about the oldest quarter of the result records: one read pass
 * finds the range of store times and a 64-bucket histogram, the cut is
 * the bucket where a quarter is reached.  No allocation, two passes.
 */
static long evict_oldest(struct cbv_cache *c)
{
	unsigned long hist[64] = { 0 }, total = 0, acc = 0;
	int64_t lo = INT64_MAX, hi = INT64_MIN, cut;
	struct cbv_cache_rec rec;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc;

	for (int pass = 0; pass < 2; pass++) {
		if (rbegin(c) != 0)
			return -1;
		if (mdb_cursor_open(c->rtxn, c->dbi, &cur) != 0) {
			rend(c);
			return -1;
		}
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (!result_key(&k) ||
			    cbv_cache_rec_decode(v.mv_data, v.mv_size, &rec) != CBV_REC_OK)
				continue;
			if (pass == 0) {
				lo = rec.stored_ms < lo ? rec.stored_ms : lo;
				hi = rec.stored_ms > hi ? rec.stored_ms : hi;
				total++;
			} else {
				hist[(uint64_t)(rec.stored_ms - lo) * 63 / (uint64_t)(hi - lo + 1)]++;
			}
		}
		mdb_cursor_close(cur);
		rend(c);
		if (total == 0)
			return 0;
	}
	cut = hi;
	for (int i = 0; i < 64; i++) {
		acc += hist[i];
		if (acc * 4 >= total) {
			/* the highest store time that falls into bucket i */
			cut = lo + (int64_t)(((uint64_t)(i + 1) * (uint64_t)(hi - lo + 1) + 62) / 63) - 1;
			break;
		}
	}
	return scan_delete(c, NULL, 0, older_than, &cut);
}

/*
 * Commits one write that changes nothing (the format record again).  LMDB
 * reuses a page freed by transaction N only from transaction N + 2 on, so
 * after the deletions of a reclaim this makes their pages usable by the
 * very next write.
 */
static void bump_txnid(struct cbv_cache *c)
{
	unsigned char fmt[4] = { CBV_CACHE_FORMAT, 0, 0, 0 };
	MDB_val k = { sizeof(META_KEY) - 1, (void *)(uintptr_t)META_KEY }, v = { 4, fmt };
	MDB_txn *t = NULL;

	if (wbegin(c, &t) != 0)
		return;
	if (mdb_put(t, c->dbi, &k, &v, 0) == 0)
		mdb_txn_commit(t);
	else
		mdb_txn_abort(t);
}

/* Frees space when the map is (nearly) full: expired first, then the oldest. */
static long reclaim(struct cbv_cache *c)
{
	long n = cbv_cache_purge(c);
	long m = 0;
	unsigned pct = 100;

	if (rbegin(c) == 0) {
		pct = fill_pct(c, c->rtxn);
		rend(c);
	}
	if (n <= 0 || pct >= FILL_PCT)
		m = evict_oldest(c);
	bump_txnid(c);
	cbv_log(CBV_LOG_INFO, "cache %s: map %u%% full: %ld expired and %ld oldest records removed",
	        c->path, pct, n < 0 ? 0 : n, m < 0 ? 0 : m);
	return (n < 0 ? 0 : n) + (m < 0 ? 0 : m);
}

struct forget_arg {
	const char *local;
	size_t llen;
};

static int forget_entry(struct cbv_cache *c, const MDB_val *k, const MDB_val *v, void *arg)
{
	const struct forget_arg *a = arg;
	struct cbv_cache_rec rec;
	const char *at;

	(void)c;
	if (a->local == NULL)
		return 1;
	if (cbv_cache_rec_decode(v->mv_data, v->mv_size, &rec) != CBV_REC_OK)
		return 0;
	(void)k;
	at = strrchr(rec.s[CBV_CS_RCPT], '@');
	return at != NULL && (size_t)(at - rec.s[CBV_CS_RCPT]) == a->llen &&
	       memcmp(rec.s[CBV_CS_RCPT], a->local, a->llen) == 0;
}

long cbv_cache_forget(struct cbv_cache *c, const char *domain, const char *local)
{
	unsigned char p[2 + CBV_DOMAIN_MAX];
	size_t dl = put_domain(domain, p + 1);
	struct forget_arg a = { local, local != NULL ? strlen(local) : 0 };
	const char *kinds = local != NULL ? "A" : "ADF";
	long total = 0, n;

	if (c != NULL && c->redis != NULL)
		return dl == 0 ? -1 : cbv_cache_redis_forget(c->redis, domain, local);
	if (c == NULL || dl == 0 || !ensure_open(c))
		return -1;
	for (const char *kd = kinds; *kd != '\0'; kd++) {
		p[0] = (unsigned char)*kd;
		p[1 + dl] = '\0';
		n = scan_delete(c, p, dl + 2, forget_entry, &a);
		if (n < 0)
			return -1;
		total += n;
	}
	if (local == NULL) {
		/* caps: exact keys 'C'/'R' + domain */
		for (const char *kd = "CR"; *kd != '\0'; kd++) {
			MDB_val key = { dl + 1, p };
			MDB_txn *t = NULL;
			int rc;

			p[0] = (unsigned char)*kd;
			if (wbegin(c, &t) != 0)
				return -1;
			rc = mdb_del(t, c->dbi, &key, NULL);
			if (rc == 0 && mdb_txn_commit(t) == 0)
				total++;
			else if (rc != 0)
				mdb_txn_abort(t);
		}
	}
	return total;
}

long cbv_cache_each(struct cbv_cache *c, const char *domain, cbv_cache_each_fn *fn,
                    void *arg)
{
	unsigned char p[2 + CBV_DOMAIN_MAX];
	char dom[CBV_DOMAIN_MAX + 1];
	size_t dl = 0;
	struct cbv_cache_entry e;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int64_t now;
	long count = 0;
	int rc, stop = 0;

	if (c != NULL && c->redis != NULL)
		return domain != NULL && put_domain(domain, p + 1) == 0
		               ? -1
		               : cbv_cache_redis_each(c->redis, now_ms(c), domain, fn, arg);
	if (c == NULL || (domain != NULL && (dl = put_domain(domain, p + 1)) == 0) ||
	    !ensure_open(c) || rbegin(c) != 0)
		return -1;
	now = now_ms(c);
	if (mdb_cursor_open(c->rtxn, c->dbi, &cur) != 0) {
		rend(c);
		return -1;
	}
	for (const char *kd = "AD"; *kd != '\0' && !stop; kd++) {
		size_t plen = domain != NULL ? dl + 2 : 1;

		p[0] = (unsigned char)*kd;
		p[1 + dl] = '\0';
		k.mv_size = plen;
		k.mv_data = p;
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && !stop;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			const unsigned char *kp = k.mv_data;

			if (k.mv_size < plen || memcmp(kp, p, plen) != 0)
				break;
			if (!result_key(&k) ||
			    cbv_cache_rec_decode(v.mv_data, v.mv_size, &e.rec) != CBV_REC_OK)
				continue;
			memcpy(dom, kp + 1, k.mv_size - 34);
			dom[k.mv_size - 34] = '\0';
			e.domain = dom;
			e.expired = e.rec.expires_ms <= now;
			count++;
			stop = fn(&e, arg) != 0;
		}
	}
	mdb_cursor_close(cur);
	rend(c);
	return count;
}

int cbv_cache_stats(struct cbv_cache *c, struct cbv_cache_stats *st)
{
	struct cbv_cache_rec rec;
	MDB_cursor *cur = NULL;
	MDB_stat ms;
	MDB_envinfo ei;
	struct stat fs;
	MDB_val k, v;
	int64_t now;
	int rc;

	memset(st, 0, sizeof(*st));
	if (c != NULL && c->redis != NULL)
		return cbv_cache_redis_stats(c->redis, now_ms(c), st);
	if (c == NULL || !ensure_open(c) || rbegin(c) != 0)
		return -1;
	now = now_ms(c);
	if (mdb_cursor_open(c->rtxn, c->dbi, &cur) != 0) {
		rend(c);
		return -1;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const unsigned char *kp = k.mv_data;

		if (k.mv_size == 0)
			continue;
		if (kp[0] == 'A' || kp[0] == 'D') {
			if (cbv_cache_rec_decode(v.mv_data, v.mv_size, &rec) != CBV_REC_OK) {
				st->damaged++;
				continue;
			}
			st->by_kind[rec.kind]++;
			if (rec.kind == CBV_CACHE_ADDRESS)
				st->by_verdict[rec.verdict]++;
			if (rec.expires_ms <= now)
				st->expired++;
		} else if (kp[0] == 'F' || kp[0] == 'C' || kp[0] == 'H') {
			st->leases++;
		} else if (kp[0] == 'R') {
			st->buckets++;
		}
	}
	mdb_cursor_close(cur);
	if (mdb_stat(c->rtxn, c->dbi, &ms) == 0 && mdb_env_info(c->env, &ei) == 0) {
		st->map_bytes = ei.me_mapsize;
		st->used_bytes = (unsigned long long)(ms.ms_branch_pages + ms.ms_leaf_pages +
		                                      ms.ms_overflow_pages) *
		                 ms.ms_psize;
	}
	rend(c);
	if (stat(c->path, &fs) == 0)
		st->file_bytes = (unsigned long long)fs.st_size;
	return 0;
}

/* ---- the Redis backend: the same records, through cbv_cache_redis.c ---- */

static enum cbv_cache_status redis_lookup(struct cbv_cache *c, const struct cbv_cache_key *k,
                                          struct cbv_result **out, unsigned long *age_s)
{
	struct cbv_cache_rec rec;
	int64_t now = now_ms(c);
	enum cbv_cache_status st;

	if (!key_ok(k))
		return CBV_CACHE_OFF;
	st = cbv_cache_redis_lookup(c->redis, now, k, c->buf, sizeof(c->buf), &rec);
	if (st != CBV_CACHE_HIT)
		return st;
	return cbv_cache_hit_of(c, &rec, now, out, age_s);
}

/* ---- for the Redis backend's non-blocking driver (cbv_cache_async.c) ---- */

enum cbv_cache_status cbv_cache_hit_of(struct cbv_cache *c, const struct cbv_cache_rec *rec,
                                       int64_t now, struct cbv_result **out,
                                       unsigned long *age_s)
{
	*out = to_result(rec);
	if (*out == NULL) {
		fail_once(c, F_NOMEM, "out of memory or an unknown reason word", "a miss");
		return CBV_CACHE_MISS;
	}
	if (age_s != NULL)
		*age_s = now > rec->stored_ms ? (unsigned long)((now - rec->stored_ms) / 1000) : 0;
	return CBV_CACHE_HIT;
}

struct cbv_cache_redis *cbv_cache_redis_of(struct cbv_cache *c)
{
	return c != NULL ? c->redis : NULL;
}

struct cbv_cache *cbv_cache_fallback_of(struct cbv_cache *c)
{
	return c->fallback;
}

int64_t cbv_cache_now(const struct cbv_cache *c)
{
	return now_ms(c);
}

int cbv_cache_key_valid(const struct cbv_cache_key *k)
{
	return key_ok(k);
}

unsigned cbv_cache_slot_rate(char kind, unsigned max, const struct cbv_cache_caps *caps,
                             int *none)
{
	unsigned rate = kind == 'C' ? caps->rate_count : 0;

	*none = max == 0 && (rate == 0 || caps->rate_window_s == 0);
	return rate;
}

/* Encodes kind's record of r into buf; its length, 0 if not stored. */
static size_t redis_encode(struct cbv_cache *c, const struct cbv_cache_key *k,
                           const struct cbv_result *r, enum cbv_cache_kind kind, unsigned ttl,
                           unsigned char *buf)
{
	struct cbv_cache_rec rec;
	int64_t now = now_ms(c);
	size_t n;

	if (ttl == 0)
		return 0;
	rec_from_result(&rec, r, k);
	rec.kind = kind;
	rec.stored_ms = now;
	rec.expires_ms = now + (int64_t)ttl * 1000;
	n = cbv_cache_rec_encode(&rec, buf, CBV_CACHE_REC_MAX);
	if (n == 0)
		fail_once(c, F_BIG, "a result out of the record's bounds", "not stored");
	return n;
}

static enum cbv_cache_status redis_store(struct cbv_cache *c, const struct cbv_cache_key *k,
                                         const struct cbv_result *r,
                                         const struct cbv_cache_ttl *ttl, uint64_t ticket)
{
	unsigned attl = 0, dttl = 0;
	enum cbv_cache_kind fact = domain_fact(r);
	size_t alen, dlen = 0;

	if (!key_ok(k))
		return CBV_CACHE_OFF;
	switch (r->verdict) {
	case CBV_PASS: attl = ttl->pass; break;
	case CBV_FAIL: attl = ttl->fail; break;
	case CBV_ERROR: attl = ttl->error; break;
	case CBV_TRANSIENT: attl = ttl->transient; break;
	}
	if (fact == CBV_CACHE_CATCH_ALL)
		dttl = ttl->catchall;
	else if (fact == CBV_CACHE_SENDER_REFUSED)
		dttl = ttl->domain;
	else if (fact == CBV_CACHE_UNREACHABLE)
		dttl = ttl->unreachable;
	alen = redis_encode(c, k, r, CBV_CACHE_ADDRESS, attl, c->buf);
	if (fact != 0)
		dlen = redis_encode(c, k, r, fact, dttl, c->buf2);
	if (alen == 0 && dlen == 0 && ticket == 0)
		return CBV_CACHE_OK;
	return cbv_cache_redis_store(c->redis, k, c->buf, alen, attl, c->buf2, dlen, dttl,
	                             ticket);
}

/* ---- counters for operators (cbv_stats.h): 'S' NAME -> uint64 LE ---- */

void cbv_cache_count(struct cbv_cache *c, const struct cbv_stats_event *ev)
{
	struct cbv_stats_field f[CBV_STATS_FIELDS_MAX];
	size_t n;

	if (c == NULL)
		return;
	n = cbv_stats_fields(ev, 0, f);
	for (size_t i = 0; i < n; i++) {
		size_t j = 0;

		while (j < c->npend && strcmp(c->pend[j].name, f[i].name) != 0)
			j++;
		if (j == c->npend) {
			if (c->npend == sizeof(c->pend) / sizeof(c->pend[0]))
				continue; /* a second event's new field: dropped, never overrun */
			c->pend[c->npend++] = (struct cbv_stats_field){ .add = 0 };
			memcpy(c->pend[j].name, f[i].name, sizeof(f[i].name));
		}
		c->pend[j].add += f[i].add;
	}
}

static uint64_t get_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Adds the pending counters to their records in t.  0 or an LMDB error. */
static int counters_put(struct cbv_cache *c, MDB_txn *t)
{
	unsigned char kb[1 + CBV_STATS_FIELD_MAX], vb[8];
	int rc;

	for (size_t i = 0; i < c->npend; i++) {
		size_t nl = strlen(c->pend[i].name);
		MDB_val k = { 1 + nl, kb }, v;
		uint64_t cur = 0;

		kb[0] = 'S';
		memcpy(kb + 1, c->pend[i].name, nl);
		rc = mdb_get(t, c->dbi, &k, &v);
		if (rc == 0 && v.mv_size == 8)
			cur = get_le64(v.mv_data);
		else if (rc != 0 && rc != MDB_NOTFOUND)
			return rc;
		cur += c->pend[i].add;
		for (int b = 0; b < 8; b++)
			vb[b] = (unsigned char)(cur >> (8 * b));
		v.mv_size = 8;
		v.mv_data = vb;
		if ((rc = mdb_put(t, c->dbi, &k, &v, 0)) != 0)
			return rc;
	}
	return 0;
}

/* The transaction of counters_put() committed: nothing is pending now. */
static void counters_written(struct cbv_cache *c)
{
	c->npend = 0;
}

static int count_op(struct cbv_cache *c, MDB_txn *t, void *arg)
{
	(void)arg;
	return counters_put(c, t);
}

void cbv_cache_count_flush(struct cbv_cache *c)
{
	if (c == NULL || c->npend == 0)
		return;
	if (c->redis != NULL) {
		/* no reply awaited: a hit costs no extra round trip */
		if (cbv_cache_redis_count(c->redis, c->pend, c->npend,
		                          cbv_stats_outages_pending()) == 0)
			cbv_stats_outages_stored(cbv_stats_outages_pending());
		c->npend = 0; /* Redis down: this verification's counts are lost */
		return;
	}
	if (ensure_open(c) && write_op(c, count_op, NULL) == 0)
		counters_written(c);
	c->npend = 0;
}

int cbv_cache_counters(struct cbv_cache *c, struct cbv_stats *st)
{
	MDB_cursor *cur = NULL;
	MDB_val k = { 1, (void *)(uintptr_t) "S" }, v;
	int rc;

	memset(st, 0, sizeof(*st));
	if (c != NULL && c->redis != NULL)
		return cbv_cache_redis_counters(c->redis, st);
	if (c == NULL || !ensure_open(c) || rbegin(c) != 0)
		return -1;
	if (mdb_cursor_open(c->rtxn, c->dbi, &cur) != 0) {
		rend(c);
		return -1;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const char *kp = k.mv_data;

		if (k.mv_size < 2 || kp[0] != 'S')
			break;
		if (v.mv_size == 8)
			(void)cbv_stats_field_add(st, kp + 1, k.mv_size - 1, get_le64(v.mv_data));
	}
	mdb_cursor_close(cur);
	rend(c);
	return 0;
}

/* ---- blobs (cbv_cache.h): other modules' shared state ---- */

size_t cbv_cache_blob_key(char kind, const char *label, const void *name, size_t name_len,
                          unsigned char *out, size_t cap)
{
	unsigned char h[4 + 6 + 4 + CBV_CACHE_BLOB_NAME_MAX];
	const char tag[6] = { 'c', 'b', 'v', '-', kind, '1' };
	size_t dl, off = 0;
	SHA256_CTX sha;

	if (cap < CBV_CACHE_KEY_MAX || !cbv_cache_blob_kind_ok(kind) ||
	    name_len > CBV_CACHE_BLOB_NAME_MAX || (name == NULL && name_len > 0))
		return 0;
	dl = put_domain(label, out + 1);
	if (dl == 0 || memchr(out + 1, '\0', dl) != NULL)
		return 0;
	out[0] = (unsigned char)kind;
	out[1 + dl] = '\0';
	off = lv(h, off, tag, sizeof(tag));
	off = lv(h, off, name, name_len);
	if (SHA256_Init(&sha) != 1 || SHA256_Update(&sha, h, off) != 1 ||
	    SHA256_Final(out + 2 + dl, &sha) != 1)
		return 0;
	return 2 + dl + 32;
}

int64_t cbv_cache_now_ms(const struct cbv_cache *c)
{
	return c != NULL ? now_ms(c) : real_now_ms(NULL);
}

/* Checks a stored blob value; 1 with *b if of kind, whole and live. */
static int blob_open(struct cbv_cache *c, const void *val, size_t vlen, char kind,
                     struct cbv_cache_blob *b)
{
	enum cbv_cache_rec_status st = cbv_cache_blob_decode(val, vlen, kind, b);

	if (st == CBV_REC_EVERSION)
		fail_once(c, F_OLDREC, "a record of another format version", "ignored");
	else if (st != CBV_REC_OK)
		fail_once(c, F_DAMAGED, "a damaged record", "ignored");
	return st == CBV_REC_OK && b->expires_ms > now_ms(c);
}

enum cbv_cache_status cbv_cache_blob_get(struct cbv_cache *c, char kind, const char *label,
                                         const void *name, size_t name_len,
                                         unsigned char *buf, size_t cap, size_t *len,
                                         int64_t *expires_ms)
{
	unsigned char kb[CBV_CACHE_KEY_MAX];
	struct cbv_cache_blob b;
	enum cbv_cache_status st = CBV_CACHE_MISS;
	MDB_val key = { 0, kb }, v;
	size_t vlen = 0;

	*len = 0;
	*expires_ms = 0;
	key.mv_size = cbv_cache_blob_key(kind, label, name, name_len, kb, sizeof(kb));
	if (c == NULL || key.mv_size == 0)
		return CBV_CACHE_OFF;
	if (c->redis != NULL) {
		st = cbv_cache_redis_blob_get(c->redis, kb, key.mv_size, c->buf, sizeof(c->buf),
		                              &vlen);
		if (st == CBV_CACHE_HIT) {
			st = CBV_CACHE_MISS;
			if (blob_open(c, c->buf, vlen, kind, &b) && b.len <= cap) {
				memcpy(buf, b.data, b.len);
				*len = b.len;
				*expires_ms = b.expires_ms;
				st = CBV_CACHE_HIT;
			}
		}
		if (st != CBV_CACHE_OFF || c->fallback == NULL)
			return st;
		c = c->fallback;
		st = CBV_CACHE_MISS;
	}
	if (!ensure_open(c) || rbegin(c) != 0)
		return CBV_CACHE_OFF;
	if (mdb_get(c->rtxn, c->dbi, &key, &v) == 0 &&
	    blob_open(c, v.mv_data, v.mv_size, kind, &b) && b.len <= cap) {
		memcpy(buf, b.data, b.len);
		*len = b.len;
		*expires_ms = b.expires_ms;
		st = CBV_CACHE_HIT;
	}
	rend(c);
	return st;
}

struct blob_arg {
	MDB_val key, val; /* val.mv_size 0: delete */
};

static int blob_op(struct cbv_cache *c, MDB_txn *t, void *arg)
{
	struct blob_arg *a = arg;
	int rc;

	if (a->val.mv_size > 0)
		return mdb_put(t, c->dbi, &a->key, &a->val, 0);
	rc = mdb_del(t, c->dbi, &a->key, NULL);
	return rc == MDB_NOTFOUND ? NO_WRITE : rc;
}

enum cbv_cache_status cbv_cache_blob_put(struct cbv_cache *c, char kind, const char *label,
                                         const void *name, size_t name_len,
                                         const void *data, size_t len, int64_t expires_ms)
{
	unsigned char kb[CBV_CACHE_KEY_MAX];
	struct cbv_cache_blob b = { kind, expires_ms, data, len };
	struct blob_arg a = { { 0, kb }, { 0, NULL } };
	int64_t now;

	a.key.mv_size = cbv_cache_blob_key(kind, label, name, name_len, kb, sizeof(kb));
	if (c == NULL || a.key.mv_size == 0)
		return CBV_CACHE_OFF;
	now = now_ms(c);
	if (expires_ms <= now)
		return CBV_CACHE_OK;
	a.val.mv_size = cbv_cache_blob_encode(&b, c->buf, sizeof(c->buf));
	a.val.mv_data = c->buf;
	if (a.val.mv_size == 0) {
		fail_once(c, F_BIG, "a value out of the record's bounds", "not stored");
		return CBV_CACHE_OK;
	}
	if (c->redis != NULL) {
		enum cbv_cache_status st = cbv_cache_redis_blob_put(
			c->redis, kb, a.key.mv_size, c->buf, a.val.mv_size, (uint64_t)(expires_ms - now));

		if (st != CBV_CACHE_OFF || c->fallback == NULL)
			return st;
		return cbv_cache_blob_put(c->fallback, kind, label, name, name_len, data, len,
		                          expires_ms);
	}
	if (!ensure_open(c))
		return CBV_CACHE_OFF;
	return write_op(c, blob_op, &a) == 0 ? CBV_CACHE_OK : CBV_CACHE_OFF;
}

void cbv_cache_blob_del(struct cbv_cache *c, char kind, const char *label, const void *name,
                        size_t name_len)
{
	unsigned char kb[CBV_CACHE_KEY_MAX];
	struct blob_arg a = { { 0, kb }, { 0, NULL } };

	a.key.mv_size = cbv_cache_blob_key(kind, label, name, name_len, kb, sizeof(kb));
	if (c == NULL || a.key.mv_size == 0)
		return;
	if (c->redis != NULL) {
		if (cbv_cache_redis_blob_del(c->redis, kb, a.key.mv_size) != CBV_CACHE_OFF ||
		    c->fallback == NULL)
			return;
		c = c->fallback;
	}
	if (ensure_open(c))
		(void)write_op(c, blob_op, &a);
}
