/*
 * trace_write.c — the trace writer: the caller fills batches of TRACE_BATCH steps
 * while one writer thread puts the previous batch into the HDF5 file.
 *
 * Two batch buffers alternate.  The caller fills buf[fill]; a full batch is handed to
 * the thread through `inbox` when the next step arrives; the thread clears `inbox`
 * when that batch is on disk, which frees the other buffer for the caller.
 *
 *   caller:  append ... append | hand over (waits while inbox is busy) | append ...
 *   thread:  open | wait for inbox | write batch, flush, raise steps | ... | close
 *
 * Invariants:
 *   (1) Every HDF5 call is made by the writer thread: the file is created there (the
 *       caller waits for the verdict) and closed there.
 *   (2) At most one batch is in flight; peak memory is the two batch buffers
 *       (docs/TRACE_FORMAT.md, "Memory").
 *   (3) A batch is handed over only when the step after it arrives, or at close or
 *       abort, so the last appended step can still be amended (trace_writer_set_next).
 *   (4) status/steps is written only after the batch's data was flushed; complete is
 *       set only by close after every batch succeeded.
 *   (5) After the first write error the thread writes nothing more; the caller learns
 *       it from the next append or from close (KV_EIO).
 */
#include "trace_h5.h"

#include "cli.h"
#include "fp16.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { RUN = 0, CLOSE = 1, ABORT = 2 };
enum { TOK_ID, TOK_TEXT, TOK_FLAGS, TOK_PHASE, TOK_POSITION, TOK_LOGPROB, TOK_ENTROPY,
       N_TOK };

typedef struct batch {
    int64_t t0;                          /* first step of the batch */
    int     n;                           /* steps filled, <= TRACE_BATCH */
    size_t  width;                       /* row length held: t0 + TRACE_BATCH */
    void   *probs;                       /* (L, H, TRACE_BATCH, width) trace dtype */
    size_t  probs_cap;                   /* bytes allocated for probs */
    void   *keys, *values;               /* (L, K, TRACE_BATCH, D) trace dtype */
    void   *queries;                     /* (L, H, TRACE_BATCH, D) or NULL */
    int32_t id[TRACE_BATCH], position[TRACE_BATCH];
    uint8_t flags[TRACE_BATCH], phase[TRACE_BATCH];
    float   logprob[TRACE_BATCH], entropy[TRACE_BATCH];
    char   *text[TRACE_BATCH];           /* owned copies */
} batch;

struct trace_writer {
    /* Shape, fixed at open. */
    int         L, H, K, D;              /* recorded layers, heads, KV heads; head_dim */
    trace_dtype dtype;
    size_t      esize;                   /* bytes per element of the trace dtype */
    int         record_queries;

    /* Caller side. */
    batch       buf[2];
    int         fill;                    /* index of the batch the caller fills */
    int64_t     steps;                   /* steps appended */

    /* Shared, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    batch      *inbox;                   /* handed to the thread; NULL when idle */
    int         stop;                    /* RUN, CLOSE or ABORT */
    int         opened;                  /* 0 opening, 1 open, -1 open failed */
    int         failed;                  /* 1 after the thread's first error */
    kv_err      err;                     /* that error */
    pthread_t   thread;

    /* Writer thread side (HDF5). */
    char       *path;
    const trace_header *open_hdr;        /* valid only while opening */
    const int  *open_kv_heads;           /* likewise, (K,) */
    trace_compression compression;
    int         force;
    hid_t       file, mtype;             /* mtype: the trace dtype as memory type */
    hid_t       probs, keys, values, queries, tok[N_TOK], steps_ds, complete_ds;
    uint64_t    cap, written;            /* KV_TEST_WRITE_CAP_BYTES and row bytes so far */
    int64_t     on_disk;                 /* the last value written to /status/steps */
};

/* ---------------------------------------------------------------- file creation -- */

static hid_t dcpl_new(trace_compression c, int rank, const hsize_t *chunk, hid_t type,
                      int filtered)
{
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    double zero = 0;
    uint16_t zero16 = 0;
    H5Pset_chunk(p, rank, chunk);
    if (type >= 0)
        H5Pset_fill_value(p, type, H5Tget_size(type) == 2 ? (void *)&zero16 : (void *)&zero);
    if (!filtered || c.codec == TRACE_CODEC_NONE)
        return p;
    H5Pset_shuffle(p);
    if (c.codec == TRACE_CODEC_DEFLATE)
        H5Pset_deflate(p, (unsigned)c.level);
    else
        H5Pset_filter(p, TRACE_LZ4_FILTER, H5Z_FLAG_MANDATORY, 0, NULL);
    return p;
}

