/*
 * rank_corr.h — Spearman's rank correlation and its bootstrap confidence interval:
 * how well the simulator's ranking of policies predicts the real one (docs/CONFIRM.md).
 *
 *  (1) Ranks are 1..n by increasing value; tied values share the mean of their ranks.
 *      ρ is Pearson's correlation of the two rank vectors (so ties are handled as
 *      scipy.stats.spearmanr does); undefined (NaN) when n < 2 or either side is
 *      constant.
 *  (2) The bootstrap resamples the n pairs with replacement `rounds` times from a
 *      seeded generator (splitmix64), drops resamples where ρ is undefined, and
 *      returns the percentile interval [q(α/2), q(1 − α/2)] of the rest (linear
 *      interpolation between order statistics); NaN when none is defined.
 */
#ifndef RANK_CORR_H
#define RANK_CORR_H

#include <stdint.h>

/* (1) ρ of x[n] and y[n]; NaN when undefined (or out of memory). */
double rank_spearman(const double *x, const double *y, int n);

/* (2) The (1 − alpha) bootstrap interval of ρ into lo, hi; the defined resamples'
 * count is returned (negative KV_ENOMEM when memory runs out). */
int    rank_spearman_ci(const double *x, const double *y, int n, int rounds, double alpha,
                        uint64_t seed, double *lo, double *hi);

#endif /* RANK_CORR_H */
