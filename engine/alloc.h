/* alloc.h — the tracked allocator every large engine buffer goes through, so memory
 * reports are exact: bytes live and peak per category, integers identical on every
 * machine for the same run. Thread-safe (atomic counters). */
#ifndef IBEX_ALLOC_H
#define IBEX_ALLOC_H

#include <stddef.h>
#include <stdint.h>

typedef enum ibex_mem_cat {
    IBEX_MEM_WEIGHTS = 0, /* weights the engine owns (synthetic, converted norms) */
    IBEX_MEM_KV,          /* the KV-cache pool */
    IBEX_MEM_ACTIVATIONS, /* forward-pass scratch */
    IBEX_MEM_OTHER,       /* tokenizer tables, logits, bookkeeping */
    IBEX_MEM_CAT_COUNT
} ibex_mem_cat;

const char *ibex_mem_cat_name(ibex_mem_cat c);

/* 64-byte aligned allocation of size bytes, counted under cat; NULL on failure
 * (or size 0). Contents are uninitialised unless zeroed is set. */
void *ibex_alloc(ibex_mem_cat cat, size_t size, int zeroed);
/* Frees p (NULL is fine) and removes it from its category's count. */
void ibex_free(void *p);

typedef struct ibex_mem_stats {
    int64_t live[IBEX_MEM_CAT_COUNT];
    int64_t peak[IBEX_MEM_CAT_COUNT];
    int64_t live_total, peak_total;
} ibex_mem_stats;

void ibex_mem_stats_get(ibex_mem_stats *out);
/* Resets the peaks to the current live values (start of a measurement). */
void ibex_mem_reset_peaks(void);
/* Peak resident set size of the process (VmHWM), bytes; 0 if unknown. */
int64_t ibex_mem_process_peak_rss(void);

#endif
