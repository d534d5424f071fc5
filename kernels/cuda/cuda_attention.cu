/* cuda_attention.cu — causal attention on the GPU for T queries at positions pos0.. of one
 * sequence, over its KV cache read through an ibex_kv_view (block table, or the
 * contiguous fast path), in three forms chosen by set_attention (AUTO: see
 * ibex_cuda_attention_pick):
 *
 *  MATERIALIZED  scores S[n_heads][T][n_keys] (n_keys = pos0 + T) written to the scratch
 *                buffer, keys after pos0 + i set to −inf; a softmax per row; then out = P·V.
 *                The textbook kernel, O(T · n_keys) memory.
 *  PAGED         one warp per (query, head) walks keys 0..pos0+i in steps of 32 with an
 *                online softmax (running max m, running sum s, accumulator rescaled by
 *                e^(m_old − m_new) when the max grows). No scratch; prefill and decode.
 *  SPLIT_K       flash-decoding: the keys of each (query, head) are cut into chunks, one
 *                warp each writes a partial (m, s, acc[head_dim]) to the scratch buffer,
 *                and a reduction kernel combines them: M = max m_j,
 *                out = Σ acc_j·e^(m_j − M) / Σ s_j·e^(m_j − M).
 *
 * Design notes:
 *  1. Query head h reads KV head h / (n_heads / n_kv_heads) (GQA), as the CPU does.
 *  2. A 32-key step: lane j scores key c0 + j against q (held in shared memory), the
 *     warp takes the step's max, each lane's weight p_j = e^(s_j − m) is broadcast with a
 *     shuffle, and lane l accumulates dims l, l+32, ... (≤ 8 of them: head_dim ≤ 256) of
 *     p_j·V[key]. Any head_dim in 1..256 works; float4 loads of K rows when head_dim % 4
 *     == 0 and the pools are 16-byte aligned.
 *  3. The arithmetic depends only on logical key positions, never on where a block lives,
 *     so the paged and contiguous layouts give the same bits.
 *  4. out may alias q: a warp copies its q row to shared memory before anything is written,
 *     and writes only its own row. */
#include "kernels/cuda/cuda_attention.cuh"
#include "kernels/cuda/cuda_common.cuh"

#define ATT_DPL (IBEX_CUDA_ATT_MAX_HEAD_DIM / 32) /* dims per lane */
#define ATT_WARPS 4                               /* warps per block (paged, split_k) */
#define ATT_THREADS (ATT_WARPS * 32)
#define ATT_AUTO_MAX_T 4            /* AUTO: split_k only for decode-sized T ... */
#define ATT_AUTO_MIN_KEYS 256       /* ... over at least this many keys */
#define ATT_SPLIT_MIN_KEYS 64       /* each split walks at least two 32-key steps */
#define ATT_SPLIT_MAX 1024
#define ATT_SPLIT_WARPS_PER_SM 32   /* split_k aims at this many warps per SM */
#define ATT_SCORE_THREADS 128
#define ATT_SOFTMAX_THREADS 256

/* What the kernels need of an ibex_kv_view, plus the precomputed layout facts. */
typedef struct att_kv {
    const float *k, *v;
    const int32_t *table;
    int64_t row; /* floats per token slot: n_kv_heads · head_dim */
    int bs, hd, first_block, group;
    bool contiguous, vec4;
} att_kv;

/* Pool slot of logical token t. */
static __device__ __forceinline__ int64_t att_slot(const att_kv &kv, int t) {
    if (kv.contiguous) return (int64_t)kv.first_block * kv.bs + t;
    return (int64_t)kv.table[t / kv.bs] * kv.bs + t % kv.bs;
}

/* q·k over hd dims; qs in shared memory (broadcast reads), kr a K row in global memory. */
static __device__ __forceinline__ float att_dot(const float *qs, const float *__restrict__ kr, int hd,
                                                bool vec4) {
    if (vec4) {
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (int j = 0; j < hd; j += 4) {
            const float4 a = *reinterpret_cast<const float4 *>(qs + j);
            const float4 b = __ldg(reinterpret_cast<const float4 *>(kr + j));
            s0 = fmaf(a.x, b.x, s0);
            s1 = fmaf(a.y, b.y, s1);
            s2 = fmaf(a.z, b.z, s2);
            s3 = fmaf(a.w, b.w, s3);
        }
        return (s0 + s1) + (s2 + s3);
    }
    float s = 0.0f;
    for (int j = 0; j < hd; j++) s = fmaf(qs[j], __ldg(kr + j), s);
    return s;
}

