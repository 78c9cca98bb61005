/*
 * trace_read.c — the trace reader: open and validate a trace, then hand out row
 * blocks of one (layer, head) at a time, converted to float32.
 *
 * Nothing read from the file is trusted: the format name and version come first,
 * then every attribute is range-checked, then every dataset's rank, shape and type
 * is checked against the header before anything is allocated from it.  Memory is
 * O(T) for the token arrays plus one row block of one head (docs/TRACE_FORMAT.md).
 * Chunk-aligned row blocks are fetched and decoded by trace_chunks.c; other reads go
 * through HDF5's hyperslab path.
 */
#include "trace_chunks.h"
#include "trace_h5.h"

#include "fp16.h"

#include <errno.h>
#include <math.h>
#ifdef __AVX__
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { S_TOOL, S_MODEL, S_SHA, S_ARCH, S_TYPES, S_DEVICE, S_CREATED, N_STR };

struct trace {
    char        *path;
    hid_t        file;
    hid_t        probs, keys, values, queries;   /* 0 when absent */
    hid_t        f16;                            /* memory type for f16 datasets */
    trace_meta   meta;
    trace_tokens tokens;

    /* Owned storage behind meta and tokens. */
    char        *str[N_STR];
    char        *prompt;                         /* NUL-terminated */
    int         *layers, *heads, *kv_heads;      /* (L,), (H,), (K,) */
    int         *window;                         /* (L,) */
    int         *row_layers, *row_heads;         /* (Lr,), (Hr,) model indices */
    int         *stored_li, *stored_hi;          /* (L,), (H,): index in those, or -1 */
    int32_t     *id, *position;                  /* (steps,) */
    uint8_t     *flags, *phase;
    float       *logprob, *entropy;
    int64_t     *text_end;                       /* (steps,) */
    char        *text_bytes;                     /* every piece, each NUL-terminated */
    char       **text;                           /* (steps,) into text_bytes */
    void        *scratch;                        /* one block as stored (f16 or f32) */
    size_t       scratch_cap;                    /* bytes */
    trace_chunk_layout probs_layout;             /* how /attn/probs chunks decode */
    trace_chunk_buf   *own;                      /* trace_read_rows' chunk buffer */
    trace_rebuild_buf *rebuild;                  /* trace_rows' rebuild buffer */
};

/* ---------------------------------------------------------------- close ---------- */

static void close_id(hid_t id, herr_t (*close)(hid_t))
{
    if (id > 0)
        close(id);
}

void trace_close(trace *tr)
{
    if (!tr)
        return;
    close_id(tr->probs, H5Dclose);
    close_id(tr->keys, H5Dclose);
    close_id(tr->values, H5Dclose);
    close_id(tr->queries, H5Dclose);
    close_id(tr->f16, H5Tclose);
    close_id(tr->file, H5Fclose);
    for (int i = 0; i < N_STR; i++)
        free(tr->str[i]);
    free(tr->prompt);
    free(tr->text);
    free(tr->text_bytes);
    free(tr->text_end);
    free(tr->layers);
    free(tr->heads);
    free(tr->kv_heads);
    free(tr->window);
    free(tr->row_layers);
    free(tr->row_heads);
    free(tr->stored_li);
    free(tr->stored_hi);
    free(tr->id);
    free(tr->position);
    free(tr->flags);
    free(tr->phase);
    free(tr->logprob);
    free(tr->entropy);
    free(tr->scratch);
    trace_chunk_buf_free(tr->own);
    trace_rebuild_buf_free(tr->rebuild);
    free(tr->path);
    free(tr);
}

/* ---------------------------------------------------------------- attributes ----- */

static int bad_attr(trace *tr, kv_err *err, const char *name, const char *expected)
{
    return kv_errorf(err, KV_EFORMAT, "%s: root attribute '%s': missing or malformed, "
                     "expected %s", tr->path, name, expected);
}

static int get_int(trace *tr, const char *name, int lo, int hi, int *out, kv_err *err)
{
    int64_t v;
    if (trace__attr_get_i64(tr->file, name, &v) < 0)
        return bad_attr(tr, err, name, "an integer");
    if (v < lo || v > hi)
        return kv_errorf(err, KV_EFORMAT, "%s: root attribute '%s' = %lld, expected %d..%d",
                         tr->path, name, (long long)v, lo, hi);
    *out = (int)v;
    return KV_OK;
}

static int get_str(trace *tr, const char *name, int slot, kv_err *err)
{
    if (trace__attr_get_str(tr->file, name, &tr->str[slot]) < 0)
        return bad_attr(tr, err, name, "a string");
    return KV_OK;
}

static int get_f64(trace *tr, const char *name, double *out, kv_err *err)
{
    if (trace__attr_get_f64(tr->file, name, out) < 0)
        return bad_attr(tr, err, name, "a number");
    return KV_OK;
}

/* Format name first: a foreign file must be called foreign, not malformed.  A format
 * 1 trace is refused before any of its variable-length strings is read. */
static int read_identity(trace *tr, kv_err *err)
{
    char *fmt = NULL;
    int64_t version = 0;
    int have_version = trace__attr_get_i64(tr->file, "format_version", &version) == KV_OK;
    if (have_version && version == 1)
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: a format 1 trace (variable-length "
                         "strings, which libhdf5 cannot read safely from a damaged file): "
                         "record it again with this kvtrace (format %d)", tr->path,
                         TRACE_FORMAT_VERSION);
    int rc = trace__attr_get_str(tr->file, "format", &fmt);
    if (rc < 0 || strcmp(fmt, TRACE_FORMAT_NAME) != 0) {
        rc = kv_errorf(err, KV_EFORMAT, "%s: not a kvtrace file (root attribute 'format' is "
                       "%s%s%s, expected '%s')", tr->path, fmt ? "'" : "", fmt ? fmt : "absent",
                       fmt ? "'" : "", TRACE_FORMAT_NAME);
        free(fmt);
        return rc;
    }
    free(fmt);
    if (!have_version || version < 1)
        return bad_attr(tr, err, "format_version", "an integer >= 1");
    if (version > TRACE_FORMAT_VERSION)
        return kv_errorf(err, KV_EUNSUPPORTED, "%s: format version %lld is newer than this "
                         "kvsim supports (%d)", tr->path, (long long)version,
                         TRACE_FORMAT_VERSION);
    tr->meta.format_version = (int)version;
    return KV_OK;
}

