/*
 * gguf.c — the GGUF reader; the file layout and the API contract are in gguf.h.
 *
 * One parser reads a byte range (a file mapping or a caller's buffer) front to back
 * through a cursor, in sections: header, metadata, tensor infos, tensor placement.
 *
 * Invariants:
 *  (1) Nothing is read before need() has checked that it lies inside the buffer.
 *      Memory follows the bytes actually parsed: the pair and tensor tables grow as
 *      entries are read, and an array's index is allocated only after its count has
 *      been checked against the bytes left (each element takes at least one byte), so
 *      a lying count is an error, never a huge allocation.
 *  (2) Every error names the file, the byte offset where the offending field starts,
 *      what was found and what was expected; parsing stops at the first.
 *  (3) After a successful open, every stored pointer into the buffer points at bytes
 *      already checked, so the getters only check indices and types.
 *  (4) gguf_close() frees whatever a failed open had built so far.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dequant.h"

/* An array value.  Fixed-size elements are read in place from `data`; variable-size
 * ones (strings, nested arrays) get an index built at open so access is O(1). */
struct gguf_array {
    gguf_value_type type;      /* element type */
    uint64_t        n;         /* number of elements */
    const uint8_t  *data;      /* first element, in the buffer */
    const uint8_t **items;     /* (n,) start of each string element; NULL otherwise */
    gguf_array     *subs;      /* (n,) each nested array; NULL unless type == ARRAY */
};

typedef struct gguf_kv {
    char           *name;      /* NUL-terminated copy of the key */
    gguf_value_type type;
    const uint8_t  *value;     /* the value's bytes in the buffer (a string's u64 length) */
    gguf_array      arr;       /* the value when type == ARRAY */
} gguf_kv;

/* A name and its index, sorted by name: lookups by bsearch, duplicates side by side. */
typedef struct name_ref {
    const char *name;
    int64_t     i;
} name_ref;

struct gguf_file {
    char          *path;        /* copy of the name given at open */
    const uint8_t *base;        /* the whole file */
    size_t         size;        /* its bytes */
    bool           mapped;      /* base is our mmap (else the caller's buffer) */
    uint32_t       version;     /* 2 or 3 */
    uint32_t       alignment;   /* of the data section and of each tensor offset */
    uint64_t       data_offset; /* start of the data section */
    int64_t        n_kv;
    gguf_kv       *kv;          /* (n_kv,) in file order */
    name_ref      *kv_index;    /* (n_kv,) sorted by name */
    int64_t        n_tensors;
    gguf_tensor   *tensors;     /* (n_tensors,) in file order */
    name_ref      *tensor_index;/* (n_tensors,) sorted by name */
};

/* ---- the cursor: bounds-checked reads that report where they failed ---------------- */

typedef struct cursor {
    gguf_file       *f;         /* being built */
    size_t           pos;       /* next byte to read */
    char             ctx[160];  /* what is being read: "metadata pair #3 'general.name'" */
    kv_err          *err;
} cursor;

static size_t left(const cursor *c) { return c->f->size - c->pos; }

