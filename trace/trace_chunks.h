/*
 * trace_chunks.h — direct chunk access to /attn/probs (internal to trace/).
 *
 * HDF5 reads a hyperslab of an unfiltered chunked dataset one chunk row at a time
 * (one pread per 512 bytes here) and inflates filtered chunks under its global lock.
 * Row blocks are whole chunks of one head (trace_file.h invariant 3), so the reader
 * instead fetches the stored chunk bytes with H5Dread_chunk — one read per chunk, the
 * only part that needs HDF5 — and undoes the filters itself (deflate or LZ4, then
 * shuffle) in a buffer the calling thread owns, so decoding runs on every thread.
 *
 * Only pipelines the writer produces are decoded here: none, shuffle + deflate,
 * shuffle + LZ4 (filter 32004), little-endian, chunks [1, 1, TRACE_BATCH,
 * TRACE_CHUNK_COLS].  Anything else keeps HDF5's own path (trace_read_rows).
 *
 * Every other read of a filtered dataset goes through trace__read_box, which decodes
 * the same way: HDF5's filter pipeline never runs on bytes from a trace.  libhdf5
 * 1.10 copies a whole chunk out of whatever a filter returned, so a damaged chunk that
 * inflates short made it read past its buffer (tests/fixtures/fuzz_hdf5_overread.h5);
 * here every chunk must decode to exactly its size or the read fails.
 */
#ifndef TRACE_CHUNKS_H
#define TRACE_CHUNKS_H

#include <hdf5.h>

#include "trace_file.h"

/* How the chunks of one dataset are stored. */
typedef struct trace_chunk_layout {
    int         direct;     /* 1: chunks are decoded here; 0: use HDF5's path */
    trace_codec codec;      /* the compressor after the shuffle, or NONE */
    size_t      esize;      /* bytes per element: 2 (f16) or 4 (f32) */
} trace_chunk_layout;

/* Inspect d's creation properties and type.  Never fails: a pipeline we do not know
 * gives direct = 0. */
trace_chunk_layout trace__chunk_layout_of(hid_t d, size_t esize);

/* Fetch the stored chunks of rows t0..t0+n-1 (t0 a multiple of TRACE_BATCH) of
 * (li, hi) into b, for `cols` columns; with dst (trace_fetch_f16), unfiltered chunks
 * go straight to their place in dst.  Calls HDF5: not thread-safe.  `path` names
 * the file in errors and must outlive b's next decode. */
int trace__chunks_fetch(trace_chunk_buf *b, hid_t d, const trace_chunk_layout *lay,
                        const char *path, int li, int hi, int64_t t0, int n, size_t cols,
                        unsigned char *dst, kv_err *err);

/* Prepare b for a block that HDF5's path reads instead: the n x cols floats to fill,
 * which trace_decode_rows then copies out.  NULL and err when out of memory. */
float *trace__chunks_fallback(trace_chunk_buf *b, const char *path, int n, size_t cols,
                              kv_err *err);

/* 0 when d's filter pipeline is one the writer makes (its codec into *codec), -1 for
 * any other: such a dataset is never read. */
int trace__pipeline_check(hid_t d, trace_codec *codec);

/* Read the box [start, start + count) of the rank-`rank` dataset d as memory type
 * `mem` into out (dense, row-major), like H5Dread of that hyperslab; filtered chunks
 * are fetched raw and decoded here, every size checked. */
int trace__read_box(hid_t d, hid_t mem, int rank, const hsize_t *start, const hsize_t *count,
                    void *out, const char *path, kv_err *err);

#endif /* TRACE_CHUNKS_H */
