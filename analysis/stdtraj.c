/* stdtraj.c — attention-std trajectories; see stdtraj.h for the binning rules. */
#include "stdtraj.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int std_age_bin(int age)
{
    int b = 0;
    while (age > 0) {
        age >>= 1;
        b++;
    }
    return b;
}

void std_age_range(int bin, int *lo, int *hi)
{
    *lo = bin == 0 ? 0 : 1 << (bin - 1);
    *hi = bin == 0 ? 0 : (1 << bin) - 1;
}

int std_age_bins(int T) { return std_age_bin(T > 1 ? T - 1 : 0) + 1; }

int std_sigma_bin(float sigma)
{
    if (!(sigma >= 0x1p-24f))
        return 0;
    if (sigma >= 1.0f)
        return STD_SIGMA_BINS - 1;
    uint32_t bits;
    memcpy(&bits, &sigma, sizeof bits);
    /* exponent and the top 3 mantissa bits: 8 bins per octave, from 2^-24 */
    int k = (int)(bits >> 20) - ((127 + STD_MIN_EXP) << 3);
    return 1 + k;
}

double std_sigma_value(int bin)
{
    if (bin <= 0)
        return 0;
    if (bin >= STD_SIGMA_BINS - 1)
        return 1;
    int k = bin - 1, e = k >> 3, m = k & 7;
    double lo = ldexp(1.0 + m / 8.0, STD_MIN_EXP + e), hi = ldexp(1.0 + (m + 1) / 8.0, STD_MIN_EXP + e);
    return sqrt(lo * hi);
}

int std_tracker_init(std_tracker *tr, int T)
{
    tr->T = T;
    tr->window = 0;
    tr->mean = calloc((size_t)T, sizeof *tr->mean);
    tr->m2 = calloc((size_t)T, sizeof *tr->m2);
    return tr->mean && tr->m2 ? 0 : -1;
}

void std_tracker_free(std_tracker *tr)
{
    free(tr->mean);
    free(tr->m2);
    memset(tr, 0, sizeof *tr);
}

int std_summary_init(std_summary *s, int T)
{
    s->n_bins = std_age_bins(T);
    s->count = calloc((size_t)s->n_bins, sizeof *s->count);
    s->sum = calloc((size_t)s->n_bins, sizeof *s->sum);
    s->hist = calloc((size_t)s->n_bins * STD_SIGMA_BINS, sizeof *s->hist);
    return s->count && s->sum && s->hist ? 0 : -1;
}

void std_summary_free(std_summary *s)
{
    free(s->count);
    free(s->sum);
    free(s->hist);
    memset(s, 0, sizeof *s);
}

void std_summary_merge(std_summary *into, const std_summary *from)
{
    for (int b = 0; b < into->n_bins && b < from->n_bins; b++) {
        into->count[b] += from->count[b];
        into->sum[b] += from->sum[b];
        for (int k = 0; k < STD_SIGMA_BINS; k++)
            into->hist[(size_t)b * STD_SIGMA_BINS + k] += from->hist[(size_t)b * STD_SIGMA_BINS + k];
    }
}

void std_tracker_step(std_tracker *tr, const float *p, int t, float *sigma, std_summary *s)
{
    const int oldest = tr->window > 0 && t + 1 > tr->window ? t + 1 - tr->window : 0;
    for (int i = oldest; i <= t; i++) {
        const double n = t - i + 1, x = p[i];
        const double delta = x - tr->mean[i];
        tr->mean[i] += delta / n;
        tr->m2[i] += delta * (x - tr->mean[i]);
        sigma[i] = (float)sqrt(tr->m2[i] > 0 ? tr->m2[i] / n : 0);
    }
    /* Ages t − i fall in bins that change only at powers of two: walk them once. */
    const int max_age = t - oldest;
    for (int b = 0;; b++) {
        int lo, hi;
        std_age_range(b, &lo, &hi);
        if (lo > max_age)
            break;
        if (hi > max_age)
            hi = max_age;
        uint64_t *hist = s->hist + (size_t)b * STD_SIGMA_BINS;
        double sum = 0;
        for (int age = lo; age <= hi; age++) {
            const float v = sigma[t - age];
            sum += v;
            hist[std_sigma_bin(v)]++;
        }
        s->count[b] += (uint64_t)(hi - lo + 1);
        s->sum[b] += sum;
    }
}

double std_summary_quantile(const std_summary *s, int b, double q)
{
    const uint64_t n = s->count[b];
    if (!n)
        return 0;
    const uint64_t *hist = s->hist + (size_t)b * STD_SIGMA_BINS;
    /* the smallest bin whose cumulative count reaches ceil(q * n) */
    uint64_t want = (uint64_t)ceil(q * (double)n), seen = 0;
    if (want < 1)
        want = 1;
    for (int k = 0; k < STD_SIGMA_BINS; k++)
        if ((seen += hist[k]) >= want)
            return std_sigma_value(k);
    return std_sigma_value(STD_SIGMA_BINS - 1);
}

int std_sample_age(int age)
{
    if (age < 16)
        return 1;
    int top = std_age_bin(age) - 1;         /* 2^top <= age < 2^(top+1) */
    return age % (1 << (top - 2)) == 0;     /* four evenly spaced ages per octave */
}
