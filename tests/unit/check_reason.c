/*
 * check_reason.c - the reason words and the one reply -> verdict mapping
 * (cbv_result: cbv_reason_name, cbv_reason_parse, cbv_reason_for,
 * cbv_reason_for_status), and the documentation of both: the table in
 * docs/verdicts.md is read and every row checked against the code; the
 * reason-word lists in README, docs/ and man/ are checked against the
 * name table (every word in the table documented, every documented word
 * in the table).  Files are read relative to $CBV_SRCDIR (default ".",
 * the top of the tree, where `make unit` runs).
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_reply.h"
#include "cbv_result_impl.h"
#include "cbv_status.h"

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- table rows kept in C: definitive flags and corner cases ---- */

struct row {
	enum cbv_stage stage;
	int code;
	const char *ecode;
	enum cbv_verdict v;
	const char *reason;
	int definitive;
};

static const struct row rows[] = {
	{ CBV_STAGE_RCPT, 250, "2.1.5", CBV_PASS, "accepted", 1 },
	{ CBV_STAGE_RCPT, 550, "5.1.1", CBV_FAIL, "mailbox_unknown", 1 },
	/* issue 11.4: the sender refused at RCPT time (Postfix smtpd_delay_reject) */
	{ CBV_STAGE_RCPT, 550, "5.1.8", CBV_ERROR, "sender_refused", 1 },
	{ CBV_STAGE_RCPT, 553, "5.1.7", CBV_ERROR, "sender_refused", 1 },
	{ CBV_STAGE_RCPT, 550, "5.7.27", CBV_ERROR, "sender_refused", 1 },
	{ CBV_STAGE_RCPT, 556, "5.1.10", CBV_FAIL, "null_mx", 1 },
	{ CBV_STAGE_RCPT, 550, "5.1.6", CBV_FAIL, "mailbox_disabled", 1 },
	{ CBV_STAGE_RCPT, 550, "5.7.1", CBV_ERROR, "policy_refused", 1 },
	{ CBV_STAGE_RCPT, 451, "4.7.1", CBV_TRANSIENT, "greylisted", 0 },
	/* a class that contradicts the code is no enhanced code */
	{ CBV_STAGE_RCPT, 550, "4.1.8", CBV_FAIL, "mailbox_unknown", 1 },
	{ CBV_STAGE_RCPT, 550, "5.1.1234", CBV_FAIL, "mailbox_unknown", 1 },
	{ CBV_STAGE_RCPT, 550, "5..8", CBV_FAIL, "mailbox_unknown", 1 },
	{ CBV_STAGE_RCPT, 550, NULL, CBV_FAIL, "mailbox_unknown", 1 },
	{ CBV_STAGE_MAIL, 550, "5.1.8", CBV_ERROR, "sender_refused", 1 },
	{ CBV_STAGE_MAIL, 530, "5.7.0", CBV_ERROR, "tls_required", 0 },
	{ CBV_STAGE_GREETING, 554, "5.3.2", CBV_ERROR, "greeting_refused", 0 },
	{ CBV_STAGE_GREETING, 421, "", CBV_TRANSIENT, "temp_failure", 0 },
	{ CBV_STAGE_RCPT, 199, "", CBV_ERROR, "protocol_error", 0 },
	{ CBV_STAGE_RCPT, 600, "", CBV_ERROR, "protocol_error", 0 },
};

START_TEST(test_rows)
{
	const struct row *t = &rows[_i];
	struct cbv_judgement j = cbv_reason_for(t->stage, t->code, t->ecode);

	ck_assert_msg(j.verdict == t->v && strcmp(cbv_reason_name(j.reason), t->reason) == 0 &&
	                  j.definitive == t->definitive,
	              "row %d: %d %s -> %s/%s/%d, want %s/%s/%d", _i, t->code,
	              t->ecode ? t->ecode : "(null)", cbv_verdict_name(j.verdict),
	              cbv_reason_name(j.reason), j.definitive, cbv_verdict_name(t->v), t->reason,
	              t->definitive);
}
END_TEST

