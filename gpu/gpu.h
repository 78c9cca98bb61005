/*
 * gpu.h — the CUDA side's C API.  the gpu/ .cu files implement it when nvcc is present;
 * gpu/gpu_none.c stands in for builds without CUDA, so callers never #ifdef.
 */
#ifndef GPU_H
#define GPU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when none, or when built without CUDA).  A line
 * describing the first device, or why there is none, goes to desc[len]. */
int gpu_device_count(char *desc, size_t len);


#ifdef __cplusplus
}
#endif

#endif /* GPU_H */
