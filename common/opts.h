/*
 * opts.h — the one command-line parser of kvtrace and kvsim: options declared in
 * tables, parsed and documented from the same rows.
 *
 * A command describes itself once (an opts_command): its usage line, a paragraph,
 * its positional arguments, and groups of options (its own, the session's, ...), each
 * row naming the option, its kind, where the value goes, its range and its help line.
 * opts_parse() fills the destinations and checks ranges; opts_help() prints the same
 * rows.  So `--help` and the parser cannot disagree, and every command spells and
 * checks options alike:
 *
 *     --name VALUE, --name=VALUE, -o VALUE (a row's short name), --flag,
 *     "--" (what follows is positional, even "-x"), "-" (a positional: stdin)
 *     unknown options, missing values, values out of range: KV_EUSAGE naming them
 *
 * Options a command accepts beyond its tables (every policy parameter, --sinks 4 ...)
 * go to the command's `other` callback, which takes them or says no.  Options of kind
 * OPTS_EARLY run their callback before the rest are read (--policy-lib: the policies
 * it loads define parameters that may come before it on the command line).
 */
#ifndef OPTS_H
#define OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kv_err.h"

typedef enum opts_kind {
    OPTS_FLAG,    /* int set to 1 */
    OPTS_TEXT,    /* const char * (borrowed from argv) */
    OPTS_INT,     /* int in [lo, hi] */
    OPTS_REAL,    /* double in [lo, hi] */
    OPTS_FLOAT,   /* float in [lo, hi] */
    OPTS_U64,     /* uint64_t (decimal) */
    OPTS_EARLY,   /* const char *, after early(value) ran before the other options */
} opts_kind;

typedef struct opts_row {
    const char *name;       /* long name, without the dashes */
    char        short_name; /* 'o' for -o, or 0 */
    opts_kind   kind;
    size_t      offset;     /* of the field in the group's destination */
    const char *arg;        /* the value's placeholder in help ("N", "FILE"); NULL: none */
    const char *help;       /* one line; continuation lines start with '\n' */
    double      lo, hi;     /* range of INT, REAL and FLOAT */
    int       (*early)(const char *value, kv_err *err);   /* OPTS_EARLY */
} opts_row;

/* Rows end with a row whose name is NULL. */
typedef struct opts_group {
    const char     *title;  /* "options", "session options" ... */
    const opts_row *rows;
    void           *dest;   /* where offsets point */
} opts_group;

#define OPTS_MAX_GROUPS 4
#define OPTS_MAX_POSITIONAL 3

typedef struct opts_command {
    const char *prog;        /* "kvtrace record": prefixes errors */
    const char *usage;       /* the synopsis after "usage: " */
    const char *about;       /* what it does, a paragraph */
    opts_group  groups[OPTS_MAX_GROUPS];
    /* Positional arguments, in order: where each goes (const char *), NULL ends;
     * `required` of them must be given. */
    const char **positional[OPTS_MAX_POSITIONAL];
    int          required;
    /* Positional arguments past those listed (kvsim sweep T1.h5 T2.h5 ...): each is
     * handed to more(more_ctx, arg, err), which returns 0 or a KV_E* code.  They count
     * toward `required`.  NULL: an extra argument is a usage error. */
    int        (*more)(void *ctx, const char *arg, kv_err *err);
    void        *more_ctx;
    /* Options no row names: return 1 when taken (*used values consumed), 0 when not
     * (an unknown option), or a KV_E* code with err.  NULL: none. */
    int        (*other)(void *ctx, const char *name, const char *value, int *used,
                        kv_err *err);
    void        *other_ctx;
    const char  *other_help; /* a help paragraph for them, or NULL */
    const char  *footer;     /* examples, memory, exit status */
} opts_command;

#define OPTS_HELP 1   /* opts_parse's result when --help was asked (and printed) */

/* Parse argv[1..argc) (argv[0] is the command's name).  0, OPTS_HELP after printing
 * the help on stdout, or KV_EUSAGE with err naming the option and what was expected. */
int  opts_parse(const opts_command *cmd, int argc, char **argv, kv_err *err);

/* A command's whole life: parse argv, then run(ctx, err).  Returns the exit status:
 * 0 after --help or a successful run, else opts_fail's (2 for usage errors). */
int  opts_main(const opts_command *cmd, int argc, char **argv,
               int (*run)(void *ctx, kv_err *err), void *ctx);

/* The help: usage, about, each group's rows, other_help, footer. */
void opts_help(const opts_command *cmd, FILE *f);

/* Report err for cmd on stderr ("kvtrace record: message") and return the exit status
 * (kv_err_exit_status: 2 for usage errors, 1 for runtime errors). */
int  opts_fail(const char *prog, const kv_err *err);

/* `prog` and argv[0..argc) joined with spaces into buf (JSON provenance): "kvsim" and
 * {"replay", "t.h5", ...} give "kvsim replay t.h5 ...". */
const char *opts_command_line(const char *prog, int argc, char **argv, char *buf, size_t len);

#endif /* OPTS_H */
