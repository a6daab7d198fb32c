/*
 * cbv_cache_rec.c - encoding and validating decoding of cache values.
 * See cbv_cache_rec.h for the layout.  Nothing here does I/O or
 * allocates; every read is checked against the value's length first.
 */
#include "cbv_cache_rec.h"

#include <string.h>

#include "cbv_limits.h"
#include "cbv_text.h"

#define MAGIC0 'c'
#define MAGIC1 'v'
#define HEAD_LEN 32 /* result record: fixed part before the strings */
#define SUM_LEN 4
/* Kind bytes of the small values (result kinds are 1..CBV_CACHE_KIND_MAX). */
#define KIND_LEASES 0x40
#define KIND_BUCKET 0x41
#define KIND_BLOB 0x42
#define BLOB_HEAD 24 /* head, kind, flags, reserved, expires, length */
#define LEASE_LEN 20 /* pid u32, ticket u64, expires i64 */

static const struct {
	const char *name;
	size_t max;
} strs[CBV_CACHE_NSTR] = {
	[CBV_CS_REASON] = { "reason", 32 },
	[CBV_CS_ECODE] = { "ecode", 15 },
	/* A message is a reply kept whole or a synthesized one naming a host. */
	[CBV_CS_MESSAGE] = { "message", CBV_REPLY_KEEP_MAX + CBV_CMD_MAX },
	[CBV_CS_ADDRESS] = { "address", CBV_PATH_MAX },
	[CBV_CS_RCPT] = { "rcpt", CBV_PATH_MAX },
	[CBV_CS_SENDER] = { "sender", CBV_PATH_MAX },
	[CBV_CS_HOST] = { "host", CBV_DOMAIN_MAX },
	[CBV_CS_IP] = { "ip", 64 },
	[CBV_CS_GREETING] = { "greeting", CBV_REPLY_KEEP_MAX },
	[CBV_CS_HELO] = { "helo", CBV_REPLY_KEEP_MAX },
	[CBV_CS_SENT] = { "sent", CBV_REPLY_KEEP_MAX },
	[CBV_CS_RECV] = { "recv", CBV_REPLY_KEEP_MAX },
	[CBV_CS_TLS] = { "tls", 127 },
};

size_t cbv_cache_str_max(enum cbv_cache_str i)
{
	return (unsigned)i < CBV_CACHE_NSTR ? strs[i].max : 0;
}

const char *cbv_cache_str_name(enum cbv_cache_str i)
{
	return (unsigned)i < CBV_CACHE_NSTR ? strs[i].name : "?";
}

const char *cbv_cache_kind_name(enum cbv_cache_kind k)
{
	switch (k) {
	case CBV_CACHE_ADDRESS: return "address";
	case CBV_CACHE_SENDER_REFUSED: return "sender_refused";
	case CBV_CACHE_CATCH_ALL: return "catch_all";
	case CBV_CACHE_UNREACHABLE: return "unreachable";
	}
	return "?";
}

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

