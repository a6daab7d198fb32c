/*
 * check_config.c - cbv.conf: defaults, every key valid and invalid, error
 * positions, profile selection, cbv_profile_set(), format -> parse round
 * trips, the file loader, durations and numbers, and OOM.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbv_config.h"
#include "cbv_map.h"

/* Parses text named "t.conf"; NULL on error with err filled. */
static struct cbv_config *parse(const char *text, struct cbv_err *err)
{
	return cbv_config_parse(text, strlen(text), "t.conf", err);
}

/* Formats the default profile of text, which must parse. */
static char *format_first(const char *text)
{
	struct cbv_err err;
	struct cbv_config *c = parse(text, &err);
	char *s;

	ck_assert_msg(c != NULL, "%s: %s", text, err.msg);
	s = cbv_profile_format(cbv_config_profile(c, NULL));
	ck_assert_ptr_nonnull(s);
	cbv_config_free(c);
	return s;
}

/* ---- defaults ---- */

START_TEST(defaults_values)
{
	/* Every non-global range of the IANA special-purpose registries. */
	static const char *const deny[] = {
		"0.0.0.0/8",      "10.0.0.0/8",     "100.64.0.0/10",  "127.0.0.0/8",
		"169.254.0.0/16", "172.16.0.0/12",  "192.0.0.0/24",   "192.0.2.0/24",
		"192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",  "198.51.100.0/24",
		"203.0.113.0/24", "224.0.0.0/4",    "240.0.0.0/4",    "::/128",
		"::1/128",        "64:ff9b:1::/48", "100::/64",       "100:0:0:1::/64",
		"2001::/32",      "2001:2::/48",    "2001:10::/28",   "2001:db8::/32",
		"3fff::/20",      "5f00::/16",      "fc00::/7",       "fe80::/10",
		"fec0::/10",      "ff00::/8",
	};
	struct cbv_profile p;
	char net[64];

	memset(&p, 0x5a, sizeof(p));
	cbv_profile_defaults(&p);
	ck_assert_str_eq(p.name, "default");
	ck_assert_str_eq(p.mailfrom, "");
	ck_assert_str_eq(p.helo, "");
	ck_assert_uint_eq(p.port, 25);
	ck_assert_uint_eq(p.timeout_ms, 30000);
	ck_assert_uint_eq(p.connect_timeout_ms, 10000);
	ck_assert_uint_eq(p.command_timeout_ms, 10000);
	ck_assert_uint_eq(p.max_hosts, 5);
	ck_assert_int_eq(p.starttls, CBV_STARTTLS_OPPORTUNISTIC);
	ck_assert_int_eq(p.tls_verify, 0);
	ck_assert_str_eq(p.ca_dir, "");
	ck_assert_str_eq(p.dns_servers, "");
	ck_assert_str_eq(p.vars_acl, "");
	ck_assert_str_eq(p.callout_url, "");
	ck_assert_str_eq(p.phase, "mailfrom");
	ck_assert_ptr_null(p.map);
	ck_assert_uint_eq(p.ndeny, sizeof(deny) / sizeof(deny[0]));
	for (size_t i = 0; i < p.ndeny; i++) {
		cbv_cidr_format(&p.deny[i], net, sizeof(net));
		ck_assert_str_eq(net, deny[i]);
	}
}
END_TEST

START_TEST(defaults_empty_config)
{
	static const char *const texts[] = { "", "# only a comment\n", "\n\n  \t\n" };
	struct cbv_profile d;
	struct cbv_config *c;
	struct cbv_err err;
	char *a, *b;

	cbv_profile_defaults(&d);
	a = cbv_profile_format(&d);
	for (size_t i = 0; i < 3; i++) {
		c = parse(texts[i], &err);
		ck_assert_ptr_nonnull(c);
		ck_assert_uint_eq(cbv_config_count(c), 1);
		b = cbv_profile_format(cbv_config_profile(c, NULL));
		ck_assert_str_eq(a, b);
		cbv_free(b);
		cbv_config_free(c);
	}
	/* An empty block is the defaults too. */
	b = format_first("smtp_cbv { }");
	ck_assert_str_eq(a, b);
	cbv_free(b);
	cbv_free(a);
}
END_TEST

/* ---- every key: valid values and their effective form ---- */

