/*
 * model.h — a decoder-only language model from a GGUF file, run on the CPU.
 *
 * Five architectures (`general.architecture`), one block with switches
 * (reference/inference.md §2, §2b; docs/RUNTIME.md has the table):
 *
 *     n   = Norm(x) · attn_norm (+ bias)               RMSNorm, or LayerNorm (gptneox)
 *     q,k,v = Wq·n (+bq), Wk·n (+bk), Wv·n (+bv)       biases: qwen2, gptneox
 *     q,k = RMSNorm per head · q_norm, k_norm          QK-norm: qwen3, gemma3
 *     a   = Wo · Attn(RoPE(q), RoPE(k), v) (+bo)       the layer's geometry (below)
 *     a   = RMSNorm(a) · post_attention_norm           gemma3
 *     x  += a, then  x += F(Norm(x) · ffn_norm)        sequential residual, or
 *     x  += a + F(Norm(x_in) · ffn_norm)               parallel (gptneox)
 *     F   = Wdown · (act(Wgate·m) ⊙ Wup·m)             SwiGLU (silu), GeGLU (tanh GELU:
 *           or Wdown · gelu(Wup·m + bu) + bd           gemma3), GELU MLP (gptneox)
 *     F   = RMSNorm(F) · post_ffw_norm                 gemma3
 *     logits = Wout · (Norm(x) · output_norm)          Wout = token_embd when tied;
 *                                                      gemma3 scales the embeddings by sqrt(d)
 *
 * Attention geometry, per layer (model_layer_geometry): causal, or causal within a
 * sliding window (gemma3's local layers, mistral); a RoPE base and scaling of its own
 * (gemma3's local layers use 10000, its global ones {arch}.rope.freq_base; llama 3's
 * rope_freqs.weight divides each frequency); the attention scale; a logit softcap.
 * RoPE rotates adjacent pairs (x[2i], x[2i+1]) for llama — the NORMAL pairing, because
 * GGUF llama files store Wq and Wk permuted (§3) — and halves (x[i], x[i + n_rot/2]) for
 * the others (NEOX), over the first n_rot dimensions of each head.  Query head h reads
 * KV head h / (n_head / n_head_kv).
 *
 * Weights live in memory as the GGUF's own blocks where every block of 32 is exactly
 * w = d·q + m with q at most 8 bits (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K:
 * model_kernels.c); Q6_K, Q3_K and Q2_K are kept as float32 rows (exact; their
 * 16-weight sub-blocks have scales of their own); other types (F16, F32, BF16,
 * IQ4_NL) are dequantised and requantised to 8-bit blocks (lossy, about 1/255 of each
 * block's range).  Decoding one
 * token runs vectorised dot products straight on the blocks; a batch of tokens (prefill)
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

#include "gguf.h"
#include "kv_cache.h"
#include "kv_err.h"

typedef enum model_rope {
    MODEL_ROPE_NORMAL = 0,   /* adjacent pairs (x[2i], x[2i+1]): GGUF llama */
    MODEL_ROPE_NEOX   = 2,   /* halves (x[i], x[i + n_rot/2]): HF layout, Gemma, Qwen */
} model_rope;

typedef enum model_arch {
    MODEL_ARCH_LLAMA,        /* SmolLM2, Llama 2/3, Mistral, TinyLlama */
    MODEL_ARCH_QWEN2,        /* + Q/K/V biases, NEOX RoPE */
    MODEL_ARCH_QWEN3,        /* + QK-norm, NEOX RoPE */
    MODEL_ARCH_GEMMA3,       /* QK-norm, pre/post norms, GeGLU, local and global layers */
    MODEL_ARCH_GPTNEOX,      /* Pythia: LayerNorm with bias, fused QKV with bias, partial
                                rotary, GELU MLP, parallel residual */
} model_arch;

typedef enum model_norm { MODEL_NORM_RMS, MODEL_NORM_LAYER } model_norm;

typedef enum model_ffn {
    MODEL_FFN_SWIGLU,        /* Wdown · (silu(Wgate·m) ⊙ Wup·m) */
    MODEL_FFN_GEGLU,         /* Wdown · (gelu_tanh(Wgate·m) ⊙ Wup·m): HF gelu_pytorch_tanh */
    MODEL_FFN_GELU,          /* Wdown · gelu(Wup·m + b) + b, exact (erf) GELU: HF "gelu" */
} model_ffn;

/* ---- attention geometry, per layer ---------------------------------------------------
 *
 * What decides which keys a query of one layer sees and how its scores are formed; the
 * trace records it so that replay and row-free traces can rebuild the mask.
 *
 *   mask        MODEL_MASK_CAUSAL: a query at position p sees every key at 0..p.
 *               MODEL_MASK_SLIDING: only keys at p - window + 1 .. p (p - key < window),
 *               as llama.cpp's is_masked_swa and HF's sliding_window_overlay; rows the
 *               hook sees are zero outside the window.
 *   rope_base   θ_i = rope_base^(−2i/n_rot) before scaling
 *   rope_scaling, rope_scale, rope_factors
 *               MODEL_ROPE_SCALING_LINEAR: positions are divided by rope_scale (HF
 *               "linear"); MODEL_ROPE_SCALING_FREQS: θ_i is divided by rope_factors[i]
 *               (n_rot/2 floats, GGUF rope_freqs.weight: llama 3's "llama3" scaling as
 *               convert_hf_to_gguf.py computes it); NONE otherwise (rope_scale 1).
 *   attn_scale  the scores are attn_scale · q·k (1/sqrt(head_dim) but for Gemma 3 27B)
 *   softcap     0, or scores become softcap · tanh(scores / softcap) before the mask */
