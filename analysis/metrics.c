/*
 * metrics.c — per-step metric functions; definitions in metrics.h and docs/METRICS.md.
 *
 * Accumulations over a row are in double: a row of 4096 fp16 probabilities summed in
 * float loses the last bits that `full keeps mass 1` tests look at.
 */
#include "metrics.h"

#include "fp16.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __F16C__
#include <immintrin.h>
#endif

/* --- selection ------------------------------------------------------------------- */

static void swap_f(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

/* Hoare-style quickselect for the k-th largest (0-based rank r = k - 1) with a
 * median-of-three pivot; three-way partition so long runs of ties stay O(n). */
static float select_rank(float *v, int n, int r)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (v[mid] > v[lo]) swap_f(&v[mid], &v[lo]);
        if (v[hi] > v[lo]) swap_f(&v[hi], &v[lo]);
        if (v[mid] < v[hi]) swap_f(&v[mid], &v[hi]);
        float pivot = v[hi];            /* median of the three */
        int gt = lo, i = lo, lt = hi;   /* [lo,gt) > pivot, [gt,i) == pivot, (lt,hi] < */
        while (i <= lt) {
            if (v[i] > pivot)
                swap_f(&v[gt++], &v[i++]);
            else if (v[i] < pivot)
                swap_f(&v[i], &v[lt--]);
            else
                i++;
        }
        if (r < gt)
            hi = gt - 1;
        else if (r > lt)
            lo = lt + 1;
        else
            return pivot;
    }
    return v[lo];
}

/* The selection key of a non-negative float: its bit pattern orders like the value;
 * the top 11 bits (exponent and 3 mantissa bits) make 2048 buckets of 1/8 octave. */
#define SELECT_BUCKETS 2048
static inline uint32_t bucket_of(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (bits & 0x7fffffffu) >> 20;
}

/* A radix step, then quickselect inside one bucket: a histogram pass finds the
 * bucket holding the k-th largest, a second pass copies that bucket's values out,
 * and only those are partitioned.  Attention rows spread over many octaves, so the
 * bucket is small and the cost is two streaming passes. */
float metrics_kth_largest(const float *v, int n, int k, float *scratch, int *n_above)
{
    /* two histograms, even and odd elements: runs of equal buckets (fp16 rows are
     * full of them) would otherwise chain every increment through one counter */
    uint32_t count[2][SELECT_BUCKETS];
    memset(count, 0, sizeof count);
    uint32_t top = 0;   /* the scan starts at the largest bucket, not at the last */
    int i = 0;
    for (; i + 2 <= n; i += 2) {
        const uint32_t b0 = bucket_of(v[i]), b1 = bucket_of(v[i + 1]);
        count[0][b0]++;
        count[1][b1]++;
        top = b0 > top ? b0 : top;
        top = b1 > top ? b1 : top;
    }
    for (; i < n; i++) {
        const uint32_t b0 = bucket_of(v[i]);
        count[0][b0]++;
        top = b0 > top ? b0 : top;
    }
    int b = (int)top, above = 0;
    while (above + (int)(count[0][b] + count[1][b]) < k) {
        above += (int)(count[0][b] + count[1][b]);
        b--;
    }
    int m = 0;
    for (i = 0; i < n; i++) {   /* branch-free: the bucket's values, in order */
        scratch[m] = v[i];
        m += bucket_of(v[i]) == (uint32_t)b;
    }
    /* the (k - above)-th largest inside the bucket */
    float theta = select_rank(scratch, m, k - above - 1);
    for (int i = 0; i < m; i++)
        above += scratch[i] > theta;
    *n_above = above;
    return theta;
}

/* --- mass and overlap ------------------------------------------------------------ */

/* The gathered entries' mass m, and the entries divided by it (a uniform row when m
 * underflowed).  Four partial sums, of entries j = 0, 1, 2, 3 mod 4 (one chain of
 * dependent double adds was the replay's bottleneck, 4 cycles each) and the tail into
 * the first, in a fixed order, so results stay reproducible. */
typedef double f64x4 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));

static double renormalise(float *out, int n)
{
    f64x4 m4 = {0, 0, 0, 0};   /* lane k: m_k, one vector add per four entries */
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        f32x4 v;
        memcpy(&v, out + j, sizeof v);
        m4 += __builtin_convertvector(v, f64x4);
    }
    double m0 = m4[0];
    for (; j < n; j++)
        m0 += out[j];
    const double m = (m0 + m4[1]) + (m4[2] + m4[3]);
    float scale = m > 0 ? (float)(1.0 / m) : 0.0f;
    if (m > 0)
        for (j = 0; j < n; j++)
            out[j] *= scale;
    else
        for (j = 0; j < n; j++)
            out[j] = 1.0f / (float)n;
    return m;
}

double metrics_gather(const float *p, const policy_entry *kept, int n, float *out)
{
    for (int j = 0; j < n; j++)
        out[j] = p[kept[j].position];
    return renormalise(out, n);
}

double metrics_gather_f16(const unsigned char *const *col, size_t roff,
                          const policy_entry *kept, int n, uint16_t *half, float *out)
{
    for (int j = 0; j < n; j++) {   /* the halves, then all converted at once */
        const uint32_t i = (uint32_t)kept[j].position;
        half[j] = fp16_load(col[i / METRICS_F16_COLS] + 2 * (roff + i % METRICS_F16_COLS));
    }
    fp16_to_f32_n(half, out, (size_t)n);
    return renormalise(out, n);
}

