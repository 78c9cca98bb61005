/*
 * gpu_forward.cu — the forward pass on a CUDA device; gpu_forward.h states what it
 * computes.  Read gpu_forward_run() first, then layer(): they are model/forward.c's
 * model_forward() and its two blocks, kernel by kernel.
 *
 * Invariants:
 *  (1) Every weight element is fwd_dequant() of forward_rules.h applied to the file's
 *      bytes, so before the fp16 rounding it is the CPU's dequant_row float.
 *  (2) GEMMs take fp16 inputs (activations rounded once, per GEMM) and accumulate and
 *      return fp32 (cublasGemmEx, CUBLAS_COMPUTE_32F); everything else is fp32.
 *  (3) RoPE rotates by the host's cos/sin tables, computed with the CPU's frequencies
 *      and cosf/sinf (forward_rules.h), uploaded each call.
 *  (4) One CUDA stream: the copies back of each layer's keys, values and queries are
 *      queued behind that layer's kernels and ahead of the next layer's, which reuse
 *      the buffers; the call synchronises once, at its end.
 */
#include "gpu_forward.h"
#include "forward_rules.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define ATT_CHUNK 64      /* query rows whose scores are held at once */
#define THREADS   256

namespace {

struct dev_mat {          /* fp16 (rows, cols), row-major */
    __half *w = nullptr;
    int rows = 0, cols = 0;
};

struct dev_layer {
    float *attn_norm = nullptr, *bq = nullptr, *bk = nullptr, *bv = nullptr;
    float *q_norm = nullptr, *k_norm = nullptr, *post_attn_norm = nullptr;
    float *ffn_norm = nullptr, *post_ffn_norm = nullptr;
    dev_mat wq, wk, wv, wo, w_gate, w_up, w_down;
    float *kc = nullptr, *vc = nullptr;   /* (n_head_kv, n_ctx, head_dim) */
    int geo = 0;                          /* its RoPE table */
};

} // namespace

struct gpu_forward {
    gpu_model_desc d;          /* scalars; the pointers are not kept */
    gpu_layer_desc *geo;       /* (n_layer,) geometry copies (tensor fields unused) */
    dev_layer *L;
    uint8_t *emb_raw;          /* token_embd as stored: rows looked up per token */
    size_t emb_row_bytes;
    int emb_type;
    dev_mat out;               /* output (or tied token_embd) as fp16 */
    float *out_norm;
    int n_ctx, max_tokens, pos, n_geo;
    size_t table_stride;       /* floats of one geometry's tables: max_tokens · largest n_rot/2 */
    int *geo_layer;            /* (n_geo,) a layer holding each distinct geometry */
    cublasHandle_t blas;
    cudaStream_t st;
    float *x, *xb, *xb2, *q, *k, *v, *att, *hb, *hb2, *logits, *scores;
    __half *h16;
    int *tokens;
    float *cs, *sn;            /* (n_geo, max_tokens, n_rot/2) device tables */
    float *cs_host, *sn_host;  /* page-locked staging */
    char name[256];
};

/* ---- errors ------------------------------------------------------------------------------ */

static bool cuda_ok(cudaError_t rc, const char *what, char *why, size_t len)
{
    if (rc == cudaSuccess)
        return true;
    std::snprintf(why, len, "%s: %s", what, cudaGetErrorString(rc));
    return false;
}

static bool blas_ok(cublasStatus_t rc, const char *what, char *why, size_t len)
{
    if (rc == CUBLAS_STATUS_SUCCESS)
        return true;
    std::snprintf(why, len, "%s: cuBLAS status %d", what, (int)rc);
    return false;
}

static unsigned blocks_for(long long n) { return (unsigned)((n + THREADS - 1) / THREADS); }

/* ---- kernels: weights ---------------------------------------------------------------------- */

__global__ void k_dequant_f16(const uint8_t *raw, int type, size_t row_bytes, int cols,
                              long long total, __half *out)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total)
        out[i] = __float2half_rn(fwd_dequant_at(type, raw + (i / cols) * row_bytes, i % cols));
}