/* An extendible dataset whose T axes start at 0. */
static hid_t ds_create(trace_writer *w, const char *name, hid_t type, int rank,
                       const hsize_t *dims, const hsize_t *maxdims, const hsize_t *chunk,
                       int filtered)
{
    hid_t space = H5Screate_simple(rank, dims, maxdims);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t dcpl = dcpl_new(w->compression, rank, chunk,
                          H5Tget_class(type) == H5T_FLOAT ? type : -1, filtered);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(w->file, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    return d;
}

static int ds_write_ints(hid_t file, const char *name, const int *v, int n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(file, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    int rc = d < 0 || H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0;
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(space);
    return rc ? -1 : 0;
}

static hid_t ds_scalar(hid_t file, const char *name, hid_t type, hid_t mem, const void *v)
{
    hid_t space = H5Screate(H5S_SCALAR), lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(file, name, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0 && H5Dwrite(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        H5Dclose(d);
        d = -1;
    }
    H5Pclose(lcpl);
    H5Sclose(space);
    return d;
}

static void iso8601_now(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int put_root_attrs(trace_writer *w, const trace_header *h)
{
    hid_t r = w->file;
    char created[32], comp[32];
    iso8601_now(created, sizeof created);
    double scale = h->attn_scale > 0 ? h->attn_scale : 1.0 / sqrt((double)h->head_dim);
    int bad = 0;
    bad |= trace__attr_put_str(r, "format", TRACE_FORMAT_NAME);
    bad |= trace__attr_put_i64(r, "format_version", TRACE_FORMAT_VERSION);
    bad |= trace__attr_put_str(r, "tool_version", h->tool_version ? h->tool_version : KV_VERSION);
    bad |= trace__attr_put_str(r, "model_file", h->model_file);
    bad |= trace__attr_put_str(r, "model_sha256", h->model_sha256);
    bad |= trace__attr_put_str(r, "architecture", h->architecture);
    bad |= trace__attr_put_str(r, "tensor_types", h->tensor_types);
    bad |= trace__attr_put_i64(r, "n_layer", h->n_layer);
    bad |= trace__attr_put_i64(r, "n_embd", h->n_embd);
    bad |= trace__attr_put_i64(r, "n_head", h->n_head);
    bad |= trace__attr_put_i64(r, "n_head_kv", h->n_head_kv);
    bad |= trace__attr_put_i64(r, "head_dim", h->head_dim);
    bad |= trace__attr_put_i64(r, "n_ctx", h->n_ctx);
    bad |= trace__attr_put_i64(r, "vocab_size", h->vocab_size);
    bad |= trace__attr_put_f64(r, "rope_base", h->rope_base);
    bad |= trace__attr_put_f64(r, "attn_scale", scale);
    bad |= trace__attr_put_str(r, "prompt", h->prompt);
    bad |= trace__attr_put_i64(r, "chat", h->chat);
    bad |= trace__attr_put_i64(r, "max_new_tokens", h->max_new_tokens);
    bad |= trace__attr_put_f64(r, "temperature", h->temperature);
    bad |= trace__attr_put_f64(r, "top_p", h->top_p);
    bad |= trace__attr_put_i64(r, "top_k", h->top_k);
    bad |= trace__attr_put_u64(r, "seed", h->seed);
    bad |= trace__attr_put_str(r, "device", h->device);
    bad |= trace__attr_put_i64(r, "threads", h->threads);
    bad |= trace__attr_put_str(r, "created", h->created ? h->created : created);
    bad |= trace__attr_put_str(r, "dtype", trace_dtype_name(w->dtype));
    bad |= trace__attr_put_str(r, "compression",
                               trace_compression_name(w->compression, comp, sizeof comp));
    return bad ? -1 : 0;
}

static int create_datasets(trace_writer *w)
{
    const hsize_t U = H5S_UNLIMITED, L = (hsize_t)w->L, H = (hsize_t)w->H,
                  K = (hsize_t)w->K, D = (hsize_t)w->D, B = TRACE_BATCH;
    hid_t ft = trace__dtype_type(w->dtype);
    hsize_t pd[4] = {L, H, 0, 0}, pm[4] = {L, H, U, U}, pc[4] = {1, 1, B, TRACE_CHUNK_COLS};
    hsize_t kd[4] = {L, K, 0, D}, km[4] = {L, K, U, D}, kc[4] = {1, 1, B, D};
    hsize_t qd[4] = {L, H, 0, D}, qm[4] = {L, H, U, D};
    hsize_t td[1] = {0}, tm[1] = {U}, tc[1] = {TRACE_TOKEN_CHUNK};
    hid_t text = H5Tcopy(H5T_C_S1);
    H5Tset_size(text, H5T_VARIABLE);
    H5Tset_cset(text, H5T_CSET_UTF8);

    w->probs = ds_create(w, TRACE_DS_PROBS, ft, 4, pd, pm, pc, 1);
    w->keys = ds_create(w, TRACE_DS_KEYS, ft, 4, kd, km, kc, 1);
    w->values = ds_create(w, TRACE_DS_VALUES, ft, 4, kd, km, kc, 1);
    w->queries = w->record_queries ? ds_create(w, TRACE_DS_QUERIES, ft, 4, qd, qm, kc, 1) : 0;
    w->tok[TOK_ID] = ds_create(w, TRACE_DS_ID, H5T_STD_I32LE, 1, td, tm, tc, 1);
    w->tok[TOK_TEXT] = ds_create(w, TRACE_DS_TEXT, text, 1, td, tm, tc, 0);
    w->tok[TOK_FLAGS] = ds_create(w, TRACE_DS_FLAGS, H5T_STD_U8LE, 1, td, tm, tc, 1);
    w->tok[TOK_PHASE] = ds_create(w, TRACE_DS_PHASE, H5T_STD_U8LE, 1, td, tm, tc, 1);
    w->tok[TOK_POSITION] = ds_create(w, TRACE_DS_POSITION, H5T_STD_I32LE, 1, td, tm, tc, 1);
    w->tok[TOK_LOGPROB] = ds_create(w, TRACE_DS_LOGPROB, H5T_IEEE_F32LE, 1, td, tm, tc, 1);
    w->tok[TOK_ENTROPY] = ds_create(w, TRACE_DS_ENTROPY, H5T_IEEE_F32LE, 1, td, tm, tc, 1);
    H5Tclose(text);
    H5Tclose(ft);

    int bad = w->probs < 0 || w->keys < 0 || w->values < 0 || w->queries < 0;
    for (int i = 0; i < N_TOK; i++)
        bad |= w->tok[i] < 0;
    return bad ? -1 : 0;
}

static int create_status(trace_writer *w)
{
    int8_t zero8 = 0;
    int64_t zero64 = 0;
    w->complete_ds = ds_scalar(w->file, TRACE_DS_COMPLETE, H5T_STD_I8LE, H5T_NATIVE_INT8, &zero8);
    w->steps_ds = ds_scalar(w->file, TRACE_DS_STEPS, H5T_STD_I64LE, H5T_NATIVE_INT64, &zero64);
    return w->complete_ds < 0 || w->steps_ds < 0 ? -1 : 0;
}

static int check_lz4(const trace_writer *w, kv_err *err)
{
    if (w->compression.codec != TRACE_CODEC_LZ4 || H5Zfilter_avail(TRACE_LZ4_FILTER) > 0)
        return KV_OK;
    H5Eclear2(H5E_DEFAULT);
    return kv_errorf(err, KV_EUNSUPPORTED,
                     "%s: compression lz4 needs the HDF5 LZ4 filter (id %d), which this "
                     "HDF5 cannot load: install the Debian package hdf5-filter-plugin "
                     "(make deps) or choose --compress deflate or none",
                     w->path, TRACE_LZ4_FILTER);
}

/* Runs on the writer thread (invariant 1). */
static int file_create(trace_writer *w, kv_err *err)
{
    int rc = check_lz4(w, err);
    if (rc < 0)
        return rc;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST);
    w->file = H5Fcreate(w->path, w->force ? H5F_ACC_TRUNC : H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    hid_t saved = trace__h5_save_errors();
    H5Pclose(fapl);
    trace__h5_restore_errors(saved);
    if (w->file < 0)
        return trace__h5_fail(err, KV_EIO, "%s: cannot create the trace file", w->path);
    w->mtype = trace__dtype_type(w->dtype);
    const trace_header *h = w->open_hdr;
    if (put_root_attrs(w, h) < 0 ||
        ds_write_ints(w->file, TRACE_DS_LAYERS, h->layers, w->L) < 0 ||
        ds_write_ints(w->file, TRACE_DS_HEADS, h->heads, w->H) < 0 ||
        ds_write_ints(w->file, TRACE_DS_KV_HEADS, w->open_kv_heads, w->K) < 0 ||
        create_datasets(w) < 0 || create_status(w) < 0 || H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: cannot lay out the trace file", w->path);
    return KV_OK;
}

static void close_id(hid_t *id, herr_t (*close)(hid_t))
{
    if (*id > 0)
        close(*id);
    *id = 0;
}

static void file_close(trace_writer *w)
{
    close_id(&w->probs, H5Dclose);
    close_id(&w->keys, H5Dclose);
    close_id(&w->values, H5Dclose);
    close_id(&w->queries, H5Dclose);
    for (int i = 0; i < N_TOK; i++)
        close_id(&w->tok[i], H5Dclose);
    close_id(&w->steps_ds, H5Dclose);
    close_id(&w->complete_ds, H5Dclose);
    close_id(&w->mtype, H5Tclose);
    close_id(&w->file, H5Fclose);
}

/* ---------------------------------------------------------------- batch writes --- */

/* Write the block mcount (at the origin of a memory buffer of dims mdims) to the
 * hyperslab [start, start + fcount) of d.  Ranks may differ; element counts agree. */
static int slab_write(hid_t d, hid_t mtype, const hsize_t *start, const hsize_t *fcount,
                      int mrank, const hsize_t *mdims, const hsize_t *mcount, const void *buf)
{
    static const hsize_t origin[4] = {0, 0, 0, 0};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(mrank, mdims, NULL);
    int bad = fs < 0 || ms < 0 ||
              H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, fcount, NULL) < 0 ||
              H5Sselect_hyperslab(ms, H5S_SELECT_SET, origin, NULL, mcount, NULL) < 0 ||
              H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, buf) < 0;
    hid_t saved = bad ? trace__h5_save_errors() : -1;
    if (ms >= 0)
        H5Sclose(ms);
    if (fs >= 0)
        H5Sclose(fs);
    trace__h5_restore_errors(saved);
    return bad ? -1 : 0;
}

static int grow(trace_writer *w, hsize_t E)
{
    const hsize_t L = (hsize_t)w->L, H = (hsize_t)w->H, K = (hsize_t)w->K, D = (hsize_t)w->D;
    hsize_t pd[4] = {L, H, E, E}, kd[4] = {L, K, E, D}, qd[4] = {L, H, E, D}, td[1] = {E};
    int bad = H5Dset_extent(w->probs, pd) < 0 || H5Dset_extent(w->keys, kd) < 0 ||
              H5Dset_extent(w->values, kd) < 0 ||
              (w->queries && H5Dset_extent(w->queries, qd) < 0);
    for (int i = 0; i < N_TOK && !bad; i++)
        bad = H5Dset_extent(w->tok[i], td) < 0;
    return bad ? -1 : 0;
}

static int cap_exceeded(const trace_writer *w, const batch *b, kv_err *err)
{
    return kv_errorf(err, KV_EIO, "%s: writing steps %lld..%lld: no space left on device "
                     "(simulated by KV_TEST_WRITE_CAP_BYTES)", w->path, (long long)b->t0,
                     (long long)(b->t0 + b->n - 1));
}

/* One (layer, head) at a time: rows t0..t0+n-1, columns 0..t0+n-1, which are whole
 * chunks of that head only (invariant 3 of trace_file.h). */
static int write_probs(trace_writer *w, const batch *b, kv_err *err)
{
    const hsize_t n = (hsize_t)b->n, E = (hsize_t)(b->t0 + b->n);
    const uint64_t bytes = n * E * w->esize;
    const size_t block = TRACE_BATCH * b->width * w->esize;   /* one head's rows */
    hsize_t fcount[4] = {1, 1, n, E}, mdims[2] = {TRACE_BATCH, b->width}, mcount[2] = {n, E};
    for (int li = 0; li < w->L; li++)
        for (int hi = 0; hi < w->H; hi++) {
            if (w->cap && w->written + bytes > w->cap)
                return cap_exceeded(w, b, err);
            hsize_t start[4] = {(hsize_t)li, (hsize_t)hi, (hsize_t)b->t0, 0};
            const char *src = (const char *)b->probs + ((size_t)li * w->H + hi) * block;
            if (slab_write(w->probs, w->mtype, start, fcount, 2, mdims, mcount, src) < 0)
                return trace__h5_fail(err, KV_EIO, "%s: writing the rows of steps "
                                      "%lld..%lld", w->path, (long long)b->t0,
                                      (long long)(E - 1));
            w->written += bytes;
        }
    return KV_OK;
}

/* Keys, values or queries of the whole batch: one write, chunk-aligned on the T axis. */
static int write_vectors(trace_writer *w, const batch *b, hid_t d, int heads, const void *buf)
{
    hsize_t start[4] = {0, 0, (hsize_t)b->t0, 0};
    hsize_t count[4] = {(hsize_t)w->L, (hsize_t)heads, (hsize_t)b->n, (hsize_t)w->D};
    hsize_t mdims[4] = {(hsize_t)w->L, (hsize_t)heads, TRACE_BATCH, (hsize_t)w->D};
    return slab_write(d, w->mtype, start, count, 4, mdims, count, buf);
}

static int write_tokens(trace_writer *w, const batch *b)
{
    hsize_t start[1] = {(hsize_t)b->t0}, n[1] = {(hsize_t)b->n};
    hid_t text = H5Tcopy(H5T_C_S1);
    H5Tset_size(text, H5T_VARIABLE);
    H5Tset_cset(text, H5T_CSET_UTF8);
    const void *src[N_TOK] = {b->id, b->text, b->flags, b->phase, b->position, b->logprob,
                              b->entropy};
    const hid_t mem[N_TOK] = {H5T_NATIVE_INT32, text, H5T_NATIVE_UINT8, H5T_NATIVE_UINT8,
                              H5T_NATIVE_INT32, H5T_NATIVE_FLOAT, H5T_NATIVE_FLOAT};
    int bad = 0;
    for (int i = 0; i < N_TOK && !bad; i++)
        bad = slab_write(w->tok[i], mem[i], start, n, 1, n, n, src[i]) < 0;
    hid_t saved = bad ? trace__h5_save_errors() : -1;
    H5Tclose(text);
    trace__h5_restore_errors(saved);
    return bad ? -1 : 0;
}

/* Invariant 4: data, flush, then the step count, flush. */
static int batch_write(trace_writer *w, const batch *b, kv_err *err)
{
    const int64_t E = b->t0 + b->n;
    if (grow(w, (hsize_t)E) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: extending the datasets to %lld steps",
                              w->path, (long long)E);
    int rc = write_probs(w, b, err);
    if (rc < 0)
        return rc;
    if (write_vectors(w, b, w->keys, w->K, b->keys) < 0 ||
        write_vectors(w, b, w->values, w->K, b->values) < 0 ||
        (w->queries && write_vectors(w, b, w->queries, w->H, b->queries) < 0) ||
        write_tokens(w, b) < 0 || H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0 ||
        H5Dwrite(w->steps_ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &E) < 0 ||
        H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: writing steps %lld..%lld", w->path,
                              (long long)b->t0, (long long)(E - 1));
    w->on_disk = E;
    return KV_OK;
}

static int mark_complete(trace_writer *w, kv_err *err)
{
    int8_t one = 1;
    if (H5Dwrite(w->complete_ds, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, &one) < 0 ||
        H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: marking the trace complete", w->path);
    return KV_OK;
}

/* ---------------------------------------------------------------- writer thread -- */

static void thread_fail(trace_writer *w, const kv_err *e)
{
    pthread_mutex_lock(&w->mu);
    if (!w->failed) {
        w->failed = 1;
        w->err = *e;
    }
    pthread_mutex_unlock(&w->mu);
}

static void *writer_main(void *arg)
{
    trace_writer *w = arg;
    kv_err e = {0};
    trace__h5_quiet();
    int rc = file_create(w, &e);
    pthread_mutex_lock(&w->mu);
    w->opened = rc < 0 ? -1 : 1;
    w->failed = rc < 0;
    w->err = e;
    pthread_cond_broadcast(&w->cv);
    while (rc == KV_OK) {
        while (!w->inbox && w->stop == RUN)
            pthread_cond_wait(&w->cv, &w->mu);
        batch *b = w->inbox;
        if (!b)
            break;                              /* stop requested and nothing queued */
        int failed = w->failed;
        pthread_mutex_unlock(&w->mu);
        if (!failed && batch_write(w, b, &e) < 0)
            thread_fail(w, &e);
        pthread_mutex_lock(&w->mu);
        w->inbox = NULL;
        pthread_cond_broadcast(&w->cv);
    }
    int finish = w->stop == CLOSE && !w->failed;
    pthread_mutex_unlock(&w->mu);
    if (finish && mark_complete(w, &e) < 0)
        thread_fail(w, &e);
    file_close(w);
    return NULL;
}

/* ---------------------------------------------------------------- caller side ---- */

static void batch_free(batch *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->text[i]);
    free(b->probs);
    free(b->keys);
    free(b->values);
    free(b->queries);
    memset(b, 0, sizeof *b);
}

static void writer_free(trace_writer *w)
{
    batch_free(&w->buf[0]);
    batch_free(&w->buf[1]);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w->path);
    free(w);
}

/* Start batch b at step t0: drop the old texts, size the row buffer for t0 + B. */
static int batch_begin(trace_writer *w, batch *b, int64_t t0, kv_err *err)
{
    for (int i = 0; i < b->n; i++)
        free(b->text[i]);
    b->t0 = t0;
    b->n = 0;
    b->width = (size_t)t0 + TRACE_BATCH;
    size_t need = (size_t)w->L * w->H * TRACE_BATCH * b->width * w->esize;
    if (need > b->probs_cap) {
        /* realloc, not free + malloc: large blocks are remapped, so the pages already
         * touched stay resident and only the new tail faults in. */
        void *grown = realloc(b->probs, need);
        if (grown) {
            b->probs = grown;
            b->probs_cap = need;
        }
    }
    if (need > b->probs_cap)
        return kv_errorf(err, KV_ENOMEM, "%s: no memory for a batch of %d steps at step "
                         "%lld (%zu bytes)", w->path, TRACE_BATCH, (long long)t0, need);
    return KV_OK;
}

static int batch_alloc_vectors(trace_writer *w, batch *b)
{
    size_t kv = (size_t)w->L * w->K * TRACE_BATCH * w->D * w->esize;
    size_t q = (size_t)w->L * w->H * TRACE_BATCH * w->D * w->esize;
    b->keys = malloc(kv);
    b->values = malloc(kv);
    b->queries = w->record_queries ? malloc(q) : NULL;
    return b->keys && b->values && (b->queries || !w->record_queries) ? 0 : -1;
}

/* Store n floats at dst in the trace dtype; zero the `pad` elements after them. */
static void put_floats(const trace_writer *w, void *dst, const float *src, size_t n, size_t pad)
{
    if (w->dtype == TRACE_F16) {
        fp16_from_f32_n(src, dst, n);
        memset((uint16_t *)dst + n, 0, pad * sizeof(uint16_t));
    } else {
        memcpy(dst, src, n * sizeof(float));
        memset((float *)dst + n, 0, pad * sizeof(float));
    }
}

static void put_vectors(const trace_writer *w, void *buf, int heads, int slot,
                        const float *const *src)
{
    for (int li = 0; li < w->L; li++)
        for (int k = 0; k < heads; k++) {
            size_t at = (((size_t)li * heads + k) * TRACE_BATCH + slot) * w->D;
            put_floats(w, (char *)buf + at * w->esize, src[li * heads + k], (size_t)w->D, 0);
        }
}

static int batch_put(trace_writer *w, batch *b, const trace_step *s)
{
    const int i = b->n;
    const size_t t = (size_t)(b->t0 + i);
    for (int r = 0; r < w->L * w->H; r++) {
        size_t at = ((size_t)r * TRACE_BATCH + i) * b->width;
        put_floats(w, (char *)b->probs + at * w->esize, s->rows[r], t + 1, b->width - t - 1);
    }
    put_vectors(w, b->keys, w->K, i, s->keys);
    put_vectors(w, b->values, w->K, i, s->values);
    if (w->record_queries)
        put_vectors(w, b->queries, w->H, i, s->queries);
    b->text[i] = strdup(s->text ? s->text : "");
    if (!b->text[i])
        return -1;
    b->id[i] = s->token;
    b->flags[i] = s->flags;
    b->phase[i] = s->phase;
    b->position[i] = s->position;
    b->logprob[i] = s->logprob_next;
    b->entropy[i] = s->entropy_next;
    b->n++;
    return 0;
}

/* The caller's view of the thread's first error, if any. */
static int thread_error(trace_writer *w, kv_err *err)
{
    pthread_mutex_lock(&w->mu);
    int rc = w->failed ? kv_errorf(err, w->err.code, "%s", w->err.msg) : KV_OK;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* Hand the filled batch to the thread once it is idle (invariant 2). */
static int hand_over(trace_writer *w, kv_err *err)
{
    pthread_mutex_lock(&w->mu);
    while (w->inbox && !w->failed)
        pthread_cond_wait(&w->cv, &w->mu);
    if (!w->failed) {
        w->inbox = &w->buf[w->fill];
        w->fill ^= 1;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return thread_error(w, err);
}

/* ---------------------------------------------------------------- public API ----- */

static int check_list(const char *what, const int *v, int n, int limit, const char *unit,
                      kv_err *err)
{
    if (n < 1 || n > limit || !v)
        return kv_errorf(err, KV_ERANGE, "%s selection: %d entries, expected 1..%d", what, n,
                         limit);
    for (int i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] >= limit)
            return kv_errorf(err, KV_ERANGE, "%s selection: %s %d out of range (the model has "
                             "%d %ss)", what, unit, v[i], limit, unit);
        if (i && v[i] <= v[i - 1])
            return kv_errorf(err, KV_ERANGE, "%s selection: %d after %d, expected strictly "
                             "increasing", what, v[i], v[i - 1]);
    }
    return KV_OK;
}

static int check_header(const trace_header *h, kv_err *err)
{
    if (h->n_layer < 1 || h->n_layer > TRACE_MAX_LAYERS || h->n_head < 1 ||
        h->n_head > TRACE_MAX_HEADS || h->n_head_kv < 1 || h->n_head % h->n_head_kv ||
        h->head_dim < 1 || h->head_dim > TRACE_MAX_HEAD_DIM)
        return kv_errorf(err, KV_ERANGE, "trace header: n_layer %d, n_head %d, n_head_kv %d, "
                         "head_dim %d: expected positive, n_head a multiple of n_head_kv",
                         h->n_layer, h->n_head, h->n_head_kv, h->head_dim);
    int rc = check_list("layer", h->layers, h->n_layers_rec, h->n_layer, "layer", err);
    return rc < 0 ? rc : check_list("head", h->heads, h->n_heads_rec, h->n_head, "head", err);
}

/* The KV heads the recorded query heads need, increasing (heads are increasing). */
static int kv_heads_of(const trace_header *h, int *out)
{
    int K = 0;
    for (int i = 0; i < h->n_heads_rec; i++) {
        int kv = trace_kv_head_of(h, h->heads[i]);
        if (K == 0 || out[K - 1] != kv)
            out[K++] = kv;
    }
    return K;
}

static int refuse_clobber(const char *path, const trace_options *opt, kv_err *err)
{
    struct stat st;
    if (opt->force || stat(path, &st) != 0)
        return KV_OK;
    return kv_errorf(err, KV_EEXIST, "%s: file exists; refusing to overwrite it (use --force)",
                     path);
}

static trace_writer *writer_new(const char *path, const trace_header *hdr,
                                const trace_options *opt)
{
    trace_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return NULL;
    }
    w->L = hdr->n_layers_rec;
    w->H = hdr->n_heads_rec;
    w->D = hdr->head_dim;
    w->dtype = opt->dtype;
    w->esize = trace__dtype_size(opt->dtype);
    w->record_queries = opt->record_queries;
    w->compression = opt->compression;
    w->force = opt->force;
    const char *cap = getenv("KV_TEST_WRITE_CAP_BYTES");
    w->cap = cap ? strtoull(cap, NULL, 10) : 0;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    return w;
}

/* Start the thread and wait until it has created the file (invariant 1). */
static int writer_start(trace_writer *w, kv_err *err)
{
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0)
        return kv_errorf(err, KV_ENOMEM, "%s: cannot start the writer thread", w->path);
    pthread_mutex_lock(&w->mu);
    while (w->opened == 0)
        pthread_cond_wait(&w->cv, &w->mu);
    int ok = w->opened > 0;
    pthread_mutex_unlock(&w->mu);
    if (ok)
        return KV_OK;
    pthread_join(w->thread, NULL);
    return kv_errorf(err, w->err.code, "%s", w->err.msg);
}