double metrics_overlap(const float *p, const policy_entry *kept, int n, float theta,
                       int n_above)
{
    /* tied entries fill the n - n_above places left in slot order: however many of
     * them are kept, min(tied, places) count, so the loop needs no branch */
    int above = 0, tied = 0;
    for (int j = 0; j < n; j++) {
        const float v = p[kept[j].position];
        above += v > theta;
        tied += v == theta;
    }
    const int places = n - n_above;
    return (double)(above + (tied < places ? tied : places)) / n;
}

/* --- output error ---------------------------------------------------------------- */

/* Outputs are summed in a tile of OUT_TILE dimensions held in eight vector registers
 * across the keys: the plain loop loaded and stored o[] for every key, and output
 * error was most of a replay's time.  Each o[d] is still w·v summed over the keys in
 * order, without contraction (-std=c11), so the numbers are those of the plain loop,
 * which handles what is left of D.  8-float vectors: AVX2 and AVX-512 alike. */
#define OUT_TILE 64
typedef float f32x8 __attribute__((vector_size(32)));

static inline f32x8 load8(const float *p)
{
    f32x8 x;
    memcpy(&x, p, sizeof x);
    return x;
}

typedef struct out_tile { f32x8 a[8]; } out_tile;

static inline void tile_add(out_tile *t, float w, const float *v)
{
    /* written out: a loop over the eight kept the tile in memory */
    t->a[0] += w * load8(v);
    t->a[1] += w * load8(v + 8);
    t->a[2] += w * load8(v + 16);
    t->a[3] += w * load8(v + 24);
    t->a[4] += w * load8(v + 32);
    t->a[5] += w * load8(v + 40);
    t->a[6] += w * load8(v + 48);
    t->a[7] += w * load8(v + 56);
}

static void output_full_tile(const float *p, int len, const float *values, int D, int d0,
                             float *o)
{
    out_tile t = {{{0}}};
    for (int i = 0; i < len; i++)
        tile_add(&t, p[i], values + (size_t)i * D + d0);
    memcpy(o + d0, &t, sizeof t);
}

static void output_kept_tile(const float *p, const policy_entry *kept, int n,
                             const float *values, int D, int d0, float *o)
{
    out_tile t = {{{0}}};
    for (int j = 0; j < n; j++) {
        const int i = kept[j].position;
        tile_add(&t, p[i], values + (size_t)i * D + d0);
    }
    memcpy(o + d0, &t, sizeof t);
}

void metrics_output_full(const float *p, int len, const float *values, int D, float *o)
{
    int d0 = 0;
    for (; d0 + OUT_TILE <= D; d0 += OUT_TILE)
        output_full_tile(p, len, values, D, d0, o);
    memset(o + d0, 0, (size_t)(D - d0) * sizeof *o);
    for (int i = 0; d0 < D && i < len; i++) {
        const float w = p[i], *v = values + (size_t)i * D;
        for (int d = d0; d < D; d++)
            o[d] += w * v[d];
    }
}

void metrics_output_kept(const float *p, const policy_entry *kept, int n, double m,
                         const float *values, int D, float *o)
{
    int d0 = 0;
    for (; d0 + OUT_TILE <= D; d0 += OUT_TILE)
        output_kept_tile(p, kept, n, values, D, d0, o);
    memset(o + d0, 0, (size_t)(D - d0) * sizeof *o);
    for (int j = 0; d0 < D && j < n; j++) {
        const int i = kept[j].position;
        const float w = p[i], *v = values + (size_t)i * D;
        for (int d = d0; d < D; d++)
            o[d] += w * v[d];
    }
    const float scale = m > 0 ? (float)(1.0 / m) : 0.0f;
    for (int d = 0; d < D; d++)
        o[d] *= scale;
}

double metrics_relative_error(const float *a, const float *b, int D)
{
    double diff = 0, ref = 0;
    for (int d = 0; d < D; d++) {
        double e = (double)a[d] - b[d];
        diff += e * e;
        ref += (double)b[d] * b[d];
    }
    if (ref == 0)
        return diff == 0 ? 0 : INFINITY;
    return sqrt(diff / ref);
}

/* --- score consistency ----------------------------------------------------------- */

double metrics_consistency(const float *pol, const policy_entry *kept, int n,
                           const float *full, int len, int B, float *scratch)
{
    if (B > n)
        B = n;
    if (B <= 0)
        return 1;
    int pol_above, full_above;
    float pol_theta = metrics_kth_largest(pol, n, B, scratch, &pol_above);
    float full_theta = metrics_kth_largest(full, len, B, scratch, &full_above);
    int pol_ties = B - pol_above, full_ties = B - full_above, both = 0;
    /* Newest first, so the policy side's ties go to the newer entries. */
    for (int j = n - 1; j >= 0; j--) {
        if (pol[j] < pol_theta || (pol[j] == pol_theta && pol_ties-- <= 0))
            continue;
        float f = full[kept[j].position];
        if (f > full_theta || (f == full_theta && full_ties-- > 0))
            both++;
    }
    return (double)both / B;
}

void metrics_full_score_aas(const double *S, int len, float *out)
{
    for (int i = 0; i < len; i++)
        out[i] = (float)S[i];
}

void metrics_full_score_mas(const double *S, int len, float *out)
{
    for (int i = 0; i < len; i++)
        out[i] = (float)(S[i] / (double)(len - i));
}
