/*
 * journal.h — an append-only file of finished work units, so that an interrupted job
 * (a killed rank, a cluster's time limit) continues where it stopped: `--resume FILE`
 * of kvsim sweep/replay/scope (sim/many.h, docs/SCALE.md).
 *
 * A record is one text line: "kvsim-unit1 KEY N V1 .. VN CHECK": KEY names the unit
 * (a hex digest its writer chose), the values are C99 hex floats (%a: exact round
 * trip), CHECK is a digest of the line before it.  Each record is written with ONE
 * write() on a descriptor opened O_APPEND, so ranks of an MPI job may append to the
 * same file on a local or parallel file system (Lustre, GPFS; not NFS, where O_APPEND
 * is not atomic).  Reading keeps only well-formed records with a matching CHECK: a
 * line torn by a kill is ignored, its unit recomputed (opening ends it with a newline,
 * so that the next record appended stays whole).  The journal is never read as
 * a result: results are written by common/out.h from the sums it restores.
 */
#ifndef JOURNAL_H
#define JOURNAL_H

#include <stddef.h>

#include "kv_err.h"

#define JOURNAL_KEY 32   /* hex characters of a key */

typedef struct journal journal;   /* opaque */

/* Read path's records (a missing file is an empty journal) and open it for appending
 * (created when missing).  NULL and err (KV_EIO naming the path) on failure. */
journal *journal_open(const char *path, kv_err *err);

/* The values of the record with key, or NULL (*n = 0) when there is none; borrowed
 * until journal_close.  A key recorded twice keeps its first record. */
const double *journal_find(const journal *j, const char *key, size_t *n);

/* Append one record: key (JOURNAL_KEY hex characters), v[0..n).  0 or KV_EIO. */
int journal_append(journal *j, const char *key, const double *v, size_t n, kv_err *err);

int  journal_records(const journal *j);   /* well-formed records read at open */
void journal_close(journal *j);

/* key = the first JOURNAL_KEY hex digits of SHA-256(text). */
void journal_key(const char *text, size_t len, char key[JOURNAL_KEY + 1]);

#endif /* JOURNAL_H */
