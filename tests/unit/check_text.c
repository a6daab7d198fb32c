/*
 * check_text.c - text hygiene (cbv_text.h), table-driven: every byte
 * 0..255 through each function, UTF-8 corner cases (RFC 3629), cutting
 * at every buffer size, NUL bytes inside the text, quoted strings.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_text.h"

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The 95 printable ASCII characters, written out rather than computed. */
static const char printable[] = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				"[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

static int is_printable(int b)
{
	return b != 0 && memchr(printable, b, sizeof(printable) - 1) != NULL;
}

/* ---- every byte ---- */

START_TEST(byte_classes)
{
	unsigned char b = (unsigned char)_i;
	char in[1] = { (char)b }, out[8], want[8];
	int ctl = b <= 0x1f || b == 0x7f, print = is_printable(b);
	unsigned long cp = 0;

	ck_assert_int_eq(sizeof(printable) - 1, 95);
	ck_assert_int_eq(cbv_text_is_ctl(b), ctl);
	ck_assert_uint_eq(cbv_text_span(in, 1, CBV_TEXT_NOCTL, NULL), !ctl);
	ck_assert_uint_eq(cbv_text_span(in, 1, CBV_TEXT_PRINT, NULL), print);
	ck_assert_uint_eq(cbv_text_span(in, 1, CBV_TEXT_VISIBLE, NULL), print && b != ' ');
	/* Neither class holds an 8-bit byte except NOCTL. */
	if (b >= 0x80)
		ck_assert(!ctl && !print);

	ck_assert_uint_eq(cbv_text_sanitize(in, 1, out, sizeof(out)), 1);
	ck_assert_int_eq(out[0], print ? (char)b : '?');
	ck_assert_int_eq(out[1], '\0');

	if (ctl)
		snprintf(want, sizeof(want), "\\x%02x", b);
	else
		snprintf(want, sizeof(want), "%c", b);
	ck_assert_uint_eq(cbv_text_escape(in, 1, out, sizeof(out), 0), strlen(want));
	ck_assert_mem_eq(out, want, strlen(want) + 1);

	/* A lone byte is UTF-8 only if it is ASCII. */
	ck_assert_uint_eq(cbv_text_utf8_seq(in, 1, &cp), b < 0x80);
	if (b < 0x80)
		ck_assert_uint_eq(cp, b);
	ck_assert_int_eq(cbv_text_utf8_valid(in, 1), b < 0x80);
}
END_TEST

/* All 256 bytes in one string: sanitize keeps exactly the 95. */
START_TEST(all_bytes_at_once)
{
	char in[256], out[257];
	size_t kept = 0;

	for (int b = 0; b < 256; b++)
		in[b] = (char)b;
	ck_assert_uint_eq(cbv_text_sanitize(in, 256, out, sizeof(out)), 256);
	for (int b = 0; b < 256; b++) {
		ck_assert_int_eq(out[b], is_printable(b) ? (char)b : '?');
		kept += out[b] != '?' || b == '?';
	}
	ck_assert_uint_eq(kept, 95);
	ck_assert_uint_eq(cbv_text_span(in, 256, CBV_TEXT_NOCTL, NULL), 0);
	ck_assert_uint_eq(cbv_text_span(in + 0x20, 256 - 0x20, CBV_TEXT_PRINT, NULL), 95);
	ck_assert_uint_eq(cbv_text_span(in + 0x20, 256 - 0x20, CBV_TEXT_NOCTL, NULL), 95);
	ck_assert_uint_eq(cbv_text_span(in + 0x20, 256 - 0x20, CBV_TEXT_VISIBLE, NULL), 0);
	/* 32 + 1 controls as \xHH, the rest one byte each. */
	ck_assert_uint_eq(cbv_text_escape(in, 256, NULL, 0, 0), 33 * 4 + 223);
}
END_TEST

/* ---- sanitize and show ---- */

struct cut_row {
	const char *in;
	size_t len; /* bytes of in, NULs included */
	size_t n;   /* out size */
	const char *want;
	size_t ret;
};

static const struct cut_row sanitize_rows[] = {
	{ "250 OK", 6, 64, "250 OK", 6 },
	{ "", 0, 64, "", 0 },
	{ "abc", 3, 0, NULL, 0 }, /* nothing written at all */
	{ "abc", 3, 1, "", 0 },
	{ "abc", 3, 3, "ab", 2 },
	{ "abc", 3, 4, "abc", 3 },
	{ "a\0b", 3, 8, "a?b", 3 },    /* NUL inside is a byte like any other */
	{ "a\r\nb", 4, 8, "a??b", 4 }, /* CRLF smuggled into a log line */
	{ "\x1b[31mred", 8, 16, "?[31mred", 8 },
	{ "caf\xc3\xa9", 5, 16, "caf??", 5 }, /* UTF-8 too: one '?' per byte */
	{ "tab\there", 8, 16, "tab?here", 8 },
	{ "del\x7f", 4, 16, "del?", 4 },
	{ "~\x80\xff", 3, 16, "~??", 3 },
};