trace_writer *trace_writer_open(const char *path, const trace_header *hdr,
                                const trace_options *opt, kv_err *err)
{
    trace_options defaults = {.dtype = TRACE_F16};
    trace_compression_parse(NULL, &defaults.compression, NULL);
    if (!opt)
        opt = &defaults;
    int kv_heads[TRACE_MAX_HEADS];
    if (check_header(hdr, err) < 0 || refuse_clobber(path, opt, err) < 0)
        return NULL;
    trace_writer *w = writer_new(path, hdr, opt);
    if (!w) {
        kv_errorf(err, KV_ENOMEM, "%s: no memory for the trace writer", path);
        return NULL;
    }
    w->K = kv_heads_of(hdr, kv_heads);
    w->open_hdr = hdr;
    w->open_kv_heads = kv_heads;
    if (batch_alloc_vectors(w, &w->buf[0]) < 0 || batch_alloc_vectors(w, &w->buf[1]) < 0) {
        kv_errorf(err, KV_ENOMEM, "%s: no memory for the key/value batches", path);
        writer_free(w);
        return NULL;
    }
    if (writer_start(w, err) < 0) {
        writer_free(w);
        return NULL;
    }
    w->open_hdr = NULL;
    w->open_kv_heads = NULL;
    return w;
}

