/*
 * check_verify.c - cbv_verify() against the loopback rig (tests/rig):
 * dnsmasq, a real Exim MX and the scripted hostile servers.  Run inside
 * `tests/rig/rig.sh run`, which exports CBV_RIG_DNS, CBV_RIG_PORT,
 * CBV_RIG_DIR.  One row per verdict case of DESIGN.md and the core issue.
 */
#include <check.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cbv.h"
#include "cbv_hold.h"

struct row {
	const char *address;
	const char *sender;   /* NULL: profile's */
	const char *opts;     /* "key=value;key=value" applied over the rig profile */
	enum cbv_verdict verdict;
	const char *reason;
	int tls;              /* 1: TLS must have been used, 0: must not, -1: either */
	int no_connect;       /* 1: no host may have been contacted */
};

static const struct row rows[] = {
	{ "alice@exim.test", NULL, "", CBV_PASS, "accepted", 1, 0 },
	{ "Alice@EXIM.test", NULL, "", CBV_PASS, "accepted", 1, 0 },
	{ "nobody@exim.test", NULL, "", CBV_FAIL, "mailbox_unknown", 1, 0 },
	{ "grey@exim.test", NULL, "", CBV_TRANSIENT, "greylisted", 1, 0 },
	{ "grey@grey.test", NULL, "", CBV_TRANSIENT, "greylisted", 1, 0 },
	{ "x@nullmx.test", NULL, "", CBV_FAIL, "null_mx", -1, 1 },
	{ "alice@implicit.test", NULL, "", CBV_PASS, "accepted", 1, 0 },
	{ "x@no-such-domain.test", NULL, "", CBV_FAIL, "no_domain", -1, 1 },
	{ "x@nomail.test", NULL, "", CBV_FAIL, "no_mail_host", -1, 1 },
	{ "x@nohost.test", NULL, "", CBV_FAIL, "no_mail_host", -1, 1 },
	{ "x@servfail.test", NULL, "", CBV_TRANSIENT, "dns_failure", -1, 1 },
	{ "alice@two.test", NULL, "", CBV_PASS, "accepted", 1, 0 },
	{ "alice@two.test", NULL, "max_hosts=1", CBV_TRANSIENT, "connect_failed", 0, 0 },
	{ "x@dead.test", NULL, "", CBV_TRANSIENT, "connect_failed", 0, 0 },
	{ "x@refused.test", NULL, "", CBV_TRANSIENT, "connect_failed", 0, 0 },
	{ "x@nullsender.test", NULL, "", CBV_ERROR, "sender_refused", 0, 0 },
	{ "x@nullsender.test", "probe@exim.test", "", CBV_PASS, "accepted", 0, 0 },
	{ "x@policy.test", NULL, "", CBV_ERROR, "policy_refused", 0, 0 },
	{ "alice@fast.test", NULL, "", CBV_PASS, "accepted", 0, 0 },
	{ "unknown1@fast.test", NULL, "", CBV_FAIL, "mailbox_unknown", 0, 0 },
	{ "x@greet554.test", NULL, "", CBV_ERROR, "greeting_refused", 0, 0 },
	{ "x@mid421.test", NULL, "", CBV_TRANSIENT, "temp_failure", 0, 0 },
	{ "x@earlyclose.test", NULL, "", CBV_TRANSIENT, "connect_failed", 0, 0 },
	{ "x@garbage.test", NULL, "", CBV_ERROR, "protocol_error", 0, 0 },
	{ "x@longline.test", NULL, "", CBV_ERROR, "protocol_error", 0, 0 },
	{ "x@multiline.test", NULL, "", CBV_ERROR, "protocol_error", 0, 0 },
	{ "x@tarpit.test", NULL, "timeout=5s", CBV_TRANSIENT, "timeout", 0, 0 },
	{ "x@drip.test", NULL, "timeout=5s", CBV_TRANSIENT, "timeout", 0, 0 },
	{ "x@tarpit.test", NULL, "command_timeout=1s", CBV_TRANSIENT, "timeout", 0, 0 },
	/* TLS */
	{ "alice@tls.test", NULL, "", CBV_PASS, "accepted", 1, 0 },
	{ "alice@tls.test", NULL, "starttls=never", CBV_ERROR, "tls_required", 0, 0 },
	{ "alice@tls.test", NULL, "starttls=ondemand", CBV_PASS, "accepted", 1, 0 },
	{ "nobody@tls.test", NULL, "starttls=ondemand", CBV_FAIL, "mailbox_unknown", 1, 0 },
	{ "alice@tls.test", NULL, "starttls=require", CBV_PASS, "accepted", 1, 0 },
	{ "alice@exim.test", NULL, "starttls=never", CBV_PASS, "accepted", 0, 0 },
	{ "alice@fast.test", NULL, "starttls=require", CBV_ERROR, "tls_required", 0, 0 },
	{ "alice@exim.test", NULL, "starttls=require;tls_verify=yes;ca_dir=/nonexistent-ca-dir",
	  CBV_ERROR, "tls_failed", 0, 0 },
	{ "alice@exim.test", NULL, "tls_verify=yes;ca_dir=/nonexistent-ca-dir", CBV_PASS,
	  "accepted", 0, 0 },
	/* address literals: no MX lookup; no SNI for them (a GnuTLS server alerts) */
	{ "alice@[127.0.0.10]", NULL, "", CBV_FAIL, "bad_syntax", 1, 0 },
	{ "alice@[127.0.0.30]", NULL, "", CBV_PASS, "accepted", 0, 0 },
	/* RFC 6531: a UTF-8 local part needs SMTPUTF8 */
	{ "j\xc3\xbcrgen@exim.test", NULL, "", CBV_FAIL, "mailbox_unknown", 1, 0 },
	{ "j\xc3\xbcrgen@fast.test", NULL, "", CBV_ERROR, "protocol_error", 0, 0 },
	/* IDN (issue 11.2): A-labels to DNS and RCPT; SMTPUTF8 only for a UTF-8 local part */
	{ "alice@b\xc3\xbc" "cher.test", NULL, "", CBV_PASS, "accepted", 1, 0 },
	{ "alice@B\xc3\x9c" "CHER.test", NULL, "", CBV_PASS, "accepted", 1, 0 },
	{ "nobody@b\xc3\xbc" "cher.test", NULL, "", CBV_FAIL, "mailbox_unknown", 1, 0 },
	{ "j\xc3\xbcrgen@b\xc3\xbc" "cher.test", NULL, "", CBV_PASS, "accepted", 1, 0 },
	{ "j\xc3\xbcrgen@xn--bcher-kva.test", NULL, "", CBV_PASS, "accepted", 1, 0 },
	{ "alice@fast.test", "probe@b\xc3\xbc" "cher.test", "", CBV_PASS, "accepted", 0, 0 },
	{ "x@nix-\xc3\xbc.test", NULL, "", CBV_FAIL, "no_domain", -1, 1 },
	{ "x@\xe2\x98\x83.test", NULL, "", CBV_FAIL, "bad_syntax", -1, 1 },
	{ "x@b\xc3\xbc\xe2\x80\xae" "cher.test", NULL, "", CBV_FAIL, "bad_syntax", -1, 1 },
	{ "alice@exim.test", "x@\xe2\x98\x83.test", "", CBV_ERROR, "bad_syntax", -1, 1 },
	{ "alice@b\xc3\xbc" "cher.example", NULL, "map=[ b\xc3\xbc" "cher.example = \"exim.test\" ]",
	  CBV_PASS, "accepted", 1, 0 },
	{ "alice@b\xc3\xbc" "cher.example", NULL, "map=[ xn--bcher-kva.example = \"exim.test\" ]",
	  CBV_PASS, "accepted", 1, 0 },
	{ "alice@mapped.test", NULL, "map=[ mapped.test = \"b\xc3\xbc" "cher.test\" ]", CBV_PASS,
	  "accepted", 1, 0 },
	/* guard and map */
	{ "alice@exim.test", NULL, "deny_networks=127.0.0.0/8 ::1/128", CBV_ERROR,
	  "forbidden_target", -1, 1 },
	{ "alice@mapped.test", NULL, "map=[ mapped.test = \"exim.test\" ]", CBV_PASS,
	  "accepted", 1, 0 },
	{ "nobody@x.legacy.test", NULL, "map=[ *.legacy.test = \"exim.test\" ]", CBV_FAIL,
	  "mailbox_unknown", 1, 0 },
	{ "alice@old.exim.test", NULL, "map=[ \"^old\\\\.(.+)$\" = \"$1\" ]", CBV_PASS,
	  "accepted", 1, 0 },
	/* syntax: nothing is sent */
	{ "alice\r\nRCPT TO:<x@exim.test>@exim.test", NULL, "", CBV_FAIL, "bad_syntax", -1, 1 },
	{ "alice@exim.test\r\nQUIT", NULL, "", CBV_FAIL, "bad_syntax", -1, 1 },
	{ "noat.exim.test", NULL, "", CBV_FAIL, "bad_syntax", -1, 1 },
	{ "<alice@exim.test>", NULL, "", CBV_FAIL, "bad_syntax", -1, 1 },
	{ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx@exim.test", NULL, "",
	  CBV_FAIL, "bad_syntax", -1, 1 },
	{ "", NULL, "", CBV_FAIL, "bad_syntax", -1, 1 },
	{ "alice@exim.test", "bad\r\nsender@x.test", "", CBV_ERROR, "bad_syntax", -1, 1 },
	{ "alice@exim.test", NULL, "mailfrom=probe@exim.test", CBV_PASS, "accepted", 1, 0 },
};

