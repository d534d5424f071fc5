/* cuda_matmul.cu — y[T][n_out] = x[T][n_in] · Wᵀ on the GPU, W row-major [n_out][n_in] of
 * type F32, F16 or BF16, x and y F32.
 *
 * Two paths (ibex_cuda_matmul_path decides; the tests call it to exercise both):
 *  - MATVEC, for decode-sized T (1..4) with F16/BF16 weights: a hand-written kernel, one
 *    warp per weight row. At T ≤ 4 each weight is used at most 4 times, so the op is bound
 *    by HBM bandwidth, not by tensor-core FLOPs; what matters is streaming W with wide
 *    (128-bit, 8 weights) loads and several loads in flight per lane. x stays F32 and the
 *    sums are F32, so decode matches the CPU to rounding (cuBLAS would need x rounded to
 *    the weight type first). It needs n_in % 8 == 0 and 16-byte aligned W and x.
 *  - CUBLAS, for everything else: cublasGemmEx with A = W (op T, lda n_in), B = x (op N,
 *    ldb n_in), C = y (ldc n_out), m = n_out, n = T, k = n_in, i.e. column-major
 *    yᵀ[n_out][T] = W · xᵀ, which is row-major y = x · Wᵀ. F16/BF16 weights: x is first
 *    converted (round to nearest even) into the op scratch as the weight type, and the GEMM
 *    runs on tensor cores with F32 accumulation (CUBLAS_COMPUTE_32F). F32 weights:
 *    CUBLAS_COMPUTE_32F_PEDANTIC, plain F32 FMAs with no TF32 or emulation, so the result
 *    agrees with the CPU to ~1e-6. */
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_matmul.cuh"

#define MV_ROWS 4 /* weight rows per block, one warp each */
#define MV_THREADS (MV_ROWS * 32)
#define CONV_THREADS 256

/* The 8 weights of a 16-byte chunk, widened exactly; element 2i is the low half of word i
 * (little-endian). */
template <bool BF16>
static __device__ __forceinline__ void mv_unpack(const uint4 u, float f[8]) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (BF16) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        } else {
            f[2 * i] = ibex_dev_f16((uint16_t)(w[i] & 0xffffu));
            f[2 * i + 1] = ibex_dev_f16((uint16_t)(w[i] >> 16));
        }
    }
}

/* acc[t] += the 8 weights of chunk c · x[t][8c .. 8c+7], for t < T. */
template <bool BF16>
static __device__ __forceinline__ void mv_chunk(float acc[IBEX_CUDA_MATVEC_MAX_T], const uint4 u,
                                                const float *__restrict__ x, int T, int n_in, int c) {
    float f[8];
    mv_unpack<BF16>(u, f);
#pragma unroll
    for (int t = 0; t < IBEX_CUDA_MATVEC_MAX_T; t++) {
        if (t < T) {
            const float4 *xr = reinterpret_cast<const float4 *>(x + (int64_t)t * n_in) + 2 * c;
            const float4 a = __ldg(xr), b = __ldg(xr + 1);
            float s = acc[t];
            s = fmaf(f[0], a.x, s);
            s = fmaf(f[1], a.y, s);
            s = fmaf(f[2], a.z, s);
            s = fmaf(f[3], a.w, s);
            s = fmaf(f[4], b.x, s);
            s = fmaf(f[5], b.y, s);
            s = fmaf(f[6], b.z, s);
            s = fmaf(f[7], b.w, s);
            acc[t] = s;
        }
    }
}

/* One warp per weight row r (block = MV_ROWS warps, grid = ceil(n_out / MV_ROWS)). Lane l
 * takes the 16-byte chunks l, l+32, l+64, ... of the row, four chunks' loads issued
 * before their math while four remain, then a butterfly sum. Weights are read once, so
 * they are loaded with the evict-first hint (__ldcs) and leave L1 to x, which every warp
 * reads. Requires n_in % 8 == 0 and
 * 16-byte aligned w and x (the host checks). y[t][r] for t < T. */
template <bool BF16>
static __global__ void __launch_bounds__(MV_THREADS)
matvec_kernel(float *__restrict__ y, const float *__restrict__ x, const uint16_t *__restrict__ w,
              int T, int n_in, int n_out) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * MV_ROWS + (threadIdx.x >> 5);
    if (r >= n_out) return; /* whole warps leave; no block barrier follows */
    const uint4 *wr = reinterpret_cast<const uint4 *>(w + (int64_t)r * n_in);
    const int n_chunks = n_in >> 3;
    float acc[IBEX_CUDA_MATVEC_MAX_T] = {0.0f, 0.0f, 0.0f, 0.0f};
    int c = lane;
    for (; c + 96 < n_chunks; c += 128) {
        const uint4 u0 = __ldcs(wr + c), u1 = __ldcs(wr + c + 32), u2 = __ldcs(wr + c + 64),
                    u3 = __ldcs(wr + c + 96);
        mv_chunk<BF16>(acc, u0, x, T, n_in, c);
        mv_chunk<BF16>(acc, u1, x, T, n_in, c + 32);
        mv_chunk<BF16>(acc, u2, x, T, n_in, c + 64);
        mv_chunk<BF16>(acc, u3, x, T, n_in, c + 96);
    }
    for (; c < n_chunks; c += 32) mv_chunk<BF16>(acc, __ldcs(wr + c), x, T, n_in, c);
