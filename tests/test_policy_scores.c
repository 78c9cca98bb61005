/*
 * test_policy_scores.c — every score and scope on streams small enough to work out
 * by hand.  The arithmetic is in the comments; each test names the invariants of
 * policy.h it relies on (2: step order, 4: ties, 7: capped protections).
 */
#include "policy_drive.h"

/* Rows as full-cache weights (renormalised over the kept entries by the driver). */
static double W[DRIVE_W * DRIVE_W];

static void set_row(int t, const double *w)
{
    for (int i = 0; i <= t; i++)
        W[t * DRIVE_W + i] = w[i];
}

/* t=0 [1], t=1 [1 1], t=2 [1 1 2]: rows 1 | .5 .5 | .25 .25 .5 */
static void small_stream(void)
{
    set_row(0, (double[]){1});
    set_row(1, (double[]){1, 1});
    set_row(2, (double[]){1, 1, 2});
}

/* aas: S = 1.75, .75, .5 -> the newest goes (H2O's bias to old entries). */
Test(policy_scores, aas_evicts_the_lowest_accumulated_attention)
{
    small_stream();
    policy_layer *p = make_policy("scored", "score=aas", 2);
    drive(p, 3, table_w, W, NULL, NULL);
    assert_kept(p, (int[]){0, 1}, 2);
    policy_layer_free(p);
}

/* mas: S/c = 1.75/3 = .583, .75/2 = .375, .5/1 = .5 -> position 1 goes. */
Test(policy_scores, mas_divides_by_the_queries_that_saw_the_entry)
{
    small_stream();
    policy_layer *p = make_policy("scored", "score=mas", 2);
    drive(p, 3, table_w, W, NULL, NULL);
    assert_kept(p, (int[]){0, 2}, 2);
    float s[2];
    cr_assert_eq(policy_scores(stream_of(p), s), 0);
    cr_assert_float_eq(s[0], 1.75f / 3, 1e-6);
    cr_assert_float_eq(s[1], 0.5f, 1e-6);
    policy_layer_free(p);
}

/* ltas: the current row .25 .25 .5 ties positions 0 and 1: the oldest goes (4). */
Test(policy_scores, ltas_reads_the_current_row_and_ties_go_to_the_oldest)
{
    small_stream();
    policy_layer *p = make_policy("scored", "score=ltas", 2);
    drive(p, 3, table_w, W, NULL, NULL);
    assert_kept(p, (int[]){1, 2}, 2);
    policy_layer_free(p);
}

/* Uniform rows tie every ltas score, so ltas degenerates to recency (4). */
Test(policy_scores, all_ties_evict_in_age_order)
{
    policy_layer *p = make_policy("scored", "score=ltas", 2);
    drive(p, 5, uniform_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){3, 4}, 2);
    policy_layer_free(p);
}

/* aqas: t=2 row [.5 .1 .4] against 1/3: only position 1 is unimportant; its share of
 * important steps is 1/2 (t=1: .5 = 1/2 is not below 1/2), the others' 1 -> 1 goes. */
Test(policy_scores, aqas_counts_steps_below_the_uniform_weight)
{
    set_row(0, (double[]){1});
    set_row(1, (double[]){1, 1});
    set_row(2, (double[]){5, 1, 4});
    policy_layer *p = make_policy("scored", "score=aqas", 2);
    drive(p, 3, table_w, W, NULL, NULL);
    assert_kept(p, (int[]){0, 2}, 2);
    policy_layer_free(p);
}

/* aqas history 1: only the last step counts.  t=3 row [.05 .05 .9] over {0, 2, 3}
 * (weights 1 1 18): 0 and 2 were unimportant at t=3, score 0; position 3 scores 1.
 * The tie between 0 and 2 goes to the oldest. */
