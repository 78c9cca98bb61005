/* perplexity.c — teacher-forced perplexity under live eviction; see perplexity.h. */
#include "perplexity.h"

#include "recorder.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Score the predictions of a chunk that started at step t0: logits row i predicts
 * ids[t0 + i + 1]. */
static void score_chunk(perplexity_result *r, const float *logits, int V, const int32_t *ids,
                        int n_ids, int t0, int c, int budget)
{
    for (int i = 0; i < c && t0 + i + 1 < n_ids; i++) {
        const float *row = logits + (size_t)i * V;
        const int32_t next = ids[t0 + i + 1];
        float logprob, entropy;
        record_next_token_stats(row, V, next, &logprob, &entropy);
        const int hit = sampler_argmax(row, V) == next;
        r->tokens++;
        r->nll -= logprob;
        r->correct += hit;
        if (t0 + i >= budget) {
            r->tail_tokens++;
            r->tail_nll -= logprob;
            r->tail_correct += hit;
        }
    }
}

int perplexity_run(model *m, const tokenizer *tok, const int32_t *ids, int n,
                   const policy_config *cfg, int reposition, perplexity_result *out,
                   kv_err *err)
{
    memset(out, 0, sizeof *out);
    if (n < 2)
        return kv_errorf(err, KV_ERANGE, "the text is %d tokens: perplexity needs at least 2", n);
    const int V = model_config_of(m)->n_vocab;
    float *logits = malloc((size_t)PERPLEXITY_CHUNK * V * sizeof *logits);
    live *lv = logits ? live_new(m, tok, cfg, n, err) : NULL;
    if (!lv) {
        free(logits);
        return logits ? err->code : kv_errorf(err, KV_ENOMEM, "out of memory for the logits");
    }
    double start = omp_get_wtime();
    int rc = live_set_reposition(lv, reposition, err);
    for (int t = 0; rc == KV_OK && t < n;) {
        int c = live_chunk(lv, n - t < PERPLEXITY_CHUNK ? n - t : PERPLEXITY_CHUNK);
        rc = live_feed(lv, ids + t, c, MODEL_LOGITS_ALL, logits, err);
        if (rc == KV_OK)
            score_chunk(out, logits, V, ids, n, t, c, cfg->budget);
        t += c;
    }
    out->seconds = omp_get_wtime() - start;
    live_get_stats(lv, &out->stats);
    live_free(lv);
    free(logits);
    return rc;
}
