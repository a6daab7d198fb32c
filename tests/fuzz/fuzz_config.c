/*
 * fuzz_config.c - libFuzzer target for the cbv.conf parser.
 *
 * Parses the input; when it is accepted, every profile is formatted and
 * the result must parse again and format to the same text (the round trip
 * cbv check-config relies on); the server block too.  The first line of the input is also tried
 * as "key=value" through cbv_profile_set(), the `-o` path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Formats every profile of c into one malloc'd text. */
static char *format_all(const struct cbv_config *c)
{
	size_t len = 0;
	char *all = malloc(1);

	if (all == NULL)
		return NULL;
	all[0] = '\0';
	for (size_t i = 0; i <= cbv_config_count(c); i++) {
		char *s = i < cbv_config_count(c) ? cbv_profile_format(cbv_config_at(c, i))
		                                  : cbv_server_conf_format(cbv_config_server(c));
		char *grown;

		if (s == NULL)
			__builtin_trap();
		grown = realloc(all, len + strlen(s) + 1);
		if (grown == NULL)
			__builtin_trap();
		all = grown;
		memcpy(all + len, s, strlen(s) + 1);
		len += strlen(s);
		cbv_free(s);
	}
	return all;
}

/* Runs the first line as key=value on a default profile. */
static void try_set(const char *text, size_t size)
{
	const char *nl = memchr(text, '\n', size);
	size_t len = nl != NULL ? (size_t)(nl - text) : size;
	char *line = malloc(len + 1);
	char *eq, *before, *after;
	struct cbv_profile p;
	struct cbv_err err;

	if (line == NULL || memchr(text, '\0', len) != NULL) {
		free(line);
		return;
	}
	memcpy(line, text, len);
	line[len] = '\0';
	eq = strchr(line, '=');
	if (eq != NULL) {
		*eq = '\0';
		cbv_profile_defaults(&p);
		before = cbv_profile_format(&p);
		if (cbv_profile_set(&p, line, eq + 1, &err) != CBV_OK) {
			/* A refused value leaves the profile as it was. */
			after = cbv_profile_format(&p);
			if (before == NULL || after == NULL || strcmp(before, after) != 0)
				__builtin_trap();
			cbv_free(after);
		}
		cbv_free(before);
		cbv_profile_clear(&p);
	}
	free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct cbv_err err;
	struct cbv_config *c, *c2;
	char *f1, *f2;

	try_set(text, size);
	c = cbv_config_parse(text, size, "fuzz", &err);
	if (c == NULL)
		return 0;
	if (cbv_config_profile(c, NULL) == NULL)
		__builtin_trap();
	f1 = format_all(c);
	c2 = cbv_config_parse(f1, strlen(f1), "formatted", &err);
	if (c2 == NULL)
		__builtin_trap(); /* we wrote something we cannot read */
	f2 = format_all(c2);
	if (strcmp(f1, f2) != 0)
		__builtin_trap();
	free(f1);
	free(f2);
	cbv_config_free(c2);
	cbv_config_free(c);
	return 0;
}