static const struct {
	const char *kv;     /* "key = value" inside smtp_cbv { } */
	const char *expect; /* line of cbv_profile_format() output */
} valid[] = {
	{ "mailfrom = \"cbv@example.com\"", "  mailfrom = \"cbv@example.com\"\n" },
	{ "mailfrom = cbv@example.com", "  mailfrom = \"cbv@example.com\"\n" },
	{ "mailfrom = \"\"", "  mailfrom = \"\"\n" },
	{ "mailfrom = \"<>\"", "  mailfrom = \"\"\n" },
	{ "mailfrom = \"\\\"odd user\\\"@example.com\"", "  mailfrom = \"\\\"odd user\\\"@example.com\"\n" },
	{ "helo = \"mx.example.com\"", "  helo = \"mx.example.com\"\n" },
	{ "helo = MX.Example.COM", "  helo = \"mx.example.com\"\n" },
	{ "helo = \"\"", "  helo = \"\"\n" },
	{ "port = 25", "  port = 25\n" },
	{ "port = 1", "  port = 1\n" },
	{ "port = 65535", "  port = 65535\n" },
	{ "port = \"587\"", "  port = 587\n" },
	{ "timeout = 30s", "  timeout = 30s\n" },
	{ "timeout = 90", "  timeout = 1m30s\n" },
	{ "timeout = 1m30s", "  timeout = 1m30s\n" },
	{ "timeout = 1m30", "  timeout = 1m30s\n" },
	{ "timeout = 2m", "  timeout = 2m\n" },
	{ "timeout = 1h", "  timeout = 1h\n" },
	{ "timeout = 1d", "  timeout = 1d\n" },
	{ "timeout = 500ms", "  timeout = 500ms\n" },
	{ "timeout = 1s500ms", "  timeout = 1500ms\n" },
	{ "connect_timeout = 5s", "  connect_timeout = 5s\n" },
	{ "command_timeout = 1h2m3s", "  command_timeout = 1h2m3s\n" },
	{ "max_hosts = 1", "  max_hosts = 1\n" },
	{ "max_hosts = 64", "  max_hosts = 64\n" },
	{ "starttls = never", "  starttls = never\n" },
	{ "starttls = opportunistic", "  starttls = opportunistic\n" },
	{ "starttls = ondemand", "  starttls = ondemand\n" },
	{ "starttls = \"REQUIRE\"", "  starttls = require\n" },
	{ "tls_verify = yes", "  tls_verify = yes\n" },
	{ "tls_verify = TRUE", "  tls_verify = yes\n" },
	{ "tls_verify = 1", "  tls_verify = yes\n" },
	{ "tls_verify = no", "  tls_verify = no\n" },
	{ "tls_verify = false", "  tls_verify = no\n" },
	{ "tls_verify = \"0\"", "  tls_verify = no\n" },
	{ "ca_dir = \"/etc/ssl/certs\"", "  ca_dir = \"/etc/ssl/certs\"\n" },
	{ "ca_dir = \"\"", "  ca_dir = \"\"\n" },
	{ "dns_servers = \"\"", "  dns_servers = \"\"\n" },
	{ "dns_servers = \"127.0.0.1:5353\"", "  dns_servers = \"127.0.0.1:5353\"\n" },
	{ "dns_servers = \"127.0.0.1\"", "  dns_servers = \"127.0.0.1:53\"\n" },
	{ "dns_servers = \"127.0.0.1 ::1\"", "  dns_servers = \"127.0.0.1:53,[::1]:53\"\n" },
	{ "dns_servers = \"1.2.3.4, 5.6.7.8:54\"", "  dns_servers = \"1.2.3.4:53,5.6.7.8:54\"\n" },
	{ "dns_servers = \"[2001:DB8::1]:5353\"", "  dns_servers = \"[2001:db8::1]:5353\"\n" },
	{ "dns_servers = \"[::1]\"", "  dns_servers = \"[::1]:53\"\n" },
	{ "dns_servers = [ 10.0.0.1 \"[::1]:54\" ]", "  dns_servers = \"10.0.0.1:53,[::1]:54\"\n" },
	{ "dns_servers = 10.0.0.1", "  dns_servers = \"10.0.0.1:53\"\n" },
	{ "dns_servers = [::1]", "  dns_servers = \"[::1]:53\"\n" },
	{ "dns_servers = \"[::1]:5353,10.0.0.1\"", "  dns_servers = \"[::1]:5353,10.0.0.1:53\"\n" },
	{ "dns_servers = [::1 ::2]", "  dns_servers = \"[::1]:53,[::2]:53\"\n" },
	{ "dns_servers = [ [::1]:54 ]", "  dns_servers = \"[::1]:54\"\n" },
	{ "deny_networks = [ ]", "  deny_networks = [ ]\n" },
	{ "deny_networks = [ 10.0.0.1/8, fe80::1/10 ]", "  deny_networks = [ 10.0.0.0/8 fe80::/10 ]\n" },
	{ "deny_networks = ( 127.0.0.0/8 )", "  deny_networks = [ 127.0.0.0/8 ]\n" },
	{ "deny_networks = 127.0.0.0/8", "  deny_networks = [ 127.0.0.0/8 ]\n" },
	{ "deny_networks = [ \"10.0.0.0/8 192.168.0.0/16\" ]", "  deny_networks = [ 10.0.0.0/8 192.168.0.0/16 ]\n" },
	{ "deny_networks = [\n 10.0.0.0/8 # private\n ::1\n]", "  deny_networks = [ 10.0.0.0/8 ::1/128 ]\n" },
	{ "deny_networks = [ nonglobal ]", "  deny_networks = [ 0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 " },
	{ "deny_networks = nonglobal", " 2001:db8::/32 3fff::/20 5f00::/16 fc00::/7 fe80::/10 fec0::/10 ff00::/8 ]\n" },
	{ "deny_networks = [ 198.51.100.0/24 NonGlobal ]", "  deny_networks = [ 198.51.100.0/24 0.0.0.0/8 10.0.0.0/8 " },
	{ "vars_acl = \"acl_cbv_vars\"", "  vars_acl = \"acl_cbv_vars\"\n" },
	{ "vars_acl = cbv-vars", "  vars_acl = \"cbv-vars\"\n" },
	{ "vars_acl = \"\"", "  vars_acl = \"\"\n" },
	{ "callout_url = \"unix:///run/cbvd.sock\"", "  callout_url = \"unix:///run/cbvd.sock\"\n" },
	{ "callout_url = \"inet://127.0.0.1:3535\"", "  callout_url = \"inet://127.0.0.1:3535\"\n" },
	{ "callout_url = \"inet://[::1]:3535\"", "  callout_url = \"inet://[::1]:3535\"\n" },
	{ "callout_url = \"inet://cbvd.example:3535\"", "  callout_url = \"inet://cbvd.example:3535\"\n" },
	{ "callout_url = \"inet6://[2001:db8::1]:3535\"", "  callout_url = \"inet6://[2001:db8::1]:3535\"\n" },
	{ "callout_url = \"unix:/run/cbvd.sock\"", "  callout_url = \"unix:/run/cbvd.sock\"\n" },
	{ "callout_url = inet6://[::1]:3535", "  callout_url = \"inet6://[::1]:3535\"\n" },
	{ "deny_networks = [10.0.0.0/8 ::1]", "  deny_networks = [ 10.0.0.0/8 ::1/128 ]\n" },
	{ "callout_url = \"\"", "  callout_url = \"\"\n" },
	{ "phase = connect", "  phase = \"connect\"\n" },
	{ "phase = \"ehlo\"", "  phase = \"ehlo\"\n" },
	{ "phase = mailfrom", "  phase = \"mailfrom\"\n" },
	{ "phase = RcptTo", "  phase = \"rcptto\"\n" },
	{ "phase = data", "  phase = \"data\"\n" },
	{ "map = [ ]", "  map = [ ]\n" },
	{ "map = [ yahoo.net = \"yahoo.com\" ]", "  map = [\n    \"yahoo.net\" = \"yahoo.com\"\n  ]\n" },
	{ "map = [ a.test = b.test, c.test = d.test, ]",
	  "  map = [\n    \"a.test\" = \"b.test\"\n    \"c.test\" = \"d.test\"\n  ]\n" },
	{ "map = ( \"*.x.test\" = \"y.test\" )", "  map = [\n    \"*.x.test\" = \"y.test\"\n  ]\n" },
	{ "map = [ \"^(.+)\\.example\\.net$\" = \"$1.example.com\" ]",
	  "    \"^(.+)\\\\.example\\\\.net$\" = \"$1.example.com\"\n" },
	{ "map = [ \"^a\\\\.b$\" = \"c.test\" ]", "    \"^a\\\\.b$\" = \"c.test\"\n" },
	{ "map = [ \"^(a)(\\\"?)$\" = \"$1.test\" ]", "    \"^(a)(\\\"?)$\" = \"$1.test\"\n" },
	{ "map = a.test = \"b.test\"", "    \"a.test\" = \"b.test\"\n" },
	{ "MailFrom = \"a@b.test\"", "  mailfrom = \"a@b.test\"\n" }, /* keys are caseless */
};

START_TEST(key_valid)
{
	char text[512];
	char *s;

	snprintf(text, sizeof(text), "smtp_cbv {\n  %s\n}\n", valid[_i].kv);
	s = format_first(text);
	ck_assert_msg(strstr(s, valid[_i].expect) != NULL, "%s: \"%s\" not in:\n%s", valid[_i].kv,
	              valid[_i].expect, s);
	cbv_free(s);
}
END_TEST

/* ---- errors: position and reason ---- */