static int read_model(trace *tr, kv_err *err)
{
    trace_header *h = &tr->meta.header;
    int rc;
    if ((rc = get_int(tr, "n_layer", 1, TRACE_MAX_LAYERS, &h->n_layer, err)) < 0 ||
        (rc = get_int(tr, "n_head", 1, TRACE_MAX_HEADS, &h->n_head, err)) < 0 ||
        (rc = get_int(tr, "n_head_kv", 1, h->n_head, &h->n_head_kv, err)) < 0 ||
        (rc = get_int(tr, "head_dim", 1, TRACE_MAX_HEAD_DIM, &h->head_dim, err)) < 0 ||
        (rc = get_int(tr, "n_embd", 0, INT32_MAX, &h->n_embd, err)) < 0 ||
        (rc = get_int(tr, "n_ctx", 0, INT32_MAX, &h->n_ctx, err)) < 0 ||
        (rc = get_int(tr, "vocab_size", 0, INT32_MAX, &h->vocab_size, err)) < 0 ||
        (rc = get_f64(tr, "rope_base", &h->rope_base, err)) < 0 ||
        (rc = get_f64(tr, "attn_scale", &h->attn_scale, err)) < 0 ||
        (rc = get_f64(tr, "attn_softcap", &h->attn_softcap, err)) < 0)
        return rc;
    if (!(h->attn_scale > 0 && h->attn_scale < 1e6) ||
        !(h->attn_softcap >= 0 && h->attn_softcap < 1e6))
        return kv_errorf(err, KV_EFORMAT, "%s: attn_scale %g / attn_softcap %g: expected a "
                         "positive scale and a cap >= 0", tr->path, h->attn_scale,
                         h->attn_softcap);
    if (!(h->rope_base >= 0 && h->rope_base < 1e12))   /* shown by info, in JSON: finite */
        return kv_errorf(err, KV_EFORMAT, "%s: rope_base %g: expected a finite number >= 0",
                         tr->path, h->rope_base);
    if (h->n_head % h->n_head_kv)
        return kv_errorf(err, KV_EFORMAT, "%s: n_head %d is not a multiple of n_head_kv %d",
                         tr->path, h->n_head, h->n_head_kv);
    if ((rc = get_str(tr, "tool_version", S_TOOL, err)) < 0 ||
        (rc = get_str(tr, "model_file", S_MODEL, err)) < 0 ||
        (rc = get_str(tr, "model_sha256", S_SHA, err)) < 0 ||
        (rc = get_str(tr, "architecture", S_ARCH, err)) < 0 ||
        (rc = get_str(tr, "tensor_types", S_TYPES, err)) < 0)
        return rc;
    h->tool_version = tr->str[S_TOOL];
    h->model_file = tr->str[S_MODEL];
    h->model_sha256 = tr->str[S_SHA];
    h->architecture = tr->str[S_ARCH];
    h->tensor_types = tr->str[S_TYPES];
    return KV_OK;
}

static int read_run(trace *tr, kv_err *err)
{
    trace_header *h = &tr->meta.header;
    int rc;
    if ((rc = get_str(tr, "device", S_DEVICE, err)) < 0 ||
        (rc = get_str(tr, "created", S_CREATED, err)) < 0 ||
        (rc = get_int(tr, "chat", 0, 1, &h->chat, err)) < 0 ||
        (rc = get_int(tr, "max_new_tokens", 0, INT32_MAX, &h->max_new_tokens, err)) < 0 ||
        (rc = get_int(tr, "top_k", 0, INT32_MAX, &h->top_k, err)) < 0 ||
        (rc = get_int(tr, "threads", 0, INT32_MAX, &h->threads, err)) < 0 ||
        (rc = get_int(tr, "planned_steps", 0, TRACE_MAX_STEPS, &h->planned_steps, err)) < 0 ||
        (rc = get_f64(tr, "temperature", &h->temperature, err)) < 0 ||
        (rc = get_f64(tr, "top_p", &h->top_p, err)) < 0)
        return rc;
    if (trace__attr_get_u64(tr->file, "seed", &h->seed) < 0)
        return bad_attr(tr, err, "seed", "an unsigned integer");
    h->device = tr->str[S_DEVICE];
    h->created = tr->str[S_CREATED];
    return KV_OK;
}

static int get_dtype(trace *tr, const char *name, trace_dtype *out, kv_err *err)
{
    char *v = NULL;
    int rc = KV_OK;
    if (trace__attr_get_str(tr->file, name, &v) < 0 || (strcmp(v, "f16") && strcmp(v, "f32")))
        rc = bad_attr(tr, err, name, "'f16' or 'f32'");
    else
        *out = strcmp(v, "f16") ? TRACE_F32 : TRACE_F16;
    free(v);
    return rc;
}

/* How the trace is stored, and the one mask kind this reader knows. */
static int read_storage_choice(trace *tr, kv_err *err)
{
    char *comp = NULL, *mask = NULL;
    int rc = get_dtype(tr, "dtype", &tr->meta.options.dtype, err);
    if (rc == KV_OK)
        rc = get_dtype(tr, "qk_dtype", &tr->meta.options.qk_dtype, err);
    if (rc == KV_OK && (trace__attr_get_str(tr->file, "compression", &comp) < 0 ||
                        trace_compression_parse(comp, &tr->meta.options.compression, NULL) < 0))
        rc = bad_attr(tr, err, "compression", "none, deflate:N or lz4");
    if (rc == KV_OK && trace__attr_get_str(tr->file, "mask", &mask) < 0)
        rc = bad_attr(tr, err, "mask", "a string");
    else if (rc == KV_OK && strcmp(mask, "causal"))
        rc = kv_errorf(err, KV_EUNSUPPORTED, "%s: attention mask '%s' is unknown to this "
                       "kvsim (it knows 'causal', with optional per-layer windows)", tr->path,
                       mask);
    free(comp);
    free(mask);
    return rc;
}

/* ---------------------------------------------------------------- datasets ------- */

static int missing(trace *tr, const char *name, kv_err *err)
{
    return trace__h5_fail(err, KV_EFORMAT, "%s: dataset /%s is missing or unreadable",
                          tr->path, name);
}

/* Read the box [start, start + count) of dataset `name` (open as d) into out, dense:
 * the one way the reader reads a dataset (trace__read_box says why). */
static int read_box(trace *tr, hid_t d, const char *name, hid_t mem, int rank,
                    const hsize_t *start, const hsize_t *count, void *out, kv_err *err)
{
    char where[PATH_MAX + 64];
    snprintf(where, sizeof where, "%s: /%s", tr->path, name);
    return trace__read_box(d, mem, rank, start, count, out, where, err);
}

/* All n entries of the 1-D dataset `name`. */
static int read_all(trace *tr, hid_t d, const char *name, hid_t mem, int64_t n, void *out,
                    kv_err *err)
{
    const hsize_t start = 0, count = (hsize_t)n;
    return read_box(tr, d, name, mem, 1, &start, &count, out, err);
}

/* Open `name` into *out and check its rank and shape: want[i] >= 0 must match
 * exactly, -1 marks a T axis, whose common size is returned in *T_axis. */
