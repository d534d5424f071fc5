/* cmd_generate.c — `ibex generate`: one prompt through one model. Decoding goes
 * through the engine's step API (greedy, sampling, n > 1 parallel samples, beam
 * search; any KV policy); the text (or ids) goes to stdout, speeds and decoding costs
 * to stderr. --logits-out takes a direct greedy path that dumps every step's logits
 * for numerical comparison with any reference implementation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/alloc.h"
#include "engine/backends.h"
#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "harness/cli.h"
#include "harness/metrics.h"
#include "harness/runner.h"

/* ibex's own share of the load average since the command started (model loading
 * included), to tell a busy machine from ibex's own threads. */
static ibex_load_probe g_probe;

/* Load and CPU time around the timed part of a generation. */
typedef struct timed_conditions {
    double load0, own0, cpu0, t0;
} timed_conditions;

static void conditions_begin(timed_conditions *c) {
    c->own0 = ibex_load_probe_sample(&g_probe, &c->load0);
    c->cpu0 = ibex_process_cpu_s();
    c->t0 = ibex_cli_now_s();
}

/* Prints the conditions line and, when the machine was busy or ibex starved, the
 * same warning `ibex run` records (metrics.h, ibex_load_judge). */
static void conditions_report(const timed_conditions *c, const ibex_backend *be) {
    double wall = ibex_cli_now_s() - c->t0, cpu = ibex_process_cpu_s() - c->cpu0, load1;
    double own1 = ibex_load_probe_sample(&g_probe, &load1);
    ibex_load_sample s = {.n_cpus = ibex_online_cpus(), .threads = ibex_backend_threads(be), .load1_start = c->load0,
                          .load1_end = load1, .own_start = c->own0, .own_end = own1, .cpu_s = cpu, .wall_s = wall,
                          .check_starved = true};
    char w[256];
    bool busy = ibex_load_judge(&s, w, sizeof w);
    fprintf(stderr, "conditions: load %.2f -> %.2f on %d CPUs; ibex got %.2f CPU-s per s with %d thread%s\n", c->load0,
            load1, s.n_cpus, wall > 0 ? cpu / wall : 0.0, s.threads, s.threads == 1 ? "" : "s");
    if (busy) fprintf(stderr, "ibex generate: %s\n", w);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: ibex generate -m MODEL (-p TEXT | --prompt-ids 1,2,3) [options]\n"
            "  -m, --model MODEL      GGUF file or synthetic:NAME (default synthetic:tiny)\n"
            "  -p, --prompt TEXT      prompt text (tokenized with the model's vocabulary, BOS added)\n"
            "      --prompt-ids LIST  prompt as token ids, used as given\n"
            "  -n, --n-predict N      tokens to generate (default 64)\n"
            "      --ctx N            context length (llama.cpp's -c; default the model's own): past the trained\n"
            "                         context the timings stay valid, the output quality does not\n"
            "  -t, --threads N        CPU threads (default: all cores)\n"
            "      --backend B        cpu | cuda | cuda:N | auto (default cpu)\n"
            "  -b, --ubatch N         prompt tokens per forward pass during prefill (default 512)\n"
            "      --ids              print token ids instead of text\n"
            "      --ignore-eos       keep generating after the end-of-sequence token\n"
            "      --no-warmup        skip the untimed warm-up pass\n"
            "      --logits-out FILE  write each step's logits as little-endian float32,\n"
            "                         vocab floats per step, the prompt's last position first\n"
            "      --dtype TYPE       synthetic weight type: f32, f16 (default), bf16, q8_0, q4_0\n"
            "      --weight-seed N    synthetic weight seed\n"
            "decoding:\n"
            "      --decoding D       greedy (default) | sample | beam\n"
            "      --temperature T    sampling temperature (default 0.8 with sample)\n"
            "      --top-k K          keep the K most likely tokens (0: off)\n"
            "      --top-p P          nucleus: smallest set reaching P, in (0, 1] (default 1: off)\n"
            "      --min-p P          drop tokens below P x the most likely (0: off)\n"
            "      --repeat-penalty R penalise recent tokens (1: off)\n"
            "      --seed N           sampling seed (default 1)\n"
            "      --n N              parallel samples from one prompt (default 1)\n"
            "      --beam-width W     beams for --decoding beam (default 4)\n"
            "      --length-penalty L beam score = logprob / length^L (default 1)\n"
            "      --early-stopping   end the beam search once W hypotheses are finished\n"
            "      --beams-out FILE   write every finished beam (or sample) with its log-probability\n"
            "KV cache:\n"
            "      --kv POLICY        contiguous (default) | paged | none\n"
            "      --block-size N     tokens per KV block (default 16)\n"
            "      --kv-budget SIZE   KV pool (default: exactly what the request needs)\n"
            "  -ctk, --kv-dtype T     KV cache element type: f16 (default, as llama.cpp), bf16, f32\n");
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