typedef enum model_mask { MODEL_MASK_CAUSAL = 0, MODEL_MASK_SLIDING = 1 } model_mask;

typedef enum model_rope_scaling {
    MODEL_ROPE_SCALING_NONE   = 0,
    MODEL_ROPE_SCALING_LINEAR = 1,
    MODEL_ROPE_SCALING_FREQS  = 2,
} model_rope_scaling;

typedef struct model_geometry {
    model_mask         mask;
    int                window;        /* keys a sliding query sees, itself included; 0: causal */
    model_rope         rope;          /* pairing */
    int                n_rot;         /* rotated dimensions of each head (from 0) */
    float              rope_base;
    model_rope_scaling rope_scaling;
    float              rope_scale;    /* LINEAR: the factor positions are divided by; else 1 */
    const float       *rope_factors;  /* FREQS: (n_rot / 2,) divisors; else NULL (borrowed) */
    float              attn_scale;
    float              softcap;       /* 0: none */
} model_geometry;

/* Hyper-parameters, read from the GGUF metadata by model_open(). */
typedef struct model_config {
    char       arch[32];     /* general.architecture: "llama", "qwen2", "qwen3", "gemma3", "gptneox" */
    model_arch arch_id;
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
    float      rms_eps;      /* {arch}.attention.layer_norm_rms_epsilon (or layer_norm_epsilon) */
    model_rope rope;         /* MODEL_ROPE_NORMAL for llama, NEOX for the others */
    int        tied_output;  /* 1 when output.weight is absent and token_embd serves */
    model_norm norm;         /* RMSNorm, or LayerNorm with bias (gptneox) */
    model_ffn  ffn;
    int        parallel_residual;  /* gptneox.use_parallel_residual (default 1 there) */
    float      embd_scale;   /* embeddings are multiplied by it: sqrt(n_embd) for gemma3, else 1 */
    float      final_softcap;/* {arch}.final_logit_softcapping, 0: none */
    int        n_sliding;    /* layers with MODEL_MASK_SLIDING */
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
 * not in model_supported_archs() (the message names it), a missing tensor (named) or
 * one of the wrong shape, or too little memory. */
model *model_open(const char *path, kv_err *err);
void   model_free(model *m);                          /* NULL does nothing */

const model_config *model_config_of(const model *m);  /* borrowed */

/* The attention geometry of layer 0 .. n_layer-1 (borrowed; see above). */
const model_geometry *model_layer_geometry(const model *m, int layer);

/* The architectures model_open() accepts, comma-separated (for messages, --help). */
const char *model_supported_archs(void);

/* An empty KV cache shaped for m, with `reserve` entries per stream allocated up front. */
kv_cache *model_cache_new(const model *m, int reserve, kv_err *err);

/* Override the RoPE pairing of every layer (experiments and tests; NEOX on a llama
 * GGUF is wrong). */
void   model_set_rope(model *m, model_rope rope);

/* Threads for OpenMP loops and OpenBLAS (1 .. whatever the machine has). */
void   model_set_threads(int n);

size_t model_weight_bytes(const model *m);   /* bytes of weights held in memory */

/* ---- devices ---------------------------------------------------------------------- */

/* Run model_forward() on `device`: "cpu" (NULL; the default), "cuda", or "auto" (CUDA
 * when this build finds a device and the architecture runs there, else the CPU).  For
 * CUDA the weights of `f`, the model's GGUF file (open for as long as the model is),
 * are uploaded once (gpu/gpu_forward.h); model_forward() then runs on the device with
 * the full cache only, shows queries but no attention rows to the hooks, and appends
 * the new keys and values to the CPU cache as before (model_device.c).  KV_EUSAGE for
 * another word; KV_EUNSUPPORTED for "cuda" without a device, or for gptneox. */
int model_set_device(model *m, const gguf_file *f, const char *device, kv_err *err);

/* "cpu", or the CUDA device's name. */
const char *model_device_name(const model *m);

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

/* Rotate n post-RoPE head vectors (head_dim floats each, one after the other) of layer
 * `layer` by `delta` positions, with that layer's frequencies and pairing: a vector
 * rotated for position p comes out rotated for p + delta, up to float rounding (RoPE
 * rotations compose; a vector rotated for position 0 is the un-rotated one). */
void model_rope_shift(const model *m, int layer, float *x, int n, int delta);

/* The n_rot/2 angular frequencies of layer `layer` (scaling included), as the forward
 * pass forms its angles: pair i turns by (float)position · out[i]. */
void model_rope_freqs(const model *m, int layer, float *out);

/* Compact positions (kv_cache.h (3)): after a removal from stream (layer, kv_head),
 * rotate each kept key from the position it was rotated for to its slot index, so the
 * stream's positions read 0..n-1 again.  Slots before the first removed one do not
 * move.  Each call adds one rotation's rounding to the keys it moves. */
void model_cache_reposition(const model *m, kv_cache *cache, int layer, int kv_head);

#endif /* MODEL_H */
