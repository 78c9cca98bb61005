/*
 * test_policy_composites.c — snapkv, pyramidkv, fastgen, adakv, pace and the budget
 * schedules (layer-decay, soft/hard limits), on streams worked out by hand.
 */
#include "policy_drive.h"

static double W[DRIVE_W * DRIVE_W];

/* --- snapkv ---------------------------------------------------------------------- */

/* Prompt of 8, w 2, B 4.  Rows 6 and 7 vote; over the prefix 0..5:
 *   row 6 = 0 .3 0 0 .1 0 | .6        row 7 = 0 .1 0 0 0 .2 | .1 .6
 *   votes      0 .4 0 0 .1 .2
 *   max k=3   .4 .4 .4 .1 .2 .2  -> evict 3, 4, 5, 0 (ties: oldest)  -> keep 1 2 | 6 7
 *   kernel 1   0 .4 0 0 .1 .2    -> evict 0, 2, 3, 4                 -> keep 1 5 | 6 7 */
static double snap_w(int t, int i, void *ctx)
{
    (void)ctx;
    static const double r6[7] = {0, .3, 0, 0, .1, 0, .6}, r7[8] = {0, .1, 0, 0, 0, .2, .1, .6};
    return t == 6 ? r6[i] : t == 7 ? r7[i] : 1.0;
}

static policy_layer *snapkv(const char *params, int budget, int prompt_len)
{
    policy_config cfg = config_of("snapkv", params, budget, prompt_len);
    return stream_new(&cfg);
}

Test(policy_snapkv, window_votes_are_max_pooled_and_the_window_is_kept)
{
    policy_layer *p = snapkv("obs-window=2,kernel=3,pool=max", 4, 8);
    drive(p, 8, snap_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){1, 2, 6, 7}, 4);
    policy_layer_free(p);
    p = snapkv("obs-window=2,kernel=1", 4, 8);
    drive(p, 8, snap_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){1, 5, 6, 7}, 4);
    policy_layer_free(p);
}

Test(policy_snapkv, compresses_once_and_keeps_what_follows)
{
    drive_log log;
    policy_layer *p = snapkv("obs-window=2,kernel=3", 4, 8);
    drive(p, 14, snap_w, NULL, NULL, &log);
    cr_assert_eq(log.n_gone[7], 4);
    cr_assert_eq(policy_size(stream_of(p)), 4 + 6);
    policy_layer_free(p);
}

Test(policy_snapkv, needs_the_prompt_length_and_an_odd_kernel)
{
    policy_config cfg = config_of("snapkv", NULL, 4, 0);
    expect_refused(&cfg, "prompt_len");
    cfg = config_of("snapkv", "kernel=4", 4, 8);
    expect_refused(&cfg, "odd");
    cfg = config_of("snapkv", "phase=stream", 4, 8);
    expect_refused(&cfg, "oneshot");
}

/* PyramidKV, L 4, B 20, w 4, β 20, prompt 64: min = 16/20 = 0, max = 32 - 0 = 32,
 * layer l keeps 4 + 32 - ⌈32 l/3⌉ = 36 25 14 4, mean 19.75 <= B (KVCache-Factory's
 * ⌊32/3⌋ = 10 steps gave 36 26 16 6, mean 21 > B: #18 item 6). */
Test(policy_snapkv, pyramidkv_budgets_fall_linearly_with_depth)
{
    const int want[4] = {36, 25, 14, 4};
    for (int l = 0; l < 4; l++) {
        policy_config cfg = config_of("pyramidkv", "obs-window=4", 20, 64);
        policy_layer *p = stream_new_g(&cfg, l, 4, 1);
        drive(p, 64, uniform_w, NULL, NULL, NULL);
        const int B = policy_budget_of(stream_of(p));
        cr_assert_eq(B, want[l], "layer %d: B %d", l, B);
        cr_assert_eq(policy_size(stream_of(p)), want[l]);
        policy_layer_free(p);
    }
}

/* #18 item 6: a budget is a budget.  Over SmolLM2's 30 layers, for budgets from tight
 * to loose, the layers keep B on average (at most half an entry under it). */
