/*
 * cbv_http.h - the one HTTP request cbvd understands: a scrape of its
 * metrics (GET /metrics, HTTP/1.0 or 1.1).  A parser of the request head
 * only, on bytes as they arrive; no body, no keep-alive, no chunking:
 * every answer closes the connection.  Input is bounded before it is
 * read: a head longer than CBV_HTTP_HEAD_MAX is refused, and so is any
 * NUL or control byte other than CR, LF and TAB (request smuggling through
 * odd line ends or bytes is no concern of a server that answers one GET,
 * but refusing them keeps the parser honest).
 */
#ifndef CBV_HTTP_H
#define CBV_HTTP_H

#include <stddef.h>

/* The longest request head (request line and header fields) read. */
#define CBV_HTTP_HEAD_MAX 4096
/* The longest method and request target kept. */
#define CBV_HTTP_METHOD_MAX 16
#define CBV_HTTP_TARGET_MAX 1024

enum cbv_http_parse {
	CBV_HTTP_MORE,   /* no end of the head yet: read more (len < CBV_HTTP_HEAD_MAX) */
	CBV_HTTP_DONE,   /* *rq is filled */
	CBV_HTTP_BAD,    /* not an HTTP/1.x request head: answer 400 */
	CBV_HTTP_TOO_BIG /* no end within CBV_HTTP_HEAD_MAX bytes: answer 431 */
};

struct cbv_http_req {
	char method[CBV_HTTP_METHOD_MAX + 1]; /* token, as sent (methods are case-sensitive) */
	char path[CBV_HTTP_TARGET_MAX + 1];   /* the target up to '?' */
	int minor;                            /* HTTP/1.minor: 0 or 1 */
};

/*
 * Parses the request head at the start of buf (len bytes read so far):
 * "METHOD SP TARGET SP HTTP/1.N" CRLF, header lines, an empty line (bare
 * LF accepted for CRLF).  Header fields are checked for bytes only, not
 * interpreted.  *rq is reset first and filled on DONE.
 */
enum cbv_http_parse cbv_http_parse_request(const char *buf, size_t len, struct cbv_http_req *rq);

#endif