Test(policy_scores, aqas_history_forgets_older_steps)
{
    set_row(0, (double[]){1});
    set_row(1, (double[]){1, 1});
    set_row(2, (double[]){5, 1, 4});
    set_row(3, (double[]){1, 1, 1, 18});
    policy_layer *p = make_policy("scored", "score=aqas,history=1", 2);
    drive(p, 4, table_w, W, NULL, NULL);
    assert_kept(p, (int[]){2, 3}, 2);
    policy_layer_free(p);
}

/* knorm keeps small key norms: norms 3 1 2 5 .5, B 3 -> 5 goes, then 3. */
Test(policy_scores, knorm_evicts_the_largest_key_norm)
{
    const float norms[5] = {3, 1, 2, 5, 0.5f};
    policy_config cfg = config_of("knorm", NULL, 3, 0);
    policy_layer *p = stream_new_g(&cfg, 2, 30, 1);
    drive(p, 5, uniform_w, NULL, norms, NULL);
    assert_kept(p, (int[]){1, 2, 4}, 3);
    policy_layer_free(p);
}

Test(policy_scores, knorm_keeps_layers_below_skip_layers_whole_and_says_so)
{
    policy_config cfg = config_of("knorm", "skip-layers=2", 3, 0);
    policy_layer *p = stream_new_g(&cfg, 1, 30, 1);
    drive(p, 10, uniform_w, NULL, NULL, NULL);
    cr_assert_eq(policy_size(stream_of(p)), 10);
    cr_assert_eq(policy_budget_of(stream_of(p)), POLICY_BUDGET_UNLIMITED);
    policy_layer_free(p);
}

/* B = 1 with mas on uniform rows: at t=1 S/c is (1+.5)/2 = .75 against .5, so the
 * newcomer goes, every step: the first entry stays alone. */
Test(policy_scores, budget_one_keeps_one_entry)
{
    policy_layer *p = make_policy("mas", "window=0", 1);
    drive(p, 6, uniform_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){0}, 1);
    policy_layer_free(p);
}

Test(policy_scores, budget_at_least_T_never_evicts)
{
    const char *names[] = {"h2o", "mas", "roco", "tova", "scissorhands", "random", "streaming"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        policy_layer *p = make_policy(names[i], NULL, 12);
        drive(p, 12, uniform_w, NULL, NULL, NULL);
        cr_assert_eq(policy_size(stream_of(p)), 12, "%s evicted below B >= T", names[i]);
        policy_layer_free(p);
    }
}

/* Stride 3, B 2, ties in age order: nothing until 5 entries, then 3 at once. */
Test(policy_scores, stride_evicts_s_at_once_at_B_plus_s)
{
    drive_log log;
    policy_layer *p = make_policy("scored", "score=ltas,stride=3", 2);
    drive(p, 8, uniform_w, NULL, NULL, &log);
    for (int t = 0; t < 8; t++)
        cr_assert_eq(log.n_gone[t], t == 4 || t == 7 ? 3 : 0, "t=%d", t);
    cr_assert_eq(log.gone[4][0], 0);
    cr_assert_eq(log.gone[7][2], 5);
    assert_kept(p, (int[]){6, 7}, 2);
    policy_layer_free(p);
}

/* GQA: three heads' rows over 3 entries, reduced before ltas sees them.
 *   h0 .9 .05 .05   h1 0 .5 .5   h2 0 .5 .5
 *   mean .3 .35 .35 -> 0 goes;  max .9 .5 .5 -> 1 goes (tie with 2: older);
 *   sum .9 1.05 1.05 -> 0 goes. */
static const float gqa_rows[3][9] = {
    {1, 0, 0, 1, 0, 0, 1, 0, 0},
    {.5f, .5f, 0, .5f, .5f, 0, .5f, .5f, 0},
    {.9f, .05f, .05f, 0, .5f, .5f, 0, .5f, .5f},
};

static int gqa_rows_of(void *ctx, int s, const policy *p, float *rows, kv_err *err)
{
    (void)s, (void)err;
    const int t = *(const int *)ctx, n = policy_size(p);
    for (int g = 0; g < 3; g++)   /* rows of length n, packed */
        memcpy(rows + g * n, gqa_rows[t] + g * 3, sizeof(float) * (size_t)n);
    return 0;
}

