/*
 * test_policy_contract.c — the policy contract of policies/policy.h, proven on the
 * two policies that need no statistics: `full` and `recency`.  Each test names the
 * invariant of policy.h it checks.
 */
#include "policy_drive.h"

/* Drive one stream for T tokens with uniform rows, as replay and live generation do
 * (policy_layer_step); `check` sees the policy and the positions evicted after every
 * step. */
typedef void (*step_check)(const policy *p, int t, int evicted, const int *gone, void *ctx);

static void drive_checked(policy_layer *L, int T, step_check check, void *ctx)
{
    static drive_log log;
    const drive_input in = {.w = uniform_w};
    kv_err err = {0};
    memset(&log, 0, sizeof log);
    for (int t = 0; t < T; t++) {
        cr_assert_eq(drive_steps(L, t, t + 1, &in, &log, &err), 0, "%s", err.msg);
        if (check)
            check(stream_of(L), t, log.n_gone[t], log.gone[t], ctx);
    }
}

static policy_layer *make(const char *name, int budget, int stride, policy_phase phase,
                          int prompt_len)
{
    policy_config cfg = config_of(name, NULL, budget, prompt_len);
    cfg.stride = stride;
    cfg.phase = phase;
    return stream_new(&cfg);
}

/* (1) slots stay in increasing position order whatever is evicted */
static void check_slot_order(const policy *p, int t, int evicted, const int *gone, void *ctx)
{
    (void)t, (void)evicted, (void)gone, (void)ctx;
    const policy_entry *e = policy_entries(p);
    for (int i = 1; i < policy_size(p); i++)
        cr_assert_lt(e[i - 1].position, e[i].position);
}

Test(policy_full, keeps_every_entry_and_is_never_due)
{
    policy_layer *L = make("full", 8, 1, POLICY_PHASE_STREAM, 0);
    drive_checked(L, 100, check_slot_order, NULL);
    cr_assert_eq(policy_size(stream_of(L)), 100);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(policy_entries(stream_of(L))[i].position, i);
    policy_layer_free(L);
}

/* (2) with budget B and stride s, eviction happens exactly when the cache holds
 * B + s entries, removes exactly s, and recency then holds exactly the last B. */
struct recency_ctx { int B, s, evictions; };

static void check_recency(const policy *p, int t, int evicted, const int *gone, void *ctx)
{
    struct recency_ctx *c = ctx;
    int n_before = policy_size(p) + evicted;
    if (evicted) {
        c->evictions++;
        cr_assert_eq(n_before, c->B + c->s, "t=%d: evicted at size %d, expected B+s=%d", t,
                     n_before, c->B + c->s);
        cr_assert_eq(evicted, c->s);
        for (int i = 0; i < evicted; i++)
            cr_assert_eq(gone[i], t - (c->B + c->s) + 1 + i, "recency evicts the oldest first");
        cr_assert_eq(policy_size(p), c->B);
        for (int i = 0; i < c->B; i++)
            cr_assert_eq(policy_entries(p)[i].position, t - c->B + 1 + i,
                         "t=%d slot %d: expected the last B positions", t, i);
    } else {
        cr_assert_lt(n_before, c->B + c->s, "t=%d: size %d reached B+s without eviction", t,
                     n_before);
    }
    check_slot_order(p, t, evicted, gone, ctx);
}

Test(policy_recency, keeps_exactly_the_last_B_and_evicts_s_at_B_plus_s)
{
    const int budgets[] = {1, 2, 7, 16};
    const int strides[] = {1, 2, 3, 8};
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++)
        for (size_t s = 0; s < sizeof strides / sizeof *strides; s++) {
            struct recency_ctx c = {budgets[b], strides[s], 0};
            policy_layer *L = make("recency", c.B, c.s, POLICY_PHASE_STREAM, 0);
            int T = 64;
            drive_checked(L, T, check_recency, &c);
            /* The first eviction comes at token B+s-1, then one every s tokens. */
            int expected = T >= c.B + c.s ? 1 + (T - (c.B + c.s)) / c.s : 0;
            cr_assert_eq(c.evictions, expected, "B=%d s=%d: %d evictions, expected %d", c.B,
                         c.s, c.evictions, expected);
            policy_layer_free(L);
        }
}

