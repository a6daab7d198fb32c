/*
 * cbv_config.c - cbv.conf reader: Momentum-style blocks -> cbv_profile.
 *
 * Three layers, each bounded:
 *   prescan  the whole text once: size, NUL and control bytes, line length
 *            (CBV_CONFIG_FILE_MAX, CBV_CONFIG_LINE_MAX), so the lexer can
 *            assume printable text and fixed-size token buffers suffice;
 *   lexer    words, "strings", { } [ ] ( ) = , with line:column;
 *   parser   a table of block types (only smtp_cbv today) and a table of
 *            keys, each value checked as it is read.
 * cbv_profile_set() runs the same lexer and value parser on one value, so
 * `-o key=value` accepts exactly what the file does.  Any error refuses the
 * whole config: nothing half-parsed is ever returned.
 */
#include "cbv_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbv_addr.h"
#include "cbv_map.h"
#include "cbv_reply.h"

/* Bytes of a token or value quoted in an error message. */
#define SHOW_MAX 48

enum tok_type {
	TOK_EOF,
	TOK_WORD,
	TOK_STRING,
	TOK_LBRACE,
	TOK_RBRACE,
	TOK_LBRACKET,
	TOK_RBRACKET,
	TOK_LPAREN,
	TOK_RPAREN,
	TOK_EQUALS,
	TOK_COMMA
};

struct token {
	enum tok_type type;
	unsigned line, col; /* 1-based position of the first byte */
	size_t len;
	char text[CBV_CONFIG_LINE_MAX + 1]; /* a token never spans lines */
};

struct lexer {
	const char *p, *end; /* unread input */
	unsigned line, col;  /* position of *p */
	const char *name;    /* file name in messages ("FILE:LINE:COL: what") */
	int set_mode;        /* cbv_profile_set(): messages read "KEY: what" */
	const char *key;     /* key whose value is being read, or NULL */
	int ipv6_words;      /* "[2001:db8::1]:53" is one word (dns_servers) */
	struct token tok;    /* current token */
	struct cbv_err *err;
};

enum key_id {
	K_MAILFROM,
	K_HELO,
	K_PORT,
	K_TIMEOUT,
	K_CONNECT_TIMEOUT,
	K_COMMAND_TIMEOUT,
	K_MAX_HOSTS,
	K_STARTTLS,
	K_DNS_SERVERS,
	K_DENY_NETWORKS,
	K_VARS_ACL,
	K_CALLOUT_URL,
	K_MAP,
	K_PHASE,
	K_TLS_VERIFY,
	K_CA_DIR,
	K_COUNT
};

/* In cbv_profile_format() order, which is DESIGN.md's. */
static const char *const key_names[K_COUNT] = {
	"mailfrom",    "helo",          "port",        "timeout",  "connect_timeout",
	"command_timeout", "max_hosts", "starttls",    "dns_servers", "deny_networks",
	"vars_acl",    "callout_url",   "map",         "phase",    "tls_verify",
	"ca_dir",
};

static const char *const starttls_names[] = { "never", "opportunistic", "ondemand", "require" };

static const char *const phase_names[] = { "connect", "ehlo", "mailfrom", "rcptto", "data" };

/* DESIGN.md's deny_networks: never call out to these. */
static const char *const default_deny[] = {
	"0.0.0.0/8",      "127.0.0.0/8", "::1/128",   "169.254.0.0/16", "fe80::/10",
	"224.0.0.0/4",    "ff00::/8",    "::/128",    "240.0.0.0/4",
};

struct cbv_config {
	size_t n;
	size_t def; /* index of the default profile */
	struct cbv_profile *v[CBV_CONFIG_PROFILES_MAX];
	struct cbv_server_conf server;
	int has_server;                /* a server block was read */
	unsigned server_profile_line;  /* where its profile was named, for */
	unsigned server_profile_col;   /* "no such profile" after the parse */
};

struct block_type {
	const char *name;
	enum cbv_status (*parse)(struct cbv_config *c, struct lexer *lx);
};

static enum cbv_status parse_smtp_cbv(struct cbv_config *c, struct lexer *lx);
static enum cbv_status parse_server(struct cbv_config *c, struct lexer *lx);

/* Top-level block types. */
static const struct block_type block_types[] = {
	{ "smtp_cbv", parse_smtp_cbv },
	{ "server", parse_server },
};

/* Keys of the server block. */
enum skey_id { SK_LISTEN, SK_MAX_CLIENTS, SK_MAX_INFLIGHT, SK_USER, SK_PROFILE,
	       SK_ALLOW_REMOTE, SK_COUNT };

static const char *const skey_names[SK_COUNT] = {
	"listen", "max_clients", "max_inflight", "user", "profile", "allow_remote",
};

static enum cbv_status lx_error(struct lexer *lx, unsigned line, unsigned col,
                                const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Sets lx->err to a config error at line:col and returns CBV_ECONFIG. */
static enum cbv_status lx_error(struct lexer *lx, unsigned line, unsigned col,
                                const char *fmt, ...)
{
	char what[sizeof(lx->err->msg)];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(what, sizeof(what), fmt, ap) < 0)
		what[0] = '\0';
	va_end(ap);
	if (lx->set_mode)
		return cbv_err_set(lx->err, CBV_ECONFIG, "%s: %s", lx->key, what);
	if (lx->key != NULL)
		return cbv_err_set(lx->err, CBV_ECONFIG, "%s:%u:%u: %s: %s", lx->name, line, col,
		                   lx->key, what);
	return cbv_err_set(lx->err, CBV_ECONFIG, "%s:%u:%u: %s", lx->name, line, col, what);
}

static enum cbv_status oom(struct cbv_err *err)
{
	return cbv_err_set(err, CBV_ENOMEM, "out of memory");
}

/* Describes the current token for a message: '{', "word", end of file. */
static const char *tok_show(const struct lexer *lx, char *buf, size_t n)
{
	char text[SHOW_MAX + 1];

	switch (lx->tok.type) {
	case TOK_EOF: return lx->set_mode ? "end of value" : "end of file";
	case TOK_WORD:
	case TOK_STRING:
		cbv_sanitize(lx->tok.text, lx->tok.len, text, sizeof(text));
		snprintf(buf, n, "\"%s\"", text);
		return buf;
	default:
		snprintf(buf, n, "'%c'", lx->tok.text[0]);
		return buf;
	}
}

static void lx_init(struct lexer *lx, const char *text, size_t len,
                    const char *name, struct cbv_err *err)
{
	memset(lx, 0, sizeof(*lx));
	lx->p = text;
	lx->end = text + len;
	lx->line = 1;
	lx->col = 1;
	lx->name = name;
	lx->err = err;
	lx->tok.type = TOK_EOF;
}

/*
 * Checks the raw text before lexing: no NUL (a C string would end there
 * and hide the rest from review), no control bytes but TAB, LF and CRLF,
 * no line over CBV_CONFIG_LINE_MAX.
 */
