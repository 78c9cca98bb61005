/*
 * stdtraj.h — attention-std trajectories: σ_i(t) = std{p_τ(i) : i ≤ τ ≤ t} against
 * the age t − i, streamed over full-cache rows in O(T) memory per head.
 *
 * Exact per-age medians would need every σ_i(t), O(T²) values, so the trajectory is
 * summarised per log-binned age:
 *   (1) Ages: bin 0 holds age 0, bin b ≥ 1 holds ages [2^(b-1), 2^b − 1].
 *   (2) Per age bin: the count, the exact mean, and a fixed histogram of σ with 8 bins
 *       per octave (bin edges at 2^(k/8)), read straight from the float's exponent and
 *       top 3 mantissa bits.  A quantile is the geometric middle of the histogram bin
 *       holding it: the widest bins span a factor 9/8, so it is within a factor
 *       sqrt(9/8) (±6.1%) of the exact value.  σ below 2^-24
 *       falls in one "zero" bin reported as 0.
 *   (3) σ is the population std (divide by the count), from Welford's update in
 *       double: σ_i(i) = 0 for every token.
 * Definitions and an example: docs/METRICS.md; CSV schema: docs/RESULTS.md.
 */
#ifndef STDTRAJ_H
#define STDTRAJ_H

#include <stdint.h>

#define STD_OCTAVE_BINS 8                          /* σ histogram bins per octave */
#define STD_MIN_EXP     (-24)                      /* σ < 2^-24 counts as zero */
#define STD_SIGMA_BINS  (1 + -STD_MIN_EXP * STD_OCTAVE_BINS + 1)  /* zero, 2^-24..1, >= 1 */

/* (1) The age bin of an age, and the ages a bin holds. */
int  std_age_bin(int age);
void std_age_range(int bin, int *lo, int *hi);
int  std_age_bins(int T);                          /* bins needed for ages 0..T-1 */

/* (2) The σ histogram bin of a value, and the value a bin stands for. */
int    std_sigma_bin(float sigma);
double std_sigma_value(int bin);

/* Running statistics of one head's tokens: (3). */
typedef struct std_tracker {
    int     T;
    int     window;      /* W > 0: a sliding-window layer; keys older than W steps are
                            gone (their rows are zero), so ages >= W are not tracked */
    double *mean, *m2;   /* (T,) Welford's mean and sum of squared deviations */
} std_tracker;

/* The per-age-bin summary of one head (or of several, merged). */
typedef struct std_summary {
    int       n_bins;    /* age bins */
    uint64_t *count;     /* (n_bins,) */
    double   *sum;       /* (n_bins,) Σ σ */
    uint64_t *hist;      /* (n_bins, STD_SIGMA_BINS) */
} std_summary;

int  std_tracker_init(std_tracker *tr, int T);   /* 0 or -1 when out of memory; window 0 */
void std_tracker_free(std_tracker *tr);          /* a zeroed tracker is fine */
int  std_summary_init(std_summary *s, int T);
void std_summary_free(std_summary *s);
void std_summary_merge(std_summary *into, const std_summary *from);

/* Step t: fold the full-cache row p[0..t] into the running statistics, write
 * σ_i(t) for i = 0..t to sigma[], and add each to the summary at age t − i.  With a
 * window W, only the keys query t sees, i > t − W, are folded, written and summed. */
void std_tracker_step(std_tracker *tr, const float *p, int t, float *sigma, std_summary *s);

/* The q-quantile (0 < q < 1) of σ in age bin b, by (2); 0 for an empty bin. */
double std_summary_quantile(const std_summary *s, int b, double q);

/* Whether the token-sample file records age `age`: every age below 16, then four
 * ages per octave. */
int std_sample_age(int age);

#endif /* STDTRAJ_H */
