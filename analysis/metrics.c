/*
 * metrics.c — per-step metric functions; definitions in metrics.h and docs/METRICS.md.
 *
 * Accumulations over a row are in double: a row of 4096 fp16 probabilities summed in
 * float loses the last bits that `full keeps mass 1` tests look at.
 */
#include "metrics.h"

#include "fp16.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__F16C__) || defined(__AVX512F__)
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

/* How many of v[0..n) are above hi (*above), and those in [lo, hi] copied to keep,
 * in order; returns their count.  One pass, sixteen at a time where AVX-512 compresses
 * a register (keep[m..m+16) is written whole, m <= i, so it stays inside n floats). */
static int count_and_keep(const float *v, int n, float lo, float hi, float *keep, int *above)
{
    int over = 0, m = 0, i = 0;
#ifdef __AVX512F__
    const __m512 low = _mm512_set1_ps(lo), high = _mm512_set1_ps(hi);
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(v + i);
        const __mmask16 gt = _mm512_cmp_ps_mask(x, high, _CMP_GT_OQ);
        const __mmask16 in = _mm512_cmp_ps_mask(x, low, _CMP_GE_OQ) & (__mmask16)~gt;
        over += __builtin_popcount(gt);
        _mm512_storeu_ps(keep + m, _mm512_maskz_compress_ps(in, x));
        m += __builtin_popcount(in);
    }
#endif
    for (; i < n; i++) {
        over += v[i] > hi;
        keep[m] = v[i];
        m += v[i] >= lo && v[i] <= hi;
    }
    *above = over;
    return m;
}

/* metrics_kth_largest for values that all lie in [lo, 2^octaves·lo], lo normal: the band
 * covers 8·octaves + 1 buckets, so the histogram is small and needs no clearing of 2048
 * counters. */
#define BAND_OCTAVES_MAX 8
static float kth_in_band(const float *v, int n, int k, float lo, int octaves, float *scratch,
                         int *n_above)
{
    const uint32_t base = bucket_of(lo);
    uint32_t count[2][8 * BAND_OCTAVES_MAX + 1] = {{0}};
    int i = 0;
    for (; i + 2 <= n; i += 2) {
        count[0][bucket_of(v[i]) - base]++;
        count[1][bucket_of(v[i + 1]) - base]++;
    }
    if (i < n)
        count[0][bucket_of(v[i]) - base]++;
    int b = 8 * octaves, above = 0;
    while (above + (int)(count[0][b] + count[1][b]) < k) {
        above += (int)(count[0][b] + count[1][b]);
        b--;
    }
    int m = 0;
    for (i = 0; i < n; i++) {
        scratch[m] = v[i];
        m += bucket_of(v[i]) - base == (uint32_t)b;
    }
    const float theta = select_rank(scratch, m, k - above - 1);
    for (i = 0; i < m; i++)
        above += scratch[i] > theta;
    *n_above = above;
    return theta;
}

/* Bands around the guess, narrow first: on SmolLM2 a factor 2 either side of the last
 * step's threshold holds the next one about half the time, a factor 16 all but one step
 * in sixteen; a miss costs one vectorised pass. */
static const int band_octaves[] = {2, BAND_OCTAVES_MAX};

float metrics_kth_largest_near(const float *v, int n, int k, float guess, float *scratch,
                               int *n_above)
{
    int above;
    if (guess == 0) {   /* the threshold was 0 (f16 rows underflow): is it still? */
        count_and_keep(v, n, 0, 0, scratch, &above);
        if (above < k) {   /* fewer than k entries above 0: the k-th largest is 0 */
            *n_above = above;
            return 0;
        }
    }
    for (int t = 0; t < 2 && guess >= 256 * FLT_MIN && guess <= FLT_MAX / 256; t++) {
        const float factor = (float)(1 << band_octaves[t] / 2);   /* either side; exact */
        const float lo = guess / factor;
        const int m = count_and_keep(v, n, lo, guess * factor, scratch, &above);
        if (above < k && k <= above + m) {   /* the k-th largest is in the band */
            int inside;
            const float theta = kth_in_band(scratch, m, k - above, lo, band_octaves[t],
                                            scratch + m, &inside);
            *n_above = above + inside;
            return theta;
        }
    }
    return metrics_kth_largest(v, n, k, scratch, n_above);
}

/* --- mass and overlap ------------------------------------------------------------ */

typedef double f64x4 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));

