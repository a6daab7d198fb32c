/*
 * fuzz_http.c - libFuzzer target for cbvd's metrics request parser
 * (cbv_http.h).
 *
 * The input is parsed whole and at every prefix, as bytes arriving one
 * at a time would be: a DONE must be self-consistent (a token method, a
 * target starting with '/' and no '?', HTTP/1.0 or 1.1), and once a
 * prefix is decided (DONE, BAD) every longer input decides the same, so
 * what a slow client sends cannot change the answer after the fact.
 */
#include <stdint.h>
#include <string.h>

#include "cbv_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_done(const struct cbv_http_req *rq)
{
	if (rq->method[0] == '\0' || rq->path[0] != '/' || strchr(rq->path, '?') != NULL ||
	    (rq->minor != 0 && rq->minor != 1))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct cbv_http_req first, rq;
	enum cbv_http_parse decided = CBV_HTTP_MORE, st;

	if (size > 2 * CBV_HTTP_HEAD_MAX)
		return 0;
	for (size_t n = 0; n <= size; n++) {
		st = cbv_http_parse_request(buf, n, &rq);
		if (st == CBV_HTTP_MORE && n >= CBV_HTTP_HEAD_MAX)
			__builtin_trap();
		if (st == CBV_HTTP_DONE)
			check_done(&rq);
		if (decided == CBV_HTTP_MORE) {
			decided = st;
			if (st == CBV_HTTP_DONE)
				first = rq;
		} else if (st != decided ||
		           (st == CBV_HTTP_DONE && memcmp(&first, &rq, sizeof(rq)) != 0)) {
			__builtin_trap();
		}
	}
	return 0;
}
