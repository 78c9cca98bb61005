/*
 * test_policy_config.c — the one configuration parser (policy_config_set) and the
 * registry: errors name the valid choices, nothing falls back to the full cache,
 * and every preset runs with its defaults.
 */
#include "policy_drive.h"

static void expect_error(policy_config *cfg, const char *key, const char *value,
                         const char *needle)
{
    char err[1024] = "";
    cr_assert_eq(policy_config_set(cfg, key, value, err, sizeof err), -1, "%s=%s accepted",
                 key, value);
    cr_assert(strstr(err, needle), "%s=%s: message '%s' lacks '%s'", key, value, err, needle);
}

Test(policy_config, unknown_names_are_errors_that_list_the_choices)
{
    policy_config cfg = policy_config_default();
    expect_error(&cfg, "policy", "h2oo", "h2o, mas, roco");
    expect_error(&cfg, "score", "sum", "aas, mas, ltas");
    expect_error(&cfg, "scope", "std+recent", "sinks, window, std");
    expect_error(&cfg, "scope-of", "head", "kv-head, query-head, layer");
    expect_error(&cfg, "gqa", "median", "mean, max, sum");
    expect_error(&cfg, "phase", "prefill", "stream, oneshot, decode");
    expect_error(&cfg, "windw", "3", "valid parameters: policy, score");
    expect_error(&cfg, "stride", "0", "out of range");
    expect_error(&cfg, "window", "1.5", "out of range");
    expect_error(&cfg, "budget", "0", ">= 1");
    cr_assert_str_eq(cfg.name, "full", "a failed set changed the policy");
}

Test(policy_config, keys_values_and_preset_defaults)
{
    policy_config cfg = policy_config_default();
    char err[512];
    cr_assert_eq(policy_config_set(&cfg, "policy", "tova", err, sizeof err), 0);
    cr_assert_eq(policy_config_scope_of(&cfg), POLICY_SCOPE_OF_LAYER, "tova is per layer");
    cr_assert_eq(policy_config_set(&cfg, "scope_of", "kv-head", err, sizeof err), 0);
    cr_assert_eq(policy_config_scope_of(&cfg), POLICY_SCOPE_OF_KV_HEAD);
    cr_assert_eq(policy_config_set(&cfg, "window", "12", err, sizeof err), 0);
    cr_assert_eq(cfg.window, 12);
    cr_assert_eq(policy_config_set(&cfg, "window", "0.25", err, sizeof err), 0);
    cr_assert_eq(cfg.window, -1);
    cr_assert_float_eq(cfg.window_frac, 0.25, 1e-12);
    cr_assert_eq(policy_config_set(&cfg, "scope", "std+sinks", err, sizeof err), 0);
    cr_assert_eq(cfg.scope, POLICY_SCOPE_STD | POLICY_SCOPE_SINKS);
    cr_assert_eq(policy_config_default().sinks, 4);
    cr_assert_float_eq(policy_config_default().window_frac, 0.3, 1e-12);
    cr_assert_eq(policy_config_default().recent, 10);
}

Test(policy_config, a_score_alone_composes_the_scored_policy)
{
    policy_config cfg = policy_config_default();
    char err[512];
    cr_assert_eq(policy_config_set(&cfg, "score", "mas", err, sizeof err), 0);
    cr_assert_eq(policy_config_set(&cfg, "scope", "std", err, sizeof err), 0);
    cr_assert_str_eq(cfg.name, "scored");
    cfg.budget = 8;
    policy *p = policy_new(&cfg, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_assert_eq(policy_config_of(p)->score, POLICY_SCORE_MAS);
    policy_free(p);
}

Test(policy_config, overriding_a_presets_scope_keeps_its_score)
{
    policy *p = make_policy("h2o", "scope=std+sinks,sinks=2", 8);
    cr_assert_eq(policy_config_of(p)->score, POLICY_SCORE_AAS);
    cr_assert_eq(policy_config_of(p)->scope, POLICY_SCOPE_STD | POLICY_SCOPE_SINKS);
    policy_free(p);
}

Test(policy_config, parameters_a_policy_does_not_read_are_errors)
{
    policy_config cfg = policy_config_default();
    cfg.name = "h2o";
    cfg.budget = 8;
    char err[1024] = "";
    cfg.params = "recovery=0.9";
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "'recovery' does not apply to policy 'h2o'"), "%s", err);
    cfg.params = "sinks=2";   /* h2o's window scope has no sinks */
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "'sinks'"), "%s", err);
    cfg.params = "window";
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "key=value"), "%s", err);
    cfg.name = "scored";
    cfg.params = NULL;
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "needs a score"), "%s", err);
}

Test(policy_config, a_fractional_budget_must_be_resolved_first)
{
    policy_config cfg = policy_config_default();
    char err[512] = "";
    cr_assert_eq(policy_config_set(&cfg, "policy", "mas", err, sizeof err), 0);
    cr_assert_eq(policy_config_set(&cfg, "budget", "0.4", err, sizeof err), 0);
    cr_assert_null(policy_new(&cfg, err, sizeof err));
    cr_assert(strstr(err, "policy_config_resolve"), "%s", err);
    policy_config_resolve(&cfg, 1000);
    cr_assert_eq(cfg.budget, 400);
    policy *p = policy_new(&cfg, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    policy_free(p);
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
    const policy_info *info = policy_list();
    char err[512];
    for (int i = 0; i < policy_count(); i++) {
        if (!strcmp(info[i].name, "adakv") || !strcmp(info[i].name, "scored") ||
            !strcmp(info[i].name, "oracle"))
            continue;   /* a group, a score, a future per step: tested on their own */
        for (const char *s = info[i].params; *s;) {   /* the registry's keys exist */
            char key[32];
            size_t n = strcspn(s, " ");
            snprintf(key, sizeof key, "%.*s", (int)n, s);
            cr_assert_not_null(policy_param_find(key), "%s: unknown key %s", info[i].name, key);
            s += n + (s[n] == ' ');
        }
        policy_config cfg = policy_config_default();
        cfg.name = info[i].name;
        cfg.budget = 16;
        cfg.prompt_len = 40;
        cfg.layer = 3;
        cfg.n_layers = 8;
        policy *p = policy_new(&cfg, err, sizeof err);
        cr_assert_not_null(p, "%s: %s", info[i].name, err);
        drive_log log;
        drive(p, 100, 40, busy_w, NULL, NULL, &log);
        if (!strcmp(info[i].name, "full") || !strcmp(info[i].name, "fastgen") ||
            !strcmp(info[i].name, "snapkv") || !strcmp(info[i].name, "pyramidkv"))
            cr_assert_geq(policy_size(p), 1);
        else
            cr_assert_leq(policy_size(p), policy_budget_of(p) + 8, "%s kept %d", info[i].name,
                          policy_size(p));
        policy_free(p);
    }
}
