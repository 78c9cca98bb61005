/*
 * model_impl.h — the inside of a model, shared by model.c (loading), forward.c (the
 * forward pass) and model_kernels.c (weight blocks and the loops that read them).
 * Not for other modules: they use model.h.
 */
#ifndef MODEL_IMPL_H
#define MODEL_IMPL_H

#include "model.h"

#define QBLOCK         32      /* weights per block */
#define MODEL_MAX_COLS 65536   /* widest weight row accepted (n_embd, n_ff) */

/* 32 weights w[i] = d · q[i] + m.  Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 blocks convert to
 * this exactly (their d and m are fp16, their q at most 8 bits). */
typedef struct qblock {
    float  d;              /* scale */
    float  m;              /* offset: 0 for the symmetric types */
    int8_t q[QBLOCK];
} qblock;

/* A weight matrix W (rows, cols), row-major, cols a multiple of QBLOCK: y = W·x.
 * Held in one of three forms (model_kernels.c says why):
 *  - raw: the GGUF's own blocks, byte for byte (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,
 *    Q5_K: the types whose blocks convert exactly to qblocks), read directly by the
 *    kernels: 0.625 bytes a weight for Q4_1.  With AVX-512, Q4_0, Q4_1 and Q8_0 rows
 *    are interleaved in groups of 16 (`grouped`: the same bytes, reordered so that one
 *    vector holds a field of 16 rows; model_kernels.c, "groups of rows");
 *  - blocks: 8-bit blocks, for the types that have no exact 8-bit form and are
 *    requantised (IQ4_NL ...);
 *  - f: float32 rows for Q6_K, Q3_K and Q2_K, whose 16-weight sub-blocks have scales of
 *    their own that one 8-bit block of 32 cannot hold exactly (model__keeps_float):
 *    exact, at 4 bytes a weight. */
typedef struct qmatrix {
    const uint8_t *raw;    /* (rows, row_bytes) GGUF blocks of `type`, or NULL */
    qblock *blocks;        /* (rows, cols / QBLOCK), or NULL */
    float  *f;             /* (rows, cols) when the type is kept as floats, else NULL */
    size_t  row_bytes;     /* bytes of one row of raw */
    int     type;          /* the GGUF's ggml type */
    int     rows, cols;
    int     shared;        /* another qmatrix owns the storage (the tied output) */
    int     grouped;       /* raw's first rows/16·16 rows are in groups of 16 rows */
} qmatrix;

/* One block's weights; a pointer is NULL (a matrix has rows 0) where the architecture
 * has no such tensor (model.h lists which has which). */
typedef struct model_layer {
    float  *attn_norm;     /* (d,) */
    float  *attn_norm_b;   /* (d,) LayerNorm bias */
    qmatrix wq;            /* (n_head · hd, d) */
    qmatrix wk, wv;        /* (n_head_kv · hd, d) */
    qmatrix wo;            /* (d, n_head · hd) */
    float  *bq, *bk, *bv;  /* (n_head · hd,), (n_head_kv · hd,) ×2 */
    int     fused_bias;    /* bk and bv point into bq's allocation (gptneox) */
    float  *bo;            /* (d,) */
    float  *q_norm, *k_norm;        /* (hd,) QK-norm */
    float  *post_attn_norm;         /* (d,) */
    float  *ffn_norm;      /* (d,) */
    float  *ffn_norm_b;    /* (d,) */
    qmatrix w_gate, w_up;  /* (n_ff, d); no gate in a plain GELU MLP */
    qmatrix w_down;        /* (d, n_ff) */
    float  *b_up;          /* (n_ff,) */
    float  *b_down;        /* (d,) */
    float  *post_ffn_norm; /* (d,) */
} model_layer;

