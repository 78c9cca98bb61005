/*
 * confirm_study.c — `kvsim confirm study MODEL TEXT`: the kvcompress study (reference
 * seed-studies.md, section A) as one command, from a text to its table and figure.
 *
 * Its eight methods, each mapped onto this project's policies at a cache of B entries
 * per stream (docs/CONFIRM.md gives the table and where a mapping departs):
 *
 *   L2            knorm                      keep the lowest key norms
 *   fix-size-L2   scored knorm + window 0.5  newest B/2 protected, the rest by norm
 *   StreamingLLM  streaming, 4 sinks         sinks + the newest
 *   H2O-L2        scored knorm + sinks+window   sinks, heavy hitters by norm, recent B/2
 *   SnapKV-Lite   snapkv-lite, window B/4    newest window + pooled inverted norm
 *   pyramid       knorm, layer-decay 0.9     geometric per-layer budgets averaging B
 *   adaptive-L2   knorm, soft 2B, hard 4B    nothing evicted up to 2B tokens, then a
 *                                            budget falling linearly to B at 4B
 *   recent-only   recency                    the newest B (the control)
 *
 * plus the full cache.  Each configuration is measured twice on a live, truly
 * compressed cache (confirm/live.h): teacher-forced over the first --max-tokens of
 * TEXT (perplexity, next-token accuracy, tokens/s, peak KV bytes, mean entries), and
 * by greedy generation of --max-new-tokens after its first --prompt-tokens (TTFT, and
 * TPOT = decode time per generated token).  Each measurement is also given as % of the
 * full cache's, with a one-word verdict from the perplexity change.
 */
#include "confirm.h"

#include "cli.h"
#include "out.h"
#include "perplexity.h"
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct method {
    const char *name, *policy;
    const char *params;   /* "key=value,..." with %q for B/4, %h for 2B, %f for 4B */
} method;

static const method METHODS[] = {
    {"full", "full", ""},
    {"L2", "knorm", ""},
    {"fix-size-L2", "scored", "score=knorm,scope=window,window=0.5"},
    {"StreamingLLM", "streaming", "sinks=4"},
    {"H2O-L2", "scored", "score=knorm,scope=sinks+window,sinks=4,window=0.5"},
    {"SnapKV-Lite", "snapkv-lite", "obs-window=%q"},
    {"pyramid", "knorm", "layer-decay=0.9"},
    {"adaptive-L2", "knorm", "soft-limit=%h,hard-limit=%f"},
    {"recent-only", "recency", ""},
};
#define N_METHODS ((int)(sizeof METHODS / sizeof *METHODS))

enum { V_TOKENS, V_PPL, V_ACC, V_TTFT, V_TPOT, V_TPS, V_BYTES, V_CACHE, N_VALUES };
static const char *const VALUE_COLS[N_VALUES] = {"tokens", "ppl", "accuracy", "ttft_s",
                                                 "tpot_s", "tokens_per_s", "kv_bytes",
                                                 "mean_cache"};
/* the measurements also written as % of full, and their columns */
static const int PCT[] = {V_PPL, V_ACC, V_TTFT, V_TPOT, V_TPS, V_BYTES};
static const char *const PCT_COLS[] = {"ppl_pct", "accuracy_pct", "ttft_pct", "tpot_pct",
                                       "tokens_per_s_pct", "kv_bytes_pct"};
#define N_PCT ((int)(sizeof PCT / sizeof *PCT))

typedef struct study_row {
    int    method;
    int    budget;    /* 0 for full */
    double v[N_VALUES];
} study_row;

typedef struct study {
    const confirm_request      *r;
    const confirm_study_options *o;
    session                     s;
    int                         n;       /* tokens scored */
    study_row                  *rows;
    int                         n_rows;
} study;

/* METHODS[m].params with B substituted, then set on cfg one key at a time. */
static int set_params(policy_config *cfg, const method *m, int B, kv_err *err)
{
    char text[256], *save = NULL;
    snprintf(text, sizeof text, "%s", m->params);
    for (char *kv = strtok_r(text, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '='), value[32];
        *eq = '\0';
        const char *v = eq + 1;
        if (!strcmp(v, "%q") || !strcmp(v, "%h") || !strcmp(v, "%f")) {
            const int x = v[1] == 'q' ? (B / 4 > 0 ? B / 4 : 1) : v[1] == 'h' ? 2 * B : 4 * B;
            snprintf(value, sizeof value, "%d", x);
            v = value;
        }
        if (policy_config_set(cfg, kv, v, err) != KV_OK)
            return KV_EUSAGE;
    }
    return KV_OK;
}

