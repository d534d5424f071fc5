/* cuda_matmul_q.cu — y[T][n_out] = x[T][n_in] · Wᵀ on the GPU for GGUF's Q8_0 and Q4_0
 * weight rows (32 weights per block: an F16 scale d, then 32 int8 or 16 bytes of 4-bit
 * quants, element j in the low nibble of byte j and element j + 16 in the high one).
 *
 * Design (chosen, not measured: no GPU was lent when this was written):
 *  - Decode (T ≤ IBEX_CUDA_MATVEC_MAX_T, x 16-byte aligned): one warp per weight row, lane
 *    l takes blocks l, l + 32, ...: a warp covers 32 consecutive blocks, 1088 or 576
 *    contiguous bytes. Blocks are 34 or 18 bytes, only 2-byte aligned, so when the rows are
 *    16-byte aligned (n_in a multiple of 256) the warp first copies those bytes into shared
 *    memory with 128-bit loads (evict-first: the weights are read once) and each lane reads
 *    its block from there; otherwise each lane reads its block's 16-bit words directly
 *    (slow: see qmatvec_kernel). The quants are widened to F32 (exact), the block's sum
 *    Σ q·x is an F32 FMA chain against x in F32 (float4 loads, L1-resident: every warp
 *    reads the same x), then scaled by d into the token's accumulator. Why F32 and not
 *    dp4a on int8 activations as llama.cpp does: x is not rounded, so the GPU's decode is
 *    the exact dequantize-then-F32 product up to summation order (the tests hold it to
 *    1e-5 of the dequantized reference), and at T ≤ 4 the 32·T FMAs per 18 bytes stay
 *    under an H100/H200's F32 rate at its HBM bandwidth (T = 1: ~8.5 TFMA/s for 4.8 TB/s
 *    of Q4_0, a quarter of the F32 peak). At T = 4 it would approach the peak: dp4a is
 *    the step to take if a GPU shows the kernel compute-bound there.
 *  - Prefill (T > 4, or x misaligned): the weights are dequantized to F16 chunk by chunk of
 *    rows (at most IBEX_CUDA_Q_CHUNK_BYTES of scratch), x is rounded to F16, and each
 *    chunk is a cublasGemmEx on tensor cores with F32 accumulation, as cuda_matmul.cu does
 *    for F16 weights. d·q rounded to F16 keeps 11 significant bits (Q8_0's products need
 *    up to 19), an error of the size of x's own rounding to F16. */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_matmul.cuh"
#include "kernels/cuda/cuda_matmul_q.cuh"

#define QMV_ROWS 4 /* weight rows per block, one warp each */
#define QMV_THREADS (QMV_ROWS * 32)
#define QDQ_THREADS 256

/* A 16-bit word of a block: from global memory (evict-first, read once) or from the
 * warp's shared-memory copy. */
template <bool SH>
static __device__ __forceinline__ uint16_t q_ld16(const uint16_t *p) {
    if (SH) return *p;
    return __ldcs(p);
}

/* The 32 quants of a block widened to F32, element order; h points at the block's scale. */
template <bool Q8, bool SH>
static __device__ __forceinline__ void qmv_unpack(const uint16_t *__restrict__ h, float f[32]) {
    if (Q8) {
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const uint16_t v = q_ld16<SH>(h + 1 + i);
            f[2 * i] = (float)(int8_t)(v & 0xff);
            f[2 * i + 1] = (float)(int8_t)(v >> 8);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const uint16_t v = q_ld16<SH>(h + 1 + i);
            f[2 * i] = (float)((v & 0xf) - 8);
            f[2 * i + 16] = (float)(((v >> 4) & 0xf) - 8);
            f[2 * i + 1] = (float)(((v >> 8) & 0xf) - 8);
            f[2 * i + 17] = (float)((v >> 12) - 8);
        }
    }
}

/* acc[t] += block b's products with x[t] (t < T); h is the block (scale first). */
template <bool Q8, bool SH>
static __device__ __forceinline__ void qmv_block(float acc[IBEX_CUDA_MATVEC_MAX_T], const uint16_t *h,
                                                 const float *__restrict__ x, int T, int n_in, int b) {
    const float d = ibex_dev_f16(q_ld16<SH>(h));
    float f[32];
    qmv_unpack<Q8, SH>(h, f);
#pragma unroll
    for (int t = 0; t < IBEX_CUDA_MATVEC_MAX_T; t++) {
        if (t < T) {
            const float4 *xr = reinterpret_cast<const float4 *>(x + (int64_t)t * n_in + 32 * b);
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const float4 a = __ldg(xr + i);
                s = fmaf(f[4 * i], a.x, s);
                s = fmaf(f[4 * i + 1], a.y, s);
                s = fmaf(f[4 * i + 2], a.z, s);
                s = fmaf(f[4 * i + 3], a.w, s);
            }
            acc[t] = fmaf(d, s, acc[t]);
        }
    }
}

