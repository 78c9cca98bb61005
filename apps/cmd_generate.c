/*
 * cmd_generate.c — `kvtrace generate MODEL PROMPT --policy P --budget B [options]`:
 * `kvtrace run` with a truly compressed KV cache (confirm/live.h).  The text streams to
 * stdout; the stats go to stderr: kept entries, KV bytes (the cache allocator's own
 * count), time to first token and decode speed.
 *
 * Options are the session's (session.h) plus every policy parameter, each handed to
 * policy_config_set() as written (--policy, --budget, --stride, --phase, --sinks ...).
 * --seed seeds both the sampler and the policy.  A budget fraction resolves against
 * prompt + --max-new-tokens.  --reposition re-rotates the kept keys to contiguous
 * positions after every eviction (live.h (5)).
 */
#include "cmd_generate.h"

#include "live.h"
#include "session.h"

#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: kvtrace generate MODEL.gguf PROMPT --policy P --budget B [--stride S]\n"
    "                        [--phase stream|oneshot|decode] [--reposition] [policy options]\n"
    "                        [session options]\n";

static void print_help(void)
{
    printf("%s\n"
           "Generate a continuation of PROMPT while an eviction policy keeps each (layer, KV\n"
           "head) cache within budget B, seeing the real attention over the kept entries.\n\n"
           "policy options (any parameter of `kvsim policies`):\n"
           "  --policy P          full, streaming, h2o, mas, roco, tova, snapkv, ... \n"
           "  --budget B          0.4 = a fraction of prompt + max new tokens; 512 = entries\n"
           "  --stride S          evict S entries at once when the cache holds B + S\n"
           "  --phase PH          stream (default), oneshot, decode\n"
           "  --reposition        after each eviction, re-rotate the kept keys to positions\n"
           "                      0..n-1 and give the next token position n (StreamingLLM)\n"
           "session options:\n", usage);
    session_print_options(stdout);
    printf("  -h, --help          this help\n\n"
           "exit status: 0 success, 1 unreadable model or a prompt longer than the context,\n"
           "2 bad usage (unknown policy, bad budget, budget above the context)\n"
           "example:\n  kvtrace generate models/SmolLM2-135M-Instruct.Q4_1.gguf \"Tell me a "
           "story\" --chat --policy roco --budget 0.4\n");
}

static int set_param(policy_config *cfg, const char *key, const char *value)
{
    kv_err err = {0};
    if (!value) {
        fprintf(stderr, "kvtrace generate: --%s needs a value\n", key);
        return 2;
    }
    if (policy_config_set(cfg, key, value, &err) == KV_OK)
        return 0;
    fprintf(stderr, "kvtrace generate: %s\n", err.msg);
    return 2;
}

/* 0: run; 2: usage error (reported); -1: help printed. */
static int parse_args(int argc, char **argv, session_options *o, policy_config *cfg,
                      int *reposition)
{
    *o = session_options_default();
    *cfg = policy_config_default();
    *reposition = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 0, rc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help();
            return -1;
        }
        if (a[0] != '-' || !a[1]) {
            if (session_positional(o, "kvtrace generate", a))
                return 2;
            continue;
        }
        if (!strcmp(a, "--reposition")) {
            *reposition = 1;
            continue;
        }
        rc = session_parse_option(o, "kvtrace generate", a, v, &used);
        if (rc == 1 && a[1] == '-' && policy_param_find(a + 2))
            rc = set_param(cfg, a + 2, v), used = 1;
        else if (rc == 1)
            fprintf(stderr, "kvtrace generate: unknown option '%s'\n%s", a, usage);
        if (rc)
            return 2;
        i += used;
    }
    cfg->seed = o->sampling.seed;
    return session_check(o, "kvtrace generate", usage);
}

static void print_token(void *ctx, int32_t id)
{
    size_t len;
    const char *piece = tokenizer_piece(ctx, id, &len);
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
}

static void print_stats(const policy_config *cfg, int n_prompt, const live_output *out,
                        int streams)
{
    const live_stats *s = &out->stats;
    fprintf(stderr, "policy %s: budget %d, stride %d, %d streams\n", cfg->name ? cfg->name : "full",
            cfg->budget, cfg->stride, streams);
    fprintf(stderr, "prompt: %d tokens, TTFT %.3f s; generated: %d tokens, %.1f tokens/s\n",
            n_prompt, out->ttft_s, out->n,
            out->n && out->decode_s > 0 ? out->n / out->decode_s : 0.0);
    fprintf(stderr, "kept entries per stream: mean attended %.1f over %ld steps, final %.1f; "
            "evicted %ld\n", s->steps ? s->attended_sum / s->steps : 0.0, s->steps,
            s->kept_final, s->evicted);
    fprintf(stderr, "KV bytes (allocator): %zu final, %zu peak\n", s->kv_bytes, s->kv_bytes_peak);
}

static int generate(session *s, const session_options *o, policy_config *cfg, int reposition,
                    kv_err *err)
{
    const int n_prompt = (int)s->prompt.n, n_ctx = model_config_of(s->model)->n_ctx;
    const int T = n_prompt + o->max_new < n_ctx ? n_prompt + o->max_new : n_ctx;
    policy_config_resolve(cfg, n_prompt + o->max_new);
    cfg->prompt_len = n_prompt;
    live *lv = live_new(s->model, s->tok, cfg, T, err);
    if (!lv)
        return err->code;
    live_output out = {0};
    int rc = live_set_reposition(lv, reposition, err);
    if (rc == KV_OK)
        rc = live_generate(lv, s->sampler, s->prompt.ids, n_prompt, o->max_new, print_token,
                           s->tok, &out, err);
    printf("\n");
    fflush(stdout);
    if (rc == KV_OK)
        print_stats(cfg, n_prompt, &out, live_streams(lv));
    live_output_free(&out);
    live_free(lv);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    session_options o;
    policy_config cfg;
    int reposition;
    int rc = parse_args(argc, argv, &o, &cfg, &reposition);
    if (rc)
        return rc < 0 ? 0 : rc;
    kv_err err = {0};
    session s;
    rc = session_open(&s, &o, &err);
    if (!rc)
        rc = generate(&s, &o, &cfg, reposition, &err);
    if (rc)
        fprintf(stderr, "kvtrace generate: %s\n", err.msg);
    session_close(&s);
    return rc ? kv_err_exit_status(rc) : 0;
}
