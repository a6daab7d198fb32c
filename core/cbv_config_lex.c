/*
 * cbv_config_lex.c - the cbv.conf lexer, bounded:
 *   prescan  the whole text once: NUL and control bytes, line length
 *            (CBV_CONFIG_LINE_MAX), so the lexer can assume printable text
 *            and a line-sized token buffer suffices;
 *   lexer    words, "strings", { } [ ] ( ) = , with line:column;
 *   lists    "[ a b ]", "( a, b )" or a bare value.
 * cbv_profile_set() runs the same lexer on one value, so `-o key=value`
 * accepts exactly what the file does.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cbv_config_impl.h"
#include "cbv_reply.h"
#include "cbv_text.h"

enum cbv_status cbv_config_lx_error(struct lexer *lx, unsigned line, unsigned col, const char *fmt,
                                    ...)
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

enum cbv_status cbv_config_lx_oom(struct cbv_err *err)
{
	return cbv_err_set(err, CBV_ENOMEM, "out of memory");
}

/* Describes the current token for a message: '{', "word", end of file. */
const char *cbv_config_lx_show(const struct lexer *lx, char *buf, size_t n)
{
	char text[SHOW_MAX + 1];

	switch (lx->tok.type) {
	case TOK_EOF: return lx->set_mode ? "end of value" : "end of file";
	case TOK_WORD:
	case TOK_STRING:
		cbv_sanitize(lx->tok.text, lx->tok.len, text, sizeof(text));
		snprintf(buf, n, "\"%s\"", text);
		return buf;
	default: snprintf(buf, n, "'%c'", lx->tok.text[0]); return buf;
	}
}

void cbv_config_lx_init(struct lexer *lx, const char *text, size_t len, const char *name,
                        struct cbv_err *err)
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
enum cbv_status cbv_config_lx_prescan(struct lexer *lx)
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
			return cbv_config_lx_error(lx, line, col, "line longer than %d bytes",
			                           CBV_CONFIG_LINE_MAX);
		if (ch == '\0')
			return cbv_config_lx_error(lx, line, col, "NUL byte");
		if (ch == '\r' && (p + 1 == lx->end || p[1] != '\n'))
			return cbv_config_lx_error(lx, line, col, "CR not followed by LF");
		if (cbv_text_is_ctl(ch) && ch != '\t' && ch != '\r')
			return cbv_config_lx_error(lx, line, col, "control character 0x%02x", ch);
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

/*
 * Reads a "string" that ends on its line: \" and \\ are escapes, any
 * other \x stays as is (cbv_text_unquote() without ANYESC: regexes keep
 * "\." as written).  The prescan bounds a line, so the text always fits.
 */
static enum cbv_status lx_string(struct lexer *lx)
{
	struct token *t = &lx->tok;
	const char *nl;
	size_t used;
	enum cbv_text_unq st;

	lx_advance(lx);
	nl = memchr(lx->p, '\n', (size_t)(lx->end - lx->p));
	st = cbv_text_unquote(lx->p, (size_t)((nl != NULL ? nl : lx->end) - lx->p), 0, t->text,
	                      sizeof(t->text), &t->len, &used);
	if (st == CBV_TEXT_UNQ_LONG)
		return cbv_config_lx_error(lx, t->line, t->col, "string too long");
	if (st != CBV_TEXT_UNQ_OK)
		return cbv_config_lx_error(lx, t->line, t->col, "unterminated string");
	/* No LF inside: only the column moves. */
	lx->p += used;
	lx->col += (unsigned)used;
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
enum cbv_status cbv_config_lx_next(struct lexer *lx)
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
		int bracket = 0;

		/* Inside a word, "[...]" belongs to it: inet://[::1]:3535 is one
		 * word, while "b]" in "[a b]" still ends the list. */
		t->type = TOK_WORD;
		while (lx->p < lx->end &&
		       (is_word_byte(*lx->p) || *lx->p == '[' || (*lx->p == ']' && bracket))) {
			bracket = (bracket || *lx->p == '[') && *lx->p != ']';
			t->text[t->len++] = *lx->p;
			lx_advance(lx);
		}
	}
	t->text[t->len] = '\0';
	return st;
}

int cbv_config_lx_is_value(const struct lexer *lx)
{
	return lx->tok.type == TOK_WORD || lx->tok.type == TOK_STRING;
}

/* Starts a list at the current token. */
enum cbv_status cbv_config_lx_list_open(struct lexer *lx, struct list *l)
{
	memset(l, 0, sizeof(*l));
	l->line = lx->tok.line;
	l->col = lx->tok.col;
	if (lx->tok.type == TOK_LBRACKET || lx->tok.type == TOK_LPAREN) {
		l->close = lx->tok.type == TOK_LBRACKET ? TOK_RBRACKET : TOK_RPAREN;
		return cbv_config_lx_next(lx);
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
int cbv_config_lx_list_item(struct lexer *lx, struct list *l, enum cbv_status *st)
{
	char show[SHOW_MAX + 8];

	if (l->single) {
		if (l->count++ > 0)
			return 0;
		if (cbv_config_lx_is_value(lx))
			return 1;
		*st = cbv_config_lx_error(lx, lx->tok.line, lx->tok.col,
		                          "expected a value or a list, got %s",
		                          cbv_config_lx_show(lx, show, sizeof(show)));
		return -1;
	}
	if (l->count > 0) {
		if ((*st = cbv_config_lx_next(lx)) != CBV_OK)
			return -1;
		if (lx->tok.type == TOK_COMMA && (*st = cbv_config_lx_next(lx)) != CBV_OK)
			return -1;
	}
	if (lx->tok.type == l->close)
		return 0;
	if (cbv_config_lx_is_value(lx)) {
		l->count++;
		return 1;
	}
	if (lx->tok.type == TOK_EOF)
		*st = cbv_config_lx_error(lx, l->line, l->col, "list not closed");
	else
		*st = cbv_config_lx_error(lx, lx->tok.line, lx->tok.col, "unexpected %s in list",
		                          cbv_config_lx_show(lx, show, sizeof(show)));
	return -1;
}