static void gqa_gone(void *ctx, int s, const int *slots, int k)
{
    (void)s;
    cr_assert_eq(k, 1);
    *((int *)ctx + 1) = slots[0];
}

static void gqa_case(const char *gqa, int gone_position)
{
    char params[64];
    snprintf(params, sizeof params, "score=ltas,gqa=%s", gqa);
    policy_config cfg = config_of("scored", params, 2, 0);
    policy_layer *L = stream_new_g(&cfg, 0, 1, 3);
    const policy_io io = {gqa_rows_of, NULL, NULL, gqa_gone};
    int ctx[2] = {0, -1};
    kv_err err = {0};
    for (int t = 0; t < 3; t++) {
        ctx[0] = t;
        const policy_token tok = {.position = t, .token = t};
        cr_assert_eq(policy_layer_step(L, &tok, &io, ctx, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(ctx[1], gone_position, "gqa %s evicted %d, expected %d", gqa, ctx[1],
                 gone_position);
    policy_layer_free(L);
}

Test(policy_scores, gqa_groups_of_three_reduce_by_mean_max_or_sum)
{
    gqa_case("mean", 0);
    gqa_case("max", 1);
    gqa_case("sum", 0);
}

/* window: h2o, B 3, r 1, uniform rows.  t=3: protect 3; S = 2.08 1.08 .58 -> 2 goes.
 * From then on the newest non-window entry is always the lowest: keep 0, 1, newest. */
Test(policy_scopes, window_protects_the_newest_r)
{
    policy_layer *p = make_policy("h2o", "window=1", 3);
    drive(p, 8, uniform_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){0, 1, 7}, 3);
    policy_layer_free(p);
}

Test(policy_scopes, window_as_a_fraction_of_the_budget)
{
    policy_layer *p = make_policy("h2o", "window=0.5", 4);   /* r = 2 */
    drive(p, 9, uniform_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){0, 1, 7, 8}, 4);
    policy_layer_free(p);
    p = make_policy("h2o", "window=3", 4);
    drive(p, 9, uniform_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){0, 6, 7, 8}, 4);
    policy_layer_free(p);
}

/* std (r 2, recent 1) against window (r 2) on one stream, B 3, t=3 evicts one of 4:
 *   rows 1 | .5 .5 | .2 .2 .6 | .1 .6 .1 .2
 *   σ(0) = sqrt(.325 - .45²) = .35, σ(1) = .17, σ(2) = .25; MAS .45 .433 .35 .2
 *   std: 3 is the newest, 0 has the largest σ -> candidates 1, 2 -> 2 goes;
 *   window: 2 and 3 are the newest -> candidates 0, 1 -> 1 goes. */
static void std_stream(void)
{
    set_row(0, (double[]){1});
    set_row(1, (double[]){.5, .5});
    set_row(2, (double[]){.2, .2, .6});
    set_row(3, (double[]){.1, .6, .1, .2});
}

Test(policy_scopes, std_protects_the_newest_and_the_largest_sigma)
{
    std_stream();
    policy_layer *p = make_policy("scored", "score=mas,scope=std,window=2,recent=1", 3);
    drive(p, 4, table_w, W, NULL, NULL);
    assert_kept(p, (int[]){0, 1, 3}, 3);
    policy_layer_free(p);
    p = make_policy("scored", "score=mas,scope=window,window=2", 3);
    drive(p, 4, table_w, W, NULL, NULL);
    assert_kept(p, (int[]){0, 2, 3}, 3);
    policy_layer_free(p);
}

/* streaming = recency + sinks: the first 2 and the newest B - 2. */
Test(policy_scopes, sinks_keep_the_first_positions)
{
    policy_layer *p = make_policy("streaming", "sinks=2", 4);
    drive(p, 10, uniform_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){0, 1, 8, 9}, 4);
    policy_layer_free(p);
}

/* (7) sinks larger than B: protections are capped so that s candidates remain: the
 * oldest B stay, and the newcomer goes at once. */
