/*
 * cbv_status.h - status codes, error text and the allocator hooks.
 *
 * A status says whether an operation got an answer (CBV_OK) or why not.
 * It is not a verdict: cbv_verify.c alone turns statuses and SMTP replies
 * into pass/fail/transient/error.  struct cbv_err carries a code, the errno
 * that caused it (0 if none) and a printable message.
 *
 * All core allocations go through cbv_malloc()/cbv_free() so tests can make
 * the Nth allocation fail (cbv_alloc_fail_after()).
 */
#ifndef CBV_STATUS_H
#define CBV_STATUS_H

#include <stddef.h>

enum cbv_status {
	CBV_OK = 0,
	CBV_ENOMEM,  /* local: allocation failed */
	CBV_EINVAL,  /* local: bad argument or bad input (address syntax...) */
	CBV_ECONFIG, /* local: bad configuration */
	CBV_EDNS,    /* remote: DNS failure */
	CBV_ECONNECT,/* remote: connection failed or closed */
	CBV_ETIMEOUT,/* remote: a deadline passed */
	CBV_ETLS,    /* remote: TLS handshake or I/O failed */
	CBV_EPROTO   /* remote: peer broke the protocol */
};

struct cbv_err {
	enum cbv_status code;
	int sys_errno;
	char msg[256];
};

/* Returns a static name for a status ("ok", "enomem", ...). */
const char *cbv_strstatus(enum cbv_status st);

/*
 * Fills *err (if err is not NULL) with code, errno 0 and the formatted
 * message, and returns code.  Typical use:
 *   return cbv_err_set(err, CBV_EPROTO, "%s: closed during %s", peer, stage);
 */
enum cbv_status cbv_err_set(struct cbv_err *err, enum cbv_status code,
                            const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Same, also recording sys_errno (its strerror is not appended). */
enum cbv_status cbv_err_set_errno(struct cbv_err *err, enum cbv_status code,
                                  int sys_errno, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Resets *err to CBV_OK and an empty message. */
void cbv_err_clear(struct cbv_err *err);

/* malloc/calloc/free/strdup for core code; NULL on failure, never abort. */
void *cbv_malloc(size_t n);
void *cbv_calloc(size_t nmemb, size_t size);
void cbv_free(void *p);
char *cbv_strdup(const char *s);
char *cbv_strndup(const char *s, size_t n);

/*
 * Test hook: after n more successful cbv_malloc/cbv_calloc/cbv_strdup calls,
 * every further call fails.  n < 0 turns failure injection off.
 */
void cbv_alloc_fail_after(long n);

#endif
