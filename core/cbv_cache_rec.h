/*
 * cbv_cache_rec.h - the binary records of the verification cache, with no
 * I/O: encode into a caller's buffer, decode and validate what a store
 * hands back.  cbv_cache.c is the only user besides the fuzz target.
 *
 * A store is shared by processes of several versions and may be damaged,
 * so every value is untrusted on the way in.  Each value starts with a
 * magic, a format version and a kind, and ends with a 32-bit FNV-1a sum
 * of everything before it.  Integers are little-endian, fixed width.
 *
 * Result records (an address verdict, or a fact about a whole domain):
 *
 *   0  'c' 'v'  magic            16 stored_ms  i64 (wall clock, ms)
 *   2  version u8 (1)            24 expires_ms i64
 *   3  kind u8 (enum cbv_cache_kind)
 *   4  verdict u8                32 CBV_CACHE_NSTR strings, each a u32
 *   5  flags u8 (0)                 length (with its NUL) and the bytes
 *   6  code u16                      ending in NUL
 *   8  port u16                  .. sum u32
 *  10  hosts_tried u16
 *  12  elapsed_ms u32
 *
 * Strings must be printable ASCII or '\n' (what cbv_sanitize() leaves),
 * each within its bound (cbv_cache_str_max()), the whole value within
 * CBV_CACHE_REC_MAX.  A decoded record points into the value (zero
 * copy), so it is valid as long as the value's bytes are.
 *
 * Lease values (single flight and concurrency slots) and rate buckets
 * have the same magic, version and sum around their own small bodies.
 *
 * Blobs (opaque bytes with an expiry, for state other modules share
 * across processes: TLS sessions, DNS answers):
 *
 *   0  'c' 'v' version 0x42      12 expires_ms i64
 *   4  blob kind u8 (a key letter, 'T' or 'N')
 *   5  flags u8 (0), 2 bytes 0   20 length u32 (<= CBV_CACHE_BLOB_MAX)
 *   8  reserved u32 (0)          24 the bytes .. sum u32
 *
 * What the bytes mean is the owning module's business; it validates them
 * again (a blob only says that they are whole and not expired).
 */
#ifndef CBV_CACHE_REC_H
#define CBV_CACHE_REC_H

#include <stddef.h>
#include <stdint.h>

#include "cbv_result.h"

/* Format version of every value and of the store as a whole. */
#define CBV_CACHE_FORMAT 1

/* The largest value we write or accept (a result record with four full
 * 16 KiB replies fits with room to spare). */
#define CBV_CACHE_REC_MAX (96 * 1024)

/* The largest blob (a TLS session of CBV_TLS_SESSION_BYTES_MAX with its
 * key, a DNS answer of CBV_DNS_ANSWER_CACHE_MAX with its key). */
#define CBV_CACHE_BLOB_MAX (12 * 1024)

/* Slots kept in one concurrency value (its cap is at most this). */
#define CBV_CACHE_SLOTS_MAX 256

enum cbv_cache_kind {
	CBV_CACHE_ADDRESS = 1,     /* the verdict for one address */
	CBV_CACHE_SENDER_REFUSED,  /* domain: its MX refused our MAIL FROM */
	CBV_CACHE_CATCH_ALL,       /* domain: accepts every local part */
	CBV_CACHE_UNREACHABLE,     /* domain: every host unreachable */
	CBV_CACHE_KIND_MAX = CBV_CACHE_UNREACHABLE
};

/* The strings of a result record, in their order in the value. */
enum cbv_cache_str {
	CBV_CS_REASON, CBV_CS_ECODE, CBV_CS_MESSAGE, CBV_CS_ADDRESS,
	CBV_CS_RCPT, CBV_CS_SENDER, CBV_CS_HOST, CBV_CS_IP, CBV_CS_GREETING,
	CBV_CS_HELO, CBV_CS_SENT, CBV_CS_RECV, CBV_CS_TLS,
	CBV_CACHE_NSTR
};