static void put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v & 0xff);
	p[1] = (unsigned char)((v >> 8) & 0xff);
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static unsigned get16(const unsigned char *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Writes magic, version and kind; the caller has checked cap >= 4. */
static void put_head(unsigned char *out, unsigned kind)
{
	out[0] = MAGIC0;
	out[1] = MAGIC1;
	out[2] = CBV_CACHE_FORMAT;
	out[3] = (unsigned char)kind;
}

/* Appends the sum at off; returns the total length or 0 without room. */
static size_t seal(unsigned char *out, size_t off, size_t cap)
{
	if (cap - off < SUM_LEN)
		return 0;
	put32(out + off, fnv1a(out, off));
	return off + SUM_LEN;
}

/*
 * Checks magic, sum and version of a value of kind want (0: any result
 * kind).  The version is checked after the sum so a damaged byte reads as
 * corrupt, not as a future format.
 */
static enum cbv_cache_rec_status open_value(const unsigned char *p, size_t len,
                                            unsigned want)
{
	if (len < 4 + SUM_LEN || len > CBV_CACHE_REC_MAX || p[0] != MAGIC0 ||
	    p[1] != MAGIC1)
		return CBV_REC_ECORRUPT;
	if (get32(p + len - SUM_LEN) != fnv1a(p, len - SUM_LEN))
		return CBV_REC_ECORRUPT;
	if (p[2] != CBV_CACHE_FORMAT)
		return CBV_REC_EVERSION;
	if (want != 0 ? p[3] != want : p[3] < 1 || p[3] > CBV_CACHE_KIND_MAX)
		return CBV_REC_ECORRUPT;
	return CBV_REC_OK;
}

/* 1 if s (n bytes, no NUL) is text a sanitized result may hold. */
static int printable(const char *s, size_t n)
{
	return cbv_text_span(s, n, CBV_TEXT_PRINT, "\n") == n;
}

size_t cbv_cache_rec_encode(const struct cbv_cache_rec *rec, unsigned char *out,
                            size_t cap)
{
	size_t off = HEAD_LEN;

	if (cap > CBV_CACHE_REC_MAX)
		cap = CBV_CACHE_REC_MAX;
	if (cap < HEAD_LEN || rec->kind < 1 || rec->kind > CBV_CACHE_KIND_MAX ||
	    (unsigned)rec->verdict > CBV_ERROR || rec->code > 999 || rec->port > 65535 ||
	    rec->hosts_tried > 65535 || rec->expires_ms < rec->stored_ms)
		return 0;
	put_head(out, rec->kind);
	out[4] = (unsigned char)rec->verdict;
	out[5] = 0;
	put16(out + 6, rec->code);
	put16(out + 8, rec->port);
	put16(out + 10, rec->hosts_tried);
	put32(out + 12, rec->elapsed_ms);
	put64(out + 16, (uint64_t)rec->stored_ms);
	put64(out + 24, (uint64_t)rec->expires_ms);
	for (int i = 0; i < CBV_CACHE_NSTR; i++) {
		const char *s = rec->s[i] != NULL ? rec->s[i] : "";
		size_t n = strlen(s);

		if (n > strs[i].max || !printable(s, n) || cap - off < 4 + n + 1)
			return 0;
		put32(out + off, (uint32_t)(n + 1));
		memcpy(out + off + 4, s, n + 1);
		off += 4 + n + 1;
	}
	return seal(out, off, cap);
}

enum cbv_cache_rec_status cbv_cache_rec_decode(const void *data, size_t len,
                                               struct cbv_cache_rec *rec)
{
	const unsigned char *p = data;
	enum cbv_cache_rec_status st = open_value(p, len, 0);
	size_t off = HEAD_LEN, end = len - SUM_LEN;

	memset(rec, 0, sizeof(*rec));
	if (st != CBV_REC_OK)
		return st;
	if (len < HEAD_LEN + SUM_LEN || p[4] > CBV_ERROR || p[5] != 0 || get16(p + 6) > 999)
		return CBV_REC_ECORRUPT;
	rec->kind = p[3];
	rec->verdict = p[4];
	rec->code = get16(p + 6);
	rec->port = get16(p + 8);
	rec->hosts_tried = get16(p + 10);
	rec->elapsed_ms = get32(p + 12);
	rec->stored_ms = (int64_t)get64(p + 16);
	rec->expires_ms = (int64_t)get64(p + 24);
	if (rec->expires_ms < rec->stored_ms)
		goto corrupt;
	for (int i = 0; i < CBV_CACHE_NSTR; i++) {
		uint32_t n;
		const char *s;

		if (end - off < 4)
			goto corrupt;
		n = get32(p + off);
		off += 4;
		/* n counts the NUL: 1..max+1, all inside the value */
		if (n < 1 || n - 1 > strs[i].max || n > end - off)
			goto corrupt;
		s = (const char *)p + off;
		if (s[n - 1] != '\0' || !printable(s, n - 1))
			goto corrupt;
		rec->s[i] = s;
		off += n;
	}
	if (off != end)
		goto corrupt;
	return CBV_REC_OK;
corrupt:
	memset(rec, 0, sizeof(*rec));
	return CBV_REC_ECORRUPT;
}

size_t cbv_cache_leases_encode(const struct cbv_cache_lease *l, size_t n,
                               unsigned char *out, size_t cap)
{
	size_t off = 6;

	if (n > CBV_CACHE_SLOTS_MAX || cap < off + n * LEASE_LEN)
		return 0;
	put_head(out, KIND_LEASES);
	put16(out + 4, (unsigned)n);
	for (size_t i = 0; i < n; i++, off += LEASE_LEN) {
		put32(out + off, l[i].pid);
		put64(out + off + 4, l[i].ticket);
		put64(out + off + 12, (uint64_t)l[i].expires_ms);
	}
	return seal(out, off, cap);
}

enum cbv_cache_rec_status cbv_cache_leases_decode(const void *data, size_t len,
                                                  struct cbv_cache_lease *l,
                                                  size_t *n)
{
	const unsigned char *p = data;
	enum cbv_cache_rec_status st = open_value(p, len, KIND_LEASES);
	size_t count;

	*n = 0;
	if (st != CBV_REC_OK)
		return st;
	if (len < 6 + SUM_LEN)
		return CBV_REC_ECORRUPT;
	count = get16(p + 4);
	if (count > CBV_CACHE_SLOTS_MAX || len != 6 + count * LEASE_LEN + SUM_LEN)
		return CBV_REC_ECORRUPT;
	for (size_t i = 0; i < count; i++) {
		const unsigned char *q = p + 6 + i * LEASE_LEN;

		l[i].pid = get32(q);
		l[i].ticket = get64(q + 4);
		l[i].expires_ms = (int64_t)get64(q + 12);
	}
	*n = count;
	return CBV_REC_OK;
}

size_t cbv_cache_bucket_encode(const struct cbv_cache_bucket *b,
                               unsigned char *out, size_t cap)
{
	if (cap < 4 + 16 + SUM_LEN)
		return 0;
	put_head(out, KIND_BUCKET);
	put64(out + 4, b->mtokens);
	put64(out + 12, (uint64_t)b->last_ms);
	return seal(out, 20, cap);
}

enum cbv_cache_rec_status cbv_cache_bucket_decode(const void *data, size_t len,
                                                  struct cbv_cache_bucket *b)
{
	const unsigned char *p = data;
	enum cbv_cache_rec_status st = open_value(p, len, KIND_BUCKET);

	memset(b, 0, sizeof(*b));
	if (st != CBV_REC_OK)
		return st;
	if (len != 20 + SUM_LEN)
		return CBV_REC_ECORRUPT;
	b->mtokens = get64(p + 4);
	b->last_ms = (int64_t)get64(p + 12);
	return CBV_REC_OK;
}

int cbv_cache_blob_kind_ok(char kind)
{
	return kind == 'T' || kind == 'N';
}

size_t cbv_cache_blob_encode(const struct cbv_cache_blob *b, unsigned char *out, size_t cap)
{
	if (!cbv_cache_blob_kind_ok(b->kind) || b->len > CBV_CACHE_BLOB_MAX ||
	    (b->len > 0 && b->data == NULL) || b->expires_ms <= 0 ||
	    cap < BLOB_HEAD + b->len + SUM_LEN)
		return 0;
	put_head(out, KIND_BLOB);
	out[4] = (unsigned char)b->kind;
	memset(out + 5, 0, 7);
	put64(out + 12, (uint64_t)b->expires_ms);
	put32(out + 20, (uint32_t)b->len);
	if (b->len > 0)
		memcpy(out + BLOB_HEAD, b->data, b->len);
	return seal(out, BLOB_HEAD + b->len, cap);
}

enum cbv_cache_rec_status cbv_cache_blob_decode(const void *data, size_t len, char want,
                                                struct cbv_cache_blob *b)
{
	const unsigned char *p = data;
	enum cbv_cache_rec_status st = open_value(p, len, KIND_BLOB);
	static const unsigned char zero[7];
	uint32_t n;

	memset(b, 0, sizeof(*b));
	if (st != CBV_REC_OK)
		return st;
	if (len < BLOB_HEAD + SUM_LEN)
		return CBV_REC_ECORRUPT;
	n = get32(p + 20);
	if (!cbv_cache_blob_kind_ok((char)p[4]) || (want != 0 && p[4] != (unsigned char)want) ||
	    memcmp(p + 5, zero, 7) != 0 || n > CBV_CACHE_BLOB_MAX ||
	    len != BLOB_HEAD + (size_t)n + SUM_LEN || (int64_t)get64(p + 12) <= 0)
		return CBV_REC_ECORRUPT;
	b->kind = (char)p[4];
	b->expires_ms = (int64_t)get64(p + 12);
	b->data = p + BLOB_HEAD;
	b->len = n;
	return CBV_REC_OK;
}

void cbv_cache_rec_reseal(unsigned char *value, size_t len)
{
	if (len >= SUM_LEN)
		put32(value + len - SUM_LEN, fnv1a(value, len - SUM_LEN));
}