static int contacted;

static void count_init(void *arg, enum cbv_trace kind, const char *text)
{
	(void)arg;
	(void)text;
	if (kind == CBV_TRACE_INIT)
		contacted++;
}

/* The rig profile: its DNS and port, loopback allowed, short timeouts, no cache. */
static void rig_profile(struct cbv_profile *p, const char *extra)
{
	const char *dns = getenv("CBV_RIG_DNS");
	const char *port = getenv("CBV_RIG_PORT");
	struct cbv_err err;
	char buf[512], *save = NULL;

	ck_assert_msg(dns != NULL && port != NULL, "run inside tests/rig/rig.sh run");
	cbv_profile_defaults(p);
	ck_assert_int_eq(cbv_profile_set(p, "cache", "", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "dns_servers", dns, &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "port", port, &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "deny_networks", "", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "timeout", "10s", &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(p, "helo", "verifier.test", &err), CBV_OK);
	snprintf(buf, sizeof(buf), "%s", extra);
	for (char *kv = strtok_r(buf, ";", &save); kv != NULL; kv = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(kv, '=');

		ck_assert_ptr_nonnull(eq);
		*eq = '\0';
		ck_assert_msg(cbv_profile_set(p, kv, eq + 1, &err) == CBV_OK, "%s: %s", kv, err.msg);
	}
}

START_TEST(verdicts)
{
	const struct row *t = &rows[_i];
	struct cbv_profile p;
	struct cbv_request req = { .address = t->address, .sender = t->sender,
		                   .trace = count_init };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	rig_profile(&p, t->opts);
	contacted = 0;
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->verdict == t->verdict && strcmp(cbv_reason_name(r->reason), t->reason) == 0,
	              "%s [%s]: got %s/%s (%s), want %s/%s", t->address, t->opts,
	              cbv_verdict_name(r->verdict), cbv_reason_name(r->reason), r->message,
	              cbv_verdict_name(t->verdict), t->reason);
	ck_assert_msg(r->message[0] != '\0', "empty message");
	/* The message is a DSN: three digits, a space. */
	ck_assert_msg(strlen(r->message) > 4 && r->message[3] == ' ', "message %s", r->message);
	if (t->tls == 1)
		ck_assert_msg(strncmp(r->tls, "TLSv1.", 6) == 0, "%s: tls=\"%s\"", t->address, r->tls);
	else if (t->tls == 0)
		ck_assert_msg(r->tls[0] == '\0', "%s: tls=\"%s\"", t->address, r->tls);
	if (t->no_connect)
		ck_assert_int_eq(contacted, 0);
	else
		ck_assert_int_gt(contacted, 0);
	cbv_result_free(r);
	cbv_profile_clear(&p);
}
END_TEST

/* The last poll record of a pass through a real Exim. */
START_TEST(last_poll)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = "alice@exim.test", .sender = "probe@exim.test" };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	rig_profile(&p, "");
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	ck_assert_int_eq(r->verdict, CBV_PASS);
	ck_assert_str_eq(r->host, "mx.exim.test");
	ck_assert_msg(strncmp(r->ip, "127.0.0.10:", 11) == 0, "ip %s", r->ip);
	ck_assert_msg(strncmp(r->greeting, "220 ", 4) == 0, "greeting %s", r->greeting);
	ck_assert_msg(strncmp(r->helo, "250-", 4) == 0, "helo %s", r->helo);
	ck_assert_str_eq(r->sent, "RCPT TO:<alice@exim.test>");
	ck_assert_msg(strncmp(r->recv, "250", 3) == 0, "recv %s", r->recv);
	ck_assert_int_eq(r->code, 250);
	ck_assert_str_eq(r->sender, "probe@exim.test");
	ck_assert_str_eq(r->rcpt, "alice@exim.test");
	ck_assert_int_eq(r->cache, 0);
	cbv_result_free(r);
	cbv_profile_clear(&p);
}
END_TEST

/* The unknown-user reply is kept whole, with its enhanced code. */
START_TEST(fail_message)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = "nobody@exim.test" };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	rig_profile(&p, "");
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	ck_assert_int_eq(r->code, 550);
	ck_assert_str_eq(r->ecode, "5.1.1");
	ck_assert_str_eq(r->message, r->recv);
	cbv_result_free(r);
	cbv_profile_clear(&p);
}
END_TEST

