/*
 * input.h — reading a whole text input (a prompt file, standard input) with a bound:
 * a file that never ends (/dev/zero) or is larger than any prompt is refused with a
 * clear error, not read until memory runs out.
 */
#ifndef INPUT_H
#define INPUT_H

#include <stdio.h>

#include "kv_err.h"

#define INPUT_MAX_BYTES ((size_t)64 << 20)   /* 64 MiB: far beyond any model's context */

/* All of fp (named `name` in messages), NUL-terminated (it may hold NUL bytes: *len
 * says how many bytes were read), malloc'd.  NULL and err: KV_EIO on a read error,
 * KV_ERANGE past INPUT_MAX_BYTES, KV_ENOMEM. */
char *input_read_all(FILE *fp, const char *name, size_t *len, kv_err *err);

#endif /* INPUT_H */
