/*
 * check_addr.c - unit tests for cbv_addr: RFC 5321 Mailbox syntax, the
 * RFC 6531 UTF-8 flag, length limits (4.5.3.1), address literals,
 * refusal of every byte that could break out of "RCPT TO:<...>", and
 * international domain names (U-labels -> A-labels, issue 11.2).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_addr.h"

/* A byte string with its length, so rows may hold NUL bytes. */
#define S(s) s, sizeof(s) - 1
#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

struct ok_row {
	const char *in;
	size_t in_len;
	const char *local;
	const char *domain;
	int literal;
	int utf8;
};

static const struct ok_row ok_rows[] = {
	{ S("a@b"), "a", "b", 0, 0 },
	{ S("a@B"), "a", "b", 0, 0 },
	{ S("user@example.com"), "user", "example.com", 0, 0 },
	/* local part keeps its case; the domain is lowered */
	{ S("User.Name+tag@Example.COM"), "User.Name+tag", "example.com", 0, 0 },
	{ S("a@example.com."), "a", "example.com", 0, 0 },
	{ S("a@b."), "a", "b", 0, 0 },
	{ S("!#$%&'*+-/=?^_`{|}~@x.org"), "!#$%&'*+-/=?^_`{|}~", "x.org", 0, 0 },
	{ S("a-@b.com"), "a-", "b.com", 0, 0 },
	{ S("a.b.c@d.com"), "a.b.c", "d.com", 0, 0 },
	{ S("a@1a.com"), "a", "1a.com", 0, 0 },
	{ S("a@123.com"), "a", "123.com", 0, 0 },
	{ S("a@a-b--c.com"), "a", "a-b--c.com", 0, 0 },
	{ S("a@xn--bcher-kva.example"), "a", "xn--bcher-kva.example", 0, 0 },
	/* Quoted-string local parts (RFC 5321 4.1.2) */
	{ S("\"john doe\"@example.com"), "\"john doe\"", "example.com", 0, 0 },
	{ S("\"a\\\"b\"@example.com"), "\"a\\\"b\"", "example.com", 0, 0 },
	{ S("\"a\\\\\"@x.com"), "\"a\\\\\"", "x.com", 0, 0 },
	{ S("\"a@b\"@example.com"), "\"a@b\"", "example.com", 0, 0 },
	{ S("\"<a>\"@example.com"), "\"<a>\"", "example.com", 0, 0 },
	{ S("\"a..b\"@example.com"), "\"a..b\"", "example.com", 0, 0 },
	{ S("\".a.\"@example.com"), "\".a.\"", "example.com", 0, 0 },
	{ S("\" \"@example.com"), "\" \"", "example.com", 0, 0 },
	{ S("\"\\ \"@example.com"), "\"\\ \"", "example.com", 0, 0 },
	/* address literals (RFC 5321 4.1.3) */
	{ S("a@[127.0.0.1]"), "a", "[127.0.0.1]", 1, 0 },
	{ S("a@[192.0.2.255]"), "a", "[192.0.2.255]", 1, 0 },
	{ S("a@[IPv6:::1]"), "a", "[IPv6:::1]", 1, 0 },
	{ S("a@[ipv6:2001:DB8::1]"), "a", "[IPv6:2001:db8::1]", 1, 0 },
	{ S("a@[IPv6:::ffff:192.0.2.1]"), "a", "[IPv6:::ffff:192.0.2.1]", 1, 0 },
	{ S("a@[IPv6:1:2:3:4:5:6:7:8]"), "a", "[IPv6:1:2:3:4:5:6:7:8]", 1, 0 },
	/* UTF-8 (RFC 6531): accepted, flagged */
	{ S("j\xc3\xbcrgen@example.com"), "j\xc3\xbcrgen", "example.com", 0, 1 },
	{ S("\"j\xc3\xbc rgen\"@example.com"), "\"j\xc3\xbc rgen\"", "example.com", 0, 1 },
	/* IDN: the domain becomes A-labels; only a UTF-8 local part needs SMTPUTF8 */
	{ S("a@B\xc3\xbc" "cher.DE"), "a", "xn--bcher-kva.de", 0, 0 },
	{ S("alice@b\xc3\xbc" "cher.test"), "alice", "xn--bcher-kva.test", 0, 0 },
	{ S("j\xc3\xbcrgen@b\xc3\xbc" "cher.test"), "j\xc3\xbcrgen", "xn--bcher-kva.test", 0, 1 },
	{ S("a@B\xc3\x9c" "CHER.de."), "a", "xn--bcher-kva.de", 0, 0 },     /* UTS #46 case map */
	{ S("a@stra\xc3\x9f" "e.de"), "a", "xn--strae-oqa.de", 0, 0 },     /* non-transitional */
	{ S("a@b\xc3\xbc" "cher\xe3\x80\x82" "de"), "a", "xn--bcher-kva.de", 0, 0 }, /* U+3002 */
	{ S("a@\xef\xbd\x85\xef\xbd\x98.com"), "a", "ex.com", 0, 0 }, /* fullwidth "ex" */
	{ S("a@u\xcc\x88" "ber.de"), "a", "xn--ber-goa.de", 0, 0 },       /* NFC: u + U+0308 */
	{ S("a@XN--BCHER-KVA.de"), "a", "xn--bcher-kva.de", 0, 0 },         /* given as A-label */
	{ S("\xf0\x9f\x98\x80@x.com"), "\xf0\x9f\x98\x80", "x.com", 0, 1 },
	{ S("\xe2\x82\xac@x.com"), "\xe2\x82\xac", "x.com", 0, 1 },
	{ S("\xc2\xa0@x.com"), "\xc2\xa0", "x.com", 0, 1 },
	{ S("\xf4\x8f\xbf\xbf@x.com"), "\xf4\x8f\xbf\xbf", "x.com", 0, 1 },
};