/* out[] divided by its mass m (uniform when m underflowed); returns m. */
static double scale_by_mass(float *out, int n, double m)
{
    const float scale = m > 0 ? (float)(1.0 / m) : 0.0f;
    if (m > 0) {
#pragma omp simd   /* -O2 leaves it scalar: a tenth of a mass-only replay */
        for (int j = 0; j < n; j++)
            out[j] *= scale;
    } else
        for (int j = 0; j < n; j++)
            out[j] = 1.0f / (float)n;
    return m;
}

/* The gathered entries' mass m, and the entries divided by it (a uniform row when m
 * underflowed).  Four partial sums, of entries j = 0, 1, 2, 3 mod 4 (one chain of
 * dependent double adds was the replay's bottleneck, 4 cycles each) and the tail into
 * the first, in a fixed order, so results stay reproducible (gpu/replay_rules.h's
 * rules_mass sums the same way). */
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
    return scale_by_mass(out, n, (m0 + m4[1]) + (m4[2] + m4[3]));
}

/* The double sum of f16 values that are probabilities, in no particular order: each is
 * a multiple of 2^-24 below 2 (the rows are checked first: replay_source_rows), so
 * every partial sum of fewer than 2^28 of them is a multiple of 2^-24 below 2^29 and
 * fits a double's 53 bits exactly.  Any order therefore gives renormalise's bits, and
 * sixteen independent lanes do not wait on one another as its four chains do. */
static double sum_exact_f16(const float *v, int n)
{
    f64x4 a = {0, 0, 0, 0}, b = a, c = a, d = a;
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        f32x4 x[4];
        memcpy(x, v + j, sizeof x);
        a += __builtin_convertvector(x[0], f64x4);
        b += __builtin_convertvector(x[1], f64x4);
        c += __builtin_convertvector(x[2], f64x4);
        d += __builtin_convertvector(x[3], f64x4);
    }
    double m = 0;
    for (; j < n; j++)
        m += v[j];
    const f64x4 s = (a + b) + (c + d);
    return m + ((s[0] + s[1]) + (s[2] + s[3]));
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
    /* kept is in position order (policy.h (1)): one chunk's run of entries at a time
     * (AVX-512 gathers of the positions and then the halves were 2.5x slower on Zen 5) */
    for (int j = 0; j < n;) {
        const uint32_t c = (uint32_t)kept[j].position / METRICS_F16_COLS;
        const unsigned char *row = col[c] + 2 * roff;
        const uint32_t first = c * METRICS_F16_COLS;
        for (uint32_t i; j < n && (i = (uint32_t)kept[j].position - first) < METRICS_F16_COLS;
             j++)
            half[j] = fp16_load(row + 2 * i);
    }
    fp16_to_f32_n(half, out, (size_t)n);
    return scale_by_mass(out, n, sum_exact_f16(out, n));
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

/* Outputs are summed in a tile of OUT_TILE dimensions held in vector registers across
 * the keys (the plain loop loaded and stored o[] for every key, and output error was
 * most of a replay's time), for up to ROWS_AT_ONCE rows that share the values — the
 * query heads of one KV head — so each value vector is loaded once for all of them and
 * the rows' sums run side by side instead of waiting on one another.  Each o[d] is
 * still w·v summed over the keys in order, without contraction (-std=c11), so the
 * numbers are those of the plain loop, which handles what is left of D, whatever the
 * vector width or the number of rows. */
#ifdef __AVX512F__
typedef float f32xv __attribute__((vector_size(64)));
#define ROWS_AT_ONCE 4   /* 16 accumulators of the 32 registers */
#elif defined(__AVX__)
typedef float f32xv __attribute__((vector_size(32)));
#define ROWS_AT_ONCE 2   /* 8 of 16 */
#else
typedef float f32xv __attribute__((vector_size(16)));
#define ROWS_AT_ONCE 2
#endif
#define VEC_FLOATS ((int)(sizeof(f32xv) / sizeof(float)))
#define OUT_TILE   (4 * VEC_FLOATS)   /* dimensions per pass: four vectors a row */

