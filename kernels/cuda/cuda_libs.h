/* cuda_libs.h — finding and opening the CUDA 13 shared libraries ibex uses at run time
 * (cuBLAS by the CUDA backend, CUPTI by the harness), so the ibex binary NEEDs neither:
 * a CPU-only user of a CUDA-enabled build, or a GPU machine whose toolkit lives
 * elsewhere (pip wheels, extras/CUPTI/lib64, environment modules), still starts.
 *
 * Where a library is looked for, in order:
 *   1. the loader's own search for the soname (LD_LIBRARY_PATH, ld.so.cache, /lib, ...);
 *   2. $IBEX_CUDA_LIBDIR, then $CUDA_HOME and $CUDA_PATH with each of the caller's
 *      sub-folders (lib64, lib, extras/CUPTI/lib64);
 *   3. beside the executable and its ../lib ($ORIGIN-relative: a packaged install);
 *   4. the folder the build found the library in (the toolkit of the build machine);
 *   5. /usr/local/cuda with the sub-folders.
 * Plain C, no CUDA headers: harness/cupti.c uses it too. */
#ifndef IBEX_CUDA_LIBS_H
#define IBEX_CUDA_LIBS_H

#include <stddef.h>

#include "kernels/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opens soname (e.g. "libcublas.so.13") from the first place above that has it, with
 * RTLD_NOW | RTLD_LOCAL. subdirs: NULL-terminated sub-folders of a toolkit root to try;
 * build_dir: the build machine's folder of the library, or NULL. On success returns the
 * handle and, when path is not NULL, the file opened. On failure returns NULL with err
 * naming the library, `what` (e.g. "cuBLAS"), the places tried and the loader's first
 * error. Never prints. */
void *ibex_cuda_dlopen(const char *soname, const char *what, const char *const *subdirs, const char *build_dir,
                       char *path, size_t path_size, ibex_err *err);

#ifdef __cplusplus
}
#endif

#endif