START_TEST(test_ok)
{
	const struct ok_row *row = &ok_rows[_i];
	struct cbv_addr a;
	struct cbv_err err;
	enum cbv_status st;

	cbv_err_clear(&err);
	st = cbv_addr_parse(row->in, row->in_len, &a, &err);
	ck_assert_msg(st == CBV_OK, "row %d: %s", _i, err.msg);
	ck_assert_str_eq(a.local, row->local);
	ck_assert_str_eq(a.domain, row->domain);
	ck_assert_int_eq(a.literal, row->literal);
	ck_assert_int_eq(a.utf8, row->utf8);
}
END_TEST

struct bad_row {
	const char *in;
	size_t in_len;
	const char *msg; /* substring of err.msg */
};

static const struct bad_row bad_rows[] = {
	{ S(""), "empty address" },
	{ S("foo"), "missing @" },
	{ S("foo.example.com"), "missing @" },
	{ S("\"a\""), "missing @" },
	{ S("@example.com"), "empty local part" },
	{ S("\"\"@example.com"), "empty local part" },
	{ S("a@"), "empty domain" },
	{ S("a@."), "empty domain" },
	/* bytes that would end or split the SMTP command */
	{ S("a\r\n@b.com"), "control character 0x0d" },
	{ S("a@b.com\r\nRCPT TO:<x@y.com>"), "control character 0x0d" },
	{ S("a\n@b.com"), "control character 0x0a" },
	{ S("a@b.com\n"), "control character 0x0a" },
	{ S("a\0b@c.com"), "control character 0x00" },
	{ S("a@c.com\0"), "control character 0x00" },
	{ S("a\tb@c.com"), "control character 0x09" },
	{ S("\"a\tb\"@c.com"), "control character 0x09" },
	{ S("a@b.com\x7f"), "control character 0x7f" },
	{ S("a\x1b@b.com"), "control character 0x1b" },
	{ S("a\xc2\x85@b.com"), "control character U+0085" },
	/* angle brackets outside quotes */
	{ S("<a@b.com>"), "'<' outside quotes" },
	{ S("a@b.com>"), "'>' outside quotes" },
	{ S("a>b@c.com"), "'>' outside quotes" },
	{ S("a@b.com><x@y.com"), "'>' outside quotes" },
	{ S("a@<b.com"), "'<' outside quotes" },
	/* Dot-string */
	{ S(".a@b.com"), "starts with a dot" },
	{ S("a.@b.com"), "ends with a dot" },
	{ S("a..b@c.com"), "two dots in a row" },
	{ S(".@b.com"), "starts with a dot" },
	{ S("a b@c.com"), "invalid character ' ' in local part" },
	{ S(" a@b.com"), "invalid character ' ' in local part" },
	{ S("a(x)@b.com"), "invalid character '(' in local part" },
	{ S("a,b@c.com"), "invalid character ',' in local part" },
	{ S("a\\b@c.com"), "invalid character '\\' in local part" },
	{ S("a\"b\"@c.com"), "invalid character '\"' in local part" },
	{ S("a[b]@c.com"), "invalid character '[' in local part" },
	{ S("Name a@b.com"), "invalid character ' ' in local part" },
	/* Quoted-string */
	{ S("\"abc@d.com"), "unterminated quoted local part" },
	{ S("\"a\\\"@b.com"), "unterminated quoted local part" },
	{ S("\"a\\"), "unterminated quoted local part" },
	{ S("\"a\"b@c.com"), "junk after quoted local part" },
	{ S("\"a\".b@c.com"), "junk after quoted local part" },
	{ S("\"a\\\xc3\xbc\"@b.com"), "bad escape" },
	/* domain */
	{ S("a@-b.com"), "starts with a hyphen" },
	{ S("a@b-.com"), "ends with a hyphen" },
	{ S("a@b.-com"), "starts with a hyphen" },
	{ S("a@b..com"), "empty label" },
	{ S("a@.b.com"), "empty label" },
	{ S("a@b.com.."), "empty label" },
	{ S("a@b_c.com"), "invalid character '_' in domain" },
	{ S("a@b.com "), "invalid character ' ' in domain" },
	{ S("a@b@c.com"), "invalid character '@' in domain" },
	{ S("a@b,c.com"), "invalid character ',' in domain" },
	{ S("a@1.2.3.4"), "all-numeric top-level domain" },
	{ S("a@127.0.0.1"), "all-numeric top-level domain" },
	{ S("a@123"), "all-numeric top-level domain" },
	{ S("a@b.123."), "all-numeric top-level domain" },
	/* address literals */
	{ S("a@[999.1.1.1]"), "bad IPv4 address literal" },
	{ S("a@[1.2.3]"), "bad IPv4 address literal" },
	{ S("a@[1.2.3.4.5]"), "bad IPv4 address literal" },
	{ S("a@[127.0.0.01]"), "bad IPv4 address literal" },
	{ S("a@[0x7f.0.0.1]"), "bad IPv4 address literal" },
	{ S("a@[]"), "bad IPv4 address literal" },
	{ S("a@[ 1.2.3.4]"), "bad IPv4 address literal" },
	{ S("a@[1.2.3.4]]"), "bad IPv4 address literal" },
	{ S("a@[127.0.0.1"), "unterminated address literal" },
	{ S("a@["), "unterminated address literal" },
	{ S("a@[127.0.0.1]x"), "junk after address literal" },
	{ S("a@[127.0.0.1]."), "junk after address literal" },
	{ S("a@[IPv6:::1:zz]"), "bad IPv6 address literal" },
	{ S("a@[IPv6:1.2.3.4]"), "bad IPv6 address literal" },
	{ S("a@[IPv6:]"), "bad IPv6 address literal" },
	{ S("a@[IPv6:fe80::1%eth0]"), "bad IPv6 address literal" },
	{ S("a@[IPv6:1:2:3:4:5:6:7:8:9]"), "bad IPv6 address literal" },
	{ S("a@[::1]"), "unsupported address literal" },
	{ S("a@[x-tag:foo]"), "unsupported address literal" },
	/* malformed UTF-8 (RFC 3629) */
	{ S("\xc3\x28@x.com"), "invalid UTF-8" },      /* bad continuation */
	{ S("\x80@x.com"), "invalid UTF-8" },          /* lone continuation */
	{ S("\xc0\xaf@x.com"), "invalid UTF-8" },      /* overlong '/' */
	{ S("\xc1\xbf@x.com"), "invalid UTF-8" },      /* overlong */
	{ S("\xe0\x80\xaf@x.com"), "invalid UTF-8" },  /* overlong, 3 bytes */
	{ S("\xf0\x80\x80\xaf@x.com"), "invalid UTF-8" },
	{ S("\xed\xa0\x80@x.com"), "invalid UTF-8" },  /* surrogate */
	{ S("\xf4\x90\x80\x80@x.com"), "invalid UTF-8" },/* > U+10FFFF */
	{ S("\xf5\x80\x80\x80@x.com"), "invalid UTF-8" },
	{ S("\xff@x.com"), "invalid UTF-8" },
	{ S("\xe2\x82@x.com"), "invalid UTF-8" },      /* truncated */
	{ S("a@x.com\xe2\x82"), "invalid UTF-8" },     /* truncated at end */
	{ S("a@b\xc3.com"), "invalid UTF-8" },
	/* invalid IDNs: refused, nothing is sent */
	{ S("a@\xe2\x98\x83.com"), "invalid international domain name" },   /* U+2603 */
	{ S("a@\xf0\x9f\x98\x80.com"), "invalid international domain name" }, /* emoji */
	{ S("a@\xcc\x81x.com"), "invalid international domain name" },       /* leading mark */
	{ S("a@\xe2\x80\xae" "abc.com"), "invalid international domain name" }, /* RLO */
	{ S("a@x.\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93"), "all-numeric" }, /* fullwidth 123 */
	{ S("a@x\xef\xbc\xbf" "y.com"), "invalid character '_' in domain" }, /* fullwidth _ */
	{ S("I@0-rm\xcb\x99"), "invalid international domain name" },  /* U+02D9: fuzz */
	{ S("a@b\xc3\xbc" "cher\xe3\x80\x82\xe3\x80\x82" "de"), "empty label" },
};

