/* cmd_model.c — `ibex model info|write|list|quantize`: a model's shape, parameter count,
 * weight bytes per dtype and KV bytes per token; saving a synthetic model as GGUF;
 * quantizing a GGUF file to Q8_0/Q4_0. */
#include <stdio.h>
#include <string.h>

#include "engine/model.h"
#include "harness/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ibex model info MODEL\n"
            "       ibex model write MODEL OUT.gguf [--dtype f32|f16|bf16|q8_0|q4_0] [--seed N]\n"
            "       ibex model list\n"
            "       ibex model quantize IN.gguf OUT.gguf q8_0|q4_0\n"
            "MODEL is a GGUF file or synthetic:NAME.\n");
}

static void print_info(const char *src, const char *name, const ibex_model_config *c, bool tied, int64_t n_params,
                       int64_t stored_bytes, const char *stored_type) {
    char b[32];
    printf("model:          %s\n", src);
    printf("name:           %s\n", name);
    printf("architecture:   llama\n");
    printf("dim:            %d\n", c->dim);
    printf("layers:         %d\n", c->n_layers);
    printf("heads:          %d (kv heads %d, head dim %d%s)\n", c->n_heads, c->n_kv_heads, c->head_dim,
           c->n_kv_heads < c->n_heads ? ", grouped-query attention" : "");
    printf("ffn dim:        %d\n", c->ffn_dim);
    printf("vocab:          %d\n", c->vocab_size);
    printf("context length: %d\n", c->ctx_len);
    printf("rope:           base %g, %d dims, interleaved pairs\n", c->rope_base, c->rope_dim);
    printf("rms norm eps:   %g\n", c->norm_eps);
    printf("output:         %s\n", tied ? "tied to token_embd" : "separate output.weight");
    printf("parameters:     %lld (%.3f B)\n", (long long)n_params, n_params / 1e9);
    if (stored_bytes > 0) printf("stored weights: %s as %s\n", ibex_cli_bytes(stored_bytes, b, sizeof b), stored_type);
    printf("weight bytes if every matrix were (norms stay F32):\n");
    static const ibex_type types[] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16, IBEX_TYPE_Q8_0, IBEX_TYPE_Q4_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int64_t by = ibex_model_config_weight_bytes(c, tied, types[i]);
        printf("  %-5s %14lld bytes  %s\n", ibex_type_name(types[i]), (long long)by, ibex_cli_bytes(by, b, sizeof b));
    }
    /* 2 (K and V) · layers · kv heads · head dim · bytes per element */
    int64_t f16 = ibex_model_kv_bytes_per_token(c, 2);
    int64_t f32 = ibex_model_kv_bytes_per_token(c, 4);
    printf("KV cache per token = 2 * %d layers * %d kv heads * %d head dim * bytes:\n", c->n_layers, c->n_kv_heads,
           c->head_dim);
    printf("  F16 %lld bytes (%s); F32 %lld bytes\n", (long long)f16, ibex_cli_bytes(f16, b, sizeof b), (long long)f32);
    printf("  F16 at the full context of %d tokens: %s per sequence\n", c->ctx_len,
           ibex_cli_bytes(f16 * c->ctx_len, b, sizeof b));
}