static int ds_open(trace *tr, const char *name, int rank, const int64_t *want,
                   int64_t *T_axis, hid_t dapl, hid_t *out, kv_err *err)
{
    *out = 0;
    if (H5Lexists(tr->file, name, H5P_DEFAULT) <= 0)
        return missing(tr, name, err);
    hid_t d = H5Dopen2(tr->file, name, dapl);
    hid_t s = d < 0 ? -1 : H5Dget_space(d);
    hsize_t dims[4] = {0};
    int r = s < 0 ? -1 : H5Sget_simple_extent_ndims(s);
    if (r < 0) {                      /* not a dataset, or its header is damaged */
        close_id(s, H5Sclose);
        close_id(d, H5Dclose);
        return missing(tr, name, err);
    }
    int ok = r == rank && H5Sget_simple_extent_dims(s, dims, NULL) == rank;
    *T_axis = -1;
    for (int i = 0; ok && i < rank; i++) {
        if (want[i] < 0 && *T_axis >= 0 && (int64_t)dims[i] != *T_axis)
            ok = 0;
        else if (want[i] < 0)
            *T_axis = (int64_t)dims[i];
        else
            ok = (int64_t)dims[i] == want[i];
    }
    close_id(s, H5Sclose);
    trace_codec codec;
    if (ok && trace__pipeline_check(d, &codec) < 0) {
        close_id(d, H5Dclose);
        return kv_errorf(err, KV_EFORMAT, "%s: dataset /%s has a filter pipeline kvtrace "
                         "does not write (only none, or shuffle then deflate or LZ4): it is "
                         "not read", tr->path, name);
    }
    if (ok) {
        *out = d;
        return KV_OK;
    }
    close_id(d, H5Dclose);
    char shape[128] = "";
    for (int i = 0, n = 0; i < rank && n < (int)sizeof shape - 16; i++)
        n += snprintf(shape + n, sizeof shape - (size_t)n, want[i] < 0 ? "%sT" : "%s%lld",
                      i ? ", " : "", (long long)want[i]);
    return kv_errorf(err, KV_EFORMAT, "%s: dataset /%s has rank %d, dims (%llu, %llu, %llu, "
                     "%llu), expected [%s] from the header", tr->path, name, r,
                     (unsigned long long)dims[0], (unsigned long long)dims[1],
                     (unsigned long long)dims[2], (unsigned long long)dims[3], shape);
}

/* A fixed 1-D int dataset of n entries, each in [0, limit), strictly increasing. */
static int read_index_list(trace *tr, const char *name, int limit, int *n_out, int **out,
                           kv_err *err)
{
    int64_t want = -1, n;
    hid_t d;
    int rc = ds_open(tr, name, 1, &want, &n, H5P_DEFAULT, &d, err);
    if (rc < 0)
        return rc;
    if (n < 1 || n > limit)
        rc = kv_errorf(err, KV_EFORMAT, "%s: /%s has %lld entries, expected 1..%d", tr->path,
                       name, (long long)n, limit);
    else if (!(*out = malloc((size_t)n * sizeof **out)))
        rc = kv_errorf(err, KV_ENOMEM, "%s: no memory for /%s", tr->path, name);
    else
        rc = read_all(tr, d, name, H5T_NATIVE_INT, n, *out, err);
    for (int i = 0; rc == KV_OK && i < n; i++)
        if ((*out)[i] < 0 || (*out)[i] >= limit || (i && (*out)[i] <= (*out)[i - 1]))
            rc = kv_errorf(err, KV_EFORMAT, "%s: /%s[%d] = %d, expected increasing values in "
                           "0..%d", tr->path, name, i, (*out)[i], limit - 1);
    *n_out = (int)n;
    H5Dclose(d);
    return rc;
}

/* A fixed 1-D int dataset of exactly n entries, each in [lo, hi]. */
static int read_int_array(trace *tr, const char *name, int n, int lo, int hi, int **out,
                          kv_err *err)
{
    int64_t want = n, E;
    hid_t d;
    int rc = ds_open(tr, name, 1, &want, &E, H5P_DEFAULT, &d, err);
    if (rc < 0)
        return rc;
    if (!(*out = malloc((size_t)n * sizeof **out)))
        rc = kv_errorf(err, KV_ENOMEM, "%s: no memory for /%s", tr->path, name);
    else
        rc = read_all(tr, d, name, H5T_NATIVE_INT, n, *out, err);
    for (int i = 0; rc == KV_OK && i < n; i++)
        if ((*out)[i] < lo || (*out)[i] > hi)
            rc = kv_errorf(err, KV_EFORMAT, "%s: /%s[%d] = %d, expected %d..%d", tr->path,
                           name, i, (*out)[i], lo, hi);
    H5Dclose(d);
    return rc;
}

/* Where each recorded index sits in a stored list (a subset of the recorded one). */
static int index_in(trace *tr, const char *name, const int *sub, int n_sub, const int *all,
                    int n_all, int **where, kv_err *err)
{
    if (!(*where = malloc((size_t)n_all * sizeof **where)))
        return kv_errorf(err, KV_ENOMEM, "%s: no memory for /%s", tr->path, name);
    int found = 0;
    for (int i = 0; i < n_all; i++) {
        (*where)[i] = -1;
        for (int j = 0; j < n_sub; j++)
            if (sub[j] == all[i])
                (*where)[i] = j, found++;
    }
    if (found == n_sub)
        return KV_OK;
    return kv_errorf(err, KV_EFORMAT, "%s: /%s lists a layer or head that is not recorded",
                     tr->path, name);
}

/* The stored rows' lists, when the trace stores any. */
static int read_row_lists(trace *tr, kv_err *err)
{
    const trace_header *h = &tr->meta.header;
    trace_options *o = &tr->meta.options;
    const int has_layers = H5Lexists(tr->file, "attn", H5P_DEFAULT) > 0 &&
                           H5Lexists(tr->file, TRACE_DS_ROW_LAYERS, H5P_DEFAULT) > 0;
    int rc = KV_OK;
    if (has_layers &&
        ((rc = read_index_list(tr, TRACE_DS_ROW_LAYERS, h->n_layer, &o->n_row_layers,
                               &tr->row_layers, err)) < 0 ||
         (rc = read_index_list(tr, TRACE_DS_ROW_HEADS, h->n_head, &o->n_row_heads,
                               &tr->row_heads, err)) < 0))
        return rc;
    const int L = h->n_layers_rec, H = h->n_heads_rec;
    if ((rc = index_in(tr, TRACE_DS_ROW_LAYERS, tr->row_layers, o->n_row_layers, tr->layers, L,
                       &tr->stored_li, err)) < 0 ||
        (rc = index_in(tr, TRACE_DS_ROW_HEADS, tr->row_heads, o->n_row_heads, tr->heads, H,
                       &tr->stored_hi, err)) < 0)
        return rc;
    o->row_layers = tr->row_layers;
    o->row_heads = tr->row_heads;
    o->rows = !has_layers ? TRACE_ROWS_NONE
              : o->n_row_layers == L && o->n_row_heads == H ? TRACE_ROWS_ALL : TRACE_ROWS_SOME;
    return KV_OK;
}

