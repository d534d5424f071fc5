/* gguf.c — GGUF v2/v3 reader (mmap'd, validated completely at open) and writer.
 *
 * Design notes (reader):
 *   1. Every read from the map goes through an rd cursor whose rd_need() compares the
 *      bytes wanted with the bytes left (size - off, never off + n, so nothing wraps).
 *   2. Counts read from the file (n_kv, n_tensors, array lengths) are bounded by
 *      bytes left / smallest possible element before anything is sized from them;
 *      the kv and tensor tables grow by doubling as entries are actually parsed, and
 *      a string array's table is allocated only after a first pass proved every
 *      string is inside the file. So no allocation exceeds what the file contains.
 *   3. After ibex_gguf_open() succeeds, every pointer handed out (strings, array
 *      data, tensor data) lies inside the map, and tensors do not overlap.
 *   4. Keys and tensor names are found through open-addressing hash tables built at
 *      open time (duplicates are detected while building them).
 *
 * Metadata and tables are small bookkeeping and use malloc; the tensor bytes are the
 * map itself, owned by the ibex_gguf and unmapped by ibex_gguf_close(). */
#include "engine/gguf.h"
#include "engine/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads GGUF's little-endian fields with memcpy: it needs a little-endian host"
#endif

#define GGUF_HEADER_BYTES 24u   /* magic 4 + version 4 + n_tensors 8 + n_kv 8 */
#define GGUF_MIN_KV_BYTES 13u   /* key len 8 + type 4 + >= 1 value byte (empty keys get their own error) */
#define GGUF_MIN_TINFO_BYTES 32u /* name len 8 + n_dims 4 + >= 1 dim 8 + type 4 + offset 8 */
#define GGUF_MAX_NESTING 8      /* arrays of arrays deeper than this are rejected */
#define GGUF_ALIGNMENT_KEY "general.alignment"