/* tls_verify against the rig's own CA (a hashed directory), name checked. */
START_TEST(tls_verified)
{
	const char *ca = getenv("CBV_RIG_CA_DIR");
	struct cbv_profile p;
	struct cbv_request req = { .address = "alice@tls.test" };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	ck_assert_msg(ca != NULL, "CBV_RIG_CA_DIR unset");
	rig_profile(&p, "starttls=require;tls_verify=yes");
	ck_assert_int_eq(cbv_profile_set(&p, "ca_dir", ca, &err), CBV_OK);
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	ck_assert_msg(r->verdict == CBV_PASS, "%s/%s %s", cbv_verdict_name(r->verdict), cbv_reason_name(r->reason),
	              r->message);
	ck_assert_msg(strstr(r->tls, ":verified") != NULL, "tls %s", r->tls);
	cbv_result_free(r);
	cbv_profile_clear(&p);
}
END_TEST

/*
 * ca_dir alternating between profiles: each call verifies against its own
 * directory (the TLS module keeps one context per ca_dir).
 */
START_TEST(tls_ca_dir_alternates)
{
	const char *ca = getenv("CBV_RIG_CA_DIR");
	const char *dirs[] = { ca, "/nonexistent-ca-dir", ca, "/nonexistent-ca-dir", ca };

	ck_assert_msg(ca != NULL, "CBV_RIG_CA_DIR unset");
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		struct cbv_profile p;
		struct cbv_request req = { .address = "alice@tls.test" };
		struct cbv_result *r = NULL;
		struct cbv_err err;
		int good = strcmp(dirs[i], ca) == 0;

		rig_profile(&p, "starttls=require;tls_verify=yes");
		ck_assert_int_eq(cbv_profile_set(&p, "ca_dir", dirs[i], &err), CBV_OK);
		ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
		ck_assert_msg(good ? r->verdict == CBV_PASS : r->verdict == CBV_ERROR,
		              "%zu %s: %s/%s %s", i, dirs[i], cbv_verdict_name(r->verdict),
		              cbv_reason_name(r->reason), r->message);
		if (good)
			ck_assert_msg(strstr(r->tls, ":verified") != NULL, "tls %s", r->tls);
		else
			ck_assert_str_eq(cbv_reason_name(r->reason), "tls_failed");
		cbv_result_free(r);
		cbv_profile_clear(&p);
	}
}
END_TEST

/*
 * An MX that answers 220 to STARTTLS and closes: OpenSSL's alert then
 * meets a closed socket.  With SIGPIPE at its default disposition the
 * library must still return a verdict, not kill its caller (issue 11.1).
 * Opportunistic TLS retries in plain text; require cannot.
 */
static const struct row tlsclose_rows[] = {
	{ "alice@tlsclose.test", NULL, "", CBV_PASS, "accepted", 0, 0 },
	{ "alice@tlsclose.test", NULL, "starttls=require", CBV_ERROR, "tls_failed", 0, 0 },
};

START_TEST(sigpipe_default)
{
	const struct row *t = &tlsclose_rows[_i];
	struct cbv_profile p;
	struct cbv_request req = { .address = t->address };
	struct cbv_result *r = NULL;
	struct cbv_err err;
	sigset_t set;

	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	rig_profile(&p, t->opts);
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	ck_assert_msg(r->verdict == t->verdict && strcmp(cbv_reason_name(r->reason), t->reason) == 0,
	              "%s [%s]: got %s/%s (%s)", t->address, t->opts,
	              cbv_verdict_name(r->verdict), cbv_reason_name(r->reason), r->message);
	ck_assert_msg(r->tls[0] == '\0', "tls %s", r->tls);
	cbv_result_free(r);
	cbv_profile_clear(&p);
}
END_TEST

/* What goes on the wire and into messages for an IDN (issue 11.2). */
struct idn_row {
	const char *address;
	const char *rcpt;    /* r->rcpt */
	const char *sent;    /* r->sent, NULL: don't care */
	const char *message; /* r->message, NULL: don't care */
};

static const struct idn_row idn_rows[] = {
	{ "alice@b\xc3\xbc" "cher.test", "alice@xn--bcher-kva.test",
	  "RCPT TO:<alice@xn--bcher-kva.test>", NULL },
	/* a UTF-8 local part: SMTPUTF8, and the domain keeps its Unicode form */
	{ "j\xc3\xbcrgen@b\xc3\xbc" "cher.test", "j\xc3\xbcrgen@b\xc3\xbc" "cher.test",
	  "RCPT TO:<j\xc3\xbcrgen@b\xc3\xbc" "cher.test>", NULL },
	{ "j\xc3\xbcrgen@XN--BCHER-KVA.test", "j\xc3\xbcrgen@b\xc3\xbc" "cher.test", NULL, NULL },
	/* our own name is shown readably, with the A-labels we looked up */
	{ "x@nix-\xc3\xbc.test", "x@xn--nix--3ra.test", NULL,
	  "550 5.1.2 domain nix-\xc3\xbc.test (xn--nix--3ra.test) does not exist" },
};

START_TEST(idn_wire)
{
	const struct idn_row *t = &idn_rows[_i];
	struct cbv_profile p;
	struct cbv_request req = { .address = t->address };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	rig_profile(&p, "");
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	ck_assert_str_eq(r->rcpt, t->rcpt);
	if (t->sent != NULL)
		ck_assert_str_eq(r->sent, t->sent);
	if (t->message != NULL)
		ck_assert_str_eq(r->message, t->message);
	cbv_result_free(r);
	cbv_profile_clear(&p);
}
END_TEST

/* A host named by the caller (mailfromd's VRFY HOST= and MODE=). */
struct host_row {
	const char *address;
	const char *host;
	enum cbv_host_mode mode;
	enum cbv_verdict verdict;
	const char *reason;
	const char *last_host; /* r->host afterwards, NULL: don't care */
	unsigned tried;        /* hosts tried, 0: don't care */
};

static const struct host_row host_rows[] = {
	{ "alice@exim.test", "127.0.0.30", CBV_MODE_HOSTONLY, CBV_PASS, "accepted", "127.0.0.30", 1 },
	{ "nobody@exim.test", "mx.fast.test", CBV_MODE_HOSTONLY, CBV_PASS, "accepted", "mx.fast.test", 1 },
	{ "x@nomail.test", "127.0.0.30", CBV_MODE_MXFIRST, CBV_PASS, "accepted", "127.0.0.30", 1 },
	{ "x@no-such-domain.test", "127.0.0.30", CBV_MODE_MXFIRST, CBV_FAIL, "no_domain", NULL, 0 },
	{ "x@nullmx.test", "127.0.0.30", CBV_MODE_HOSTFIRST, CBV_FAIL, "null_mx", NULL, 0 },
	{ "alice@dead.test", "127.0.0.30", CBV_MODE_MXFIRST, CBV_PASS, "accepted", "127.0.0.30", 3 },
	{ "alice@dead.test", "127.0.0.30", CBV_MODE_MXONLY, CBV_TRANSIENT, "connect_failed", "b.dead.test", 2 },
	{ "unknown1@exim.test", "127.0.0.30", CBV_MODE_HOSTFIRST, CBV_FAIL, "mailbox_unknown", "127.0.0.30", 1 },
	{ "alice@exim.test", "[127.0.0.10]", CBV_MODE_HOSTONLY, CBV_PASS, "accepted", "[127.0.0.10]", 1 },
	{ "alice@exim.test", "gone.nohost.test", CBV_MODE_HOSTONLY, CBV_ERROR, "connect_failed", NULL, 0 },
	{ "alice@exim.test", "gone.nohost.test", CBV_MODE_MXFIRST, CBV_PASS, "accepted", "mx.exim.test", 0 },
	{ "alice@exim.test", "bad host\r\nQUIT", CBV_MODE_HOSTONLY, CBV_ERROR, "bad_syntax", NULL, 0 },
};