__global__ void k_dequant_f32(const uint8_t *raw, int type, int n, float *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = fwd_dequant_at(type, raw, i);
}

/* ---- kernels: the block -------------------------------------------------------------------- */

__global__ void k_embed(const uint8_t *raw, int type, size_t row_bytes, const int *tokens,
                        int n, int d, float scale, float *x)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n * d)
        return;
    int t = (int)(i / d), c = (int)(i % d);
    float v = fwd_dequant_at(type, raw + (size_t)tokens[t] * row_bytes, c);
    x[i] = scale != 1.0f ? v * scale : v;
}

/* Sum of v over the block (every thread gets it). */
__device__ float block_sum(float v, float *sh)
{
    for (int o = 16; o > 0; o /= 2)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x % 32 == 0)
        sh[threadIdx.x / 32] = v;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < (int)(blockDim.x / 32); w++)
        s += sh[w];
    __syncthreads();
    return s;
}

__device__ float block_max(float v, float *sh)
{
    for (int o = 16; o > 0; o /= 2)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x % 32 == 0)
        sh[threadIdx.x / 32] = v;
    __syncthreads();
    float m = sh[0];
    for (int w = 1; w < (int)(blockDim.x / 32); w++)
        m = fmaxf(m, sh[w]);
    __syncthreads();
    return m;
}

/* o = x / sqrt(mean(x²) + eps) · w for each of the grid's rows of d (in place allowed). */
__global__ void k_rmsnorm(float *o, const float *x, const float *w, int d, float eps)
{
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * d;
    float *orow = o + (size_t)blockIdx.x * d;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        ss += xr[i] * xr[i];
    float r = fwd_rms_scale(block_sum(ss, sh), d, eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        orow[i] = w[i] * (xr[i] * r);
}

__global__ void k_add_bias(float *x, const float *b, long long total, int width)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total)
        x[i] += b[i % width];
}

__global__ void k_add(float *x, const float *y, long long total)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total)
        x[i] += y[i];
}

__global__ void k_to_half(__half *o, const float *x, long long total)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total)
        o[i] = __float2half_rn(x[i]);
}

/* Rotate every pair of n rows of n_heads · hd by the rows' tables (n, n_rot / 2). */
__global__ void k_rope(float *v, int n, int n_heads, int hd, int n_rot, int neox,
                       const float *cs, const float *sn)
{
    const int half = n_rot / 2;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n * n_heads * half)
        return;
    int p = (int)(i % half), h = (int)(i / half % n_heads), t = (int)(i / half / n_heads);
    float *x = v + ((size_t)t * n_heads + h) * hd;
    int a, b = fwd_rope_pair(neox, n_rot, p, &a);
    fwd_rope_rotate(&x[a], &x[b], cs[(size_t)t * half + p], sn[(size_t)t * half + p]);
}

/* The call's keys and values (n, n_kv · hd) into the cache at positions pos0 .. */
__global__ void k_store_kv(float *kc, float *vc, const float *k, const float *v, int n,
                           int n_kv, int hd, int n_ctx, int pos0)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n * n_kv * hd)
        return;
    int j = (int)(i % hd), h = (int)(i / hd % n_kv), t = (int)(i / hd / n_kv);
    size_t dst = ((size_t)h * n_ctx + pos0 + t) * hd + j;
    kc[dst] = k[i];
    vc[dst] = v[i];
}

struct att_args {
    const float *q, *kc, *vc;
    float *att, *scores;
    int r0, pos0, n_head, group, hd, n_ctx, window;
    float scale, softcap;
};

/* Block (row r0 + blockIdx.x, head blockIdx.y): softmax(mask(scale · q·K)) · V over the
 * keys the row sees (causal, or the last `window` positions). */
