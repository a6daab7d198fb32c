/*
 * cbv_cproto.c - callout protocol request parser (see cbv_cproto.h).
 * Error texts follow Debian's calloutd 8.15 word for word where it has
 * one, so a client that matches on them keeps working.
 */
#include "cbv_cproto.h"

#include "cbv_text.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

struct words {
	size_t n;
	char *w[CBV_CPROTO_WORDS_MAX];
	char buf[CBV_CPROTO_LINE_MAX + CBV_CPROTO_WORDS_MAX];
};

static const char *const var_names[CBV_CPROTO_VAR_COUNT] = {
	"EHLO", "MAILFROM", "STARTTLS", "TRANSCRIPT", "PROFILE"
};

static const char *const mode_names[] = {
	"", "mxfirst", "mxonly", "hostonly", "hostfirst"
};

const char *cbv_cproto_var_name(enum cbv_cproto_var v)
{
	return (unsigned)v < CBV_CPROTO_VAR_COUNT ? var_names[v] : "?";
}

const char *cbv_cproto_mode_name(enum cbv_cproto_mode m)
{
	return (unsigned)m < sizeof(mode_names) / sizeof(mode_names[0]) ? mode_names[m] : "?";
}

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/*
 * Splits the line into words: blanks separate, "..." groups, backslash
 * escapes the next byte inside and outside quotes.  Returns CBV_OK or
 * CBV_EINVAL with the calloutd-style message.
 */
static enum cbv_status split(const char *line, size_t len, struct words *ws,
                             struct cbv_err *err)
{
	size_t i = 0, o = 0;

	ws->n = 0;
	/* A NUL or control byte would end up in a log line or an SMTP
	 * command; calloutd says "bad input" for what it cannot read. */
	if (cbv_text_span(line, len, CBV_TEXT_NOCTL, "\t") < len)
		return cbv_err_set(err, CBV_EINVAL, "bad input");
	for (;;) {
		int quoted = 0;

		while (i < len && is_blank(line[i]))
			i++;
		if (i == len)
			break;
		if (ws->n == CBV_CPROTO_WORDS_MAX)
			return cbv_err_set(err, CBV_EINVAL, "invalid arguments");
		ws->w[ws->n++] = ws->buf + o;
		while (i < len && (quoted || !is_blank(line[i]))) {
			char ch = line[i++];

			if (ch == '"') {
				quoted = !quoted;
				continue;
			}
			if (ch == '\\') {
				if (i == len)
					return cbv_err_set(err, CBV_EINVAL, "cannot parse line");
				ch = line[i++];
			}
			/* A TAB separates words; quoted or escaped it would
			 * reach a field, a log line or an SMTP command. */
			if (ch == '\t')
				return cbv_err_set(err, CBV_EINVAL, "bad input");
			ws->buf[o++] = ch;
		}
		if (quoted)
			return cbv_err_set(err, CBV_EINVAL, "cannot parse line");
		ws->buf[o++] = '\0';
	}
	return CBV_OK;
}

/* Copies a value into a bounded field; 0 if it does not fit. */
static int copy_value(char *dst, size_t n, const char *s)
{
	size_t len = strlen(s);

	if (len >= n)
		return 0;
	memcpy(dst, s, len + 1);
	return 1;
}

static int find_var(const char *name)
{
	for (int v = 0; v < CBV_CPROTO_VAR_COUNT; v++)
		if (strcasecmp(name, var_names[v]) == 0)
			return v;
	return -1;
}

/* STARTTLS values: calloutd's three words, plus our policy names. */
static const char *starttls_value(const char *s)
{
	static const char *const ok[] = { "never", "always", "ondemand",
	                                  "opportunistic", "require" };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcasecmp(s, ok[i]) == 0)
			return ok[i];
	return NULL;
}

static const char *bool_value(const char *s)
{
	if (strcasecmp(s, "on") == 0 || strcasecmp(s, "yes") == 0 ||
	    strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0)
		return "ON";
	if (strcasecmp(s, "off") == 0 || strcasecmp(s, "no") == 0 ||
	    strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0)
		return "OFF";
	return NULL;
}

static enum cbv_status parse_set(const struct words *ws, struct cbv_cproto_req *req,
                                 struct cbv_err *err)
{
	char shown[80];
	char *eq;
	const char *norm;
	int v;

