/* blas_check.c — see blas_check.h. */
#include "blas_check.h"

#include <cblas.h>
#include <stdio.h>

int blas_is_openmp(char *why, unsigned long len)
{
    int parallel = openblas_get_parallel();
    if (parallel == 2)
        return 1;
    snprintf(why, len,
             "OpenBLAS reports parallel mode %d (%s), not the OpenMP build (2): install "
             "libopenblas-openmp-dev and select it with 'update-alternatives --config "
             "libopenblas.so.0-x86_64-linux-gnu'",
             parallel, parallel == 0 ? "sequential" : "pthreads");
    return 0;
}

void blas_set_threads(int n) { openblas_set_num_threads(n); }
