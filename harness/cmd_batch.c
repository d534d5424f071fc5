/* cmd_batch.c — `ibex batch`: an offline workload of requests with seeded
 * mixed prompt and output lengths, all arriving at t = 0, run through the step API
 * to completion. Prints throughput and the exact KV accounting, so KV policies and
 * schedulers can be compared on the same budget, with or without compute. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/alloc.h"
#include "engine/backends.h"
#include "engine/engine.h"
#include "harness/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ibex batch -m MODEL [options]\n"
            "  -m, --model MODEL        GGUF file or synthetic:NAME (default synthetic:small)\n"
            "      --requests N         number of requests (default 64)\n"
            "      --prompt-len A:B     prompt tokens, uniform in [A, B] (default 32:512)\n"
            "      --output-len A:B     output tokens, uniform in [A, B] (default 16:256)\n"
            "      --seed N             workload seed (default 1)\n"
            "      --kv POLICY          none | contiguous | paged (default paged)\n"
            "      --block-size N       tokens per KV block, 1..256 (default 16)\n"
            "      --kv-budget SIZE     KV pool size, e.g. 512MiB, 80GiB (default 512MiB)\n"
            "      --kv-dtype TYPE      f16 (default, as llama.cpp and vLLM) | bf16 | f32\n"
            "      --max-seq-len N      contiguous reservation per request (default prompt + max new)\n"
            "      --scheduler S        static | continuous (default continuous)\n"
            "  -B, --batch N            most sequences running at once (default 32)\n"
            "      --max-step-tokens N  tokens per step, chunking prefills (default 2048)\n"
            "      --no-compute         accounting only: scheduler and KV manager without the model\n"
            "  -t, --threads N          CPU threads (default: all cores)\n"
            "      --backend B          cpu | cuda | cuda:N | auto (default cpu)\n");
}

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool parse_range(const char *opt, const char *s, int64_t *lo, int64_t *hi) {
    char buf[64];
    if (!s || strlen(s) >= sizeof buf) {
        fprintf(stderr, "ibex batch: %s needs A:B or N\n", opt);
        return false;
    }
    strcpy(buf, s);
    char *colon = strchr(buf, ':');
    if (colon) *colon = 0;
    if (!ibex_cli_int("batch", opt, buf, 1, 1 << 24, lo)) return false;
    *hi = *lo;
    if (colon && !ibex_cli_int("batch", opt, colon + 1, 1, 1 << 24, hi)) return false;
    if (*hi < *lo) {
        fprintf(stderr, "ibex batch: %s: range %s is empty\n", opt, s);
        return false;
    }
    return true;
}



int ibex_cmd_batch(int argc, char **argv) {
    const char *model_src = "synthetic:small";
    int64_t n_req = 64, plo = 32, phi = 512, olo = 16, ohi = 256, seed = 1, threads = 0, v;
    const char *backend = "cpu";
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.kv.policy = IBEX_KV_PAGED;
    cfg.kv.budget_bytes = 512ll << 20;
    ibex_kv_config_set_type(&cfg.kv, IBEX_TYPE_F16); /* the default cache type (llama.cpp, vLLM) */
    cfg.max_batch = 32;
    static const char *const opts[] = {"--model", "--requests", "--prompt-len", "--output-len", "--seed", "--kv",
                                       "--block-size", "--kv-budget", "--kv-dtype", "--max-seq-len", "--scheduler",
                                       "--batch", "--max-step-tokens", "--no-compute", "--threads", "--backend", "--help", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
#define IBEX_IS(s, l) (!strcmp(a, s) || !strcmp(a, l))
        if (IBEX_IS("-h", "--help")) {
            usage(stdout);
            return 0;
        } else if (IBEX_IS("-m", "--model") && val) {
            model_src = val, i++;
        } else if (!strcmp(a, "--requests")) {
            if (!ibex_cli_int("batch", a, val, 1, 10000000, &n_req)) return 2;
            i++;
        } else if (!strcmp(a, "--prompt-len")) {
            if (!parse_range(a, val, &plo, &phi)) return 2;
            i++;
        } else if (!strcmp(a, "--output-len")) {
            if (!parse_range(a, val, &olo, &ohi)) return 2;
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (!ibex_cli_int("batch", a, val, 0, INT64_MAX, &seed)) return 2;
            i++;
        } else if (!strcmp(a, "--kv") && val) {
            if (!ibex_kv_policy_from_name(val, &cfg.kv.policy)) {
                fprintf(stderr, "ibex batch: --kv: '%s' is not none, contiguous or paged\n", val);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--block-size")) {
            if (!ibex_cli_int("batch", a, val, 1, 256, &v)) return 2;
            cfg.kv.block_size = (int32_t)v, i++;
        } else if (!strcmp(a, "--kv-budget")) {
            if (!ibex_cli_size("batch", a, val, &cfg.kv.budget_bytes)) return 2;
            i++;
        } else if ((!strcmp(a, "--kv-dtype") || !strcmp(a, "-ctk")) && val) {
            ibex_type t;
            if (!ibex_kv_type_from_name(val, &t)) {
                fprintf(stderr, "ibex batch: %s: '%s' is not f32, f16 or bf16\n", a, val);
                return 2;
            }
            ibex_kv_config_set_type(&cfg.kv, t), i++;
        } else if (!strcmp(a, "--max-seq-len")) {
            if (!ibex_cli_int("batch", a, val, 1, 1 << 24, &v)) return 2;
            cfg.max_seq_len = (int32_t)v, i++;
        } else if (!strcmp(a, "--scheduler") && val) {
            if (!ibex_sched_policy_from_name(val, &cfg.sched)) {
                fprintf(stderr, "ibex batch: --scheduler: '%s' is not static or continuous\n", val);
                return 2;
            }
            i++;
        } else if (IBEX_IS("-B", "--batch")) {
            if (!ibex_cli_int("batch", a, val, 1, 65536, &v)) return 2;
            cfg.max_batch = (int32_t)v, i++;
        } else if (!strcmp(a, "--max-step-tokens")) {
            if (!ibex_cli_int("batch", a, val, 0, 1 << 20, &v)) return 2;
            cfg.max_step_tokens = (int32_t)v, i++;
        } else if (!strcmp(a, "--no-compute")) {
            cfg.compute = false;
        } else if (IBEX_IS("-t", "--threads")) {
            if (!ibex_cli_int("batch", a, val, 1, 1024, &threads)) return 2;
            i++;
        } else if (!strcmp(a, "--backend") && val) {
            if (!ibex_backend_name_valid(val)) {
                fprintf(stderr, "ibex batch: --backend: unknown backend '%s' (expected cpu, cuda, cuda:N or auto)\n", val);
                return 2;
            }
            backend = val, i++;
        } else {
            const char *s = a[0] == '-' ? ibex_cli_suggest(a, opts) : NULL;
            fprintf(stderr, "ibex batch: unknown option or missing value '%s'%s%s%s\n", a, s ? " (did you mean '" : "",
                    s ? s : "", s ? "'?)" : "");
            return 2;
        }
#undef IBEX_IS
    }
    cfg.kv.no_compute = !cfg.compute;

    int rc = 1;
    ibex_err err = {0};
    ibex_model_params mp = ibex_model_default_params();
    mp.shape_only = !cfg.compute && strncmp(model_src, "synthetic:", 10) == 0;
    mp.n_threads = (int)threads;
    ibex_model *m = ibex_model_load(model_src, &mp, &err);
    ibex_backend *be = NULL;
    ibex_engine *e = NULL;
    ibex_token_event *ev = NULL;
    int32_t *prompt = NULL;
    int64_t *out_len = NULL;
    if (!m) {
        fprintf(stderr, "ibex batch: %s\n", err.msg);
        goto out;
    }
    if (cfg.compute) {
        const char *note = "";
        if (!(be = ibex_backend_open(backend, (int)threads, &note, &err))) {
            fprintf(stderr, "ibex batch: %s\n", err.msg);
            goto out;
        }
        if (note[0]) fprintf(stderr, "ibex batch: %s\n", note);
    }
    if (!(e = ibex_engine_new(m, be, &cfg, &err))) {
        fprintf(stderr, "ibex batch: %s\n", err.msg);
        goto out;
    }
    prompt = malloc((size_t)phi * sizeof *prompt);
    ev = malloc((size_t)cfg.max_batch * sizeof *ev);
    out_len = malloc((size_t)n_req * sizeof *out_len);
    if (!prompt || !ev || !out_len) goto out;
    uint64_t rs = (uint64_t)seed; /* splitmix64 stream: the workload of issue 3's measurements */
    int64_t in_tokens = 0;
    for (int64_t r = 0; r < n_req; r++) {
        int32_t np = (int32_t)(plo + (int64_t)(rng_next(&rs) % (uint64_t)(phi - plo + 1)));
        int32_t no = (int32_t)(olo + (int64_t)(rng_next(&rs) % (uint64_t)(ohi - olo + 1)));
        for (int32_t j = 0; j < np; j++) prompt[j] = 3 + (int32_t)(rng_next(&rs) % (uint64_t)(m->cfg.vocab_size - 3));
        ibex_request_params rp = ibex_request_default_params();
        rp.max_new_tokens = no;
        rp.ignore_eos = true;
        if (ibex_engine_submit(e, prompt, np, &rp, &err) < 0) {
            fprintf(stderr, "ibex batch: request %lld (prompt %d, output %d): %s\n", (long long)r, np, no, err.msg);
            goto out;
        }
        in_tokens += np;
        out_len[r] = no;
    }
    /* Utilisation is averaged over steps (each step is one iteration of the batch). */
    double util_sum = 0, t0 = ibex_cli_now_s();
    int64_t util_steps = 0, steps = 0;
    ibex_kv_stats ks;
    while (ibex_engine_has_work(e)) {
        if (ibex_engine_step(e, ev, cfg.max_batch, &err) < 0) {
            fprintf(stderr, "ibex batch: step %lld: %s\n", (long long)steps, err.msg);
            goto out;
        }
        steps++;
        ibex_kv_stats_get(ibex_engine_kv(e), &ks);
        if (ks.bytes_reserved > 0) util_sum += (double)ks.bytes_used / (double)ks.bytes_reserved, util_steps++;
    }
    double wall = ibex_cli_now_s() - t0;
    const ibex_engine_totals *t = ibex_engine_totals_get(e);
    ibex_kv_stats_get(ibex_engine_kv(e), &ks);
    char b1[32], b2[32], b3[32];
    printf("ibex batch: %s, %lld requests, prompt %lld:%lld, output %lld:%lld, seed %lld\n", model_src,
           (long long)n_req, (long long)plo, (long long)phi, (long long)olo, (long long)ohi, (long long)seed);
    printf("kv %s (block %d, %s elements), budget %s = %d blocks; scheduler %s, batch %d, step tokens %d%s\n",
           ibex_kv_policy_name(cfg.kv.policy), cfg.kv.block_size, ibex_type_name(ibex_kv_config_type(&cfg.kv)),
           ibex_cli_bytes(ks.bytes_pool, b1, sizeof b1), ks.n_blocks, ibex_sched_policy_name(cfg.sched),
           cfg.max_batch, cfg.max_step_tokens, cfg.compute ? "" : "; accounting only (no compute)");
    printf("| metric | value |\n|---|---|\n");
    printf("| wall time | %.3f s |\n", wall);
    printf("| steps | %lld |\n", (long long)t->steps);
    printf("| input tokens | %lld |\n| output tokens | %lld |\n", (long long)in_tokens, (long long)t->output_tokens);
    if (cfg.compute) {
        printf("| output throughput | %.1f tokens/s |\n", t->output_tokens / wall);
        printf("| total throughput | %.1f tokens/s |\n", (in_tokens + t->output_tokens) / wall);
        printf("| request throughput | %.3f requests/s |\n", n_req / wall);
    }
    printf("| KV utilisation (used / reserved, mean over steps) | %.1f %% |\n",
           util_steps ? 100.0 * util_sum / util_steps : 0.0);
    printf("| KV peak reserved | %s (%lld B) |\n", ibex_cli_bytes(ks.peak_reserved, b1, sizeof b1),
           (long long)ks.peak_reserved);
    printf("| KV peak used | %s (%lld B) |\n", ibex_cli_bytes(ks.peak_used, b2, sizeof b2), (long long)ks.peak_used);
    printf("| max concurrent sequences | %d |\n", t->max_running);
    printf("| preemptions | %lld |\n| recomputed tokens | %lld |\n", (long long)t->preemptions,
           (long long)t->recomputed_tokens);
    printf("| prefill tokens processed | %lld |\n| decode tokens processed | %lld |\n", (long long)t->prefill_tokens,
           (long long)t->decode_tokens);
    printf("| static idle slot-steps | %lld |\n", (long long)t->idle_slot_steps);
    printf("| weights | %s |\n", ibex_cli_bytes(m->weight_bytes, b3, sizeof b3));
    rc = 0;
out:
    free(prompt), free(ev), free(out_len);
    ibex_engine_free(e);
    ibex_backend_free(be);
    ibex_model_free(m);
    return rc;
}