/* One warp per row r (grid ceil(n_out / QMV_ROWS)); lane t < T writes token t's value
 * (add: y += ). Rows are rb bytes, x 16-byte aligned. VEC (rows 16-byte aligned: w
 * aligned and n_in a multiple of 256): the warp copies 32 blocks at a time (576 or 1088
 * contiguous bytes) into shared memory with coalesced 128-bit loads, then lane l works on
 * block l of the copy. Else lane l reads block l's 16-bit words straight from global
 * memory (the first version; on an H200 it streamed 310–810 GB/s against F16's
 * 2450–2980 GB/s for the same shapes: a warp's 16-bit loads touch 18–34 bytes apart). */
template <bool Q8, bool VEC>
static __global__ void __launch_bounds__(QMV_THREADS)
qmatvec_kernel(float *__restrict__ y, const float *__restrict__ x, const uint8_t *__restrict__ w, size_t rb, int T,
               int n_in, int n_out, int add) {
    constexpr int bs = Q8 ? 34 : 18;
    constexpr int tile_vec = 32 * bs / 16; /* uint4 per 32-block tile */
    __shared__ uint4 sh[QMV_ROWS][tile_vec];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int r = blockIdx.x * QMV_ROWS + warp;
    if (r >= n_out) return; /* whole warps leave; only __syncwarp follows */
    const int nb = n_in / 32;
    const uint8_t *row = w + (size_t)r * rb;
    float acc[IBEX_CUDA_MATVEC_MAX_T];
#pragma unroll
    for (int t = 0; t < IBEX_CUDA_MATVEC_MAX_T; t++) acc[t] = 0.0f;
    if (VEC) {
        uint4 *s = sh[warp];
        const uint8_t *sb = reinterpret_cast<const uint8_t *>(s);
        for (int b0 = 0; b0 < nb; b0 += 32) {
            const int nblk = nb - b0 < 32 ? nb - b0 : 32;
            /* nblk·bs is a multiple of 16 here: every tile but the last holds 32 blocks, and
             * the last ends at the row's end, which is 16-byte aligned */
            const int nvec = nblk * bs / 16;
            const uint4 *src = reinterpret_cast<const uint4 *>(row + (size_t)b0 * bs);
            for (int i = lane; i < nvec; i += 32) s[i] = __ldcs(src + i);
            __syncwarp();
            if (T == 1) { /* lane l takes block l of the tile */
                if (lane < nblk)
                    qmv_block<Q8, true>(acc, reinterpret_cast<const uint16_t *>(sb + lane * bs), x, T, n_in, b0 + lane);
                __syncwarp();
                continue;
            }
            /* T > 1: lane l takes element l of every block of the tile, so the warp's x loads
             * are 32 consecutive floats (one L1 wavefront; with a lane per block each load
             * touches 32 lines, which made T = 4 cost 3× T = 1), and its shared-memory reads
             * fall in one block. On an H200 this halved T = 4 (74 → 40 µs, 4096², Q8_0) but
             * made T = 1 slower (23 → 38 µs), hence the switch. */
            for (int j = 0; j < nblk; j++) {
                const uint8_t *blk = sb + j * bs;
                const float d = ibex_dev_f16((uint16_t)(blk[0] | (blk[1] << 8)));
                int q;
                if (Q8)
                    q = (int8_t)blk[2 + lane];
                else
                    q = (lane < 16 ? (blk[2 + lane] & 15) : (blk[2 + lane - 16] >> 4)) - 8;
                const float wv = d * (float)q; /* exact: 11 × 8 significant bits */
                const int64_t e = (int64_t)32 * (b0 + j) + lane;
#pragma unroll
                for (int t = 0; t < IBEX_CUDA_MATVEC_MAX_T; t++)
                    if (t < T) acc[t] = fmaf(wv, __ldg(x + (int64_t)t * n_in + e), acc[t]);
            }
            __syncwarp();
        }
    } else {
        for (int b = lane; b < nb; b += 32)
            qmv_block<Q8, false>(acc, reinterpret_cast<const uint16_t *>(row + (size_t)b * bs), x, T, n_in, b);
    }
#pragma unroll
    for (int t = 0; t < IBEX_CUDA_MATVEC_MAX_T; t++)
        if (t < T) acc[t] = ibex_warp_sum(acc[t]);
    if (lane < T) {
        const float v = lane == 0 ? acc[0] : lane == 1 ? acc[1] : lane == 2 ? acc[2] : acc[3];
        float *yo = y + (int64_t)lane * n_out + r;
        if (add)
            *yo += v;
        else
            *yo = v;
    }
}

/* dst[i][k] = F16(d·q) for rows i < rows of w (rows of rb bytes, n_in elements); one
 * thread per element, grid-strided, so the F16 stores of a warp are contiguous (the
 * first version, a thread per block writing 32 halves 64 bytes apart from its
 * neighbour's, made prefill 6.5× slower than F16's on an H200). */
static __global__ void __launch_bounds__(QDQ_THREADS)
qdequant_f16_kernel(__half *__restrict__ dst, const uint8_t *__restrict__ w, size_t rb, int etype, int n_in,
                    int64_t rows) {
    const int64_t n = rows * n_in, stride = (int64_t)gridDim.x * QDQ_THREADS;
    for (int64_t i = (int64_t)blockIdx.x * QDQ_THREADS + threadIdx.x; i < n; i += stride) {
        const int64_t r = i / n_in;
        const int k = (int)(i - r * n_in);
        dst[i] = __float2half_rn(ibex_dev_q_elem(w + r * rb, etype, 0, n_in, k));
    }
}

