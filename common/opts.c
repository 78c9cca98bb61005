/* opts.c — the table-driven command-line parser; see opts.h. */
#include "opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- finding rows ------------------------------------------------------------------- */

typedef struct found {
    const opts_row *row;
    void           *dest;
} found;

static found find_long(const opts_command *cmd, const char *name, size_t len)
{
    for (int g = 0; g < OPTS_MAX_GROUPS && cmd->groups[g].rows; g++)
        for (const opts_row *r = cmd->groups[g].rows; r->name; r++)
            if (strlen(r->name) == len && !strncmp(r->name, name, len))
                return (found){r, cmd->groups[g].dest};
    return (found){NULL, NULL};
}

static found find_short(const opts_command *cmd, char c)
{
    for (int g = 0; g < OPTS_MAX_GROUPS && cmd->groups[g].rows; g++)
        for (const opts_row *r = cmd->groups[g].rows; r->name; r++)
            if (r->short_name && r->short_name == c)
                return (found){r, cmd->groups[g].dest};
    return (found){NULL, NULL};
}

/* --- values ------------------------------------------------------------------------- */

static int bad_number(const opts_row *r, const char *what, const char *v, kv_err *err)
{
    return kv_errorf(err, KV_EUSAGE, "--%s expects %s in [%g, %g], got '%s'", r->name, what,
                     r->lo, r->hi, v);
}

static int set_value(const opts_row *r, void *dest, const char *v, kv_err *err)
{
    void *field = (char *)dest + r->offset;
    char *end = NULL;
    errno = 0;
    switch (r->kind) {
    case OPTS_FLAG:
        *(int *)field = 1;
        return KV_OK;
    case OPTS_TEXT:
    case OPTS_EARLY:   /* its callback ran in the first pass; the value is kept too */
        *(const char **)field = v;
        return KV_OK;
    case OPTS_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < r->lo || x > r->hi)
            return bad_number(r, "an integer", v, err);
        *(int *)field = (int)x;
        return KV_OK;
    }
    case OPTS_REAL:
    case OPTS_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end || !isfinite(x) || x < r->lo || x > r->hi)
            return bad_number(r, "a number", v, err);
        if (r->kind == OPTS_REAL)
            *(double *)field = x;
        else
            *(float *)field = (float)x;
        return KV_OK;
    }
    case OPTS_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || *v == '-' || errno == ERANGE)
            return kv_errorf(err, KV_EUSAGE, "--%s expects an integer in [0, 2^64 - 1], "
                             "got '%s'", r->name, v);
        *(uint64_t *)field = x;
        return KV_OK;
    }
    }
    return KV_EUSAGE;
}

/* --- the two passes ----------------------------------------------------------------- */

/* argv[i] as an option: its row (or none), its name and its value when written
 * --name=value.  0 when argv[i] is not an option at all. */
typedef struct option_at {
    found       f;
    const char *name;      /* without dashes */
    size_t      name_len;
    const char *inline_value;
} option_at;

static int option_of(const opts_command *cmd, const char *arg, option_at *o)
{
    memset(o, 0, sizeof *o);
    if (arg[0] != '-' || !arg[1])
        return 0;   /* a positional, or "-" (standard input) */
    if (arg[1] != '-') {
        o->name = arg + 1;
        o->name_len = strlen(arg + 1);
        if (o->name_len == 1)
            o->f = find_short(cmd, arg[1]);
        return 1;
    }
    o->name = arg + 2;
    const char *eq = strchr(o->name, '=');
    o->name_len = eq ? (size_t)(eq - o->name) : strlen(o->name);
    o->inline_value = eq ? eq + 1 : NULL;
    o->f = find_long(cmd, o->name, o->name_len);
    return 1;
}

static int takes_value(const opts_row *r) { return r->kind != OPTS_FLAG; }

static int early_pass(const opts_command *cmd, int argc, char **argv, kv_err *err)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        option_at o;
        if (!option_of(cmd, argv[i], &o) || !o.f.row)
            continue;
        const char *v = o.inline_value ? o.inline_value : i + 1 < argc ? argv[i + 1] : NULL;
        if (o.f.row->kind == OPTS_EARLY && v) {
            int rc = o.f.row->early(v, err);
            if (rc != KV_OK)
                return rc;
        }
        if (takes_value(o.f.row) && !o.inline_value)
            i++;
    }
    return KV_OK;
}

static int positional(const opts_command *cmd, int *n, const char *arg, kv_err *err)
{
    if ((*n >= OPTS_MAX_POSITIONAL || !cmd->positional[*n]) && cmd->more) {
        (*n)++;
        return cmd->more(cmd->more_ctx, arg, err);
    }
    if (*n >= OPTS_MAX_POSITIONAL || !cmd->positional[*n])
        return kv_errorf(err, KV_EUSAGE, "unexpected argument '%s'; see --help", arg);
    *cmd->positional[(*n)++] = arg;
    return KV_OK;
}

