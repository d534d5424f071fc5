/* test_scenario.c — scenario files: defaults, nested and dotted keys, sweep and zip
 * expansion (counts, order, swept labels), every schema error with its file:line:col,
 * refused values, cross-field checks (context length, KV budget), relative paths, and
 * quick mode. YAML inputs are string literals parsed with ibex_scenario_parse. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/scenario.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

static ibex_scenario *parse(const char *yaml, ibex_err *err) {
    memset(err, 0, sizeof *err);
    return ibex_scenario_parse(yaml, strlen(yaml), "t.yaml", err);
}

static ibex_scenario *parse_ok(const char *yaml) {
    ibex_err err;
    ibex_scenario *s = parse(yaml, &err);
    cr_assert(s != NULL, "parse failed: %s", err.msg);
    return s;
}

/* Parses yaml, expecting failure with a message containing every non-NULL needle. */
static void expect_error(const char *yaml, const char *n1, const char *n2, const char *n3) {
    ibex_err err;
    ibex_scenario *s = parse(yaml, &err);
    cr_assert_null(s, "expected an error for:\n%s", yaml);
    const char *needles[] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i]) cr_expect(strstr(err.msg, needles[i]) != NULL, "'%s' not in message: %s", needles[i], err.msg);
}

static const char *swept(const ibex_scenario *s, int point, int col) {
    return s->swept[point * s->n_swept + col].value;
}

/* ---- defaults and plain settings ---------------------------------------------------- */

Test(scenario, defaults_match_the_header) {
    ibex_point p = ibex_point_default();
    cr_expect_str_eq(p.model, "synthetic:tiny");
    cr_expect_str_eq(p.backend, "cpu");
    cr_expect_eq(p.threads, 0);
    cr_expect_eq(p.weights, IBEX_TYPE_F16);
    cr_expect_eq(p.engine.kv.policy, IBEX_KV_CONTIGUOUS);
    cr_expect_eq(p.engine.kv.budget_bytes, 256ll << 20);
    cr_expect_eq(p.engine.kv.block_size, 16);
    cr_expect_eq(p.engine.kv.elem_bytes, 2, "kv.dtype defaults to f16, as in llama.cpp and vLLM");
    cr_expect_eq(ibex_kv_config_type(&p.engine.kv), IBEX_TYPE_F16);
    cr_expect_eq(p.engine.sched, IBEX_SCHED_CONTINUOUS);
    cr_expect_eq(p.engine.max_batch, 8);
    cr_expect_eq(p.request.decoding, IBEX_DECODE_SAMPLE);
    cr_expect_float_eq(p.request.sampling.temperature, 0.0f, 1e-9);
    cr_expect_eq(p.requests, 8);
    cr_expect_eq(p.prompt_tokens.kind, IBEX_DIST_FIXED);
    cr_expect_float_eq(p.prompt_tokens.value, 128.0, 1e-9);
    cr_expect_float_eq(p.output_tokens.value, 32.0, 1e-9);
    cr_expect_eq(p.arrival, IBEX_ARRIVAL_OFFLINE);
    cr_expect_eq(p.warmup, 1);
    cr_expect_eq(p.repeat, 3);
    cr_expect_eq(p.seed, 1u);
    cr_expect_float_eq(p.slo_ttft, 0.0, 1e-12);
    cr_expect_eq(ibex_point_check(&p, "x", NULL), IBEX_OK);
}

/* kv.dtype sets the pool's element type and the accounting's element size together. */
Test(scenario, kv_dtype_sets_type_and_size) {
    const char *names[] = {"f32", "f16", "bf16"};
    const ibex_type types[] = {IBEX_TYPE_F32, IBEX_TYPE_F16, IBEX_TYPE_BF16};
    const int sizes[] = {4, 2, 2};
    for (int i = 0; i < 3; i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "name: d\nkv: {dtype: %s}\n", names[i]);
        ibex_scenario *s = parse_ok(yaml);
        cr_expect_eq(ibex_kv_config_type(&s->points[0].engine.kv), types[i], "%s", names[i]);
        cr_expect_eq(s->points[0].engine.kv.elem_bytes, sizes[i], "%s", names[i]);
        ibex_scenario_free(s);
    }
    ibex_err e = {0};
    cr_expect_null(parse("name: d\nkv: {dtype: q8_0}\n", &e));
}