struct srow {
	int status;
	int not_offered;
	enum cbv_verdict v;
	const char *reason;
};

static const struct srow srows[] = {
	{ CBV_ETIMEOUT, 0, CBV_TRANSIENT, "timeout" },
	{ CBV_ECONNECT, 0, CBV_TRANSIENT, "connect_failed" },
	{ CBV_ETLS, 1, CBV_ERROR, "tls_required" },
	{ CBV_ETLS, 0, CBV_ERROR, "tls_failed" },
	{ CBV_EPROTO, 0, CBV_ERROR, "protocol_error" },
};

START_TEST(test_status_rows)
{
	const struct srow *t = &srows[_i];
	struct cbv_judgement j = cbv_reason_for_status(CBV_STAGE_RCPT, t->status, t->not_offered);

	ck_assert_int_eq(j.verdict, t->v);
	ck_assert_str_eq(cbv_reason_name(j.reason), t->reason);
	ck_assert_int_eq(j.definitive, 0);
}
END_TEST

START_TEST(test_names)
{
	for (int i = 0; i < CBV_R_COUNT; i++) {
		const char *w = cbv_reason_name((enum cbv_reason)i);

		ck_assert_ptr_nonnull(w);
		ck_assert_int_eq(cbv_reason_parse(w), i);
		for (int k = 0; k < i; k++)
			ck_assert_str_ne(w, cbv_reason_name((enum cbv_reason)k));
	}
	ck_assert_int_eq(cbv_reason_parse("nonsense"), -1);
	ck_assert_str_eq(cbv_reason_name(CBV_R_COUNT), "protocol_error");
}
END_TEST

/* The enhanced-code reader the callout client uses (RFC 3463 limits). */
struct crow {
	const char *line;
	int code;
	const char *ecode;
};

static const struct crow crows[] = {
	{ "550 5.1.1 no such user", 550, "5.1.1" },
	{ "550-5.1.8 sender", 550, "5.1.8" },
	{ "556 5.1.10 null MX", 556, "5.1.10" },
	{ "550 5.123.456 x", 550, "5.123.456" },
	{ "550 5..1 x", 550, "" },
	{ "450 4.7.1234567 x", 450, "" },
	{ "550 4.1.1 contradictory", 550, "" },
	{ "550 5.1.1x", 550, "" },
	{ "550", 550, "" },
	{ "250 OK", 250, "" },
	{ "nothing", 0, "" },
	{ "650 6.1.1 x", 0, "" },
	{ "55", 0, "" },
	{ "550x5.1.1", 0, "" },
};

START_TEST(test_code_parse)
{
	const struct crow *t = &crows[_i];
	char ecode[16];

	ck_assert_int_eq(cbv_reply_code_parse(t->line, strlen(t->line), ecode), t->code);
	ck_assert_str_eq(ecode, t->ecode);
}
END_TEST

/* mailfromd's last_poll_* view: first line, "nothing" (issue 11.10). */
START_TEST(test_mfd_view)
{
	struct cbv_result *r = cbv_result_new();
	char buf[64];

	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(cbv_result_mfd_field(r, "last_poll_sent", buf, sizeof(buf)), "nothing");
	ck_assert_str_eq(cbv_result_mfd_field(r, "last_poll_recv", buf, sizeof(buf)), "nothing");
	ck_assert_str_eq(cbv_result_mfd_field(r, "last_poll_greeting", buf, sizeof(buf)), "");
	ck_assert_int_eq(cbv_result_set(&r->helo, "250-mx.test Hello\n250 HELP"), 0);
	ck_assert_int_eq(cbv_result_set(&r->recv, "550-5.1.1 a\n550 5.1.1 b"), 0);
	ck_assert_int_eq(cbv_result_set(&r->sent, "RCPT TO:<a@b.test>"), 0);
	ck_assert_str_eq(cbv_result_mfd_field(r, "last_poll_helo", buf, sizeof(buf)),
	                 "250-mx.test Hello");
	ck_assert_str_eq(cbv_result_mfd_field(r, "last_poll_recv", buf, sizeof(buf)), "550-5.1.1 a");
	ck_assert_str_eq(cbv_result_mfd_field(r, "last_poll_sent", buf, sizeof(buf)),
	                 "RCPT TO:<a@b.test>");
	ck_assert_str_eq(cbv_result_text(r, "recv"), "550-5.1.1 a\n550 5.1.1 b");
	ck_assert_ptr_null(cbv_result_mfd_field(r, "recv", buf, sizeof(buf)));
	ck_assert_ptr_null(cbv_result_mfd_field(r, "last_poll_ip", buf, sizeof(buf)));
	cbv_result_free(r);
}
END_TEST