Test(policy_recency, budget_at_least_T_equals_full)
{
    policy_layer *L = make("recency", 50, 1, POLICY_PHASE_STREAM, 0);
    drive_checked(L, 50, NULL, NULL);
    cr_assert_eq(policy_size(stream_of(L)), 50);
    policy_layer_free(L);
}

/* (6) in the decode phase the prompt is pinned and B counts generated entries */
Test(policy_recency, decode_phase_pins_the_prompt)
{
    policy_layer *L = make("recency", 4, 1, POLICY_PHASE_DECODE, 10);
    drive_checked(L, 30, check_slot_order, NULL);
    const policy *p = stream_of(L);
    cr_assert_eq(policy_size(p), 10 + 4);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(policy_entries(p)[i].position, i, "prompt entry %d was evicted", i);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(policy_entries(p)[10 + i].position, 26 + i);
    policy_layer_free(L);
}

/* one-shot compresses the prompt to B once at its end, then keeps what comes */
Test(policy_recency, oneshot_compresses_once_at_the_end_of_the_prompt)
{
    policy_layer *L = make("recency", 5, 1, POLICY_PHASE_ONESHOT, 12);
    drive_checked(L, 20, NULL, NULL);
    cr_assert_eq(policy_size(stream_of(L)), 5 + 8);
    cr_assert_eq(policy_entries(stream_of(L))[0].position, 7);
    policy_layer_free(L);
}

/* (5) the same seed and stream give the same random draws; another stream differs:
 * stream ids are layer · 1000 + KV head */
static uint64_t first_draw(uint64_t seed, int layer)
{
    policy_config cfg = config_of("random", NULL, 8, 0);
    cfg.seed = seed;
    policy_layer *L = stream_new_g(&cfg, layer, 30, 1);
    uint64_t x = policy_rand_u64(stream_of(L));
    policy_layer_free(L);
    return x;
}

Test(policy_contract, random_draws_depend_only_on_seed_and_stream)
{
    cr_assert_eq(first_draw(42, 7), first_draw(42, 7));
    cr_assert_neq(first_draw(42, 7), first_draw(42, 8));
    cr_assert_neq(first_draw(42, 7), first_draw(43, 7));
}

Test(policy_contract, unknown_policy_is_an_error_naming_the_valid_ones)
{
    policy_config cfg = policy_config_default();
    kv_err err = {0};
    cr_assert_eq(policy_config_set(&cfg, "policy", "h2oo", &err), KV_EUSAGE);
    cr_assert(strstr(err.msg, "unknown policy 'h2oo'"), "message: %s", err.msg);
    cr_assert(strstr(err.msg, "full") && strstr(err.msg, "recency"), "message: %s", err.msg);
    cfg.name = "h2oo";
    const int head = 0, kv = 0;
    const policy_shape one = {0, 1, 1, &head, &kv, 1, 0, 0, {NULL, 0, 0}, NULL, 0, 0};
    cr_assert_null(policy_layer_new(&cfg, &one, &err));
    cr_assert(strstr(err.msg, "unknown policy 'h2oo'"), "message: %s", err.msg);
}

Test(policy_contract, free_of_null_does_nothing) { policy_layer_free(NULL); }

