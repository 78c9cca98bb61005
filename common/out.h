/*
 * out.h — the one way kvtrace and kvsim write result files, and the CSV/JSON value
 * writers every output shares.
 *
 * The output rule, the same for every command:
 *   (1) "-" is standard output.
 *   (2) A regular file (new or existing) is written to a temporary sibling and renamed
 *       into place only when every byte was written: an interrupted or failed write
 *       never leaves a file that looks complete, and a replaced file keeps its mode.
 *   (3) A symbolic link is written through: its target is replaced by rule (2).
 *   (4) Another kind of file (a FIFO, a terminal, /dev/null) is written to directly,
 *       never replaced; a write error there (a full /dev/full) is an error.
 *   (5) An output that is one of the command's inputs (the same file, whatever its
 *       name) is refused before anything runs: out_check() with the inputs.
 * JSON never holds a non-finite number (null instead), and CSV text fields are quoted
 * as RFC 4180 wants when they need it.
 */
#ifndef OUT_H
#define OUT_H

#include <stdio.h>

#include "kv_err.h"

typedef struct out_file out_file;   /* opaque */

/* Before a long run: can `path` be written by the rule (its directory writable, not a
 * directory itself), and is it none of inputs[0..n_inputs) (5)?  NULL and "-" pass.
 * 0, KV_EIO naming the path and the reason, or KV_EUSAGE for an input. */
int out_check(const char *path, const char *const *inputs, int n_inputs, kv_err *err);

/* out_check() for each of a command's outputs (NULL entries skipped), and no two of
 * them the same file: `-o x --json x` would leave only one of the two. */
int out_check_all(const char *const *outputs, int n_outputs, const char *const *inputs,
                  int n_inputs, kv_err *err);

/* Open `path` for writing by the rule.  NULL and err on failure. */
out_file *out_open(const char *path, kv_err *err);
FILE     *out_stream(out_file *o);   /* where to write; borrowed */
/* Finish: with commit, flush and put the file in place (2)-(4); otherwise drop what
 * was written (a temporary is removed).  NULL does nothing.  0, or KV_EIO when a write
 * failed (then nothing is put in place). */
int       out_close(out_file *o, int commit, kv_err *err);

/* The whole file from one function: out_open, write(f, ctx), out_close. */
int out_write(const char *path, void (*write)(FILE *f, const void *ctx), const void *ctx,
              kv_err *err);

/* Rename the finished file `tmp` (made by the caller, e.g. gnuplot's figure) onto
 * `path` by rules (2) and (3), keeping a replaced file's mode.  0 or KV_EIO. */
int out_place(const char *tmp, const char *path, kv_err *err);

/* (3) The file `path` names: a symbolic link's target (resolved against the link's
 * directory when relative), else path itself, into out.  0 or KV_EIO. */
int out_target(const char *path, char *out, size_t len, kv_err *err);

/* --- values -------------------------------------------------------------------------- */

void out_json_string(FILE *f, const char *s);           /* "…" with escapes */
void out_json_number(FILE *f, double v);                /* %.9g, or null when not finite */
void out_csv_text(FILE *f, const char *s);              /* quoted when it needs to be */
void out_csv_number(FILE *f, double v);                 /* %.9g, or empty when not finite */

#endif /* OUT_H */
