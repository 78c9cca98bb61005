/*
 * test_live.c — live eviction on the real model (confirm/live.h): `full` is `kvtrace
 * run`, a budget covering the sequence changes nothing, the cache really shrinks,
 * --reposition keeps streams at contiguous positions, and bad input is refused.
 * Numbered items refer to live.h.  Generations stay short (the sanitizer build runs
 * them ten times slower).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "live.h"
#include "session.h"
#include "test_shell.h"

#define PROMPT "The capital of France is"
#define MAX_NEW 12

static session open_session(void)
{
    session_options o = session_options_default();
    o.model = test_model();
    o.prompt = PROMPT;
    o.max_new = MAX_NEW;
    o.threads = 1;   /* robust on a loaded machine: OpenMP threads spin when starved */
    session s;
    kv_err err = {0};
    cr_assert_eq(session_open(&s, &o, &err), 0, "%s", err.msg);
    return s;
}

/* cfg from "key=value,..." through policy_config_set, resolved as generate does. */
static policy_config config(const char *params, int n_prompt, int T)
{
    policy_config cfg = policy_config_default();
    kv_err err = {0};
    cr_assert_eq(policy_config_set_list(&cfg, params, &err), 0, "%s", err.msg);
    policy_config_resolve(&cfg, T);
    cfg.prompt_len = n_prompt;
    return cfg;
}

/* Generate greedily under `params`, with --reposition or without (5); the output's
 * tokens are the caller's, and so is the driver when `keep` is given. */
static live_output generate(session *s, const char *params, int reposition, live_stats *stats,
                            live **keep)
{
    const int n = (int)s->prompt.n;
    policy_config cfg = config(params, n, n + MAX_NEW);
    kv_err err = {0};
    live *lv = live_new(s->model, s->tok, &cfg, n + MAX_NEW, &err);
    cr_assert_not_null(lv, "%s: %s", params, err.msg);
    cr_assert_eq(live_set_reposition(lv, reposition, &err), 0, "%s", err.msg);
    live_output out;
    cr_assert_eq(live_generate(lv, s->sampler, s->prompt.ids, n, MAX_NEW, NULL, NULL, &out, &err),
                 0, "%s: %s", params, err.msg);
    if (stats)
        *stats = out.stats;
    if (keep)
        *keep = lv;
    else
        live_free(lv);
    return out;
}

/* (4) `full` runs the same forward calls as `kvtrace run`: the same text. */
Test(live, full_generate_is_kvtrace_run)
{
    char cmd[2048], run[4096], gen[4096];
    const char *bin = getenv("KV_BIN"), *model = test_model();
    snprintf(cmd, sizeof cmd, "%s/kvtrace run %s '%s' --max-new-tokens 24 --threads 1 "
             "2>/dev/null", bin, model, PROMPT);
    cr_assert_eq(test_shell(cmd, run, sizeof run), 0);
    snprintf(cmd, sizeof cmd, "%s/kvtrace generate %s '%s' --max-new-tokens 24 --policy full "
             "--threads 1 2>/dev/null", bin, model, PROMPT);
    cr_assert_eq(test_shell(cmd, gen, sizeof gen), 0);
    cr_assert_gt(strlen(run), 5);
    cr_assert_str_eq(gen, run);
}

/* (2) With B >= the sequence no policy evicts, so each one generates what full does. */
Test(live, a_budget_covering_the_sequence_changes_nothing, .timeout = 900)
{
    session s = open_session();
    live_output full = generate(&s, "policy=full", 0, NULL, NULL);
    cr_assert_gt(full.n, 0);
    const char *policies[] = {"streaming", "h2o", "roco", "tova", "knorm", "snapkv", "adakv",
                              "pace"};
    for (size_t i = 0; i < sizeof policies / sizeof *policies; i++) {
        char params[128];
        snprintf(params, sizeof params, "policy=%s,budget=%d", policies[i],
                 (int)s.prompt.n + MAX_NEW);
        live_stats st;
        live_output out = generate(&s, params, 0, &st, NULL);
        cr_assert_eq(st.evicted, 0, "%s evicted %ld", policies[i], st.evicted);
        cr_assert_eq(out.n, full.n, "%s", policies[i]);
        cr_assert_arr_eq(out.tokens, full.tokens, (size_t)full.n * sizeof *full.tokens, "%s",
                         policies[i]);
        live_output_free(&out);
    }
    live_output_free(&full);
    session_close(&s);
}

/* (6) The allocator's count follows B + s entries per stream, and (2) the slots the
 * policy evicts leave the cache: streaming keeps its sinks and the newest entries. */