static __global__ void __launch_bounds__(QDQ_THREADS)
q_x_to_f16_kernel(__half *__restrict__ dst, const float *__restrict__ src, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * QDQ_THREADS;
    for (int64_t i = (int64_t)blockIdx.x * QDQ_THREADS + threadIdx.x; i < n; i += stride)
        dst[i] = __float2half_rn(src[i]);
}

extern "C" void ibex_cuda_matmul_q(ibex_cuda_ctx *ctx, float *y, const float *x, const void *w, ibex_type wtype,
                                   int T, int n_in, int n_out, bool add) {
    const size_t y_bytes = (size_t)T * (size_t)n_out * sizeof(float);
    const size_t rb = ibex_type_row_bytes(wtype, n_in);
    if (!ibex_cuda_q_type(wtype) || n_in <= 0 || n_in % 32 != 0 || rb == 0 || ((uintptr_t)w & 1) != 0) {
        ibex_cuda_record(ctx, IBEX_ERR_UNSUPPORTED,
                         "CUDA matmul: %s weights need rows of whole 32-element blocks, 2-byte aligned "
                         "(n_in %d)",
                         ibex_type_name(wtype), n_in);
        IBEX_CUDA_CHECK_OP(ctx, cudaMemsetAsync(y, 0xff, y_bytes, ctx->stream)); /* NaN */
        return;
    }
    if (T <= IBEX_CUDA_MATVEC_MAX_T && ((uintptr_t)x & 15) == 0) {
        const unsigned grid = (unsigned)((n_out + QMV_ROWS - 1) / QMV_ROWS);
        const uint8_t *wb = (const uint8_t *)w;
        const int a = add ? 1 : 0;
        const bool vec = ((uintptr_t)w & 15) == 0 && rb % 16 == 0;
        if (wtype == IBEX_TYPE_Q8_0 && vec)
            qmatvec_kernel<true, true><<<grid, QMV_THREADS, 0, ctx->stream>>>(y, x, wb, rb, T, n_in, n_out, a);
        else if (wtype == IBEX_TYPE_Q8_0)
            qmatvec_kernel<true, false><<<grid, QMV_THREADS, 0, ctx->stream>>>(y, x, wb, rb, T, n_in, n_out, a);
        else if (vec)
            qmatvec_kernel<false, true><<<grid, QMV_THREADS, 0, ctx->stream>>>(y, x, wb, rb, T, n_in, n_out, a);
        else
            qmatvec_kernel<false, false><<<grid, QMV_THREADS, 0, ctx->stream>>>(y, x, wb, rb, T, n_in, n_out, a);
        IBEX_CUDA_CHECK_LAUNCH(ctx, qmatvec_kernel);
        return;
    }
    /* prefill: F16 x, then F16 weight chunks through cuBLAS */
    int64_t chunk = (int64_t)(IBEX_CUDA_Q_CHUNK_BYTES / ((size_t)n_in * 2));
    if (chunk < 1) chunk = 1;
    if (chunk > n_out) chunk = n_out;
    const size_t xb = ((size_t)T * (size_t)n_in * 2 + 255) & ~(size_t)255;
    char *s = (char *)ibex_cuda_scratch(ctx, xb + (size_t)chunk * (size_t)n_in * 2);
    if (!s) return; /* sticky error recorded */
    __half *x16 = (__half *)s, *w16 = (__half *)(s + xb);
    const int64_t nx = (int64_t)T * n_in;
    q_x_to_f16_kernel<<<ibex_cuda_grid_1d(nx, QDQ_THREADS), QDQ_THREADS, 0, ctx->stream>>>(x16, x, nx);
    IBEX_CUDA_CHECK_LAUNCH(ctx, q_x_to_f16_kernel);
    const float alpha = 1.0f, beta = add ? 1.0f : 0.0f;
    for (int64_t r0 = 0; r0 < n_out; r0 += chunk) {
        const int64_t rows = n_out - r0 < chunk ? n_out - r0 : chunk;
        qdequant_f16_kernel<<<ibex_cuda_grid_1d(rows * n_in, QDQ_THREADS), QDQ_THREADS, 0, ctx->stream>>>(
            w16, (const uint8_t *)w + (size_t)r0 * rb, rb, (int)wtype, n_in, rows);
        IBEX_CUDA_CHECK_LAUNCH(ctx, qdequant_f16_kernel);
        ctx->cnt.launches++;
        /* column-major yᵀ[n_out][T] rows r0.. = W16[rows][n_in] · x16ᵀ, as cuda_matmul.cu */
        IBEX_CUBLAS_CHECK_OP(ctx, ibex_cublas.gemm_ex(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, T, n_in,
                                                      &alpha, w16, CUDA_R_16F, n_in, x16, CUDA_R_16F, n_in, &beta,
                                                      y + r0, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F,
                                                      CUBLAS_GEMM_DEFAULT));
    }
}