static void print_tokens(const ibex_model *m, FILE *f, bool ids, const int32_t *t, int32_t n) {
    if (ids || !m->tok) {
        for (int32_t i = 0; i < n; i++) fprintf(f, i ? ",%d" : "%d", t[i]);
        return;
    }
    char *text = ibex_tokenizer_decode(m->tok, t, n);
    if (text) fputs(text, f);
    free(text);
}

/* The step-API path: one request, any decoding strategy and KV policy. */
static int run_engine(const ibex_model *m, ibex_backend *be, const int32_t *toks, int32_t n_prompt,
                      const ibex_request_params *rq, ibex_kv_policy policy, int32_t block_size, int64_t budget,
                      int32_t ubatch, bool ids, bool warmup, const char *beams_out, const char *model_src,
                      double t_load, int threads, ibex_type kv_type) {
    const ibex_model_config *c = &m->cfg;
    int32_t width = rq->decoding == IBEX_DECODE_BEAM ? rq->beam_width : rq->n;
    int64_t per_tok = ibex_model_kv_bytes_per_token(c, kv_type == IBEX_TYPE_F32 ? 4 : 2);
    int32_t total = n_prompt + rq->max_new_tokens;
    if (budget == 0) /* every sequence's whole history in whole blocks plus a spare for CoW, twice over
                        for width > 1: beams fork children before their parents are released */
        budget = (int64_t)width * (width > 1 ? 2 : 1) * ((total + block_size - 1) / block_size + 1) * block_size * per_tok;
    ibex_engine_config cfg = ibex_engine_default_config();
    cfg.kv = (ibex_kv_config){.policy = policy, .budget_bytes = budget, .block_size = block_size};
    ibex_kv_config_set_type(&cfg.kv, kv_type);
    cfg.max_batch = 1;
    cfg.max_step_tokens = ubatch > width ? ubatch : width;
    ibex_err err = {0};
    ibex_engine *e = ibex_engine_new(m, be, &cfg, &err);
    if (!e) {
        fprintf(stderr, "ibex generate: %s\n", err.msg);
        return 1;
    }
    int rc = 1;
    ibex_token_event ev[1024];
    if (warmup) { /* one untimed request of one token: thread start-up, first touches */
        ibex_request_params w = ibex_request_default_params();
        w.max_new_tokens = 1;
        if (ibex_engine_submit(e, toks, 1, &w, &err) < 0) goto fail;
        while (ibex_engine_has_work(e))
            if (ibex_engine_step(e, ev, 1024, &err) < 0) goto fail;
    }
    ibex_engine_totals t0 = *ibex_engine_totals_get(e);
    timed_conditions tc;
    conditions_begin(&tc);
    double t_first = NAN, t_last = NAN; /* when the first and last returned tokens came */
    int64_t returned = 0;
    bool at_once = false; /* beam search: every returned token comes in the step it ends */
    int64_t id = ibex_engine_submit(e, toks, n_prompt, rq, &err);
    if (id < 0) goto fail;
    bool stream = width == 1 && rq->decoding == IBEX_DECODE_SAMPLE;
    double t_prefill = 0, t_decode = 0;
    int64_t decode_steps = 0, decode_seq_tokens = 0, peak_shared = 0;
    int32_t prev = n_prompt > 0 ? toks[n_prompt - 1] : -1;
    if (m->tok && prev == ibex_tokenizer_bos(m->tok)) prev = -1;
    bool first = true;
    while (ibex_engine_has_work(e)) {
        double ts = ibex_cli_now_s();
        int nev = ibex_engine_step(e, ev, 1024, &err);
        if (nev < 0) goto fail;
        double dt = ibex_cli_now_s() - ts;
        if (nev > 0) {
            if (returned == 0) t_first = ts + dt - tc.t0, at_once = rq->decoding == IBEX_DECODE_BEAM;
            t_last = ts + dt - tc.t0;
            returned += nev;
        }
        const ibex_step_info *si = ibex_engine_last_step(e);
        if (si->prefill_tokens > 0) {
            t_prefill += dt;
        } else if (si->decode_tokens > 0) {
            t_decode += dt, decode_steps++, decode_seq_tokens += si->decode_tokens;
        }
        ibex_kv_stats ks;
        ibex_kv_stats_get(ibex_engine_kv(e), &ks);
        if (ks.bytes_shared_saved > peak_shared) peak_shared = ks.bytes_shared_saved;
        for (int k = 0; k < nev && stream; k++) {
            if (ids || !m->tok) {
                printf(first ? "%d" : ",%d", ev[k].token);
            } else {
                char piece[256];
                size_t len = ibex_tokenizer_decode_piece(m->tok, prev, ev[k].token, piece, sizeof piece);
                fwrite(piece, 1, len < sizeof piece ? len : sizeof piece, stdout);
            }
            prev = ev[k].token;
            first = false;
            fflush(stdout);
        }
    }
    if (stream) {
        printf("\n");
    } else {
        int32_t n;
        const int32_t *out = ibex_engine_output(e, id, &n);
        print_tokens(m, stdout, ids, out, n);
        printf("\n");
    }
    FILE *bf = NULL;
    if (beams_out) {
        bf = strcmp(beams_out, "-") ? fopen(beams_out, "w") : stdout;
        if (!bf) {
            fprintf(stderr, "ibex generate: cannot open --beams-out file '%s'\n", beams_out);
            goto done;
        }
        int32_t no = ibex_engine_n_outputs(e, id);
        for (int32_t i = 0; i < no; i++) {
            int32_t n;
            double lp, score;
            const int32_t *out = ibex_engine_output_at(e, id, i, &n, &lp, &score);
            fprintf(bf, "# %s %d: %d tokens, logprob %.6f, score %.6f\n",
                    rq->decoding == IBEX_DECODE_BEAM ? "beam" : "sample", i, n, lp, score);
            print_tokens(m, bf, ids, out, n);
            fprintf(bf, "\n");
        }
        if (bf != stdout && fclose(bf) != 0) {
            fprintf(stderr, "ibex generate: writing '%s' failed\n", beams_out);
            goto done;
        }
    }
    {
        const ibex_engine_totals *t = ibex_engine_totals_get(e);
        ibex_kv_stats ks;
        ibex_kv_stats_get(ibex_engine_kv(e), &ks);
        char th[32] = "all cores", b1[32], b2[32], b3[32];
        snprintf(th, sizeof th, "%d%s", ibex_backend_threads(be), threads > 0 ? "" : " (all cores)");
        const char *dec = rq->decoding == IBEX_DECODE_BEAM ? "beam" : rq->sampling.temperature > 0 ? "sample" : "greedy";
        double wall = t_last;
        fprintf(stderr, "\nibex: %s (%s weights) on %s, threads: %s; load %.2f s\n", model_src,
                ibex_type_name(m->wtype), be->name, th, t_load);
        fprintf(stderr, "decoding %s, %d sequence%s; KV %s (block %d, %s)\n", dec, width, width > 1 ? "s" : "",
                ibex_kv_policy_name(policy), block_size, ibex_kv_type_name(kv_type));
        fprintf(stderr, "prefill: %6d tokens in %9.2f ms = %9.2f tokens/s\n", n_prompt, t_prefill * 1e3,
                n_prompt / (t_prefill > 0 ? t_prefill : 1e-9));
        if (decode_steps > 0)
            fprintf(stderr, "decode:  %6lld steps  in %9.2f ms = %9.2f steps/s, %.2f sequence-tokens/s\n",
                    (long long)decode_steps, t_decode * 1e3, decode_steps / t_decode, decode_seq_tokens / t_decode);
        /* output tok/s counts the tokens returned; hypothesis tok/s every sequence-token
         * computed (n samples, or every beam at every step) */
        int64_t hyp = t->output_tokens - t0.output_tokens;
        if (returned > 0 && wall > 0)
            fprintf(stderr, "output:  %6lld tokens returned in %9.2f ms = %9.2f tokens/s; hypothesis tokens %lld = %.2f tokens/s\n",
                    (long long)returned, wall * 1e3, returned / wall, (long long)hyp, hyp / wall);
        /* TPOT = (E2E - TTFT) / (n - 1) of the returned stream (branch 0 with n > 1) */
        int64_t streamed = width > 1 && rq->decoding == IBEX_DECODE_SAMPLE ? returned / width : returned;
        if (at_once || streamed < 2 || !(t_last > t_first))
            fprintf(stderr, "TTFT %.2f ms; TPOT and ITL undefined (%s)\n", t_first * 1e3,
                    at_once ? "beam search returns its hypothesis at the end" : "fewer than two tokens streamed");
        else
            fprintf(stderr, "TTFT %.2f ms; TPOT %.2f ms\n", t_first * 1e3, (t_last - t_first) / (double)(streamed - 1) * 1e3);
        conditions_report(&tc, be);
        int64_t calls = t->sample_calls - t0.sample_calls;
        fprintf(stderr, "sampler: %.2f us per token chosen (%lld choices)\n",
                calls ? (t->sample_ns - t0.sample_ns) / 1e3 / calls : 0.0, (long long)calls);
        fprintf(stderr, "KV: peak reserved %s, peak used %s, shared by forks %s at most, CoW copies %lld, fork copies %lld\n",
                ibex_cli_bytes(ks.peak_reserved, b1, sizeof b1), ibex_cli_bytes(ks.peak_used, b2, sizeof b2),
                ibex_cli_bytes(peak_shared, b3, sizeof b3), (long long)ks.cow_copies, (long long)ks.fork_copies);
    }
    rc = 0;
done:
    ibex_engine_free(e);
    return rc;
fail:
    fprintf(stderr, "ibex generate: %s\n", err.msg);
    ibex_engine_free(e);
    return 1;
}

