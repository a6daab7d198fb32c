/*
 * cbv_dns.c - MX, then A/AAAA, through c-ares 1.18.1, as a state machine
 * the caller drives with poll(2) (see cbv_dns.h for the rules).
 *
 * c-ares 1.18.1 facts this file relies on (measured against dnsmasq 2.90):
 *   - ares_query() reports NOERROR with an empty answer as ARES_ENODATA
 *     and NXDOMAIN as ARES_ENOTFOUND.
 *   - The RFC 7505 target "." comes out of ares_parse_mx_reply() as "".
 *   - Without ARES_FLAG_NOCHECKRESP, a SERVFAIL/REFUSED/NOTIMP answer
 *     makes c-ares try the next server (and the next try); when every
 *     attempt failed that way or the servers were unreachable the query
 *     ends with ARES_ECONNREFUSED, so the rcode itself is lost.  We keep
 *     that behaviour: a second resolver may well answer.
 *   - Queries may complete inside ares_query() (no server, no memory), and
 *     ares_cancel()/ares_destroy() call every pending callback with
 *     ARES_ECANCELLED/ARES_EDESTRUCTION: callbacks ignore both and never
 *     touch a finished machine.
 *   - ares_query() hands the raw answer to the callback for NXDOMAIN and
 *     NODATA too, so their SOA (RFC 2308) is there to read.
 *   - There is no way to cancel one query of a channel, so a channel
 *     shared by several machines never sees ares_cancel() while one of
 *     them still waits: every query carries a ticket, and a machine that
 *     goes away only detaches its tickets (their answers are dropped).
 *   - With ares_set_socket_functions() c-ares leaves socket options to us
 *     (no O_NONBLOCK, FD_CLOEXEC or TCP_NODELAY of its own), and writes
 *     both UDP and TCP through asendv; write_tcp_data() would otherwise
 *     use writev(), which raises SIGPIPE on a connection the server reset.
 */
#include "cbv_dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cbv_clock.h"
#include "cbv_url.h"

/* RFC 1035 3.2.2 and 3.2.4, RFC 3596 2.1. */
enum { QCLASS_IN = 1,
       QTYPE_A = 1,
       QTYPE_SOA = 6,
       QTYPE_MX = 15,
       QTYPE_AAAA = 28 };

/* c-ares tries each server this often, doubling the timeout each round. */
#define DNS_TRIES 3
#define DNS_TRY_MIN_MS 100
#define DNS_TRY_MAX_MS 3000

#define DETAIL_MAX 512

struct chan;
struct exchanger;

/*
 * One query in flight: the callback argument.  d is NULL once the machine
 * went away; the ticket is freed when c-ares calls back (answer, timeout,
 * cancel or destroy), whichever comes first.
 */
struct ticket {
	struct ticket *prev, *next; /* in d->tickets */
	struct cbv_dns *d;
	struct chan *c;
	struct exchanger *x; /* NULL for the MX query */
	int qtype;
};

struct exchanger {
	char name[CBV_DOMAIN_MAX + 1];
	unsigned pref;
	int st4, st6;           /* ARES_ status of each lookup, -1 while pending */
	struct in_addr *a4;     /* owned, n4 entries */
	struct in6_addr *a6;    /* owned, n6 entries */
	size_t n4, n6;
};

struct cbv_dns {
	struct chan *chan;      /* shared channel, NULL until the first query sent */
	struct ticket *tickets; /* queries in flight for this machine */
	struct cbv_err setup;   /* why a channel could not be had */
	int64_t deadline;
	int try_ms; /* c-ares per-try timeout, picks the channel */
	char domain[CBV_DOMAIN_MAX + 1];
	char servers[CBV_DNS_SERVERS_MAX + 1];
	enum cbv_dns_outcome outcome;
	int implicit;           /* RFC 5321 5.1 implicit MX in use */
	int partial;
	int pending;            /* A/AAAA queries outstanding */
	struct exchanger *mx;   /* owned, nmx entries in preference order */
	size_t nmx;
	struct cbv_host *hosts; /* owned, nhosts entries once CBV_DNS_OK */
	size_t nhosts;
	ares_socket_t watched[ARES_GETSOCK_MAXNUM];
	int nwatched;           /* sockets handed out by cbv_dns_pollfds() */
	char detail[DETAIL_MAX];
	char tempdetail[DETAIL_MAX]; /* first temporary A/AAAA failure */
	struct cbv_dns_store store;  /* shared answers; get NULL = none */
};

/* ---- c-ares' sockets: ours, so that no write can raise SIGPIPE ---- */

