/*
 * out_proj.h — every layer's attention output projection W_o as float32, read straight
 * from a GGUF file (dequant_row: bit for bit what gguf-py, and so kvpress, computes),
 * for policies that weigh a value by what it adds to the residual stream (CriticalKV's
 * ‖W_o,h v‖₁, policies/policy.h: policy_shape.out_proj).  Replay has the trace, not the
 * model: `kvsim replay --model FILE` loads them here.  Memory: n_layer × n_embd ×
 * n_head·head_dim floats (40 MiB for SmolLM2-135M).
 */
#ifndef OUT_PROJ_H
#define OUT_PROJ_H

#include "kv_err.h"

typedef struct out_proj {
    int     n_layer;
    int     rows, cols;   /* n_embd, n_head · head_dim */
    float **w;            /* (n_layer,) each rows × cols, row-major; owned */
} out_proj;

/* Read blk.L.attn_output.weight of every layer of `path`.  0, or KV_EIO / KV_EFORMAT /
 * KV_ENOTFOUND / KV_EUNSUPPORTED / KV_ENOMEM naming the file and tensor. */
int  out_proj_load(const char *path, out_proj *out, kv_err *err);
void out_proj_free(out_proj *o);   /* a zeroed one is fine */

#endif /* OUT_PROJ_H */
