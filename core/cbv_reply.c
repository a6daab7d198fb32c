/*
 * cbv_reply.c - bounded SMTP reply parser (RFC 5321 4.2, RFC 3463).
 *
 * Every line is checked before it changes the reply, so a reply that
 * fails to parse keeps what it had.  Peer text is sanitized on the way in:
 * nothing stored in struct cbv_reply can carry a control character into a
 * log line, a header or an Exim expansion.
 */
#include "cbv_reply.h"

#include <string.h>

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Reads 1..3 digits at s[*i]; returns 0 if there are none or more than
 * three (RFC 3463 2: subject and detail are 1*3digit).
 */
static int read_part(const char *s, size_t len, size_t *i)
{
	size_t n = 0;

	while (*i < len && is_digit(s[*i])) {
		(*i)++;
		n++;
	}
	return n >= 1 && n <= 3;
}

/*
 * Extracts an RFC 3463 enhanced status code from the text of a first
 * line (after "NNN " or "NNN-") into ecode (16 bytes).  The class must be
 * 2, 4 or 5 and equal the reply's first digit: "550 4.1.1" is
 * contradictory, and we would rather have no code than a wrong one
 * deciding a verdict.  The code must be followed by a space or end the
 * line, so "5.1.10x" or "5.1.1234" is not read as "5.1.1".
 */
static void read_ecode(const char *s, size_t len, char first, char *ecode)
{
	size_t i = 0;

	ecode[0] = '\0';
	if (len < 5 || s[0] != first || (first != '2' && first != '4' && first != '5'))
		return;
	if (s[1] != '.')
		return;
	i = 2;
	if (!read_part(s, len, &i) || i >= len || s[i] != '.')
		return;
	i++;
	if (!read_part(s, len, &i))
		return;
	if (i < len && s[i] != ' ')
		return;
	/* At most 1 + 1 + 3 + 1 + 3 = 9 bytes: fits ecode[16]. */
	memcpy(ecode, s, i);
	ecode[i] = '\0';
}

void cbv_reply_init(struct cbv_reply *r)
{
	memset(r, 0, sizeof(*r));
}

void cbv_reply_reset(struct cbv_reply *r)
{
	r->code = 0;
	r->ecode[0] = '\0';
	r->nlines = 0;
	r->complete = 0;
	r->len = 0;
	if (r->text != NULL)
		r->text[0] = '\0';
}

void cbv_reply_clear(struct cbv_reply *r)
{
	if (r == NULL)
		return;
	cbv_free(r->text);
	cbv_reply_init(r);
}

enum cbv_status cbv_reply_copy(struct cbv_reply *dst, const struct cbv_reply *src,
                               struct cbv_err *err)
{
	char *text = dst->text;
	size_t cap = dst->cap;

	if (src->text != NULL && cap < src->len + 1) {
		text = cbv_malloc(src->len + 1);
		if (text == NULL) {
			cbv_reply_clear(dst);
			return cbv_err_set(err, CBV_ENOMEM, "out of memory");
		}
		cbv_free(dst->text);
		cap = src->len + 1;
	}
	*dst = *src;
	dst->text = text;
	dst->cap = cap;
	if (text != NULL)
		memcpy(text, cbv_reply_text(src), src->len + 1);
	return CBV_OK;
}

const char *cbv_reply_text(const struct cbv_reply *r)
{
	return r->text != NULL ? r->text : "";
}

/*
 * Makes room for need bytes of text (NUL included, need <=
 * CBV_REPLY_KEEP_MAX), doubling from CBV_REPLY_ALLOC_MIN.  r is unchanged
 * on CBV_ENOMEM.
 */
static enum cbv_status reserve(struct cbv_reply *r, size_t need, struct cbv_err *err)
{
	size_t cap = r->cap != 0 ? r->cap : CBV_REPLY_ALLOC_MIN;
	char *p;

	if (need <= r->cap)
		return CBV_OK;
	while (cap < need)
		cap *= 2;
	if (cap > CBV_REPLY_KEEP_MAX)
		cap = CBV_REPLY_KEEP_MAX;
	p = cbv_malloc(cap);
	if (p == NULL)
		return cbv_err_set(err, CBV_ENOMEM, "out of memory");
	if (r->text != NULL)
		memcpy(p, r->text, r->len + 1);
	else
		p[0] = '\0';
	cbv_free(r->text);
	r->text = p;
	r->cap = cap;
	return CBV_OK;
}

/*
 * Adds one line (CRLF removed) to r.  Returns CBV_OK, CBV_EPROTO for a
 * line that breaks RFC 5321 4.2 or our bounds, CBV_EINVAL when r is
 * already complete.  On error r is unchanged.
 */