START_TEST(sanitize_table)
{
	const struct cut_row *r = &sanitize_rows[_i];
	char out[64];

	memset(out, 'Z', sizeof(out));
	ck_assert_uint_eq(cbv_text_sanitize(r->in, r->len, out, r->n), r->ret);
	if (r->want == NULL)
		ck_assert_int_eq(out[0], 'Z');
	else
		ck_assert_str_eq(out, r->want);
	/* The old name is the same function. */
	memset(out, 'Z', sizeof(out));
	ck_assert_uint_eq(cbv_sanitize(r->in, r->len, out, r->n), r->ret);
	if (r->want != NULL)
		ck_assert_str_eq(out, r->want);
}
END_TEST

/* In place: same offsets, so out may be the input. */
START_TEST(sanitize_in_place)
{
	char s[] = "sid\x80\xfe-1\x01";

	ck_assert_uint_eq(cbv_text_sanitize(s, strlen(s), s, sizeof(s)), 8);
	ck_assert_str_eq(s, "sid\?\?-1?");
}
END_TEST

static const struct cut_row show_rows[] = {
	{ "short", 5, 16, "short", 5 },
	{ "exactly15bytes!", 15, 16, "exactly15bytes!", 15 },
	{ "sixteen bytes!!!", 16, 16, "sixteen byte...", 15 },
	{ "bad\x01value that is long", 21, 12, "bad?valu...", 11 },
	{ "abcdef", 6, 4, "...", 3 },
	{ "abcdef", 6, 3, "ab", 2 }, /* no room for the marker: cut plainly */
	{ "abcdef", 6, 1, "", 0 },
	{ "a\0bcdefgh", 9, 8, "a?bc...", 7 },
};

START_TEST(show_table)
{
	const struct cut_row *r = &show_rows[_i];
	char out[64];

	ck_assert_uint_eq(cbv_text_show(r->in, r->len, out, r->n), r->ret);
	ck_assert_str_eq(out, r->want);
	ck_assert_uint_le(strlen(out), r->n - 1);
}
END_TEST

/* ---- escape ---- */

struct esc_row {
	const char *in;
	size_t len;
	unsigned flags;
	size_t n;
	const char *want;
	size_t need;
};

static const struct esc_row esc_rows[] = {
	{ "plain text", 10, 0, 64, "plain text", 10 },
	{ "a\r\nb", 4, 0, 64, "a\\x0d\\x0ab", 10 },
	{ "a\r\nb", 4, CBV_TEXT_ESC_NL, 64, "a\\x0d\\nb", 8 },
	{ "say \"hi\" \\o/", 12, 0, 64, "say \"hi\" \\o/", 12 },
	{ "say \"hi\" \\o/", 12, CBV_TEXT_ESC_QUOTE, 64, "say \\\"hi\\\" \\\\o/", 15 },
	{ "x\0y", 3, 0, 64, "x\\x00y", 6 },
	{ "\x7f\x1f", 2, 0, 64, "\\x7f\\x1f", 8 },
	{ "caf\xc3\xa9", 5, 0, 64, "caf\xc3\xa9", 5 }, /* 8-bit bytes as they are */
	/* Cutting: an escape is written whole or not at all, and nothing
	 * after a piece that did not fit (no holes). */
	{ "ab\001cd", 5, 0, 4, "ab", 8 },
	{ "ab\001cd", 5, 0, 6, "ab", 8 },
	{ "ab\001cd", 5, 0, 7, "ab\\x01", 8 },
	{ "ab\001cd", 5, 0, 9, "ab\\x01cd", 8 },
	{ "\"q", 2, CBV_TEXT_ESC_QUOTE, 2, "", 3 },
	{ "abc", 3, 0, 1, "", 3 },
	{ "abc", 3, 0, 0, NULL, 3 }, /* measure only */
	{ "", 0, 0, 64, "", 0 },
};

