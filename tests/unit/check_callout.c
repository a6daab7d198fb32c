/*
 * check_callout.c - unit tests for cbv_callout, the callout protocol
 * client: URL and REST parsing, server line parsing, final-line parsing,
 * and whole sessions against a scripted server (a fork()ed child on a
 * UNIX socket in a temporary directory) replaying what Debian's calloutd
 * 8.15 sends (docs/callout-protocol.md).
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cbv_callout_impl.h"
#include "cbv_clock.h"
#include "cbv_url.h"

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- URL ------------------------------------------------------------- */

struct url_row {
	const char *in;
	enum cbv_status st;
	int unix_socket;
	const char *where; /* path or host */
	unsigned port;
};

static const struct url_row url_rows[] = {
	{ "unix:///run/cbvd.sock", CBV_OK, 1, "/run/cbvd.sock", 0 },
	{ "unix:///tmp/a b", CBV_EINVAL, 0, NULL, 0 },
	{ "unix://relative", CBV_EINVAL, 0, NULL, 0 },
	{ "unix:///", CBV_EINVAL, 0, NULL, 0 },
	{ "unix:///x?y", CBV_EINVAL, 0, NULL, 0 },
	{ "unix:///aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://127.0.0.1:3535", CBV_OK, 0, "127.0.0.1", 3535 },
	{ "inet://localhost:1", CBV_OK, 0, "localhost", 1 },
	{ "inet://callout.example.com:65535", CBV_OK, 0, "callout.example.com", 65535 },
	{ "inet://[::1]:3535", CBV_OK, 0, "::1", 3535 },
	{ "inet://[::1]3535", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://[::g]:3535", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://::1:3535", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://127.0.0.1:0", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://127.0.0.1:65536", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://127.0.0.1:0003535", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://127.0.0.1:", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://127.0.0.1", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://:3535", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://127.0.0.1:3535/", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://u@127.0.0.1:3535", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://127.0.0.1:35x", CBV_EINVAL, 0, NULL, 0 },
	{ "inet://127.0.0.1:3535\r\n", CBV_EINVAL, 0, NULL, 0 },
	{ "tcp://127.0.0.1:3535", CBV_EINVAL, 0, NULL, 0 },
	{ "", CBV_EINVAL, 0, NULL, 0 },
	{ "UNIX:///x", CBV_EINVAL, 0, NULL, 0 },
};

START_TEST(test_url)
{
	const struct url_row *row = &url_rows[_i];
	struct cbv_url u;
	struct cbv_err err;
	enum cbv_status st = cbv_url_parse(row->in, strlen(row->in), 0, &u, &err);

	ck_assert_msg(st == row->st, "%s: status %d, want %d", row->in, st, row->st);
	if (st != CBV_OK) {
		ck_assert_str_ne(err.msg, "");
		return;
	}
	ck_assert_int_eq(u.family == AF_UNIX, row->unix_socket);
	if (u.family == AF_UNIX) {
		ck_assert_str_eq(u.path, row->where);
	} else {
		ck_assert_str_eq(u.host, row->where);
		ck_assert_uint_eq(u.port, row->port);
	}
}
END_TEST

START_TEST(test_url_null_and_long)
{
	struct cbv_url u;
	char big[CBV_URL_MAX + 20];

	ck_assert_int_eq(cbv_url_parse(NULL, 0, 0, &u, NULL), CBV_EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "inet://", 7);
	ck_assert_int_eq(cbv_url_parse(big, strlen(big), 0, &u, NULL), CBV_EINVAL);
}
END_TEST

/* ---- REST ------------------------------------------------------------ */

struct rest_row {
	const char *in;
	enum cbv_status st;
	const char *out;
};

static const struct rest_row rest_rows[] = {
	{ NULL, CBV_OK, "" },
	{ "", CBV_OK, "" },
	{ "   ", CBV_OK, "" },
	{ "MODE=hostonly HOST=mx.example.com", CBV_OK, "MODE=hostonly HOST=\"mx.example.com\"" },
	{ "mode=HostFirst host=\"127.0.0.30\"", CBV_OK, "MODE=hostfirst HOST=\"127.0.0.30\"" },
	{ "MODE=mxfirst", CBV_OK, "MODE=mxfirst" },
	{ "MODE=mxonly HOST=example.com", CBV_OK, "MODE=mxonly HOST=\"example.com\"" },
	{ "EHLO=\"x y\" MAILFROM=<probe@example.com>", CBV_OK,
	  "EHLO=\"x y\" MAILFROM=\"<probe@example.com>\"" },
	{ "MAILFROM=\"a\\\"b\\\\c\"", CBV_OK, "MAILFROM=\"a\\\"b\\\\c\"" },
	{ "\tHOST=a\t\tEHLO=b ", CBV_OK, "HOST=\"a\" EHLO=\"b\"" },
	{ "MODE=bogus", CBV_EINVAL, NULL },
	{ "MODE=", CBV_EINVAL, NULL },
	{ "HOST=\"\"", CBV_EINVAL, NULL },
	{ "FOO=bar", CBV_EINVAL, NULL },
	{ "TLS=never", CBV_EINVAL, NULL },
	{ "HOST", CBV_EINVAL, NULL },
	{ "HOST =x", CBV_EINVAL, NULL },
	{ "=x", CBV_EINVAL, NULL },
	{ "HOST=a HOST=b", CBV_EINVAL, NULL },
	{ "HOST=\"a", CBV_EINVAL, NULL },
	{ "HOST=\"a\\", CBV_EINVAL, NULL },
	{ "HOST=\"a\"b", CBV_EINVAL, NULL },
	{ "HOST=a\"b", CBV_EINVAL, NULL },
	{ "HOST=a\\b", CBV_EINVAL, NULL },
	/* request smuggling: a CR LF would end VRFY and start a command */
	{ "HOST=a\r\nQUIT", CBV_EINVAL, NULL },
	{ "HOST=\"a\r\nQUIT\"", CBV_EINVAL, NULL },
	{ "HOST=\"a\\\nQUIT\"", CBV_EINVAL, NULL },
	{ "EHLO=\"a\x01\"", CBV_EINVAL, NULL },
	{ "EHLO=a\x7f", CBV_EINVAL, NULL },
};

START_TEST(test_rest)
{
	const struct rest_row *row = &rest_rows[_i];
	char out[CBV_CALLOUT_REQ_MAX + 1];
	struct cbv_err err;
	enum cbv_status st = cbv_callout_rest_format(row->in, out, sizeof(out), &err);

	ck_assert_msg(st == row->st, "row %d: status %d, want %d (%s)", _i, st, row->st,
	              st ? err.msg : out);
	if (st == CBV_OK)
		ck_assert_str_eq(out, row->out);
	else
		ck_assert_str_ne(err.msg, "");
}
END_TEST

/* The keys given, as the bits cbv.so checks a tainted REST against. */
START_TEST(test_rest_keys)
{
	static const struct {
		const char *in;
		unsigned keys;
	} rows[] = {
		{ NULL, 0 },
		{ "MAILFROM=a@b.test", CBV_REST_MAILFROM },
		{ "mailfrom=\"a@b.test\" ehlo=x", CBV_REST_MAILFROM | CBV_REST_EHLO },
		{ "MODE=hostonly HOST=h", CBV_REST_MODE | CBV_REST_HOST },
		{ "HOST=h MODE=mxfirst EHLO=e MAILFROM=m",
		  CBV_REST_MODE | CBV_REST_HOST | CBV_REST_EHLO | CBV_REST_MAILFROM },
		{ "MAILFROM=m HOST=\"a", 0 }, /* refused: no keys */
	};
	char out[CBV_CALLOUT_REQ_MAX + 1];
	unsigned keys = 99;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		(void)cbv_callout_rest_parse(rows[i].in, out, sizeof(out), &keys, NULL);
		ck_assert_msg(keys == rows[i].keys, "row %zu: keys %#x, want %#x", i, keys,
		              rows[i].keys);
	}
}
END_TEST

