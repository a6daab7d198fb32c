/*
 * check_config_server.c - the server { } block of cbv.conf (cbvd's
 * listen URLs, limits, user, profile, allow_remote): defaults, values,
 * and errors in the "FILE:LINE:COL: what" form.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_config.h"

static struct cbv_config *parse(const char *text, struct cbv_err *err)
{
	return cbv_config_parse(text, strlen(text), "t.conf", err);
}

START_TEST(defaults_without_block)
{
	struct cbv_err err;
	struct cbv_config *c = parse("smtp_cbv { port = 2525 }\n", &err);
	const struct cbv_server_conf *s;

	ck_assert_ptr_nonnull(c);
	s = cbv_config_server(c);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->nlisten, 0);
	ck_assert_uint_eq(s->max_clients, 256);
	ck_assert_uint_eq(s->max_inflight, 1024);
	ck_assert_str_eq(s->user, "");
	ck_assert_str_eq(s->profile, "");
	ck_assert_int_eq(s->allow_remote, 0);
	cbv_config_free(c);
}
END_TEST

START_TEST(full_block)
{
	struct cbv_err err;
	struct cbv_config *c = parse(
		"smtp_cbv \"default\" { }\n"
		"smtp_cbv \"rig\" { port = 2525 }\n"
		"server {\n"
		"  listen = [ \"unix:///run/cbvd.sock\" \"inet://127.0.0.1:3535\" ]\n"
		"  max_clients = 10\n"
		"  max_inflight = 20\n"
		"  user = \"Debian-exim\"\n"
		"  profile = \"rig\"\n"
		"  allow_remote = yes\n"
		"  metrics_listen = \"inet6://[::1]:9464\"\n"
		"  metrics_allow_remote = yes\n"
		"}\n", &err);
	const struct cbv_server_conf *s;

	ck_assert_msg(c != NULL, "%s", err.msg);
	s = cbv_config_server(c);
	ck_assert_uint_eq(s->nlisten, 2);
	ck_assert_str_eq(s->listen[0], "unix:///run/cbvd.sock");
	ck_assert_str_eq(s->listen[1], "inet://127.0.0.1:3535");
	ck_assert_uint_eq(s->max_clients, 10);
	ck_assert_uint_eq(s->max_inflight, 20);
	ck_assert_str_eq(s->user, "Debian-exim");
	ck_assert_str_eq(s->profile, "rig");
	ck_assert_int_eq(s->allow_remote, 1);
	ck_assert_str_eq(s->metrics_listen, "inet6://[::1]:9464");
	ck_assert_int_eq(s->metrics_allow_remote, 1);
	/* the server block does not add a profile */
	ck_assert_uint_eq(cbv_config_count(c), 2);
	cbv_config_free(c);
}
END_TEST

/* Every form cbvd documents and accepts, the config accepts too. */
START_TEST(listen_forms)
{
	struct cbv_err err;
	struct cbv_config *c = parse("server { listen = [ \"inet6://[::1]:3535\" \"inet://[::1]:3536\"\n"
	                             "  \"unix:/run/cbvd.sock\" \"inet://localhost:3537\" ] }\n", &err);

	ck_assert_msg(c != NULL, "%s", err.msg);
	ck_assert_uint_eq(cbv_config_server(c)->nlisten, 4);
	ck_assert_str_eq(cbv_config_server(c)->listen[0], "inet6://[::1]:3535");
	cbv_config_free(c);
}
END_TEST

START_TEST(single_listen_and_order)
{
	struct cbv_err err;
	/* a bare single value is a list of one; server may come first */
	struct cbv_config *c = parse("server { listen = inet://127.0.0.1:3535 }\n"
	                             "smtp_cbv { }\n", &err);

	ck_assert_msg(c != NULL, "%s", err.msg);
	ck_assert_uint_eq(cbv_config_server(c)->nlisten, 1);
	cbv_config_free(c);
}
END_TEST