int ibex_cmd_generate(int argc, char **argv) {
    const char *model_src = "synthetic:tiny", *prompt = NULL, *prompt_ids = NULL, *logits_path = NULL;
    int64_t n_predict = 64, threads = 0, ubatch = 512, seed = -1, ctx = 0, v;
    bool ids = false, ignore_eos = false, warmup = true;
    const char *beams_out = NULL;
    ibex_load_probe_start(&g_probe);
    ibex_request_params rq = ibex_request_default_params();
    rq.sampling.seed = 1;
    ibex_kv_policy kv_policy = IBEX_KV_CONTIGUOUS;
    int32_t block_size = 16;
    int64_t kv_budget = 0;
    ibex_type kv_type = IBEX_TYPE_F16; /* llama.cpp's and vLLM's default cache type */
    bool temp_set = false, beam_set = false;
    const char *decoding = "greedy";
    const char *backend = "cpu";
    ibex_model_params mp = ibex_model_default_params();
    static const char *const opts[] = {"--model", "--prompt", "--prompt-ids", "--n-predict", "--threads", "--ubatch",
                                       "--ids", "--ignore-eos", "--no-warmup", "--logits-out", "--dtype", "--weight-seed", "--help",
                                       "--decoding", "--temperature", "--top-k", "--top-p", "--min-p",
                                       "--repeat-penalty", "--seed", "--n", "--beam-width", "--length-penalty",
                                       "--early-stopping", "--beams-out", "--kv", "--block-size", "--kv-budget", "--backend", "--kv-dtype", "--ctx", NULL};
    double f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
#define IBEX_IS(s, l) (!strcmp(a, s) || !strcmp(a, l))
        if (IBEX_IS("-h", "--help")) {
            usage(stdout);
            return 0;
        } else if (IBEX_IS("-m", "--model") && val) {
            model_src = val, i++;
        } else if (IBEX_IS("-p", "--prompt") && val) {
            prompt = val, i++;
        } else if (!strcmp(a, "--prompt-ids") && val) {
            prompt_ids = val, i++;
        } else if (IBEX_IS("-n", "--n-predict")) {
            if (!ibex_cli_int("generate", a, val, 1, 1 << 24, &n_predict)) return 2;
            i++;
        } else if (!strcmp(a, "--ctx")) {
            if (!ibex_cli_int("generate", a, val, 1, 1 << 24, &ctx)) return 2;
            i++;
        } else if (IBEX_IS("-t", "--threads")) {
            if (!ibex_cli_int("generate", a, val, 1, 1024, &threads)) return 2;
            i++;
        } else if (IBEX_IS("-b", "--ubatch")) {
            if (!ibex_cli_int("generate", a, val, 1, 1 << 16, &ubatch)) return 2;
            i++;
        } else if (!strcmp(a, "--backend") && val) {
            if (!ibex_backend_name_valid(val)) {
                fprintf(stderr, "ibex generate: --backend: unknown backend '%s' (expected cpu, cuda, cuda:N or auto)\n", val);
                return 2;
            }
            backend = val, i++;
        } else if (!strcmp(a, "--ids")) {
            ids = true;
        } else if (!strcmp(a, "--no-warmup")) {
            warmup = false;
        } else if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
        } else if (!strcmp(a, "--logits-out") && val) {
            logits_path = val, i++;
        } else if (!strcmp(a, "--dtype") && val) {
            if (!ibex_type_from_name(val, &mp.wtype) || !ibex_type_traits_get(mp.wtype)->compute) {
                fprintf(stderr, "ibex generate: --dtype: '%s' is not a weight type ibex computes with (f32, f16, bf16, q8_0, q4_0)\n", val);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--weight-seed")) {
            if (!ibex_cli_int("generate", a, val, 0, INT64_MAX, &seed)) return 2;
            i++;
        } else if (!strcmp(a, "--decoding") && val) {
            if (strcmp(val, "greedy") && strcmp(val, "sample") && strcmp(val, "beam")) {
                fprintf(stderr, "ibex generate: --decoding: '%s' is not greedy, sample or beam\n", val);
                return 2;
            }
            decoding = val, i++;
        } else if (!strcmp(a, "--temperature")) {
            if (!ibex_cli_float("generate", a, val, 0, 1e6, &f)) return 2;
            rq.sampling.temperature = (float)f, temp_set = true, i++;
        } else if (!strcmp(a, "--top-k")) {
            if (!ibex_cli_int("generate", a, val, 0, INT32_MAX, &v)) return 2;
            rq.sampling.top_k = (int32_t)v, i++;
        } else if (!strcmp(a, "--top-p")) {
            if (!ibex_cli_float("generate", a, val, -1e9, 1e9, &f)) return 2;
            rq.sampling.top_p = (float)f, i++;
        } else if (!strcmp(a, "--min-p")) {
            if (!ibex_cli_float("generate", a, val, -1e9, 1e9, &f)) return 2;
            rq.sampling.min_p = (float)f, i++;
        } else if (!strcmp(a, "--repeat-penalty")) {
            if (!ibex_cli_float("generate", a, val, -1e9, 1e9, &f)) return 2;
            rq.sampling.repeat_penalty = (float)f, i++;
        } else if (!strcmp(a, "--seed")) {
            if (!ibex_cli_int("generate", a, val, 0, INT64_MAX, &v)) return 2;
            rq.sampling.seed = (uint64_t)v, i++;
        } else if (!strcmp(a, "--n")) {
            if (!ibex_cli_int("generate", a, val, 1, 1024, &v)) return 2;
            rq.n = (int32_t)v, i++;
        } else if (!strcmp(a, "--beam-width")) {
            if (!ibex_cli_int("generate", a, val, 1, 1024, &v)) return 2;
            rq.beam_width = (int32_t)v, beam_set = true, i++;
        } else if (!strcmp(a, "--length-penalty")) {
            if (!ibex_cli_float("generate", a, val, -100, 100, &f)) return 2;
            rq.length_penalty = (float)f, i++;
        } else if (!strcmp(a, "--early-stopping")) {
            rq.early_stopping = true;
        } else if (!strcmp(a, "--beams-out") && val) {
            beams_out = val, i++;
        } else if (!strcmp(a, "--kv") && val) {
            if (!ibex_kv_policy_from_name(val, &kv_policy)) {
                fprintf(stderr, "ibex generate: --kv: '%s' is not none, contiguous or paged\n", val);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--block-size")) {
            if (!ibex_cli_int("generate", a, val, 1, 256, &v)) return 2;
            block_size = (int32_t)v, i++;
        } else if ((!strcmp(a, "--kv-dtype") || !strcmp(a, "-ctk")) && val) {
            if (!ibex_kv_type_from_name(val, &kv_type)) {
                fprintf(stderr, "ibex generate: %s: '%s' is not f32, f16 or bf16\n", a, val);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--kv-budget")) {
            if (!ibex_cli_size("generate", a, val, &kv_budget)) return 2;
            i++;
        } else {
            const char *s = a[0] == '-' ? ibex_cli_suggest(a, opts) : NULL;
            if (a[0] == '-' && !val && (IBEX_IS("-m", "--model") || IBEX_IS("-p", "--prompt") ||
                                      !strcmp(a, "--prompt-ids") || !strcmp(a, "--logits-out") || !strcmp(a, "--dtype") ||
                                      !strcmp(a, "--kv-dtype") || !strcmp(a, "-ctk")))
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
    if (!prompt && !prompt_ids) { /* one BOS token would "run" and report a meaningless speed */
        fprintf(stderr, "ibex generate: no prompt: give -p TEXT or --prompt-ids 1,2,3 ('ibex generate --help')\n");
        return 2;
    }
    if (seed >= 0) mp.seed = (uint64_t)seed;
    if (!strcmp(decoding, "sample")) {
        if (!temp_set) rq.sampling.temperature = 0.8f;
    } else if (!strcmp(decoding, "beam")) {
        rq.decoding = IBEX_DECODE_BEAM;
    } else if (temp_set && rq.sampling.temperature > 0) {
        fprintf(stderr, "ibex generate: --temperature needs --decoding sample (greedy is temperature 0)\n");
        return 2;
    }
    if (rq.decoding != IBEX_DECODE_BEAM && beam_set) {
        fprintf(stderr, "ibex generate: --beam-width needs --decoding beam\n");
        return 2;
    }
    if (rq.decoding == IBEX_DECODE_BEAM && !beam_set) rq.beam_width = 4;
    rq.max_new_tokens = (int32_t)n_predict;
    rq.ignore_eos = ignore_eos;
    {
        ibex_err perr = {0};
        if (ibex_sampler_params_check(&rq.sampling, &perr)) {
            fprintf(stderr, "ibex generate: %s\n", perr.msg);
            return 2;
        }
    }
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

    double t0 = ibex_cli_now_s();
    m = ibex_model_load(model_src, &mp, &err);
    if (!m) {
        fprintf(stderr, "ibex generate: %s\n", err.msg);
        goto out;
    }
    double t_load = ibex_cli_now_s() - t0;
    if (ibex_model_set_ctx(m, (int32_t)ctx, &err)) {
        fprintf(stderr, "ibex generate: --ctx: %s\n", err.msg);
        goto out;
    }
    if (ibex_model_beyond_trained(m))
        fprintf(stderr, "ibex generate: note: context %d is beyond the trained context (%d) of %s: timings valid, output quality not\n",
                m->cfg.ctx_len, m->trained_ctx, model_src);
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
        if (ctx > 0)
            fprintf(stderr, "ibex generate: prompt (%d tokens) + -n %lld exceeds --ctx %d\n", n_prompt,
                    (long long)n_predict, c->ctx_len);
        else
            fprintf(stderr, "ibex generate: prompt (%d tokens) + -n %lld exceeds the context length %d of %s; "
                            "--ctx %lld runs beyond the trained context\n",
                    n_prompt, (long long)n_predict, c->ctx_len, model_src, (long long)n_prompt + n_predict);
        goto out;
    }
    if (logits_path && !(lf = fopen(logits_path, "wb"))) {
        fprintf(stderr, "ibex generate: cannot open --logits-out file '%s'\n", logits_path);
        goto out;
    }

    {
        const char *note = "";
        if (!(be = ibex_backend_open(backend, (int)threads, &note, &err))) {
            fprintf(stderr, "ibex generate: %s\n", err.msg);
            goto out;
        }
        if (note[0]) fprintf(stderr, "ibex generate: %s\n", note);
    }
    if (!logits_path) {
        rc = run_engine(m, be, toks, n_prompt, &rq, kv_policy, block_size, kv_budget, (int32_t)ubatch, ids, warmup,
                        beams_out, model_src, t_load, (int)threads, kv_type);
        goto out;
    }
    if (rq.decoding != IBEX_DECODE_SAMPLE || rq.n != 1 || rq.sampling.temperature > 0) {
        fprintf(stderr, "ibex generate: --logits-out works with greedy decoding of one sequence only\n");
        goto out;
    }
    int32_t cap = n_prompt + (int32_t)n_predict;
    int32_t table[1] = {0};
    int32_t chunk = (int32_t)(ubatch < n_prompt ? ubatch : n_prompt);
    logits = malloc((size_t)c->vocab_size * sizeof *logits);
    if (!be || !logits || ibex_kv_type_check(be, kv_type, &err) ||
        !(pool = ibex_kv_pool_new_typed(c, 1, cap, kv_type, be, &err)) || !(fwd = ibex_forward_new(m, be, chunk, &err))) {
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
    timed_conditions tc;
    conditions_begin(&tc);
    double tp = ibex_cli_now_s();
    for (int32_t p = 0; p < n_prompt; p += chunk) {
        int32_t n = n_prompt - p < chunk ? n_prompt - p : chunk;
        ibex_fwd_seq sq = {.tokens = toks + p, .n_tokens = n, .pos0 = p, .block_table = table,
                           .logits = p + n == n_prompt ? logits : NULL};
        if (ibex_forward_run(fwd, pool, &sq, 1, &err)) {
            fprintf(stderr, "ibex generate: prefill: %s\n", err.msg);
            goto out;
        }
    }
    double t_prefill = ibex_cli_now_s() - tp;

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
        double td = ibex_cli_now_s();
        ibex_fwd_seq sq = {.tokens = &tok, .n_tokens = 1, .pos0 = n_prompt + n_gen - 1, .block_table = table, .logits = logits};
        if (ibex_forward_run(fwd, pool, &sq, 1, &err)) {
            fprintf(stderr, "ibex generate: decode: %s\n", err.msg);
            goto out;
        }
        t_decode += ibex_cli_now_s() - td;
        n_decode++;
        prev = tok;
    }
    printf("\n");
    fflush(stdout);

    ibex_mem_stats ms;
    ibex_mem_stats_get(&ms);
    char b1[32], b2[32], b3[32], b4[32], th[32] = "all cores";
    snprintf(th, sizeof th, "%d%s", ibex_backend_threads(be), threads > 0 ? "" : " (all cores)");
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
    conditions_report(&tc, be);
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
