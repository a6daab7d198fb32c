/*
 * cbv_text.c - text hygiene (see cbv_text.h).  Byte tests are written out
 * here rather than taken from <ctype.h>: those depend on the locale and
 * are undefined for a negative char.
 */
#include "cbv_text.h"

#include <string.h>

int cbv_text_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* 1 if c belongs to class cls. */
static int in_class(unsigned char c, enum cbv_text_class cls)
{
	switch (cls) {
	case CBV_TEXT_NOCTL: return !cbv_text_is_ctl(c);
	case CBV_TEXT_PRINT: return c >= 0x20 && c <= 0x7e;
	case CBV_TEXT_VISIBLE: return c > 0x20 && c <= 0x7e;
	}
	return 0;
}

size_t cbv_text_span(const char *s, size_t len, enum cbv_text_class cls, const char *allow)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		/* strchr() would find the terminator for a NUL: test it first. */
		if (!in_class(c, cls) && (allow == NULL || c == '\0' || strchr(allow, c) == NULL))
			break;
	}
	return i;
}

size_t cbv_text_sanitize(const char *s, size_t len, char *out, size_t n)
{
	size_t i = 0;

	if (n == 0)
		goto done;
	if (len > n - 1)
		len = n - 1;
	for (i = 0; i < len; i++)
		out[i] = in_class((unsigned char)s[i], CBV_TEXT_PRINT) ? s[i] : '?';
	out[i] = '\0';
done:
	return i;
}

size_t cbv_text_show(const char *s, size_t len, char *out, size_t n)
{
	size_t w;

	if (n == 0 || len <= n - 1 || n - 1 < 3)
		return cbv_text_sanitize(s, len, out, n);
	w = cbv_text_sanitize(s, n - 1 - 3, out, n);
	memcpy(out + w, "...", 4);
	return w + 3;
}

size_t cbv_text_escape(const char *s, size_t len, char *out, size_t n, unsigned flags)
{
	static const char hex[] = "0123456789abcdef";
	size_t need = 0, o = 0;
	int full = n == 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char piece[4];
		size_t k = 0;

		if ((flags & CBV_TEXT_ESC_QUOTE) && (c == '"' || c == '\\')) {
			piece[k++] = '\\';
			piece[k++] = (char)c;
		} else if ((flags & CBV_TEXT_ESC_NL) && c == '\n') {
			piece[k++] = '\\';
			piece[k++] = 'n';
		} else if (cbv_text_is_ctl(c)) {
			piece[k++] = '\\';
			piece[k++] = 'x';
			piece[k++] = hex[c >> 4];
			piece[k++] = hex[c & 15];
		} else {
			piece[k++] = (char)c;
		}
		need += k;
		/* Once one piece does not fit, none after it is written. */
		if (!full && o + k <= n - 1) {
			memcpy(out + o, piece, k);
			o += k;
		} else {
			full = 1;
		}
	}
	if (n > 0)
		out[o] = '\0';
	return need;
}

size_t cbv_text_utf8_seq(const char *s, size_t len, unsigned long *cp)
{
	const unsigned char *u = (const unsigned char *)s;
	unsigned long v, min;
	size_t k, i;

	if (len == 0)
		return 0;
	if (u[0] < 0x80) {
		*cp = u[0];
		return 1;
	}
	if (u[0] >= 0xc2 && u[0] <= 0xdf) {
		k = 2;
		v = u[0] & 0x1f;
		min = 0x80;
	} else if (u[0] >= 0xe0 && u[0] <= 0xef) {
		k = 3;
		v = u[0] & 0x0f;
		min = 0x800;
	} else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
		k = 4;
		v = u[0] & 0x07;
		min = 0x10000;
	} else {
		return 0; /* a continuation byte, C0/C1 (always overlong) or F5-FF */
	}
	if (k > len)
		return 0;
	for (i = 1; i < k; i++) {
		if ((u[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (u[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return k;
}

int cbv_text_utf8_valid(const char *s, size_t len)
{
	size_t i = 0, k;
	unsigned long cp;

	while (i < len) {
		k = cbv_text_utf8_seq(s + i, len - i, &cp);
		if (k == 0)
			return 0;
		i += k;
	}
	return 1;
}

enum cbv_text_unq cbv_text_unquote(const char *s, size_t len, unsigned flags, char *out,
                                   size_t n, size_t *outlen, size_t *used)
{
	enum cbv_text_unq st = CBV_TEXT_UNQ_OPEN;
	size_t i = 0, o = 0;

	for (;;) {
		char ch;

		if (i >= len)
			goto done; /* CBV_TEXT_UNQ_OPEN */
		ch = s[i++];
		if (ch == '"') {
			st = CBV_TEXT_UNQ_OK;
			goto done;
		}
		if (ch == '\\') {
			if (flags & CBV_TEXT_UNQ_ANYESC) {
				if (i >= len)
					goto done; /* CBV_TEXT_UNQ_OPEN */
				ch = s[i++];
			} else if (i < len && (s[i] == '"' || s[i] == '\\')) {
				ch = s[i++];
			}
		}
		if ((flags & CBV_TEXT_UNQ_NOCTL) && cbv_text_is_ctl((unsigned char)ch)) {
			st = CBV_TEXT_UNQ_CTL;
			goto done;
		}
		if (o + 1 >= n) {
			st = CBV_TEXT_UNQ_LONG;
			goto done;
		}
		out[o++] = ch;
	}
done:
	if (n > 0)
		out[o] = '\0';
	*outlen = o;
	*used = i;
	return st;
}
