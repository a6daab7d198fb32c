/*
 * check_tracemux.c - a group session's transcript split per address
 * (cbv_tracemux.h), table-driven: one row per session shape (pipelined,
 * one RCPT at a time, MAIL refused, STARTTLS, catch-all probe either
 * way, a second host), each member's lines compared with what its own
 * session would show.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_tracemux.h"

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define MEMBERS 3

/* What each member was told, as "K:text|" per line (K: I G H S R). */
static char seen[MEMBERS][2048];
static const char kinds[] = "IGHSR";

static void record(void *arg, enum cbv_trace kind, const char *text)
{
	char *out = arg;
	size_t len = strlen(out);

	snprintf(out + len, sizeof(seen[0]) - len, "%c:%s|", kinds[kind], text);
}

/* Feeds "K:text" events to the mux. */
static void feed(struct cbv_tracemux *m, const char *const *ev)
{
	for (; *ev != NULL; ev++) {
		const char *k = strchr(kinds, (*ev)[0]);

		ck_assert_ptr_nonnull(k);
		cbv_tracemux_trace(m, (enum cbv_trace)(k - kinds), *ev + 2);
	}
}

#define HELLO "I:mx.t [127.0.0.1]:25", "G:220 mx.t", "S:EHLO v.t", "H:250-mx.t"
#define HELLO_SEEN "I:mx.t [127.0.0.1]:25|G:220 mx.t|S:EHLO v.t|H:250-mx.t|"

