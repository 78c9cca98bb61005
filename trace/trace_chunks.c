/*
 * trace_chunks.c — row blocks fetched as stored chunks and decoded by us
 * (trace_chunks.h says why).  The fetch half holds HDF5; the decode half touches only
 * the caller's buffer, so threads decode concurrently.
 */
#include "trace_chunks.h"

#include "fp16.h"
#include "trace_h5.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CHUNK_ELEMENTS ((size_t)TRACE_BATCH * TRACE_CHUNK_COLS)

/* Where one fetched chunk sits in `bytes`, and how HDF5 stored it. */
typedef struct stored_chunk {
    size_t   offset;   /* where it starts in bytes */
    size_t   size;     /* its stored size; 0 = never written (all zeros) */
    uint32_t mask;     /* HDF5's filter mask: bit i = filter i skipped */
} stored_chunk;

struct trace_chunk_buf {
    /* what was fetched */
    const char    *path;
    trace_chunk_layout layout;
    int64_t        t0;
    int            n;            /* rows wanted (<= TRACE_BATCH) */
    size_t         cols;         /* columns wanted: t0 + n */
    int            count;        /* chunks fetched: ceil(cols / TRACE_CHUNK_COLS) */
    stored_chunk  *chunk;        /* (count,) */
    size_t         chunk_cap;    /* bytes allocated for chunk[] */
    unsigned char *bytes;        /* the stored chunks, back to back */
    size_t         bytes_cap;
    /* decode scratch: one chunk, decompressed then unshuffled */
    unsigned char *inflated, *plain;
    /* the fallback (trace_read_rows' result), n x cols floats */
    float         *rows;
    size_t         rows_cap;
    int            fallback;
    /* trace_fetch_f16's destination: the caller's buffer, of `count` plain chunks */
    unsigned char *dst;
};

trace_chunk_buf *trace_chunk_buf_new(void) { return calloc(1, sizeof(trace_chunk_buf)); }

void trace_chunk_buf_free(trace_chunk_buf *b)
{
    if (!b)
        return;
    free(b->chunk);
    free(b->bytes);
    free(b->inflated);
    free(b->plain);
    free(b->rows);
    free(b);
}

/* ---------------------------------------------------------------- layout --------- */

/* The filter ids of d's pipeline, in order; -1 when it cannot be read. */
static int filters_of(hid_t dcpl, H5Z_filter_t *ids, int max)
{
    int n = H5Pget_nfilters(dcpl);
    if (n < 0 || n > max)
        return -1;
    for (int i = 0; i < n; i++) {
        unsigned flags, cd[8];
        size_t ncd = 8;
        char name[64];
        ids[i] = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof name, name, NULL);
        if (ids[i] < 0)
            return -1;
    }
    return n;
}

static int chunk_shape_is_ours(hid_t dcpl)
{
    hsize_t dims[4];
    return H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 4, dims) == 4 &&
           dims[0] == 1 && dims[1] == 1 && dims[2] == TRACE_BATCH &&
           dims[3] == TRACE_CHUNK_COLS;
}

