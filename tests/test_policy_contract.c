/*
 * test_policy_contract.c — the policy contract of policies/policy.h, proven on the
 * two policies that need no statistics: `full` and `recency`.  Each test names the
 * invariant of policy.h it checks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "policy.h"

/* Drive one stream for T tokens with uniform rows, as replay and live generation
 * do: append, observe, evict when due.  Calls `check` after every step. */
typedef void (*step_check)(const policy *p, int t, int evicted, const int *slots, void *ctx);

static void drive(policy *p, int T, int prompt_len, step_check check, void *ctx)
{
    float row[4096];
    int slots[4096];
    for (int t = 0; t < T; t++) {
        policy_entry e = {.position = t, .token = 100 + t, .flags = 0, .key_norm = NAN};
        if (t < prompt_len)
            e.flags |= POLICY_FLAG_PROMPT;
        cr_assert_eq(policy_append(p, &e), 0);
        int n = policy_size(p);
        for (int i = 0; i < n; i++)
            row[i] = 1.0f / (float)n;
        policy_observe(p, row, 1);
        if (t == prompt_len - 1)
            policy_end_prompt(p);
        int due = policy_due(p);
        int evicted = due ? policy_evict(p, due, slots) : 0;
        cr_assert_eq(evicted, due, "t=%d: asked to evict %d, evicted %d", t, due, evicted);
        if (check)
            check(p, t, evicted, slots, ctx);
    }
}

static policy *make(const char *name, int budget, int stride, policy_phase phase)
{
    policy_config cfg = policy_config_default();
    cfg.name = name;
    cfg.budget = budget;
    cfg.stride = stride;
    cfg.phase = phase;
    char err[256];
    policy *p = policy_new(&cfg, err, sizeof err);
    cr_assert_not_null(p, "policy_new(%s): %s", name, err);
    return p;
}

/* (1) slots stay in increasing position order whatever is evicted */
static void check_slot_order(const policy *p, int t, int evicted, const int *slots, void *ctx)
{
    (void)t, (void)evicted, (void)slots, (void)ctx;
    const policy_entry *e = policy_entries(p);
    for (int i = 1; i < policy_size(p); i++)
        cr_assert_lt(e[i - 1].position, e[i].position);
}

Test(policy_full, keeps_every_entry_and_is_never_due)
{
    policy *p = make("full", 8, 1, POLICY_PHASE_STREAM);
    drive(p, 100, 0, check_slot_order, NULL);
    cr_assert_eq(policy_size(p), 100);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(policy_entries(p)[i].position, i);
    policy_free(p);
}

/* (2) with budget B and stride s, eviction happens exactly when the cache holds
 * B + s entries, removes exactly s, and recency then holds exactly the last B. */
struct recency_ctx { int B, s, evictions; };

static void check_recency(const policy *p, int t, int evicted, const int *slots, void *ctx)
{
    struct recency_ctx *c = ctx;
    int n_before = policy_size(p) + evicted;
    if (evicted) {
        c->evictions++;
        cr_assert_eq(n_before, c->B + c->s, "t=%d: evicted at size %d, expected B+s=%d", t,
                     n_before, c->B + c->s);
        cr_assert_eq(evicted, c->s);
        for (int i = 0; i < evicted; i++)
            cr_assert_eq(slots[i], i, "recency evicts the oldest slots first");
        cr_assert_eq(policy_size(p), c->B);
        for (int i = 0; i < c->B; i++)
            cr_assert_eq(policy_entries(p)[i].position, t - c->B + 1 + i,
                         "t=%d slot %d: expected the last B positions", t, i);
    } else {
        cr_assert_lt(n_before, c->B + c->s, "t=%d: size %d reached B+s without eviction", t,
                     n_before);
    }
    check_slot_order(p, t, evicted, slots, ctx);
}

Test(policy_recency, keeps_exactly_the_last_B_and_evicts_s_at_B_plus_s)
{
    const int budgets[] = {1, 2, 7, 16};
    const int strides[] = {1, 2, 3, 8};
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++)
        for (size_t s = 0; s < sizeof strides / sizeof *strides; s++) {
            struct recency_ctx c = {budgets[b], strides[s], 0};
            policy *p = make("recency", c.B, c.s, POLICY_PHASE_STREAM);
            int T = 64;
            drive(p, T, 0, check_recency, &c);
            /* The first eviction comes at token B+s-1, then one every s tokens. */
            int expected = T >= c.B + c.s ? 1 + (T - (c.B + c.s)) / c.s : 0;
            cr_assert_eq(c.evictions, expected, "B=%d s=%d: %d evictions, expected %d", c.B,
                         c.s, c.evictions, expected);
            policy_free(p);
        }
}