Test(scenario, settings_reach_the_point) {
    ibex_scenario *s = parse_ok("name: demo\n"
                                "description: a test\n"
                                "model: synthetic:small\n"
                                "backend: auto\n"
                                "threads: 2\n"
                                "weights: bf16\n"
                                "kv: {policy: paged, block_size: 32, budget: 1GiB, dtype: f16, max_seq_len: 512}\n"
                                "scheduler: static\n"
                                "batch: 16\n"
                                "max_step_tokens: 256\n"
                                "compute: false\n"
                                "decoding: {strategy: sample, top_k: 40, top_p: 0.9, min_p: 0.05, repeat_penalty: 1.1,"
                                " n: 2}\n"
                                "workload:\n"
                                "  requests: 20\n"
                                "  prompt_tokens: {dist: uniform, min: 10, max: 100}\n"
                                "  output_tokens: {dist: lognormal, mean: 3.5, sd: 0.5, max: 200}\n"
                                "  arrival: gamma\n"
                                "  rate: 2.5\n"
                                "  burstiness: 0.5\n"
                                "  concurrency: 3\n"
                                "  ignore_eos: yes\n"
                                "warmup: 0\n"
                                "repeat: 5\n"
                                "seed: 42\n"
                                "slo: {ttft: 200ms, tpot: 0.05, e2e: 2s}\n"
                                "profile: true\n");
    cr_assert_eq(s->n_points, 1);
    cr_expect_str_eq(s->name, "demo");
    cr_expect_str_eq(s->description, "a test");
    const ibex_point *p = &s->points[0];
    cr_expect_str_eq(p->model, "synthetic:small");
    cr_expect_str_eq(p->backend, "auto");
    cr_expect_eq(p->threads, 2);
    cr_expect_eq(p->weights, IBEX_TYPE_BF16);
    cr_expect_eq(p->engine.kv.policy, IBEX_KV_PAGED);
    cr_expect_eq(p->engine.kv.block_size, 32);
    cr_expect_eq(p->engine.kv.budget_bytes, 1ll << 30);
    cr_expect_eq(p->engine.kv.elem_bytes, 2);
    cr_expect_eq(p->engine.max_seq_len, 512);
    cr_expect_eq(p->engine.sched, IBEX_SCHED_STATIC);
    cr_expect_eq(p->engine.max_batch, 16);
    cr_expect_eq(p->engine.max_step_tokens, 256);
    cr_expect_eq(p->engine.compute, false);
    cr_expect_eq(p->request.decoding, IBEX_DECODE_SAMPLE);
    cr_expect_float_eq(p->request.sampling.temperature, 0.8f, 1e-6, "sample defaults to temperature 0.8");
    cr_expect_eq(p->request.sampling.top_k, 40);
    cr_expect_float_eq(p->request.sampling.top_p, 0.9f, 1e-6);
    cr_expect_float_eq(p->request.sampling.min_p, 0.05f, 1e-6);
    cr_expect_float_eq(p->request.sampling.repeat_penalty, 1.1f, 1e-6);
    cr_expect_eq(p->request.n, 2);
    cr_expect_eq(p->requests, 20);
    cr_expect_eq(p->prompt_tokens.kind, IBEX_DIST_UNIFORM);
    cr_expect_float_eq(p->prompt_tokens.min, 10.0, 1e-9);
    cr_expect_float_eq(p->prompt_tokens.max, 100.0, 1e-9);
    cr_expect_eq(p->output_tokens.kind, IBEX_DIST_LOGNORMAL);
    cr_expect_float_eq(p->output_tokens.mean, 3.5, 1e-9);
    cr_expect_float_eq(p->output_tokens.sd, 0.5, 1e-9);
    cr_expect_float_eq(p->output_tokens.min, 1.0, 1e-9);
    cr_expect_float_eq(p->output_tokens.max, 200.0, 1e-9);
    cr_expect_eq(p->arrival, IBEX_ARRIVAL_GAMMA);
    cr_expect_float_eq(p->rate, 2.5, 1e-9);
    cr_expect_float_eq(p->burstiness, 0.5, 1e-9);
    cr_expect_eq(p->concurrency, 3);
    cr_expect_eq(p->request.ignore_eos, true);
    cr_expect_eq(p->warmup, 0);
    cr_expect_eq(p->repeat, 5);
    cr_expect_eq(p->seed, 42u);
    cr_expect_float_eq(p->slo_ttft, 0.2, 1e-12);
    cr_expect_float_eq(p->slo_tpot, 0.05, 1e-12);
    cr_expect_float_eq(p->slo_e2e, 2.0, 1e-12);
    cr_expect_eq(p->profile_ops, true);
    ibex_scenario_free(s);
}