/* cbv_result_synth: the one synthesized shape. */
START_TEST(test_synth)
{
	struct cbv_result *r = cbv_result_synth("a\r\nb@x.test", CBV_TRANSIENT, CBV_R_TIMEOUT,
	                                        451, "4.4.2", "timed out\r\nQUIT");

	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->message, "451 4.4.2 timed out??QUIT");
	ck_assert_str_eq(r->address, "a??b@x.test");
	ck_assert_str_eq(cbv_reason_name(r->reason), "timeout");
	ck_assert_int_eq(r->code, 451);
	ck_assert_str_eq(r->ecode, "4.4.2");
	cbv_result_free(r);
}
END_TEST

/* ---- documentation ---- */

static char *slurp(const char *rel)
{
	const char *dir = getenv("CBV_SRCDIR");
	char path[1024];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : ".", rel);
	f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static enum cbv_stage stage_named(const char *s)
{
	static const struct {
		const char *name;
		enum cbv_stage st;
	} names[] = { { "greeting", CBV_STAGE_GREETING }, { "EHLO", CBV_STAGE_EHLO },
		      { "HELO", CBV_STAGE_HELO },         { "STARTTLS", CBV_STAGE_STARTTLS },
		      { "RSET", CBV_STAGE_RSET },         { "MAIL", CBV_STAGE_MAIL },
		      { "RCPT", CBV_STAGE_RCPT } };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].st;
	ck_abort_msg("docs/verdicts.md: unknown stage %s", s);
	return CBV_STAGE_DONE;
}