static int make_config(const method *m, int B, int T, int prompt_len, policy_config *cfg,
                       kv_err *err)
{
    *cfg = policy_config_default();
    char budget[16];
    snprintf(budget, sizeof budget, "%d", B);
    int rc = policy_config_set(cfg, "policy", m->policy, err);
    if (rc == KV_OK && B > 0)
        rc = policy_config_set(cfg, "budget", budget, err);
    if (rc == KV_OK)
        rc = set_params(cfg, m, B, err);
    if (rc == KV_OK)
        policy_config_resolve(cfg, T);
    cfg->prompt_len = prompt_len;
    return rc;
}

/* The teacher-forced half: perplexity, accuracy, tokens/s, bytes, mean entries. */
static int measure_text(study *st, const method *m, int B, double *v, kv_err *err)
{
    policy_config cfg;
    perplexity_result r;
    int rc = make_config(m, B, st->n, 1, &cfg, err);
    if (rc == KV_OK)
        rc = perplexity_run(st->s.model, st->s.tok, st->s.prompt.ids, st->n, &cfg,
                            st->r->reposition, &r, err);
    if (rc != KV_OK)
        return rc;
    v[V_TOKENS] = (double)r.tokens;
    v[V_PPL] = exp(r.nll / r.tokens);
    v[V_ACC] = (double)r.correct / r.tokens;
    v[V_TPS] = r.seconds > 0 ? r.stats.steps / r.seconds : NAN;
    v[V_BYTES] = (double)r.stats.kv_bytes_peak;
    v[V_CACHE] = r.stats.steps ? r.stats.attended_sum / r.stats.steps : NAN;
    return KV_OK;
}

/* The generating half: TTFT and TPOT of a greedy continuation of the text's start. */
static int measure_generation(study *st, const method *m, int B, double *v, kv_err *err)
{
    const int P = st->o->prompt_tokens < st->n ? st->o->prompt_tokens : st->n;
    policy_config cfg;
    live_output out = {0};
    int rc = make_config(m, B, P + st->o->max_new, P, &cfg, err);
    if (rc == KV_OK)
        rc = confirm_generate(&st->s, st->s.prompt.ids, P, st->o->max_new, cfg,
                              st->r->reposition, &out, err);
    if (rc == KV_OK) {
        v[V_TTFT] = out.ttft_s;
        v[V_TPOT] = out.n > 0 ? out.decode_s / out.n : NAN;
    }
    live_output_free(&out);
    return rc;
}

static int measure(study *st, int mi, int B, kv_err *err)
{
    study_row *row = &st->rows[st->n_rows];
    *row = (study_row){.method = mi, .budget = B};
    int rc = measure_text(st, &METHODS[mi], B, row->v, err);
    if (rc == KV_OK)
        rc = measure_generation(st, &METHODS[mi], B, row->v, err);
    if (rc != KV_OK) {
        kv_err_prefix(err, "study: %s at B = %d: ", METHODS[mi].name, B);
        return rc;
    }
    fprintf(stderr, "study: %-13s B=%-5d ppl %.3f, accuracy %.3f, %.1f tokens/s, TTFT %.3f s, "
            "TPOT %.4f s\n", METHODS[mi].name, B, row->v[V_PPL], row->v[V_ACC], row->v[V_TPS],
            row->v[V_TTFT], row->v[V_TPOT]);
    st->n_rows++;
    return KV_OK;
}

/* --methods: a comma list of METHODS names (full is always run, first). */
static int method_wanted(const char *list, const char *name)
{
    if (!list || !strcmp(name, "full"))
        return 1;
    const size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || !p[n]))
            return 1;
    return 0;
}

static int check_methods(const char *list, kv_err *err)
{
    char copy[512], *save = NULL;
    snprintf(copy, sizeof copy, "%s", list ? list : "");
    for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int m = 0; m < N_METHODS; m++)
            found |= !strcmp(w, METHODS[m].name);
        if (!found)
            return kv_errorf(err, KV_EUSAGE, "--policies: unknown study method '%s'; the "
                             "study's: L2, fix-size-L2, StreamingLLM, H2O-L2, SnapKV-Lite, "
                             "pyramid, adaptive-L2, recent-only (full always runs)", w);
    }
    return KV_OK;
}

/* --- output ------------------------------------------------------------------------ */

static double pct(const study *st, const study_row *row, int c)
{
    const double full = st->rows[0].v[c];
    return full != 0 && isfinite(full) ? 100.0 * row->v[c] / full : NAN;
}