Test(policy_snapkv, pyramidkv_layers_average_the_budget)
{
    const int budgets[] = {12, 16, 24, 40, 56};   /* q = 120 >= 2(B - w): all pyramids */
    for (int b = 0; b < 5; b++) {
        double sum = 0;
        for (int l = 0; l < 30; l++) {
            policy_config cfg = config_of("pyramidkv", "obs-window=8", budgets[b], 120);
            policy_layer *p = stream_new_g(&cfg, l, 30, 1);
            drive(p, 120, uniform_w, NULL, NULL, NULL);
            sum += policy_size(stream_of(p));
            policy_layer_free(p);
        }
        cr_assert_leq(sum / 30, budgets[b], "B %d: mean kept %.2f", budgets[b], sum / 30);
        cr_assert_geq(sum / 30, budgets[b] - 0.5, "B %d: mean kept %.2f", budgets[b], sum / 30);
    }
}

/* A prompt shorter than 2(B - w) gets the uniform budget. */
Test(policy_snapkv, pyramidkv_short_prompts_fall_back_to_uniform)
{
    policy_config cfg = config_of("pyramidkv", "obs-window=4", 40, 50);
    policy_layer *p = stream_new_g(&cfg, 0, 4, 1);
    drive(p, 50, uniform_w, NULL, NULL, NULL);
    cr_assert_eq(policy_size(stream_of(p)), 40);
    policy_layer_free(p);
}

/* --- fastgen --------------------------------------------------------------------- */

/* Attention on a special first token (.97 of every row): the special profile
 * recovers >= .95, so after the prompt only the special token and the newest stay. */
static double special_w(int t, int i, void *ctx)
{
    (void)ctx;
    return i == 0 ? 97.0 * t + 1 : 3.0;   /* row t: (97t+1)/(100t+1) >= .97 */
}

/* The profile fastgen chose, from policy_describe ("profile=special recovered=..."). */
static const char *profile(const policy_layer *L, char *buf, size_t len)
{
    policy_describe(stream_of(L), buf, len);
    char *end = strchr(buf, ' ');
    if (end)
        *end = '\0';
    return buf;
}

Test(policy_fastgen, attention_on_special_tokens_picks_the_special_profile)
{
    char buf[128];
    policy_config cfg = config_of("fastgen", NULL, 0, 10);
    policy_layer *p = stream_new(&cfg);
    drive_input in = {.w = special_w, .flags = {POLICY_FLAG_SPECIAL}};
    kv_err err = {0};
    cr_assert_eq(drive_steps(p, 0, 12, &in, NULL, &err), 0, "%s", err.msg);
    cr_assert_str_eq(profile(p, buf, sizeof buf), "profile=special");
    assert_kept(p, (int[]){0, 11}, 2);
    policy_layer_free(p);
}

/* Uniform rows: no cheap profile recovers .95, so fastgen keeps everything. */
Test(policy_fastgen, uniform_attention_needs_the_full_cache)
{
    char buf[128];
    policy_config cfg = config_of("fastgen", NULL, 0, 10);
    policy_layer *p = stream_new(&cfg);
    drive(p, 20, uniform_w, NULL, NULL, NULL);
    cr_assert_str_eq(profile(p, buf, sizeof buf), "profile=full");
    cr_assert_eq(policy_size(stream_of(p)), 20);
    policy_layer_free(p);
}

/* Rows split .5/.5 between the newest and the previous token.  Frequent (top S) never
 * holds t-1 (S .5 < 1), local holds it from t = 3 (1 <= .3(t+1)):
 *   frequent recovers (1 + .5·29)/30 = .517, local (1 + .5 + .5 + 27)/30 = .967.
 * At the end of the prompt (len 30) local keeps distance <= 9: positions 20..29; the 9
 * frequent are 0 (S = 1 + .5, its first row was all its own) and eight of the S = 1
 * entries, ties to the newest: 21..28.  Eleven entries stay: 0 and 20..29. */
static double local_w(int t, int i, void *ctx)
{
    (void)ctx;
    return i == t || i == t - 1 ? 1.0 : 0.0;
}

Test(policy_fastgen, attention_on_neighbours_picks_the_local_profile)
{
    char buf[128];
    policy_config cfg = config_of("fastgen", NULL, 0, 30);
    policy_layer *p = stream_new(&cfg);
    drive(p, 30, local_w, NULL, NULL, NULL);
    cr_assert_str_eq(profile(p, buf, sizeof buf), "profile=local");
    cr_assert_eq(policy_size(stream_of(p)), 11);
    cr_assert_eq(policy_entries(stream_of(p))[0].position, 0);
    cr_assert_eq(policy_entries(stream_of(p))[1].position, 20);
    policy_layer_free(p);
}

/* --- adakv ----------------------------------------------------------------------- */

