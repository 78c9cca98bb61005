/* gpu_none.c — the stand-in for builds without nvcc: no device, and it says why. */
#include "gpu.h"

#include <stdio.h>

int gpu_built_with_cuda(void) { return 0; }

int gpu_device_count(char *desc, size_t len)
{
    snprintf(desc, len, "built without CUDA (nvcc was not found at build time)");
    return 0;
}
