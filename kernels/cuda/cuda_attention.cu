/* cuda_attention.cu — causal attention on the GPU for T queries at positions pos0.. of one
 * sequence (or one query of each of a decode step's sequences), over its KV cache read
 * through an ibex_kv_view (block table, or the contiguous fast path), in the forms below
 * (set_attention chooses; AUTO: ibex_cuda_attention_grouped, then ibex_cuda_attention_pick):
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
 *  DECODE        (AUTO with one query token, and attention_batch: every sequence of a
 *                decode step in one launch) one block per (sequence, KV head, split)
 *                serving the whole GQA group from K/V tiles in shared memory, split-K
 *                sized from the SM count, the last split of each group combining
 *                them (one launch either way); see its section.
 *
 * K/V pools are F32, F16 or BF16 (ibex_kv_view.type), widened to F32 on load; all the
 * arithmetic is F32.
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
#include <string.h>

#include "kernels/cuda/cuda_attention.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kv_type.cuh"

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
    const void *k, *v; /* pools of elements of `type` (F32, F16, BF16), widened on load */
    const int32_t *table;
    int64_t row; /* elements per token slot: n_kv_heads · head_dim */
    int bs, hd, first_block, group, type;
    bool contiguous, vec4; /* vec4: F32 pools, 16-byte aligned, head_dim % 4 == 0 */
} att_kv;

/* Pool slot of logical token t. */
static __device__ __forceinline__ int64_t att_slot(const att_kv &kv, int t) {
    if (kv.contiguous) return (int64_t)kv.first_block * kv.bs + t;
    return (int64_t)kv.table[t / kv.bs] * kv.bs + t % kv.bs;
}

/* q·k over hd dims; qs in shared memory (broadcast reads), the K row at element off of
 * the K pool (global memory), widened from the pool's type. */