enum cbv_status cbv_reply_feed(struct cbv_reply *r, const char *line,
                               size_t len, struct cbv_err *err)
{
	enum cbv_status st = CBV_OK;
	size_t room, need, n;
	int code;

	if (r->complete) {
		st = cbv_err_set(err, CBV_EINVAL, "reply already complete");
		goto done;
	}
	if (len > CBV_REPLY_LINE_MAX) {
		st = cbv_err_set(err, CBV_EPROTO, "reply line too long (%zu octets, limit %d)",
		                 len, CBV_REPLY_LINE_MAX);
		goto done;
	}
	if (r->nlines >= CBV_REPLY_LINES_MAX) {
		st = cbv_err_set(err, CBV_EPROTO, "more than %d lines in a reply",
		                 CBV_REPLY_LINES_MAX);
		goto done;
	}
	if (len < 3 || line[0] < '2' || line[0] > '5' || !is_digit(line[1]) ||
	    !is_digit(line[2])) {
		st = cbv_err_set(err, CBV_EPROTO, "bad reply code");
		goto done;
	}
	if (len > 3 && line[3] != ' ' && line[3] != '-') {
		st = cbv_err_set(err, CBV_EPROTO,
		                 "bad reply code (not followed by space, '-' or end of line)");
		goto done;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->nlines > 0 && code != r->code) {
		st = cbv_err_set(err, CBV_EPROTO,
		                 "code changed inside a multi-line reply (%d then %d)",
		                 r->code, code);
		goto done;
	}

	/* At most CBV_REPLY_KEEP_MAX - 1 bytes of text, then the NUL.  A longer
	 * reply is a protocol violation (DESIGN.md): cutting it would lose its
	 * final line and keep a verdict drawn from half a reply. */
	room = CBV_REPLY_KEEP_MAX - 1 - r->len;
	need = len + (r->nlines > 0 ? 1 : 0);
	if (need > room) {
		st = cbv_err_set(err, CBV_EPROTO, "reply longer than %d bytes",
		                 CBV_REPLY_KEEP_MAX - 1);
		goto done;
	}
	st = reserve(r, r->len + need + 1, err);
	if (st != CBV_OK)
		goto done;
	if (r->nlines == 0) {
		r->code = code;
		if (len > 4)
			read_ecode(line + 4, len - 4, line[0], r->ecode);
	}
	r->nlines++;
	r->complete = len == 3 || line[3] == ' ';
	if (r->nlines > 1)
		r->text[r->len++] = '\n';
	n = len;
	r->len += cbv_sanitize(line, n, r->text + r->len, n + 1);
	r->text[r->len] = '\0';
done:
	return st;
}

int cbv_reply_code_parse(const char *line, size_t len, char ecode[16])
{
	ecode[0] = '\0';
	if (len < 3 || line[0] < '2' || line[0] > '5' || !is_digit(line[1]) || !is_digit(line[2]))
		return 0;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return 0;
	if (len > 4)
		read_ecode(line + 4, len - 4, line[0], ecode);
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

/*
 * Parses one whole reply from buf (lines end in CR LF or LF).  On CBV_OK
 * r->complete is 1 and *used counts the bytes consumed, so the caller can
 * see what follows the reply.  On error *used is 0 and r is emptied.
 */
enum cbv_status cbv_reply_parse(const char *buf, size_t len,
                                struct cbv_reply *r, size_t *used,
                                struct cbv_err *err)
{
	enum cbv_status st = CBV_OK;
	size_t pos = 0, n;
	const char *lf;

	*used = 0;
	cbv_reply_reset(r);
	while (!r->complete) {
		lf = pos < len ? memchr(buf + pos, '\n', len - pos) : NULL;
		if (lf == NULL) {
			n = len - pos;
			if (n > 0 && buf[len - 1] == '\r')
				n--;
			if (n > CBV_REPLY_LINE_MAX)
				st = cbv_err_set(err, CBV_EPROTO, "reply line too long");
			else
				st = cbv_err_set(err, CBV_EPROTO, "incomplete reply");
			goto done;
		}
		n = (size_t)(lf - (buf + pos));
		if (n > 0 && buf[pos + n - 1] == '\r')
			n--;
		st = cbv_reply_feed(r, buf + pos, n, err);
		if (st != CBV_OK)
			goto done;
		pos = (size_t)(lf - buf) + 1;
	}
	*used = pos;
done:
	if (st != CBV_OK)
		cbv_reply_reset(r);
	return st;
}