/* Two heads, B 2 each, floor .5 (each keeps its best 1), no window.
 *   head 0 uniform rows; head 1 rows [1] [.9 .1] [.9 .05 .05] [.9 .1]
 * t=2: 6 entries, evict 2.  MAS h0: .611 .417 .333, h1: .933 .075 .05; the floors
 *   protect position 0 of each; the layer's lowest are h1's 2 (.05) and 1 (.075).
 * t=3: h0 {0 1 2 3} h1 {0 3}: MAS h0 .521 .361 .292 .25, h1 .925 .1 -> h1's 3 (.1)
 *   and h0's 3 (.25) go.  Head 0 keeps 3 entries, head 1 one: 4 in all. */
static int adakv_rows(void *ctx, int s, const policy *p, float *rows, kv_err *err)
{
    (void)err;
    static const float r1[4][4] = {{1}, {.9f, .1f}, {.9f, .05f, .05f}, {.9f, .1f}};
    const int t = *(const int *)ctx, n = policy_size(p);
    for (int i = 0; i < n; i++)
        rows[i] = s == 0 ? 1.0f / (float)n : r1[t][i];
    return 0;
}

Test(policy_adakv, heads_share_the_budget_with_a_floor)
{
    policy_config cfg = config_of("adakv", "window=0,floor=0.5", 2, 0);
    const int head_id[2] = {0, 1}, kv_of[2] = {0, 1};
    const policy_shape two = {0, 1, 2, head_id, kv_of, 2, 0, 0, {NULL, 0, 0}, NULL, 0, 0};
    kv_err err = {0};
    policy_layer *L = policy_layer_new(&cfg, &two, &err);
    cr_assert_not_null(L, "%s", err.msg);
    cr_assert_eq(policy_layer_streams(L), 2);
    const policy_io io = {adakv_rows, NULL, NULL, NULL};
    for (int t = 0; t < 4; t++) {
        const policy_token tok = {.position = t, .token = t};
        cr_assert_eq(policy_layer_step(L, &tok, &io, &t, &err), 0, "%s", err.msg);
    }
    const policy *h0 = policy_layer_stream(L, 0), *h1 = policy_layer_stream(L, 1);
    cr_assert_eq(policy_size(h0), 3);
    cr_assert_eq(policy_size(h1), 1);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(policy_entries(h0)[i].position, i);
    cr_assert_eq(policy_entries(h1)[0].position, 0);
    policy_layer_free(L);
}

/* #18 item 8: adakv one-shot (kvpress's AdaKVPress).  The same two heads with a
 * 4-token prompt: nothing goes while it streams; at its end the layer plans once,
 * 8 entries down to H·B = 4.  MAS at t=3: h0 .521 .361 .292 .25; h1 (row 3 is
 * [.9 .1 0 0]) .925 .083 .025 0.  The floors keep position 0 of each; the lowest four
 * of the rest are h1's 3, 2, 1 and h0's 3.  The 2 generated tokens are kept. */
static int adakv_oneshot_rows(void *ctx, int s, const policy *p, float *rows, kv_err *err)
{
    const int t = *(const int *)ctx, n = policy_size(p);
    if (t < 4)
        return adakv_rows(ctx, s, p, rows, err);
    for (int i = 0; i < n; i++)
        rows[i] = 1.0f / (float)n;
    return 0;
}

Test(policy_adakv, oneshot_plans_the_layer_once_when_the_prompt_ends)
{
    policy_config cfg = config_of("adakv", "window=0,floor=0.5,phase=oneshot", 2, 4);
    const int head_id[2] = {0, 1}, kv_of[2] = {0, 1};
    const policy_shape two = {0, 1, 2, head_id, kv_of, 2, 0, 0, {NULL, 0, 0}, NULL, 0, 0};
    kv_err err = {0};
    policy_layer *L = policy_layer_new(&cfg, &two, &err);
    cr_assert_not_null(L, "oneshot is supported: %s", err.msg);
    const policy_io io = {adakv_oneshot_rows, NULL, NULL, NULL};
    const policy *h0 = policy_layer_stream(L, 0), *h1 = policy_layer_stream(L, 1);
    for (int t = 0; t < 6; t++) {
        const policy_token tok = {.position = t, .token = t,
                                  .flags = t < 4 ? POLICY_FLAG_PROMPT : 0};
        cr_assert_eq(policy_layer_step(L, &tok, &io, &t, &err), 0, "%s", err.msg);
        if (t < 3)
            cr_assert_eq(policy_size(h0) + policy_size(h1), 2 * (t + 1), "t=%d", t);
        if (t == 3)
            cr_assert_eq(policy_size(h0) + policy_size(h1), 4, "down to H·B at once");
    }
    const int want0[] = {0, 1, 2, 4, 5}, want1[] = {0, 4, 5};
    cr_assert_eq(policy_size(h0), 5);
    cr_assert_eq(policy_size(h1), 3);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(policy_entries(h0)[i].position, want0[i], "h0 slot %d", i);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(policy_entries(h1)[i].position, want1[i], "h1 slot %d", i);
    policy_layer_free(L);
}