static int read_selection(trace *tr, kv_err *err)
{
    trace_header *h = &tr->meta.header;
    int rc;
    if ((rc = read_index_list(tr, TRACE_DS_LAYERS, h->n_layer, &h->n_layers_rec, &tr->layers,
                              err)) < 0 ||
        (rc = read_index_list(tr, TRACE_DS_HEADS, h->n_head, &h->n_heads_rec, &tr->heads,
                              err)) < 0 ||
        (rc = read_index_list(tr, TRACE_DS_KV_HEADS, h->n_head_kv, &tr->meta.n_kv_heads_rec,
                              &tr->kv_heads, err)) < 0 ||
        (rc = read_int_array(tr, TRACE_DS_WINDOW, h->n_layers_rec, 0, TRACE_MAX_STEPS,
                             &tr->window, err)) < 0)
        return rc;
    h->layers = tr->layers;
    h->heads = tr->heads;
    h->window = tr->window;
    tr->meta.kv_heads = tr->kv_heads;
    /* /kv_heads must be exactly the KV heads the recorded query heads need. */
    int K = 0;
    for (int i = 0; i < h->n_heads_rec; i++) {
        int kv = trace_kv_head_of(h, h->heads[i]);
        if (K == 0 || tr->kv_heads[K - 1] != kv) {
            if (K >= tr->meta.n_kv_heads_rec || tr->kv_heads[K] != kv)
                return kv_errorf(err, KV_EFORMAT, "%s: /kv_heads does not list KV head %d "
                                 "used by query head %d", tr->path, kv, h->heads[i]);
            K++;
        }
    }
    if (K != tr->meta.n_kv_heads_rec)
        return kv_errorf(err, KV_EFORMAT, "%s: /kv_heads lists %d heads, the recorded query "
                         "heads use %d", tr->path, tr->meta.n_kv_heads_rec, K);
    return read_row_lists(tr, err);
}

/* The prompt: bytes, bounded, NUL-terminated (it may not hold a NUL itself). */
static int read_prompt(trace *tr, kv_err *err)
{
    int64_t want = -1, n;
    hid_t d;
    int rc = ds_open(tr, TRACE_DS_PROMPT, 1, &want, &n, H5P_DEFAULT, &d, err);
    if (rc < 0)
        return rc;
    if (n > TRACE_MAX_PROMPT)
        rc = kv_errorf(err, KV_EFORMAT, "%s: /%s holds %lld bytes, more than %lld", tr->path,
                       TRACE_DS_PROMPT, (long long)n, (long long)TRACE_MAX_PROMPT);
    else if (!(tr->prompt = calloc((size_t)n + 1, 1)))
        rc = kv_errorf(err, KV_ENOMEM, "%s: no memory for the prompt", tr->path);
    else
        rc = read_all(tr, d, TRACE_DS_PROMPT, H5T_NATIVE_UCHAR, n, tr->prompt, err);
    H5Dclose(d);
    tr->meta.header.prompt = tr->prompt;
    return rc;
}

static int read_scalar(trace *tr, const char *name, hid_t mem, void *out, kv_err *err)
{
    if (H5Lexists(tr->file, "status", H5P_DEFAULT) <= 0 ||
        H5Lexists(tr->file, name, H5P_DEFAULT) <= 0)
        return missing(tr, name, err);
    hid_t d = H5Dopen2(tr->file, name, H5P_DEFAULT);
    hid_t s = d < 0 ? -1 : H5Dget_space(d);
    int ok = s >= 0 && H5Sget_simple_extent_npoints(s) == 1 &&
             H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0;
    close_id(s, H5Sclose);
    close_id(d, H5Dclose);
    return ok ? KV_OK : missing(tr, name, err);
}

static int read_status(trace *tr, kv_err *err)
{
    int8_t complete;
    int64_t steps;
    int rc;
    if ((rc = read_scalar(tr, TRACE_DS_COMPLETE, H5T_NATIVE_INT8, &complete, err)) < 0 ||
        (rc = read_scalar(tr, TRACE_DS_STEPS, H5T_NATIVE_INT64, &steps, err)) < 0)
        return rc;
    if (complete != 0 && complete != 1)
        return kv_errorf(err, KV_EFORMAT, "%s: /%s = %d, expected 0 or 1", tr->path,
                         TRACE_DS_COMPLETE, complete);
    if (steps < 0 || steps > TRACE_MAX_STEPS)
        return kv_errorf(err, KV_EFORMAT, "%s: /%s = %lld, expected 0..%d", tr->path,
                         TRACE_DS_STEPS, (long long)steps, TRACE_MAX_STEPS);
    tr->meta.complete = complete;
    tr->meta.steps = steps;
    return KV_OK;
}

/* No chunk cache for the probabilities: replay reads each chunk exactly once (a row
 * block of 64 rows covers whole chunks), so caching only costs HDF5's list walks. */
static hid_t probs_dapl(const trace *tr, int64_t T)
{
    (void)tr, (void)T;
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, 0, 0, 1.0);
    return dapl;
}

static int check_float(trace *tr, hid_t d, const char *name, trace_dtype dtype, kv_err *err)
{
    hid_t t = H5Dget_type(d);
    size_t want = trace_dtype_size(dtype);
    int ok = t >= 0 && H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == want;
    close_id(t, H5Tclose);
    if (ok)
        return KV_OK;
    return kv_errorf(err, KV_EFORMAT, "%s: dataset /%s is not %zu-byte floats as the dtype "
                     "attributes say (%s)", tr->path, name, want, trace_dtype_name(dtype));
}

static int extent_ok(trace *tr, const char *name, int64_t E, kv_err *err)
{
    if (E >= tr->meta.steps)
        return KV_OK;
    return kv_errorf(err, KV_EFORMAT, "%s: dataset /%s holds %lld steps, but /%s says %lld "
                     "are on disk", tr->path, name, (long long)E, TRACE_DS_STEPS,
                     (long long)tr->meta.steps);
}

/* One 4-D dataset: [layers, heads, T, last] (last < 0: another T axis). */
static int open_tensor(trace *tr, hid_t *out, const char *name, int layers, int heads,
                       int64_t last, trace_dtype dtype, kv_err *err)
{
    int64_t want[4] = {layers, heads, -1, last}, E;
    hid_t dapl = last < 0 ? probs_dapl(tr, tr->meta.steps) : H5P_DEFAULT;
    int rc = ds_open(tr, name, 4, want, &E, dapl, out, err);
    if (dapl != H5P_DEFAULT)
        H5Pclose(dapl);
    if (rc == KV_OK)
        rc = check_float(tr, *out, name, dtype, err);
    if (rc == KV_OK)
        rc = extent_ok(tr, name, E, err);
    if (rc == KV_OK && last < 0)
        tr->meta.extent = E;
    return rc;
}

static int open_tensors(trace *tr, kv_err *err)
{
    const trace_header *h = &tr->meta.header;
    trace_options *o = &tr->meta.options;
    const int L = h->n_layers_rec, H = h->n_heads_rec, K = tr->meta.n_kv_heads_rec;
    const int D = h->head_dim;
    int rc;
    if ((o->rows != TRACE_ROWS_NONE &&
         (rc = open_tensor(tr, &tr->probs, TRACE_DS_PROBS, o->n_row_layers, o->n_row_heads, -1,
                           o->dtype, err)) < 0) ||
        (rc = open_tensor(tr, &tr->keys, TRACE_DS_KEYS, L, K, D, o->qk_dtype, err)) < 0 ||
        (rc = open_tensor(tr, &tr->values, TRACE_DS_VALUES, L, K, D, o->dtype, err)) < 0)
        return rc;
    if (tr->probs)
        tr->probs_layout = trace__chunk_layout_of(tr->probs, trace_dtype_size(o->dtype));
    o->record_queries = H5Lexists(tr->file, TRACE_DS_QUERIES, H5P_DEFAULT) > 0;
    if (!o->record_queries && o->rows != TRACE_ROWS_ALL)
        return kv_errorf(err, KV_EFORMAT, "%s: /%s is missing: the rows this trace does not "
                         "store cannot be rebuilt", tr->path, TRACE_DS_QUERIES);
    if (o->record_queries &&
        (rc = open_tensor(tr, &tr->queries, TRACE_DS_QUERIES, L, H, D, o->qk_dtype, err)) < 0)
        return rc;
    return KV_OK;
}

