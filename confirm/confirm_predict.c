/*
 * confirm_predict.c — `kvsim confirm predict SIM.csv REAL.csv`: how well the
 * simulator's ranking of policies predicted the real one.
 *
 * SIM.csv is a replay or sweep of traces of the same inputs (its overall lines,
 * layer = head = all, are used); REAL.csv a `kvsim confirm` result.  Lines are joined
 * on (policy, budget_arg, stride, phase); within each budget_arg, Spearman's ρ across
 * the policies between the simulated metric and the real one, with a bootstrap
 * interval (analysis/rank_corr.h) — within a budget, so that budget size alone cannot
 * inflate it.  Output: one line per budget (CSV and JSON), and with --points the
 * joined pairs themselves, one line per (policy, budget), which `kvsim plot confirm`
 * draws (plots/confirm.gp).
 */
#include "confirm.h"
#include "out.h"

#include "rank_corr.h"
#include "results.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINES 4096
#define KEY_LEN 160

/* The lines of one CSV that count: join key and the metric's value. */
typedef struct metric_lines {
    char   key[MAX_LINES][KEY_LEN];      /* "policy,budget_arg,stride,phase" */
    char   budget[MAX_LINES][32];
    double value[MAX_LINES];
    int    n;
} metric_lines;

/* The index of `name` in the comma-separated header, or -1. */
static int column(char *const *fields, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(fields[i], name))
            return i;
    return -1;
}

static int split_line(char *line, char **fields, int max)
{
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *p = line; n < max;) {
        fields[n++] = p;
        p = strchr(p, ',');
        if (!p)
            break;
        *p++ = '\0';
    }
    return n;
}

enum { K_POLICY, K_BUDGET, K_STRIDE, K_PHASE, K_METRIC, K_LAYER, K_HEAD, N_KEYS };

static int read_header(FILE *f, const char *path, const char *metric, int col[N_KEYS],
                       kv_err *err)
{
    static const char *const names[N_KEYS] = {"policy", "budget_arg", "stride", "phase", "",
                                              "layer", "head"};
    char line[4096], *fields[128];
    if (!fgets(line, sizeof line, f))
        return kv_errorf(err, KV_EFORMAT, "%s: empty file, expected a CSV header", path);
    int n = split_line(line, fields, 128);
    for (int k = 0; k < N_KEYS; k++) {
        col[k] = column(fields, n, k == K_METRIC ? metric : names[k]);
        if (col[k] < 0 && k < K_LAYER)
            return kv_errorf(err, KV_EFORMAT, "%s: no column '%s' in the header",
                             path, k == K_METRIC ? metric : names[k]);
    }
    return KV_OK;
}

/* Read the lines of path whose metric is defined (overall lines only, where the
 * file has layer/head columns). */
static int read_lines(const char *path, const char *metric, metric_lines *out, kv_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return kv_errorf(err, KV_EIO, "%s: cannot open", path);
    int col[N_KEYS], rc = read_header(f, path, metric, col, err);
    char line[4096], *fields[128];
    out->n = 0;
    while (rc == KV_OK && fgets(line, sizeof line, f)) {
        int n = split_line(line, fields, 128);
        int max = 0;
        for (int k = 0; k < N_KEYS; k++)
            max = col[k] > max ? col[k] : max;
        if (n <= max || !*fields[col[K_METRIC]])
            continue;
        if ((col[K_LAYER] >= 0 && strcmp(fields[col[K_LAYER]], "all")) ||
            (col[K_HEAD] >= 0 && strcmp(fields[col[K_HEAD]], "all")))
            continue;
        if (out->n == MAX_LINES) {
            rc = kv_errorf(err, KV_ERANGE, "%s: more than %d lines", path, MAX_LINES);
            break;
        }
        snprintf(out->key[out->n], KEY_LEN, "%s,%s,%s,%s", fields[col[K_POLICY]],
                 fields[col[K_BUDGET]], fields[col[K_STRIDE]], fields[col[K_PHASE]]);
        snprintf(out->budget[out->n], 32, "%s", fields[col[K_BUDGET]]);
        out->value[out->n++] = strtod(fields[col[K_METRIC]], NULL);
    }
    fclose(f);
    return rc;
}

/* One output line per budget_arg. */
typedef struct predict_line {
    char   budget[32];
    int    n;
    double rho, lo, hi;
} predict_line;

typedef struct predict_out {
    const char   *sim_metric, *real_metric, *command;
    predict_line  line[MAX_LINES];
    int           n;
} predict_out;

/* The pairs of one budget: the simulated and real values of each policy in both. */
static int pairs_of(const metric_lines *sim, const metric_lines *real, const char *budget,
                    double *x, double *y)
{
    int n = 0;
    for (int i = 0; i < real->n; i++) {
        if (strcmp(real->budget[i], budget))
            continue;
        for (int j = 0; j < sim->n; j++)
            if (!strcmp(sim->key[j], real->key[i])) {
                x[n] = sim->value[j], y[n++] = real->value[i];
                break;
            }
    }
    return n;
}

static int seen_budget(const predict_out *o, const char *budget)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->line[i].budget, budget))
            return 1;
    return 0;
}