START_TEST(escape_table)
{
	const struct esc_row *r = &esc_rows[_i];
	char out[64];

	memset(out, 'Z', sizeof(out));
	ck_assert_uint_eq(cbv_text_escape(r->in, r->len, r->n > 0 ? out : NULL, r->n, r->flags),
	                  r->need);
	if (r->want != NULL)
		ck_assert_str_eq(out, r->want);
	else
		ck_assert_int_eq(out[0], 'Z');
}
END_TEST

/* Every buffer size: the output is the longest run of whole pieces that
 * fits, and the measured length never changes. */
START_TEST(escape_every_size)
{
	static const char in[] = "A\001\"\\\n\177z\xff";
	/* where each piece of the escaped text ends */
	static const size_t ends[] = { 0, 1, 5, 7, 9, 13, 17, 18, 19 };
	char full[64], out[64];
	size_t need = cbv_text_escape(in, sizeof(in) - 1, full, sizeof(full), CBV_TEXT_ESC_QUOTE);

	ck_assert_str_eq(full, "A\\x01\\\"\\\\\\x0a\\x7fz\xff");
	ck_assert_uint_eq(need, 19);
	for (size_t n = 1; n <= need + 1; n++) {
		size_t want = 0;

		for (size_t k = 0; k < sizeof(ends) / sizeof(ends[0]); k++)
			if (ends[k] <= n - 1)
				want = ends[k];
		ck_assert_uint_eq(cbv_text_escape(in, sizeof(in) - 1, out, n, CBV_TEXT_ESC_QUOTE), need);
		ck_assert_uint_eq(strlen(out), want);
		ck_assert_mem_eq(out, full, want);
	}
}
END_TEST

/* ---- span ---- */

struct span_row {
	const char *in;
	size_t len;
	enum cbv_text_class cls;
	const char *allow;
	size_t want;
};

static const struct span_row span_rows[] = {
	{ "VRFY \"a@b\"", 10, CBV_TEXT_NOCTL, NULL, 10 },
	{ "MAIL\r\nRCPT", 10, CBV_TEXT_NOCTL, NULL, 4 },
	{ "a\tb", 3, CBV_TEXT_NOCTL, NULL, 1 },
	{ "a\tb", 3, CBV_TEXT_NOCTL, "\t", 3 },
	{ "a\tb\rc", 5, CBV_TEXT_NOCTL, "\t", 3 },
	{ "a\0b", 3, CBV_TEXT_NOCTL, "\t", 1 }, /* NUL is never allowed */
	{ "a\0b", 3, CBV_TEXT_NOCTL, "", 1 },
	{ "h\xc3\xa9", 3, CBV_TEXT_NOCTL, NULL, 3 },
	{ "h\xc3\xa9", 3, CBV_TEXT_PRINT, NULL, 1 },
	{ "line\nline", 9, CBV_TEXT_PRINT, "\n", 9 },
	{ "line\r\nline", 10, CBV_TEXT_PRINT, "\n", 4 },
	{ "inet://127.0.0.1:25", 19, CBV_TEXT_VISIBLE, NULL, 19 },
	{ "unix:///a b", 11, CBV_TEXT_VISIBLE, NULL, 9 },
	{ "sid-1\x7f", 6, CBV_TEXT_VISIBLE, NULL, 5 },
	{ "", 0, CBV_TEXT_VISIBLE, NULL, 0 },
	{ "abc", 0, CBV_TEXT_PRINT, NULL, 0 }, /* reads no byte beyond len */
};

START_TEST(span_table)
{
	const struct span_row *r = &span_rows[_i];

	ck_assert_uint_eq(cbv_text_span(r->in, r->len, r->cls, r->allow), r->want);
}
END_TEST

/* ---- UTF-8 ---- */

struct utf8_row {
	const char *in;
	size_t len;
	size_t seq;       /* cbv_text_utf8_seq() of the first character */
	unsigned long cp; /* when seq > 0 */
	int valid;        /* cbv_text_utf8_valid() of all len bytes */
};