/* Read the first `steps` entries of a 1-D token dataset into a new array. */
static int read_token_array(trace *tr, const char *name, hid_t mem, size_t esize, void **out,
                            kv_err *err)
{
    const int64_t T = tr->meta.steps, want = -1;
    int64_t E;
    hid_t d;
    int rc = ds_open(tr, name, 1, &want, &E, H5P_DEFAULT, &d, err);
    if (rc < 0)
        return rc;
    rc = extent_ok(tr, name, E, err);
    *out = rc == KV_OK ? calloc((size_t)T + 1, esize) : NULL;
    if (rc == KV_OK && !*out)
        rc = kv_errorf(err, KV_ENOMEM, "%s: no memory for /%s", tr->path, name);
    if (rc == KV_OK)
        rc = read_all(tr, d, name, mem, T, *out, err);
    H5Dclose(d);
    return rc;
}

/* Token t's text is text_bytes[text_end[t-1] .. text_end[t]): check the ends, then
 * read the bytes and give each piece its own NUL. */
static int read_texts(trace *tr, kv_err *err)
{
    const int64_t T = tr->meta.steps, want = -1;
    int64_t total = T > 0 ? tr->text_end[T - 1] : 0, E;
    for (int64_t t = 0; t < T; t++)
        if (tr->text_end[t] < (t ? tr->text_end[t - 1] : 0) ||
            tr->text_end[t] > TRACE_MAX_TEXT_BYTES)
            return kv_errorf(err, KV_EFORMAT, "%s: /%s[%lld] = %lld: the ends must increase "
                             "from 0", tr->path, TRACE_DS_TEXT_END, (long long)t,
                             (long long)tr->text_end[t]);
    hid_t d;
    int rc = ds_open(tr, TRACE_DS_TEXT_BYTES, 1, &want, &E, H5P_DEFAULT, &d, err);
    if (rc < 0)
        return rc;
    unsigned char *bytes = malloc((size_t)total + 1);
    tr->text_bytes = malloc((size_t)(total + T) + 1);
    tr->text = calloc((size_t)T + 1, sizeof *tr->text);
    if (E < total)
        rc = kv_errorf(err, KV_EFORMAT, "%s: /%s holds %lld bytes, the token ends need %lld",
                       tr->path, TRACE_DS_TEXT_BYTES, (long long)E, (long long)total);
    else if (!bytes || !tr->text_bytes || !tr->text)
        rc = kv_errorf(err, KV_ENOMEM, "%s: no memory for token texts", tr->path);
    if (rc == KV_OK)
        rc = read_all(tr, d, TRACE_DS_TEXT_BYTES, H5T_NATIVE_UCHAR, total, bytes, err);
    for (int64_t t = 0, at = 0, from = 0; rc == KV_OK && t < T; t++) {
        const int64_t len = tr->text_end[t] - from;
        tr->text[t] = tr->text_bytes + at;
        memcpy(tr->text[t], bytes + from, (size_t)len);
        tr->text[t][len] = '\0';
        at += len + 1;
        from = tr->text_end[t];
    }
    free(bytes);
    H5Dclose(d);
    return rc;
}

static int read_tokens(trace *tr, kv_err *err)
{
    const struct { const char *name; hid_t mem; size_t size; void **out; } arrays[] = {
        {TRACE_DS_ID, H5T_NATIVE_INT32, 4, (void **)&tr->id},
        {TRACE_DS_FLAGS, H5T_NATIVE_UINT8, 1, (void **)&tr->flags},
        {TRACE_DS_PHASE, H5T_NATIVE_UINT8, 1, (void **)&tr->phase},
        {TRACE_DS_POSITION, H5T_NATIVE_INT32, 4, (void **)&tr->position},
        {TRACE_DS_LOGPROB, H5T_NATIVE_FLOAT, 4, (void **)&tr->logprob},
        {TRACE_DS_ENTROPY, H5T_NATIVE_FLOAT, 4, (void **)&tr->entropy},
        {TRACE_DS_TEXT_END, H5T_NATIVE_INT64, 8, (void **)&tr->text_end},
    };
    int rc = KV_OK;
    for (size_t i = 0; rc == KV_OK && i < sizeof arrays / sizeof arrays[0]; i++)
        rc = read_token_array(tr, arrays[i].name, arrays[i].mem, arrays[i].size, arrays[i].out,
                              err);
    if (rc == KV_OK)
        rc = read_texts(tr, err);
    while (rc == KV_OK && tr->meta.prompt_len < tr->meta.steps &&
           tr->phase[tr->meta.prompt_len] == TRACE_PHASE_PROMPT)
        tr->meta.prompt_len++;
    tr->tokens = (trace_tokens){tr->id, (const char *const *)tr->text, tr->flags, tr->phase,
                                tr->position, tr->logprob, tr->entropy};
    return rc;
}

/* ---------------------------------------------------------------- open ----------- */

#ifndef TRACE_READ_ATTEMPTS
#define TRACE_READ_ATTEMPTS 20
#endif

/* Open read-only as an SWMR reader, which also opens a trace that is being written or
 * whose writer was killed (trace_file.h invariant 5); a file of an older HDF5 format
 * cannot be opened that way and is opened plainly.  No HDF5 file lock: the writer's
 * lock is its own (trace_write.c). */
static hid_t h5_open(const char *path)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    /* An SWMR reader re-reads a block whose checksum fails (the writer may be flushing
     * it), sleeping 1, 2, 4, ... ns in between: HDF5's default of 100 attempts sleeps
     * 2^100 ns on a damaged block, a hang.  20 attempts wait 1 ms in all per block,
     * ample for a writer's flush; then the block is reported as damaged. */
    H5Pset_metadata_read_attempts(fapl, TRACE_READ_ATTEMPTS);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl);
    if (f < 0)
        f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    hid_t saved = trace__h5_save_errors();
    H5Pclose(fapl);
    trace__h5_restore_errors(saved);
    return f;
}

