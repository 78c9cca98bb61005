/*
 * metrics.h — the per-step metrics of docs/METRICS.md as small pure functions.
 *
 * Every function here looks at one query row and one cache at one step and returns
 * a number; nothing allocates, nothing keeps state.  The replay engine (sim/replay.c)
 * calls them per (configuration, head, step) and averages; a GPU kernel and live
 * generation can call the same definitions.  Notation, as in DESIGN.md:
 *
 *   p       the full-cache row of query t: p[0..t], Σ p = 1           (len = t + 1)
 *   C       the entries query t attended under the policy: `kept`, n of them, given
 *           as policy entries whose `position` indexes p (slot order = position order)
 *   m       mass kept, Σ_{i∈C} p(i)
 *
 * Ties.  "Top-k" of a vector with ties at the k-th value counts tied entries as
 * interchangeable: an entry strictly above the threshold θ is in, an entry equal to θ
 * is in while the k − (number strictly above θ) tied places last, in the order the
 * caller visits them.  So a cache whose values equal the full cache's top-k values
 * scores 1 whichever of the tied entries it holds (fp16 rows tie often).
 */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* The k-th largest of v[0..n-1] (1 <= k <= n), non-negative values (attention rows,
 * scores), with *n_above = how many are strictly larger.  `scratch` holds n floats and
 * is overwritten.  O(n): two streaming passes and a select inside one bucket. */
float metrics_kth_largest(const float *v, int n, int k, float *scratch, int *n_above);

/* The same, given a guess of it (the last step's, say): when the k-th largest lies
 * within a factor 2 of the guess, one vectorised pass over v and a select among the
 * entries in that band find it; otherwise metrics_kth_largest does.  Equal results
 * either way: both are defined by the values alone.  `scratch` holds 2n floats. */
float metrics_kth_largest_near(const float *v, int n, int k, float guess, float *scratch,
                               int *n_above);

/* Gather and renormalise in one pass: out[j] = p[kept[j].position] / m for the n
 * kept entries.  Returns m, the mass kept (before renormalising).  A cache whose mass
 * underflows to 0 gets a uniform row, so the policy always sees a distribution. */
double metrics_gather(const float *p, const policy_entry *kept, int n, float *out);

/* The same gather from an f16 row stored in column chunks of METRICS_F16_COLS entries
 * (a trace's chunks read in place): p(i) = the f16 at byte 2·(roff + i % METRICS_F16_COLS)
 * of col[i / METRICS_F16_COLS] (any alignment).  The same floats and sums as metrics_gather on the converted
 * row (f16 -> f32 is exact), without converting the entries it does not keep; `half`
 * is scratch for n values. */
#define METRICS_F16_COLS 256
double metrics_gather_f16(const unsigned char *const *col, size_t roff,
                          const policy_entry *kept, int n, uint16_t *half, float *out);

/* Top-B overlap: |C ∩ Top_n(p)| / n, where Top_n(p) is given by theta and n_above
 * from metrics_kth_largest(p, len, n, ...). */
double metrics_overlap(const float *p, const policy_entry *kept, int n, float theta,
                       int n_above);

/* o[0..D-1] = Σ_{i<len} p[i] v_i, with v the len x D row-major values: the full
 * cache's output of one query. */
void metrics_output_full(const float *p, int len, const float *values, int D, float *o);

/* o[0..D-1] = Σ_{i∈C} p(i) v_i / m: the output of the query over the kept entries,
 * renormalised (m = the mass kept). */
void metrics_output_kept(const float *p, const policy_entry *kept, int n, double m,
                         const float *values, int D, float *o);

/* The same for `rows` queries that share the values (the query heads of one KV head):
 * row r's weights p[r], mass m[r], output o[r].  Each o[r] equals the one-row call's bit
 * for bit; the values are read once per ROWS_AT_ONCE rows. */
void metrics_output_full_rows(const float *const *p, int rows, int len, const float *values,
                              int D, float *const *o);
void metrics_output_kept_rows(const float *const *p, int rows, const policy_entry *kept,
                              int n, const double *m, const float *values, int D,
                              float *const *o);

/* ‖a − b‖ / ‖b‖ over D elements; 0 when both are 0, and +inf when only b is. */
double metrics_relative_error(const float *a, const float *b, int D);

/* Score consistency: |TopB(policy score over C) ∩ TopB(full score over 0..t)| / B.
 *   pol[j]   the policy's score of kept slot j (higher = kept longer), n entries
 *   full[i]  the same score computed on full-cache rows, len = t + 1 entries
 * B is clamped to n.  TopB of the policy side breaks ties toward the newer entry
 * (the contract evicts the older one first).  `scratch` holds max(n, len) floats. */
double metrics_consistency(const float *pol, const policy_entry *kept, int n,
                           const float *full, int len, int B, float *scratch);

/* The attention-based full-cache scores of DESIGN.md at step t, from the running
 * column sums S[i] = Σ_{τ≤t} p_τ(i) (over len = t + 1 entries):
 *   aas  S(i)               mas  S(i) / (t − i + 1)             ltas  p_t(i)  */
void metrics_full_score_aas(const double *S, int len, float *out);
void metrics_full_score_mas(const double *S, int len, float *out);

#endif /* METRICS_H */
