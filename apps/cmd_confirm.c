/*
 * cmd_confirm.c — `kvsim confirm EXPERIMENT MODEL [INPUT] [options]`: the policies of
 * policies/ inside real generation on a truly compressed cache (confirm/live.h), one
 * subcommand per experiment (confirm_experiments.h), each writing the tidy CSV + JSON
 * of confirm_cli.h.  This file holds the dispatch and `ppl`.
 * What each measures and how: docs/CONFIRM.md.
 */
#include "cmd_confirm.h"

#include "confirm_cli.h"
#include "confirm_experiments.h"
#include "perplexity.h"
#include "session.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- ppl ---------------------------------------------------------------------------- */

static const char PPL_USAGE[] =
    "usage: kvsim confirm ppl MODEL.gguf TEXT --policies A,B --budgets 128,256,512 [options]\n\n"
    "Teacher-forced perplexity and next-token accuracy of TEXT under a fixed KV cache per\n"
    "policy (the StreamingLLM experiment): every token is fed, the cache evicts, and the\n"
    "logits score the next token.  `full` runs once, without a budget.\n\n"
    "  --policies LIST     presets (default full); see kvsim policies\n"
    "  --budgets LIST      128,256,512 entries, or fractions of the text's tokens\n"
    "  --strides LIST      entries evicted at once (default 1)\n"
    "  --max-tokens N      score the first N tokens of TEXT (default 1024)\n"
    "  --prompt-tokens P   the first P tokens are the prompt (default 1): oneshot and\n"
    "                      decode phases act at its end\n"
    "  --reposition        re-rotate kept keys to positions 0..n-1 after each eviction,\n"
    "                      the next token at position n (StreamingLLM)\n"
    "  --PARAM V           any policy parameter (--sinks 4, --phase stream, ...)\n"
    "  -o FILE             CSV (default stdout)      --json FILE   the same rows\n"
    "  --threads N         CPU threads\n\n"
    "columns after docs/RESULTS.md's identifying ones: tokens ppl accuracy tail_tokens\n"
    "ppl_tail accuracy_tail (predictions at steps >= B) mean_cache (entries attended per\n"
    "stream) kv_bytes_peak tokens_per_s\n"
    "example: kvsim confirm ppl models/SmolLM2-135M-Instruct.Q4_1.gguf data/lighthouses.txt \\\n"
    "           --policies full,recency,streaming,h2o,roco --budgets 128,256,512\n";

static const char *const PPL_COLS[] = {"tokens", "ppl", "accuracy", "tail_tokens", "ppl_tail",
                                       "accuracy_tail", "mean_cache", "kv_bytes_peak",
                                       "tokens_per_s"};
#define PPL_N_COLS ((int)(sizeof PPL_COLS / sizeof *PPL_COLS))

static void ppl_row(const perplexity_result *r, double *v)
{
    const live_stats *s = &r->stats;
    v[0] = (double)r->tokens;
    v[1] = exp(r->nll / r->tokens);
    v[2] = (double)r->correct / r->tokens;
    v[3] = (double)r->tail_tokens;
    v[4] = r->tail_tokens ? exp(r->tail_nll / r->tail_tokens) : NAN;
    v[5] = r->tail_tokens ? (double)r->tail_correct / r->tail_tokens : NAN;
    v[6] = s->steps ? s->attended_sum / s->steps : NAN;
    v[7] = (double)s->kv_bytes_peak;
    v[8] = r->seconds > 0 ? s->steps / r->seconds : NAN;
}

