/*
 * gpu_replay.cu — the replay step on the GPU (gpu_replay.h says what and why).
 *
 * One CUDA block per stream steps through a row block of up to 64 queries, in the CPU
 * engine's order (sim/replay.c invariant 1):
 *
 *   append t → gather each member's row at the kept slots and sum its mass as the
 *   CPU does → renormalise, reduce, observe (S += a, Q += a², c++, last = a)
 *   → measure (mass, cache; overlap from the exact top-n threshold, radix-selected;
 *   output error summed per dimension in key order)
 *   → when due, evict the k lowest (score, position) candidates and compact in order.
 *
 * A stream's arrays live in global memory between launches, in two copies: a
 * compaction reads one and writes the other (`flip` says which is current).
 */
#include "gpu_replay.h"
#include "replay_rules.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda_runtime.h>

#define THREADS    256
#define WARPS      (THREADS / 32)
#define BLOCK_ROWS GPU_REPLAY_BLOCK
#define MAX_EVICT  GPU_REPLAY_MAX_STRIDE

/* Every stream's arrays: [copy][stream][slot] with `T` slots, and the gathered rows. */
struct state {
    int    *pos;        /* position of the entry in each slot (slot order = position) */
    double *S, *Q;      /* Σ a and Σ a², as policy_scored.c */
    int    *cnt;        /* queries that attended the entry */
    float  *last;       /* the latest reduced value */
    float  *gathered;   /* per stream at gathered_off[s]: (G, T) the members' raw p */
    float  *sigma;      /* [stream][slot] the std scope's σ */
    unsigned char *prot;/* [stream][slot] 1: protected by σ */
    size_t *gathered_off;
    int    *n, *flip;   /* (streams,) kept entries and current copy */
    int     streams, T;
};

__device__ static size_t at(const state &st, int copy, int s)
{
    return ((size_t)copy * st.streams + s) * st.T;
}

/* ------------------------------------------------------------ block primitives --- */

/* Sum of one int per thread over the block; every thread gets it. */
__device__ static int block_sum(int v, int *cell)
{
    __syncthreads();
    if (threadIdx.x == 0)
        *cell = 0;
    __syncthreads();
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0)
        atomicAdd(cell, v);
    __syncthreads();
    return *cell;
}

/* A would-be victim; slot < 0 is none. */
struct victim {
    float score;
    int   pos, slot;
};

__device__ static victim better(victim a, victim b)
{
    if (a.slot < 0)
        return b;
    if (b.slot < 0)
        return a;
    return rules_before(b.score, b.pos, a.score, a.pos) ? b : a;
}

__device__ static victim warp_best(victim v)
{
    for (int o = 16; o > 0; o >>= 1) {
        victim w = {__shfl_down_sync(0xffffffffu, v.score, o),
                    __shfl_down_sync(0xffffffffu, v.pos, o),
                    __shfl_down_sync(0xffffffffu, v.slot, o)};
        v = better(v, w);
    }
    return v;
}

/* The best victim of the block; every thread gets it. */
__device__ static victim block_best(victim v, victim *cell)
{
    v = warp_best(v);
    if ((threadIdx.x & 31) == 0)
        cell[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        victim w = threadIdx.x < WARPS ? cell[threadIdx.x] : victim{0, 0, -1};
        w = warp_best(w);
        if (threadIdx.x == 0)
            cell[WARPS] = w;
    }
    __syncthreads();
    victim best = cell[WARPS];
    __syncthreads();
    return best;
}

/* Warp 0: the digit holding the rest-th largest, scanning from digit 255 down, and
 * how many lie above it.  Lane i sums digits 255-8i .. 248-8i, a prefix sum over the
 * lanes finds the lane whose digits hold it, and that lane walks its eight. */
__device__ static void pick_digit(const unsigned *hist, int rest, int *pick)
{
    const int lane = threadIdx.x, top = 255 - 8 * lane;
    int count = 0;
    for (int i = 0; i < 8; i++)
        count += (int)hist[top - i];
    int upto = count;   /* inclusive prefix over lanes 0..lane */
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, upto, o);
        if (lane >= o)
            upto += y;
    }
    int before = upto - count;
    if (before < rest && rest <= upto) {
        int d = top;
        while (before + (int)hist[d] < rest)
            before += (int)hist[d--];
        pick[0] = d;
        pick[1] = before;
    }
}