START_TEST(test_rest_bounds)
{
	char in[CBV_CALLOUT_REQ_MAX + 64], out[64];

	/* value longer than CBV_CALLOUT_VALUE_MAX */
	memcpy(in, "HOST=", 5);
	memset(in + 5, 'a', CBV_CALLOUT_VALUE_MAX + 1);
	in[5 + CBV_CALLOUT_VALUE_MAX + 1] = '\0';
	ck_assert_int_eq(cbv_callout_rest_format(in, out, sizeof(out), NULL), CBV_EINVAL);
	/* fits the parser, not the output buffer */
	ck_assert_int_eq(cbv_callout_rest_format("HOST=mx.example.com EHLO=verifier.example.com "
	                                         "MAILFROM=probe@example.com",
	                                         out, sizeof(out), NULL), CBV_EINVAL);
	ck_assert_str_eq(out, "");
	/* whole string longer than CBV_CALLOUT_REQ_MAX */
	memset(in, ' ', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	ck_assert_int_eq(cbv_callout_rest_format(in, out, sizeof(out), NULL), CBV_EINVAL);
}
END_TEST

/* ---- server lines ---------------------------------------------------- */

struct line_row {
	const char *in;
	enum cbv_callout_kind kind;
	const char *id, *tag, *text;
};

static const struct line_row line_rows[] = {
	{ "OK mailfromd callout server ready", CBV_CALLOUT_LINE_OK, "", "",
	  "mailfromd callout server ready" },
	{ "OK", CBV_CALLOUT_LINE_OK, "", "", "" },
	{ "ok bye", CBV_CALLOUT_LINE_OK, "", "", "bye" },
	{ "OK 0000000000=success", CBV_CALLOUT_LINE_OK, "", "", "0000000000=success" },
	{ "NO unknown command", CBV_CALLOUT_LINE_NO, "", "", "unknown command" },
	{ "NO", CBV_CALLOUT_LINE_NO, "", "", "" },
	{ "NOPE", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "OKAY", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "* 0000000000 INIT mx.exim.test", CBV_CALLOUT_LINE_PROGRESS, "0000000000", "INIT",
	  "mx.exim.test" },
	{ "* 0000000001 RECV 550 5.1.1 <nobody@exim.test>: no such user here",
	  CBV_CALLOUT_LINE_PROGRESS, "0000000001", "RECV",
	  "550 5.1.1 <nobody@exim.test>: no such user here" },
	{ "* 7 SENT", CBV_CALLOUT_LINE_PROGRESS, "7", "SENT", "" },
	{ "* 7 FOO bar", CBV_CALLOUT_LINE_PROGRESS, "7", "FOO", "bar" },
	{ "* 7 init x", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "* EHLO=foo", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "*  7 INIT x", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "* 7", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "* 7 ", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "* 123456789012345678901 INIT x", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "* 7 TOOLONGTAG x", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "220 mx.example ESMTP", CBV_CALLOUT_LINE_BAD, "", "", NULL },
	{ "", CBV_CALLOUT_LINE_BAD, "", "", NULL },
};

START_TEST(test_line)
{
	const struct line_row *row = &line_rows[_i];
	struct cbv_callout_line l;
	enum cbv_callout_kind k = cbv_callout_line_parse(row->in, strlen(row->in), &l);

	ck_assert_msg(k == row->kind, "%s: kind %d, want %d", row->in, k, row->kind);
	ck_assert_int_eq(l.kind, k);
	if (k == CBV_CALLOUT_LINE_BAD)
		return;
	ck_assert_str_eq(l.id, row->id);
	ck_assert_str_eq(l.tag, row->tag);
	ck_assert_uint_eq(l.text_len, strlen(row->text));
	ck_assert(memcmp(l.text, row->text, l.text_len) == 0);
}
END_TEST

struct final_row {
	const char *text, *id;
	int rc;
	const char *word;
};

static const struct final_row final_rows[] = {
	{ "0000000000=success", "0000000000", 1, "success" },
	{ "0000000001=not_found", "0000000001", 1, "not_found" },
	{ "0000000004=failure 0000000005=temp_failure", "0000000005", 1, "temp_failure" },
	{ "0000000004=failure 0000000005=temp_failure", "0000000004", 1, "failure" },
	{ "0000000004=failure 0000000005=timeout", "0000000005", 1, "timeout" },
	{ "0000000004=failure", "0000000005", 0, NULL },
	{ "", "0000000005", 0, NULL },
	{ "0000000004=failure", "000000000", 0, NULL },
	{ "0000000005=maybe", "0000000005", -1, NULL },
	{ "0000000005=successful", "0000000005", -1, NULL },
	{ "0000000005=", "0000000005", -1, NULL },
	{ "0000000005", "0000000005", -1, NULL },
	{ "x=success", "0000000005", -1, NULL },
	{ "bye", "0000000005", -1, NULL },
	{ "timeouts set", "1", -1, NULL },
	/* found, then a broken pair: the whole line is refused (fuzz_callout) */
	{ "0000000005=success 00000\xcf", "0000000005", -1, NULL },
	/* words of other jobs are not ours to judge */
	{ "0000000005=failure 7=x", "0000000005", 1, "failure" },
};

START_TEST(test_final)
{
	const struct final_row *row = &final_rows[_i];
	const char *word = "x";
	int rc = cbv_callout_final_parse(row->text, strlen(row->text), row->id, &word);

	ck_assert_msg(rc == row->rc, "%s: rc %d, want %d", row->text, rc, row->rc);
	if (rc == 1)
		ck_assert_str_eq(word, row->word);
	else
		ck_assert_ptr_null(word);
}
END_TEST

START_TEST(test_word_verdict)
{
	ck_assert_int_eq(cbv_callout_word_verdict("success"), CBV_PASS);
	ck_assert_int_eq(cbv_callout_word_verdict("not_found"), CBV_FAIL);
	ck_assert_int_eq(cbv_callout_word_verdict("temp_failure"), CBV_TRANSIENT);
	ck_assert_int_eq(cbv_callout_word_verdict("timeout"), CBV_TRANSIENT);
	ck_assert_int_eq(cbv_callout_word_verdict("failure"), CBV_ERROR);
}
END_TEST

/* ---- live sessions against a scripted server ------------------------- */

/*
 * A script is the greeting, then for each line the client sends the
 * prefix it must start with and the bytes to answer ("" = say nothing;
 * NULL expect ends the script and the server closes).  A wrong request
 * makes the child answer "NO script mismatch" and exit 1.
 */
struct step {
	const char *expect;
	const char *reply;
};

struct script {
	const char *name;
	const char *greeting; /* sent at accept, raw */
	struct step steps[12];
};

static char sock_dir[64], sock_path[128], url[160];
static pid_t child = -1;

static ssize_t read_req(int fd, char *buf, size_t n)
{
	size_t len = 0;

	while (len + 1 < n) {
		ssize_t r = read(fd, buf + len, 1);

		if (r <= 0)
			return -1;
		if (buf[len] == '\n') {
			buf[len] = '\0';
			if (len > 0 && buf[len - 1] == '\r')
				buf[len - 1] = '\0';
			return (ssize_t)len;
		}
		len++;
	}
	return -1;
}

static void serve(int lfd, const struct script *sc)
{
	int fd = accept(lfd, NULL, NULL);
	char req[4096];

	if (fd < 0)
		_exit(2);
	if (sc->greeting[0] != '\0' && write(fd, sc->greeting, strlen(sc->greeting)) < 0)
		_exit(2);
	for (int i = 0; sc->steps[i].expect != NULL; i++) {
		const struct step *st = &sc->steps[i];

		if (read_req(fd, req, sizeof(req)) < 0)
			_exit(3);
		if (strncmp(req, st->expect, strlen(st->expect)) != 0) {
			dprintf(fd, "NO script mismatch\r\n");
			fprintf(stderr, "%s: step %d: got \"%s\", want \"%s\"\n", sc->name, i, req,
			        st->expect);
			_exit(1);
		}
		if (strcmp(st->reply, "SLEEP") == 0) {
			sleep(5);
			_exit(0);
		}
		if (st->reply[0] != '\0' && write(fd, st->reply, strlen(st->reply)) < 0)
			_exit(2);
	}
	/* End of script: EOF to the client, then wait for it to close. */
	shutdown(fd, SHUT_WR);
	while (read(fd, req, sizeof(req)) > 0)
		;
	_exit(0);
}

static void start_server(const struct script *sc)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int lfd;

	snprintf(sock_dir, sizeof(sock_dir), "/tmp/check_callout.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(sock_dir));
	snprintf(sock_path, sizeof(sock_path), "%s/s", sock_dir);
	snprintf(url, sizeof(url), "unix://%s", sock_path);
	ck_assert_uint_lt(strlen(sock_path), sizeof(sun.sun_path));
	memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(lfd, 4), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		/* Check's own SIGTERM handler would kill the whole group. */
		signal(SIGTERM, SIG_DFL);
		serve(lfd, sc);
	}
	close(lfd);
}

