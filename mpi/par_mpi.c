/*
 * par_mpi.c — par.h over MPI (compiled with mpicc into bin/kvsim-mpi only).
 *
 * Sums are MPI_Reduce to rank 0 in slices of at most 2^28 elements (MPI counts are
 * int).  In a sweep every accumulator is computed by exactly one rank and the others
 * hold +0.0 there, so the sum is that rank's value bit for bit (x + 0.0 == x for every
 * x an accumulator can hold, which starts at +0.0 and is never -0.0).
 */
#include "par.h"

#include <mpi.h>

#define SLICE ((size_t)1 << 28)

int par_init(int *argc, char ***argv)
{
    int provided;
    return MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS ? 0
                                                                                       : -1;
}

void par_finalize(void) { MPI_Finalize(); }

int par_rank(void)
{
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int par_size(void)
{
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
}

const char *par_kind(void) { return "mpi"; }

static void sum(void *buf, size_t n, size_t size, MPI_Datatype type)
{
    const int root = par_rank() == 0;
    for (size_t at = 0; at < n; at += SLICE) {
        const int count = (int)(n - at < SLICE ? n - at : SLICE);
        char *p = (char *)buf + at * size;
        MPI_Reduce(root ? MPI_IN_PLACE : p, root ? p : NULL, count, type, MPI_SUM, 0,
                   MPI_COMM_WORLD);
    }
}

void par_sum_doubles(double *buf, size_t n) { sum(buf, n, sizeof *buf, MPI_DOUBLE); }
void par_sum_longs(long *buf, size_t n) { sum(buf, n, sizeof *buf, MPI_LONG); }

int par_max_int(int v)
{
    int out = v;
    MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
}