static enum cbv_status prescan(struct lexer *lx)
{
	unsigned line = 1, col = 1;

	for (const char *p = lx->p; p < lx->end; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '\n') {
			line++;
			col = 1;
			continue;
		}
		if (col > CBV_CONFIG_LINE_MAX)
			return lx_error(lx, line, col, "line longer than %d bytes",
			                CBV_CONFIG_LINE_MAX);
		if (ch == '\0')
			return lx_error(lx, line, col, "NUL byte");
		if (ch == '\r' && (p + 1 == lx->end || p[1] != '\n'))
			return lx_error(lx, line, col, "CR not followed by LF");
		if ((ch < 0x20 && ch != '\t' && ch != '\r') || ch == 0x7f)
			return lx_error(lx, line, col, "control character 0x%02x", ch);
		col++;
	}
	return CBV_OK;
}

static void lx_advance(struct lexer *lx)
{
	if (*lx->p == '\n') {
		lx->line++;
		lx->col = 1;
	} else {
		lx->col++;
	}
	lx->p++;
}

static int is_word_byte(char ch)
{
	return strchr(" \t\r\n#\"{}[]()=,", ch) == NULL;
}

/* Reads a "string": \" and \\ are escapes, any other \x stays as is. */
static enum cbv_status lx_string(struct lexer *lx)
{
	struct token *t = &lx->tok;

	lx_advance(lx);
	for (;;) {
		if (lx->p == lx->end || *lx->p == '\n')
			return lx_error(lx, t->line, t->col, "unterminated string");
		if (*lx->p == '"') {
			lx_advance(lx);
			break;
		}
		/* Regexes keep "\." as written; only \" and \\ are escapes. */
		if (*lx->p == '\\' && lx->p + 1 < lx->end && (lx->p[1] == '"' || lx->p[1] == '\\'))
			lx_advance(lx);
		/* The prescan bounds a line, so the text always fits. */
		t->text[t->len++] = *lx->p;
		lx_advance(lx);
	}
	t->type = TOK_STRING;
	return CBV_OK;
}

/*
 * Returns 1 if the input starts with "[" hex digits, ':' and '.' "]" with
 * a ':' inside: an IPv6 server address rather than a list.  "[ a b ]" and
 * "[::1 ::2]" stay lists.
 */
static int is_ipv6_literal(const struct lexer *lx)
{
	const char *q = lx->p + 1;
	int colon = 0;

	if (*lx->p != '[')
		return 0;
	for (; q < lx->end && (strchr("0123456789abcdefABCDEF:.", *q) != NULL); q++)
		colon |= *q == ':';
	return colon && q < lx->end && *q == ']';
}

/* Reads the next token into lx->tok.  At the end it stays at TOK_EOF. */
static enum cbv_status lx_next(struct lexer *lx)
{
	struct token *t = &lx->tok;
	static const char punct[] = "{}[]()=,";
	static const enum tok_type punct_type[] = { TOK_LBRACE,   TOK_RBRACE, TOK_LBRACKET,
		                                    TOK_RBRACKET, TOK_LPAREN, TOK_RPAREN,
		                                    TOK_EQUALS,   TOK_COMMA };
	const char *pc;
	enum cbv_status st = CBV_OK;

	while (lx->p < lx->end) {
		if (*lx->p == '#') {
			while (lx->p < lx->end && *lx->p != '\n')
				lx_advance(lx);
		} else if (strchr(" \t\r\n", *lx->p) != NULL) {
			lx_advance(lx);
		} else {
			break;
		}
	}
	t->line = lx->line;
	t->col = lx->col;
	t->len = 0;
	if (lx->p == lx->end) {
		t->type = TOK_EOF;
	} else if (*lx->p == '"') {
		st = lx_string(lx);
	} else if (lx->ipv6_words && is_ipv6_literal(lx)) {
		/* Copy up to the ']', then the rest (":PORT") as a word. */
		do {
			t->text[t->len++] = *lx->p;
			lx_advance(lx);
		} while (t->text[t->len - 1] != ']');
		t->type = TOK_WORD;
		while (lx->p < lx->end && is_word_byte(*lx->p)) {
			t->text[t->len++] = *lx->p;
			lx_advance(lx);
		}
	} else if ((pc = strchr(punct, *lx->p)) != NULL) {
		t->type = punct_type[pc - punct];
		t->text[t->len++] = *lx->p;
		lx_advance(lx);
	} else {
		t->type = TOK_WORD;
		while (lx->p < lx->end && is_word_byte(*lx->p)) {
			t->text[t->len++] = *lx->p;
			lx_advance(lx);
		}
	}
	t->text[t->len] = '\0';
	return st;
}

static int tok_is_value(const struct lexer *lx)
{
	return lx->tok.type == TOK_WORD || lx->tok.type == TOK_STRING;
}

/* ---- numbers and durations ---- */

/*
 * Parses len bytes of decimal digits into *out if within [min, max].
 * Returns CBV_OK or CBV_EINVAL (*out untouched).
 */
enum cbv_status cbv_uint_parse(const char *s, size_t len, unsigned min,
                               unsigned max, unsigned *out, struct cbv_err *err)
{
	char show[SHOW_MAX + 1];
	unsigned long long v = 0;

	cbv_sanitize(s, len, show, sizeof(show));
	if (len == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty number");
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return cbv_err_set(err, CBV_EINVAL, "\"%s\" is not a number", show);
		/* Saturate: any value past max is as wrong as the next. */
		if (v <= max)
			v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < min || v > max)
		return cbv_err_set(err, CBV_EINVAL, "%s out of range %u..%u", show, min, max);
	*out = (unsigned)v;
	return CBV_OK;
}

/*
 * Parses an Exim duration (30s, 1m30s, 500ms, bare seconds) into *ms,
 * 0 < *ms <= CBV_TIMEOUT_MAX_MS.  Returns CBV_OK or CBV_EINVAL.
 */
enum cbv_status cbv_duration_parse(const char *s, size_t len, unsigned *ms,
                                   struct cbv_err *err)
{
	char show[SHOW_MAX + 1];
	unsigned long long total = 0;
	size_t i = 0;

	cbv_sanitize(s, len, show, sizeof(show));
	if (len == 0)
		return cbv_err_set(err, CBV_EINVAL, "empty duration");
	while (i < len) {
		unsigned long long v = 0, mult;
		size_t digits = 0;

		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++)
			if (v <= CBV_TIMEOUT_MAX_MS)
				v = v * 10 + (unsigned)(s[i] - '0');
		if (digits == 0)
			goto bad;
		/* Exim's readconf_readtime(): a number without unit is seconds. */
		if (i == len) {
			mult = 1000;
		} else if (s[i] == 'm' && i + 1 < len && s[i + 1] == 's') {
			mult = 1;
			i += 2;
		} else {
			switch (s[i]) {
			case 's': mult = 1000; break;
			case 'm': mult = 60 * 1000; break;
			case 'h': mult = 3600 * 1000; break;
			case 'd': mult = 86400 * 1000; break;
			case 'w': mult = 7ULL * 86400 * 1000; break;
			default: goto bad;
			}
			i++;
		}
		if (total <= CBV_TIMEOUT_MAX_MS)
			total += v * mult;
	}
	if (total == 0)
		return cbv_err_set(err, CBV_EINVAL, "duration \"%s\" must be more than 0", show);
	if (total > CBV_TIMEOUT_MAX_MS)
		return cbv_err_set(err, CBV_EINVAL, "duration \"%s\" longer than %ds", show,
		                   CBV_TIMEOUT_MAX_MS / 1000);
	*ms = (unsigned)total;
	return CBV_OK;
