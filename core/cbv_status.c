/*
 * cbv_status.c - status names, struct cbv_err helpers and the allocator
 * with failure injection for OOM tests.
 */
#include "cbv_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long fail_after = -1;

const char *cbv_strstatus(enum cbv_status st)
{
	switch (st) {
	case CBV_OK: return "ok";
	case CBV_ENOMEM: return "enomem";
	case CBV_EINVAL: return "einval";
	case CBV_ECONFIG: return "econfig";
	case CBV_EDNS: return "edns";
	case CBV_ECONNECT: return "econnect";
	case CBV_ETIMEOUT: return "etimeout";
	case CBV_ETLS: return "etls";
	case CBV_EPROTO: return "eproto";
	}
	return "unknown";
}

static void vset(struct cbv_err *err, enum cbv_status code, int sys_errno,
                 const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void vset(struct cbv_err *err, enum cbv_status code, int sys_errno,
                 const char *fmt, va_list ap)
{
	if (err == NULL)
		return;
	err->code = code;
	err->sys_errno = sys_errno;
	if (vsnprintf(err->msg, sizeof(err->msg), fmt, ap) < 0)
		err->msg[0] = '\0';
}

enum cbv_status cbv_err_set(struct cbv_err *err, enum cbv_status code,
                            const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(err, code, 0, fmt, ap);
	va_end(ap);
	return code;
}

enum cbv_status cbv_err_set_errno(struct cbv_err *err, enum cbv_status code,
                                  int sys_errno, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset(err, code, sys_errno, fmt, ap);
	va_end(ap);
	return code;
}

void cbv_err_clear(struct cbv_err *err)
{
	if (err == NULL)
		return;
	err->code = CBV_OK;
	err->sys_errno = 0;
	err->msg[0] = '\0';
}

/* Decides whether this allocation is the one a test asked to fail. */
static int injected_failure(void)
{
	if (fail_after < 0)
		return 0;
	if (fail_after == 0)
		return 1;
	fail_after--;
	return 0;
}

void cbv_alloc_fail_after(long n)
{
	fail_after = n;
}

void *cbv_malloc(size_t n)
{
	if (injected_failure())
		return NULL;
	return malloc(n == 0 ? 1 : n);
}

void *cbv_calloc(size_t nmemb, size_t size)
{
	if (injected_failure())
		return NULL;
	if (nmemb == 0 || size == 0)
		nmemb = size = 1;
	return calloc(nmemb, size);
}

void cbv_free(void *p)
{
	free(p);
}

char *cbv_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = cbv_malloc(len + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *cbv_strdup(const char *s)
{
	return cbv_strndup(s, strlen(s));
}
