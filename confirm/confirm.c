/* confirm.c — what the `kvsim confirm` experiments share: configurations, the
 * runner, the table and its files, the model; see confirm.h. */
#include "confirm.h"
#include "out.h"

#include "cli.h"
#include "plot.h"
#include "results.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITEMS 64

/* Split a copy of a comma list; items point into buf. */
static int split(const char *list, char *buf, size_t len, char **items)
{
    int n = 0;
    snprintf(buf, len, "%s", list);
    for (char *t = strtok(buf, ","); t && n < MAX_ITEMS; t = strtok(NULL, ","))
        items[n++] = t;
    return n;
}

int confirm_int_list(const char *text, const char *name, int lo, int hi, int *out, int max,
                     kv_err *err)
{
    int n = 0;
    for (const char *p = text; p && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < lo || v > hi || n >= max)
            return kv_errorf(err, KV_EUSAGE, "--%s '%s': expected up to %d integers in "
                             "[%d, %d], comma-separated", name, text, max, lo, hi);
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return n ? n : kv_errorf(err, KV_EUSAGE, "--%s: empty list", name);
}

int confirm_double_list(const char *text, const char *name, double lo, double hi, double *out,
                        int max, kv_err *err)
{
    int n = 0;
    for (const char *p = text; p && *p;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end && *end != ',') || !(v >= lo && v <= hi) || n >= max)
            return kv_errorf(err, KV_EUSAGE, "--%s '%s': expected up to %d numbers in "
                             "[%g, %g], comma-separated", name, text, max, lo, hi);
        out[n++] = v;
        p = *end ? end + 1 : end;
    }
    return n ? n : kv_errorf(err, KV_EUSAGE, "--%s: empty list", name);
}

/* --- configurations (2) ------------------------------------------------------------ */

static int set(policy_config *cfg, const char *key, const char *value, kv_err *err)
{
    return value ? policy_config_set(cfg, key, value, err) : KV_OK;
}

/* One configuration: policy, budget, stride, then every parameter in order; with
 * several policies (`shared`) each keeps the parameters it reads, as in a sweep. */
static int make(const confirm_request *a, const char *policy, const char *budget,
                const char *stride, int T, int prompt_len, int shared, replay_config *c,
                kv_err *err)
{
    memset(c, 0, sizeof *c);
    c->policy = policy_config_default();
    c->oracle = -1;
    int rc = set(&c->policy, "policy", policy, err);
    if (!rc)
        rc = set(&c->policy, "budget", budget, err);
    if (!rc)
        rc = set(&c->policy, "stride", stride, err);
    if (!rc)
        rc = policy_config_apply(&c->policy, &a->params, err);
    if (rc)
        return rc;
    if (shared)
        policy_config_drop_unused(&c->policy, NULL, 0);
    policy_config_resolve(&c->policy, T);
    c->policy.prompt_len = prompt_len;
    snprintf(c->budget_arg, sizeof c->budget_arg, "%s", budget ? budget : "");
    return replay_config_finish(c, err);
}

/* --policies with `full` first (added when absent, moved when elsewhere): the
 * reference of every experiment that compares with the full cache. */
static const char *with_full_first(const char *policies, char *buf, size_t len)
{
    char copy[1024], *items[MAX_ITEMS];
    int n = split(policies ? policies : "", copy, sizeof copy, items);
    size_t used = (size_t)snprintf(buf, len, "full");
    for (int i = 0; i < n && used < len; i++)
        if (strcmp(items[i], "full"))
            used += (size_t)snprintf(buf + used, len - used, ",%s", items[i]);
    return buf;
}

int confirm_configs(const confirm_request *a, int T, int prompt_len, int with_full,
                    replay_config **out, int *n, kv_err *err)
{
    char pb[1024], bb[1024], sb[256], full[1100], *pol[MAX_ITEMS], *bud[MAX_ITEMS],
        *str[MAX_ITEMS];
    const char *policies = with_full ? with_full_first(a->policies, full, sizeof full)
                                     : a->policies ? a->policies : "full";
    int np = split(policies, pb, sizeof pb, pol);
    int nb = split(a->budgets ? a->budgets : "", bb, sizeof bb, bud);
    /* no --strides: the stride is left unset (each policy's default; pace refuses one) */
    int ns = a->strides ? split(a->strides, sb, sizeof sb, str) : 1;
    if (!a->strides)
        str[0] = NULL;
    *n = 0;
    if (!(*out = calloc((size_t)np * (nb ? nb : 1) * ns, sizeof **out)))
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    for (int p = 0; p < np; p++) {
        const int is_full = !strcmp(pol[p], "full");
        if (!is_full && !nb)
            return kv_errorf(err, KV_EUSAGE, "--budgets is required for policy %s", pol[p]);
        for (int b = 0; b < (is_full ? 1 : nb); b++)
            for (int s = 0; s < (is_full ? 1 : ns); s++) {
                int rc = make(a, pol[p], is_full ? NULL : bud[b], is_full ? NULL : str[s], T,
                              prompt_len, np > 1, &(*out)[*n], err);
                if (rc)
                    return rc;
                (*n)++;
            }
    }
    return KV_OK;
}