static const struct {
	const char *text;
	const char *msg;
} errors[] = {
	{ "server { bogus = 1 }", "t.conf:1:10: unknown key \"bogus\" in server block" },
	{ "server { max_clients = 0 }", "t.conf:1:24: max_clients: " },
	{ "server { max_clients = 70000 }", "t.conf:1:24: max_clients: " },
	{ "server { max_inflight = x }", "t.conf:1:25: max_inflight: " },
	{ "server { user = \"a b\" }", "t.conf:1:17: user: " },
	{ "server { allow_remote = maybe }", "t.conf:1:25: allow_remote: " },
	{ "server { listen = [ \"http://x\" ] }", "t.conf:1:21: listen: " },
	{ "server { listen = [ \"\" ] }", "t.conf:1:21: listen: empty URL" },
	{ "server { metrics_listen = \"unix:///run/m.sock\" }",
	  "t.conf:1:27: metrics_listen: metrics are served over TCP" },
	{ "server { metrics_listen = \"inet://mx.example:9464\" }",
	  "t.conf:1:27: metrics_listen: host must be an IP address here, not a name" },
	{ "server { metrics_allow_remote = 2 }", "t.conf:1:33: metrics_allow_remote: " },
	/* cbvd binds, never resolves: a name is refused here, not at start */
	{ "server { listen = [ \"inet://mail.example:3535\" ] }",
	  "t.conf:1:21: listen: host must be an IP address here, not a name" },
	{ "server { listen = \"inet://[::1]\" }", "t.conf:1:19: listen: expected [IPV6]:PORT" },
	{ "server { profile = \"nope\" }\nsmtp_cbv { }",
	  "t.conf:1:20: profile: no smtp_cbv block named \"nope\"" },
	{ "server { }\nserver { }", "t.conf:2:1: duplicate server block" },
	{ "server { max_clients = 1\n max_clients = 2 }",
	  "t.conf:2:2: duplicate key \"max_clients\" (first set on line 1)" },
	{ "server { max_clients = 1", "t.conf:1:1: server block not closed with '}'" },
	{ "server max_clients = 1", "t.conf:1:8: expected '{' after server, got \"max_clients\"" },
	{ "server { max_clients 1 }", "t.conf:1:22: expected '=' after \"max_clients\", got \"1\"" },
};

START_TEST(error_table)
{
	struct cbv_err err;
	struct cbv_config *c = parse(errors[_i].text, &err);

	ck_assert_ptr_null(c);
	ck_assert_int_eq(err.code, CBV_ECONFIG);
	ck_assert_msg(strncmp(err.msg, errors[_i].msg, strlen(errors[_i].msg)) == 0,
	              "got \"%s\", want \"%s...\"", err.msg, errors[_i].msg);
}
END_TEST

START_TEST(too_many_listen)
{
	char text[4096];
	size_t n = 0;
	struct cbv_err err;

	n += (size_t)snprintf(text + n, sizeof(text) - n, "server { listen = [");
	for (int i = 0; i <= CBV_LISTEN_MAX; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, " inet://127.0.0.1:%d", 3000 + i);
	snprintf(text + n, sizeof(text) - n, " ] }");
	ck_assert_ptr_null(parse(text, &err));
	ck_assert_msg(strstr(err.msg, "more than") != NULL, "%s", err.msg);
}
END_TEST

START_TEST(oom)
{
	const char *text = "smtp_cbv { }\nserver { listen = inet://127.0.0.1:1 profile = default }";

	for (long i = 0; i < 20; i++) {
		struct cbv_err err;
		struct cbv_config *c;

		cbv_alloc_fail_after(i);
		c = parse(text, &err);
		cbv_alloc_fail_after(-1);
		if (c != NULL) {
			ck_assert_uint_eq(cbv_config_server(c)->nlisten, 1);
			cbv_config_free(c);
			return;
		}
		ck_assert_int_eq(err.code, CBV_ENOMEM);
	}
	ck_abort_msg("never succeeded");
}
END_TEST

static Suite *server_suite(void)
{
	Suite *s = suite_create("config_server");
	TCase *tc = tcase_create("server");

	tcase_add_test(tc, defaults_without_block);
	tcase_add_test(tc, full_block);
	tcase_add_test(tc, single_listen_and_order);
	tcase_add_test(tc, listen_forms);
	tcase_add_loop_test(tc, error_table, 0, sizeof(errors) / sizeof(errors[0]));
	tcase_add_test(tc, too_many_listen);
	tcase_add_test(tc, oom);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(server_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
