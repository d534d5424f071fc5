/* fuzz_gguf.c — libFuzzer target for the GGUF reader (engine/gguf.c): any byte string
 * either opens or is refused with a message; every key, value, array element and tensor
 * of a file that opens can be read back without touching memory outside the map. */
#include <stdint.h>
#include <string.h>

#include "engine/gguf.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    ibex_err err = {0};
    ibex_gguf *g = ibex_gguf_open(path, &err);
    if (!g) {
        if (!err.msg[0]) FUZZ_FAIL("gguf refused without a message");
        close(fd);
        return 0;
    }
    volatile double dsink = 0;
    volatile uint64_t sink = ibex_gguf_version(g) + ibex_gguf_alignment(g) + ibex_gguf_data_offset(g);
    for (int64_t i = 0; i < ibex_gguf_n_kv(g); i++) {
        const char *k = ibex_gguf_key_at(g, i);
        const ibex_gguf_value *v = ibex_gguf_value_at(g, i);
        if (!k || !v) continue;
        sink += strlen(k);
        if (ibex_gguf_get(g, k) == NULL) FUZZ_FAIL("listed key %s not found", k);
        char buf[256];
        uint32_t u;
        int64_t x;
        float f;
        bool b;
        ibex_gguf_get_str(g, k, buf, sizeof buf, &err);
        ibex_gguf_get_u32(g, k, &u, &err);
        ibex_gguf_get_i64(g, k, &x, &err);
        ibex_gguf_get_f32(g, k, &f, &err);
        ibex_gguf_get_bool(g, k, &b, &err);
        if (v->type == IBEX_GGUF_ARRAY && v->arr.type == IBEX_GGUF_STRING) {
            for (uint64_t j = 0; j < v->arr.n && j < 64; j++)
                if (v->arr.strs[j].len) sink += (uint8_t)v->arr.strs[j].data[v->arr.strs[j].len - 1];
        } else if (v->type == IBEX_GGUF_ARRAY && v->arr.type != IBEX_GGUF_ARRAY) {
            for (uint64_t j = 0; j < v->arr.n && j < 64; j++) {
                sink += (uint64_t)ibex_gguf_arr_i64(v, j);
                dsink += ibex_gguf_arr_f64(v, j);
            }
        }
    }
    for (int64_t i = 0; i < ibex_gguf_n_tensors(g); i++) {
        const ibex_gguf_tensor *t = ibex_gguf_tensor_at(g, i);
        if (!t) continue;
        if (ibex_gguf_find_tensor(g, t->name) == NULL) FUZZ_FAIL("listed tensor %s not found", t->name);
        if (t->nbytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    (void)sink;
    (void)dsink;
    ibex_gguf_close(g);
    close(fd);
    return 0;
}
