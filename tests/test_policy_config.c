/*
 * test_policy_config.c — the one configuration parser (policy_config_set) and the
 * registry: errors name the valid choices, nothing falls back to the full cache,
 * and every preset runs with its defaults.
 */
#include "policy_drive.h"

static void expect_error(policy_config *cfg, const char *key, const char *value,
                         const char *needle)
{
    kv_err err = {0};
    cr_assert_eq(policy_config_set(cfg, key, value, &err), KV_EUSAGE, "%s=%s accepted", key,
                 value);
    cr_assert(strstr(err.msg, needle), "%s=%s: message '%s' lacks '%s'", key, value, err.msg,
              needle);
}

Test(policy_config, unknown_names_are_errors_that_list_the_choices)
{
    policy_config cfg = policy_config_default();
    expect_error(&cfg, "policy", "h2oo", "h2o, mas, roco");
    expect_error(&cfg, "score", "sum", "aas, mas, ltas");
    expect_error(&cfg, "scope", "std+recent", "none, or sinks, window, std");
    expect_error(&cfg, "scope-of", "head", "kv-head, query-head, layer");
    expect_error(&cfg, "gqa", "median", "mean, max, sum");
    expect_error(&cfg, "phase", "prefill", "stream, oneshot, decode");
    expect_error(&cfg, "windw", "3", "valid parameters: policy, budget");
    expect_error(&cfg, "stride", "0", "out of range");
    expect_error(&cfg, "window", "1.5", "out of range");
    expect_error(&cfg, "budget", "0", ">= 1");
    cr_assert_str_eq(cfg.name, "full", "a failed set changed the policy");
}

/* The text of `key` in force for cfg. */
static const char *value_of(const policy_config *cfg, const char *key)
{
    static char buf[POLICY_VALUE_MAX];
    const char *v = policy_config_value(cfg, key, buf, sizeof buf);
    cr_assert_not_null(v, "%s has no parameter %s", cfg->name, key);
    return v;
}

Test(policy_config, keys_values_and_preset_defaults)
{
    policy_config cfg = policy_config_default();
    kv_err err = {0};
    cr_assert_eq(policy_config_set(&cfg, "policy", "tova", &err), 0);
    cr_assert_eq(policy_config_scope_of(&cfg), POLICY_SCOPE_OF_LAYER, "tova is per layer");
    cr_assert_eq(policy_config_set(&cfg, "scope_of", "kv-head", &err), 0);
    cr_assert_eq(policy_config_scope_of(&cfg), POLICY_SCOPE_OF_KV_HEAD);
    cr_assert_str_eq(value_of(&cfg, "score"), "ltas", "the preset's score");
    cr_assert_eq(policy_config_set(&cfg, "window", "12", &err), 0);
    cr_assert_str_eq(value_of(&cfg, "window"), "12");
    cr_assert_eq(policy_config_set(&cfg, "window", "0.25", &err), 0);
    cr_assert_str_eq(value_of(&cfg, "window"), "0.25", "a later value replaces an earlier");
    cr_assert_eq(cfg.n_own, 1);
    cr_assert(policy_config_is_set(&cfg, "window"));
    cr_assert(!policy_config_is_set(&cfg, "sinks"));
    cfg = policy_config_default();
    cr_assert_eq(policy_config_set(&cfg, "policy", "roco", &err), 0);
    cr_assert_str_eq(value_of(&cfg, "sinks"), "4");
    cr_assert_str_eq(value_of(&cfg, "window"), "0.3");
    cr_assert_str_eq(value_of(&cfg, "recent"), "10");
    cr_assert_str_eq(value_of(&cfg, "scope"), "std+sinks");
}

/* The rules a policy runs with: its score and scope, protections resolved. */
static policy_rules rules_of(const char *name, const char *params, int budget)
{
    policy_layer *L = make_policy(name, params, budget);
    policy_rules r;
    cr_assert_eq(policy_rules_of(stream_of(L), &r), 0, "%s has no score x scope rules", name);
    policy_layer_free(L);
    return r;
}

Test(policy_config, a_score_alone_composes_the_scored_policy)
{
    policy_config cfg = policy_config_default();
    kv_err err = {0};
    cr_assert_eq(policy_config_set(&cfg, "score", "mas", &err), 0);
    cr_assert_eq(policy_config_set(&cfg, "scope", "std", &err), 0);
    cr_assert_str_eq(cfg.name, "scored");
    policy_rules r = rules_of("scored", "score=mas,scope=std", 8);
    cr_assert_eq(r.score, POLICY_SCORE_MAS);
    cr_assert_eq(r.scope, POLICY_SCOPE_STD);
    cr_assert_eq(r.window, 2, "0.3 of B = 8");
}