/* Tell apart a missing file, a non-HDF5 file and a damaged HDF5 file. */
static int open_file(trace *tr, kv_err *err)
{
    struct stat st;
    if (stat(tr->path, &st) != 0)
        return kv_errorf(err, KV_EIO, "%s: %s", tr->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return kv_errorf(err, KV_EFORMAT, "%s: not a regular file, so not a trace", tr->path);
    htri_t is = H5Fis_hdf5(tr->path);
    H5Eclear2(H5E_DEFAULT);
    if (is == 0)
        return kv_errorf(err, KV_EFORMAT, "%s: not an HDF5 file (no HDF5 signature), so not "
                         "a kvtrace trace", tr->path);
    tr->file = h5_open(tr->path);
    if (tr->file < 0) {
        tr->file = 0;
        char why[KV_ERR_MSG_MAX];
        trace__h5_reason(why, sizeof why);
        if (strstr(why, "already open for write"))
            return kv_errorf(err, KV_EIO, "%s: another program has this file open for writing "
                             "(HDF5 marks it so until that writer closes it); wait for it, or, "
                             "if no writer is running any more, clear the mark with "
                             "`h5clear -s %s`", tr->path, tr->path);
        return trace__h5_fail(err, KV_EFORMAT, "%s: damaged or truncated HDF5 file",
                              tr->path);
    }
    return KV_OK;
}

trace *trace_open(const char *path, kv_err *err)
{
    trace__h5_quiet();
    trace *tr = calloc(1, sizeof *tr);
    if (!tr || !(tr->path = strdup(path))) {
        free(tr);
        kv_errorf(err, KV_ENOMEM, "%s: no memory to open the trace", path);
        return NULL;
    }
    int rc;
    if ((rc = open_file(tr, err)) < 0 || (rc = read_identity(tr, err)) < 0 ||
        (rc = read_model(tr, err)) < 0 || (rc = read_run(tr, err)) < 0 ||
        (rc = read_storage_choice(tr, err)) < 0 || (rc = read_prompt(tr, err)) < 0 ||
        (rc = read_selection(tr, err)) < 0 || (rc = read_status(tr, err)) < 0 ||
        (rc = open_tensors(tr, err)) < 0 || (rc = read_tokens(tr, err)) < 0 ||
        (tr->f16 = trace__f16_type()) < 0) {
        if (rc == KV_OK)
            trace__h5_fail(err, KV_EIO, "%s: cannot build the float16 type", path);
        trace_close(tr);
        return NULL;
    }
    return tr;
}

/* ---------------------------------------------------------------- queries -------- */

const trace_meta *trace_get_meta(const trace *tr) { return &tr->meta; }
const trace_tokens *trace_get_tokens(const trace *tr) { return &tr->tokens; }
const char *trace_path(const trace *tr) { return tr->path; }

static int find(const int *v, int n, int x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x)
            return i;
    return -1;
}

int trace_layer_index(const trace *tr, int layer)
{
    return find(tr->layers, tr->meta.header.n_layers_rec, layer);
}

int trace_head_index(const trace *tr, int head)
{
    return find(tr->heads, tr->meta.header.n_heads_rec, head);
}

int trace_kv_index(const trace *tr, int kv_head)
{
    return find(tr->kv_heads, tr->meta.n_kv_heads_rec, kv_head);
}

int trace_kv_index_of_head(const trace *tr, int hi)
{
    if (hi < 0 || hi >= tr->meta.header.n_heads_rec)
        return -1;
    return trace_kv_index(tr, trace_kv_head_of(&tr->meta.header, tr->heads[hi]));
}

/* ---------------------------------------------------------------- row blocks ----- */

static int check_block(const trace *tr, const char *what, int li, int hi, int n_heads,
                       int64_t t0, int n, kv_err *err)
{
    const trace_meta *m = &tr->meta;
    if (li < 0 || li >= m->header.n_layers_rec)
        return kv_errorf(err, KV_ERANGE, "%s: %s: layer index %d out of range (the trace "
                         "records %d layers)", tr->path, what, li, m->header.n_layers_rec);
    if (hi < 0 || hi >= n_heads)
        return kv_errorf(err, KV_ERANGE, "%s: %s: head index %d out of range (the trace "
                         "records %d)", tr->path, what, hi, n_heads);
    if (t0 < 0 || n < 1 || t0 + n > m->steps)
        return kv_errorf(err, KV_ERANGE, "%s: %s: steps %lld..%lld out of range (the trace "
                         "holds %lld)", tr->path, what, (long long)t0, (long long)t0 + n - 1,
                         (long long)m->steps);
    return KV_OK;
}

/* Room for `bytes` in the scratch buffer. */
static int scratch_reserve(trace *tr, size_t bytes, kv_err *err)
{
    if (bytes <= tr->scratch_cap)
        return KV_OK;
    free(tr->scratch);
    tr->scratch = malloc(bytes);
    tr->scratch_cap = tr->scratch ? bytes : 0;
    return tr->scratch ? KV_OK : kv_errorf(err, KV_ENOMEM, "%s: no memory for a row block",
                                           tr->path);
}

/* Read the hyperslab [start, start+count) of d (`name`) as float32 into `out`, a buffer
 * of count[2] rows of `width` floats; columns count[3]..width-1 are zeroed.  f16 is
 * read as stored and converted here (HDF5 1.10 converts ~14x slower). */
static int slab_read(trace *tr, hid_t d, const char *name, trace_dtype dtype,
                     const hsize_t *start, const hsize_t *count, float *out, size_t width,
                     kv_err *err)
{
    const size_t rows = count[2], cols = count[3];
    const int f16 = dtype == TRACE_F16;
    if (!f16 && width == cols)   /* already the layout wanted */
        return read_box(tr, d, name, H5T_NATIVE_FLOAT, 4, start, count, out, err);
    int rc = scratch_reserve(tr, rows * cols * (f16 ? 2 : 4), err);
    if (rc == KV_OK)
        rc = read_box(tr, d, name, f16 ? tr->f16 : H5T_NATIVE_FLOAT, 4, start, count,
                      tr->scratch, err);
    for (size_t i = rc == KV_OK ? 0 : rows; i < rows; i++) {
        if (f16)
            fp16_to_f32_n((const uint16_t *)tr->scratch + i * cols, out + i * width, cols);
        else
            memcpy(out + i * width, (const float *)tr->scratch + i * cols,
                   cols * sizeof *out);
        memset(out + i * width + cols, 0, (width - cols) * sizeof *out);
    }
    return rc;
}

/* HDF5's own path: a hyperslab read of the stored pair (si, sj), converted by us. */
static int read_rows_hdf5(trace *tr, int si, int sj, int64_t t0, int n, float *out,
                          size_t width, kv_err *err)
{
    /* Rows t0..t0+n-1 have at most t0+n keys: the chunks right of that were never
     * written, and reading them would only make HDF5 fill zeros we set ourselves. */
    size_t cols = (size_t)(t0 + n);
    hsize_t start[4] = {(hsize_t)si, (hsize_t)sj, (hsize_t)t0, 0};
    hsize_t count[4] = {1, 1, (hsize_t)n, cols};
    return slab_read(tr, tr->probs, TRACE_DS_PROBS, tr->meta.options.dtype, start, count,
                     out, width, err);
}

/* Rows starting on a chunk row of a layout we decode: the direct path. */
static int chunk_aligned(const trace *tr, int64_t t0)
{
    return tr->probs_layout.direct && t0 % TRACE_BATCH == 0;
}