/* The k-th largest of v[0..len-1] (1 <= k <= len) by radix selection on the keys, 8
 * bits at a time, and how many are strictly larger: metrics_kth_largest's answer. */
__device__ static float kth_largest(const float *v, int len, int k, unsigned *hist, int *pick,
                                    int *n_above)
{
    uint32_t prefix = 0, mask = 0;
    int above = 0, rest = k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x)
            hist[b] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < len; i += blockDim.x) {
            const uint32_t key = rules_key(v[i]);
            if ((key & mask) == prefix)
                atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x < 32)
            pick_digit(hist, rest, pick);
        __syncthreads();
        above += pick[1];
        rest -= pick[1];
        prefix |= (uint32_t)pick[0] << shift;
        mask |= 255u << shift;
        __syncthreads();
    }
    *n_above = above;
    return rules_unkey(prefix);
}

/* ------------------------------------------------------------ the step ---------- */

struct shared_cells {
    double   mass[GPU_REPLAY_MAX_MEMBERS];
    float    scale[GPU_REPLAY_MAX_MEMBERS];
    unsigned hist[256];
    int      pick[2], sum;
    int      chosen[MAX_EVICT];
    victim   best[WARPS + 1];
    int      range[2];
    float    o_full[GPU_REPLAY_MAX_DIM], o_kept[GPU_REPLAY_MAX_DIM];
};

/* One stream's view of the current step. */
struct step {
    const gpu_stream_desc *d;
    const float           *rows;   /* this layer's rows: (H, 64, width) */
    int                    width, r, t, n;
    int                   *pos, *cnt;
    double                *S, *Q;
    float                 *last, *gathered, *sigma;
    unsigned char         *prot;
    int                    T;
    const float           *values;  /* this layer's values: (n_kv, T, dim), or NULL */
    int                    dim;
};

__device__ static const float *member_row(const step &k, int g)
{
    return k.rows + ((size_t)k.d->members[g] * BLOCK_ROWS + k.r) * k.width;
}

/* Gather each member's row at the kept slots and sum its mass (rules_mass: one
 * thread per member, in metrics_gather's order). */
__device__ static void gather(const step &k, shared_cells &sh)
{
    const int G = k.d->n_members;
    for (int g = 0; g < G; g++) {
        const float *p = member_row(k, g);
        for (int j = threadIdx.x; j < k.n; j += blockDim.x)
            k.gathered[(size_t)g * k.T + j] = p[k.pos[j]];
    }
    __syncthreads();
    if (threadIdx.x < G) {
        sh.mass[threadIdx.x] = rules_mass(k.gathered + (size_t)threadIdx.x * k.T, k.n);
        sh.scale[threadIdx.x] = rules_scale(sh.mass[threadIdx.x]);
    }
    __syncthreads();
}

/* Renormalise, reduce the group's rows and observe: policy_observe on scored. */
__device__ static void observe(const step &k, const shared_cells &sh)
{
    const int G = k.d->n_members;
    for (int j = threadIdx.x; j < k.n; j += blockDim.x) {
        float a = rules_renorm(k.gathered[j], sh.mass[0], sh.scale[0], k.n);
        for (int g = 1; g < G; g++)
            a = rules_fold(k.d->gqa, a,
                           rules_renorm(k.gathered[(size_t)g * k.T + j], sh.mass[g], sh.scale[g], k.n));
        a = rules_finish(k.d->gqa, a, G);
        rules_observe(&k.S[j], &k.Q[j], a);
        k.cnt[j]++;
        k.last[j] = a;
    }
    __syncthreads();
}

/* Output error of member g: the full cache's output and the kept entries', one
 * dimension per thread, each summed over the keys in order (metrics_output_full and
 * _kept), then their relative error in double by one thread. */