Test(scenario, name_defaults_to_the_file_base_name) {
    ibex_err err = {0};
    const char *y = "batch: 2\n";
    ibex_scenario *s = ibex_scenario_parse(y, strlen(y), "dir/quadratic.yaml", &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_expect_str_eq(s->name, "quadratic");
    ibex_scenario_free(s);
}

Test(scenario, nested_maps_equal_dotted_keys) {
    ibex_scenario *a = parse_ok("kv: {policy: paged, block_size: 8}\n"
                                "decoding:\n  strategy: beam\n  beam_width: 3\n"
                                "workload:\n  prompt_tokens:\n    dist: normal\n    mean: 100\n    sd: 10\n    max: 300\n"
                                "slo: {ttft: 0.5}\n");
    ibex_scenario *b = parse_ok("kv.policy: paged\nkv.block_size: 8\n"
                                "decoding.strategy: beam\ndecoding.beam_width: 3\n"
                                "workload.prompt_tokens.max: 300\n"      /* before dist: order must not matter */
                                "workload.prompt_tokens.dist: normal\n"
                                "workload: {prompt_tokens.mean: 100, prompt_tokens.sd: 10}\n"
                                "slo.ttft: 0.5\n");
    cr_assert_eq(a->n_points, 1);
    cr_assert_eq(b->n_points, 1);
    const ibex_point *p = &a->points[0], *q = &b->points[0];
    cr_expect_eq(p->engine.kv.policy, IBEX_KV_PAGED);
    cr_expect_eq(p->engine.kv.policy, q->engine.kv.policy);
    cr_expect_eq(p->engine.kv.block_size, 8);
    cr_expect_eq(q->engine.kv.block_size, 8);
    cr_expect_eq(p->request.decoding, IBEX_DECODE_BEAM);
    cr_expect_eq(q->request.decoding, IBEX_DECODE_BEAM);
    cr_expect_eq(p->request.beam_width, 3);
    cr_expect_eq(q->request.beam_width, 3);
    cr_expect_eq(p->prompt_tokens.kind, IBEX_DIST_NORMAL);
    cr_expect_eq(q->prompt_tokens.kind, IBEX_DIST_NORMAL);
    cr_expect_float_eq(q->prompt_tokens.mean, 100.0, 1e-9);
    cr_expect_float_eq(q->prompt_tokens.sd, 10.0, 1e-9);
    cr_expect_float_eq(q->prompt_tokens.max, 300.0, 1e-9);
    cr_expect_float_eq(p->prompt_tokens.max, 300.0, 1e-9);
    cr_expect_float_eq(p->slo_ttft, q->slo_ttft, 1e-12);
    cr_expect_float_eq(q->slo_ttft, 0.5, 1e-12);
    ibex_scenario_free(a);
    ibex_scenario_free(b);
}

Test(scenario, greedy_and_sample_temperatures) {
    ibex_point p = ibex_point_default();
    cr_assert_eq(ibex_point_set(&p, "decoding.strategy", "sample", "w", NULL), IBEX_OK);
    cr_expect_float_eq(p.request.sampling.temperature, 0.8f, 1e-6);
    cr_assert_eq(ibex_point_set(&p, "decoding.strategy", "greedy", "w", NULL), IBEX_OK);
    cr_expect_float_eq(p.request.sampling.temperature, 0.0f, 1e-9);
    /* an explicit temperature wins whatever the key order */
    ibex_scenario *s = parse_ok("decoding: {temperature: 0.3, strategy: sample}\n");
    cr_expect_float_eq(s->points[0].request.sampling.temperature, 0.3f, 1e-6);
    ibex_scenario_free(s);
}

Test(scenario, point_set_validates_and_names_the_key) {
    ibex_point p = ibex_point_default();
    ibex_err err = {0};
    cr_expect_eq(ibex_point_set(&p, "batch", "12", "f.yaml:1:1", &err), IBEX_OK);
    cr_expect_eq(p.engine.max_batch, 12);
    cr_expect_eq(ibex_point_set(&p, "batch", "12x", "f.yaml:2:8", &err), IBEX_ERR_INVALID);
    cr_expect(strstr(err.msg, "f.yaml:2:8: batch:") != NULL, "%s", err.msg);
    cr_expect_eq(p.engine.max_batch, 12, "a refused value changes nothing");
    cr_expect_eq(ibex_point_set(&p, "batch", "0", "f.yaml:2:8", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "threads", "-1", "w", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "workload.rate", "0", "w", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "workload.burstiness", "-2", "w", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "repeat", "0", "w", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "warmup", "-1", "w", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "workload.requests", "0", "w", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "decoding.temperature", "-0.1", "w", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "compute", "maybe", "w", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "kv.budget", "lots", "w", &err), IBEX_ERR_INVALID);
    cr_expect_eq(ibex_point_set(&p, "kv.budget", "1.5GB", "w", &err), IBEX_OK);
    cr_expect_eq(p.engine.kv.budget_bytes, 1500000000ll);
    cr_expect_eq(ibex_point_set(&p, "kv.budget", "64 mib", "w", &err), IBEX_OK);
    cr_expect_eq(p.engine.kv.budget_bytes, 64ll << 20);
    cr_expect_eq(ibex_point_set(&p, "workload.arrival", "poison", "w", &err), IBEX_ERR_INVALID);
    cr_expect(strstr(err.msg, "did you mean 'poisson'") != NULL, "%s", err.msg);
    cr_expect_eq(ibex_point_set(&p, "scheduler", "continous", "w", &err), IBEX_ERR_INVALID);
    cr_expect(strstr(err.msg, "did you mean 'continuous'") != NULL, "%s", err.msg);
    cr_expect_eq(ibex_point_set(&p, "decoding.strategy", "beem", "w", &err), IBEX_ERR_INVALID);
    cr_expect(strstr(err.msg, "did you mean 'beam'") != NULL, "%s", err.msg);
    cr_expect_eq(ibex_point_set(&p, "batchh", "4", "f.yaml:9:1", &err), IBEX_ERR_INVALID);
    cr_expect(strstr(err.msg, "f.yaml:9:1: unknown key 'batchh' (did you mean 'batch'?)") != NULL, "%s", err.msg);
    cr_expect_eq(ibex_point_set(&p, "max_seq_len", "64", "w", &err), IBEX_OK, "alias of kv.max_seq_len");
    cr_expect_eq(p.engine.max_seq_len, 64);
}

Test(scenario, instruments_attention_and_backend_keys) {
    ibex_point p = ibex_point_default();
    ibex_err err = {0};
    cr_expect_eq(p.instruments, IBEX_INSTR_NVTX, "NVTX ranges are on by default");
    cr_expect_eq(p.attention, IBEX_ATTN_AUTO);
    cr_expect_eq(ibex_point_set(&p, "instruments", "cupti", "w", &err), IBEX_OK, "%s", err.msg);
    cr_expect_eq(p.instruments, IBEX_INSTR_CUPTI);
    cr_expect_eq(ibex_point_set(&p, "instruments", "off", "w", &err), IBEX_OK);
    cr_expect_eq(p.instruments, IBEX_INSTR_OFF);
    cr_expect_eq(ibex_point_set(&p, "instruments", "cuptl", "f.yaml:3:14", &err), IBEX_ERR_INVALID);
    cr_expect(strstr(err.msg, "f.yaml:3:14: instruments:") && strstr(err.msg, "did you mean 'cupti'"), "%s", err.msg);
    cr_expect_eq(p.instruments, IBEX_INSTR_OFF, "a refused value changes nothing");
    cr_expect_eq(ibex_point_set(&p, "attention", "split_k", "w", &err), IBEX_OK, "%s", err.msg);
    cr_expect_eq(p.attention, IBEX_ATTN_SPLIT_K);
    cr_expect_eq(ibex_point_set(&p, "attention", "materialised", "w", &err), IBEX_ERR_INVALID);
    cr_expect(strstr(err.msg, "did you mean 'materialized'"), "%s", err.msg);
    cr_expect_eq(ibex_point_set(&p, "backend", "cuda", "w", &err), IBEX_OK);
    cr_expect_str_eq(p.backend, "cuda");
    cr_expect_eq(ibex_point_set(&p, "backend", "gpu", "w", &err), IBEX_ERR_INVALID);
    cr_expect_str_eq(ibex_instruments_name(IBEX_INSTR_CUPTI), "cupti");
}

/* ---- sweep and zip -------------------------------------------------------------------- */

Test(scenario, cross_product_order_last_key_fastest) {
    ibex_scenario *s = parse_ok("kv.budget: 64MiB\n"
                                "sweep:\n"
                                "  kv.policy: [contiguous, paged]\n"
                                "  batch: [1, 4, 16]\n");
    cr_assert_eq(s->n_points, 6);
    cr_assert_eq(s->n_swept, 2);
    static const ibex_kv_policy pol[6] = {IBEX_KV_CONTIGUOUS, IBEX_KV_CONTIGUOUS, IBEX_KV_CONTIGUOUS,
                                          IBEX_KV_PAGED,      IBEX_KV_PAGED,      IBEX_KV_PAGED};
    static const int batch[6] = {1, 4, 16, 1, 4, 16};
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(s->points[i].engine.kv.policy, pol[i], "point %d", i);
        cr_expect_eq(s->points[i].engine.max_batch, batch[i], "point %d", i);
        cr_expect_eq(s->points[i].engine.kv.budget_bytes, 64ll << 20, "top-level settings apply to every point");
        cr_expect_str_eq(s->swept[i * 2 + 0].key, "kv.policy");
        cr_expect_str_eq(s->swept[i * 2 + 1].key, "batch");
    }
    cr_expect_str_eq(swept(s, 0, 0), "contiguous");
    cr_expect_str_eq(swept(s, 0, 1), "1");
    cr_expect_str_eq(swept(s, 2, 1), "16");
    cr_expect_str_eq(swept(s, 3, 0), "paged");
    cr_expect_str_eq(swept(s, 5, 1), "16");
    ibex_scenario_free(s);
}