/* Activations of one forward call of up to `cap_tokens` tokens (llama2.c's RunState). */
typedef struct model_scratch {
    int    cap_tokens;     /* tokens the buffers below hold */
    float *x;              /* (n, d) residual stream */
    float *xb;             /* (n, d) normalised input / block output */
    float *xb2;            /* (n, d) the feed-forward's input beside the attention's
                              output (parallel residual) */
    float *q;              /* (n, n_head · hd) post-RoPE queries */
    float *k, *v;          /* (n, n_head_kv · hd) new keys (post-RoPE) and values */
    float *att;            /* (n, n_head · hd) attention output, heads side by side */
    float *hb, *hb2;       /* (n, n_ff) gate and up projections */
    float *rope_cos;       /* (n, n_rot / 2) */
    float *rope_sin;       /* (n, n_rot / 2) */
    int   *pos;            /* (n,) the call's tokens' indices in the sequence (hooks) */
    int32_t *rope_pos;     /* (n,) their RoPE positions in the stream at hand */
    int    rope_pos0;      /* rope_cos/sin hold positions rope_pos0 + 0..n-1 */
    const model_geometry *rope_geom;   /* ... with the frequencies of this geometry */
    size_t cap_scores;     /* floats in `scores` */
    float *scores;         /* (threads, ATT_ROWS, keys) attention blocks */
    float *xpack;          /* (gemm_pack_floats(n, widest cols),) packed GEMM input */
    size_t cap_panels;     /* floats in `panels` */
    float *panels;         /* (threads, gemm_panel_floats(widest cols)) weight panels */
    size_t cap_kt, ld_kt;  /* floats in `kt`; slots per row of it */
    float *kt;             /* (n_head_kv, head_dim, ld_kt) one layer's keys transposed */
    size_t bytes;          /* everything above */
} model_scratch;

typedef struct model_device model_device;   /* model_device.c */

struct model {
    model_config  cfg;
    qmatrix       tok_embd;     /* (n_vocab, d) */
    qmatrix       output;       /* (n_vocab, d); shares tok_embd's blocks when tied */
    float        *output_norm;  /* (d,) */
    float        *output_norm_b;/* (d,) LayerNorm bias, or NULL */
    float        *rope_factors; /* (n_rot / 2,) rope_freqs.weight, or NULL */
    model_layer  *layers;       /* (n_layer,) */
    model_geometry *geom;       /* (n_layer,) */
    size_t        weight_bytes; /* blocks and norms held */
    model_scratch s;
    model_device *dev;          /* the CUDA forward, or NULL: the CPU's */
};

/* ---- forward.c ------------------------------------------------------------------- */

void model__scratch_free(model_scratch *s);   /* releases the buffers, leaves s empty */

/* ---- model_device.c -------------------------------------------------------------- */

/* model_forward() on the device (m->dev set), after its checks of the call. */
int  model__forward_device(model *m, kv_cache *cache, const int32_t *tokens, int n,
                           model_logits which, float *logits, const model_hooks *hooks,
                           kv_err *err);
void model__device_free(model_device *dv);   /* NULL does nothing */

/* ---- model_kernels.c: weight matrices ---------------------------------------------- */

/* Is a tensor of this ggml type kept as float32 rows / as its own GGUF blocks? */
int  model__keeps_float(int type);
int  model__keeps_raw(int type);

/* W (rows, cols) from `rows` rows of a GGUF tensor of ggml type `type` at `data`:
 * allocates W's storage (raw when `native` and model__keeps_raw(type), else 8-bit blocks,
 * or floats when model__keeps_float) and fills it; *bytes += the bytes it holds.
 * KV_EUNSUPPORTED for a type dequant_row cannot read, KV_ENOMEM.  Free with
 * model__qmatrix_free. */
int  model__qmatrix_init(qmatrix *w, int type, int rows, int cols, const void *data,
                         int native, size_t *bytes, kv_err *err);
void model__qmatrix_free(qmatrix *w);   /* leaves W empty; a shared W only forgets */

/* out[r] = W[r] · x for every row (one token), rows spread over the OpenMP threads. */
void model__matvec(float *out, const qmatrix *w, const float *x);
/* out[k] = W_k · x for `count` matrices of one input (q, k and v; gate and up): with
 * grouped matrices of one type, one parallel region for all of them (one barrier, not
 * `count`); each result as model__matvec's, bit for bit. */
#define MATVEC_MANY 4   /* at most this many matrices share a region */
void model__matvec_many(float *const *out, const qmatrix *const *w, int count, const float *x);

/* W's rows r0 .. r0+n-1 as floats, dst (n, cols). */
void model__dequant_rows(float *dst, const qmatrix *w, int r0, int n);

/* One row of W as floats (the embedding lookup). */
void model__qmatrix_row(float *dst, const qmatrix *w, int r);


#endif /* MODEL_IMPL_H */
