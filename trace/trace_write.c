/*
 * trace_write.c — the trace writer: the caller fills batches of TRACE_BATCH steps
 * while one writer thread puts the previous batch into the HDF5 file.
 *
 * Two batch buffers alternate.  The caller fills buf[fill]; a full batch is handed to
 * the thread through `inbox` when the next step arrives; the thread clears `inbox`
 * when that batch is on disk, which frees the other buffer for the caller.
 *
 *   caller:  append ... append | hand over (waits while inbox is busy) | append ...
 *   thread:  lock, create | wait for inbox | write batch, flush, raise steps | ... | close
 *
 * The file's life (trace_file.h invariant 5): NAME.partial is opened and locked
 * (flock) before anything is written to it, laid out, switched to HDF5's SWMR mode
 * (from then on the file on disk is consistent at every flush, whatever happens to
 * this process), synced at every batch, and renamed onto NAME by close and abort.
 *
 * Invariants:
 *   (1) Every HDF5 call is made by the writer thread: the file is created there (the
 *       caller waits for the verdict) and closed there.
 *   (2) At most one batch is in flight; peak memory is the two batch buffers
 *       (docs/TRACE_FORMAT.md, "Memory").
 *   (3) A batch is handed over only when the step after it arrives, or at close or
 *       abort, so the last appended step can still be amended (trace_writer_set_next).
 *   (4) status/steps is written only after the batch's data was flushed and synced;
 *       complete is set only by close after every batch succeeded.
 *   (5) After the first write error the thread writes nothing more; the caller learns
 *       it from the next append or from close (KV_EIO).
 */
#include "trace_h5.h"

#include "cli.h"
#include "fp16.h"
#include "out.h"
#include "vec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { RUN = 0, CLOSE = 1, ABORT = 2 };
enum { TOK_ID, TOK_FLAGS, TOK_PHASE, TOK_POSITION, TOK_LOGPROB, TOK_ENTROPY, TOK_TEXT_END,
       N_TOK };

typedef struct batch {
    int64_t t0;                          /* first step of the batch */
    int     n;                           /* steps filled, <= TRACE_BATCH */
    size_t  width;                       /* row length held: t0 + TRACE_BATCH */
    void   *probs;                       /* (Lr, Hr, TRACE_BATCH, width) rows' dtype */
    size_t  probs_cap;                   /* bytes allocated for probs */
    void   *keys;                        /* (L, K, TRACE_BATCH, D) qk dtype */
    void   *values;                      /* (L, K, TRACE_BATCH, D) rows' dtype */
    void   *queries;                     /* (L, H, TRACE_BATCH, D) qk dtype, or NULL */
    int32_t id[TRACE_BATCH], position[TRACE_BATCH];
    uint8_t flags[TRACE_BATCH], phase[TRACE_BATCH];
    float   logprob[TRACE_BATCH], entropy[TRACE_BATCH];
    int64_t text_end[TRACE_BATCH];       /* end of each piece in /tokens/text_bytes */
    int64_t text_base;                   /* where this batch's text starts there */
    char   *text;                        /* the batch's pieces back to back */
    size_t  text_len, text_cap;
} batch;

struct trace_writer {
    /* Shape, fixed at open. */
    int         L, H, K, D;              /* recorded layers, heads, KV heads; head_dim */
    int         Lr, Hr;                  /* the stored rows' layers and heads */
    trace_dtype dtype, qk_dtype;
    size_t      esize, qk_esize;         /* bytes per element of each */
    int         has_queries;             /* 1: /kv/queries is written */

    /* Caller side. */
    batch       buf[2];
    int         fill;                    /* index of the batch the caller fills */
    int64_t     steps;                   /* steps appended */
    int64_t     text_total;              /* text bytes appended */

    /* Shared, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    batch      *inbox;                   /* handed to the thread; NULL when idle */
    int         stop;                    /* RUN, CLOSE or ABORT */
    int         opened;                  /* 0 opening, 1 open, -1 open failed */
    int         failed;                  /* 1 after the thread's first error */
    kv_err      err;                     /* that error */
    pthread_t   thread;

    /* The files: NAME as given, the file it names (a link's target), NAME.partial. */
    char        path[PATH_MAX], target[PATH_MAX], partial[PATH_MAX];
    int         lock_fd;                 /* the partial file, flock'ed; -1 when not held */