__device__ static void output_error(const step &k, shared_cells &sh, int g, gpu_acc *a)
{
    const float *p = member_row(k, g), *v = k.values + (size_t)k.d->kv[g] * k.T * k.dim;
    const int d = threadIdx.x;
    if (d < k.dim) {
        float full = 0, kept = 0;
        for (int i = 0; i <= k.t; i++)
            full = rules_output_add(full, p[i], v[(size_t)i * k.dim + d]);
        for (int j = 0; j < k.n; j++)
            kept = rules_output_add(kept, k.gathered[(size_t)g * k.T + j],
                                    v[(size_t)k.pos[j] * k.dim + d]);
        sh.o_full[d] = full;
        sh.o_kept[d] = RULES_MUL(kept, sh.scale[g]);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        a->output_error += rules_relative_error(sh.o_kept, sh.o_full, k.dim);
        a->n_output++;
    }
    __syncthreads();
}

/* Mass, cache, overlap and output error of each member, into its accumulator, in step
 * order. */
__device__ static void measure(const step &k, shared_cells &sh, gpu_acc *acc, int overlap)
{
    const int G = k.d->n_members;
    if (threadIdx.x == 0)
        for (int g = 0; g < G; g++) {
            gpu_acc *a = &acc[k.d->acc[g]];
            a->steps++;
            a->cache += k.n;
            a->mass += sh.mass[g];
        }
    for (int g = 0; overlap && g < G; g++) {
        int n_above;
        const float theta = kth_largest(member_row(k, g), k.t + 1, k.n, sh.hist, sh.pick, &n_above);
        int above = 0, tied = 0;
        for (int j = threadIdx.x; j < k.n; j += blockDim.x) {
            const float v = k.gathered[(size_t)g * k.T + j];
            above += v > theta;
            tied += v == theta;
        }
        above = block_sum(above, &sh.sum);
        tied = block_sum(tied, &sh.sum);
        if (threadIdx.x == 0) {
            gpu_acc *a = &acc[k.d->acc[g]];
            a->overlap += rules_overlap(above, tied, k.n, n_above);
            a->n_overlap++;
        }
    }
    for (int g = 0; k.values && g < G; g++)
        output_error(k, sh, g, &acc[k.d->acc[g]]);
    __syncthreads();
}

/* The k lowest candidates, in rank order: each round the best of those that rank
 * after the previous pick (rank is a total order: positions are unique). */
__device__ static void choose(const step &k, shared_cells &sh, int evict, int lo, int hi)
{
    victim prev = {0, 0, -1};
    for (int round = 0; round < evict; round++) {
        victim mine = {0, 0, -1};
        for (int j = lo + (int)threadIdx.x; j < hi; j += blockDim.x) {
            if (k.d->std_scope && k.prot[j])
                continue;
            victim v = {rules_score(k.d->score, k.S[j], k.cnt[j], k.last[j], k.pos[j]), k.pos[j], j};
            if (prev.slot < 0 || rules_before(prev.score, prev.pos, v.score, v.pos))
                mine = better(mine, v);
        }
        prev = block_best(mine, sh.best);
        if (threadIdx.x == 0)
            sh.chosen[round] = prev.slot;
    }
    __syncthreads();
    if (threadIdx.x == 0)   /* slot order, for the compaction */
        for (int i = 1; i < evict; i++)
            for (int j = i; j > 0 && sh.chosen[j - 1] > sh.chosen[j]; j--) {
                int x = sh.chosen[j];
                sh.chosen[j] = sh.chosen[j - 1];
                sh.chosen[j - 1] = x;
            }
    __syncthreads();
}

/* The std scope within the candidates [lo, *hi): the `recent` newest leave the range,
 * then the `want` largest σ are marked protected, ties to the newest
 * (policy__protect_top), the threshold found by the same radix selection. */