static const char *const k_vtype_names[IBEX_GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

const char *ibex_gguf_vtype_name(ibex_gguf_vtype t) {
    if ((unsigned)t >= IBEX_GGUF_VTYPE_COUNT) return "?";
    return k_vtype_names[t];
}

/* Bytes of one scalar of type t; 0 for STRING, ARRAY and invalid ids. */
static uint64_t vtype_scalar_size(uint32_t t) {
    switch (t) {
    case IBEX_GGUF_U8: case IBEX_GGUF_I8: case IBEX_GGUF_BOOL: return 1;
    case IBEX_GGUF_U16: case IBEX_GGUF_I16: return 2;
    case IBEX_GGUF_U32: case IBEX_GGUF_I32: case IBEX_GGUF_F32: return 4;
    case IBEX_GGUF_U64: case IBEX_GGUF_I64: case IBEX_GGUF_F64: return 8;
    default: return 0;
    }
}

static bool vtype_is_int(ibex_gguf_vtype t) {
    switch (t) {
    case IBEX_GGUF_U8: case IBEX_GGUF_I8: case IBEX_GGUF_U16: case IBEX_GGUF_I16:
    case IBEX_GGUF_U32: case IBEX_GGUF_I32: case IBEX_GGUF_U64: case IBEX_GGUF_I64: return true;
    default: return false;
    }
}

static bool vtype_is_signed(ibex_gguf_vtype t) {
    return t == IBEX_GGUF_I8 || t == IBEX_GGUF_I16 || t == IBEX_GGUF_I32 || t == IBEX_GGUF_I64;
}

/* FNV-1a: keys and tensor names are short, so a simple byte hash is enough. */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ------------------------------------------------------------------ reader */

typedef struct gguf_kv {
    char *key;          /* owned, NUL-terminated */
    uint64_t off;       /* byte offset of the pair in the file, for messages */
    ibex_gguf_value v;  /* v.arr.strs owned for STRING arrays */
} gguf_kv;

struct ibex_gguf {
    char *path;
    const uint8_t *map; /* NULL for an empty file */
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;

    int64_t n_kv;
    gguf_kv *kv;
    int64_t *kv_index;  /* hash slots holding kv indexes, -1 empty; mask kv_mask */
    uint64_t kv_mask;

    int64_t n_tensors;
    ibex_gguf_tensor *tensors;
    uint64_t *tensor_info_off; /* offset of each tensor info, for messages */
    int64_t *t_index;
    uint64_t t_mask;
};

/* Cursor over the map. ctx names the item being parsed ("metadata pair 3 ('k')"). */
typedef struct rd {
    const uint8_t *p;
    uint64_t size, off;
    const char *path;
    ibex_err *err;
    char ctx[200];
} rd;

static bool rd_fail(rd *r, uint64_t off, ibex_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Sets an error "path: offset N: ctx: message" and returns false. */
static bool rd_fail(rd *r, uint64_t off, ibex_status s, const char *fmt, ...) {
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (r->ctx[0])
        ibex_err_set(r->err, s, "%s: offset %" PRIu64 ": %s: %s", r->path, off, r->ctx, what);
    else
        ibex_err_set(r->err, s, "%s: offset %" PRIu64 ": %s", r->path, off, what);
    return false;
}

/* True when n more bytes are available; else a "truncated" error naming what. */
static bool rd_need(rd *r, uint64_t n, const char *what) {
    uint64_t left = r->size - r->off;
    if (n <= left) return true;
    ibex_err_set(r->err, IBEX_ERR_FORMAT,
                 "%s: truncated at offset %" PRIu64 " while reading %s%s%s (%" PRIu64
                 " bytes needed, %" PRIu64 " left)",
                 r->path, r->off, what, r->ctx[0] ? " of " : "", r->ctx, n, left);
    return false;
}

static bool rd_u32(rd *r, uint32_t *out, const char *what) {
    if (!rd_need(r, 4, what)) return false;
    memcpy(out, r->p + r->off, 4);
    r->off += 4;
    return true;
}

static bool rd_u64(rd *r, uint64_t *out, const char *what) {
    if (!rd_need(r, 8, what)) return false;
    memcpy(out, r->p + r->off, 8);
    r->off += 8;
    return true;
}

/* A length-prefixed string; out points into the map. */
static bool rd_str(rd *r, ibex_gguf_str *out, const char *what) {
    uint64_t at = r->off;
    uint64_t len;
    if (!rd_u64(r, &len, what)) return false;
    uint64_t left = r->size - r->off;
    if (len > left) {
        r->off = at;
        return rd_fail(r, at, IBEX_ERR_FORMAT,
                       "%s has length %" PRIu64 ", which runs past the end of the file (%" PRIu64
                       " bytes left)",
                       what, len, left);
    }
    out->len = len;
    out->data = (const char *)(r->p + r->off);
    r->off += len;
    return true;
}

/* Reads a count of elements each at least min_size bytes, refusing counts that could
 * not fit in what is left (so later allocations are bounded by the file size). */
static bool rd_count(rd *r, uint64_t *out, uint64_t min_size, const char *what) {
    uint64_t at = r->off;
    if (!rd_u64(r, out, what)) return false;
    uint64_t left = r->size - r->off;
    if (*out > left / min_size)
        return rd_fail(r, at, IBEX_ERR_FORMAT,
                       "%s %" PRIu64 " runs past the end of the file (%" PRIu64
                       " bytes left, each element needs at least %" PRIu64 ")",
                       what, *out, left, min_size);
    return true;
}

/* Parses one value of type `type` at the cursor. out may be NULL (elements of nested
 * arrays are validated but not decoded). */
static bool parse_value(rd *r, uint32_t type, int depth, ibex_gguf_value *out) {
    uint64_t at = r->off;
    uint64_t sz = vtype_scalar_size(type);
    if (sz) {
        if (!rd_need(r, sz, "the value")) return false;
        if (out) {
            const uint8_t *q = r->p + r->off;
            out->type = (ibex_gguf_vtype)type;
            switch (type) {
            case IBEX_GGUF_U8: out->u = q[0]; break;
            case IBEX_GGUF_I8: out->i = (int8_t)q[0]; break;
            case IBEX_GGUF_BOOL: out->u = q[0] != 0; break;
            case IBEX_GGUF_U16: { uint16_t v; memcpy(&v, q, 2); out->u = v; break; }
            case IBEX_GGUF_I16: { int16_t v; memcpy(&v, q, 2); out->i = v; break; }
            case IBEX_GGUF_U32: { uint32_t v; memcpy(&v, q, 4); out->u = v; break; }
            case IBEX_GGUF_I32: { int32_t v; memcpy(&v, q, 4); out->i = v; break; }
            case IBEX_GGUF_F32: { float v; memcpy(&v, q, 4); out->f = v; break; }
            case IBEX_GGUF_U64: { uint64_t v; memcpy(&v, q, 8); out->u = v; break; }
            case IBEX_GGUF_I64: { int64_t v; memcpy(&v, q, 8); out->i = v; break; }
            case IBEX_GGUF_F64: { double v; memcpy(&v, q, 8); out->f = v; break; }
            default: break;
            }
        }
        r->off += sz;
        return true;
    }
    if (type == IBEX_GGUF_STRING) {
        ibex_gguf_str s;
        if (!rd_str(r, &s, "the string value")) return false;
        if (out) {
            out->type = IBEX_GGUF_STRING;
            out->s = s;
        }
        return true;
    }
    if (type != IBEX_GGUF_ARRAY)
        return rd_fail(r, at, IBEX_ERR_FORMAT, "invalid value type %" PRIu32, type);

    if (depth >= GGUF_MAX_NESTING)
        return rd_fail(r, at, IBEX_ERR_FORMAT, "arrays nested deeper than %d levels",
                       GGUF_MAX_NESTING);
    uint32_t etype;
    if (!rd_u32(r, &etype, "the array element type")) return false;
    if (etype >= IBEX_GGUF_VTYPE_COUNT)
        return rd_fail(r, at, IBEX_ERR_FORMAT, "invalid array element type %" PRIu32, etype);
    uint64_t esz = vtype_scalar_size(etype);
    uint64_t min_size = esz ? esz : etype == IBEX_GGUF_STRING ? 8 : 12; /* array: etype+count */
    uint64_t n;
    if (!rd_count(r, &n, min_size, "array count")) return false;
    const uint8_t *first = r->p + r->off;
    const ibex_gguf_str *strs = NULL;
    if (esz) {
        r->off += n * esz; /* rd_count proved n * esz <= bytes left */
    } else if (etype == IBEX_GGUF_STRING) {
        uint64_t start = r->off;
        ibex_gguf_str s;
        for (uint64_t i = 0; i < n; i++)
            if (!rd_str(r, &s, "a string array element")) return false;
        if (out && n > 0) {
            /* Second pass: every string was proven to be inside the file. */
            ibex_gguf_str *tab = malloc(n * sizeof *tab);
            if (!tab)
                return rd_fail(r, at, IBEX_ERR_NOMEM, "cannot allocate %" PRIu64 " strings", n);
            uint64_t o = start;
            for (uint64_t i = 0; i < n; i++) {
                memcpy(&tab[i].len, r->p + o, 8);
                tab[i].data = (const char *)(r->p + o + 8);
                o += 8 + tab[i].len;
            }
            strs = tab;
        }
    } else {
        /* Each element of an array of arrays is itself "etype, count, elements". */
        for (uint64_t i = 0; i < n; i++)
            if (!parse_value(r, IBEX_GGUF_ARRAY, depth + 1, NULL)) return false;
    }
    if (out) {
        out->type = IBEX_GGUF_ARRAY;
        out->arr.type = (ibex_gguf_vtype)etype;
        out->arr.n = n;
        out->arr.data = first;
        out->arr.strs = strs;
    }
    return true;
}

/* Smallest power of two >= 2n (>= 8), for an open-addressing table of n entries. */
static uint64_t table_size(int64_t n) {
    uint64_t s = 8;
    while (s < (uint64_t)n * 2) s <<= 1;
    return s;
}

static void gguf_free_tables(ibex_gguf *g) {
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        if (g->kv[i].v.type == IBEX_GGUF_ARRAY) free((void *)g->kv[i].v.arr.strs);
    }
    free(g->kv);
    free(g->kv_index);
    free(g->tensors);
    free(g->tensor_info_off);
    free(g->t_index);
}

void ibex_gguf_close(ibex_gguf *g) {
    if (!g) return;
    gguf_free_tables(g);
    if (g->map) munmap((void *)g->map, g->size);
    free(g->path);
    free(g);
}

static int64_t kv_lookup(const ibex_gguf *g, const char *key, size_t len) {
    if (!g->kv_index) return -1;
    for (uint64_t h = hash_bytes(key, len) & g->kv_mask;; h = (h + 1) & g->kv_mask) {
        int64_t i = g->kv_index[h];
        if (i < 0) return -1;
        const char *k = g->kv[i].key;
        if (strlen(k) == len && memcmp(k, key, len) == 0) return i;
    }
}

static int64_t tensor_lookup(const ibex_gguf *g, const char *name, size_t len) {
    if (!g->t_index) return -1;
    for (uint64_t h = hash_bytes(name, len) & g->t_mask;; h = (h + 1) & g->t_mask) {
        int64_t i = g->t_index[h];
        if (i < 0) return -1;
        const char *k = g->tensors[i].name;
        if (strlen(k) == len && memcmp(k, name, len) == 0) return i;
    }
}

/* Grows a table of elements of size esz to hold at least need entries (need <= max). */
static bool grow(void **tab, int64_t *cap, int64_t need, uint64_t max, size_t esz) {
    if (need <= *cap) return true;
    uint64_t c = *cap ? (uint64_t)*cap * 2 : 16;
    if (c > max) c = max;
    if (c < (uint64_t)need) c = (uint64_t)need;
    void *p = realloc(*tab, c * esz);
    if (!p) return false;
    *tab = p;
    *cap = (int64_t)c;
    return true;
}

static bool parse_kvs(ibex_gguf *g, rd *r, uint64_t n_kv) {
    int64_t cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t at = r->off;
        snprintf(r->ctx, sizeof r->ctx, "metadata pair %" PRIu64, i);
        if (!grow((void **)&g->kv, &cap, g->n_kv + 1, n_kv, sizeof *g->kv))
            return rd_fail(r, at, IBEX_ERR_NOMEM, "out of memory");
        ibex_gguf_str key;
        if (!rd_str(r, &key, "the key")) return false;
        if (key.len == 0) return rd_fail(r, at, IBEX_ERR_FORMAT, "empty key");
        if (memchr(key.data, 0, key.len))
            return rd_fail(r, at, IBEX_ERR_FORMAT, "key contains a NUL byte");
        char *k = malloc(key.len + 1);
        if (!k) return rd_fail(r, at, IBEX_ERR_NOMEM, "out of memory");
        memcpy(k, key.data, key.len);
        k[key.len] = '\0';
        gguf_kv *kv = &g->kv[g->n_kv++];
        memset(kv, 0, sizeof *kv);
        kv->key = k;
        kv->off = at;
        kv->v.type = IBEX_GGUF_U8; /* nothing owned until the value parses */
        snprintf(r->ctx, sizeof r->ctx, "metadata pair %" PRIu64 " ('%.150s')", i, k);
        uint64_t type_at = r->off;
        uint32_t type;
        if (!rd_u32(r, &type, "the value type")) return false;
        if (type >= IBEX_GGUF_VTYPE_COUNT)
            return rd_fail(r, type_at, IBEX_ERR_FORMAT, "invalid value type %" PRIu32, type);
        if (!parse_value(r, type, 0, &kv->v)) return false;
    }
    r->ctx[0] = '\0';

    g->kv_mask = table_size(g->n_kv) - 1;
    g->kv_index = malloc((g->kv_mask + 1) * sizeof *g->kv_index);
    if (!g->kv_index) return rd_fail(r, r->off, IBEX_ERR_NOMEM, "out of memory");
    memset(g->kv_index, 0xff, (g->kv_mask + 1) * sizeof *g->kv_index);
    for (int64_t i = 0; i < g->n_kv; i++) {
        const char *k = g->kv[i].key;
        size_t len = strlen(k);
        uint64_t h = hash_bytes(k, len) & g->kv_mask;
        for (; g->kv_index[h] >= 0; h = (h + 1) & g->kv_mask) {
            const gguf_kv *o = &g->kv[g->kv_index[h]];
            if (strcmp(o->key, k) == 0)
                return rd_fail(r, g->kv[i].off, IBEX_ERR_FORMAT,
                               "duplicate key '%.200s' (first defined at offset %" PRIu64 ")", k,
                               o->off);
        }
        g->kv_index[h] = i;
    }

    g->alignment = IBEX_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = kv_lookup(g, GGUF_ALIGNMENT_KEY, strlen(GGUF_ALIGNMENT_KEY));
    if (ai >= 0) {
        const ibex_gguf_value *v = &g->kv[ai].v;
        if (v->type != IBEX_GGUF_U32)
            return rd_fail(r, g->kv[ai].off, IBEX_ERR_FORMAT,
                           "key '" GGUF_ALIGNMENT_KEY "' has type %s, expected u32",
                           ibex_gguf_vtype_name(v->type));
        if (v->u == 0 || (v->u & (v->u - 1)) != 0)
            return rd_fail(r, g->kv[ai].off, IBEX_ERR_FORMAT,
                           "general.alignment %" PRIu64 " is not a power of two", v->u);
        g->alignment = (uint32_t)v->u;
    }
    return true;
}

