/*
 * check_buf.c - unit tests for cbv_buf: line splitting, CR handling,
 * line length limits, and independence from how bytes arrive.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_buf.h"

/* A byte string with its length, so rows may hold NUL bytes. */
#define S(s) s, sizeof(s) - 1

/*
 * One row: bytes received, the max_len passed to cbv_buf_getline(), and
 * what reading every line yields, written as "[line]" per line then the
 * final result: "0" (waiting for more) or "-1" (line too long).
 */
struct line_row {
	const char *in;
	size_t in_len;
	size_t max_len;
	const char *want;
	size_t want_len;
	size_t pending; /* unread bytes left when the result is 0 */
};

static const struct line_row line_rows[] = {
	{ S(""), 10, S("0"), 0 },
	{ S("\n"), 10, S("[]0"), 0 },
	{ S("\r\n"), 10, S("[]0"), 0 },
	{ S("250 ok\r\n"), 10, S("[250 ok]0"), 0 },
	{ S("250 ok\n"), 10, S("[250 ok]0"), 0 },                 /* bare LF */
	{ S("250 ok"), 10, S("0"), 6 },                           /* no LF yet */
	{ S("250 ok\r"), 10, S("0"), 7 },                         /* CR, LF to come */
	{ S("a\rb\r\n"), 10, S("[a\rb]0"), 0 },                   /* inner CR kept */
	{ S("a\r\r\n"), 10, S("[a\r]0"), 0 },                     /* one CR removed */
	{ S("a\0b\r\n"), 10, S("[a\0b]0"), 0 },                   /* NUL kept */
	{ S("x\r\ny"), 10, S("[x]0"), 1 },
	{ S("a\r\nb\nc\r\n"), 10, S("[a][b][c]0"), 0 },
	{ S("\n\n"), 10, S("[][]0"), 0 },
	/* max_len 5: exactly 5 fits; 6 is too long with or without its LF */
	{ S("12345\r\n"), 5, S("[12345]0"), 0 },
	{ S("12345\n"), 5, S("[12345]0"), 0 },
	{ S("123456\r\n"), 5, S("-1"), 0 },
	{ S("123456\n"), 5, S("-1"), 0 },
	{ S("123456"), 5, S("-1"), 0 },
	{ S("12345\r"), 5, S("0"), 6 },
	{ S("12345"), 5, S("0"), 5 },
	{ S("12345\r\r"), 5, S("-1"), 0 },                        /* CR then not LF */
	{ S("1234\r\r\n"), 5, S("[1234\r]0"), 0 },
	{ S("ab\r\n123456\r\n"), 5, S("[ab]-1"), 0 },
	{ S("ab\r\n123456"), 5, S("[ab]-1"), 0 },
	/* max_len 0: only empty lines */
	{ S("\r\n"), 0, S("[]0"), 0 },
	{ S("\r"), 0, S("0"), 1 },
	{ S("a\n"), 0, S("-1"), 0 },
};

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Reads every complete line of b into out as "[line]...", then the result. */
static void drain(struct cbv_buf *b, size_t max_len, char *out, size_t *olen,
                  int *final)
{
	const char *line;
	size_t len;
	int rc;

	while ((rc = cbv_buf_getline(b, max_len, &line, &len)) == 1) {
		ck_assert_uint_le(len, max_len);
		out[(*olen)++] = '[';
		memcpy(out + *olen, line, len);
		*olen += len;
		out[(*olen)++] = ']';
	}
	if (rc == 0)
		ck_assert_ptr_null(line);
	*final = rc;
}

static void put(struct cbv_buf *b, const char *p, size_t n)
{
	size_t avail;
	char *dst = cbv_buf_space(b, &avail);

	ck_assert_uint_ge(avail, n);
	memcpy(dst, p, n);
	cbv_buf_commit(b, n);
}

/*
 * Feeds row r in chunks of `chunk` bytes (0: all at once) and checks the
 * lines, the final result and the bytes left unread.
 */
static void run_row(const struct line_row *r, size_t chunk, int idx)
{
	struct cbv_buf b;
	char out[256];
	size_t olen = 0, off = 0, n;
	int final = 0;

	cbv_buf_init(&b);
	do {
		n = r->in_len - off;
		if (chunk > 0 && n > chunk)
			n = chunk;
		put(&b, r->in + off, n);
		off += n;
		drain(&b, r->max_len, out, &olen, &final);
	} while (final == 0 && off < r->in_len);
	out[olen++] = final == 0 ? '0' : '-';
	if (final == -1)
		out[olen++] = '1';
	ck_assert_msg(olen == r->want_len && memcmp(out, r->want, olen) == 0,
	              "row %d chunk %zu: got \"%.*s\"", idx, chunk, (int)olen, out);
	if (final == 0)
		ck_assert_uint_eq(cbv_buf_pending(&b), r->pending);
}

START_TEST(test_lines_whole)
{
	run_row(&line_rows[_i], 0, _i);
}
END_TEST

START_TEST(test_lines_bytewise)
{
	run_row(&line_rows[_i], 1, _i);
}
END_TEST

