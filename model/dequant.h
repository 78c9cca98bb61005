/*
 * dequant.h — the ggml tensor type table and dequantisation of weight rows to F32.
 *
 * Every GGUF tensor carries a ggml type id.  Types store `block` consecutive elements
 * of the contiguous dimension (ne[0]) in `bytes` bytes; a row of n elements takes
 * (n / block) * bytes bytes and n must be a multiple of block.  Block layouts and the
 * formulas are in reference/inference.md §1.3 (ggml's src/ggml-common.h and
 * src/ggml-quants.c are the authority).
 *
 * The table knows the size of every type a current GGUF file may hold, so the reader
 * can place any tensor; dequant_row() converts the types llama-family files use:
 * F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K and IQ4_NL.
 *
 * Results are bit-identical to ggml's dequantize_row_* and to gguf-py's
 * gguf.quants.dequantize: the same float32 operations in the same order, one rounding
 * each (no fused multiply-add, see dequant.c).
 */
#ifndef DEQUANT_H
#define DEQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"

/*       name     id  block  bytes   (ggml/src/ggml.c type_traits) */
#define GGML_TYPE_MAP(X)         \
    X(F32,       0,    1,    4)  \
    X(F16,       1,    1,    2)  \
    X(Q4_0,      2,   32,   18)  \
    X(Q4_1,      3,   32,   20)  \
    X(Q5_0,      6,   32,   22)  \
    X(Q5_1,      7,   32,   24)  \
    X(Q8_0,      8,   32,   34)  \
    X(Q8_1,      9,   32,   36)  \
    X(Q2_K,     10,  256,   84)  \
    X(Q3_K,     11,  256,  110)  \
    X(Q4_K,     12,  256,  144)  \
    X(Q5_K,     13,  256,  176)  \
    X(Q6_K,     14,  256,  210)  \
    X(Q8_K,     15,  256,  292)  \
    X(IQ2_XXS,  16,  256,   66)  \
    X(IQ2_XS,   17,  256,   74)  \
    X(IQ3_XXS,  18,  256,   98)  \
    X(IQ1_S,    19,  256,   50)  \
    X(IQ4_NL,   20,   32,   18)  \
    X(IQ3_S,    21,  256,  110)  \
    X(IQ2_S,    22,  256,   82)  \
    X(IQ4_XS,   23,  256,  136)  \
    X(I8,       24,    1,    1)  \
    X(I16,      25,    1,    2)  \
    X(I32,      26,    1,    4)  \
    X(I64,      27,    1,    8)  \
    X(F64,      28,    1,    8)  \
    X(IQ1_M,    29,  256,   56)  \
    X(BF16,     30,    1,    2)  \
    X(TQ1_0,    34,  256,   54)  \
    X(TQ2_0,    35,  256,   66)  \
    X(MXFP4,    39,   32,   17)  \
    X(NVFP4,    40,   64,   36)  \
    X(Q1_0,     41,  128,   18)

typedef enum ggml_type {
#define GGML_TYPE_ENUM(name, id, block, bytes) GGML_TYPE_##name = id,
    GGML_TYPE_MAP(GGML_TYPE_ENUM)
#undef GGML_TYPE_ENUM
    GGML_TYPE_COUNT = 42      /* one past the largest id above; gaps are removed types */
} ggml_type;

/* Table lookups.  An id that is not in the table ("unknown") gives NULL / 0 / -1. */
const char *ggml_type_name(int type);              /* "Q4_K"; NULL if unknown */
int         ggml_type_from_name(const char *name); /* case-insensitive; -1 if unknown */
int         ggml_type_block(int type);             /* elements per block; 0 if unknown */
int         ggml_type_bytes(int type);             /* bytes per block; 0 if unknown */
int         ggml_type_can_dequant(int type);       /* 1 if dequant_row handles it */

/* Bytes of a row of n elements: 0 and KV_EUNSUPPORTED for an unknown type, KV_EFORMAT
 * when n is negative or not a multiple of the block size. */
int ggml_row_size(int type, int64_t n, size_t *out, kv_err *err);

/* Dequantise one row of n elements (n a multiple of the block size) from `src`, which
 * needs no alignment, into dst[0..n).  KV_EUNSUPPORTED for a type dequant_row does not
 * handle, KV_EFORMAT for a bad n; nothing is written then. */
int dequant_row(int type, const void *src, float *dst, int64_t n, kv_err *err);

/* A Q4_K or Q5_K block (256 elements) as its 8 sub-blocks of 32: element l of sub-block
 * k dequantises to d[k] · q[k][l] − m[k], the very floats dequant_row computes (the
 * model computes with them, exactly).  KV_EUNSUPPORTED for another type. */
int dequant_k_sub_blocks(int type, const void *block, float d[8], float m[8],
                         uint8_t q[8][32]);

/* Only the scales: d[k] and m[k] of dequant_k_sub_blocks, without unpacking q (the
 * model's kernels read q from the block themselves). */
int dequant_k_scales(int type, const void *block, float d[8], float m[8]);

#endif /* DEQUANT_H */
