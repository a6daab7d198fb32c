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
 */
#include "cbv_dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cbv_clock.h"
#include "cbv_url.h"

/* RFC 1035 3.2.2 and 3.2.4, RFC 3596 2.1. */
enum { QCLASS_IN = 1, QTYPE_A = 1, QTYPE_MX = 15, QTYPE_AAAA = 28 };

/* c-ares tries each server this often, doubling the timeout each round. */
#define DNS_TRIES 3
#define DNS_TRY_MIN_MS 100
#define DNS_TRY_MAX_MS 3000

#define DETAIL_MAX 512

struct exchanger;

/* One A or AAAA query for one exchanger: the callback argument. */
struct lookup {
	struct cbv_dns *d;
	struct exchanger *x;
	int qtype;
};

struct exchanger {
	char name[CBV_DOMAIN_MAX + 1];
	unsigned pref;
	struct lookup q4, q6;
	int st4, st6;           /* ARES_ status of each lookup, -1 while pending */
	struct in_addr *a4;     /* owned, n4 entries */
	struct in6_addr *a6;    /* owned, n6 entries */
	size_t n4, n6;
};

struct cbv_dns {
	ares_channel ch;        /* NULL until ares_init_options() succeeded */
	int lib;                /* ares_library_init() to balance */
	int64_t deadline;
	char domain[CBV_DOMAIN_MAX + 1];
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
};

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