/* Every two-part split of the input: results never depend on packets. */
START_TEST(test_lines_split)
{
	const struct line_row *r = &line_rows[_i];

	for (size_t cut = 1; cut < r->in_len; cut++) {
		struct cbv_buf b;
		char out[256];
		size_t olen = 0;
		int final = 0;

		cbv_buf_init(&b);
		put(&b, r->in, cut);
		drain(&b, r->max_len, out, &olen, &final);
		if (final == 0) {
			put(&b, r->in + cut, r->in_len - cut);
			drain(&b, r->max_len, out, &olen, &final);
		}
		out[olen++] = final == 0 ? '0' : '-';
		if (final == -1)
			out[olen++] = '1';
		ck_assert_msg(olen == r->want_len && memcmp(out, r->want, olen) == 0,
		              "row %d cut %zu: got \"%.*s\"", _i, cut, (int)olen, out);
	}
}
END_TEST

/* cbv_buf_space(): how much room, after how much has been consumed. */
struct space_row {
	size_t fill;    /* bytes committed: lines of 9 bytes "12345678\n" */
	size_t take;    /* lines then read */
	size_t avail;   /* expected room reported afterwards */
};

static const struct space_row space_rows[] = {
	{ 0, 0, CBV_BUF_SIZE },
	{ 9, 0, CBV_BUF_SIZE - 9 },
	{ 9, 1, CBV_BUF_SIZE },
	{ 90, 3, CBV_BUF_SIZE - 63 },
	{ 9 * (CBV_BUF_SIZE / 9), 1, CBV_BUF_SIZE - 9 * (CBV_BUF_SIZE / 9) + 9 },
	{ 9 * (CBV_BUF_SIZE / 9), CBV_BUF_SIZE / 9, CBV_BUF_SIZE },
};

START_TEST(test_space)
{
	const struct space_row *r = &space_rows[_i];
	struct cbv_buf b;
	const char *line;
	size_t len, avail, i;
	char *p;

	cbv_buf_init(&b);
	for (i = 0; i < r->fill; i += 9)
		put(&b, "12345678\n", 9);
	ck_assert_uint_eq(cbv_buf_pending(&b), r->fill);
	for (i = 0; i < r->take; i++) {
		ck_assert_int_eq(cbv_buf_getline(&b, 100, &line, &len), 1);
		ck_assert_mem_eq(line, "12345678", 8);
		ck_assert_uint_eq(len, 8);
	}
	p = cbv_buf_space(&b, &avail);
	ck_assert_uint_eq(avail, r->avail);
	ck_assert_ptr_eq(p, b.data + CBV_BUF_SIZE - avail);
	/* What was moved to the front still reads back intact. */
	for (; i < r->fill / 9; i++) {
		ck_assert_int_eq(cbv_buf_getline(&b, 100, &line, &len), 1);
		ck_assert_mem_eq(line, "12345678", 8);
	}
	ck_assert_uint_eq(cbv_buf_pending(&b), 0);
}
END_TEST

/*
 * The limits the session uses: two maximal reply lines with CRLF fill
 * the buffer exactly and both come out; a full buffer without LF is -1
 * whatever max_len says, so a caller can never wait forever.
 */
struct full_row {
	size_t line_len;   /* content bytes per line */
	int crlf;          /* append CR LF */
	size_t count;      /* lines */
	size_t max_len;
	int want;          /* result of the first getline */
};

static const struct full_row full_rows[] = {
	{ CBV_REPLY_LINE_MAX, 1, 2, CBV_REPLY_LINE_MAX, 1 },
	{ CBV_REPLY_LINE_MAX + 1, 1, 1, CBV_REPLY_LINE_MAX, -1 },
	{ CBV_REPLY_LINE_MAX + 1, 0, 1, CBV_REPLY_LINE_MAX, -1 },
	{ CBV_REPLY_LINE_MAX, 0, 1, CBV_REPLY_LINE_MAX, 0 },
	{ CBV_BUF_SIZE, 0, 1, (size_t)-1, -1 },      /* full, no LF */
	{ CBV_BUF_SIZE - 1, 0, 1, (size_t)-1, 0 },
};

START_TEST(test_full)
{
	const struct full_row *r = &full_rows[_i];
	static char line_buf[CBV_BUF_SIZE];
	struct cbv_buf b;
	const char *line;
	size_t len, avail, k;

	memset(line_buf, 'x', sizeof(line_buf));
	cbv_buf_init(&b);
	for (k = 0; k < r->count; k++) {
		put(&b, line_buf, r->line_len);
		if (r->crlf)
			put(&b, "\r\n", 2);
	}
	ck_assert_int_eq(cbv_buf_getline(&b, r->max_len, &line, &len), r->want);
	if (r->want == 1) {
		ck_assert_uint_eq(len, r->line_len);
		(void)cbv_buf_space(&b, &avail);
		ck_assert_int_eq(cbv_buf_getline(&b, r->max_len, &line, &len), 1);
		ck_assert_uint_eq(len, r->line_len);
		ck_assert_uint_eq(cbv_buf_pending(&b), 0);
	}
	if (cbv_buf_pending(&b) == CBV_BUF_SIZE) {
		(void)cbv_buf_space(&b, &avail);
		ck_assert_uint_eq(avail, 0);
	}
}
END_TEST

static Suite *buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc;

	tc = tcase_create("lines");
	tcase_add_loop_test(tc, test_lines_whole, 0, NROWS(line_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("bytewise");
	tcase_add_loop_test(tc, test_lines_bytewise, 0, NROWS(line_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("split");
	tcase_add_loop_test(tc, test_lines_split, 0, NROWS(line_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("space");
	tcase_add_loop_test(tc, test_space, 0, NROWS(space_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("full");
	tcase_add_loop_test(tc, test_full, 0, NROWS(full_rows));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(buf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
