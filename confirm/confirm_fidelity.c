/*
 * confirm_fidelity.c — `kvsim confirm fidelity MODEL PROMPTS`: how far generation
 * under each (policy, budget, stride) drifts from the full cache's, prompt by prompt,
 * and what it costs: the generation-fidelity experiment and the speed/memory table.
 *
 * Every prompt (one per line of PROMPTS, as a chat message unless --chat 0) is first
 * answered greedily with the full cache; each configuration's greedy answer is then
 * compared with it: ROUGE-L, BLEU (sentence, and corpus over the prompts), METEOR
 * (exact), token agreement and first divergence (analysis/text_metrics.h).  A line
 * per configuration holds the means over the prompts; `full` is always run and
 * written first.  Budget fractions resolve per prompt (prompt + max new tokens):
 * `budget` is the first prompt's, `budget_mean` the mean.
 *
 * Tasks with references (summarization, instruction following): a line may be
 * "PROMPT<TAB>REFERENCE"; every configuration's answer (the full cache's too) is then
 * also scored against the reference answer (`*_ref` columns, means over the prompts
 * that have one; empty when none has).
 */
#include "confirm.h"

#include "text_metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const COLS[] = {"prompts", "rouge_l", "bleu", "bleu_corpus", "meteor",
                                   "token_agreement", "first_divergence", "generated",
                                   "mean_cache", "kv_bytes_peak", "ttft_s", "tokens_per_s",
                                   "budget_mean", "rouge_l_ref", "bleu_ref", "bleu_corpus_ref",
                                   "meteor_ref"};
enum { C_PROMPTS, C_ROUGE, C_BLEU, C_CORPUS, C_METEOR, C_AGREE, C_DIVERGE, C_GENERATED,
       C_CACHE, C_BYTES, C_TTFT, C_TPS, C_BUDGET, C_ROUGE_REF, C_BLEU_REF, C_CORPUS_REF,
       C_METEOR_REF, N_COLS };

#define MAX_PROMPTS 256

/* One prompt: its ids, and the full cache's answer. */
typedef struct prompt {
    tokenizer_ids ids;
    live_output   full;
    char         *full_text;
    char         *reference;   /* the reference answer after a tab, or NULL */
} prompt;

typedef struct run_state {
    session               *s;
    const confirm_request *a;
    prompt              p[MAX_PROMPTS];
    int                 n, max_new;
    const char         *hyps[MAX_PROMPTS];   /* one configuration's answers, for corpus BLEU */
    const char         *refs[MAX_PROMPTS];
    int                 n_refs;               /* prompts with a reference answer */
} run_state;

/* --- prompts ------------------------------------------------------------------------- */

static int encode(run_state *r, char *line, int chat, kv_err *err)
{
    prompt *p = &r->p[r->n++];
    char *tab = strchr(line, '\t');
    if (tab) {   /* PROMPT<TAB>REFERENCE */
        *tab = '\0';
        if (!(p->reference = strdup(tab + 1)))
            return kv_errorf(err, KV_ENOMEM, "out of memory");
        r->n_refs++;
    }
    if (chat) {
        tokenizer_message msg = {"user", line};
        return tokenizer_chat_encode(r->s->tok, &msg, 1, true, &p->ids, err);
    }
    return tokenizer_encode(r->s->tok, line, strlen(line),
                            TOKENIZER_ADD_SPECIAL | TOKENIZER_PARSE_SPECIAL, &p->ids, err);
}

static int read_prompts(run_state *r, int chat, kv_err *err)
{
    FILE *f = fopen(r->a->input, "r");
    if (!f)
        return kv_errorf(err, KV_EIO, "%s: cannot open the prompts", r->a->input);
    char line[8192];
    int rc = KV_OK;
    while (rc == KV_OK && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[strspn(line, " \t")])
            continue;
        rc = r->n < MAX_PROMPTS ? encode(r, line, chat, err)
                                : kv_errorf(err, KV_ERANGE, "%s: more than %d prompts",
                                            r->a->input, MAX_PROMPTS);
    }
    fclose(f);
    if (rc == KV_OK && r->n == 0)
        rc = kv_errorf(err, KV_ERANGE, "%s: no prompts (one per line expected)", r->a->input);
    return rc;
}

static void release(run_state *r)
{
    for (int i = 0; i < r->n; i++) {
        tokenizer_ids_free(&r->p[i].ids);
        live_output_free(&r->p[i].full);
        free(r->p[i].full_text);
        free(r->p[i].reference);
    }
}

/* --- one configuration ------------------------------------------------------------ */

/* Configuration c as it resolves for prompt i (fractions of its own length). */
static int config_for(const run_state *r, int i, int c, replay_config *out, kv_err *err)
{
    replay_config *cfgs = NULL;
    int n = 0, rc = confirm_configs(r->a, (int)r->p[i].ids.n + r->max_new, 0, 1, &cfgs, &n,
                                    err);
    if (!rc)
        *out = cfgs[c];
    free(cfgs);
    return rc;
}

