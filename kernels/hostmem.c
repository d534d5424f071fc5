/* hostmem.c — see hostmem.h. */
#define _DEFAULT_SOURCE
#include "kernels/hostmem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

bool ibex_host_thp_off(void) {
    const char *e = getenv("IBEX_HUGEPAGES");
    return e && !strcmp(e, "0");
}

void *ibex_host_alloc(size_t bytes) {
    if (bytes < IBEX_HUGE_MIN || bytes > SIZE_MAX - IBEX_HUGE_PAGE) {
        const size_t n = (bytes + 63) / 64 * 64;
        return aligned_alloc(64, n ? n : 64);
    }
    const size_t n = (bytes + IBEX_HUGE_PAGE - 1) / IBEX_HUGE_PAGE * IBEX_HUGE_PAGE;
    void *p = aligned_alloc(IBEX_HUGE_PAGE, n);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p && !ibex_host_thp_off()) (void)madvise(p, n, MADV_HUGEPAGE); /* advice only: refused, the memory is still good */
#endif
    return p;
}

const char *ibex_host_thp_mode(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return "unknown";
    char line[128] = {0};
    const char *mode = "unknown";
    if (fgets(line, sizeof line, f)) { /* e.g. "always [madvise] never" */
        if (strstr(line, "[always]")) mode = "always";
        else if (strstr(line, "[madvise]")) mode = "madvise";
        else if (strstr(line, "[never]")) mode = "never";
    }
    fclose(f);
    return mode;
}
