/*
 * test_gpu_rules.c — the CUDA replay's per-entry rules (gpu/replay_rules.h), run on the
 * CPU against the code they must reproduce bit for bit: metrics_gather, metrics_overlap,
 * metrics_kth_largest, the scored policies' scores, σ and candidates.  Then the whole
 * GPU replay against the CPU engine, when this machine has a device (skipped
 * otherwise: CI has none).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "policy.h"
#include "policy_scored.h"
#include "replay_gpu.h"
#include "replay_rules.h"
#include "replay_run.h"

/* Attention-like values: a few large, many small, some exact ties. */
static void fill_row(float *v, int n, unsigned seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        const float u = (float)(seed >> 8) / (float)(1u << 24);
        v[i] = i % 7 == 3 ? v[i / 2] : expf(-12.0f * u) / (float)n;
    }
}

static void kept_every_other(policy_entry *kept, int n)
{
    for (int j = 0; j < n; j++)
        kept[j] = (policy_entry){.position = 2 * j};
}

Test(gpu_rules, mass_and_renormalisation_are_metrics_gathers)
{
    static float p[1200], out[600], gathered[600];
    static policy_entry kept[600];
    for (int n = 1; n <= 600; n += 37) {
        fill_row(p, 2 * n, (unsigned)n);
        kept_every_other(kept, n);
        const double m = metrics_gather(p, kept, n, out);
        for (int j = 0; j < n; j++)
            gathered[j] = p[kept[j].position];
        cr_assert_eq(rules_mass(gathered, n), m, "n=%d: mass differs", n);
        for (int j = 0; j < n; j++)
            cr_assert_eq(rules_renorm(gathered[j], m, rules_scale(m), n), out[j], "n=%d j=%d",
                         n, j);
    }
    const float zero[3] = {0, 0, 0};
    cr_assert_eq(rules_renorm(0, rules_mass(zero, 3), rules_scale(0), 3), 1.0f / 3);
}

Test(gpu_rules, overlap_and_threshold_are_the_metrics)
{
    static float p[900], scratch[900];
    static policy_entry kept[450];
    for (int n = 1; n <= 450; n += 29) {
        fill_row(p, 2 * n, 7u * (unsigned)n);
        kept_every_other(kept, n);
        int n_above, above = 0, tied = 0;
        const float theta = metrics_kth_largest(p, 2 * n, n, scratch, &n_above);
        for (int j = 0; j < n; j++) {
            above += p[kept[j].position] > theta;
            tied += p[kept[j].position] == theta;
        }
        cr_assert_eq(rules_overlap(above, tied, n, n_above),
                     metrics_overlap(p, kept, n, theta, n_above), "n=%d", n);
        cr_assert_eq(rules_unkey(rules_key(theta)), theta);
    }
}

/* Outputs summed term by term in key order, and their relative error: metrics.c's
 * output_full, output_kept and relative_error, bit for bit. */
Test(gpu_rules, outputs_and_their_error_are_the_metrics)
{
    enum { N = 300, D = 72 };   /* a tile of 64 and a tail of 8 on the CPU side */
    static float p[N], v[N * D], full[D], kept[D], mine_full[D], mine_kept[D];
    static policy_entry C[N / 2];
    fill_row(p, N, 5);
    fill_row(v, N * D, 6);
    kept_every_other(C, N / 2);
    static float out[N / 2];
    const double m = metrics_gather(p, C, N / 2, out);
    metrics_output_full(p, N, v, D, full);
    metrics_output_kept(p, C, N / 2, m, v, D, kept);
    for (int d = 0; d < D; d++) {
        float f = 0, k = 0;
        for (int i = 0; i < N; i++)
            f = rules_output_add(f, p[i], v[i * D + d]);
        for (int j = 0; j < N / 2; j++)
            k = rules_output_add(k, p[C[j].position], v[C[j].position * D + d]);
        mine_full[d] = f;
        mine_kept[d] = k * rules_scale(m);
        cr_assert_eq(mine_full[d], full[d], "full d=%d", d);
        cr_assert_eq(mine_kept[d], kept[d], "kept d=%d", d);
    }
    cr_assert_eq(rules_relative_error(mine_kept, mine_full, D),
                 metrics_relative_error(kept, full, D));
}

Test(gpu_rules, keys_order_like_the_values)
{
    const float v[] = {0.0f, -0.0f, 1e-30f, 1e-7f, 0.25f, 0.5f, 1.0f};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        for (size_t j = 0; j < sizeof v / sizeof *v; j++)
            cr_assert_eq(v[i] < v[j], rules_key(v[i]) < rules_key(v[j]), "%g vs %g", v[i], v[j]);
}

