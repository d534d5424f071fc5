/* cuda_libs.c — opens CUDA's shared libraries at run time from the places cuda_libs.h
 * lists, so that a missing library is an error message at the point of use, not a
 * loader failure (exit 127) of every ibex command. */
#include "kernels/cuda/cuda_libs.h"

#include <dlfcn.h>
#include <link.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Tries dir/soname; keeps the first loader error for the message. */
static void *try_open(const char *dir, const char *soname, char *first_err, size_t n) {
    char p[PATH_MAX];
    if (dir) {
        if (snprintf(p, sizeof p, "%s/%s", dir, soname) >= (int)sizeof p) return NULL;
    } else {
        snprintf(p, sizeof p, "%s", soname);
    }
    void *h = dlopen(p, RTLD_NOW | RTLD_LOCAL);
    if (!h && !first_err[0]) {
        const char *e = dlerror();
        snprintf(first_err, n, "%s", e ? e : "unknown dlopen error");
    }
    return h;
}

void *ibex_cuda_dlopen(const char *soname, const char *what, const char *const *subdirs, const char *build_dir,
                       char *path, size_t path_size, ibex_err *err) {
    static const char *const no_sub[] = {NULL};
    if (!subdirs) subdirs = no_sub;
    char first_err[512] = "";
    void *h = try_open(NULL, soname, first_err, sizeof first_err);
    /* roots: environment, the executable's folder and its parent, the build's, the default */
    char exe[PATH_MAX] = "", exe_up[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(exe_up, sizeof exe_up, "%s/..", exe);
    }
    const char *env_dir = getenv("IBEX_CUDA_LIBDIR");
    const char *roots[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    char d[PATH_MAX];
    if (!h && env_dir && env_dir[0]) h = try_open(env_dir, soname, first_err, sizeof first_err);
    for (int r = 0; r < 2 && !h; r++)
        for (int s = 0; subdirs[s] && !h && roots[r] && roots[r][0]; s++)
            if (snprintf(d, sizeof d, "%s/%s", roots[r], subdirs[s]) < (int)sizeof d)
                h = try_open(d, soname, first_err, sizeof first_err);
    if (!h && exe[0]) h = try_open(exe, soname, first_err, sizeof first_err);
    if (!h && exe_up[0] && snprintf(d, sizeof d, "%s/lib", exe_up) < (int)sizeof d)
        h = try_open(d, soname, first_err, sizeof first_err);
    if (!h && build_dir && build_dir[0]) h = try_open(build_dir, soname, first_err, sizeof first_err);
    for (int s = 0; subdirs[s] && !h; s++)
        if (snprintf(d, sizeof d, "%s/%s", roots[2], subdirs[s]) < (int)sizeof d)
            h = try_open(d, soname, first_err, sizeof first_err);
    if (!h) {
        ibex_err_set(err, IBEX_ERR_UNSUPPORTED,
                     "cannot load %s (%s, CUDA 13): not found by the loader (LD_LIBRARY_PATH, ld.so.cache) nor in "
                     "$IBEX_CUDA_LIBDIR, $CUDA_HOME, $CUDA_PATH, beside the executable, in %s or /usr/local/cuda "
                     "(first error: %s); put the folder that holds it on LD_LIBRARY_PATH or in IBEX_CUDA_LIBDIR",
                     soname, what, build_dir && build_dir[0] ? build_dir : "the build's toolkit", first_err);
        return NULL;
    }
    if (path && path_size) {
        struct link_map *lm = NULL;
        if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0])
            snprintf(path, path_size, "%s", lm->l_name);
        else
            snprintf(path, path_size, "%s", soname);
    }
    return h;
}
