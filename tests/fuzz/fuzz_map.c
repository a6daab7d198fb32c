/*
 * fuzz_map.c - libFuzzer target for the domain map.
 *
 * Input: first line the pattern, second line the replacement, every further
 * line a domain to look up.  A lookup that answers must answer with a
 * valid domain; PCRE2's limits keep every lookup bounded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbv_addr.h"
#include "cbv_map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Returns the next line of [*p, end) as a new string, or NULL at the end. */
static char *next_line(const char **p, const char *end)
{
	const char *nl;
	size_t len;
	char *s;

	if (*p >= end)
		return NULL;
	nl = memchr(*p, '\n', (size_t)(end - *p));
	len = nl != NULL ? (size_t)(nl - *p) : (size_t)(end - *p);
	s = malloc(len + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, *p, len);
	s[len] = '\0'; /* a NUL inside just shortens the string */
	*p += len + (nl != NULL);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	char out[CBV_DOMAIN_MAX + 1], canon[CBV_DOMAIN_MAX + 1];
	char *pattern, *replacement, *domain;
	struct cbv_map *m;
	int lookups = 0;

	pattern = next_line(&p, end);
	replacement = next_line(&p, end);
	m = cbv_map_new();
	if (pattern == NULL || replacement == NULL || m == NULL ||
	    cbv_map_add(m, pattern, replacement, NULL) != CBV_OK)
		goto done;
	/* A second, fixed entry: first match wins must still hold. */
	if (cbv_map_add(m, "*.fuzz.test", "fallback.test", NULL) != CBV_OK)
		__builtin_trap();
	while (lookups++ < 64 && (domain = next_line(&p, end)) != NULL) {
		int r = cbv_map_lookup(m, domain, out);

		if (r == 1 && cbv_addr_check_domain(out, strlen(out), canon, NULL) != CBV_OK)
			__builtin_trap();
		if (r == 1 && strcmp(out, canon) != 0)
			__builtin_trap(); /* results are canonical */
		free(domain);
	}
done:
	cbv_map_free(m);
	free(pattern);
	free(replacement);
	return 0;
}