Test(scenario, zip_is_one_dimension) {
    ibex_scenario *s = parse_ok("sweep:\n"
                                "  scheduler: [static, continuous]\n"
                                "zip:\n"
                                "  batch: [2, 4, 8]\n"
                                "  workload.requests: [20, 40, 80]\n");
    cr_assert_eq(s->n_points, 6);
    cr_assert_eq(s->n_swept, 3);
    for (int i = 0; i < 6; i++) {
        const ibex_point *p = &s->points[i];
        cr_expect_eq(p->engine.sched, i < 3 ? IBEX_SCHED_STATIC : IBEX_SCHED_CONTINUOUS, "point %d", i);
        cr_expect_eq(p->engine.max_batch, 2 << (i % 3), "point %d", i);
        cr_expect_eq(p->requests, 10 * p->engine.max_batch, "zipped values advance together (point %d)", i);
    }
    cr_expect_str_eq(swept(s, 4, 1), "4");
    cr_expect_str_eq(swept(s, 4, 2), "40");
    ibex_scenario_free(s);
}

Test(scenario, zip_before_sweep_is_the_slower_dimension) {
    ibex_scenario *s = parse_ok("zip:\n  batch: [2, 4, 8]\n"
                                "sweep:\n  scheduler: [static, continuous]\n");
    cr_assert_eq(s->n_points, 6);
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(s->points[i].engine.max_batch, 2 << (i / 2), "point %d", i);
        cr_expect_eq(s->points[i].engine.sched, i % 2 ? IBEX_SCHED_CONTINUOUS : IBEX_SCHED_STATIC, "point %d", i);
    }
    ibex_scenario_free(s);
}

