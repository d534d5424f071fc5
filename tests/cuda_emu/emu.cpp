/* CPU emulator of the CUDA runtime/cuBLAS subset used by kernels/cuda: one fiber per CUDA
 * thread, blocks run one after another, warp barriers for shuffles and __syncwarp, block
 * barriers for __syncthreads; undefined behaviour it can see (barriers with exited lanes,
 * divergent barriers, bad launch configurations, bad GEMM arguments) aborts loudly. */
#include "emu.h"
#include <time.h>
#include <ucontext.h>
#include <map>
#include <vector>

uint3e emu_tid, emu_bid;
dim3 emu_bdim, emu_gdim;

enum { RUN, WWARP, WBLOCK, DONE };
struct Fib { ucontext_t ctx; int state; };
static ucontext_t g_sched;
static Fib g_f[1024];
static int g_n, g_cur;
static char *g_stacks;
static const size_t g_stack_sz = 256 << 10;
static const std::function<void()> *g_body;
static uint64_t g_slots[32][32];
static cudaError_t g_last = cudaSuccess;

static void die(const char *what) {
    fprintf(stderr, "EMU: %s (block %u,%u,%u thread %d)\n", what, emu_bid.x, emu_bid.y, emu_bid.z, g_cur);
    abort();
}
static void fib_entry() {
    (*g_body)();
    g_f[g_cur].state = DONE;
    swapcontext(&g_f[g_cur].ctx, &g_sched);
}
static void wait_(int st) {
    g_f[g_cur].state = st;
    swapcontext(&g_f[g_cur].ctx, &g_sched);
}
void emu_sync_block(void) { wait_(WBLOCK); }
void emu_sync_warp(void) { wait_(WWARP); }
uint64_t emu_shfl_bits(uint64_t v, int src) {
    const int w = g_cur >> 5, l = g_cur & 31;
    if ((w << 5) + src >= g_n) die("shuffle from a lane that does not exist");
    g_slots[w][l] = v;
    wait_(WWARP);
    const uint64_t r = g_slots[w][src];
    wait_(WWARP);
    return r;
}

static void set_tid(int i) {
    emu_tid.x = (unsigned)i % emu_bdim.x;
    emu_tid.y = ((unsigned)i / emu_bdim.x) % emu_bdim.y;
    emu_tid.z = (unsigned)i / (emu_bdim.x * emu_bdim.y);
}

static void run_block(void) {
    for (int i = 0; i < g_n; i++) {
        getcontext(&g_f[i].ctx);
        g_f[i].ctx.uc_stack.ss_sp = g_stacks + (size_t)i * g_stack_sz;
        g_f[i].ctx.uc_stack.ss_size = g_stack_sz;
        g_f[i].ctx.uc_link = NULL;
        makecontext(&g_f[i].ctx, fib_entry, 0);
        g_f[i].state = RUN;
    }
    for (;;) {
        bool ran = false;
        for (int i = 0; i < g_n; i++)
            if (g_f[i].state == RUN) {
                g_cur = i;
                set_tid(i);
                swapcontext(&g_sched, &g_f[i].ctx);
                ran = true;
            }
        int alive = 0, wblock = 0;
        for (int i = 0; i < g_n; i++) alive += g_f[i].state != DONE, wblock += g_f[i].state == WBLOCK;
        if (!alive) return;
        bool released = false;
        for (int w = 0; w * 32 < g_n; w++) {
            int lanes = 0, ww = 0, done = 0;
            for (int i = w * 32; i < g_n && i < w * 32 + 32; i++) {
                lanes++;
                ww += g_f[i].state == WWARP;
                done += g_f[i].state == DONE;
            }
            if (ww > 0 && ww + done == lanes) {
                if (done) die("warp barrier/shuffle with exited lanes");
                for (int i = w * 32; i < g_n && i < w * 32 + 32; i++) g_f[i].state = RUN;
                released = true;
            }
        }
        if (!released && wblock == alive) {
            if (alive != g_n) die("__syncthreads with exited threads");
            for (int i = 0; i < g_n; i++) g_f[i].state = RUN;
            released = true;
        }
        if (!released && !ran) die("deadlock: divergent barriers");
    }
}

/* stream capture: while g_cap is set, work is recorded instead of run (a capture that
 * meets an operation CUDA forbids there is invalidated, as on a GPU) */