	if (ws->n != 2)
		return cbv_err_set(err, CBV_EINVAL, "invalid arguments");
	eq = strchr(ws->w[1], '=');
	cbv_text_show(ws->w[1], strlen(ws->w[1]), shown, sizeof(shown));
	if (eq == NULL)
		return cbv_err_set(err, CBV_EINVAL, "bad assignment %s", shown);
	*eq = '\0';
	v = find_var(ws->w[1]);
	*eq = '=';
	if (v < 0 || !copy_value(req->value, sizeof(req->value), eq + 1))
		return cbv_err_set(err, CBV_EINVAL, "bad assignment %s", shown);
	req->var = (enum cbv_cproto_var)v;
	norm = NULL;
	if (v == CBV_CPROTO_VAR_STARTTLS) {
		if ((norm = starttls_value(req->value)) == NULL) {
			cbv_text_show(req->value, strlen(req->value), shown, sizeof(shown));
			return cbv_err_set(err, CBV_EINVAL, "unrecognized starttls mode: %s", shown);
		}
	} else if (v == CBV_CPROTO_VAR_TRANSCRIPT) {
		if ((norm = bool_value(req->value)) == NULL)
			return cbv_err_set(err, CBV_EINVAL, "bad assignment %s", shown);
	}
	if (norm != NULL)
		snprintf(req->value, sizeof(req->value), "%s", norm);
	return CBV_OK;
}

static enum cbv_status parse_get(const struct words *ws, struct cbv_cproto_req *req,
                                 struct cbv_err *err)
{
	if (ws->n < 2 || ws->n - 1 > CBV_CPROTO_GET_MAX)
		return cbv_err_set(err, CBV_EINVAL, "invalid arguments");
	req->nget = 0;
	for (size_t i = 1; i < ws->n; i++) {
		int v = find_var(ws->w[i]);

		if (v < 0)
			continue; /* calloutd skips names it does not know */
		req->get[req->nget] = (enum cbv_cproto_var)v;
		snprintf(req->get_name[req->nget], sizeof(req->get_name[0]), "%s", ws->w[i]);
		req->nget++;
	}
	return CBV_OK;
}

static enum cbv_status parse_timeout(const struct words *ws, struct cbv_cproto_req *req,
                                     struct cbv_err *err)
{
	if (ws->n != CBV_CPROTO_TIMEOUTS + 1)
		return cbv_err_set(err, CBV_EINVAL, "invalid arguments");
	for (size_t i = 0; i < CBV_CPROTO_TIMEOUTS; i++) {
		const char *s = ws->w[i + 1];
		unsigned long val = 0;
		size_t k;

		for (k = 0; s[k] >= '0' && s[k] <= '9' && k < 6; k++)
			val = val * 10 + (unsigned long)(s[k] - '0');
		if (k == 0 || s[k] != '\0' || val == 0 || val > CBV_TIMEOUT_MAX_MS / 1000)
			return cbv_err_set(err, CBV_EINVAL, "syntax error in #%zu", i + 1);
		req->timeouts[i] = (unsigned)val;
	}
	return CBV_OK;
}

static enum cbv_status parse_vrfy(const struct words *ws, struct cbv_cproto_req *req,
                                  struct cbv_err *err)
{
	if (ws->n < 2)
		return cbv_err_set(err, CBV_EINVAL, "invalid arguments");
	if (!copy_value(req->email, sizeof(req->email), ws->w[1]))
		return cbv_err_set(err, CBV_EINVAL, "invalid arguments");
	req->mode = CBV_CPROTO_MODE_DEFAULT;
	req->host[0] = req->ehlo[0] = req->mailfrom[0] = '\0';
	req->has_mailfrom = 0;
	for (size_t i = 2; i < ws->n; i++) {
		char *name = ws->w[i], *val = strchr(name, '=');
		int ok = 1;

		if (val == NULL)
			return cbv_err_set(err, CBV_EINVAL, "unknown attribute");
		*val++ = '\0';
		if (strcasecmp(name, "MODE") == 0) {
			size_t m;

			for (m = 1; m < sizeof(mode_names) / sizeof(mode_names[0]); m++)
				if (strcasecmp(val, mode_names[m]) == 0)
					break;
			if (m == sizeof(mode_names) / sizeof(mode_names[0]))
				return cbv_err_set(err, CBV_EINVAL, "unrecognized value for mode");
			req->mode = (enum cbv_cproto_mode)m;
		} else if (strcasecmp(name, "HOST") == 0) {
			ok = copy_value(req->host, sizeof(req->host), val) && val[0] != '\0';
		} else if (strcasecmp(name, "EHLO") == 0) {
			ok = copy_value(req->ehlo, sizeof(req->ehlo), val);
		} else if (strcasecmp(name, "MAILFROM") == 0) {
			ok = copy_value(req->mailfrom, sizeof(req->mailfrom), val);
			req->has_mailfrom = 1;
		} else {
			return cbv_err_set(err, CBV_EINVAL, "unknown attribute");
		}
		if (!ok)
			return cbv_err_set(err, CBV_EINVAL, "invalid value for %s", name);
	}
	if ((req->mode == CBV_CPROTO_MODE_HOSTONLY || req->mode == CBV_CPROTO_MODE_HOSTFIRST) &&
	    req->host[0] == '\0')
		return cbv_err_set(err, CBV_EINVAL, "mode requires host");
	return CBV_OK;
}

