/*
 * fuzz_cache.c - libFuzzer target for the cache record decoders.
 *
 * The input is a value as a damaged or hostile store might hand it back.
 * Each decoder must refuse it or return something within bounds; what a
 * decoder accepts must encode back to exactly the same bytes (the format
 * is canonical, so no two values mean the same record).  Each input is
 * tried twice: as it is, and with its sum made right, so the fuzzer gets
 * past the sum to the field checks behind it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_cache_rec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

static unsigned char out[CBV_CACHE_REC_MAX];
static unsigned char sealed[CBV_CACHE_REC_MAX];
static struct cbv_cache_lease leases[CBV_CACHE_SLOTS_MAX];

static void one(const uint8_t *data, size_t size)
{
	struct cbv_cache_rec rec;
	struct cbv_cache_bucket b;
	struct cbv_cache_blob blob;
	enum cbv_cache_rec_status st;
	size_t n, m;

	st = cbv_cache_rec_decode(data, size, &rec);
	check(st == CBV_REC_OK || st == CBV_REC_EVERSION || st == CBV_REC_ECORRUPT);
	if (st == CBV_REC_OK) {
		check(size <= CBV_CACHE_REC_MAX);
		check(rec.kind >= 1 && rec.kind <= CBV_CACHE_KIND_MAX);
		check((unsigned)rec.verdict <= CBV_ERROR && rec.code <= 999);
		check(rec.expires_ms >= rec.stored_ms);
		for (int i = 0; i < CBV_CACHE_NSTR; i++) {
			size_t len = strlen(rec.s[i]);

			check(len <= cbv_cache_str_max(i));
			check((const uint8_t *)rec.s[i] >= data &&
			      (const uint8_t *)rec.s[i] + len < data + size);
			for (size_t j = 0; j < len; j++)
				check(rec.s[i][j] == '\n' || (rec.s[i][j] >= 0x20 && rec.s[i][j] < 0x7f));
		}
		n = cbv_cache_rec_encode(&rec, out, sizeof(out));
		check(n == size && memcmp(out, data, size) == 0);
	} else {
		for (int i = 0; i < CBV_CACHE_NSTR; i++)
			check(rec.s[i] == NULL);
	}

	st = cbv_cache_leases_decode(data, size, leases, &m);
	check(st == CBV_REC_OK || m == 0);
	if (st == CBV_REC_OK) {
		check(m <= CBV_CACHE_SLOTS_MAX);
		n = cbv_cache_leases_encode(leases, m, out, sizeof(out));
		check(n == size && memcmp(out, data, size) == 0);
	}

	st = cbv_cache_bucket_decode(data, size, &b);
	if (st == CBV_REC_OK) {
		n = cbv_cache_bucket_encode(&b, out, sizeof(out));
		check(n == size && memcmp(out, data, size) == 0);
	}

	st = cbv_cache_blob_decode(data, size, 0, &blob);
	if (st == CBV_REC_OK) {
		check(cbv_cache_blob_kind_ok(blob.kind) && blob.len <= CBV_CACHE_BLOB_MAX);
		check(blob.data >= data && blob.data + blob.len <= data + size);
		n = cbv_cache_blob_encode(&blob, out, sizeof(out));
		check(n == size && memcmp(out, data, size) == 0);
	} else {
		check(blob.data == NULL && blob.len == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one(data, size);
	if (size >= 4 && size <= sizeof(sealed)) {
		memcpy(sealed, data, size);
		cbv_cache_rec_reseal(sealed, size);
		one(sealed, size);
	}
	return 0;
}
