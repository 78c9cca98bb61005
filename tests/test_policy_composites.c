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

static policy *snapkv(const char *params, int budget, int prompt_len)
{
    policy_config cfg = policy_config_default();
    cfg.name = "snapkv";
    cfg.budget = budget;
    cfg.prompt_len = prompt_len;
    return make_from(&cfg, params);
}

Test(policy_snapkv, window_votes_are_max_pooled_and_the_window_is_kept)
{
    policy *p = snapkv("obs-window=2,kernel=3,pool=max", 4, 8);
    drive(p, 8, 8, snap_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){1, 2, 6, 7}, 4);
    policy_free(p);
    p = snapkv("obs-window=2,kernel=1", 4, 8);
    drive(p, 8, 8, snap_w, NULL, NULL, NULL);
    assert_kept(p, (int[]){1, 5, 6, 7}, 4);
    policy_free(p);
}

Test(policy_snapkv, compresses_once_and_keeps_what_follows)
{
    drive_log log;
    policy *p = snapkv("obs-window=2,kernel=3", 4, 8);
    drive(p, 14, 8, snap_w, NULL, NULL, &log);
    cr_assert_eq(log.n_gone[7], 4);
    cr_assert_eq(policy_size(p), 4 + 6);
    policy_free(p);
}

Test(policy_snapkv, needs_the_prompt_length_and_an_odd_kernel)
{
    policy_config cfg = policy_config_default();
    cfg.name = "snapkv";
    cfg.budget = 4;
    char err[512] = "";
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "prompt_len"), "%s", err);
    cfg.prompt_len = 8;
    cfg.params = "kernel=4";
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "odd"), "%s", err);
    cfg.params = "phase=stream";
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "oneshot"), "%s", err);
}

/* PyramidKV, L 4, B 20, w 4, β 20, prompt 64: min = 16/20 = 0, max = 32 - 0 = 32,
 * steps = 32/3 = 10, layer l keeps 4 + 32 - 10 l = 36 26 16 6. */
Test(policy_snapkv, pyramidkv_budgets_fall_linearly_with_depth)
{
    const int want[4] = {36, 26, 16, 6};
    for (int l = 0; l < 4; l++) {
        policy_config cfg = policy_config_default();
        cfg.name = "pyramidkv";
        cfg.budget = 20;
        cfg.prompt_len = 64;
        cfg.layer = l;
        cfg.n_layers = 4;
        policy *p = make_from(&cfg, "obs-window=4");
        drive(p, 64, 64, uniform_w, NULL, NULL, NULL);
        cr_assert_eq(policy_budget_of(p), want[l], "layer %d: B %d", l, policy_budget_of(p));
        cr_assert_eq(policy_size(p), want[l]);
        policy_free(p);
    }
}

/* A prompt shorter than 2(B - w) gets the uniform budget. */
Test(policy_snapkv, pyramidkv_short_prompts_fall_back_to_uniform)
{
    policy_config cfg = policy_config_default();
    cfg.name = "pyramidkv";
    cfg.budget = 40;
    cfg.prompt_len = 50;
    cfg.layer = 0;
    cfg.n_layers = 4;
    policy *p = make_from(&cfg, "obs-window=4");
    drive(p, 50, 50, uniform_w, NULL, NULL, NULL);
    cr_assert_eq(policy_size(p), 40);
    policy_free(p);
}

/* --- fastgen --------------------------------------------------------------------- */

/* Attention on a special first token (.97 of every row): the special profile
 * recovers >= .95, so after the prompt only the special token and the newest stay. */
static double special_w(int t, int i, void *ctx)
{
    (void)ctx;
    return i == 0 ? 97.0 * t + 1 : 3.0;   /* row t: (97t+1)/(100t+1) >= .97 */
}

Test(policy_fastgen, attention_on_special_tokens_picks_the_special_profile)
{
    policy *p = make_policy("fastgen", NULL, 0);
    float row[DRIVE_MAX];
    for (int t = 0; t < 12; t++) {
        policy_entry e = {.position = t, .token = t, .flags = t == 0 ? POLICY_FLAG_SPECIAL : 0u,
                          .key_norm = NAN};
        policy_append(p, &e);
        int n = policy_size(p);
        double total = 0;
        for (int i = 0; i < n; i++)
            total += special_w(t, policy_entries(p)[i].position, NULL);
        for (int i = 0; i < n; i++)
            row[i] = (float)(special_w(t, policy_entries(p)[i].position, NULL) / total);
        policy_observe(p, row, 1);
        drive_evict(p, t, t == 9, NULL);
    }
    cr_assert_str_eq(policy_profile(p), "special");
    assert_kept(p, (int[]){0, 11}, 2);
    policy_free(p);
}

/* Uniform rows: no cheap profile recovers .95, so fastgen keeps everything. */
Test(policy_fastgen, uniform_attention_needs_the_full_cache)
{
    policy *p = make_policy("fastgen", NULL, 0);
    drive(p, 20, 10, uniform_w, NULL, NULL, NULL);
    cr_assert_str_eq(policy_profile(p), "full");
    cr_assert_eq(policy_size(p), 20);
    policy_free(p);
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
    policy *p = make_policy("fastgen", NULL, 0);
    drive(p, 30, 30, local_w, NULL, NULL, NULL);
    cr_assert_str_eq(policy_profile(p), "local");
    cr_assert_eq(policy_size(p), 11);
    cr_assert_eq(policy_entries(p)[0].position, 0);
    cr_assert_eq(policy_entries(p)[1].position, 20);
    policy_free(p);
}

/* --- adakv ----------------------------------------------------------------------- */

