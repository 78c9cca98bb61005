/*
 * sha256.h — SHA-256 (FIPS 180-4), to name the exact model file a trace came from.
 *
 * Blocks are compressed with the x86 SHA extensions when the CPU has them (`kvtrace
 * record` hashes the whole model before its first token: 0.77 s -> 0.17 s for a 98 MB
 * GGUF), else by the portable loop; KV_SHA256_PORTABLE=1 in the environment forces
 * the portable loop (the tests check both give the same digests).
 */
#ifndef SHA256_H
#define SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"

typedef struct sha256_ctx {
    uint32_t state[8];
    uint64_t bytes;          /* message length so far */
    uint8_t  block[64];      /* pending partial block */
    size_t   used;           /* bytes pending in block */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t digest[32]);

/* The digest of a whole file as 64 lowercase hex digits + NUL in hex[65]. */
int sha256_file(const char *path, char hex[65], kv_err *err);

#endif
