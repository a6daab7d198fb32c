/*
 * check_reply.c - unit tests for cbv_reply: reply syntax (RFC 5321 4.2),
 * enhanced status codes (RFC 3463), our bounds, sanitizing, truncation.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_reply.h"

/* A byte string with its length, so rows may hold NUL bytes. */
#define S(s) s, sizeof(s) - 1
#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* used == ALL: the whole input is consumed. */
#define ALL ((size_t)-1)

struct parse_row {
	const char *in;
	size_t in_len;
	enum cbv_status st;
	int code;
	const char *ecode;
	unsigned nlines;
	const char *text; /* on success */
	size_t used;
	const char *msg;  /* on failure: substring of err.msg */
};

static const struct parse_row parse_rows[] = {
	/* shape of a reply */
	{ S("250 OK\r\n"), CBV_OK, 250, "", 1, "250 OK", ALL, NULL },
	{ S("250\r\n"), CBV_OK, 250, "", 1, "250", ALL, NULL },
	{ S("250 \r\n"), CBV_OK, 250, "", 1, "250 ", ALL, NULL },
	{ S("250 OK\n"), CBV_OK, 250, "", 1, "250 OK", ALL, NULL },
	{ S("220 mx.example ESMTP\r\n"), CBV_OK, 220, "", 1, "220 mx.example ESMTP", ALL, NULL },
	{ S("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"), CBV_OK, 250, "", 3,
	  "250-mx.example\n250-PIPELINING\n250 SIZE 1000", ALL, NULL },
	{ S("250-\r\n250\r\n"), CBV_OK, 250, "", 2, "250-\n250", ALL, NULL },
	{ S("200 x\r\n"), CBV_OK, 200, "", 1, "200 x", ALL, NULL },
	{ S("599 x\r\n"), CBV_OK, 599, "", 1, "599 x", ALL, NULL },
	{ S("354 go ahead\r\n"), CBV_OK, 354, "", 1, "354 go ahead", ALL, NULL },
	/* trailing bytes are left for the caller (pipelining or smuggling) */
	{ S("250 OK\r\n220 next\r\n"), CBV_OK, 250, "", 1, "250 OK", 8, NULL },
	{ S("250 OK\r\nxyz"), CBV_OK, 250, "", 1, "250 OK", 8, NULL },
	{ S("250-a\r\n250 b\r\n250 c\r\n"), CBV_OK, 250, "", 2, "250-a\n250 b", 14, NULL },
	/* bad codes and separators */
	{ S("150 x\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("650 x\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("050 x\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("25\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("250x\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("2500 x\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("250\tOK\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("2a0 x\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("25a x\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S(" 250 x\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("250-a\r\nxyz\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "bad reply code" },
	{ S("250-a\r\n251 b\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "code changed" },
	{ S("550-a\r\n250 b\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "code changed" },
	/* incomplete */
	{ S(""), CBV_EPROTO, 0, "", 0, NULL, 0, "incomplete reply" },
	{ S("250 OK"), CBV_EPROTO, 0, "", 0, NULL, 0, "incomplete reply" },
	{ S("250 OK\r"), CBV_EPROTO, 0, "", 0, NULL, 0, "incomplete reply" },
	{ S("250-a\r\n"), CBV_EPROTO, 0, "", 0, NULL, 0, "incomplete reply" },
	{ S("250-a\r\n250-b\r\n250 c"), CBV_EPROTO, 0, "", 0, NULL, 0, "incomplete reply" },
	/* enhanced status codes: class must be 2, 4 or 5 and match */
	{ S("550 5.1.1 User unknown\r\n"), CBV_OK, 550, "5.1.1", 1, "550 5.1.1 User unknown", ALL, NULL },
	{ S("550 4.1.1 x\r\n"), CBV_OK, 550, "", 1, "550 4.1.1 x", ALL, NULL },
	{ S("250 2.0.0\r\n"), CBV_OK, 250, "2.0.0", 1, "250 2.0.0", ALL, NULL },
	{ S("250 2.1.5 Ok\r\n"), CBV_OK, 250, "2.1.5", 1, "250 2.1.5 Ok", ALL, NULL },
	{ S("451-4.7.1 grey\r\n451 4.7.1 grey\r\n"), CBV_OK, 451, "4.7.1", 2,
	  "451-4.7.1 grey\n451 4.7.1 grey", ALL, NULL },
	{ S("550-first\r\n550 5.1.1 second\r\n"), CBV_OK, 550, "", 2,
	  "550-first\n550 5.1.1 second", ALL, NULL },
	{ S("554 5.7.1\r\n"), CBV_OK, 554, "5.7.1", 1, "554 5.7.1", ALL, NULL },
	{ S("550 5.100.999 x\r\n"), CBV_OK, 550, "5.100.999", 1, "550 5.100.999 x", ALL, NULL },
	{ S("550 5.1.1234 x\r\n"), CBV_OK, 550, "", 1, "550 5.1.1234 x", ALL, NULL },
	{ S("550 5.1234.1 x\r\n"), CBV_OK, 550, "", 1, "550 5.1234.1 x", ALL, NULL },
	{ S("550 55.1.1 x\r\n"), CBV_OK, 550, "", 1, "550 55.1.1 x", ALL, NULL },
	{ S("550 5.1.1x\r\n"), CBV_OK, 550, "", 1, "550 5.1.1x", ALL, NULL },
	{ S("550 5.1.1,\r\n"), CBV_OK, 550, "", 1, "550 5.1.1,", ALL, NULL },
	{ S("550 5.1. x\r\n"), CBV_OK, 550, "", 1, "550 5.1. x", ALL, NULL },
	{ S("550 5..1 x\r\n"), CBV_OK, 550, "", 1, "550 5..1 x", ALL, NULL },
	{ S("550 5.1\r\n"), CBV_OK, 550, "", 1, "550 5.1", ALL, NULL },
	{ S("550 5.\r\n"), CBV_OK, 550, "", 1, "550 5.", ALL, NULL },
	{ S("550  5.1.1 x\r\n"), CBV_OK, 550, "", 1, "550  5.1.1 x", ALL, NULL },
	{ S("550 x 5.1.1\r\n"), CBV_OK, 550, "", 1, "550 x 5.1.1", ALL, NULL },
	{ S("354 3.0.0 go\r\n"), CBV_OK, 354, "", 1, "354 3.0.0 go", ALL, NULL },
	{ S("250-2.0.0 hi\r\n250 ok\r\n"), CBV_OK, 250, "2.0.0", 2, "250-2.0.0 hi\n250 ok", ALL, NULL },
	/* peer text is never trusted: controls and 8-bit bytes become '?' */
	{ S("250 a\tb\x7f\x80\xff\r\n"), CBV_OK, 250, "", 1, "250 a?b???", ALL, NULL },
	{ S("250 a\0b\r\n"), CBV_OK, 250, "", 1, "250 a?b", ALL, NULL },
	{ S("250 a\rb\r\n"), CBV_OK, 250, "", 1, "250 a?b", ALL, NULL },
	{ S("250 OK\r\r\n"), CBV_OK, 250, "", 1, "250 OK?", ALL, NULL },
	{ S("250 \x1b[31mred\r\n"), CBV_OK, 250, "", 1, "250 ?[31mred", ALL, NULL },
	{ S("550 5.1.1 \xc3\xbc\r\n"), CBV_OK, 550, "5.1.1", 1, "550 5.1.1 ??", ALL, NULL },
};

START_TEST(test_parse)
{
	const struct parse_row *row = &parse_rows[_i];
	struct cbv_reply *r = calloc(1, sizeof(*r));
	struct cbv_err err;
	size_t used = 12345;
	enum cbv_status st;

	ck_assert_ptr_nonnull(r);
	cbv_err_clear(&err);
	st = cbv_reply_parse(row->in, row->in_len, r, &used, &err);
	ck_assert_msg(st == row->st, "row %d: status %s (%s)", _i, cbv_strstatus(st),
	              err.msg);
	if (st == CBV_OK) {
		ck_assert_int_eq(r->complete, 1);
		ck_assert_int_eq(r->code, row->code);
		ck_assert_str_eq(r->ecode, row->ecode);
		ck_assert_uint_eq(r->nlines, row->nlines);
		ck_assert_str_eq(r->text, row->text);
		ck_assert_uint_eq(r->len, strlen(row->text));
		ck_assert_uint_eq(used, row->used == ALL ? row->in_len : row->used);
	} else {
		ck_assert_ptr_nonnull(strstr(err.msg, row->msg));
		ck_assert_int_eq(err.code, row->st);
		ck_assert_uint_eq(used, 0);
		/* no half-built reply on failure */
		ck_assert_int_eq(r->complete, 0);
		ck_assert_uint_eq(r->nlines, 0);
		ck_assert_uint_eq(r->len, 0);
	}
	cbv_reply_clear(r);
	free(r);
}
END_TEST

/* Feeds n lines of len bytes each ("250-xxx", last "250 xxx"). */
static enum cbv_status feed_n(struct cbv_reply *r, unsigned n, size_t len,
                              struct cbv_err *err)
{
	static char line[CBV_REPLY_LINE_MAX + 16];
	enum cbv_status st = CBV_OK;

	ck_assert_uint_le(len, sizeof(line));
	ck_assert_uint_ge(len, 3);
	memset(line, 'x', len);
	memcpy(line, "250", 3);
	cbv_reply_reset(r);
	for (unsigned k = 0; k < n && st == CBV_OK; k++) {
		if (len > 3)
			line[3] = k + 1 == n ? ' ' : '-';
		st = cbv_reply_feed(r, line, len, err);
	}
	return st;
}

/* RFC 5321 sets no line count; we stop at CBV_REPLY_LINES_MAX. */
struct count_row {
	unsigned nlines;
	enum cbv_status st;
};

static const struct count_row count_rows[] = {
	{ 1, CBV_OK },
	{ 2, CBV_OK },
	{ CBV_REPLY_LINES_MAX - 1, CBV_OK },
	{ CBV_REPLY_LINES_MAX, CBV_OK },
	{ CBV_REPLY_LINES_MAX + 1, CBV_EPROTO },
	{ 1000, CBV_EPROTO },
};

START_TEST(test_line_count)
{
	const struct count_row *row = &count_rows[_i];
	struct cbv_reply *r = calloc(1, sizeof(*r));
	struct cbv_err err;
	enum cbv_status st;

	ck_assert_ptr_nonnull(r);
	st = feed_n(r, row->nlines, 8, &err);
	ck_assert_int_eq(st, row->st);
	if (st == CBV_OK) {
		ck_assert_int_eq(r->complete, 1);
		ck_assert_uint_eq(r->nlines, row->nlines);
	} else {
		ck_assert_ptr_nonnull(strstr(err.msg, "more than 64 lines"));
		ck_assert_uint_eq(r->nlines, CBV_REPLY_LINES_MAX);
		ck_assert_int_eq(r->complete, 0);
	}
	cbv_reply_clear(r);
	free(r);
}
END_TEST

/* RFC 5321 4.5.3.1.5 says 512 octets; we accept up to CBV_REPLY_LINE_MAX. */
struct len_row {
	size_t len;
	enum cbv_status st;
};

static const struct len_row len_rows[] = {
	{ 3, CBV_OK },
	{ 512, CBV_OK },
	{ CBV_REPLY_LINE_MAX - 1, CBV_OK },
	{ CBV_REPLY_LINE_MAX, CBV_OK },
	{ CBV_REPLY_LINE_MAX + 1, CBV_EPROTO },
	{ CBV_REPLY_LINE_MAX + 10, CBV_EPROTO },
};

START_TEST(test_line_len)
{
	const struct len_row *row = &len_rows[_i];
	struct cbv_reply *r = calloc(1, sizeof(*r));
	char *buf = malloc(row->len + 2);
	struct cbv_err err;
	size_t used;

	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_nonnull(buf);
	/* line by line */
	ck_assert_int_eq(feed_n(r, 1, row->len, &err), row->st);
	if (row->st != CBV_OK)
		ck_assert_ptr_nonnull(strstr(err.msg, "reply line too long"));
	else
		ck_assert_uint_eq(r->len, row->len);
	/* whole reply, with and without its CR LF */
	memset(buf, 'x', row->len);
	memcpy(buf, "250 ", 4 < row->len ? 4 : row->len);
	memcpy(buf + row->len, "\r\n", 2);
	ck_assert_int_eq(cbv_reply_parse(buf, row->len + 2, r, &used, &err), row->st);
	if (row->st != CBV_OK)
		ck_assert_ptr_nonnull(strstr(err.msg, "reply line too long"));
	else
		ck_assert_uint_eq(used, row->len + 2);
	ck_assert_int_eq(cbv_reply_parse(buf, row->len, r, &used, &err), CBV_EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, row->st == CBV_OK ? "incomplete reply" :
	                                                         "reply line too long"));
	free(buf);
	cbv_reply_clear(r);
	free(r);
}
END_TEST

/* Text kept: at most CBV_REPLY_KEEP_MAX - 1 bytes; more is CBV_EPROTO
 * (issue 11.11: it was cut mid-line and the verdict kept). */
struct keep_row {
	unsigned nlines;
	size_t len;
	int truncated;
	size_t kept;
};

static const struct keep_row keep_rows[] = {
	{ 1, CBV_REPLY_LINE_MAX, 0, CBV_REPLY_LINE_MAX },
	{ 7, CBV_REPLY_LINE_MAX, 0, 7 * CBV_REPLY_LINE_MAX + 6 },
	/* 8 * 2047 + 7 separators = 16383: exactly fits */
	{ 8, 2047, 0, CBV_REPLY_KEEP_MAX - 1 },
	{ 8, 2048, 1, CBV_REPLY_KEEP_MAX - 1 },
	{ 9, 2046, 1, CBV_REPLY_KEEP_MAX - 1 },
	{ CBV_REPLY_LINES_MAX, CBV_REPLY_LINE_MAX, 1, CBV_REPLY_KEEP_MAX - 1 },
	{ CBV_REPLY_LINES_MAX, 200, 0, CBV_REPLY_LINES_MAX * 201 - 1 },
	{ CBV_REPLY_LINES_MAX, 256, 1, CBV_REPLY_KEEP_MAX - 1 },
};

START_TEST(test_truncate)
{
	const struct keep_row *row = &keep_rows[_i];
	struct cbv_reply *r = calloc(1, sizeof(*r));
	struct cbv_err err;

	ck_assert_ptr_nonnull(r);
	if (row->truncated) {
		ck_assert_int_eq(feed_n(r, row->nlines, row->len, &err), CBV_EPROTO);
		ck_assert_msg(strstr(err.msg, "reply longer than 16383 bytes") != NULL, "%s", err.msg);
		ck_assert_int_eq(r->complete, 0);
		ck_assert_uint_le(r->len, row->kept);
		cbv_reply_clear(r);
		free(r);
		return;
	}
	ck_assert_int_eq(feed_n(r, row->nlines, row->len, &err), CBV_OK);
	ck_assert_int_eq(r->complete, 1);
	ck_assert_uint_eq(r->len, row->kept);
	ck_assert_uint_eq(strlen(r->text), r->len);
	ck_assert_mem_eq(r->text, row->nlines > 1 ? "250-" : "250 ", 4);
	cbv_reply_clear(r);
	free(r);
}
END_TEST

/* Misuse and errors: the reply is left as it was. */
START_TEST(test_state)
{
	struct cbv_reply r;
	struct cbv_err err;

	cbv_reply_init(&r);
	ck_assert_int_eq(r.code, 0);
	ck_assert_int_eq(cbv_reply_feed(&r, S("451-4.7.1 wait"), &err), CBV_OK);
	ck_assert_int_eq(r.complete, 0);
	ck_assert_str_eq(r.ecode, "4.7.1");
	/* bad lines change nothing */
	ck_assert_int_eq(cbv_reply_feed(&r, S("452 other"), &err), CBV_EPROTO);
	ck_assert_int_eq(cbv_reply_feed(&r, S("45"), &err), CBV_EPROTO);
	ck_assert_int_eq(cbv_reply_feed(&r, S("451x"), &err), CBV_EPROTO);
	ck_assert_uint_eq(r.nlines, 1);
	ck_assert_str_eq(r.text, "451-4.7.1 wait");
	ck_assert_int_eq(r.code, 451);
	/* later lines never set the enhanced code */
	ck_assert_int_eq(cbv_reply_feed(&r, S("451 5.1.1 later"), &err), CBV_OK);
	ck_assert_int_eq(r.complete, 1);
	ck_assert_str_eq(r.ecode, "4.7.1");
	ck_assert_int_eq(cbv_reply_feed(&r, S("451 again"), &err), CBV_EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "already complete"));
	ck_assert_str_eq(r.text, "451-4.7.1 wait\n451 5.1.1 later");
	/* reset empties it for the next reply; err may be NULL */
	cbv_reply_reset(&r);
	ck_assert_int_eq(cbv_reply_feed(&r, S("xyz"), NULL), CBV_EPROTO);
	ck_assert_int_eq(cbv_reply_feed(&r, S("221 bye"), NULL), CBV_OK);
	ck_assert_str_eq(r.text, "221 bye");
	ck_assert_str_eq(r.ecode, "");
	cbv_reply_clear(&r);
}
END_TEST

/* The text is on the heap at about its size, and copies are right-sized. */
START_TEST(test_heap)
{
	struct cbv_reply r, c;
	struct cbv_err err;

	cbv_reply_init(&r);
	cbv_reply_init(&c);
	ck_assert_ptr_null(r.text);
	ck_assert_str_eq(cbv_reply_text(&r), "");
	ck_assert_int_eq(cbv_reply_feed(&r, S("250 ok"), &err), CBV_OK);
	ck_assert_uint_eq(r.cap, CBV_REPLY_ALLOC_MIN);
	ck_assert_int_eq(cbv_reply_copy(&c, &r, &err), CBV_OK);
	ck_assert_uint_eq(c.cap, strlen("250 ok") + 1);
	ck_assert_ptr_ne(c.text, r.text);
	ck_assert_str_eq(c.text, "250 ok");
	ck_assert_int_eq(c.code, 250);
	/* a copy reuses a buffer that fits: an empty reply empties it */
	cbv_reply_clear(&r);
	ck_assert_int_eq(cbv_reply_copy(&c, &r, &err), CBV_OK);
	ck_assert_str_eq(cbv_reply_text(&c), "");
	ck_assert_uint_eq(c.len, 0);
	ck_assert_int_eq(c.code, 0);
	ck_assert_uint_eq(c.cap, strlen("250 ok") + 1);
	/* ... and a longer text gets a new buffer of its size */
	ck_assert_int_eq(cbv_reply_feed(&r, S("250 longer text"), &err), CBV_OK);
	ck_assert_int_eq(cbv_reply_copy(&c, &r, &err), CBV_OK);
	ck_assert_uint_eq(c.cap, strlen("250 longer text") + 1);
	ck_assert_str_eq(c.text, "250 longer text");
	/* a maximal reply grows by doubling to CBV_REPLY_KEEP_MAX, no further */
	ck_assert_int_eq(feed_n(&r, 8, 2047, &err), CBV_OK);
	ck_assert_uint_eq(r.len, CBV_REPLY_KEEP_MAX - 1);
	ck_assert_uint_eq(r.cap, CBV_REPLY_KEEP_MAX);
	cbv_reply_clear(&r);
	cbv_reply_clear(&c);
	cbv_reply_clear(NULL);
}
END_TEST

/* Out of memory: feeding leaves the reply as it was, a copy leaves dst empty. */
START_TEST(test_oom)
{
	struct cbv_reply r, c;
	struct cbv_err err;

	cbv_reply_init(&r);
	cbv_reply_init(&c);
	cbv_alloc_fail_after(0);
	ck_assert_int_eq(cbv_reply_feed(&r, S("250-first"), &err), CBV_ENOMEM);
	ck_assert_uint_eq(r.nlines, 0);
	ck_assert_ptr_null(r.text);
	cbv_alloc_fail_after(-1);
	ck_assert_int_eq(cbv_reply_feed(&r, S("250-first"), &err), CBV_OK);
	/* the next growth fails: the first line stays, alone */
	cbv_alloc_fail_after(0);
	{
		char big[CBV_REPLY_LINE_MAX];

		memset(big, 'x', sizeof(big));
		memcpy(big, "250 ", 4);
		ck_assert_int_eq(cbv_reply_feed(&r, big, sizeof(big), &err), CBV_ENOMEM);
	}
	ck_assert_uint_eq(r.nlines, 1);
	ck_assert_int_eq(r.complete, 0);
	ck_assert_str_eq(r.text, "250-first");
	ck_assert_int_eq(cbv_reply_copy(&c, &r, &err), CBV_ENOMEM);
	ck_assert_int_eq(err.code, CBV_ENOMEM);
	ck_assert_ptr_null(c.text);
	ck_assert_uint_eq(c.nlines, 0);
	cbv_alloc_fail_after(-1);
	ck_assert_int_eq(cbv_reply_copy(&c, &r, &err), CBV_OK);
	ck_assert_str_eq(c.text, "250-first");
	cbv_reply_clear(&r);
	cbv_reply_clear(&c);
}
END_TEST

struct san_row {
	const char *in;
	size_t in_len;
	size_t n;
	const char *want;
};

static const struct san_row san_rows[] = {
	{ S("hello"), 16, "hello" },
	{ S(""), 16, "" },
	{ S("hello"), 6, "hello" },
	{ S("hello"), 5, "hell" },
	{ S("hello"), 1, "" },
	{ S("a\r\nb"), 16, "a??b" },
	{ S("\0\x01\x1f\x20\x7e\x7f\x80\xff"), 16, "??? ~???" },
	{ S("caf\xc3\xa9"), 16, "caf??" },
	{ S("tab\there"), 16, "tab?here" },
};

START_TEST(test_sanitize)
{
	const struct san_row *row = &san_rows[_i];
	char out[32];

	memset(out, 'Z', sizeof(out));
	ck_assert_uint_eq(cbv_sanitize(row->in, row->in_len, out, row->n), strlen(row->want));
	ck_assert_str_eq(out, row->want);
	ck_assert_int_eq(out[row->n], 'Z'); /* nothing written past n */
}
END_TEST

START_TEST(test_sanitize_zero)
{
	char out[4] = "ZZZ";

	ck_assert_uint_eq(cbv_sanitize("abc", 3, out, 0), 0);
	ck_assert_str_eq(out, "ZZZ");
	ck_assert_uint_eq(cbv_sanitize(NULL, 0, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
}
END_TEST

static Suite *reply_suite(void)
{
	Suite *s = suite_create("reply");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, test_parse, 0, NROWS(parse_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("line_count");
	tcase_add_loop_test(tc, test_line_count, 0, NROWS(count_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("line_len");
	tcase_add_loop_test(tc, test_line_len, 0, NROWS(len_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("truncate");
	tcase_add_loop_test(tc, test_truncate, 0, NROWS(keep_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("state");
	tcase_add_test(tc, test_state);
	suite_add_tcase(s, tc);
	tc = tcase_create("heap");
	tcase_add_test(tc, test_heap);
	tcase_add_test(tc, test_oom);
	suite_add_tcase(s, tc);
	tc = tcase_create("sanitize");
	tcase_add_loop_test(tc, test_sanitize, 0, NROWS(san_rows));
	tcase_add_test(tc, test_sanitize_zero);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(reply_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
