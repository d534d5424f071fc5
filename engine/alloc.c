/* alloc.c — tracked, aligned allocation. Each block carries a 64-byte header holding
 * its size and category, so ibex_free() can subtract exactly what was added. */
#include "engine/alloc.h"

#include "kernels/hostmem.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IBEX_ALIGN 64

typedef struct hdr {
    size_t size;
    int cat;
    uint32_t magic;
} hdr;
#define IBEX_ALLOC_MAGIC 0x1bec0a11u

static _Atomic int64_t g_live[IBEX_MEM_CAT_COUNT];
static _Atomic int64_t g_peak[IBEX_MEM_CAT_COUNT];
static _Atomic int64_t g_live_total, g_peak_total;

static const char *k_names[IBEX_MEM_CAT_COUNT] = {"weights", "kv", "activations", "other"};

const char *ibex_mem_cat_name(ibex_mem_cat c) {
    return (unsigned)c < IBEX_MEM_CAT_COUNT ? k_names[c] : "?";
}

static void raise_peak(_Atomic int64_t *peak, int64_t v) {
    int64_t p = atomic_load(peak);
    while (v > p && !atomic_compare_exchange_weak(peak, &p, v)) {
    }
}

void *ibex_alloc(ibex_mem_cat cat, size_t size, int zeroed) {
    if (size == 0 || (unsigned)cat >= IBEX_MEM_CAT_COUNT || size > SIZE_MAX - 2 * IBEX_ALIGN) return NULL;
    /* large blocks (weights, KV pools) on huge pages: kernels/hostmem.h */
    unsigned char *base = ibex_host_alloc(size + IBEX_ALIGN);
    if (!base) return NULL;
    if (zeroed) memset(base + IBEX_ALIGN, 0, size);
    hdr *h = (hdr *)base;
    h->size = size;
    h->cat = (int)cat;
    h->magic = IBEX_ALLOC_MAGIC;
    raise_peak(&g_peak[cat], atomic_fetch_add(&g_live[cat], (int64_t)size) + (int64_t)size);
    raise_peak(&g_peak_total, atomic_fetch_add(&g_live_total, (int64_t)size) + (int64_t)size);
    return base + IBEX_ALIGN;
}

void ibex_free(void *p) {
    if (!p) return;
    unsigned char *base = (unsigned char *)p - IBEX_ALIGN;
    hdr *h = (hdr *)base;
    if (h->magic != IBEX_ALLOC_MAGIC) abort(); /* not ours: a bug, not a user error */
    h->magic = 0;
    atomic_fetch_sub(&g_live[h->cat], (int64_t)h->size);
    atomic_fetch_sub(&g_live_total, (int64_t)h->size);
    free(base);
}

void ibex_mem_stats_get(ibex_mem_stats *out) {
    for (int c = 0; c < IBEX_MEM_CAT_COUNT; c++) {
        out->live[c] = atomic_load(&g_live[c]);
        out->peak[c] = atomic_load(&g_peak[c]);
    }
    out->live_total = atomic_load(&g_live_total);
    out->peak_total = atomic_load(&g_peak_total);
}

void ibex_mem_reset_peaks(void) {
    for (int c = 0; c < IBEX_MEM_CAT_COUNT; c++) atomic_store(&g_peak[c], atomic_load(&g_live[c]));
    atomic_store(&g_peak_total, atomic_load(&g_live_total));
}

int64_t ibex_mem_process_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    int64_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtoll(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}
