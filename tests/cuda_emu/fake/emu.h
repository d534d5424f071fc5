/* A CPU emulator of the CUDA subset used by kernels/cuda (verification only, not part of ibex). */
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct uint3e { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };

extern uint3e emu_tid, emu_bid;
extern dim3 emu_bdim, emu_gdim;
#define threadIdx emu_tid
#define blockIdx emu_bid
#define blockDim emu_bdim
#define gridDim emu_gdim

void emu_sync_block(void);
void emu_sync_warp(void);
uint64_t emu_shfl_bits(uint64_t v, int src);
#define __syncthreads() emu_sync_block()
#define __syncwarp(...) emu_sync_warp()
template <class T> static inline T emu_shfl(T v, int src) {
    uint64_t b = 0; memcpy(&b, &v, sizeof v);
    b = emu_shfl_bits(b, src);
    T r; memcpy(&r, &b, sizeof r); return r;
}
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src) { (void)mask; return emu_shfl(v, src & 31); }
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int o) {
    (void)mask; return emu_shfl(v, (int)(emu_tid.x & 31) ^ o);
}
template <class T> static inline T __ldg(const T *p) { return *p; }
template <class T> static inline T __ldcs(const T *p) { return *p; }
template <class T> static inline T __ldcg(const T *p) { return *p; }
/* Blocks run one after another and threads are fibers switched only at barriers and
 * shuffles, so a read-modify-write is atomic as written and every store is visible to
 * every later block: the fence has nothing to order. */
static inline void __threadfence(void) {}
template <class T> static inline T atomicAdd(T *p, T v) { const T old = *p; *p = old + v; return old; }
template <class T> static inline T atomicCAS(T *p, T cmp, T v) { const T old = *p; if (old == cmp) *p = v; return old; }
template <class T> static inline T atomicExch(T *p, T v) { const T old = *p; *p = v; return old; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }

/* half / bfloat16 */
extern "C" { float ibex_f16_to_f32(uint16_t); uint16_t ibex_f32_to_f16(float); float ibex_bf16_to_f32(uint16_t); uint16_t ibex_f32_to_bf16(float); }
struct __half { uint16_t b; };
struct __nv_bfloat16 { uint16_t b; };
static inline __half __ushort_as_half(uint16_t b) { __half h; h.b = b; return h; }
static inline float __half2float(__half h) { return ibex_f16_to_f32(h.b); }
static inline __half __float2half_rn(float f) { __half h; h.b = ibex_f32_to_f16(f); return h; }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { __nv_bfloat16 h; h.b = ibex_f32_to_bf16(f); return h; }
static inline unsigned short __half_as_ushort(__half h) { return h.b; }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.b; }

/* runtime */
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInvalidDevice = 101,
       cudaErrorInvalidConfiguration = 9, cudaErrorInvalidResourceHandle = 400, cudaErrorInsufficientDriver = 35,
       cudaErrorNoDevice = 100 };
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
enum { cudaStreamNonBlocking = 1 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
struct cudaDeviceProp { char name[256]; int major, minor, multiProcessorCount; };
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
enum cudaDeviceAttr { cudaDevAttrMemoryClockRate = 36, cudaDevAttrGlobalMemoryBusWidth = 37 };
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s);
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned f);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaMemGetInfo(size_t *f, size_t *t);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);

/* graphs: a capture records launches, copies, memsets and GEMMs as closures; a launch
 * of the executable graph runs them in order */
typedef struct emu_graph *cudaGraph_t;
typedef struct emu_graph *cudaGraphExec_t;
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1 };
enum { cudaErrorStreamCaptureUnsupported = 900, cudaErrorStreamCaptureInvalidated = 901,
       cudaErrorGraphExecUpdateFailure = 910 };
struct cudaGraphExecUpdateResultInfo { int result; void *errorNode, *errorFromNode; };
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode m);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t e, cudaGraph_t g, cudaGraphExecUpdateResultInfo *info);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);

struct emu_cfg_t { dim3 g, b; size_t smem; };
static inline emu_cfg_t emu_cfg(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = 0) { (void)s; return emu_cfg_t{g, b, smem}; }
void emu_launch(emu_cfg_t c, const std::function<void()> &body);

/* cuBLAS */
typedef struct emu_cublas *cublasHandle_t;
typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType_t;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_PEDANTIC = 69 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0 } cublasMath_t;
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *p, size_t n);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                            cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                            cublasComputeType_t comp, cublasGemmAlgo_t algo);
