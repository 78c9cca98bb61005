/*
 * blas_check.h — make sure the BLAS we link is OpenBLAS's OpenMP build.
 *
 * Debian's pthreads build of OpenBLAS oversubscribes (or hangs) when called from an
 * OpenMP program, and where both builds are installed the alternatives system may
 * still pick it.  openblas_get_parallel() reports 2 for the OpenMP build.
 */
#ifndef BLAS_CHECK_H
#define BLAS_CHECK_H

/* 1 if the OpenMP build is in use; otherwise 0 and a one-line explanation (naming
 * the package and the alternatives command) in why[len]. */
int blas_is_openmp(char *why, unsigned long len);

/* Set the BLAS thread count (used by --threads and the benchmarks). */
void blas_set_threads(int n);

#endif
