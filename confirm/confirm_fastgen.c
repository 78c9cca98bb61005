/*
 * confirm_fastgen.c — `kvsim confirm fastgen-memory MODEL TEXT`: the FastGen memory
 * table (reference seed-studies.md, section B) as one command.
 *
 * fastgen runs with the study's setting, T = `recovery` 0.95, r_f = r_l = 0.8 (our
 * policy's defaults are 0.3: a more aggressive point of the same curve; any of the
 * three can be given as --KEY VALUE), on TEXT as the prompt followed by a greedy
 * continuation, in a live, truly compressed cache (confirm/live.h), and, with --trace,
 * by replay of a recorded trace (sim/kept_set.h reads the streams at the last step).
 * Per layer: the raw cache (every token fed, in each KV head) against what the chosen
 * profiles keep, in MB (10^6 bytes of the allocator's per-entry cost: key and value
 * float32 rows plus the int32 position), and the saving; a `mean` line as the study's
 * table has; and per (layer, KV head) the profile chosen (special, punct, frequent,
 * local, full) with the prompt attention it recovered, for the heatmap.
 */
#include "confirm.h"

#include "cli.h"
#include "kept_set.h"
#include "out.h"
#include "plot.h"
#include "replay_setup.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const PROFILES[] = {"special", "punct", "frequent", "local", "full"};
#define N_PROFILES 5

typedef struct fg_cell {
    int    raw, kept;     /* entries: every token fed, and what the stream holds */
    int    profile;       /* index into PROFILES, -1 unknown */
    double recovered;
} fg_cell;

typedef struct fg_source {
    const char *name;     /* "live" or "replay" */
    int         L, K;
    fg_cell    *cells;    /* (L, K) */
} fg_source;

typedef struct fg_table {
    const confirm_request           *r;
    const confirm_fastgen_options   *o;
    double                           entry_bytes;
    fg_source                        src[2];
    int                              n_src;
} fg_table;

/* "profile=local recovered=0.9669" */
static void parse_profile(const char *desc, fg_cell *c)
{
    char name[16] = "";
    c->profile = -1;
    c->recovered = NAN;
    if (!desc || sscanf(desc, "profile=%15s recovered=%lf", name, &c->recovered) < 1)
        return;
    for (int i = 0; i < N_PROFILES; i++)
        if (!strcmp(name, PROFILES[i]))
            c->profile = i;
}

static int source_alloc(fg_source *s, const char *name, int L, int K, kv_err *err)
{
    *s = (fg_source){.name = name, .L = L, .K = K};
    if (!(s->cells = calloc((size_t)L * K, sizeof *s->cells)))
        return kv_errorf(err, KV_ENOMEM, "out of memory");
    return KV_OK;
}

/* fastgen with the study's setting, then the user's parameters over it. */
static int fastgen_config(const confirm_request *r, policy_config *cfg, kv_err *err)
{
    *cfg = policy_config_default();
    static const char *const keys[][2] = {{"policy", "fastgen"}, {"recovery", "0.95"},
                                          {"r-f", "0.8"}, {"r-l", "0.8"}};
    int rc = KV_OK;
    for (size_t i = 0; rc == KV_OK && i < sizeof keys / sizeof *keys; i++)
        rc = policy_config_set(cfg, keys[i][0], keys[i][1], err);
    return rc == KV_OK ? policy_config_apply(cfg, &r->params, err) : rc;
}

/* --- live ---------------------------------------------------------------------------- */

static int run_live(fg_table *t, session *s, kv_err *err)
{
    const int n = (int)s->prompt.n, n_ctx = model_config_of(s->model)->n_ctx;
    const int T = n + t->o->max_new < n_ctx ? n + t->o->max_new : n_ctx;
    policy_config cfg;
    int rc = fastgen_config(t->r, &cfg, err);
    if (rc != KV_OK)
        return rc;
    policy_config_resolve(&cfg, T);
    cfg.prompt_len = n;
    live *lv = live_new(s->model, s->tok, &cfg, T, err);
    if (!lv)
        return err->code;
    live_output out = {0};
    rc = live_generate(lv, s->sampler, s->prompt.ids, n, t->o->max_new, NULL, NULL, &out, err);
    const kv_cache *c = live_cache(lv);
    fg_source *src = &t->src[t->n_src];
    if (rc == KV_OK)
        rc = source_alloc(src, "live", kv_cache_n_layer(c), kv_cache_n_kv_head(c), err);
    for (int l = 0; rc == KV_OK && l < src->L; l++)
        for (int k = 0; k < src->K; k++) {
            fg_cell *cell = &src->cells[(size_t)l * src->K + k];
            char desc[128] = "";
            policy_describe(live_policy(lv, l, k), desc, sizeof desc);
            cell->raw = (int)out.stats.steps;
            cell->kept = kv_cache_size(c, l, k);
            parse_profile(desc, cell);
        }
    if (rc == KV_OK) {
        t->entry_bytes = 2.0 * kv_cache_head_dim(c) * sizeof(float) + sizeof(int32_t);
        t->n_src++;
    }
    live_output_free(&out);
    live_free(lv);
    return rc;
}

