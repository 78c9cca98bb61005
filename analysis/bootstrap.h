/*
 * bootstrap.h — the mean of a few values with a percentile bootstrap confidence
 * interval: what `kvsim sweep` over many traces reports per configuration across
 * traces (docs/RESULTS.md).  Deterministic: the resampling stream is a splitmix64
 * sequence from a fixed seed, so a rerun, another rank count or another machine gives
 * the same interval.
 */
#ifndef BOOTSTRAP_H
#define BOOTSTRAP_H

#include <stdint.h>

#define BOOTSTRAP_RESAMPLES 2000
#define BOOTSTRAP_SEED      0x6b7673696dULL   /* "kvsim" */

typedef struct bootstrap_ci {
    double mean, lo, hi;   /* lo, hi: the (1-level)/2 and (1+level)/2 quantiles */
} bootstrap_ci;

/* The next draw of a splitmix64 stream (Steele, Lea and Flood 2014): the generator
 * of every bootstrap here (also rank_corr.c's). */
uint64_t bootstrap_next(uint64_t *state);

/* Sort v[0..n) (n >= 1) in place and return its quantile q, interpolated linearly
 * between order statistics (numpy's default "linear"). */
double bootstrap_quantile(double *v, int n, double q);

/* The mean of v[0..n) and the percentile interval at `level` (0.95) of `resamples`
 * resampled means (n draws with replacement each), quantiles interpolated linearly
 * between order statistics (numpy's default).  n = 1 gives lo = hi = mean.  0, or -1
 * when n < 1, resamples < 1 or memory runs out. */
int bootstrap_mean_ci(const double *v, int n, int resamples, double level, uint64_t seed,
                      bootstrap_ci *out);

#endif /* BOOTSTRAP_H */