static bool parse_tensor_infos(ibex_gguf *g, rd *r, uint64_t n_tensors) {
    int64_t cap = 0, cap2 = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        uint64_t at = r->off;
        snprintf(r->ctx, sizeof r->ctx, "tensor info %" PRIu64, i);
        if (!grow((void **)&g->tensors, &cap, g->n_tensors + 1, n_tensors, sizeof *g->tensors) ||
            !grow((void **)&g->tensor_info_off, &cap2, g->n_tensors + 1, n_tensors,
                  sizeof *g->tensor_info_off))
            return rd_fail(r, at, IBEX_ERR_NOMEM, "out of memory");
        ibex_gguf_tensor *t = &g->tensors[g->n_tensors];
        memset(t, 0, sizeof *t);
        g->tensor_info_off[g->n_tensors] = at;

        ibex_gguf_str name;
        if (!rd_str(r, &name, "the tensor name")) return false;
        if (name.len > IBEX_GGUF_MAX_NAME)
            return rd_fail(r, at, IBEX_ERR_FORMAT,
                           "tensor name '%.64s...' is %" PRIu64 " bytes, longer than %d", name.data,
                           name.len, IBEX_GGUF_MAX_NAME);
        if (memchr(name.data, 0, name.len))
            return rd_fail(r, at, IBEX_ERR_FORMAT, "tensor name contains a NUL byte");
        memcpy(t->name, name.data, name.len);
        t->name[name.len] = '\0';
        snprintf(r->ctx, sizeof r->ctx, "tensor '%s'", t->name);

        uint64_t dims_at = r->off;
        if (!rd_u32(r, &t->n_dims, "n_dims")) return false;
        if (t->n_dims == 0 || t->n_dims > IBEX_GGUF_MAX_DIMS)
            return rd_fail(r, dims_at, IBEX_ERR_FORMAT, "n_dims %" PRIu32 " is outside 1..%d",
                           t->n_dims, IBEX_GGUF_MAX_DIMS);
        int64_t nel = 1;
        for (int d = 0; d < IBEX_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne_at = r->off;
            uint64_t v;
            if (!rd_u64(r, &v, "a dimension")) return false;
            if (v == 0 || v > (uint64_t)INT64_MAX)
                return rd_fail(r, ne_at, IBEX_ERR_FORMAT,
                               "ne[%" PRIu32 "] = %" PRIu64 " is not a positive size", d, v);
            t->ne[d] = (int64_t)v;
            if (__builtin_mul_overflow(nel, t->ne[d], &nel))
                return rd_fail(r, ne_at, IBEX_ERR_FORMAT,
                               "element count overflows at ne[%" PRIu32 "] = %" PRIu64, d, v);
        }
        uint64_t type_at = r->off;
        uint32_t type;
        if (!rd_u32(r, &type, "the tensor type")) return false;
        const ibex_type_traits *tr = ibex_type_traits_get(type);
        if (!tr)
            /* An id ggml could define is a type ibex lacks; anything beyond is garbage. */
            return rd_fail(r, type_at,
                           type < IBEX_TYPE_COUNT ? IBEX_ERR_UNSUPPORTED : IBEX_ERR_FORMAT,
                           "unknown tensor type id %" PRIu32, type);
        t->type = (ibex_type)type;
        if (t->ne[0] % tr->block_size != 0)
            return rd_fail(r, type_at, IBEX_ERR_FORMAT,
                           "ne[0] = %" PRId64 " is not a multiple of the %s block size %d",
                           t->ne[0], tr->name, tr->block_size);
        uint64_t nbytes = (uint64_t)(t->ne[0] / tr->block_size);
        bool ovf = __builtin_mul_overflow(nbytes, (uint64_t)tr->type_size, &nbytes);
        for (int d = 1; d < IBEX_GGUF_MAX_DIMS; d++)
            ovf |= __builtin_mul_overflow(nbytes, (uint64_t)t->ne[d], &nbytes);
        if (ovf)
            return rd_fail(r, type_at, IBEX_ERR_FORMAT, "byte size overflows 64 bits");
        t->nbytes = nbytes;
        uint64_t off_at = r->off;
        if (!rd_u64(r, &t->offset, "the tensor data offset")) return false;
        if (t->offset % g->alignment != 0)
            return rd_fail(r, off_at, IBEX_ERR_FORMAT,
                           "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu32,
                           t->offset, g->alignment);
        g->n_tensors++;
    }
    r->ctx[0] = '\0';
    return true;
}