Test(scenario, sweep_overrides_top_level_and_plain_ints_are_fixed_lengths) {
    ibex_scenario *s = parse_ok("batch: 3\n"
                                "workload:\n  prompt_tokens: {dist: uniform, min: 8, max: 64}\n"
                                "sweep:\n  batch: [5]\n  workload.prompt_tokens: [16, 256]\n");
    cr_assert_eq(s->n_points, 2);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(s->points[i].engine.max_batch, 5);
        cr_expect_eq(s->points[i].prompt_tokens.kind, IBEX_DIST_FIXED);
    }
    cr_expect_float_eq(s->points[0].prompt_tokens.value, 16.0, 1e-9);
    cr_expect_float_eq(s->points[1].prompt_tokens.value, 256.0, 1e-9);
    cr_expect_float_eq(s->points[1].prompt_tokens.max, 256.0, 1e-9);
    ibex_scenario_free(s);
}

Test(scenario, zipped_distributions) {
    ibex_scenario *s = parse_ok("zip:\n"
                                "  workload.output_tokens.dist: [uniform, normal]\n"
                                "  workload.output_tokens.min: [4, 1]\n"
                                "  workload.output_tokens.max: [40, 90]\n"
                                "  workload.output_tokens.mean: [0, 50]\n"
                                "  workload.output_tokens.sd: [0, 10]\n");
    cr_assert_eq(s->n_points, 2);
    const ibex_dist *a = &s->points[0].output_tokens, *b = &s->points[1].output_tokens;
    cr_expect_eq(a->kind, IBEX_DIST_UNIFORM);
    cr_expect_float_eq(a->min, 4.0, 1e-9);
    cr_expect_float_eq(a->max, 40.0, 1e-9);
    cr_expect_eq(b->kind, IBEX_DIST_NORMAL);
    cr_expect_float_eq(b->mean, 50.0, 1e-9);
    cr_expect_float_eq(b->sd, 10.0, 1e-9);
    cr_expect_float_eq(b->max, 90.0, 1e-9);
    ibex_scenario_free(s);
}

/* ---- schema errors: file:line:col, the key, the suggestion ------------------------------ */

Test(scenario, unknown_key_with_suggestion) {
    expect_error("model: synthetic:tiny\n"
                 "kv:\n  policy: paged\n"
                 "bach_size: 16\n",
                 "t.yaml:4:1:", "unknown key 'bach_size'", "did you mean 'batch'?");
    expect_error("kv:\n  polcy: paged\n", "t.yaml:2:3:", "unknown key 'kv.polcy'", "did you mean 'kv.policy'?");
    expect_error("workload: {prompt_tokens: {dist: uniform, mni: 3, max: 9}}\n", "t.yaml:1:", "'workload.prompt_tokens.mni'",
                 "did you mean 'workload.prompt_tokens.min'?");
}

Test(scenario, unknown_enum_value_with_suggestion) {
    expect_error("batch: 4\nkv:\n  policy: contigous\n", "t.yaml:3:11:", "kv.policy", "did you mean 'contiguous'?");
    expect_error("workload:\n  prompt_tokens: {dist: unifrom, min: 1, max: 4}\n", "t.yaml:2:", "workload.prompt_tokens.dist",
                 "did you mean 'uniform'?");
}

Test(scenario, wrong_node_kinds) {
    expect_error("batch: [1, 2]\n", "t.yaml:1:8:", "batch", "got a list");
    expect_error("batch: {a: 1}\n", "t.yaml:1:8:", "batch", "got a map");
    expect_error("kv: paged\n", "t.yaml:1:5:", "kv", "expected a map");
    expect_error("- batch\n- 4\n", "t.yaml:1:1:", "top level", NULL);
    expect_error("sweep:\n  batch: 4\n", "t.yaml:2:10:", "batch", "expected a list");
    expect_error("sweep:\n  batch: [1, [2, 3]]\n", "t.yaml:2:14:", "batch", "expected a scalar");
    expect_error("name: [a, b]\n", "t.yaml:1:7:", "name", NULL);
}

Test(scenario, duplicate_keys) {
    expect_error("batch: 4\nseed: 3\nbatch: 8\n", "t.yaml:3:1:", "duplicate key 'batch'", NULL);
    expect_error("kv:\n  policy: paged\nkv.policy: none\n", "t.yaml:3:1:", "duplicate key 'kv.policy'", NULL);
    expect_error("sweep:\n  batch: [1]\n  threads: [1]\n  batch: [2]\n", "t.yaml:4:3:", "duplicate key 'batch'", NULL);
    expect_error("sweep:\n  batch: [1, 2]\nzip:\n  batch: [3, 4]\n", "t.yaml:4:3:", "batch", "already swept");
}