int ibex_cmd_model(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "list")) {
        /* The name column is as wide as the longest "synthetic:NAME", so columns line up. */
        int w = 4, ws = 8;
        for (const ibex_synthetic_preset *p = ibex_synthetic_presets(); p->name; p++) {
            int l = 10 + (int)strlen(p->name), ls = (int)strlen(p->like);
            if (l > w) w = l;
            if (ls > ws) ws = ls;
        }
        printf("%-*s  %-*s %6s %7s %6s %5s %7s %8s %7s\n", w, "name", ws, "shape of", "dim", "layers", "heads", "kv",
               "ffn", "vocab", "params");
        for (const ibex_synthetic_preset *p = ibex_synthetic_presets(); p->name; p++) {
            char name[96];
            snprintf(name, sizeof name, "synthetic:%s", p->name);
            printf("%-*s  %-*s %6d %7d %6d %5d %7d %8d %6.2fB\n", w, name, ws, p->like, p->cfg.dim, p->cfg.n_layers,
                   p->cfg.n_heads, p->cfg.n_kv_heads, p->cfg.ffn_dim, p->cfg.vocab_size,
                   ibex_model_config_n_params(&p->cfg, false) / 1e9);
        }
        return 0;
    }
    if (!strcmp(sub, "info")) {
        if (argc != 3) {
            usage(stderr);
            return 2;
        }
        const char *src = argv[2];
        if (!strncmp(src, "synthetic:", 10)) {
            /* The shape alone: no need to generate 140 GB to describe llama2-70b. */
            const ibex_synthetic_preset *p = ibex_synthetic_find(src + 10);
            if (!p) {
                ibex_err err = {0};
                ibex_model_load(src, NULL, &err); /* produces the "unknown preset" message */
                fprintf(stderr, "ibex model info: %s\n", err.msg);
                return 1;
            }
            char name[128];
            snprintf(name, sizeof name, "synthetic:%s (shape of %s)", p->name, p->like);
            print_info(src, name, &p->cfg, false, ibex_model_config_n_params(&p->cfg, false), 0, "");
            return 0;
        }
        ibex_err err = {0};
        ibex_model *m = ibex_model_load(src, NULL, &err);
        if (!m) {
            fprintf(stderr, "ibex model info: %s\n", err.msg);
            return 1;
        }
        print_info(src, m->name, &m->cfg, m->tied_output, m->n_params, m->weight_bytes, ibex_type_name(m->wtype));
        ibex_model_free(m);
        return 0;
    }
    if (!strcmp(sub, "write")) {
        if (argc < 4) {
            usage(stderr);
            return 2;
        }
        ibex_model_params mp = ibex_model_default_params();
        for (int i = 4; i < argc; i++) {
            if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
                if (!ibex_type_from_name(argv[++i], &mp.wtype) || !ibex_type_traits_get(mp.wtype)->compute) {
                    fprintf(stderr, "ibex model write: --dtype: '%s' is not f32, f16, bf16, q8_0 or q4_0\n", argv[i]);
                    return 2;
                }
            } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
                int64_t s;
                if (!ibex_cli_int("model write", "--seed", argv[++i], 0, INT64_MAX, &s)) return 2;
                mp.seed = (uint64_t)s;
            } else {
                fprintf(stderr, "ibex model write: unknown option '%s'\n", argv[i]);
                return 2;
            }
        }
        ibex_err err = {0};
        ibex_model *m = ibex_model_load(argv[2], &mp, &err);
        if (!m) {
            fprintf(stderr, "ibex model write: %s\n", err.msg);
            return 1;
        }
        ibex_status s = ibex_model_write_gguf(m, argv[3], &err);
        if (s) {
            fprintf(stderr, "ibex model write: %s\n", err.msg);
        } else {
            char b[32];
            fprintf(stderr, "wrote %s: %s, %lld parameters, %s of %s weights\n", argv[3], m->name,
                    (long long)m->n_params, ibex_cli_bytes(m->weight_bytes, b, sizeof b), ibex_type_name(m->wtype));
        }
        ibex_model_free(m);
        return s ? 1 : 0;
    }
    if (!strcmp(sub, "quantize")) {
        /* llama-quantize --pure's choices: every matrix (embedding and output included),
         * ggml's round-to-nearest formulas; norms stay F32 (ibex_model_quantize_gguf). */
        ibex_type qt;
        if (argc != 5) {
            usage(stderr);
            return 2;
        }
        if (!ibex_type_from_name(argv[4], &qt) || (qt != IBEX_TYPE_Q8_0 && qt != IBEX_TYPE_Q4_0)) {
            fprintf(stderr, "ibex model quantize: type '%s' is not q8_0 or q4_0\n", argv[4]);
            return 2;
        }
        ibex_err err = {0};
        ibex_quantize_stats st;
        if (ibex_model_quantize_gguf(argv[2], argv[3], qt, &st, &err)) {
            fprintf(stderr, "ibex model quantize: %s\n", err.msg);
            return 1;
        }
        char b1[32], b2[32];
        fprintf(stderr, "wrote %s: %d tensors quantized to %s, %d kept; tensor data %s -> %s\n", argv[3],
                st.n_quantized, ibex_type_name(qt), st.n_kept, ibex_cli_bytes(st.bytes_in, b1, sizeof b1),
                ibex_cli_bytes(st.bytes_out, b2, sizeof b2));
        return 0;
    }
    static const char *const subs[] = {"info", "write", "list", "quantize", NULL};
    const char *s = ibex_cli_suggest(sub, subs);
    fprintf(stderr, "ibex model: unknown subcommand '%s'%s%s%s\n", sub, s ? " (did you mean '" : "", s ? s : "",
            s ? "'?)" : "");
    return 2;
}