/* Returns the child's exit status (0 = script followed). */
static int stop_server(void)
{
	int status = 0;

	if (child > 0) {
		int64_t end = cbv_now_ms() + 2000;
		pid_t w;

		/* Give the script time to end by itself; then stop it. */
		while ((w = waitpid(child, &status, WNOHANG)) == 0 && cbv_now_ms() < end)
			usleep(2000);
		if (w == 0) {
			kill(child, SIGKILL);
			waitpid(child, &status, 0);
		}
		child = -1;
	}
	unlink(sock_path);
	rmdir(sock_dir);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define GREET "OK mailfromd callout server ready\r\n"

/* Real calloutd 8.15 output for a pass (docs/callout-protocol.md). */
static const struct script sc_pass = {
	"pass", GREET,
	{ { "SID cbv:test", "OK\r\n" },
	  { "SET EHLO=\"verifier.test\"", "OK\r\n" },
	  { "VRFY \"alice@exim.test\"", "OK 0000000000\r\n" },
	  { "RUN", "* 0000000000 INIT mx.exim.test\r\n"
	           "* 0000000000 GRTNG 220 mx.exim.test ESMTP Exim 4.96\r\n"
	           "* 0000000000 HELO 250-mx.exim.test Hello verifier.test [127.0.0.1]\r\n"
	           "* 0000000000 SENT RCPT TO:<alice@exim.test>\r\n"
	           "* 0000000000 RECV 250 Accepted\r\n"
	           "OK 0000000000=success\r\n" },
	  { "VRFY \"nobody@exim.test\" MODE=hostonly HOST=\"mx.exim.test\"", "OK 0000000001\r\n" },
	  { "RUN", "* 0000000001 INIT mx.exim.test\r\n"
	           "* 0000000001 GRTNG 220 mx.exim.test ESMTP Exim 4.96\r\n"
	           "* 0000000001 HELO 250-mx.exim.test Hello verifier.test [127.0.0.1]\r\n"
	           "* 0000000001 SENT RCPT TO:<nobody@exim.test>\r\n"
	           "* 0000000001 RECV 550 5.1.1 <nobody@exim.test>: no such user here\r\n"
	           "OK 0000000001=not_found\r\n" },
	  { "QUIT", "OK bye\r\n" },
	  { NULL, NULL } }
};

START_TEST(test_live_pass_fail)
{
	struct cbv_callout *c = NULL;
	struct cbv_result *r = NULL;
	struct cbv_err err;

	start_server(&sc_pass);
	ck_assert_int_eq(cbv_callout_open(url, 2000, &c, &err), CBV_OK);
	ck_assert_str_eq(cbv_callout_greeting(c), "mailfromd callout server ready");
	ck_assert_int_ge(cbv_callout_fd(c), 0);
	ck_assert_int_eq(cbv_callout_sid(c, "cbv:test", 2000, &err), CBV_OK);
	ck_assert_int_eq(cbv_callout_set(c, "EHLO", "verifier.test", 2000, &err), CBV_OK);
	ck_assert_int_eq(cbv_callout_verify(c, "alice@exim.test", NULL, 2000, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_PASS);
	ck_assert_str_eq(cbv_reason_name(r->reason), "accepted");
	ck_assert_str_eq(r->host, "mx.exim.test");
	ck_assert_str_eq(r->greeting, "220 mx.exim.test ESMTP Exim 4.96");
	ck_assert_str_eq(r->helo, "250-mx.exim.test Hello verifier.test [127.0.0.1]");
	ck_assert_str_eq(r->sent, "RCPT TO:<alice@exim.test>");
	ck_assert_str_eq(r->recv, "250 Accepted");
	ck_assert_str_eq(r->message, "250 Accepted");
	ck_assert_int_eq(r->code, 250);
	ck_assert_int_eq(r->cache, 0);
	ck_assert_uint_eq(r->hosts_tried, 1);
	cbv_result_free(r);
	ck_assert_int_eq(cbv_callout_verify(c, "nobody@exim.test", "mode=hostonly host=mx.exim.test",
	                                    2000, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_FAIL);
	ck_assert_str_eq(cbv_reason_name(r->reason), "mailbox_unknown");
	ck_assert_int_eq(r->code, 550);
	ck_assert_str_eq(r->ecode, "5.1.1");
	ck_assert_str_eq(r->message, "550 5.1.1 <nobody@exim.test>: no such user here");
	cbv_result_free(r);
	cbv_callout_close(c, 2000);
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

/* Leftover jobs of the session (calloutd re-runs failed ones), a cached
 * answer, "nothing" placeholders, a bare-LF NO, DROP after temp_failure. */
static const struct script sc_queue = {
	"queue", GREET,
	{ { "VRFY \"x@refused.test\"", "OK 0000000005\r\n" },
	  { "RUN", "* 0000000004 INIT mx.other.test\r\n"
	           "* 0000000005 INIT mx.refused.test\r\n"
	           "* 0000000005 SENT nothing\r\n"
	           "* 0000000005 RECV nothing\r\n"
	           "OK 0000000004=failure 0000000005=temp_failure\r\n" },
	  { "DROP 0000000005", "OK\r\n" },
	  { "VRFY \"alice@exim.test\"", "OK 0000000006\r\n" },
	  { "RUN", "OK 0000000006=success\r\n" },
	  { "SET FOO", "NO bad assignment FOO\n" },
	  { NULL, NULL } }
};

START_TEST(test_live_queue_cache)
{
	struct cbv_callout *c = NULL;
	struct cbv_result *r = NULL;
	struct cbv_err err;

	start_server(&sc_queue);
	ck_assert_int_eq(cbv_callout_open(url, 2000, &c, &err), CBV_OK);
	ck_assert_int_eq(cbv_callout_verify(c, "x@refused.test", "", 2000, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_TRANSIENT);
	ck_assert_str_eq(cbv_reason_name(r->reason), "connect_failed");
	ck_assert_str_eq(r->host, "mx.refused.test");
	ck_assert_str_eq(r->sent, "");
	ck_assert_str_eq(r->recv, "");
	ck_assert_int_eq(r->code, 451);
	ck_assert_ptr_nonnull(strstr(r->message, "temp_failure"));
	cbv_result_free(r);
	ck_assert_int_eq(cbv_callout_verify(c, "alice@exim.test", NULL, 2000, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_PASS);
	ck_assert_int_eq(r->cache, 1);
	ck_assert_str_eq(r->host, "");
	ck_assert_str_eq(r->message, "250 2.1.5 callout server: success");
	cbv_result_free(r);
	/* we refuse unknown SET names ourselves: nothing is sent */
	ck_assert_int_eq(cbv_callout_set(c, "FOO", "1", 2000, &err), CBV_EINVAL);
	cbv_callout_free(c);
	stop_server();
}
END_TEST

/* A peer that is not a callout server, and protocol violations. */
struct proto_row {
	struct script sc;
	enum cbv_status st; /* of open (greeting) or of verify */
	int at_open;
	const char *msg;    /* substring of err.msg */
};

static const struct proto_row proto_rows[] = {
	{ { "smtp", "220 mx.example ESMTP\r\n", { { NULL, NULL } } }, CBV_EPROTO, 1,
	  "e_callout_proto: " },
	{ { "closed", "", { { NULL, NULL } } }, CBV_ECONNECT, 1, "closed" },
	{ { "long", "OK aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    { { NULL, NULL } } }, CBV_ECONNECT, 1, "closed during greeting" },
	{ { "vrfy-no", GREET, { { "VRFY", "NO mode requires host\r\n" }, { NULL, NULL } } },
	  CBV_EPROTO, 0, "e_callout_proto: " },
	{ { "vrfy-noid", GREET, { { "VRFY", "OK\r\n" }, { NULL, NULL } } },
	  CBV_EPROTO, 0, "expected OK ID" },
	{ { "run-missing", GREET, { { "VRFY", "OK 1\r\n" }, { "RUN", "OK 2=success\r\n" },
	                            { NULL, NULL } } },
	  CBV_EPROTO, 0, "no result for job 1" },
	{ { "run-word", GREET, { { "VRFY", "OK 1\r\n" }, { "RUN", "OK 1=perhaps\r\n" },
	                         { NULL, NULL } } },
	  CBV_EPROTO, 0, "malformed result" },
	{ { "run-garbage", GREET, { { "VRFY", "OK 1\r\n" }, { "RUN", "* 1 INIT x\r\n\x01\x02\r\n" },
	                            { NULL, NULL } } },
	  CBV_EPROTO, 0, "e_callout_proto: " },
	{ { "run-closed", GREET, { { "VRFY", "OK 1\r\n" }, { "RUN", "* 1 INIT x\r\n" },
	                           { NULL, NULL } } },
	  CBV_ECONNECT, 0, "closed during RUN" },
	{ { "run-silent", GREET, { { "VRFY", "OK 1\r\n" }, { "RUN", "SLEEP" }, { NULL, NULL } } },
	  CBV_ETIMEOUT, 0, "timed out during RUN" },
	{ { "run-no", GREET, { { "VRFY", "OK 1\r\n" }, { "RUN", "NO cannot parse line\r\n" },
	                       { NULL, NULL } } },
	  CBV_EPROTO, 0, "NO cannot parse line" },
};

START_TEST(test_proto)
{
	const struct proto_row *row = &proto_rows[_i];
	struct cbv_callout *c = NULL;
	struct cbv_result *r = (struct cbv_result *)1;
	struct cbv_err err;
	enum cbv_status st;
	int64_t t0 = cbv_now_ms();

	start_server(&row->sc);
	st = cbv_callout_open(url, 500, &c, &err);
	if (!row->at_open) {
		ck_assert_int_eq(st, CBV_OK);
		st = cbv_callout_verify(c, "a@b.test", NULL, 500, &r, &err);
		ck_assert_ptr_null(r);
	} else {
		ck_assert_ptr_null(c);
	}
	ck_assert_msg(st == row->st, "%s: status %d, want %d (%s)", row->sc.name, st, row->st,
	              err.msg);
	ck_assert_msg(strstr(err.msg, row->msg) != NULL, "%s: \"%s\" lacks \"%s\"", row->sc.name,
	              err.msg, row->msg);
	/* the deadline holds: 500 ms, some slack for a loaded machine */
	ck_assert_int_lt(cbv_now_ms() - t0, 1500);
	cbv_callout_free(c);
	stop_server();
}
END_TEST

START_TEST(test_bad_requests)
{
	struct cbv_callout *c = NULL;
	struct cbv_result *r = NULL;
	struct cbv_err err;
	static const struct script sc = { "bad", GREET, { { "QUIT", "OK bye\r\n" }, { NULL, NULL } } };

	start_server(&sc);
	ck_assert_int_eq(cbv_callout_open(url, 2000, &c, &err), CBV_OK);
	/* none of these reach the server: the script expects QUIT next */
	ck_assert_int_eq(cbv_callout_verify(c, "a@b.test\r\nRUN", NULL, 500, &r, &err), CBV_EINVAL);
	ck_assert_int_eq(cbv_callout_verify(c, "", NULL, 500, &r, &err), CBV_EINVAL);
	ck_assert_int_eq(cbv_callout_verify(c, "a@b.test", "HOST=a\nRUN", 500, &r, &err), CBV_EINVAL);
	ck_assert_int_eq(cbv_callout_verify(c, "a@b.test", "X=1", 500, &r, &err), CBV_EINVAL);
	ck_assert_int_eq(cbv_callout_set(c, "EHLO", "a\r\nRUN", 500, &err), CBV_EINVAL);
	ck_assert_int_eq(cbv_callout_sid(c, "a b", 500, &err), CBV_EINVAL);
	ck_assert_int_eq(cbv_callout_sid(c, "", 500, &err), CBV_EINVAL);
	ck_assert_ptr_null(r);
	cbv_callout_close(c, 2000);
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

/* A line longer than CBV_CALLOUT_LINE_MAX is a protocol error, not a realloc. */
START_TEST(test_line_too_long)
{
	static char greeting[CBV_CALLOUT_LINE_MAX + 64];
	static struct script sc = { "toolong", greeting, { { NULL, NULL } } };
	struct cbv_callout *c = NULL;
	struct cbv_err err;

	memcpy(greeting, "OK ", 3);
	memset(greeting + 3, 'a', sizeof(greeting) - 6);
	memcpy(greeting + sizeof(greeting) - 3, "\r\n", 3);
	start_server(&sc);
	ck_assert_int_eq(cbv_callout_open(url, 2000, &c, &err), CBV_EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "e_callout_proto: "));
	ck_assert_ptr_nonnull(strstr(err.msg, "too long"));
	ck_assert_ptr_null(c);
	stop_server();
}
END_TEST

START_TEST(test_connect_fail)
{
	struct cbv_callout *c = (struct cbv_callout *)1;
	struct cbv_err err;

	ck_assert_int_eq(cbv_callout_open("unix:///nonexistent/cbvd.sock", 500, &c, &err),
	                 CBV_ECONNECT);
	ck_assert_ptr_null(c);
	ck_assert_int_eq(cbv_callout_open("bogus://x", 500, &c, &err), CBV_EINVAL);
	cbv_callout_close(NULL, 0);
	cbv_callout_free(NULL);
}
END_TEST

/* OOM: fail the Nth allocation; expect CBV_ENOMEM, then success. */
START_TEST(test_oom)
{
	static const struct script sc = {
		"oom", GREET,
		{ { "VRFY", "OK 1\r\n" },
		  { "RUN", "* 1 INIT mx\r\n* 1 GRTNG 220 x\r\n* 1 HELO 250 x\r\n* 1 SENT RCPT\r\n"
		           "* 1 RECV 250 ok\r\nOK 1=success\r\n" },
		  { NULL, NULL } }
	};
	int ok = 0;

	for (long n = 0; n < 64 && !ok; n++) {
		struct cbv_callout *c = NULL;
		struct cbv_result *r = NULL;
		struct cbv_err err;
		enum cbv_status st;

		start_server(&sc);
		cbv_alloc_fail_after(n);
		st = cbv_callout_open(url, 2000, &c, &err);
		if (st == CBV_OK)
			st = cbv_callout_verify(c, "a@b.test", NULL, 2000, &r, &err);
		cbv_alloc_fail_after(-1);
		ck_assert_msg(st == CBV_OK || st == CBV_ENOMEM, "n=%ld: %d %s", n, st, err.msg);
		if (st == CBV_OK) {
			ck_assert_str_eq(r->recv, "250 ok");
			ok = 1;
		} else {
			ck_assert_ptr_null(r);
		}
		cbv_result_free(r);
		cbv_callout_free(c);
		stop_server();
	}
	ck_assert(ok);
}
END_TEST

/*
 * Against a real callout server (tests/integration/t_calloutd.sh sets
 * CBV_CALLOUTD_URL to Debian's calloutd inside the rig): one session,
 * pass, fail, transient, with the last poll fields checked.
 */
START_TEST(test_calloutd)
{
	const char *u = getenv("CBV_CALLOUTD_URL");
	struct cbv_callout *c = NULL;
	struct cbv_result *r = NULL;
	struct cbv_err err;

	if (u == NULL)
		return; /* not inside the interop test */
	ck_assert_msg(cbv_callout_open(u, 5000, &c, &err) == CBV_OK, "%s", err.msg);
	ck_assert_str_eq(cbv_callout_greeting(c), "mailfromd callout server ready");
	ck_assert_int_eq(cbv_callout_sid(c, "127.0.0.1:check", 5000, &err), CBV_OK);
	ck_assert_int_eq(cbv_callout_set(c, "TRANSCRIPT", "OFF", 5000, &err), CBV_OK);
	ck_assert_int_eq(cbv_callout_set(c, "STARTTLS", "never", 5000, &err), CBV_OK);
	ck_assert_int_eq(cbv_callout_set(c, "EHLO", "core.verifier.test", 5000, &err), CBV_OK);
	ck_assert_int_eq(cbv_callout_set(c, "MAILFROM", "<>", 5000, &err), CBV_OK);

	/* addresses no other interop case asks: calloutd caches answers */
	ck_assert_msg(cbv_callout_verify(c, "bob@grey.test", NULL, 30000, &r, &err) == CBV_OK,
	              "%s", err.msg);
	ck_assert_int_eq(r->verdict, CBV_PASS);
	ck_assert_str_eq(r->host, "mx1.grey.test");
	ck_assert_ptr_nonnull(strstr(r->greeting, "220 mx.exim.test ESMTP Exim"));
	ck_assert_ptr_nonnull(strstr(r->helo, "Hello core.verifier.test"));
	ck_assert_str_eq(r->sent, "RCPT TO:<bob@grey.test>");
	ck_assert_str_eq(r->recv, "250 Accepted");
	ck_assert_int_eq(r->cache, 0);
	cbv_result_free(r);

	ck_assert_int_eq(cbv_callout_verify(c, "dave@grey.test", NULL, 30000, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_FAIL);
	ck_assert_str_eq(cbv_reason_name(r->reason), "mailbox_unknown");
	ck_assert_str_eq(r->ecode, "5.1.1");
	ck_assert_ptr_nonnull(strstr(r->recv, "550 5.1.1"));
	cbv_result_free(r);

	/* a temp failure, then a pass on the same connection: our job ids
	 * are picked out of calloutd's queue report, and DROP keeps the
	 * failed job from being run again */
	ck_assert_int_eq(cbv_callout_verify(c, "core@mid421.test", NULL, 30000, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_TRANSIENT);
	ck_assert_str_eq(r->sent, "MAIL FROM:<>");
	ck_assert_ptr_nonnull(strstr(r->recv, "421 4.3.2"));
	cbv_result_free(r);
	ck_assert_int_eq(cbv_callout_verify(c, "core@fast.test", "MODE=hostonly HOST=127.0.0.30",
	                                    30000, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_PASS);
	ck_assert_str_eq(r->host, "127.0.0.30");
	ck_assert_uint_eq(r->hosts_tried, 1);
	cbv_result_free(r);

	/* a refused request is e_callout_proto */
	ck_assert_int_eq(cbv_callout_verify(c, "y@fast.test", "MODE=mxonly", 30000, &r, &err),
	                 CBV_EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "e_callout_proto: "));
	ck_assert_ptr_nonnull(strstr(err.msg, "mode requires host"));
	cbv_callout_close(c, 5000);
}
END_TEST

/* ---- cbvd's XCBV extension, the kept connection, STARTTLS words ---- */

#define XGREET "OK mailfromd callout server ready (cbvd 0.1.0 XCBV)\r\n"

/* cbvd: a pipelined MAIL 550 5.7.1; XCBV carries its own result. */
static const struct script sc_xcbv = {
	"xcbv", XGREET,
	{ { "VRFY \"x@nullsender.test\"", "OK 0000000000\r\n" },
	  { "RUN", "* 0000000000 INIT mx.nullsender.test\r\n"
	           "* 0000000000 SENT MAIL FROM:<>\r\n"
	           "* 0000000000 RECV 550 5.7.1 Null sender refused\r\n"
	           "* 0000000000 XCBV status error\r\n"
	           "* 0000000000 XCBV reason sender_refused\r\n"
	           "* 0000000000 XCBV code 550\r\n"
	           "* 0000000000 XCBV ecode 5.7.1\r\n"
	           "* 0000000000 XCBV elapsed 42\r\n"
	           "* 0000000000 XCBV tried 1\r\n"
	           "* 0000000000 XCBV ip 127.0.0.28:25\r\n"
	           "* 0000000000 XCBV message 550-5.7.1 Null sender refused\r\n"
	           "* 0000000000 XCBV message 550 5.7.1 second line\r\n"
	           "* 0000000000 XCBV sent MAIL FROM:<>\r\n"
	           "* 0000000000 XCBV recv 550-5.7.1 Null sender refused\r\n"
	           "* 0000000000 XCBV recv 550 5.7.1 second line\r\n"
	           "* 0000000000 XCBV future-key whatever\r\n"
	           "OK 0000000000=failure\r\n" },
	  { "DROP 0000000000", "NO unknown command\r\n" },
	  /* contradicting: XCBV says pass, the word says not_found */
	  { "VRFY \"y@exim.test\"", "OK 0000000001\r\n" },
	  { "RUN", "* 0000000001 SENT RCPT TO:<y@exim.test>\r\n"
	           "* 0000000001 RECV 550 5.1.8 sender rejected\r\n"
	           "* 0000000001 XCBV status pass\r\n"
	           "* 0000000001 XCBV reason accepted\r\n"
	           "OK 0000000001=not_found\r\n" },
	  { "QUIT", "OK bye\r\n" },
	  { NULL, NULL } }
};

START_TEST(test_xcbv)
{
	struct cbv_callout *c = NULL;
	struct cbv_result *r = NULL;
	struct cbv_err err;

	start_server(&sc_xcbv);
	ck_assert_int_eq(cbv_callout_open(url, 2000, &c, &err), CBV_OK);
	ck_assert_int_eq(cbv_callout_extended(c), 1);
	ck_assert_int_eq(cbv_callout_verify(c, "x@nullsender.test", NULL, 2000, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_ERROR);
	ck_assert_str_eq(cbv_reason_name(r->reason), "sender_refused");
	ck_assert_int_eq(r->code, 550);
	ck_assert_str_eq(r->ecode, "5.7.1");
	ck_assert_uint_eq(r->elapsed_ms, 42);
	ck_assert_str_eq(r->ip, "127.0.0.28:25");
	ck_assert_str_eq(r->message, "550-5.7.1 Null sender refused\n550 5.7.1 second line");
	ck_assert_str_eq(r->recv, "550-5.7.1 Null sender refused\n550 5.7.1 second line");
	ck_assert_str_eq(r->sent, "MAIL FROM:<>");
	cbv_result_free(r);
	/* The one mapping on calloutd's lines: RCPT 550 5.1.8 is the sender. */
	ck_assert_int_eq(cbv_callout_verify(c, "y@exim.test", NULL, 2000, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_FAIL);
	ck_assert_str_eq(cbv_reason_name(r->reason), "sender_refused");
	ck_assert_str_eq(r->ecode, "5.1.8");
	cbv_result_free(r);
	cbv_callout_close(c, 2000);
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

/* calloutd's lines alone: the stage from SENT, the reply's own ecode rules. */
static const struct script sc_mapping = {
	"mapping", GREET,
	{ { "VRFY \"x@greet554.test\"", "OK 0000000000\r\n" },
	  { "RUN", "* 0000000000 INIT mx.greet554.test\r\n"
	           "* 0000000000 GRTNG 554 5.3.2 No service here\r\n"
	           "* 0000000000 SENT nothing\r\n"
	           "* 0000000000 RECV 554 5.3.2 No service here\r\n"
	           "OK 0000000000=not_found\r\n" },
	  { "VRFY \"x@policy.test\"", "OK 0000000001\r\n" },
	  { "RUN", "* 0000000001 SENT MAIL FROM:<>\r\n"
	           "* 0000000001 RECV 530 5.7.0 Must issue a STARTTLS command first\r\n"
	           "OK 0000000001=not_found\r\n" },
	  { "VRFY \"x@weird.test\"", "OK 0000000002\r\n" },
	  { "RUN", "* 0000000002 SENT RCPT TO:<x@weird.test>\r\n"
	           "* 0000000002 RECV 550 5..1 odd\r\n"
	           "OK 0000000002=not_found\r\n" },
	  { "QUIT", "OK bye\r\n" },
	  { NULL, NULL } }
};

START_TEST(test_calloutd_mapping)
{
	struct cbv_callout *c = NULL;
	struct cbv_result *r = NULL;
	struct cbv_err err;

	start_server(&sc_mapping);
	ck_assert_int_eq(cbv_callout_open(url, 2000, &c, &err), CBV_OK);
	ck_assert_int_eq(cbv_callout_extended(c), 0);
	ck_assert_int_eq(cbv_callout_verify(c, "x@greet554.test", NULL, 2000, &r, &err), CBV_OK);
	ck_assert_str_eq(cbv_reason_name(r->reason), "greeting_refused");
	ck_assert_str_eq(r->message, "554 5.3.2 No service here");
	ck_assert_str_eq(r->sent, "");
	cbv_result_free(r);
	ck_assert_int_eq(cbv_callout_verify(c, "x@policy.test", NULL, 2000, &r, &err), CBV_OK);
	ck_assert_str_eq(cbv_reason_name(r->reason), "tls_required");
	cbv_result_free(r);
	ck_assert_int_eq(cbv_callout_verify(c, "x@weird.test", NULL, 2000, &r, &err), CBV_OK);
	ck_assert_str_eq(r->ecode, ""); /* "5..1" is no enhanced code */
	ck_assert_str_eq(cbv_reason_name(r->reason), "mailbox_unknown");
	cbv_result_free(r);
	cbv_callout_close(c, 2000);
	ck_assert_int_eq(stop_server(), 0);
}
END_TEST

START_TEST(test_starttls_words)
{
	ck_assert_str_eq(cbv_callout_starttls_word(CBV_STARTTLS_NEVER, 0), "never");
	ck_assert_str_eq(cbv_callout_starttls_word(CBV_STARTTLS_OPPORTUNISTIC, 0), "always");
	ck_assert_str_eq(cbv_callout_starttls_word(CBV_STARTTLS_ONDEMAND, 0), "ondemand");
	ck_assert_ptr_null(cbv_callout_starttls_word(CBV_STARTTLS_REQUIRE, 0));
	ck_assert_str_eq(cbv_callout_starttls_word(CBV_STARTTLS_NEVER, 1), "never");
	ck_assert_str_eq(cbv_callout_starttls_word(CBV_STARTTLS_OPPORTUNISTIC, 1), "opportunistic");
	ck_assert_str_eq(cbv_callout_starttls_word(CBV_STARTTLS_ONDEMAND, 1), "ondemand");
	ck_assert_str_eq(cbv_callout_starttls_word(CBV_STARTTLS_REQUIRE, 1), "require");
}
END_TEST

/* require against calloutd: refused before any SET STARTTLS is sent. */
static const struct script sc_require_calloutd = {
	"require-calloutd", GREET,
	{ { "SID s1", "OK\r\n" }, { NULL, NULL } }
};

/* require against cbvd: sent exactly; then the slot verifies. */
static const struct script sc_require_cbvd = {
	"require-cbvd", XGREET,
	{ { "SID s1", "OK\r\n" },
	  { "SET STARTTLS=\"require\"", "OK\r\n" },
	  { "SET EHLO=\"verifier.test\"", "OK\r\n" },
	  { "SET MAILFROM=\"<>\"", "OK\r\n" },
	  { "VRFY \"a@fast.test\"", "OK 0000000000\r\n" },
	  { "RUN", "* 0000000000 XCBV status error\r\n"
	           "* 0000000000 XCBV reason tls_required\r\n"
	           "* 0000000000 XCBV code 530\r\n"
	           "* 0000000000 XCBV message 530 5.7.10 no STARTTLS\r\n"
	           "OK 0000000000=failure\r\n" },
	  { "DROP 0000000000", "OK\r\n" },
	  { "QUIT", "OK bye\r\n" },
	  { NULL, NULL } }
};

START_TEST(test_slot_require)
{
	struct cbv_profile p;
	struct cbv_callout_slot *s;
	struct cbv_result *r = NULL;
	struct cbv_err err;

	cbv_profile_defaults(&p);
	ck_assert_int_eq(cbv_profile_set(&p, "starttls", "require", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(&p, "helo", "verifier.test", &err), CBV_OK);

	start_server(&sc_require_calloutd);
	s = cbv_callout_slot_new(url, "s1", &err);
	ck_assert_ptr_nonnull(s);
	cbv_callout_slot_configure(s, &p, NULL, NULL, 0);
	ck_assert_int_eq(cbv_callout_slot_verify(s, "a@fast.test", NULL, &r, &err), CBV_ECONFIG);
	ck_assert_ptr_null(r);
	ck_assert_msg(strstr(err.msg, "require") != NULL, "%s", err.msg);
	cbv_callout_slot_free(s, 0);
	ck_assert_int_eq(stop_server(), 0);

	start_server(&sc_require_cbvd);
	s = cbv_callout_slot_new(url, "s1", &err);
	ck_assert_ptr_nonnull(s);
	cbv_callout_slot_configure(s, &p, NULL, NULL, 0);
	ck_assert_int_eq(cbv_callout_slot_verify(s, "a@fast.test", NULL, &r, &err), CBV_OK);
	ck_assert_str_eq(cbv_reason_name(r->reason), "tls_required");
	ck_assert_int_eq(r->verdict, CBV_ERROR);
	cbv_result_free(r);
	cbv_callout_slot_free(s, 2000);
	ck_assert_int_eq(stop_server(), 0);
	cbv_profile_clear(&p);
}
END_TEST

/* OOM through the kept connection and the XCBV lines: ENOMEM, no leak. */
START_TEST(test_oom_slot)
{
	static const struct script sc = {
		"oom-slot", XGREET,
		{ { "SET STARTTLS", "OK\r\n" },
		  { "SET EHLO", "OK\r\n" },
		  { "SET MAILFROM", "OK\r\n" },
		  { "VRFY", "OK 1\r\n" },
		  { "RUN", "* 1 INIT mx\r\n* 1 SENT RCPT\r\n* 1 RECV 250 ok\r\n"
		           "* 1 XCBV status pass\r\n* 1 XCBV reason accepted\r\n"
		           "* 1 XCBV message 250-ok\r\n* 1 XCBV message 250 ok\r\n"
		           "* 1 XCBV recv 250 ok\r\nOK 1=success\r\n" },
		  { NULL, NULL } }
	};
	struct cbv_profile p;
	int ok = 0;

	cbv_profile_defaults(&p);
	for (long n = 0; n < 96 && !ok; n++) {
		struct cbv_callout_slot *s;
		struct cbv_result *r = NULL;
		struct cbv_err err;
		enum cbv_status st = CBV_ENOMEM;

		start_server(&sc);
		cbv_alloc_fail_after(n);
		s = cbv_callout_slot_new(url, NULL, &err);
		if (s != NULL) {
			cbv_callout_slot_configure(s, &p, NULL, "h.test", 0);
			st = cbv_callout_slot_verify(s, "a@b.test", NULL, &r, &err);
		}
		cbv_alloc_fail_after(-1);
		ck_assert_msg(st == CBV_OK || st == CBV_ENOMEM, "n=%ld: %d %s", n, st, err.msg);
		if (st == CBV_OK) {
			ck_assert_str_eq(r->message, "250-ok\n250 ok");
			ok = 1;
		} else {
			ck_assert_ptr_null(r);
		}
		cbv_result_free(r);
		cbv_callout_slot_free(s, 0);
		stop_server();
	}
	ck_assert(ok);
	cbv_profile_clear(&p);
}
END_TEST

/* A server that is gone: a synthesized transient result, elapsed set. */
START_TEST(test_slot_gone)
{
	struct cbv_profile p;
	struct cbv_callout_slot *s;
	struct cbv_result *r = NULL;
	struct cbv_err err;

	cbv_profile_defaults(&p);
	s = cbv_callout_slot_new("unix:///nonexistent/cbvd.sock", NULL, &err);
	ck_assert_ptr_nonnull(s);
	cbv_callout_slot_configure(s, &p, NULL, "h.test", 0);
	ck_assert_int_eq(cbv_callout_slot_verify(s, "a@fast.test", NULL, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_TRANSIENT);
	ck_assert_str_eq(cbv_reason_name(r->reason), "connect_failed");
	ck_assert_str_eq(r->address, "a@fast.test");
	ck_assert_int_eq(r->code, 451);
	cbv_result_free(r);
	cbv_callout_slot_free(s, 0);
	cbv_profile_clear(&p);
}
END_TEST

static Suite *callout_suite(void)
{
	Suite *s = suite_create("callout");
	TCase *tc;

	tc = tcase_create("url");
	tcase_add_loop_test(tc, test_url, 0, NROWS(url_rows));
	tcase_add_test(tc, test_url_null_and_long);
	suite_add_tcase(s, tc);
	tc = tcase_create("rest");
	tcase_add_loop_test(tc, test_rest, 0, NROWS(rest_rows));
	tcase_add_test(tc, test_rest_bounds);
	tcase_add_test(tc, test_rest_keys);
	suite_add_tcase(s, tc);
	tc = tcase_create("line");
	tcase_add_loop_test(tc, test_line, 0, NROWS(line_rows));
	tcase_add_loop_test(tc, test_final, 0, NROWS(final_rows));
	tcase_add_test(tc, test_word_verdict);
	suite_add_tcase(s, tc);
	tc = tcase_create("live");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_live_pass_fail);
	tcase_add_test(tc, test_live_queue_cache);
	tcase_add_loop_test(tc, test_proto, 0, NROWS(proto_rows));
	tcase_add_test(tc, test_bad_requests);
	tcase_add_test(tc, test_line_too_long);
	tcase_add_test(tc, test_connect_fail);
	tcase_add_test(tc, test_oom);
	tcase_add_test(tc, test_xcbv);
	tcase_add_test(tc, test_calloutd_mapping);
	tcase_add_test(tc, test_starttls_words);
	tcase_add_test(tc, test_slot_require);
	tcase_add_test(tc, test_slot_gone);
	tcase_add_test(tc, test_oom_slot);
	suite_add_tcase(s, tc);
	tc = tcase_create("calloutd");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_calloutd);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(callout_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
