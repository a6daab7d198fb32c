/*
 * cbv_addr.c - RFC 5321 Mailbox parser (4.1.2, 4.1.3, 4.5.3.1), with the
 * RFC 6531 UTF-8 extension.
 *
 * The address comes from the ACL, that is from the SMTP client we are
 * judging: it is hostile input.  Whatever passes here is later written
 * into "RCPT TO:<...>" on a live SMTP connection, so every byte that could
 * end that command early (CR, LF, NUL), close the path ('>') or confuse a
 * log is refused, not cleaned.  Checks run in this order: overall length,
 * bytes (controls, UTF-8), local part, domain, IDNA conversion, path
 * length; the first fault found is reported.
 *
 * International domain names: U-labels are converted to A-labels with
 * libidn2 (IDNA2008 with UTS #46 non-transitional mapping), and the
 * A-label form is what the rest of the code sees: DNS, the domain map,
 * RCPT, HELO.  The result must pass the LDH host rules again, so a
 * mapping to '_' or a space is refused, not dropped.  A name that does
 * not convert is a syntax error: nothing may be sent for it.  A-labels
 * given as such are left as they are (ASCII is never run through libidn2).
 */
#include "cbv_addr.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cbv_text.h"

/* Longest input that could still be valid: local@domain plus a trailing dot. */
#define INPUT_MAX (CBV_LOCALPART_MAX + 1 + CBV_DOMAIN_MAX + 1)

