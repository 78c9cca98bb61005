/*
 * confirm_reconstruct.c — `kvsim confirm reconstruct MODEL TEXT`: context
 * reconstruction.  The model reads a passage and is asked to repeat it word for word;
 * its greedy answer is scored against the passage itself (BLEU, ROUGE-L), under each
 * (policy, budget, stride) and the full cache.  A policy that forgot the passage
 * cannot repeat it, whatever the full cache would have said.
 *
 * Passages are consecutive runs of --passage-tokens tokens of TEXT, decoded back to
 * text; the prompt is a chat message: an instruction line, a blank line, the passage.
 * The answer may run to the passage's length + 16 tokens.  Budget fractions resolve
 * against the first passage's prompt + answer length.
 */
#include "confirm_experiments.h"

#include "confirm_cli.h"
#include "text_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: kvsim confirm reconstruct MODEL.gguf TEXT --policies A,B --budgets LIST [options]\n\n"
    "Context reconstruction: the model repeats a passage of TEXT it has just read; BLEU\n"
    "and ROUGE-L of its greedy answer against the passage, per configuration.\n\n"
    "  --policies LIST     presets (full is added)      --budgets LIST   64,128 or 0.5\n"
    "  --strides LIST      entries evicted at once (default 1)\n"
    "  --passage-tokens N  tokens per passage (default 96)\n"
    "  --passages N        passages, consecutive from the start of TEXT (default 3)\n"
    "  --reposition        re-rotate kept keys to positions 0..n-1 after each eviction\n"
    "  --PARAM V           any policy parameter     -o FILE, --json FILE, --threads N\n\n"
    "columns after the identifying ones: passages rouge_l bleu bleu_corpus generated\n"
    "mean_cache kv_bytes_peak\n";

static const char *const COLS[] = {"passages", "rouge_l", "bleu", "bleu_corpus", "generated",
                                   "mean_cache", "kv_bytes_peak"};
enum { C_PASSAGES, C_ROUGE, C_BLEU, C_CORPUS, C_GENERATED, C_CACHE, C_BYTES, N_COLS };

#define MAX_PASSAGES 64
#define INSTRUCTION "Repeat the following passage word for word.\n\n"

typedef struct passages {
    char          *text[MAX_PASSAGES];     /* the passages, decoded */
    tokenizer_ids  prompt[MAX_PASSAGES];   /* their chat prompts */
    int            n, tokens;
} passages;

static void passages_free(passages *p)
{
    for (int i = 0; i < p->n; i++) {
        free(p->text[i]);
        tokenizer_ids_free(&p->prompt[i]);
    }
}

/* Cut TEXT's tokens into passages and wrap each in the instruction. */
static int make_passages(session *s, int count, passages *p, kv_err *err)
{
    const int32_t *ids = s->prompt.ids;
    int rc = KV_OK;
    if ((int)s->prompt.n < p->tokens)
        return kv_errorf(err, KV_ERANGE, "the text has %zu tokens, fewer than one passage of %d",
                         s->prompt.n, p->tokens);
    for (int i = 0; rc == KV_OK && i < count && (i + 1) * p->tokens <= (int)s->prompt.n; i++) {
        char *passage = NULL, *message = NULL;
        rc = tokenizer_decode(s->tok, ids + (size_t)i * p->tokens, (size_t)p->tokens, &passage,
                              NULL, err);
        if (rc == KV_OK && !(message = malloc(strlen(INSTRUCTION) + strlen(passage) + 1)))
            rc = kv_errorf(err, KV_ENOMEM, "out of memory");
        if (rc == KV_OK) {
            strcat(strcpy(message, INSTRUCTION), passage);
            tokenizer_message msg = {"user", message};
            p->text[p->n] = passage;
            rc = tokenizer_chat_encode(s->tok, &msg, 1, true, &p->prompt[p->n++], err);
        } else {
            free(passage);
        }
        free(message);
    }
    return rc;
}