Test(policy_recency, budget_at_least_T_equals_full)
{
    policy *p = make("recency", 50, 1, POLICY_PHASE_STREAM);
    drive(p, 50, 0, NULL, NULL);
    cr_assert_eq(policy_size(p), 50);
    policy_free(p);
}

/* (6) in the decode phase the prompt is pinned and B counts generated entries */
Test(policy_recency, decode_phase_pins_the_prompt)
{
    policy *p = make("recency", 4, 1, POLICY_PHASE_DECODE);
    drive(p, 30, 10, check_slot_order, NULL);
    cr_assert_eq(policy_size(p), 10 + 4);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(policy_entries(p)[i].position, i, "prompt entry %d was evicted", i);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(policy_entries(p)[10 + i].position, 26 + i);
    policy_free(p);
}

/* one-shot compresses the prompt to B once at its end, then keeps what comes */
Test(policy_recency, oneshot_compresses_once_at_the_end_of_the_prompt)
{
    policy *p = make("recency", 5, 1, POLICY_PHASE_ONESHOT);
    drive(p, 20, 12, NULL, NULL);
    cr_assert_eq(policy_size(p), 5 + 8);
    cr_assert_eq(policy_entries(p)[0].position, 7);
    policy_free(p);
}

/* (5) the same seed and stream give the same random draws; another stream differs */
Test(policy_contract, random_draws_depend_only_on_seed_and_stream)
{
    policy_config cfg = policy_config_default();
    cfg.seed = 42;
    cfg.stream_id = 7;
    policy *a = policy_new(&cfg, NULL, 0), *b = policy_new(&cfg, NULL, 0);
    cfg.stream_id = 8;
    policy *c = policy_new(&cfg, NULL, 0);
    uint64_t xa = policy_rand_u64(a), xb = policy_rand_u64(b), xc = policy_rand_u64(c);
    cr_assert_eq(xa, xb);
    cr_assert_neq(xa, xc);
    policy_free(a), policy_free(b), policy_free(c);
}

Test(policy_contract, unknown_policy_is_an_error_naming_the_valid_ones)
{
    policy_config cfg = policy_config_default();
    cfg.name = "h2oo";
    char err[512] = "";
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "unknown policy 'h2oo'"), "message: %s", err);
    cr_assert(strstr(err, "full") && strstr(err, "recency"), "message: %s", err);
}

Test(policy_contract, free_of_null_does_nothing) { policy_free(NULL); }

/* (4) ties evict the lowest score, then the oldest position */
Test(policy_contract, pick_lowest_breaks_ties_by_age)
{
    policy *p = make("recency", 100, 1, POLICY_PHASE_STREAM);
    for (int t = 0; t < 6; t++) {
        policy_entry e = {.position = 10 * t, .token = t, .flags = 0, .key_norm = NAN};
        policy_append(p, &e);
    }
    const float score[6] = {0.5f, 0.1f, 0.3f, 0.1f, 0.1f, 0.9f};
    int out[3];
    cr_assert_eq(policy_pick_lowest(p, score, NULL, 3, out), 3);
    cr_assert_eq(out[0], 1);
    cr_assert_eq(out[1], 3);
    cr_assert_eq(out[2], 4);
    const unsigned char evictable[6] = {1, 0, 1, 1, 0, 1};
    cr_assert_eq(policy_pick_lowest(p, score, evictable, 2, out), 2);
    cr_assert_eq(out[0], 3);
    cr_assert_eq(out[1], 2);
    policy_free(p);
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
    char err[256];
    cr_assert_eq(policy_budget_parse("0.4", &b, err, sizeof err), 0);
    cr_assert(b.is_fraction);
    cr_assert_eq(policy_budget_resolve(&b, 1000), 400);
    cr_assert_eq(policy_budget_parse("512", &b, err, sizeof err), 0);
    cr_assert(!b.is_fraction);
    cr_assert_eq(policy_budget_resolve(&b, 1000), 512);
    cr_assert_eq(policy_budget_resolve(&b, 300), 300, "a budget >= T resolves to T");
    cr_assert_eq(policy_budget_parse("1.0", &b, err, sizeof err), 0);
    cr_assert_eq(policy_budget_resolve(&b, 77), 77);
}

Test(policy_budget, zero_negative_and_malformed_are_errors)
{
    const char *bad[] = {"0", "0.0", "-3", "-0.5", "", "abc", "0.4x", "12k", "nan.", "1e400",
                         "1e2", "4.", "1.5", "inf", "."};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        policy_budget b;
        char err[256] = "";
        cr_assert_eq(policy_budget_parse(bad[i], &b, err, sizeof err), -1, "'%s' accepted",
                     bad[i]);
        cr_assert(err[0], "'%s' rejected without a message", bad[i]);
    }
}