/* A tensor's byte range in the data section, for the overlap check. */
typedef struct span {
    uint64_t begin, end;
    int64_t index;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Places the tensors in the data section and checks names, bounds and overlaps. */
static bool check_tensors(ibex_gguf *g, rd *r) {
    uint64_t infos_end = r->off;
    /* infos_end <= size and alignment <= 2^31, so this cannot wrap. */
    g->data_offset = (infos_end + g->alignment - 1) / g->alignment * g->alignment;

    g->t_mask = table_size(g->n_tensors) - 1;
    g->t_index = malloc((g->t_mask + 1) * sizeof *g->t_index);
    if (!g->t_index) return rd_fail(r, infos_end, IBEX_ERR_NOMEM, "out of memory");
    memset(g->t_index, 0xff, (g->t_mask + 1) * sizeof *g->t_index);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        ibex_gguf_tensor *t = &g->tensors[i];
        size_t len = strlen(t->name);
        uint64_t h = hash_bytes(t->name, len) & g->t_mask;
        for (; g->t_index[h] >= 0; h = (h + 1) & g->t_mask) {
            int64_t j = g->t_index[h];
            if (strcmp(g->tensors[j].name, t->name) == 0)
                return rd_fail(r, g->tensor_info_off[i], IBEX_ERR_FORMAT,
                               "duplicate tensor name '%s' (first defined at offset %" PRIu64 ")",
                               t->name, g->tensor_info_off[j]);
        }
        g->t_index[h] = i;

        uint64_t size = g->size, dofs = g->data_offset;
        if (dofs > size || t->offset > size - dofs || t->nbytes > size - dofs - t->offset)
            return rd_fail(r, g->tensor_info_off[i], IBEX_ERR_FORMAT,
                           "tensor '%s' data (%" PRIu64 " bytes at data offset %" PRIu64
                           ", file offset %" PRIu64 ") lies outside the file of %" PRIu64 " bytes",
                           t->name, t->nbytes, t->offset,
                           t->offset > UINT64_MAX - dofs ? UINT64_MAX : dofs + t->offset, size);
        t->data = g->map + dofs + t->offset;
    }

    if (g->n_tensors > 1) {
        span *sp = malloc((size_t)g->n_tensors * sizeof *sp);
        if (!sp) return rd_fail(r, infos_end, IBEX_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < g->n_tensors; i++) /* inside the file, so end cannot wrap */
            sp[i] = (span){g->tensors[i].offset, g->tensors[i].offset + g->tensors[i].nbytes, i};
        qsort(sp, (size_t)g->n_tensors, sizeof *sp, cmp_span);
        for (int64_t k = 1; k < g->n_tensors; k++) {
            if (sp[k].begin < sp[k - 1].end) {
                rd_fail(r, g->tensor_info_off[sp[k].index], IBEX_ERR_FORMAT,
                        "tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                        ") overlap in the data section",
                        g->tensors[sp[k - 1].index].name, sp[k - 1].begin, sp[k - 1].end,
                        g->tensors[sp[k].index].name, sp[k].begin, sp[k].end);
                free(sp);
                return false;
            }
        }
        free(sp);
    }
    return true;
}

static bool parse(ibex_gguf *g, ibex_err *err) {
    rd r = {.p = g->map, .size = g->size, .off = 0, .path = g->path, .err = err};
    r.ctx[0] = '\0';
    if (g->size < 4)
        return rd_fail(&r, 0, IBEX_ERR_FORMAT,
                       "file too small (%" PRIu64 " bytes) to be GGUF (a header is %u bytes)",
                       g->size, GGUF_HEADER_BYTES);
    if (memcmp(g->map, IBEX_GGUF_MAGIC, 4) != 0) {
        char shown[5];
        for (int i = 0; i < 4; i++)
            shown[i] = g->map[i] >= 0x20 && g->map[i] < 0x7f ? (char)g->map[i] : '.';
        shown[4] = '\0';
        return rd_fail(&r, 0, IBEX_ERR_FORMAT,
                       "bad magic %02x %02x %02x %02x ('%s'), expected 'GGUF': not a GGUF file",
                       g->map[0], g->map[1], g->map[2], g->map[3], shown);
    }
    r.off = 4;
    if (!rd_u32(&r, &g->version, "the version")) return false;
    if (g->version != 2 && g->version != 3)
        return rd_fail(&r, 4, IBEX_ERR_UNSUPPORTED,
                       "GGUF version %" PRIu32 " is not supported (ibex reads versions 2 and 3)",
                       g->version);
    uint64_t n_tensors, n_kv;
    if (!rd_count(&r, &n_tensors, GGUF_MIN_TINFO_BYTES, "tensor count")) return false;
    if (!rd_count(&r, &n_kv, GGUF_MIN_KV_BYTES, "metadata pair count")) return false;
    /* Both fit on their own; together they must too (no overflow: each <= size / 13). */
    if (n_tensors * GGUF_MIN_TINFO_BYTES + n_kv * GGUF_MIN_KV_BYTES > g->size - r.off)
        return rd_fail(&r, 8, IBEX_ERR_FORMAT,
                       "%" PRIu64 " tensor infos and %" PRIu64
                       " metadata pairs cannot fit in the %" PRIu64 " bytes left",
                       n_tensors, n_kv, g->size - r.off);
    if (!parse_kvs(g, &r, n_kv)) return false;
    if (!parse_tensor_infos(g, &r, n_tensors)) return false;
    return check_tensors(g, &r);
}

