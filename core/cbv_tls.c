/*
 * cbv_tls.c - OpenSSL client side of STARTTLS.  All OpenSSL specifics of
 * the project live here.
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
#include <sys/socket.h>

#include "cbv_limits.h"

struct cbv_tls {
	SSL *ssl;
	int fd;
	int verify;
	char sni[CBV_DOMAIN_MAX + 1];
};

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

static SSL_CTX *make_ctx(int verify, const char *ca_dir, struct cbv_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL) {
		ssl_err(err, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* One short session per host: no tickets or cache to manage. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
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

struct cbv_tls *cbv_tls_new(int fd, const char *sni, int verify,
                            const char *ca_dir, struct cbv_err *err)
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
	}
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
	if (rc == 1)
		return 1;
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

	snprintf(buf, n, "%s:%s:%s", SSL_get_version(t->ssl),
	         c != NULL ? SSL_CIPHER_get_name(c) : "none",
	         t->verify ? "verified" : "unverified");
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