__global__ void k_attention(att_args a)
{
    extern __shared__ float qs[];          /* (hd,) the query */
    __shared__ float sh[32];
    const int r = a.r0 + blockIdx.x, h = blockIdx.y, qd = a.n_head * a.hd;
    const int p = a.pos0 + r, first = a.window > 0 && p - a.window + 1 > 0 ? p - a.window + 1 : 0;
    const float *K = a.kc + (size_t)(h / a.group) * a.n_ctx * a.hd;
    const float *V = a.vc + (size_t)(h / a.group) * a.n_ctx * a.hd;
    float *s = a.scores + ((size_t)blockIdx.x * a.n_head + h) * a.n_ctx;
    for (int j = threadIdx.x; j < a.hd; j += blockDim.x)
        qs[j] = a.q[(size_t)r * qd + (size_t)h * a.hd + j];
    __syncthreads();
    float mx = -INFINITY;
    for (int j = first + threadIdx.x; j <= p; j += blockDim.x) {
        float dot = 0.0f;
        for (int c = 0; c < a.hd; c++)
            dot += qs[c] * K[(size_t)j * a.hd + c];
        float x = a.scale * dot;
        if (a.softcap > 0.0f)
            x = fwd_softcap(x, a.softcap);
        s[j] = x;
        mx = fmaxf(mx, x);
    }
    mx = block_max(mx, sh);
    float sum = 0.0f;
    for (int j = first + threadIdx.x; j <= p; j += blockDim.x) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    sum = block_sum(sum, sh);      /* its barrier also orders the writes of s above */
    for (int c = threadIdx.x; c < a.hd; c += blockDim.x) {
        float acc = 0.0f;
        for (int j = first; j <= p; j++)
            acc += s[j] * V[(size_t)j * a.hd + c];
        a.att[(size_t)r * qd + (size_t)h * a.hd + c] = acc / sum;
    }
}

__global__ void k_glu(float *hb, const float *hb2, long long total, int geglu)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total)
        hb[i] = geglu ? fwd_gelu_tanh_mul(hb[i], hb2[i]) : fwd_silu_mul(hb[i], hb2[i]);
}

__global__ void k_softcap(float *x, long long total, float cap)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total)
        x[i] = fwd_softcap(x[i], cap);
}

/* ---- uploads ----------------------------------------------------------------------------- */

static size_t row_bytes_of(const gpu_tensor *t)
{
    return (size_t)(t->cols / fwd_block_elems(t->type)) * fwd_block_bytes(t->type);
}

static bool check_type(const gpu_tensor *t, const char *what, char *why, size_t len)
{
    int be = fwd_block_elems(t->type);
    if (be && t->cols % be == 0)
        return true;
    std::snprintf(why, len, "%s: ggml type %d is not one the CUDA forward dequantises",
                  what, t->type);
    return false;
}

/* The raw bytes of t on the device (caller frees). */
static uint8_t *upload_raw(const gpu_tensor *t, const char *what, char *why, size_t len)
{
    if (!check_type(t, what, why, len))
        return nullptr;
    size_t bytes = row_bytes_of(t) * (size_t)(t->rows ? t->rows : 1);
    uint8_t *raw = nullptr;
    if (!cuda_ok(cudaMalloc(&raw, bytes), what, why, len))
        return nullptr;
    if (!cuda_ok(cudaMemcpy(raw, t->data, bytes, cudaMemcpyHostToDevice), what, why, len)) {
        cudaFree(raw);
        return nullptr;
    }
    return raw;
}

static bool upload_mat(dev_mat *m, const gpu_tensor *t, const char *what, char *why, size_t len)
{
    if (!t->data)
        return true;
    uint8_t *raw = upload_raw(t, what, why, len);
    if (!raw)
        return false;
    long long total = (long long)t->rows * t->cols;
    m->rows = t->rows, m->cols = t->cols;
    bool ok = cuda_ok(cudaMalloc(&m->w, (size_t)total * sizeof(__half)), what, why, len);
    if (ok) {
        k_dequant_f16<<<blocks_for(total), THREADS>>>(raw, t->type, row_bytes_of(t), t->cols,
                                                     total, m->w);
        ok = cuda_ok(cudaDeviceSynchronize(), what, why, len);
    }
    cudaFree(raw);
    return ok;
}