__device__ static void std_scope(const step &k, shared_cells &sh, int evict, int lo, int *hi)
{
    int mid, want;
    rules_std_scope(k.n, evict, lo, k.d->window, k.d->recent, &mid, &want);
    *hi = mid;
    for (int j = lo + (int)threadIdx.x; j < mid; j += blockDim.x) {
        k.sigma[j] = rules_sigma(k.S[j], k.Q[j], k.cnt[j]);
        k.prot[j] = 0;
    }
    __syncthreads();
    if (want <= 0)
        return;
    int n_above;
    const float thr = kth_largest(k.sigma + lo, mid - lo, want, sh.hist, sh.pick, &n_above);
    for (int j = lo + (int)threadIdx.x; j < mid; j += blockDim.x)
        k.prot[j] = k.sigma[j] > thr;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int j = mid - 1, ties = want - n_above; j >= lo && ties > 0; j--)
            if (k.sigma[j] == thr)
                k.prot[j] = 1, ties--;
    __syncthreads();
}

/* The candidate slots [lo, hi) of this eviction (rules_candidates, then the std
 * scope's protections), k.prot marking the protected ones inside under the std scope. */
__device__ static void candidates(const step &k, shared_cells &sh, int evict, int *lo, int *hi)
{
    if (threadIdx.x == 0)
        rules_candidates(k.pos, k.n, evict, k.d->sinks, k.d->std_scope ? 0 : k.d->window,
                         &sh.range[0], &sh.range[1]);
    __syncthreads();
    *lo = sh.range[0];
    *hi = sh.range[1];
    __syncthreads();
    if (k.d->std_scope)
        std_scope(k, sh, evict, *lo, hi);
}

/* Drop the chosen slots, writing the kept entries in order into the other copy. */
__device__ static void compact(const step &k, const shared_cells &sh, int evict, int *pos2,
                               double *S2, double *Q2, int *cnt2, float *last2)
{
    for (int j = threadIdx.x; j < k.n; j += blockDim.x) {
        int shift = 0, gone = 0;
        for (int i = 0; i < evict; i++) {
            shift += sh.chosen[i] < j;
            gone |= sh.chosen[i] == j;
        }
        if (gone)
            continue;
        pos2[j - shift] = k.pos[j];
        S2[j - shift] = k.S[j];
        Q2[j - shift] = k.Q[j];
        cnt2[j - shift] = k.cnt[j];
        last2[j - shift] = k.last[j];
    }
    __syncthreads();
}

__global__ static void step_block(const gpu_stream_desc *desc, state st, const float *rows,
                                  const float *values, int H, int width, int t0, int n_rows,
                                  gpu_metrics m, gpu_acc *acc)
{
    __shared__ shared_cells sh;
    const int s = blockIdx.x;
    const gpu_stream_desc *d = &desc[s];
    int n = st.n[s], flip = st.flip[s];
    for (int r = 0; r < n_rows; r++) {
        const size_t cur = at(st, flip, s), other = at(st, flip ^ 1, s);
        step k = {d, rows + (size_t)d->layer * H * BLOCK_ROWS * width, width, r, t0 + r, n,
                  st.pos + cur, st.cnt + cur, st.S + cur, st.Q + cur, st.last + cur,
                  st.gathered + st.gathered_off[s], st.sigma + at(st, 0, s),
                  st.prot + at(st, 0, s), st.T,
                  values ? values + (size_t)d->layer * m.n_kv * st.T * m.dim : NULL, m.dim};
        if (threadIdx.x == 0) {   /* token t joins */
            k.pos[n] = k.t;
            k.S[n] = 0;
            k.Q[n] = 0;
            k.cnt[n] = 0;
            k.last[n] = 0;
        }
        k.n = ++n;
        __syncthreads();
        gather(k, sh);
        observe(k, sh);
        if (k.t >= d->first)
            measure(k, sh, acc, m.overlap);
        const int evict = n - d->budget >= d->stride ? n - d->budget : 0;
        if (evict > 0) {
            int lo, hi;
            candidates(k, sh, evict, &lo, &hi);
            choose(k, sh, evict, lo, hi);
            compact(k, sh, evict, st.pos + other, st.S + other, st.Q + other, st.cnt + other,
                    st.last + other);
            flip ^= 1;
            n -= evict;
        }
    }
    if (threadIdx.x == 0) {
        st.n[s] = n;
        st.flip[s] = flip;
    }
}

/* ------------------------------------------------------------ host side --------- */