ibex_gguf *ibex_gguf_open(const char *path, ibex_err *err) {
    if (!path) {
        ibex_err_set(err, IBEX_ERR_INVALID, "ibex_gguf_open: path is NULL");
        return NULL;
    }
    ibex_gguf *g = calloc(1, sizeof *g);
    char *p = strdup(path);
    if (!g || !p) {
        free(g);
        free(p);
        ibex_err_set(err, IBEX_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    g->path = p;
    /* A FIFO, device or directory is refused before it can block (fileio.h). */
    int fd = ibex_open_regular(path, err);
    if (fd < 0) {
        ibex_gguf_close(g);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ibex_err_set(err, IBEX_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        ibex_gguf_close(g);
        return NULL;
    }
    g->size = (uint64_t)st.st_size;
    if (g->size > 0) {
        if (g->size > SIZE_MAX) {
            ibex_err_set(err, IBEX_ERR_IO, "%s: too large to map", path);
            close(fd);
            ibex_gguf_close(g);
            return NULL;
        }
        void *m = mmap(NULL, (size_t)g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            ibex_err_set(err, IBEX_ERR_IO, "%s: mmap of %" PRIu64 " bytes failed: %s", path,
                         g->size, strerror(errno));
            close(fd);
            ibex_gguf_close(g);
            return NULL;
        }
        g->map = m;
    }
    close(fd); /* the mapping keeps the file */
    if (!parse(g, err)) {
        ibex_gguf_close(g);
        return NULL;
    }
    return g;
}

const char *ibex_gguf_path(const ibex_gguf *g) { return g->path; }
uint32_t ibex_gguf_version(const ibex_gguf *g) { return g->version; }
uint32_t ibex_gguf_alignment(const ibex_gguf *g) { return g->alignment; }
uint64_t ibex_gguf_file_size(const ibex_gguf *g) { return g->size; }
uint64_t ibex_gguf_data_offset(const ibex_gguf *g) { return g->data_offset; }
int64_t ibex_gguf_n_kv(const ibex_gguf *g) { return g->n_kv; }

const char *ibex_gguf_key_at(const ibex_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

const ibex_gguf_value *ibex_gguf_value_at(const ibex_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kv[i].v : NULL;
}

const ibex_gguf_value *ibex_gguf_get(const ibex_gguf *g, const char *key) {
    if (!key) return NULL;
    int64_t i = kv_lookup(g, key, strlen(key));
    return i >= 0 ? &g->kv[i].v : NULL;
}

int64_t ibex_gguf_n_tensors(const ibex_gguf *g) { return g->n_tensors; }

const ibex_gguf_tensor *ibex_gguf_tensor_at(const ibex_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const ibex_gguf_tensor *ibex_gguf_find_tensor(const ibex_gguf *g, const char *name) {
    if (!name) return NULL;
    int64_t i = tensor_lookup(g, name, strlen(name));
    return i >= 0 ? &g->tensors[i] : NULL;
}

/* "array of f32" or "u32", for type messages. */
static const char *value_type_desc(const ibex_gguf_value *v, char *buf, size_t cap) {
    if (v->type == IBEX_GGUF_ARRAY)
        snprintf(buf, cap, "array of %s", ibex_gguf_vtype_name(v->arr.type));
    else
        snprintf(buf, cap, "%s", ibex_gguf_vtype_name(v->type));
    return buf;
}

static ibex_status type_error(const ibex_gguf *g, const char *key, const ibex_gguf_value *v,
                              const char *expected, ibex_err *err) {
    char t[32];
    return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", g->path,
                        key, value_type_desc(v, t, sizeof t), expected);
}

/* Integer value of v as a sign + magnitude pair; false if v is not an integer type. */
static bool value_int(const ibex_gguf_value *v, bool *neg, uint64_t *mag) {
    if (!vtype_is_int(v->type)) return false;
    if (vtype_is_signed(v->type) && v->i < 0) {
        *neg = true;
        *mag = (uint64_t)0 - (uint64_t)v->i;
    } else {
        *neg = false;
        *mag = vtype_is_signed(v->type) ? (uint64_t)v->i : v->u;
    }
    return true;
}

static ibex_status range_error(const ibex_gguf *g, const char *key, bool neg, uint64_t mag,
                               const char *expected, ibex_err *err) {
    return ibex_err_set(err, IBEX_ERR_FORMAT, "%s: key '%s' value %s%" PRIu64 " does not fit in %s",
                        g->path, key, neg ? "-" : "", mag, expected);
}

ibex_status ibex_gguf_get_u32(const ibex_gguf *g, const char *key, uint32_t *out, ibex_err *err) {
    const ibex_gguf_value *v = ibex_gguf_get(g, key);
    if (!v) return IBEX_ERR_NOT_FOUND;
    bool neg;
    uint64_t mag;
    if (!value_int(v, &neg, &mag)) return type_error(g, key, v, "u32", err);
    if (neg || mag > UINT32_MAX) return range_error(g, key, neg, mag, "u32", err);
    *out = (uint32_t)mag;
    return IBEX_OK;
}

ibex_status ibex_gguf_get_i64(const ibex_gguf *g, const char *key, int64_t *out, ibex_err *err) {
    const ibex_gguf_value *v = ibex_gguf_get(g, key);
    if (!v) return IBEX_ERR_NOT_FOUND;
    bool neg;
    uint64_t mag;
    if (!value_int(v, &neg, &mag)) return type_error(g, key, v, "i64", err);
    if (!neg && mag > (uint64_t)INT64_MAX) return range_error(g, key, neg, mag, "i64", err);
    *out = vtype_is_signed(v->type) ? v->i : (int64_t)v->u;
    return IBEX_OK;
}

ibex_status ibex_gguf_get_f32(const ibex_gguf *g, const char *key, float *out, ibex_err *err) {
    const ibex_gguf_value *v = ibex_gguf_get(g, key);
    if (!v) return IBEX_ERR_NOT_FOUND;
    if (v->type != IBEX_GGUF_F32 && v->type != IBEX_GGUF_F64)
        return type_error(g, key, v, "f32", err);
    *out = (float)v->f;
    return IBEX_OK;
}

ibex_status ibex_gguf_get_bool(const ibex_gguf *g, const char *key, bool *out, ibex_err *err) {
    const ibex_gguf_value *v = ibex_gguf_get(g, key);
    if (!v) return IBEX_ERR_NOT_FOUND;
    if (v->type != IBEX_GGUF_BOOL) return type_error(g, key, v, "bool", err);
    *out = v->u != 0;
    return IBEX_OK;
}

ibex_status ibex_gguf_get_str(const ibex_gguf *g, const char *key, char *buf, uint64_t cap,
                              ibex_err *err) {
    const ibex_gguf_value *v = ibex_gguf_get(g, key);
    if (!v) return IBEX_ERR_NOT_FOUND;
    if (v->type != IBEX_GGUF_STRING) return type_error(g, key, v, "string", err);
    if (cap == 0)
        return ibex_err_set(err, IBEX_ERR_INVALID, "%s: key '%s': string buffer of 0 bytes",
                            g->path, key);
    uint64_t n = v->s.len < cap - 1 ? v->s.len : cap - 1;
    memcpy(buf, v->s.data, (size_t)n);
    buf[n] = '\0';
    return IBEX_OK;
}

ibex_status ibex_gguf_get_arr(const ibex_gguf *g, const char *key, ibex_gguf_vtype etype,
                              const ibex_gguf_value **out, ibex_err *err) {
    const ibex_gguf_value *v = ibex_gguf_get(g, key);
    if (!v) return IBEX_ERR_NOT_FOUND;
    if (v->type != IBEX_GGUF_ARRAY || (etype != IBEX_GGUF_VTYPE_COUNT && v->arr.type != etype)) {
        char want[32];
        if (etype == IBEX_GGUF_VTYPE_COUNT)
            snprintf(want, sizeof want, "array");
        else
            snprintf(want, sizeof want, "array of %s", ibex_gguf_vtype_name(etype));
        return type_error(g, key, v, want, err);
    }
    *out = v;
    return IBEX_OK;
}

double ibex_gguf_arr_f64(const ibex_gguf_value *arr, uint64_t i) {
    if (arr->type != IBEX_GGUF_ARRAY) return 0;
    uint64_t sz = vtype_scalar_size(arr->arr.type);
    if (!sz || i >= arr->arr.n) return 0.0;
    const uint8_t *q = (const uint8_t *)arr->arr.data + i * sz;
    switch (arr->arr.type) {
    case IBEX_GGUF_U8: return q[0];
    case IBEX_GGUF_I8: return (int8_t)q[0];
    case IBEX_GGUF_BOOL: return q[0] != 0;
    case IBEX_GGUF_U16: { uint16_t v; memcpy(&v, q, 2); return v; }
    case IBEX_GGUF_I16: { int16_t v; memcpy(&v, q, 2); return v; }
    case IBEX_GGUF_U32: { uint32_t v; memcpy(&v, q, 4); return v; }
    case IBEX_GGUF_I32: { int32_t v; memcpy(&v, q, 4); return v; }
    case IBEX_GGUF_F32: { float v; memcpy(&v, q, 4); return v; }
    case IBEX_GGUF_U64: { uint64_t v; memcpy(&v, q, 8); return (double)v; }
    case IBEX_GGUF_I64: { int64_t v; memcpy(&v, q, 8); return (double)v; }
    case IBEX_GGUF_F64: { double v; memcpy(&v, q, 8); return v; }
    default: return 0.0;
    }
}

int64_t ibex_gguf_arr_i64(const ibex_gguf_value *arr, uint64_t i) {
    if (arr->type != IBEX_GGUF_ARRAY) return 0;
    uint64_t sz = vtype_scalar_size(arr->arr.type);
    if (!sz || i >= arr->arr.n) return 0;
    const uint8_t *q = (const uint8_t *)arr->arr.data + i * sz;
    switch (arr->arr.type) {
    case IBEX_GGUF_U64: { uint64_t v; memcpy(&v, q, 8); return (int64_t)v; }
    case IBEX_GGUF_I64: { int64_t v; memcpy(&v, q, 8); return v; }
    case IBEX_GGUF_F32:
    case IBEX_GGUF_F64: {
        /* Truncates toward zero; NaN gives 0 and out-of-range values saturate, since the
         * plain cast would be undefined. */
        double d = ibex_gguf_arr_f64(arr, i);
        if (d != d) return 0;
        if (d >= 9223372036854775808.0) return INT64_MAX;
        if (d < -9223372036854775808.0) return INT64_MIN;
        return (int64_t)d;
    }
    default: return (int64_t)ibex_gguf_arr_f64(arr, i); /* exact for types of <= 32 bits */
    }
}

/* ------------------------------------------------------------------ writer */

/* A growable byte buffer; oom sticks once an allocation fails. */
typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} wbuf;

static void wb_put(wbuf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->n) {
        size_t c = b->cap ? b->cap : 64;
        while (c - b->n < n) {
            if (c > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            c *= 2;
        }
        uint8_t *p = realloc(b->p, c);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void wb_u32(wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_str(wbuf *b, const char *s, uint64_t len) {
    wb_u64(b, len);
    wb_put(b, s, (size_t)len);
}

typedef struct wkv {
    char *key;
    wbuf val; /* the serialized value: u32 type, then its bytes */
} wkv;

typedef struct wtensor {
    char *name;
    ibex_type type;
    uint32_t n_dims;
    int64_t ne[IBEX_GGUF_MAX_DIMS];
    const void *data;
} wtensor;

struct ibex_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    bool oom;
    char bad[256]; /* first invalid-argument message from a setter, "" if none */
};

ibex_gguf_writer *ibex_gguf_writer_new(void) { return calloc(1, sizeof(ibex_gguf_writer)); }

void ibex_gguf_writer_free(ibex_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val.p);
    }
    free(w->kv);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

static void w_bad(ibex_gguf_writer *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void w_bad(ibex_gguf_writer *w, const char *fmt, ...) {
    if (w->bad[0]) return; /* the first problem is the one to report */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->bad, sizeof w->bad, fmt, ap);
    va_end(ap);
}

/* Takes ownership of val; replaces the value of an existing key in place. */
static void w_put(ibex_gguf_writer *w, const char *key, wbuf val) {
    if (val.oom) {
        free(val.p);
        w->oom = true;
        return;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val.p);
            w->kv[i].val = val;
            return;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t c = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *p = realloc(w->kv, c * sizeof *p);
        if (!p) {
            free(val.p);
            w->oom = true;
            return;
        }
        w->kv = p;
        w->cap_kv = c;
    }
    char *k = strdup(key);
    if (!k) {
        free(val.p);
        w->oom = true;
        return;
    }
    w->kv[w->n_kv].key = k;
    w->kv[w->n_kv].val = val;
    w->n_kv++;
}

static void w_scalar(ibex_gguf_writer *w, const char *key, ibex_gguf_vtype t, const void *v,
                     size_t n) {
    if (!w) return;
    if (!key) {
        w_bad(w, "a %s metadata value was set with a NULL key", ibex_gguf_vtype_name(t));
        return;
    }
    wbuf b = {0};
    wb_u32(&b, t);
    wb_put(&b, v, n);
    w_put(w, key, b);
}

void ibex_gguf_writer_set_u8(ibex_gguf_writer *w, const char *key, uint8_t v) {
    w_scalar(w, key, IBEX_GGUF_U8, &v, 1);
}
void ibex_gguf_writer_set_i8(ibex_gguf_writer *w, const char *key, int8_t v) {
    w_scalar(w, key, IBEX_GGUF_I8, &v, 1);
}
void ibex_gguf_writer_set_u16(ibex_gguf_writer *w, const char *key, uint16_t v) {
    w_scalar(w, key, IBEX_GGUF_U16, &v, 2);
}
void ibex_gguf_writer_set_i16(ibex_gguf_writer *w, const char *key, int16_t v) {
    w_scalar(w, key, IBEX_GGUF_I16, &v, 2);
}
void ibex_gguf_writer_set_u32(ibex_gguf_writer *w, const char *key, uint32_t v) {
    w_scalar(w, key, IBEX_GGUF_U32, &v, 4);
}
void ibex_gguf_writer_set_i32(ibex_gguf_writer *w, const char *key, int32_t v) {
    w_scalar(w, key, IBEX_GGUF_I32, &v, 4);
}
void ibex_gguf_writer_set_u64(ibex_gguf_writer *w, const char *key, uint64_t v) {
    w_scalar(w, key, IBEX_GGUF_U64, &v, 8);
}
void ibex_gguf_writer_set_i64(ibex_gguf_writer *w, const char *key, int64_t v) {
    w_scalar(w, key, IBEX_GGUF_I64, &v, 8);
}
void ibex_gguf_writer_set_f32(ibex_gguf_writer *w, const char *key, float v) {
    w_scalar(w, key, IBEX_GGUF_F32, &v, 4);
}
void ibex_gguf_writer_set_f64(ibex_gguf_writer *w, const char *key, double v) {
    w_scalar(w, key, IBEX_GGUF_F64, &v, 8);
}
void ibex_gguf_writer_set_bool(ibex_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    w_scalar(w, key, IBEX_GGUF_BOOL, &b, 1);
}

void ibex_gguf_writer_set_str(ibex_gguf_writer *w, const char *key, const char *v) {
    if (!w) return;
    if (!key || !v) {
        w_bad(w, "string metadata '%s' was set with a NULL %s", key ? key : "(null)",
              key ? "value" : "key");
        return;
    }
    wbuf b = {0};
    wb_u32(&b, IBEX_GGUF_STRING);
    wb_str(&b, v, strlen(v));
    w_put(w, key, b);
}

void ibex_gguf_writer_set_arr(ibex_gguf_writer *w, const char *key, ibex_gguf_vtype etype,
                              const void *data, uint64_t n) {
    if (!w) return;
    uint64_t sz = vtype_scalar_size(etype);
    if (!key || !sz || (n > 0 && !data) || n > SIZE_MAX / sz) {
        w_bad(w, "array metadata '%s': %s", key ? key : "(null)",
              !key  ? "NULL key"
              : !sz ? "element type must be numeric or bool (use set_arr_str for strings)"
                    : "NULL data or impossible count");
        return;
    }
    wbuf b = {0};
    wb_u32(&b, IBEX_GGUF_ARRAY);
    wb_u32(&b, etype);
    wb_u64(&b, n);
    wb_put(&b, data, (size_t)(n * sz));
    w_put(w, key, b);
}

void ibex_gguf_writer_set_arr_str(ibex_gguf_writer *w, const char *key, const char *const *strs,
                                  uint64_t n) {
    if (!w) return;
    if (!key || (n > 0 && !strs)) {
        w_bad(w, "string array metadata '%s': NULL %s", key ? key : "(null)",
              key ? "strings" : "key");
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            w_bad(w, "string array metadata '%s': element %" PRIu64 " is NULL", key, i);
            return;
        }
    }
    wbuf b = {0};
    wb_u32(&b, IBEX_GGUF_ARRAY);
    wb_u32(&b, IBEX_GGUF_STRING);
    wb_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) wb_str(&b, strs[i], strlen(strs[i]));
    w_put(w, key, b);
}

void ibex_gguf_writer_add_tensor(ibex_gguf_writer *w, const char *name, ibex_type type,
                                 uint32_t n_dims, const int64_t *ne, const void *data) {
    if (!w) return;
    if (!name || (n_dims > 0 && !ne)) {
        w_bad(w, "tensor '%s': NULL %s", name ? name : "(null)", name ? "shape" : "name");
        return;
    }
    if (w->n_t == w->cap_t) {
        size_t c = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *p = realloc(w->t, c * sizeof *p);
        if (!p) {
            w->oom = true;
            return;
        }
        w->t = p;
        w->cap_t = c;
    }
    char *nm = strdup(name);
    if (!nm) {
        w->oom = true;
        return;
    }
    wtensor *t = &w->t[w->n_t++];
    t->name = nm;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < IBEX_GGUF_MAX_DIMS; d++)
        t->ne[d] = (uint32_t)d < n_dims && d < IBEX_GGUF_MAX_DIMS ? ne[d] : 1;
    t->data = data;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Byte size of tensor t, or an INVALID error naming path and tensor. */
static ibex_status w_tensor_bytes(const wtensor *t, const char *path, uint64_t *out,
                                  ibex_err *err) {
    if (t->n_dims == 0 || t->n_dims > IBEX_GGUF_MAX_DIMS)
        return ibex_err_set(err, IBEX_ERR_INVALID, "%s: tensor '%s': n_dims %" PRIu32
                            " is outside 1..%d", path, t->name, t->n_dims, IBEX_GGUF_MAX_DIMS);
    const ibex_type_traits *tr = ibex_type_traits_get((uint32_t)t->type);
    if (!tr)
        return ibex_err_set(err, IBEX_ERR_INVALID, "%s: tensor '%s': unknown tensor type id %u",
                            path, t->name, (unsigned)t->type);
    int64_t nel = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (t->ne[d] <= 0)
            return ibex_err_set(err, IBEX_ERR_INVALID, "%s: tensor '%s': ne[%" PRIu32 "] = %" PRId64
                                " is not a positive size", path, t->name, d, t->ne[d]);
        if (__builtin_mul_overflow(nel, t->ne[d], &nel))
            return ibex_err_set(err, IBEX_ERR_INVALID, "%s: tensor '%s': element count overflows",
                                path, t->name);
    }
    if (t->ne[0] % tr->block_size != 0)
        return ibex_err_set(err, IBEX_ERR_INVALID,
                            "%s: tensor '%s': ne[0] = %" PRId64
                            " is not a multiple of the %s block size %d",
                            path, t->name, t->ne[0], tr->name, tr->block_size);
    uint64_t nbytes = (uint64_t)(t->ne[0] / tr->block_size);
    bool ovf = __builtin_mul_overflow(nbytes, (uint64_t)tr->type_size, &nbytes);
    for (int d = 1; d < IBEX_GGUF_MAX_DIMS; d++)
        ovf |= __builtin_mul_overflow(nbytes, (uint64_t)t->ne[d], &nbytes);
    if (ovf)
        return ibex_err_set(err, IBEX_ERR_INVALID, "%s: tensor '%s': byte size overflows", path,
                            t->name);
    if (!t->data)
        return ibex_err_set(err, IBEX_ERR_INVALID, "%s: tensor '%s': data is NULL", path, t->name);
    *out = nbytes;
    return IBEX_OK;
}