Test(live, the_cache_shrinks_to_the_budget_and_keeps_what_the_policy_keeps)
{
    session s = open_session();
    const model_config *c = model_config_of(s.model);
    const int n = (int)s.prompt.n, T = n + MAX_NEW, B = 8;
    kv_err err = {0};
    kv_cache *empty = model_cache_new(s.model, 0, &err);
    const size_t per_entry = 2 * (size_t)c->head_dim * sizeof(float) + sizeof(int32_t);
    const size_t streams = (size_t)c->n_layer * c->n_head_kv;

    policy_config cfg = config("policy=streaming,budget=8,sinks=2", n, T);
    live *lv = live_new(s.model, s.tok, &cfg, T, &err);
    cr_assert_not_null(lv, "%s", err.msg);
    live_output out;
    cr_assert_eq(live_generate(lv, s.sampler, s.prompt.ids, n, MAX_NEW, NULL, NULL, &out, &err), 0);
    const kv_cache *cache = live_cache(lv);
    cr_assert_eq(out.stats.kv_bytes_peak, kv_cache_bytes(empty) + streams * (B + 1) * per_entry);
    const int fed = kv_cache_next_pos(cache);
    for (int l = 0; l < c->n_layer; l++)
        for (int k = 0; k < c->n_head_kv; k++) {
            cr_assert_eq(kv_cache_size(cache, l, k), B);
            const int32_t *pos = kv_cache_positions(cache, l, k);
            cr_assert(pos[0] == 0 && pos[1] == 1, "sinks of layer %d head %d", l, k);
            for (int i = 2; i < B; i++)
                cr_assert_eq(pos[i], fed - B + i);
        }
    cr_assert_float_eq(out.stats.kept_final, B, 1e-9);
    live_output_free(&out);
    live_free(lv);
    kv_cache_free(empty);
    session_close(&s);
}

/* (4) Only one token per forward once a stream may evict; a whole chunk before. */
Test(live, chunks_never_cross_an_eviction)
{
    session s = open_session();
    const int n = (int)s.prompt.n;
    kv_err err = {0};
    policy_config cfg = config("policy=h2o,budget=3,stride=2", n, 64);
    live *lv = live_new(s.model, s.tok, &cfg, 64, &err);
    cr_assert_not_null(lv, "%s", err.msg);
    cr_assert_eq(live_chunk(lv, 10), 4, "3 + 2 entries: the 4th token may evict");
    cr_assert_eq(live_feed(lv, s.prompt.ids, 4, MODEL_LOGITS_NONE, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(live_chunk(lv, 10), 1);
    live_free(lv);
    cfg = config("policy=snapkv,budget=3", n, 64);
    lv = live_new(s.model, s.tok, &cfg, 64, &err);
    cr_assert_not_null(lv, "%s", err.msg);
    cr_assert_eq(live_chunk(lv, 100), n, "a oneshot prompt goes whole, ending the chunk");
    live_free(lv);
    session_close(&s);
}

/* (1) Scopes and scores a live cache cannot serve are refused by name. */
Test(live, refuses_query_head_scope_oracle_and_oversized_budgets)
{
    session s = open_session();
    const int n = (int)s.prompt.n;
    kv_err err = {0};
    policy_config cfg = config("policy=h2o,budget=8,scope-of=query-head", n, 32);
    cr_assert_null(live_new(s.model, s.tok, &cfg, 32, &err));
    cr_assert(strstr(err.msg, "query-head"), "%s", err.msg);
    cfg = config("policy=oracle,budget=8", n, 32);
    cr_assert_null(live_new(s.model, s.tok, &cfg, 32, &err));
    cr_assert(strstr(err.msg, "replay"), "%s", err.msg);
    cfg = config("policy=h2o,budget=100000", n, 32);
    cr_assert_null(live_new(s.model, s.tok, &cfg, 32, &err));
    cr_assert_eq(err.code, KV_ERANGE);
    cr_assert(strstr(err.msg, "context"), "%s", err.msg);
    session_close(&s);
}

/* The CLI: a zero budget and an unknown policy are usage errors naming what is valid;
 * a prompt longer than the context is a runtime error. */
Test(live, generate_rejects_bad_input)
{
    char cmd[4096], out[4096];
    const char *bin = getenv("KV_BIN"), *model = test_model();
    snprintf(cmd, sizeof cmd, "%s/kvtrace generate %s hi --policy h2o --budget 0 2>&1", bin, model);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "budget"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/kvtrace generate %s hi --policy nosuch --budget 8 2>&1", bin,
             model);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "nosuch") && strstr(out, "roco"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s/kvtrace generate %s hi --policy h2o --budget 99999 2>&1", bin,
             model);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "context"), "%s", out);
    snprintf(cmd, sizeof cmd, "yes 'word ' | head -c 60000 | %s/kvtrace generate %s - --policy "
             "h2o --budget 8 2>&1", bin, model);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "context"), "%s", out);
}

