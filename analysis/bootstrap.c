/* bootstrap.c — percentile bootstrap of a mean; see bootstrap.h. */
#include "bootstrap.h"

#include <stdlib.h>

uint64_t bootstrap_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bootstrap_quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    const double at = q * (n - 1);
    const int i = (int)at;
    return i + 1 < n ? v[i] + (at - i) * (v[i + 1] - v[i]) : v[n - 1];
}

int bootstrap_mean_ci(const double *v, int n, int resamples, double level, uint64_t seed,
                      bootstrap_ci *out)
{
    if (n < 1 || resamples < 1)
        return -1;
    double *means = malloc((size_t)resamples * sizeof *means);
    if (!means)
        return -1;
    double total = 0;
    for (int i = 0; i < n; i++)
        total += v[i];
    uint64_t state = seed;
    for (int r = 0; r < resamples; r++) {
        double s = 0;
        for (int i = 0; i < n; i++)   /* modulo bias < n / 2^64: nothing */
            s += v[bootstrap_next(&state) % (uint64_t)n];
        means[r] = s / n;
    }
    out->mean = total / n;
    out->lo = n == 1 ? out->mean : bootstrap_quantile(means, resamples, (1 - level) / 2);
    out->hi = n == 1 ? out->mean : bootstrap_quantile(means, resamples, (1 + level) / 2);
    free(means);
    return 0;
}
