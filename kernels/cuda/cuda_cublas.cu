/* cuda_cublas.cu — cuBLAS opened at run time: the functions the backend calls, resolved
 * through dlsym into one table (ibex_cublas), so the ibex binary does not NEED
 * libcublas.so.13 and a CPU-only run works where cuBLAS is absent. The backend's
 * constructor loads it first and fails with a message naming the library.
 *
 * The symbols are the ones cublas_v2.h maps its names to (cublasCreate is a macro for
 * cublasCreate_v2, ...). Under tests/cuda_emu (IBEX_CUDA_EMU) the emulator's own
 * functions fill the table instead. */
#include <pthread.h>
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"
#ifndef IBEX_CUDA_EMU
#include <dlfcn.h>

#include "kernels/cuda/cuda_libs.h"
#endif

#ifndef IBEX_CUDA_TOOLKIT_LIBDIR
#define IBEX_CUDA_TOOLKIT_LIBDIR ""
#endif

ibex_cublas_api ibex_cublas;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bool g_loaded;
static char g_path[512];

ibex_status ibex_cuda_cublas_load(ibex_err *err) {
    pthread_mutex_lock(&g_mu);
    if (g_loaded) {
        pthread_mutex_unlock(&g_mu);
        return IBEX_OK;
    }
    ibex_cublas_api t;
    memset(&t, 0, sizeof t);
#ifdef IBEX_CUDA_EMU
    t.create = cublasCreate, t.destroy = cublasDestroy, t.set_stream = cublasSetStream;
    t.set_workspace = cublasSetWorkspace, t.set_math_mode = cublasSetMathMode;
    t.status_string = cublasGetStatusString, t.gemm_ex = cublasGemmEx;
    snprintf(g_path, sizeof g_path, "(emulated)");
#else
    static const char *const subdirs[] = {"lib64", "lib", NULL};
    void *h = ibex_cuda_dlopen("libcublas.so.13", "cuBLAS", subdirs, IBEX_CUDA_TOOLKIT_LIBDIR, g_path, sizeof g_path,
                               err);
    if (!h) {
        pthread_mutex_unlock(&g_mu);
        return IBEX_ERR_UNSUPPORTED;
    }
    /* each entry by the exported name; a missing one means a cuBLAS other than 13 */
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&t.create, "cublasCreate_v2"},        {(void **)&t.destroy, "cublasDestroy_v2"},
        {(void **)&t.set_stream, "cublasSetStream_v2"}, {(void **)&t.set_workspace, "cublasSetWorkspace_v2"},
        {(void **)&t.set_math_mode, "cublasSetMathMode"}, {(void **)&t.status_string, "cublasGetStatusString"},
        {(void **)&t.gemm_ex, "cublasGemmEx"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(h, syms[i].name);
        if (!*syms[i].slot) {
            ibex_err_set(err, IBEX_ERR_UNSUPPORTED, "cuBLAS %s has no symbol %s (is it cuBLAS 13?)", g_path,
                         syms[i].name);
            dlclose(h);
            pthread_mutex_unlock(&g_mu);
            return IBEX_ERR_UNSUPPORTED;
        }
    }
#endif
    ibex_cublas = t;
    g_loaded = true;
    pthread_mutex_unlock(&g_mu);
    return IBEX_OK;
}

const char *ibex_cuda_cublas_path(void) { return g_path; }
