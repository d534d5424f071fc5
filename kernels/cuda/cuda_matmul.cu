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
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_elementwise.cuh"
#include "kernels/cuda/cuda_matmul.cuh"
#include "kernels/cuda/cuda_matmul_q.cuh"

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

/* acc[t] = row wr · x[t] for t < T, summed over the warp (every lane gets the sums).
 * Lane l takes the 16-byte chunks l, l+32, l+64, ... of the row, four chunks' loads
 * issued before their math while four remain. Weights are read once, so they are loaded
 * with the evict-first hint (__ldcs) and leave L1 to x, which every warp reads. */
template <bool BF16>
static __device__ __forceinline__ void mv_row(float acc[IBEX_CUDA_MATVEC_MAX_T], const uint4 *__restrict__ wr,
                                              const float *__restrict__ x, int T, int n_in, int lane) {
    const int n_chunks = n_in >> 3;
#pragma unroll
    for (int t = 0; t < IBEX_CUDA_MATVEC_MAX_T; t++) acc[t] = 0.0f;
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
    /* T is the same for the whole warp: no divergence, and batch 1 pays one reduction */
#pragma unroll
    for (int t = 0; t < IBEX_CUDA_MATVEC_MAX_T; t++)
        if (t < T) acc[t] = ibex_warp_sum(acc[t]);
}

/* acc[lane] with constant indices, so acc stays in registers. */
static __device__ __forceinline__ float mv_pick(const float acc[IBEX_CUDA_MATVEC_MAX_T], int lane) {
    return lane == 0 ? acc[0] : lane == 1 ? acc[1] : lane == 2 ? acc[2] : acc[3];
}

/* Where the rows of one matvec go: row r < end[0] to y[0] (rows of n[0]), r < end[1] to
 * y[1] at r − end[0], ... (a concatenated Q|K|V weight written to three buffers). */
struct mv_out {
    float *y[3];
    int end[3];
    int n[3];
    int n_seg;
};

enum { MV_STORE, MV_ADD, MV_SWIGLU };

/* One warp per output row r (block = MV_ROWS warps, grid = ceil(rows / MV_ROWS)); lane t
 * stores token t's value (t < T).
 *  MV_STORE  y_seg[t][r'] = w_r · x_t, through the segments of out;
 *  MV_ADD    y[t][r] += w_r · x_t (the residual add; each element has one writer);
 *  MV_SWIGLU y[t][r] = silu(w_r · x_t) · (w_{r+n_ffn} · x_t), rows = n_ffn: gate row r
 *            and up row r of a concatenated gate|up weight, in one warp.
 * Requires n_in % 8 == 0 and 16-byte aligned w and x (the host checks). */