static bool upload_vec(float **out, const gpu_tensor *t, const char *what, char *why, size_t len)
{
    if (!t->data)
        return true;
    uint8_t *raw = upload_raw(t, what, why, len);
    if (!raw)
        return false;
    int n = t->cols * (t->rows ? t->rows : 1);
    bool ok = cuda_ok(cudaMalloc(out, (size_t)n * sizeof(float)), what, why, len);
    if (ok) {
        k_dequant_f32<<<blocks_for(n), THREADS>>>(raw, t->type, n, *out);
        ok = cuda_ok(cudaDeviceSynchronize(), what, why, len);
    }
    cudaFree(raw);
    return ok;
}

static bool upload_layer(gpu_forward *g, int l, const gpu_layer_desc *w, char *why, size_t len)
{
    dev_layer *L = &g->L[l];
    char what[64];
    std::snprintf(what, sizeof what, "layer %d", l);
    const gpu_model_desc *d = &g->d;
    size_t cache = (size_t)d->n_head_kv * g->n_ctx * d->head_dim * sizeof(float);
    return upload_vec(&L->attn_norm, &w->attn_norm, what, why, len) &&
           upload_mat(&L->wq, &w->wq, what, why, len) && upload_mat(&L->wk, &w->wk, what, why, len) &&
           upload_mat(&L->wv, &w->wv, what, why, len) && upload_mat(&L->wo, &w->wo, what, why, len) &&
           upload_vec(&L->bq, &w->bq, what, why, len) && upload_vec(&L->bk, &w->bk, what, why, len) &&
           upload_vec(&L->bv, &w->bv, what, why, len) &&
           upload_vec(&L->q_norm, &w->q_norm, what, why, len) &&
           upload_vec(&L->k_norm, &w->k_norm, what, why, len) &&
           upload_vec(&L->post_attn_norm, &w->post_attn_norm, what, why, len) &&
           upload_vec(&L->ffn_norm, &w->ffn_norm, what, why, len) &&
           upload_mat(&L->w_gate, &w->w_gate, what, why, len) &&
           upload_mat(&L->w_up, &w->w_up, what, why, len) &&
           upload_mat(&L->w_down, &w->w_down, what, why, len) &&
           upload_vec(&L->post_ffn_norm, &w->post_ffn_norm, what, why, len) &&
           cuda_ok(cudaMalloc(&L->kc, cache), "KV cache", why, len) &&
           cuda_ok(cudaMalloc(&L->vc, cache), "KV cache", why, len);
}

/* Layers with the same RoPE frequencies share one table (gemma3: local and global). */
static void assign_geometries(gpu_forward *g)
{
    for (int l = 0; l < g->d.n_layer; l++) {
        const gpu_layer_desc *a = &g->geo[l];
        int i = 0;
        for (; i < g->n_geo; i++) {
            const gpu_layer_desc *b = &g->geo[g->geo_layer[i]];
            if (a->n_rot == b->n_rot && a->rope_base == b->rope_base &&
                a->rope_scaling == b->rope_scaling && a->rope_scale == b->rope_scale &&
                a->rope_factors == b->rope_factors)
                break;
        }
        if (i == g->n_geo)
            g->geo_layer[g->n_geo++] = l;
        g->L[l].geo = i;
    }
}