static void correlate(const metric_lines *sim, const metric_lines *real, int rounds,
                      uint64_t seed, predict_out *o, double *x, double *y)
{
    for (int i = 0; i < real->n; i++) {
        if (!*real->budget[i] || seen_budget(o, real->budget[i]))
            continue;   /* `full` has no budget: it is no point of any ranking */
        predict_line *l = &o->line[o->n++];
        snprintf(l->budget, sizeof l->budget, "%s", real->budget[i]);
        l->n = pairs_of(sim, real, l->budget, x, y);
        l->rho = rank_spearman(x, y, l->n);
        rank_spearman_ci(x, y, l->n, rounds, 0.05, seed, &l->lo, &l->hi);
    }
}

/* Two CSVs of different inputs or configurations join nowhere: say so rather than
 * write a table of empty correlations. */
static int check_joined(const predict_out *o, const char *sim, const char *real, kv_err *err)
{
    for (int i = 0; i < o->n; i++)
        if (o->line[i].n > 0)
            return KV_OK;
    return kv_errorf(err, KV_EFORMAT, "%s and %s: no line joins on policy, budget_arg, stride, "
                     "phase (a replay/sweep of the same policies and budgets as the confirm run "
                     "is expected)", sim, real);
}

static void put(FILE *f, double v) { isfinite(v) ? fprintf(f, ",%.6g", v) : fputs(",", f); }

static void write_csv(FILE *f, const void *ctx)
{
    const predict_out *o = ctx;
    fputs("sim_metric,real_metric,budget_arg,policies,spearman,ci_low,ci_high\n", f);
    for (int i = 0; i < o->n; i++) {
        fprintf(f, "%s,%s,%s,%d", o->sim_metric, o->real_metric, o->line[i].budget, o->line[i].n);
        put(f, o->line[i].rho), put(f, o->line[i].lo), put(f, o->line[i].hi);
        fputc('\n', f);
    }
}

/* The joined pairs: the key is already "policy,budget_arg,stride,phase". */
typedef struct predict_points {
    const predict_out  *o;
    const metric_lines *sim, *real;
} predict_points;

static void write_points(FILE *f, const void *ctx)
{
    const predict_points *p = ctx;
    fputs("sim_metric,real_metric,policy,budget_arg,stride,phase,sim,real\n", f);
    for (int i = 0; i < p->real->n; i++) {
        if (!*p->real->budget[i])
            continue;   /* as in correlate(): `full` is no point */
        for (int j = 0; j < p->sim->n; j++)
            if (!strcmp(p->sim->key[j], p->real->key[i])) {
                fprintf(f, "%s,%s,%s", p->o->sim_metric, p->o->real_metric, p->real->key[i]);
                put(f, p->sim->value[j]), put(f, p->real->value[i]);
                fputc('\n', f);
                break;
            }
    }
}

static void json_num(FILE *f, const char *key, double v)
{
    isfinite(v) ? fprintf(f, ", \"%s\": %.6g", key, v) : fprintf(f, ", \"%s\": null", key);
}

/* "key": "text" for a value read from a CSV (any text: escaped). */
static void json_text(FILE *f, const char *key, const char *v)
{
    fprintf(f, "\"%s\": ", key);
    out_json_string(f, v);
}

static void write_json(FILE *f, const void *ctx)
{
    const predict_out *o = ctx;
    fputs("{\n  \"format\": \"kvsim-confirm-predict\",\n  \"format_version\": 1,\n  ", f);
    json_text(f, "sim_metric", o->sim_metric);
    fputs(",\n  ", f);
    json_text(f, "real_metric", o->real_metric);
    fputs(",\n  \"results\": [", f);
    for (int i = 0; i < o->n; i++) {
        fprintf(f, "%s\n    {", i ? "," : "");
        json_text(f, "budget_arg", o->line[i].budget);
        fprintf(f, ", \"policies\": %d", o->line[i].n);
        json_num(f, "spearman", o->line[i].rho);
        json_num(f, "ci_low", o->line[i].lo);
        json_num(f, "ci_high", o->line[i].hi);
        fputc('}', f);
    }
    fputs("\n  ]\n}\n", f);
}

int confirm_predict(const confirm_request *a, const confirm_predict_options *o, kv_err *err)
{
    static metric_lines sim, real;   /* large: not on the stack */
    static predict_out out;
    static double x[MAX_LINES], y[MAX_LINES];
    out = (predict_out){.sim_metric = o->sim_metric, .real_metric = o->real_metric};
    int rc = read_lines(a->model, out.sim_metric, &sim, err);
    if (!rc)
        rc = read_lines(a->input, out.real_metric, &real, err);
    if (!rc) {
        correlate(&sim, &real, o->rounds, (uint64_t)o->seed, &out, x, y);
        rc = check_joined(&out, a->model, a->input, err);
    }
    if (!rc)
        rc = out_write(a->csv ? a->csv : "-", write_csv, &out, err);
    if (!rc && a->json)
        rc = out_write(a->json, write_json, &out, err);
    predict_points points = {&out, &sim, &real};
    if (!rc && o->points)
        rc = out_write(o->points, write_points, &points, err);
    return rc;
}
