/*
 * attention.h — one block of attention rows, the arithmetic shared by the forward
 * pass and by the trace's row source, which rebuilds rows from recorded queries and
 * keys (trace/source_trace.c): both call these functions, so a rebuilt row is the
 * forward pass's row bit for bit (docs/TRACE_FORMAT.md, "Rebuilt rows").
 *
 *     attention_scores(sc, width, q, D, K, rows, n_keys, D, scale);
 *     for (int i = 0; i < rows; i++) {
 *         if (cap > 0)
 *             attention_softcap(sc + i * width + lo_i, len_i - lo_i, cap);
 *         attention_softmax(sc + i * width, lo_i, len_i, width);
 *     }
 */
#ifndef ATTENTION_H
#define ATTENTION_H

#include <stddef.h>

/* sc[i * ld_sc + j] = scale · q_i · k_j for `rows` queries (row stride ldq floats)
 * against n_keys keys (hd floats each, contiguous).  One query: one sgemv (decode's
 * arithmetic).  Several: the keys are transposed and attention_scores_kt gives them, so
 * the rows are those of the forward pass's batch bit for bit. */
void attention_scores(float *sc, size_t ld_sc, const float *q, int ldq, const float *K,
                      int rows, int n_keys, int hd, float scale);

/* The same from the keys transposed: kt[d * ld_kt + j] = k_j[d].  Each score is one
 * chain of fused multiply-adds over d from +0, then times scale (gemm.h gemm_nn),
 * whatever the block of rows or keys it is computed in. */
void attention_scores_kt(float *sc, size_t ld_sc, const float *q, int ldq, const float *kt,
                         size_t ld_kt, int rows, int n_keys, int hd, float scale);

/* x = cap · tanh(x / cap) for n values: the logit softcap (Gemma 2's attention, Gemma
 * 3's final logits); applied to a row's visible scores before the softmax. */
void attention_softcap(float *x, size_t n, float cap);

/* The masked softmax of one row: keys lo .. len-1 get softmax(row[lo..len)) (maximum
 * subtracted, e^x by attention_exp, an f32 sum in a fixed order), keys 0 .. lo-1 and
 * len .. width-1 get 0.  The same row gives the same floats in every build of this
 * code, vectorised or not. */
void attention_softmax(float *row, int lo, int len, int width);

/* e^x for x <= 0 within 2 ulp (0 below -87.3), vectorisable: the softmax's exp. */
float attention_exp(float x);

#endif /* ATTENTION_H */
