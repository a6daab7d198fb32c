/*
 * fuzz_callout.c - libFuzzer target for the callout protocol client's
 * parsers: what a hostile callout server sends (cbv_callout_line_parse()
 * and cbv_callout_final_parse() on every line) and the REST strings an
 * ACL hands us (cbv_callout_rest_format()).  Invariants: parsed fields
 * stay inside the input and their bounds, and a formatted REST string
 * never carries a control character and parses back to itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_callout_impl.h"
#include "cbv_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

static void one_line(const char *line, size_t len)
{
	struct cbv_callout_line l;
	enum cbv_callout_kind k = cbv_callout_line_parse(line, len, &l);
	const char *word;

	check(k == l.kind);
	if (k == CBV_CALLOUT_LINE_BAD)
		return;
	check(l.text >= line && l.text + l.text_len <= line + len);
	check(strlen(l.id) <= CBV_CALLOUT_ID_MAX);
	if (k == CBV_CALLOUT_LINE_PROGRESS) {
		check(l.id[0] != '\0' && l.tag[0] != '\0');
		check(strspn(l.id, "0123456789") == strlen(l.id));
	}
	if (k == CBV_CALLOUT_LINE_OK) {
		int rc = cbv_callout_final_parse(l.text, l.text_len, "0000000000", &word);

		check(rc >= -1 && rc <= 1);
		check(rc == 1 ? word != NULL : word == NULL);
		if (rc == 1)
			(void)cbv_callout_word_verdict(word);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy, out[CBV_CALLOUT_REQ_MAX + 1], again[CBV_CALLOUT_REQ_MAX + 1];
	size_t start = 0;

	if (size > 65536)
		return 0;
	copy = malloc(size + 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (size_t i = 0; i <= size; i++) {
		if (i == size || copy[i] == '\n') {
			size_t len = i - start;

			if (len > 0 && copy[start + len - 1] == '\r')
				len--;
			if (len <= CBV_CALLOUT_LINE_MAX)
				one_line(copy + start, len);
			start = i + 1;
		}
	}
	if (cbv_callout_rest_format(copy, out, sizeof(out), NULL) == CBV_OK) {
		for (const char *p = out; *p; p++)
			check((unsigned char)*p >= 0x20 && *p != 0x7f);
		check(cbv_callout_rest_format(out, again, sizeof(again), NULL) == CBV_OK);
		check(strcmp(out, again) == 0);
	}
	{
		struct cbv_url u;

		if (cbv_url_parse(copy, strlen(copy), 0, &u, NULL) == CBV_OK)
			check(u.family == AF_UNIX ? u.path[0] == '/' : (u.port > 0 && u.port < 65536));
	}
	free(copy);
	return 0;
}