static bool alloc_scratch(gpu_forward *g, char *why, size_t len)
{
    const gpu_model_desc *d = &g->d;
    size_t t = (size_t)g->max_tokens, f = sizeof(float);
    size_t qd = (size_t)d->n_head * d->head_dim, kvd = (size_t)d->n_head_kv * d->head_dim;
    size_t wide = (size_t)d->n_ff > qd ? (size_t)d->n_ff : qd;
    wide = wide > (size_t)d->n_embd ? wide : (size_t)d->n_embd;
    size_t half = 1;
    for (int l = 0; l < d->n_layer; l++)
        half = (size_t)d->layers[l].n_rot / 2 > half ? (size_t)d->layers[l].n_rot / 2 : half;
    g->table_stride = t * half;
    size_t tables = (size_t)g->n_geo * g->table_stride * f;
    return cuda_ok(cudaMalloc(&g->x, t * d->n_embd * f), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->xb, t * d->n_embd * f), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->xb2, t * d->n_embd * f), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->q, t * qd * f), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->att, t * qd * f), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->k, t * kvd * f), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->v, t * kvd * f), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->hb, t * d->n_ff * f), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->hb2, t * d->n_ff * f), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->h16, t * wide * sizeof(__half)), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->logits, t * d->n_vocab * f), "logits", why, len) &&
           cuda_ok(cudaMalloc(&g->scores, (size_t)ATT_CHUNK * d->n_head * g->n_ctx * f),
                   "attention scores", why, len) &&
           cuda_ok(cudaMalloc(&g->tokens, t * sizeof(int)), "scratch", why, len) &&
           cuda_ok(cudaMalloc(&g->cs, tables), "RoPE tables", why, len) &&
           cuda_ok(cudaMalloc(&g->sn, tables), "RoPE tables", why, len) &&
           cuda_ok(cudaMallocHost(&g->cs_host, tables), "RoPE tables", why, len) &&
           cuda_ok(cudaMallocHost(&g->sn_host, tables), "RoPE tables", why, len);
}

static bool open_device(gpu_forward *g, char *why, size_t len)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        std::snprintf(why, len, "no CUDA device");
        return false;
    }
    cudaDeviceProp prop;
    std::snprintf(g->name, sizeof g->name, "%s",
                  cudaGetDeviceProperties(&prop, 0) == cudaSuccess ? prop.name : "CUDA device 0");
    return cuda_ok(cudaStreamCreate(&g->st), "stream", why, len) &&
           blas_ok(cublasCreate(&g->blas), "cublasCreate", why, len) &&
           blas_ok(cublasSetStream(g->blas, g->st), "cublasSetStream", why, len);
}

extern "C" gpu_forward *gpu_forward_new(const gpu_model_desc *d, int n_ctx, int max_tokens,
                                        char *why, size_t len)
{
    gpu_forward *g = (gpu_forward *)std::calloc(1, sizeof *g);
    if (!g) {
        std::snprintf(why, len, "out of memory");
        return nullptr;
    }
    g->d = *d;
    g->n_ctx = n_ctx, g->max_tokens = max_tokens;
    g->L = new dev_layer[d->n_layer];
    g->geo = (gpu_layer_desc *)std::calloc((size_t)d->n_layer, sizeof *g->geo);
    g->geo_layer = (int *)std::calloc((size_t)d->n_layer, sizeof *g->geo_layer);
    bool ok = g->geo && g->geo_layer && open_device(g, why, len);
    for (int l = 0; ok && l < d->n_layer; l++)
        g->geo[l] = d->layers[l];
    if (ok)
        assign_geometries(g);
    for (int l = 0; ok && l < d->n_layer; l++)
        ok = upload_layer(g, l, &d->layers[l], why, len);
    g->emb_type = d->tok_embd.type;
    g->emb_row_bytes = ok ? row_bytes_of(&d->tok_embd) : 0;
    ok = ok && (g->emb_raw = upload_raw(&d->tok_embd, "token_embd", why, len)) &&
         upload_mat(&g->out, d->output.data ? &d->output : &d->tok_embd, "output", why, len) &&
         upload_vec(&g->out_norm, &d->output_norm, "output_norm", why, len) &&
         alloc_scratch(g, why, len);
    if (!ok) {
        gpu_forward_free(g);
        return nullptr;
    }
    g->d.layers = nullptr;
    return g;
}

/* ---- the forward pass -------------------------------------------------------------------- */