/* Copies the addresses of an A or AAAA answer into q->x; ARES_ status. */
static int take_addrs(struct lookup *q, const unsigned char *abuf, int alen)
{
	struct exchanger *x = q->x;
	int i, n = CBV_HOSTS_MAX;
	int r;

	if (q->qtype == QTYPE_A) {
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

/* ares_callback for an exchanger's A or AAAA query. */
static void addr_done(void *arg, int status, int timeouts, unsigned char *abuf,
                      int alen)
{
	struct lookup *q = arg;
	struct cbv_dns *d;

	(void)timeouts;
	if (ignored(status))
		return;
	d = q->d;
	if (d->outcome != CBV_DNS_PENDING)
		return;
	if (status == ARES_SUCCESS)
		status = take_addrs(q, abuf, alen);
	if (q->qtype == QTYPE_A)
		q->x->st4 = status;
	else
		q->x->st6 = status;
	if (!definitive(status)) {
		if (!d->partial)
			snprintf(d->tempdetail, sizeof(d->tempdetail),
			         "%s lookup for %s: %s",
			         q->qtype == QTYPE_A ? "A" : "AAAA", q->x->name,
			         describe(status));
		d->partial = 1;
	}
	if (--d->pending == 0)
		assemble(d);
}

/* Starts A and AAAA queries for every exchanger, all at once. */
static void resolve_all(struct cbv_dns *d)
{
	size_t i;

	/* Counted first: callbacks may run inside ares_query(). */
	d->pending = (int)(2 * d->nmx);
	for (i = 0; i < d->nmx; i++) {
		struct exchanger *x = &d->mx[i];

		x->st4 = x->st6 = -1;
		x->q4 = (struct lookup){ d, x, QTYPE_A };
		x->q6 = (struct lookup){ d, x, QTYPE_AAAA };
	}
	for (i = 0; i < d->nmx && d->outcome == CBV_DNS_PENDING; i++) {
		ares_query(d->ch, d->mx[i].name, QCLASS_IN, QTYPE_A, addr_done,
		           &d->mx[i].q4);
		if (d->outcome != CBV_DNS_PENDING)
			break;
		ares_query(d->ch, d->mx[i].name, QCLASS_IN, QTYPE_AAAA, addr_done,
		           &d->mx[i].q6);
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

/* ares_callback for the MX query of the domain. */
static void mx_done(void *arg, int status, int timeouts, unsigned char *abuf,
                    int alen)
{
	struct cbv_dns *d = arg;
	struct ares_mx_reply *list = NULL;

	(void)timeouts;
	if (ignored(status) || d->outcome != CBV_DNS_PENDING)
		return;
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
 * Starts the machine with the MX query, or (address_only) with A/AAAA
 * alone.  Returns a new machine, free with cbv_dns_free(), or NULL with
 * *err set.
 */
static struct cbv_dns *dns_start(const char *domain, const char *servers,
                                 int64_t deadline_ms, int address_only,
                                 struct cbv_err *err)
{
	struct cbv_dns *d = NULL;
	struct ares_options opt;
	ares_channel ch;
	enum cbv_status st = CBV_OK;
	int64_t left, try_ms;
	int r;

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
	d->deadline = deadline_ms;
	d->outcome = CBV_DNS_PENDING;
	r = ares_library_init(ARES_LIB_INIT_ALL);
	if (r != ARES_SUCCESS) {
		st = cbv_err_set(err, r == ARES_ENOMEM ? CBV_ENOMEM : CBV_EDNS,
		                 "c-ares: %s", ares_strerror(r));
		goto done;
	}
	d->lib = 1;
	/*
	 * Fit the tries into what is left: timeouts t, 2t, 4t (c-ares doubles
	 * per round) add up to 7t.  Our own deadline still cuts the last one.
	 */
	left = deadline_ms - cbv_now_ms();
	try_ms = left / 7;
	if (try_ms < DNS_TRY_MIN_MS)
		try_ms = DNS_TRY_MIN_MS;
	if (try_ms > DNS_TRY_MAX_MS)
		try_ms = DNS_TRY_MAX_MS;
	memset(&opt, 0, sizeof(opt));
	/* Exact names only: no search list, no HOSTALIASES. */
	opt.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	opt.tries = DNS_TRIES;
	opt.timeout = (int)try_ms;
	r = ares_init_options(&ch, &opt,
	                      ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
	if (r != ARES_SUCCESS) {
		st = cbv_err_set(err, r == ARES_ENOMEM ? CBV_ENOMEM : CBV_EDNS,
		                 "c-ares: %s", ares_strerror(r));
		goto done;
	}
	d->ch = ch;
	if (servers[0] != '\0') {
		r = ares_set_servers_ports_csv(d->ch, servers);
		if (r != ARES_SUCCESS) {
			st = cbv_err_set(err,
			                 r == ARES_ENOMEM ? CBV_ENOMEM : CBV_ECONFIG,
			                 "bad DNS servers \"%.200s\": %s", servers,
			                 ares_strerror(r));
			goto done;
		}
	}
	if (left <= 0) {
		/* Nothing is sent once the time is up. */
		finish(d, CBV_DNS_TEMP, "DNS timeout resolving %s", d->domain);
		goto done;
	}
	if (address_only)
		take_implicit(d);
	else
		ares_query(d->ch, d->domain, QCLASS_IN, QTYPE_MX, mx_done, d);
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
	return dns_start(domain, servers, deadline_ms, 0, err);
}

/* Resolves one named host's A/AAAA, no MX (see cbv_dns.h). */
struct cbv_dns *cbv_dns_new_host(const char *host, const char *servers,
                                 int64_t deadline_ms, struct cbv_err *err)
{
	return dns_start(host, servers, deadline_ms, 1, err);
}

/*
 * Hands out the sockets c-ares waits on and the time to call
 * cbv_dns_process() by (see cbv_dns.h).  Returns the number of fds filled.
 */
int cbv_dns_pollfds(struct cbv_dns *d, struct pollfd *fds, int max,
                    int64_t *wake_ms)
{
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	struct timeval tv, *tvp;
	int64_t now = cbv_now_ms();
	unsigned bits;
	int i, n = 0;

	d->nwatched = 0;
	*wake_ms = now;
	if (d->outcome != CBV_DNS_PENDING)
		return 0;
	bits = (unsigned)ares_getsock(d->ch, socks, ARES_GETSOCK_MAXNUM);
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
	tvp = ares_timeout(d->ch, NULL, &tv);
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
 * Lets c-ares read and write what poll() reported, runs its retries, and
 * stops the machine at the deadline (see cbv_dns.h).
 */
void cbv_dns_process(struct cbv_dns *d, const struct pollfd *fds, int n)
{
	int i;

	for (i = 0; i < n && d->outcome == CBV_DNS_PENDING; i++) {
		short re = fds[i].revents;
		ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

		if (re == 0 || (re & POLLNVAL) || !watched(d, fds[i].fd))
			continue;
		/* Errors go to whichever side c-ares waits on; it reads them. */
		if (re & (POLLIN | POLLERR | POLLHUP))
			rfd = fds[i].fd;
		if ((re & POLLOUT) ||
		    ((re & (POLLERR | POLLHUP)) && (fds[i].events & POLLOUT)))
			wfd = fds[i].fd;
		ares_process_fd(d->ch, rfd, wfd);
	}
	if (d->outcome == CBV_DNS_PENDING)
		ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	if (d->outcome == CBV_DNS_PENDING && cbv_now_ms() >= d->deadline) {
		finish(d, CBV_DNS_TEMP, "DNS timeout resolving %s", d->domain);
		/* Runs the pending callbacks with ARES_ECANCELLED: ignored. */
		ares_cancel(d->ch);
	}
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

/* Cancels outstanding queries and frees d; accepts NULL. */
void cbv_dns_free(struct cbv_dns *d)
{
	size_t i;

	if (d == NULL)
		return;
	/* Mark finished first so destruction callbacks leave d alone. */
	if (d->outcome == CBV_DNS_PENDING)
		d->outcome = CBV_DNS_TEMP;
	if (d->ch != NULL)
		ares_destroy(d->ch);
	for (i = 0; i < d->nmx; i++) {
		cbv_free(d->mx[i].a4);
		cbv_free(d->mx[i].a6);
	}
	cbv_free(d->mx);
	cbv_free(d->hosts);
	if (d->lib)
		ares_library_cleanup();
	cbv_free(d);
}