static inline f32xv loadv(const float *p)
{
    f32xv x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* Row r's four accumulators, its weight times the value vector added, its store.  Named
 * variables, not arrays: the compiler kept arrays of them in memory. */
#define TILE_DECLARE(r) f32xv r##_0 = {0}, r##_1 = {0}, r##_2 = {0}, r##_3 = {0}
#define TILE_ADD(r, idx)                                                                \
    if (R > idx) {                                                                      \
        const float w = p[idx][i];                                                      \
        r##_0 += w * v0, r##_1 += w * v1, r##_2 += w * v2, r##_3 += w * v3;             \
    }
#define TILE_STORE(r, idx)                                                              \
    if (R > idx) {                                                                      \
        memcpy(o[idx] + d0, &r##_0, sizeof r##_0);                                      \
        memcpy(o[idx] + d0 + VEC_FLOATS, &r##_1, sizeof r##_1);                         \
        memcpy(o[idx] + d0 + 2 * VEC_FLOATS, &r##_2, sizeof r##_2);                     \
        memcpy(o[idx] + d0 + 3 * VEC_FLOATS, &r##_3, sizeof r##_3);                     \
    }

/* Rows r < R: o_r[d0..d0+OUT_TILE) = Σ_j p_r(i_j) v_{i_j}, over the keys i_j = j < n, or
 * i_j = kept[j].position.  Inlined with R and kept constant, so only the live rows'
 * accumulators exist and the branches fold away. */
static inline __attribute__((always_inline)) void
output_tiles(const float *const *p, int R, const policy_entry *kept, int n,
             const float *values, int D, int d0, float *const *o)
{
    TILE_DECLARE(a);
    TILE_DECLARE(b);
    TILE_DECLARE(c);
    TILE_DECLARE(e);
    for (int j = 0; j < n; j++) {
        const int i = kept ? kept[j].position : j;
        const float *v = values + (size_t)i * D + d0;
        const f32xv v0 = loadv(v), v1 = loadv(v + VEC_FLOATS), v2 = loadv(v + 2 * VEC_FLOATS),
                    v3 = loadv(v + 3 * VEC_FLOATS);
        TILE_ADD(a, 0);
        TILE_ADD(b, 1);
        TILE_ADD(c, 2);
        TILE_ADD(e, 3);
    }
    TILE_STORE(a, 0);
    TILE_STORE(b, 1);
    TILE_STORE(c, 2);
    TILE_STORE(e, 3);
}

/* The same for any R <= ROWS_AT_ONCE, and the dimensions past the last whole tile. */
static void output_rows(const float *const *p, int R, const policy_entry *kept, int n,
                        const float *values, int D, float *const *o)
{
    int d0 = 0;
    for (; d0 + OUT_TILE <= D; d0 += OUT_TILE)
        switch (R) {
        case 1: kept ? output_tiles(p, 1, kept, n, values, D, d0, o)
                     : output_tiles(p, 1, NULL, n, values, D, d0, o); break;
        case 2: kept ? output_tiles(p, 2, kept, n, values, D, d0, o)
                     : output_tiles(p, 2, NULL, n, values, D, d0, o); break;
#if ROWS_AT_ONCE > 2
        case 3: kept ? output_tiles(p, 3, kept, n, values, D, d0, o)
                     : output_tiles(p, 3, NULL, n, values, D, d0, o); break;
        default: kept ? output_tiles(p, 4, kept, n, values, D, d0, o)
                      : output_tiles(p, 4, NULL, n, values, D, d0, o); break;
#endif
        }
    for (int r = 0; r < R; r++) {
        memset(o[r] + d0, 0, (size_t)(D - d0) * sizeof *o[r]);
        for (int j = 0; d0 < D && j < n; j++) {
            const int i = kept ? kept[j].position : j;
            const float w = p[r][i], *v = values + (size_t)i * D;
            for (int d = d0; d < D; d++)
                o[r][d] += w * v[d];
        }
    }
}

void metrics_output_full_rows(const float *const *p, int rows, int len, const float *values,
                              int D, float *const *o)
{
    for (int r = 0; r < rows; r += ROWS_AT_ONCE) {
        const int R = rows - r < ROWS_AT_ONCE ? rows - r : ROWS_AT_ONCE;
        output_rows(p + r, R, NULL, len, values, D, o + r);
    }
}

void metrics_output_kept_rows(const float *const *p, int rows, const policy_entry *kept,
                              int n, const double *m, const float *values, int D,
                              float *const *o)
{
    for (int r = 0; r < rows; r += ROWS_AT_ONCE) {
        const int R = rows - r < ROWS_AT_ONCE ? rows - r : ROWS_AT_ONCE;
        output_rows(p + r, R, kept, n, values, D, o + r);
    }
    for (int r = 0; r < rows; r++) {
        const float scale = m[r] > 0 ? (float)(1.0 / m[r]) : 0.0f;
        for (int d = 0; d < D; d++)
            o[r][d] *= scale;
    }
}

void metrics_output_full(const float *p, int len, const float *values, int D, float *o)
{
    metrics_output_full_rows(&p, 1, len, values, D, &o);
}

void metrics_output_kept(const float *p, const policy_entry *kept, int n, double m,
                         const float *values, int D, float *o)
{
    metrics_output_kept_rows(&p, 1, kept, n, &m, values, D, &o);
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