bad:
	return cbv_err_set(err, CBV_EINVAL,
	                   "\"%s\" is not a duration (such as 30s, 2m, 1m30s, 500ms)", show);
}

/* ---- value checks ---- */

/* Returns the index of s in names (n entries, compared caselessly) or -1. */
static int find_word(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

/* Profile names and ACL names: they travel in "key=value" option strings
 * and into ${acl{NAME}}, so nothing but letters, digits, '_', '-', '.'. */
static int valid_name(const char *s, size_t len, const char *extra)
{
	if (len == 0 || len > CBV_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		/* strchr() finds the terminator too: rule '\0' out first. */
		if (ch == '\0' || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		                    (ch >= '0' && ch <= '9') || strchr(extra, ch) != NULL))
			return 0;
	}
	return 1;
}

/* Returns 1 if s has no space and no byte outside printable ASCII. */
static int is_graph(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

/*
 * Checks a callout server URL as cbvd and mailfromd write it:
 * unix:///absolute/path or inet://HOST:PORT (HOST may be [IPv6]).
 */
static enum cbv_status check_url(const char *s, size_t len, struct cbv_err *err)
{
	const char *host, *colon;
	unsigned port;
	struct cbv_err e;

	if (len > CBV_URL_MAX || !is_graph(s, len))
		return cbv_err_set(err, CBV_EINVAL, "not a URL");
	if (len > 7 && strncmp(s, "unix://", 7) == 0) {
		if (s[7] != '/')
			return cbv_err_set(err, CBV_EINVAL, "unix:// needs an absolute path");
		return CBV_OK;
	}
	if (len <= 7 || strncmp(s, "inet://", 7) != 0)
		return cbv_err_set(err, CBV_EINVAL,
		                   "must be unix:///PATH or inet://HOST:PORT");
	host = s + 7;
	colon = NULL;
	for (const char *p = host; p < s + len; p++)
		if (*p == ':')
			colon = p;
	if (colon == NULL || colon == host)
		return cbv_err_set(err, CBV_EINVAL, "inet:// needs HOST:PORT");
	if (host[0] == '[' ? colon[-1] != ']' : memchr(host, ':', (size_t)(colon - host)) != NULL)
		return cbv_err_set(err, CBV_EINVAL, "write an IPv6 host as [ADDRESS]");
	if (cbv_uint_parse(colon + 1, (size_t)(s + len - colon - 1), 1, 65535, &port, &e) !=
	    CBV_OK)
		return cbv_err_set(err, CBV_EINVAL, "port %s", e.msg);
	return CBV_OK;
}

/*
 * Parses one DNS server: IPv4, IPv4:PORT, [IPv6], [IPv6]:PORT or a bare
 * IPv6, and appends it in the one form c-ares 1.18's
 * ares_set_servers_ports_csv() reads without ambiguity ("ip:port",
 * "[ip6]:port"; a bare "::1" would read as "::" port 1).
 */
static enum cbv_status add_dns_server(char *list, const char *s, size_t len,
                                      struct cbv_err *err)
{
	char addr[INET6_ADDRSTRLEN + 1], canon[INET6_ADDRSTRLEN];
	char show[SHOW_MAX + 1], item[INET6_ADDRSTRLEN + 16];
	unsigned char bin[16];
	const char *a = s, *port = NULL;
	size_t alen = len, plen = 0, used;
	unsigned portnum = 53;
	int family = AF_INET;
	const char *colon = memchr(s, ':', len);
	struct cbv_err e;

	cbv_sanitize(s, len, show, sizeof(show));
	if (len > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', len);

		if (rb == NULL)
			return cbv_err_set(err, CBV_EINVAL, "\"%s\": missing ']'", show);
		a = s + 1;
		alen = (size_t)(rb - a);
		family = AF_INET6;
		if (rb + 1 < s + len) {
			if (rb[1] != ':')
				return cbv_err_set(err, CBV_EINVAL, "\"%s\": junk after ']'", show);
			port = rb + 2;
			plen = (size_t)(s + len - port);
		}
	} else if (colon != NULL && memchr(colon + 1, ':', (size_t)(s + len - colon - 1)) != NULL) {
		family = AF_INET6; /* bare IPv6, no port */
	} else if (colon != NULL) {
		alen = (size_t)(colon - s);
		port = colon + 1;
		plen = (size_t)(s + len - port);
	}
	if (alen == 0 || alen >= sizeof(addr))
		return cbv_err_set(err, CBV_EINVAL, "\"%s\": not an IP address", show);
	memcpy(addr, a, alen);
	addr[alen] = '\0';
	if (inet_pton(family, addr, bin) != 1 || inet_ntop(family, bin, canon, sizeof(canon)) == NULL)
		return cbv_err_set(err, CBV_EINVAL, "\"%s\": not an IP%s address", show,
		                   family == AF_INET6 ? "v6" : "v4");
	if (port != NULL && cbv_uint_parse(port, plen, 1, 65535, &portnum, &e) != CBV_OK)
		return cbv_err_set(err, CBV_EINVAL, "\"%s\": port %s", show, e.msg);
	snprintf(item, sizeof(item), family == AF_INET6 ? "[%s]:%u" : "%s:%u", canon, portnum);
	used = strlen(list);
	if (used + (used > 0) + strlen(item) > CBV_DNS_SERVERS_MAX)
		return cbv_err_set(err, CBV_EINVAL, "list longer than %d bytes",
		                   CBV_DNS_SERVERS_MAX);
	if (used > 0)
		list[used++] = ',';
	memcpy(list + used, item, strlen(item) + 1);
	return CBV_OK;
}

/* ---- values ---- */

/*
 * A list value: "[ a b ]" or "( a, b )"; in a file a single bare value is
 * a list of one, in cbv_profile_set() bare values run to the end.
 */
struct list {
	enum tok_type close; /* closing token, TOK_EOF for a bare list */
	int single;          /* file mode: exactly one bare item */
	unsigned count;      /* items seen */
	unsigned line, col;  /* where the list opened */
};

/* Starts a list at the current token. */
static enum cbv_status list_open(struct lexer *lx, struct list *l)
{
	memset(l, 0, sizeof(*l));
	l->line = lx->tok.line;
	l->col = lx->tok.col;
	if (lx->tok.type == TOK_LBRACKET || lx->tok.type == TOK_LPAREN) {
		l->close = lx->tok.type == TOK_LBRACKET ? TOK_RBRACKET : TOK_RPAREN;
		return lx_next(lx);
	}
	l->close = TOK_EOF;
	l->single = !lx->set_mode;
	return CBV_OK;
}

/*
 * Moves to the next item.  Returns 1 with lx->tok on it, 0 at the end of
 * the list (the closing token is current), -1 with *st set on error.
 * Items may be separated by commas, and a trailing comma is accepted.
 */
static int list_item(struct lexer *lx, struct list *l, enum cbv_status *st)
{
	char show[SHOW_MAX + 8];

	if (l->single) {
		if (l->count++ > 0)
			return 0;
		if (tok_is_value(lx))
			return 1;
		*st = lx_error(lx, lx->tok.line, lx->tok.col, "expected a value or a list, got %s",
		               tok_show(lx, show, sizeof(show)));
		return -1;
	}
	if (l->count > 0) {
		if ((*st = lx_next(lx)) != CBV_OK)
			return -1;
		if (lx->tok.type == TOK_COMMA && (*st = lx_next(lx)) != CBV_OK)
			return -1;
	}
	if (lx->tok.type == l->close)
		return 0;
	if (tok_is_value(lx)) {
		l->count++;
		return 1;
	}
	if (lx->tok.type == TOK_EOF)
		*st = lx_error(lx, l->line, l->col, "list not closed");
	else
		*st = lx_error(lx, lx->tok.line, lx->tok.col, "unexpected %s in list",
		               tok_show(lx, show, sizeof(show)));
	return -1;
}

/* Calls fn on each comma- or space-separated piece of s. */
static enum cbv_status split_items(const char *s, size_t len,
                                   enum cbv_status (*fn)(void *arg, const char *item,
                                                         size_t ilen, struct cbv_err *err),
                                   void *arg, struct cbv_err *err)
{
	size_t i = 0, start;
	enum cbv_status st;

	while (i < len) {
		while (i < len && strchr(", \t", s[i]) != NULL)
			i++;
		start = i;
		while (i < len && strchr(", \t", s[i]) == NULL)
			i++;
		if (i > start && (st = fn(arg, s + start, i - start, err)) != CBV_OK)
			return st;
	}
	return CBV_OK;
}

static enum cbv_status deny_item(void *arg, const char *s, size_t len,
                                 struct cbv_err *err)
{
	struct cbv_profile *p = arg;

	if (p->ndeny >= CBV_DENY_MAX)
		return cbv_err_set(err, CBV_EINVAL, "more than %d networks", CBV_DENY_MAX);
	return cbv_cidr_parse(s, len, &p->deny[p->ndeny++], err);
}

static enum cbv_status dns_item(void *arg, const char *s, size_t len,
                                struct cbv_err *err)
{
	return add_dns_server(arg, s, len, err);
}

/* Reads deny_networks or dns_servers: a list of split items. */
static enum cbv_status parse_split_list(struct lexer *lx, struct cbv_profile *p,
                                        enum key_id k)
{
	struct list l;
	struct cbv_err e;
	enum cbv_status st;
	int r;

	if (k == K_DENY_NETWORKS)
		p->ndeny = 0;
	else
		p->dns_servers[0] = '\0';
	if ((st = list_open(lx, &l)) != CBV_OK)
		return st;
	while ((r = list_item(lx, &l, &st)) == 1) {
		if (k == K_DENY_NETWORKS)
			st = split_items(lx->tok.text, lx->tok.len, deny_item, p, &e);
		else
			st = split_items(lx->tok.text, lx->tok.len, dns_item, p->dns_servers, &e);
		if (st != CBV_OK)
			return lx_error(lx, lx->tok.line, lx->tok.col, "%s", e.msg);
	}
	return r < 0 ? st : CBV_OK;
}

/* Reads map = [ PATTERN = "REPLACEMENT" ... ] into a new map. */
static enum cbv_status parse_map(struct lexer *lx, struct cbv_profile *p)
{
	char pat[CBV_CONFIG_LINE_MAX + 1];
	char show[SHOW_MAX + 8];
	struct cbv_map *m;
	struct list l;
	struct cbv_err e;
	unsigned line, col;
	enum cbv_status st;
	int r;

	m = cbv_map_new();
	if (m == NULL)
		return oom(lx->err);
	if ((st = list_open(lx, &l)) != CBV_OK)
		goto done;
	while ((r = list_item(lx, &l, &st)) == 1) {
		line = lx->tok.line;
		col = lx->tok.col;
		memcpy(pat, lx->tok.text, lx->tok.len + 1);
		if ((st = lx_next(lx)) != CBV_OK)
			goto done;
		if (lx->tok.type != TOK_EQUALS) {
			st = lx_error(lx, lx->tok.line, lx->tok.col,
			              "expected '=' after a map pattern, got %s",
			              tok_show(lx, show, sizeof(show)));
			goto done;
		}
		if ((st = lx_next(lx)) != CBV_OK)
			goto done;
		if (!tok_is_value(lx)) {
			st = lx_error(lx, lx->tok.line, lx->tok.col,
			              "expected a replacement after '=', got %s",
			              tok_show(lx, show, sizeof(show)));
			goto done;
		}
		st = cbv_map_add(m, pat, lx->tok.text, &e);
		if (st == CBV_ENOMEM) {
			oom(lx->err);
			goto done;
		}
		if (st != CBV_OK) {
			st = lx_error(lx, line, col, "%s", e.msg);
			goto done;
		}
	}
	if (r < 0)
		goto done;
	if (cbv_map_count(m) == 0) {
		cbv_map_free(m);
		m = NULL;
	}
	cbv_map_free(p->map);
	p->map = m;
	m = NULL;
done:
	cbv_map_free(m);
	return st;
}

/* Copies a checked string value into a profile field of size n. */
static void set_string(char *field, size_t n, const char *s, size_t len)
{
	if (len > n - 1)
		len = n - 1;
	memcpy(field, s, len);
	field[len] = '\0';
}

/*
 * Reads the value of key k starting at the next token and stores it in p.
 * On return the last token of the value is current.
 */
static enum cbv_status parse_value_tokens(struct lexer *lx, struct cbv_profile *p,
                                          enum key_id k)
{
	char show[SHOW_MAX + 8];
	const char *s;
	size_t len;
	unsigned line, col;
	struct cbv_addr addr;
	struct cbv_err e;
	enum cbv_status st;
	int i;

	if ((st = lx_next(lx)) != CBV_OK)
		return st;
	if (k == K_MAP)
		return parse_map(lx, p);
	if (k == K_DENY_NETWORKS || k == K_DNS_SERVERS)
		return parse_split_list(lx, p, k);
	line = lx->tok.line;
	col = lx->tok.col;
	/* Scalars: one word or string; `-o key=` means the empty string. */
	if (!tok_is_value(lx) && !(lx->set_mode && lx->tok.type == TOK_EOF))
		return lx_error(lx, line, col, "expected a value, got %s",
		                tok_show(lx, show, sizeof(show)));
	s = lx->tok.text;
	len = lx->tok.len;
	cbv_err_clear(&e);
	st = CBV_OK;
	switch (k) {
	case K_MAILFROM:
		if (len == 2 && strcmp(s, "<>") == 0)
			len = 0; /* Momentum and Exim write the null sender so */
		if (len > 0 && (st = cbv_addr_parse(s, len, &addr, &e)) == CBV_OK &&
		    len > CBV_PATH_MAX - 2)
			st = cbv_err_set(&e, CBV_EINVAL, "address too long");
		if (st == CBV_OK)
			set_string(p->mailfrom, sizeof(p->mailfrom), s, len);
		break;
	case K_HELO:
		if (len == 0)
			p->helo[0] = '\0';
		else
			st = cbv_addr_check_domain(s, len, p->helo, &e);
		break;
	case K_PORT: st = cbv_uint_parse(s, len, 1, 65535, &p->port, &e); break;
	case K_TIMEOUT: st = cbv_duration_parse(s, len, &p->timeout_ms, &e); break;
	case K_CONNECT_TIMEOUT:
		st = cbv_duration_parse(s, len, &p->connect_timeout_ms, &e);
		break;
	case K_COMMAND_TIMEOUT:
		st = cbv_duration_parse(s, len, &p->command_timeout_ms, &e);
		break;
	case K_MAX_HOSTS: st = cbv_uint_parse(s, len, 1, CBV_HOSTS_MAX, &p->max_hosts, &e); break;
	case K_STARTTLS:
		i = find_word(starttls_names, 4, s);
		if (i < 0)
			st = cbv_err_set(&e, CBV_EINVAL,
			                 "%s: must be never, opportunistic, ondemand or require",
			                 tok_show(lx, show, sizeof(show)));
		else
			p->starttls = (enum cbv_starttls)i;
		break;
	case K_TLS_VERIFY:
		i = find_word((const char *const[]){ "no", "yes", "false", "true", "0", "1" }, 6, s);
		if (i < 0)
			st = cbv_err_set(&e, CBV_EINVAL, "%s: must be yes or no",
			                 tok_show(lx, show, sizeof(show)));
		else
			p->tls_verify = i % 2;
		break;
	case K_PHASE:
		i = find_word(phase_names, 5, s);
		if (i < 0)
			st = cbv_err_set(&e, CBV_EINVAL,
			                 "%s: must be connect, ehlo, mailfrom, rcptto or data",
			                 tok_show(lx, show, sizeof(show)));
		else
			set_string(p->phase, sizeof(p->phase), phase_names[i], strlen(phase_names[i]));
		break;
	case K_VARS_ACL:
		/* Expanded as ${acl{NAME}}: '$', '{' or '}' would be code. */
		if (len > 0 && !valid_name(s, len, "_-"))
			st = cbv_err_set(&e, CBV_EINVAL,
			                 "%s: an ACL name is 1 to %d letters, digits, '_' or '-'",
			                 tok_show(lx, show, sizeof(show)), CBV_NAME_MAX);
		else
			set_string(p->vars_acl, sizeof(p->vars_acl), s, len);
		break;
	case K_CALLOUT_URL:
		if (len > 0)
			st = check_url(s, len, &e);
		if (st == CBV_OK)
			set_string(p->callout_url, sizeof(p->callout_url), s, len);
		break;
	case K_CA_DIR:
		if (len > 0 && (s[0] != '/' || len > CBV_URL_MAX))
			st = cbv_err_set(&e, CBV_EINVAL, "must be an absolute path of at most %d bytes",
			                 CBV_URL_MAX);
		else
			set_string(p->ca_dir, sizeof(p->ca_dir), s, len);
		break;
	default: break;
	}
	if (st == CBV_ENOMEM)
		return oom(lx->err);
	if (st != CBV_OK)
		return lx_error(lx, line, col, "%s", e.msg);
	return CBV_OK;
}

/*
 * Reads the value of key k starting at the next token and stores it in p.
 * On return the last token of the value is current.
 */
static enum cbv_status parse_value(struct lexer *lx, struct cbv_profile *p,
                                   enum key_id k)
{
	enum cbv_status st;

	/* dns_servers = 127.0.0.1,[::1]:53 must work bare, as with -o. */
	lx->ipv6_words = k == K_DNS_SERVERS;
	st = parse_value_tokens(lx, p, k);
	lx->ipv6_words = 0;
	return st;
}

static int find_key(const char *s)
{
	return find_word(key_names, K_COUNT, s);
}

/*
 * Inside a block, at a word token: reads "KEY =" for one of names[0..n),
 * refusing unknown and repeated keys (seen[] holds the line each key was
 * set on).  Leaves the lexer on the '=' and *k on the key's index.
 */
static enum cbv_status read_key(struct lexer *lx, const char *const *names, size_t n,
                                const char *block, unsigned *seen, int *k)
{
	char show[SHOW_MAX + 8];
	enum cbv_status st;

	if (lx->tok.type != TOK_WORD)
		return lx_error(lx, lx->tok.line, lx->tok.col, "expected a key, got %s",
		                tok_show(lx, show, sizeof(show)));
	*k = find_word(names, n, lx->tok.text);
	if (*k < 0)
		return lx_error(lx, lx->tok.line, lx->tok.col, "unknown key %s in %s",
		                tok_show(lx, show, sizeof(show)), block);
	if (seen[*k] != 0)
		return lx_error(lx, lx->tok.line, lx->tok.col,
		                "duplicate key \"%s\" (first set on line %u)", names[*k], seen[*k]);
	seen[*k] = lx->tok.line;
	if ((st = lx_next(lx)) != CBV_OK)
		return st;
	if (lx->tok.type != TOK_EQUALS)
		return lx_error(lx, lx->tok.line, lx->tok.col, "expected '=' after \"%s\", got %s",
		                names[*k], tok_show(lx, show, sizeof(show)));
	return CBV_OK;
}

/* ---- profiles ---- */

/* Fills p with DESIGN.md's defaults: profile "default", no map. */
void cbv_profile_defaults(struct cbv_profile *p)
{
	memset(p, 0, sizeof(*p));
	strcpy(p->name, "default");
	p->port = CBV_PORT_DEFAULT;
	p->timeout_ms = CBV_TIMEOUT_DEFAULT_MS;
	p->connect_timeout_ms = CBV_CONNECT_TIMEOUT_DEFAULT_MS;
	p->command_timeout_ms = CBV_COMMAND_TIMEOUT_DEFAULT_MS;
	p->max_hosts = CBV_MAX_HOSTS_DEFAULT;
	p->starttls = CBV_STARTTLS_OPPORTUNISTIC;
	p->tls_verify = 0;
	for (size_t i = 0; i < sizeof(default_deny) / sizeof(default_deny[0]); i++)
		if (cbv_cidr_parse(default_deny[i], strlen(default_deny[i]), &p->deny[p->ndeny],
		                   NULL) == CBV_OK)
			p->ndeny++;
	strcpy(p->phase, "mailfrom");
	p->map = NULL;
}

/* Copies src to dst, taking a new reference on the map. */
void cbv_profile_copy(struct cbv_profile *dst, const struct cbv_profile *src)
{
	*dst = *src;
	dst->map = cbv_map_ref(src->map);
}

/* Drops p's map reference; accepts NULL. */
void cbv_profile_clear(struct cbv_profile *p)
{
	if (p == NULL)
		return;
	cbv_map_free(p->map);
	p->map = NULL;
}

/*
 * Sets key from value text with the file's value syntax.  Returns CBV_OK,
 * CBV_ECONFIG ("KEY: what") or CBV_ENOMEM; p is unchanged on error.
 */
enum cbv_status cbv_profile_set(struct cbv_profile *p, const char *key,
                                const char *value, struct cbv_err *err)
{
	char keyshow[SHOW_MAX + 1];
	struct cbv_profile tmp;
	struct lexer lx;
	char show[SHOW_MAX + 8];
	size_t len;
	enum cbv_status st;
	int k;

	if (key == NULL)
		key = "";
	if (value == NULL)
		value = "";
	cbv_sanitize(key, strnlen(key, SHOW_MAX), keyshow, sizeof(keyshow));
	k = find_key(key);
	if (k < 0)
		return cbv_err_set(err, CBV_ECONFIG, "%s: unknown key", keyshow);
	len = strnlen(value, CBV_CONFIG_FILE_MAX + 1);
	if (len > CBV_CONFIG_FILE_MAX)
		return cbv_err_set(err, CBV_ECONFIG, "%s: value too long", keyshow);
	cbv_profile_copy(&tmp, p);
	lx_init(&lx, value, len, keyshow, err);
	lx.set_mode = 1;
	lx.key = key_names[k];
	if ((st = prescan(&lx)) != CBV_OK)
		goto done;
	if ((st = parse_value(&lx, &tmp, (enum key_id)k)) != CBV_OK)
		goto done;
	if ((st = lx_next(&lx)) != CBV_OK)
		goto done;
	if (lx.tok.type != TOK_EOF)
		st = lx_error(&lx, lx.tok.line, lx.tok.col, "unexpected %s after the value",
		              tok_show(&lx, show, sizeof(show)));
done:
	if (st == CBV_OK) {
		cbv_profile_clear(p);
		*p = tmp;
	} else {
		cbv_profile_clear(&tmp);
	}
	return st;
}

/* Output buffer for cbv_profile_format(): counts when buf is NULL. */
struct out {
	char *buf;
	size_t len;
};

static void out_str(struct out *o, const char *s, size_t len)
{
	if (o->buf != NULL)
		memcpy(o->buf + o->len, s, len);
	o->len += len;
}

/* Appends a string literal. */
#define OUT_LIT(o, lit) out_str((o), (lit), sizeof(lit) - 1)

static void out_fmt(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_fmt(struct out *o, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		out_str(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Writes s as a "string" with \" and \\ escaped. */
static void out_quoted(struct out *o, const char *s)
{
	OUT_LIT(o, "\"");
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			OUT_LIT(o, "\\");
		out_str(o, s, 1);
	}
	OUT_LIT(o, "\"");
}

static void out_key_quoted(struct out *o, const char *key, const char *s)
{
	out_fmt(o, "  %s = ", key);
	out_quoted(o, s);
	OUT_LIT(o, "\n");
}

/* Writes a duration in Exim's form: 1m30s, 500ms. */
static void out_duration(struct out *o, const char *key, unsigned ms)
{
	static const struct {
		char unit;
		unsigned secs;
	} units[] = { { 'w', 604800 }, { 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 } };
	unsigned secs = ms / 1000;

	out_fmt(o, "  %s = ", key);
	if (ms % 1000 != 0) {
		out_fmt(o, "%ums", ms);
	} else {
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			if (secs >= units[i].secs) {
				out_fmt(o, "%u%c", secs / units[i].secs, units[i].unit);
				secs %= units[i].secs;
			}
		}
	}
	OUT_LIT(o, "\n");
}

static void format_profile(struct out *o, const struct cbv_profile *p)
{
	char net[64];
	const char *pat, *rep;
	size_t n;

	OUT_LIT(o, "smtp_cbv ");
	out_quoted(o, p->name);
	OUT_LIT(o, " {\n");
	out_key_quoted(o, "mailfrom", p->mailfrom);
	out_key_quoted(o, "helo", p->helo);
	out_fmt(o, "  port = %u\n", p->port);
	out_duration(o, "timeout", p->timeout_ms);
	out_duration(o, "connect_timeout", p->connect_timeout_ms);
	out_duration(o, "command_timeout", p->command_timeout_ms);
	out_fmt(o, "  max_hosts = %u\n", p->max_hosts);
	out_fmt(o, "  starttls = %s\n",
	        starttls_names[(unsigned)p->starttls < 4 ? p->starttls : CBV_STARTTLS_OPPORTUNISTIC]);
	out_key_quoted(o, "dns_servers", p->dns_servers);
	OUT_LIT(o, "  deny_networks = [");
	for (size_t i = 0; i < p->ndeny; i++) {
		cbv_cidr_format(&p->deny[i], net, sizeof(net));
		out_fmt(o, " %s", net);
	}
	OUT_LIT(o, " ]\n");
	out_key_quoted(o, "vars_acl", p->vars_acl);
	out_key_quoted(o, "callout_url", p->callout_url);
	n = cbv_map_count(p->map);
	OUT_LIT(o, "  map = [");
	for (size_t i = 0; i < n; i++) {
		cbv_map_entry(p->map, i, &pat, &rep);
		OUT_LIT(o, "\n    ");
		out_quoted(o, pat);
		OUT_LIT(o, " = ");
		out_quoted(o, rep);
	}
	if (n > 0)
		OUT_LIT(o, "\n  ]\n");
	else
		OUT_LIT(o, " ]\n");
	out_key_quoted(o, "phase", p->phase);
	out_fmt(o, "  tls_verify = %s\n", p->tls_verify ? "yes" : "no");
	out_key_quoted(o, "ca_dir", p->ca_dir);
	OUT_LIT(o, "}\n");
}

/* Returns p as an smtp_cbv block in a new string (cbv_free()); NULL on ENOMEM. */
char *cbv_profile_format(const struct cbv_profile *p)
{
	struct out o = { NULL, 0 };

	/* Two passes: measure, then write; a map can be long. */
	format_profile(&o, p);
	o.buf = cbv_malloc(o.len + 1);
	if (o.buf == NULL)
		return NULL;
	o.len = 0;
	format_profile(&o, p);
	o.buf[o.len] = '\0';
	return o.buf;
}

/* ---- config ---- */

/* Frees c, its profiles and their map references; accepts NULL. */
void cbv_config_free(struct cbv_config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++) {
		cbv_profile_clear(c->v[i]);
		cbv_free(c->v[i]);
	}
	cbv_free(c);
}

/* Appends a profile with the defaults, named name.  NULL on ENOMEM. */
static struct cbv_profile *add_profile(struct cbv_config *c, const char *name)
{
	struct cbv_profile *p = cbv_calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	cbv_profile_defaults(p);
	set_string(p->name, sizeof(p->name), name, strlen(name));
	c->v[c->n++] = p;
	return p;
}

/* smtp_cbv ["NAME"] { key = value ... } */
static enum cbv_status parse_smtp_cbv(struct cbv_config *c, struct lexer *lx)
{
	char name[CBV_NAME_MAX + 1] = "default";
	char show[SHOW_MAX + 8];
	unsigned seen[K_COUNT] = { 0 };
	unsigned bline = lx->tok.line, bcol = lx->tok.col;
	struct cbv_profile *p;
	enum cbv_status st;
	int k;

	if ((st = lx_next(lx)) != CBV_OK)
		return st;
	if (tok_is_value(lx)) {
		if (!valid_name(lx->tok.text, lx->tok.len, "_-."))
			return lx_error(lx, lx->tok.line, lx->tok.col,
			                "profile name %s: 1 to %d letters, digits, '_', '-' or '.'",
			                tok_show(lx, show, sizeof(show)), CBV_NAME_MAX);
		memcpy(name, lx->tok.text, lx->tok.len + 1);
		if ((st = lx_next(lx)) != CBV_OK)
			return st;
	}
	if (lx->tok.type != TOK_LBRACE)
		return lx_error(lx, lx->tok.line, lx->tok.col, "expected '{', got %s",
		                tok_show(lx, show, sizeof(show)));
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i]->name, name) == 0)
			return lx_error(lx, bline, bcol, "duplicate profile \"%s\"", name);
	if (c->n >= CBV_CONFIG_PROFILES_MAX)
		return lx_error(lx, bline, bcol, "more than %d profiles", CBV_CONFIG_PROFILES_MAX);
	p = add_profile(c, name);
	if (p == NULL)
		return oom(lx->err);
	for (;;) {
		if ((st = lx_next(lx)) != CBV_OK)
			return st;
		if (lx->tok.type == TOK_RBRACE)
			return CBV_OK;
		if (lx->tok.type == TOK_EOF)
			return lx_error(lx, bline, bcol, "smtp_cbv \"%s\" not closed with '}'", name);
		if ((st = read_key(lx, key_names, K_COUNT, "smtp_cbv block", seen, &k)) != CBV_OK)
			return st;
		lx->key = key_names[k];
		st = parse_value(lx, p, (enum key_id)k);
		lx->key = NULL;
		if (st != CBV_OK)
			return st;
	}
}