Test(scenario, sweep_errors) {
    expect_error("sweep:\n  batch: []\n", "t.yaml:2:10:", "batch", "empty list");
    expect_error("zip:\n  batch: [1, 2, 3]\n  seed: [1, 2]\n", "t.yaml:3:3:", "seed", "batch");
    expect_error("sweep:\n  bach: [1, 2]\n", "t.yaml:2:3:", "'bach'", "did you mean 'batch'?");
    expect_error("sweep:\n  kv: [1, 2]\n", "t.yaml:2:3:", "'kv'", "section");
    expect_error("sweep:\n  batch: [1, 0, 4]\n", "t.yaml:2:14:", "batch", "0");
    expect_error("sweep:\n  kv.policy: [paged, pagd]\n", "t.yaml:2:22:", "kv.policy", "did you mean 'paged'?");
}

Test(scenario, too_many_points) {
    /* 50 × 50 × 50 = 125000 > 100000 */
    char y[4096];
    int n = snprintf(y, sizeof y, "seed: 1\nsweep:\n");
    const char *keys[3] = {"seed", "threads", "warmup"};
    for (int k = 0; k < 3; k++) {
        n += snprintf(y + n, sizeof y - (size_t)n, "  %s: [", keys[k]);
        for (int i = 0; i < 50; i++) n += snprintf(y + n, sizeof y - (size_t)n, "%s%d", i ? ", " : "", i + 1);
        n += snprintf(y + n, sizeof y - (size_t)n, "]\n");
    }
    /* 'seed' is also set at the top level: allowed, the sweep wins */
    expect_error(y, "t.yaml:2:1:", "sweep", "100000");
}

Test(scenario, yaml_syntax_error_has_a_mark) {
    ibex_err err = {0};
    const char *y = "batch: 4\nkv: {policy: paged\nseed: 1\n";
    ibex_scenario *s = ibex_scenario_parse(y, strlen(y), "t.yaml", &err);
    cr_assert_null(s);
    cr_expect(strstr(err.msg, "t.yaml:") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "YAML syntax error") != NULL, "%s", err.msg);
    int line = 0, col = 0;
    cr_expect_eq(sscanf(err.msg, "t.yaml:%d:%d:", &line, &col), 2, "%s", err.msg);
    cr_expect(line >= 2, "the problem is not on line 1: %s", err.msg);
    expect_error("batch: 4\n  seed: 1\n", "t.yaml:2:", "YAML syntax error", NULL);
    expect_error("", "t.yaml:1:1:", "empty", NULL);
}

/* ---- refused values and cross-field checks ----------------------------------------------- */

Test(scenario, impossible_values_are_refused) {
    expect_error("workload:\n  prompt_tokens: -5\n", "t.yaml:2:18:", "workload.prompt_tokens", "at least 1");
    expect_error("workload:\n  output_tokens: 0\n", "t.yaml:2:", "workload.output_tokens", NULL);
    expect_error("kv:\n  block_size: 0\n", "t.yaml:2:15:", "kv.block_size", "1..256");
    expect_error("kv.block_size: 257\n", "t.yaml:1:", "kv.block_size", NULL);
    expect_error("model: synthetic:tinny\n", "t.yaml:1:8:", "model", "did you mean 'synthetic:tiny'?");
    expect_error("model: synthetic:gpt5\n", "t.yaml:1:8:", "'gpt5'", "tiny");
    expect_error("decoding:\n  top_p: 2\n", "t.yaml:2:10:", "decoding.top_p", "(0, 1]");
    expect_error("decoding.top_p: 0\n", "t.yaml:1:", "decoding.top_p", NULL);
    expect_error("batch: four\n", "t.yaml:1:8:", "batch", "not an integer");
    expect_error("batch: 4.5\n", "t.yaml:1:8:", "batch", "not an integer");
    expect_error("workload: {prompt_tokens: {dist: uniform, min: 50, max: 10}}\n", "t.yaml:1:", "workload.prompt_tokens",
                 "min 50 > max 10");
    expect_error("workload: {output_tokens: {dist: normal, mean: 50, sd: 5}}\n", "t.yaml:1:", "workload.output_tokens",
                 "needs max");
    expect_error("workload: {prompt_tokens: {dist: uniform, value: 5}}\n", "t.yaml:1:", "workload.prompt_tokens.value",
                 NULL);
}