/* --- files (3) --------------------------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* What the writers need: the table, the input's name, the command line. */
typedef struct table_output {
    const confirm_table *t;
    const char          *input, *command;
} table_output;

/* The identifying columns of row r, as results_write_csv_ids writes them. */
static void write_ids(FILE *f, const table_output *o, int r)
{
    replay_source src = {.name = base_name(o->input)};
    replay_plan plan = {.configs = o->t->configs, .n_configs = o->t->n_configs};
    results_context rc = {.src = &src, .plan = &plan, .command = o->command};
    results_write_csv_ids(f, &rc, o->t->row_config[r], NULL, NULL);
}

static void write_csv(FILE *f, const void *ctx)
{
    const table_output *o = ctx;
    const confirm_table *t = o->t;
    fputs("trace,policy,score,scope,scope_of,gqa,budget_arg,budget,stride,phase", f);
    for (int c = 0; c < t->n_cols; c++)
        fprintf(f, ",%s", t->cols[c]);
    fputc('\n', f);
    for (int r = 0; r < t->n_rows; r++) {
        write_ids(f, o, r);
        for (int c = 0; c < t->n_cols; c++) {
            fputs(c ? "," : "", f);
            out_csv_number(f, t->values[(size_t)r * t->n_cols + c]);
        }
        fputc('\n', f);
    }
}

/* A CSV field as a JSON value: empty → null, else a number or a string. */
static void json_field(FILE *f, const char *v, int number)
{
    if (!*v)
        fputs("null", f);
    else if (number)
        fputs(v, f);
    else
        out_json_string(f, v);
}

/* The identifying fields of row r: the CSV ids split at their commas (names carry
 * none), so JSON and CSV cannot disagree. */
static void json_ids(FILE *f, const table_output *o, int r)
{
    static const char *const names[] = {"trace", "policy", "score", "scope", "scope_of", "gqa",
                                        "budget_arg", "budget", "stride", "phase"};
    char line[1024];
    FILE *m = fmemopen(line, sizeof line, "w");
    write_ids(m, o, r);
    fputc('\0', m);
    fclose(m);
    char *field = line;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *comma = strchr(field, ',');
        if (comma)
            *comma = '\0';
        fprintf(f, "%s\"%s\": ", i ? ", " : "", names[i]);
        json_field(f, field, !strcmp(names[i], "budget") || !strcmp(names[i], "stride"));
        field = comma ? comma + 1 : field + strlen(field);
    }
}

void confirm_json_head(FILE *f, const char *format, const char *input, const char *command)
{
    fprintf(f, "{\n  \"format\": \"%s\",\n  \"format_version\": 1,\n"
               "  \"tool_version\": \"%s\",\n  \"input\": ", format, KV_VERSION);
    out_json_string(f, input);
    fputs(",\n  \"command\": ", f);
    out_json_string(f, command ? command : "");
    fputs(",\n  \"results\": [", f);
}

int confirm_figure_check(const char *csv, const char *figure, kv_err *err)
{
    if (!figure)
        return KV_OK;
    if (!csv || !strcmp(csv, "-"))
        return kv_errorf(err, KV_EUSAGE, "--figure draws from the CSV: give -o FILE.csv");
    return plot_check_output(figure, err) ? KV_EUSAGE : KV_OK;
}

int confirm_figure(const char *csv, const char *figure, plot_kind kind, kv_err *err)
{
    plot_request req = {.kind = kind, .csv = csv, .out = figure};
    int rc = figure ? plot_render(&req, err) : KV_OK;
    if (rc == KV_OK && figure)
        fprintf(stderr, "kvsim confirm: wrote %s\n", figure);
    return rc;
}

static void write_json(FILE *f, const void *ctx)
{
    const table_output *o = ctx;
    const confirm_table *t = o->t;
    confirm_json_head(f, "kvsim-confirm", base_name(o->input), o->command);
    for (int r = 0; r < t->n_rows; r++) {
        fprintf(f, "%s\n    {", r ? "," : "");
        json_ids(f, o, r);
        for (int c = 0; c < t->n_cols; c++) {
            fprintf(f, ", \"%s\": ", t->cols[c]);
            out_json_number(f, t->values[(size_t)r * t->n_cols + c]);
        }
        fputc('}', f);
    }
    fputs("\n  ]\n}\n", f);
}

int confirm_table_write(const confirm_table *t, const confirm_request *r, const char *input,
                        kv_err *err)
{
    const table_output o = {t, input, r->command};
    int rc = out_write(r->csv ? r->csv : "-", write_csv, &o, err);
    if (rc == KV_OK && r->json)
        rc = out_write(r->json, write_json, &o, err);
    return rc;
}