START_TEST(host_modes)
{
	const struct host_row *t = &host_rows[_i];
	struct cbv_profile p;
	struct cbv_request req = { .address = t->address, .host = t->host, .mode = t->mode };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	rig_profile(&p, "starttls=never");
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	ck_assert_msg(r->verdict == t->verdict && strcmp(cbv_reason_name(r->reason), t->reason) == 0,
	              "%s via %s (%d): got %s/%s (%s), want %s/%s", t->address, t->host, t->mode,
	              cbv_verdict_name(r->verdict), cbv_reason_name(r->reason), r->message,
	              cbv_verdict_name(t->verdict), t->reason);
	if (t->last_host != NULL)
		ck_assert_str_eq(r->host, t->last_host);
	if (t->tried != 0)
		ck_assert_uint_eq(r->hosts_tried, t->tried);
	cbv_result_free(r);
	cbv_profile_clear(&p);
}
END_TEST

START_TEST(hostonly_needs_host)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = "alice@exim.test", .mode = CBV_MODE_HOSTONLY };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	rig_profile(&p, "");
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_EINVAL);
	ck_assert_ptr_null(r);
	cbv_profile_clear(&p);
}
END_TEST

/* Asynchronous use: several machines in one poll loop, as cbvd does. */
START_TEST(many_at_once)
{
	static const char *const addrs[] = { "alice@exim.test", "nobody@exim.test",
		                             "alice@fast.test", "x@nullmx.test",
		                             "x@tarpit.test", "bob@two.test" };
	static const enum cbv_verdict want[] = { CBV_PASS, CBV_FAIL, CBV_PASS,
		                                 CBV_FAIL, CBV_TRANSIENT, CBV_PASS };
	enum { N = sizeof(addrs) / sizeof(addrs[0]) };
	struct cbv_verify *v[N];
	struct cbv_profile p;
	struct cbv_err err;
	int left = N;

	rig_profile(&p, "timeout=3s");
	for (int i = 0; i < N; i++) {
		struct cbv_request req = { .address = addrs[i] };

		v[i] = cbv_verify_new(&p, &req, &err);
		ck_assert_ptr_nonnull(v[i]);
	}
	while (left > 0) {
		struct pollfd fds[N * CBV_VERIFY_POLLFDS_MAX];
		int base[N], cnt[N], total = 0;
		int64_t wake = 0;

		for (int i = 0; i < N; i++) {
			int64_t w;

			base[i] = total;
			cnt[i] = cbv_verify_pollfds(v[i], fds + total, CBV_VERIFY_POLLFDS_MAX, &w);
			if (cnt[i] < 0) {
				cnt[i] = 0;
				continue;
			}
			total += cnt[i];
			if (wake == 0 || w < wake)
				wake = w;
		}
		(void)poll(fds, (nfds_t)total, 50);
		left = 0;
		for (int i = 0; i < N; i++) {
			cbv_verify_process(v[i], fds + base[i], cnt[i]);
			left += !cbv_verify_done(v[i]);
		}
	}
	for (int i = 0; i < N; i++) {
		struct cbv_result *r = cbv_verify_take_result(v[i]);

		ck_assert_ptr_nonnull(r);
		ck_assert_msg(r->verdict == want[i], "%s: %s/%s %s", addrs[i],
		              cbv_verdict_name(r->verdict), cbv_reason_name(r->reason), r->message);
		cbv_result_free(r);
		cbv_verify_free(v[i]);
	}
	cbv_profile_clear(&p);
}
END_TEST

/* Failed allocations give CBV_ENOMEM or a complete result, never a crash or leak. */
START_TEST(oom)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = "alice@fast.test" };
	struct cbv_err err;
	int ok = 0, hosts_oom = 0;

	rig_profile(&p, "starttls=never");
	for (long n = 0; n < 200 && !ok; n++) {
		struct cbv_result *r = NULL;
		enum cbv_status st;

		cbv_alloc_fail_after(n);
		st = cbv_verify(&p, &req, &r, &err);
		cbv_alloc_fail_after(-1);
		if (st == CBV_OK) {
			ck_assert_ptr_nonnull(r);
			ok = r->verdict == CBV_PASS;
			/* our memory, never a verdict on the address */
			ck_assert_msg(r->verdict != CBV_FAIL, "n=%ld: %s", n, r->message);
			/* the host list (heap, right-sized) failed: error before any host */
			if (r->verdict == CBV_ERROR && r->hosts_tried == 0 &&
			    strcmp(r->ecode, "4.3.0") == 0)
				hosts_oom = 1;
			cbv_result_free(r);
		} else {
			ck_assert_int_eq(st, CBV_ENOMEM);
			ck_assert_ptr_null(r);
		}
	}
	ck_assert_msg(ok, "never succeeded");
	ck_assert_msg(hosts_oom, "no allocation of the host list failed");
	cbv_profile_clear(&p);
}
END_TEST

/* ---- groups: several addresses, one session per domain (issue 9.3) ---- */

/* One address's transcript: "K:text|" per line; replies by their code only
 * (greetings carry the time). */
struct transcript {
	char text[8192];
};

static void record_line(void *arg, enum cbv_trace kind, const char *text)
{
	struct transcript *t = arg;
	size_t len = strlen(t->text);
	int keep = kind == CBV_TRACE_INIT || kind == CBV_TRACE_SENT ? (int)strlen(text) : 3;

	if (strstr(text, "cbv-probe-") != NULL)
		text = "(catch-all probe)"; /* a random local part each time */
	snprintf(t->text + len, sizeof(t->text) - len, "%c:%.*s|", "IGHSR"[kind], keep, text);
}

/* Out of memory at every allocation of a group (a transcript per address
 * too): CBV_ENOMEM, or results that are whole. */
