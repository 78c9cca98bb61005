/*
 * replay_rules.h — the per-entry rules of the replay step, shared by the CUDA kernel
 * (gpu/gpu_replay.cu) and the CPU, where tests/test_gpu_rules.c checks each one
 * against the policy library and the metrics it must reproduce bit for bit.
 *
 * Every function is the CPU's arithmetic written once: the same operations in the
 * same order.  On the device the products and sums go through __fmul_rn/__fadd_rn,
 * which the compiler never fuses into an FMA (a fused a·b + c rounds once, the CPU
 * twice, and one ulp can flip an eviction).
 */
#ifndef REPLAY_RULES_H
#define REPLAY_RULES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define RULES_FN __host__ __device__ static inline
#else
#define RULES_FN static inline
#endif

#ifdef __CUDA_ARCH__
#define RULES_MUL(a, b)  __fmul_rn((a), (b))
#define RULES_ADD(a, b)  __fadd_rn((a), (b))
#define RULES_DMUL(a, b) __dmul_rn((a), (b))
#define RULES_DADD(a, b) __dadd_rn((a), (b))
#else
#define RULES_MUL(a, b)  ((a) * (b))
#define RULES_ADD(a, b)  ((a) + (b))
#define RULES_DMUL(a, b) ((a) * (b))
#define RULES_DADD(a, b) ((a) + (b))
#endif

/* Scores the kernel computes (policies/policy.h's POLICY_SCORE_* map onto these). */
enum { GPU_SCORE_AAS = 0, GPU_SCORE_MAS, GPU_SCORE_LTAS, GPU_SCORE_RECENCY };
/* GQA reductions of a group's renormalised rows (policy.h's POLICY_GQA_*). */
enum { GPU_GQA_MEAN = 0, GPU_GQA_MAX, GPU_GQA_SUM };

/* An entry's score, as policy_scored.c's score_of: S = Σ a (double), c = queries that
 * attended it, last = the latest reduced row's value. */
RULES_FN float rules_score(int score, double S, int c, float last, int position)
{
    switch (score) {
    case GPU_SCORE_AAS:  return (float)S;
    case GPU_SCORE_MAS:  return c ? (float)(S / c) : 0.0f;
    case GPU_SCORE_LTAS: return last;
    default:             return (float)position;
    }
}

/* One observation of an entry: S += a, Q += a², as policy_scored.c's observe. */
RULES_FN void rules_observe(double *S, double *Q, float a)
{
    const double x = a;
    *S += x;
    *Q = RULES_DADD(*Q, RULES_DMUL(x, x));
}

/* σ of the attention an entry received, as policy__scored_sigma: sqrt(Q/c − (S/c)²). */
RULES_FN float rules_sigma(double S, double Q, int c)
{
    if (c == 0)
        return 0;
    const double mean = S / c, var = RULES_DADD(Q / c, -RULES_DMUL(mean, mean));
    return var > 0 ? (float)sqrt(var) : 0.0f;
}

/* Is (score a, position pa) a better victim than (b, pb)?  Lower score, then older:
 * policy.c's rank_before (positions are unique within a stream). */
RULES_FN int rules_before(float a, int pa, float b, int pb)
{
    return a != b ? a < b : pa < pb;
}

/* The mass of a gathered row, summed as metrics_gather sums it: slots below
 * 4·floor(n/4) in four classes j mod 4, the rest into class 0, in order. */
RULES_FN double rules_mass(const float *v, int n)
{
    double m[4] = {0, 0, 0, 0};
    int j = 0;
    for (; j + 4 <= n; j += 4)
        for (int c = 0; c < 4; c++)
            m[c] += v[j + c];
    for (; j < n; j++)
        m[0] += v[j];
    return (m[0] + m[1]) + (m[2] + m[3]);
}

/* The candidates of an eviction of k of the n entries (positions pos[], increasing):
 * slots [*lo, *hi).  The sinks (positions < sinks) from the oldest, then the newest
 * `window`, each within the room that leaves k candidates: policy__scored_candidates
 * for the scopes sinks and window. */
RULES_FN void rules_candidates(const int *pos, int n, int k, int sinks, int window, int *lo,
                               int *hi)
{
    int room = n - k, s = 0;
    while (s < n && room > 0 && pos[s] < sinks)
        s++, room--;
    *lo = s;
    *hi = n - (window < room ? window : room);
}

/* One term of a query's output o[d] = Σ w·v[d], summed in key order from 0: the
 * product rounded, then the sum, as metrics_output_full and _kept do. */
RULES_FN float rules_output_add(float acc, float w, float v)
{
    return RULES_ADD(acc, RULES_MUL(w, v));
}

/* ‖a − b‖ / ‖b‖ in double, summed over d in order: metrics_relative_error. */
RULES_FN double rules_relative_error(const float *a, const float *b, int D)
{
    double diff = 0, ref = 0;
    for (int d = 0; d < D; d++) {
        const double e = RULES_DADD((double)a[d], -(double)b[d]);
        diff = RULES_DADD(diff, RULES_DMUL(e, e));
        ref = RULES_DADD(ref, RULES_DMUL((double)b[d], (double)b[d]));
    }
    if (ref == 0)
        return diff == 0 ? 0 : INFINITY;
    return sqrt(diff / ref);
}

/* The std scope (roco) after the sinks: of the room left, std_r = min(r, room) entries
 * are protected, the `recent` newest first (slots [*mid, n)), then the *want largest
 * σ among the candidates [lo, *mid): policy__scored_candidates' POLICY_SCOPE_STD. */
RULES_FN void rules_std_scope(int n, int k, int lo, int window, int recent, int *mid,
                              int *want)
{
    const int room = n - k - lo, std_r = window < room ? window : room;
    const int newest = recent < std_r ? recent : std_r;
    *mid = n - newest;
    *want = std_r - newest;
}

/* metrics_gather's scale: 1/m rounded to float, 0 when the mass underflowed. */
RULES_FN float rules_scale(double m) { return m > 0 ? (float)(1.0 / m) : 0.0f; }

/* One renormalised value of a member's row: p·scale, or uniform when m underflowed. */
RULES_FN float rules_renorm(float p, double m, float scale, int n)
{
    return m > 0 ? RULES_MUL(p, scale) : 1.0f / (float)n;
}

/* policy.c's reduce_rows, one entry at a time: start with member 0's value, fold the
 * others in member order, then finish (the mean divides, as the CPU does). */
RULES_FN float rules_fold(int gqa, float acc, float v)
{
    if (gqa == GPU_GQA_MAX)
        return v > acc ? v : acc;
    return RULES_ADD(acc, v);
}

RULES_FN float rules_finish(int gqa, float acc, int n_members)
{
    return gqa == GPU_GQA_MEAN && n_members > 1 ? acc / (float)n_members : acc;
}

/* The selection key of a non-negative float: its bits order like its value (-0 is 0). */
RULES_FN uint32_t rules_key(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits & 0x7fffffffu;
}

RULES_FN float rules_unkey(uint32_t key)
{
    float x;
    memcpy(&x, &key, sizeof x);
    return x;
}

/* metrics_overlap from its counts: of the n kept entries, `above` are above the top-n
 * threshold and `tied` equal to it; n_above entries of the whole row are above it. */
RULES_FN double rules_overlap(int above, int tied, int n, int n_above)
{
    const int places = n - n_above;
    return (double)(above + (tied < places ? tied : places)) / n;
}

#endif /* REPLAY_RULES_H */