    /* Writer thread side (HDF5). */
    const trace_header  *open_hdr;       /* valid only while opening */
    const trace_options *open_opt;
    const int  *open_kv_heads;           /* likewise, (K,) */
    trace_compression compression;
    int         force;
    hid_t       file, mtype, qk_mtype;   /* memory types of the two dtypes */
    hid_t       probs, keys, values, queries, text, tok[N_TOK], steps_ds, complete_ds;
    uint64_t    cap, written;            /* KV_TEST_WRITE_CAP_BYTES and bytes so far */
    int64_t     on_disk;                 /* the last value written to /status/steps */
};

/* ---------------------------------------------------------------- the partial file */

static int lock_failed(trace_writer *w, kv_err *err, const char *why)
{
    close(w->lock_fd);
    w->lock_fd = -1;
    return kv_errorf(err, KV_EEXIST, "%s: %s (%s); nothing was touched", w->path, why,
                     w->partial);
}

/* Open and lock NAME.partial before anything touches it.  A partial file with data
 * in it was left by a writer that was killed: it is a trace, kept unless --force. */
static int lock_partial(trace_writer *w, kv_err *err)
{
    w->lock_fd = open(w->partial, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (w->lock_fd < 0)
        return kv_errorf(err, KV_EIO, "%s: cannot create the trace file: %s", w->partial,
                         strerror(errno));
    struct stat held, named;
    if (flock(w->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return lock_failed(w, err, "another kvtrace is recording this trace right now");
    if (fstat(w->lock_fd, &held) != 0 || stat(w->partial, &named) != 0 ||
        held.st_ino != named.st_ino || held.st_dev != named.st_dev)
        return lock_failed(w, err, "another kvtrace finished this trace as we started");
    if (held.st_size > 0 && !w->force)
        return lock_failed(w, err, "a recording that did not finish (killed?) left its "
                           "partial trace, readable up to its last flushed batch: replay "
                           "or rename it, or use --force to replace it");
    return KV_OK;
}

/* Durable: HDF5's caches to the OS, the OS's pages to the disk. */
static int sync_file(trace_writer *w)
{
    return H5Fflush(w->file, H5F_SCOPE_LOCAL) < 0 || fdatasync(w->lock_fd) != 0 ? -1 : 0;
}

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

/* A fixed 1-D dataset of n values of file type `type` from memory type `mem`. */
static int ds_write_1d(hid_t file, const char *name, hid_t type, hid_t mem, const void *v,
                       hsize_t n)
{
    hsize_t dims[1] = {n};
    hid_t space = H5Screate_simple(1, dims, NULL), lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(file, name, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d < 0 || (n > 0 && H5Dwrite(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0);
    if (d >= 0)
        H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(space);
    return rc ? -1 : 0;
}

static int ds_write_ints(hid_t file, const char *name, const int *v, int n)
{
    return ds_write_1d(file, name, H5T_STD_I32LE, H5T_NATIVE_INT, v, (hsize_t)n);
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

static const char *rows_name(trace_stored_rows rows)
{
    return rows == TRACE_ROWS_ALL ? "all" : rows == TRACE_ROWS_NONE ? "none" : "some";
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
    bad |= trace__attr_put_f64(r, "attn_softcap", h->attn_softcap);
    bad |= trace__attr_put_str(r, "mask", "causal");
    bad |= trace__attr_put_i64(r, "chat", h->chat);
    bad |= trace__attr_put_i64(r, "max_new_tokens", h->max_new_tokens);
    bad |= trace__attr_put_f64(r, "temperature", h->temperature);
    bad |= trace__attr_put_f64(r, "top_p", h->top_p);
    bad |= trace__attr_put_i64(r, "top_k", h->top_k);
    bad |= trace__attr_put_u64(r, "seed", h->seed);
    bad |= trace__attr_put_str(r, "device", h->device);
    bad |= trace__attr_put_i64(r, "threads", h->threads);
    bad |= trace__attr_put_i64(r, "planned_steps", h->planned_steps);
    bad |= trace__attr_put_str(r, "created", h->created ? h->created : created);
    bad |= trace__attr_put_str(r, "dtype", trace_dtype_name(w->dtype));
    bad |= trace__attr_put_str(r, "qk_dtype", trace_dtype_name(w->qk_dtype));
    bad |= trace__attr_put_str(r, "rows", rows_name(w->open_opt->rows));
    bad |= trace__attr_put_str(r, "compression",
                               trace_compression_name(w->compression, comp, sizeof comp));
    return bad ? -1 : 0;
}

/* The fixed datasets: prompt, the recorded lists, windows, the stored rows' lists. */
static int put_lists(trace_writer *w, const trace_header *h, const trace_options *o)
{
    int window[TRACE_MAX_LAYERS] = {0};
    for (int i = 0; h->window && i < w->L; i++)
        window[i] = h->window[i];
    const char *prompt = h->prompt ? h->prompt : "";
    int bad = ds_write_1d(w->file, TRACE_DS_PROMPT, H5T_STD_U8LE, H5T_NATIVE_UCHAR, prompt,
                          strlen(prompt)) < 0 ||
              ds_write_ints(w->file, TRACE_DS_LAYERS, h->layers, w->L) < 0 ||
              ds_write_ints(w->file, TRACE_DS_HEADS, h->heads, w->H) < 0 ||
              ds_write_ints(w->file, TRACE_DS_KV_HEADS, w->open_kv_heads, w->K) < 0 ||
              ds_write_ints(w->file, TRACE_DS_WINDOW, window, w->L) < 0;
    if (!bad && w->Lr > 0) {
        const int *rl = o->rows == TRACE_ROWS_SOME ? o->row_layers : h->layers;
        const int *rh = o->rows == TRACE_ROWS_SOME ? o->row_heads : h->heads;
        bad = ds_write_ints(w->file, TRACE_DS_ROW_LAYERS, rl, w->Lr) < 0 ||
              ds_write_ints(w->file, TRACE_DS_ROW_HEADS, rh, w->Hr) < 0;
    }
    return bad ? -1 : 0;
}

static int create_datasets(trace_writer *w)
{
    const hsize_t U = H5S_UNLIMITED, L = (hsize_t)w->L, H = (hsize_t)w->H,
                  K = (hsize_t)w->K, D = (hsize_t)w->D, B = TRACE_BATCH;
    const hsize_t Lr = (hsize_t)w->Lr, Hr = (hsize_t)w->Hr;
    hid_t ft = trace__dtype_type(w->dtype), qt = trace__dtype_type(w->qk_dtype);
    hsize_t pd[4] = {Lr, Hr, 0, 0}, pm[4] = {Lr, Hr, U, U}, pc[4] = {1, 1, B, TRACE_CHUNK_COLS};
    hsize_t kd[4] = {L, K, 0, D}, km[4] = {L, K, U, D}, kc[4] = {1, 1, B, D};
    hsize_t qd[4] = {L, H, 0, D}, qm[4] = {L, H, U, D};
    hsize_t td[1] = {0}, tm[1] = {U}, tc[1] = {TRACE_TOKEN_CHUNK};
    static const char *const tok_name[N_TOK] = {
        TRACE_DS_ID, TRACE_DS_FLAGS, TRACE_DS_PHASE, TRACE_DS_POSITION, TRACE_DS_LOGPROB,
        TRACE_DS_ENTROPY, TRACE_DS_TEXT_END};
    const hid_t tok_type[N_TOK] = {H5T_STD_I32LE, H5T_STD_U8LE, H5T_STD_U8LE, H5T_STD_I32LE,
                                   H5T_IEEE_F32LE, H5T_IEEE_F32LE, H5T_STD_I64LE};

    w->probs = w->Lr > 0 ? ds_create(w, TRACE_DS_PROBS, ft, 4, pd, pm, pc, 1) : 0;
    w->keys = ds_create(w, TRACE_DS_KEYS, qt, 4, kd, km, kc, 1);
    w->values = ds_create(w, TRACE_DS_VALUES, ft, 4, kd, km, kc, 1);
    w->queries = w->has_queries ? ds_create(w, TRACE_DS_QUERIES, qt, 4, qd, qm, kc, 1) : 0;
    for (int i = 0; i < N_TOK; i++)
        w->tok[i] = ds_create(w, tok_name[i], tok_type[i], 1, td, tm, tc, 1);
    w->text = ds_create(w, TRACE_DS_TEXT_BYTES, H5T_STD_U8LE, 1, td, tm, tc, 1);
    H5Tclose(ft);
    H5Tclose(qt);

    int bad = w->probs < 0 || w->keys < 0 || w->values < 0 || w->queries < 0 || w->text < 0;
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

/* The latest file format (SWMR needs it) and no HDF5 file locks: ours is the flock on
 * NAME.partial, and HDF5's own lock on the same file would collide with it. */
static hid_t swmr_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    H5Pset_file_locking(fapl, 0, 1);
    return fapl;
}

/* Runs on the writer thread (invariant 1), holding the lock on NAME.partial. */
static int file_create(trace_writer *w, kv_err *err)
{
    int rc = check_lz4(w, err);
    if (rc < 0)
        return rc;
    hid_t fapl = swmr_fapl();
    w->file = H5Fcreate(w->partial, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    hid_t saved = trace__h5_save_errors();
    H5Pclose(fapl);
    trace__h5_restore_errors(saved);
    if (w->file < 0) {
        w->file = 0;
        return trace__h5_fail(err, KV_EIO, "%s: cannot create the trace file", w->partial);
    }
    w->mtype = trace__dtype_type(w->dtype);
    w->qk_mtype = trace__dtype_type(w->qk_dtype);
    if (put_root_attrs(w, w->open_hdr) < 0 || put_lists(w, w->open_hdr, w->open_opt) < 0 ||
        create_datasets(w) < 0 || create_status(w) < 0 || H5Fstart_swmr_write(w->file) < 0 ||
        sync_file(w) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: cannot lay out the trace file", w->partial);
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
    close_id(&w->text, H5Dclose);
    for (int i = 0; i < N_TOK; i++)
        close_id(&w->tok[i], H5Dclose);
    close_id(&w->steps_ds, H5Dclose);
    close_id(&w->complete_ds, H5Dclose);
    close_id(&w->mtype, H5Tclose);
    close_id(&w->qk_mtype, H5Tclose);
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

static int grow(trace_writer *w, hsize_t E, hsize_t text_bytes)
{
    const hsize_t L = (hsize_t)w->L, H = (hsize_t)w->H, K = (hsize_t)w->K, D = (hsize_t)w->D;
    hsize_t pd[4] = {(hsize_t)w->Lr, (hsize_t)w->Hr, E, E}, kd[4] = {L, K, E, D};
    hsize_t qd[4] = {L, H, E, D}, td[1] = {E};
    int bad = (w->probs && H5Dset_extent(w->probs, pd) < 0) ||
              H5Dset_extent(w->keys, kd) < 0 || H5Dset_extent(w->values, kd) < 0 ||
              (w->queries && H5Dset_extent(w->queries, qd) < 0) ||
              H5Dset_extent(w->text, &text_bytes) < 0;
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
    for (int li = 0; li < w->Lr; li++)
        for (int hi = 0; hi < w->Hr; hi++) {
            if (w->cap && w->written + bytes > w->cap)
                return cap_exceeded(w, b, err);
            hsize_t start[4] = {(hsize_t)li, (hsize_t)hi, (hsize_t)b->t0, 0};
            const char *src = (const char *)b->probs + ((size_t)li * w->Hr + hi) * block;
            if (slab_write(w->probs, w->mtype, start, fcount, 2, mdims, mcount, src) < 0)
                return trace__h5_fail(err, KV_EIO, "%s: writing the rows of steps "
                                      "%lld..%lld", w->path, (long long)b->t0,
                                      (long long)(E - 1));
            w->written += bytes;
        }
    return KV_OK;
}

/* Keys, values or queries of the whole batch: one write, chunk-aligned on the T axis. */
static int write_vectors(trace_writer *w, const batch *b, hid_t d, hid_t mtype, int heads,
                         size_t esize, const void *buf, kv_err *err)
{
    hsize_t start[4] = {0, 0, (hsize_t)b->t0, 0};
    hsize_t count[4] = {(hsize_t)w->L, (hsize_t)heads, (hsize_t)b->n, (hsize_t)w->D};
    hsize_t mdims[4] = {(hsize_t)w->L, (hsize_t)heads, TRACE_BATCH, (hsize_t)w->D};
    const uint64_t bytes = (uint64_t)w->L * heads * b->n * w->D * esize;
    if (w->cap && w->written + bytes > w->cap)
        return cap_exceeded(w, b, err);
    w->written += bytes;
    if (slab_write(d, mtype, start, count, 4, mdims, count, buf) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: writing the keys, values or queries of steps "
                              "%lld..%lld", w->path, (long long)b->t0,
                              (long long)(b->t0 + b->n - 1));
    return KV_OK;
}

static int write_tokens(trace_writer *w, const batch *b)
{
    hsize_t start[1] = {(hsize_t)b->t0}, n[1] = {(hsize_t)b->n};
    const void *src[N_TOK] = {b->id, b->flags, b->phase, b->position, b->logprob, b->entropy,
                              b->text_end};
    const hid_t mem[N_TOK] = {H5T_NATIVE_INT32, H5T_NATIVE_UINT8, H5T_NATIVE_UINT8,
                              H5T_NATIVE_INT32, H5T_NATIVE_FLOAT, H5T_NATIVE_FLOAT,
                              H5T_NATIVE_INT64};
    int bad = 0;
    for (int i = 0; i < N_TOK && !bad; i++)
        bad = slab_write(w->tok[i], mem[i], start, n, 1, n, n, src[i]) < 0;
    hsize_t text_at[1] = {(hsize_t)b->text_base}, text_n[1] = {b->text_len};
    if (!bad && b->text_len > 0)
        bad = slab_write(w->text, H5T_NATIVE_UCHAR, text_at, text_n, 1, text_n, text_n,
                         b->text) < 0;
    return bad ? -1 : 0;
}

/* An upper bound of the bytes batch b adds to the file: every chunk it touches
 * uncompressed, its tokens and text, and room for HDF5's index and header blocks. */
static uint64_t batch_bytes(const trace_writer *w, const batch *b)
{
    const uint64_t E = (uint64_t)(b->t0 + b->n);
    const uint64_t col_chunks = (E + TRACE_CHUNK_COLS - 1) / TRACE_CHUNK_COLS;
    uint64_t data = (uint64_t)w->Lr * w->Hr * col_chunks * TRACE_BATCH * TRACE_CHUNK_COLS *
                    w->esize;
    data += (uint64_t)w->L * w->K * TRACE_BATCH * w->D * (w->qk_esize + w->esize);
    if (w->has_queries)
        data += (uint64_t)w->L * w->H * TRACE_BATCH * w->D * w->qk_esize;
    data += TRACE_BATCH * 32 + b->text_len;
    return data + data / 8 + (1u << 20);
}

/* Refuse a batch that would pass the process's file-size limit (ulimit -f) before
 * HDF5 writes any of it.  Cut off in the middle of HDF5's writes (EFBIG), the file's
 * superblock promises more bytes than it holds: "truncated file" at every open, the
 * batches flushed before lost with it.  Refused here, the file closes as it stood after
 * the last batch: a trace of those steps, marked incomplete. */
static int check_room(trace_writer *w, const batch *b, kv_err *err)
{
    struct rlimit lim;
    struct stat st;
    if (getrlimit(RLIMIT_FSIZE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY ||
        fstat(w->lock_fd, &st) != 0)
        return KV_OK;
    const uint64_t need = batch_bytes(w, b);
    if ((uint64_t)st.st_size + need <= (uint64_t)lim.rlim_cur)
        return KV_OK;
    return kv_errorf(err, KV_EIO, "%s: writing steps %lld..%lld: %s: they need up to "
                     "%.1f MiB more, past the file-size limit (ulimit -f) of %.1f MiB",
                     w->path, (long long)b->t0, (long long)(b->t0 + b->n - 1),
                     strerror(EFBIG), need / 1048576.0, lim.rlim_cur / 1048576.0);
}

/* Invariant 4: data, flush and sync, then the step count, flush and sync. */
static int batch_write(trace_writer *w, const batch *b, kv_err *err)
{
    const int64_t E = b->t0 + b->n;
    if (check_room(w, b, err) < 0)
        return KV_EIO;
    if (grow(w, (hsize_t)E, (hsize_t)(b->text_base + (int64_t)b->text_len)) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: extending the datasets to %lld steps",
                              w->path, (long long)E);
    int rc = write_probs(w, b, err);
    if (rc == KV_OK)
        rc = write_vectors(w, b, w->keys, w->qk_mtype, w->K, w->qk_esize, b->keys, err);
    if (rc == KV_OK)
        rc = write_vectors(w, b, w->values, w->mtype, w->K, w->esize, b->values, err);
    if (rc == KV_OK && w->queries)
        rc = write_vectors(w, b, w->queries, w->qk_mtype, w->H, w->qk_esize, b->queries, err);
    if (rc < 0)
        return rc;
    if (write_tokens(w, b) < 0 || sync_file(w) < 0 ||
        H5Dwrite(w->steps_ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &E) < 0 ||
        sync_file(w) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: writing steps %lld..%lld", w->path,
                              (long long)b->t0, (long long)(E - 1));
    w->on_disk = E;
    return KV_OK;
}

static int mark_complete(trace_writer *w, kv_err *err)
{
    int8_t one = 1;
    if (H5Dwrite(w->complete_ds, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, &one) < 0 ||
        sync_file(w) < 0)
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
    int rc = lock_partial(w, &e);
    if (rc == KV_OK && (rc = file_create(w, &e)) < 0) {
        file_close(w);
        unlink(w->partial);   /* ours: we hold its lock; nothing of value was in it */
    }
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
    if (rc == KV_OK && finish && mark_complete(w, &e) < 0)
        thread_fail(w, &e);
    file_close(w);
    return NULL;
}

/* ---------------------------------------------------------------- caller side ---- */

static void batch_free(batch *b)
{
    free(b->probs);
    free(b->keys);
    free(b->values);
    free(b->queries);
    free(b->text);
    memset(b, 0, sizeof *b);
}

static void writer_free(trace_writer *w)
{
    batch_free(&w->buf[0]);
    batch_free(&w->buf[1]);
    if (w->lock_fd >= 0)
        close(w->lock_fd);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* Start batch b at step t0: size the row buffer for t0 + B. */
static int batch_begin(trace_writer *w, batch *b, int64_t t0, kv_err *err)
{
    b->t0 = t0;
    b->n = 0;
    b->text_len = 0;
    b->text_base = w->text_total;
    b->width = (size_t)t0 + TRACE_BATCH;
    size_t need = (size_t)w->Lr * w->Hr * TRACE_BATCH * b->width * w->esize;
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
    size_t per_head = (size_t)w->L * TRACE_BATCH * w->D;
    b->keys = malloc(per_head * w->K * w->qk_esize);
    b->values = malloc(per_head * w->K * w->esize);
    b->queries = w->has_queries ? malloc(per_head * w->H * w->qk_esize) : NULL;
    return b->keys && b->values && (b->queries || !w->has_queries) ? 0 : -1;
}

/* Store n floats at dst in `dtype`; zero the `pad` elements after them. */
static void put_floats(trace_dtype dtype, void *dst, const float *src, size_t n, size_t pad)
{
    if (dtype == TRACE_F16) {
        fp16_from_f32_n(src, dst, n);
        memset((uint16_t *)dst + n, 0, pad * sizeof(uint16_t));
    } else {
        memcpy(dst, src, n * sizeof(float));
        memset((float *)dst + n, 0, pad * sizeof(float));
    }
}

static void put_vectors(const trace_writer *w, trace_dtype dtype, void *buf, int heads,
                        int slot, const float *const *src)
{
    const size_t esize = trace_dtype_size(dtype);
    for (int li = 0; li < w->L; li++)
        for (int k = 0; k < heads; k++) {
            size_t at = (((size_t)li * heads + k) * TRACE_BATCH + slot) * w->D;
            put_floats(dtype, (char *)buf + at * esize, src[li * heads + k], (size_t)w->D, 0);
        }
}

static int put_text(trace_writer *w, batch *b, const char *text)
{
    const size_t len = text ? strlen(text) : 0;
    if (vec_reserve((void **)&b->text, 1, b->text_len + len, &b->text_cap) != 0)
        return -1;
    memcpy(b->text + b->text_len, text ? text : "", len);
    b->text_len += len;
    w->text_total += (int64_t)len;
    return 0;
}

static int batch_put(trace_writer *w, batch *b, const trace_step *s)
{
    const int i = b->n;
    const size_t t = (size_t)(b->t0 + i);
    /* The rows are most of a step's bytes and converting them was the recording's one
     * serial loop: spread over the caller's OpenMP threads (each row its own bytes). */
#pragma omp parallel for schedule(static) if (w->Lr * w->Hr > 1 && t >= 256)
    for (int r = 0; r < w->Lr * w->Hr; r++) {
        size_t at = ((size_t)r * TRACE_BATCH + i) * b->width;
        if (s->rows_f16) {   /* converted by the caller (trace_step) */
            uint16_t *dst = (uint16_t *)b->probs + at;
            memcpy(dst, s->rows_f16[r], (t + 1) * sizeof *dst);
            memset(dst + t + 1, 0, (b->width - t - 1) * sizeof *dst);
        } else {
            put_floats(w->dtype, (char *)b->probs + at * w->esize, s->rows[r], t + 1,
                       b->width - t - 1);
        }
    }
    put_vectors(w, w->qk_dtype, b->keys, w->K, i, s->keys);
    put_vectors(w, w->dtype, b->values, w->K, i, s->values);
    if (w->has_queries)
        put_vectors(w, w->qk_dtype, b->queries, w->H, i, s->queries);
    if (put_text(w, b, s->text) < 0)
        return -1;
    b->text_end[i] = w->text_total;
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

/* Every stored row's layer and head must be recorded. */
static int check_subset(const char *what, const int *sub, int n_sub, const int *of, int n_of,
                        kv_err *err)
{
    for (int i = 0, j = 0; i < n_sub; i++) {
        while (j < n_of && of[j] < sub[i])
            j++;
        if (j == n_of || of[j] != sub[i])
            return kv_errorf(err, KV_ERANGE, "stored rows: %s %d is not recorded", what,
                             sub[i]);
    }
    return KV_OK;
}

static int check_header(const trace_header *h, const trace_options *o, kv_err *err)
{
    if (h->n_layer < 1 || h->n_layer > TRACE_MAX_LAYERS || h->n_head < 1 ||
        h->n_head > TRACE_MAX_HEADS || h->n_head_kv < 1 || h->n_head % h->n_head_kv ||
        h->head_dim < 1 || h->head_dim > TRACE_MAX_HEAD_DIM)
        return kv_errorf(err, KV_ERANGE, "trace header: n_layer %d, n_head %d, n_head_kv %d, "
                         "head_dim %d: expected positive, n_head a multiple of n_head_kv",
                         h->n_layer, h->n_head, h->n_head_kv, h->head_dim);
    int rc = check_list("layer", h->layers, h->n_layers_rec, h->n_layer, "layer", err);
    if (rc == KV_OK)
        rc = check_list("head", h->heads, h->n_heads_rec, h->n_head, "head", err);
    if (rc == KV_OK && o->rows == TRACE_ROWS_SOME) {
        if ((rc = check_list("stored rows' layer", o->row_layers, o->n_row_layers, h->n_layer,
                             "layer", err)) == KV_OK &&
            (rc = check_list("stored rows' head", o->row_heads, o->n_row_heads, h->n_head,
                             "head", err)) == KV_OK &&
            (rc = check_subset("layer", o->row_layers, o->n_row_layers, h->layers,
                               h->n_layers_rec, err)) == KV_OK)
            rc = check_subset("head", o->row_heads, o->n_row_heads, h->heads, h->n_heads_rec,
                              err);
    }
    return rc;
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

/* NAME, the file it names, NAME.partial; an existing NAME must be a regular file, and
 * is replaced only with force. */
static int name_files(trace_writer *w, const char *path, kv_err *err)
{
    struct stat st;
    int n = snprintf(w->path, sizeof w->path, "%s", path);
    if (n < 0 || (size_t)n >= sizeof w->path || out_target(path, w->target, sizeof w->target,
                                                          err) != KV_OK)
        return kv_errorf(err, KV_EIO, "%s: the path is too long", path);
    n = snprintf(w->partial, sizeof w->partial, "%s.partial", w->target);
    if (n < 0 || (size_t)n >= sizeof w->partial)
        return kv_errorf(err, KV_EIO, "%s: the path is too long", path);
    if (stat(w->target, &st) != 0)
        return KV_OK;
    if (!S_ISREG(st.st_mode))
        return kv_errorf(err, KV_EIO, "%s: not a regular file: a trace is written to a file",
                         path);
    if (!w->force)
        return kv_errorf(err, KV_EEXIST, "%s: file exists; refusing to overwrite it (use "
                         "--force)", path);
    return KV_OK;
}

static trace_writer *writer_new(const trace_header *hdr, const trace_options *opt)
{
    trace_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->lock_fd = -1;
    w->L = hdr->n_layers_rec;
    w->H = hdr->n_heads_rec;
    w->D = hdr->head_dim;
    w->Lr = opt->rows == TRACE_ROWS_ALL ? w->L
            : opt->rows == TRACE_ROWS_SOME ? opt->n_row_layers : 0;
    w->Hr = opt->rows == TRACE_ROWS_ALL ? w->H
            : opt->rows == TRACE_ROWS_SOME ? opt->n_row_heads : 0;
    w->dtype = opt->dtype;
    w->qk_dtype = opt->qk_dtype;
    w->esize = trace_dtype_size(opt->dtype);
    w->qk_esize = trace_dtype_size(opt->qk_dtype);
    w->has_queries = trace_options_queries(opt);
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
    trace_options defaults = {.dtype = TRACE_F16, .qk_dtype = TRACE_F16};
    trace_compression_parse(NULL, &defaults.compression, NULL);
    if (!opt)
        opt = &defaults;
    int kv_heads[TRACE_MAX_HEADS];
    if (check_header(hdr, opt, err) < 0)
        return NULL;
    trace_writer *w = writer_new(hdr, opt);
    if (!w) {
        kv_errorf(err, KV_ENOMEM, "%s: no memory for the trace writer", path);
        return NULL;
    }
    w->K = kv_heads_of(hdr, kv_heads);
    w->open_hdr = hdr;
    w->open_opt = opt;
    w->open_kv_heads = kv_heads;
    if (name_files(w, path, err) < 0) {
        writer_free(w);
        return NULL;
    }
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
    w->open_opt = NULL;
    w->open_kv_heads = NULL;
    return w;
}

int trace_writer_append_step(trace_writer *w, const trace_step *step, kv_err *err)
{
    int rc = thread_error(w, err);
    if (rc < 0)
        return rc;
    if (step->rows_f16 && w->dtype != TRACE_F16)
        return kv_errorf(err, KV_EUSAGE, "%s: step %lld: rows in f16 for a trace of f32 rows",
                         w->path, (long long)w->steps);
    if ((w->Lr > 0 && !step->rows && !step->rows_f16) || !step->keys || !step->values ||
        (w->has_queries && !step->queries))
        return kv_errorf(err, KV_EUSAGE, "%s: step %lld: keys and values%s%s are required",
                         w->path, (long long)w->steps, w->Lr > 0 ? ", rows" : "",
                         w->has_queries ? ", queries" : "");
    batch *b = &w->buf[w->fill];
    if (b->n == TRACE_BATCH && (rc = hand_over(w, err)) < 0)
        return rc;
    b = &w->buf[w->fill];
    if (w->steps % TRACE_BATCH == 0 && (rc = batch_begin(w, b, w->steps, err)) < 0)
        return rc;
    if (w->steps >= TRACE_MAX_STEPS || w->text_total >= TRACE_MAX_TEXT_BYTES ||
        batch_put(w, b, step) < 0)
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

/* Stop the writer thread the `how` way, put NAME.partial in place as NAME (complete
 * or not: either is a readable trace; an abort before any step reached the disk removes
 * it instead and leaves NAME as it was), release the lock and free w; *on_disk
 * receives the steps the file's /status/steps records. */
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
    kv_err place = {0};
    /* nothing to keep: NAME stays as it was; also when a close finds that the thread
     * failed before its first batch was on disk (the caller may not have seen it yet) */
    if ((how == ABORT || w->failed) && w->on_disk == 0)
        unlink(w->partial);
    else if (fsync(w->lock_fd) != 0 || out_place(w->partial, w->path, &place) != KV_OK) {
        if (rc == KV_OK)
            rc = kv_errorf(err, KV_EIO, "%s: the trace stays in %s: %s", w->path, w->partial,
                           place.msg[0] ? place.msg : strerror(errno));
    }
    *on_disk = w->on_disk;   /* the thread has been joined: no race */
    writer_free(w);          /* closes the partial file: the lock goes with it */
    return rc;
}

int trace_writer_close(trace_writer *w, int64_t *on_disk, kv_err *err)
{
    int64_t steps = 0;
    int rc = w ? writer_finish(w, CLOSE, &steps, err) : KV_OK;
    if (on_disk)
        *on_disk = steps;
    return rc;
}

int64_t trace_writer_abort(trace_writer *w)
{
    int64_t on_disk = 0;
    if (w)
        writer_finish(w, ABORT, &on_disk, NULL);
    return on_disk;
}
