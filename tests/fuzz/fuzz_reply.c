/*
 * fuzz_reply.c - libFuzzer target for the SMTP reply path.
 *
 * The input is what a hostile server sends.  It goes through cbv_buf and
 * cbv_reply_feed() line by line, in odd-sized chunks, as the session
 * reads it, reply after reply; and through cbv_reply_parse() in one
 * piece.  Both paths must agree on the first reply, and every reply
 * accepted must respect the bounds and hold only printable text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_buf.h"
#include "cbv_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

static struct cbv_reply whole, line_by_line;
static struct cbv_buf buf;

static void check_reply(const struct cbv_reply *r)
{
	check(r->complete == 1);
	check(r->code >= 200 && r->code <= 599);
	check(r->nlines >= 1 && r->nlines <= CBV_REPLY_LINES_MAX);
	check(r->len < CBV_REPLY_KEEP_MAX);
	check(strlen(r->text) == r->len);
	for (size_t i = 0; i < r->len; i++)
		check(r->text[i] == '\n' ||
		      (r->text[i] >= 0x20 && r->text[i] < 0x7f));
	check(r->ecode[0] == '\0' || r->ecode[0] == r->text[0]);
	check(strlen(r->ecode) <= 9);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t used = 0, off = 0, n, avail, chunk = size % 37 + 1, len;
	struct cbv_err err;
	const char *line;
	enum cbv_status whole_st, st = CBV_OK;
	unsigned replies = 0;
	int rc;

	whole_st = cbv_reply_parse(in, size, &whole, &used, &err);
	if (whole_st == CBV_OK) {
		check_reply(&whole);
		check(used >= 4 && used <= size && in[used - 1] == '\n');
	} else {
		check(whole_st == CBV_EPROTO && used == 0 && whole.nlines == 0);
	}

	cbv_buf_init(&buf);
	cbv_reply_reset(&line_by_line);
	while (st == CBV_OK) {
		rc = cbv_buf_getline(&buf, CBV_REPLY_LINE_MAX, &line, &len);
		if (rc < 0)
			break;
		if (rc == 0) {
			if (off == size)
				break;
			char *p = cbv_buf_space(&buf, &avail);
			check(avail > 0);
			n = size - off < chunk ? size - off : chunk;
			n = n < avail ? n : avail;
			memcpy(p, in + off, n);
			cbv_buf_commit(&buf, n);
			off += n;
			continue;
		}
		check(len <= CBV_REPLY_LINE_MAX);
		st = cbv_reply_feed(&line_by_line, line, len, &err);
		if (st != CBV_OK || !line_by_line.complete)
			continue;
		check_reply(&line_by_line);
		if (replies++ == 0) {
			/* the first reply is what cbv_reply_parse() saw */
			check(whole_st == CBV_OK);
			check(line_by_line.code == whole.code);
			check(line_by_line.nlines == whole.nlines);
			check(line_by_line.len == whole.len);
			check(strcmp(line_by_line.ecode, whole.ecode) == 0);
			check(strcmp(line_by_line.text, whole.text) == 0);
			check(off - cbv_buf_pending(&buf) == used);
		}
		cbv_reply_reset(&line_by_line);
	}
	if (replies == 0)
		check(whole_st != CBV_OK);
	return 0;
}