int trace_writer_append_step(trace_writer *w, const trace_step *step, kv_err *err)
{
    int rc = thread_error(w, err);
    if (rc < 0)
        return rc;
    if (!step->rows || !step->keys || !step->values || (w->record_queries && !step->queries))
        return kv_errorf(err, KV_EUSAGE, "%s: step %lld: rows, keys and values%s are required",
                         w->path, (long long)w->steps, w->record_queries ? " and queries" : "");
    batch *b = &w->buf[w->fill];
    if (b->n == TRACE_BATCH && (rc = hand_over(w, err)) < 0)
        return rc;
    b = &w->buf[w->fill];
    if (w->steps % TRACE_BATCH == 0 && (rc = batch_begin(w, b, w->steps, err)) < 0)
        return rc;
    if (w->steps >= TRACE_MAX_STEPS || batch_put(w, b, step) < 0)
        return kv_errorf(err, KV_ERANGE, "%s: step %lld: cannot append (limit %d steps, or "
                         "out of memory)", w->path, (long long)w->steps, TRACE_MAX_STEPS);
    w->steps++;
    return KV_OK;
}

int trace_writer_set_next(trace_writer *w, int64_t t, float logprob_next, float entropy_next,
                          kv_err *err)
{
    batch *b = &w->buf[w->fill];
    if (w->steps == 0 || t != w->steps - 1)
        return kv_errorf(err, KV_ERANGE, "%s: set_next for step %lld, but the last step "
                         "appended is %lld", w->path, (long long)t, (long long)w->steps - 1);
    b->logprob[b->n - 1] = logprob_next;
    b->entropy[b->n - 1] = entropy_next;
    return KV_OK;
}

int64_t trace_writer_steps(const trace_writer *w) { return w->steps; }

/* Hand over the partial batch (if any), then stop the thread and free everything. */
/* Stop the writer thread the `how` way and free w; *on_disk receives the steps the
 * file's /status/steps records. */
static int writer_finish(trace_writer *w, int how, int64_t *on_disk, kv_err *err)
{
    if (w->buf[w->fill].n > 0 && w->buf[w->fill].t0 + w->buf[w->fill].n == w->steps)
        hand_over(w, NULL);
    pthread_mutex_lock(&w->mu);
    w->stop = how;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    int rc = w->failed ? kv_errorf(err, w->err.code, "%s", w->err.msg) : KV_OK;
    *on_disk = w->on_disk;   /* the thread has been joined: no race */
    writer_free(w);
    return rc;
}

int trace_writer_close(trace_writer *w, kv_err *err)
{
    if (!w)
        return KV_OK;
    int64_t on_disk;
    return writer_finish(w, CLOSE, &on_disk, err);
}

int64_t trace_writer_abort(trace_writer *w)
{
    int64_t on_disk = 0;
    if (w)
        writer_finish(w, ABORT, &on_disk, NULL);
    return on_disk;
}

