/*
 * cublas_lazy.cu — the four cuBLAS calls gpu_forward.cu makes, loaded from libcublas
 * with dlopen at the first of them instead of linked.
 *
 * Why: merely linking libcublas costs every process about 156 MB of resident memory
 * at start (its relocated data and the pages the loader touches), whether or not it
 * ever uses a GPU; that was more than the whole CPU model of SmolLM2 and made a CPU
 * `kvtrace run` 2x llama.cpp's peak memory (docs/RUNTIME.md, "Memory").  Loaded here
 * only when a CUDA forward pass starts, it costs the CPU paths nothing.
 *
 * The definitions below have the declarations of cublas_v2.h, so the compiler checks
 * them against the toolkit's; a missing library makes the first call return
 * CUBLAS_STATUS_NOT_INITIALIZED, which gpu_forward.cu reports by name.
 */
#include <cublas_v2.h>
#include <dlfcn.h>
#include <pthread.h>

namespace {

/* cublas_api.h's cublasGemmEx (an inline C++ overload of the same name exists too) */
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                     int, int, const void *, const void *, cudaDataType, int,
                                     const void *, cudaDataType, int, const void *, void *,
                                     cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

struct cublas_fns {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    gemm_ex_fn gemm_ex;
};

cublas_fns fns;
bool loaded;
pthread_once_t once = PTHREAD_ONCE_INIT;

void load(void)
{
    static const char *const names[] = {"libcublas.so", "libcublas.so.13", "libcublas.so.12",
                                        "libcublas.so.11"};
    void *h = nullptr;
    for (const char *name : names)
        if ((h = dlopen(name, RTLD_NOW | RTLD_LOCAL)))
            break;
    if (!h)
        return;
    fns.create = (decltype(fns.create))dlsym(h, "cublasCreate_v2");
    fns.destroy = (decltype(fns.destroy))dlsym(h, "cublasDestroy_v2");
    fns.set_stream = (decltype(fns.set_stream))dlsym(h, "cublasSetStream_v2");
    fns.gemm_ex = (decltype(fns.gemm_ex))dlsym(h, "cublasGemmEx");
    loaded = fns.create && fns.destroy && fns.set_stream && fns.gemm_ex;
}

bool ready(void)
{
    pthread_once(&once, load);
    return loaded;
}

}  // namespace

extern "C" {

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t *handle)
{
    return ready() ? fns.create(handle) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle)
{
    return ready() ? fns.destroy(handle) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream)
{
    return ready() ? fns.set_stream(handle, stream) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t CUBLASWINAPI cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const void *alpha, const void *A, cudaDataType Atype,
                                         int lda, const void *B, cudaDataType Btype, int ldb,
                                         const void *beta, void *C, cudaDataType Ctype, int ldc,
                                         cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
    return ready() ? fns.gemm_ex(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype,
                                 ldb, beta, C, Ctype, ldc, computeType, algo)
                   : CUBLAS_STATUS_NOT_INITIALIZED;
}

}  // extern "C"
