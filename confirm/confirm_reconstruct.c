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
#include "confirm.h"

#include "text_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const COLS[] = {"passages", "rouge_l", "bleu", "bleu_corpus", "generated",
                                   "mean_cache", "kv_bytes_peak"};
enum { C_PASSAGES, C_ROUGE, C_BLEU, C_CORPUS, C_GENERATED, C_CACHE, C_BYTES, N_COLS };

#define MAX_PASSAGES 64
#define INSTRUCTION "Repeat the following passage word for word.\n\n"

typedef struct passages {
    char          *text[MAX_PASSAGES];     /* the passages, decoded */
    tokenizer_ids  prompt[MAX_PASSAGES];   /* their chat prompts */
    int            n, tokens;
    session       *s;
    int            reposition;
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
static int measure(void *ctx, const replay_config *c, int index, double *v, char *note,
                   size_t len, kv_err *err)
{
    (void)index;
    const passages *p = ctx;
    session *s = p->s;
    const int reposition = p->reposition;
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
    snprintf(note, len, "ROUGE-L %.3f BLEU %.1f", v[C_ROUGE], v[C_BLEU]);
    return rc;
}

int confirm_reconstruct(const confirm_request *a, const confirm_reconstruct_options *o,
                        kv_err *err)
{
    static const confirm_experiment e = {"reconstruct", COLS, N_COLS, 1, 1, measure};
    static passages p;   /* large: not on the stack */
    memset(&p, 0, sizeof p);
    session s = {0};
    confirm_table t = {0};
    p.tokens = o->passage_tokens;
    p.s = &s;
    p.reposition = a->reposition;
    int rc = confirm_open_text(&s, a, err);
    if (!rc)
        rc = make_passages(&s, o->passages, &p, err);
    if (!rc)
        rc = confirm_run(&e, a, (int)p.prompt[0].n + p.tokens + 16, 0, &p, &t, err);
    if (rc >= 0)
        rc = confirm_table_write(&t, a, a->input, err);
    confirm_table_free(&t);
    passages_free(&p);
    session_close(&s);
    return rc;
}
