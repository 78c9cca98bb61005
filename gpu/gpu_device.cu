/* gpu_device.cu — device discovery through the CUDA runtime. */
#include "gpu.h"

#include <cstdio>
#include <cuda_runtime.h>


extern "C" int gpu_device_count(char *desc, size_t len)
{
    int n = 0;
    cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess || n == 0) {
        std::snprintf(desc, len, "no CUDA device: %s",
                      rc != cudaSuccess ? cudaGetErrorString(rc) : "none found");
        return 0;
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        std::snprintf(desc, len, "%s (compute %d.%d, %.1f GiB)", prop.name, prop.major,
                      prop.minor, (double)prop.totalGlobalMem / (1u << 30));
    else
        std::snprintf(desc, len, "CUDA device 0 (properties unavailable)");
    return n;
}