START_TEST(group_oom)
{
	static const char *const addrs[] = { "alice@fast.test", "unknown1@fast.test",
		                             "bob@fast.test" };
	static struct transcript tr[3];
	void *targs[3] = { &tr[0], &tr[1], &tr[2] };
	struct cbv_profile p;
	struct cbv_request req = { .trace = record_line, .trace_args = targs };
	struct cbv_err err;
	int ok = 0;

	rig_profile(&p, "starttls=never");
	for (long n = 0; n < 300 && !ok; n++) {
		struct cbv_result *r[3] = { NULL };
		enum cbv_status st;

		memset(tr, 0, sizeof(tr));
		cbv_alloc_fail_after(n);
		st = cbv_verify_multi(&p, &req, addrs, 3, r, &err);
		cbv_alloc_fail_after(-1);
		if (st == CBV_OK) {
			for (int i = 0; i < 3; i++)
				ck_assert_ptr_nonnull(r[i]);
			ok = r[0]->verdict == CBV_PASS && r[1]->verdict == CBV_FAIL &&
			     r[2]->verdict == CBV_PASS;
			for (int i = 0; i < 3; i++)
				cbv_result_free(r[i]);
		} else {
			ck_assert_int_eq(st, CBV_ENOMEM);
			for (int i = 0; i < 3; i++)
				ck_assert_ptr_null(r[i]);
		}
	}
	ck_assert_msg(ok, "never succeeded");
	cbv_profile_clear(&p);
}
END_TEST

struct group_row {
	const char *opts;
	const char *addrs[6];  /* NULL-terminated */
	int sessions;          /* connections the group may make, all hosts counted */
	int rcpts;             /* RCPTs counted in rcpt.log (counting servers), -1: not checked */
	const char *host;      /* the request's host and mode (NULL: none) */
	enum cbv_host_mode mode;
};

static const struct group_row group_rows[] = {
	/* the rig's Exim: known, unknown, greylisted users in one TLS session;
	 * only grey's 451 goes on to the MX's second address (::1) */
	{ "", { "alice@exim.test", "nobody@exim.test", "grey@exim.test", "bob@exim.test",
	        "Alice@EXIM.test", NULL }, 2, -1, NULL, 0 },
	/* the first MX is dead: every undecided address moves to the second */
	{ "", { "alice@two.test", "nobody@two.test", "grey@two.test", NULL }, 2, -1, NULL, 0 },
	{ "starttls=never", { "alice@exim.test", "nobody@exim.test", NULL }, 1, -1, NULL, 0 },
	/* the counting fake MTA: one connection, one RCPT each */
	{ "", { "a@count.test", "unknown1@count.test", "b@count.test", NULL }, 1, 3, NULL, 0 },
	/* MAIL refused: for all */
	{ "", { "a@nullsender.test", "b@nullsender.test", NULL }, 1, -1, NULL, 0 },
	/* several domains and one without a callout: one session per domain */
	{ "", { "alice@exim.test", "x@nullmx.test", "alice@fast.test", "bad address",
	        "unknown1@fast.test", NULL }, 2, -1, NULL, 0 },
	/* RCPT 5.7.x policy: each its own error */
	{ "", { "a@policy.test", "b@policy.test", NULL }, 1, -1, NULL, 0 },
	/* MODE=hostonly: one session at the host for every domain, even an NXDOMAIN one */
	{ "", { "a@count.test", "unknown1@exim.test", "b@nowhere.test", "x@[127.0.0.30]", NULL }, 1,
	  4, "127.0.0.65", CBV_MODE_HOSTONLY },
	/* ... but not with a catch-all probe (it is at one domain) */
	{ "catchall_probe=yes", { "a@count.test", "b@exim.test", NULL }, 2, 4, "127.0.0.65",
	  CBV_MODE_HOSTONLY },
	/* hostfirst looks the MX hosts up too: per domain */
	{ "", { "a@count.test", "b@count2.test", NULL }, 2, 2, "127.0.0.65", CBV_MODE_HOSTFIRST },
};

/* Lines in $CBV_RIG_DIR/rcpt.log (the counting servers' RCPTs), 0 if none. */
static int rcpt_lines(void)
{
	const char *dir = getenv("CBV_RIG_DIR");
	char path[1024], line[1024];
	int n = 0;
	FILE *f;

	if (dir == NULL)
		return 0;
	snprintf(path, sizeof(path), "%s/rcpt.log", dir);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		n++;
	fclose(f);
	return n;
}

START_TEST(group_same_verdicts)
{
	const struct group_row *g = &group_rows[_i];
	struct cbv_result *alone[6] = { NULL }, *grouped[6] = { NULL };
	struct cbv_profile p;
	struct cbv_request req = { .trace = count_init };
	struct cbv_err err;
	size_t n = 0;
	int before;

	while (g->addrs[n] != NULL)
		n++;
	rig_profile(&p, g->opts);
	req.host = g->host;
	req.mode = g->mode;
	for (size_t i = 0; i < n; i++) {
		req.address = g->addrs[i];
		ck_assert_int_eq(cbv_verify(&p, &req, &alone[i], &err), CBV_OK);
	}
	contacted = 0;
	before = rcpt_lines();
	req.address = NULL;
	ck_assert_int_eq(cbv_verify_multi(&p, &req, g->addrs, n, grouped, &err), CBV_OK);
	ck_assert_msg(contacted == g->sessions, "row %d: %d sessions, want %d", _i, contacted,
	              g->sessions);
	if (g->rcpts >= 0)
		ck_assert_int_eq(rcpt_lines() - before, g->rcpts);
	for (size_t i = 0; i < n; i++) {
		const struct cbv_result *a = alone[i], *r = grouped[i];

		ck_assert_ptr_nonnull(r);
		ck_assert_msg(a->verdict == r->verdict && a->reason == r->reason,
		              "%s: grouped %s/%s (%s), alone %s/%s (%s)", g->addrs[i],
		              cbv_verdict_name(r->verdict), cbv_reason_name(r->reason), r->message,
		              cbv_verdict_name(a->verdict), cbv_reason_name(a->reason), a->message);
		ck_assert_int_eq(a->code, r->code);
		ck_assert_str_eq(a->ecode, r->ecode);
		ck_assert_str_eq(a->address, r->address);
		ck_assert_str_eq(a->rcpt, r->rcpt);
		/* the last poll: its own RCPT and reply, a true pair */
		ck_assert_str_eq(a->sent, r->sent);
		ck_assert_int_eq(strncmp(a->recv, r->recv, 3), 0);
		ck_assert_str_eq(a->host, r->host);
		ck_assert_int_eq(a->hosts_tried, r->hosts_tried);
		cbv_result_free(alone[i]);
		cbv_result_free(grouped[i]);
	}
	cbv_profile_clear(&p);
}
END_TEST

/*
 * With a transcript per address (trace_args, as cbvd gives each VRFY its
 * own), each address sees the lines its own verification shows: the
 * shared connection, greeting, EHLO, STARTTLS and MAIL, its own RCPT and
 * reply, and the later hosts only if it is still undecided.
 */
