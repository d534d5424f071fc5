/* cuda_common.cuh — private to kernels/cuda: the CUDA backend's context, the check macros
 * that turn a failing CUDA or cuBLAS call into the backend's sticky error, the tracked
 * allocator and scratch buffer the ops share, and small device helpers (warp and block
 * reductions, half/bfloat16 loads).
 *
 * Included by .cu files only (it needs the CUDA headers); the op headers (cuda_*.cuh other
 * than this one) are plain C declarations that the tests may include too. */
#ifndef IBEX_CUDA_COMMON_CUH
#define IBEX_CUDA_COMMON_CUH

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

extern "C" {
#include "kernels/backend.h"
}

/* One tracked device buffer (key = device pointer) or one cached weight (key = host
 * pointer, dev = its device copy). */
typedef struct ibex_cuda_entry {
    uintptr_t key; /* 0 marks an empty slot */
    void *dev;
    size_t bytes;
    int kind;      /* ibex_buf_kind */
    bool weight;   /* a weight-cache buffer: freed only with the backend */
} ibex_cuda_entry;

/* Open-addressing hash map from pointers to entries (linear probing, power-of-two
 * capacity, load ≤ 1/2, backward-shift deletion). */
typedef struct ibex_cuda_map {
    ibex_cuda_entry *e;
    size_t cap, len;
} ibex_cuda_map;

typedef struct ibex_cuda_ctx {
    int device;
    cudaStream_t stream;   /* non-blocking; every op and copy is queued here */
    cublasHandle_t cublas; /* bound to stream, workspace set to cublas_ws */
    void *cublas_ws;

    char name[128];
    int cc_major, cc_minor, sm_count;
    double spec_bw; /* data-sheet bytes/s (memory clock × bus width × 2), 0 if unknown */

    ibex_cuda_map bufs;    /* device pointer -> (bytes, kind): every live cudaMalloc */
    ibex_cuda_map weights; /* host pointer -> device copy */
    int64_t held[IBEX_BUF_KIND_COUNT];
    int64_t held_total, peak;

    void *scratch; /* op workspace (F16 copies of x, attention scores and partials); sized
                    * at construction for decode, grown (a sync and a cudaMalloc) only by
                    * a larger prefill */
    size_t scratch_bytes;
    unsigned *dec_count; /* decode attention's split arrival counters, all 0 between launches
                          * (allocated and zeroed once: ibex_cuda_attention_init) */

    ibex_attn_impl attn;
    ibex_err err; /* sticky: the first error since the last sync (status IBEX_OK if none) */

    ibex_dev_counters cnt; /* launches, syncs, allocations, bytes copied (device_info) */
    /* pinned host buffers from host_alloc: copies from/to them are queued, not waited for */
    struct ibex_cuda_pinned { char *p; size_t bytes; } *pinned;
    int n_pinned, cap_pinned;
    /* marks: events created on first use, recorded in order, ids 0..n_marks−1 */
    cudaEvent_t *marks;
    int n_marks, n_created;
    /* graph capture (graph_begin/graph_end) */
    cudaGraphExec_t gexec; /* the last executable graph, updated in place when it can be */
    bool capturing;
    int64_t launches_at_capture; /* cnt.launches when capture began */
} ibex_cuda_ctx;

/* Most marks between two marks_reset calls (the forward pass resets every call). */
#define IBEX_CUDA_MAX_MARKS 8192

static inline ibex_cuda_ctx *ibex_cuda_ctx_of(ibex_backend *be) { return (ibex_cuda_ctx *)be->ctx; }

/* ---- cuBLAS, opened at run time (cuda_cublas.cu) ---- */