/* Online softmax of one (query, head) over keys [t0, t1) (design note 2), updating the
 * running max m, sum s and accumulator acc (lane owns dims lane + 32·k). Called by all 32
 * lanes of a warp with the same arguments; qs is the warp's q row in shared memory. */
static __device__ __forceinline__ void att_range(const float *qs, const att_kv &kv, int64_t kv_off, int t0,
                                                 int t1, float scale, int lane, float &m, float &s,
                                                 float acc[ATT_DPL]) {
    for (int c0 = t0; c0 < t1; c0 += 32) {
        const int t = c0 + lane;
        const bool valid = t < t1;
        float sc = -INFINITY;
        long long off = 0; /* this lane's key row, in floats from the pool base */
        if (valid) {
            off = (long long)(att_slot(kv, t) * kv.row + kv_off);
            sc = att_dot(qs, kv.k + off, kv.hd, kv.vec4) * scale;
        }
        const float m_new = fmaxf(m, ibex_warp_max(sc));
        /* first step: nothing accumulated yet, and e^(−inf − x) must not become NaN */
        const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
        const float p = valid ? expf(sc - m_new) : 0.0f;
        s = s * corr + ibex_warp_sum(p);
#pragma unroll
        for (int k = 0; k < ATT_DPL; k++) acc[k] *= corr;
        m = m_new;
        const int n = min(32, t1 - c0); /* warp-uniform */
        for (int j = 0; j < n; j++) {
            const float pj = __shfl_sync(IBEX_FULL_MASK, p, j);
            const long long oj = __shfl_sync(IBEX_FULL_MASK, off, j);
            const float *vr = kv.v + oj;
#pragma unroll
            for (int k = 0; k < ATT_DPL; k++) {
                const int d = lane + 32 * k;
                if (d < kv.hd) acc[k] = fmaf(pj, __ldg(vr + d), acc[k]);
            }
        }
    }
}

/* Copies q row qr (hd floats) into the warp's shared row qs. */
static __device__ __forceinline__ void att_load_q(float *qs, const float *qr, int hd, int lane) {
    for (int d = lane; d < hd; d += 32) qs[d] = qr[d];
    __syncwarp();
}

/* PAGED: one warp per item = i·n_heads + h (so the GQA siblings of a query share a block
 * and its cached K/V lines); grid = ceil(T·n_heads / ATT_WARPS). */
static __global__ void __launch_bounds__(ATT_THREADS)
att_paged_kernel(float *out, const float *q, const att_kv kv, int T, int pos0, int n_heads, float scale) {
    __shared__ __align__(16) float qsh[ATT_WARPS][IBEX_CUDA_ATT_MAX_HEAD_DIM];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int item = blockIdx.x * ATT_WARPS + warp;
    if (item >= T * n_heads) return; /* whole warps leave; only __syncwarp follows */
    const int i = item / n_heads, h = item % n_heads;
    const int hd = kv.hd;
    float *qs = qsh[warp];
    att_load_q(qs, q + (int64_t)item * hd, hd, lane);
    float m = -INFINITY, s = 0.0f, acc[ATT_DPL];
#pragma unroll
    for (int k = 0; k < ATT_DPL; k++) acc[k] = 0.0f;
    att_range(qs, kv, (int64_t)(h / kv.group) * hd, 0, pos0 + i + 1, scale, lane, m, s, acc);
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    float *o = out + (int64_t)item * hd;
#pragma unroll
    for (int k = 0; k < ATT_DPL; k++) {
        const int d = lane + 32 * k;
        if (d < hd) o[d] = acc[k] * inv;
    }
}

/* SPLIT_K, pass 1: one warp per (item, split); 1-D grid of T·n_heads·n_groups blocks, block
 * b holding splits (b % n_groups)·ATT_WARPS + warp of item b / n_groups. Split sp covers
 * keys [sp·chunk, min(n_ctx, (sp+1)·chunk)); splits past the query's n_ctx write nothing
 * (the reduction reads only the first ceil(n_ctx / chunk)). part[item][sp] = (m, s,
 * acc[hd]), stride hd + 2. */