struct gpu_replay {
    int              n_streams, T, L, H, n_acc;
    gpu_metrics      m;
    gpu_stream_desc *d_desc;
    gpu_acc         *d_acc;
    state            st;
    float           *h_rows, *d_rows;
    size_t           rows_floats;
    float           *h_values, *d_values;   /* block (L, K, 64, D) / all (L, K, T, D) */
};

static int fail(char *why, size_t len, const char *what, cudaError_t rc)
{
    std::snprintf(why, len, "CUDA: %s: %s", what, cudaGetErrorString(rc));
    return -1;
}

/* cudaMalloc and zero `bytes` into *p; the first error wins. */
static cudaError_t zalloc(void **p, size_t bytes, cudaError_t rc)
{
    if (rc != cudaSuccess)
        return rc;
    rc = cudaMalloc(p, bytes ? bytes : 1);
    return rc == cudaSuccess ? cudaMemset(*p, 0, bytes ? bytes : 1) : rc;
}

static cudaError_t alloc_state(gpu_replay *g, const gpu_stream_desc *streams)
{
    const size_t S = (size_t)g->n_streams, slots = 2 * S * g->T;
    size_t *off = (size_t *)std::malloc(S * sizeof *off), total = 0;
    if (!off)
        return cudaErrorMemoryAllocation;
    for (size_t s = 0; s < S; s++) {
        off[s] = total;
        total += (size_t)streams[s].n_members * g->T;
    }
    state &st = g->st;
    st.streams = g->n_streams;
    st.T = g->T;
    cudaError_t rc = cudaSuccess;
    rc = zalloc((void **)&st.pos, slots * sizeof(int), rc);
    rc = zalloc((void **)&st.S, slots * sizeof(double), rc);
    rc = zalloc((void **)&st.Q, slots * sizeof(double), rc);
    rc = zalloc((void **)&st.sigma, S * g->T * sizeof(float), rc);
    rc = zalloc((void **)&st.prot, S * g->T, rc);
    rc = zalloc((void **)&st.cnt, slots * sizeof(int), rc);
    rc = zalloc((void **)&st.last, slots * sizeof(float), rc);
    rc = zalloc((void **)&st.gathered, total * sizeof(float), rc);
    rc = zalloc((void **)&st.gathered_off, S * sizeof(size_t), rc);
    rc = zalloc((void **)&st.n, S * sizeof(int), rc);
    rc = zalloc((void **)&st.flip, S * sizeof(int), rc);
    if (rc == cudaSuccess)
        rc = cudaMemcpy(st.gathered_off, off, S * sizeof *off, cudaMemcpyHostToDevice);
    std::free(off);
    return rc;
}

/* The values: all steps on the device, one block's on the host. */
static cudaError_t alloc_values(gpu_replay *g)
{
    const size_t per_step = (size_t)g->L * g->m.n_kv * g->m.dim;
    if (per_step == 0)
        return cudaSuccess;
    cudaError_t rc = zalloc((void **)&g->d_values, per_step * g->T * sizeof(float), cudaSuccess);
    if (rc == cudaSuccess)
        rc = cudaMallocHost((void **)&g->h_values, per_step * BLOCK_ROWS * sizeof(float));
    return rc;
}