static __device__ __forceinline__ float att_dot(const float *qs, const att_kv &kv, int64_t off) {
    const int hd = kv.hd;
    if (kv.vec4) {
        const float *kr = (const float *)kv.k + off;
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
    for (int j = 0; j < hd; j++) s = fmaf(qs[j], ibex_kv_get(kv.k, off + j, kv.type), s);
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
            sc = att_dot(qs, kv, off) * scale;
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
#pragma unroll
            for (int k = 0; k < ATT_DPL; k++) {
                const int d = lane + 32 * k;
                if (d < kv.hd) acc[k] = fmaf(pj, ibex_kv_get(kv.v, oj + d, kv.type), acc[k]);
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
        sc = att_dot(qs, kv, att_slot(kv, j) * kv.row + (int64_t)(h / kv.group) * hd) * scale;
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
        for (int j = 0; j < n; j++) a = fmaf(pr[j], ibex_kv_get(kv.v, att_slot(kv, j) * kv.row + kv_off + d, kv.type), a);
        out[(int64_t)item * hd + d] = a;
    }
}

/* ---- DECODE: the grouped decode kernel (one query token per sequence) ----
 *
 * One block of DEC_THREADS per (sequence, KV head, head chunk, split): the block serves
 * the query heads of its KV head's GQA group (up to DEC_MAX_QD floats of them, a "head
 * chunk"; the whole group at the usual shapes), so each K/V row is read from memory once
 * per group, not once per query head. The block walks its split's keys in tiles of DEC_TK:
 *  1. the tile's K and V rows are loaded into shared memory by all threads, consecutive
 *     threads on consecutive dims of a row (coalesced; widened from F16/BF16 here, once);
 *  2. scores: 8 lanes per (head, key), each over every 8th dim, summed with 3 shuffles;
 *  3. online softmax per head, one warp per head: tile max, rescale factor
 *     e^(m_old − m_new), probabilities p = e^(s − m_new) (design note 2's update);
 *  4. each thread owns (head, dim) outputs: acc = acc·corr + Σ_j p_j·V[j][dim].
 * With one split (of its sequence) the block writes out. With several, each writes its
 * (m, s, acc[hd]) partials to the op scratch, then __threadfence() and one atomicAdd on the
 * counter of its (sequence, KV head, head chunk); the block that arrives last combines the
 * splits (M = max m_j, out = Σ acc_j·e^(m_j − M) / Σ s_j·e^(m_j − M)) in split order, so the
 * bits do not depend on which block finished last, and sets the counter back to 0 for the
 * next launch (the next layer, step, or graph replay). So attention is one launch whether
 * or not it splits. The counters (ctx->dec_count, one per (sequence, KV head, head chunk)
 * block group of a launch that splits) are allocated and zeroed once, at backend creation
 * (ibex_cuda_attention_init). The number of splits is sized from the SM count and the
 * longest sequence of the call (ibex_cuda_decode_splits); a split past a shorter
 * sequence's keys leaves at once and is not counted. Paged and contiguous sequences differ
 * only in att_slot's address of a key: one code path. */
#define DEC_THREADS 128
#define DEC_WARPS (DEC_THREADS / 32)
#define DEC_TK 16        /* keys per shared-memory tile */
#define DEC_MAX_QD 2048  /* query heads × head_dim one block serves: 8 heads of 256, 16 of 128 */
#define DEC_MAX_HEADS 32 /* query heads one block serves */
#define DEC_PER (DEC_MAX_QD / DEC_THREADS) /* (head, dim) outputs per thread */
#define DEC_KPAD 8       /* K tile row padding: the 4 keys a warp scores start in different banks */
#define DEC_LANES 8      /* lanes per (head, key) score */
#define DEC_BLOCKS_PER_SM 4
#define DEC_MIN_KEYS 64  /* keys per split, at least */
#define DEC_SPLIT_MAX 256

/* What the decode kernels need: the pools (att_kv, its contiguous fields unused), the
 * sequences and the launch's shape. */
typedef struct att_dec {
    att_kv kv;
    const ibex_attn_seq *seqs; /* device array of n_seq, or NULL: the one sequence `one` */
    ibex_attn_seq one;
    int n_heads, n_kv, gc, n_hc; /* gc query heads per block, n_hc head chunks per KV head */
    int n_splits, chunk;
    float scale;
    unsigned *count; /* arrival counters per block group (ctx->dec_count), all 0 between launches */
} att_dec;

/* The K/V tiles, and in the block that combines the splits the split weights, which
 * reuse the tiles' memory (32 heads × 256 splits fit in the 16 tiles). */
typedef union dec_smem {
    struct {
        float ks[DEC_TK][IBEX_CUDA_ATT_MAX_HEAD_DIM + DEC_KPAD];
        float vs[DEC_TK][IBEX_CUDA_ATT_MAX_HEAD_DIM];
    } t;
    float w[DEC_MAX_HEADS][DEC_SPLIT_MAX];
} dec_smem;
static_assert(sizeof(float) * DEC_MAX_HEADS * DEC_SPLIT_MAX <=
                  sizeof(float) * DEC_TK * (2 * IBEX_CUDA_ATT_MAX_HEAD_DIM + DEC_KPAD),
              "the split weights must fit in the K/V tiles");

static __device__ __forceinline__ ibex_attn_seq dec_seq(const att_dec &a, int s) {
    return a.seqs ? a.seqs[s] : a.one;
}

/* Pool slot of token t of a sequence (first_block ≥ 0: contiguous run, else its table). */
static __device__ __forceinline__ int64_t dec_slot(const att_kv &kv, const ibex_attn_seq &sq, int t) {
    if (sq.first_block >= 0) return (int64_t)sq.first_block * kv.bs + t;
    return (int64_t)kv.table[sq.table_off + t / kv.bs] * kv.bs + t % kv.bs;
}

static __global__ void __launch_bounds__(DEC_THREADS)
att_decode_kernel(float *out, float *__restrict__ part, const float *q, const att_dec a) {
    __shared__ __align__(16) float qs[DEC_MAX_QD];
    __shared__ __align__(16) dec_smem sm;
    __shared__ bool last;
    float(&ks)[DEC_TK][IBEX_CUDA_ATT_MAX_HEAD_DIM + DEC_KPAD] = sm.t.ks;
    float(&vs)[DEC_TK][IBEX_CUDA_ATT_MAX_HEAD_DIM] = sm.t.vs;
    __shared__ float ps[DEC_MAX_HEADS][DEC_TK];
    __shared__ float ms[DEC_MAX_HEADS], ls[DEC_MAX_HEADS], cs[DEC_MAX_HEADS];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int b = blockIdx.x;
    const int sp = b % a.n_splits;
    b /= a.n_splits;
    const int hc = b % a.n_hc;
    b /= a.n_hc;
    const int kvh = b % a.n_kv, s = b / a.n_kv;
    const ibex_attn_seq sq = dec_seq(a, s);
    const int n_ctx = sq.n_keys, t0 = sp * a.chunk;
    if (t0 >= n_ctx) return; /* the whole block leaves before any barrier */
    const int t1 = min(n_ctx, t0 + a.chunk);
    const att_kv &kv = a.kv;
    const int hd = kv.hd, group = kv.group;
    const int h0 = kvh * group + hc * a.gc, nh = min(a.gc, group - hc * a.gc);
    const int64_t kv_off = (int64_t)kvh * hd;
    /* the block's query rows (heads h0.. of sequence s are consecutive), pre-scaled */
    const float *qr = q + ((int64_t)s * a.n_heads + h0) * hd;
    for (int i = tid; i < nh * hd; i += DEC_THREADS) qs[i] = qr[i] * a.scale;
    if (tid < nh) ms[tid] = -INFINITY, ls[tid] = 0.0f;
    float acc[DEC_PER];
#pragma unroll
    for (int k = 0; k < DEC_PER; k++) acc[k] = 0.0f;
    __syncthreads();
    for (int c0 = t0; c0 < t1; c0 += DEC_TK) {
        const int n = min(DEC_TK, t1 - c0); /* block-uniform */
        /* 1. the tile's rows, widened */
        for (int e = tid; e < n * hd; e += DEC_THREADS) {
            const int j = e / hd, d = e % hd;
            const int64_t o = dec_slot(kv, sq, c0 + j) * kv.row + kv_off + d;
            ks[j][d] = ibex_kv_get(kv.k, o, kv.type);
            vs[j][d] = ibex_kv_get(kv.v, o, kv.type);
        }
        __syncthreads();
        /* 2. scores; the item count is a multiple of DEC_LANES and items start at a
         * multiple of DEC_THREADS, so the 8 lanes of an item are consecutive lanes of one
         * warp, and every lane of a warp runs the same iterations (full-mask shuffles) */
        for (int base = 0; base < nh * n * DEC_LANES; base += DEC_THREADS) {
            const int it = base + tid, pair = it / DEC_LANES, p = it % DEC_LANES;
            float sum = 0.0f;
            if (pair < nh * n) {
                const int g = pair / n, j = pair % n;
                const float *qg = qs + g * hd, *kj = ks[j];
                for (int d = p; d < hd; d += DEC_LANES) sum = fmaf(qg[d], kj[d], sum);
            }
            sum += __shfl_xor_sync(IBEX_FULL_MASK, sum, 1);
            sum += __shfl_xor_sync(IBEX_FULL_MASK, sum, 2);
            sum += __shfl_xor_sync(IBEX_FULL_MASK, sum, 4);
            if (pair < nh * n && p == 0) ps[pair / n][pair % n] = sum;
        }
        __syncthreads();
        /* 3. online softmax, one warp per head */
        for (int g = warp; g < nh; g += DEC_WARPS) {
            const float sc = lane < n ? ps[g][lane] : -INFINITY;
            const float m_old = ms[g], m_new = fmaxf(m_old, ibex_warp_max(sc));
            const float pj = lane < n ? expf(sc - m_new) : 0.0f;
            const float sum = ibex_warp_sum(pj);
            if (lane < n) ps[g][lane] = pj;
            if (lane == 0) {
                /* first tile: nothing accumulated yet, and e^(−inf − x) must not be NaN */
                const float corr = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
                cs[g] = corr;
                ls[g] = ls[g] * corr + sum;
                ms[g] = m_new;
            }
        }
        __syncthreads();
        /* 4. P·V into the thread's (head, dim) outputs */
#pragma unroll
        for (int k = 0; k < DEC_PER; k++) {
            const int o = tid + k * DEC_THREADS;
            if (o < nh * hd) {
                const int g = o / hd, d = o % hd;
                float x = acc[k] * cs[g];
                for (int j = 0; j < n; j++) x = fmaf(ps[g][j], vs[j][d], x);
                acc[k] = x;
            }
        }
        __syncthreads(); /* the next tile overwrites ks, vs, ps, cs */
    }
    const int nv = (n_ctx + a.chunk - 1) / a.chunk; /* splits of this sequence (≤ n_splits) */
    const int64_t item0 = (int64_t)s * a.n_heads + h0;  /* (sequence, query head) of head 0 */
    const int64_t stride = hd + 2;
    if (nv == 1) { /* the only split: out directly, as an unsplit launch would */
#pragma unroll
        for (int k = 0; k < DEC_PER; k++) {
            const int o = tid + k * DEC_THREADS;
            if (o >= nh * hd) continue;
            const int g = o / hd, d = o % hd;
            out[(item0 + g) * hd + d] = ls[g] > 0.0f ? acc[k] / ls[g] : 0.0f;
        }
        return;
    }
#pragma unroll
    for (int k = 0; k < DEC_PER; k++) {
        const int o = tid + k * DEC_THREADS;
        if (o >= nh * hd) continue;
        const int g = o / hd, d = o % hd;
        float *pp = part + ((item0 + g) * a.n_splits + sp) * stride;
        if (d == 0) pp[0] = ms[g], pp[1] = ls[g];
        pp[2 + d] = acc[k];
    }
    /* release: this block's partials reach device memory before its arrival is counted */
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        unsigned *cnt = a.count + ((int64_t)s * a.n_kv + kvh) * a.n_hc + hc;
        last = atomicAdd(cnt, 1u) == (unsigned)nv - 1;
        if (last) *cnt = 0; /* every split has arrived: nobody else touches it this launch */
    }
    __syncthreads();
    if (!last) return; /* block-uniform */
    __threadfence(); /* acquire: the other splits' partials, read past L1 (__ldcg) */
    /* the weights e^(m_j − M) of each head's splits and 1 / Σ s_j·e^(m_j − M), one warp
     * per head, lanes over splits */
    for (int g = warp; g < nh; g += DEC_WARPS) {
        const float *pg = part + (item0 + g) * a.n_splits * stride;
        float M = -INFINITY;
        for (int j = lane; j < nv; j += 32) M = fmaxf(M, __ldcg(pg + j * stride));
        M = ibex_warp_max(M);
        float S = 0.0f;
        for (int j = lane; j < nv; j += 32) {
            const float wj = expf(__ldcg(pg + j * stride) - M);
            sm.w[g][j] = wj;
            S = fmaf(__ldcg(pg + j * stride + 1), wj, S);
        }
        S = ibex_warp_sum(S);
        if (lane == 0) cs[g] = S > 0.0f ? 1.0f / S : 0.0f;
    }
    __syncthreads();
    /* each thread's (head, dim) outputs, summed over the splits in split order */
#pragma unroll
    for (int k = 0; k < DEC_PER; k++) {
        const int o = tid + k * DEC_THREADS;
        if (o >= nh * hd) continue;
        const int g = o / hd, d = o % hd;
        const float *pg = part + (item0 + g) * a.n_splits * stride + 2 + d;
        float x = 0.0f;
        for (int j = 0; j < nv; j++) x = fmaf(__ldcg(pg + j * stride), sm.w[g][j], x);
        out[(item0 + g) * hd + d] = x * cs[g];
    }
}