/* Drive a scored policy (policy_layer_step) and recompute S, c and the reduced row as
 * the kernel does: its scores and σ must be the policy's. */
enum { CHECK_T = 40, CHECK_G = 3 };

typedef struct kernel_view {
    int    gpu_score, gqa, t;
    const char *name;
    double S[CHECK_T], Q[CHECK_T];
    int    c[CHECK_T];
    float  last[CHECK_T];
} kernel_view;

/* The step's rows, renormalised as the kernel does, and the kernel's own statistics. */
static int kernel_rows(void *ctx, int s, const policy *p, float *rows, kv_err *err)
{
    (void)s, (void)err;
    kernel_view *k = ctx;
    const int n = policy_size(p), G = CHECK_G;
    for (int g = 0; g < G; g++) {
        fill_row(rows + g * n, n, (unsigned)(k->t * G + g + 1));
        const double m = rules_mass(rows + g * n, n);
        for (int j = 0; j < n; j++)
            rows[g * n + j] = rules_renorm(rows[g * n + j], m, rules_scale(m), n);
    }
    for (int j = 0; j < n; j++) {
        float a = rows[j];
        for (int g = 1; g < G; g++)
            a = rules_fold(k->gqa, a, rows[g * n + j]);
        a = rules_finish(k->gqa, a, G);
        rules_observe(&k->S[j], &k->Q[j], a);
        k->c[j]++;
        k->last[j] = a;
    }
    return 0;
}

/* After the policy observed: its scores and σ against the kernel's. */
static void kernel_compare(void *ctx, int s, const policy *p)
{
    (void)s;
    const kernel_view *k = ctx;
    static float got[CHECK_T];
    cr_assert_eq(policy_scores(p, got), 0);
    for (int j = 0; j < policy_size(p); j++) {
        cr_assert_eq(rules_score(k->gpu_score, k->S[j], k->c[j], k->last[j], j), got[j],
                     "%s t=%d j=%d", k->name, k->t, j);
        cr_assert_eq(rules_sigma(k->S[j], k->Q[j], k->c[j]), (float)scored_sigma(p, j),
                     "σ: %s t=%d j=%d", k->name, k->t, j);
    }
}

static void check_scores(const char *score, int gpu_score, int gqa, const char *gqa_name)
{
    policy_config cfg = policy_config_default();
    kv_err err = {0};
    cr_assert_eq(policy_config_set(&cfg, "policy", "scored", &err), 0, "%s", err.msg);
    cr_assert_eq(policy_config_set(&cfg, "score", score, &err), 0, "%s", err.msg);
    cr_assert_eq(policy_config_set(&cfg, "gqa", gqa_name, &err), 0, "%s", err.msg);
    cr_assert_eq(policy_config_set(&cfg, "budget", "1000", &err), 0, "%s", err.msg);
    int head_id[CHECK_G] = {0, 1, 2}, kv_of[CHECK_G] = {0, 0, 0};
    const policy_shape shape = {0, 1, CHECK_G, head_id, kv_of, 1, 0, 0, {NULL, 0, 0}, NULL, 0, 0};
    policy_layer *L = policy_layer_new(&cfg, &shape, &err);
    cr_assert_not_null(L, "%s", err.msg);
    static kernel_view k;
    memset(&k, 0, sizeof k);
    k.gpu_score = gpu_score, k.gqa = gqa, k.name = score;
    const policy_io io = {kernel_rows, kernel_compare, NULL, NULL};
    for (k.t = 0; k.t < CHECK_T; k.t++) {
        const policy_token tok = {.position = k.t};
        cr_assert_eq(policy_layer_step(L, &tok, &io, &k, &err), 0, "%s", err.msg);
    }
    policy_layer_free(L);
}

Test(gpu_rules, scores_are_the_scored_policys)
{
    check_scores("aas", GPU_SCORE_AAS, GPU_GQA_MEAN, "mean");
    check_scores("mas", GPU_SCORE_MAS, GPU_GQA_SUM, "sum");
    check_scores("ltas", GPU_SCORE_LTAS, GPU_GQA_MAX, "max");
    check_scores("ltas", GPU_SCORE_LTAS, GPU_GQA_MEAN, "mean");
    check_scores("recency", GPU_SCORE_RECENCY, GPU_GQA_MEAN, "mean");
}

