/*
 * test_reposition.c — StreamingLLM positions (live.h (5), kv_cache.h (3)): RoPE
 * shifts compose and agree with the forward pass's own RoPE, the cache numbers its
 * entries compactly only when asked before the first one, and the command lines take
 * --reposition.  The live driver's side is in tests/test_live.c.  On the real model.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test_shell.h"

/* The relative distance |a − b| / |b| of two head vectors. */
static double distance(const float *a, const float *b, int n)
{
    double d = 0, norm = 0;
    for (int i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        norm += (double)b[i] * b[i];
    }
    return sqrt(d / norm);
}

/* Layer 0's key of `token` after `before` other tokens, fed one per call (the same
 * matrix-vector path each time): layer 0 sees only the token's own embedding, so
 * the keys of one token at two positions differ by RoPE alone. */
static void layer0_key(model *m, int32_t token, int before, float *key)
{
    kv_err err = {0};
    kv_cache *c = model_cache_new(m, 0, &err);
    cr_assert_not_null(c, "%s", err.msg);
    for (int t = 0; t <= before; t++) {
        int32_t id = t < before ? 100 + t : token;
        cr_assert_eq(model_forward(m, c, &id, 1, MODEL_LOGITS_NONE, NULL, NULL, &err), 0, "%s",
                     err.msg);
    }
    const int hd = model_config_of(m)->head_dim;
    cr_assert_eq(kv_cache_positions(c, 0, 0)[before], before);
    memcpy(key, kv_cache_keys(c, 0, 0) + (size_t)before * hd, (size_t)hd * sizeof *key);
    kv_cache_free(c);
}

/* kv_cache.h (3): RoPE by +d then −d is the identity, and moving a key from p to p' is
 * the forward pass's RoPE at p' of the same un-rotated key. */
Test(reposition, rope_shift_inverts_and_matches_the_forward_rope)
{
    kv_err err = {0};
    model_set_threads(1);
    model *m = model_open(test_model(), &err);
    cr_assert_not_null(m, "%s", err.msg);
    const int hd = model_config_of(m)->head_dim, p = 3, p2 = 11;
    float at_p[256], at_p2[256], x[256];
    cr_assert_leq(hd, 256);
    layer0_key(m, 4235, p, at_p);
    layer0_key(m, 4235, p2, at_p2);
    cr_assert_gt(distance(at_p, at_p2, hd), 1e-2, "positions 3 and 11 rotate differently");

    memcpy(x, at_p, sizeof x);
    model_rope_shift(m, 0, x, 1, 57);
    model_rope_shift(m, 0, x, 1, -57);
    cr_assert_lt(distance(x, at_p, hd), 1e-5, "+57 then -57: %g", distance(x, at_p, hd));

    memcpy(x, at_p, sizeof x);
    model_rope_shift(m, 0, x, 1, p2 - p);
    cr_assert_lt(distance(x, at_p2, hd), 1e-5, "3 -> 11: %g", distance(x, at_p2, hd));
    model_rope_shift(m, 0, x, 1, -p2);   /* back to the un-rotated key, then RoPE at p2 */
    model_rope_shift(m, 0, x, 1, p2);
    cr_assert_lt(distance(x, at_p2, hd), 1e-5, "0 -> 11: %g", distance(x, at_p2, hd));
    model_free(m);
}

/* kv_cache.h (3): the numbering is chosen on an empty cache only. */
Test(reposition, compact_positions_are_chosen_before_the_first_entry)
{
    kv_err err = {0};
    kv_cache *c = kv_cache_new(2, 1, 8, 4, &err);
    cr_assert_not_null(c, "%s", err.msg);
    cr_assert_eq(kv_cache_set_compact_positions(c, 1), 0);
    float kv[16] = {0};
    int32_t pos[2] = {7, 9};
    cr_assert_eq(kv_cache_append(c, 0, 0, kv, kv, 8, pos, 2, &err), 0, "%s", err.msg);
    kv_cache_advance(c, 2);
    cr_assert_eq(kv_cache_rope_pos(c, 0, 0), 2, "compact: the stream's size");
    cr_assert_eq(kv_cache_rope_pos(c, 1, 0), 0, "another stream, still empty");
    cr_assert_eq(kv_cache_set_compact_positions(c, 0), KV_EUSAGE);
    kv_cache_free(c);
}

/* The command lines: kvtrace generate --reposition prints text from a chat prompt
 * longer than B, and kvsim confirm ppl --reposition gives full's perplexity at a
 * budget covering the text. */
Test(reposition, cli_generate_and_confirm_take_the_flag, .timeout = 900)
{
    char cmd[4096], out[8192];
    const char *bin = getenv("KV_BIN"), *model = test_model(), *root = getenv("KV_ROOT");
    snprintf(cmd, sizeof cmd, "%s/kvtrace generate %s 'Name three colours of the rainbow.' "
             "--chat --max-new-tokens 16 --policy streaming --budget 12 --reposition "
             "--threads 1 2>&1", bin, model);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    const char *stats = strstr(out, "policy streaming");
    cr_assert_not_null(stats, "%s", out);
    cr_assert_gt(stats - out, 10, "text before the stats: %s", out);
    int generated = 0;
    cr_assert_eq(sscanf(strstr(out, "generated: "), "generated: %d", &generated), 1, "%s", out);
    cr_assert_gt(generated, 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s/kvsim confirm ppl %s %s/data/lighthouses.txt --policies "
             "full,streaming --budgets 32,8 --max-tokens 32 --threads 1 --reposition "
             "2>/dev/null | cut -d, -f2,8,12", bin, model, root);
    cr_assert_eq(test_shell(cmd, out, sizeof out), 0, "%s", out);
    char full[64] = "", b32[64] = "", b8[64] = "";
    cr_assert_eq(sscanf(strstr(out, "full,"), "full,0,%63s", full), 1, "%s", out);
    cr_assert_eq(sscanf(strstr(out, "streaming,32,"), "streaming,32,%63s", b32), 1, "%s", out);
    cr_assert_eq(sscanf(strstr(out, "streaming,8,"), "streaming,8,%63s", b8), 1, "%s", out);
    cr_assert_str_eq(b32, full, "B = 32 covers the text:\n%s", out);
    cr_assert_str_neq(b8, full, "B = 8 evicts:\n%s", out);
}