extern "C" int ibex_cuda_decode_heads_per_block(int group, int head_dim) {
    int gc = head_dim > 0 ? DEC_MAX_QD / head_dim : 1;
    if (gc > DEC_MAX_HEADS) gc = DEC_MAX_HEADS;
    if (gc > group) gc = group;
    return gc < 1 ? 1 : gc;
}

extern "C" int ibex_cuda_decode_splits(int sm_count, int blocks, int max_keys, int *chunk) {
    const int64_t target = (int64_t)(sm_count > 0 ? sm_count : 1) * DEC_BLOCKS_PER_SM;
    const int64_t nb = blocks > 0 ? blocks : 1, keys = max_keys > 0 ? max_keys : 1;
    int64_t n = (target + nb - 1) / nb;
    const int64_t by_keys = (keys + DEC_MIN_KEYS - 1) / DEC_MIN_KEYS;
    if (n > by_keys) n = by_keys;
    if (n > DEC_SPLIT_MAX) n = DEC_SPLIT_MAX;
    if (n < 1) n = 1;
    int64_t c = (keys + n - 1) / n;
    c = (c + DEC_TK - 1) / DEC_TK * DEC_TK;
    if (chunk) *chunk = (int)c;
    return (int)((keys + c - 1) / c);
}

extern "C" int ibex_cuda_decode_counters(int sm_count) {
    return (sm_count > 0 ? sm_count : 1) * DEC_BLOCKS_PER_SM;
}

