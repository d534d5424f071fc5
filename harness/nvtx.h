/* nvtx.h — NVTX3 ranges in the domain "ibex", mirroring the engine's spans (request,
 * step, schedule/prefill/decode/sampling/release, layer, attn/mlp, op), so Nsight
 * Systems and CUPTI see where the time goes.
 *
 * NVTX3 is header-only: with no tool attached every call returns after one indirect
 * call, so ranges stay on in every build (ibex_nvtx_compiled() says whether this build
 * has them). Names must have static storage duration: their registered string handles
 * are cached by pointer. Single-threaded (the engine thread). */
#ifndef IBEX_NVTX_H
#define IBEX_NVTX_H

#include <stdbool.h>
#include <stdint.h>

bool ibex_nvtx_compiled(void);

/* A nested range on the calling thread; layer >= 0 is attached as the payload. */
void ibex_nvtx_push(const char *name, int layer);
void ibex_nvtx_pop(void);

/* A range that may span steps (a request's life); payload is e.g. the request index.
 * Returns an id for ibex_nvtx_end (0 when NVTX is not compiled in). */
uint64_t ibex_nvtx_start(const char *name, int64_t payload);
void ibex_nvtx_end(uint64_t id);

#endif