Test(scenario, budget_must_hold_one_sequence) {
    /* tiny with an F32 cache: 2 · 6 layers · 6 KV heads · 48 · 4 B = 13824 B/token; block 16
     * = 221184 B. 128 + 32 = 160 tokens = 10 blocks = 2211840 B; 2 MiB = 2097152 B holds 9. */
    expect_error("batch: 1\nkv:\n  budget: 2MiB\n  dtype: f32\n", "t.yaml:3:11:", "2097152", "2211840");
    ibex_scenario *s = parse_ok("kv: {budget: 2211840, dtype: f32}\n");
    ibex_scenario_free(s);
    /* f16 halves the need */
    s = parse_ok("kv: {budget: 2MiB, dtype: f16}\n");
    ibex_scenario_free(s);
    s = parse_ok("kv: {budget: 2MiB}\n"); /* f16 is the default */
    ibex_scenario_free(s);
    /* 4 MiB = 18 blocks; two beams need 20 */
    expect_error("kv.budget: 4MiB\nkv.dtype: f32\ndecoding: {strategy: beam, beam_width: 2}\n", "t.yaml:1:12:", "kv.budget",
                 "4423680");
    /* the offending point is named */
    expect_error("sweep:\n  kv.budget: [64MiB, 2MiB]\nkv.dtype: f32\n", "t.yaml:2:22 (kv.budget=2MiB): kv.budget:", "2097152",
                 "2211840");
}

Test(scenario, context_length_of_the_preset) {
    /* tiny's context is 2048 */
    ibex_scenario *s = parse_ok("workload: {prompt_tokens: 2000, output_tokens: 48}\n");
    ibex_scenario_free(s);
    expect_error("workload: {prompt_tokens: 2000, output_tokens: 49}\n", "t.yaml:1:", "workload.output_tokens", "2048");
    /* placed at the prompt length when the output length is not set */
    expect_error("seed: 3\nworkload:\n  requests: 2\n  prompt_tokens: 4000\n", "t.yaml:4:18:", "4000 prompt + 32 output",
                 "2048");
    /* a GGUF path is not checked against a preset */
    s = parse_ok("model: some/model.gguf\nworkload: {prompt_tokens: 9000}\n");
    cr_expect_str_eq(s->points[0].model, "some/model.gguf", "parse from text keeps relative paths as written");
    ibex_scenario_free(s);
}

Test(scenario, model_ctx_raises_the_context) {
    /* tiny's context is 2048: 2100 tokens are refused with the fix in the message ... */
    expect_error("workload: {prompt_tokens: 2050, output_tokens: 50}\n", "exceeds the context length 2048",
                 "set model_ctx: 2100", "--ctx 2100");
    /* ... and run with model_ctx at or above the request */
    ibex_scenario *s = parse_ok("model_ctx: 2100\nworkload: {prompt_tokens: 2050, output_tokens: 50}\n");
    cr_expect_eq(s->points[0].model_ctx, 2100);
    cr_expect_eq(ibex_point_ctx(&s->points[0], 2048), 2100);
    ibex_scenario_free(s);
    /* model_ctx bounds the requests as the model's own context does */
    expect_error("model_ctx: 2099\nworkload: {prompt_tokens: 2050, output_tokens: 50}\n", "t.yaml:",
                 "2100 tokens) exceeds model_ctx 2099", NULL);
    expect_error("model_ctx: 1000\nkv.max_seq_len: 1024\n", "kv.max_seq_len", "1000", NULL);
    /* auto: the model's own context, raised to the longest request only when longer */
    s = parse_ok("model_ctx: auto\nworkload: {prompt_tokens: 3000, output_tokens: 3}\n");
    cr_expect(s->points[0].model_ctx_auto);
    cr_expect_eq(ibex_point_ctx(&s->points[0], 2048), 3003);
    cr_expect_eq(ibex_point_ctx(&s->points[0], 4096), 4096, "auto never lowers the context");
    ibex_scenario_free(s);
    s = parse_ok("model_ctx: auto\nworkload: {prompt_tokens: {dist: uniform, min: 10, max: 2500}, output_tokens: 8}\n");
    cr_expect_eq(ibex_point_ctx(&s->points[0], 2048), 2508, "auto takes a distribution's maximum");
    ibex_scenario_free(s);
    /* unset: the model's own, whatever the requests */
    ibex_point p = ibex_point_default();
    cr_expect_eq(ibex_point_ctx(&p, 2048), 2048);
    /* sweepable like any key */
    s = parse_ok("sweep:\n  model_ctx: [2048, 4096]\n");
    cr_assert_eq(s->n_points, 2);
    cr_expect_eq(s->points[1].model_ctx, 4096);
    ibex_scenario_free(s);
}

Test(scenario, model_ctx_refuses_bad_values_naming_the_key) {
    expect_error("model_ctx: 0\n", "t.yaml:1:12:", "model_ctx", "or auto");
    expect_error("model_ctx: -5\n", "t.yaml:1:", "model_ctx", NULL);
    expect_error("model_ctx: 4k\n", "t.yaml:1:", "model_ctx", "not an integer");
    expect_error("model_ctx: 2.5\n", "t.yaml:1:", "model_ctx", NULL);
    expect_error("model_ctx: 99999999\n", "t.yaml:1:", "model_ctx", NULL);
    ibex_point p = ibex_point_default();
    ibex_err err = {0};
    cr_expect_eq(ibex_point_set(&p, "model_ctx", "", "w", &err), IBEX_ERR_INVALID);
    cr_expect(strstr(err.msg, "model_ctx") != NULL, "%s", err.msg);
    /* auto cannot see a file's request lengths */
    FILE *f = fopen(IBEX_TEST_TMPDIR "/ibex_model_ctx.jsonl", "w");
    cr_assert_not_null(f);
    fputs("{\"prompt_tokens\": 8, \"output_tokens\": 2}\n", f);
    fclose(f);
    expect_error("model_ctx: auto\nworkload: {file: " IBEX_TEST_TMPDIR "/ibex_model_ctx.jsonl}\n", "model_ctx",
                 "workload.file", NULL);
    remove(IBEX_TEST_TMPDIR "/ibex_model_ctx.jsonl");
}