static const struct {
	const char *text;
	size_t len; /* 0: strlen */
	const char *msg;
} errors[] = {
	{ "smtp_cbv { port = 0 }", 0, "t.conf:1:19: port: 0 out of range 1..65535" },
	{ "smtp_cbv { port = 65536 }", 0, "t.conf:1:19: port: 65536 out of range" },
	{ "smtp_cbv { port = 99999999999999999999 }", 0, "out of range" },
	{ "smtp_cbv { port = -1 }", 0, "port: \"-1\" is not a number" },
	{ "smtp_cbv { port = 25x }", 0, "port: \"25x\" is not a number" },
	{ "smtp_cbv { port = \"\" }", 0, "port: empty number" },
	{ "smtp_cbv { bogus = 1 }", 0, "t.conf:1:12: unknown key \"bogus\" in smtp_cbv block" },
	{ "smtp_cbv {\n  port = 25\n  port = 26\n}", 0,
	  "t.conf:3:3: duplicate key \"port\" (first set on line 2)" },
	{ "smtp_cbv {\n  map = []\n  MAP = []\n}", 0, "t.conf:3:3: duplicate key \"map\"" },
	{ "smtp_cbv \"a\" {}\nsmtp_cbv \"a\" {}", 0, "t.conf:2:1: duplicate profile \"a\"" },
	{ "smtp_cbv {}\nsmtp_cbv \"default\" {}", 0, "t.conf:2:1: duplicate profile \"default\"" },
	{ "smtp_cbv { mailfrom = \"unterminated }", 0, "t.conf:1:23: mailfrom: unterminated string" },
	{ "smtp_cbv { mailfrom = \"a\nb\" }", 0, "t.conf:1:23: mailfrom: unterminated string" },
	{ "smtp_cbv {", 0, "t.conf:1:1: smtp_cbv \"default\" not closed with '}'" },
	{ "smtp_cbv \"x\" {\n port = 1\n", 0, "t.conf:1:1: smtp_cbv \"x\" not closed" },
	{ "smtp_cbv", 0, "t.conf:1:9: expected '{', got end of file" },
	{ "smtp_cbv x y {}", 0, "t.conf:1:12: expected '{', got \"y\"" },
	{ "listener { }", 0, "t.conf:1:1: expected a block such as smtp_cbv \"NAME\" { }, got \"listener\"" },
	{ "\"smtp_cbv\" { }", 0, "t.conf:1:1: expected a block" },
	{ "smtp_cbv { }\n}", 0, "t.conf:2:1: expected a block such as smtp_cbv \"NAME\" { }, got '}'" },
	{ "smtp_cbv { port 25 }", 0, "t.conf:1:17: expected '=' after \"port\", got \"25\"" },
	{ "smtp_cbv { = 1 }", 0, "t.conf:1:12: expected a key, got '='" },
	{ "smtp_cbv { \"port\" = 1 }", 0, "t.conf:1:12: expected a key, got \"port\"" },
	{ "smtp_cbv { port = }", 0, "t.conf:1:19: port: expected a value, got '}'" },
	{ "smtp_cbv { port = [ 25 ] }", 0, "t.conf:1:19: port: expected a value, got '['" },
	{ "smtp_cbv { port = 25 helo }", 0, "t.conf:1:27: expected '=' after \"helo\", got '}'" },
	{ "smtp_cbv { inner { } }", 0, "t.conf:1:12: unknown key \"inner\"" },
	{ "smtp_cbv \"bad name\" {}", 0, "t.conf:1:10: profile name \"bad name\"" },
	{ "smtp_cbv \"\" {}", 0, "profile name \"\"" },
	{ "smtp_cbv \"a{b}\" {}", 0, "profile name" },
	{ "smtp_cbv { timeout = 0 }", 0, "t.conf:1:22: timeout: duration \"0\" must be more than 0" },
	{ "smtp_cbv { timeout = 0s0m }", 0, "must be more than 0" },
	{ "smtp_cbv { timeout = 2d }", 0, "timeout: duration \"2d\" longer than 86400s" },
	{ "smtp_cbv { timeout = 1w }", 0, "longer than" },
	{ "smtp_cbv { timeout = 99999999999999999999s }", 0, "longer than" },
	{ "smtp_cbv { timeout = 5x }", 0, "timeout: \"5x\" is not a duration" },
	{ "smtp_cbv { timeout = s }", 0, "is not a duration" },
	{ "smtp_cbv { timeout = 1.5s }", 0, "is not a duration" },
	{ "smtp_cbv { timeout = 30S }", 0, "is not a duration" },
	{ "smtp_cbv { connect_timeout = -1s }", 0, "connect_timeout: \"-1s\" is not a duration" },
	{ "smtp_cbv { command_timeout = \"\" }", 0, "command_timeout: empty duration" },
	{ "smtp_cbv { max_hosts = 0 }", 0, "max_hosts: 0 out of range 1..64" },
	{ "smtp_cbv { max_hosts = 65 }", 0, "max_hosts: 65 out of range 1..64" },
	{ "smtp_cbv { starttls = maybe }", 0,
	  "starttls: \"maybe\": must be never, opportunistic, ondemand or require" },
	{ "smtp_cbv { starttls = \"\" }", 0, "starttls: \"\": must be" },
	{ "smtp_cbv { tls_verify = maybe }", 0, "tls_verify: \"maybe\": must be yes or no" },
	{ "smtp_cbv { tls_verify = 2 }", 0, "tls_verify:" },
	{ "smtp_cbv { phase = rcpt }", 0,
	  "phase: \"rcpt\": must be connect, ehlo, mailfrom, rcptto or data" },
	{ "smtp_cbv { phase = \"\" }", 0, "phase:" },
	{ "smtp_cbv { mailfrom = \"not an address\" }", 0, "t.conf:1:23: mailfrom: " },
	{ "smtp_cbv { mailfrom = \"a@\" }", 0, "mailfrom: " },
	{ "smtp_cbv { mailfrom = \"<a@b.test>\" }", 0, "mailfrom: " },
	{ "smtp_cbv { helo = \"-bad-.test\" }", 0, "t.conf:1:19: helo: " },
	{ "smtp_cbv { helo = \"a..b\" }", 0, "helo: " },
	{ "smtp_cbv { helo = \"[192.0.2.1]\" }", 0, "helo: " },
	{ "smtp_cbv { deny_networks = [ 10.0.0.0/33 ] }", 0,
	  "t.conf:1:30: deny_networks: \"10.0.0.0/33\": prefix length must be 0 to 32" },
	{ "smtp_cbv { deny_networks = [ a ] }", 0, "deny_networks: \"a\": not an IP address" },
	{ "smtp_cbv { deny_networks = [ 10.0.0.0/8 }", 0,
	  "t.conf:1:41: deny_networks: unexpected '}' in list" },
	{ "smtp_cbv { deny_networks = [ 10.0.0.0/8", 0, "t.conf:1:28: deny_networks: list not closed" },
	{ "smtp_cbv { deny_networks = [ 10.0.0.0/8 ) }", 0, "unexpected ')' in list" },
	{ "smtp_cbv { deny_networks = [ , 10.0.0.0/8 ] }", 0, "unexpected ',' in list" },
	{ "smtp_cbv { deny_networks = { } }", 0, "expected a value or a list, got '{'" },
	{ "smtp_cbv { dns_servers = \"1.2.3.4:0\" }", 0, "dns_servers: \"1.2.3.4:0\": port 0 out of range" },
	{ "smtp_cbv { dns_servers = \"1.2.3.4:65536\" }", 0, "port 65536 out of range" },
	{ "smtp_cbv { dns_servers = \"1.2.3\" }", 0, "\"1.2.3\": not an IPv4 address" },
	{ "smtp_cbv { dns_servers = \"::1:53x\" }", 0, "not an IPv6 address" },
	{ "smtp_cbv { dns_servers = \"[::1\" }", 0, "\"[::1\": missing ']'" },
	{ "smtp_cbv { dns_servers = \"[::1]x\" }", 0, "junk after ']'" },
	{ "smtp_cbv { dns_servers = \"[1.2.3.4]:53\" }", 0, "not an IPv6 address" },
	{ "smtp_cbv { dns_servers = \"ns.example\" }", 0, "not an IPv4 address" },
	{ "smtp_cbv { dns_servers = \"1.2.3.4:\" }", 0, "port empty number" },
	{ "smtp_cbv { map = [ \"a.test\" \"b.test\" ] }", 0,
	  "t.conf:1:29: map: expected '=' after a map pattern, got \"b.test\"" },
	{ "smtp_cbv { map = [ \"a.test\" = ] }", 0, "map: expected a replacement after '=', got ']'" },
	{ "smtp_cbv { map = [ \"^(a\" = \"b.test\" ] }", 0,
	  "t.conf:1:20: map: pattern \"^(a\": missing closing parenthesis" },
	{ "smtp_cbv { map = [ \"a.test\" = \"$1.test\" ] }", 0, "map: replacement \"$1.test\": $1 but the pattern has 0 groups" },
	{ "smtp_cbv { map = [ \"*a.test\" = \"b.test\" ] }", 0, "wildcard" },
	{ "smtp_cbv { map = [ a.test = \"b..test\" ] }", 0, "map: replacement \"b..test\"" },
	{ "smtp_cbv { map = [ a.test = b.test", 0, "map: list not closed" },
	{ "smtp_cbv { vars_acl = \"x}{y\" }", 0, "vars_acl: \"x}{y\": an ACL name" },
	{ "smtp_cbv { vars_acl = \"${run{x}}\" }", 0, "vars_acl:" },
	{ "smtp_cbv { callout_url = \"http://x\" }", 0, "callout_url: must be unix:///PATH or inet://HOST:PORT" },
	{ "smtp_cbv { callout_url = \"unix://run/x\" }", 0, "callout_url: unix:// needs an absolute path" },
	{ "smtp_cbv { callout_url = \"inet://host\" }", 0, "callout_url: inet:// needs HOST:PORT" },
	{ "smtp_cbv { callout_url = \"inet://::1:25\" }", 0, "[ADDRESS]" },
	{ "smtp_cbv { callout_url = \"inet://h:0\" }", 0, "callout_url: port" },
	{ "smtp_cbv { callout_url = \"inet://h 1:25\" }", 0, "callout_url: not a URL" },
	{ "smtp_cbv { callout_url = \"inet://[::1]\" }", 0, "t.conf:1:26: callout_url: expected [IPV6]:PORT" },
	{ "smtp_cbv { callout_url = \"inet6://127.0.0.1:25\" }", 0, "callout_url: write an IPv6 host as [ADDRESS]" },
	{ "smtp_cbv { callout_url = \"unix:///x?y\" }", 0, "callout_url: no query or fragment" },
	{ "smtp_cbv { deny_networks = [ nonglobal nonglobal nonglobal ] }", 0,
	  "t.conf:1:50: deny_networks: more than 64 networks" },
	{ "smtp_cbv { deny_networks = [ nonglobal/8 ] }", 0, "t.conf:1:30: deny_networks: \"nonglobal\": not an IP address" },
	{ "smtp_cbv { ca_dir = relative/dir }", 0, "ca_dir: must be an absolute path" },
	{ "smtp_cbv {\n\0}", 13, "t.conf:2:1: NUL byte" },
	{ "smtp_cbv { helo = \"a\x01\" }", 0, "t.conf:1:21: control character 0x01" },
	{ "smtp_cbv { \x7f }", 0, "control character 0x7f" },
	{ "smtp_cbv {\r}", 0, "t.conf:1:11: CR not followed by LF" },
	{ "# comment\n\nsmtp_cbv \"p\" {\n\tport = 99999\n}", 0, "t.conf:4:9: port: 99999 out of range" },
	{ "smtp_cbv {\r\n  bogus = 1\r\n}\r\n", 0, "t.conf:2:3: unknown key" },
	{ "smtp_cbv { port = 25 } smtp_cbv \"b\" { port = 0 }", 0, "t.conf:1:46: port:" },
	/* one store handle per cache and prefix: its options must agree */
	{ "smtp_cbv \"a\" { cache = \"redis://127.0.0.1:6379\" }\n"
	  "smtp_cbv \"b\" { cache = \"redis://127.0.0.1:6379\" cache_password_file = /etc/s }",
	  0, "t.conf: smtp_cbv \"a\" and \"b\" share cache redis://127.0.0.1:6379 (prefix \"cbv:\") "
	     "but set cache_password_file differently" },
	{ "smtp_cbv \"a\" { cache = \"redis://h:1\" cache_timeout = 1s }\n"
	  "smtp_cbv \"b\" { cache = \"redis://h:1\" }", 0, "but set cache_timeout differently" },
	{ "smtp_cbv \"a\" { cache = \"redis://h:1\" cache_fallback = /var/f }\n"
	  "smtp_cbv \"b\" { cache = \"redis://h:1\" }", 0, "but set cache_fallback differently" },
	{ "smtp_cbv \"a\" { cache = \"redis://h:1\" cache_fallback = /var/f }\n"
	  "smtp_cbv \"b\" { cache = /var/f }", 0,
	  "smtp_cbv \"a\": cache_fallback /var/f is also the LMDB store of smtp_cbv \"b\"" },
	{ "smtp_cbv \"a\" { cache = \"redis://h:1\" cache_fallback = /var/f }\n"
	  "smtp_cbv \"b\" { cache = \"redis://h:2\" cache_fallback = /var/f }", 0,
	  "cache_fallback /var/f is also the LMDB store of smtp_cbv \"b\"" },
};