static const struct utf8_row utf8_rows[] = {
	{ "A", 1, 1, 0x41, 1 },
	{ "\0", 1, 1, 0, 1 }, /* NUL is ASCII: callers refuse it as a control */
	{ "", 0, 0, 0, 1 },
	{ "\xc2\x80", 2, 2, 0x80, 1 },
	{ "\xc3\xa9t\xc3\xa9", 5, 2, 0xe9, 1 },
	{ "\xdf\xbf", 2, 2, 0x7ff, 1 },
	{ "\xe0\xa0\x80", 3, 3, 0x800, 1 },
	{ "\xe2\x82\xac", 3, 3, 0x20ac, 1 },
	{ "\xef\xbf\xbf", 3, 3, 0xffff, 1 },
	{ "\xf0\x90\x80\x80", 4, 4, 0x10000, 1 },
	{ "\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff, 1 },
	/* overlong forms (RFC 3629 10) */
	{ "\xc0\xaf", 2, 0, 0, 0 },
	{ "\xc1\xbf", 2, 0, 0, 0 },
	{ "\xe0\x80\xaf", 3, 0, 0, 0 },
	{ "\xe0\x9f\xbf", 3, 0, 0, 0 },
	{ "\xf0\x80\x80\xaf", 4, 0, 0, 0 },
	{ "\xf0\x8f\xbf\xbf", 4, 0, 0, 0 },
	/* surrogates, beyond U+10FFFF, bytes never used */
	{ "\xed\xa0\x80", 3, 0, 0, 0 },
	{ "\xed\xbf\xbf", 3, 0, 0, 0 },
	{ "\xed\x9f\xbf", 3, 3, 0xd7ff, 1 },
	{ "\xf4\x90\x80\x80", 4, 0, 0, 0 },
	{ "\xf5\x80\x80\x80", 4, 0, 0, 0 },
	{ "\xff", 1, 0, 0, 0 },
	{ "\xfe", 1, 0, 0, 0 },
	/* stray continuation, truncated sequences (cut by len, or by a NUL) */
	{ "\x80", 1, 0, 0, 0 },
	{ "a\xbf", 2, 1, 'a', 0 },
	{ "\xc3", 1, 0, 0, 0 },
	{ "\xc3\xa9", 1, 0, 0, 0 },
	{ "\xe2\x82", 2, 0, 0, 0 },
	{ "\xf0\x90\x80", 3, 0, 0, 0 },
	{ "\xc3\0", 2, 0, 0, 0 },
	{ "\xe2\x82\x41", 3, 0, 0, 0 },
	{ "ok\xc3\xa9\xc3", 5, 1, 'o', 0 },
};

START_TEST(utf8_table)
{
	const struct utf8_row *r = &utf8_rows[_i];
	unsigned long cp = 0xdeadbeef;

	ck_assert_uint_eq(cbv_text_utf8_seq(r->in, r->len, &cp), r->seq);
	if (r->seq > 0)
		ck_assert_uint_eq(cp, r->cp);
	ck_assert_int_eq(cbv_text_utf8_valid(r->in, r->len), r->valid);
}
END_TEST

/* Every 2-byte pair: well-formed exactly when lead C2..DF, trail 80..BF. */
START_TEST(utf8_all_pairs)
{
	for (int a = 0x80; a < 256; a++)
		for (int b = 0; b < 256; b++) {
			char in[2] = { (char)a, (char)b };
			int want = a >= 0xc2 && a <= 0xdf && b >= 0x80 && b <= 0xbf;

			ck_assert_int_eq(cbv_text_utf8_valid(in, 2), want);
		}
}
END_TEST

/* ---- quoted strings ---- */

struct unq_row {
	const char *in; /* after the opening quote */
	unsigned flags;
	size_t n;
	enum cbv_text_unq st;
	const char *want;
	size_t used;
};

#define ANY CBV_TEXT_UNQ_ANYESC
#define NOCTL CBV_TEXT_UNQ_NOCTL

static const struct unq_row unq_rows[] = {
	{ "abc\" rest", 0, 64, CBV_TEXT_UNQ_OK, "abc", 4 },
	{ "\"", 0, 64, CBV_TEXT_UNQ_OK, "", 1 },
	{ "a\\\"b\\\\c\"", 0, 64, CBV_TEXT_UNQ_OK, "a\"b\\c", 8 },
	/* without ANYESC other escapes stay as written (regexes: "\.") */
	{ "^a\\.b$\"", 0, 64, CBV_TEXT_UNQ_OK, "^a\\.b$", 7 },
	{ "^a\\.b$\"", ANY, 64, CBV_TEXT_UNQ_OK, "^a.b$", 7 },
	{ "a\\nb\"", ANY, 64, CBV_TEXT_UNQ_OK, "anb", 5 },
	{ "abc", 0, 64, CBV_TEXT_UNQ_OPEN, "abc", 3 },
	{ "", 0, 64, CBV_TEXT_UNQ_OPEN, "", 0 },
	{ "abc\\\"", 0, 64, CBV_TEXT_UNQ_OPEN, "abc\"", 5 },
	{ "abc\\", 0, 64, CBV_TEXT_UNQ_OPEN, "abc\\", 4 },
	{ "abc\\", ANY, 64, CBV_TEXT_UNQ_OPEN, "abc", 4 },
	{ "a\rb\"", 0, 64, CBV_TEXT_UNQ_OK, "a\rb", 4 },
	{ "a\rb\"", NOCTL, 64, CBV_TEXT_UNQ_CTL, "a", 2 },
	{ "a\\\rb\"", ANY | NOCTL, 64, CBV_TEXT_UNQ_CTL, "a", 3 }, /* escaped or not */
	{ "a\x7f\"", ANY | NOCTL, 64, CBV_TEXT_UNQ_CTL, "a", 2 },
	{ "caf\xc3\xa9\"", ANY | NOCTL, 64, CBV_TEXT_UNQ_OK, "caf\xc3\xa9", 6 },
	/* bounds: n-1 bytes fit, one more does not */
	{ "abcd\"", 0, 5, CBV_TEXT_UNQ_OK, "abcd", 5 },
	{ "abcde\"", 0, 5, CBV_TEXT_UNQ_LONG, "abcd", 5 },
	{ "ab\\\"cd\"", ANY, 5, CBV_TEXT_UNQ_LONG, "ab\"c", 6 },
	{ "ab\\\"c\"", ANY, 5, CBV_TEXT_UNQ_OK, "ab\"c", 6 },
	{ "\"", 0, 1, CBV_TEXT_UNQ_OK, "", 1 },
	{ "x\"", 0, 1, CBV_TEXT_UNQ_LONG, "", 1 },
	/* the first fault in reading order wins */
	{ "abcde\r\"", NOCTL, 5, CBV_TEXT_UNQ_LONG, "abcd", 5 },
	{ "ab\rcdef\"", NOCTL, 5, CBV_TEXT_UNQ_CTL, "ab", 3 },
};

START_TEST(unquote_table)
{
	const struct unq_row *r = &unq_rows[_i];
	char out[64];
	size_t outlen = 99, used = 99;

	ck_assert_int_eq(cbv_text_unquote(r->in, strlen(r->in), r->flags, out, r->n, &outlen, &used),
	                 r->st);
	ck_assert_str_eq(out, r->want);
	ck_assert_uint_eq(outlen, strlen(r->want));
	ck_assert_uint_eq(used, r->used);
}
END_TEST

/* A NUL inside the bytes is a value byte, and len bounds the read. */
START_TEST(unquote_nul_and_len)
{
	char out[16];
	size_t outlen, used;

	ck_assert_int_eq(cbv_text_unquote("a\0b\"", 4, 0, out, sizeof(out), &outlen, &used),
	                 CBV_TEXT_UNQ_OK);
	ck_assert_uint_eq(outlen, 3);
	ck_assert_mem_eq(out, "a\0b", 4);
	ck_assert_uint_eq(used, 4);
	ck_assert_int_eq(cbv_text_unquote("a\0b\"", 4, NOCTL, out, sizeof(out), &outlen, &used),
	                 CBV_TEXT_UNQ_CTL);
	/* the closing quote lies beyond len: not seen */
	ck_assert_int_eq(cbv_text_unquote("ab\"", 2, 0, out, sizeof(out), &outlen, &used),
	                 CBV_TEXT_UNQ_OPEN);
	ck_assert_uint_eq(used, 2);
}
END_TEST

static Suite *text_suite(void)
{
	Suite *s = suite_create("text");
	TCase *tc;

	tc = tcase_create("bytes");
	tcase_add_loop_test(tc, byte_classes, 0, 256);
	tcase_add_test(tc, all_bytes_at_once);
	suite_add_tcase(s, tc);
	tc = tcase_create("sanitize");
	tcase_add_loop_test(tc, sanitize_table, 0, NROWS(sanitize_rows));
	tcase_add_test(tc, sanitize_in_place);
	suite_add_tcase(s, tc);
	tc = tcase_create("show");
	tcase_add_loop_test(tc, show_table, 0, NROWS(show_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("escape");
	tcase_add_loop_test(tc, escape_table, 0, NROWS(esc_rows));
	tcase_add_test(tc, escape_every_size);
	suite_add_tcase(s, tc);
	tc = tcase_create("span");
	tcase_add_loop_test(tc, span_table, 0, NROWS(span_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("utf8");
	tcase_add_loop_test(tc, utf8_table, 0, NROWS(utf8_rows));
	tcase_add_test(tc, utf8_all_pairs);
	suite_add_tcase(s, tc);
	tc = tcase_create("unquote");
	tcase_add_loop_test(tc, unquote_table, 0, NROWS(unq_rows));
	tcase_add_test(tc, unquote_nul_and_len);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(text_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