/* Compare one answer with the full cache's and add it to row v. */
static int score(run_state *r, int i, const live_output *out, double *v, char **text,
                 kv_err *err)
{
    const prompt *p = &r->p[i];
    int rc = tokenizer_decode(r->s->tok, out->tokens, (size_t)out->n, text, NULL, err);
    if (rc)
        return rc;
    v[C_ROUGE] += text_rouge_l(*text, p->full_text);
    v[C_BLEU] += text_bleu_sentence(*text, p->full_text);
    v[C_METEOR] += text_meteor_exact(*text, p->full_text);
    v[C_AGREE] += text_token_agreement(out->tokens, out->n, p->full.tokens, p->full.n);
    v[C_DIVERGE] += text_first_divergence(out->tokens, out->n, p->full.tokens, p->full.n);
    v[C_GENERATED] += out->n;
    v[C_CACHE] += out->stats.steps ? out->stats.attended_sum / out->stats.steps : 0;
    v[C_BYTES] += (double)out->stats.kv_bytes_peak;
    v[C_TTFT] += out->ttft_s;
    v[C_TPS] += out->n && out->decode_s > 0 ? out->n / out->decode_s : 0;
    if (p->reference) {
        v[C_ROUGE_REF] += text_rouge_l(*text, p->reference);
        v[C_BLEU_REF] += text_bleu_sentence(*text, p->reference);
        v[C_METEOR_REF] += text_meteor_exact(*text, p->reference);
    }
    return KV_OK;
}

/* The *_ref columns: means over the prompts with a reference, corpus BLEU over them. */
static void reference_means(run_state *r, double *v)
{
    const char *hyps[MAX_PROMPTS], *refs[MAX_PROMPTS];
    int n = 0;
    for (int i = 0; i < r->n; i++)
        if (r->p[i].reference)
            hyps[n] = r->hyps[i], refs[n++] = r->p[i].reference;
    for (int k = C_ROUGE_REF; k <= C_METEOR_REF; k++)
        v[k] = n ? v[k] / n : NAN;
    v[C_CORPUS_REF] = n ? text_bleu_corpus(hyps, refs, n) : NAN;
}

/* Run configuration c over every prompt; its means go to row v. */
static int measure(void *ctx, const replay_config *first, int c, double *v, char *note,
                   size_t len, kv_err *err)
{
    (void)first;   /* resolved against the first prompt; each prompt resolves its own */
    run_state *r = ctx;
    char *texts[MAX_PROMPTS] = {0};
    int rc = KV_OK;
    for (int i = 0; rc == KV_OK && i < r->n; i++) {
        replay_config cfg;
        live_output out = {0};
        rc = config_for(r, i, c, &cfg, err);
        if (!rc)
            rc = confirm_generate(r->s, r->p[i].ids.ids, (int)r->p[i].ids.n, r->max_new,
                                  cfg.policy, r->a->reposition, &out, err);
        if (!rc)
            rc = score(r, i, &out, v, &texts[i], err);
        v[C_BUDGET] += cfg.policy.budget;
        r->hyps[i] = texts[i] ? texts[i] : "";
        r->refs[i] = r->p[i].full_text;
        live_output_free(&out);
    }
    v[C_PROMPTS] = r->n;
    for (int k = C_ROUGE; k < C_ROUGE_REF; k++)
        if (k != C_CORPUS)
            v[k] /= r->n;
    if (rc == KV_OK) {
        v[C_CORPUS] = text_bleu_corpus(r->hyps, r->refs, r->n);
        reference_means(r, v);
    }
    for (int i = 0; i < r->n; i++)
        free(texts[i]);
    snprintf(note, len, "ROUGE-L %.3f BLEU %.1f agreement %.3f, %.1f tokens/s", v[C_ROUGE],
             v[C_BLEU], v[C_AGREE], v[C_TPS]);
    return rc;
}

/* The full cache's answers: the references. */
static int run_references(run_state *r, kv_err *err)
{
    policy_config full = policy_config_default();
    int rc = KV_OK;
    for (int i = 0; rc == KV_OK && i < r->n; i++) {
        prompt *p = &r->p[i];
        rc = confirm_generate(r->s, p->ids.ids, (int)p->ids.n, r->max_new, full, 0, &p->full,
                              err);   /* nothing is evicted: positions are the same */
        if (!rc)
            rc = tokenizer_decode(r->s->tok, p->full.tokens, (size_t)p->full.n, &p->full_text,
                                  NULL, err);
    }
    return rc;
}

int confirm_fidelity(const confirm_request *a, const confirm_fidelity_options *o, kv_err *err)
{
    static const confirm_experiment e = {"fidelity", COLS, N_COLS, 1, 1, measure};
    static run_state r;   /* large (prompt arrays): not on the stack */
    memset(&r, 0, sizeof r);
    session s = {0};
    confirm_table t = {0};
    r.s = &s, r.a = a, r.max_new = o->max_new;
    int rc = confirm_open_model(&s, a, err);
    if (!rc)
        rc = read_prompts(&r, o->chat, err);
    if (!rc)
        rc = run_references(&r, err);
    if (!rc)
        rc = confirm_run(&e, a, (int)r.p[0].ids.n + r.max_new, 0, &r, &t, err);
    if (rc >= 0)
        rc = confirm_table_write(&t, a, a->input, err);
    confirm_table_free(&t);
    release(&r);
    session_close(&s);
    return rc;
}