START_TEST(error_table)
{
	struct cbv_err err;
	struct cbv_config *c;
	size_t len = errors[_i].len ? errors[_i].len : strlen(errors[_i].text);

	memset(&err, 0, sizeof(err));
	c = cbv_config_parse(errors[_i].text, len, "t.conf", &err);
	ck_assert_msg(c == NULL, "accepted: %s", errors[_i].text);
	ck_assert_int_eq(err.code, CBV_ECONFIG);
	ck_assert_msg(strstr(err.msg, errors[_i].msg) != NULL, "%s\n  want: %s\n  got:  %s",
	              errors[_i].text, errors[_i].msg, err.msg);
}
END_TEST

/* Bounds the table cannot express. */
START_TEST(error_bounds)
{
	struct cbv_err err;
	struct cbv_config *c;
	char *text = malloc(CBV_CONFIG_FILE_MAX + 2);
	size_t n;

	/* A line one byte too long. */
	memset(text, ' ', CBV_CONFIG_LINE_MAX + 1);
	memcpy(text, "#", 1);
	ck_assert_ptr_null(cbv_config_parse(text, CBV_CONFIG_LINE_MAX + 1, "t.conf", &err));
	ck_assert_str_eq(err.msg, "t.conf:1:4097: line longer than 4096 bytes");
	/* Exactly at the limit is fine. */
	c = cbv_config_parse(text, CBV_CONFIG_LINE_MAX, "t.conf", &err);
	ck_assert_ptr_nonnull(c);
	cbv_config_free(c);
	/* The whole text. */
	memset(text, '\n', CBV_CONFIG_FILE_MAX + 1);
	ck_assert_ptr_null(cbv_config_parse(text, CBV_CONFIG_FILE_MAX + 1, "t.conf", &err));
	ck_assert_ptr_nonnull(strstr(err.msg, "larger than"));
	/* 65 profiles. */
	n = 0;
	for (int i = 0; i <= CBV_CONFIG_PROFILES_MAX; i++)
		n += (size_t)sprintf(text + n, "smtp_cbv \"p%d\" { }\n", i);
	ck_assert_ptr_null(cbv_config_parse(text, n, "t.conf", &err));
	ck_assert_ptr_nonnull(strstr(err.msg, "t.conf:65:1: more than 64 profiles"));
	/* 65 networks. */
	n = (size_t)sprintf(text, "smtp_cbv { deny_networks = [");
	for (int i = 0; i <= CBV_DENY_MAX; i++)
		n += (size_t)sprintf(text + n, " 10.0.%d.0/24", i);
	n += (size_t)sprintf(text + n, " ] }");
	ck_assert_ptr_null(cbv_config_parse(text, n, "t.conf", &err));
	ck_assert_ptr_nonnull(strstr(err.msg, "more than 64 networks"));
	/* dns_servers longer than its field. */
	n = (size_t)sprintf(text, "smtp_cbv { dns_servers = \"");
	for (int i = 0; i < 40; i++)
		n += (size_t)sprintf(text + n, "[2001:db8::%d]:5353 ", i);
	n += (size_t)sprintf(text + n, "\" }");
	ck_assert_ptr_null(cbv_config_parse(text, n, "t.conf", &err));
	ck_assert_ptr_nonnull(strstr(err.msg, "list longer than 512 bytes"));
	/* NULL text is an empty config. */
	cbv_config_free(cbv_config_parse(NULL, 5, NULL, &err));
	free(text);
}
END_TEST

/* ---- profiles ---- */