/* The cuBLAS functions the backend calls; valid after ibex_cuda_cublas_load succeeded. */
typedef struct ibex_cublas_api {
    cublasStatus_t (*create)(cublasHandle_t *h);
    cublasStatus_t (*destroy)(cublasHandle_t h);
    cublasStatus_t (*set_stream)(cublasHandle_t h, cudaStream_t s);
    cublasStatus_t (*set_workspace)(cublasHandle_t h, void *p, size_t bytes);
    cublasStatus_t (*set_math_mode)(cublasHandle_t h, cublasMath_t m);
    const char *(*status_string)(cublasStatus_t s);
    cublasStatus_t (*gemm_ex)(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                              cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                              cublasComputeType_t comp, cublasGemmAlgo_t algo);
} ibex_cublas_api;
extern ibex_cublas_api ibex_cublas;

/* Opens libcublas.so.13 (kernels/cuda/cuda_libs.h says where it looks) and fills
 * ibex_cublas, once per process; thread-safe. IBEX_ERR_UNSUPPORTED with err naming the
 * library when it cannot. */
ibex_status ibex_cuda_cublas_load(ibex_err *err);
/* The file cuBLAS was loaded from ("" before a successful load). */
const char *ibex_cuda_cublas_path(void);

/* ---- errors (cuda_backend.cu) ---- */

/* Records "stmt failed: why (in func, file:line)" as the sticky error if none is recorded
 * yet, copies it into err (may be NULL), clears the runtime's last-error state and
 * returns st. */
ibex_status ibex_cuda_fail(ibex_cuda_ctx *ctx, ibex_err *err, ibex_status st, const char *stmt,
                           const char *func, const char *file, int line, const char *why);

/* Records a printf-style sticky error (first one wins) for problems that are not CUDA
 * calls failing: an unsupported type or head_dim. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void ibex_cuda_record(ibex_cuda_ctx *ctx, ibex_status st, const char *fmt, ...);

static inline ibex_status ibex_cuda_check(ibex_cuda_ctx *ctx, ibex_err *err, cudaError_t e,
                                          const char *stmt, const char *func, const char *file,
                                          int line) {
    if (e == cudaSuccess) return IBEX_OK;
    return ibex_cuda_fail(ctx, err, IBEX_ERR_BACKEND, stmt, func, file, line, cudaGetErrorString(e));
}

static inline ibex_status ibex_cublas_check(ibex_cuda_ctx *ctx, ibex_err *err, cublasStatus_t s,
                                            const char *stmt, const char *func, const char *file,
                                            int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return IBEX_OK;
    return ibex_cuda_fail(ctx, err, IBEX_ERR_BACKEND, stmt, func, file, line,
                          ibex_cublas.status_string ? ibex_cublas.status_string(s) : "cuBLAS error");
}

/* The check macros. Each evaluates stmt once; on failure it records the sticky error
 * (statement text, function, file, line, CUDA/cuBLAS error string) and returns:
 *   IBEX_CUDA_CHECK(ctx, err, stmt)          returns IBEX_ERR_BACKEND with err filled
 *   IBEX_CUDA_CHECK_RET(ctx, err, stmt, ret) returns ret with err filled (pointer results)
 *   IBEX_CUDA_CHECK_OP(ctx, stmt)            returns from a void op
 *   IBEX_CUDA_CHECK_LAUNCH(ctx, kernel)      cudaGetLastError() after a launch, void op
 * and the IBEX_CUBLAS_ twins for cublasStatus_t. IBEX_CUDA_TRY evaluates to the status. */