enum cbv_status cbv_cproto_parse(const char *line, size_t len,
                                 struct cbv_cproto_req *req, struct cbv_err *err)
{
	static const struct {
		const char *name;
		enum cbv_cproto_cmd cmd;
	} cmds[] = {
		{ "SID", CBV_CPROTO_SID },     { "SET", CBV_CPROTO_SET },
		{ "GET", CBV_CPROTO_GET },     { "TIMEOUT", CBV_CPROTO_TIMEOUT },
		{ "VRFY", CBV_CPROTO_VRFY },   { "RUN", CBV_CPROTO_RUN },
		{ "QUIT", CBV_CPROTO_QUIT },
	};
	struct words ws;
	enum cbv_status st;
	size_t i;

	if (len > CBV_CPROTO_LINE_MAX)
		return cbv_err_set(err, CBV_EINVAL, "line too long");
	if ((st = split(line, len, &ws, err)) != CBV_OK)
		return st;
	if (ws.n == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty command");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcasecmp(ws.w[0], cmds[i].name) == 0)
			break;
	if (i == sizeof(cmds) / sizeof(cmds[0]))
		return cbv_err_set(err, CBV_EINVAL, "unknown command");
	req->cmd = cmds[i].cmd;
	switch (req->cmd) {
	case CBV_CPROTO_SID:
		if (ws.n != 2 || !copy_value(req->sid, sizeof(req->sid), ws.w[1]))
			return cbv_err_set(err, CBV_EINVAL, "invalid arguments");
		return CBV_OK;
	case CBV_CPROTO_SET:
		return parse_set(&ws, req, err);
	case CBV_CPROTO_GET:
		return parse_get(&ws, req, err);
	case CBV_CPROTO_TIMEOUT:
		return parse_timeout(&ws, req, err);
	case CBV_CPROTO_VRFY:
		return parse_vrfy(&ws, req, err);
	case CBV_CPROTO_RUN:
	case CBV_CPROTO_QUIT:
		if (ws.n != 1)
			return cbv_err_set(err, CBV_EINVAL, "invalid arguments");
		return CBV_OK;
	}
	return cbv_err_set(err, CBV_EINVAL, "unknown command");
}

void cbv_cproto_unbracket(char *addr)
{
	size_t len = strlen(addr);

	if (len >= 2 && addr[0] == '<' && addr[len - 1] == '>') {
		memmove(addr, addr + 1, len - 2);
		addr[len - 2] = '\0';
	}
}

/* ---- sharing sessions (cbv_cproto_group) ---- */

static int same_text(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* Jobs that may share a session: same host, mode, EHLO and sender. */
static int may_share(const struct cbv_cproto_job *a, const struct cbv_cproto_job *b)
{
	return a->mode == b->mode && strcasecmp(a->host != NULL ? a->host : "",
	                                        b->host != NULL ? b->host : "") == 0 &&
	       same_text(a->ehlo, b->ehlo) && (a->mailfrom == NULL) == (b->mailfrom == NULL) &&
	       same_text(a->mailfrom, b->mailfrom);
}

static const char *job_domain(const struct cbv_cproto_job *j)
{
	const char *at = j->email != NULL ? strrchr(j->email, '@') : NULL;

	return at != NULL ? at + 1 : "";
}

size_t cbv_cproto_group(const struct cbv_cproto_job *jobs, size_t n, size_t max, size_t *group)
{
	size_t ngroups = 0, part[CBV_CPROTO_GROUP_JOBS_MAX];
	unsigned char done[CBV_CPROTO_GROUP_JOBS_MAX] = { 0 };

	if (max < 1 || n > CBV_CPROTO_GROUP_JOBS_MAX)
		max = 1;
	for (size_t i = 0; i < n; i++) {
		size_t np = 0;

		if (max == 1) {
			group[i] = ngroups++;
			continue;
		}
		if (done[i])
			continue;
		/* the jobs that may share with job i, sorted by domain (stable) */
		for (size_t j = i; j < n; j++) {
			size_t k;

			if (done[j] || !may_share(&jobs[i], &jobs[j]))
				continue;
			done[j] = 1;
			for (k = np; k > 0 && strcasecmp(job_domain(&jobs[part[k - 1]]),
			                                 job_domain(&jobs[j])) > 0; k--)
				part[k] = part[k - 1];
			part[k] = j;
			np++;
		}
		for (size_t k = 0; k < np; k++)
			group[part[k]] = ngroups + k / max;
		ngroups += (np + max - 1) / max;
	}
	return ngroups;
}
