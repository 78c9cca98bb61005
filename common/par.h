/*
 * par.h — the group of processes a command runs in: one process (par_none.c, linked
 * into bin/kvsim) or the ranks of an MPI job (mpi/par_mpi.c, linked into bin/kvsim-mpi
 * when the Makefile finds mpicc).  The few collectives a sweep over many traces needs
 * (sim/many.h), so that no code above common/ includes mpi.h and a build without MPI
 * is the same program with one rank.
 *
 * Every call is collective unless it says otherwise: all ranks make it, in the same
 * order.  Sums go to rank 0 only.
 */
#ifndef PAR_H
#define PAR_H

#include <stddef.h>

int  par_init(int *argc, char ***argv);   /* 0, or -1 when MPI could not start */
void par_finalize(void);
int  par_rank(void);                      /* not collective */
int  par_size(void);                      /* not collective */
const char *par_kind(void);               /* "none" or "mpi"; not collective */

/* buf[0..n) summed over the ranks into rank 0's buf (others' buf is left as is). */
void par_sum_doubles(double *buf, size_t n);
void par_sum_longs(long *buf, size_t n);

/* The largest v over the ranks, on every rank (errors: any rank failing fails all). */
int  par_max_int(int v);

#endif /* PAR_H */