/* Every row of docs/verdicts.md's table is what cbv_reason_for() says. */
START_TEST(test_doc_table)
{
	char *doc = slurp("docs/verdicts.md");
	char *p, *end, *line, *save = NULL;
	int n = 0;

	ck_assert_msg(doc != NULL, "cannot read docs/verdicts.md (set CBV_SRCDIR)");
	p = strstr(doc, "<!-- verdict-table-begin -->");
	end = strstr(doc, "<!-- verdict-table-end -->");
	ck_assert(p != NULL && end != NULL && p < end);
	*end = '\0';
	for (line = strtok_r(p, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char stage[16], ecode[16], status[16], reason[32];
		int code;
		struct cbv_judgement j;

		if (sscanf(line, "| %15s | %d | %15s | %15s | %31s |", stage, &code, ecode, status,
		           reason) != 5)
			continue;
		j = cbv_reason_for(stage_named(stage), code, strcmp(ecode, "-") == 0 ? "" : ecode);
		ck_assert_msg(strcmp(cbv_verdict_name(j.verdict), status) == 0 &&
		                  strcmp(cbv_reason_name(j.reason), reason) == 0,
		              "docs/verdicts.md: %s -> code says %s %s", line,
		              cbv_verdict_name(j.verdict), cbv_reason_name(j.reason));
		ck_assert_msg(cbv_reason_parse(reason) >= 0, "%s: unknown reason", line);
		n++;
	}
	ck_assert_int_ge(n, 40);
	free(doc);
}
END_TEST

/*
 * Checks the words between reason-words-begin and -end in one file:
 * each must be a reason; with complete, every reason must be there.
 * Returns 1 if the file has such a list.
 */
static int check_list(const char *rel, int complete)
{
	char *doc = slurp(rel), *p, *end;
	int seen[CBV_R_COUNT] = { 0 };

	ck_assert_msg(doc != NULL, "cannot read %s", rel);
	p = strstr(doc, "reason-words-begin");
	if (p == NULL) {
		free(doc);
		ck_assert_msg(!complete, "%s: no reason-words-begin", rel);
		return 0;
	}
	p = strchr(p, '\n');
	end = strstr(doc, "reason-words-end");
	ck_assert_msg(p != NULL && end != NULL && p < end, "%s: bad reason-words markers", rel);
	/* back to the start of the end marker's line */
	while (end > p && end[-1] != '\n')
		end--;
	*end = '\0';
	for (char *l = p + 1; l < end && *l != '\0';) {
		char *nl = strchr(l, '\n');
		char *q = l;

		if (nl != NULL)
			*nl = '\0';
		if (*q == '.') /* a man macro: .BR, .B */
			q += strcspn(q, " ");
		while (*q != '\0') {
			char word[64];
			size_t len = 0;

			while (*q != '\0' && !((*q >= 'a' && *q <= 'z') || *q == '_'))
				q++;
			while (((*q >= 'a' && *q <= 'z') || *q == '_') && len + 1 < sizeof(word))
				word[len++] = *q++;
			if (len == 0)
				continue;
			word[len] = '\0';
			ck_assert_msg(cbv_reason_parse(word) >= 0, "%s documents \"%s\", not a reason word",
			              rel, word);
			seen[cbv_reason_parse(word)] = 1;
		}
		if (nl == NULL)
			break;
		l = nl + 1;
	}
	if (complete)
		for (int i = 0; i < CBV_R_COUNT; i++)
			ck_assert_msg(seen[i], "%s does not document the reason \"%s\"", rel,
			              cbv_reason_name((enum cbv_reason)i));
	free(doc);
	return 1;
}

/* README, docs/verdicts.md and cbv-verify(1) list every word; other
 * docs and man pages with a list list only real words. */
START_TEST(test_doc_words)
{
	static const char *const dirs[] = { "man", "docs" };
	const char *dir = getenv("CBV_SRCDIR");
	int lists = 0;

	lists += check_list("README", 1);
	lists += check_list("docs/verdicts.md", 1);
	lists += check_list("man/cbv-verify.1", 1);
	for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
		char path[1024];
		DIR *dp;
		struct dirent *e;

		snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : ".", dirs[d]);
		dp = opendir(path);
		ck_assert_msg(dp != NULL, "cannot open %s", path);
		while ((e = readdir(dp)) != NULL) {
			size_t len = strlen(e->d_name);
			char rel[512];

			if (!(len > 2 && (strcmp(e->d_name + len - 2, ".1") == 0 ||
			                  strcmp(e->d_name + len - 2, ".8") == 0 ||
			                  (len > 3 && strcmp(e->d_name + len - 3, ".md") == 0))))
				continue;
			snprintf(rel, sizeof(rel), "%s/%s", dirs[d], e->d_name);
			(void)check_list(rel, 0);
		}
		closedir(dp);
	}
	ck_assert_int_eq(lists, 3);
}
END_TEST

static Suite *reason_suite(void)
{
	Suite *s = suite_create("reason");
	TCase *tc = tcase_create("mapping");

	tcase_add_loop_test(tc, test_rows, 0, NROWS(rows));
	tcase_add_loop_test(tc, test_status_rows, 0, NROWS(srows));
	tcase_add_test(tc, test_names);
	tcase_add_loop_test(tc, test_code_parse, 0, NROWS(crows));
	tcase_add_test(tc, test_mfd_view);
	tcase_add_test(tc, test_synth);
	suite_add_tcase(s, tc);
	tc = tcase_create("docs");
	tcase_add_test(tc, test_doc_table);
	tcase_add_test(tc, test_doc_words);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(reason_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
