/*
 * cbv_cli.h - what the subcommands of the cbv tool share (cli/cbv.c owns
 * the definitions): escaping for one-line text and JSON output, loading
 * cbv.conf with the tool's rules, and the subcommands themselves.
 */
#ifndef CBV_CLI_H
#define CBV_CLI_H

#include <stdio.h>

#include "cbv.h"

/* Exit code for usage and config errors, as every subcommand uses it. */
#define CBV_EX_USAGE 64

/* Prints s with control and DEL bytes as \xHH: one value stays one line. */
void cbv_cli_put_escaped(FILE *f, const char *s);

/* Prints s as a JSON string (RFC 8259). */
void cbv_cli_put_json(FILE *f, const char *s);

/*
 * Loads cbv.conf into *conf (explicit_path: the file named by -c must
 * exist; the default path may be missing; free with cbv_config_free())
 * and copies the chosen profile (NULL: the default) into *p with the -o
 * KEY=VALUE options applied.  *have_profile is set once p holds a copy:
 * the caller clears it with cbv_profile_clear().  Returns 0, or -1 with
 * the error printed.  The opts strings are modified.
 */
int cbv_cli_profile(const char *path, int explicit_path, const char *profile, char **opts,
                    int nopts, struct cbv_config **conf, struct cbv_profile *p,
                    int *have_profile);

/* `cbv cache ...` (cli/cbv_cache_cmd.c); argv[0] is "cache".  Exit code. */
int cbv_cache_cmd(int argc, char **argv);

#endif