#define IBEX_CUDA_TRY(ctx, err, stmt) \
    ibex_cuda_check((ctx), (err), (stmt), #stmt, __func__, __FILE__, __LINE__)
#define IBEX_CUBLAS_TRY(ctx, err, stmt) \
    ibex_cublas_check((ctx), (err), (stmt), #stmt, __func__, __FILE__, __LINE__)

#define IBEX_CUDA_CHECK(ctx, err, stmt) \
    do { if (IBEX_CUDA_TRY(ctx, err, stmt) != IBEX_OK) return IBEX_ERR_BACKEND; } while (0)
#define IBEX_CUDA_CHECK_RET(ctx, err, stmt, ret) \
    do { if (IBEX_CUDA_TRY(ctx, err, stmt) != IBEX_OK) return ret; } while (0)
#define IBEX_CUDA_CHECK_OP(ctx, stmt) \
    do { if (IBEX_CUDA_TRY(ctx, NULL, stmt) != IBEX_OK) return; } while (0)
#define IBEX_CUDA_CHECK_LAUNCH(ctx, kernel)                                                   \
    do {                                                                                      \
        (ctx)->cnt.launches++;                                                                \
        if (ibex_cuda_check((ctx), NULL, cudaGetLastError(), "launch of " #kernel, __func__, \
                            __FILE__, __LINE__) != IBEX_OK)                                   \
            return;                                                                           \
    } while (0)

#define IBEX_CUBLAS_CHECK(ctx, err, stmt) \
    do { if (IBEX_CUBLAS_TRY(ctx, err, stmt) != IBEX_OK) return IBEX_ERR_BACKEND; } while (0)
#define IBEX_CUBLAS_CHECK_OP(ctx, stmt) \
    do { if (IBEX_CUBLAS_TRY(ctx, NULL, stmt) != IBEX_OK) return; } while (0)

/* Makes the backend's device current for the calling thread (cheap when it already is):
 * a stream can only take work from a thread whose current device is its own. */
static inline cudaError_t ibex_cuda_enter(const ibex_cuda_ctx *ctx) {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur == ctx->device) return cudaSuccess;
    return cudaSetDevice(ctx->device);
}

/* Waits for the backend's stream, counted as a host sync. */
static inline cudaError_t ibex_cuda_stream_sync(ibex_cuda_ctx *ctx) {
    ctx->cnt.syncs++;
    return cudaStreamSynchronize(ctx->stream);
}

/* ---- memory (cuda_backend.cu) ---- */

/* A zeroed (stream-ordered memset) device buffer of bytes, tracked under kind, or NULL
 * with err set (IBEX_ERR_NOMEM when the device is full; that is not made sticky, the
 * caller decides). */
void *ibex_cuda_buf_alloc(ibex_cuda_ctx *ctx, size_t bytes, ibex_buf_kind kind, bool weight,
                          ibex_err *err);
/* Frees a tracked buffer after the stream drains. Returns false if p is not tracked. */
bool ibex_cuda_buf_free(ibex_cuda_ctx *ctx, void *p);
/* The op scratch buffer, grown to at least bytes (IBEX_BUF_WORKSPACE). Growing waits for
 * the stream, since queued ops may still use the old buffer. NULL with a sticky error if
 * the device is full. */
void *ibex_cuda_scratch(ibex_cuda_ctx *ctx, size_t bytes);

/* Blocks for a 1-D element-wise launch of n items with `threads` per block: enough to fill
 * the GPU several times, and the kernels stride over the rest. */
static inline unsigned ibex_cuda_grid_1d(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > (1 << 20)) b = 1 << 20;
    return (unsigned)b;
}

/* ---- device helpers ---- */

#define IBEX_FULL_MASK 0xffffffffu

static __device__ __forceinline__ float ibex_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(IBEX_FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ float ibex_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(IBEX_FULL_MASK, v, o));
    return v;
}

/* Sum over the block, returned to every thread. blockDim.x must be a multiple of 32
 * (≤ 1024) and every thread of the block must call it. The leading barrier makes two calls
 * in a row safe (the second does not overwrite sh while a warp still reads the first). */
static __device__ __forceinline__ float ibex_block_sum(float v) {
    __shared__ float sh[32];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = ibex_warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return ibex_warp_sum(v);
}

/* Max over the block, to every thread; same rules as ibex_block_sum. */
static __device__ __forceinline__ float ibex_block_max(float v) {
    __shared__ float sh[32];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = ibex_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return ibex_warp_max(v);
}

/* Exact widening of IEEE half and bfloat16 bit patterns. */
static __device__ __forceinline__ float ibex_dev_f16(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}
static __device__ __forceinline__ float ibex_dev_bf16(uint16_t h) {
    return __uint_as_float((uint32_t)h << 16);
}

#endif