START_TEST(group_transcripts)
{
	const struct group_row *g = &group_rows[_i];
	static struct transcript alone[6], grouped[6];
	void *targs[6];
	struct cbv_result *r[6] = { NULL };
	struct cbv_profile p;
	struct cbv_request req = { .trace = record_line };
	struct cbv_err err;
	size_t n = 0;

	while (g->addrs[n] != NULL)
		n++;
	rig_profile(&p, g->opts);
	/* "alone" runs first: with session reuse the group would get their
	 * parked session and show no greeting; here the group is compared
	 * with fresh sessions (reuse has its own case) */
	p.session_reuse = 0;
	req.host = g->host;
	req.mode = g->mode;
	memset(alone, 0, sizeof(alone));
	memset(grouped, 0, sizeof(grouped));
	for (size_t i = 0; i < n; i++) {
		req.address = g->addrs[i];
		req.trace_arg = &alone[i];
		ck_assert_int_eq(cbv_verify(&p, &req, &r[i], &err), CBV_OK);
		cbv_result_free(r[i]);
		targs[i] = &grouped[i];
	}
	req.address = NULL;
	req.trace_arg = NULL;
	req.trace_args = targs;
	ck_assert_int_eq(cbv_verify_multi(&p, &req, g->addrs, n, r, &err), CBV_OK);
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(strcmp(alone[i].text, grouped[i].text) == 0,
		              "%s:\n alone   %s\n grouped %s", g->addrs[i], alone[i].text,
		              grouped[i].text);
		cbv_result_free(r[i]);
	}
	cbv_profile_clear(&p);
}
END_TEST

/* The machine API drives a group as cbv_verify_multi() does; bad calls are refused. */
START_TEST(group_api)
{
	static const char *const addrs[] = { "alice@exim.test", "nobody@exim.test" };
	const char *many[CBV_RCPTS_MAX + 1];
	struct cbv_result *out[CBV_RCPTS_MAX + 1];
	struct cbv_profile p;
	struct cbv_request req = { 0 };
	struct cbv_verify_group *g;
	struct pollfd fds[2 * CBV_VERIFY_POLLFDS_MAX];
	struct cbv_err err;

	rig_profile(&p, "starttls=never");
	for (int i = 0; i <= CBV_RCPTS_MAX; i++)
		many[i] = "alice@exim.test";
	ck_assert_int_eq(cbv_verify_multi(&p, &req, many, CBV_RCPTS_MAX + 1, out, &err), CBV_EINVAL);
	ck_assert_int_eq(cbv_verify_multi(&p, &req, many, 0, out, &err), CBV_EINVAL);
	g = cbv_verify_group_new(&p, &req, addrs, 2, &err);
	ck_assert_ptr_nonnull(g);
	while (!cbv_verify_group_done(g)) {
		int64_t wake = 0, now;
		int k = cbv_verify_group_pollfds(g, fds, 2 * CBV_VERIFY_POLLFDS_MAX, &wake);

		ck_assert_int_ge(k, 0);
		now = cbv_now_ms();
		poll(fds, (nfds_t)k, wake > now ? (int)(wake - now) : 0);
		cbv_verify_group_process(g, fds, k);
	}
	out[0] = cbv_verify_group_take_result(g, 0);
	out[1] = cbv_verify_group_take_result(g, 1);
	ck_assert_ptr_null(cbv_verify_group_take_result(g, 1));
	ck_assert_ptr_null(cbv_verify_group_take_result(g, 2));
	ck_assert_int_eq(out[0]->verdict, CBV_PASS);
	ck_assert_int_eq(out[1]->verdict, CBV_FAIL);
	ck_assert_str_eq(out[1]->sent, "RCPT TO:<nobody@exim.test>");
	cbv_result_free(out[0]);
	cbv_result_free(out[1]);
	cbv_verify_group_free(g);
	/* freed while running: connections closed, nothing leaks (ASan) */
	g = cbv_verify_group_new(&p, &req, addrs, 2, &err);
	ck_assert_ptr_nonnull(g);
	cbv_verify_group_free(g);
	cbv_verify_group_free(NULL);
	cbv_profile_clear(&p);
}
END_TEST


/* ---- session reuse (core/cbv_hold.c) ---- */

/* Lines in $CBV_RIG_DIR/conn.log: connections the counting servers accepted. */
static int conn_lines(void)
{
	const char *dir = getenv("CBV_RIG_DIR");
	char path[1024], line[256];
	int n = 0;
	FILE *f;

	ck_assert_ptr_nonnull(dir);
	snprintf(path, sizeof(path), "%s/conn.log", dir);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		n++;
	fclose(f);
	return n;
}

static int greetings; /* sessions that read a greeting: new connections */

static void count_greeting(void *arg, enum cbv_trace kind, const char *text)
{
	(void)arg;
	(void)text;
	if (kind == CBV_TRACE_GRTNG)
		greetings++;
}

/* Verifies address with the rig profile plus opts; returns the result. */
static struct cbv_result *verify_one(const char *address, const char *opts)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = address, .trace = count_greeting };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	rig_profile(&p, opts);
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	ck_assert_ptr_nonnull(r);
	cbv_profile_clear(&p);
	return r;
}

/* Everything a fresh session would give; greeting up to its first n bytes
 * (an Exim greeting carries the time), tls without ":resumed". */
static void same_result(const struct cbv_result *a, const struct cbv_result *b, size_t n)
{
	const char *ra = strstr(a->tls, ":resumed"), *rb = strstr(b->tls, ":resumed");
	size_t ta = ra != NULL ? (size_t)(ra - a->tls) : strlen(a->tls);
	size_t tb = rb != NULL ? (size_t)(rb - b->tls) : strlen(b->tls);

	ck_assert_msg(a->verdict == b->verdict && a->reason == b->reason, "%s: %s/%s vs %s/%s",
	              a->address, cbv_verdict_name(a->verdict), cbv_reason_name(a->reason),
	              cbv_verdict_name(b->verdict), cbv_reason_name(b->reason));
	ck_assert_int_eq(a->code, b->code);
	ck_assert_str_eq(a->ecode, b->ecode);
	ck_assert_str_eq(a->message, b->message);
	ck_assert_str_eq(a->sent, b->sent);
	ck_assert_str_eq(a->recv, b->recv);
	ck_assert_str_eq(a->helo, b->helo);
	ck_assert_int_eq(strncmp(a->greeting, b->greeting, n), 0);
	ck_assert_str_eq(a->host, b->host);
	ck_assert_str_eq(a->ip, b->ip);
	ck_assert_str_eq(a->rcpt, b->rcpt);
	ck_assert_str_eq(a->sender, b->sender);
	ck_assert_int_eq(a->hosts_tried, b->hosts_tried);
	ck_assert_msg(ta == tb && strncmp(a->tls, b->tls, ta) == 0, "tls %s vs %s", a->tls, b->tls);
}

struct reuse_row {
	const char *opts;
	const char *addrs[4]; /* NULL-terminated, verified in turn in one process */
	int conns;            /* new connections then (conn.log; -1: count greetings) */
	size_t greet_cmp;     /* bytes of the greeting compared with a fresh one */
};