extern "C" bool ibex_cuda_attention_init(ibex_cuda_ctx *ctx, ibex_err *err) {
    const size_t bytes = (size_t)ibex_cuda_decode_counters(ctx->sm_count) * sizeof(unsigned);
    ctx->dec_count = (unsigned *)ibex_cuda_buf_alloc(ctx, bytes, IBEX_BUF_WORKSPACE, false, err);
    if (!ctx->dec_count) return false;
    return IBEX_CUDA_TRY(ctx, err, cudaMemsetAsync(ctx->dec_count, 0, bytes, ctx->stream)) == IBEX_OK;
}

/* Queues the grouped decode kernel (one launch, split or not) for n_seq sequences
 * described by a.seqs (or a.one), the longest of which has max_keys keys. */
static void dec_launch(ibex_cuda_ctx *ctx, float *out, const float *q, att_dec a, int n_seq, int max_keys) {
    const int group = a.kv.group;
    a.gc = ibex_cuda_decode_heads_per_block(group, a.kv.hd);
    a.n_hc = (group + a.gc - 1) / a.gc;
    const int64_t blocks = (int64_t)n_seq * a.n_kv * a.n_hc;
    a.n_splits = ibex_cuda_decode_splits(ctx->sm_count, (int)(blocks < INT32_MAX ? blocks : INT32_MAX), max_keys,
                                         &a.chunk);
    float *part = NULL;
    if (a.n_splits > 1) {
        /* it splits only when blocks < sm_count · DEC_BLOCKS_PER_SM: one counter each */
        if (!ctx->dec_count || blocks > ibex_cuda_decode_counters(ctx->sm_count)) {
            ibex_cuda_record(ctx, IBEX_ERR_BACKEND, "CUDA attention: %lld block groups split, %d counters",
                             (long long)blocks, ctx->dec_count ? ibex_cuda_decode_counters(ctx->sm_count) : 0);
            return;
        }
        part = (float *)ibex_cuda_scratch(
            ctx, (size_t)n_seq * a.n_heads * a.n_splits * (a.kv.hd + 2) * sizeof(float));
        if (!part) return; /* sticky error recorded */
        a.count = ctx->dec_count;
    }
    att_decode_kernel<<<(unsigned)(blocks * a.n_splits), DEC_THREADS, 0, ctx->stream>>>(out, part, q, a);
    IBEX_CUDA_CHECK_LAUNCH(ctx, att_decode_kernel);
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

/* Checks the view and fills a; false (with a sticky error and out set to NaN) when the
 * kernels cannot take it. */
static bool att_setup(ibex_cuda_ctx *ctx, const char *op, const ibex_kv_view *kv, int n_heads, int pos0,
                      float *out, size_t out_rows, att_kv *a) {
    const int hd = kv->head_dim;
    const size_t out_bytes = out_rows * n_heads * (hd > 0 ? hd : 0) * sizeof(float);
    if (hd <= 0 || hd > IBEX_CUDA_ATT_MAX_HEAD_DIM || kv->n_kv_heads <= 0 || kv->block_size <= 0 || pos0 < 0) {
        ibex_cuda_record(ctx, IBEX_ERR_UNSUPPORTED,
                         "CUDA %s: head_dim %d, n_kv_heads %d, block_size %d, pos0 %d not supported "
                         "(head_dim 1..%d)",
                         op, hd, (int)kv->n_kv_heads, (int)kv->block_size, pos0, IBEX_CUDA_ATT_MAX_HEAD_DIM);
        if (out_bytes) IBEX_CUDA_TRY(ctx, NULL, cudaMemsetAsync(out, 0xff, out_bytes, ctx->stream)); /* NaN */
        return false;
    }
    if (!ibex_kv_type_supported(kv->type)) {
        ibex_cuda_record(ctx, IBEX_ERR_UNSUPPORTED, "CUDA %s: KV cache of type %s (F32, F16, BF16 only)", op,
                         ibex_type_name(kv->type));
        if (out_bytes) IBEX_CUDA_TRY(ctx, NULL, cudaMemsetAsync(out, 0xff, out_bytes, ctx->stream));
        return false;
    }
    a->k = kv->k;
    a->v = kv->v;
    a->table = kv->block_table;
    a->row = (int64_t)kv->n_kv_heads * hd;
    a->bs = kv->block_size;
    a->hd = hd;
    a->first_block = kv->first_block;
    a->group = n_heads >= kv->n_kv_heads ? n_heads / kv->n_kv_heads : 1;
    a->type = (int)kv->type;
    a->contiguous = kv->contiguous;
    a->vec4 = kv->type == IBEX_TYPE_F32 && hd % 4 == 0 && ((uintptr_t)kv->k & 15) == 0;
    return true;
}

extern "C" bool ibex_cuda_attention_grouped(ibex_attn_impl requested, int T, int n_heads, int n_kv_heads) {
    return requested == IBEX_ATTN_AUTO && T == 1 && n_kv_heads > 0 && n_heads >= n_kv_heads &&
           n_heads % n_kv_heads == 0;
}

/* The grouped decode kernel's launch description for n_seq sequences. */
static att_dec dec_of(const att_kv &a, const ibex_attn_seq *seqs, int n_heads, int n_kv, float scale) {
    att_dec d;
    memset(&d, 0, sizeof d);
    d.kv = a;
    d.seqs = seqs;
    d.n_heads = n_heads;
    d.n_kv = n_kv;
    d.scale = scale;
    return d;
}

extern "C" void ibex_cuda_attention(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                                    int T, int pos0, int n_heads, float scale) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (T <= 0 || n_heads <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    att_kv a;
    if (!att_setup(ctx, "attention", kv, n_heads, pos0, out, (size_t)T, &a)) return;
    const int hd = a.hd;
    if (ibex_cuda_attention_grouped(ctx->attn, T, n_heads, kv->n_kv_heads)) {
        att_dec d = dec_of(a, NULL, n_heads, kv->n_kv_heads, scale);
        d.one.n_keys = pos0 + 1;
        d.one.first_block = kv->contiguous ? kv->first_block : -1;
        d.one.table_off = 0;
        dec_launch(ctx, out, q, d, 1, pos0 + 1);
        return;
    }
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

extern "C" void ibex_cuda_attention_batch(ibex_backend *be, float *out, const float *q, const ibex_kv_view *kv,
                                          const ibex_attn_seq *seqs, const ibex_attn_seq *seqs_host, int n_seq,
                                          int n_heads, float scale) {
    ibex_cuda_ctx *ctx = ibex_cuda_ctx_of(be);
    if (n_seq <= 0 || n_heads <= 0) return;
    IBEX_CUDA_CHECK_OP(ctx, ibex_cuda_enter(ctx));
    const int64_t qd = (int64_t)n_heads * kv->head_dim;
    if (!ibex_cuda_attention_grouped(ctx->attn, 1, n_heads, kv->n_kv_heads)) {
        /* an explicit form (set_attention) or a head count the grouped kernel does not
         * take: that form per sequence, for comparisons (one launch or more per sequence) */
        for (int s = 0; s < n_seq; s++) {
            ibex_kv_view v = *kv;
            v.block_table = kv->block_table + seqs_host[s].table_off;
            v.contiguous = seqs_host[s].first_block >= 0;
            v.first_block = v.contiguous ? seqs_host[s].first_block : 0;
            ibex_cuda_attention(be, out + s * qd, q + s * qd, &v, 1, seqs_host[s].n_keys - 1, n_heads, scale);
        }
        return;
    }
    int max_keys = 1;
    for (int s = 0; s < n_seq; s++) max_keys = seqs_host[s].n_keys > max_keys ? seqs_host[s].n_keys : max_keys;
    att_kv a;
    if (!att_setup(ctx, "attention_batch", kv, n_heads, 0, out, (size_t)n_seq, &a)) return;
    dec_launch(ctx, out, q, dec_of(a, seqs, n_heads, kv->n_kv_heads, scale), n_seq, max_keys);
}
