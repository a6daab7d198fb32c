/*
 * cbv_tls.c - OpenSSL client side of STARTTLS.  All OpenSSL specifics of
 * the project live here.
 */
#include "cbv_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "cbv_limits.h"

struct cbv_tls {
	SSL *ssl;
	int verify;
};

/* Process-wide contexts, made on first use and kept (see header). */
static SSL_CTX *ctx_noverify;
static SSL_CTX *ctx_verify;
static char ctx_verify_dir[CBV_URL_MAX + 1];

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
	if (!verify) {
		if (ctx_noverify == NULL)
			ctx_noverify = make_ctx(0, "", err);
		return ctx_noverify;
	}
	if (ctx_verify != NULL && strcmp(ctx_verify_dir, ca_dir) != 0) {
		SSL_CTX_free(ctx_verify);
		ctx_verify = NULL;
	}
	if (ctx_verify == NULL) {
		if (strlen(ca_dir) >= sizeof(ctx_verify_dir)) {
			cbv_err_set(err, CBV_ETLS, "ca_dir too long");
			return NULL;
		}
		ctx_verify = make_ctx(1, ca_dir, err);
		if (ctx_verify != NULL)
			snprintf(ctx_verify_dir, sizeof(ctx_verify_dir), "%s", ca_dir);
	}
	return ctx_verify;
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
	t->ssl = SSL_new(ctx);
	if (t->ssl == NULL || SSL_set_fd(t->ssl, fd) != 1) {
		ssl_err(err, "SSL_new");
		goto fail;
	}
	SSL_set_connect_state(t->ssl);
	if (sni_ok(sni)) {
		if (SSL_set_tlsext_host_name(t->ssl, sni) != 1) {
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