/* Checks everything write() would refuse; fills the alignment and the tensor sizes. */
static ibex_status w_validate(const ibex_gguf_writer *w, const char *path, uint32_t *alignment,
                              uint64_t *nbytes, ibex_err *err) {
    if (w->oom) return ibex_err_set(err, IBEX_ERR_NOMEM, "%s: out of memory while collecting "
                                    "metadata or tensors", path);
    if (w->bad[0]) return ibex_err_set(err, IBEX_ERR_INVALID, "%s: %s", path, w->bad);
    *alignment = IBEX_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        if (!kv->key[0]) return ibex_err_set(err, IBEX_ERR_INVALID, "%s: empty metadata key", path);
        if (strcmp(kv->key, GGUF_ALIGNMENT_KEY) == 0) {
            uint32_t t, a;
            memcpy(&t, kv->val.p, 4);
            if (t != IBEX_GGUF_U32)
                return ibex_err_set(err, IBEX_ERR_INVALID,
                                    "%s: key '" GGUF_ALIGNMENT_KEY "' has type %s, expected u32",
                                    path, ibex_gguf_vtype_name((ibex_gguf_vtype)t));
            memcpy(&a, kv->val.p + 4, 4);
            if (a == 0 || (a & (a - 1)) != 0)
                return ibex_err_set(err, IBEX_ERR_INVALID,
                                    "%s: general.alignment %" PRIu32 " is not a power of two", path,
                                    a);
            *alignment = a;
        }
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        size_t len = strlen(t->name);
        if (len == 0 || len > IBEX_GGUF_MAX_NAME)
            return ibex_err_set(err, IBEX_ERR_INVALID,
                                "%s: tensor name '%.64s' is %zu bytes, must be 1..%d", path,
                                t->name, len, IBEX_GGUF_MAX_NAME);
        for (size_t j = 0; j < i; j++)
            if (strcmp(w->t[j].name, t->name) == 0)
                return ibex_err_set(err, IBEX_ERR_INVALID, "%s: duplicate tensor name '%s'", path,
                                    t->name);
        ibex_status s = w_tensor_bytes(t, path, &nbytes[i], err);
        if (s != IBEX_OK) return s;
    }
    return IBEX_OK;
}

