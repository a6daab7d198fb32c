/*
 * cbv_config_impl.h - private to the config module (cbv_config*.c): the
 * lexer (cbv_config_lex.c) and the key-table walkers (cbv_config_value.c)
 * shared by the block parser (cbv_config.c) and the key tables
 * (cbv_config_keys.c).  Nothing outside
 * core/cbv_config*.c includes this.
 */
#ifndef CBV_CONFIG_IMPL_H
#define CBV_CONFIG_IMPL_H

#include <stddef.h>

#include "cbv_config.h"

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

/* Sets lx->err to a config error at line:col and returns CBV_ECONFIG. */
enum cbv_status cbv_config_lx_error(struct lexer *lx, unsigned line, unsigned col, const char *fmt,
                                    ...) __attribute__((format(printf, 4, 5)));

/* Fills err with "out of memory" and returns CBV_ENOMEM. */
enum cbv_status cbv_config_lx_oom(struct cbv_err *err);

/* Describes the current token for a message: '{', "word", end of file. */
const char *cbv_config_lx_show(const struct lexer *lx, char *buf, size_t n);

/* Starts reading text[0..len); name is used in messages. */
void cbv_config_lx_init(struct lexer *lx, const char *text, size_t len, const char *name,
                        struct cbv_err *err);

/* Checks the raw text before lexing (NUL, controls, line length). */
enum cbv_status cbv_config_lx_prescan(struct lexer *lx);

/* Reads the next token into lx->tok.  At the end it stays at TOK_EOF. */
enum cbv_status cbv_config_lx_next(struct lexer *lx);

/* 1 if the current token is a word or a string. */
int cbv_config_lx_is_value(const struct lexer *lx);

/* Starts a list at the current token. */
enum cbv_status cbv_config_lx_list_open(struct lexer *lx, struct list *l);

/*
 * Moves to the next list item.  Returns 1 with lx->tok on it, 0 at the end
 * of the list (the closing token is current), -1 with *st set on error.
 */
int cbv_config_lx_list_item(struct lexer *lx, struct list *l, enum cbv_status *st);

/* Copies s[0..len) into out (n bytes); CBV_EINVAL if it does not fit. */
enum cbv_status cbv_config_put(const char *s, size_t len, char *out, size_t n, struct cbv_err *err);

/* Index of s in the NULL-terminated words (caseless), or -1. */
int cbv_config_word(const char *const *words, const char *s);

/* CBV_OK if s[0..len) is a valid profile name (letters, digits, _ - .). */
enum cbv_status cbv_config_check_name(const char *s, size_t len);

/* Row called name (caseless) in keys[0..n), or NULL. */
const struct cbv_key *cbv_config_key_find(const struct cbv_key *keys, size_t n, const char *name);

/*
 * Reads the value of row k starting at the next token into the struct at
 * base.  On return the last token of the value is current.
 */
enum cbv_status cbv_config_key_parse(struct lexer *lx, const struct cbv_key *k, void *base);

/* Sets every row of keys[0..n) in base to its default. */
void cbv_config_keys_defaults(const struct cbv_key *keys, size_t n, void *base);

/*
 * Writes "BLOCK {" + one line per row + "}" for the struct at base into a
 * new string (cbv_free()); head is the block's first line.  NULL on ENOMEM.
 */
char *cbv_config_keys_format(const struct cbv_key *keys, size_t n, const void *base,
                             const char *head);

#endif