/* --- replay -------------------------------------------------------------------------- */

static int run_replay(fg_table *t, kv_err *err)
{
    policy_config probe;
    int rc = fastgen_config(t->r, &probe, err);   /* refuses what the live run would */
    replay_request req = {.trace = t->o->trace, .policies = "fastgen", .budgets = "1",
                          .metrics = "mass",
                          .params = {.n = 3, .key = {"recovery", "r-f", "r-l"},
                                     .value = {"0.95", "0.8", "0.8"}}};
    for (int i = 0; i < t->r->params.n && req.params.n < POLICY_ARGS_MAX; i++) {
        req.params.key[req.params.n] = t->r->params.key[i];
        req.params.value[req.params.n++] = t->r->params.value[i];
    }
    replay_setup setup = {0};
    if (rc == KV_OK)
        rc = replay_setup_build(&setup, &req, err);
    kept_set *ks = rc == KV_OK ? kept_set_new(setup.src, 0, err) : NULL;
    const size_t n = rc == KV_OK ? (size_t)setup.n_configs * setup.plan.n_layers *
                                   setup.plan.n_heads : 0;
    replay_acc *acc = ks ? calloc(n ? n : 1, sizeof *acc) : NULL;
    if (rc == KV_OK && !acc)
        rc = kv_errorf(err, KV_ENOMEM, "out of memory");
    if (rc == KV_OK) {
        setup.plan.observe = kept_set_observe;
        setup.plan.observe_ctx = ks;
        rc = replay_setup_compute(&setup, acc, err);
    }
    fg_source *src = &t->src[t->n_src];
    if (rc == KV_OK)
        rc = source_alloc(src, "replay", kept_set_layers(ks), kept_set_kv_heads(ks), err);
    for (int l = 0; rc == KV_OK && l < src->L; l++)
        for (int k = 0; k < src->K; k++) {
            const char *desc;
            fg_cell *cell = &src->cells[(size_t)l * src->K + k];
            cell->kept = kept_set_count(ks, l, k, &desc);
            cell->raw = setup.src->T;
            parse_profile(desc, cell);
        }
    if (rc == KV_OK) {
        if (t->entry_bytes == 0)
            t->entry_bytes = 2.0 * setup.src->head_dim * sizeof(float) + sizeof(int32_t);
        t->n_src++;
    }
    free(acc);
    kept_set_free(ks);
    replay_setup_free(&setup);
    return rc;
}

/* --- output -------------------------------------------------------------------------- */

static double mb(const fg_table *t, double entries) { return entries * t->entry_bytes / 1e6; }

static void csv_line(FILE *f, const fg_table *t, const char *src, const char *layer,
                     const char *head, double raw, double kept, const fg_cell *cell)
{
    fprintf(f, "%s,%s,%s,", src, layer, head);
    out_csv_number(f, raw);
    fputc(',', f), out_csv_number(f, kept);
    fputc(',', f), out_csv_number(f, mb(t, raw));
    fputc(',', f), out_csv_number(f, mb(t, kept));
    fputc(',', f), out_csv_number(f, raw > 0 ? 100.0 * (raw - kept) / raw : NAN);
    fprintf(f, ",%s,", cell && cell->profile >= 0 ? PROFILES[cell->profile] : "");
    out_csv_number(f, cell ? cell->recovered : NAN);
    fputc('\n', f);
}