Test(gpu_rules, rank_is_lower_score_then_older)
{
    cr_assert(rules_before(0.1f, 9, 0.2f, 1));
    cr_assert(rules_before(0.2f, 1, 0.2f, 9));
    cr_assert(!rules_before(0.2f, 9, 0.2f, 1));
}

/* Sinks from the oldest, the newest window, each within the room that leaves k. */
Test(gpu_rules, candidates_leave_k_between_the_sinks_and_the_window)
{
    const int pos[10] = {0, 1, 2, 3, 10, 11, 12, 13, 14, 15};
    int lo, hi;
    rules_candidates(pos, 10, 1, 4, 3, &lo, &hi);   /* streaming-like: 4 sinks, r = 3 */
    cr_assert_eq(lo, 4);
    cr_assert_eq(hi, 7);
    rules_candidates(pos, 10, 5, 4, 3, &lo, &hi);   /* room 5: all sinks and 1 of r */
    cr_assert_eq(lo, 4);
    cr_assert_eq(hi, 9);
    rules_candidates(pos, 10, 8, 4, 3, &lo, &hi);   /* room 2: two sinks, no window */
    cr_assert_eq(lo, 2);
    cr_assert_eq(hi, 10);
    rules_candidates(pos, 10, 2, 0, 0, &lo, &hi);   /* no scope */
    cr_assert_eq(lo, 0);
    cr_assert_eq(hi, 10);
}

/* The std scope (roco): r = 8 protected of the room, the 3 newest first, then 5 by σ. */
Test(gpu_rules, the_std_scope_protects_the_newest_then_the_largest_sigma)
{
    int mid, want;
    rules_std_scope(20, 1, 4, 8, 3, &mid, &want);   /* room 15: all of r */
    cr_assert_eq(mid, 17);
    cr_assert_eq(want, 5);
    rules_std_scope(20, 1, 4, 30, 3, &mid, &want);  /* r beyond the room: the room */
    cr_assert_eq(mid, 17);
    cr_assert_eq(want, 12);
    rules_std_scope(10, 8, 0, 8, 3, &mid, &want);   /* room 2: 2 newest, none by σ */
    cr_assert_eq(mid, 8);
    cr_assert_eq(want, 0);
}

/* The whole GPU replay against the CPU engine, bit for bit, when there is a device. */
Test(gpu_rules, the_gpu_replay_is_the_cpu_replay)
{
    static const char *const configs[] = {
        "--policies h2o,mas,tova,streaming,recency,full --budgets 0.2,0.5 --strides 1,3",
        "--policies h2o,mas --budgets 40 --gqa max --scope-of query-head",
        "--policies scored --score ltas --scope sinks+window --sinks 2 --window 5 "
        "--budgets 30 --gqa sum",
        "--policies roco --budgets 0.2,40 --strides 1,5",
        "--policies scored --score aas --scope std --window 0.5 --recent 2 --budgets 25",
    };
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
        char line[512];
        snprintf(line, sizeof line, "sweep synth:T=300,layers=3,heads=6,kv=2,dim=8,seed=9 %s "
                 "--metrics mass,overlap,output_error", configs[i]);
        run cpu, gpu;
        run_words(&cpu, line);
        cr_assert_eq(cpu.rc, KV_OK, "%s: %s", line, cpu.err.msg);
        strncat(line, " --device cuda", sizeof line - strlen(line) - 1);
        run_words(&gpu, line);
        if (gpu.rc == KV_EUNSUPPORTED && (strstr(gpu.err.msg, "no device") ||
                                          strstr(gpu.err.msg, "without CUDA"))) {
            run_free(&cpu);
            run_free(&gpu);
            cr_skip_test("no CUDA device here: %s", gpu.err.msg);
        }
        cr_assert_eq(gpu.rc, KV_OK, "%s: %s", line, gpu.err.msg);
        const replay_plan *p = &cpu.setup.plan;
        const size_t n = (size_t)p->n_configs * p->n_layers * p->n_heads;
        for (size_t a = 0; a < n; a++) {
            const replay_acc *x = &cpu.acc[a], *y = &gpu.acc[a];
            cr_assert(x->steps == y->steps && x->cache == y->cache && x->mass == y->mass &&
                      x->overlap == y->overlap && x->n_overlap == y->n_overlap &&
                      x->output_error == y->output_error && x->n_output == y->n_output,
                      "%s: accumulator %zu: cpu mass %.17g overlap %.17g output %.17g, "
                      "gpu %.17g %.17g %.17g", line, a, x->mass, x->overlap, x->output_error,
                      y->mass, y->overlap, y->output_error);
        }
        run_free(&cpu);
        run_free(&gpu);
    }
}