Test(policy_config, overriding_a_presets_scope_keeps_its_score)
{
    policy_rules r = rules_of("h2o", "scope=std+sinks,sinks=2", 8);
    cr_assert_eq(r.score, POLICY_SCORE_AAS);
    cr_assert_eq(r.scope, POLICY_SCOPE_STD | POLICY_SCOPE_SINKS);
    cr_assert_eq(r.sinks, 2);
}

Test(policy_config, parameters_a_policy_does_not_read_are_errors)
{
    policy_config cfg = config_of("h2o", "recovery=0.9", 8, 0);
    expect_refused(&cfg, "'recovery' does not apply to policy 'h2o'");
    cfg = config_of("h2o", "sinks=2", 8, 0);   /* h2o's window scope has no sinks */
    expect_refused(&cfg, "'sinks'");
    kv_err err = {0};
    cr_assert_eq(policy_config_set_list(&cfg, "window", &err), KV_EUSAGE);
    cr_assert(strstr(err.msg, "key=value"), "%s", err.msg);
    cfg = config_of("scored", NULL, 8, 0);
    expect_refused(&cfg, "needs a score");
}

Test(policy_config, a_fractional_budget_must_be_resolved_first)
{
    policy_config cfg = policy_config_default();
    kv_err err = {0};
    cr_assert_eq(policy_config_set(&cfg, "policy", "mas", &err), 0);
    cr_assert_eq(policy_config_set(&cfg, "budget", "0.4", &err), 0);
    expect_refused(&cfg, "policy_config_resolve");
    policy_config_resolve(&cfg, 1000);
    cr_assert_eq(cfg.budget, 400);
    policy_layer_free(stream_new(&cfg));
}

/* One parameter list for several policies: each keeps what it reads. */
Test(policy_config, drop_unused_keeps_what_the_policy_reads)
{
    policy_config cfg = config_of("tova", "window=8,sinks=2", 8, 0);
    char dropped[64];
    cr_assert_eq(policy_config_drop_unused(&cfg, dropped, sizeof dropped), 2);
    cr_assert_str_eq(dropped, "window sinks");
    cr_assert_eq(cfg.n_own, 0);
    cfg = config_of("roco", "window=8,sinks=2", 8, 0);
    cr_assert_eq(policy_config_drop_unused(&cfg, dropped, sizeof dropped), 0);
    cr_assert_eq(cfg.n_own, 2);
}

/* Every preset, with its defaults, over a random-looking stream: slots stay ordered
 * (1), evictions match policy_due (2), and budget-bound policies never hold more than
 * B + stride after a step. */
static double busy_w(int t, int i, void *ctx)
{
    (void)ctx;
    return 1.0 + (double)((t * 7 + i * 13) % 11) + (i % 5 == 0 ? 20 : 0);
}

Test(policy_config, every_preset_runs_with_its_defaults)
{
    char params[1024];
    for (int i = 0; i < policy_count(); i++) {
        const policy_def *def = policy_def_at(i);
        policy_config cfg = config_of(def->name, NULL, 16, 40);
        if (!strcmp(def->name, "scored") || (def->flags & POLICY_NEEDS_FUTURE) ||
            !strcmp(def->name, "oracle"))
            continue;   /* a score, a future per step: tested on their own */
        for (const policy_def *d = def; d; d = d->base)   /* every default parses */
            for (const policy_param *pm = d->params; pm && pm->key; pm++)
                cr_assert_not_null(policy_param_find(pm->key), "%s: %s", def->name, pm->key);
        policy_params_of(def, NULL, params, sizeof params);
        policy_layer *L = stream_new_g(&cfg, 3, 8, 1);
        const float norms[100] = {0};
        drive_input in = {.w = busy_w, .keys = norms, .values = norms};
        kv_err err = {0};
        static drive_log log;   /* counts evictions per step: zeroed for each policy */
        memset(&log, 0, sizeof log);
        cr_assert_eq(drive_steps(L, 0, 100, &in, &log, &err), 0, "%s: %s", def->name, err.msg);
        const policy *p = stream_of(L);
        if (policy_layer_capacity(L) == 0)   /* a policy that may hold the sequence */
            cr_assert_geq(policy_size(p), 1);
        else
            cr_assert_leq(policy_size(p), policy_layer_capacity(L), "%s kept %d", def->name,
                          policy_size(p));
        policy_layer_free(L);
    }
}
