/* shard.c — which shard runs which point (a deterministic, cost-balanced assignment)
 * and the SHA-256 that names a scenario file; see shard.h. */
#include "harness/shard.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"

bool ibex_shard_parse(const char *s, int32_t *k, int32_t *n, char *why, size_t why_n) {
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '/' || errno) {
        snprintf(why, why_n, "'%s': expected K/N (e.g. 1/4: the first of four shards)", s);
        return false;
    }
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (end == t || *end || errno) {
        snprintf(why, why_n, "'%s': expected K/N (e.g. 1/4: the first of four shards)", s);
        return false;
    }
    if (b < 1 || b > 100000) {
        snprintf(why, why_n, "'%s': N must be between 1 and 100000", s);
        return false;
    }
    if (a < 1 || a > b) {
        snprintf(why, why_n, "'%s': K must be between 1 and N (shards are numbered from 1)", s);
        return false;
    }
    *k = (int32_t)a, *n = (int32_t)b;
    return true;
}

/* The mean of a length distribution (clamps ignored: an estimate). */
static double dist_mean(const ibex_dist *d) {
    switch (d->kind) {
    case IBEX_DIST_FIXED: return d->value;
    case IBEX_DIST_UNIFORM: return 0.5 * (d->min + d->max);
    case IBEX_DIST_NORMAL: return d->mean;
    case IBEX_DIST_LOGNORMAL: return exp(d->mean + 0.5 * d->sd * d->sd);
    }
    return 0;
}

double ibex_shard_cost(const ibex_point *p) {
    double params = 1e9;
    if (!strncmp(p->model, "synthetic:", 10)) {
        const ibex_synthetic_preset *pr = ibex_synthetic_find(p->model + 10);
        if (pr) params = (double)ibex_model_config_n_params(&pr->cfg, false);
    }
    double tokens = fmax(dist_mean(&p->prompt_tokens), 0) + fmax(dist_mean(&p->output_tokens), 0);
    double c = (double)(p->warmup + p->repeat) * (double)(p->requests > 0 ? p->requests : 1) * fmax(tokens, 1) * params;
    return p->engine.compute ? c : c / 1000;
}

typedef struct cost_ix {
    double cost;
    int32_t ix;
} cost_ix;

static int by_cost_desc(const void *a, const void *b) {
    const cost_ix *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
    return (x->ix > y->ix) - (x->ix < y->ix);
}

ibex_status ibex_shard_assign_many(const ibex_scenario *const *s, int32_t n_s, int32_t n, int32_t *owner,
                                   ibex_err *err) {
    if (n < 1) return ibex_err_set(err, IBEX_ERR_INVALID, "shard count %d: must be at least 1", n);
    int32_t total = 0;
    for (int32_t i = 0; i < n_s; i++) total += s[i]->n_points;
    if (total == 0) return IBEX_OK;
    cost_ix *c = malloc((size_t)total * sizeof *c);
    if (!c) return ibex_err_set(err, IBEX_ERR_NOMEM, "out of memory assigning %d points to shards", total);
    for (int32_t i = 0, j = 0; i < n_s; i++)
        for (int32_t p = 0; p < s[i]->n_points; p++, j++) c[j] = (cost_ix){ibex_shard_cost(&s[i]->points[p]), j};
    qsort(c, (size_t)total, sizeof *c, by_cost_desc);
    for (int32_t j = 0; j < total; j++) { /* snake order: 1..N, N..1, 1..N, ... */
        int32_t round = j / n, pos = j % n;
        owner[c[j].ix] = 1 + (round % 2 ? n - 1 - pos : pos);
    }
    free(c);
    return IBEX_OK;
}

ibex_status ibex_shard_assign(const ibex_scenario *s, int32_t n, int32_t *owner, ibex_err *err) {
    return ibex_shard_assign_many(&s, 1, n, owner, err);
}

/* ---- SHA-256 (FIPS 180-4, section 6.2) ---- */

static const uint32_t k_sha[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

typedef struct sha256 {
    uint32_t h[8];
    uint8_t buf[64];
    size_t fill;
    uint64_t bytes;
} sha256;

static uint32_t ror(uint32_t x, int r) { return (x >> r) | (x << (32 - r)); }

static void sha_block(sha256 *c, const uint8_t *b) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], bb = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + k_sha[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & cc) ^ (bb & cc));
        h = g, g = f, f = e, e = d + t1, d = cc, cc = bb, bb = a, a = t1 + t2;
    }
    c->h[0] += a, c->h[1] += bb, c->h[2] += cc, c->h[3] += d, c->h[4] += e, c->h[5] += f, c->h[6] += g, c->h[7] += h;
}

static void sha_init(sha256 *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->fill = 0, c->bytes = 0;
}

static void sha_update(sha256 *c, const uint8_t *p, size_t n) {
    c->bytes += n;
    while (n) {
        size_t t = 64 - c->fill < n ? 64 - c->fill : n;
        memcpy(c->buf + c->fill, p, t);
        c->fill += t, p += t, n -= t;
        if (c->fill == 64) sha_block(c, c->buf), c->fill = 0;
    }
}

static void sha_final(sha256 *c, char hex[65]) {
    uint64_t bits = c->bytes * 8;
    uint8_t pad[72] = {0x80};
    size_t np = (c->fill < 56 ? 56 : 120) - c->fill; /* 0x80, zeros, to 56 mod 64 */
    for (int i = 0; i < 8; i++) pad[np + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    sha_update(c, pad, np + 8);
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", c->h[i]);
}

void ibex_sha256_hex(const void *data, size_t len, char hex[65]) {
    sha256 c;
    sha_init(&c);
    sha_update(&c, data, len);
    sha_final(&c, hex);
}

ibex_status ibex_sha256_file(const char *path, char hex[65], ibex_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ibex_err_set(err, IBEX_ERR_IO, "%s: %s", path, strerror(errno));
    sha256 c;
    sha_init(&c);
    uint8_t buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sha_update(&c, buf, n);
    bool bad = ferror(f);
    fclose(f);
    if (bad) return ibex_err_set(err, IBEX_ERR_IO, "%s: read error", path);
    sha_final(&c, hex);
    return IBEX_OK;
}