void confirm_table_free(confirm_table *t)
{
    free(t->configs);
    free(t->row_config);
    free(t->values);
    memset(t, 0, sizeof *t);
}

/* --- the runner (2) ------------------------------------------------------------------ */

/* Room for n more configurations of `rows` rows each. */
static int table_reserve(confirm_table *t, int n, int rows, kv_err *err)
{
    const int need_c = t->n_configs + n, need_r = t->n_rows + n * rows;
    if (need_c > t->cap_configs) {
        replay_config *c = realloc(t->configs, (size_t)need_c * 2 * sizeof *c);
        if (!c)
            return kv_errorf(err, KV_ENOMEM, "out of memory");
        t->configs = c;
        t->cap_configs = need_c * 2;
    }
    if (need_r > t->cap_rows) {
        int *rc = realloc(t->row_config, (size_t)need_r * 2 * sizeof *rc);
        if (rc)
            t->row_config = rc;
        double *v = realloc(t->values, (size_t)need_r * 2 * t->n_cols * sizeof *v);
        if (v)
            t->values = v;
        if (!rc || !v)
            return kv_errorf(err, KV_ENOMEM, "out of memory");
        t->cap_rows = need_r * 2;
    }
    return KV_OK;
}

/* Configuration c's rows, measured and announced. */
static int measure(const confirm_experiment *e, void *ctx, confirm_table *t, int c, kv_err *err)
{
    const replay_config *cfg = &t->configs[c];
    double *rows = t->values + (size_t)t->n_rows * t->n_cols;
    char note[256] = "";
    memset(rows, 0, (size_t)e->rows * t->n_cols * sizeof *rows);
    int rc = e->measure(ctx, cfg, c, rows, note, sizeof note, err);
    if (rc != KV_OK)
        return kv_err_prefix(err, "policy %s: ", cfg->policy.name);
    for (int r = 0; r < e->rows; r++)
        t->row_config[t->n_rows++] = c;
    fprintf(stderr, "%s: %-12s B=%-5d stride %-3d %s\n", e->name, cfg->policy.name,
            cfg->policy.budget, cfg->policy.stride, note);
    return KV_OK;
}

int confirm_run(const confirm_experiment *e, const confirm_request *r, int T, int prompt_len,
                void *ctx, confirm_table *t, kv_err *err)
{
    replay_config *cfgs = NULL;
    int n = 0, rc = confirm_configs(r, T, prompt_len, e->full_first, &cfgs, &n, err);
    t->cols = e->cols;
    t->n_cols = e->n_cols;
    if (rc == KV_OK)
        rc = table_reserve(t, n, e->rows, err);
    const int first_config = t->n_configs, first_row = t->n_rows;
    if (rc == KV_OK) {
        memcpy(t->configs + first_config, cfgs, (size_t)n * sizeof *cfgs);
        t->n_configs += n;
    }
    for (int c = first_config; rc == KV_OK && c < first_config + n; c++)
        rc = measure(e, ctx, t, c, err);
    free(cfgs);
    return rc == KV_OK ? first_row : rc;
}

/* --- running ----------------------------------------------------------------------- */

int confirm_open_model(session *s, const confirm_request *a, kv_err *err)
{
    memset(s, 0, sizeof *s);
    if (a->threads)
        model_set_threads(a->threads);
    sampler_config greedy = sampler_config_default();
    if (!(s->file = gguf_open(a->model, err)) || !(s->tok = tokenizer_from_gguf(s->file, err)) ||
        !(s->model = model_open(a->model, err)))
        return err->code ? err->code : KV_EIO;
    s->sampler = sampler_new(&greedy, model_config_of(s->model)->n_vocab, err);
    return s->sampler ? KV_OK : err->code;
}

int confirm_open_text(session *s, const confirm_request *a, kv_err *err)
{
    session_options so = session_options_default();
    so.model = a->model;
    so.prompt_file = a->input;
    so.threads = a->threads;
    int rc = session_open(s, &so, err);
    if (s->prompt_text && !s->prompt_text[strspn(s->prompt_text, " \t\r\n")])
        rc = kv_errorf(err, KV_ERANGE, "%s: empty text file", a->input);
    return rc;
}

int confirm_generate(session *s, const int32_t *prompt, int n, int max_new,
                     policy_config cfg, int reposition, live_output *out, kv_err *err)
{
    memset(out, 0, sizeof *out);
    const int n_ctx = model_config_of(s->model)->n_ctx;
    cfg.prompt_len = n;
    live *lv = live_new(s->model, s->tok, &cfg, n + max_new < n_ctx ? n + max_new : n_ctx, err);
    if (!lv)
        return err->code;
    int rc = live_set_reposition(lv, reposition, err);
    if (rc == KV_OK)
        rc = live_generate(lv, s->sampler, prompt, n, max_new, NULL, NULL, out, err);
    live_free(lv);
    return rc;
}