START_TEST(test_bad)
{
	const struct bad_row *row = &bad_rows[_i];
	static const struct cbv_addr zero;
	struct cbv_addr a;
	struct cbv_err err;
	enum cbv_status st;

	memset(&a, 'Z', sizeof(a));
	cbv_err_clear(&err);
	st = cbv_addr_parse(row->in, row->in_len, &a, &err);
	ck_assert_msg(st == CBV_EINVAL, "row %d: accepted as %s@%s", _i, a.local, a.domain);
	ck_assert_int_eq(err.code, CBV_EINVAL);
	ck_assert_msg(strstr(err.msg, row->msg) != NULL, "row %d: message \"%s\", want \"%s\"",
	              _i, err.msg, row->msg);
	ck_assert_msg(memcmp(&a, &zero, sizeof(a)) == 0, "row %d: out not zeroed", _i);
}
END_TEST

/*
 * Length limits (RFC 5321 4.5.3.1): generated addresses.  The domain is
 * labels of 62 letters; label_len > 0 makes it one label of that length
 * plus ".com" instead.
 */
struct len_row {
	size_t local_len;  /* octets, quotes included when quoted */
	int quoted;
	size_t domain_len;
	size_t label_len;
	int dot;           /* append a trailing dot */
	const char *msg;   /* NULL: valid */
};

