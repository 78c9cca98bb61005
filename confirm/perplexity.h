/*
 * perplexity.h — teacher-forced perplexity and next-token accuracy of a text under a
 * live, truly compressed KV cache (confirm/live.h): the StreamingLLM experiment.
 *
 * Token t of the text is fed, the cache evicts as the policy says, and the logits
 * after token t score token t + 1: nll = −log p(ids[t+1] | kept cache), correct when
 * ids[t+1] is the argmax (lowest id on ties).  So n tokens give n − 1 predictions.
 * The "tail" counts only predictions made at steps t >= B, where eviction can have
 * begun; before B every policy is the full cache.  Tokens go in the chunks live.h (4)
 * allows, at most PERPLEXITY_CHUNK at a time.
 *
 * Memory: the live driver's, plus PERPLEXITY_CHUNK · n_vocab floats of logits.
 */
#ifndef PERPLEXITY_H
#define PERPLEXITY_H

#include <stdint.h>

#include "live.h"

#define PERPLEXITY_CHUNK 64

typedef struct perplexity_result {
    long       tokens;        /* predictions scored: n − 1 */
    double     nll;           /* Σ −log p(next), nats */
    long       correct;       /* predictions whose argmax was the next token */
    long       tail_tokens;   /* predictions at steps t >= B (all when B = 0) */
    double     tail_nll;
    long       tail_correct;
    double     seconds;       /* wall time of the forward passes and policies */
    live_stats stats;         /* cache sizes and bytes of the run */
} perplexity_result;

/* Score ids[0..n-1] (n >= 2) under cfg (budget resolved, prompt_len set; the first
 * prompt_len tokens are the prompt), with live_set_reposition(reposition).  0, or a
 * KV_E* code with err (live_new's refusals included). */
int perplexity_run(model *m, const tokenizer *tok, const int32_t *ids, int n,
                   const policy_config *cfg, int reposition, perplexity_result *out,
                   kv_err *err);

#endif /* PERPLEXITY_H */