/* What may share: the same options, another prefix, one LMDB file. */
START_TEST(shared_stores_ok)
{
	static const char *const ok[] = {
		"smtp_cbv \"a\" { cache = \"redis://h:1\" cache_timeout = 1s cache_fallback = /var/f }\n"
		"smtp_cbv \"b\" { cache = \"redis://h:1\" cache_timeout = 1s cache_fallback = /var/f "
		"helo = b.test }",
		"smtp_cbv \"a\" { cache = \"redis://h:1\" cache_password_file = /etc/a }\n"
		"smtp_cbv \"b\" { cache = \"redis://h:1\" cache_prefix = \"b:\" }",
		"smtp_cbv \"a\" { cache = /var/c cache_size = 1m }\nsmtp_cbv \"b\" { cache = /var/c }",
		"smtp_cbv \"a\" { cache = \"redis://h:1\" cache_fallback = /var/f }\n"
		"smtp_cbv \"b\" { cache = /var/c }",
	};
	struct cbv_err err;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct cbv_config *c = cbv_config_parse(ok[i], strlen(ok[i]), "t.conf", &err);

		ck_assert_msg(c != NULL, "row %zu refused: %s", i, err.msg);
		cbv_config_free(c);
	}
}
END_TEST

START_TEST(profile_selection)
{
	struct cbv_err err;
	struct cbv_config *c;

	c = parse("smtp_cbv \"a\" { port = 1 }\n"
	          "smtp_cbv \"default\" { port = 2 }\n"
	          "smtp_cbv b { port = 3 }\n",
	          &err);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(cbv_config_count(c), 3);
	ck_assert_uint_eq(cbv_config_profile(c, NULL)->port, 2);
	ck_assert_uint_eq(cbv_config_profile(c, "")->port, 2);
	ck_assert_uint_eq(cbv_config_profile(c, "default")->port, 2);
	ck_assert_uint_eq(cbv_config_profile(c, "a")->port, 1);
	ck_assert_uint_eq(cbv_config_profile(c, "b")->port, 3);
	ck_assert_ptr_null(cbv_config_profile(c, "c"));
	ck_assert_ptr_null(cbv_config_profile(c, "A")); /* names are exact */
	ck_assert_str_eq(cbv_config_at(c, 0)->name, "a");
	ck_assert_str_eq(cbv_config_at(c, 2)->name, "b");
	ck_assert_ptr_null(cbv_config_at(c, 3));
	/* Keys left out take the built-in defaults, not the default block's. */
	ck_assert_uint_eq(cbv_config_profile(c, "a")->max_hosts, 5);
	cbv_config_free(c);

	/* Without a "default" block the first one is the default. */
	c = parse("smtp_cbv first { port = 7 } smtp_cbv second { port = 8 }", &err);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(cbv_config_profile(c, NULL)->port, 7);
	ck_assert_str_eq(cbv_config_profile(c, NULL)->name, "first");
	cbv_config_free(c);

	/* An unnamed block is "default"; the block keyword is caseless. */
	c = parse("SMTP_CBV \"x\" { } smtp_cbv { port = 9 }", &err);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(cbv_config_profile(c, NULL)->name, "default");
	ck_assert_uint_eq(cbv_config_profile(c, NULL)->port, 9);
	cbv_config_free(c);

	ck_assert_ptr_null(cbv_config_profile(NULL, NULL));
	ck_assert_uint_eq(cbv_config_count(NULL), 0);
	cbv_config_free(NULL);
}
END_TEST

START_TEST(profile_copy_clear)
{
	struct cbv_err err;
	struct cbv_config *c;
	struct cbv_profile p;
	char out[CBV_DOMAIN_MAX + 1];

	c = parse("smtp_cbv { map = [ a.test = b.test ] }", &err);
	ck_assert_ptr_nonnull(c);
	cbv_profile_copy(&p, cbv_config_profile(c, NULL));
	cbv_config_free(c); /* the copy keeps the map alive */
	ck_assert_int_eq(cbv_map_lookup(p.map, "a.test", out), 1);
	ck_assert_str_eq(out, "b.test");
	cbv_profile_clear(&p);
	ck_assert_ptr_null(p.map);
	cbv_profile_clear(&p);
	cbv_profile_clear(NULL);
}
END_TEST

/* ---- cbv_profile_set(): same values as the file ---- */

static const struct {
	const char *key;
	const char *value;
	const char *expect; /* format line when ok, else error substring */
	int ok;
} sets[] = {
	{ "port", "2525", "  port = 2525\n", 1 },
	{ "PORT", "\"2526\"", "  port = 2526\n", 1 },
	{ "timeout", "10s", "  timeout = 10s\n", 1 },
	{ "mailfrom", "", "  mailfrom = \"\"\n", 1 },
	{ "mailfrom", "probe@example.com", "  mailfrom = \"probe@example.com\"\n", 1 },
	{ "helo", "\"mx.test\"", "  helo = \"mx.test\"\n", 1 },
	{ "helo", "", "  helo = \"\"\n", 1 },
	{ "map", "[ \"a.test\" = \"b.test\" ]", "    \"a.test\" = \"b.test\"\n", 1 },
	{ "map", "a.test=b.test c.test=d.test", "    \"c.test\" = \"d.test\"\n", 1 },
	{ "map", "", "  map = [ ]\n", 1 },
	{ "map", "[]", "  map = [ ]\n", 1 },
	{ "deny_networks", "", "  deny_networks = [ ]\n", 1 },
	{ "deny_networks", "10.0.0.0/8,192.168.0.0/16", "  deny_networks = [ 10.0.0.0/8 192.168.0.0/16 ]\n", 1 },
	{ "deny_networks", "10.0.0.0/8 ::1", "  deny_networks = [ 10.0.0.0/8 ::1/128 ]\n", 1 },
	{ "deny_networks", "[ 10.0.0.0/8 ]", "  deny_networks = [ 10.0.0.0/8 ]\n", 1 },
	{ "deny_networks", "nonglobal", "  deny_networks = [ 0.0.0.0/8 10.0.0.0/8 ", 1 },
	{ "deny_networks", "nonglobal,nonglobal,nonglobal", "deny_networks: more than 64 networks", 0 },
	{ "dns_servers", "127.0.0.1:5353", "  dns_servers = \"127.0.0.1:5353\"\n", 1 },
	{ "dns_servers", "127.0.0.1:5353,[::1]:53", "  dns_servers = \"127.0.0.1:5353,[::1]:53\"\n", 1 },
	{ "dns_servers", "", "  dns_servers = \"\"\n", 1 },
	{ "dns_servers", "[::1]:5353 127.0.0.1", "  dns_servers = \"[::1]:5353,127.0.0.1:53\"\n", 1 },
	{ "starttls", "require", "  starttls = require\n", 1 },
	{ "tls_verify", "yes", "  tls_verify = yes\n", 1 },
	{ "phase", "data", "  phase = \"data\"\n", 1 },
	{ "vars_acl", "acl_cbv", "  vars_acl = \"acl_cbv\"\n", 1 },
	{ "callout_url", "unix:///run/cbvd.sock", "  callout_url = \"unix:///run/cbvd.sock\"\n", 1 },
	{ "callout_url", "inet://[::1]:3535", "  callout_url = \"inet://[::1]:3535\"\n", 1 },
	{ "map", "[a.test=b.test]", "    \"a.test\" = \"b.test\"\n", 1 },
	{ "ca_dir", "/etc/ssl/certs", "  ca_dir = \"/etc/ssl/certs\"\n", 1 },
	{ "max_hosts", "3", "  max_hosts = 3\n", 1 },
	{ "connect_timeout", "2s", "  connect_timeout = 2s\n", 1 },
	{ "command_timeout", "250ms", "  command_timeout = 250ms\n", 1 },
	{ "port", "", "port: empty number", 0 },
	{ "port", "0", "port: 0 out of range 1..65535", 0 },
	{ "port", "25 26", "port: unexpected \"26\" after the value", 0 },
	{ "port", "[ 25 ]", "port: expected a value, got '['", 0 },
	{ "bogus", "1", "bogus: unknown key", 0 },
	{ "", "1", ": unknown key", 0 },
	{ "map", "[ \"^(a\" = \"b.test\" ]", "map: pattern \"^(a\"", 0 },
	{ "map", "a.test", "map: expected '=' after a map pattern, got end of value", 0 },
	{ "map", "a.test = b.test ]", "map: unexpected ']' in list", 0 },
	{ "timeout", "0", "timeout: duration \"0\" must be more than 0", 0 },
	{ "timeout", "", "timeout: empty duration", 0 },
	{ "deny_networks", "[ 10.0.0.0/8", "deny_networks: list not closed", 0 },
	{ "deny_networks", "10.0.0.0/8 junk", "deny_networks: \"junk\": not an IP address", 0 },
	{ "deny_networks", "[ 10.0.0.0/8 ] x", "deny_networks: unexpected \"x\" after the value", 0 },
	{ "helo", "\"unterminated", "helo: unterminated string", 0 },
	{ "mailfrom", "a@b.test\x01", "mailfrom: control character 0x01", 0 },
	{ "starttls", "sometimes", "starttls: \"sometimes\": must be", 0 },
};