/* Configuration c over every passage; its means go to row v. */
static int run_config(session *s, const passages *p, const replay_config *c, int reposition,
                      double *v, kv_err *err)
{
    char *answers[MAX_PASSAGES] = {0};
    const int max_new = p->tokens + 16;
    int rc = KV_OK;
    for (int i = 0; rc == KV_OK && i < p->n; i++) {
        live_output out = {0};
        rc = confirm_generate(s, p->prompt[i].ids, (int)p->prompt[i].n, max_new, c->policy,
                              reposition, &out, err);
        if (rc == KV_OK)
            rc = tokenizer_decode(s->tok, out.tokens, (size_t)out.n, &answers[i], NULL, err);
        if (rc == KV_OK) {
            v[C_ROUGE] += text_rouge_l(answers[i], p->text[i]);
            v[C_BLEU] += text_bleu_sentence(answers[i], p->text[i]);
            v[C_GENERATED] += out.n;
            v[C_CACHE] += out.stats.steps ? out.stats.attended_sum / out.stats.steps : 0;
            v[C_BYTES] += (double)out.stats.kv_bytes_peak;
        }
        live_output_free(&out);
    }
    v[C_PASSAGES] = p->n;
    for (int k = C_ROUGE; k < N_COLS; k++)
        v[k] = k == C_CORPUS ? v[k] : v[k] / p->n;
    if (rc == KV_OK)
        v[C_CORPUS] = text_bleu_corpus((const char *const *)answers,
                                       (const char *const *)p->text, p->n);
    for (int i = 0; i < p->n; i++)
        free(answers[i]);
    return rc;
}

static int run(session *s, const confirm_args *a, const passages *p, kv_err *err)
{
    replay_config *cfgs = NULL;
    int n = 0, rc = confirm_configs(a, (int)p->prompt[0].n + p->tokens + 16, 0, &cfgs, &n, err);
    double *values = rc ? NULL : calloc((size_t)n * N_COLS, sizeof *values);
    int *rows = rc ? NULL : calloc((size_t)n, sizeof *rows);
    if (!rc && (!values || !rows))
        rc = kv_errorf(err, KV_ENOMEM, "out of memory");
    for (int c = 0; rc == KV_OK && c < n; c++) {
        double *v = values + (size_t)c * N_COLS;
        rows[c] = c;
        rc = run_config(s, p, &cfgs[c], a->reposition, v, err);
        if (rc == KV_OK)
            fprintf(stderr, "reconstruct: %-10s B=%-5d stride %-3d ROUGE-L %.3f BLEU %.1f\n",
                    cfgs[c].policy.name, cfgs[c].policy.budget, cfgs[c].policy.stride,
                    v[C_ROUGE], v[C_BLEU]);
    }
    confirm_table t = {.input = a->input, .command = a->command, .configs = cfgs,
                       .n_configs = n, .cols = COLS, .n_cols = N_COLS, .row_config = rows,
                       .values = values, .n_rows = n};
    if (rc == KV_OK)
        rc = confirm_table_write(&t, a->csv, a->json, err);
    free(values);
    free(rows);
    free(cfgs);
    return rc;
}

int confirm_reconstruct(int argc, char **argv)
{
    confirm_args a;
    kv_err err = {0};
    int rc = confirm_args_parse(argc, argv, "passage-tokens passages", 1, USAGE, &a, &err);
    if (rc == 1)
        return 0;
    char policies[1100];
    a.policies = rc ? NULL : confirm_with_full(&a, policies, sizeof policies);
    static passages p;   /* large: not on the stack */
    memset(&p, 0, sizeof p);
    int count = 3;
    if (!rc)
        rc = confirm_opt_int(&a, "passage-tokens", 96, 4, 4096, &p.tokens, &err);
    if (!rc)
        rc = confirm_opt_int(&a, "passages", 3, 1, MAX_PASSAGES, &count, &err);
    session s = {0};
    if (!rc)
        rc = confirm_open_text(&s, &a, &err);
    if (!rc)
        rc = make_passages(&s, count, &p, &err);
    if (!rc)
        rc = run(&s, &a, &p, &err);
    passages_free(&p);
    session_close(&s);
    return rc ? confirm_fail("reconstruct", &err) : 0;
}
