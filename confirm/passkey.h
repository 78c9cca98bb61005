/*
 * passkey.h — the passkey-retrieval task: a 5-digit key hidden at a chosen depth in
 * filler text, then the question (docs/CONFIRM.md).
 *
 * The prompt, as the passkey studies write it (Landmark Attention's format):
 *
 *     There is an important info hidden inside a lot of irrelevant text. Find it and
 *     memorize it. I will quiz you about the important information there.
 *     <filler> The pass key is 48213. Remember it. 48213 is the pass key. <filler>
 *     What is the pass key? The pass key is
 *
 *  (1) The filler cycles five fixed sentences ("The grass is green. ..."); the number
 *      of filler sentences is chosen so that the whole prompt has about `tokens`
 *      tokens for the given tokenizer (the exact count is passkey_sample.n_tokens).
 *  (2) depth d in [0, 1] puts the key after round(d · k) of the k filler sentences:
 *      0 at the start, 1 right before the question.
 *  (3) The key is uniform in 10000..99999, a function of the seed alone (splitmix64),
 *      so every policy, budget and length sees the same keys for the same seeds.
 *  (4) An answer is right when the first run of digits in the generated text is the
 *      key.
 */
#ifndef PASSKEY_H
#define PASSKEY_H

#include <stdint.h>

#include "kv_err.h"
#include "tokenizer.h"

typedef struct passkey_sample {
    char          *prompt;    /* malloc'd UTF-8 */
    tokenizer_ids  ids;       /* the prompt encoded (BOS/EOS as the model asks) */
    int            key;       /* 10000..99999 */
    int            n_tokens;  /* ids.n */
} passkey_sample;

/* Build the sample of (tokens, depth, seed).  0, or KV_ERANGE for tokens too small to
 * hold the instructions, key and question, depth outside [0, 1]; KV_ENOMEM. */
int  passkey_make(const tokenizer *tok, int tokens, double depth, uint64_t seed,
                  passkey_sample *out, kv_err *err);
void passkey_sample_free(passkey_sample *s);   /* NULL does nothing */

/* (3) The key of a seed. */
int  passkey_key(uint64_t seed);

/* (4) Is `answer` right for `key`? */
int  passkey_correct(const char *answer, int key);

#endif /* PASSKEY_H */