static __global__ void __launch_bounds__(ATT_THREADS)
att_split_kernel(float *__restrict__ part, const float *q, const att_kv kv, int pos0, int n_heads,
                 float scale, int n_splits, int chunk) {
    __shared__ __align__(16) float qsh[ATT_WARPS][IBEX_CUDA_ATT_MAX_HEAD_DIM];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n_groups = (n_splits + ATT_WARPS - 1) / ATT_WARPS;
    const int item = blockIdx.x / n_groups;
    const int sp = (blockIdx.x % n_groups) * ATT_WARPS + warp;
    const int i = item / n_heads, h = item % n_heads;
    const int n_ctx = pos0 + i + 1;
    const int t0 = sp * chunk;
    if (sp >= n_splits || t0 >= n_ctx) return; /* whole warps leave */
    const int t1 = min(n_ctx, t0 + chunk);
    const int hd = kv.hd;
    float *qs = qsh[warp];
    att_load_q(qs, q + (int64_t)item * hd, hd, lane);
    float m = -INFINITY, s = 0.0f, acc[ATT_DPL];
#pragma unroll
    for (int k = 0; k < ATT_DPL; k++) acc[k] = 0.0f;
    att_range(qs, kv, (int64_t)(h / kv.group) * hd, t0, t1, scale, lane, m, s, acc);
    float *pp = part + ((int64_t)item * n_splits + sp) * (hd + 2);
    if (lane == 0) {
        pp[0] = m;
        pp[1] = s;
    }
#pragma unroll
    for (int k = 0; k < ATT_DPL; k++) {
        const int d = lane + 32 * k;
        if (d < hd) pp[2 + d] = acc[k];
    }
}

/* SPLIT_K, pass 2: one warp per item (grid T·n_heads, block 32); wsh holds the weights
 * e^(m_j − M) of the item's splits (n_splits ≤ ATT_SPLIT_MAX). */
static __global__ void __launch_bounds__(32)
att_reduce_kernel(float *out, const float *__restrict__ part, int pos0, int n_heads, int hd, int n_splits,
                  int chunk) {
    __shared__ float wsh[ATT_SPLIT_MAX];
    const int item = blockIdx.x, lane = threadIdx.x;
    const int n_ctx = pos0 + item / n_heads + 1;
    const int nv = min(n_splits, (n_ctx + chunk - 1) / chunk);
    const int64_t stride = hd + 2;
    const float *pp = part + (int64_t)item * n_splits * stride;
    float M = -INFINITY;
    for (int j = lane; j < nv; j += 32) M = fmaxf(M, pp[j * stride]);
    M = ibex_warp_max(M);
    float S = 0.0f;
    for (int j = lane; j < nv; j += 32) {
        const float wj = expf(pp[j * stride] - M);
        wsh[j] = wj;
        S = fmaf(pp[j * stride + 1], wj, S);
    }
    S = ibex_warp_sum(S);
    __syncwarp(); /* wsh written by other lanes */
    const float inv = S > 0.0f ? 1.0f / S : 0.0f;
    for (int d = lane; d < hd; d += 32) {
        float a = 0.0f;
        for (int j = 0; j < nv; j++) a = fmaf(pp[j * stride + 2 + d], wsh[j], a);
        out[(int64_t)item * hd + d] = a * inv;
    }
}

/* MATERIALIZED, pass 1: grid (T·n_heads, ceil(n_keys / ATT_SCORE_THREADS)), one thread per
 * key. S[h][i][j] = scale·q·k_j for j ≤ pos0 + i, −inf after (the causal mask). */
