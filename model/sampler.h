/*
 * sampler.h — the next token from a row of logits: greedy, or temperature, top-k and
 * top-p (nucleus) sampling from a seeded generator.
 *
 * Order of the filters (as HF transformers applies them): logits / temperature, keep
 * the top_k largest, keep the smallest prefix of those (by decreasing probability)
 * whose mass reaches top_p, renormalise, draw.  Ties between equal logits go to the
 * lower token id, so a given (seed, logits sequence) always gives the same tokens,
 * whatever the thread count.  Temperature 0 is greedy (argmax, lowest id on ties).
 */
#ifndef SAMPLER_H
#define SAMPLER_H

#include <stdint.h>

#include "kv_err.h"

typedef struct sampler_config {
    float    temperature;  /* 0: greedy; otherwise > 0 */
    int      top_k;        /* 0: no limit */
    float    top_p;        /* in (0, 1]; 1: no limit */
    uint64_t seed;         /* the generator's seed */
} sampler_config;

typedef struct sampler sampler;   /* opaque */

sampler_config sampler_config_default(void);   /* greedy, top_k 0, top_p 1, seed 0 */

/* A sampler over n_vocab logits.  NULL and err for a negative temperature or top_k, a
 * top_p outside (0, 1], or no memory. */
sampler *sampler_new(const sampler_config *cfg, int n_vocab, kv_err *err);
void     sampler_free(sampler *s);                   /* NULL does nothing */

/* The next token for logits[n_vocab] (not modified). */
int32_t  sampler_sample(sampler *s, const float *logits);

/* The index of the largest logit, lowest index on ties. */
int32_t  sampler_argmax(const float *logits, int n);

#endif /* SAMPLER_H */