static const struct reuse_row reuse_rows[] = {
	/* the counting fake: one connection, one RCPT each */
	{ "", { "ra@count.test", "unknown-rb@count.test", "rc@count.test", NULL }, 1, 1000 },
	/* with the catch-all probe: still one connection */
	{ "catchall_probe=yes", { "ra@count.test", "rb@count.test", NULL }, 1, 1000 },
	/* the rig's Exim over STARTTLS (127.0.0.10): one session, one handshake */
	{ "", { "alice@exim.test", "nobody@exim.test", "bob@exim.test", NULL }, -1, 20 },
	{ "starttls=never", { "alice@exim.test", "nobody@exim.test", NULL }, -1, 20 },
	/* greylisted (451) is an answer, but is not parked */
	{ "", { "grey@exim.test", "alice@exim.test", "grey@exim.test", NULL }, -2, 20 },
};

/* Several verifications in one process: one connection, and each result
 * equal to a fresh session's. */
START_TEST(reuse_same_results)
{
	const struct reuse_row *t = &reuse_rows[_i];
	struct cbv_result *fresh[4] = { NULL }, *r;
	char opts[256];
	int c0, r0, n = 0;

	cbv_hold_shutdown();
	snprintf(opts, sizeof(opts), "%s%ssession_reuse=no", t->opts, t->opts[0] ? ";" : "");
	for (n = 0; t->addrs[n] != NULL; n++)
		fresh[n] = verify_one(t->addrs[n], opts);
	ck_assert_int_eq(cbv_hold_count(), 0);
	c0 = conn_lines();
	r0 = rcpt_lines();
	greetings = 0;
	for (int i = 0; i < n; i++) {
		r = verify_one(t->addrs[i], t->opts);
		same_result(fresh[i], r, t->greet_cmp);
		cbv_result_free(r);
		cbv_result_free(fresh[i]);
	}
	if (t->conns > 0) {
		ck_assert_int_eq(conn_lines() - c0, t->conns);
		ck_assert_int_ge(rcpt_lines() - r0, n);
	} else if (t->conns == -1) {
		ck_assert_int_eq(greetings, 1);
		ck_assert_int_eq(cbv_hold_count(), 1);
	} else {
		/* grey (451 at .10, then ::1), alice (parked), grey on it: its 451
		 * is an answer, then ::1 afresh: 4 sessions, not 5 */
		ck_assert_int_eq(greetings, 4);
	}
	cbv_hold_shutdown();
	ck_assert_int_eq(cbv_hold_count(), 0);
}
END_TEST

struct retry_row {
	const char *first;    /* parks a session (or tries to) */
	const char *second;   /* then this one */
	const char *reason;   /* its verdict: pass/accepted unless given */
	int conns;            /* connections for both */
	int rcpts;            /* RCPT lines for both */
};

static const struct retry_row retry_rows[] = {
	/* peer closed while parked: a fresh session (the close may also be
	 * seen only at the reused RCPT: a fresh session then too) */
	{ "close-a@count.test", "rb@count.test", "accepted", 2, -1 },
	/* 421 to the reused RCPT: a fresh session, right verdict */
	{ "ra@count.test", "r421-b@count.test", "accepted", 2, 3 },
	/* 452 too many recipients to the reused RCPT: a fresh session */
	{ "ra@count.test", "r452-b@count.test", "accepted", 2, 3 },
	/* a fail parks too */
	{ "unknown-a@count.test", "unknown-b@count.test", "mailbox_unknown", 1, 2 },
};

START_TEST(reuse_retry)
{
	const struct retry_row *t = &retry_rows[_i];
	struct cbv_result *fresh, *a, *b;
	int c0, r0;

	cbv_hold_shutdown();
	fresh = verify_one(t->second, "session_reuse=no");
	c0 = conn_lines();
	r0 = rcpt_lines();
	a = verify_one(t->first, "");
	ck_assert_int_eq(a->verdict, strncmp(t->first, "unknown", 7) == 0 ? CBV_FAIL : CBV_PASS);
	b = verify_one(t->second, "");
	ck_assert_str_eq(cbv_reason_name(b->reason), t->reason);
	same_result(fresh, b, 1000);
	ck_assert_int_eq(conn_lines() - c0, t->conns);
	if (t->rcpts >= 0)
		ck_assert_int_eq(rcpt_lines() - r0, t->rcpts);
	cbv_result_free(fresh);
	cbv_result_free(a);
	cbv_result_free(b);
	cbv_hold_shutdown();
}
END_TEST

/* A session is reused only under the same options as it was made with. */
static const char *const key_opts[] = {
	"mailfrom=other@verifier.test",
	"helo=other.test",
	"starttls=never",
	"starttls=require",
	"tls_verify=yes",
	"command_timeout=9s",
	"connect_timeout=9s",
	"port=2526",
};

START_TEST(reuse_needs_same_key)
{
	struct cbv_result *a, *b;
	int c0;

	cbv_hold_shutdown();
	c0 = conn_lines();
	a = verify_one("ra@count.test", "");
	b = verify_one("rb@count.test", key_opts[_i]);
	ck_assert_msg(conn_lines() - c0 == 2 || strcmp(key_opts[_i], "port=2526") == 0,
	              "%s: %d connections", key_opts[_i], conn_lines() - c0);
	ck_assert_msg(b->rcpt[0] != '\0', "no rcpt");
	/* the first one is still parked, untouched */
	ck_assert_int_ge(cbv_hold_count(), 1);
	cbv_result_free(a);
	cbv_result_free(b);
	/* same options again: it is used */
	c0 = conn_lines();
	a = verify_one("rc@count.test", "");
	ck_assert_int_eq(a->verdict, CBV_PASS);
	ck_assert_int_eq(conn_lines() - c0, 0);
	cbv_result_free(a);
	cbv_hold_shutdown();
}
END_TEST

/* Past session_idle a parked session is closed, not used; off: never parked. */
START_TEST(reuse_idle_and_off)
{
	struct cbv_result *a, *b;
	struct timespec ts = { 0, 150 * 1000 * 1000 };
	int c0;

	cbv_hold_shutdown();
	c0 = conn_lines();
	a = verify_one("ra@count.test", "session_idle=50ms");
	ck_assert_int_eq(cbv_hold_count(), 1);
	nanosleep(&ts, NULL);
	b = verify_one("rb@count.test", "session_idle=50ms");
	ck_assert_int_eq(b->verdict, CBV_PASS);
	ck_assert_int_eq(conn_lines() - c0, 2);
	cbv_result_free(a);
	cbv_result_free(b);
	cbv_hold_shutdown();
	c0 = conn_lines();
	a = verify_one("ra@count.test", "session_reuse=no");
	ck_assert_int_eq(cbv_hold_count(), 0);
	b = verify_one("rb@count.test", "session_reuse=no");
	ck_assert_int_eq(conn_lines() - c0, 2);
	cbv_result_free(a);
	cbv_result_free(b);
}
END_TEST

