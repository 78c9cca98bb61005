/*
 * gpu_forward.h — the model's forward pass on a CUDA device (gpu/gpu_forward.cu), for
 * `--device cuda` of kvtrace record, run and generate (model/model_device.c drives it).
 *
 * The block is model/model.h's for the llama family and its relatives: RMSNorm, Q/K/V
 * (biases: qwen2), QK-norm (qwen3, gemma3), RoPE with the CPU's pairing and frequency
 * tables, causal or sliding-window attention with GQA, scale and softcap, Wo, the
 * post-norms of gemma3, SwiGLU or GeGLU, the tied or separate output and the final
 * softcap.  Not gptneox (LayerNorm, fused QKV, parallel residual).
 *
 * Weights are uploaded once as the GGUF file stores them and dequantised on the device
 * (gpu/forward_rules.h, bit for bit the CPU's dequant_row) into fp16 matrices, which
 * cublasGemmEx multiplies with fp32 accumulation; norms, biases and the embedding rows
 * are dequantised to fp32.  Activations are fp32 and are rounded to fp16 only as GEMM
 * inputs.  The KV cache lives on the device (fp32, post-RoPE keys), one full stream
 * per (layer, KV head) up to the capacity given at creation.
 *
 * Each call copies back, into page-locked buffers owned by the forward, what the caller
 * asked for: the logits, and the new keys and values (and queries) of every layer,
 * which the CPU cache and a row-free trace need.  No attention rows are copied.
 */
#ifndef GPU_FORWARD_H
#define GPU_FORWARD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One GGUF tensor as stored: ggml type, data (host memory, e.g. the mapped file), and
 * ne[0] = cols (the contiguous dimension), ne[1] = rows.  data NULL: absent. */
typedef struct gpu_tensor {
    int         type;
    const void *data;
    int         rows, cols;
} gpu_tensor;

typedef struct gpu_layer_desc {
    gpu_tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm, post_attn_norm;
    gpu_tensor ffn_norm, w_gate, w_up, w_down, post_ffn_norm;
    /* geometry (model.h, model_geometry) */
    int          window;          /* 0: causal; else keys a sliding query sees */
    int          rope_neox;       /* 0: NORMAL pairs, 1: NEOX halves */
    int          n_rot;
    float        rope_base;
    int          rope_scaling;    /* FWD_ROPE_SCALING_* (forward_rules.h) */
    float        rope_scale;
    const float *rope_factors;    /* (n_rot / 2,) for FREQS, else NULL */
    float        attn_scale, softcap;
} gpu_layer_desc;

typedef struct gpu_model_desc {
    int   n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab;
    float rms_eps, embd_scale, final_softcap;
    int   geglu;                  /* 0: SwiGLU, 1: GeGLU (tanh GELU) */
    gpu_tensor tok_embd, output, output_norm;   /* output.data NULL: tied to tok_embd */
    const gpu_layer_desc *layers; /* (n_layer,) */
} gpu_model_desc;

typedef struct gpu_forward gpu_forward;   /* opaque */

/* Upload and dequantise the weights of `d`; a KV cache of `n_ctx` positions per stream
 * and scratch for calls of up to `max_tokens` tokens.  NULL with why[len] on failure
 * (no device, out of memory, a type not in forward_rules.h, built without CUDA). */
gpu_forward *gpu_forward_new(const gpu_model_desc *d, int n_ctx, int max_tokens,
                             char *why, size_t len);

/* What one call copies back. */
typedef struct gpu_forward_out {
    float *logits;     /* (n_logits, n_vocab), or NULL */
    int    n_logits;   /* 0, 1 (the last token) or n (every token) */
    float *k, *v;      /* (n_layer, n, n_head_kv · head_dim) post-RoPE keys, values; NULL: no copy */
    float *q;          /* (n_layer, n, n_head · head_dim) post-RoPE queries; NULL: no copy */
} gpu_forward_out;

/* Run tokens[0..n) at positions pos0 .. pos0+n-1 (n <= max_tokens, pos0 + n <= n_ctx;
 * pos0 must equal the tokens the device cache already holds).  The host buffers of
 * `out` are filled when the call returns.  0, or -1 with why. */
int gpu_forward_run(gpu_forward *g, const int *tokens, int n, int pos0,
                    const gpu_forward_out *out, char *why, size_t len);

/* Page-locked host memory for gpu_forward_out (so the copies are single DMAs);
 * NULL when it cannot be had.  Free with gpu_host_free. */
void *gpu_host_alloc(size_t bytes);
void  gpu_host_free(void *p);

/* Forget the cached tokens (the next call starts at position 0). */
void gpu_forward_reset(gpu_forward *g);

/* The device's name ("NVIDIA H200"). */
const char *gpu_forward_device(const gpu_forward *g);

void gpu_forward_free(gpu_forward *g);

#ifdef __cplusplus
}
#endif

#endif /* GPU_FORWARD_H */