static void write_csv(FILE *f, const void *ctx)
{
    const fg_table *t = ctx;
    fputs("source,layer,kv_head,raw_entries,kept_entries,raw_mb,compressed_mb,saving_pct,"
          "profile,recovered\n", f);
    for (int s = 0; s < t->n_src; s++) {
        const fg_source *src = &t->src[s];
        double raw_all = 0, kept_all = 0;
        for (int l = 0; l < src->L; l++) {
            char layer[16], head[16];
            double raw = 0, kept = 0;
            snprintf(layer, sizeof layer, "%d", l);
            for (int k = 0; k < src->K; k++) {
                const fg_cell *c = &src->cells[(size_t)l * src->K + k];
                snprintf(head, sizeof head, "%d", k);
                csv_line(f, t, src->name, layer, head, c->raw, c->kept, c);
                raw += c->raw, kept += c->kept;
            }
            csv_line(f, t, src->name, layer, "all", raw, kept, NULL);
            raw_all += raw, kept_all += kept;
        }
        csv_line(f, t, src->name, "mean", "all", raw_all / src->L, kept_all / src->L, NULL);
    }
}

/* The JSON: the CSV's lines as objects (the same writer, split at commas: no field
 * holds one). */
static void write_json(FILE *f, const void *ctx)
{
    const fg_table *t = ctx;
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        return;
    write_csv(m, t);
    fclose(m);
    confirm_json_head(f, "kvsim-confirm-fastgen-memory", t->r->input, t->r->command);
    char *save = NULL, *header = strtok_r(text, "\n", &save), *names[16];
    int n_names = 0;
    for (char *w = strtok(header, ","); w && n_names < 16; w = strtok(NULL, ","))
        names[n_names++] = w;
    int rows = 0;
    for (char *line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        fprintf(f, "%s\n    {", rows++ ? "," : "");
        char *p = line;
        for (int c = 0; c < n_names; c++) {
            size_t w = strcspn(p, ",");
            char field[64];
            snprintf(field, sizeof field, "%.*s", (int)w, p);
            fprintf(f, "%s\"%s\": ", c ? ", " : "", names[c]);
            char *end;
            double v = strtod(field, &end);
            if (!*field)
                fputs("null", f);
            else if (!*end && c >= 3)
                out_json_number(f, v);
            else
                out_json_string(f, field);
            p += w + (p[w] == ',');
        }
        fputc('}', f);
    }
    fputs("\n  ]\n}\n", f);
    free(text);
}

static int write_files(const fg_table *t, kv_err *err)
{
    int rc = out_write(t->r->csv ? t->r->csv : "-", write_csv, t, err);
    if (rc == KV_OK && t->r->json)
        rc = out_write(t->r->json, write_json, t, err);
    return rc == KV_OK ? confirm_figure(t->r->csv, t->o->figure, PLOT_FASTGEN, err) : rc;
}

static void summary(const fg_table *t)
{
    for (int s = 0; s < t->n_src; s++) {
        const fg_source *src = &t->src[s];
        double raw = 0, kept = 0;
        int count[N_PROFILES] = {0};
        for (int i = 0; i < src->L * src->K; i++) {
            raw += src->cells[i].raw, kept += src->cells[i].kept;
            if (src->cells[i].profile >= 0)
                count[src->cells[i].profile]++;
        }
        fprintf(stderr, "fastgen-memory (%s): mean per layer %.4f MB raw -> %.4f MB "
                "compressed (-%.2f%%); profiles: special %d, punct %d, frequent %d, local %d, "
                "full %d\n", src->name, mb(t, raw / src->L), mb(t, kept / src->L),
                raw > 0 ? 100 * (raw - kept) / raw : 0.0, count[0], count[1], count[2],
                count[3], count[4]);
    }
}

int confirm_fastgen_memory(const confirm_request *r, const confirm_fastgen_options *o,
                           kv_err *err)
{
    fg_table t = {.r = r, .o = o};
    session s = {0};
    int rc = confirm_figure_check(r->csv, o->figure, err);
    if (rc == KV_OK)
        rc = confirm_open_text(&s, r, err);
    if (rc == KV_OK)
        rc = run_live(&t, &s, err);
    if (rc == KV_OK && o->trace)
        rc = run_replay(&t, err);
    if (rc == KV_OK) {
        summary(&t);
        rc = write_files(&t, err);
    }
    for (int i = 0; i < t.n_src; i++)
        free(t.src[i].cells);
    session_close(&s);
    return rc;
}