Test(policy_scopes, sinks_larger_than_the_budget_keep_the_oldest_B)
{
    drive_log log;
    policy_layer *p = make_policy("streaming", "sinks=8", 4);
    drive(p, 10, uniform_w, NULL, NULL, &log);
    assert_kept(p, (int[]){0, 1, 2, 3}, 4);
    cr_assert_eq(log.gone[9][0], 9);
    policy_layer_free(p);
}

/* (3) the oracle evicts the lowest future attention, and runs only where a driver
 * gives the future. */
Test(policy_scores, oracle_uses_the_future_and_only_when_given)
{
    policy_layer *L = make_policy("oracle", NULL, 2);
    cr_assert(policy_flags(stream_of(L)) & POLICY_NEEDS_FUTURE);
    drive_input in = {.w = uniform_w};
    drive_log log = {0};
    kv_err err = {0};
    cr_assert_eq(drive_steps(L, 0, 2, &in, &log, &err), 0, "%s", err.msg);
    cr_assert_eq(drive_steps(L, 2, 3, &in, &log, &err), KV_EUSAGE, "evicted without the future");
    cr_assert(strstr(err.msg, "future"), "%s", err.msg);
    policy_layer_free(L);
    const float future[4] = {2.0f, 0.5f, 1.0f, 3.0f};
    L = make_policy("oracle", NULL, 2);
    in.future = future;
    cr_assert_eq(drive_steps(L, 0, 3, &in, &log, &err), 0, "%s", err.msg);
    cr_assert_eq(log.n_gone[2], 1);
    cr_assert_eq(log.gone[2][0], 1, "position 1 has the lowest future");
    policy_layer_free(L);
}

/* (5) random: the same seed and stream evict the same entries; another seed differs. */
static void random_run(uint64_t seed, drive_log *log)
{
    policy_config cfg = config_of("random", NULL, 8, 0);
    cfg.seed = seed;
    policy_layer *p = stream_new_g(&cfg, 3, 30, 1);
    drive(p, 64, uniform_w, NULL, NULL, log);
    policy_layer_free(p);
}

Test(policy_scores, random_is_determined_by_the_seed)
{
    static drive_log a, b, c;
    random_run(7, &a);
    random_run(7, &b);
    random_run(8, &c);
    cr_assert_arr_eq(a.gone, b.gone, sizeof a.gone);
    cr_assert_neq(memcmp(a.gone, c.gone, sizeof a.gone), 0);
    for (int t = 8; t < 64; t++)
        cr_assert_eq(a.n_gone[t], 1);
}

/* snapkv-lite (the kvcompress study's SnapKV-Lite): norms 1 9 2 3 4 .5, B 4, w 1.
 * kernel 3, t=4: older 0..3, −norm −1 −9 −2 −3 max-pooled −1 −1 −2 −2: position 2 goes
 * (tie with 3, the oldest); t=5: older 0 1 3 4, pooled −1 −1 −3 −3: position 3 goes.
 * Pooling keeps position 1 beside its neighbour despite the largest norm; kernel 1
 * (no pooling) evicts it first, then 4: {0 2 3 5}. */
Test(policy_scores, snapkv_lite_pools_the_inverted_key_norm)
{
    const float norms[6] = {1, 9, 2, 3, 4, 0.5f};
    policy_config cfg = config_of("snapkv-lite", "obs-window=1,kernel=3", 4, 0);
    policy_layer *p = stream_new_g(&cfg, 2, 30, 1);
    drive(p, 6, uniform_w, NULL, norms, NULL);
    assert_kept(p, (int[]){0, 1, 4, 5}, 4);
    policy_layer_free(p);
    cfg = config_of("snapkv-lite", "obs-window=1,kernel=1", 4, 0);
    p = stream_new_g(&cfg, 2, 30, 1);
    drive(p, 6, uniform_w, NULL, norms, NULL);
    assert_kept(p, (int[]){0, 2, 3, 5}, 4);
    policy_layer_free(p);
}