static const struct len_row len_rows[] = {
	{ 64, 0, 10, 0, 0, NULL },
	{ 65, 0, 10, 0, 0, "local part longer than 64 octets" },
	{ 64, 1, 10, 0, 0, NULL },
	{ 65, 1, 10, 0, 0, "local part longer than 64 octets" },
	{ 1, 0, 0, 63, 0, NULL },
	{ 1, 0, 0, 64, 0, "domain label longer than 63 octets" },
	/* path = "<" local "@" domain ">" <= 256 */
	{ 1, 0, 252, 0, 0, NULL },
	{ 1, 0, 252, 0, 1, NULL },
	{ 1, 0, 253, 0, 0, "path limit 256" },
	{ 64, 0, 189, 0, 0, NULL },
	{ 64, 0, 190, 0, 0, "path limit 256" },
	{ 64, 1, 189, 0, 1, NULL },
	{ 2, 0, 255, 0, 0, "path limit 256" },
	{ 1, 0, 256, 0, 0, "domain longer than 255 octets" },
	{ 64, 0, 256, 0, 1, "address longer than 254 octets" },
	{ 200, 0, 200, 0, 0, "address longer than 254 octets" },
	{ 1000, 0, 10, 0, 0, "address longer than 254 octets" },
};

/* Writes n octets of domain: 62-letter labels, no trailing dot. */
static void gen_domain(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (i % 63 == 62 && i + 1 < n) ? '.' : (char)('a' + i % 26);
}

