/*
 * fuzz_text.c - libFuzzer target for text hygiene (cbv_text.h): the
 * quoted-string reader with every flag combination and every small output
 * size, and the invariants every caller relies on:
 *   sanitize/show   only printable ASCII comes out, within n-1 bytes;
 *   escape          no control byte comes out, never more than n-1, the
 *                   measured length matches what an unbounded write gives;
 *   span            the prefix it reports passes, the next byte does not;
 *   utf8            _valid() agrees with walking _seq() by hand.
 * The first input byte picks the output size (1..64), the rest is text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BIG 8192

static void check_printable(const char *s, size_t len)
{
	if (cbv_text_span(s, len, CBV_TEXT_PRINT, NULL) != len || strlen(s) != len)
		__builtin_trap();
}

static void check_unquote(const char *s, size_t len, unsigned flags, size_t n)
{
	char out[BIG + 1];
	size_t outlen = 0, used = 0;
	enum cbv_text_unq st = cbv_text_unquote(s, len, flags, out, n, &outlen, &used);

	if (outlen >= n || used > len || out[outlen] != '\0' || outlen > used)
		__builtin_trap();
	if (st == CBV_TEXT_UNQ_OK && (used == 0 || s[used - 1] != '"'))
		__builtin_trap();
	if (st == CBV_TEXT_UNQ_OPEN && used != len)
		__builtin_trap();
	if (st == CBV_TEXT_UNQ_CTL && !(flags & CBV_TEXT_UNQ_NOCTL))
		__builtin_trap();
	if (st == CBV_TEXT_UNQ_LONG && outlen != n - 1)
		__builtin_trap();
	if ((flags & CBV_TEXT_UNQ_NOCTL) && cbv_text_span(out, outlen, CBV_TEXT_NOCTL, NULL) != outlen)
		__builtin_trap();
	/* With no backslash inside, the value is the bytes before the quote. */
	if (st == CBV_TEXT_UNQ_OK && memchr(s, '\\', used - 1) == NULL &&
	    (outlen != used - 1 || memcmp(out, s, outlen) != 0))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[BIG + 1], full[4 * BIG + 1];
	const char *s;
	size_t n, len, w, need, i, k;
	unsigned long cp;
	int valid = 1;

	if (size == 0)
		return 0;
	n = (size_t)(data[0] % 64) + 1;
	s = (const char *)data + 1;
	len = size - 1;
	if (len > BIG)
		len = BIG;

	for (unsigned flags = 0; flags < 4; flags++) {
		check_unquote(s, len, flags, n);
		check_unquote(s, len, flags, sizeof(out));
	}

	w = cbv_text_sanitize(s, len, out, n);
	if (w != (len < n - 1 ? len : n - 1))
		__builtin_trap();
	check_printable(out, w);
	w = cbv_text_sanitize(s, len, out, sizeof(out));
	check_printable(out, w);
	w = cbv_text_show(s, len, out, n);
	if (w > n - 1)
		__builtin_trap();
	check_printable(out, w);

	for (unsigned flags = 0; flags < 4; flags++) {
		need = cbv_text_escape(s, len, full, sizeof(full), flags);
		if (need < len || need != strlen(full) || need > 4 * len)
			__builtin_trap();
		if (cbv_text_span(full, need, CBV_TEXT_NOCTL, NULL) != need)
			__builtin_trap();
		if (cbv_text_escape(s, len, out, n, flags) != need || strlen(out) > n - 1 ||
		    memcmp(out, full, strlen(out)) != 0)
			__builtin_trap();
		if (cbv_text_escape(s, len, NULL, 0, flags) != need)
			__builtin_trap();
	}

	for (int cls = CBV_TEXT_NOCTL; cls <= CBV_TEXT_VISIBLE; cls++) {
		k = cbv_text_span(s, len, (enum cbv_text_class)cls, NULL);
		if (k > len || (k < len && cbv_text_span(s + k, 1, (enum cbv_text_class)cls, NULL) != 0))
			__builtin_trap();
		if (cbv_text_span(s, k, (enum cbv_text_class)cls, NULL) != k)
			__builtin_trap();
	}

	for (i = 0; i < len; i += k) {
		k = cbv_text_utf8_seq(s + i, len - i, &cp);
		if (k == 0) {
			valid = 0;
			break;
		}
		if (k > 4 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			__builtin_trap();
	}
	if (cbv_text_utf8_valid(s, len) != valid)
		__builtin_trap();
	return 0;
}
