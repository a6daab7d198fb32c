/*
 * cbv_tls.c - OpenSSL client side of STARTTLS.  All OpenSSL specifics of
 * the project live here.
 *
 * Session key: "tls1 PEER LEN:SNI verify|noverify LEN:CA_DIR", PEER being
 * "ip:port" or "[ip6]:port" from getpeername() and CA_DIR empty without
 * verification.  The lengths keep it unambiguous whatever bytes a name
 * holds.  A stored value is the key, a NUL, then i2d_SSL_SESSION().
 */
#include "cbv_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "cbv_limits.h"
#include "cbv_log.h"
#include "cbv_net.h"

struct cbv_tls {
	SSL *ssl;
	int fd;
	int verify;
	int bad; /* a resumed session failed the checks: keep nothing */
	char sni[CBV_DOMAIN_MAX + 1];
	char ip[INET6_ADDRSTRLEN];   /* no name: the address literal checked instead */
	char key[CBV_TLS_KEY_MAX]; /* session key, "" = no resumption here */
	struct cbv_tls_store store; /* where this connection's sessions live */
};

/* A stored value: key, NUL, serialized session. */
#define VALUE_MAX (CBV_TLS_KEY_MAX + CBV_TLS_SESSION_BYTES_MAX)

/*
 * Verifying contexts, one per CA directory, kept for the life of the
 * process.  Profiles may name different ca_dir values; a small cache lets
 * calls alternate between them without reloading a context each time.
 * When it is full the least recently used one goes (an SSL still using it
 * holds its own reference).
 */
struct ctx_slot {
	SSL_CTX *ctx;
	char ca_dir[CBV_URL_MAX + 1];
	unsigned long used;
};

static SSL_CTX *ctx_noverify;
static struct ctx_slot ctx_verify[CBV_TLS_CTX_MAX];
static unsigned long ctx_clock;
static BIO_METHOD *bio_method;

/* The built-in session store: a small table, least recently used goes. */
struct sess_slot {
	unsigned char *data; /* key, NUL, value: one cbv_malloc() block; NULL = free */
	size_t keylen, len;
	time_t expires;
	unsigned long used;
};

static struct sess_slot sessions[CBV_TLS_SESSIONS_MAX];
static unsigned long sess_clock;
static struct cbv_tls_store store = { cbv_tls_cache_get, cbv_tls_cache_put,
	                              cbv_tls_cache_del, NULL };

/*
 * Sessions already decoded, by the exact value they were decoded from (or
 * made into): d2i_SSL_SESSION() costs about 0.1 ms with OpenSSL 3, most of
 * it decoding the certificate's public key, and a value met again is
 * byte-for-byte the same.  Whatever store is set, it stays the authority:
 * only a value it returns is looked up here.
 */
struct memo_slot {
	unsigned char *val; /* the stored value (key, NUL, DER); NULL = free */
	size_t len;
	SSL_SESSION *sess; /* one reference of ours */
	unsigned long used;
};

static struct memo_slot memo[CBV_TLS_SESSIONS_MAX];

/* Formats OpenSSL's error queue (first entry) after prefix, then clears it. */
static void ssl_err(struct cbv_err *err, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[200];

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "no OpenSSL reason");
	ERR_clear_error();
	cbv_err_set(err, CBV_ETLS, "%s: %s", what, buf);
}

/*
 * Our socket BIO.  OpenSSL's own writes with write(2), so a peer that
 * closes right after "220" to STARTTLS makes the alert OpenSSL sends
 * raise SIGPIPE, which kills any program that embeds us with the default
 * disposition.  This one sends with MSG_NOSIGNAL and otherwise behaves as
 * a non-blocking socket BIO: EAGAIN sets the retry flags, EOF is
 * remembered for BIO_eof() (OpenSSL 3 tells an unexpected EOF by it).
 */