static int is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* RFC 5321 4.1.2 atext (RFC 5322 3.2.3), plus UTF-8 bytes (RFC 6531 3.3). */
static int is_atext(unsigned char c)
{
	return is_alnum(c) || c >= 0x80 ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/*
 * Refuses control bytes (C0, DEL, and the C1 controls U+0080..U+009F in
 * their UTF-8 form) and malformed UTF-8 anywhere in in.  Sets *utf8 if a
 * non-ASCII character is present.  what names the input in messages.
 */
static enum cbv_status check_bytes(const char *in, size_t len, const char *what,
                                   int *utf8, struct cbv_err *err)
{
	const unsigned char *s = (const unsigned char *)in;
	unsigned long cp = 0;
	size_t i = 0, n;

	while (i < len) {
		if (cbv_text_is_ctl(s[i]))
			return cbv_err_set(err, CBV_EINVAL,
			                   "control character 0x%02x in %s", s[i], what);
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		n = cbv_text_utf8_seq(in + i, len - i, &cp);
		if (n == 0)
			return cbv_err_set(err, CBV_EINVAL,
			                   "invalid UTF-8 in %s at octet %zu", what, i);
		if (cp <= 0x9f)
			return cbv_err_set(err, CBV_EINVAL,
			                   "control character U+%04lX in %s", cp, what);
		*utf8 = 1;
		i += n;
	}
	return CBV_OK;
}

/*
 * Finds the end of the local part (RFC 5321 4.1.2 Local-part: Dot-string
 * or Quoted-string) at the start of in; *at is set to the index of the
 * '@' that follows it.
 */
static enum cbv_status parse_local(const char *in, size_t len, size_t *at,
                                   struct cbv_err *err)
{
	size_t i;
	unsigned char c;

	if (in[0] == '"') {
		for (i = 1; i < len && in[i] != '"'; i++) {
			if (in[i] != '\\')
				continue;
			/* quoted-pairSMTP = %d92 %d32-126 */
			if (++i >= len)
				break;
			if ((unsigned char)in[i] >= 0x80)
				return cbv_err_set(err, CBV_EINVAL,
				                   "bad escape in quoted local part");
		}
		if (i >= len)
			return cbv_err_set(err, CBV_EINVAL, "unterminated quoted local part");
		i++;
		if (i == 2)
			return cbv_err_set(err, CBV_EINVAL, "empty local part");
		if (i >= len)
			return cbv_err_set(err, CBV_EINVAL, "missing @");
		if (in[i] != '@')
			return cbv_err_set(err, CBV_EINVAL,
			                   "junk after quoted local part");
	} else {
		for (i = 0; i < len && in[i] != '@'; i++) {
			c = (unsigned char)in[i];
			/* '<' '>' would let "a>b@c" close RCPT TO:<...> early. */
			if (c == '<' || c == '>')
				return cbv_err_set(err, CBV_EINVAL,
				                   "'%c' outside quotes in address", c);
			if (c == '.') {
				if (i == 0)
					return cbv_err_set(err, CBV_EINVAL,
					                   "local part starts with a dot");
				if (in[i - 1] == '.')
					return cbv_err_set(err, CBV_EINVAL,
					                   "two dots in a row in local part");
				continue;
			}
			if (!is_atext(c))
				return cbv_err_set(err, CBV_EINVAL,
				                   "invalid character '%c' in local part", c);
		}
		if (i >= len)
			return cbv_err_set(err, CBV_EINVAL, "missing @");
		if (i == 0)
			return cbv_err_set(err, CBV_EINVAL, "empty local part");
		if (in[i - 1] == '.')
			return cbv_err_set(err, CBV_EINVAL, "local part ends with a dot");
	}
	if (i > CBV_LOCALPART_MAX)
		return cbv_err_set(err, CBV_EINVAL, "local part longer than %d octets",
		                   CBV_LOCALPART_MAX);
	*at = i;
	return CBV_OK;
}

/*
 * Checks a host name (RFC 5321 4.1.2 Domain: sub-domains of letters,
 * digits and inner hyphens, or UTF-8 U-labels) and writes it lower-cased,
 * without its one optional trailing dot, to out (CBV_DOMAIN_MAX + 1
 * bytes).  in has already passed check_bytes().
 */
static enum cbv_status parse_host(const char *in, size_t len, char *out,
                                  struct cbv_err *err)
{
	size_t i, start = 0;
	int ascii = 1, digits = 1;
	unsigned char c;

	/* A trailing dot (absolute name, RFC 1034 3.1) is not part of it. */
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty domain");
	if (len > CBV_DOMAIN_MAX)
		return cbv_err_set(err, CBV_EINVAL, "domain longer than %d octets",
		                   CBV_DOMAIN_MAX);
	for (i = 0; i <= len; i++) {
		if (i == len || in[i] == '.') {
			if (i == start)
				return cbv_err_set(err, CBV_EINVAL, "empty label in domain");
			/*
			 * RFC 1035 2.3.4 limits the wire (A-label) form; a
			 * U-label's octets say nothing about its punycode length.
			 */
			if (ascii && i - start > CBV_LABEL_MAX)
				return cbv_err_set(err, CBV_EINVAL,
				                   "domain label longer than %d octets",
				                   CBV_LABEL_MAX);
			if (in[start] == '-')
				return cbv_err_set(err, CBV_EINVAL,
				                   "domain label starts with a hyphen");
			if (in[i - 1] == '-')
				return cbv_err_set(err, CBV_EINVAL,
				                   "domain label ends with a hyphen");
			if (i < len) {
				out[i] = '.';
				start = i + 1;
				ascii = 1;
				digits = 1;
			}
			continue;
		}
		c = (unsigned char)in[i];
		if (c == '<' || c == '>')
			return cbv_err_set(err, CBV_EINVAL,
			                   "'%c' outside quotes in address", c);
		if (c >= 0x80)
			ascii = 0;
		else if (!is_alnum(c) && c != '-')
			return cbv_err_set(err, CBV_EINVAL,
			                   "invalid character '%c' in domain", c);
		if (c < '0' || c > '9')
			digits = 0;
		out[i] = lower((char)c);
	}
	/*
	 * RFC 3696 2: a top-level domain is never all-numeric.  "a@127.0.0.1"
	 * is an IP address dressed as a name; some resolvers would answer it
	 * without asking DNS.  It must be written as the literal [127.0.0.1].
	 */
	if (digits)
		return cbv_err_set(err, CBV_EINVAL,
		                   "all-numeric top-level domain (use an address literal [...])");
	out[len] = '\0';
	return CBV_OK;
}

/* 1 if s has a byte >= 0x80. */
static int has_8bit(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

/*
 * Converts host (checked by parse_host(), CBV_DOMAIN_MAX + 1 bytes) to its
 * A-label form in place, if it has non-ASCII labels.  The result passes
 * parse_host() again: UTS #46 mapping can turn a fullwidth digit into an
 * ASCII one or an ideographic full stop into a dot, and the label and
 * domain limits apply to the form that goes to DNS (RFC 1035 2.3.4).
 * Returns CBV_OK, CBV_EINVAL (not a valid IDN) or CBV_ENOMEM.
 */
static enum cbv_status to_ascii(char *host, struct cbv_err *err)
{
	char tmp[CBV_DOMAIN_MAX + 1];
	char *out = NULL;
	enum cbv_status st;
	size_t len;
	int rc;

	if (!has_8bit(host))
		return CBV_OK;
	rc = idn2_to_ascii_8z(host, &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	if (rc == IDN2_MALLOC) {
		st = cbv_err_set(err, CBV_ENOMEM, "out of memory");
		goto done;
	}
	if (rc != IDN2_OK) {
		st = cbv_err_set(err, CBV_EINVAL, "invalid international domain name: %s",
		                 idn2_strerror(rc));
		goto done;
	}
	len = strlen(out);
	if (len > CBV_DOMAIN_MAX) {
		st = cbv_err_set(err, CBV_EINVAL, "domain longer than %d octets as A-labels",
		                 CBV_DOMAIN_MAX);
		goto done;
	}
	st = parse_host(out, len, tmp, err);
	if (st == CBV_OK) {
		/* Whole buffer: the struct must not keep bytes of the U-form. */
		memset(host, 0, CBV_DOMAIN_MAX + 1);
		memcpy(host, tmp, strlen(tmp) + 1);
	}
done:
	idn2_free(out);
	return st;
}

/*
 * Checks an address literal (RFC 5321 4.1.3: "[" IPv4 "]" or
 * "[IPv6:" IPv6 "]", validated with inet_pton) and writes it to out with
 * its brackets, the tag spelled "IPv6:" and hex digits lower-cased.
 * General-address-literal tags are refused: we could not connect to them.
 */
static enum cbv_status parse_literal(const char *in, size_t len, char *out,
                                     struct cbv_err *err)
{
	char tmp[INET6_ADDRSTRLEN];
	unsigned char bin[16];
	const char *body = in + 1;
	size_t blen, i;
	int v6 = 0;

	if (len < 2 || in[len - 1] != ']')
		return cbv_err_set(err, CBV_EINVAL, "%s",
		                   memchr(in, ']', len) != NULL ?
		                           "junk after address literal" :
		                           "unterminated address literal");
	blen = len - 2;
	if (blen >= 5 && lower(body[0]) == 'i' && lower(body[1]) == 'p' &&
	    lower(body[2]) == 'v' && body[3] == '6' && body[4] == ':') {
		v6 = 1;
		body += 5;
		blen -= 5;
	} else if (memchr(body, ':', blen) != NULL) {
		return cbv_err_set(err, CBV_EINVAL,
		                   "unsupported address literal (only IPv4 and IPv6:)");
	}
	if (blen == 0 || blen >= sizeof(tmp))
		goto bad;
	for (i = 0; i < blen; i++)
		tmp[i] = lower(body[i]);
	tmp[blen] = '\0';
	/* A ']' or '[' inside makes inet_pton fail: no need to look for them. */
	if (inet_pton(v6 ? AF_INET6 : AF_INET, tmp, bin) != 1)
		goto bad;
	/* Fits: 7 + INET6_ADDRSTRLEN - 1 < CBV_DOMAIN_MAX + 1. */
	strcpy(out, v6 ? "[IPv6:" : "[");
	strcat(out, tmp);
	strcat(out, "]");
	return CBV_OK;
bad:
	return cbv_err_set(err, CBV_EINVAL, "bad %s address literal",
	                   v6 ? "IPv6" : "IPv4");
}

/*
 * Parses the bare address in (len bytes, not NUL-terminated; a NUL inside
 * is an error) into *out.  Returns CBV_OK, or CBV_EINVAL with err->msg
 * naming the first fault found and *out zeroed.
 */
enum cbv_status cbv_addr_parse(const char *in, size_t len, struct cbv_addr *out,
                               struct cbv_err *err)
{
	struct cbv_addr a;
	enum cbv_status st;
	size_t at = 0, path;
	int utf8 = 0;

	memset(&a, 0, sizeof(a));
	memset(out, 0, sizeof(*out));
	if (in == NULL || len == 0) {
		st = cbv_err_set(err, CBV_EINVAL, "empty address");
		goto done;
	}
	if (len > INPUT_MAX) {
		st = cbv_err_set(err, CBV_EINVAL, "address longer than %d octets",
		                 CBV_PATH_MAX - 2);
		goto done;
	}
	st = check_bytes(in, len, "address", &utf8, err);
	if (st != CBV_OK)
		goto done;
	st = parse_local(in, len, &at, err);
	if (st != CBV_OK)
		goto done;
	memcpy(a.local, in, at);
	a.local[at] = '\0';
	if (at + 1 < len && in[at + 1] == '[') {
		a.literal = 1;
		st = parse_literal(in + at + 1, len - at - 1, a.domain, err);
	} else {
		st = parse_host(in + at + 1, len - at - 1, a.domain, err);
		if (st == CBV_OK)
			st = to_ascii(a.domain, err);
	}
	if (st != CBV_OK)
		goto done;
	/* RFC 5321 4.5.3.1.3: "<" local "@" domain ">" is at most 256 octets. */
	path = at + 1 + strlen(a.domain) + 2;
	if (path > CBV_PATH_MAX) {
		st = cbv_err_set(err, CBV_EINVAL,
		                 "address longer than %d octets (path limit %d)",
		                 CBV_PATH_MAX - 2, CBV_PATH_MAX);
		goto done;
	}
	/* The domain is ASCII now: only a UTF-8 local part needs SMTPUTF8. */
	a.utf8 = utf8 && has_8bit(a.local);
	*out = a;
done:
	return st;
}

/*
 * Checks a domain name alone (host name rules of cbv_addr_parse, no
 * literal) and writes its lower-cased form without a trailing dot to out
 * (CBV_DOMAIN_MAX + 1 bytes; "" on error).  Returns CBV_OK or CBV_EINVAL.
 */
enum cbv_status cbv_addr_check_domain(const char *in, size_t len, char *out,
                                      struct cbv_err *err)
{
	enum cbv_status st;
	int utf8 = 0;

	out[0] = '\0';
	if (in == NULL || len == 0) {
		st = cbv_err_set(err, CBV_EINVAL, "empty domain");
		goto done;
	}
	if (len > CBV_DOMAIN_MAX + 1) {
		st = cbv_err_set(err, CBV_EINVAL, "domain longer than %d octets",
		                 CBV_DOMAIN_MAX);
		goto done;
	}
	st = check_bytes(in, len, "domain", &utf8, err);
	if (st != CBV_OK)
		goto done;
	if (in[0] == '[') {
		st = cbv_err_set(err, CBV_EINVAL, "address literal not allowed here");
		goto done;
	}
	st = parse_host(in, len, out, err);
	if (st == CBV_OK)
		st = to_ascii(out, err);
done:
	if (st != CBV_OK)
		out[0] = '\0';
	return st;
}

/*
 * Writes the Unicode form of the ASCII domain ascii to out (n bytes).  The
 * A-labels are decoded, and the result must convert back to exactly ascii
 * and be clean UTF-8 without controls: a crafted "xn--" label that decodes
 * to a bidi override or a control character is never shown.  Returns 1 if
 * out holds a Unicode form that differs from ascii; 0 if out is a copy of
 * ascii (no A-label, one that does not decode or round-trip, no room).
 */
int cbv_addr_domain_utf8(const char *ascii, char *out, size_t n)
{
	char *u = NULL, *back = NULL;
	int utf8 = 0, ret = 0;

	if (n == 0)
		return 0;
	if (strstr(ascii, "xn--") == NULL && strstr(ascii, "XN--") == NULL)
		goto copy;
	if (idn2_to_unicode_8z8z(ascii, &u, 0) != IDN2_OK ||
	    idn2_to_ascii_8z(u, &back, IDN2_NONTRANSITIONAL | IDN2_USE_STD3_ASCII_RULES) !=
	            IDN2_OK ||
	    strcasecmp(back, ascii) != 0 || strlen(u) >= n ||
	    check_bytes(u, strlen(u), "domain", &utf8, NULL) != CBV_OK || !utf8)
		goto copy;
	memcpy(out, u, strlen(u) + 1);
	ret = 1;
	goto done;
copy:
	snprintf(out, n, "%s", ascii);
done:
	idn2_free(u);
	idn2_free(back);
	return ret;
}

/*
 * Writes the domain as messages show it to out (n bytes): "bücher.test
 * (xn--bcher-kva.test)" for an IDN, else the ASCII name alone.
 */
void cbv_addr_domain_show(const char *ascii, char *out, size_t n)
{
	char u[CBV_DOMAIN_MAX + 1];

	if (cbv_addr_domain_utf8(ascii, u, sizeof(u)))
		snprintf(out, n, "%s (%s)", u, ascii);
	else
		snprintf(out, n, "%s", ascii);
}

/*
 * Writes "local@domain" to buf (n bytes), with domain in place of
 * a->domain when it is not NULL.  Returns CBV_OK, or CBV_EINVAL (buf set
 * to "" when n > 0) if the result exceeds CBV_PATH_MAX - 2 octets or
 * does not fit in n.
 */
enum cbv_status cbv_addr_format(const struct cbv_addr *a, const char *domain,
                                char *buf, size_t n, struct cbv_err *err)
{
	enum cbv_status st = CBV_OK;
	const char *d = domain != NULL ? domain : a->domain;
	size_t llen = strnlen(a->local, sizeof(a->local));
	size_t dlen = strnlen(d, CBV_PATH_MAX);
	size_t total = llen + 1 + dlen;

	if (llen == sizeof(a->local) || total > CBV_PATH_MAX - 2) {
		st = cbv_err_set(err, CBV_EINVAL, "address longer than %d octets",
		                 CBV_PATH_MAX - 2);
		goto done;
	}
	if (total >= n) {
		st = cbv_err_set(err, CBV_EINVAL, "buffer too small for address");
		goto done;
	}
	memcpy(buf, a->local, llen);
	buf[llen] = '@';
	memcpy(buf + llen + 1, d, dlen);
	buf[total] = '\0';
done:
	if (st != CBV_OK && n > 0)
		buf[0] = '\0';
	return st;
}
