/*
 * gguf.h — read-only GGUF model files (versions 2 and 3, little-endian), memory-mapped.
 *
 * A GGUF file is, in order (all integers little-endian; reference/inference.md §1):
 *
 *   1. magic            4 bytes  "GGUF"
 *   2. version          u32      2 or 3 (same layout; 1 and byte-swapped files are refused)
 *   3. tensor_count     u64
 *   4. metadata_count   u64
 *   5. metadata         metadata_count × { string key, u32 value_type, value }
 *                       string = u64 length + bytes (no NUL); array = u32 element type,
 *                       u64 count, count packed elements (strings and arrays nest)
 *   6. tensor infos     tensor_count × { string name, u32 n_dims, u64 ne[n_dims],
 *                       u32 ggml_type, u64 offset }   (ne[0] is the contiguous dimension)
 *   7. padding          zeros up to a multiple of the alignment (general.alignment, default 32)
 *   8. tensor data      each tensor at data_start + offset, offset a multiple of the alignment
 *
 * gguf_open() checks the whole structure before it returns: every count, length and
 * offset is range-checked against the bytes left before anything is read or allocated,
 * keys and tensor names are unique, every tensor has a known ggml type, a whole number
 * of blocks per row, and data that lies inside the file.  After a successful open, the
 * getters below cannot read out of bounds.
 *
 * Ownership: everything returned (names, strings, tensor infos, tensor data) is
 * borrowed from the gguf_file and valid until gguf_close().  Strings taken from the
 * file (gguf_get_str, gguf_arr_str) are NOT NUL-terminated — they point into the
 * mapping and come with their length.  Key names and tensor names are copies and ARE
 * NUL-terminated.
 *
 * Errors follow kv_err.h: gguf_open() returns NULL and fills `err` with the file, the
 * byte offset, the field, what was found and what was expected; the other fallible
 * calls return 0 or a negative KV_E* code.  Lookups that find nothing return NULL / -1.
 */
#ifndef GGUF_H
#define GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "kv_err.h"

#define GGUF_MAGIC             "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS          4
#define GGUF_MAX_NAME          63   /* tensor name bytes (ggml's GGML_MAX_NAME - 1) */
#define GGUF_MAX_DEPTH         8    /* array nesting accepted (the spec sets no limit) */

typedef struct gguf_file  gguf_file;    /* opaque: one open file */
typedef struct gguf_array gguf_array;   /* opaque: one array value, possibly nested */

typedef enum gguf_value_type {
    GGUF_TYPE_UINT8   = 0,
    GGUF_TYPE_INT8    = 1,
    GGUF_TYPE_UINT16  = 2,
    GGUF_TYPE_INT16   = 3,
    GGUF_TYPE_UINT32  = 4,
    GGUF_TYPE_INT32   = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL    = 7,    /* one byte; any non-zero byte reads as 1 */
    GGUF_TYPE_STRING  = 8,
    GGUF_TYPE_ARRAY   = 9,
    GGUF_TYPE_UINT64  = 10,
    GGUF_TYPE_INT64   = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT,
    GGUF_TYPE_INVALID = -1    /* returned by the type queries for a bad index */
} gguf_value_type;

typedef struct gguf_tensor {
    const char *name;          /* NUL-terminated copy, at most GGUF_MAX_NAME bytes */
    int         n_dims;        /* 1..4 as stored (0 is read as a scalar) */
    int64_t     ne[4];         /* elements per dimension, ne[0] contiguous; unused dims = 1 */
    int         type;          /* ggml type id (dequant.h); always a known one */
    uint64_t    offset;        /* from the start of the data section, as stored */
    const void *data;          /* into the mapping: data_start + offset */
    size_t      nbytes;        /* ggml_row_size(type, ne[0]) * ne[1] * ne[2] * ne[3] */
} gguf_tensor;

/* ---- open and close ---------------------------------------------------------------- */

/* Map and check `path`.  NULL and a filled `err` on any error (KV_EIO, KV_EFORMAT,
 * KV_EUNSUPPORTED, KV_ENOMEM). */
gguf_file  *gguf_open(const char *path, kv_err *err);

/* The same checks on bytes already in memory; `buf` is borrowed and must outlive the
 * result.  `name` is used in messages (and returned by gguf_path). */
gguf_file  *gguf_open_buffer(const void *buf, size_t size, const char *name, kv_err *err);