struct emu_graph { std::vector<std::function<void()>> ops; };
static emu_graph *g_cap;
static bool g_cap_bad;
static void emu_launch_now(emu_cfg_t c, const std::function<void()> &body);
void emu_launch(emu_cfg_t c, const std::function<void()> &body) {
    if (g_cap) {
        std::function<void()> f = body; /* the lambda's by-value captures: the launch's arguments */
        g_cap->ops.push_back([c, f]() { emu_launch_now(c, f); });
        return;
    }
    emu_launch_now(c, body);
}
static void emu_launch_now(emu_cfg_t c, const std::function<void()> &body) {
    const uint64_t nt = (uint64_t)c.b.x * c.b.y * c.b.z;
    if (c.g.x < 1 || c.g.x > 2147483647u || c.g.y < 1 || c.g.y > 65535 || c.g.z < 1 || c.g.z > 65535 || nt < 1 ||
        nt > 1024 || c.b.z > 64 || c.smem > 48 * 1024) {
        fprintf(stderr, "EMU: invalid launch grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n", c.g.x, c.g.y, c.g.z, c.b.x,
                c.b.y, c.b.z, c.smem);
        g_last = cudaErrorInvalidConfiguration;
        return;
    }
    if (!g_stacks) g_stacks = (char *)malloc(1024 * g_stack_sz);
    g_body = &body;
    emu_gdim = c.g;
    emu_bdim = c.b;
    g_n = (int)nt;
    /* EMU_BLOCK_ORDER=reverse runs the grid's blocks last to first: a GPU promises no
     * order, so a kernel whose result depends on which block runs (or finishes) first or
     * last gives other bits (tests set it to check that a result does not) */
    const char *order = getenv("EMU_BLOCK_ORDER");
    const bool rev = order && !strcmp(order, "reverse");
    const uint64_t nb = (uint64_t)c.g.x * c.g.y * c.g.z;
    for (uint64_t i = 0; i < nb; i++) {
        const uint64_t b = rev ? nb - 1 - i : i;
        emu_bid.x = (unsigned)(b % c.g.x), emu_bid.y = (unsigned)(b / c.g.x % c.g.y),
        emu_bid.z = (unsigned)(b / ((uint64_t)c.g.x * c.g.y));
        run_block();
    }
}

