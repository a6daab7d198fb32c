/*
 * cbv_buf.c - fixed-capacity receive buffer and CRLF line reader.
 *
 * The buffer never grows.  A peer that sends an endless line fills it and
 * gets "line too long" instead of making us allocate without bound.
 */
#include "cbv_buf.h"

#include <assert.h>
#include <string.h>

/* Empties the buffer. */
void cbv_buf_init(struct cbv_buf *b)
{
	b->start = 0;
	b->end = 0;
}

/*
 * Returns where the next received bytes go and how many fit (*avail).
 * Unread bytes are first moved to the front, so *avail is always
 * CBV_BUF_SIZE minus the pending bytes.
 */
char *cbv_buf_space(struct cbv_buf *b, size_t *avail)
{
	size_t pending = b->end - b->start;

	if (b->start > 0) {
		if (pending > 0)
			memmove(b->data, b->data + b->start, pending);
		b->start = 0;
		b->end = pending;
	}
	*avail = CBV_BUF_SIZE - b->end;
	return b->data + b->end;
}

/*
 * Records that n bytes were written at cbv_buf_space().  n larger than
 * the space offered is a programmer error; it is clamped so a release
 * build still never indexes past the buffer.
 */
void cbv_buf_commit(struct cbv_buf *b, size_t n)
{
	assert(n <= CBV_BUF_SIZE - b->end);
	if (n > CBV_BUF_SIZE - b->end)
		n = CBV_BUF_SIZE - b->end;
	b->end += n;
}

/*
 * Takes the next complete line (CR LF or bare LF removed).  Returns 1 with
 * *line and *len pointing into b (valid until the next cbv_buf_ call), 0 if no
 * complete line is buffered yet, -1 if the line is longer than max_len
 * octets.  Length is judged the same way whether or not its LF has
 * arrived yet, so the result never depends on how the peer's bytes were
 * split into packets: without an LF, -1 as soon as the buffered bytes
 * (less a final CR, which may still be part of CR LF) exceed max_len, or
 * the buffer is full.
 */
int cbv_buf_getline(struct cbv_buf *b, size_t max_len, const char **line,
                    size_t *len)
{
	const char *p = b->data + b->start;
	size_t pending = b->end - b->start;
	const char *lf = pending > 0 ? memchr(p, '\n', pending) : NULL;
	size_t n;
	int rc;

	*line = NULL;
	*len = 0;
	if (lf == NULL) {
		n = pending;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > max_len || pending == CBV_BUF_SIZE)
			rc = -1;
		else
			rc = 0;
		goto done;
	}
	n = (size_t)(lf - p);
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n > max_len) {
		rc = -1;
		goto done;
	}
	*line = p;
	*len = n;
	b->start += (size_t)(lf - p) + 1;
	rc = 1;
done:
	return rc;
}

/* Number of unread bytes. */
size_t cbv_buf_pending(const struct cbv_buf *b)
{
	return b->end - b->start;
}
