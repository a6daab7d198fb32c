/*
 * cbv_share.c - TLS sessions and DNS answers through the cache store.
 * See cbv_share.h.
 */
#include "cbv_share.h"

#include <string.h>
#include <time.h>

/* The blob label of a session key "tls1 PEER ...": PEER ("ip:port"). */
static int tls_label(const char *key, char *out, size_t n)
{
	const char *p, *e;

	if (strncmp(key, "tls1 ", 5) != 0)
		return 0;
	p = key + 5;
	e = strchr(p, ' ');
	if (e == NULL || e == p || (size_t)(e - p) >= n)
		return 0;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 1;
}

static size_t tls_get(void *arg, const char *key, unsigned char *buf, size_t n)
{
	struct cbv_cache *c = arg;
	char label[CBV_DOMAIN_MAX + 1];
	size_t len = cbv_tls_cache_get(NULL, key, buf, n);
	int64_t expires_ms;

	if (len > 0 || !tls_label(key, label, sizeof(label)))
		return len;
	if (cbv_cache_blob_get(c, 'T', label, key, strlen(key), buf, n, &len, &expires_ms) !=
	    CBV_CACHE_HIT)
		return 0;
	/* kept in process too: the next connection of this process asks no one */
	cbv_tls_cache_put(NULL, key, buf, len, (time_t)(expires_ms / 1000));
	return len;
}

static void tls_put(void *arg, const char *key, const unsigned char *data, size_t len,
                    time_t expires)
{
	char label[CBV_DOMAIN_MAX + 1];

	cbv_tls_cache_put(NULL, key, data, len, expires);
	if (tls_label(key, label, sizeof(label)))
		(void)cbv_cache_blob_put(arg, 'T', label, key, strlen(key), data, len,
		                         (int64_t)expires * 1000);
}

static void tls_del(void *arg, const char *key)
{
	char label[CBV_DOMAIN_MAX + 1];

	cbv_tls_cache_del(NULL, key);
	if (tls_label(key, label, sizeof(label)))
		cbv_cache_blob_del(arg, 'T', label, key, strlen(key));
}

void cbv_share_tls_store(struct cbv_cache *c, struct cbv_tls_store *out)
{
	out->get = cbv_tls_cache_get;
	out->put = cbv_tls_cache_put;
	out->del = cbv_tls_cache_del;
	out->arg = NULL;
	if (c != NULL) {
		out->get = tls_get;
		out->put = tls_put;
		out->del = tls_del;
		out->arg = c;
	}
}

static size_t dns_get(void *arg, const char *name, const char *key, size_t keylen,
                      unsigned char *buf, size_t n, int64_t *ttl_ms)
{
	struct cbv_cache *c = arg;
	int64_t expires_ms;
	size_t len;

	*ttl_ms = 0;
	if (cbv_cache_blob_get(c, 'N', name, key, keylen, buf, n, &len, &expires_ms) !=
	    CBV_CACHE_HIT)
		return 0;
	*ttl_ms = expires_ms - cbv_cache_now_ms(c);
	return *ttl_ms > 0 ? len : 0;
}

static void dns_put(void *arg, const char *name, const char *key, size_t keylen,
                    const unsigned char *data, size_t len, int64_t ttl_ms)
{
	struct cbv_cache *c = arg;

	if (ttl_ms > 0)
		(void)cbv_cache_blob_put(c, 'N', name, key, keylen, data, len,
		                         cbv_cache_now_ms(c) + ttl_ms);
}

void cbv_share_dns_store(struct cbv_cache *c, struct cbv_dns_store *out)
{
	memset(out, 0, sizeof(*out));
	if (c != NULL) {
		out->get = dns_get;
		out->put = dns_put;
		out->arg = c;
	}
}
