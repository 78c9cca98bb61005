/*
 * cli.h — the subcommand table shared by kvtrace and kvsim.
 *
 * Each program lists its subcommands in one table; `PROG --help`, `PROG CMD --help`
 * and "unknown subcommand" messages all come from it.  A subcommand whose issue has
 * not landed yet has a NULL handler and answers "not built yet" with exit status 2.
 */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>

typedef int (*cli_handler)(int argc, char **argv);  /* argv[0] is the subcommand */

typedef struct cli_command {
    const char *name;      /* "record" */
    const char *args;      /* "MODEL PROMPT -o TRACE.h5 [options]" */
    const char *summary;   /* one line */
    cli_handler run;       /* NULL: not built yet */
} cli_command;

typedef struct cli_program {
    const char        *name;      /* "kvtrace" */
    const char        *tagline;   /* one line under the usage */
    const cli_command *commands;
    int                n_commands;
    const char        *footer;    /* examples, docs pointer; may be NULL */
} cli_program;

/* Dispatch argv to the matching subcommand; returns the process exit status. */
int  cli_main(const cli_program *prog, int argc, char **argv);
void cli_print_help(const cli_program *prog);

#define KV_VERSION "0.1.0"

#endif /* CLI_H */