START_TEST(set_table)
{
	struct cbv_profile p;
	struct cbv_err err;
	enum cbv_status st;
	char *before, *after;
	struct cbv_err e2;

	cbv_profile_defaults(&p);
	/* Start from a profile that owns a map, so replacing it is tested. */
	ck_assert_int_eq(cbv_profile_set(&p, "map", "[ old.test = kept.test ]", &e2), CBV_OK);
	before = cbv_profile_format(&p);
	st = cbv_profile_set(&p, sets[_i].key, sets[_i].value, &err);
	after = cbv_profile_format(&p);
	if (sets[_i].ok) {
		ck_assert_msg(st == CBV_OK, "%s=%s: %s", sets[_i].key, sets[_i].value, err.msg);
		ck_assert_msg(strstr(after, sets[_i].expect) != NULL, "%s=%s: \"%s\" not in\n%s",
		              sets[_i].key, sets[_i].value, sets[_i].expect, after);
	} else {
		ck_assert_int_eq(st, CBV_ECONFIG);
		ck_assert_msg(strstr(err.msg, sets[_i].expect) != NULL, "%s=%s\n  want: %s\n  got:  %s",
		              sets[_i].key, sets[_i].value, sets[_i].expect, err.msg);
		ck_assert_str_eq(before, after); /* unchanged on error */
	}
	cbv_free(before);
	cbv_free(after);
	cbv_profile_clear(&p);
}
END_TEST

START_TEST(set_null_args)
{
	struct cbv_profile p;
	struct cbv_err err;

	cbv_profile_defaults(&p);
	ck_assert_int_eq(cbv_profile_set(&p, "helo", NULL, &err), CBV_OK);
	ck_assert_int_eq(cbv_profile_set(&p, NULL, "x", &err), CBV_ECONFIG);
	ck_assert_int_eq(cbv_profile_set(&p, "port", "1", NULL), CBV_OK);
	ck_assert_uint_eq(p.port, 1);
}
END_TEST

/* ---- round trip: format -> parse -> format is stable ---- */

static const char design_example[] =
	"    smtp_cbv \"default\" {\n"
	"      mailfrom = \"\"                  # MAIL FROM; \"\" = null sender <>\n"
	"      helo = \"\"                      # \"\" = Exim's $primary_hostname (CLI: FQDN)\n"
	"      port = 25\n"
	"      timeout = 30s                  # overall deadline\n"
	"      connect_timeout = 10s\n"
	"      command_timeout = 10s          # greeting and each reply\n"
	"      max_hosts = 5\n"
	"      starttls = opportunistic       # never | opportunistic | ondemand | require\n"
	"      dns_servers = \"\"               # \"\" = system resolver; \"127.0.0.1:5353\"\n"
	"      deny_networks = [ 0.0.0.0/8 127.0.0.0/8 ::1/128 169.254.0.0/16 fe80::/10 224.0.0.0/4 ff00::/8 ]\n"
	"      vars_acl = \"\"                  # see \"ACL variables\"\n"
	"      callout_url = \"\"               # default callout server for `callout`\n"
	"      map = [\n"
	"        yahoo.net = \"yahoo.com\"                   # exact domain\n"
	"        *.legacy.example = \"example.com\"          # wildcard, Exim style\n"
	"        \"^(.+)\\.example\\.net$\" = \"$1.example.com\" # PCRE2 when it starts with ^\n"
	"      ]\n"
	"      phase = \"mailfrom\"             # accepted for Momentum configs; in Exim the\n"
	"                                     # ACL you call it from is the phase\n"
	"    }\n";

static const char *const round_trips[] = {
	design_example,
	"",
	"smtp_cbv { }",
	"smtp_cbv \"strict\" {\n"
	"  mailfrom = \"postmaster@example.org\"\n  helo = \"mx.example.org\"\n"
	"  timeout = 20s\n  starttls = require\n  tls_verify = yes\n"
	"  ca_dir = \"/etc/ssl/certs\"\n  max_hosts = 64\n  port = 587\n"
	"  map = [ \"^(a)\\\\\\\\(\\\"?)$\" = \"$1.test\", x.test = y.test ]\n"
	"}\n"
	"smtp_cbv \"rig\" {\n  dns_servers = \"127.0.0.1:5353 ::1\"\n  deny_networks = [ ]\n"
	"  timeout = 1d\n  command_timeout = 1500ms\n  connect_timeout = 61\n"
	"  vars_acl = cbv_vars\n  callout_url = \"inet://[::1]:3535\"\n  phase = rcptto\n}\n",
};

/* Formats every profile of c into one config text. */
static char *format_all(const struct cbv_config *c)
{
	size_t cap = 1, n = 0;
	char *all = calloc(1, 1);

	for (size_t i = 0; i < cbv_config_count(c); i++) {
		char *s = cbv_profile_format(cbv_config_at(c, i));

		ck_assert_ptr_nonnull(s);
		cap += strlen(s);
		all = realloc(all, cap);
		memcpy(all + n, s, strlen(s) + 1);
		n += strlen(s);
		cbv_free(s);
	}
	return all;
}

static void check_round_trip(const char *text, size_t len, const char *name)
{
	struct cbv_err err;
	struct cbv_config *c1, *c2;
	char *f1, *f2;

	c1 = cbv_config_parse(text, len, name, &err);
	ck_assert_msg(c1 != NULL, "%s", err.msg);
	f1 = format_all(c1);
	c2 = cbv_config_parse(f1, strlen(f1), "formatted", &err);
	ck_assert_msg(c2 != NULL, "%s in\n%s", err.msg, f1);
	f2 = format_all(c2);
	ck_assert_str_eq(f1, f2);
	ck_assert_uint_eq(cbv_config_count(c1), cbv_config_count(c2));
	free(f1);
	free(f2);
	cbv_config_free(c1);
	cbv_config_free(c2);
}

START_TEST(round_trip)
{
	check_round_trip(round_trips[_i], strlen(round_trips[_i]), "rt.conf");
}
END_TEST

START_TEST(design_example_values)
{
	struct cbv_err err;
	struct cbv_config *c = parse(design_example, &err);
	const struct cbv_profile *p;
	char out[CBV_DOMAIN_MAX + 1];

	ck_assert_msg(c != NULL, "%s", err.msg);
	p = cbv_config_profile(c, NULL);
	ck_assert_uint_eq(p->ndeny, 7);
	ck_assert_uint_eq(cbv_map_count(p->map), 3);
	ck_assert_int_eq(cbv_map_lookup(p->map, "yahoo.net", out), 1);
	ck_assert_str_eq(out, "yahoo.com");
	ck_assert_int_eq(cbv_map_lookup(p->map, "old.legacy.example", out), 1);
	ck_assert_str_eq(out, "example.com");
	ck_assert_int_eq(cbv_map_lookup(p->map, "mx.example.net", out), 1);
	ck_assert_str_eq(out, "mx.example.com");
	ck_assert_str_eq(p->phase, "mailfrom");
	cbv_config_free(c);
}
END_TEST