/* ---- runtime ---- */
static std::map<void *, size_t> g_allocs;
static size_t g_held;
static int g_dev;
struct emu_stream { int dummy; };
struct emu_event { double t; };
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
static cudaError_t ret(cudaError_t e) { if (e) g_last = e; return e; }
cudaError_t cudaGetDeviceCount(int *n) { *n = getenv("EMU_NO_DEVICE") ? 0 : 1; return getenv("EMU_NO_DEVICE") ? ret(100) : cudaSuccess; }
cudaError_t cudaGetDevice(int *d) { *d = g_dev; return cudaSuccess; }
cudaError_t cudaSetDevice(int d) { if (d != 0) return ret(cudaErrorInvalidDevice); g_dev = d; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return ret(cudaErrorInvalidDevice);
    snprintf(p->name, sizeof p->name, "EMU H100");
    p->major = 9, p->minor = 0, p->multiProcessorCount = 132;
    return cudaSuccess;
}
/* an H100 SXM's HBM3: 2619 MHz, 5120 bits (3.35 TB/s) */
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
    if (d != 0) return ret(cudaErrorInvalidDevice);
    *v = a == cudaDevAttrMemoryClockRate ? 2619000 : 5120;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t n) {
    if (g_cap) { g_cap_bad = true; return ret(cudaErrorStreamCaptureUnsupported); }
    if (n == 0) { *p = NULL; return cudaSuccess; }
    *p = malloc(n);
    if (!*p) return ret(cudaErrorMemoryAllocation);
    g_allocs[*p] = n;
    g_held += n;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    auto it = g_allocs.find(p);
    if (it == g_allocs.end()) { fprintf(stderr, "EMU: cudaFree of unknown %p\n", p); abort(); }
    g_held -= it->second;
    g_allocs.erase(it);
    free(p);
    return cudaSuccess;
}
/* pinned host memory: plain host memory, tracked so a wrong free aborts */
static std::map<void *, size_t> g_pinned;
cudaError_t cudaMallocHost(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    if (!*p) return ret(cudaErrorMemoryAllocation);
    g_pinned[*p] = n;
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    if (!g_pinned.erase(p)) { fprintf(stderr, "EMU: cudaFreeHost of unknown %p\n", p); abort(); }
    free(p);
    return cudaSuccess;
}
static void check_dev_range(const void *p, size_t n, const char *what) {
    auto it = g_allocs.upper_bound((void *)p);
    if (it == g_allocs.begin()) goto bad;
    --it;
    if ((const char *)p >= (const char *)it->first && (const char *)p + n <= (const char *)it->first + it->second) return;
bad:
    fprintf(stderr, "EMU: %s of %zu bytes at %p is not inside a device allocation\n", what, n, p);
    abort();
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
    check_dev_range(p, n, "memset");
    if (g_cap) { g_cap->ops.push_back([=]() { memset(p, v, n); }); return cudaSuccess; }
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t) {
    if (k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice) check_dev_range(d, n, "copy destination");
    if (k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice) check_dev_range(s, n, "copy source");
    if (g_cap) { g_cap->ops.push_back([=]() { memmove(d, s, n); }); return cudaSuccess; }
    memmove(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (g_cap) { g_cap_bad = true; return ret(cudaErrorStreamCaptureUnsupported); }
    return s ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (g_cap || !s) return ret(cudaErrorInvalidValue);
    g_cap = new emu_graph();
    g_cap_bad = false;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
    if (!g_cap) return ret(cudaErrorInvalidValue);
    emu_graph *c = g_cap;
    g_cap = NULL;
    if (g_cap_bad) { delete c; *g = NULL; return ret(cudaErrorStreamCaptureInvalidated); }
    *g = c;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
    *e = new emu_graph(*g);
    return cudaSuccess;
}
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t e, cudaGraph_t g, cudaGraphExecUpdateResultInfo *) {
    if (e->ops.size() != g->ops.size()) return ret(cudaErrorGraphExecUpdateFailure);
    e->ops = g->ops;
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    if (g_cap) { g_cap_bad = true; return ret(cudaErrorStreamCaptureUnsupported); }
    for (auto &op : e->ops) op();
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete e; return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = new emu_stream(); return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { delete s; return cudaSuccess; }
cudaError_t cudaGetLastError(void) { cudaError_t e = g_last; g_last = cudaSuccess; return e; }
const char *cudaGetErrorString(cudaError_t e) { static char b[64]; snprintf(b, sizeof b, "emulated error %d", e); return b; }
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { *t = (size_t)80 << 30; *f = *t - g_held; return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = new emu_event(); return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    if (g_cap) { g_cap_bad = true; return ret(cudaErrorStreamCaptureUnsupported); } /* not emulated */
    e->t = now_ms();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) { *ms = (float)(b->t - a->t); return cudaSuccess; }

/* ---- cuBLAS ---- */
struct emu_cublas { cudaStream_t s; void *ws; };
cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new emu_cublas(); return 0; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return 0; }
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) { h->s = s; h->ws = NULL; return 0; }
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *p, size_t n) { check_dev_range(p, n, "workspace"); h->ws = p; return 0; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return 0; }
const char *cublasGetStatusString(cublasStatus_t s) { static char b[64]; snprintf(b, sizeof b, "emulated cublas status %d", s); return b; }
static double rd(const void *p, cudaDataType_t t, size_t i) {
    switch (t) {
    case CUDA_R_16F: return ibex_f16_to_f32(((const uint16_t *)p)[i]);
    case CUDA_R_16BF: return ibex_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}
static size_t esz(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }
static cublasStatus_t gemm_now(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                            cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                            cublasComputeType_t comp, cublasGemmAlgo_t) {
    if (!h || !h->s || !h->ws) { fprintf(stderr, "EMU: gemm without stream/workspace\n"); abort(); }
    const int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
    const int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
    if (m < 0 || n < 0 || k < 0 || lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (at != bt || ct != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (at == CUDA_R_32F ? (comp != CUBLAS_COMPUTE_32F && comp != CUBLAS_COMPUTE_32F_PEDANTIC) : comp != CUBLAS_COMPUTE_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m == 0 || n == 0) return 0;
    check_dev_range(A, ((size_t)(acols - 1) * lda + arows) * esz(at), "gemm A");
    check_dev_range(B, ((size_t)(bcols - 1) * ldb + brows) * esz(bt), "gemm B");
    check_dev_range(C, ((size_t)(n - 1) * ldc + m) * 4, "gemm C");
    const float al = *(const float *)alpha, be = *(const float *)beta;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                const double a = ta == CUBLAS_OP_N ? rd(A, at, (size_t)i + (size_t)p * lda) : rd(A, at, (size_t)p + (size_t)i * lda);
                const double b = tb == CUBLAS_OP_N ? rd(B, bt, (size_t)p + (size_t)j * ldb) : rd(B, bt, (size_t)j + (size_t)p * ldb);
                s += a * b;
            }
            float *c = (float *)C + (size_t)i + (size_t)j * ldc;
            *c = (float)(al * s) + (be != 0.0f ? be * *c : 0.0f);
        }
    return 0;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t at, int lda, const void *B,
                            cudaDataType_t bt, int ldb, const void *beta, void *C, cudaDataType_t ct, int ldc,
                            cublasComputeType_t comp, cublasGemmAlgo_t algo) {
    if (!g_cap) return gemm_now(h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, comp, algo);
    const float al = *(const float *)alpha, be = *(const float *)beta; /* host scalars: copied now */
    g_cap->ops.push_back([=]() {
        if (gemm_now(h, ta, tb, m, n, k, &al, A, at, lda, B, bt, ldb, &be, C, ct, ldc, comp, algo)) abort();
    });
    return 0;
}
