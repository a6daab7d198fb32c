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
 * Loads cbv.conf (explicit_path: the file named by -c must exist; the
 * default path may be missing).  Prints the error and returns NULL on
 * failure; free with cbv_config_free().
 */
struct cbv_config *cbv_cli_load_config(const char *path, int explicit_path);

/* `cbv cache ...` (cli/cbv_cache_cmd.c); argv[0] is "cache".  Exit code. */
int cbv_cache_cmd(int argc, char **argv);

#endif