static int little_endian_host(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* The codec of a pipeline the writer makes — none, or shuffle then deflate or LZ4 —
 * into *codec; -1 for any other pipeline. */
static int pipeline_of(hid_t dcpl, trace_codec *codec)
{
    H5Z_filter_t ids[4];
    int n = filters_of(dcpl, ids, 4);
    *codec = TRACE_CODEC_NONE;
    if (n == 0)
        return 0;
    if (n != 2 || ids[0] != H5Z_FILTER_SHUFFLE)
        return -1;
    if (ids[1] == H5Z_FILTER_DEFLATE)
        *codec = TRACE_CODEC_DEFLATE;
    else if (ids[1] == TRACE_LZ4_FILTER)
        *codec = TRACE_CODEC_LZ4;
    return *codec == TRACE_CODEC_NONE ? -1 : 0;
}

int trace__pipeline_check(hid_t d, trace_codec *codec)
{
    hid_t dcpl = H5Dget_create_plist(d);
    int rc = dcpl < 0 ? -1 : pipeline_of(dcpl, codec);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

trace_chunk_layout trace__chunk_layout_of(hid_t d, size_t esize)
{
    trace_chunk_layout lay = {0, TRACE_CODEC_NONE, esize};
    hid_t dcpl = H5Dget_create_plist(d), type = H5Dget_type(d);
    int le = type >= 0 && H5Tget_order(type) == H5T_ORDER_LE && little_endian_host();
    if (dcpl >= 0 && le && chunk_shape_is_ours(dcpl) && pipeline_of(dcpl, &lay.codec) == 0)
        lay.direct = 1;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (type >= 0)
        H5Tclose(type);
    H5Eclear2(H5E_DEFAULT);
    return lay;
}

/* ---------------------------------------------------------------- fetch ---------- */

static int reserve(void **p, size_t *cap, size_t want)
{
    if (want <= *cap)
        return 0;
    void *q = realloc(*p, want);
    if (!q)
        return -1;
    *p = q;
    *cap = want;
    return 0;
}

/* The most bytes a chunk of `bytes` plain bytes can take stored: no codec's output is
 * much larger than its input, so a bigger size in the chunk index is a lie. */
static size_t stored_bound(size_t bytes) { return bytes + bytes / 8 + 4096; }

/* Stored size of every chunk, and room for them all. */
static int size_chunks(trace_chunk_buf *b, hid_t d, int li, int hi, kv_err *err)
{
    size_t total = 0;
    for (int c = 0; c < b->count; c++) {
        hsize_t at[4] = {(hsize_t)li, (hsize_t)hi, (hsize_t)b->t0,
                         (hsize_t)c * TRACE_CHUNK_COLS}, size = 0;
        /* an unallocated chunk (never written: all zeros) reports an error or 0 */
        if (H5Dget_chunk_storage_size(d, at, &size) < 0)
            size = 0;
        if (size > stored_bound(CHUNK_ELEMENTS * b->layout.esize)) {
            H5Eclear2(H5E_DEFAULT);
            return kv_errorf(err, KV_EFORMAT, "%s: the chunk of steps %lld.. at column %d "
                             "claims %llu stored bytes: the trace is damaged", b->path,
                             (long long)b->t0, c * TRACE_CHUNK_COLS, (unsigned long long)size);
        }
        b->chunk[c].offset = total;
        b->chunk[c].size = (size_t)size;
        total += (size_t)size;
    }
    H5Eclear2(H5E_DEFAULT);
    if (reserve((void **)&b->bytes, &b->bytes_cap, total ? total : 1) < 0)
        return kv_errorf(err, KV_ENOMEM, "%s: no memory for %zu bytes of chunks", b->path,
                         total);
    return KV_OK;
}

/* Unfiltered chunks straight into b->dst, each at its place there: one copy, out of
 * the page cache.  A chunk of another size is not read (decoding reports it). */
static int fetch_plain_into_dst(trace_chunk_buf *b, hid_t d, int li, int hi, kv_err *err)
{
    const size_t bytes = CHUNK_ELEMENTS * b->layout.esize;
    for (int c = 0; c < b->count; c++) {
        hsize_t at[4] = {(hsize_t)li, (hsize_t)hi, (hsize_t)b->t0,
                         (hsize_t)c * TRACE_CHUNK_COLS}, size = 0;
        stored_chunk *k = &b->chunk[c];
        if (H5Dget_chunk_storage_size(d, at, &size) < 0)
            size = 0;   /* never written: all zeros */
        H5Eclear2(H5E_DEFAULT);
        *k = (stored_chunk){(size_t)c * bytes, (size_t)size, 0};
        if (k->size == bytes && H5Dread_chunk(d, H5P_DEFAULT, at, &k->mask, b->dst + k->offset) < 0)
            return trace__h5_fail(err, KV_EIO, "%s: reading the stored chunk of steps %lld.. "
                                  "at column %d", b->path, (long long)b->t0,
                                  c * TRACE_CHUNK_COLS);
    }
    return KV_OK;
}

int trace__chunks_fetch(trace_chunk_buf *b, hid_t d, const trace_chunk_layout *lay,
                        const char *path, int li, int hi, int64_t t0, int n, size_t cols,
                        unsigned char *dst, kv_err *err)
{
    b->dst = dst;
    b->path = path;
    b->layout = *lay;
    b->t0 = t0;
    b->n = n;
    b->cols = cols;
    b->fallback = 0;
    b->count = (int)((cols + TRACE_CHUNK_COLS - 1) / TRACE_CHUNK_COLS);
    if (reserve((void **)&b->chunk, &b->chunk_cap, (size_t)b->count * sizeof *b->chunk) < 0)
        return kv_errorf(err, KV_ENOMEM, "%s: no memory for a chunk list", path);
    if (dst && lay->codec == TRACE_CODEC_NONE)
        return fetch_plain_into_dst(b, d, li, hi, err);
    int rc = size_chunks(b, d, li, hi, err);
    for (int c = 0; rc == KV_OK && c < b->count; c++) {
        hsize_t at[4] = {(hsize_t)li, (hsize_t)hi, (hsize_t)t0, (hsize_t)c * TRACE_CHUNK_COLS};
        stored_chunk *k = &b->chunk[c];
        k->mask = 0;
        if (k->size && H5Dread_chunk(d, H5P_DEFAULT, at, &k->mask, b->bytes + k->offset) < 0)
            rc = trace__h5_fail(err, KV_EIO, "%s: reading the stored chunk of steps "
                                "%lld.. at column %d", path, (long long)t0,
                                c * TRACE_CHUNK_COLS);
    }
    return rc;
}

/* The fallback of a fetch: rows already converted by HDF5's path, to be copied out. */
float *trace__chunks_fallback(trace_chunk_buf *b, const char *path, int n, size_t cols,
                              kv_err *err)
{
    b->path = path;
    b->n = n;
    b->cols = cols;
    b->fallback = 1;
    if (reserve((void **)&b->rows, &b->rows_cap, (size_t)n * cols * sizeof *b->rows) < 0) {
        kv_errorf(err, KV_ENOMEM, "%s: no memory for a row block", path);
        return NULL;
    }
    return b->rows;
}

/* ---------------------------------------------------------------- decode --------- */

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The LZ4 filter's frame: u64 BE original size, u32 BE block size, then per block a
 * u32 BE compressed size and the block (stored raw when that equals the block size). */
static int unlz4(const unsigned char *in, size_t len, unsigned char *out, size_t want)
{
    if (len < 12 || be64(in) != want)
        return -1;
    size_t block = be32(in + 8), done = 0, pos = 12;
    if (block == 0)
        return -1;
    while (done < want) {
        size_t this_block = want - done < block ? want - done : block;
        if (pos + 4 > len)
            return -1;
        size_t stored = be32(in + pos);
        pos += 4;
        if (stored > len - pos)
            return -1;
        if (stored == this_block)
            memcpy(out + done, in + pos, stored);
        else if (LZ4_decompress_safe((const char *)in + pos, (char *)out + done, (int)stored,
                                     (int)this_block) != (int)this_block)
            return -1;
        pos += stored;
        done += this_block;
    }
    return 0;
}

/* Exactly `want` bytes from a deflate stream or an LZ4 frame of `len` bytes. */
static int uncompress_exact(trace_codec codec, const unsigned char *in, size_t len,
                            unsigned char *out, size_t want)
{
    if (codec == TRACE_CODEC_LZ4)
        return unlz4(in, len, out, want);
    uLongf got = (uLongf)want;
    return uncompress(out, &got, in, (uLong)len) == Z_OK && got == want ? 0 : -1;
}

/* HDF5's shuffle stores byte k of every element together: undo it. */
static void unshuffle(const unsigned char *in, unsigned char *out, size_t elements,
                      size_t esize)
{
    for (size_t k = 0; k < esize; k++) {
        const unsigned char *plane = in + k * elements;
        for (size_t i = 0; i < elements; i++)
            out[i * esize + k] = plane[i];
    }
}

/* A chunk of `elements` elements of `esize` bytes, stored as `len` bytes under the
 * pipeline [shuffle, codec] (or none), with HDF5's filter mask (bit i: filter i was
 * skipped): its plain bytes, in `inflated` or `plain` (room for the chunk each) or in
 * place; NULL when it does not decode to exactly elements x esize bytes.  Every size
 * is checked here, never trusted: libhdf5 1.10 copies a whole chunk out of whatever a
 * filter returned. */
static const unsigned char *decode_chunk(trace_codec codec, size_t esize, size_t elements,
                                         const unsigned char *data, size_t len,
                                         uint32_t mask, unsigned char *inflated,
                                         unsigned char *plain, int aligned)
{
    const size_t bytes = elements * esize;
    if (codec != TRACE_CODEC_NONE && !(mask & 2u)) {
        if (uncompress_exact(codec, data, len, inflated, bytes) < 0)
            return NULL;
        data = inflated;
        len = bytes;
        aligned = 1;
    }
    if (len != bytes)
        return NULL;
    if (codec != TRACE_CODEC_NONE && !(mask & 1u)) {
        unshuffle(data, plain, elements, esize);
        data = plain;
    } else if (!aligned) {
        /* both filters skipped: the raw bytes may sit after odd-sized chunks, and
         * elements are read in place only when aligned */
        memcpy(plain, data, bytes);
        data = plain;
    }
    return data;
}

/* Chunk c's plain bytes (CHUNK_ELEMENTS elements), in `plain` or where they were;
 * NULL when the chunk is damaged. */
static const unsigned char *plain_chunk(trace_chunk_buf *b, int c, unsigned char *plain)
{
    const stored_chunk *k = &b->chunk[c];
    return decode_chunk(b->layout.codec, b->layout.esize, CHUNK_ELEMENTS,
                        b->bytes + k->offset, k->size, k->mask, b->inflated, plain,
                        k->offset % b->layout.esize == 0);
}

static int damaged(const trace_chunk_buf *b, int c, kv_err *err)
{
    return kv_errorf(err, KV_EFORMAT, "%s: damaged chunk of steps %lld.. at column %zu (it "
                     "does not decode to %zu bytes)", b->path, (long long)b->t0,
                     (size_t)c * TRACE_CHUNK_COLS, CHUNK_ELEMENTS * b->layout.esize);
}

static int decode_scratch(trace_chunk_buf *b, kv_err *err)
{
    const size_t most = CHUNK_ELEMENTS * sizeof(float);   /* the buffer may meet f32 later */
    if (b->layout.codec != TRACE_CODEC_NONE &&
        ((!b->inflated && !(b->inflated = malloc(most))) ||
         (!b->plain && !(b->plain = malloc(most)))))
        return kv_errorf(err, KV_ENOMEM, "%s: no memory to decode a chunk", b->path);
    return KV_OK;
}

/* Columns [c0, c1) of the block's rows from chunk data (NULL: a zero chunk). */
static void place_chunk(const trace_chunk_buf *b, const unsigned char *data, size_t c0,
                        size_t c1, float *out, size_t width)
{
    for (int r = 0; r < b->n; r++) {
        float *dst = out + (size_t)r * width + c0;
        const size_t at = (size_t)r * TRACE_CHUNK_COLS;
        if (!data)
            memset(dst, 0, (c1 - c0) * sizeof *dst);
        else if (b->layout.esize == 2)
            fp16_to_f32_n((const uint16_t *)data + at, dst, c1 - c0);
        else
            memcpy(dst, (const float *)data + at, (c1 - c0) * sizeof *dst);
    }
}

static int decode_chunks(trace_chunk_buf *b, float *out, size_t width, kv_err *err)
{
    int rc = decode_scratch(b, err);
    for (int c = 0; rc == KV_OK && c < b->count; c++) {
        const size_t c0 = (size_t)c * TRACE_CHUNK_COLS;
        const size_t c1 = c0 + TRACE_CHUNK_COLS < b->cols ? c0 + TRACE_CHUNK_COLS : b->cols;
        const unsigned char *data = b->chunk[c].size ? plain_chunk(b, c, b->plain) : NULL;
        if (b->chunk[c].size && !data)
            return damaged(b, c, err);
        place_chunk(b, data, c0, c1, out, width);
    }
    return rc;
}

int trace_decode_f16(trace_chunk_buf *b, const unsigned char **col, kv_err *err)
{
    const size_t bytes = CHUNK_ELEMENTS * b->layout.esize;
    int rc = decode_scratch(b, err);
    for (int c = 0; rc == KV_OK && c < b->count; c++) {
        unsigned char *home = b->dst + (size_t)c * bytes;
        const stored_chunk *k = &b->chunk[c];
        const unsigned char *data = NULL;
        if (k->size == 0)
            memset(home, 0, bytes);
        else if (b->layout.codec == TRACE_CODEC_NONE ? k->size != bytes
                                                     : !(data = plain_chunk(b, c, home)))
            return damaged(b, c, err);
        else if (data && data != home)
            memcpy(home, data, bytes);
        col[c] = home;
    }
    return rc;
}

int trace_decode_rows(trace_chunk_buf *b, float *out, size_t width, kv_err *err)
{
    if (width < b->cols)
        return kv_errorf(err, KV_ERANGE, "%s: decoding rows: width %zu is less than the "
                         "%zu keys of the last row", b->path, width, b->cols);
    int rc = KV_OK;
    if (b->fallback)
        for (int r = 0; r < b->n; r++)
            memcpy(out + (size_t)r * width, b->rows + (size_t)r * b->cols,
                   b->cols * sizeof *out);
    else
        rc = decode_chunks(b, out, width, err);
    for (int r = 0; rc == KV_OK && r < b->n && width > b->cols; r++)
        memset(out + (size_t)r * width + b->cols, 0, (width - b->cols) * sizeof *out);
    return rc;
}

/* ---------------------------------------------------------------- any box -------- */

/* One read of a box of a filtered dataset: its geometry and one chunk's buffers. */
typedef struct box_read {
    hid_t          d;
    const char    *path;
    int            rank;
    hsize_t        chunk[4];                  /* chunk dims */
    const hsize_t *start, *count;             /* the box */
    size_t         esize, chunk_elements;     /* file bytes per element; per chunk */
    trace_codec    codec;
    unsigned char *raw, *inflated, *plain;    /* one chunk: stored, inflated, unshuffled */
    size_t         raw_cap;
    unsigned char *dense;                     /* the box, file-typed, row-major */
} box_read;

static int box_setup(box_read *r, hid_t dcpl, hid_t ftype, kv_err *err)
{
    int ok = H5Pget_layout(dcpl) == H5D_CHUNKED &&
             H5Pget_chunk(dcpl, r->rank, r->chunk) == r->rank;
    H5T_class_t cls = H5Tget_class(ftype);
    r->esize = H5Tget_size(ftype);
    ok = ok && (cls == H5T_INTEGER || cls == H5T_FLOAT) && r->esize >= 1 && r->esize <= 8;
    r->chunk_elements = 1;
    for (int i = 0; ok && i < r->rank; i++) {
        ok = r->chunk[i] > 0 && r->chunk[i] <= TRACE_MAX_CHUNK_BYTES;
        r->chunk_elements *= ok ? (size_t)r->chunk[i] : 1;
        ok = ok && r->chunk_elements * r->esize <= TRACE_MAX_CHUNK_BYTES;
    }
    H5Eclear2(H5E_DEFAULT);
    if (!ok)
        return kv_errorf(err, KV_EFORMAT, "%s: a filtered dataset whose chunks or element "
                         "type kvtrace does not write", r->path);
    const size_t bytes = r->chunk_elements * r->esize;
    if (!(r->inflated = malloc(bytes)) || !(r->plain = malloc(bytes)))
        return kv_errorf(err, KV_ENOMEM, "%s: no memory to decode a chunk", r->path);
    return KV_OK;
}

/* The plain bytes of the chunk at `at` into *data (NULL: never written, all zeros). */
static int box_fetch(box_read *r, const hsize_t *at, const unsigned char **data,
                     kv_err *err)
{
    const size_t bytes = r->chunk_elements * r->esize;
    hsize_t size = 0;
    uint32_t mask = 0;
    *data = NULL;
    if (H5Dget_chunk_storage_size(r->d, at, &size) < 0 || size == 0) {
        H5Eclear2(H5E_DEFAULT);
        return KV_OK;
    }
    if (size > stored_bound(bytes))
        return kv_errorf(err, KV_EFORMAT, "%s: a chunk claims %llu stored bytes for %zu "
                         "plain ones: the trace is damaged", r->path,
                         (unsigned long long)size, bytes);
    if (reserve((void **)&r->raw, &r->raw_cap, (size_t)size) < 0)
        return kv_errorf(err, KV_ENOMEM, "%s: no memory for a chunk", r->path);
    if (H5Dread_chunk(r->d, H5P_DEFAULT, at, &mask, r->raw) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: reading a stored chunk", r->path);
    *data = decode_chunk(r->codec, r->esize, r->chunk_elements, r->raw, (size_t)size, mask,
                         r->inflated, r->plain, 1);
    return *data ? KV_OK
                 : kv_errorf(err, KV_EFORMAT, "%s: damaged chunk at (%llu, %llu, %llu, "
                             "%llu): it does not decode to %zu bytes", r->path,
                             (unsigned long long)at[0],
                             (unsigned long long)(r->rank > 1 ? at[1] : 0),
                             (unsigned long long)(r->rank > 2 ? at[2] : 0),
                             (unsigned long long)(r->rank > 3 ? at[3] : 0), bytes);
}

/* Copy the part of the chunk at `at` that lies in the box into r->dense. */
static void box_place(const box_read *r, const hsize_t *at, const unsigned char *data)
{
    hsize_t lo[4], hi[4], p[4], cstride[4], bstride[4];
    for (int i = r->rank - 1; i >= 0; i--) {
        lo[i] = at[i] > r->start[i] ? at[i] : r->start[i];
        hi[i] = at[i] + r->chunk[i] < r->start[i] + r->count[i] ? at[i] + r->chunk[i]
                                                               : r->start[i] + r->count[i];
        cstride[i] = i == r->rank - 1 ? 1 : cstride[i + 1] * r->chunk[i + 1];
        bstride[i] = i == r->rank - 1 ? 1 : bstride[i + 1] * r->count[i + 1];
        p[i] = lo[i];
    }
    const int last = r->rank - 1;
    const size_t run = (size_t)(hi[last] - lo[last]) * r->esize;
    for (;;) {
        size_t src = 0, dst = 0;
        for (int i = 0; i < r->rank; i++) {
            src += (size_t)((p[i] - at[i]) * cstride[i]);
            dst += (size_t)((p[i] - r->start[i]) * bstride[i]);
        }
        if (data)
            memcpy(r->dense + dst * r->esize, data + src * r->esize, run);
        else
            memset(r->dense + dst * r->esize, 0, run);
        int i = last - 1;   /* the next run: an odometer over every dimension but the last */
        while (i >= 0 && ++p[i] >= hi[i])
            p[i] = lo[i], i--;
        if (i < 0)
            return;
    }
}

/* Every chunk the box touches, fetched, decoded and placed. */
static int box_chunks(box_read *r, kv_err *err)
{
    hsize_t first[4], final[4], idx[4], at[4];
    for (int i = 0; i < r->rank; i++) {
        first[i] = idx[i] = r->start[i] / r->chunk[i];
        final[i] = (r->start[i] + r->count[i] - 1) / r->chunk[i];
    }
    for (;;) {
        const unsigned char *data;
        for (int i = 0; i < r->rank; i++)
            at[i] = idx[i] * r->chunk[i];
        int rc = box_fetch(r, at, &data, err);
        if (rc < 0)
            return rc;
        box_place(r, at, data);
        int i = r->rank - 1;
        while (i >= 0 && ++idx[i] > final[i])
            idx[i] = first[i], i--;
        if (i < 0)
            return KV_OK;
    }
}

/* HDF5's own read of the box: for datasets without filters, which HDF5 reads
 * straight from the file at the chunk's address. */
static int hdf5_box(hid_t d, hid_t mem, int rank, const hsize_t *start,
                    const hsize_t *count, void *out, const char *path, kv_err *err)
{
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);
    int rc = fs < 0 || ms < 0 ||
             H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
             H5Dread(d, mem, ms, fs, H5P_DEFAULT, out) < 0
                 ? trace__h5_fail(err, KV_EIO, "%s: reading a dataset", path)
                 : KV_OK;
    if (ms >= 0)
        H5Sclose(ms);
    if (fs >= 0)
        H5Sclose(fs);
    return rc;
}

int trace__read_box(hid_t d, hid_t mem, int rank, const hsize_t *start, const hsize_t *count,
                    void *out, const char *path, kv_err *err)
{
    box_read r = {.d = d, .path = path, .rank = rank, .start = start, .count = count};
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)count[i];
    if (n == 0)
        return KV_OK;
    hid_t dcpl = H5Dget_create_plist(d);   /* one lookup for the pipeline and the chunks */
    if (dcpl < 0 || pipeline_of(dcpl, &r.codec) < 0) {
        if (dcpl >= 0)
            H5Pclose(dcpl);
        H5Eclear2(H5E_DEFAULT);
        return kv_errorf(err, KV_EFORMAT, "%s: a dataset with a filter pipeline kvtrace "
                         "does not write (only none, or shuffle then deflate or LZ4)", path);
    }
    if (r.codec == TRACE_CODEC_NONE) {
        H5Pclose(dcpl);
        return hdf5_box(d, mem, rank, start, count, out, path, err);
    }
    hid_t ftype = H5Dget_type(d);
    int rc = ftype < 0 ? trace__h5_fail(err, KV_EFORMAT, "%s: a dataset's type is unreadable",
                                        path)
                       : box_setup(&r, dcpl, ftype, err);
    H5Pclose(dcpl);
    const size_t msize = rc == KV_OK ? H5Tget_size(mem) : 0;
    const int same = rc == KV_OK && H5Tequal(ftype, mem) > 0;
    /* H5Tconvert converts in place: room for the wider of the two types */
    if (rc == KV_OK && !same &&
        !(r.dense = malloc(n * (msize > r.esize ? msize : r.esize))))
        rc = kv_errorf(err, KV_ENOMEM, "%s: no memory for %zu elements", path, n);
    if (rc == KV_OK && same)
        r.dense = out;
    if (rc == KV_OK)
        rc = box_chunks(&r, err);
    if (rc == KV_OK && !same) {
        if (H5Tconvert(ftype, mem, n, r.dense, NULL, H5P_DEFAULT) < 0)
            rc = trace__h5_fail(err, KV_EFORMAT, "%s: converting a dataset's elements", path);
        else
            memcpy(out, r.dense, n * msize);
    }
    if (r.dense != out)
        free(r.dense);
    free(r.raw);
    free(r.inflated);
    free(r.plain);
    if (ftype >= 0)
        H5Tclose(ftype);
    return rc;
}
