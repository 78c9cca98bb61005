/*
 * kv_err.h — the one error convention of kvtrace/kvsim.
 *
 * Every fallible call returns 0 on success or a negative KV_E* code, and fills a
 * caller-owned kv_err with a message that names the file, the offset or field, what
 * was found and what was expected:
 *
 *     model.gguf: offset 1832: tensor 'blk.3.attn_q.weight' has 5 dims, expected at most 4
 *
 * Lookups that may legitimately find nothing return NULL instead.  A NULL kv_err is
 * allowed everywhere: the message is then dropped.  The codes, their names and their
 * exit statuses come from one table, KV_ERROR_MAP, so they cannot drift apart.
 */
#ifndef KV_ERR_H
#define KV_ERR_H

#include <stddef.h>

/*     code          value  exit  meaning */
#define KV_ERROR_MAP(X)                                                   \
    X(KV_OK,            0,   0,  "success")                               \
    X(KV_EUSAGE,       -1,   2,  "bad command-line usage")                \
    X(KV_EIO,          -2,   1,  "input/output error")                    \
    X(KV_EFORMAT,      -3,   1,  "malformed or foreign file")             \
    X(KV_EUNSUPPORTED, -4,   1,  "unsupported feature")                   \
    X(KV_ENOMEM,       -5,   1,  "out of memory")                         \
    X(KV_ERANGE,       -6,   1,  "value out of range")                    \
    X(KV_EEXIST,       -7,   1,  "refusing to overwrite")                 \
    X(KV_EINTERRUPTED, -8,   1,  "interrupted")                           \
    X(KV_ENOTFOUND,    -9,   1,  "not found")

enum kv_error_code {
#define KV_ERR_ENUM(name, value, exit_status, text) name = value,
    KV_ERROR_MAP(KV_ERR_ENUM)
#undef KV_ERR_ENUM
};

#define KV_ERR_MSG_MAX 512

typedef struct kv_err {
    int  code;                  /* the last KV_E* code recorded, KV_OK if none */
    char msg[KV_ERR_MSG_MAX];   /* human-readable, no trailing newline */
} kv_err;

/* Record an error (printf-style) and return `code`, so callers can write
 * `return kv_errorf(err, KV_EFORMAT, "%s: offset %zu: ...", path, off);`. */
int kv_errorf(kv_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the existing message with more context ("while reading X: "). Returns err->code. */
int kv_err_prefix(kv_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

const char *kv_err_name(int code);     /* "KV_EFORMAT"; "KV_E?" for an unknown code */
const char *kv_err_text(int code);     /* "malformed or foreign file" */
int         kv_err_exit_status(int code); /* process exit status for a code: 0, 1 or 2 */

#endif /* KV_ERR_H */