static __global__ void __launch_bounds__(ATT_SCORE_THREADS)
att_scores_kernel(float *__restrict__ S, const float *q, const att_kv kv, int T, int pos0, int n_heads,
                  int n_keys, float scale) {
    __shared__ __align__(16) float qs[IBEX_CUDA_ATT_MAX_HEAD_DIM];
    const int item = blockIdx.x;
    const int i = item / n_heads, h = item % n_heads;
    const int hd = kv.hd;
    for (int d = threadIdx.x; d < hd; d += ATT_SCORE_THREADS) qs[d] = q[(int64_t)item * hd + d];
    __syncthreads();
    const int j = blockIdx.y * ATT_SCORE_THREADS + threadIdx.x;
    if (j >= n_keys) return;
    float sc = -INFINITY;
    if (j <= pos0 + i) {
        const float *kr = kv.k + att_slot(kv, j) * kv.row + (int64_t)(h / kv.group) * hd;
        sc = att_dot(qs, kr, hd, kv.vec4) * scale;
    }
    S[((int64_t)h * T + i) * n_keys + j] = sc;
}

/* MATERIALIZED, pass 2: one block per row r = h·T + i: softmax over the n = pos0 + i + 1
 * visible keys (max-subtracted), zeros after them. */
static __global__ void __launch_bounds__(ATT_SOFTMAX_THREADS)
att_softmax_kernel(float *S, int T, int pos0, int n_keys) {
    const int n = pos0 + (int)(blockIdx.x % T) + 1;
    float *r = S + (int64_t)blockIdx.x * n_keys;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < n; j += ATT_SOFTMAX_THREADS) mx = fmaxf(mx, r[j]);
    mx = ibex_block_max(mx);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += ATT_SOFTMAX_THREADS) {
        const float e = expf(r[j] - mx);
        r[j] = e;
        sum += e;
    }
    sum = ibex_block_sum(sum);
    const float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < n; j += ATT_SOFTMAX_THREADS) r[j] *= inv;
    for (int j = n + threadIdx.x; j < n_keys; j += ATT_SOFTMAX_THREADS) r[j] = 0.0f;
}

/* MATERIALIZED, pass 3: one block per item = i·n_heads + h, one thread per dim:
 * out[i][h][d] = Σ_{j ≤ pos0+i} P[h][i][j] · V[j][kvh][d]. */
static __global__ void __launch_bounds__(IBEX_CUDA_ATT_MAX_HEAD_DIM)
att_pv_kernel(float *out, const float *__restrict__ P, const att_kv kv, int T, int pos0, int n_heads,
              int n_keys) {
    const int item = blockIdx.x;
    const int i = item / n_heads, h = item % n_heads;
    const int hd = kv.hd, n = pos0 + i + 1;
    const float *pr = P + ((int64_t)h * T + i) * n_keys;
    const int64_t kv_off = (int64_t)(h / kv.group) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float a = 0.0f;
        for (int j = 0; j < n; j++) a = fmaf(pr[j], __ldg(kv.v + att_slot(kv, j) * kv.row + kv_off + d), a);
        out[(int64_t)item * hd + d] = a;
    }
}

extern "C" ibex_attn_impl ibex_cuda_attention_pick(ibex_attn_impl requested, int T, int pos0) {
    if (requested != IBEX_ATTN_AUTO) return requested;
    if (T <= ATT_AUTO_MAX_T && (int64_t)pos0 + T >= ATT_AUTO_MIN_KEYS) return IBEX_ATTN_SPLIT_K;
    return IBEX_ATTN_PAGED;
}

extern "C" int ibex_cuda_attention_splits(int sm_count, int T, int pos0, int n_heads, int *chunk) {
    const int64_t n_keys = (int64_t)pos0 + (T > 0 ? T : 1);
    const int64_t items = (int64_t)(T > 0 ? T : 1) * (n_heads > 0 ? n_heads : 1);
    const int64_t target = (int64_t)(sm_count > 0 ? sm_count : 1) * ATT_SPLIT_WARPS_PER_SM;
    int64_t n = (target + items - 1) / items;
    const int64_t by_keys = (n_keys + ATT_SPLIT_MIN_KEYS - 1) / ATT_SPLIT_MIN_KEYS;
    if (n > by_keys) n = by_keys;
    if (n > ATT_SPLIT_MAX) n = ATT_SPLIT_MAX;
    if (n < 1) n = 1;
    int64_t c = (n_keys + n - 1) / n;
    c = (c + 31) / 32 * 32;
    if (chunk) *chunk = (int)c;
    return (int)((n_keys + c - 1) / c);
}