/* A Momentum-flavoured block: parentheses, commas, bare numbers. */
START_TEST(momentum_block)
{
	struct cbv_err err;
	struct cbv_config *c;
	const struct cbv_profile *p;

	c = parse("smtp_cbv \"smtp_cbv1\" {\n"
	          "  mailfrom = \"cbv@example.com\"\n"
	          "  helo = \"mx.example.com\"\n"
	          "  timeout = 30\n"
	          "  map = [ yahoo.net = \"yahoo.com\", hotmail.net = \"hotmail.com\" ]\n"
	          "  phase = \"rcptto\"\n"
	          "}\n",
	          &err);
	ck_assert_msg(c != NULL, "%s", err.msg);
	p = cbv_config_profile(c, NULL);
	ck_assert_str_eq(p->name, "smtp_cbv1");
	ck_assert_uint_eq(p->timeout_ms, 30000);
	ck_assert_uint_eq(cbv_map_count(p->map), 2);
	cbv_config_free(c);
}
END_TEST

/* ---- loading files ---- */

static const char *srcdir(void)
{
	const char *d = getenv("CBV_SRCDIR");

	return d != NULL ? d : ".";
}

START_TEST(load_shipped_example)
{
	char path[4096];
	struct cbv_err err;
	struct cbv_config *c;
	struct cbv_profile d;
	char *a, *b;
	int missing = -1;

	snprintf(path, sizeof(path), "%s/exim-conf/cbv.conf", srcdir());
	c = cbv_config_load(path, 1, &missing, &err);
	ck_assert_msg(c != NULL, "%s", err.msg);
	ck_assert_int_eq(missing, 0);
	/* It documents the defaults: its default block is exactly them. */
	cbv_profile_defaults(&d);
	a = cbv_profile_format(&d);
	b = cbv_profile_format(cbv_config_profile(c, NULL));
	ck_assert_str_eq(a, b);
	cbv_free(a);
	cbv_free(b);
	cbv_config_free(c);
}
END_TEST

/* The examples commented out in the shipped file must work when enabled. */
START_TEST(load_shipped_commented)
{
	char path[4096], line[4096];
	struct cbv_err err;
	struct cbv_config *c;
	FILE *f;
	char *text = calloc(1, 65536);
	size_t n = 0;
	int in_block = 0;

	snprintf(path, sizeof(path), "%s/exim-conf/cbv.conf", srcdir());
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "# smtp_cbv ", 11) == 0)
			in_block = 1;
		if (in_block && strncmp(line, "# ", 2) == 0) {
			n += (size_t)snprintf(text + n, 65536 - n, "%s", line + 2);
			if (strcmp(line, "# }\n") == 0)
				in_block = 0;
		}
	}
	fclose(f);
	c = parse(text, &err);
	ck_assert_msg(c != NULL, "%s\n%s", err.msg, text);
	ck_assert_uint_eq(cbv_config_count(c), 3);
	ck_assert_int_eq(cbv_config_profile(c, "strict")->starttls, CBV_STARTTLS_REQUIRE);
	ck_assert_str_eq(cbv_config_profile(c, "rig")->dns_servers, "127.0.0.1:5353");
	{
		/* The internal-host example lets 10/8 through and nothing else. */
		const struct cbv_profile *p = cbv_config_profile(c, "internal");
		struct sockaddr_in sin;

		ck_assert_ptr_nonnull(p);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr), 1);
		ck_assert_int_eq(cbv_cidr_match(p->deny, p->ndeny, (struct sockaddr *)&sin), 0);
		ck_assert_int_eq(inet_pton(AF_INET, "192.168.1.1", &sin.sin_addr), 1);
		ck_assert_int_eq(cbv_cidr_match(p->deny, p->ndeny, (struct sockaddr *)&sin), 1);
		ck_assert_int_eq(inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr), 1);
		ck_assert_int_eq(cbv_cidr_match(p->deny, p->ndeny, (struct sockaddr *)&sin), 1);
	}
	cbv_config_free(c);
	free(text);
}
END_TEST

static char tmpdir[64];

static void setup_tmp(void)
{
	strcpy(tmpdir, "/tmp/check_config.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown_tmp(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		perror(cmd);
}

static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

START_TEST(load_files)
{
	char path[128];
	struct cbv_err err;
	struct cbv_config *c;
	int missing = -1;
	char *big;

	/* Missing: the defaults and *missing = 1. */
	snprintf(path, sizeof(path), "%s/none.conf", tmpdir);
	c = cbv_config_load(path, 1, &missing, &err);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(missing, 1);
	ck_assert_uint_eq(cbv_config_count(c), 1);
	ck_assert_uint_eq(cbv_config_profile(c, NULL)->port, 25);
	cbv_config_free(c);
	c = cbv_config_load(path, 1, NULL, &err); /* missing may be NULL */
	ck_assert_ptr_nonnull(c);
	cbv_config_free(c);
	/* Named explicitly (missing_ok = 0): an error naming the path. */
	missing = -1;
	memset(&err, 0, sizeof(err));
	ck_assert_ptr_null(cbv_config_load(path, 0, &missing, &err));
	ck_assert_int_eq(err.code, CBV_ECONFIG);
	ck_assert_int_eq(err.sys_errno, ENOENT);
	ck_assert_int_eq(missing, 0);
	ck_assert_ptr_nonnull(strstr(err.msg, "/none.conf: No such file or directory"));
	ck_assert_ptr_null(cbv_config_load("/nonexistent/cbv.conf", 0, NULL, &err));
	ck_assert_str_eq(err.msg, "/nonexistent/cbv.conf: No such file or directory");

	/* A good file. */
	snprintf(path, sizeof(path), "%s/good.conf", tmpdir);
	write_file(path, "smtp_cbv { port = 2525 }\n", 25);
	c = cbv_config_load(path, 1, &missing, &err);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(missing, 0);
	ck_assert_uint_eq(cbv_config_profile(c, NULL)->port, 2525);
	cbv_config_free(c);

	/* Errors name the file. */
	snprintf(path, sizeof(path), "%s/bad.conf", tmpdir);
	write_file(path, "smtp_cbv {\n\0}\n", 14);
	ck_assert_ptr_null(cbv_config_load(path, 1, &missing, &err));
	ck_assert_int_eq(err.code, CBV_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err.msg, "/bad.conf:2:1: NUL byte"));

	/* A directory, a FIFO: not regular files (and no hang on the FIFO). */
	ck_assert_ptr_null(cbv_config_load(tmpdir, 1, &missing, &err));
	ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_ptr_null(cbv_config_load(path, 1, &missing, &err));
	ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));

	/* Too big. */
	big = malloc(CBV_CONFIG_FILE_MAX + 1);
	memset(big, '\n', CBV_CONFIG_FILE_MAX + 1);
	snprintf(path, sizeof(path), "%s/big.conf", tmpdir);
	write_file(path, big, CBV_CONFIG_FILE_MAX + 1);
	ck_assert_ptr_null(cbv_config_load(path, 1, &missing, &err));
	ck_assert_ptr_nonnull(strstr(err.msg, "larger than"));
	write_file(path, big, CBV_CONFIG_FILE_MAX); /* at the limit: fine */
	c = cbv_config_load(path, 1, &missing, &err);
	ck_assert_msg(c != NULL, "%s", err.msg);
	cbv_config_free(c);
	free(big);

	/* Unreadable (unless we are root) or a path through a file. */
	snprintf(path, sizeof(path), "%s/good.conf/x", tmpdir);
	ck_assert_ptr_null(cbv_config_load(path, 1, &missing, &err));
	ck_assert_int_eq(err.sys_errno, ENOTDIR);
	ck_assert_int_eq(missing, 0);
}
END_TEST

/* ---- numbers and durations ---- */