static int ppl_run(session *s, const confirm_args *a, int n, int prompt, kv_err *err)
{
    replay_config *configs = NULL;
    int n_configs = 0;
    int rc = confirm_configs(a, n, prompt, &configs, &n_configs, err);
    double *values = rc ? NULL : calloc((size_t)n_configs * PPL_N_COLS, sizeof *values);
    int *rows = rc ? NULL : calloc((size_t)n_configs, sizeof *rows);
    if (!rc && (!values || !rows))
        rc = kv_errorf(err, KV_ENOMEM, "out of memory");
    for (int c = 0; rc == KV_OK && c < n_configs; c++) {
        perplexity_result r;
        rc = perplexity_run(s->model, s->tok, s->prompt.ids, n, &configs[c].policy,
                            a->reposition, &r, err);
        if (rc == KV_OK) {
            ppl_row(&r, values + (size_t)c * PPL_N_COLS);
            rows[c] = c;
            fprintf(stderr, "ppl: %-12s B=%-5d stride %d: ppl %.3f, accuracy %.3f (%.1f s)\n",
                    configs[c].policy.name, configs[c].policy.budget, configs[c].policy.stride,
                    values[(size_t)c * PPL_N_COLS + 1], values[(size_t)c * PPL_N_COLS + 2],
                    r.seconds);
        } else {
            kv_err_prefix(err, "policy %s: ", configs[c].policy.name);
        }
    }
    confirm_table t = {.input = a->input, .command = a->command, .configs = configs,
                       .n_configs = n_configs, .cols = PPL_COLS, .n_cols = PPL_N_COLS,
                       .row_config = rows, .values = values, .n_rows = n_configs};
    if (rc == KV_OK)
        rc = confirm_table_write(&t, a->csv, a->json, err);
    free(values);
    free(rows);
    free(configs);
    return rc;
}

int confirm_ppl(int argc, char **argv)
{
    confirm_args a;
    kv_err err = {0};
    int rc = confirm_args_parse(argc, argv, "max-tokens prompt-tokens", 1, PPL_USAGE, &a, &err);
    if (rc == 1)
        return 0;
    int max_tokens = 0, prompt = 0;
    if (!rc)
        rc = confirm_opt_int(&a, "max-tokens", 1024, 2, 1 << 30, &max_tokens, &err);
    if (!rc)
        rc = confirm_opt_int(&a, "prompt-tokens", 1, 1, 1 << 30, &prompt, &err);
    session s = {0};
    if (!rc)
        rc = confirm_open_text(&s, &a, &err);
    if (!rc) {
        int n = (int)s.prompt.n < max_tokens ? (int)s.prompt.n : max_tokens;
        rc = n < 2 ? kv_errorf(&err, KV_ERANGE, "%s: %d tokens, expected at least 2", a.input, n)
                   : ppl_run(&s, &a, n, prompt < n ? prompt : n - 1, &err);
    }
    session_close(&s);
    return rc ? confirm_fail("ppl", &err) : 0;
}

/* --- dispatch ----------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} EXPERIMENTS[] = {
    {"ppl",         confirm_ppl,         "teacher-forced perplexity and accuracy, fixed cache"},
    {"passkey",     confirm_passkey,     "passkey retrieval over lengths, depths, seeds"},
    {"fidelity",    confirm_fidelity,    "answers against the full cache's; speed and memory"},
    {"reconstruct", confirm_reconstruct, "repeat a passage just read: BLEU, ROUGE-L"},
    {"predict",     confirm_predict,     "Spearman rho per budget, replayed vs real metrics"},
};
#define N_EXPERIMENTS ((int)(sizeof EXPERIMENTS / sizeof *EXPERIMENTS))

static void print_help(FILE *f)
{
    fputs("usage: kvsim confirm EXPERIMENT MODEL.gguf [INPUT] [options]\n\n"
          "Confirm with real generation: the eviction policies run inside live inference on\n"
          "a truly compressed KV cache.  Experiments (each has --help):\n", f);
    for (int i = 0; i < N_EXPERIMENTS; i++)
        fprintf(f, "  %-12s %s\n", EXPERIMENTS[i].name, EXPERIMENTS[i].summary);
    fputs("docs: docs/CONFIRM.md\n", f);
}

int cmd_confirm(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 0; i < N_EXPERIMENTS; i++)
        if (!strcmp(argv[1], EXPERIMENTS[i].name))
            return EXPERIMENTS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "kvsim confirm: unknown experiment '%s'\n", argv[1]);
    print_help(stderr);
    return 2;
}