/* ---- the server block (cbvd) ---- */

void cbv_server_conf_defaults(struct cbv_server_conf *s)
{
	memset(s, 0, sizeof(*s));
	s->max_clients = 256;
	s->max_inflight = 1024;
}

/* Reads the value of server key k; the last token of it stays current. */
static enum cbv_status parse_server_value(struct cbv_config *c, struct lexer *lx,
                                          enum skey_id k)
{
	struct cbv_server_conf *s = &c->server;
	char show[SHOW_MAX + 8];
	unsigned line, col;
	struct cbv_err e;
	struct list l;
	enum cbv_status st;
	int r, i;

	if ((st = lx_next(lx)) != CBV_OK)
		return st;
	line = lx->tok.line;
	col = lx->tok.col;
	if (k == SK_LISTEN) {
		s->nlisten = 0;
		if ((st = list_open(lx, &l)) != CBV_OK)
			return st;
		while ((r = list_item(lx, &l, &st)) == 1) {
			if (s->nlisten == CBV_LISTEN_MAX)
				return lx_error(lx, lx->tok.line, lx->tok.col,
				                "more than %d listen URLs", CBV_LISTEN_MAX);
			if (lx->tok.len == 0 || lx->tok.len > CBV_URL_MAX ||
			    check_url(lx->tok.text, lx->tok.len, &e) != CBV_OK)
				return lx_error(lx, lx->tok.line, lx->tok.col, "%s",
				                lx->tok.len == 0 ? "empty URL" : e.msg);
			set_string(s->listen[s->nlisten++], CBV_URL_MAX + 1, lx->tok.text,
			           lx->tok.len);
		}
		return r < 0 ? st : CBV_OK;
	}
	if (!tok_is_value(lx))
		return lx_error(lx, line, col, "expected a value, got %s",
		                tok_show(lx, show, sizeof(show)));
	st = CBV_OK;
	switch (k) {
	case SK_MAX_CLIENTS:
		st = cbv_uint_parse(lx->tok.text, lx->tok.len, 1, CBV_SERVER_CLIENTS_MAX,
		                    &s->max_clients, &e);
		break;
	case SK_MAX_INFLIGHT:
		st = cbv_uint_parse(lx->tok.text, lx->tok.len, 1, CBV_SERVER_INFLIGHT_MAX,
		                    &s->max_inflight, &e);
		break;
	case SK_USER:
		/* A login name; "" keeps the default (Debian-exim or nobody). */
		if (lx->tok.len > 0 && !valid_name(lx->tok.text, lx->tok.len, "_-."))
			st = cbv_err_set(&e, CBV_EINVAL,
			                 "%s: a user name is 1 to %d letters, digits, '_', '-' or '.'",
			                 tok_show(lx, show, sizeof(show)), CBV_NAME_MAX);
		else
			set_string(s->user, sizeof(s->user), lx->tok.text, lx->tok.len);
		break;
	case SK_PROFILE:
		/* Checked against the smtp_cbv blocks once the whole file is read. */
		if (lx->tok.len > 0 && !valid_name(lx->tok.text, lx->tok.len, "_-."))
			st = cbv_err_set(&e, CBV_EINVAL,
			                 "profile name %s: 1 to %d letters, digits, '_', '-' or '.'",
			                 tok_show(lx, show, sizeof(show)), CBV_NAME_MAX);
		set_string(s->profile, sizeof(s->profile), lx->tok.text, lx->tok.len);
		c->server_profile_line = line;
		c->server_profile_col = col;
		break;
	case SK_ALLOW_REMOTE:
		i = find_word((const char *const[]){ "no", "yes", "false", "true", "0", "1" }, 6,
		              lx->tok.text);
		if (i < 0)
			st = cbv_err_set(&e, CBV_EINVAL, "%s: must be yes or no",
			                 tok_show(lx, show, sizeof(show)));
		else
			s->allow_remote = i % 2;
		break;
	default: break;
	}
	if (st != CBV_OK)
		return lx_error(lx, line, col, "%s", e.msg);
	return CBV_OK;
}

