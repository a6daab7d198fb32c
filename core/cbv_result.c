/*
 * cbv_result.c - construction and field access for struct cbv_result.
 */
#include "cbv_result.h"

#include <stdio.h>
#include <string.h>

#include "cbv_status.h"

const char *const cbv_result_fields[] = {
	"status", "reason", "message", "host", "ip", "greeting", "helo",
	"sent", "recv", "ecode", "tls", "elapsed", "cache", NULL
};

struct cbv_result *cbv_result_new(void)
{
	struct cbv_result *r = cbv_calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	char **strs[] = { &r->message, &r->address, &r->rcpt, &r->sender, &r->host,
		          &r->ip,      &r->greeting, &r->helo, &r->sent,   &r->recv };

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (cbv_result_set(strs[i], "") != 0) {
			cbv_result_free(r);
			return NULL;
		}
	}
	r->verdict = CBV_ERROR;
	r->reason = "protocol_error";
	return r;
}

void cbv_result_free(struct cbv_result *r)
{
	if (r == NULL)
		return;
	cbv_free(r->message);
	cbv_free(r->address);
	cbv_free(r->rcpt);
	cbv_free(r->sender);
	cbv_free(r->host);
	cbv_free(r->ip);
	cbv_free(r->greeting);
	cbv_free(r->helo);
	cbv_free(r->sent);
	cbv_free(r->recv);
	cbv_free(r);
}

int cbv_result_set(char **field, const char *s)
{
	char *copy = cbv_strdup(s != NULL ? s : "");

	if (copy == NULL)
		return -1;
	cbv_free(*field);
	*field = copy;
	return 0;
}

const char *cbv_verdict_name(enum cbv_verdict v)
{
	switch (v) {
	case CBV_PASS: return "pass";
	case CBV_FAIL: return "fail";
	case CBV_TRANSIENT: return "transient";
	case CBV_ERROR: return "error";
	}
	return "error";
}

const char *cbv_verdict_mfd_name(enum cbv_verdict v)
{
	switch (v) {
	case CBV_PASS: return "success";
	case CBV_FAIL: return "not_found";
	case CBV_TRANSIENT: return "temp_failure";
	case CBV_ERROR: return "failure";
	}
	return "failure";
}

const char *cbv_result_text(const struct cbv_result *r, const char *name)
{
	if (strcmp(name, "status") == 0)
		return cbv_verdict_name(r->verdict);
	if (strcmp(name, "reason") == 0)
		return r->reason;
	if (strcmp(name, "message") == 0)
		return r->message;
	if (strcmp(name, "host") == 0)
		return r->host;
	if (strcmp(name, "ip") == 0)
		return r->ip;
	if (strcmp(name, "greeting") == 0)
		return r->greeting;
	if (strcmp(name, "helo") == 0)
		return r->helo;
	if (strcmp(name, "sent") == 0)
		return r->sent;
	if (strcmp(name, "recv") == 0)
		return r->recv;
	if (strcmp(name, "ecode") == 0)
		return r->ecode;
	if (strcmp(name, "tls") == 0)
		return r->tls;
	return NULL;
}

const char *cbv_result_field(const struct cbv_result *r, const char *name,
                             char *buf, size_t n)
{
	const char *t = cbv_result_text(r, name);

	if (t != NULL)
		snprintf(buf, n, "%s", t);
	else if (strcmp(name, "elapsed") == 0)
		snprintf(buf, n, "%lu", r->elapsed_ms);
	else if (strcmp(name, "cache") == 0)
		snprintf(buf, n, "%d", r->cache);
	else
		return NULL;
	return buf;
}
