/*
 * model.h — a llama-family language model from a GGUF file, run on the CPU.
 *
 * The block (SmolLM2, Llama 2/3, Mistral, TinyLlama; reference/inference.md §2):
 *
 *     n   = RMSNorm(x) · attn_norm
 *     x  += Wo · Attn(RoPE(Wq·n), RoPE(Wk·n), Wv·n)      causal, GQA, scale 1/sqrt(hd)
 *     m   = RMSNorm(x) · ffn_norm
 *     x  += Wdown · (silu(Wgate·m) ⊙ Wup·m)
 *     logits = Wout · (RMSNorm(x) · output_norm)         Wout = token_embd when tied
 *
 * RoPE rotates adjacent pairs (x[2i], x[2i+1]) — the NORMAL pairing, because GGUF
 * llama files store Wq and Wk permuted (§3) — with base `{arch}.rope.freq_base`.
 * Query head h reads KV head h / (n_head / n_head_kv).
 *
 * Weights live in memory as 8-bit blocks (model_kernels.c): 32 weights share a float
 * scale d and offset m, w = d·q + m with q an int8.  Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0
 * convert exactly; other types (F16, F32, BF16, K-quants, IQ4_NL) are dequantised and
 * requantised to 8 bits (lossy, about 1/255 of each block's range).  Decoding one token
 * runs vectorised dot products straight on the blocks; a batch of tokens (prefill)
 * dequantises one weight matrix at a time, in row chunks, into a reused float buffer
 * and multiplies through cblas_sgemm.  Memory: docs/RUNTIME.md.
 *
 * Threads: OpenMP (and OpenBLAS's OpenMP build) with model_set_threads().  A model is
 * read-only once opened except for its scratch buffers, so one model runs one
 * model_forward() at a time.  Errors follow kv_err.h.
 */
#ifndef MODEL_H
#define MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kv_cache.h"
#include "kv_err.h"

typedef enum model_rope {
    MODEL_ROPE_NORMAL = 0,   /* adjacent pairs (x[2i], x[2i+1]): GGUF llama */
    MODEL_ROPE_NEOX   = 2,   /* halves (x[i], x[i + n_rot/2]): HF layout, Gemma, Qwen */
} model_rope;

/* Hyper-parameters, read from the GGUF metadata by model_open(). */
typedef struct model_config {
    char       arch[32];     /* general.architecture: "llama" */
    int        n_layer;      /* {arch}.block_count */
    int        n_embd;       /* {arch}.embedding_length: d */
    int        n_ff;         /* {arch}.feed_forward_length */
    int        n_head;       /* {arch}.attention.head_count */
    int        n_head_kv;    /* {arch}.attention.head_count_kv (default n_head) */
    int        head_dim;     /* {arch}.attention.key_length (default d / n_head) */
    int        n_rot;        /* {arch}.rope.dimension_count (default head_dim) */
    int        n_vocab;      /* rows of token_embd */
    int        n_ctx;        /* {arch}.context_length: positions 0 .. n_ctx-1 */
    float      rope_base;    /* {arch}.rope.freq_base (default 10000) */
    float      rms_eps;      /* {arch}.attention.layer_norm_rms_epsilon */
    model_rope rope;         /* MODEL_ROPE_NORMAL for llama */
    int        tied_output;  /* 1 when output.weight is absent and token_embd serves */
    int32_t    bos_id;       /* tokenizer.ggml.bos_token_id, -1 if absent */
    int32_t    eos_id;       /* tokenizer.ggml.eos_token_id, -1 if absent */
    int32_t    eot_id;       /* tokenizer.ggml.eot_token_id, -1 if absent */
} model_config;

typedef struct model model;   /* opaque: config, weights, scratch */

