/* rank_corr.c — Spearman's ρ and its bootstrap interval; see rank_corr.h. */
#include "rank_corr.h"

#include "bootstrap.h"
#include "kv_err.h"

#include <math.h>
#include <stdlib.h>

typedef struct ranked { double v; int i; } ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    return x->v < y->v ? -1 : x->v > y->v ? 1 : x->i - y->i;
}

/* (1) Mid-ranks of v[n] into r[n]; `tmp` holds n entries. */
static void mid_ranks(const double *v, int n, double *r, ranked *tmp)
{
    for (int i = 0; i < n; i++)
        tmp[i] = (ranked){v[i], i};
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_ranked);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && tmp[j + 1].v == tmp[i].v)
            j++;
        for (int k = i; k <= j; k++)
            r[tmp[k].i] = (i + j) / 2.0 + 1;
        i = j + 1;
    }
}

static double pearson(const double *a, const double *b, int n)
{
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++)
        ma += a[i], mb += b[i];
    ma /= n, mb /= n;
    for (int i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

double rank_spearman(const double *x, const double *y, int n)
{
    if (n < 2)
        return NAN;
    double *rx = malloc((size_t)n * sizeof *rx), *ry = malloc((size_t)n * sizeof *ry);
    ranked *tmp = malloc((size_t)n * sizeof *tmp);
    double rho = NAN;
    if (rx && ry && tmp) {
        mid_ranks(x, n, rx, tmp);
        mid_ranks(y, n, ry, tmp);
        rho = pearson(rx, ry, n);
    }
    free(rx);
    free(ry);
    free(tmp);
    return rho;
}

int rank_spearman_ci(const double *x, const double *y, int n, int rounds, double alpha,
                     uint64_t seed, double *lo, double *hi)
{
    *lo = *hi = NAN;
    double *bx = malloc((size_t)(n > 0 ? n : 1) * sizeof *bx);
    double *by = malloc((size_t)(n > 0 ? n : 1) * sizeof *by);
    double *rho = malloc((size_t)(rounds > 0 ? rounds : 1) * sizeof *rho);
    int defined = 0;
    for (int r = 0; bx && by && rho && n > 0 && r < rounds; r++) {
        for (int i = 0; i < n; i++) {
            int pick = (int)(bootstrap_next(&seed) % (uint64_t)n);
            bx[i] = x[pick], by[i] = y[pick];
        }
        double v = rank_spearman(bx, by, n);
        if (!isnan(v))
            rho[defined++] = v;
    }
    int ok = bx && by && rho;
    if (ok && defined) {
        *lo = bootstrap_quantile(rho, defined, alpha / 2);
        *hi = bootstrap_quantile(rho, defined, 1 - alpha / 2);
    }
    free(bx);
    free(by);
    free(rho);
    return ok ? defined : KV_ENOMEM;
}