/* server { key = value ... } */
static enum cbv_status parse_server(struct cbv_config *c, struct lexer *lx)
{
	char show[SHOW_MAX + 8];
	unsigned seen[SK_COUNT] = { 0 };
	unsigned bline = lx->tok.line, bcol = lx->tok.col;
	enum cbv_status st;
	int k;

	if (c->has_server)
		return lx_error(lx, bline, bcol, "duplicate server block");
	c->has_server = 1;
	if ((st = lx_next(lx)) != CBV_OK)
		return st;
	if (lx->tok.type != TOK_LBRACE)
		return lx_error(lx, lx->tok.line, lx->tok.col, "expected '{' after server, got %s",
		                tok_show(lx, show, sizeof(show)));
	for (;;) {
		if ((st = lx_next(lx)) != CBV_OK)
			return st;
		if (lx->tok.type == TOK_RBRACE)
			return CBV_OK;
		if (lx->tok.type == TOK_EOF)
			return lx_error(lx, bline, bcol, "server block not closed with '}'");
		if ((st = read_key(lx, skey_names, SK_COUNT, "server block", seen, &k)) != CBV_OK)
			return st;
		lx->key = skey_names[k];
		st = parse_server_value(c, lx, (enum skey_id)k);
		lx->key = NULL;
		if (st != CBV_OK)
			return st;
	}
}