/* --- pace ------------------------------------------------------------------------ */

/* Settled: every row puts .9 on position 0; the others share .1, far below 1/n, and
 * barely move.  The cache runs to B + stride-max and drops stride-max at once. */
static double sink_w(int t, int i, void *ctx)
{
    (void)ctx;
    return i == 0 ? 9.0 * t + 1 : 1.0;
}

Test(policy_pace, settled_attention_is_evicted_in_large_blocks)
{
    drive_log log;
    policy_layer *p = make_policy("pace", "sinks=1,window=2,recent=1,stride-max=4", 6);
    drive(p, 30, sink_w, NULL, NULL, &log);
    for (int t = 0; t < 30; t++)
        if (log.n_gone[t])
            cr_assert_eq(log.n_gone[t], 4, "t=%d: a block of %d", t, log.n_gone[t]);
    cr_assert_eq(log.n_gone[9], 4, "the first block comes at B + 4 = 10 entries");
    policy_layer_free(p);
}

/* Unsettled: uniform rows keep every MAS near 1/n, above settle/n = .5/n: a block of
 * stride-min goes as soon as the cache is over budget. */
Test(policy_pace, unsettled_attention_is_evicted_at_once)
{
    drive_log log;
    policy_layer *p = make_policy("pace", "sinks=1,window=2,recent=1,stride-max=4,settle=0.5", 6);
    drive(p, 30, uniform_w, NULL, NULL, &log);
    for (int t = 6; t < 30; t++)
        cr_assert_eq(log.n_gone[t], 1, "t=%d: %d", t, log.n_gone[t]);
    policy_layer_free(p);
}

Test(policy_pace, stride_min_above_stride_max_is_an_error)
{
    policy_config cfg = config_of("pace", "stride-min=5,stride-max=2", 4, 0);
    expect_refused(&cfg, "stride-min");
}

/* --- budget schedules ------------------------------------------------------------ */

/* B 10, L 3, d .5: Σ d^l = 1.75, B_l = floor(30 d^l / 1.75) = 17 8 4. */
Test(policy_schedules, layer_decay_is_geometric_with_mean_B)
{
    const int want[3] = {17, 8, 4};
    for (int l = 0; l < 3; l++) {
        policy_config cfg = config_of("recency", "layer-decay=0.5", 10, 0);
        policy_layer *p = stream_new_g(&cfg, l, 3, 1);
        cr_assert_eq(policy_budget_of(stream_of(p)), want[l]);
        policy_layer_free(p);
    }
}

/* recency B 4, soft 6, hard 10: B_t = floor(6 - 2 (seen - 6)/4) between:
 * seen 7 -> 5, 8 -> 5, 9 -> 4, then 4.  Sizes 1..6, then 5 5 4 4. */
Test(policy_schedules, soft_and_hard_limits_shrink_the_budget_progressively)
{
    drive_log log;
    policy_layer *p = make_policy("recency", "soft-limit=6,hard-limit=10", 4);
    drive(p, 12, uniform_w, NULL, NULL, &log);
    const int want[12] = {1, 2, 3, 4, 5, 6, 5, 5, 4, 4, 4, 4};
    for (int t = 0; t < 12; t++)
        cr_assert_eq(log.size[t], want[t], "t=%d: size %d, expected %d", t, log.size[t], want[t]);
    policy_layer_free(p);
}

/* The decode phase pins the prompt: mas evicts only generated entries. */
Test(policy_schedules, decode_phase_counts_only_generated_entries)
{
    (void)W;
    policy_config cfg = config_of("mas", "phase=decode,window=0", 2, 6);
    policy_layer *p = stream_new(&cfg);
    drive(p, 12, uniform_w, NULL, NULL, NULL);
    cr_assert_eq(policy_size(stream_of(p)), 6 + 2);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(policy_entries(stream_of(p))[i].position, i);
    policy_layer_free(p);
}