/* One word from the perplexity change against full: the study's second table. */
static const char *verdict(const study *st, const study_row *row)
{
    const double p = pct(st, row, V_PPL);
    return row->budget == 0 ? "reference" : !isfinite(p) ? "" : p <= 105 ? "good"
           : p <= 120 ? "fair" : "poor";
}

static void write_csv(FILE *f, const void *ctx)
{
    const study *st = ctx;
    fputs("text,method,policy,budget", f);
    for (int c = 0; c < N_VALUES; c++)
        fprintf(f, ",%s", VALUE_COLS[c]);
    for (int c = 0; c < N_PCT; c++)
        fprintf(f, ",%s", PCT_COLS[c]);
    fputs(",verdict\n", f);
    const char *slash = strrchr(st->r->input, '/');
    for (int i = 0; i < st->n_rows; i++) {
        const study_row *row = &st->rows[i];
        fprintf(f, "%s,%s,%s,", slash ? slash + 1 : st->r->input, METHODS[row->method].name,
                METHODS[row->method].policy);
        if (row->budget)
            fprintf(f, "%d", row->budget);
        for (int c = 0; c < N_VALUES; c++)
            fputc(',', f), out_csv_number(f, row->v[c]);
        for (int c = 0; c < N_PCT; c++)
            fputc(',', f), out_csv_number(f, pct(st, row, PCT[c]));
        fprintf(f, ",%s\n", verdict(st, row));
    }
}

static void write_json(FILE *f, const void *ctx)
{
    const study *st = ctx;
    confirm_json_head(f, "kvsim-confirm-study", st->r->input, st->r->command);
    for (int i = 0; i < st->n_rows; i++) {
        const study_row *row = &st->rows[i];
        fprintf(f, "%s\n    {\"method\": ", i ? "," : "");
        out_json_string(f, METHODS[row->method].name);
        fputs(", \"policy\": ", f);
        out_json_string(f, METHODS[row->method].policy);
        fputs(", \"budget\": ", f);
        out_json_number(f, row->budget ? row->budget : NAN);
        for (int c = 0; c < N_VALUES; c++)
            fprintf(f, ", \"%s\": ", VALUE_COLS[c]), out_json_number(f, row->v[c]);
        for (int c = 0; c < N_PCT; c++)
            fprintf(f, ", \"%s\": ", PCT_COLS[c]),
                out_json_number(f, pct(st, row, PCT[c]));
        fprintf(f, ", \"verdict\": \"%s\"}", verdict(st, row));
    }
    fputs("\n  ]\n}\n", f);
}

static int write_files(const study *st, kv_err *err)
{
    int rc = out_write(st->r->csv ? st->r->csv : "-", write_csv, st, err);
    if (rc == KV_OK && st->r->json)
        rc = out_write(st->r->json, write_json, st, err);
    if (rc == KV_OK)
        rc = confirm_figure(st->r->csv, st->o->figure, PLOT_STUDY, err);
    return rc;
}

int confirm_study(const confirm_request *r, const confirm_study_options *o, kv_err *err)
{
    int budgets[16], nb = confirm_int_list(r->budgets ? r->budgets : "64,128", "budgets", 1,
                                           1 << 20, budgets, 16, err);
    if (nb < 0)
        return -nb > 0 ? -nb : KV_EUSAGE;
    int rc = check_methods(r->policies, err);
    if (rc == KV_OK)
        rc = confirm_figure_check(r->csv, o->figure, err);
    study st = {.r = r, .o = o};
    if (rc == KV_OK)
        rc = confirm_open_text(&st.s, r, err);
    st.n = rc == KV_OK ? ((int)st.s.prompt.n < o->max_tokens ? (int)st.s.prompt.n
                                                              : o->max_tokens) : 0;
    if (rc == KV_OK && st.n < 2)
        rc = kv_errorf(err, KV_ERANGE, "%s: %d tokens, expected at least 2", r->input, st.n);
    if (rc == KV_OK && !(st.rows = calloc((size_t)N_METHODS * nb, sizeof *st.rows)))
        rc = kv_errorf(err, KV_ENOMEM, "out of memory");
    for (int b = 0; rc == KV_OK && b < nb; b++)
        for (int m = 0; rc == KV_OK && m < N_METHODS; m++)
            if ((m > 0 || b == 0) && method_wanted(r->policies, METHODS[m].name))
                rc = measure(&st, m, m == 0 ? 0 : budgets[b], err);
    if (rc == KV_OK)
        rc = write_files(&st, err);
    free(st.rows);
    session_close(&st.s);
    return rc;
}