/* Builds the address of a len_row into buf; returns its length. */
static size_t gen_addr(const struct len_row *r, char *buf)
{
	size_t n = 0, i;

	if (r->quoted) {
		buf[n++] = '"';
		for (i = 2; i < r->local_len; i++)
			buf[n++] = (i % 5 == 0) ? ' ' : 'q';
		buf[n++] = '"';
	} else {
		for (i = 0; i < r->local_len; i++)
			buf[n++] = 'l';
	}
	buf[n++] = '@';
	if (r->label_len > 0) {
		memset(buf + n, 'd', r->label_len);
		n += r->label_len;
		memcpy(buf + n, ".com", 4);
		n += 4;
	} else {
		gen_domain(buf + n, r->domain_len);
		n += r->domain_len;
	}
	if (r->dot)
		buf[n++] = '.';
	return n;
}

START_TEST(test_limits)
{
	const struct len_row *row = &len_rows[_i];
	char buf[2048];
	size_t n = gen_addr(row, buf);
	struct cbv_addr a;
	struct cbv_err err;
	enum cbv_status st;

	cbv_err_clear(&err);
	st = cbv_addr_parse(buf, n, &a, &err);
	if (row->msg == NULL) {
		ck_assert_msg(st == CBV_OK, "row %d: %s", _i, err.msg);
		ck_assert_uint_eq(strlen(a.local), row->local_len);
		ck_assert_uint_le(strlen(a.local) + strlen(a.domain) + 3, CBV_PATH_MAX);
		ck_assert_uint_eq(n - strlen(a.local) - 1 - (size_t)row->dot,
		                  strlen(a.domain));
	} else {
		ck_assert_int_eq(st, CBV_EINVAL);
		ck_assert_msg(strstr(err.msg, row->msg) != NULL, "row %d: message \"%s\"",
		              _i, err.msg);
	}
}
END_TEST

/* cbv_addr_check_domain(): map results and HELO names. */
struct dom_row {
	const char *in;    /* NULL: generated, gen_len octets (+ dot) */
	size_t gen_len;
	int dot;
	const char *want;  /* lower-cased result, NULL if refused */
	const char *msg;
};

static const struct dom_row dom_rows[] = {
	{ "Example.COM", 0, 0, "example.com", NULL },
	{ "example.com.", 0, 0, "example.com", NULL },
	{ "localhost", 0, 0, "localhost", NULL },
	{ "b\xc3\xbc" "cher.de", 0, 0, "xn--bcher-kva.de", NULL },
	{ "B\xc3\xbc" "cher.DE.", 0, 0, "xn--bcher-kva.de", NULL },
	{ "\xe2\x98\x83.com", 0, 0, NULL, "invalid international domain name" },
	{ "", 0, 0, NULL, "empty domain" },
	{ ".", 0, 0, NULL, "empty domain" },
	{ "example.com..", 0, 0, NULL, "empty label" },
	{ "[127.0.0.1]", 0, 0, NULL, "address literal not allowed" },
	{ "a b.com", 0, 0, NULL, "invalid character ' '" },
	{ "-a.com", 0, 0, NULL, "starts with a hyphen" },
	{ "a-.com", 0, 0, NULL, "ends with a hyphen" },
	{ "a.com\r\n", 0, 0, NULL, "control character 0x0d in domain" },
	{ "10.0.0.1", 0, 0, NULL, "all-numeric" },
	{ "a\xc0\xaf.com", 0, 0, NULL, "invalid UTF-8 in domain" },
	{ "a@b.com", 0, 0, NULL, "invalid character '@'" },
	{ "a>b.com", 0, 0, NULL, "'>' outside quotes" },
	{ NULL, 255, 0, "", NULL },
	{ NULL, 255, 1, "", NULL },
	{ NULL, 256, 0, NULL, "domain longer than 255 octets" },
	{ NULL, 256, 1, NULL, "domain longer than 255 octets" },
	{ NULL, 1000, 0, NULL, "domain longer than 255 octets" },
};