/* ---- the attention-row hook ----------------------------------------------------------
 *
 * model_forward() shows every attention probability row to `attn_row` when it is set
 * (and computes nothing extra when it is NULL):
 *
 *   layer, q_head   the query head (0 .. n_head-1); its stream is KV head
 *                   q_head / (n_head / n_head_kv) of that layer
 *   query_pos       the query token's position
 *   probs[n_keys]   softmax over the stream's slots 0 .. n_keys-1 in slot order, the
 *                   query's own entry last; with a full cache n_keys = query_pos + 1
 *                   and slot i is position i.  Borrowed for the call only.
 *
 * Order and threads: within one forward call, rows of one (layer, q_head) come in
 * increasing query position, all from one thread; calls for different heads of the
 * same layer may run concurrently on OpenMP worker threads, so a hook that shares state
 * across heads must lock it or index it by head.  Layers come in order: every call for
 * layer l returns before any call for layer l+1 starts.
 *
 * `query`, when set, sees each query head's post-RoPE query vector (head_dim floats)
 * before its row is computed, with the same order and thread rules. */
typedef void (*model_attn_row_fn)(void *ctx, int layer, int q_head, int query_pos,
                                  const float *probs, int n_keys);
typedef void (*model_query_fn)(void *ctx, int layer, int q_head, int query_pos,
                               const float *q, int head_dim);

typedef struct model_hooks {
    model_attn_row_fn attn_row;   /* NULL: rows are not shown */
    model_query_fn    query;      /* NULL: queries are not shown */
    void             *ctx;        /* passed back to both */
} model_hooks;

typedef enum model_logits {
    MODEL_LOGITS_NONE,   /* no logits (filling the cache only) */
    MODEL_LOGITS_LAST,   /* (1, n_vocab): the next-token logits after the last token */
    MODEL_LOGITS_ALL,    /* (n, n_vocab): after every token of the call (one GEMM) */
} model_logits;

/* ---- lifecycle ------------------------------------------------------------------- */

/* Open a GGUF file and load its weights into memory.  NULL and err for an unreadable
 * file, a missing key ("missing required key 'llama.block_count'"), an architecture
 * other than llama, a missing tensor or one of the wrong shape, or too little memory. */
model *model_open(const char *path, kv_err *err);
void   model_free(model *m);                          /* NULL does nothing */

const model_config *model_config_of(const model *m);  /* borrowed */

/* An empty KV cache shaped for m, with `reserve` entries per stream allocated up front. */
kv_cache *model_cache_new(const model *m, int reserve, kv_err *err);

/* Override the RoPE pairing (experiments and tests; NEOX on a llama GGUF is wrong). */
void   model_set_rope(model *m, model_rope rope);

/* Threads for OpenMP loops and OpenBLAS (1 .. whatever the machine has). */
void   model_set_threads(int n);

size_t model_weight_bytes(const model *m);   /* bytes of weights held in memory */

/* ---- running --------------------------------------------------------------------- */

/* Run n tokens through the model at positions kv_cache_next_pos(cache) .. + n - 1
 * (with compact positions, kv_cache_rope_pos() of each stream .. + n - 1 for RoPE;
 * hooks still see the tokens' indices in the sequence):
 * their keys and values join every stream of `cache` (at the end, in order), each
 * query attends to its stream's slots up to and including its own entry, and the
 * cache's next position advances by n.  A call with n > 1 (prefill, or a chunk of it)
 * gives the same results as n calls with one token, up to float rounding.
 *
 * `which` selects the logits written to `logits` (NULL with MODEL_LOGITS_NONE).
 * `hooks` may be NULL.  KV_ERANGE when a position would reach n_ctx or a token id is
 * out of range (nothing is computed then), KV_ENOMEM when scratch or cache growth
 * fails. */
int model_forward(model *m, kv_cache *cache, const int32_t *tokens, int n,
                  model_logits which, float *logits, const model_hooks *hooks, kv_err *err);

/* ---- positions ------------------------------------------------------------------ */

/* Rotate n post-RoPE head vectors (head_dim floats each, one after the other) by
 * `delta` positions, with the model's own frequencies and pairing: a vector rotated for
 * position p comes out rotated for p + delta, up to float rounding (RoPE rotations
 * compose; a vector rotated for position 0 is the un-rotated one). */
void model_rope_shift(const model *m, float *x, int n, int delta);

/* Compact positions (kv_cache.h (3)): after a removal from stream (layer, kv_head),
 * rotate each kept key from the position it was rotated for to its slot index, so the
 * stream's positions read 0..n-1 again.  Slots before the first removed one do not
 * move.  Each call adds one rotation's rounding to the keys it moves. */
void model_cache_reposition(const model *m, kv_cache *cache, int layer, int kv_head);

#endif /* MODEL_H */