static ares_socket_t sock_open(int af, int type, int proto, void *arg)
{
	int fd = socket(af, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);

	(void)arg;
	if (fd < 0)
		return ARES_SOCKET_BAD;
	if (type == SOCK_STREAM) {
		int one = 1;

		/* One query, one write: Nagle would only delay it. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return fd;
}

static int sock_close(ares_socket_t fd, void *arg)
{
	(void)arg;
	return close(fd);
}

static int sock_connect(ares_socket_t fd, const struct sockaddr *sa,
                        ares_socklen_t len, void *arg)
{
	(void)arg;
	return connect(fd, sa, len);
}

static ares_ssize_t sock_recvfrom(ares_socket_t fd, void *buf, size_t len,
                                  int flags, struct sockaddr *from,
                                  ares_socklen_t *fromlen, void *arg)
{
	(void)arg;
	return recvfrom(fd, buf, len, flags, from, fromlen);
}

/*
 * writev() with MSG_NOSIGNAL: a reset connection gives EPIPE, never the
 * signal.  At most 16 iovecs a call; a short write is what writev() may
 * do too, and c-ares sends the rest later.
 */
static ares_ssize_t sock_sendv(ares_socket_t fd, const struct iovec *iov,
                               int n, void *arg)
{
	struct iovec v[16];
	struct msghdr m;
	int i;

	(void)arg;
	if (n > 16)
		n = 16;
	for (i = 0; i < n; i++)
		v[i] = iov[i];
	memset(&m, 0, sizeof(m));
	m.msg_iov = v;
	m.msg_iovlen = (size_t)(n < 0 ? 0 : n);
	return sendmsg(fd, &m, MSG_NOSIGNAL);
}

static const struct ares_socket_functions sock_funcs = {
	sock_open, sock_close, sock_connect, sock_recvfrom, sock_sendv
};

/* ---- channels kept per process ---- */

/* What identifies a version of resolv.conf. */
struct file_id {
	int exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct chan {
	struct chan *next;
	ares_channel ch;
	char servers[CBV_DNS_SERVERS_MAX + 1];
	int try_ms;
	int users;                               /* machines holding it */
	int inflight;                            /* tickets not yet called back */
	int stale;                               /* takes no new machines; goes when idle */
	int forked;                              /* inherited from the parent: its sockets too */
	int pooled;                              /* in pool.chans (else one machine's own) */
	int processed;                           /* cbv_dns_process() ran this round */
	int timers_run;                          /* c-ares timeouts run this round */
	ares_socket_t done[ARES_GETSOCK_MAXNUM]; /* sockets read this round */
	int ndone;
	int64_t last_used;
};

static struct {
	int lib; /* ares_library_init() done */
	pid_t pid;
	struct chan *chans;
	int nchans;
	int have_conf;
	struct file_id conf;   /* resolv.conf the "" channels were made from */
	const char *conf_path; /* test hook; NULL = /etc/resolv.conf */
	struct cbv_dns_stats stats;
} pool;

static const char *resolv_path(void)
{
	return pool.conf_path != NULL ? pool.conf_path : "/etc/resolv.conf";
}

static void file_id_get(const char *path, struct file_id *id)
{
	struct stat st;

	memset(id, 0, sizeof(*id));
	if (stat(path, &st) != 0)
		return;
	id->exists = 1;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtime = st.st_mtim;
}

static int file_id_same(const struct file_id *a, const struct file_id *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void chan_destroy(struct chan *c)
{
	/* Calls back every ticket left (ARES_EDESTRUCTION): all orphans. */
	ares_destroy(c->ch);
	cbv_free(c);
}

/* Takes c out of the pool list. */
static void chan_unlink(struct chan *c)
{
	struct chan **pp;

	for (pp = &pool.chans; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			pool.nchans--;
			c->pooled = 0;
			return;
		}
}

/* Marks c for replacement; frees it now if nobody holds it. */
static void chan_retire(struct chan *c)
{
	c->stale = 1;
	if (c->users == 0) {
		chan_unlink(c);
		chan_destroy(c);
	}
}

static void cache_flush_servers(const char *servers);

/*
 * The system resolver's configuration changed (or first look): retire
 * the channels made from the old one and forget what it answered.
 */
static void check_resolv_conf(void)
{
	struct file_id id;
	struct chan *c, *next;

	file_id_get(resolv_path(), &id);
	if (pool.have_conf && file_id_same(&id, &pool.conf))
		return;
	for (c = pool.chans; c != NULL; c = next) {
		next = c->next;
		if (c->servers[0] == '\0')
			chan_retire(c);
	}
	if (pool.have_conf)
		cache_flush_servers("");
	pool.conf = id;
	pool.have_conf = 1;
}

/*
 * In a forked child every channel's sockets are also the parent's: reading
 * them would steal its answers.  Close our copies (ares_destroy) of the
 * idle ones; one still held by a machine is marked, and that machine
 * gives up at its next call.
 */
static void after_fork(void)
{
	struct chan *c, *next;

	for (c = pool.chans; c != NULL; c = next) {
		next = c->next;
		c->forked = 1;
		chan_retire(c);
	}
}

/* A new channel for (servers, try_ms); NULL with *err. */
static struct chan *chan_new(const char *servers, int try_ms,
                             struct cbv_err *err)
{
	struct ares_options opt;
	struct chan *c;
	int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
	int r;

	c = cbv_calloc(1, sizeof(*c));
	if (c == NULL) {
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	memset(&opt, 0, sizeof(opt));
	/* Exact names only: no search list, no HOSTALIASES. */
	opt.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	opt.tries = DNS_TRIES;
	opt.timeout = try_ms;
	if (pool.conf_path != NULL) {
		/* c-ares does not write through it. */
		opt.resolvconf_path = (char *)(uintptr_t)pool.conf_path;
		mask |= ARES_OPT_RESOLVCONF;
	}
	r = ares_init_options(&c->ch, &opt, mask);
	if (r != ARES_SUCCESS) {
		cbv_err_set(err, r == ARES_ENOMEM ? CBV_ENOMEM : CBV_EDNS,
		            "c-ares: %s", ares_strerror(r));
		cbv_free(c);
		return NULL;
	}
	ares_set_socket_functions(c->ch, &sock_funcs, NULL);
	if (servers[0] != '\0') {
		r = ares_set_servers_ports_csv(c->ch, servers);
		if (r != ARES_SUCCESS) {
			cbv_err_set(err, r == ARES_ENOMEM ? CBV_ENOMEM : CBV_ECONFIG,
			            "bad DNS servers \"%.200s\": %s", servers,
			            ares_strerror(r));
			chan_destroy(c);
			return NULL;
		}
	}
	memcpy(c->servers, servers, strlen(servers) + 1);
	c->try_ms = try_ms;
	pool.stats.channels++;
	return c;
}

/*
 * The channel for (servers, try_ms): the pooled one, or a new one, pooled
 * if there is room (an idle one makes room), else owned by the caller
 * alone.  The caller holds it (users) until chan_release().
 */
static struct chan *chan_get(const char *servers, int try_ms,
                             struct cbv_err *err)
{
	struct chan *c, *lru = NULL;
	pid_t pid = getpid();
	int r;

	if (!pool.lib) {
		r = ares_library_init(ARES_LIB_INIT_ALL);
		if (r != ARES_SUCCESS) {
			cbv_err_set(err, r == ARES_ENOMEM ? CBV_ENOMEM : CBV_EDNS,
			            "c-ares: %s", ares_strerror(r));
			return NULL;
		}
		pool.lib = 1;
		pool.pid = pid;
	}
	if (pool.pid != pid) {
		after_fork();
		pool.pid = pid;
	}
	for (c = pool.chans; c != NULL; c = c->next) {
		if (!c->stale && c->try_ms == try_ms && strcmp(c->servers, servers) == 0)
			goto found;
		if (c->users == 0 && (lru == NULL || c->last_used < lru->last_used))
			lru = c;
	}
	c = chan_new(servers, try_ms, err);
	if (c == NULL)
		return NULL;
	if (pool.nchans >= CBV_DNS_CHANNELS_MAX && lru != NULL) {
		chan_unlink(lru);
		chan_destroy(lru);
	}
	if (pool.nchans < CBV_DNS_CHANNELS_MAX) {
		c->next = pool.chans;
		pool.chans = c;
		pool.nchans++;
		c->pooled = 1;
	}
found:
	c->users++;
	c->last_used = cbv_now_ms();
	return c;
}

/* The caller no longer holds c. */
static void chan_release(struct chan *c)
{
	if (--c->users > 0)
		return;
	/* Only orphans are left, and nobody would process them: end them. */
	if (c->inflight > 0 && !c->forked)
		ares_cancel(c->ch);
	if (!c->pooled || c->stale) {
		chan_unlink(c);
		chan_destroy(c);
	}
}

/* ---- answers kept for their TTL ---- */

#define CACHE_BUCKETS 256

struct centry {
	struct centry *newer, *older; /* LRU list */
	struct centry *hnext;         /* hash chain */
	uint32_t hash;
	int64_t expires; /* on the cache clock */
	int status;      /* ARES_SUCCESS, ARES_ENODATA, ARES_ENOTFOUND */
	int qtype;
	size_t size; /* bytes allocated */
	size_t alen;
	unsigned char *abuf; /* the answer, after key[] */
	char key[];          /* servers NUL name NUL */
};

static struct {
	struct centry *bucket[CACHE_BUCKETS];
	struct centry *newest, *oldest;
	size_t n, bytes;
	int64_t (*clock)(void);
} cache;

static int64_t cache_now(void)
{
	return cache.clock != NULL ? cache.clock() : cbv_now_ms();
}

/* FNV-1a over type, servers and the name in lower case. */
static uint32_t cache_hash(const char *servers, const char *name, int qtype)
{
	uint32_t h = 2166136261u ^ (uint32_t)qtype;
	const char *p;

	h *= 16777619u;
	for (p = servers; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ 0xffu) * 16777619u;
	for (p = name; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch - 'A' + 'a');
		h = (h ^ ch) * 16777619u;
	}
	return h;
}

static int name_eq(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return 0;
		if (x == '\0')
			return 1;
	}
}

static struct centry *cache_find(const char *servers, const char *name,
                                 int qtype, uint32_t h)
{
	struct centry *e;

	for (e = cache.bucket[h % CACHE_BUCKETS]; e != NULL; e = e->hnext)
		if (e->hash == h && e->qtype == qtype &&
		    strcmp(e->key, servers) == 0 &&
		    name_eq(e->key + strlen(e->key) + 1, name))
			return e;
	return NULL;
}

static void cache_remove(struct centry *e)
{
	struct centry **pp = &cache.bucket[e->hash % CACHE_BUCKETS];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		cache.newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		cache.oldest = e->newer;
	cache.n--;
	cache.bytes -= e->size;
	cbv_free(e);
}

static void lru_push(struct centry *e)
{
	e->newer = NULL;
	e->older = cache.newest;
	if (cache.newest != NULL)
		cache.newest->newer = e;
	cache.newest = e;
	if (cache.oldest == NULL)
		cache.oldest = e;
}

/*
 * Copies a live answer for (servers, name, qtype) into buf (room for
 * CBV_DNS_ANSWER_CACHE_MAX bytes); 1 if there was one.
 */
static int cache_get(const char *servers, const char *name, int qtype,
                     int *status, unsigned char *buf, int *alen)
{
	uint32_t h = cache_hash(servers, name, qtype);
	struct centry *e = cache_find(servers, name, qtype, h);

	if (e == NULL)
		return 0;
	if (cache_now() >= e->expires) {
		cache_remove(e);
		return 0;
	}
	/* Most recently used goes to the front. */
	if (cache.newest != e) {
		e->newer->older = e->older;
		if (e->older != NULL)
			e->older->newer = e->newer;
		else
			cache.oldest = e->newer;
		lru_push(e);
	}
	*status = e->status;
	memcpy(buf, e->abuf, e->alen);
	*alen = (int)e->alen;
	return 1;
}

/* Keeps an answer for ttl_ms (> 0); out of memory only means not kept. */
static void cache_put(const char *servers, const char *name, int qtype,
                      int status, const unsigned char *abuf, int alen,
                      int64_t ttl_ms)
{
	uint32_t h = cache_hash(servers, name, qtype);
	size_t ls = strlen(servers), ln = strlen(name), size;
	struct centry *e;
	size_t i;

	if (ttl_ms <= 0 || alen <= 0 || alen > CBV_DNS_ANSWER_CACHE_MAX)
		return;
	e = cache_find(servers, name, qtype, h);
	if (e != NULL)
		cache_remove(e);
	size = sizeof(*e) + ls + 1 + ln + 1 + (size_t)alen;
	while (cache.oldest != NULL && (cache.n >= CBV_DNS_CACHE_MAX ||
	                                cache.bytes + size > CBV_DNS_CACHE_BYTES_MAX))
		cache_remove(cache.oldest);
	e = cbv_malloc(size);
	if (e == NULL)
		return;
	memset(e, 0, sizeof(*e));
	memcpy(e->key, servers, ls + 1);
	for (i = 0; i <= ln; i++) {
		char ch = name[i];

		e->key[ls + 1 + i] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
	}
	e->abuf = (unsigned char *)e->key + ls + 1 + ln + 1;
	memcpy(e->abuf, abuf, (size_t)alen);
	e->alen = (size_t)alen;
	e->size = size;
	e->hash = h;
	e->status = status;
	e->qtype = qtype;
	e->expires = cache_now() + ttl_ms;
	e->hnext = cache.bucket[h % CACHE_BUCKETS];
	cache.bucket[h % CACHE_BUCKETS] = e;
	lru_push(e);
	cache.n++;
	cache.bytes += size;
}

/* Forgets what the servers (a dns_servers string) answered. */
static void cache_flush_servers(const char *servers)
{
	struct centry *e, *older;

	for (e = cache.newest; e != NULL; e = older) {
		older = e->older;
		if (servers == NULL || strcmp(e->key, servers) == 0)
			cache_remove(e);
	}
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Steps over a (possibly compressed) name at *off; 0 if it runs past len.
 * A pointer ends the name, so nothing is followed and no loop can form.
 */
static int skip_name(const unsigned char *a, size_t len, size_t *off)
{
	size_t p = *off;

	while (p < len) {
		unsigned l = a[p];

		if (l == 0) {
			*off = p + 1;
			return 1;
		}
		if ((l & 0xc0) == 0xc0) {
			if (p + 2 > len)
				return 0;
			*off = p + 2;
			return 1;
		}
		if ((l & 0xc0) != 0)
			return 0;
		p += 1 + l;
	}
	return 0;
}

/* RFC 2181 8: a TTL with the top bit set counts as 0. */
static uint32_t ttl_of(uint32_t t)
{
	return (t & 0x80000000u) ? 0 : t;
}

/*
 * How long an answer to a qtype query may be kept, in milliseconds; 0 =
 * not at all.  Positive (NOERROR with answers): the lowest TTL of the
 * answer section, capped at CBV_DNS_TTL_MAX_S, or CBV_DNS_NEG_TTL_MAX_S for
 * an RFC 7505 null MX.  Negative (NXDOMAIN, or NOERROR without answers):
 * RFC 2308 5, the lower of the SOA's TTL and MINIMUM in the authority
 * section, capped at CBV_DNS_NEG_TTL_MAX_S; no SOA, no caching.  Anything
 * else (SERVFAIL, truncated, malformed) is never kept.  Reads at most len
 * bytes of a, which come from the network.
 */
static int64_t answer_ttl_ms(const unsigned char *a, size_t len, int qtype)
{
	unsigned qd, an, ns, rcode, i;
	size_t off = 12;
	uint32_t best = UINT32_MAX;
	unsigned nmx = 0;
	int null_mx = 0, soa = 0;
	int64_t cap;

	if (len < 12 || (a[2] & 0x80) == 0 || (a[2] & 0x02) != 0)
		return 0; /* not a response, or truncated (TC) */
	rcode = a[3] & 0x0f;
	qd = get16(a + 4);
	an = get16(a + 6);
	ns = get16(a + 8);
	if (!(rcode == 0 || rcode == 3))
		return 0;
	for (i = 0; i < qd; i++) {
		if (!skip_name(a, len, &off) || off + 4 > len)
			return 0;
		off += 4;
	}
	for (i = 0; i < an + ns; i++) {
		unsigned type, rdlen;
		uint32_t ttl;

		if (!skip_name(a, len, &off) || off + 10 > len)
			return 0;
		type = get16(a + off);
		ttl = ttl_of(get32(a + off + 4));
		rdlen = get16(a + off + 8);
		off += 10;
		if (off + rdlen > len)
			return 0;
		if (i < an) {
			if (ttl < best)
				best = ttl;
			if (type == QTYPE_MX && (int)type == qtype) {
				nmx++;
				null_mx = rdlen == 3 && a[off + 2] == 0;
			}
		} else if (type == QTYPE_SOA && (rcode == 3 || an == 0)) {
			size_t p = off;

			/* MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM. */
			if (!skip_name(a, off + rdlen, &p) ||
			    !skip_name(a, off + rdlen, &p) || p + 20 > off + rdlen)
				return 0;
			soa = 1;
			if (ttl < best)
				best = ttl;
			if (ttl_of(get32(a + p + 16)) < best)
				best = ttl_of(get32(a + p + 16));
		}
		off += rdlen;
	}
	if (!(rcode == 0 && an > 0) && !soa)
		return 0; /* RFC 2308 5: no SOA, no negative caching */
	if (best == UINT32_MAX)
		return 0;
	if (rcode == 0 && an > 0)
		cap = nmx == 1 && null_mx ? CBV_DNS_NEG_TTL_MAX_S : CBV_DNS_TTL_MAX_S;
	else
		cap = CBV_DNS_NEG_TTL_MAX_S;
	return (best < cap ? (int64_t)best : cap) * 1000;
}

static void finish(struct cbv_dns *d, enum cbv_dns_outcome o, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));

static void finish(struct cbv_dns *d, enum cbv_dns_outcome o, const char *fmt,
                   ...)
{
	va_list ap;

	d->outcome = o;
	va_start(ap, fmt);
	if (vsnprintf(d->detail, sizeof(d->detail), fmt, ap) < 0)
		d->detail[0] = '\0';
	va_end(ap);
}

/* Callbacks run by ares_cancel()/ares_destroy(): nothing to do. */
static int ignored(int status)
{
	return status == ARES_ECANCELLED || status == ARES_EDESTRUCTION;
}

/* An answer that says something about the name, as opposed to "try later". */
static int definitive(int status)
{
	return status == ARES_SUCCESS || status == ARES_ENODATA ||
	       status == ARES_ENOTFOUND || status == ARES_EBADNAME;
}

/* The DNS words for c-ares statuses, for detail strings. */
static const char *describe(int status)
{
	switch (status) {
	case ARES_ENOTFOUND: return "NXDOMAIN";
	case ARES_ENODATA: return "NODATA";
	case ARES_ESERVFAIL: return "SERVFAIL";
	case ARES_EREFUSED: return "REFUSED";
	case ARES_EFORMERR: return "FORMERR";
	case ARES_ENOTIMP: return "NOTIMP";
	case ARES_ETIMEOUT: return "timeout";
	case ARES_ECONNREFUSED:
		return "no server answered (SERVFAIL, REFUSED or unreachable)";
	case ARES_EBADRESP: return "malformed answer";
	case ARES_EBADNAME: return "bad name";
	case ARES_ENOMEM: return "out of memory";
	}
	return ares_strerror(status);
}

/*
 * Whether an exchanger name is a plain host name (letters, digits, '-',
 * '_', '.').  c-ares hands out escaped text for anything else; such a
 * target cannot be a mail host and must not reach logs or SNI.
 */
static int valid_host(const char *s)
{
	size_t i, len = strlen(s);

	if (len == 0 || len > CBV_DOMAIN_MAX || s[0] == '.')
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

/* RFC 7505 target: the root, which c-ares 1.18 expands to "". */
static int is_root(const char *s)
{
	return s[0] == '\0' || strcmp(s, ".") == 0;
}

/*
 * Fills r with random words for shuffling: getrandom(2), or, if the kernel
 * has none to give, a splitmix64 stream seeded from the clock, the pid and
 * an address.  Not secret, only unpredictable enough to spread load.
 */
static void fill_random(uint32_t *r, size_t n)
{
	size_t want = n * sizeof(*r);
	size_t got = 0;
	uint64_t x;

	while (got < want) {
		ssize_t k = getrandom((char *)r + got, want - got, GRND_NONBLOCK);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	if (got == want)
		return;
	x = (uint64_t)cbv_now_us() ^ ((uint64_t)getpid() << 32) ^
	    (uint64_t)(uintptr_t)r;
	for (got /= sizeof(*r); got < n; got++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ULL);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		r[got] = (uint32_t)((z ^ (z >> 31)) >> 16);
	}
}

/* Sorts by preference (stable), then shuffles each run of equal ones. */
static void order_mx(const struct ares_mx_reply **v, size_t n)
{
	uint32_t r[CBV_MX_MAX];
	size_t i, j, k;

	for (i = 1; i < n; i++) {
		const struct ares_mx_reply *t = v[i];

		for (j = i; j > 0 && v[j - 1]->priority > t->priority; j--)
			v[j] = v[j - 1];
		v[j] = t;
	}
	fill_random(r, n);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && v[j]->priority == v[i]->priority; j++)
			;
		/* Fisher-Yates over [i, j); modulo bias < 2^-27 for 32 items. */
		for (k = j - 1; k > i; k--) {
			size_t m = i + r[k] % (k - i + 1);
			const struct ares_mx_reply *t = v[k];

			v[k] = v[m];
			v[m] = t;
		}
	}
}

/* Builds the host list once every A/AAAA lookup has answered. */
static void assemble(struct cbv_dns *d)
{
	size_t i, j, n = 0;

	for (i = 0; i < d->nmx; i++)
		n += d->mx[i].n4 + d->mx[i].n6;
	if (n > CBV_HOSTS_MAX)
		n = CBV_HOSTS_MAX;
	if (n == 0) {
		const struct exchanger *x = &d->mx[0];

		if (d->partial)
			finish(d, CBV_DNS_TEMP, "%s", d->tempdetail);
		else if (d->implicit && x->st4 == ARES_ENOTFOUND &&
		         x->st6 == ARES_ENOTFOUND)
			finish(d, CBV_DNS_NXDOMAIN, "A/AAAA lookup for %s: NXDOMAIN",
			       d->domain);
		else if (d->implicit)
			finish(d, CBV_DNS_NOHOST, "%s: no MX and no A/AAAA records",
			       d->domain);
		else
			finish(d, CBV_DNS_NOHOST, "%s: no MX host has an address",
			       d->domain);
		return;
	}
	d->hosts = cbv_calloc(n, sizeof(*d->hosts));
	if (d->hosts == NULL) {
		finish(d, CBV_DNS_TEMP, "%s: out of memory", d->domain);
		return;
	}
	for (i = 0; i < d->nmx && d->nhosts < n; i++) {
		const struct exchanger *x = &d->mx[i];

		for (j = 0; j < x->n4 + x->n6 && d->nhosts < n; j++) {
			struct cbv_host *h = &d->hosts[d->nhosts++];

			memcpy(h->name, x->name, sizeof(h->name));
			h->pref = x->pref;
			h->implicit = d->implicit;
			if (j < x->n4) {
				struct sockaddr_in *sin = (struct sockaddr_in *)&h->addr;

				sin->sin_family = AF_INET;
				sin->sin_addr = x->a4[j];
				h->addrlen = sizeof(*sin);
			} else {
				struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&h->addr;

				sin6->sin6_family = AF_INET6;
				sin6->sin6_addr = x->a6[j - x->n4];
				h->addrlen = sizeof(*sin6);
			}
		}
	}
	finish(d, CBV_DNS_OK, "%s: %s%zu exchanger%s, %zu address%s", d->domain,
	       d->implicit ? "implicit MX, " : "", d->nmx, d->nmx == 1 ? "" : "s",
	       d->nhosts, d->nhosts == 1 ? "" : "es");
}

/* Copies the addresses of an A or AAAA answer into x; ARES_ status. */
static int take_addrs(struct exchanger *x, int qtype, const unsigned char *abuf,
                      int alen)
{
	int i, n = CBV_HOSTS_MAX;
	int r;

	if (qtype == QTYPE_A) {
		struct ares_addrttl t[CBV_HOSTS_MAX];

		r = ares_parse_a_reply(abuf, alen, NULL, t, &n);
		if (r != ARES_SUCCESS)
			return r;
		if (n <= 0)
			return ARES_ENODATA;
		x->a4 = cbv_calloc((size_t)n, sizeof(*x->a4));
		if (x->a4 == NULL)
			return ARES_ENOMEM;
		for (i = 0; i < n; i++)
			x->a4[i] = t[i].ipaddr;
		x->n4 = (size_t)n;
	} else {
		struct ares_addr6ttl t[CBV_HOSTS_MAX];

		r = ares_parse_aaaa_reply(abuf, alen, NULL, t, &n);
		if (r != ARES_SUCCESS)
			return r;
		if (n <= 0)
			return ARES_ENODATA;
		x->a6 = cbv_calloc((size_t)n, sizeof(*x->a6));
		if (x->a6 == NULL)
			return ARES_ENOMEM;
		for (i = 0; i < n; i++)
			memcpy(&x->a6[i], &t[i].ip6addr, sizeof(x->a6[i]));
		x->n6 = (size_t)n;
	}
	return ARES_SUCCESS;
}

/* An exchanger's A or AAAA answer (from the network or the cache). */
static void addr_answer(struct cbv_dns *d, struct exchanger *x, int qtype,
                        int status, const unsigned char *abuf, int alen)
{
	if (status == ARES_SUCCESS)
		status = take_addrs(x, qtype, abuf, alen);
	if (qtype == QTYPE_A)
		x->st4 = status;
	else
		x->st6 = status;
	if (!definitive(status)) {
		if (!d->partial)
			snprintf(d->tempdetail, sizeof(d->tempdetail),
			         "%s lookup for %s: %s", qtype == QTYPE_A ? "A" : "AAAA",
			         x->name, describe(status));
		d->partial = 1;
	}
	if (--d->pending == 0)
		assemble(d);
}

static void mx_answer(struct cbv_dns *d, int status, const unsigned char *abuf,
                      int alen);

/* Hands an answer to the part of the machine that asked. */
static void deliver(struct cbv_dns *d, struct exchanger *x, int qtype,
                    int status, const unsigned char *abuf, int alen)
{
	if (d->outcome != CBV_DNS_PENDING)
		return;
	if (x == NULL)
		mx_answer(d, status, abuf, alen);
	else
		addr_answer(d, x, qtype, status, abuf, alen);
}

static void ticket_unlink(struct cbv_dns *d, struct ticket *t)
{
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		d->tickets = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
}

/* ---- answers shared with other processes (struct cbv_dns_store) ---- */

/*
 * The shared key of (servers, name, qtype): "dns1 LEN:SERVERS LEN:NAME
 * QTYPE", the name lower-cased.  Returns its length (no NUL), 0 if it
 * does not fit.
 */
static size_t shared_key(const struct cbv_dns *d, const char *name, int qtype, char *out,
                         size_t n)
{
	size_t ln = strlen(name);
	int k = snprintf(out, n, "dns1 %zu:%s %zu:", strlen(d->servers), d->servers, ln);

	if (k < 0 || (size_t)k + ln + 8 >= n)
		return 0;
	for (size_t i = 0; i < ln; i++) {
		char ch = name[i];

		out[k + (int)i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	k += (int)ln;
	k += snprintf(out + k, n - (size_t)k, " %d", qtype);
	return (size_t)k;
}

/* A stored value: the key, NUL, the c-ares status (one byte), the answer. */
#define SHARED_VALUE_MAX CBV_DNS_SHARED_VALUE_MAX

/*
 * Takes a live answer for (name, qtype) from the shared store, checked as
 * if it came from the network and more: it must name this key, have a
 * status we keep (never SERVFAIL), match its RCODE, and still be
 * cacheable by the answer's own TTLs and our caps (RFC 2308 for negative
 * answers).  Keeps it in process too for what is left of its life.  1 if
 * taken, with *status, buf and *alen as cache_get() fills them.
 */
static int shared_get(struct cbv_dns *d, const char *name, int qtype, int *status,
                      unsigned char *buf, int *alen)
{
	char key[CBV_DNS_SHARED_KEY_MAX];
	unsigned char val[SHARED_VALUE_MAX];
	size_t kl, n, al;
	int64_t left = 0, ttl;
	unsigned rcode, ancount;
	int st;

	if (d->store.get == NULL || (kl = shared_key(d, name, qtype, key, sizeof(key))) == 0)
		return 0;
	n = d->store.get(d->store.arg, name, key, kl, val, sizeof(val), &left);
	if (n < kl + 2 || n > sizeof(val) || memcmp(val, key, kl) != 0 || val[kl] != '\0')
		return 0;
	st = val[kl + 1];
	al = n - kl - 2;
	/* the status c-ares gave must be the one the answer's header implies */
	if (al < 12 || al > CBV_DNS_ANSWER_CACHE_MAX)
		return 0;
	rcode = val[kl + 2 + 3] & 0x0f;
	ancount = (unsigned)val[kl + 2 + 6] << 8 | val[kl + 2 + 7];
	if (!(st == ARES_ENOTFOUND ? rcode == 3
	      : st == ARES_SUCCESS ? rcode == 0 && ancount > 0
	      : st == ARES_ENODATA ? rcode == 0 && ancount == 0
	                           : 0))
		return 0;
	ttl = answer_ttl_ms(val + kl + 2, al, qtype);
	if (left < ttl)
		ttl = left;
	if (ttl <= 0)
		return 0;
	memcpy(buf, val + kl + 2, al);
	*status = st;
	*alen = (int)al;
	cache_put(d->servers, name, qtype, st, buf, *alen, ttl);
	return 1;
}

/* Offers an answer we keep (ttl_ms > 0) to the shared store. */
static void shared_put(struct cbv_dns *d, const char *name, int qtype, int status,
                       const unsigned char *abuf, int alen, int64_t ttl_ms)
{
	char key[CBV_DNS_SHARED_KEY_MAX];
	unsigned char val[SHARED_VALUE_MAX];
	size_t kl;

	if (d->store.put == NULL || ttl_ms <= 0 || alen <= 0 ||
	    alen > CBV_DNS_ANSWER_CACHE_MAX || status < 0 || status > 255 ||
	    (kl = shared_key(d, name, qtype, key, sizeof(key))) == 0)
		return;
	memcpy(val, key, kl);
	val[kl] = '\0';
	val[kl + 1] = (unsigned char)status;
	memcpy(val + kl + 2, abuf, (size_t)alen);
	d->store.put(d->store.arg, name, key, kl, val, kl + 2 + (size_t)alen, ttl_ms);
}

/* ares_callback of every query: keeps what may be kept, then delivers. */
static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
                      int alen)
{
	struct ticket *t = arg;
	struct cbv_dns *d = t->d;
	struct exchanger *x = t->x;
	int qtype = t->qtype;

	(void)timeouts;
	t->c->inflight--;
	if (d != NULL)
		ticket_unlink(d, t);
	cbv_free(t);
	if (d == NULL || ignored(status))
		return;
	if ((status == ARES_SUCCESS || status == ARES_ENODATA ||
	     status == ARES_ENOTFOUND) &&
	    abuf != NULL && alen > 0) {
		int64_t ttl_ms = answer_ttl_ms(abuf, (size_t)alen, qtype);

		cache_put(d->servers, x == NULL ? d->domain : x->name, qtype, status,
		          abuf, alen, ttl_ms);
		shared_put(d, x == NULL ? d->domain : x->name, qtype, status, abuf, alen, ttl_ms);
	}
	deliver(d, x, qtype, status, abuf, alen);
}

/*
 * Asks for (name, qtype): from the cache if it has a live answer, else
 * through the shared channel.  The answer may be delivered before this
 * returns.
 */
static void ask(struct cbv_dns *d, struct exchanger *x, int qtype)
{
	const char *name = x == NULL ? d->domain : x->name;
	unsigned char buf[CBV_DNS_ANSWER_CACHE_MAX];
	struct ticket *t;
	int status, alen;

	if (cache_get(d->servers, name, qtype, &status, buf, &alen)) {
		pool.stats.cache_hits++;
		deliver(d, x, qtype, status, buf, alen);
		return;
	}
	if (shared_get(d, name, qtype, &status, buf, &alen)) {
		pool.stats.shared_hits++;
		deliver(d, x, qtype, status, buf, alen);
		return;
	}
	if (d->chan == NULL) {
		d->chan = chan_get(d->servers, d->try_ms, &d->setup);
		if (d->chan == NULL) {
			finish(d, CBV_DNS_TEMP, "%s", d->setup.msg);
			return;
		}
	}
	t = cbv_calloc(1, sizeof(*t));
	if (t == NULL) {
		deliver(d, x, qtype, ARES_ENOMEM, NULL, 0);
		return;
	}
	t->d = d;
	t->c = d->chan;
	t->x = x;
	t->qtype = qtype;
	t->next = d->tickets;
	if (d->tickets != NULL)
		d->tickets->prev = t;
	d->tickets = t;
	d->chan->inflight++;
	d->chan->last_used = cbv_now_ms();
	pool.stats.queries++;
	ares_query(d->chan->ch, name, QCLASS_IN, qtype, on_answer, t);
}

/* Starts A and AAAA queries for every exchanger, all at once. */
static void resolve_all(struct cbv_dns *d)
{
	size_t i;

	/* Counted first: answers may come inside ask(). */
	d->pending = (int)(2 * d->nmx);
	for (i = 0; i < d->nmx; i++)
		d->mx[i].st4 = d->mx[i].st6 = -1;
	for (i = 0; i < d->nmx && d->outcome == CBV_DNS_PENDING; i++) {
		ask(d, &d->mx[i], QTYPE_A);
		if (d->outcome != CBV_DNS_PENDING)
			break;
		ask(d, &d->mx[i], QTYPE_AAAA);
	}
}

/*
 * Takes the MX records of an answer: null MX, or up to CBV_MX_MAX usable
 * exchangers with the lowest preferences, ordered, then resolves them.
 */
static void take_mx(struct cbv_dns *d, const struct ares_mx_reply *list)
{
	const struct ares_mx_reply *best[CBV_MX_MAX];
	const struct ares_mx_reply *m;
	size_t i, n = 0, total = 0;

	for (m = list; m != NULL; m = m->next)
		total++;
	/* RFC 7505 3: a null MX is the domain's only MX record. */
	if (total == 1 && is_root(list->host)) {
		finish(d, CBV_DNS_NULLMX, "%s: null MX (RFC 7505)", d->domain);
		return;
	}
	for (m = list; m != NULL; m = m->next) {
		if (!valid_host(m->host))
			continue;
		if (n < CBV_MX_MAX) {
			best[n++] = m;
		} else {
			/* Full: replace the worst if this one is preferred. */
			size_t w = 0;

			for (i = 1; i < n; i++)
				if (best[i]->priority > best[w]->priority)
					w = i;
			if (m->priority < best[w]->priority)
				best[w] = m;
		}
	}
	if (n == 0) {
		finish(d, CBV_DNS_NOHOST, "%s: no usable MX target", d->domain);
		return;
	}
	order_mx(best, n);
	d->mx = cbv_calloc(n, sizeof(*d->mx));
	if (d->mx == NULL) {
		finish(d, CBV_DNS_TEMP, "%s: out of memory", d->domain);
		return;
	}
	d->nmx = n;
	for (i = 0; i < n; i++) {
		snprintf(d->mx[i].name, sizeof(d->mx[i].name), "%s", best[i]->host);
		d->mx[i].pref = best[i]->priority;
	}
	resolve_all(d);
}

/* RFC 5321 5.1: no MX records, so the domain is its own exchanger. */
static void take_implicit(struct cbv_dns *d)
{
	d->mx = cbv_calloc(1, sizeof(*d->mx));
	if (d->mx == NULL) {
		finish(d, CBV_DNS_TEMP, "%s: out of memory", d->domain);
		return;
	}
	d->nmx = 1;
	d->implicit = 1;
	memcpy(d->mx[0].name, d->domain, sizeof(d->mx[0].name));
	resolve_all(d);
}

/* The MX answer for the domain (from the network or the cache). */
static void mx_answer(struct cbv_dns *d, int status, const unsigned char *abuf,
                      int alen)
{
	struct ares_mx_reply *list = NULL;

	if (status == ARES_SUCCESS) {
		/* ENODATA here: answers, but none of them MX (a CNAME only). */
		status = ares_parse_mx_reply(abuf, alen, &list);
		if (status == ARES_SUCCESS && list == NULL)
			status = ARES_ENODATA;
	}
	switch (status) {
	case ARES_SUCCESS:
		take_mx(d, list);
		break;
	case ARES_ENODATA:
		take_implicit(d);
		break;
	case ARES_ENOTFOUND:
		finish(d, CBV_DNS_NXDOMAIN, "MX lookup for %s: NXDOMAIN", d->domain);
		break;
	default:
		finish(d, CBV_DNS_TEMP, "MX lookup for %s: %s", d->domain,
		       describe(status));
		break;
	}
	if (list != NULL)
		ares_free_data(list);
}

/*
 * c-ares' per-try timeout for what is left: tries take t, 2t, 4t (c-ares
 * doubles per round), 7t in all; our own deadline still cuts the last one.
 * Rounded down to a power-of-two multiple of DNS_TRY_MIN_MS so that
 * machines with similar deadlines share a channel.
 */
static int try_timeout(int64_t left)
{
	int64_t want = left / 7;
	int t = DNS_TRY_MIN_MS;

	while (t * 2 <= want && t * 2 < DNS_TRY_MAX_MS)
		t *= 2;
	if (want >= DNS_TRY_MAX_MS)
		t = DNS_TRY_MAX_MS;
	return t;
}

/*
 * Starts the machine with the MX query, or (address_only) with A/AAAA
 * alone.  Returns a new machine, free with cbv_dns_free(), or NULL with
 * *err set.
 */
static struct cbv_dns *dns_start(const char *domain, const char *servers,
                                 int64_t deadline_ms, int address_only,
                                 const struct cbv_dns_store *store, struct cbv_err *err)
{
	struct cbv_dns *d = NULL;
	enum cbv_status st = CBV_OK;
	int64_t left;

	if (servers == NULL)
		servers = "";
	if (domain == NULL || domain[0] == '\0' ||
	    strlen(domain) > CBV_DOMAIN_MAX) {
		st = cbv_err_set(err, CBV_EINVAL, "bad domain for DNS lookup");
		goto done;
	}
	/* c-ares 1.18.1 accepts "127.0.0.1:99999" and "1.2.3.4.5": check first. */
	if (!cbv_url_dns_servers_valid(servers)) {
		st = cbv_err_set(err, CBV_ECONFIG, "bad DNS servers \"%.200s\"",
		                 servers);
		goto done;
	}
	d = cbv_calloc(1, sizeof(*d));
	if (d == NULL) {
		st = cbv_err_set(err, CBV_ENOMEM, "out of memory");
		goto done;
	}
	memcpy(d->domain, domain, strlen(domain) + 1);
	memcpy(d->servers, servers, strlen(servers) + 1);
	d->deadline = deadline_ms;
	d->outcome = CBV_DNS_PENDING;
	if (store != NULL)
		d->store = *store;
	left = deadline_ms - cbv_now_ms();
	d->try_ms = try_timeout(left);
	if (left <= 0) {
		/* Nothing is sent once the time is up. */
		finish(d, CBV_DNS_TEMP, "DNS timeout resolving %s", d->domain);
		goto done;
	}
	if (servers[0] == '\0')
		check_resolv_conf();
	if (address_only)
		take_implicit(d);
	else
		ask(d, NULL, QTYPE_MX);
	if (d->setup.code != CBV_OK)
		st = cbv_err_set(err, d->setup.code, "%s", d->setup.msg);
done:
	if (st != CBV_OK) {
		cbv_dns_free(d);
		d = NULL;
	}
	return d;
}

/* Resolves domain's MX, then the exchangers (see cbv_dns.h). */
struct cbv_dns *cbv_dns_new(const char *domain, const char *servers,
                            int64_t deadline_ms, struct cbv_err *err)
{
	return dns_start(domain, servers, deadline_ms, 0, NULL, err);
}

/* Resolves one named host's A/AAAA, no MX (see cbv_dns.h). */
struct cbv_dns *cbv_dns_new_host(const char *host, const char *servers,
                                 int64_t deadline_ms, struct cbv_err *err)
{
	return dns_start(host, servers, deadline_ms, 1, NULL, err);
}

/* Either of the two, with a shared store (see cbv_dns.h). */
struct cbv_dns *cbv_dns_start(const char *name, const char *servers, int64_t deadline_ms,
                              int host_only, const struct cbv_dns_store *store,
                              struct cbv_err *err)
{
	return dns_start(name, servers, deadline_ms, host_only != 0, store, err);
}

/*
 * A machine whose channel came from the parent process gives up: its
 * sockets are the parent's too.  1 if so.
 */
static int orphaned_by_fork(struct cbv_dns *d)
{
	if (d->chan == NULL || !d->chan->forked)
		return 0;
	finish(d, CBV_DNS_TEMP, "DNS lookup for %s interrupted by fork", d->domain);
	return 1;
}

/*
 * Hands out the sockets c-ares waits on and the time to call
 * cbv_dns_process() by (see cbv_dns.h).  Returns the number of fds filled.
 * The first call after a cbv_dns_process() on the channel starts a new
 * poll round.
 */
int cbv_dns_pollfds(struct cbv_dns *d, struct pollfd *fds, int max,
                    int64_t *wake_ms)
{
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	struct timeval tv, *tvp;
	int64_t now = cbv_now_ms();
	struct chan *c = d->chan;
	unsigned bits;
	int i, n = 0;

	d->nwatched = 0;
	*wake_ms = now;
	if (d->outcome != CBV_DNS_PENDING || c == NULL || orphaned_by_fork(d))
		return 0;
	if (c->processed) {
		c->processed = 0;
		c->timers_run = 0;
		c->ndone = 0;
	}
	bits = (unsigned)ares_getsock(c->ch, socks, ARES_GETSOCK_MAXNUM);
	for (i = 0; i < ARES_GETSOCK_MAXNUM && n < max; i++) {
		short ev = 0;

		/* ARES_GETSOCK_WRITABLE() shifts an int into its sign bit. */
		if (bits & (1u << i))
			ev |= POLLIN;
		if (bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
			ev |= POLLOUT;
		if (ev == 0)
			continue;
		fds[n].fd = socks[i];
		fds[n].events = ev;
		fds[n].revents = 0;
		d->watched[n] = socks[i];
		n++;
	}
	d->nwatched = n;
	*wake_ms = d->deadline;
	tvp = ares_timeout(c->ch, NULL, &tv);
	if (tvp != NULL) {
		int64_t w = now + (int64_t)tvp->tv_sec * 1000 +
		            (tvp->tv_usec + 999) / 1000;

		if (w < *wake_ms)
			*wake_ms = w;
	}
	return n;
}

/* Whether fd is one cbv_dns_pollfds() handed out last time. */
static int watched(const struct cbv_dns *d, int fd)
{
	int i;

	for (i = 0; i < d->nwatched; i++)
		if (d->watched[i] == fd)
			return 1;
	return 0;
}

/*
 * Whether the channel still has to read fd this round (and notes that it
 * will).  Other machines on the channel hand out the same sockets; the
 * first one processed serves them all, and poll(2) being level-triggered,
 * anything left is reported again next round.
 */
static int first_this_round(struct chan *c, ares_socket_t fd)
{
	int i;

	for (i = 0; i < c->ndone; i++)
		if (c->done[i] == fd)
			return 0;
	if (c->ndone < ARES_GETSOCK_MAXNUM)
		c->done[c->ndone++] = fd;
	return 1;
}

/*
 * Lets c-ares read and write what poll() reported, runs its retries, and
 * stops the machine at the deadline (see cbv_dns.h).  Answers for other
 * machines on the same channel go to them.
 */
void cbv_dns_process(struct cbv_dns *d, const struct pollfd *fds, int n)
{
	struct chan *c = d->chan;
	int i;

	if (d->outcome == CBV_DNS_PENDING && c != NULL && !orphaned_by_fork(d)) {
		c->processed = 1;
		for (i = 0; i < n && d->outcome == CBV_DNS_PENDING; i++) {
			short re = fds[i].revents;
			ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

			if (re == 0 || (re & POLLNVAL) || !watched(d, fds[i].fd) ||
			    !first_this_round(c, fds[i].fd))
				continue;
			/* Errors go to whichever side c-ares waits on; it reads them. */
			if (re & (POLLIN | POLLERR | POLLHUP))
				rfd = fds[i].fd;
			if ((re & POLLOUT) ||
			    ((re & (POLLERR | POLLHUP)) && (fds[i].events & POLLOUT)))
				wfd = fds[i].fd;
			ares_process_fd(c->ch, rfd, wfd);
		}
		if (d->outcome == CBV_DNS_PENDING && !c->timers_run) {
			c->timers_run = 1;
			ares_process_fd(c->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
		}
	}
	/* Our queries may go on for other machines; their answers are dropped. */
	if (d->outcome == CBV_DNS_PENDING && cbv_now_ms() >= d->deadline)
		finish(d, CBV_DNS_TEMP, "DNS timeout resolving %s", d->domain);
	d->nwatched = 0;
}

/* Reports the outcome so far (see cbv_dns.h); pointers live as long as d. */
enum cbv_dns_outcome cbv_dns_outcome(const struct cbv_dns *d,
                                     const struct cbv_host **hosts,
                                     size_t *nhosts, const char **detail,
                                     int *partial)
{
	int ok = d->outcome == CBV_DNS_OK;

	if (hosts != NULL)
		*hosts = ok ? d->hosts : NULL;
	if (nhosts != NULL)
		*nhosts = ok ? d->nhosts : 0;
	if (detail != NULL)
		*detail = d->outcome == CBV_DNS_PENDING ? "DNS lookup in progress"
		                                        : d->detail;
	if (partial != NULL)
		*partial = d->partial;
	return d->outcome;
}

/*
 * Frees d; its queries still in flight stay with the channel, their
 * answers dropped (see cbv_dns.h).  Accepts NULL.
 */
void cbv_dns_free(struct cbv_dns *d)
{
	struct ticket *t;
	size_t i;

	if (d == NULL)
		return;
	/* Finished first, so that nothing delivers to d any more. */
	if (d->outcome == CBV_DNS_PENDING)
		d->outcome = CBV_DNS_TEMP;
	for (t = d->tickets; t != NULL; t = t->next)
		t->d = NULL;
	d->tickets = NULL;
	if (d->chan != NULL)
		chan_release(d->chan);
	for (i = 0; i < d->nmx; i++) {
		cbv_free(d->mx[i].a4);
		cbv_free(d->mx[i].a6);
	}
	cbv_free(d->mx);
	cbv_free(d->hosts);
	cbv_free(d);
}

/* This process's counters (see cbv_dns.h). */
void cbv_dns_stats(struct cbv_dns_stats *out)
{
	*out = pool.stats;
	out->cache_entries = cache.n;
}

/* Forgets every cached answer. */
void cbv_dns_cache_flush(void)
{
	cache_flush_servers(NULL);
}

/* Test hook: the clock cached TTLs run on (NULL = cbv_now_ms). */
void cbv_dns_cache_clock(int64_t (*now_ms)(void))
{
	cache.clock = now_ms;
}

/* Test hook: the file that stands for /etc/resolv.conf (NULL = it). */
void cbv_dns_resolv_conf(const char *path)
{
	pool.conf_path = path;
	pool.have_conf = 0;
	check_resolv_conf();
}

/* Frees idle channels and the cache (see cbv_dns.h). */
void cbv_dns_shutdown(void)
{
	struct chan *c, *next;

	for (c = pool.chans; c != NULL; c = next) {
		next = c->next;
		chan_retire(c);
	}
	cache_flush_servers(NULL);
	if (pool.lib && pool.chans == NULL) {
		ares_library_cleanup();
		pool.lib = 0;
	}
	pool.have_conf = 0;
}