/* Buffered output that remembers the first failure and the position written. */
typedef struct wout {
    FILE *f;
    uint64_t pos;
    bool ok;
} wout;

static void wo_put(wout *o, const void *p, uint64_t n) {
    const uint8_t *q = p;
    while (o->ok && n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        if (fwrite(q, 1, chunk, o->f) != chunk) o->ok = false;
        q += chunk;
        n -= chunk;
        o->pos += chunk;
    }
}

static void wo_zeros(wout *o, uint64_t n) {
    static const uint8_t zeros[256];
    while (n > 0) {
        uint64_t c = n > sizeof zeros ? sizeof zeros : n;
        wo_put(o, zeros, c);
        n -= c;
    }
}

static void wo_u32(wout *o, uint32_t v) { wo_put(o, &v, 4); }
static void wo_u64(wout *o, uint64_t v) { wo_put(o, &v, 8); }

ibex_status ibex_gguf_writer_write(ibex_gguf_writer *w, const char *path, ibex_err *err) {
    if (!w || !path)
        return ibex_err_set(err, IBEX_ERR_INVALID, "ibex_gguf_writer_write: NULL %s",
                            w ? "path" : "writer");
    uint64_t *nbytes = calloc(w->n_t ? w->n_t : 1, sizeof *nbytes);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!nbytes || !tmp) {
        free(nbytes);
        free(tmp);
        return ibex_err_set(err, IBEX_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    uint32_t alignment = IBEX_GGUF_DEFAULT_ALIGNMENT;
    ibex_status s = w_validate(w, path, &alignment, nbytes, err);
    if (s != IBEX_OK) {
        free(nbytes);
        free(tmp);
        return s;
    }

    wout o = {.f = fopen(tmp, "wb"), .pos = 0, .ok = true};
    if (!o.f) {
        s = ibex_err_set(err, IBEX_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        free(nbytes);
        free(tmp);
        return s;
    }
    setvbuf(o.f, NULL, _IOFBF, 1 << 20);

    wo_put(&o, IBEX_GGUF_MAGIC, 4);
    wo_u32(&o, IBEX_GGUF_VERSION);
    wo_u64(&o, w->n_t);
    wo_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        wo_u64(&o, strlen(w->kv[i].key));
        wo_put(&o, w->kv[i].key, strlen(w->kv[i].key));
        wo_put(&o, w->kv[i].val.p, w->kv[i].val.n);
    }
    uint64_t off = 0;
    bool too_big = false;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        wo_u64(&o, strlen(t->name));
        wo_put(&o, t->name, strlen(t->name));
        wo_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) wo_u64(&o, (uint64_t)t->ne[d]);
        wo_u32(&o, (uint32_t)t->type);
        wo_u64(&o, off);
        if (nbytes[i] > UINT64_MAX / 2 || off > UINT64_MAX / 2) too_big = true;
        off += align_up(nbytes[i], alignment);
    }
    wo_zeros(&o, align_up(o.pos, alignment) - o.pos);
    for (size_t i = 0; i < w->n_t && o.ok && !too_big; i++) {
        wo_put(&o, w->t[i].data, nbytes[i]);
        wo_zeros(&o, align_up(nbytes[i], alignment) - nbytes[i]);
    }
    int saved = errno;
    bool closed = fclose(o.f) == 0;
    if (!o.ok || !closed || too_big) {
        if (o.ok && !closed) saved = errno;
        s = too_big ? ibex_err_set(err, IBEX_ERR_INVALID, "%s: tensor data too large", path)
                    : ibex_err_set(err, IBEX_ERR_IO, "%s: writing %s failed at byte %" PRIu64
                                   ": %s", path, tmp, o.pos, strerror(saved));
        remove(tmp);
    } else if (rename(tmp, path) != 0) {
        s = ibex_err_set(err, IBEX_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp,
                         strerror(errno));
        remove(tmp);
    } else {
        s = IBEX_OK;
    }
    free(nbytes);
    free(tmp);
    return s;
}
