/*
 * scope_report.h — `kvsim scope`'s output: the usual metric lines of each (score, scope,
 * r) configuration, with `scope` written `window:r` / `std:r`, then one `spread` line
 * per (score, scope): max − min across r of each metric over the overall lines (RoCo's
 * robustness claim as a number).
 */
#ifndef SCOPE_REPORT_H
#define SCOPE_REPORT_H

#include <stdio.h>

#include "kv_err.h"
#include "replay_setup.h"

/* Write the CSV (csv, "-" or NULL: stdout) and the JSON summary (json, may be NULL)
 * of setup s's sums acc; `command` is the provenance.  0 or KV_EIO. */
int scope_report_write(const replay_setup *s, const replay_acc *acc, const char *command,
                       const char *csv, const char *json, kv_err *err);

/* Every line of that CSV but the header, into f (sim/many.c: one CSV of many traces). */
void scope_report_lines(FILE *f, const replay_setup *s, const replay_acc *acc);

#endif /* SCOPE_REPORT_H */
