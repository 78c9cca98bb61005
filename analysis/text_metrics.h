/*
 * text_metrics.h — how close a generated text is to a reference: ROUGE-L, BLEU,
 * METEOR's exact-match stage, and token-level agreement.  Definitions with worked
 * examples: docs/CONFIRM.md; tests/test_text_metrics.c checks them against fixtures
 * made by the PyPI packages rouge-score and sacrebleu (tests/fixtures/
 * make_text_metric_fixtures.py) and against hand-worked cases.
 *
 *  (1) ROUGE-L is rouge-score's `rougeL` F-measure without stemming: both texts are
 *      lower-cased, every character outside [a-z0-9] becomes a space, and the words
 *      are compared by their longest common subsequence: P = LCS/|hyp|,
 *      R = LCS/|ref|, F = 2PR/(P + R) (0 when LCS = 0).
 *  (2) BLEU is sacrebleu's (2.x): the `13a` tokenizer, n-grams up to 4, clipped
 *      counts, brevity penalty exp(1 − ref/hyp) when hyp < ref, on a 0..100 scale,
 *      with `exp` smoothing (each zero-match order n takes 100 / (2^k · total_n), k
 *      counting the zero orders so far).  Sentence BLEU uses the effective order (as
 *      sacrebleu.sentence_bleu); corpus BLEU sums counts over the pairs first and
 *      uses all four orders (as sacrebleu.corpus_bleu).  No match at all gives 0.
 *  (3) METEOR (exact stage only, NLTK's parameters α = 0.9, β = 3, γ = 0.5): words as
 *      in (1); each hypothesis word, left to right, aligns with the leftmost unaligned
 *      equal reference word; m aligned pairs, P = m/|hyp|, R = m/|ref|,
 *      Fmean = PR / (αP + (1 − α)R); ch = runs of alignments adjacent in both texts;
 *      score = Fmean · (1 − γ (ch/m)^β); 0 when m = 0.
 *  (4) Token agreement of id sequences a (n) and b (m): the share of positions
 *      i < max(n, m) where both have a token and a[i] = b[i]; first divergence: the
 *      first such i where they differ (n when a = b).
 *
 * Strings are UTF-8 and NUL-terminated; nothing is kept between calls.  Functions
 * that need memory return a negative KV_E* code (KV_ENOMEM) when it runs out.
 */
#ifndef TEXT_METRICS_H
#define TEXT_METRICS_H

#include <stdint.h>

/* (1) ROUGE-L F-measure in [0, 1]; < 0 (KV_ENOMEM) when memory runs out. */
double text_rouge_l(const char *hyp, const char *ref);

/* (2) BLEU of one pair, 0..100; < 0 when memory runs out. */
double text_bleu_sentence(const char *hyp, const char *ref);

/* (2) Corpus BLEU over n pairs (hyps[i] against refs[i]), 0..100; < 0 on no memory. */
double text_bleu_corpus(const char *const *hyps, const char *const *refs, int n);

/* (3) METEOR exact-match score in [0, 1]; < 0 when memory runs out. */
double text_meteor_exact(const char *hyp, const char *ref);

/* (4) Agreement in [0, 1] (1 for two empty sequences) and the first divergence. */
double text_token_agreement(const int32_t *a, int n, const int32_t *b, int m);
int    text_first_divergence(const int32_t *a, int n, const int32_t *b, int m);

/* The `13a` tokenization of (2), words joined by single spaces; malloc'd (free()),
 * NULL when memory runs out. */
char  *text_tokenize_13a(const char *text);

#endif /* TEXT_METRICS_H */