Test(scenario, load_resolves_paths_next_to_the_file) {
    char dir[512], path[600], prompts[600];
    snprintf(dir, sizeof dir, "%s/scn_test_%d", IBEX_TEST_TMPDIR, (int)getpid());
    cr_assert_eq(mkdir(dir, 0755) == 0 || access(dir, W_OK) == 0, true);
    snprintf(path, sizeof path, "%s/s.yaml", dir);
    snprintf(prompts, sizeof prompts, "%s/prompts.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("workload:\n  file: prompts.jsonl\nmodel: m.gguf\n", f);
    fclose(f);
    ibex_err err = {0};
    remove(prompts);
    ibex_scenario *s = ibex_scenario_load(path, &err);
    cr_expect_null(s, "a missing workload.file is refused");
    cr_expect(strstr(err.msg, "s.yaml:2:9") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "prompts.jsonl") != NULL, "%s", err.msg);
    f = fopen(prompts, "w");
    cr_assert_not_null(f);
    fputs("{\"prompt\": \"hello\"}\n", f);
    fclose(f);
    s = ibex_scenario_load(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_expect_str_eq(s->dir, dir);
    cr_expect_str_eq(s->name, "s");
    cr_expect_str_eq(s->points[0].prompts_file, prompts);
    char model[700];
    snprintf(model, sizeof model, "%s/m.gguf", dir);
    cr_expect_str_eq(s->points[0].model, model);
    ibex_scenario_free(s);
    remove(prompts);
    remove(path);
    rmdir(dir);
    s = ibex_scenario_load(path, &err);
    cr_expect_null(s);
    cr_expect_eq(err.status, IBEX_ERR_IO);
}

/* ---- quick mode ------------------------------------------------------------------------ */

Test(scenario, quick_keeps_the_ends_and_caps_the_work) {
    ibex_scenario *s = parse_ok("workload:\n"
                                "  requests: 100\n"
                                "  prompt_tokens: {dist: uniform, min: 200, max: 1000}\n"
                                "  output_tokens: 64\n"
                                "warmup: 2\nrepeat: 9\n"
                                "sweep:\n"
                                "  batch: [1, 2, 4, 8]\n"
                                "  kv.policy: [paged, paged]\n"
                                "zip:\n"
                                "  seed: [1, 2, 3]\n"
                                "  threads: [1, 1, 2]\n");
    cr_assert_eq(s->n_points, 4 * 2 * 3);
    ibex_scenario_quick(s);
    cr_assert_eq(s->n_points, 2 * 1 * 2, "batch 1 and 8, paged once, zip first and last");
    cr_assert_eq(s->n_swept, 4);
    static const int batch[4] = {1, 1, 8, 8}, seed[4] = {1, 3, 1, 3}, threads[4] = {1, 2, 1, 2};
    for (int i = 0; i < 4; i++) {
        const ibex_point *p = &s->points[i];
        cr_expect_eq(p->engine.max_batch, batch[i], "point %d", i);
        cr_expect_eq(p->engine.kv.policy, IBEX_KV_PAGED);
        cr_expect_eq(p->seed, (uint64_t)seed[i], "point %d", i);
        cr_expect_eq(p->threads, threads[i], "point %d", i);
        cr_expect_eq(p->requests, 4);
        cr_expect_eq(p->repeat, 1);
        cr_expect_eq(p->warmup, 0);
        cr_expect_eq(p->prompt_tokens.kind, IBEX_DIST_UNIFORM);
        cr_expect_float_eq(p->prompt_tokens.max, 128.0, 1e-9);
        cr_expect(p->prompt_tokens.min <= p->prompt_tokens.max, "min <= max kept");
        cr_expect_float_eq(p->prompt_tokens.min, 128.0, 1e-9);
        cr_expect_float_eq(p->output_tokens.value, 16.0, 1e-9);
        cr_expect_float_eq(p->output_tokens.max, 16.0, 1e-9);
    }
    cr_expect_str_eq(swept(s, 2, 0), "8");
    cr_expect_str_eq(swept(s, 3, 2), "3");
    /* small values are not raised */
    ibex_scenario *t = parse_ok("workload: {requests: 2, prompt_tokens: 20, output_tokens: 5}\n");
    ibex_scenario_quick(t);
    cr_assert_eq(t->n_points, 1);
    cr_expect_eq(t->points[0].requests, 2);
    cr_expect_float_eq(t->points[0].prompt_tokens.value, 20.0, 1e-9);
    cr_expect_float_eq(t->points[0].output_tokens.value, 5.0, 1e-9);
    ibex_scenario_free(t);
    ibex_scenario_free(s);
}