int trace_rows_stored(const trace *tr, int li, int hi)
{
    const trace_header *h = &tr->meta.header;
    return li >= 0 && li < h->n_layers_rec && hi >= 0 && hi < h->n_heads_rec &&
           tr->stored_li[li] >= 0 && tr->stored_hi[hi] >= 0;
}

/* The range checks, then where (li, hi)'s rows are stored: (*si, *sj). */
static int check_rows(const trace *tr, int li, int hi, int64_t t0, int n, int *si, int *sj,
                      kv_err *err)
{
    int rc = check_block(tr, "reading rows", li, hi, tr->meta.header.n_heads_rec, t0, n, err);
    if (rc < 0)
        return rc;
    if (!trace_rows_stored(tr, li, hi))
        return kv_errorf(err, KV_ENOTFOUND, "%s: the rows of layer %d head %d are not stored "
                         "(/%s): they are rebuilt from /%s and /%s by the row source",
                         tr->path, tr->meta.header.layers[li], tr->meta.header.heads[hi],
                         TRACE_DS_PROBS, TRACE_DS_QUERIES, TRACE_DS_KEYS);
    *si = tr->stored_li[li];
    *sj = tr->stored_hi[hi];
    return KV_OK;
}

int trace_fetch_rows(trace *tr, int li, int hi, int64_t t0, int n, trace_chunk_buf *b,
                     kv_err *err)
{
    int si, sj, rc = check_rows(tr, li, hi, t0, n, &si, &sj, err);
    if (rc < 0)
        return rc;
    const size_t cols = (size_t)(t0 + n);
    if (chunk_aligned(tr, t0) && n <= TRACE_BATCH)
        return trace__chunks_fetch(b, tr->probs, &tr->probs_layout, tr->path, si, sj, t0, n,
                                   cols, NULL, err);
    float *rows = trace__chunks_fallback(b, tr->path, n, cols, err);
    return rows ? read_rows_hdf5(tr, si, sj, t0, n, rows, cols, err) : KV_ENOMEM;
}

int trace_read_rows(trace *tr, int li, int hi, int64_t t0, int n, float *out, size_t width,
                    kv_err *err)
{
    int si, sj, rc = check_rows(tr, li, hi, t0, n, &si, &sj, err);
    if (rc < 0)
        return rc;
    if (width < (size_t)(t0 + n))
        return kv_errorf(err, KV_ERANGE, "%s: reading rows %lld..%lld: width %zu is less "
                         "than the %lld keys of the last row", tr->path, (long long)t0,
                         (long long)t0 + n - 1, width, (long long)t0 + n);
    if (!chunk_aligned(tr, t0))
        return read_rows_hdf5(tr, si, sj, t0, n, out, width, err);
    if (!tr->own && !(tr->own = trace_chunk_buf_new()))
        return kv_errorf(err, KV_ENOMEM, "%s: no memory for a chunk buffer", tr->path);
    for (int r = 0; rc == KV_OK && r < n; r += TRACE_BATCH) {   /* one chunk row at a time */
        rc = trace_fetch_rows(tr, li, hi, t0 + r, n - r < TRACE_BATCH ? n - r : TRACE_BATCH,
                              tr->own, err);
        if (rc == KV_OK)
            rc = trace_decode_rows(tr->own, out + (size_t)r * width, width, err);
    }
    return rc;
}

double trace_row_sum_tolerance(trace_dtype dtype, int64_t t)
{
    double tol = (double)(t + 2) * 0x1p-24;
    if (dtype == TRACE_F16)
        tol += 0x1p-11 + (double)(t + 1) * 0x1p-25;
    return tol;
}

/* Entry j of a row: of f32 when not NULL, else of the in-place f16 chunks `col`, the
 * row starting `roff` entries into each (trace_fetch_f16's layout). */
typedef struct row_ref {
    const float                *f32;
    const unsigned char *const *col;
    size_t                      roff;
} row_ref;

static inline const unsigned char *f16_at(const row_ref *r, int64_t j)
{
    return r->col[j / TRACE_CHUNK_COLS] + 2 * (r->roff + j % TRACE_CHUNK_COLS);
}

/* One row's sum, and whether every entry is a probability (NaN fails the compare).
 * Many lanes at once in independent accumulators (one serial chain of double adds was
 * 27% of a replay's time, one chain per lane still a tenth): the order moves the sum of
 * a float row by about 1e-13, far inside any tolerance, and only this check reads it;
 * an f16 row's sum is exact in any order (metrics_gather_f16).  f16 rows are summed in
 * the same order as their floats would be (a chunk holds whole groups of 32), so both
 * layouts give the same sums and messages.  Accumulators are named variables: an
 * array of them was kept in memory. */
#if defined(__AVX512F__)
static inline __m512 row_load16(const row_ref *row, int64_t j)
{
    return row->f32 ? _mm512_loadu_ps(row->f32 + j)
                    : _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)f16_at(row, j)));
}

/* not (0 <= x <= limit), NaN included: the ordered compares fail for it */
static inline __mmask16 row_outside16(__m512 x, __m512 top)
{
    return (__mmask16)~(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ) &
                        _mm512_cmp_ps_mask(x, top, _CMP_LE_OQ));
}

static double row_sum_wide(const row_ref *row, int64_t len, float limit, int *bad,
                           int64_t *done)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    const __m512 top = _mm512_set1_ps(limit);
    __mmask16 outside = 0;
    int64_t j = 0;
    for (; j + 32 <= len; j += 32) {
        const __m512 x = row_load16(row, j), y = row_load16(row, j + 16);
        outside |= row_outside16(x, top) | row_outside16(y, top);
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))));
        a2 = _mm512_add_pd(a2, _mm512_cvtps_pd(_mm512_castps512_ps256(y)));
        a3 = _mm512_add_pd(a3, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(y), 1))));
    }
    *bad = outside != 0;
    *done = j;
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
}
#elif defined(__AVX__) && defined(__F16C__)
static inline __m256 row_load8(const row_ref *row, int64_t j)
{
    return row->f32 ? _mm256_loadu_ps(row->f32 + j)
                    : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)f16_at(row, j)));
}

static inline __m256 row_inside8(__m256 x, __m256 top)
{
    return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ),
                         _mm256_cmp_ps(x, top, _CMP_LE_OQ));
}

static double row_sum_wide(const row_ref *row, int64_t len, float limit, int *bad,
                           int64_t *done)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    __m256 inside = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    const __m256 top = _mm256_set1_ps(limit);
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
        const __m256 x = row_load8(row, j), y = row_load8(row, j + 8);
        inside = _mm256_and_ps(inside, _mm256_and_ps(row_inside8(x, top), row_inside8(y, top)));
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
        a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm256_castps256_ps128(y)));
        a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    *bad = _mm256_movemask_ps(inside) != 0xFF;
    *done = j;
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}
#else
static double row_sum_wide(const row_ref *row, int64_t len, float limit, int *bad,
                           int64_t *done)
{
    (void)row, (void)len, (void)limit;
    *bad = 0;
    *done = 0;
    return 0;
}
#endif