template <bool BF16, int MODE>
static __global__ void __launch_bounds__(MV_THREADS)
matvec_kernel(mv_out out, const float *__restrict__ x, const uint16_t *__restrict__ w, int T, int n_in,
              int rows) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * MV_ROWS + (threadIdx.x >> 5);
    if (r >= rows) return; /* whole warps leave; no block barrier follows */
    float acc[IBEX_CUDA_MATVEC_MAX_T];
    mv_row<BF16>(acc, reinterpret_cast<const uint4 *>(w + (int64_t)r * n_in), x, T, n_in, lane);
    if (MODE == MV_SWIGLU) {
        float up[IBEX_CUDA_MATVEC_MAX_T];
        mv_row<BF16>(up, reinterpret_cast<const uint4 *>(w + (int64_t)(r + rows) * n_in), x, T, n_in, lane);
        if (lane < T) {
            const float g = mv_pick(acc, lane);
            out.y[0][(int64_t)lane * rows + r] = g / (1.0f + expf(-g)) * mv_pick(up, lane);
        }
        return;
    }
    if (lane < T) {
        int seg = 0, base = 0;
        while (seg + 1 < out.n_seg && r >= out.end[seg]) base = out.end[seg++];
        float *y = out.y[seg] + (int64_t)lane * out.n[seg] + (r - base);
        const float v = mv_pick(acc, lane);
        if (MODE == MV_ADD)
            *y += v;
        else
            *y = v;
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

template <int MODE>
static void launch_matvec(ibex_cuda_ctx *ctx, const mv_out &o, const float *x, const void *w, ibex_type wtype,
                          int T, int n_in, int rows) {
    const unsigned grid = (unsigned)((rows + MV_ROWS - 1) / MV_ROWS);
    if (wtype == IBEX_TYPE_BF16)
        matvec_kernel<true, MODE><<<grid, MV_THREADS, 0, ctx->stream>>>(o, x, (const uint16_t *)w, T, n_in, rows);
    else
        matvec_kernel<false, MODE><<<grid, MV_THREADS, 0, ctx->stream>>>(o, x, (const uint16_t *)w, T, n_in, rows);
    IBEX_CUDA_CHECK_LAUNCH(ctx, matvec_kernel);
}

/* y (+)= x · Wᵀ: the matvec or cuBLAS path; beta = 1 adds into y. */
static void mm(ibex_cuda_ctx *ctx, float *y, const float *x, const void *w, ibex_type wtype, int T, int n_in,
               int n_out, bool add) {
    const size_t y_bytes = (size_t)T * (size_t)n_out * sizeof(float);
    if (ibex_cuda_q_type(wtype)) { /* Q8_0 / Q4_0: cuda_matmul_q.cu */
        ibex_cuda_matmul_q(ctx, y, x, w, wtype, T, n_in, n_out, add);
        return;
    }
    const ibex_cuda_mm_path path = ibex_cuda_matmul_path(wtype, T, n_in, w, x);
    if (path == IBEX_CUDA_MM_UNSUPPORTED) {
        ibex_cuda_record(ctx, IBEX_ERR_UNSUPPORTED,
                         "CUDA matmul: weight type %s is not supported (F32, F16, BF16)", ibex_type_name(wtype));
        IBEX_CUDA_CHECK_OP(ctx, cudaMemsetAsync(y, 0xff, y_bytes, ctx->stream)); /* NaN */
        return;
    }
    if (n_in <= 0) { /* empty sums */
        if (!add) IBEX_CUDA_CHECK_OP(ctx, cudaMemsetAsync(y, 0, y_bytes, ctx->stream));
        return;
    }
    if (path == IBEX_CUDA_MM_MATVEC) {
        mv_out o;
        memset(&o, 0, sizeof o);
        o.y[0] = y, o.end[0] = n_out, o.n[0] = n_out, o.n_seg = 1;
        if (add)
            launch_matvec<MV_ADD>(ctx, o, x, w, wtype, T, n_in, n_out);
        else
            launch_matvec<MV_STORE>(ctx, o, x, w, wtype, T, n_in, n_out);
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
    const float alpha = 1.0f, beta = add ? 1.0f : 0.0f;
    ctx->cnt.launches++;
    IBEX_CUBLAS_CHECK_OP(ctx, ibex_cublas.gemm_ex(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &alpha, w, ab,
                                                  n_in, b, ab, n_in, &beta, y, CUDA_R_32F, n_out, compute,
                                                  CUBLAS_GEMM_DEFAULT));
}

static size_t row_bytes(ibex_type t, int n_in) { return ibex_type_row_bytes(t, n_in); }

extern "C" void ibex_cuda_matmul(ibex_backend *be, float *y, const float *x, const void *w,
                                 ibex_type wtype, int T, int n_in, int n_out) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || n_out <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    mm(ctx, y, x, w, wtype, T, n_in, n_out, false);
}

extern "C" void ibex_cuda_matmul_add(ibex_backend *be, float *y, const float *x, const void *w,
                                     ibex_type wtype, int T, int n_in, int n_out) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || n_out <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    mm(ctx, y, x, w, wtype, T, n_in, n_out, true);
}

/* One matvec launch when every segment starts 16-byte aligned; else a matmul per segment. */
extern "C" void ibex_cuda_matmul_split(ibex_backend *be, float *const *ys, const int *n_outs, int n_split,
                                       const float *x, const void *w, ibex_type wtype, int T, int n_in) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || n_split <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    const size_t rb = row_bytes(wtype, n_in);
    bool one = n_split <= 3 && ibex_cuda_matmul_path(wtype, T, n_in, w, x) == IBEX_CUDA_MM_MATVEC && n_in > 0;
    mv_out o;
    memset(&o, 0, sizeof o);
    int rows = 0;
    for (int s = 0; s < n_split && one; s++) {
        if ((rb * (size_t)rows) % 16 != 0) one = false;
        rows += n_outs[s];
        o.y[s] = ys[s], o.end[s] = rows, o.n[s] = n_outs[s];
    }
    if (one) {
        o.n_seg = n_split;
        if (rows > 0) launch_matvec<MV_STORE>(ctx, o, x, w, wtype, T, n_in, rows);
        return;
    }
    size_t off = 0;
    for (int s = 0; s < n_split; s++) {
        if (n_outs[s] > 0) mm(ctx, ys[s], x, (const char *)w + off, wtype, T, n_in, n_outs[s], false);
        off += rb * (size_t)n_outs[s];
    }
}

extern "C" void ibex_cuda_matmul_swiglu(ibex_backend *be, float *y, float *tmp, const float *x, const void *w,
                                        ibex_type wtype, int T, int n_in, int n_ffn) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || n_ffn <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    const size_t rb = row_bytes(wtype, n_in);
    const void *up = (const char *)w + rb * (size_t)n_ffn;
    if (n_in > 0 && ibex_cuda_matmul_path(wtype, T, n_in, w, x) == IBEX_CUDA_MM_MATVEC &&
        ((uintptr_t)up & 15) == 0) {
        mv_out o;
        memset(&o, 0, sizeof o);
        o.y[0] = y, o.end[0] = n_ffn, o.n[0] = n_ffn, o.n_seg = 1;
        launch_matvec<MV_SWIGLU>(ctx, o, x, w, wtype, T, n_in, n_ffn);
        return;
    }
    mm(ctx, y, x, w, wtype, T, n_in, n_ffn, false);
    mm(ctx, tmp, x, up, wtype, T, n_in, n_ffn, false);
    ibex_cuda_silu_mul(be, y, y, tmp, (int64_t)T * n_ffn);
}
