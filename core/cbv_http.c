/*
 * cbv_http.c - the request head parser for cbvd's metrics (cbv_http.h).
 */
#include "cbv_http.h"

#include <string.h>

/* RFC 9110 5.6.2 tchar. */
static int tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The end of the head (just past its empty line) in buf, or 0; -1 on a bad byte. */
static long head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '\n') {
			/* an empty line: LF LF or LF CR LF */
			if (i + 1 < len && buf[i + 1] == '\n')
				return (long)(i + 2);
			if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
				return (long)(i + 3);
		} else if ((c < 0x20 && c != '\r' && c != '\t') || c == 0x7f) {
			return -1;
		} else if (c == '\r' && (i + 1 < len && buf[i + 1] != '\n')) {
			return -1; /* a CR alone is no line end */
		}
	}
	return 0;
}

enum cbv_http_parse cbv_http_parse_request(const char *buf, size_t len, struct cbv_http_req *rq)
{
	size_t scan = len < CBV_HTTP_HEAD_MAX ? len : CBV_HTTP_HEAD_MAX;
	long end = head_end(buf, scan);
	size_t i = 0, m, t, tl;

	memset(rq, 0, sizeof(*rq));
	if (end < 0)
		return CBV_HTTP_BAD;
	if (end == 0)
		return len >= CBV_HTTP_HEAD_MAX ? CBV_HTTP_TOO_BIG : CBV_HTTP_MORE;
	/* the method: a token */
	while (i < (size_t)end && tchar((unsigned char)buf[i]))
		i++;
	if (i == 0 || i > CBV_HTTP_METHOD_MAX || buf[i] != ' ')
		return CBV_HTTP_BAD;
	memcpy(rq->method, buf, i);
	m = ++i;
	/* the target: origin-form, visible ASCII */
	while (i < (size_t)end && (unsigned char)buf[i] > 0x20 && (unsigned char)buf[i] < 0x7f)
		i++;
	t = i - m;
	if (t == 0 || buf[m] != '/' || buf[i] != ' ')
		return CBV_HTTP_BAD;
	tl = t;
	{
		const char *q = memchr(buf + m, '?', t);

		if (q != NULL)
			tl = (size_t)(q - (buf + m));
	}
	if (tl > CBV_HTTP_TARGET_MAX)
		return CBV_HTTP_BAD;
	memcpy(rq->path, buf + m, tl);
	i++;
	/* the version, then the line's end */
	if ((size_t)end - i < 9 || memcmp(buf + i, "HTTP/1.", 7) != 0 ||
	    (buf[i + 7] != '0' && buf[i + 7] != '1'))
		return CBV_HTTP_BAD;
	rq->minor = buf[i + 7] - '0';
	i += 8;
	if (buf[i] == '\r')
		i++;
	if (buf[i] != '\n') {
		memset(rq, 0, sizeof(*rq));
		return CBV_HTTP_BAD;
	}
	return CBV_HTTP_DONE;
}