void        gguf_close(gguf_file *f);                 /* NULL is a no-op */

/* The caller is done with bytes [p, p + n) of the file for now: a mapped file drops
 * the whole pages among them from memory (they are read from the file again if
 * touched); a buffer is left alone.  Keeps the peak memory of a model load to one
 * copy of the weights. */
void        gguf_release(const gguf_file *f, const void *p, size_t n);

/* ---- the file ---------------------------------------------------------------------- */

const char *gguf_path(const gguf_file *f);            /* as given to gguf_open */
uint32_t    gguf_version(const gguf_file *f);         /* 2 or 3 */
uint64_t    gguf_file_size(const gguf_file *f);       /* bytes */
uint32_t    gguf_alignment(const gguf_file *f);       /* general.alignment or 32 */
uint64_t    gguf_data_offset(const gguf_file *f);     /* start of the tensor data section */
const char *gguf_type_name(gguf_value_type t);        /* "uint32", "array"; "?" if unknown */

/* ---- metadata: keys are indexed 0 .. gguf_n_keys()-1 in file order ----------------- */

int64_t         gguf_n_keys(const gguf_file *f);
int64_t         gguf_find_key(const gguf_file *f, const char *key);   /* -1 if absent */
const char     *gguf_key_name(const gguf_file *f, int64_t i);         /* NULL if i is bad */
gguf_value_type gguf_key_type(const gguf_file *f, int64_t i);         /* INVALID if i is bad */

/* Scalars.  get_int accepts every integer type and bool (KV_ERANGE for a uint64 above
 * INT64_MAX); get_float accepts float32, float64 and the integers.  Both return
 * KV_EFORMAT for any other type and KV_ERANGE for a bad index. */
int         gguf_get_int(const gguf_file *f, int64_t i, int64_t *out);
int         gguf_get_float(const gguf_file *f, int64_t i, double *out);

/* A string value: borrowed, NOT NUL-terminated, `*len` bytes.  NULL if not a string. */
const char *gguf_get_str(const gguf_file *f, int64_t i, size_t *len);

/* Arrays at the top level (the common case: token lists, merges, token types). */
gguf_value_type gguf_arr_type(const gguf_file *f, int64_t i);  /* element type; INVALID if not an array */
uint64_t        gguf_arr_len(const gguf_file *f, int64_t i);   /* 0 if not an array */
const char     *gguf_arr_str(const gguf_file *f, int64_t i, uint64_t j, size_t *len); /* borrowed, no NUL */
int             gguf_arr_int(const gguf_file *f, int64_t i, uint64_t j, int64_t *out);

/* Arrays of any depth.  gguf_get_arr(f, i) is NULL unless key i holds an array;
 * gguf_array_sub(a, j) is NULL unless element j of `a` is itself an array. */
const gguf_array *gguf_get_arr(const gguf_file *f, int64_t i);
gguf_value_type   gguf_array_type(const gguf_array *a);
uint64_t          gguf_array_len(const gguf_array *a);
const gguf_array *gguf_array_sub(const gguf_array *a, uint64_t j);
const char       *gguf_array_str(const gguf_array *a, uint64_t j, size_t *len);
int               gguf_array_int(const gguf_array *a, uint64_t j, int64_t *out);
int               gguf_array_float(const gguf_array *a, uint64_t j, double *out);

/* Required keys, for model loaders: fill `out` or fail with
 *   "MODEL.gguf: missing required key 'llama.block_count'"            (KV_ENOTFOUND)
 *   "MODEL.gguf: key 'llama.block_count' is a string, expected an integer" (KV_EFORMAT) */
int gguf_require_int(const gguf_file *f, const char *key, int64_t *out, kv_err *err);
int gguf_require_float(const gguf_file *f, const char *key, double *out, kv_err *err);
int gguf_require_str(const gguf_file *f, const char *key, const char **s, size_t *len,
                     kv_err *err);

/* ---- tensors: indexed 0 .. gguf_n_tensors()-1 in file order ------------------------ */

int64_t            gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);          /* NULL if i is bad */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); /* NULL if absent */

/* Describe the model file at `path` on standard output (kvtrace info, model/gguf_info.c):
 * architecture, shapes, tensor types, tokenizer, and with list_tensors every tensor.
 * 0, or gguf_open's error; KV_EIO when standard output fails. */
int gguf_info_print(const char *path, int list_tensors, kv_err *err);

#endif /* GGUF_H */