extern "C" void ibex_cuda_attention(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                                    int T, int pos0, int n_heads, float scale) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || n_heads <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    const int hd = kv->head_dim;
    const size_t out_bytes = (size_t)T * n_heads * (hd > 0 ? hd : 0) * sizeof(float);
    if (hd <= 0 || hd > IBEX_CUDA_ATT_MAX_HEAD_DIM || kv->n_kv_heads <= 0 || kv->block_size <= 0 || pos0 < 0) {
        ibex_cuda_record(ctx, IBEX_ERR_UNSUPPORTED,
                         "CUDA attention: head_dim %d, n_kv_heads %d, block_size %d, pos0 %d not supported "
                         "(head_dim 1..%d)",
                         hd, (int)kv->n_kv_heads, (int)kv->block_size, pos0, IBEX_CUDA_ATT_MAX_HEAD_DIM);
        if (out_bytes) IBEX_CUDA_CHECK_OP(ctx, cudaMemsetAsync(out, 0xff, out_bytes, ctx->stream)); /* NaN */
        return;
    }
    att_kv a;
    a.k = (const float *)kv->k;
    a.v = (const float *)kv->v;
    a.table = kv->block_table;
    a.row = (int64_t)kv->n_kv_heads * hd;
    a.bs = kv->block_size;
    a.hd = hd;
    a.first_block = kv->first_block;
    a.group = n_heads >= kv->n_kv_heads ? n_heads / kv->n_kv_heads : 1;
    a.contiguous = kv->contiguous;
    a.vec4 = hd % 4 == 0 && ((uintptr_t)kv->k & 15) == 0;
    const int items = T * n_heads;

    switch (ibex_cuda_attention_pick(ctx->attn, T, pos0)) {
    case IBEX_ATTN_MATERIALIZED: {
        const int n_keys = pos0 + T;
        float *S = (float *)ibex_cuda_scratch(ctx, (size_t)items * n_keys * sizeof(float));
        if (!S) return; /* sticky error recorded */
        const dim3 g1((unsigned)items, (unsigned)((n_keys + ATT_SCORE_THREADS - 1) / ATT_SCORE_THREADS));
        att_scores_kernel<<<g1, ATT_SCORE_THREADS, 0, ctx->stream>>>(S, q, a, T, pos0, n_heads, n_keys, scale);
        IBEX_CUDA_CHECK_LAUNCH(ctx, att_scores_kernel);
        att_softmax_kernel<<<(unsigned)items, ATT_SOFTMAX_THREADS, 0, ctx->stream>>>(S, T, pos0, n_keys);
        IBEX_CUDA_CHECK_LAUNCH(ctx, att_softmax_kernel);
        const int pv_threads = (hd + 31) / 32 * 32;
        att_pv_kernel<<<(unsigned)items, pv_threads, 0, ctx->stream>>>(out, S, a, T, pos0, n_heads, n_keys);
        IBEX_CUDA_CHECK_LAUNCH(ctx, att_pv_kernel);
        return;
    }
    case IBEX_ATTN_SPLIT_K: {
        int chunk = 0;
        const int n_splits = ibex_cuda_attention_splits(ctx->sm_count, T, pos0, n_heads, &chunk);
        float *part = (float *)ibex_cuda_scratch(ctx, (size_t)items * n_splits * (hd + 2) * sizeof(float));
        if (!part) return;
        const int n_groups = (n_splits + ATT_WARPS - 1) / ATT_WARPS;
        att_split_kernel<<<(unsigned)((int64_t)items * n_groups), ATT_THREADS, 0, ctx->stream>>>(
            part, q, a, pos0, n_heads, scale, n_splits, chunk);
        IBEX_CUDA_CHECK_LAUNCH(ctx, att_split_kernel);
        att_reduce_kernel<<<(unsigned)items, 32, 0, ctx->stream>>>(
            out, part, pos0, n_heads, hd, n_splits, chunk);
        IBEX_CUDA_CHECK_LAUNCH(ctx, att_reduce_kernel);
        return;
    }
    default: /* PAGED */
        att_paged_kernel<<<(unsigned)((items + ATT_WARPS - 1) / ATT_WARPS), ATT_THREADS, 0, ctx->stream>>>(
            out, q, a, T, pos0, n_heads, scale);
        IBEX_CUDA_CHECK_LAUNCH(ctx, att_paged_kernel);
        return;
    }
}