static const struct {
	const char *in;
	unsigned ms; /* 0: invalid */
} durations[] = {
	{ "30s", 30000 },  { "30", 30000 },     { "2m", 120000 },   { "1h", 3600000 },
	{ "1d", 86400000 }, { "1m30s", 90000 }, { "1m30", 90000 },  { "500ms", 500 },
	{ "1s500ms", 1500 }, { "0s1ms", 1 },    { "1h1h", 7200000 }, { "00010s", 10000 },
	{ "23h59m59s", 86399000 }, { "86400", 86400000 }, { "86401", 0 }, { "1w", 0 },
	{ "", 0 },          { "0", 0 },         { "0ms", 0 },       { "s", 0 },
	{ "1x", 0 },        { "1S", 0 },        { "1 s", 0 },       { " 1s", 0 },
	{ "1s ", 0 },       { "-1s", 0 },       { "+1s", 0 },       { "1.5s", 0 },
	{ "1mss", 0 },      { "1m s", 0 },      { "99999999999999999999999999s", 0 },
	{ "4294967296ms", 0 },
};

START_TEST(duration_table)
{
	unsigned ms = 12345;
	struct cbv_err err;
	enum cbv_status st = cbv_duration_parse(durations[_i].in, strlen(durations[_i].in), &ms, &err);

	if (durations[_i].ms == 0) {
		ck_assert_msg(st == CBV_EINVAL, "\"%s\" accepted as %u", durations[_i].in, ms);
		ck_assert_uint_eq(ms, 12345);
	} else {
		ck_assert_msg(st == CBV_OK, "\"%s\": %s", durations[_i].in, err.msg);
		ck_assert_uint_eq(ms, durations[_i].ms);
	}
}
END_TEST

static const struct {
	const char *in;
	unsigned min, max;
	int ok;
	unsigned v;
} uints[] = {
	{ "0", 0, 10, 1, 0 },     { "10", 0, 10, 1, 10 },  { "11", 0, 10, 0, 0 },
	{ "007", 0, 10, 1, 7 },   { "", 0, 10, 0, 0 },     { "-1", 0, 10, 0, 0 },
	{ "+1", 0, 10, 0, 0 },    { "1 ", 0, 10, 0, 0 },   { "0x1", 0, 10, 0, 0 },
	{ "4294967295", 0, 4294967295u, 1, 4294967295u },
	{ "4294967296", 0, 4294967295u, 0, 0 },
	{ "99999999999999999999999", 0, 4294967295u, 0, 0 },
	{ "5", 6, 10, 0, 0 },
};

START_TEST(uint_table)
{
	unsigned v = 99;
	enum cbv_status st =
		cbv_uint_parse(uints[_i].in, strlen(uints[_i].in), uints[_i].min, uints[_i].max, &v, NULL);

	ck_assert_int_eq(st, uints[_i].ok ? CBV_OK : CBV_EINVAL);
	ck_assert_uint_eq(v, uints[_i].ok ? uints[_i].v : 99);
}
END_TEST

/* ---- OOM ---- */

static const char oom_text[] =
	"smtp_cbv \"a\" { map = [ a.test = b.test \"*.w.test\" = c.test "
	"\"^(.+)\\.r\\.test$\" = \"$1.d.test\" ] dns_servers = \"::1\" }\n"
	"smtp_cbv { port = 26 }\n";

START_TEST(oom_parse)
{
	struct cbv_err err;
	int done = 0;

	for (long n = 0; n < 10000 && !done; n++) {
		struct cbv_config *c;

		cbv_alloc_fail_after(n);
		c = cbv_config_parse(oom_text, strlen(oom_text), "t.conf", &err);
		cbv_alloc_fail_after(-1);
		if (c == NULL) {
			ck_assert_int_eq(err.code, CBV_ENOMEM);
			ck_assert_str_eq(err.msg, "out of memory");
			continue;
		}
		ck_assert_uint_eq(cbv_config_count(c), 2);
		ck_assert_uint_eq(cbv_map_count(cbv_config_profile(c, "a")->map), 3);
		cbv_config_free(c);
		done = 1;
	}
	ck_assert(done);
}
END_TEST

START_TEST(oom_set_format)
{
	struct cbv_err err;
	struct cbv_profile p;
	int done = 0;

	for (long n = 0; n < 10000 && !done; n++) {
		char *before, *s;
		enum cbv_status st;

		cbv_profile_defaults(&p);
		before = cbv_profile_format(&p);
		cbv_alloc_fail_after(n);
		st = cbv_profile_set(&p, "map", "[ \"^(x)\\.y$\" = \"$1.z\" a.b = c.d ]", &err);
		s = st == CBV_OK ? cbv_profile_format(&p) : NULL;
		cbv_alloc_fail_after(-1);
		if (st != CBV_OK) {
			ck_assert_int_eq(st, CBV_ENOMEM);
			s = cbv_profile_format(&p);
			ck_assert_str_eq(s, before); /* unchanged */
		} else if (s != NULL) {
			ck_assert_ptr_nonnull(strstr(s, "\"a.b\" = \"c.d\""));
			done = 1;
		}
		cbv_free(s);
		cbv_free(before);
		cbv_profile_clear(&p);
	}
	ck_assert(done);
}
END_TEST

START_TEST(oom_load)
{
	char path[128];
	struct cbv_err err;
	int done = 0;

	snprintf(path, sizeof(path), "%s/oom.conf", tmpdir);
	write_file(path, oom_text, strlen(oom_text));
	for (long n = 0; n < 10000 && !done; n++) {
		struct cbv_config *c;

		cbv_alloc_fail_after(n);
		c = cbv_config_load(path, 1, NULL, &err);
		cbv_alloc_fail_after(-1);
		if (c == NULL) {
			ck_assert_int_eq(err.code, CBV_ENOMEM);
			continue;
		}
		cbv_config_free(c);
		done = 1;
	}
	ck_assert(done);
	/* A missing file allocates too. */
	snprintf(path, sizeof(path), "%s/none.conf", tmpdir);
	cbv_alloc_fail_after(0);
	ck_assert_ptr_null(cbv_config_load(path, 1, NULL, &err));
	cbv_alloc_fail_after(-1);
	ck_assert_int_eq(err.code, CBV_ENOMEM);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("defaults");
	tcase_add_test(tc, defaults_values);
	tcase_add_test(tc, defaults_empty_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("key_valid");
	tcase_add_loop_test(tc, key_valid, 0, sizeof(valid) / sizeof(valid[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, error_table, 0, sizeof(errors) / sizeof(errors[0]));
	tcase_add_test(tc, error_bounds);
	suite_add_tcase(s, tc);

	tc = tcase_create("profiles");
	tcase_add_test(tc, profile_selection);
	tcase_add_test(tc, shared_stores_ok);
	tcase_add_test(tc, profile_copy_clear);
	suite_add_tcase(s, tc);

	tc = tcase_create("profile_set");
	tcase_add_loop_test(tc, set_table, 0, sizeof(sets) / sizeof(sets[0]));
	tcase_add_test(tc, set_null_args);
	suite_add_tcase(s, tc);

	tc = tcase_create("round_trip");
	tcase_add_loop_test(tc, round_trip, 0, sizeof(round_trips) / sizeof(round_trips[0]));
	tcase_add_test(tc, design_example_values);
	tcase_add_test(tc, momentum_block);
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
	tcase_add_test(tc, load_shipped_example);
	tcase_add_test(tc, load_shipped_commented);
	tcase_add_test(tc, load_files);
	suite_add_tcase(s, tc);

	tc = tcase_create("numbers");
	tcase_add_loop_test(tc, duration_table, 0, sizeof(durations) / sizeof(durations[0]));
	tcase_add_loop_test(tc, uint_table, 0, sizeof(uints) / sizeof(uints[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("oom");
	tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
	tcase_add_test(tc, oom_parse);
	tcase_add_test(tc, oom_set_format);
	tcase_add_test(tc, oom_load);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