/* Record a format error at byte `off` of the file, prefixed by the cursor's context. */
__attribute__((format(printf, 4, 5)))
static int fail(cursor *c, int code, size_t off, const char *fmt, ...)
{
    char what[KV_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kv_errorf(c->err, code, "%s: offset %zu: %s%s%s", c->f->path, off, c->ctx,
                     c->ctx[0] ? ": " : "", what);
}

static int need(cursor *c, uint64_t n, const char *field)
{
    if (n <= left(c))
        return 0;
    return fail(c, KV_EFORMAT, c->pos, "%s needs %llu bytes, the file ends %zu bytes later",
                field, (unsigned long long)n, left(c));
}

static int rd_u32(cursor *c, const char *field, uint32_t *v)
{
    int rc = need(c, 4, field);
    if (rc)
        return rc;
    memcpy(v, c->f->base + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(cursor *c, const char *field, uint64_t *v)
{
    int rc = need(c, 8, field);
    if (rc)
        return rc;
    memcpy(v, c->f->base + c->pos, 8);
    c->pos += 8;
    return 0;
}

/* A string: u64 length, then that many bytes. */
static int rd_str(cursor *c, const char *field, const uint8_t **s, uint64_t *len)
{
    size_t at = c->pos;
    int rc = rd_u64(c, field, len);
    if (rc)
        return rc;
    if (*len > left(c))
        return fail(c, KV_EFORMAT, at, "%s length %llu runs past the end of the file (%zu bytes left)",
                    field, (unsigned long long)*len, left(c));
    *s = c->f->base + c->pos;
    c->pos += *len;
    return 0;
}

/* A NUL-terminated copy of a name read from the file; names with NUL bytes are refused
 * because they could never be looked up. */
static int copy_name(cursor *c, size_t at, const uint8_t *s, uint64_t len, const char *field,
                     char **out)
{
    if (len == 0)
        return fail(c, KV_EFORMAT, at, "empty %s", field);
    if (memchr(s, 0, len))
        return fail(c, KV_EFORMAT, at, "%s contains a NUL byte", field);
    *out = malloc(len + 1);
    if (!*out)
        return fail(c, KV_ENOMEM, at, "out of memory for a %llu-byte %s", (unsigned long long)len,
                    field);
    memcpy(*out, s, len);
    (*out)[len] = '\0';
    return 0;
}

/* ---- value types ------------------------------------------------------------------- */

static const char *const type_names[GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool",  "string", "array", "uint64", "int64", "float64",
};

/* Bytes of a fixed-size value; 0 for STRING and ARRAY. */
static const uint8_t type_sizes[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_type_name(gguf_value_type t)
{
    return t >= 0 && t < GGUF_TYPE_COUNT ? type_names[t] : "?";
}

static int rd_type(cursor *c, const char *field, gguf_value_type *t)
{
    size_t at = c->pos;
    uint32_t v;
    int rc = rd_u32(c, field, &v);
    if (rc)
        return rc;
    if (v >= GGUF_TYPE_COUNT)
        return fail(c, KV_EFORMAT, at, "%s %u is not a GGUF value type (0..%d)", field, v,
                    GGUF_TYPE_COUNT - 1);
    *t = (gguf_value_type)v;
    return 0;
}

/* ---- metadata ----------------------------------------------------------------------- */

static void free_array(gguf_array *a)
{
    if (a->subs)
        for (uint64_t j = 0; j < a->n; j++)
            free_array(&a->subs[j]);
    free(a->subs);
    free(a->items);
}

/* The smallest number of bytes one element of type t takes in the file. */
static uint64_t min_elem_bytes(gguf_value_type t)
{
    if (t == GGUF_TYPE_STRING)
        return 8;                  /* the length */
    if (t == GGUF_TYPE_ARRAY)
        return 12;                 /* element type + count */
    return type_sizes[t];
}

static int parse_array(cursor *c, gguf_array *a, int depth)
{
    int rc = rd_type(c, "array element type", &a->type);
    if (rc)
        return rc;
    size_t at = c->pos;
    if ((rc = rd_u64(c, "array length", &a->n)))
        return rc;
    uint64_t min = min_elem_bytes(a->type);
    if (a->n > left(c) / min)
        return fail(c, KV_EFORMAT, at,
                    "array of %llu %s elements needs at least %llu bytes each, only %zu bytes left",
                    (unsigned long long)a->n, type_names[a->type], (unsigned long long)min, left(c));
    a->data = c->f->base + c->pos;
    if (a->type == GGUF_TYPE_ARRAY) {
        if (depth >= GGUF_MAX_DEPTH)
            return fail(c, KV_EUNSUPPORTED, at, "arrays nested %d deep, at most %d supported",
                        depth + 1, GGUF_MAX_DEPTH);
        if (!(a->subs = calloc(a->n ? a->n : 1, sizeof *a->subs)))
            return fail(c, KV_ENOMEM, at, "out of memory for %llu nested arrays",
                        (unsigned long long)a->n);
        for (uint64_t j = 0; j < a->n; j++)
            if ((rc = parse_array(c, &a->subs[j], depth + 1)))
                return rc;
    } else if (a->type == GGUF_TYPE_STRING) {
        if (!(a->items = malloc((a->n ? a->n : 1) * sizeof *a->items)))
            return fail(c, KV_ENOMEM, at, "out of memory for %llu strings",
                        (unsigned long long)a->n);
        for (uint64_t j = 0; j < a->n; j++) {
            const uint8_t *s;
            uint64_t len;
            a->items[j] = c->f->base + c->pos;
            if ((rc = rd_str(c, "string element", &s, &len)))
                return rc;
        }
    } else {
        c->pos += a->n * min;      /* checked above: a->n * min <= left(c) */
    }
    return 0;
}

static int parse_value(cursor *c, gguf_kv *kv)
{
    kv->value = c->f->base + c->pos;
    if (kv->type == GGUF_TYPE_ARRAY)
        return parse_array(c, &kv->arr, 1);
    if (kv->type == GGUF_TYPE_STRING) {
        const uint8_t *s;
        uint64_t len;
        return rd_str(c, "string value", &s, &len);
    }
    int rc = need(c, type_sizes[kv->type], type_names[kv->type]);
    if (rc == 0)
        c->pos += type_sizes[kv->type];
    return rc;
}

static int parse_kv(cursor *c, int64_t i)
{
    gguf_file *f = c->f;
    gguf_kv *kv = &f->kv[i];
    snprintf(c->ctx, sizeof c->ctx, "metadata pair #%lld", (long long)i);
    size_t at = c->pos;
    const uint8_t *key;
    uint64_t len;
    int rc = rd_str(c, "key", &key, &len);
    if (rc || (rc = copy_name(c, at, key, len, "key", &kv->name)))
        return rc;
    snprintf(c->ctx, sizeof c->ctx, "metadata pair #%lld '%.100s'", (long long)i, kv->name);
    if ((rc = rd_type(c, "value type", &kv->type)))
        return rc;
    return parse_value(c, kv);
}

/* ---- name indexes --------------------------------------------------------------------- */

static int cmp_ref(const void *a, const void *b)
{
    return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

/* Index the n names name_of(f, 0..n) by name; *dup is set to the later of the first
 * two equal names found, or -1. */
static name_ref *index_names(const gguf_file *f, int64_t n,
                             const char *(*name_of)(const gguf_file *, int64_t), int64_t *dup)
{
    name_ref *ix = malloc((size_t)(n ? n : 1) * sizeof *ix);
    *dup = -1;
    if (!ix)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        ix[i] = (name_ref){name_of(f, i), i};
    qsort(ix, (size_t)n, sizeof *ix, cmp_ref);
    for (int64_t i = 1; i < n && *dup < 0; i++)
        if (!strcmp(ix[i - 1].name, ix[i].name))
            *dup = ix[i - 1].i > ix[i].i ? ix[i - 1].i : ix[i].i;
    return ix;
}

static int64_t find_name(const name_ref *ix, int64_t n, const char *name)
{
    if (!ix || !name)
        return -1;
    name_ref key = {name, 0};
    const name_ref *hit = bsearch(&key, ix, (size_t)n, sizeof *ix, cmp_ref);
    return hit ? hit->i : -1;
}

static size_t value_offset(const gguf_file *f, int64_t i)
{
    return (size_t)(f->kv[i].value - f->base);
}

static int index_keys(cursor *c)
{
    gguf_file *f = c->f;
    int64_t dup;
    c->ctx[0] = '\0';
    f->kv_index = index_names(f, f->n_kv, gguf_key_name, &dup);
    if (!f->kv_index)
        return fail(c, KV_ENOMEM, c->pos, "out of memory for the key index");
    if (dup >= 0)
        return fail(c, KV_EFORMAT, value_offset(f, dup), "metadata pair #%lld repeats key '%s'",
                    (long long)dup, f->kv[dup].name);
    return 0;
}

/* general.alignment, if present, must be a uint32 power of two (as ggml requires). */
static int read_alignment(cursor *c)
{
    gguf_file *f = c->f;
    int64_t i = gguf_find_key(f, "general.alignment");
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (i < 0)
        return 0;
    if (f->kv[i].type != GGUF_TYPE_UINT32)
        return fail(c, KV_EFORMAT, value_offset(f, i), "key 'general.alignment' is %s, expected uint32",
                    type_names[f->kv[i].type]);
    uint32_t a;
    memcpy(&a, f->kv[i].value, 4);
    if (a == 0 || (a & (a - 1)))
        return fail(c, KV_EFORMAT, value_offset(f, i),
                    "general.alignment = %u, expected a non-zero power of two", a);
    f->alignment = a;
    return 0;
}

/* ---- tensors -------------------------------------------------------------------------- */

/* Shape and type of tensor t, read at the cursor (after its name). */
static int parse_tensor_shape(cursor *c, gguf_tensor *t)
{
    size_t at = c->pos;
    uint32_t n_dims;
    int rc = rd_u32(c, "n_dims", &n_dims);
    if (rc)
        return rc;
    if (n_dims > GGUF_MAX_DIMS)
        return fail(c, KV_EFORMAT, at, "%u dims, expected at most %d", n_dims, GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        at = c->pos;
        if (d < t->n_dims && (rc = rd_u64(c, "ne", &ne)))
            return rc;
        if (ne > (uint64_t)INT64_MAX)
            return fail(c, KV_EFORMAT, at, "ne[%d] = %llu, expected below 2^63", d,
                        (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    at = c->pos;
    uint32_t type;
    if ((rc = rd_u32(c, "type", &type)))
        return rc;
    if (!ggml_type_name((int)type))
        return fail(c, KV_EUNSUPPORTED, at, "unknown ggml type id %u", type);
    t->type = (int)type;
    return 0;
}

/* Bytes of tensor t; an error if a row is not whole blocks or the size overflows. */
static int tensor_bytes(cursor *c, size_t at, gguf_tensor *t)
{
    size_t row;
    kv_err why;
    if (ggml_row_size(t->type, t->ne[0], &row, &why))
        return fail(c, KV_EFORMAT, at, "%s", why.msg);
    size_t total = row;
    int64_t elems = t->ne[0];
    for (int d = 1; d < GGUF_MAX_DIMS; d++)
        if (__builtin_mul_overflow(total, (size_t)t->ne[d], &total) ||
            __builtin_mul_overflow(elems, t->ne[d], &elems))
            return fail(c, KV_EFORMAT, at, "shape %lld x %lld x %lld x %lld overflows",
                        (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                        (long long)t->ne[3]);
    t->nbytes = total;
    return 0;
}

static int parse_tensor_info(cursor *c, int64_t i)
{
    gguf_file *f = c->f;
    gguf_tensor *t = &f->tensors[i];
    snprintf(c->ctx, sizeof c->ctx, "tensor info #%lld", (long long)i);
    size_t at = c->pos;
    const uint8_t *name;
    uint64_t len;
    int rc = rd_str(c, "name", &name, &len);
    if (rc)
        return rc;
    if (len > GGUF_MAX_NAME)
        return fail(c, KV_EFORMAT, at, "name is %llu bytes, expected at most %d",
                    (unsigned long long)len, GGUF_MAX_NAME);
    if ((rc = copy_name(c, at, name, len, "name", (char **)&t->name)))
        return rc;
    snprintf(c->ctx, sizeof c->ctx, "tensor #%lld '%s'", (long long)i, t->name);
    if ((rc = parse_tensor_shape(c, t)) || (rc = tensor_bytes(c, at, t)))
        return rc;
    return rd_u64(c, "offset", &t->offset);
}

/* The data section starts at the first aligned offset after the infos; each tensor
 * must sit at an aligned offset in it and end inside the file. */
static int place_tensors(cursor *c)
{
    gguf_file *f = c->f;
    uint64_t a = f->alignment, start = c->pos + (a - c->pos % a) % a;
    f->data_offset = start;
    if (f->n_tensors == 0)
        return 0;
    c->ctx[0] = '\0';
    if (start > f->size)
        return fail(c, KV_EFORMAT, c->pos,
                    "tensor data section would start at %llu (aligned to %llu), past the end of the file (%zu bytes)",
                    (unsigned long long)start, (unsigned long long)a, f->size);
    uint64_t room = f->size - start;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        snprintf(c->ctx, sizeof c->ctx, "tensor #%lld '%s'", (long long)i, t->name);
        if (t->offset % a)
            return fail(c, KV_EFORMAT, start, "data offset %llu is not a multiple of the alignment %llu",
                        (unsigned long long)t->offset, (unsigned long long)a);
        if (t->offset > room)   /* start + offset may wrap: never computed, never shown */
            return fail(c, KV_EFORMAT, start, "data offset %llu is past the end of the file "
                        "(data section at %llu, file %zu bytes)",
                        (unsigned long long)t->offset, (unsigned long long)start, f->size);
        if (t->nbytes > room - t->offset)
            return fail(c, KV_EFORMAT, start + t->offset,
                        "data at %llu + %zu bytes runs past the end of the file (%zu bytes)",
                        (unsigned long long)(start + t->offset), t->nbytes, f->size);
        t->data = f->base + start + t->offset;
    }
    return 0;
}

static const char *tensor_name(const gguf_file *f, int64_t i) { return f->tensors[i].name; }

static int index_tensors(cursor *c)
{
    gguf_file *f = c->f;
    int64_t dup;
    c->ctx[0] = '\0';
    f->tensor_index = index_names(f, f->n_tensors, tensor_name, &dup);
    if (!f->tensor_index)
        return fail(c, KV_ENOMEM, c->pos, "out of memory for the tensor index");
    if (dup >= 0)
        return fail(c, KV_EFORMAT, c->pos, "tensor #%lld repeats the name '%s'", (long long)dup,
                    f->tensors[dup].name);
    return 0;
}

/* ---- header and the whole parse ------------------------------------------------------- */

static int parse_version(cursor *c)
{
    gguf_file *f = c->f;
    size_t at = c->pos;
    int rc = rd_u32(c, "version", &f->version);
    if (rc)
        return rc;
    if (f->version == 2 || f->version == 3)
        return 0;
    if (f->version != 0 && (f->version & 0xFFFF) == 0)   /* 0 is just a bad version */
        return fail(c, KV_EUNSUPPORTED, at,
                    "version field 0x%08x looks byte-swapped: big-endian GGUF files are not supported",
                    f->version);
    return fail(c, KV_EUNSUPPORTED, at, "GGUF version %u, expected 2 or 3", f->version);
}

static int parse_header(cursor *c, uint64_t *n_kv, uint64_t *n_tensors)
{
    gguf_file *f = c->f;
    snprintf(c->ctx, sizeof c->ctx, "header");
    int rc = need(c, 4, "magic");
    if (rc)
        return rc;
    if (memcmp(f->base, GGUF_MAGIC, 4))
        return fail(c, KV_EFORMAT, 0, "magic is %02x %02x %02x %02x, expected \"GGUF\" (47 47 55 46)",
                    f->base[0], f->base[1], f->base[2], f->base[3]);
    c->pos = 4;
    if ((rc = parse_version(c)) || (rc = rd_u64(c, "tensor_count", n_tensors)) ||
        (rc = rd_u64(c, "metadata_kv_count", n_kv)))
        return rc;
    /* A pair takes at least 13 bytes (key length, type, a 1-byte value), a tensor info
     * at least 24 (name length, n_dims, type, offset).  Counts that cannot fit even in
     * the whole file are lies; counts that merely exceed a truncated file are caught
     * where the file ends, which names the better offset. */
    if (*n_kv > f->size / 13)
        return fail(c, KV_EFORMAT, 16, "metadata_kv_count %llu: at most %zu pairs fit in a %zu-byte file",
                    (unsigned long long)*n_kv, f->size / 13, f->size);
    if (*n_tensors > f->size / 24)
        return fail(c, KV_EFORMAT, 8, "tensor_count %llu: at most %zu tensor infos fit in a %zu-byte file",
                    (unsigned long long)*n_tensors, f->size / 24, f->size);
    return 0;
}

/* Make room for entry i of an array that grows with what has been parsed (invariant
 * (1)); new entries are zeroed so that gguf_close() can free a half-built file. */
static int reserve(cursor *c, void **arr, size_t *cap, size_t i, size_t elem)
{
    if (i < *cap)
        return 0;
    size_t n = *cap ? 2 * *cap : 16;
    void *p = realloc(*arr, n * elem);
    if (!p)
        return fail(c, KV_ENOMEM, c->pos, "out of memory for %zu entries", n);
    memset((char *)p + *cap * elem, 0, (n - *cap) * elem);
    *arr = p;
    *cap = n;
    return 0;
}

static int parse_kvs(cursor *c, uint64_t n)
{
    gguf_file *f = c->f;
    size_t cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        int rc = reserve(c, (void **)&f->kv, &cap, i, sizeof *f->kv);
        if (rc)
            return rc;
        f->n_kv = (int64_t)i + 1;
        if ((rc = parse_kv(c, (int64_t)i)))
            return rc;
    }
    return 0;
}

static int parse_tensor_infos(cursor *c, uint64_t n)
{
    gguf_file *f = c->f;
    size_t cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        int rc = reserve(c, (void **)&f->tensors, &cap, i, sizeof *f->tensors);
        if (rc)
            return rc;
        f->n_tensors = (int64_t)i + 1;
        if ((rc = parse_tensor_info(c, (int64_t)i)))
            return rc;
    }
    return 0;
}

static int parse(gguf_file *f, kv_err *err)
{
    cursor c = {.f = f, .pos = 0, .err = err};
    uint64_t n_kv = 0, n_tensors = 0;
    int rc = parse_header(&c, &n_kv, &n_tensors);
    if (rc == 0)
        rc = parse_kvs(&c, n_kv);
    if (rc == 0)
        rc = index_keys(&c);
    if (rc == 0)
        rc = read_alignment(&c);
    if (rc == 0)
        rc = parse_tensor_infos(&c, n_tensors);
    if (rc == 0)
        rc = index_tensors(&c);
    if (rc == 0)
        rc = place_tensors(&c);
    return rc;
}

/* ---- open and close -------------------------------------------------------------------- */

static gguf_file *new_file(const char *name, kv_err *err)
{
    gguf_file *f = calloc(1, sizeof *f);
    if (f && !(f->path = strdup(name ? name : "(buffer)"))) {
        free(f);
        f = NULL;
    }
    if (!f)
        kv_errorf(err, KV_ENOMEM, "%s: out of memory", name ? name : "(buffer)");
    return f;
}

static gguf_file *finish_open(gguf_file *f, kv_err *err)
{
    if (parse(f, err) == 0)
        return f;
    gguf_close(f);
    return NULL;
}

gguf_file *gguf_open_buffer(const void *buf, size_t size, const char *name, kv_err *err)
{
    gguf_file *f = new_file(name, err);
    if (!f)
        return NULL;
    f->base = buf;
    f->size = buf ? size : 0;
    return finish_open(f, err);
}

gguf_file *gguf_open(const char *path, kv_err *err)
{
    gguf_file *f = new_file(path, err);
    if (!f)
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        kv_errorf(err, KV_EIO, "%s: cannot open: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        kv_errorf(err, KV_EIO, "%s: not a regular file", path);
    } else if (st.st_size == 0) {
        kv_errorf(err, KV_EFORMAT, "%s: offset 0: empty file, expected a GGUF header", path);
    } else {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            kv_errorf(err, KV_EIO, "%s: cannot map %lld bytes: %s", path, (long long)st.st_size,
                      strerror(errno));
        } else {
            f->base = p;
            f->size = (size_t)st.st_size;
            f->mapped = true;
        }
    }
    if (fd >= 0)
        close(fd);                 /* the mapping stays valid without the descriptor */
    if (!f->mapped) {
        gguf_close(f);
        return NULL;
    }
    return finish_open(f, err);
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    for (int64_t i = 0; f->kv && i < f->n_kv; i++) {
        free(f->kv[i].name);
        free_array(&f->kv[i].arr);
    }
    for (int64_t i = 0; f->tensors && i < f->n_tensors; i++)
        free((char *)f->tensors[i].name);
    free(f->kv);
    free(f->kv_index);
    free(f->tensors);
    free(f->tensor_index);
    if (f->mapped)
        munmap((void *)f->base, f->size);
    free(f->path);
    free(f);
}

void gguf_release(const gguf_file *f, const void *p, size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    if (!f || !f->mapped || page <= 0)
        return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~((uintptr_t)page - 1);
    if (e > a)
        madvise((void *)a, e - a, MADV_DONTNEED);   /* advice: failure costs memory only */
}

/* ---- the file ------------------------------------------------------------------------- */

const char *gguf_path(const gguf_file *f) { return f->path; }
uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint64_t gguf_file_size(const gguf_file *f) { return f->size; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }

/* ---- metadata getters ------------------------------------------------------------------- */

int64_t gguf_n_keys(const gguf_file *f) { return f->n_kv; }

int64_t gguf_find_key(const gguf_file *f, const char *key)
{
    return find_name(f->kv_index, f->n_kv, key);
}

static const gguf_kv *kv_at(const gguf_file *f, int64_t i)
{
    return i >= 0 && i < f->n_kv ? &f->kv[i] : NULL;
}

const char *gguf_key_name(const gguf_file *f, int64_t i)
{
    const gguf_kv *kv = kv_at(f, i);
    return kv ? kv->name : NULL;
}

gguf_value_type gguf_key_type(const gguf_file *f, int64_t i)
{
    const gguf_kv *kv = kv_at(f, i);
    return kv ? kv->type : GGUF_TYPE_INVALID;
}

/* Scalar decoding shared by keys and array elements; p holds a checked value of type t. */
static int decode_int(gguf_value_type t, const uint8_t *p, int64_t *out)
{
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            uint64_t u64; int64_t i64; } v;
    if (t < 0 || t >= GGUF_TYPE_COUNT || !type_sizes[t] || t == GGUF_TYPE_FLOAT32 ||
        t == GGUF_TYPE_FLOAT64)
        return KV_EFORMAT;
    memcpy(&v, p, type_sizes[t]);
    switch (t) {
    case GGUF_TYPE_UINT8:  *out = v.u8; break;
    case GGUF_TYPE_INT8:   *out = v.i8; break;
    case GGUF_TYPE_UINT16: *out = v.u16; break;
    case GGUF_TYPE_INT16:  *out = v.i16; break;
    case GGUF_TYPE_UINT32: *out = v.u32; break;
    case GGUF_TYPE_INT32:  *out = v.i32; break;
    case GGUF_TYPE_BOOL:   *out = v.u8 != 0; break;
    case GGUF_TYPE_INT64:  *out = v.i64; break;
    case GGUF_TYPE_UINT64:
        if (v.u64 > (uint64_t)INT64_MAX)
            return KV_ERANGE;
        *out = (int64_t)v.u64;
        break;
    default: return KV_EFORMAT;
    }
    return 0;
}

static int decode_float(gguf_value_type t, const uint8_t *p, double *out)
{
    if (t == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        *out = v;
        return 0;
    }
    if (t == GGUF_TYPE_FLOAT64) {
        memcpy(out, p, 8);
        return 0;
    }
    if (t == GGUF_TYPE_UINT64) {   /* exact up to 2^53, rounded above: never out of range */
        uint64_t v;
        memcpy(&v, p, 8);
        *out = (double)v;
        return 0;
    }
    int64_t v;
    int rc = decode_int(t, p, &v);
    if (rc == 0)
        *out = (double)v;
    return rc;
}

int gguf_get_int(const gguf_file *f, int64_t i, int64_t *out)
{
    const gguf_kv *kv = kv_at(f, i);
    return kv ? decode_int(kv->type, kv->value, out) : KV_ERANGE;
}

int gguf_get_float(const gguf_file *f, int64_t i, double *out)
{
    const gguf_kv *kv = kv_at(f, i);
    return kv ? decode_float(kv->type, kv->value, out) : KV_ERANGE;
}

/* A checked string at p: u64 length, then the bytes. */
static const char *decode_str(const uint8_t *p, size_t *len)
{
    uint64_t n;
    memcpy(&n, p, 8);
    if (len)
        *len = (size_t)n;
    return (const char *)p + 8;
}

const char *gguf_get_str(const gguf_file *f, int64_t i, size_t *len)
{
    const gguf_kv *kv = kv_at(f, i);
    if (!kv || kv->type != GGUF_TYPE_STRING)
        return NULL;
    return decode_str(kv->value, len);
}

/* ---- arrays ------------------------------------------------------------------------------ */

const gguf_array *gguf_get_arr(const gguf_file *f, int64_t i)
{
    const gguf_kv *kv = kv_at(f, i);
    return kv && kv->type == GGUF_TYPE_ARRAY ? &kv->arr : NULL;
}

gguf_value_type gguf_array_type(const gguf_array *a) { return a ? a->type : GGUF_TYPE_INVALID; }
uint64_t gguf_array_len(const gguf_array *a) { return a ? a->n : 0; }

const gguf_array *gguf_array_sub(const gguf_array *a, uint64_t j)
{
    return a && a->subs && j < a->n ? &a->subs[j] : NULL;
}

const char *gguf_array_str(const gguf_array *a, uint64_t j, size_t *len)
{
    if (!a || a->type != GGUF_TYPE_STRING || j >= a->n)
        return NULL;
    return decode_str(a->items[j], len);
}

/* Element j of a fixed-size array, or NULL. */
static const uint8_t *fixed_elem(const gguf_array *a, uint64_t j)
{
    if (!a || !type_sizes[a->type] || j >= a->n)
        return NULL;
    return a->data + j * type_sizes[a->type];
}

int gguf_array_int(const gguf_array *a, uint64_t j, int64_t *out)
{
    const uint8_t *p = fixed_elem(a, j);
    if (!p)
        return a && j >= a->n ? KV_ERANGE : KV_EFORMAT;
    return decode_int(a->type, p, out);
}

int gguf_array_float(const gguf_array *a, uint64_t j, double *out)
{
    const uint8_t *p = fixed_elem(a, j);
    if (!p)
        return a && j >= a->n ? KV_ERANGE : KV_EFORMAT;
    return decode_float(a->type, p, out);
}

gguf_value_type gguf_arr_type(const gguf_file *f, int64_t i)
{
    return gguf_array_type(gguf_get_arr(f, i));
}

uint64_t gguf_arr_len(const gguf_file *f, int64_t i) { return gguf_array_len(gguf_get_arr(f, i)); }

const char *gguf_arr_str(const gguf_file *f, int64_t i, uint64_t j, size_t *len)
{
    return gguf_array_str(gguf_get_arr(f, i), j, len);
}

int gguf_arr_int(const gguf_file *f, int64_t i, uint64_t j, int64_t *out)
{
    return gguf_array_int(gguf_get_arr(f, i), j, out);
}

/* ---- required keys ----------------------------------------------------------------------- */

static int64_t require_key(const gguf_file *f, const char *key, kv_err *err)
{
    int64_t i = gguf_find_key(f, key);
    if (i < 0)
        kv_errorf(err, KV_ENOTFOUND, "%s: missing required key '%s'", f->path, key);
    return i;
}

static int wrong_type(const gguf_file *f, int64_t i, int rc, const char *expected, kv_err *err)
{
    if (rc == KV_ERANGE)
        return kv_errorf(err, rc, "%s: offset %zu: key '%s' does not fit in %s", f->path,
                         value_offset(f, i), f->kv[i].name, expected);
    return kv_errorf(err, rc, "%s: offset %zu: key '%s' is %s, expected %s", f->path,
                     value_offset(f, i), f->kv[i].name, type_names[f->kv[i].type], expected);
}

int gguf_require_int(const gguf_file *f, const char *key, int64_t *out, kv_err *err)
{
    int64_t i = require_key(f, key, err);
    if (i < 0)
        return KV_ENOTFOUND;
    int rc = gguf_get_int(f, i, out);
    return rc ? wrong_type(f, i, rc, "an integer", err) : 0;
}

int gguf_require_float(const gguf_file *f, const char *key, double *out, kv_err *err)
{
    int64_t i = require_key(f, key, err);
    if (i < 0)
        return KV_ENOTFOUND;
    int rc = gguf_get_float(f, i, out);
    return rc ? wrong_type(f, i, rc, "a number", err) : 0;
}

int gguf_require_str(const gguf_file *f, const char *key, const char **s, size_t *len,
                     kv_err *err)
{
    int64_t i = require_key(f, key, err);
    if (i < 0)
        return KV_ENOTFOUND;
    *s = gguf_get_str(f, i, len);
    return *s ? 0 : wrong_type(f, i, KV_EFORMAT, "a string", err);
}

/* ---- tensors -------------------------------------------------------------------------------- */

int64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i)
{
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    return gguf_tensor_at(f, find_name(f->tensor_index, f->n_tensors, name));
}