static double row_sum(const row_ref *row, int64_t len, float limit, int *bad)
{
    int64_t j;
    double sum = row_sum_wide(row, len, limit, bad, &j);
    int outside = 0;
    for (; j < len; j++) {
        const float x = row->f32 ? row->f32[j] : fp16_to_f32(fp16_load(f16_at(row, j)));
        outside |= !(x >= 0 && x <= limit);
        sum += x;
    }
    *bad |= outside;
    return sum;
}

/* Rows t0..t0+n-1 of (li, hi), of floats `rows` or f16 chunks `col`, checked. */
static int check_block_rows(const trace *tr, int li, int hi, int64_t t0, int n,
                            const float *rows, size_t width, const unsigned char *const *col,
                            kv_err *err)
{
    const trace_dtype dtype = trace_rows_stored(tr, li, hi) ? tr->meta.options.dtype
                                                            : TRACE_F32;
    for (int i = 0; i < n; i++) {
        const int64_t t = t0 + i;
        const double tol = trace_row_sum_tolerance(dtype, t);
        const row_ref row = {rows ? rows + (size_t)i * width : NULL, col,
                             (size_t)i * TRACE_CHUNK_COLS};
        int bad;
        const double sum = row_sum(&row, t + 1, (float)(1 + tol), &bad);
        if (bad || !(fabs(sum - 1) <= tol))
            return kv_errorf(err, KV_EFORMAT, "%s: layer %d head %d step %lld: %s (sum %.7g): "
                             "the trace is damaged (kvtrace verify lists every bad row)",
                             tr->path, tr->meta.header.layers[li], tr->meta.header.heads[hi],
                             (long long)t, bad ? "an entry that is not a probability"
                                               : "the row does not sum to 1", sum);
    }
    return KV_OK;
}

int trace_check_rows(const trace *tr, int li, int hi, int64_t t0, int n, const float *rows,
                     size_t width, kv_err *err)
{
    return check_block_rows(tr, li, hi, t0, n, rows, width, NULL, err);
}

int trace_check_f16(const trace *tr, int li, int hi, int64_t t0, int n,
                       const unsigned char *const *col, kv_err *err)
{
    return check_block_rows(tr, li, hi, t0, n, NULL, 0, col, err);
}

int trace_fetch_f16(trace *tr, int li, int hi, int64_t t0, int n, trace_chunk_buf *b,
                    unsigned char *dst, size_t cap, kv_err *err)
{
    int si, sj, rc = check_rows(tr, li, hi, t0, n, &si, &sj, err);
    if (rc < 0)
        return rc;
    const size_t cols = (size_t)(t0 + n);
    const size_t need = (cols + TRACE_CHUNK_COLS - 1) / TRACE_CHUNK_COLS * TRACE_F16_CHUNK_BYTES;
    if (!chunk_aligned(tr, t0) || n > TRACE_BATCH || tr->probs_layout.esize != 2 || cap < need)
        return 0;
    rc = trace__chunks_fetch(b, tr->probs, &tr->probs_layout, tr->path, si, sj, t0, n, cols,
                             dst, err);
    return rc < 0 ? rc : 1;
}

int trace_rows(trace *tr, int li, int hi, int64_t t0, int n, float *out, size_t width,
               kv_err *err)
{
    if (trace_rows_stored(tr, li, hi))
        return trace_read_rows(tr, li, hi, t0, n, out, width, err);
    if (!tr->rebuild && !(tr->rebuild = trace_rebuild_buf_new()))
        return kv_errorf(err, KV_ENOMEM, "%s: no memory for a rebuild buffer", tr->path);
    int rc = trace_fetch_inputs(tr, li, hi, t0, n, tr->rebuild, err);
    return rc < 0 ? rc : trace_rebuild_rows(tr->rebuild, out, width, err);
}

static int read_vectors(trace *tr, hid_t d, const char *name, trace_dtype dtype, int li,
                        int k, int64_t t0, int n, float *out, kv_err *err)
{
    const size_t D = (size_t)tr->meta.header.head_dim;
    hsize_t start[4] = {(hsize_t)li, (hsize_t)k, (hsize_t)t0, 0};
    hsize_t count[4] = {1, 1, (hsize_t)n, D};
    return out ? slab_read(tr, d, name, dtype, start, count, out, D, err) : KV_OK;
}

int trace_read_kv(trace *tr, int li, int ki, int64_t t0, int n, float *keys, float *values,
                  kv_err *err)
{
    const trace_options *o = &tr->meta.options;
    int rc = check_block(tr, "reading keys/values", li, ki, tr->meta.n_kv_heads_rec, t0, n,
                         err);
    if (rc == KV_OK)
        rc = read_vectors(tr, tr->keys, TRACE_DS_KEYS, o->qk_dtype, li, ki, t0, n, keys, err);
    if (rc == KV_OK)
        rc = read_vectors(tr, tr->values, TRACE_DS_VALUES, o->dtype, li, ki, t0, n, values, err);
    return rc;
}

int trace_read_queries(trace *tr, int li, int hi, int64_t t0, int n, float *out, kv_err *err)
{
    if (!tr->queries)
        return kv_errorf(err, KV_ENOTFOUND, "%s: the trace has no queries (its rows are all "
                         "stored and it was recorded without --record-queries)", tr->path);
    int rc = check_block(tr, "reading queries", li, hi, tr->meta.header.n_heads_rec, t0, n,
                         err);
    return rc < 0 ? rc : read_vectors(tr, tr->queries, TRACE_DS_QUERIES,
                                      tr->meta.options.qk_dtype, li, hi, t0, n, out, err);
}

/* ---------------------------------------------------------------- sizes ---------- */

int trace_get_storage(const trace *tr, trace_storage *out, kv_err *err)
{
    const trace_meta *m = &tr->meta;
    const trace_options *o = &m->options;
    const uint64_t T = (uint64_t)m->steps, e = trace_dtype_size(o->dtype);
    const uint64_t qe = trace_dtype_size(o->qk_dtype);
    const uint64_t L = (uint64_t)m->header.n_layers_rec, H = (uint64_t)m->header.n_heads_rec;
    const uint64_t K = (uint64_t)m->n_kv_heads_rec, D = (uint64_t)m->header.head_dim;
    const uint64_t stored_pairs = tr->probs ? (uint64_t)o->n_row_layers * o->n_row_heads : 0;
    hsize_t size = 0;
    memset(out, 0, sizeof *out);
    if (H5Fget_filesize(tr->file, &size) < 0)
        return trace__h5_fail(err, KV_EIO, "%s: cannot get the file size", tr->path);
    out->file_bytes = size;
    out->probs_stored = tr->probs ? H5Dget_storage_size(tr->probs) : 0;
    out->kv_stored = H5Dget_storage_size(tr->keys) + H5Dget_storage_size(tr->values) +
                     (tr->queries ? H5Dget_storage_size(tr->queries) : 0);
    out->row_elements = L * H * T * (T + 1) / 2;
    out->probs_elements = stored_pairs * T * (T + 1) / 2;
    out->probs_raw = out->probs_elements * e;
    out->kv_raw = (K * (qe + e) + (tr->queries ? H * qe : 0)) * L * T * D;
    return KV_OK;
}