/* An option no row names: the command's `other`, else an error. */
static int other_option(const opts_command *cmd, const option_at *o, const char *arg,
                        const char *next, int *used, kv_err *err)
{
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)o->name_len, o->name);
    *used = 0;
    if (cmd->other && arg[1] == '-') {
        int u = 0;
        int rc = cmd->other(cmd->other_ctx, name, o->inline_value ? o->inline_value : next,
                            &u, err);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            *used = o->inline_value ? 0 : u;
            return KV_OK;
        }
    }
    return kv_errorf(err, KV_EUSAGE, "unknown option '%s'; see --help", arg);
}

int opts_parse(const opts_command *cmd, int argc, char **argv, kv_err *err)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            opts_help(cmd, stdout);
            return OPTS_HELP;
        }
    int rc = early_pass(cmd, argc, argv, err), n_positional = 0, only_positional = 0;
    for (int i = 1; rc == KV_OK && i < argc; i++) {
        const char *arg = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        option_at o;
        if (!only_positional && !strcmp(arg, "--")) {
            only_positional = 1;   /* what follows is positional, even "-x" */
            continue;
        }
        if (only_positional || !option_of(cmd, arg, &o)) {
            rc = positional(cmd, &n_positional, arg, err);
            continue;
        }
        if (!o.f.row) {
            int used;
            rc = other_option(cmd, &o, arg, next, &used, err);
            i += used;
            continue;
        }
        const char *v = o.inline_value;
        if (takes_value(o.f.row) && !v) {
            if (!next)
                return kv_errorf(err, KV_EUSAGE, "option '%s' needs a value (%s)", arg,
                                 o.f.row->arg ? o.f.row->arg : "see --help");
            v = next;
            i++;
        } else if (!takes_value(o.f.row) && v) {
            return kv_errorf(err, KV_EUSAGE, "option '--%s' takes no value", o.f.row->name);
        }
        rc = set_value(o.f.row, o.f.dest, v, err);
    }
    if (rc == KV_OK && n_positional < cmd->required)
        rc = kv_errorf(err, KV_EUSAGE, "missing arguments: usage: %s", cmd->usage);
    return rc;
}

/* --- help --------------------------------------------------------------------------- */

static void print_row(const opts_row *r, FILE *f)
{
    char head[64];
    int n = r->short_name ? snprintf(head, sizeof head, "-%c, --%s", r->short_name, r->name)
                          : snprintf(head, sizeof head, "--%s", r->name);
    if (r->arg && n > 0 && (size_t)n < sizeof head)
        snprintf(head + n, sizeof head - (size_t)n, " %s", r->arg);
    fprintf(f, "  %-22s", head);
    if (strlen(head) > 22)
        fprintf(f, "\n  %-22s", "");
    for (const char *s = r->help; *s; s++) {
        if (*s == '\n')
            fprintf(f, "\n  %-22s", "");
        else
            fputc(*s, f);
    }
    fputc('\n', f);
}

void opts_help(const opts_command *cmd, FILE *f)
{
    fprintf(f, "usage: %s\n\n", cmd->usage);
    if (cmd->about)
        fprintf(f, "%s\n\n", cmd->about);
    for (int g = 0; g < OPTS_MAX_GROUPS && cmd->groups[g].rows; g++) {
        fprintf(f, "%s:\n", cmd->groups[g].title);
        for (const opts_row *r = cmd->groups[g].rows; r->name; r++)
            print_row(r, f);
    }
    fprintf(f, "  %-22s%s\n", "-h, --help", "this help");
    if (cmd->other_help)
        fprintf(f, "\n%s\n", cmd->other_help);
    if (cmd->footer)
        fprintf(f, "\n%s", cmd->footer);
}

int opts_main(const opts_command *cmd, int argc, char **argv,
              int (*run)(void *ctx, kv_err *err), void *ctx)
{
    kv_err err = {0};
    int rc = opts_parse(cmd, argc, argv, &err);
    if (rc == OPTS_HELP)
        return 0;
    if (rc == KV_OK)
        rc = run(ctx, &err);
    return rc == KV_OK ? 0 : opts_fail(cmd->prog, &err);
}

int opts_fail(const char *prog, const kv_err *err)
{
    fprintf(stderr, "%s: %s\n", prog, err->msg[0] ? err->msg : kv_err_text(err->code));
    return kv_err_exit_status(err->code);
}

const char *opts_command_line(const char *prog, int argc, char **argv, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "%s", prog);
    for (int i = 0; i < argc && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, " %s", argv[i]);
    return buf;
}