/* At most CBV_HOLD_RCPTS_MAX RCPTs per held transaction. */
START_TEST(reuse_rcpt_bound)
{
	int c0, n = CBV_HOLD_RCPTS_MAX + 8;
	char addr[64];

	cbv_hold_shutdown();
	c0 = conn_lines();
	for (int i = 0; i < n; i++) {
		struct cbv_result *r;

		snprintf(addr, sizeof(addr), "bound%d@count.test", i);
		r = verify_one(addr, "");
		ck_assert_int_eq(r->verdict, CBV_PASS);
		cbv_result_free(r);
	}
	ck_assert_int_eq(conn_lines() - c0, 2);
	cbv_hold_shutdown();
}
END_TEST

/* After fork() the child never uses (nor closes with QUIT) the parent's session. */
START_TEST(reuse_not_across_fork)
{
	struct cbv_result *a, *b;
	int c0, status = 0;
	pid_t pid;

	cbv_hold_shutdown();
	c0 = conn_lines();
	a = verify_one("ra@count.test", "");
	ck_assert_int_eq(cbv_hold_count(), 1);
	fflush(NULL); /* the child exits through exit(): nothing buffered twice */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct cbv_profile p;
		struct cbv_request req = { .address = "rchild@count.test" };
		struct cbv_result *r = NULL;
		struct cbv_err err;
		int ok;

		rig_profile(&p, "");
		ok = cbv_hold_count() == 0 && cbv_verify(&p, &req, &r, &err) == CBV_OK &&
		     r->verdict == CBV_PASS;
		cbv_result_free(r);
		cbv_profile_clear(&p);
		exit(ok ? 0 : 1); /* atexit: its own parked session gets QUIT, not ours */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed");
	ck_assert_int_eq(conn_lines() - c0, 2);
	/* ours still works: no new connection */
	b = verify_one("rb@count.test", "");
	ck_assert_int_eq(b->verdict, CBV_PASS);
	ck_assert_int_eq(conn_lines() - c0, 2);
	cbv_result_free(a);
	cbv_result_free(b);
	cbv_hold_shutdown();
}
END_TEST

static int late_traces; /* trace calls after the verification returned */
static int trace_open;

static void trace_lifetime(void *arg, enum cbv_trace kind, const char *text)
{
	(void)kind;
	(void)text;
	ck_assert_ptr_eq(arg, &trace_open);
	if (!trace_open)
		late_traces++;
}

/* A parked session forgets the verification's transcript hook: its QUIT
 * (cbv_verify_shutdown, idle, eviction) calls no hook of a caller gone
 * (cbvd's job is freed by then). */
START_TEST(reuse_trace_ends)
{
	struct cbv_profile p;
	struct cbv_request req = { .address = "ra@count.test", .trace = trace_lifetime,
		                   .trace_arg = &trace_open };
	struct cbv_result *r = NULL;
	struct cbv_err err;

	cbv_hold_shutdown();
	rig_profile(&p, "");
	trace_open = 1;
	late_traces = 0;
	ck_assert_int_eq(cbv_verify(&p, &req, &r, &err), CBV_OK);
	trace_open = 0;
	ck_assert_int_eq(r->verdict, CBV_PASS);
	ck_assert_int_eq(cbv_hold_count(), 1);
	cbv_verify_shutdown(); /* QUIT on the parked session */
	ck_assert_int_eq(cbv_hold_count(), 0);
	ck_assert_int_eq(late_traces, 0);
	cbv_result_free(r);
	cbv_profile_clear(&p);
}
END_TEST

/* A group on a parked session: one connection, each its own verdict. */
START_TEST(reuse_group)
{
	static const char *const addrs[] = { "ga@count.test", "unknown-gb@count.test",
		                             "gc@count.test" };
	struct cbv_result *out[3], *a;
	struct cbv_profile p;
	struct cbv_request req = { 0 };
	struct cbv_err err;
	int c0;

	cbv_hold_shutdown();
	c0 = conn_lines();
	a = verify_one("ra@count.test", "");
	rig_profile(&p, "");
	ck_assert_int_eq(cbv_verify_multi(&p, &req, addrs, 3, out, &err), CBV_OK);
	ck_assert_int_eq(out[0]->verdict, CBV_PASS);
	ck_assert_int_eq(out[1]->verdict, CBV_FAIL);
	ck_assert_str_eq(out[1]->sent, "RCPT TO:<unknown-gb@count.test>");
	ck_assert_int_eq(out[2]->verdict, CBV_PASS);
	ck_assert_int_eq(conn_lines() - c0, 1);
	for (int i = 0; i < 3; i++)
		cbv_result_free(out[i]);
	cbv_result_free(a);
	cbv_profile_clear(&p);
	cbv_hold_shutdown();
}
END_TEST

static Suite *verify_suite(void)
{
	Suite *s = suite_create("verify");
	TCase *tc = tcase_create("verdicts");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, verdicts, 0, (int)(sizeof(rows) / sizeof(rows[0])));
	suite_add_tcase(s, tc);
	tc = tcase_create("last_poll");
	tcase_add_test(tc, last_poll);
	tcase_add_test(tc, fail_message);
	tcase_add_test(tc, tls_verified);
	tcase_add_test(tc, tls_ca_dir_alternates);
	suite_add_tcase(s, tc);
	tc = tcase_create("idn");
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, idn_wire, 0, (int)(sizeof(idn_rows) / sizeof(idn_rows[0])));
	suite_add_tcase(s, tc);
	tc = tcase_create("sigpipe");
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, sigpipe_default, 0,
	                    (int)(sizeof(tlsclose_rows) / sizeof(tlsclose_rows[0])));
	suite_add_tcase(s, tc);
	tc = tcase_create("host_modes");
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, host_modes, 0, (int)(sizeof(host_rows) / sizeof(host_rows[0])));
	tcase_add_test(tc, hostonly_needs_host);
	suite_add_tcase(s, tc);
	tc = tcase_create("async");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, many_at_once);
	suite_add_tcase(s, tc);
	tc = tcase_create("group");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, group_same_verdicts, 0,
	                    (int)(sizeof(group_rows) / sizeof(group_rows[0])));
	tcase_add_loop_test(tc, group_transcripts, 0,
	                    (int)(sizeof(group_rows) / sizeof(group_rows[0])));
	tcase_add_test(tc, group_api);
	suite_add_tcase(s, tc);
	tc = tcase_create("reuse");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, reuse_same_results, 0,
	                    (int)(sizeof(reuse_rows) / sizeof(reuse_rows[0])));
	tcase_add_loop_test(tc, reuse_retry, 0, (int)(sizeof(retry_rows) / sizeof(retry_rows[0])));
	tcase_add_loop_test(tc, reuse_needs_same_key, 0,
	                    (int)(sizeof(key_opts) / sizeof(key_opts[0])));
	tcase_add_test(tc, reuse_idle_and_off);
	tcase_add_test(tc, reuse_rcpt_bound);
	tcase_add_test(tc, reuse_not_across_fork);
	tcase_add_test(tc, reuse_group);
	tcase_add_test(tc, reuse_trace_ends);
	suite_add_tcase(s, tc);
	tc = tcase_create("oom");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, oom);
	tcase_add_test(tc, group_oom);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(verify_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