static int bio_write(BIO *b, const char *buf, int len)
{
	const struct cbv_tls *t = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	do
		n = send(t->fd, buf, (size_t)len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_write(b);
	return n < 0 ? -1 : (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
	const struct cbv_tls *t = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	do
		n = recv(t->fd, buf, (size_t)len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_read(b);
	if (n == 0)
		BIO_set_flags(b, BIO_FLAGS_IN_EOF);
	return n < 0 ? -1 : (int)n;
}

static int bio_puts(BIO *b, const char *s)
{
	return bio_write(b, s, (int)strlen(s));
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	const struct cbv_tls *t = BIO_get_data(b);

	(void)num;
	switch (cmd) {
	case BIO_C_GET_FD:
		if (ptr != NULL)
			*(int *)ptr = t->fd;
		return t->fd;
	case BIO_CTRL_EOF:
		return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
	case BIO_CTRL_FLUSH:
	case BIO_CTRL_DUP:
		return 1;
	default:
		return 0;
	}
}

/* The method, made once per process; NULL on ENOMEM. */
static BIO_METHOD *get_bio_method(void)
{
	BIO_METHOD *m;

	if (bio_method != NULL)
		return bio_method;
	m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
	                 "cbv socket");
	if (m == NULL)
		return NULL;
	if (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
	    BIO_meth_set_puts(m, bio_puts) != 1 || BIO_meth_set_ctrl(m, bio_ctrl) != 1) {
		BIO_meth_free(m);
		return NULL;
	}
	bio_method = m;
	return m;
}

static void slot_free(struct sess_slot *e)
{
	cbv_free(e->data);
	memset(e, 0, sizeof(*e));
}

static struct sess_slot *slot_find(const char *key)
{
	size_t kl = strlen(key);

	for (size_t i = 0; i < CBV_TLS_SESSIONS_MAX; i++) {
		struct sess_slot *e = &sessions[i];

		if (e->data != NULL && e->keylen == kl && memcmp(e->data, key, kl) == 0)
			return e;
	}
	return NULL;
}

size_t cbv_tls_cache_get(void *arg, const char *key, unsigned char *buf, size_t n)
{
	struct sess_slot *e = slot_find(key);

	(void)arg;
	if (e == NULL)
		return 0;
	if (e->expires <= time(NULL)) {
		slot_free(e);
		return 0;
	}
	if (e->len > n)
		return 0;
	memcpy(buf, e->data + e->keylen + 1, e->len);
	e->used = ++sess_clock;
	return e->len;
}

void cbv_tls_cache_put(void *arg, const char *key, const unsigned char *data, size_t len,
                       time_t expires)
{
	size_t kl = strlen(key);
	time_t now = time(NULL);
	struct sess_slot *e = slot_find(key);
	unsigned char *block;

	(void)arg;
	if (e != NULL)
		slot_free(e); /* what was there is stale either way */
	if (len == 0 || len > VALUE_MAX || kl >= CBV_TLS_KEY_MAX || expires <= now)
		return;
	block = cbv_malloc(kl + 1 + len);
	if (block == NULL)
		return; /* a lost resumption, not an error */
	if (e == NULL) {
		/* A free slot, else an expired one, else the least recently used. */
		e = &sessions[0];
		for (size_t i = 0; i < CBV_TLS_SESSIONS_MAX; i++) {
			struct sess_slot *c = &sessions[i];

			if (c->data == NULL || c->expires <= now) {
				e = c;
				break;
			}
			if (c->used < e->used)
				e = c;
		}
		slot_free(e);
	}
	memcpy(block, key, kl + 1);
	memcpy(block + kl + 1, data, len);
	e->data = block;
	e->keylen = kl;
	e->len = len;
	e->expires = expires;
	e->used = ++sess_clock;
}

void cbv_tls_cache_del(void *arg, const char *key)
{
	struct sess_slot *e = slot_find(key);

	(void)arg;
	if (e != NULL)
		slot_free(e);
}

size_t cbv_tls_cache_count(void)
{
	size_t n = 0;

	for (size_t i = 0; i < CBV_TLS_SESSIONS_MAX; i++)
		n += sessions[i].data != NULL;
	return n;
}

static void memo_free(struct memo_slot *m)
{
	cbv_free(m->val);
	SSL_SESSION_free(m->sess);
	memset(m, 0, sizeof(*m));
}

void cbv_tls_cache_clear(void)
{
	for (size_t i = 0; i < CBV_TLS_SESSIONS_MAX; i++) {
		slot_free(&sessions[i]);
		memo_free(&memo[i]);
	}
}

/* The session decoded from exactly val, with a new reference; NULL if none. */
static SSL_SESSION *memo_get(const unsigned char *val, size_t len)
{
	for (size_t i = 0; i < CBV_TLS_SESSIONS_MAX; i++) {
		struct memo_slot *m = &memo[i];

		if (m->val != NULL && m->len == len && memcmp(m->val, val, len) == 0) {
			m->used = ++sess_clock;
			SSL_SESSION_up_ref(m->sess);
			return m->sess;
		}
	}
	return NULL;
}

/* Remembers that val decodes to sess (takes a reference); OOM: nothing. */
static void memo_put(const unsigned char *val, size_t len, SSL_SESSION *sess)
{
	struct memo_slot *m = &memo[0];
	unsigned char *copy = cbv_malloc(len);

	if (copy == NULL)
		return;
	for (size_t i = 0; i < CBV_TLS_SESSIONS_MAX; i++) {
		struct memo_slot *c = &memo[i];

		if (c->val == NULL) {
			m = c;
			break;
		}
		if (c->used < m->used)
			m = c;
	}
	memo_free(m);
	memcpy(copy, val, len);
	SSL_SESSION_up_ref(sess);
	m->val = copy;
	m->len = len;
	m->sess = sess;
	m->used = ++sess_clock;
}

void cbv_tls_set_store(const struct cbv_tls_store *st)
{
	static const struct cbv_tls_store builtin = { cbv_tls_cache_get, cbv_tls_cache_put,
		                                      cbv_tls_cache_del, NULL };

	store = st != NULL ? *st : builtin;
}

/*
 * When a session stops being offered: the earliest of its start plus its
 * timeout, plus the server's ticket lifetime hint (RFC 5077 3.3, RFC 8446
 * 4.6.1), plus CBV_TLS_SESSION_TTL_MAX.  A start in the future (a clock
 * step, or a value we did not make) gives 0: never.
 */
static time_t session_expiry(const SSL_SESSION *sess, time_t now)
{
	time_t start = (time_t)SSL_SESSION_get_time(sess);
	long timeout = SSL_SESSION_get_timeout(sess);
	unsigned long hint = SSL_SESSION_get_ticket_lifetime_hint(sess);
	time_t ttl = CBV_TLS_SESSION_TTL_MAX;

	if (start <= 0 || start > now)
		return 0;
	if (timeout >= 0 && timeout < ttl)
		ttl = (time_t)timeout;
	if (hint != 0 && hint < (unsigned long)ttl)
		ttl = (time_t)hint;
	return start + ttl;
}

/*
 * 1 if the peer certificate in sess (or, sess NULL, of the connection)
 * matches t's name under the host flags of the full handshake, or, for
 * an address literal, its address (an iPAddress subjectAltName, RFC 5280
 * 4.2.1.6), as the full handshake checks.
 */
static int name_ok(const struct cbv_tls *t, X509 *peer)
{
	unsigned flags = X509_VERIFY_PARAM_get_hostflags(SSL_get0_param(t->ssl));

	if (peer == NULL)
		return 0;
	if (t->sni[0] != '\0')
		return X509_check_host(peer, t->sni, 0, flags, NULL) == 1;
	return t->ip[0] == '\0' || X509_check_ip_asc(peer, t->ip, 0) == 1;
}

/*
 * New session (TLS 1.2: at the end of the handshake; TLS 1.3: each
 * NewSessionTicket, read after the handshake).  Keeps it in the store.
 * Returns 0: OpenSSL keeps its reference.
 */
static int new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct cbv_tls *t = SSL_get_app_data(ssl);
	unsigned char buf[VALUE_MAX];
	unsigned char *p;
	SSL_SESSION *copy;
	size_t kl;
	time_t expires;
	int len;

	if (t == NULL || t->bad || t->key[0] == '\0' || t->store.put == NULL ||
	    !SSL_SESSION_is_resumable(sess))
		return 0;
	/* A verifying connection gets here only verified; check anyway. */
	if (t->verify && (SSL_get_verify_result(ssl) != X509_V_OK ||
	                  !name_ok(t, SSL_SESSION_get0_peer(sess))))
		return 0;
	expires = session_expiry(sess, time(NULL));
	kl = strlen(t->key);
	len = i2d_SSL_SESSION(sess, NULL);
	if (expires == 0 || len <= 0 || (size_t)len > CBV_TLS_SESSION_BYTES_MAX) {
		ERR_clear_error();
		return 0;
	}
	memcpy(buf, t->key, kl + 1);
	p = buf + kl + 1;
	if (i2d_SSL_SESSION(sess, &p) == len) {
		cbv_log(CBV_LOG_DEBUG, "TLS session kept for %lld s (%d octets): %s",
		        (long long)(expires - time(NULL)), len, t->key);
		t->store.put(t->store.arg, t->key, buf, kl + 1 + (size_t)len, expires);
		/* A copy: OpenSSL may still mark the connection's own one
		 * not resumable (a connection dropped without close_notify). */
		copy = SSL_SESSION_dup(sess);
		if (copy != NULL) {
			memo_put(buf, kl + 1 + (size_t)len, copy);
			SSL_SESSION_free(copy);
		}
	}
	ERR_clear_error();
	return 0;
}

/* Builds t->key from the socket's peer and the policy; "" if it cannot. */
static void make_key(struct cbv_tls *t, const char *ca_dir)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char peer[80];
	int n;

	t->key[0] = '\0';
	if (getpeername(t->fd, (struct sockaddr *)&ss, &sl) != 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
		return;
	cbv_net_format((struct sockaddr *)&ss, peer, sizeof(peer));
	if (!t->verify)
		ca_dir = "";
	n = snprintf(t->key, sizeof(t->key), "tls1 %s %zu:%s %s %zu:%s", peer, strlen(t->sni),
	             t->sni, t->verify ? "verify" : "noverify", strlen(ca_dir), ca_dir);
	if (n < 0 || (size_t)n >= sizeof(t->key))
		t->key[0] = '\0';
}

/*
 * Offers the session stored under t->key if it was made under that key,
 * has not expired and, when verifying, was verified for this name.
 */
static void offer_session(struct cbv_tls *t)
{
	unsigned char buf[VALUE_MAX];
	const unsigned char *p;
	size_t kl = strlen(t->key), n;
	SSL_SESSION *sess;

	if (t->key[0] == '\0' || t->store.get == NULL)
		return;
	n = t->store.get(t->store.arg, t->key, buf, sizeof(buf));
	/* The value names its key: a store that mixed keys up is not believed. */
	if (n <= kl + 1 || n > sizeof(buf) || memcmp(buf, t->key, kl + 1) != 0)
		return;
	sess = memo_get(buf, n);
	if (sess == NULL) {
		p = buf + kl + 1;
		sess = d2i_SSL_SESSION(NULL, &p, (long)(n - kl - 1));
		if (sess == NULL) {
			ERR_clear_error();
			return;
		}
		memo_put(buf, n, sess);
	}
	if (SSL_SESSION_is_resumable(sess) && session_expiry(sess, time(NULL)) > time(NULL) &&
	    (!t->verify || name_ok(t, SSL_SESSION_get0_peer(sess))) &&
	    SSL_set_session(t->ssl, sess) == 1) {
		/* SSL_set_session() took the session's verify result. */
		if (t->verify && SSL_get_verify_result(t->ssl) != X509_V_OK) {
			SSL_set_session(t->ssl, NULL);
			SSL_set_verify_result(t->ssl, X509_V_OK);
		} else {
			cbv_log(CBV_LOG_DEBUG, "TLS session offered: %s", t->key);
		}
	}
	SSL_SESSION_free(sess);
	ERR_clear_error();
}

static SSL_CTX *make_ctx(int verify, const char *ca_dir, struct cbv_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		ssl_err(err, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Whole socket reads, not a record header then its body: about 16
	 * fewer recv() calls a STARTTLS session.  Safe with our poll(): a
	 * session reads until SSL_read says WANT_READ, which it says only
	 * when no complete record is buffered. */
	SSL_CTX_set_read_ahead(ctx, 1);
	/* Sessions go to our store (new_session), never to OpenSSL's cache. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(ctx, new_session);
	if (!verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* A directory is read one hashed file at a time, when needed. */
	if ((ca_dir[0] != '\0' ? SSL_CTX_load_verify_dir(ctx, ca_dir)
	                       : SSL_CTX_set_default_verify_dir(ctx)) != 1) {
		ssl_err(err, ca_dir[0] != '\0' ? ca_dir : "default CA directory");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Returns the shared context for this policy, making it on first use. */
static SSL_CTX *get_ctx(int verify, const char *ca_dir, struct cbv_err *err)
{
	struct ctx_slot *slot = &ctx_verify[0];
	SSL_CTX *ctx;

	if (!verify) {
		if (ctx_noverify == NULL)
			ctx_noverify = make_ctx(0, "", err);
		return ctx_noverify;
	}
	if (strlen(ca_dir) >= sizeof(slot->ca_dir)) {
		cbv_err_set(err, CBV_ETLS, "ca_dir too long");
		return NULL;
	}
	for (size_t i = 0; i < CBV_TLS_CTX_MAX; i++) {
		struct ctx_slot *c = &ctx_verify[i];

		if (c->ctx != NULL && strcmp(c->ca_dir, ca_dir) == 0) {
			c->used = ++ctx_clock;
			return c->ctx;
		}
		if (c->ctx == NULL || (slot->ctx != NULL && c->used < slot->used))
			slot = c; /* an empty slot, else the least recently used */
	}
	ctx = make_ctx(1, ca_dir, err);
	if (ctx == NULL)
		return NULL;
	SSL_CTX_free(slot->ctx);
	slot->ctx = ctx;
	snprintf(slot->ca_dir, sizeof(slot->ca_dir), "%s", ca_dir);
	slot->used = ++ctx_clock;
	return ctx;
}

/*
 * 1 if s may go in SNI: a host name, not an address (RFC 6066 3: "Literal
 * IPv4 and IPv6 addresses are not permitted"), nor a domain literal such
 * as "[192.0.2.1]" (a GnuTLS server answers that with an alert).
 */
static int sni_ok(const char *s)
{
	unsigned char tmp[16];

	if (s == NULL || s[0] == '\0' || strchr(s, '[') != NULL || strchr(s, ':') != NULL)
		return 0;
	return inet_pton(AF_INET, s, tmp) != 1;
}

/*
 * 1 and the bare address in out if s is an IP address or an address
 * literal ("[192.0.2.1]", "[IPv6:2001:db8::1]", RFC 5321 4.1.3).
 */
static int literal_ip(const char *s, char *out, size_t n)
{
	unsigned char tmp[16];
	size_t len;

	if (s == NULL)
		return 0;
	len = strlen(s);
	if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		s++;
		len -= 2;
		if (len > 5 && strncasecmp(s, "IPv6:", 5) == 0) {
			s += 5;
			len -= 5;
		}
	}
	if (len == 0 || len >= n)
		return 0;
	memcpy(out, s, len);
	out[len] = '\0';
	if (inet_pton(AF_INET, out, tmp) == 1 || inet_pton(AF_INET6, out, tmp) == 1)
		return 1;
	out[0] = '\0';
	return 0;
}

struct cbv_tls *cbv_tls_new(int fd, const char *sni, int verify,
                            const char *ca_dir, struct cbv_err *err)
{
	return cbv_tls_new_with(fd, sni, verify, ca_dir, NULL, err);
}

struct cbv_tls *cbv_tls_new_with(int fd, const char *sni, int verify, const char *ca_dir,
                                 const struct cbv_tls_store *st, struct cbv_err *err)
{
	struct cbv_tls *t = NULL;
	BIO_METHOD *method;
	BIO *bio;
	SSL_CTX *ctx;

	ctx = get_ctx(verify, ca_dir != NULL ? ca_dir : "", err);
	if (ctx == NULL)
		return NULL;
	t = cbv_calloc(1, sizeof(*t));
	if (t == NULL) {
		cbv_err_set(err, CBV_ENOMEM, "out of memory");
		return NULL;
	}
	t->verify = verify;
	t->fd = fd;
	t->store = st != NULL ? *st : store;
	t->ssl = SSL_new(ctx);
	if (t->ssl == NULL) {
		ssl_err(err, "SSL_new");
		goto fail;
	}
	method = get_bio_method();
	bio = method != NULL ? BIO_new(method) : NULL;
	if (bio == NULL) {
		ssl_err(err, "BIO_new");
		goto fail;
	}
	BIO_set_data(bio, t);
	BIO_set_init(bio, 1);
	SSL_set_bio(t->ssl, bio, bio); /* the SSL owns it now */
	SSL_set_connect_state(t->ssl);
	if (sni_ok(sni)) {
		/* The macro casts its argument to void *: give it our own copy,
		 * not the caller's const string (clang -Wcast-qual). */
		snprintf(t->sni, sizeof(t->sni), "%s", sni);
		if (SSL_set_tlsext_host_name(t->ssl, t->sni) != 1) {
			ssl_err(err, "SNI");
			goto fail;
		}
		if (verify && SSL_set1_host(t->ssl, sni) != 1) {
			ssl_err(err, "host name check");
			goto fail;
		}
	} else if (verify && literal_ip(sni, t->ip, sizeof(t->ip))) {
		/* No name to check: the certificate must name the address
		 * we connected to, or any certificate of a trusted CA would do. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), t->ip) != 1) {
			ssl_err(err, "address check");
			goto fail;
		}
	}
	SSL_set_app_data(t->ssl, t);
	make_key(t, ca_dir != NULL ? ca_dir : "");
	offer_session(t);
	return t;
fail:
	cbv_tls_free(t);
	return NULL;
}

/* Maps an SSL_get_error() result to events to wait for, or -1. */
static int want(SSL *ssl, int rc, short *events)
{
	switch (SSL_get_error(ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		*events = POLLIN;
		return 0;
	case SSL_ERROR_WANT_WRITE:
		*events = POLLOUT;
		return 0;
	default:
		return -1;
	}
}

int cbv_tls_handshake(struct cbv_tls *t, short *events, struct cbv_err *err)
{
	int rc;

	ERR_clear_error();
	rc = SSL_connect(t->ssl);
	if (rc == 1) {
		/* Resumption skips the certificate, not the policy: the session's
		 * stored verify result and certificate must pass again. */
		if (t->verify && SSL_session_reused(t->ssl) &&
		    (SSL_get_verify_result(t->ssl) != X509_V_OK ||
		     !name_ok(t, SSL_get0_peer_certificate(t->ssl)))) {
			t->bad = 1;
			if (t->store.del != NULL && t->key[0] != '\0')
				t->store.del(t->store.arg, t->key);
			cbv_err_set(err, CBV_ETLS,
			            "TLS handshake: resumed session fails verification");
			return -1;
		}
		return 1;
	}
	if (want(t->ssl, rc, events) == 0)
		return 0;
	if (t->verify && SSL_get_verify_result(t->ssl) != X509_V_OK) {
		cbv_err_set(err, CBV_ETLS, "TLS handshake: certificate verification failed: %s",
		            X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
		ERR_clear_error();
		return -1;
	}
	ssl_err(err, "TLS handshake");
	return -1;
}

ssize_t cbv_tls_read(struct cbv_tls *t, void *buf, size_t len, short *events,
                     struct cbv_err *err)
{
	size_t got = 0;
	int rc;

	ERR_clear_error();
	rc = SSL_read_ex(t->ssl, buf, len, &got);
	if (rc == 1)
		return (ssize_t)got;
	if (SSL_get_error(t->ssl, rc) == SSL_ERROR_ZERO_RETURN)
		return -2;
	if (want(t->ssl, rc, events) == 0)
		return 0;
	if (SSL_get_error(t->ssl, rc) == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		/* EOF without close_notify: the peer just closed. */
		return -2;
	}
	ssl_err(err, "TLS read");
	return -1;
}

ssize_t cbv_tls_write(struct cbv_tls *t, const void *buf, size_t len,
                      short *events, struct cbv_err *err)
{
	size_t put = 0;
	int rc;

	ERR_clear_error();
	rc = SSL_write_ex(t->ssl, buf, len, &put);
	if (rc == 1)
		return (ssize_t)put;
	if (want(t->ssl, rc, events) == 0)
		return 0;
	ssl_err(err, "TLS write");
	return -1;
}

void cbv_tls_describe(const struct cbv_tls *t, char *buf, size_t n)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);

	snprintf(buf, n, "%s:%s:%s%s", SSL_get_version(t->ssl),
	         c != NULL ? SSL_CIPHER_get_name(c) : "none",
	         t->verify ? "verified" : "unverified",
	         SSL_session_reused(t->ssl) ? ":resumed" : "");
}

int cbv_tls_preload(int verify, const char *ca_dir, struct cbv_err *err)
{
	static int warm; /* the stores, once per process */
	EVP_PKEY *key = NULL, *back = NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	int len, rc = -1;

	if (get_ctx(verify, ca_dir != NULL ? ca_dir : "", err) == NULL)
		return -1;
	if (warm)
		return 0;
	/* The first handshake's own first uses: a key share made (keymgmt
	 * and key generation), the server's public key decoded (decoders). */
	key = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	len = key != NULL ? i2d_PUBKEY(key, &der) : -1;
	p = der;
	if (len > 0)
		back = d2i_PUBKEY(NULL, &p, len);
	if (back == NULL) {
		ssl_err(err, "TLS preload");
		goto done;
	}
	warm = 1;
	rc = 0;
done:
	OPENSSL_free(der);
	EVP_PKEY_free(back);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

int cbv_tls_resumed(const struct cbv_tls *t)
{
	return SSL_session_reused(t->ssl) == 1;
}

void cbv_tls_free(struct cbv_tls *t)
{
	if (t == NULL)
		return;
	if (t->ssl != NULL) {
		/* One non-blocking attempt at close_notify; we never wait for it. */
		if (SSL_is_init_finished(t->ssl))
			(void)SSL_shutdown(t->ssl);
		ERR_clear_error();
		SSL_free(t->ssl);
	}
	cbv_free(t);
}

void cbv_tls_abandon(struct cbv_tls *t)
{
	if (t != NULL && t->ssl != NULL)
		SSL_set_quiet_shutdown(t->ssl, 1); /* SSL_shutdown() then writes nothing */
	cbv_tls_free(t);
}

int cbv_tls_pending(const struct cbv_tls *t)
{
	return t != NULL && t->ssl != NULL && SSL_has_pending(t->ssl) == 1;
}

int cbv_tls_resumable(const struct cbv_tls *t)
{
	SSL_SESSION *ss = t != NULL && t->ssl != NULL ? SSL_get_session(t->ssl) : NULL;

	return ss != NULL && SSL_SESSION_is_resumable(ss) == 1;
}
