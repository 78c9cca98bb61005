/*
 * scope_report.c — `kvsim scope`'s CSV: eviction-scope sensitivity at a fixed budget.
 *
 * For each score S and each scope X in {window, std}, the `scored` policy runs with
 * protected size r for every r of --sizes, all in one pass (the configuration axes of
 * sim/replay_setup.h).  The CSV holds the usual lines, with `scope` written `window:r` /
 * `std:r`, and then one `spread` line per (score, scope): max − min across r of each
 * metric over the overall lines: the paper's robustness claim as a number.
 */
#include "scope_report.h"
#include "out.h"

#include "results.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct scope_output {
    results_context ctx;
    const replay_setup *setup;
} scope_output;

static void put_spread(FILE *f, const scope_output *o, int first, int n)
{
    const replay_config *cfg = &o->setup->configs[first];
    double lo[6], hi[6];
    int has[6] = {1, 1, 1, 1, 1, 1};
    long steps = 0;
    for (int c = first; c < first + n; c++) {
        results_line r = results_line_of(o->ctx.plan, o->ctx.acc, c, -1, -1);
        const double v[6] = {r.mean_cache, r.mass, r.overlap, r.consistency, r.output_error,
                             r.oracle_gap};
        const int def[6] = {r.steps > 0, r.steps > 0, r.has_overlap, r.has_consistency,
                            r.has_output, r.has_gap};
        steps = r.steps > steps ? r.steps : steps;
        for (int m = 0; m < 6; m++) {
            has[m] &= def[m];
            lo[m] = c == first || v[m] < lo[m] ? v[m] : lo[m];
            hi[m] = c == first || v[m] > hi[m] ? v[m] : hi[m];
        }
    }
    char scope[sizeof cfg->scope_name];
    snprintf(scope, sizeof scope, "%.*s", (int)strcspn(cfg->scope_name, ":"), cfg->scope_name);
    results_write_csv_ids(f, &o->ctx, first, "spread", scope);
    fprintf(f, "all,all,%ld", steps);
    for (int m = 0; m < 6; m++)
        if (has[m])
            fprintf(f, ",%.9g", hi[m] - lo[m]);
        else
            fputs(",", f);
    fputc('\n', f);
}

static void write_lines(FILE *f, const scope_output *o)
{
    const replay_setup *s = o->setup;
    for (int c = 0; c < s->n_configs; c++)
        results_write_csv_config(f, &o->ctx, c);
    /* configurations come score by score, scope by scope, sizes innermost */
    for (int first = 0; first < s->n_requested;) {
        int n = 1;
        while (first + n < s->n_requested &&
               !strcmp(s->configs[first + n].score_name, s->configs[first].score_name) &&
               !strncmp(s->configs[first + n].scope_name, s->configs[first].scope_name,
                        strcspn(s->configs[first].scope_name, ":") + 1))
            n++;
        put_spread(f, o, first, n);
        first += n;
    }
}

static void write_scope_csv(FILE *f, const void *ctx)
{
    results_write_csv_header(f);
    write_lines(f, ctx);
}

void scope_report_lines(FILE *f, const replay_setup *s, const replay_acc *acc)
{
    scope_output out = {{s->src, &s->plan, acc, NULL, NULL}, s};
    write_lines(f, &out);
}

int scope_report_write(const replay_setup *s, const replay_acc *acc, const char *command,
                       const char *csv, const char *json, kv_err *err)
{
    scope_output out = {{s->src, &s->plan, acc, command, NULL}, s};
    int rc = out_write(csv ? csv : "-", write_scope_csv, &out, err);
    if (rc == KV_OK && json)
        rc = results_write_files(&out.ctx, NULL, json, err);
    return rc;
}