/* Returns the server block, or the defaults when there was none. */
const struct cbv_server_conf *cbv_config_server(const struct cbv_config *c)
{
	return c == NULL ? NULL : &c->server;
}

/* Reads top-level blocks until the end of the text. */
static enum cbv_status parse_blocks(struct cbv_config *c, struct lexer *lx)
{
	char show[SHOW_MAX + 8];
	enum cbv_status st;
	size_t i;

	for (;;) {
		if ((st = lx_next(lx)) != CBV_OK)
			return st;
		if (lx->tok.type == TOK_EOF)
			return CBV_OK;
		for (i = 0; i < sizeof(block_types) / sizeof(block_types[0]); i++)
			if (lx->tok.type == TOK_WORD && strcasecmp(lx->tok.text, block_types[i].name) == 0)
				break;
		if (i == sizeof(block_types) / sizeof(block_types[0]))
			return lx_error(lx, lx->tok.line, lx->tok.col,
			                "expected a block such as smtp_cbv \"NAME\" { }, got %s",
			                tok_show(lx, show, sizeof(show)));
		if ((st = block_types[i].parse(c, lx)) != CBV_OK)
			return st;
	}
}

/*
 * Parses len bytes of cbv.conf text (name in messages).  Returns a new
 * config (cbv_config_free()) or NULL with err: CBV_ECONFIG or CBV_ENOMEM.
 */
