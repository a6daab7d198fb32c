/*
 * cbv_buf.h - fixed-capacity receive buffer and CRLF line reader.
 *
 * The only code that indexes raw peer bytes.  Capacity is CBV_BUF_SIZE and
 * never grows: a line that does not fit is an error ("line too long"),
 * not a realloc.  Lines end in LF; a CR before the LF is removed.  A NUL
 * byte inside a line is kept (callers sanitize); lines are not
 * NUL-terminated.
 */
#ifndef CBV_BUF_H
#define CBV_BUF_H

#include <stddef.h>

#include "cbv_limits.h"

struct cbv_buf {
	size_t start; /* first unread byte */
	size_t end;   /* one past the last byte received */
	char data[CBV_BUF_SIZE];
};

/* Empties the buffer. */
void cbv_buf_init(struct cbv_buf *b);

/*
 * Returns where the next received bytes go and how many fit (*avail),
 * first moving unread bytes to the front if that makes room.  *avail is 0
 * only when the buffer holds CBV_BUF_SIZE unread bytes.
 */
char *cbv_buf_space(struct cbv_buf *b, size_t *avail);

/* Records that n bytes were written at cbv_buf_space(); n <= *avail. */
void cbv_buf_commit(struct cbv_buf *b, size_t n);

/*
 * Takes the next complete line.  Returns 1 and sets *line and *len (pointer
 * into b, valid until the next cbv_buf_ call; CR LF removed); 0 if no
 * complete line is buffered yet; -1 if the unread bytes without an LF
 * already exceed max_len + 2 (the line is too long: a protocol error).
 */
int cbv_buf_getline(struct cbv_buf *b, size_t max_len, const char **line,
                    size_t *len);

/* Number of unread bytes. */
size_t cbv_buf_pending(const struct cbv_buf *b);

#endif