START_TEST(test_check_domain)
{
	const struct dom_row *row = &dom_rows[_i];
	char in[1024], out[CBV_DOMAIN_MAX + 1], want[CBV_DOMAIN_MAX + 1];
	size_t n;
	struct cbv_err err;
	enum cbv_status st;

	if (row->in != NULL) {
		n = strlen(row->in);
		memcpy(in, row->in, n);
	} else {
		gen_domain(in, row->gen_len);
		n = row->gen_len;
		if (row->dot)
			in[n++] = '.';
	}
	memset(out, 'Z', sizeof(out));
	cbv_err_clear(&err);
	st = cbv_addr_check_domain(in, n, out, &err);
	if (row->want != NULL) {
		ck_assert_msg(st == CBV_OK, "row %d: %s", _i, err.msg);
		if (row->in == NULL) {
			gen_domain(want, row->gen_len);
			want[row->gen_len] = '\0';
			ck_assert_str_eq(out, want);
		} else {
			ck_assert_str_eq(out, row->want);
		}
	} else {
		ck_assert_int_eq(st, CBV_EINVAL);
		ck_assert_msg(strstr(err.msg, row->msg) != NULL, "row %d: message \"%s\"",
		              _i, err.msg);
		ck_assert_str_eq(out, "");
	}
}
END_TEST

/* cbv_addr_format(): local@domain, optionally with a mapped domain. */
struct fmt_row {
	const char *in;
	const char *domain; /* override, or NULL */
	size_t n;
	const char *want;   /* NULL: CBV_EINVAL */
};

static const struct fmt_row fmt_rows[] = {
	{ "a@b.com", NULL, 64, "a@b.com" },
	{ "a@B.com", "mapped.example", 64, "a@mapped.example" },
	{ "\"x y\"@b.com", NULL, 64, "\"x y\"@b.com" },
	{ "a@b.com", NULL, 8, "a@b.com" },
	{ "a@b.com", NULL, 7, NULL },
	{ "a@b.com", NULL, 0, NULL },
	{ "a@[IPv6:::1]", NULL, 64, "a@[IPv6:::1]" },
};

START_TEST(test_format)
{
	const struct fmt_row *row = &fmt_rows[_i];
	struct cbv_addr a;
	struct cbv_err err;
	char buf[300];

	ck_assert_int_eq(cbv_addr_parse(row->in, strlen(row->in), &a, &err), CBV_OK);
	memset(buf, 'Z', sizeof(buf));
	if (row->want != NULL) {
		ck_assert_int_eq(cbv_addr_format(&a, row->domain, buf, row->n, &err), CBV_OK);
		ck_assert_str_eq(buf, row->want);
	} else {
		ck_assert_int_eq(cbv_addr_format(&a, row->domain, buf, row->n, &err),
		                 CBV_EINVAL);
		if (row->n > 0)
			ck_assert_str_eq(buf, "");
		else
			ck_assert_int_eq(buf[0], 'Z');
	}
}
END_TEST

/* A mapped domain can make a valid address too long for a path. */
START_TEST(test_format_path)
{
	struct cbv_addr a;
	struct cbv_err err;
	char dom[300], buf[600];

	ck_assert_int_eq(cbv_addr_parse(S("l@b.com"), &a, &err), CBV_OK);
	gen_domain(dom, 252);
	dom[252] = '\0';
	ck_assert_int_eq(cbv_addr_format(&a, dom, buf, sizeof(buf), &err), CBV_OK);
	ck_assert_uint_eq(strlen(buf), CBV_PATH_MAX - 2);
	gen_domain(dom, 253);
	dom[253] = '\0';
	ck_assert_int_eq(cbv_addr_format(&a, dom, buf, sizeof(buf), &err), CBV_EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "longer than 254"));
	ck_assert_str_eq(buf, "");
}
END_TEST

/*
 * IDN label limits apply to the A-label: 57 x U+00FC is 114 octets of
 * UTF-8 and a 63-octet A-label; 58 of them make 64 (RFC 1035 2.3.4).
 */
START_TEST(test_idn_label_limit)
{
	struct cbv_addr a;
	struct cbv_err err;
	char in[200], out[CBV_DOMAIN_MAX + 1];
	size_t n = 0;

	for (int k = 0; k < 57; k++) {
		in[n++] = '\xc3';
		in[n++] = '\xbc';
	}
	memcpy(in + n, ".de", 3);
	ck_assert_int_eq(cbv_addr_check_domain(in, n + 3, out, &err), CBV_OK);
	ck_assert_uint_eq(strcspn(out, "."), 63);
	memmove(in + 2, in, n + 3);
	in[0] = 'a';
	in[1] = '@';
	ck_assert_int_eq(cbv_addr_parse(in, n + 5, &a, &err), CBV_OK);
	ck_assert_uint_eq(strlen(a.domain), 66);
	memmove(in + 4, in + 2, n + 3);
	in[2] = '\xc3';
	in[3] = '\xbc';
	ck_assert_int_eq(cbv_addr_parse(in, n + 7, &a, &err), CBV_EINVAL);
	ck_assert_msg(strstr(err.msg, "invalid international domain name") != NULL, "%s", err.msg);
}
END_TEST