struct cbv_config *cbv_config_parse(const char *text, size_t len,
                                    const char *name, struct cbv_err *err)
{
	struct cbv_config *c = NULL;
	struct lexer *lx = NULL;
	enum cbv_status st;

	if (name == NULL)
		name = "config";
	if (text == NULL)
		len = 0;
	if (len > CBV_CONFIG_FILE_MAX) {
		cbv_err_set(err, CBV_ECONFIG, "%s: larger than %d bytes", name, CBV_CONFIG_FILE_MAX);
		goto fail;
	}
	/* The lexer holds a line-sized token: keep it off the stack. */
	lx = cbv_malloc(sizeof(*lx));
	c = cbv_calloc(1, sizeof(*c));
	if (lx == NULL || c == NULL) {
		oom(err);
		goto fail;
	}
	cbv_server_conf_defaults(&c->server);
	lx_init(lx, text == NULL ? "" : text, len, name, err);
	if ((st = prescan(lx)) != CBV_OK || (st = parse_blocks(c, lx)) != CBV_OK)
		goto fail;
	if (c->server.profile[0] != '\0') {
		size_t i;

		for (i = 0; i < c->n; i++)
			if (strcmp(c->v[i]->name, c->server.profile) == 0)
				break;
		if (i == c->n) {
			lx->key = "profile";
			lx_error(lx, c->server_profile_line, c->server_profile_col,
			         "no smtp_cbv block named \"%s\"", c->server.profile);
			goto fail;
		}
	}
	if (c->n == 0 && add_profile(c, "default") == NULL) {
		oom(err);
		goto fail;
	}
	c->def = 0;
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i]->name, "default") == 0)
			c->def = i;
	cbv_free(lx);
	return c;