/* Streams of configuration c in plan layer l, as the CPU engine builds them. */
static int count_streams(const replay_source *src, const replay_plan *p, int c, int l)
{
    int head_id[64], kv_of[64];
    policy_shape shape;
    replay_shape_of(src, p, l, head_id, kv_of, &shape);
    kv_err err = {0};
    policy_layer *L = policy_layer_new(&p->configs[c].policy, &shape, &err);
    cr_assert_not_null(L, "%s", err.msg);
    const int n = policy_layer_streams(L);
    policy_layer_free(L);
    return n;
}

/* What the host hands the kernel, checked without a device: the CPU engine's streams
 * (policy_layer_new's), each member's accumulator and KV head, and each preset's budget,
 * window, sinks and std scope as the policy library resolves them. */
Test(gpu_rules, the_kernel_gets_the_cpu_engines_streams_and_settings)
{
    run r;
    run_words(&r, "sweep synth:T=200,layers=3,heads=6,kv=2,dim=8,seed=9 --policies "
                  "h2o,roco,streaming,tova --budgets 40 --metrics mass");
    cr_assert_eq(r.rc, KV_OK, "%s", r.err.msg);
    const replay_plan *p = &r.setup.plan;
    gpu_stream_desc *d;
    int n;
    kv_err err = {0};
    cr_assert_eq(replay_gpu_streams(r.setup.src, p, &d, &n, &err), KV_OK, "%s", err.msg);
    cr_assert_eq(n, 3 * (2 + 2 + 2 + 1));   /* layers x (kv-head streams; tova per layer) */
    static const struct { int members, window, sinks, std_scope, score; } expect[] = {
        {3, 12, 0, 0, GPU_SCORE_AAS},       /* h2o: window 0.3 B */
        {3, 12, 4, 1, GPU_SCORE_MAS},       /* roco: std + sinks, r = 0.3 B */
        {3, 0, 4, 0, GPU_SCORE_RECENCY},    /* streaming: 4 sinks */
        {6, 0, 0, 0, GPU_SCORE_LTAS},       /* tova: one cache per layer */
    };
    int i = 0;   /* the descriptors follow configuration, layer, then the engine's walk */
    for (int c = 0; c < p->n_configs; c++)
        for (int l = 0; l < p->n_layers; l++) {
            const int k = count_streams(r.setup.src, p, c, l);
            for (int end = i + k; i < end; i++) {
                cr_assert_eq(d[i].layer, l, "stream %d", i);
                cr_assert_eq(d[i].n_members, expect[c].members, "stream %d", i);
                cr_assert_eq(d[i].window, expect[c].window, "stream %d", i);
                cr_assert_eq(d[i].sinks, expect[c].sinks, "stream %d", i);
                cr_assert_eq(d[i].std_scope, expect[c].std_scope, "stream %d", i);
                cr_assert_eq(d[i].score, expect[c].score, "stream %d", i);
                cr_assert_eq(d[i].budget, 40, "stream %d", i);
                cr_assert_eq(d[i].first, 40, "stream %d", i);
                for (int g = 0; g < d[i].n_members; g++) {
                    const int h = d[i].members[g];
                    cr_assert_eq(d[i].acc[g], (c * p->n_layers + l) * p->n_heads + h);
                    cr_assert_eq(d[i].kv[g], r.setup.src->kv_of_head[p->heads[h]]);
                }
            }
        }
    cr_assert_eq(i, n);
    free(d);
    run_free(&r);
}

Test(gpu_rules, what_the_kernel_has_no_rules_for_is_refused_before_any_device)
{
    run r;
    run_words(&r, "replay synth:T=100,layers=1,heads=4,kv=2,dim=8 --policy snapkv "
                  "--budget 20 --metrics mass");
    cr_assert_eq(r.rc, KV_OK, "%s", r.err.msg);
    gpu_stream_desc *d;
    int n;
    kv_err err = {0};
    cr_assert_eq(replay_gpu_streams(r.setup.src, &r.setup.plan, &d, &n, &err),
                 KV_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "snapkv") && strstr(err.msg, "run it on the CPU"), "%s", err.msg);
    cr_assert_null(d);
    run_free(&r);
}
