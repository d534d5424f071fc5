/* cmd_generate.c — `ibex generate`: one prompt through one model with greedy decoding
 * and a contiguous KV cache; prints the text (or ids) to stdout and the prefill and
 * decode speeds to stderr. --logits-out dumps every step's logits for numerical
 * comparison with any reference implementation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/alloc.h"
#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "harness/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ibex generate -m MODEL (-p TEXT | --prompt-ids 1,2,3) [options]\n"
            "  -m, --model MODEL      GGUF file or synthetic:NAME (default synthetic:tiny)\n"
            "  -p, --prompt TEXT      prompt text (tokenized with the model's vocabulary, BOS added)\n"
            "      --prompt-ids LIST  prompt as token ids, used as given\n"
            "  -n, --n-predict N      tokens to generate (default 64)\n"
            "  -t, --threads N        CPU threads (default: all cores)\n"
            "  -b, --ubatch N         prompt tokens per forward pass during prefill (default 512)\n"
            "      --ids              print token ids instead of text\n"
            "      --ignore-eos       keep generating after the end-of-sequence token\n"
            "      --no-warmup        skip the untimed warm-up pass\n"
            "      --logits-out FILE  write each step's logits as little-endian float32,\n"
            "                         vocab floats per step, the prompt's last position first\n"
            "      --dtype TYPE       synthetic weight type: f32, f16 (default), bf16\n"
            "      --seed N           synthetic weight seed\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void emit(const ibex_model *m, bool ids, int32_t prev, int32_t tok, bool first) {
    if (ids || !m->tok) {
        printf(first ? "%d" : ",%d", tok);
    } else {
        char piece[256];
        size_t n = ibex_tokenizer_decode_piece(m->tok, prev, tok, piece, sizeof piece);
        fwrite(piece, 1, n < sizeof piece ? n : sizeof piece, stdout);
    }
    fflush(stdout);
}

int ibex_cmd_generate(int argc, char **argv) {
    const char *model_src = "synthetic:tiny", *prompt = NULL, *prompt_ids = NULL, *logits_path = NULL;
    int64_t n_predict = 64, threads = 0, ubatch = 512, seed = -1;
    bool ids = false, ignore_eos = false, warmup = true;
    ibex_model_params mp = ibex_model_default_params();
    static const char *const opts[] = {"--model", "--prompt", "--prompt-ids", "--n-predict", "--threads", "--ubatch",
                                       "--ids", "--ignore-eos", "--no-warmup", "--logits-out", "--dtype", "--seed", "--help", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IBEX_IS(s, l) (!strcmp(a, s) || !strcmp(a, l))
        if (IBEX_IS("-h", "--help")) {
            usage(stdout);
            return 0;
        } else if (IBEX_IS("-m", "--model") && v) {
            model_src = v, i++;
        } else if (IBEX_IS("-p", "--prompt") && v) {
            prompt = v, i++;
        } else if (!strcmp(a, "--prompt-ids") && v) {
            prompt_ids = v, i++;
        } else if (IBEX_IS("-n", "--n-predict")) {
            if (!ibex_cli_int("generate", a, v, 1, 1 << 24, &n_predict)) return 2;
            i++;
        } else if (IBEX_IS("-t", "--threads")) {
            if (!ibex_cli_int("generate", a, v, 1, 1024, &threads)) return 2;
            i++;
        } else if (IBEX_IS("-b", "--ubatch")) {
            if (!ibex_cli_int("generate", a, v, 1, 1 << 16, &ubatch)) return 2;
            i++;
        } else if (!strcmp(a, "--ids")) {
            ids = true;
        } else if (!strcmp(a, "--no-warmup")) {
            warmup = false;
        } else if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
        } else if (!strcmp(a, "--logits-out") && v) {
            logits_path = v, i++;
        } else if (!strcmp(a, "--dtype") && v) {
            if (!ibex_type_from_name(v, &mp.wtype) || !ibex_type_traits_get(mp.wtype)->compute) {
                fprintf(stderr, "ibex generate: --dtype: '%s' is not a weight type ibex computes with (f32, f16, bf16)\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (!ibex_cli_int("generate", a, v, 0, INT64_MAX, &seed)) return 2;
            i++;
        } else {
            const char *s = a[0] == '-' ? ibex_cli_suggest(a, opts) : NULL;
            if (a[0] == '-' && !v && (IBEX_IS("-m", "--model") || IBEX_IS("-p", "--prompt") ||
                                      !strcmp(a, "--prompt-ids") || !strcmp(a, "--logits-out") || !strcmp(a, "--dtype")))
                fprintf(stderr, "ibex generate: %s needs a value\n", a);
            else
                fprintf(stderr, "ibex generate: unknown option '%s'%s%s%s\n", a, s ? " (did you mean '" : "", s ? s : "",
                        s ? "'?)" : "");
            return 2;
        }
#undef IBEX_IS
    }
    if (prompt && prompt_ids) {
        fprintf(stderr, "ibex generate: give either -p or --prompt-ids, not both\n");
        return 2;
    }
    if (seed >= 0) mp.seed = (uint64_t)seed;
    mp.n_threads = (int)threads;

    int rc = 1;
    ibex_err err = {0};
    ibex_model *m = NULL;
    ibex_backend *be = NULL;
    ibex_kv_pool *pool = NULL;
    ibex_forward *fwd = NULL;
    int32_t *toks = NULL;
    float *logits = NULL;
    FILE *lf = NULL;

    double t0 = now_s();
    m = ibex_model_load(model_src, &mp, &err);
    if (!m) {
        fprintf(stderr, "ibex generate: %s\n", err.msg);
        goto out;
    }
    double t_load = now_s() - t0;
    const ibex_model_config *c = &m->cfg;

    int32_t n_prompt = 0;
    if (prompt_ids) {
        if (!ibex_cli_int_list("generate", "--prompt-ids", prompt_ids, &toks, &n_prompt)) goto out;
        for (int32_t i = 0; i < n_prompt; i++) {
            if (toks[i] < 0 || toks[i] >= c->vocab_size) {
                fprintf(stderr, "ibex generate: --prompt-ids: id %d (item %d) is outside the vocabulary 0..%d of %s\n",
                        toks[i], i + 1, c->vocab_size - 1, model_src);
                goto out;
            }
        }
    } else {
        if (!m->tok) {
            fprintf(stderr, "ibex generate: %s\n", m->tok_error);
            goto out;
        }
        const char *text = prompt ? prompt : "";
        int64_t need = ibex_tokenizer_encode(m->tok, text, strlen(text), true, NULL, 0, &err);
        if (need < 0 || !(toks = malloc((size_t)(need > 0 ? need : 1) * sizeof *toks))) {
            fprintf(stderr, "ibex generate: cannot tokenize the prompt: %s\n", err.msg);
            goto out;
        }
        n_prompt = (int32_t)ibex_tokenizer_encode(m->tok, text, strlen(text), true, toks, need, &err);
    }
    if (n_prompt == 0) {
        fprintf(stderr, "ibex generate: the prompt is empty (and the model adds no BOS token)\n");
        goto out;
    }
    if ((int64_t)n_prompt + n_predict > c->ctx_len) {
        fprintf(stderr, "ibex generate: prompt (%d tokens) + -n %lld exceeds the context length %d of %s\n", n_prompt,
                (long long)n_predict, c->ctx_len, model_src);
        goto out;
    }
    if (logits_path && !(lf = fopen(logits_path, "wb"))) {
        fprintf(stderr, "ibex generate: cannot open --logits-out file '%s'\n", logits_path);
        goto out;
    }

    be = ibex_backend_cpu_new((int)threads);
    int32_t cap = n_prompt + (int32_t)n_predict;
    int32_t table[1] = {0};
    int32_t chunk = (int32_t)(ubatch < n_prompt ? ubatch : n_prompt);
    logits = malloc((size_t)c->vocab_size * sizeof *logits);
    if (!be || !logits || !(pool = ibex_kv_pool_new(c, 1, cap, &err)) || !(fwd = ibex_forward_new(m, be, chunk, &err))) {
        fprintf(stderr, "ibex generate: %s\n", err.msg[0] ? err.msg : "out of memory");
        goto out;
    }

    /* Warm-up (as llama-bench does): one token through the model so thread start-up and
     * first-touch page faults are not timed. Position 0 is rewritten by the prefill. */
    if (warmup) {
        ibex_fwd_seq w = {.tokens = toks, .n_tokens = 1, .pos0 = 0, .block_table = table, .logits = logits};
        if (ibex_forward_run(fwd, pool, &w, 1, &err)) {
            fprintf(stderr, "ibex generate: warm-up: %s\n", err.msg);
            goto out;
        }
    }
    double tp = now_s();
    for (int32_t p = 0; p < n_prompt; p += chunk) {
        int32_t n = n_prompt - p < chunk ? n_prompt - p : chunk;
        ibex_fwd_seq sq = {.tokens = toks + p, .n_tokens = n, .pos0 = p, .block_table = table,
                           .logits = p + n == n_prompt ? logits : NULL};
        if (ibex_forward_run(fwd, pool, &sq, 1, &err)) {
            fprintf(stderr, "ibex generate: prefill: %s\n", err.msg);
            goto out;
        }
    }
    double t_prefill = now_s() - tp;

    int32_t eos = m->tok ? ibex_tokenizer_eos(m->tok) : -1;
    int32_t prev = n_prompt > 0 ? toks[n_prompt - 1] : -1, n_gen = 0, n_decode = 0;
    double t_decode = 0;
    bool hit_eos = false;
    for (;;) {
        if (lf && fwrite(logits, sizeof(float), (size_t)c->vocab_size, lf) != (size_t)c->vocab_size) {
            fprintf(stderr, "ibex generate: writing '%s' failed\n", logits_path);
            goto out;
        }
        int32_t tok = ibex_sample_greedy(logits, c->vocab_size);
        emit(m, ids, n_gen == 0 && !ids && m->tok && prev == ibex_tokenizer_bos(m->tok) ? -1 : prev, tok, n_gen == 0);
        n_gen++;
        if (tok == eos && !ignore_eos) {
            hit_eos = true;
            break;
        }
        if (n_gen >= n_predict) break;
        double td = now_s();
        ibex_fwd_seq sq = {.tokens = &tok, .n_tokens = 1, .pos0 = n_prompt + n_gen - 1, .block_table = table, .logits = logits};
        if (ibex_forward_run(fwd, pool, &sq, 1, &err)) {
            fprintf(stderr, "ibex generate: decode: %s\n", err.msg);
            goto out;
        }
        t_decode += now_s() - td;
        n_decode++;
        prev = tok;
    }
    printf("\n");
    fflush(stdout);

    ibex_mem_stats ms;
    ibex_mem_stats_get(&ms);
    char b1[32], b2[32], b3[32], b4[32], th[32] = "all cores";
    if (threads > 0) snprintf(th, sizeof th, "%lld", (long long)threads);
    fprintf(stderr, "\nibex: %s (%s weights) on %s, threads: %s; load %.2f s\n", model_src,
            ibex_type_name(m->wtype), be->name, th, t_load);
    fprintf(stderr, "prefill: %6d tokens in %9.2f ms = %9.2f tokens/s\n", n_prompt, t_prefill * 1e3,
            n_prompt / t_prefill);
    if (n_decode > 0)
        fprintf(stderr, "decode:  %6d tokens in %9.2f ms = %9.2f tokens/s\n", n_decode, t_decode * 1e3,
                n_decode / t_decode);
    fprintf(stderr, "generated %d tokens%s; memory: weights %s, KV %s, activations %s (peak RSS %s)\n", n_gen,
            hit_eos ? " (stopped at EOS)" : "", ibex_cli_bytes(m->weight_bytes, b1, sizeof b1),
            ibex_cli_bytes(ms.peak[IBEX_MEM_KV], b2, sizeof b2),
            ibex_cli_bytes(ms.peak[IBEX_MEM_ACTIVATIONS], b3, sizeof b3),
            ibex_cli_bytes(ibex_mem_process_peak_rss(), b4, sizeof b4));
    rc = 0;
out:
    if (lf && fclose(lf) != 0 && rc == 0) {
        fprintf(stderr, "ibex generate: closing '%s' failed\n", logits_path);
        rc = 1;
    }
    free(toks);
    free(logits);
    ibex_forward_free(fwd);
    ibex_kv_pool_free(pool);
    ibex_backend_free(be);
    ibex_model_free(m);
    return rc;
}