fail:
	cbv_free(lx);
	cbv_config_free(c);
	return NULL;
}

/*
 * Reads path (a regular file of at most CBV_CONFIG_FILE_MAX bytes) and
 * parses it; a missing file gives the defaults and *missing = 1.  Returns
 * a new config or NULL with err.
 */
struct cbv_config *cbv_config_load(const char *path, int *missing,
                                   struct cbv_err *err)
{
	struct cbv_config *c = NULL;
	struct stat sb;
	char *buf = NULL;
	size_t n = 0, cap;
	ssize_t r;
	int fd;

	if (missing != NULL)
		*missing = 0;
	if (path == NULL) {
		cbv_err_set(err, CBV_ECONFIG, "no config file named");
		return NULL;
	}
	/* O_NONBLOCK: a FIFO planted at the path must not hang Exim. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT) {
			if (missing != NULL)
				*missing = 1;
			return cbv_config_parse("", 0, path, err);
		}
		cbv_err_set_errno(err, CBV_ECONFIG, errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &sb) != 0) {
		cbv_err_set_errno(err, CBV_ECONFIG, errno, "%s: %s", path, strerror(errno));
		goto done;
	}
	if (!S_ISREG(sb.st_mode)) {
		cbv_err_set(err, CBV_ECONFIG, "%s: not a regular file", path);
		goto done;
	}
	if (sb.st_size > CBV_CONFIG_FILE_MAX) {
		cbv_err_set(err, CBV_ECONFIG, "%s: larger than %d bytes", path, CBV_CONFIG_FILE_MAX);
		goto done;
	}
	/* One byte more than fstat said, to notice a file that grew. */
	cap = (size_t)sb.st_size + 1;
	buf = cbv_malloc(cap);
	if (buf == NULL) {
		oom(err);
		goto done;
	}
	while (n < cap) {
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cbv_err_set_errno(err, CBV_ECONFIG, errno, "%s: %s", path, strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n == cap) {
		cbv_err_set(err, CBV_ECONFIG, "%s: file changed while being read", path);
		goto done;
	}
	c = cbv_config_parse(buf, n, path, err);
done:
	cbv_free(buf);
	close(fd);
	return c;
}

/* Returns the profile called name, the default one for NULL or "", else NULL. */
const struct cbv_profile *cbv_config_profile(const struct cbv_config *c,
                                             const char *name)
{
	if (c == NULL || c->n == 0)
		return NULL;
	if (name == NULL || name[0] == '\0')
		return c->v[c->def];
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->v[i]->name, name) == 0)
			return c->v[i];
	return NULL;
}

/* Returns the number of profiles (0 for NULL). */
size_t cbv_config_count(const struct cbv_config *c)
{
	return c == NULL ? 0 : c->n;
}

/* Returns profile i, or NULL when i is out of range. */
const struct cbv_profile *cbv_config_at(const struct cbv_config *c, size_t i)
{
	return c == NULL || i >= c->n ? NULL : c->v[i];
}