static const struct {
	const char *name;
	size_t n;
	const char *ev[24];
	const char *want[MEMBERS];
} rows[] = {
	{ "pipelined", 3,
	  { HELLO, "S:MAIL FROM:<>", "S:RCPT TO:<a@t>", "S:RCPT TO:<b@t>", "S:RCPT TO:<c@t>",
	    "R:250 ok", "R:250 a", "R:550 5.1.1 b", "R:451 c", "S:QUIT", NULL },
	  { HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<a@t>|R:250 ok|R:250 a|S:QUIT|",
	    HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<b@t>|R:250 ok|R:550 5.1.1 b|S:QUIT|",
	    HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<c@t>|R:250 ok|R:451 c|S:QUIT|" } },
	{ "one at a time", 2,
	  { HELLO, "S:MAIL FROM:<>", "R:250 ok", "S:RCPT TO:<a@t>", "R:550 a", "S:RCPT TO:<b@t>",
	    "R:250 b", NULL },
	  { HELLO_SEEN "S:MAIL FROM:<>|R:250 ok|S:RCPT TO:<a@t>|R:550 a|",
	    HELLO_SEEN "S:MAIL FROM:<>|R:250 ok|S:RCPT TO:<b@t>|R:250 b|", "" } },
	{ "MAIL refused, pipelined", 2,
	  { HELLO, "S:MAIL FROM:<>", "S:RCPT TO:<a@t>", "S:RCPT TO:<b@t>", "R:550 5.7.1 no", NULL },
	  { HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<a@t>|R:550 5.7.1 no|",
	    HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<b@t>|R:550 5.7.1 no|", "" } },
	{ "STARTTLS, then EHLO again", 2,
	  { HELLO, "S:STARTTLS", "R:220 go", "S:EHLO v.t", "H:250 tls", "S:MAIL FROM:<>",
	    "S:RCPT TO:<a@t>", "S:RCPT TO:<b@t>", "R:250 ok", "R:250 a", "R:250 b", NULL },
	  { HELLO_SEEN "S:STARTTLS|R:220 go|S:EHLO v.t|H:250 tls|S:MAIL FROM:<>|S:RCPT TO:<a@t>|"
	               "R:250 ok|R:250 a|",
	    HELLO_SEEN "S:STARTTLS|R:220 go|S:EHLO v.t|H:250 tls|S:MAIL FROM:<>|S:RCPT TO:<b@t>|"
	               "R:250 ok|R:250 b|", "" } },
	{ "probe pipelined: its reply to the 2xx members", 2,
	  { HELLO, "S:MAIL FROM:<>", "S:RCPT TO:<a@t>", "S:RCPT TO:<b@t>", "S:RCPT TO:<p@t>",
	    "R:250 ok", "R:250 a", "R:550 b", "R:250 p", NULL },
	  { HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<a@t>|S:RCPT TO:<p@t>|R:250 ok|R:250 a|R:250 p|",
	    HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<b@t>|S:RCPT TO:<p@t>|R:250 ok|R:550 b|", "" } },
	{ "probe one at a time: only the 2xx members", 2,
	  { HELLO, "S:MAIL FROM:<>", "R:250 ok", "S:RCPT TO:<a@t>", "R:550 a", "S:RCPT TO:<b@t>",
	    "R:250 b", "S:RCPT TO:<p@t>", "R:550 p", NULL },
	  { HELLO_SEEN "S:MAIL FROM:<>|R:250 ok|S:RCPT TO:<a@t>|R:550 a|",
	    HELLO_SEEN "S:MAIL FROM:<>|R:250 ok|S:RCPT TO:<b@t>|R:250 b|S:RCPT TO:<p@t>|R:550 p|",
	    "" } },
	{ "a 554 greeting", 3, { "I:mx.t [127.0.0.1]:25", "G:554 no", NULL },
	  { "I:mx.t [127.0.0.1]:25|G:554 no|", "I:mx.t [127.0.0.1]:25|G:554 no|",
	    "I:mx.t [127.0.0.1]:25|G:554 no|" } },
	{ "a second host forgets the first's commands", 2,
	  { HELLO, "S:MAIL FROM:<>", "S:RCPT TO:<a@t>", "S:RCPT TO:<b@t>", "I:mx2.t [127.0.0.2]:25",
	    "G:220 mx2", "S:EHLO v.t", "H:250 mx2", "S:MAIL FROM:<>", "S:RCPT TO:<a@t>",
	    "S:RCPT TO:<b@t>", "R:250 ok", "R:250 a", "R:250 b", NULL },
	  { HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<a@t>|I:mx2.t [127.0.0.2]:25|G:220 mx2|"
	               "S:EHLO v.t|H:250 mx2|S:MAIL FROM:<>|S:RCPT TO:<a@t>|R:250 ok|R:250 a|",
	    HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<b@t>|I:mx2.t [127.0.0.2]:25|G:220 mx2|"
	               "S:EHLO v.t|H:250 mx2|S:MAIL FROM:<>|S:RCPT TO:<b@t>|R:250 ok|R:250 b|",
	    "" } },
	{ "ondemand: RSET and a new transaction", 2,
	  { HELLO, "S:MAIL FROM:<>", "S:RCPT TO:<a@t>", "R:250 ok", "R:530 tls first", "S:RSET",
	    "R:250 reset", "S:STARTTLS", "R:220 go", "S:EHLO v.t", "H:250 tls", "S:MAIL FROM:<>",
	    "R:250 ok", "S:RCPT TO:<a@t>", "R:250 a", "S:RCPT TO:<b@t>", "R:250 b", NULL },
	  { HELLO_SEEN "S:MAIL FROM:<>|S:RCPT TO:<a@t>|R:250 ok|R:530 tls first|S:RSET|R:250 reset|"
	               "S:STARTTLS|R:220 go|S:EHLO v.t|H:250 tls|S:MAIL FROM:<>|R:250 ok|"
	               "S:RCPT TO:<a@t>|R:250 a|",
	    HELLO_SEEN "S:MAIL FROM:<>|R:250 ok|S:RSET|R:250 reset|S:STARTTLS|R:220 go|S:EHLO v.t|"
	               "H:250 tls|S:MAIL FROM:<>|R:250 ok|S:RCPT TO:<b@t>|R:250 b|", "" } },
};

START_TEST(split)
{
	struct cbv_tracemux m;
	cbv_trace_fn *fn[MEMBERS];
	void *arg[MEMBERS];

	for (size_t k = 0; k < MEMBERS; k++) {
		seen[k][0] = '\0';
		fn[k] = record;
		arg[k] = seen[k];
	}
	cbv_tracemux_begin(&m, fn, arg, rows[_i].n);
	feed(&m, rows[_i].ev);
	for (size_t k = 0; k < MEMBERS; k++)
		ck_assert_msg(strcmp(seen[k], rows[_i].want[k]) == 0, "%s: member %zu:\n got %s\nwant %s",
		              rows[_i].name, k, seen[k], rows[_i].want[k]);
}
END_TEST

/* A member without a hook is skipped; replies beyond what was sent go to all. */
START_TEST(edges)
{
	static const char *const ev[] = { "I:h [1]:25", "S:MAIL FROM:<>", "S:RCPT TO:<a@t>",
		                          "S:RCPT TO:<b@t>", "R:250 ok", "R:250 a", "R:250 b",
		                          "R:421 bye", NULL };
	struct cbv_tracemux m;
	cbv_trace_fn *fn[2] = { NULL, record };
	void *arg[2] = { seen[0], seen[1] };

	seen[0][0] = seen[1][0] = '\0';
	cbv_tracemux_begin(&m, fn, arg, 2);
	feed(&m, ev);
	ck_assert_str_eq(seen[0], "");
	ck_assert_str_eq(seen[1], "I:h [1]:25|S:MAIL FROM:<>|S:RCPT TO:<b@t>|R:250 ok|R:250 b|"
	                          "R:421 bye|");
}
END_TEST

/* More commands than the pending queue holds: nothing overflows, replies still pair. */
START_TEST(many_rcpts)
{
	struct cbv_tracemux m;
	cbv_trace_fn *fn[CBV_RCPTS_MAX];
	void *arg[CBV_RCPTS_MAX];
	static char buf[CBV_RCPTS_MAX][2048];
	char line[64];

	for (size_t k = 0; k < CBV_RCPTS_MAX; k++) {
		buf[k][0] = '\0';
		fn[k] = record;
		arg[k] = buf[k];
	}
	cbv_tracemux_begin(&m, fn, arg, CBV_RCPTS_MAX + 5);
	ck_assert_uint_eq(m.n, CBV_RCPTS_MAX);
	cbv_tracemux_trace(&m, CBV_TRACE_SENT, "MAIL FROM:<>");
	for (int k = 0; k < 2 * CBV_TRACEMUX_PENDING; k++) {
		snprintf(line, sizeof(line), "RCPT TO:<r%d@t>", k);
		cbv_tracemux_trace(&m, CBV_TRACE_SENT, line);
	}
	cbv_tracemux_trace(&m, CBV_TRACE_RECV, "250 ok");
	for (int k = 0; k < CBV_RCPTS_MAX; k++) {
		snprintf(line, sizeof(line), "250 r%d", k);
		cbv_tracemux_trace(&m, CBV_TRACE_RECV, line);
	}
	/* RCPTs beyond the members count as probes: shown to all while replies are due */
	ck_assert_int_eq(strncmp(buf[7], "S:MAIL FROM:<>|S:RCPT TO:<r7@t>|S:RCPT TO:<r32@t>|", 50), 0);
	ck_assert_ptr_nonnull(strstr(buf[7], "|R:250 ok|R:250 r7|"));
	ck_assert_ptr_null(strstr(buf[7], "r8|"));
}
END_TEST

static Suite *tracemux_suite(void)
{
	Suite *s = suite_create("tracemux");
	TCase *tc = tcase_create("split");

	tcase_add_loop_test(tc, split, 0, NROWS(rows));
	tcase_add_test(tc, edges);
	tcase_add_test(tc, many_rcpts);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tracemux_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