extern "C" gpu_replay *gpu_replay_new(const gpu_stream_desc *streams, int n_streams, int T,
                                      int n_layers, int n_heads, int n_acc,
                                      const gpu_metrics *m, char *why, size_t len)
{
    int devices = 0;
    cudaError_t rc = cudaGetDeviceCount(&devices);
    if (rc != cudaSuccess || devices == 0) {
        fail(why, len, "no device", rc != cudaSuccess ? rc : cudaErrorNoDevice);
        return NULL;
    }
    gpu_replay *g = (gpu_replay *)std::calloc(1, sizeof *g);
    if (!g) {
        std::snprintf(why, len, "out of host memory");
        return NULL;
    }
    *g = gpu_replay{n_streams, T, n_layers, n_heads, n_acc, *m};
    if (m->dim > GPU_REPLAY_MAX_DIM) {
        std::snprintf(why, len, "head_dim %d: output error on the GPU takes at most %d",
                      m->dim, GPU_REPLAY_MAX_DIM);
        std::free(g);
        return NULL;
    }
    g->rows_floats = (size_t)n_layers * n_heads * BLOCK_ROWS * T;
    rc = zalloc((void **)&g->d_desc, (size_t)n_streams * sizeof *streams, cudaSuccess);
    rc = zalloc((void **)&g->d_acc, (size_t)n_acc * sizeof(gpu_acc), rc);
    rc = zalloc((void **)&g->d_rows, g->rows_floats * sizeof(float), rc);
    if (rc == cudaSuccess)
        rc = cudaMallocHost((void **)&g->h_rows, g->rows_floats * sizeof(float));
    if (rc == cudaSuccess)
        rc = cudaMemcpy(g->d_desc, streams, (size_t)n_streams * sizeof *streams,
                        cudaMemcpyHostToDevice);
    if (rc == cudaSuccess)
        rc = alloc_state(g, streams);
    if (rc == cudaSuccess)
        rc = alloc_values(g);
    if (rc != cudaSuccess) {
        fail(why, len, "allocating the replay state", rc);
        gpu_replay_free(g);
        return NULL;
    }
    return g;
}

extern "C" float *gpu_replay_rows(gpu_replay *g) { return g->h_rows; }
extern "C" float *gpu_replay_values(gpu_replay *g) { return g->h_values; }

/* The block's values into place: host (L, K, 64, D) to device (L, K, T, D) at t0. */
static cudaError_t upload_values(gpu_replay *g, int t0, int n)
{
    const size_t D = (size_t)g->m.dim, rows = (size_t)n * D * sizeof(float);
    for (int lk = 0; lk < g->L * g->m.n_kv; lk++) {
        cudaError_t rc = cudaMemcpy(g->d_values + ((size_t)lk * g->T + t0) * D,
                                    g->h_values + (size_t)lk * BLOCK_ROWS * D, rows,
                                    cudaMemcpyHostToDevice);
        if (rc != cudaSuccess)
            return rc;
    }
    return cudaSuccess;
}

extern "C" int gpu_replay_block(gpu_replay *g, int t0, int n, int width, char *why, size_t len)
{
    const size_t floats = (size_t)g->L * g->H * BLOCK_ROWS * width;
    cudaError_t rc = cudaMemcpy(g->d_rows, g->h_rows, floats * sizeof(float),
                                cudaMemcpyHostToDevice);
    if (rc == cudaSuccess && g->d_values)
        rc = upload_values(g, t0, n);
    if (rc != cudaSuccess)
        return fail(why, len, "uploading rows", rc);
    if (g->n_streams == 0)
        return 0;
    step_block<<<g->n_streams, THREADS>>>(g->d_desc, g->st, g->d_rows, g->d_values, g->H,
                                          width, t0, n, g->m, g->d_acc);
    rc = cudaGetLastError();
    if (rc == cudaSuccess)
        rc = cudaDeviceSynchronize();
    return rc == cudaSuccess ? 0 : fail(why, len, "the replay step kernel", rc);
}

extern "C" int gpu_replay_results(gpu_replay *g, gpu_acc *out, char *why, size_t len)
{
    cudaError_t rc = cudaMemcpy(out, g->d_acc, (size_t)g->n_acc * sizeof *out,
                                cudaMemcpyDeviceToHost);
    return rc == cudaSuccess ? 0 : fail(why, len, "reading the accumulators", rc);
}

extern "C" void gpu_replay_free(gpu_replay *g)
{
    if (!g)
        return;
    void *device[] = {g->d_desc, g->d_acc, g->d_rows, g->d_values, g->st.pos, g->st.S, g->st.Q,
                      g->st.cnt, g->st.last, g->st.gathered, g->st.sigma, g->st.prot,
                      g->st.gathered_off, g->st.n, g->st.flip};
    for (void *p : device)
        if (p)
            cudaFree(p);
    if (g->h_rows)
        cudaFreeHost(g->h_rows);
    if (g->h_values)
        cudaFreeHost(g->h_values);
    std::free(g);
}
