/*
 * fuzz_cbvd.c - libFuzzer target for cbvd's request parser (cbv_cproto).
 *
 * The input is what a hostile client sends to the callout server: split
 * at LF as the server splits it (a CR before the LF dropped), each line
 * parsed.  Every answer must be well formed: an error message is
 * non-empty, bounded and printable (it goes back after "NO "), and an
 * accepted request holds no control byte in any field that reaches an
 * SMTP command or a log line.  The whole input also goes through the URL
 * parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_cproto.h"
#include "cbv_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

static void check_text(const char *s, size_t cap)
{
	size_t len = strnlen(s, cap);

	check(len < cap);
	for (size_t i = 0; i < len; i++)
		check((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] != 0x7f);
}

static struct cbv_cproto_req rq;

static void one_line(const char *line, size_t len)
{
	struct cbv_err err;

	memset(&err, 0, sizeof(err));
	if (cbv_cproto_parse(line, len, &rq, &err) != CBV_OK) {
		check(err.code == CBV_EINVAL);
		check(err.msg[0] != '\0');
		check_text(err.msg, sizeof(err.msg));
		return;
	}
	switch (rq.cmd) {
	case CBV_CPROTO_SID: check_text(rq.sid, sizeof(rq.sid)); break;
	case CBV_CPROTO_SET:
		check((unsigned)rq.var < CBV_CPROTO_VAR_COUNT);
		check_text(rq.value, sizeof(rq.value));
		cbv_cproto_unbracket(rq.value);
		check_text(rq.value, sizeof(rq.value));
		break;
	case CBV_CPROTO_GET:
		check(rq.nget <= CBV_CPROTO_GET_MAX);
		for (size_t i = 0; i < rq.nget; i++)
			check_text(rq.get_name[i], sizeof(rq.get_name[i]));
		break;
	case CBV_CPROTO_TIMEOUT:
		for (int i = 0; i < CBV_CPROTO_TIMEOUTS; i++)
			check(rq.timeouts[i] >= 1 && rq.timeouts[i] <= 86400);
		break;
	case CBV_CPROTO_VRFY:
		check_text(rq.email, sizeof(rq.email));
		check_text(rq.host, sizeof(rq.host));
		check_text(rq.ehlo, sizeof(rq.ehlo));
		check_text(rq.mailfrom, sizeof(rq.mailfrom));
		check(strlen(rq.email) <= len);
		if (rq.mode == CBV_CPROTO_MODE_HOSTONLY || rq.mode == CBV_CPROTO_MODE_HOSTFIRST)
			check(rq.host[0] != '\0');
		break;
	case CBV_CPROTO_RUN:
	case CBV_CPROTO_QUIT: break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	char url[600];
	struct cbv_url u;
	struct cbv_err err;

	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((lf != NULL ? lf : end) - p);

		if (len > 0 && p[len - 1] == '\r')
			len--;
		one_line(p, len);
		p = lf != NULL ? lf + 1 : end;
	}
	if (size < sizeof(url)) {
		memcpy(url, data, size);
		url[size] = '\0';
		if (cbv_url_parse(url, strlen(url), CBV_URL_NUMERIC, &u, &err) == CBV_OK)
			check(u.family != 0 && u.salen > 0);
	}
	return 0;
}