/* One result record; s[] are NUL-terminated ("" when absent). */
struct cbv_cache_rec {
	enum cbv_cache_kind kind;
	enum cbv_verdict verdict;
	unsigned code;        /* SMTP code, 0..999 */
	unsigned port;
	unsigned hosts_tried;
	uint32_t elapsed_ms;
	int64_t stored_ms;    /* wall clock when stored */
	int64_t expires_ms;   /* never returned at or after this time */
	const char *s[CBV_CACHE_NSTR];
};

enum cbv_cache_rec_status {
	CBV_REC_OK = 0,
	CBV_REC_EVERSION, /* well formed head, another format version */
	CBV_REC_ECORRUPT  /* anything else wrong: bad magic, bound, sum, text */
};

/* A lease: one process's claim to a flight or a concurrency slot. */
struct cbv_cache_lease {
	uint32_t pid;
	uint64_t ticket;      /* which claim of that process */
	int64_t expires_ms;
};

/* A token bucket for a rate cap: milli-tokens and when last refilled. */
struct cbv_cache_bucket {
	uint64_t mtokens;
	int64_t last_ms;
};

/* Bound of string i (bytes without the NUL). */
size_t cbv_cache_str_max(enum cbv_cache_str i);

/* Name of string i ("reason", "message", ...), for listings. */
const char *cbv_cache_str_name(enum cbv_cache_str i);

/* "address" "sender_refused" "catch_all" "unreachable" (or "?"). */
const char *cbv_cache_kind_name(enum cbv_cache_kind k);

/*
 * Encodes rec into out (size cap).  NULL strings count as "".  Returns the
 * length, or 0 if a field is out of bounds or out is too small (nothing
 * is stored then: a record is never truncated into a different answer).
 */
size_t cbv_cache_rec_encode(const struct cbv_cache_rec *rec, unsigned char *out,
                            size_t cap);

/* Decodes and validates len bytes; on success rec's strings point into data. */
enum cbv_cache_rec_status cbv_cache_rec_decode(const void *data, size_t len,
                                               struct cbv_cache_rec *rec);

/*
 * Lease lists (n <= CBV_CACHE_SLOTS_MAX entries; a flight is a list of
 * one).  Encode returns the length or 0 if out is too small; decode
 * returns the status and the count in *n.
 */
size_t cbv_cache_leases_encode(const struct cbv_cache_lease *l, size_t n,
                               unsigned char *out, size_t cap);
enum cbv_cache_rec_status cbv_cache_leases_decode(const void *data, size_t len,
                                                  struct cbv_cache_lease *l,
                                                  size_t *n);

/* Rate bucket: encode returns the length (fixed) or 0; decode a status. */
size_t cbv_cache_bucket_encode(const struct cbv_cache_bucket *b,
                               unsigned char *out, size_t cap);
enum cbv_cache_rec_status cbv_cache_bucket_decode(const void *data, size_t len,
                                                  struct cbv_cache_bucket *b);

/* A blob: kind 'T' (TLS session) or 'N' (DNS answer), data points into
 * the value once decoded. */
struct cbv_cache_blob {
	char kind;
	int64_t expires_ms;
	const unsigned char *data;
	size_t len;
};

/* 1 if kind is a blob kind ('T', 'N'). */
int cbv_cache_blob_kind_ok(char kind);

/*
 * Blob: encode returns the length or 0 (bad kind, len over
 * CBV_CACHE_BLOB_MAX, out too small); decode checks head, sum, kind (want,
 * or any blob kind when want is 0) and length.
 */
size_t cbv_cache_blob_encode(const struct cbv_cache_blob *b, unsigned char *out, size_t cap);
enum cbv_cache_rec_status cbv_cache_blob_decode(const void *data, size_t len, char want,
                                                struct cbv_cache_blob *b);

/*
 * Rewrites the sum at the end of a len-byte value (len >= 4) to match its
 * other bytes, so tests and the fuzz target can forge values that get past
 * the sum to the checks behind it.
 */
void cbv_cache_rec_reseal(unsigned char *value, size_t len);

#endif