/* out (n, W.rows) = x (n, W.cols) · Wᵀ: x rounded to fp16, fp32 accumulation. */
static bool gemm(gpu_forward *g, float *out, const float *x, const dev_mat *W, int n,
                 char *why, size_t len)
{
    long long total = (long long)n * W->cols;
    k_to_half<<<blocks_for(total), THREADS, 0, g->st>>>(g->h16, x, total);
    const float one = 1.0f, zero = 0.0f;
    return blas_ok(cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, W->rows, n, W->cols, &one,
                                W->w, CUDA_R_16F, W->cols, g->h16, CUDA_R_16F, W->cols, &zero,
                                out, CUDA_R_32F, W->rows, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx", why, len);
}

static void add_bias(gpu_forward *g, float *x, const float *b, int n, int width)
{
    if (b)
        k_add_bias<<<blocks_for((long long)n * width), THREADS, 0, g->st>>>(
            x, b, (long long)n * width, width);
}

static void rmsnorm(gpu_forward *g, float *o, const float *x, const float *w, int rows, int d)
{
    k_rmsnorm<<<rows, THREADS, 0, g->st>>>(o, x, w, d, g->d.rms_eps);
}

/* The host computes cos/sin of p · θ_i for the call's positions, per distinct geometry,
 * with the CPU's frequencies (3). */
static bool rope_tables(gpu_forward *g, int pos0, int n, char *why, size_t len)
{
    size_t stride = g->table_stride;
    for (int i = 0; i < g->n_geo; i++) {
        const gpu_layer_desc *ge = &g->geo[g->geo_layer[i]];
        int half = ge->n_rot / 2;
        for (int t = 0; t < n; t++)
            for (int p = 0; p < half; p++) {
                float f = fwd_rope_inv_freq(ge->rope_base, ge->n_rot, p, ge->rope_scaling,
                                            ge->rope_scale, ge->rope_factors);
                float angle = (float)(pos0 + t) * f;
                g->cs_host[i * stride + (size_t)t * half + p] = cosf(angle);
                g->sn_host[i * stride + (size_t)t * half + p] = sinf(angle);
            }
    }
    size_t bytes = (size_t)g->n_geo * stride * sizeof(float);
    return cuda_ok(cudaMemcpyAsync(g->cs, g->cs_host, bytes, cudaMemcpyHostToDevice, g->st),
                   "RoPE tables", why, len) &&
           cuda_ok(cudaMemcpyAsync(g->sn, g->sn_host, bytes, cudaMemcpyHostToDevice, g->st),
                   "RoPE tables", why, len);
}

static void attention(gpu_forward *g, int l, int n, int pos0)
{
    const gpu_model_desc *d = &g->d;
    const gpu_layer_desc *ge = &g->geo[l];
    att_args a = {g->q, g->L[l].kc, g->L[l].vc, g->att, g->scores, 0, pos0, d->n_head,
                  d->n_head / d->n_head_kv, d->head_dim, g->n_ctx, ge->window,
                  ge->attn_scale, ge->softcap};
    for (a.r0 = 0; a.r0 < n; a.r0 += ATT_CHUNK) {
        int rows = n - a.r0 < ATT_CHUNK ? n - a.r0 : ATT_CHUNK;
        k_attention<<<dim3(rows, d->n_head), 128, d->head_dim * sizeof(float), g->st>>>(a);
    }
}

/* Copy the device buffer of one layer's n rows of width floats to host + l · n · width. */
static bool copy_back(gpu_forward *g, float *host, const float *dev, int l, int n, int width,
                      char *why, size_t len)
{
    if (!host)
        return true;
    size_t bytes = (size_t)n * width * sizeof(float);
    return cuda_ok(cudaMemcpyAsync(host + (size_t)l * n * width, dev, bytes,
                                   cudaMemcpyDeviceToHost, g->st), "copy back", why, len);
}

/* xb = Wo · Attn(RoPE(Wq·n), RoPE(Wk·n), Wv·n) (model.h's block), keys and values
 * stored, the layer's Q/K/V queued for the host. */
static bool attention_block(gpu_forward *g, int l, int n, int pos0, const gpu_forward_out *out,
                            char *why, size_t len)
{
    const gpu_model_desc *d = &g->d;
    const dev_layer *L = &g->L[l];
    const gpu_layer_desc *ge = &g->geo[l];
    const int hd = d->head_dim, kvd = d->n_head_kv * hd;
    size_t stride = g->table_stride;
    rmsnorm(g, g->xb, g->x, L->attn_norm, n, d->n_embd);
    if (!gemm(g, g->q, g->xb, &L->wq, n, why, len) || !gemm(g, g->k, g->xb, &L->wk, n, why, len) ||
        !gemm(g, g->v, g->xb, &L->wv, n, why, len))
        return false;
    add_bias(g, g->q, L->bq, n, L->wq.rows);
    add_bias(g, g->k, L->bk, n, L->wk.rows);
    add_bias(g, g->v, L->bv, n, L->wv.rows);
    if (L->q_norm) {
        rmsnorm(g, g->q, g->q, L->q_norm, n * d->n_head, hd);
        rmsnorm(g, g->k, g->k, L->k_norm, n * d->n_head_kv, hd);
    }
    const float *cs = g->cs + L->geo * stride, *sn = g->sn + L->geo * stride;
    long long nq = (long long)n * d->n_head * (ge->n_rot / 2), nk = (long long)n * d->n_head_kv * (ge->n_rot / 2);
    k_rope<<<blocks_for(nq), THREADS, 0, g->st>>>(g->q, n, d->n_head, hd, ge->n_rot, ge->rope_neox, cs, sn);
    k_rope<<<blocks_for(nk), THREADS, 0, g->st>>>(g->k, n, d->n_head_kv, hd, ge->n_rot, ge->rope_neox, cs, sn);
    k_store_kv<<<blocks_for((long long)n * kvd), THREADS, 0, g->st>>>(
        L->kc, L->vc, g->k, g->v, n, d->n_head_kv, hd, g->n_ctx, pos0);
    if (!copy_back(g, out->q, g->q, l, n, d->n_head * hd, why, len) ||
        !copy_back(g, out->k, g->k, l, n, kvd, why, len) ||
        !copy_back(g, out->v, g->v, l, n, kvd, why, len))
        return false;
    attention(g, l, n, pos0);
    if (!gemm(g, g->xb, g->att, &L->wo, n, why, len))
        return false;
    if (L->post_attn_norm)
        rmsnorm(g, g->xb, g->xb, L->post_attn_norm, n, d->n_embd);
    return true;
}

/* xb2 = Wdown · (act(Wgate·m) ⊙ Wup·m), post-normed (gemma3). */
static bool ffn_block(gpu_forward *g, int l, int n, char *why, size_t len)
{
    const gpu_model_desc *d = &g->d;
    const dev_layer *L = &g->L[l];
    long long nf = (long long)n * d->n_ff;
    rmsnorm(g, g->xb2, g->x, L->ffn_norm, n, d->n_embd);
    if (!gemm(g, g->hb, g->xb2, &L->w_gate, n, why, len) ||
        !gemm(g, g->hb2, g->xb2, &L->w_up, n, why, len))
        return false;
    k_glu<<<blocks_for(nf), THREADS, 0, g->st>>>(g->hb, g->hb2, nf, d->geglu);
    if (!gemm(g, g->xb2, g->hb, &L->w_down, n, why, len))
        return false;
    if (L->post_ffn_norm)
        rmsnorm(g, g->xb2, g->xb2, L->post_ffn_norm, n, d->n_embd);
    return true;
}

static bool logits(gpu_forward *g, int n, const gpu_forward_out *out, char *why, size_t len)
{
    const gpu_model_desc *d = &g->d;
    if (!out->logits || out->n_logits == 0)
        return true;
    int rows = out->n_logits, first = n - rows;
    rmsnorm(g, g->xb, g->x + (size_t)first * d->n_embd, g->out_norm, rows, d->n_embd);
    if (!gemm(g, g->logits, g->xb, &g->out, rows, why, len))
        return false;
    long long total = (long long)rows * d->n_vocab;
    if (d->final_softcap > 0.0f)
        k_softcap<<<blocks_for(total), THREADS, 0, g->st>>>(g->logits, total, d->final_softcap);
    return cuda_ok(cudaMemcpyAsync(out->logits, g->logits, (size_t)total * sizeof(float),
                                   cudaMemcpyDeviceToHost, g->st), "logits", why, len);
}

extern "C" int gpu_forward_run(gpu_forward *g, const int *tokens, int n, int pos0,
                               const gpu_forward_out *out, char *why, size_t len)
{
    const gpu_model_desc *d = &g->d;
    if (n < 1 || n > g->max_tokens || pos0 != g->pos || pos0 + n > g->n_ctx ||
        out->n_logits < 0 || out->n_logits > n) {
        std::snprintf(why, len, "gpu_forward_run: %d tokens at position %d (cache holds %d, "
                      "capacity %d, at most %d a call)", n, pos0, g->pos, g->n_ctx, g->max_tokens);
        return -1;
    }
    long long nd = (long long)n * d->n_embd;
    bool ok = cuda_ok(cudaMemcpyAsync(g->tokens, tokens, (size_t)n * sizeof(int),
                                      cudaMemcpyHostToDevice, g->st), "tokens", why, len) &&
              rope_tables(g, pos0, n, why, len);
    if (ok)
        k_embed<<<blocks_for(nd), THREADS, 0, g->st>>>(g->emb_raw, g->emb_type, g->emb_row_bytes,
                                                       g->tokens, n, d->n_embd, d->embd_scale, g->x);
    for (int l = 0; ok && l < d->n_layer; l++) {
        ok = attention_block(g, l, n, pos0, out, why, len);
        if (ok)
            k_add<<<blocks_for(nd), THREADS, 0, g->st>>>(g->x, g->xb, nd);
        ok = ok && ffn_block(g, l, n, why, len);
        if (ok)
            k_add<<<blocks_for(nd), THREADS, 0, g->st>>>(g->x, g->xb2, nd);
    }
    ok = ok && logits(g, n, out, why, len) &&
         cuda_ok(cudaGetLastError(), "kernel launch", why, len) &&
         cuda_ok(cudaStreamSynchronize(g->st), "forward", why, len);
    if (!ok)
        return -1;
    g->pos += n;
    return 0;
}

extern "C" void gpu_forward_reset(gpu_forward *g) { g->pos = 0; }

extern "C" const char *gpu_forward_device(const gpu_forward *g) { return g->name; }

extern "C" void *gpu_host_alloc(size_t bytes)
{
    void *p = nullptr;
    return cudaMallocHost(&p, bytes) == cudaSuccess ? p : nullptr;
}

extern "C" void gpu_host_free(void *p)
{
    if (p)
        cudaFreeHost(p);
}

extern "C" void gpu_forward_free(gpu_forward *g)
{
    if (!g)
        return;
    for (int l = 0; g->L && l < g->d.n_layer; l++) {
        dev_layer *L = &g->L[l];
        void *ptrs[] = {L->attn_norm, L->bq, L->bk, L->bv, L->q_norm, L->k_norm,
                        L->post_attn_norm, L->ffn_norm, L->post_ffn_norm, L->wq.w, L->wk.w,
                        L->wv.w, L->wo.w, L->w_gate.w, L->w_up.w, L->w_down.w, L->kc, L->vc};
        for (void *p : ptrs)
            cudaFree(p);
    }
    void *ptrs[] = {g->emb_raw, g->out.w, g->out_norm, g->x, g->xb, g->xb2, g->q, g->k,
                    g->v, g->att, g->hb, g->hb2, g->logits, g->scores, g->h16, g->tokens,
                    g->cs, g->sn};
    for (void *p : ptrs)
        cudaFree(p);
    cudaFreeHost(g->cs_host);
    cudaFreeHost(g->sn_host);
    if (g->blas)
        cublasDestroy(g->blas);
    if (g->st)
        cudaStreamDestroy(g->st);
    delete[] g->L;
    std::free(g->geo);
    std::free(g->geo_layer);
    std::free(g);
}