#pragma unroll
    for (int t = 0; t < IBEX_CUDA_MATVEC_MAX_T; t++) acc[t] = ibex_warp_sum(acc[t]);
    if (lane < T) {
        /* lane t stores row r of token t; select with constant indices so acc stays in registers */
        const float v = lane == 0 ? acc[0] : lane == 1 ? acc[1] : lane == 2 ? acc[2] : acc[3];
        y[(int64_t)lane * n_out + r] = v;
    }
}

static __global__ void __launch_bounds__(CONV_THREADS)
to_f16_kernel(__half *__restrict__ dst, const float *__restrict__ src, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * CONV_THREADS;
    for (int64_t i = (int64_t)blockIdx.x * CONV_THREADS + threadIdx.x; i < n; i += stride)
        dst[i] = __float2half_rn(src[i]);
}

static __global__ void __launch_bounds__(CONV_THREADS)
to_bf16_kernel(__nv_bfloat16 *__restrict__ dst, const float *__restrict__ src, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * CONV_THREADS;
    for (int64_t i = (int64_t)blockIdx.x * CONV_THREADS + threadIdx.x; i < n; i += stride)
        dst[i] = __float2bfloat16_rn(src[i]);
}

extern "C" ibex_cuda_mm_path ibex_cuda_matmul_path(ibex_type wtype, int T, int n_in, const void *w,
                                                   const float *x) {
    if (wtype != IBEX_TYPE_F32 && wtype != IBEX_TYPE_F16 && wtype != IBEX_TYPE_BF16)
        return IBEX_CUDA_MM_UNSUPPORTED;
    if (wtype != IBEX_TYPE_F32 && T >= 1 && T <= IBEX_CUDA_MATVEC_MAX_T && n_in > 0 && n_in % 8 == 0 &&
        ((uintptr_t)w & 15) == 0 && ((uintptr_t)x & 15) == 0)
        return IBEX_CUDA_MM_MATVEC;
    return IBEX_CUDA_MM_CUBLAS;
}

extern "C" void ibex_cuda_matmul(ibex_backend *be, float *y, const float *x, const void *w,
                                 ibex_type wtype, int T, int n_in, int n_out) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || n_out <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    const size_t y_bytes = (size_t)T * (size_t)n_out * sizeof(float);
    const ibex_cuda_mm_path path = ibex_cuda_matmul_path(wtype, T, n_in, w, x);
    if (path == IBEX_CUDA_MM_UNSUPPORTED) {
        ibex_cuda_record(ctx, IBEX_ERR_UNSUPPORTED,
                         "CUDA matmul: weight type %s is not supported (F32, F16, BF16)", ibex_type_name(wtype));
        IBEX_CUDA_CHECK_OP(ctx, cudaMemsetAsync(y, 0xff, y_bytes, ctx->stream)); /* NaN */
        return;
    }
    if (n_in <= 0) { /* empty sums */
        IBEX_CUDA_CHECK_OP(ctx, cudaMemsetAsync(y, 0, y_bytes, ctx->stream));
        return;
    }
    if (path == IBEX_CUDA_MM_MATVEC) {
        const unsigned grid = (unsigned)((n_out + MV_ROWS - 1) / MV_ROWS);
        if (wtype == IBEX_TYPE_BF16)
            matvec_kernel<true><<<grid, MV_THREADS, 0, ctx->stream>>>(y, x, (const uint16_t *)w, T, n_in, n_out);
        else
            matvec_kernel<false><<<grid, MV_THREADS, 0, ctx->stream>>>(y, x, (const uint16_t *)w, T, n_in, n_out);
        IBEX_CUDA_CHECK_LAUNCH(ctx, matvec_kernel);
        return;
    }
    const void *b = x;
    cudaDataType_t ab = CUDA_R_32F;
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F_PEDANTIC;
    if (wtype != IBEX_TYPE_F32) {
        const int64_t n = (int64_t)T * n_in;
        void *s = ibex_cuda_scratch(ctx, (size_t)n * 2);
        if (!s) return; /* sticky error recorded */
        const unsigned grid = ibex_cuda_grid_1d(n, CONV_THREADS);
        if (wtype == IBEX_TYPE_F16) {
            to_f16_kernel<<<grid, CONV_THREADS, 0, ctx->stream>>>((__half *)s, x, n);
            IBEX_CUDA_CHECK_LAUNCH(ctx, to_f16_kernel);
            ab = CUDA_R_16F;
        } else {
            to_bf16_kernel<<<grid, CONV_THREADS, 0, ctx->stream>>>((__nv_bfloat16 *)s, x, n);
            IBEX_CUDA_CHECK_LAUNCH(ctx, to_bf16_kernel);
            ab = CUDA_R_16BF;
        }
        b = s;
        compute = CUBLAS_COMPUTE_32F;
    }
    const float alpha = 1.0f, beta = 0.0f;
    IBEX_CUBLAS_CHECK_OP(ctx, ibex_cublas.gemm_ex(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &alpha, w, ab,
                                           n_in, b, ab, n_in, &beta, y, CUDA_R_32F, n_out, compute,
                                           CUBLAS_GEMM_DEFAULT));
}
