/* hostmem.h — large host buffers on transparent huge pages where the kernel offers them.
 *
 * A decode step streams gigabytes of weights and KV cache; on 4 KiB pages every 4 KiB of
 * a stream is a TLB miss and a page walk, and a paged KV cache whose blocks are visited
 * in table order (not address order) also loses the walker's locality. Buffers of at least
 * IBEX_HUGE_MIN bytes are therefore aligned to 2 MiB and advised MADV_HUGEPAGE (Linux;
 * with /sys/kernel/mm/transparent_hugepage/enabled at "madvise" or "always" they are then
 * backed by 2 MiB pages as they are first touched). The roofline's read test allocates
 * its buffer the same way, so weights, cache and roofline are measured on the same kind
 * of page. Smaller buffers, other systems, or a kernel that declines: plain 64-byte
 * aligned memory, nothing else changes. IBEX_HUGEPAGES=0 in the environment withholds the
 * advice (to measure what it is worth: decode attention at 16k context, 2 threads, took
 * 1.3–1.4× the time without it). */
#ifndef IBEX_HOSTMEM_H
#define IBEX_HOSTMEM_H

#include <stdbool.h>
#include <stddef.h>

#define IBEX_HUGE_PAGE ((size_t)2 << 20)
#define IBEX_HUGE_MIN ((size_t)4 << 20)

/* bytes of memory aligned to 64 (to 2 MiB and advised huge from IBEX_HUGE_MIN), or NULL;
 * release with free(). */
void *ibex_host_alloc(size_t bytes);

/* IBEX_HUGEPAGES=0 is set: no huge-page advice. */
bool ibex_host_thp_off(void);

/* What the kernel does with the advice: "always", "madvise" or "never" (from sysfs), or
 * "unknown" where it cannot be read. */
const char *ibex_host_thp_mode(void);

#endif
