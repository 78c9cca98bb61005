/* gpu_none.c — the stand-in for builds without nvcc: no device, and it says why
 * (gpu.h, gpu_replay.h and gpu_forward.h). */
#include "gpu.h"
#include "gpu_forward.h"
#include "gpu_replay.h"

#include <stdio.h>


int gpu_device_count(char *desc, size_t len)
{
    snprintf(desc, len, "built without CUDA (nvcc was not found at build time)");
    return 0;
}

gpu_replay *gpu_replay_new(const gpu_stream_desc *streams, int n_streams, int T,
                           int n_layers, int n_heads, int n_acc, const gpu_metrics *m,
                           char *why, size_t len)
{
    (void)streams, (void)n_streams, (void)T, (void)n_layers, (void)n_heads, (void)n_acc;
    (void)m;
    snprintf(why, len, "this kvsim was built without CUDA (nvcc was not found at build time)");
    return NULL;
}

/* Unreachable: gpu_replay_new never returns a replay here. */
float *gpu_replay_rows(gpu_replay *g) { (void)g; return NULL; }
float *gpu_replay_values(gpu_replay *g) { (void)g; return NULL; }

int gpu_replay_block(gpu_replay *g, int t0, int n, int width, char *why, size_t len)
{
    (void)g, (void)t0, (void)n, (void)width;
    snprintf(why, len, "built without CUDA");
    return -1;
}

int gpu_replay_results(gpu_replay *g, gpu_acc *out, char *why, size_t len)
{
    (void)g, (void)out;
    snprintf(why, len, "built without CUDA");
    return -1;
}

void gpu_replay_free(gpu_replay *g) { (void)g; }

gpu_forward *gpu_forward_new(const gpu_model_desc *d, int n_ctx, int max_tokens, char *why,
                             size_t len)
{
    (void)d, (void)n_ctx, (void)max_tokens;
    snprintf(why, len, "this build has no CUDA (nvcc was not found at build time)");
    return NULL;
}

/* Unreachable: gpu_forward_new never returns a forward here. */
int gpu_forward_run(gpu_forward *g, const int *tokens, int n, int pos0,
                    const gpu_forward_out *out, char *why, size_t len)
{
    (void)g, (void)tokens, (void)n, (void)pos0, (void)out;
    snprintf(why, len, "built without CUDA");
    return -1;
}

void *gpu_host_alloc(size_t bytes) { (void)bytes; return NULL; }
void gpu_host_free(void *p) { (void)p; }
void gpu_forward_reset(gpu_forward *g) { (void)g; }
const char *gpu_forward_device(const gpu_forward *g) { (void)g; return "none"; }
void gpu_forward_free(gpu_forward *g) { (void)g; }