/* Two heads, B 2 each, floor .5 (each keeps its best 1), no window.
 *   head 0 uniform rows; head 1 rows [1] [.9 .1] [.9 .05 .05] [.9 .1]
 * t=2: 6 entries, evict 2.  MAS h0: .611 .417 .333, h1: .933 .075 .05; the floors
 *   protect position 0 of each; the layer's lowest are h1's 2 (.05) and 1 (.075).
 * t=3: h0 {0 1 2 3} h1 {0 3}: MAS h0 .521 .361 .292 .25, h1 .925 .1 -> h1's 3 (.1)
 *   and h0's 3 (.25) go.  Head 0 keeps 3 entries, head 1 one: 4 in all. */
Test(policy_adakv, heads_share_the_budget_with_a_floor)
{
    char err[256];
    policy_group *g = policy_group_new(2, err, sizeof err);
    cr_assert_not_null(g, "%s", err);
    policy *h[2];
    for (int m = 0; m < 2; m++) {
        policy_config cfg = policy_config_default();
        cfg.name = "adakv";
        cfg.budget = 2;
        cfg.group = g;
        cfg.group_member = m;
        h[m] = make_from(&cfg, "window=0,floor=0.5");
    }
    const float r1[4][4] = {{1}, {.9f, .1f}, {.9f, .05f, .05f}, {.9f, .1f}};
    int slots[4];
    for (int t = 0; t < 4; t++) {
        for (int m = 0; m < 2; m++) {
            policy_entry e = {.position = t, .token = t, .flags = 0, .key_norm = NAN};
            policy_append(h[m], &e);
            float row[4];
            int n = policy_size(h[m]);
            for (int i = 0; i < n; i++)
                row[i] = m == 0 ? 1.0f / (float)n : r1[t][i];
            policy_observe(h[m], row, 1);
        }
        policy_group_plan(g);
        for (int m = 0; m < 2; m++) {
            int due = policy_due(h[m]);
            if (due)
                cr_assert_eq(policy_evict(h[m], due, slots), due);
        }
    }
    assert_kept(h[0], (int[]){0, 1, 2}, 3);
    assert_kept(h[1], (int[]){0}, 1);
    policy_free(h[0]), policy_free(h[1]);
    policy_group_free(g);
}

Test(policy_adakv, without_a_group_is_an_error)
{
    policy_config cfg = policy_config_default();
    cfg.name = "adakv";
    cfg.budget = 4;
    char err[512] = "";
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "policy_group"), "%s", err);
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
    policy *p = make_policy("pace", "sinks=1,window=2,recent=1,stride-max=4", 6);
    drive(p, 30, 0, sink_w, NULL, NULL, &log);
    for (int t = 0; t < 30; t++)
        if (log.n_gone[t])
            cr_assert_eq(log.n_gone[t], 4, "t=%d: a block of %d", t, log.n_gone[t]);
    cr_assert_eq(log.n_gone[9], 4, "the first block comes at B + 4 = 10 entries");
    policy_free(p);
}

/* Unsettled: uniform rows keep every MAS near 1/n, above settle/n = .5/n: a block of
 * stride-min goes as soon as the cache is over budget. */
Test(policy_pace, unsettled_attention_is_evicted_at_once)
{
    drive_log log;
    policy *p = make_policy("pace", "sinks=1,window=2,recent=1,stride-max=4,settle=0.5", 6);
    drive(p, 30, 0, uniform_w, NULL, NULL, &log);
    for (int t = 6; t < 30; t++)
        cr_assert_eq(log.n_gone[t], 1, "t=%d: %d", t, log.n_gone[t]);
    policy_free(p);
}

Test(policy_pace, stride_min_above_stride_max_is_an_error)
{
    policy_config cfg = policy_config_default();
    cfg.name = "pace";
    cfg.budget = 4;
    cfg.params = "stride-min=5,stride-max=2";
    char err[512] = "";
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "stride-min"), "%s", err);
}

/* --- budget schedules ------------------------------------------------------------ */

/* B 10, L 3, d .5: Σ d^l = 1.75, B_l = floor(30 d^l / 1.75) = 17 8 4. */
Test(policy_schedules, layer_decay_is_geometric_with_mean_B)
{
    const int want[3] = {17, 8, 4};
    for (int l = 0; l < 3; l++) {
        policy_config cfg = policy_config_default();
        cfg.name = "recency";
        cfg.budget = 10;
        cfg.layer = l;
        cfg.n_layers = 3;
        policy *p = make_from(&cfg, "layer-decay=0.5");
        cr_assert_eq(policy_budget_of(p), want[l]);
        policy_free(p);
    }
}

/* recency B 4, soft 6, hard 10: B_t = floor(6 - 2 (seen - 6)/4) between:
 * seen 7 -> 5, 8 -> 5, 9 -> 4, then 4.  Sizes 1..6, then 5 5 4 4. */
Test(policy_schedules, soft_and_hard_limits_shrink_the_budget_progressively)
{
    drive_log log;
    policy *p = make_policy("recency", "soft-limit=6,hard-limit=10", 4);
    drive(p, 12, 0, uniform_w, NULL, NULL, &log);
    const int want[12] = {1, 2, 3, 4, 5, 6, 5, 5, 4, 4, 4, 4};
    for (int t = 0; t < 12; t++)
        cr_assert_eq(log.size[t], want[t], "t=%d: size %d, expected %d", t, log.size[t], want[t]);
    policy_free(p);
}

/* The decode phase pins the prompt: mas evicts only generated entries. */
Test(policy_schedules, decode_phase_counts_only_generated_entries)
{
    (void)W;
    policy *p = make_policy("mas", "phase=decode,window=0", 2);
    drive(p, 12, 6, uniform_w, NULL, NULL, NULL);
    cr_assert_eq(policy_size(p), 6 + 2);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(policy_entries(p)[i].position, i);
    policy_free(p);
}