/* (4) ties evict the lowest score, then the oldest position */
Test(policy_contract, pick_lowest_breaks_ties_by_age)
{
    policy_layer *L = make("recency", 100, 1, POLICY_PHASE_STREAM, 0);
    drive(L, 6, uniform_w, NULL, NULL, NULL);
    const float score[6] = {0.5f, 0.1f, 0.3f, 0.1f, 0.1f, 0.9f};
    int out[3];
    cr_assert_eq(policy_pick_lowest(stream_of(L), score, NULL, 3, out), 3);
    cr_assert_eq(out[0], 1);
    cr_assert_eq(out[1], 3);
    cr_assert_eq(out[2], 4);
    const unsigned char evictable[6] = {1, 0, 1, 1, 0, 1};
    cr_assert_eq(policy_pick_lowest(stream_of(L), score, evictable, 2, out), 2);
    cr_assert_eq(out[0], 3);
    cr_assert_eq(out[1], 2);
    policy_layer_free(L);
}

/* k = 1 (its own vectorised path) picks what the insertion path's first pick is, over
 * ties, masks, infinities, signed zeros, nothing evictable, and a NaN among the scores. */
Test(policy_contract, pick_lowest_of_one_is_the_first_of_two)
{
    enum { N = 90 };
    policy_layer *L = make("recency", 1000, 1, POLICY_PHASE_STREAM, 0);
    drive(L, N, uniform_w, NULL, NULL, NULL);
    float score[N];
    unsigned char evictable[N];
    unsigned x = 2024;
    for (int round = 0; round < 300; round++) {
        for (int i = 0; i < N; i++) {
            x = x * 1103515245u + 12345u;
            const unsigned r = (x >> 16) % 8;
            score[i] = r == 0 ? 0.0f : r == 1 ? -0.0f : r == 2 ? INFINITY
                     : (float)((x >> 8) % 5) / 4.0f;   /* few values: many ties */
            evictable[i] = round % 3 == 0 || (x >> 4) % 4 != 0;
        }
        if (round % 50 == 7)
            score[(x >> 3) % N] = NAN;
        if (round % 50 == 9)
            memset(evictable, 0, sizeof evictable);
        const unsigned char *mask = round % 2 ? evictable : NULL;
        int one[1], two[2];
        const int got = policy_pick_lowest(stream_of(L), score, mask, 1, one);
        const int want = policy_pick_lowest(stream_of(L), score, mask, 2, two);
        cr_assert_eq(got, want > 0, "round %d: %d picked", round, got);
        if (got)
            cr_assert_eq(one[0], two[0], "round %d: slot %d, not %d", round, one[0], two[0]);
    }
    policy_layer_free(L);
}

Test(policy_contract, compact_keeps_the_order_of_the_rest)
{
    int a[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    const int gone[3] = {0, 3, 6};
    policy_compact(a, sizeof a[0], 8, gone, 3);
    const int want[5] = {1, 2, 4, 5, 7};
    cr_assert_arr_eq(a, want, sizeof want);
}

Test(policy_budget, fractions_have_a_point_and_counts_do_not)
{
    policy_budget b;
    kv_err err = {0};
    cr_assert_eq(policy_budget_parse("0.4", &b, &err), 0);
    cr_assert(b.is_fraction);
    cr_assert_eq(policy_budget_resolve(&b, 1000), 400);
    cr_assert_eq(policy_budget_parse("512", &b, &err), 0);
    cr_assert(!b.is_fraction);
    cr_assert_eq(policy_budget_resolve(&b, 1000), 512);
    cr_assert_eq(policy_budget_resolve(&b, 300), 300, "a budget >= T resolves to T");
    cr_assert_eq(policy_budget_parse("1.0", &b, &err), 0);
    cr_assert_eq(policy_budget_resolve(&b, 77), 77);
}

Test(policy_budget, zero_negative_and_malformed_are_errors)
{
    const char *bad[] = {"0", "0.0", "-3", "-0.5", "", "abc", "0.4x", "12k", "nan.", "1e400",
                         "1e2", "4.", "1.5", "inf", "."};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        policy_budget b;
        kv_err err = {0};
        cr_assert_eq(policy_budget_parse(bad[i], &b, &err), KV_EUSAGE, "'%s' accepted",
                     bad[i]);
        cr_assert(err.msg[0], "'%s' rejected without a message", bad[i]);
    }
}