/* (2) After every kind of eviction (scores, std scope, layer scope, a shared budget,
 * blocks, an adaptive stride) each cache stream holds exactly the policy's entries. */
Test(live, cache_slots_stay_aligned_with_the_policy, .timeout = 900)
{
    session s = open_session();
    const model_config *c = model_config_of(s.model);
    const int n = (int)s.prompt.n;
    const char *params[] = {"policy=h2o,budget=6,stride=2", "policy=roco,budget=7",
                            "policy=tova,budget=6", "policy=adakv,budget=6",
                            "policy=pace,budget=6", "policy=snapkv,budget=4,obs-window=2"};
    for (size_t i = 0; i < sizeof params / sizeof *params; i++) {
        kv_err err = {0};
        policy_config cfg = config(params[i], n, n + MAX_NEW);
        live *lv = live_new(s.model, s.tok, &cfg, n + MAX_NEW, &err);
        cr_assert_not_null(lv, "%s: %s", params[i], err.msg);
        live_output out;
        cr_assert_eq(live_generate(lv, s.sampler, s.prompt.ids, n, MAX_NEW, NULL, NULL, &out,
                                   &err), 0, "%s: %s", params[i], err.msg);
        cr_assert_gt(out.stats.evicted, 0, "%s evicts", params[i]);
        for (int l = 0; l < c->n_layer; l++)
            for (int k = 0; k < c->n_head_kv; k++) {
                const policy *p = live_policy(lv, l, k);
                const int32_t *pos = kv_cache_positions(live_cache(lv), l, k);
                cr_assert_eq(kv_cache_size(live_cache(lv), l, k), policy_size(p), "%s", params[i]);
                for (int j = 0; j < policy_size(p); j++)
                    cr_assert_eq(pos[j], policy_entries(p)[j].position, "%s layer %d head %d",
                                 params[i], l, k);
            }
        live_output_free(&out);
        live_free(lv);
    }
    session_close(&s);
}

/* (5) With B >= the sequence nothing is evicted, so no key moves and every token
 * takes its original position: the same tokens as without --reposition. */
Test(live, reposition_changes_nothing_while_nothing_is_evicted, .timeout = 900)
{
    session s = open_session();
    const char *policies[] = {"streaming", "h2o", "adakv"};
    for (size_t i = 0; i < sizeof policies / sizeof *policies; i++) {
        char params[128];
        snprintf(params, sizeof params, "policy=%s,budget=%d", policies[i],
                 (int)s.prompt.n + MAX_NEW);
        live_output plain = generate(&s, params, 0, NULL, NULL);
        live_output moved = generate(&s, params, 1, NULL, NULL);
        cr_assert_gt(plain.n, 0, "%s", policies[i]);
        cr_assert_eq(moved.n, plain.n, "%s", policies[i]);
        cr_assert_arr_eq(moved.tokens, plain.tokens, (size_t)plain.n * sizeof *plain.tokens,
                         "%s", policies[i]);
        live_output_free(&plain);
        live_output_free(&moved);
    }
    session_close(&s);
}

/* (5) Under eviction every stream sits at 0..n-1, per KV head when adakv's heads hold
 * different counts, and the run still generates; the choice comes before any token. */
Test(live, reposition_keeps_evicting_streams_at_contiguous_positions, .timeout = 900)
{
    session s = open_session();
    const model_config *c = model_config_of(s.model);
    const char *params[] = {"policy=streaming,budget=8,sinks=2", "policy=adakv,budget=8"};
    for (size_t i = 0; i < sizeof params / sizeof *params; i++) {
        live *lv;
        live_output out = generate(&s, params[i], 1, NULL, &lv);
        cr_assert_gt(out.n, 0, "%s", params[i]);
        cr_assert_gt(out.stats.evicted, 0, "%s", params[i]);
        const kv_cache *cache = live_cache(lv);
        for (int l = 0; l < c->n_layer; l++)
            for (int k = 0; k < c->n_head_kv; k++) {
                const int32_t *pos = kv_cache_positions(cache, l, k);
                for (int j = 0; j < kv_cache_size(cache, l, k); j++)
                    cr_assert_eq(pos[j], j, "%s: layer %d head %d slot %d at %d", params[i],
                                 l, k, j, pos[j]);
                cr_assert_eq(kv_cache_rope_pos(cache, l, k), kv_cache_size(cache, l, k));
            }
        kv_err err = {0};
        cr_assert_eq(live_set_reposition(lv, 0, &err), KV_EUSAGE, "too late after a token");
        live_output_free(&out);
        live_free(lv);
    }
    session_close(&s);
}
