/*
 * cbv_map.h - domain map: which domain to call out to for a given domain.
 *
 * Entries are tried in order, the first match wins:
 *   exact    "yahoo.net" = "yahoo.com"          case-insensitive equality
 *   wildcard "*.legacy.example" = "example.com" any domain ending in
 *            ".legacy.example" (not legacy.example itself), Exim style
 *   regex    "^(.+)\.example\.net$" = "$1.example.com"   PCRE2, caseless,
 *            when the pattern starts with '^'; $1..$9 in the replacement
 *            are the capture groups, $$ is a literal $.
 * Patterns are compiled once by cbv_map_add() with CBV_PCRE2_MATCH_LIMIT and
 * CBV_PCRE2_DEPTH_LIMIT; hitting a limit at match time is logged (WARN)
 * and counts as no match.  The result must be a valid domain
 * (cbv_addr_check_domain), else the entry counts as no match and a WARN is
 * logged.  A map is reference-counted so profiles copied for one call can
 * share it.
 */
#ifndef CBV_MAP_H
#define CBV_MAP_H

#include <stddef.h>

#include "cbv_limits.h"
#include "cbv_status.h"

struct cbv_map;

/* Returns a new empty map (refcount 1), NULL on ENOMEM. */
struct cbv_map *cbv_map_new(void);

/* Adds 1 to the refcount and returns m (NULL-safe). */
struct cbv_map *cbv_map_ref(struct cbv_map *m);

/* Drops one reference; frees on the last.  Accepts NULL. */
void cbv_map_free(struct cbv_map *m);

/*
 * Appends an entry.  Returns CBV_OK, CBV_ENOMEM, or CBV_EINVAL with
 * err->msg (bad pattern with PCRE2's message and offset, bad wildcard,
 * "$N" beyond the pattern's groups, more than CBV_MAP_ENTRIES_MAX entries).
 */
enum cbv_status cbv_map_add(struct cbv_map *m, const char *pattern,
                            const char *replacement, struct cbv_err *err);

/* Number of entries. */
size_t cbv_map_count(const struct cbv_map *m);

/* Pattern and replacement of entry i (i < count), for check-config. */
void cbv_map_entry(const struct cbv_map *m, size_t i, const char **pattern,
                   const char **replacement);

/*
 * Looks domain up (lower-case, no trailing dot).  Returns 1 and writes the
 * mapped domain into out (CBV_DOMAIN_MAX + 1 bytes) on a match, 0 when no
 * entry matches (out untouched), -1 on ENOMEM.  m may be NULL (no match).
 */
int cbv_map_lookup(const struct cbv_map *m, const char *domain, char *out);

#endif
