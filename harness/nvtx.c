/* nvtx.c — NVTX3 ranges in the "ibex" domain, with registered strings cached by name
 * pointer (registration makes a range push a handle copy instead of a string copy for
 * tools that record names). Without the NVTX3 headers every function is a no-op. */
#include "harness/nvtx.h"

#if defined(IBEX_HAVE_NVTX)
#include <nvtx3/nvToolsExt.h>

static nvtxDomainHandle_t g_domain;

/* Open-addressed cache: name pointer -> registered handle. Names are the engine's
 * static strings (a few dozen); when full, ranges fall back to ASCII messages. */
#define NVTX_CACHE 256
static struct {
    const char *name;
    nvtxStringHandle_t h;
} g_str[NVTX_CACHE];

static nvtxDomainHandle_t domain(void) {
    if (!g_domain) g_domain = nvtxDomainCreateA("ibex");
    return g_domain;
}

static void set_message(nvtxEventAttributes_t *a, const char *name) {
    size_t h = ((uintptr_t)name >> 3) * 0x9E3779B97F4A7C15ull >> 56; /* 0..255 */
    for (size_t i = 0; i < NVTX_CACHE; i++) {
        size_t k = (h + i) % NVTX_CACHE;
        if (g_str[k].name == name) {
            a->messageType = NVTX_MESSAGE_TYPE_REGISTERED;
            a->message.registered = g_str[k].h;
            return;
        }
        if (!g_str[k].name) {
            nvtxStringHandle_t s = nvtxDomainRegisterStringA(domain(), name);
            if (!s) break; /* no tool attached: registration returns NULL */
            g_str[k].name = name, g_str[k].h = s;
            a->messageType = NVTX_MESSAGE_TYPE_REGISTERED;
            a->message.registered = s;
            return;
        }
    }
    a->messageType = NVTX_MESSAGE_TYPE_ASCII;
    a->message.ascii = name;
}

static nvtxEventAttributes_t attrs(const char *name, int64_t payload, bool with_payload) {
    nvtxEventAttributes_t a = {0};
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    set_message(&a, name);
    if (with_payload) {
        a.payloadType = NVTX_PAYLOAD_TYPE_INT64;
        a.payload.llValue = payload;
    }
    return a;
}

bool ibex_nvtx_compiled(void) { return true; }

void ibex_nvtx_push(const char *name, int layer) {
    nvtxEventAttributes_t a = attrs(name, layer, layer >= 0);
    nvtxDomainRangePushEx(domain(), &a);
}

void ibex_nvtx_pop(void) { nvtxDomainRangePop(domain()); }

uint64_t ibex_nvtx_start(const char *name, int64_t payload) {
    nvtxEventAttributes_t a = attrs(name, payload, true);
    return nvtxDomainRangeStartEx(domain(), &a);
}

void ibex_nvtx_end(uint64_t id) { nvtxDomainRangeEnd(domain(), id); }

#else

bool ibex_nvtx_compiled(void) { return false; }
void ibex_nvtx_push(const char *name, int layer) {}
void ibex_nvtx_pop(void) {}
uint64_t ibex_nvtx_start(const char *name, int64_t payload) { return 0; }
void ibex_nvtx_end(uint64_t id) {}

#endif
