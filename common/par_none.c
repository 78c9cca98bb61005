/* par_none.c — par.h for one process: rank 0 of 1, collectives are no-ops.
 * bin/kvsim-mpi links mpi/par_mpi.c, which defines the same symbols, ahead of
 * libcommon.a, so this object is never pulled into it. */
#include "par.h"

int par_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

void par_finalize(void) {}
int par_rank(void) { return 0; }
int par_size(void) { return 1; }
const char *par_kind(void) { return "none"; }

void par_sum_doubles(double *buf, size_t n)
{
    (void)buf;
    (void)n;
}

void par_sum_longs(long *buf, size_t n)
{
    (void)buf;
    (void)n;
}

int par_max_int(int v) { return v; }