/* The Unicode form shown in messages and sent under SMTPUTF8. */
struct show_row {
	const char *ascii;
	int idn;           /* cbv_addr_domain_utf8() result */
	const char *utf8;
	const char *show;
};

static const struct show_row show_rows[] = {
	{ "xn--bcher-kva.test", 1, "b\xc3\xbc" "cher.test", "b\xc3\xbc" "cher.test (xn--bcher-kva.test)" },
	{ "mx.xn--strae-oqa.de", 1, "mx.stra\xc3\x9f" "e.de", "mx.stra\xc3\x9f" "e.de (mx.xn--strae-oqa.de)" },
	{ "example.com", 0, "example.com", "example.com" },
	{ "[127.0.0.1]", 0, "[127.0.0.1]", "[127.0.0.1]" },
	/* not a valid A-label (bad punycode): shown as it is */
	{ "xn--zz-.test", 0, "xn--zz-.test", "xn--zz-.test" },
	/* decodes to U+202E RIGHT-TO-LEFT OVERRIDE + "abc": never shown decoded */
	{ "xn--abc-4q0a.test", 0, "xn--abc-4q0a.test", "xn--abc-4q0a.test" },
};

START_TEST(test_domain_show)
{
	const struct show_row *row = &show_rows[_i];
	char out[CBV_DOMAIN_MAX + 1], show[2 * CBV_DOMAIN_MAX + 4];

	ck_assert_int_eq(cbv_addr_domain_utf8(row->ascii, out, sizeof(out)), row->idn);
	ck_assert_str_eq(out, row->utf8);
	cbv_addr_domain_show(row->ascii, show, sizeof(show));
	ck_assert_str_eq(show, row->show);
	/* no room: the ASCII name, truncated, never a partial UTF-8 form */
	ck_assert_int_eq(cbv_addr_domain_utf8(row->ascii, out, 4), 0);
	ck_assert_uint_eq(strlen(out), 3);
}
END_TEST

/* err may be NULL; in may be NULL when len is 0. */
START_TEST(test_null_err)
{
	struct cbv_addr a;
	char out[CBV_DOMAIN_MAX + 1];

	ck_assert_int_eq(cbv_addr_parse(NULL, 0, &a, NULL), CBV_EINVAL);
	ck_assert_int_eq(cbv_addr_parse(S("a\r@b"), &a, NULL), CBV_EINVAL);
	ck_assert_int_eq(cbv_addr_parse(S("a@b"), &a, NULL), CBV_OK);
	ck_assert_int_eq(cbv_addr_check_domain(NULL, 0, out, NULL), CBV_EINVAL);
	ck_assert_int_eq(cbv_addr_check_domain(S("x."), out, NULL), CBV_OK);
	ck_assert_str_eq(out, "x");
	/* len bounds the input: bytes after it are never read */
	ck_assert_int_eq(cbv_addr_parse("a@b.com\r\n", 7, &a, NULL), CBV_OK);
	ck_assert_str_eq(a.domain, "b.com");
}
END_TEST

static Suite *addr_suite(void)
{
	Suite *s = suite_create("addr");
	TCase *tc;

	tc = tcase_create("valid");
	tcase_add_loop_test(tc, test_ok, 0, NROWS(ok_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("invalid");
	tcase_add_loop_test(tc, test_bad, 0, NROWS(bad_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("limits");
	tcase_add_loop_test(tc, test_limits, 0, NROWS(len_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("check_domain");
	tcase_add_loop_test(tc, test_check_domain, 0, NROWS(dom_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("format");
	tcase_add_loop_test(tc, test_format, 0, NROWS(fmt_rows));
	tcase_add_test(tc, test_format_path);
	suite_add_tcase(s, tc);
	tc = tcase_create("idn");
	tcase_add_test(tc, test_idn_label_limit);
	tcase_add_loop_test(tc, test_domain_show, 0, NROWS(show_rows));
	suite_add_tcase(s, tc);
	tc = tcase_create("null_err");
	tcase_add_test(tc, test_null_err);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(addr_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
