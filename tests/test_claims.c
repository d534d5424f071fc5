/* test_claims.c — suites (scenario files listing scenario files: parsing, every error
 * with its file:line:col) and the seed-claims report (reports/claims.h) computed from
 * hand-made results.json fixtures: exponent fits, the 1 GiB KV formula, verdicts that
 * flip when the numbers change, "not measured" for missing or failed scenarios, and
 * the claims.md / claims.csv files. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/scenario.h"
#include "reports/claims.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

/* ---------------------------------------------------------------- helpers */

/* A fresh directory IBEX_TEST_TMPDIR/claims_<tag>_<pid>, path into buf. */
static void tmpdir(const char *tag, char *buf, size_t n) {
    snprintf(buf, n, "%s/claims_%s_%d", IBEX_TEST_TMPDIR, tag, (int)getpid());
    mkdir(buf, 0755);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static const char *k_plain_a = "model: synthetic:tiny\nworkload: {requests: 1, prompt_tokens: 8, output_tokens: 4}\n";
static const char *k_plain_b = "model: synthetic:tiny\nsweep:\n  kv.policy: [none, paged]\n";

/* Loads dir/file expecting failure with a message containing every non-NULL needle. */
static void expect_load_error(const char *dir, const char *file, const char *n1, const char *n2, const char *n3) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    ibex_err err = {0};
    ibex_scenario *s = ibex_scenario_load(path, &err);
    cr_assert_null(s, "expected %s to fail", file);
    const char *needles[] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (needles[i]) cr_expect(strstr(err.msg, needles[i]) != NULL, "'%s' not in message: %s", needles[i], err.msg);
}

/* ---------------------------------------------------------------- suites */

Test(suite, parses_names_paths_and_report) {
    char dir[512];
    tmpdir("suite_ok", dir, sizeof dir);
    write_text(dir, "a.yaml", k_plain_a);
    write_text(dir, "b.yaml", k_plain_b);
    write_text(dir, "s.yaml",
               "name: my_suite\ndescription: two files\nreport: claims\nsuite: [a.yaml, b.yaml]\n");
    char path[1024];
    snprintf(path, sizeof path, "%s/s.yaml", dir);
    ibex_err err = {0};
    ibex_scenario *s = ibex_scenario_load(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_expect_eq(s->n_suite, 2);
    cr_expect_eq(s->n_points, 0);
    cr_expect_str_eq(s->name, "my_suite");
    cr_expect_str_eq(s->description, "two files");
    cr_expect_str_eq(s->report, "claims");
    char want[1100];
    snprintf(want, sizeof want, "%s/a.yaml", dir);
    cr_expect_str_eq(s->suite[0], want);
    snprintf(want, sizeof want, "%s/b.yaml", dir);
    cr_expect_str_eq(s->suite[1], want);
    ibex_scenario_quick(s); /* nothing to do on a suite */
    cr_expect_eq(s->n_suite, 2);
    cr_expect_eq(s->n_points, 0);
    ibex_scenario_free(s);
}

Test(suite, block_list_default_name_and_no_report) {
    char dir[512];
    tmpdir("suite_block", dir, sizeof dir);
    write_text(dir, "a.yaml", k_plain_a);
    write_text(dir, "only.yaml", "suite:\n  - a.yaml   # comment\n");
    char path[1024];
    snprintf(path, sizeof path, "%s/only.yaml", dir);
    ibex_err err = {0};
    ibex_scenario *s = ibex_scenario_load(path, &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_expect_eq(s->n_suite, 1);
    cr_expect_str_eq(s->name, "only");
    cr_expect_str_eq(s->report, "");
    ibex_scenario_free(s);
}

Test(suite, refuses_settings_unknown_keys_and_bad_reports) {
    char dir[512];
    tmpdir("suite_keys", dir, sizeof dir);
    write_text(dir, "a.yaml", k_plain_a);
    write_text(dir, "set.yaml", "name: x\nsuite: [a.yaml]\nmodel: synthetic:tiny\n");
    expect_load_error(dir, "set.yaml", "set.yaml:3:1:", "'model' cannot be set in a suite file", NULL);
    write_text(dir, "sweep.yaml", "suite: [a.yaml]\nsweep: {batch: [1, 2]}\n");
    expect_load_error(dir, "sweep.yaml", "sweep.yaml:2:1:", "'sweep' cannot be set", NULL);
    write_text(dir, "typo.yaml", "suite: [a.yaml]\nreprot: claims\n");
    expect_load_error(dir, "typo.yaml", "typo.yaml:2:1:", "unknown key 'reprot'", "did you mean 'report'");
    write_text(dir, "kind.yaml", "suite: [a.yaml]\nreport: claimz\n");
    expect_load_error(dir, "kind.yaml", "kind.yaml:2:9:", "report:", "did you mean 'claims'");
    write_text(dir, "empty.yaml", "suite: []\n");
    expect_load_error(dir, "empty.yaml", "empty.yaml:1:8:", "empty list", NULL);
    write_text(dir, "scalar.yaml", "suite: a.yaml\n");
    expect_load_error(dir, "scalar.yaml", "scalar.yaml:1:8:", "expected a list of scenario files", NULL);
    write_text(dir, "twice.yaml", "suite: [a.yaml, a.yaml]\n");
    expect_load_error(dir, "twice.yaml", "twice.yaml:1:17:", "listed twice", NULL);
    /* report belongs to suites only */
    write_text(dir, "plain.yaml", "model: synthetic:tiny\nreport: claims\n");
    expect_load_error(dir, "plain.yaml", "plain.yaml:2:1:", "only a suite file", NULL);
}

Test(suite, missing_nested_and_broken_files) {
    char dir[512];
    tmpdir("suite_files", dir, sizeof dir);
    write_text(dir, "a.yaml", k_plain_a);
    write_text(dir, "missing.yaml", "report: claims\nsuite:\n  - a.yaml\n  - nope.yaml\n");
    expect_load_error(dir, "missing.yaml", "missing.yaml:4:5:", "item 2: cannot read", "nope.yaml");
    write_text(dir, "inner.yaml", "suite: [a.yaml]\n");
    write_text(dir, "outer.yaml", "suite: [a.yaml, inner.yaml]\n");
    expect_load_error(dir, "outer.yaml", "outer.yaml:1:17:", "inner.yaml:1:1: suite: nested suites are not supported",
                      NULL);
    write_text(dir, "self.yaml", "suite: [self.yaml]\n");
    expect_load_error(dir, "self.yaml", "self.yaml:1:9:", "nested suites are not supported", NULL);
    write_text(dir, "bad.yaml", "model: synthetic:tiny\nbach_size: 4\n");
    write_text(dir, "withbad.yaml", "suite: [a.yaml, bad.yaml]\n");
    expect_load_error(dir, "withbad.yaml", "withbad.yaml:1:17:", "bad.yaml:2:1: unknown key 'bach_size'", "'batch'");
}

Test(suite, shipped_seed_claims_loads) {
#ifdef IBEX_SOURCE_DIR
    ibex_err err = {0};
    ibex_scenario *s = ibex_scenario_load(IBEX_SOURCE_DIR "/scenarios/seed_claims.yaml", &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_expect_eq(s->n_suite, 8);
    cr_expect_str_eq(s->report, "claims");
    cr_expect_str_eq(s->name, "seed_claims");
    ibex_scenario_free(s);
#else
    cr_skip_test("IBEX_SOURCE_DIR is not defined");
#endif
}

/* ---------------------------------------------------------------- results fixtures */

/* Writes dir/name/results.json holding points (stolen) and returns the run dir in out. */
static void write_results(const char *dir, const char *name, json_t *points, char *out, size_t n) {
    snprintf(out, n, "%s/%s", dir, name);
    mkdir(out, 0755);
    json_t *root = json_pack("{s:i,s:b,s:{s:s},s:o}", "schema_version", 1, "complete", 1, "scenario", "name", name,
                             "points", points);
    cr_assert_not_null(root);
    char path[1200];
    snprintf(path, sizeof path, "%s/results.json", out);
    cr_assert_eq(json_dump_file(root, path, JSON_INDENT(1)), 0);
    json_decref(root);
}

/* A point with status ok and the given params/metrics/kv/model/ops objects (stolen; may be NULL). */
static json_t *point(json_t *params, json_t *metrics, json_t *kv, json_t *model, json_t *ops) {
    json_t *p = json_pack("{s:s,s:o}", "status", "ok", "params", params ? params : json_object());
    if (metrics) json_object_set_new(p, "metrics", metrics);
    if (kv) json_object_set_new(p, "kv", kv);
    if (model) json_object_set_new(p, "model", model);
    if (ops) json_object_set_new(p, "ops", ops);
    return p;
}

static json_t *fixed(double v) { return json_pack("{s:s,s:f}", "dist", "fixed", "value", v); }

/* naive_vs_cache: total time none = c_n · n^e_none, cached = c_c · n^e_cache. */
static json_t *naive_points(double e_none, double e_cache) {
    json_t *pts = json_array();
    const double ns[] = {16, 32, 64, 128};
    for (int i = 0; i < 4; i++) {
        json_array_append_new(pts, point(json_pack("{s:s,s:o,s:o}", "kv.policy", "none", "workload.output_tokens",
                                                   fixed(ns[i]), "workload.prompt_tokens", fixed(8)),
                                         json_pack("{s:f}", "wall_s", 1e-4 * pow(ns[i], e_none)), NULL, NULL, NULL));
        json_array_append_new(pts, point(json_pack("{s:s,s:o,s:o}", "kv.policy", "contiguous",
                                                   "workload.output_tokens", fixed(ns[i]), "workload.prompt_tokens",
                                                   fixed(8)),
                                         json_pack("{s:f}", "wall_s", 1e-3 * pow(ns[i], e_cache)), NULL, NULL, NULL));
    }
    return pts;
}

static json_t *model_7b(double kv_f16) {
    return json_pack("{s:s,s:f,s:f,s:i,s:{s:f,s:f,s:f}}", "name", "synthetic:llama2-7b", "kv_bytes_per_token_f16", kv_f16,
                     "kv_bytes_per_token", kv_f16, "n_layers", 32, "weight_bytes_by_type", "F16", 13477363712.0, "Q8_0",
                     7160348672.0, "Q4_0", 3791273984.0);
}

static json_t *kv7b_points(double kv_f16) {
    json_t *pts = json_array();
    json_array_append_new(pts, point(json_pack("{s:s,s:s}", "kv.policy", "contiguous", "kv.dtype", "f16"), NULL,
                                     json_pack("{s:f,s:f}", "peak_used", kv_f16 * 2048, "peak_reserved", kv_f16 * 2064),
                                     model_7b(kv_f16), NULL));
    return pts;
}

/* quadratic: attention ns ∝ n^e_att (a total over 3 repetitions), prefill_s ∝ n^e_pre. */
static json_t *quad_points(double e_att, double e_pre) {
    json_t *pts = json_array();
    const double ns[] = {256, 512, 1024, 2047};
    for (int i = 0; i < 4; i++)
        json_array_append_new(
            pts, point(json_pack("{s:o}", "workload.prompt_tokens", fixed(ns[i])),
                       json_pack("{s:f,s:i}", "prefill_s", 1e-3 * pow(ns[i], e_pre), "repetitions", 3),
                       NULL, json_pack("{s:s}", "name", "synthetic:small"),
                       json_pack("{s:{s:{s:f}}}", "prefill", "attention", "ns", 3 * 10.0 * pow(ns[i], e_att))));
    return pts;
}

static ibex_claims *eval(const ibex_claims_sub *subs, size_t n) {
    ibex_claims *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    ibex_err err = {0};
    cr_assert_eq(ibex_claims_evaluate(subs, n, c, &err), IBEX_OK, "%s", err.msg);
    cr_assert_eq(c->n_rows, 9);
    return c;
}

static const ibex_claim_row *row(const ibex_claims *c, const char *id) {
    const ibex_claim_row *r = ibex_claims_row(c, id);
    cr_assert_not_null(r, "no row %s", id);
    return r;
}

/* ---------------------------------------------------------------- claims */

Test(claims, no_cache_exponents_and_verdict_flip) {
    char dir[512], sub[1100];
    tmpdir("naive", dir, sizeof dir);
    write_results(dir, "naive_vs_cache", naive_points(2.0, 1.0), sub, sizeof sub);
    ibex_claims_sub s = {.name = "naive_vs_cache", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *a = row(c, "a");
    cr_expect_eq(a->verdict, IBEX_CLAIM_HOLDS, "%s", a->assessment);
    cr_expect_float_eq(ibex_claim_value(a, "exp_none"), 2.0, 1e-9);
    cr_expect_float_eq(ibex_claim_value(a, "exp_cache"), 1.0, 1e-9);
    cr_expect_float_eq(ibex_claim_value(a, "local_exp_none"), 2.0, 1e-9);
    cr_expect_float_eq(ibex_claim_value(a, "per_token_growth_none"), 8.0, 1e-9); /* (128²/128)/(16²/16) */
    cr_expect_float_eq(ibex_claim_value(a, "slowdown_at_max_n"), 0.1 * 128, 1e-9);
    free(c);

    /* both linear: the no-cache claim is not seen */
    write_results(dir, "naive_vs_cache", naive_points(1.0, 1.0), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "a")->verdict, IBEX_CLAIM_WRONG);
    free(c);

    /* in between: faster than cached but far from n² */
    write_results(dir, "naive_vs_cache", naive_points(1.3, 1.0), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "a")->verdict, IBEX_CLAIM_PARTLY);
    free(c);
}

Test(claims, kv_formula_is_one_gib_at_2048_tokens) {
    char dir[512], sub[1100];
    tmpdir("kv7b", dir, sizeof dir);
    write_results(dir, "claims_kv_7b", kv7b_points(524288), sub, sizeof sub); /* 2·32·32·128·2 */
    ibex_claims_sub s = {.name = "claims_kv_7b", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *r = row(c, "c");
    cr_expect_float_eq(ibex_claim_value(r, "kv_2048_formula_bytes"), 1073741824.0, 0.5);
    cr_expect_float_eq(ibex_claim_value(r, "measured_peak_used"), 1073741824.0, 0.5);
    cr_expect_float_eq(ibex_claim_value(r, "measured_tokens"), 2048.0, 1e-9);
    cr_expect_float_eq(ibex_claim_value(r, "article_over_formula"), 1.6e9 / 1073741824.0, 1e-12);
    cr_expect_eq(r->verdict, IBEX_CLAIM_WRONG);
    cr_expect(strstr(r->measured, "equal to the formula") != NULL, "%s", r->measured);
    cr_expect(strstr(r->assessment, "+49%") != NULL, "%s", r->assessment);
    /* h1 from the same run: Q8_0 −46.9%, Q4_0 −71.9% */
    const ibex_claim_row *h = row(c, "h1");
    cr_expect_float_eq(ibex_claim_value(h, "q8_0_saving"), 1 - 7160348672.0 / 13477363712.0, 1e-12);
    cr_expect_float_eq(ibex_claim_value(h, "q4_0_saving"), 1 - 3791273984.0 / 13477363712.0, 1e-12);
    cr_expect_eq(h->verdict, IBEX_CLAIM_PARTLY); /* savings and 14 GB hold, 6 GB does not */
    cr_expect_float_eq(ibex_claim_value(h, "parts_holding"), 3, 0);
    const ibex_claim_row *h2 = row(c, "h2");
    cr_expect_eq(h2->verdict, IBEX_CLAIM_NOT_MEASURED);
    cr_expect(strstr(h2->assessment, "ESTIMATE") != NULL);
    cr_expect_float_eq(ibex_claim_value(h2, "ceiling_q8_0_speedup"), 13477363712.0 / 7160348672.0, 1e-12);
    free(c);

    /* a model whose 2048 tokens take 1.6 GB: the article would hold */
    write_results(dir, "claims_kv_7b", kv7b_points(1.6e9 / 2048), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "c")->verdict, IBEX_CLAIM_HOLDS);
    free(c);
}

Test(claims, quadratic_attention_vs_whole_model) {
    char dir[512], sub[1100];
    tmpdir("quad", dir, sizeof dir);
    write_results(dir, "claims_quadratic", quad_points(2.0, 1.2), sub, sizeof sub);
    ibex_claims_sub s = {.name = "claims_quadratic", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *e = row(c, "e");
    cr_expect_float_eq(ibex_claim_value(e, "exp_attention"), 2.0, 1e-9);
    cr_expect_float_eq(ibex_claim_value(e, "exp_prefill"), 1.2, 1e-9);
    /* 2047 scaled to 2048 by (2048/2047)^b: exactly 16× and 4^1.2× */
    cr_expect_float_eq(ibex_claim_value(e, "attention_2048_over_512"), 16.0, 1e-9);
    cr_expect_float_eq(ibex_claim_value(e, "attention_1024_over_512"), 4.0, 1e-9);
    cr_expect_float_eq(ibex_claim_value(e, "prefill_2048_over_512"), pow(4.0, 1.2), 1e-9);
    cr_expect_eq(e->verdict, IBEX_CLAIM_PARTLY, "%s", e->assessment);
    free(c);

    write_results(dir, "claims_quadratic", quad_points(2.0, 2.0), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "e")->verdict, IBEX_CLAIM_HOLDS);
    free(c);

    write_results(dir, "claims_quadratic", quad_points(1.0, 1.0), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "e")->verdict, IBEX_CLAIM_WRONG);
    free(c);
}

/* kv_memory at a 2048-token prompt + 64 output: paged reserves 2112 tokens per sequence. */
static json_t *kvmem_points(double weights_f16) {
    json_t *pts = json_array();
    const double batches[] = {1, 8, 32};
    for (int i = 0; i < 3; i++) {
        json_t *model = model_7b(524288);
        json_object_set_new(json_object_get(model, "weight_bytes_by_type"), "F16", json_real(weights_f16));
        json_array_append_new(
            pts, point(json_pack("{s:s,s:f,s:o,s:o,s:f,s:i}", "kv.policy", "paged", "batch", batches[i],
                                 "workload.prompt_tokens", fixed(2048), "workload.output_tokens", fixed(64), "kv.budget",
                                 80.0 * 1073741824.0, "kv.block_size", 16),
                       NULL, json_pack("{s:f}", "peak_reserved", batches[i] * 2112 * 524288.0), model, NULL));
    }
    return pts;
}

Test(claims, kv_share_and_concurrency) {
    char dir[512], sub[1100];
    tmpdir("kvmem", dir, sizeof dir);
    write_results(dir, "kv_memory", kvmem_points(13477363712.0), sub, sizeof sub);
    ibex_claims_sub s = {.name = "kv_memory", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *d = row(c, "d");
    double seq = 2112 * 524288.0, w = 13477363712.0;
    cr_expect_float_eq(ibex_claim_value(d, "share_smallest_batch"), seq / (seq + w), 1e-12);
    cr_expect_float_eq(ibex_claim_value(d, "batch_passing_60pct"), floor(1.5 * w / seq) + 1, 0); /* 19 */
    cr_expect_float_eq(ibex_claim_value(d, "batch_passing_60pct"), 19, 0);
    /* kv.budget is the KV pool; the weights come on top of it, not out of it */
    cr_expect_float_eq(ibex_claim_value(d, "max_concurrent_in_budget"), floor(80.0 * 1073741824.0 / seq), 0);
    cr_expect(strstr(d->measured, "weights sit on top") != NULL, "%s", d->measured);
    cr_expect_eq(d->verdict, IBEX_CLAIM_PARTLY);
    free(c);

    /* tiny weights: KV is over 60% from the first sequence */
    write_results(dir, "kv_memory", kvmem_points(0.5e9), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "d")->verdict, IBEX_CLAIM_HOLDS);
    free(c);
}

/* batching: static and continuous at batch 1 and 4 (16 requests). */
static json_t *batch_points(double cont_speedup, double idle_slot_steps) {
    json_t *pts = json_array();
    const double b[] = {1, 4};
    for (int i = 0; i < 2; i++) {
        json_array_append_new(pts, point(json_pack("{s:s,s:f,s:i}", "scheduler", "static", "batch", b[i],
                                                   "workload.requests", 16),
                                         json_pack("{s:f,s:f}", "output_tok_per_s", 100.0 * b[i], "steps", 400.0),
                                         json_pack("{s:f}", "idle_slot_steps", b[i] > 1 ? idle_slot_steps : 0.0), NULL,
                                         NULL));
        json_array_append_new(pts, point(json_pack("{s:s,s:f,s:i}", "scheduler", "continuous", "batch", b[i],
                                                   "workload.requests", 16),
                                         json_pack("{s:f,s:f}", "output_tok_per_s",
                                                   100.0 * b[i] * (b[i] > 1 ? cont_speedup : 1.0), "steps", 300.0),
                                         json_pack("{s:f}", "idle_slot_steps", 0.0), NULL, NULL));
    }
    return pts;
}

Test(claims, batching_verdicts) {
    char dir[512], sub[1100];
    tmpdir("batch", dir, sizeof dir);
    ibex_claims_sub s = {.name = "claims_batching", .dir = sub};
    write_results(dir, "claims_batching", batch_points(1.3, 480), sub, sizeof sub);
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *f = row(c, "f");
    cr_expect_eq(f->verdict, IBEX_CLAIM_HOLDS);
    cr_expect_float_eq(ibex_claim_value(f, "continuous_over_static"), 1.3, 1e-12);
    cr_expect_float_eq(ibex_claim_value(f, "static_idle_slot_share"), 480.0 / (4 * 400), 1e-12);
    cr_expect_float_eq(ibex_claim_value(f, "batch"), 4, 0);
    free(c);
    write_results(dir, "claims_batching", batch_points(1.02, 480), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "f")->verdict, IBEX_CLAIM_PARTLY);
    free(c);
    write_results(dir, "claims_batching", batch_points(1.02, 0), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "f")->verdict, IBEX_CLAIM_WRONG);
    free(c);
}

static json_t *paged_points(double u_full, double u_exact, double u_paged) {
    json_t *pts = json_array();
    json_array_append_new(pts, point(json_pack("{s:s,s:i}", "kv.policy", "contiguous", "kv.max_seq_len", 4096), NULL,
                                     json_pack("{s:f,s:i}", "utilisation_mean", u_full, "max_concurrent", 40), NULL, NULL));
    json_array_append_new(pts, point(json_pack("{s:s,s:i}", "kv.policy", "contiguous", "kv.max_seq_len", 0), NULL,
                                     json_pack("{s:f,s:i}", "utilisation_mean", u_exact, "max_concurrent", 150), NULL,
                                     NULL));
    json_array_append_new(pts, point(json_pack("{s:s,s:i}", "kv.policy", "paged", "kv.max_seq_len", 0), NULL,
                                     json_pack("{s:f,s:i}", "utilisation_mean", u_paged, "max_concurrent", 320), NULL,
                                     NULL));
    return pts;
}

Test(claims, paging_utilisation_verdicts) {
    char dir[512], sub[1100];
    tmpdir("paged", dir, sizeof dir);
    ibex_claims_sub s = {.name = "naive_vs_paged", .dir = sub};
    write_results(dir, "naive_vs_paged", paged_points(0.21, 0.72, 0.985), sub, sizeof sub);
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *g = row(c, "g");
    cr_expect_eq(g->verdict, IBEX_CLAIM_HOLDS);
    cr_expect_float_eq(ibex_claim_value(g, "util_contiguous_worst"), 0.21, 1e-12);
    cr_expect_float_eq(ibex_claim_value(g, "util_paged"), 0.985, 1e-12);
    cr_expect_float_eq(ibex_claim_value(g, "max_concurrent_contiguous_worst"), 40, 0);
    free(c);
    write_results(dir, "naive_vs_paged", paged_points(0.21, 0.72, 0.5), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "g")->verdict, IBEX_CLAIM_WRONG);
    free(c);
    write_results(dir, "naive_vs_paged", paged_points(0.6, 0.72, 0.9), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "g")->verdict, IBEX_CLAIM_PARTLY);
    free(c);
}

Test(claims, missing_and_failed_scenarios_are_not_measured) {
    char dir[512], sub[1100];
    tmpdir("missing", dir, sizeof dir);
    write_results(dir, "naive_vs_cache", naive_points(2.0, 1.0), sub, sizeof sub);
    char nodir[1100];
    snprintf(nodir, sizeof nodir, "%s/never_written", dir);
    ibex_claims_sub subs[] = {
        {.name = "naive_vs_cache", .dir = sub},
        {.name = "claims_decoding", .error = "boom: the model could not load"},
        {.name = "claims_quadratic", .dir = nodir}, /* results.json missing */
    };
    ibex_claims *c = eval(subs, 3);
    cr_expect_eq(row(c, "a")->verdict, IBEX_CLAIM_HOLDS);
    const ibex_claim_row *b = row(c, "b");
    cr_expect_eq(b->verdict, IBEX_CLAIM_NOT_MEASURED);
    cr_expect(strstr(b->measured, "not measured: claims_decoding: boom") != NULL, "%s", b->measured);
    const ibex_claim_row *e = row(c, "e");
    cr_expect_eq(e->verdict, IBEX_CLAIM_NOT_MEASURED);
    cr_expect(strstr(e->measured, "never_written") != NULL, "%s", e->measured);
    const ibex_claim_row *g = row(c, "g");
    cr_expect_eq(g->verdict, IBEX_CLAIM_NOT_MEASURED);
    cr_expect(strstr(g->measured, "no scenario named 'naive_vs_paged'") != NULL, "%s", g->measured);
    cr_expect_eq(row(c, "c")->verdict, IBEX_CLAIM_NOT_MEASURED);
    cr_expect_eq(row(c, "h1")->verdict, IBEX_CLAIM_NOT_MEASURED);
    cr_expect(strncmp(c->subs[1].status, "not measured", 12) == 0, "%s", c->subs[1].status);
    cr_expect(strncmp(c->subs[0].status, "ok", 2) == 0, "%s", c->subs[0].status);
    free(c);
}

Test(claims, failed_points_are_not_measured) {
    char dir[512], sub[1100];
    tmpdir("failedpts", dir, sizeof dir);
    json_t *pts = quad_points(2.0, 1.2);
    size_t i;
    json_t *p;
    json_array_foreach(pts, i, p) {
        json_object_set_new(p, "status", json_string("error"));
        json_object_set_new(p, "error", json_string("out of memory in prefill"));
    }
    write_results(dir, "quadratic", pts, sub, sizeof sub);
    ibex_claims_sub s = {.name = "quadratic", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *e = row(c, "e");
    cr_expect_eq(e->verdict, IBEX_CLAIM_NOT_MEASURED);
    cr_expect(strstr(e->measured, "out of memory in prefill") != NULL, "%s", e->measured);
    cr_expect(strstr(c->subs[0].status, "incomplete: 0 of 4") != NULL, "%s", c->subs[0].status);
    free(c);
}

Test(claims, report_files_and_incomplete_mark) {
    char dir[512], sub[1100];
    tmpdir("files", dir, sizeof dir);
    write_results(dir, "claims_kv_7b", kv7b_points(524288), sub, sizeof sub);
    ibex_claims_sub s = {.name = "claims_kv_7b", .dir = sub};
    ibex_claims *c = calloc(1, sizeof *c);
    ibex_err err = {0};
    cr_assert_eq(ibex_report_claims(dir, "seed_claims", "desc", &s, 1, false, c, &err), IBEX_OK, "%s", err.msg);
    cr_expect_str_eq(c->subs[0].dir, "claims_kv_7b"); /* relative to the suite's folder */
    char path[1200];
    snprintf(path, sizeof path, "%s/claims.md", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    static char md[200000];
    size_t n = fread(md, 1, sizeof md - 1, f);
    md[n] = '\0';
    fclose(f);
    cr_expect(strstr(md, "**Incomplete:**") != NULL);
    cr_expect(strstr(md, "| c | ") != NULL);
    cr_expect(strstr(md, "[report.md](claims_kv_7b/report.md)") != NULL);
    cr_expect(strstr(md, "**wrong**") != NULL);
    cr_expect(strstr(md, "**not measured**") != NULL);
    snprintf(path, sizeof path, "%s/claims.csv", dir);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    static char line[16384];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_expect_str_eq(line, "id,claim,source,verdict,measured,assessment,numbers\n");
    int rows = 0;
    while (fgets(line, sizeof line, f))
        if (line[0] == 'a' || line[0] == 'b' || line[0] == 'c' || line[0] == 'd' || line[0] == 'e' || line[0] == 'f' ||
            line[0] == 'g' || (line[0] == 'h' && (line[1] == '1' || line[1] == '2')))
            if (line[1] == ',' || line[2] == ',') rows++;
    fclose(f);
    cr_expect_eq(rows, 9);
    /* the terminal table counts the verdicts */
    char *buf = NULL;
    size_t len = 0;
    FILE *t = open_memstream(&buf, &len);
    cr_assert_eq(ibex_claims_terminal(c, t, &err), IBEX_OK);
    fclose(t);
    cr_expect(strstr(buf, "[INCOMPLETE]") != NULL, "%s", buf);
    cr_expect(strstr(buf, "[c] wrong") != NULL, "%s", buf);
    free(buf);
    free(c);
}

/* ---------------------------------------------------------------- noise, quick mode, local exponents */

/* Gives point pt repetitions[k].metric = v[k] (k < n). */
static void set_reps(json_t *pt, const char *metric, const double *v, int n) {
    json_t *reps = json_object_get(pt, "repetitions");
    if (!reps) {
        reps = json_array();
        json_object_set_new(pt, "repetitions", reps);
    }
    for (int k = 0; k < n; k++) {
        json_t *r = json_array_get(reps, (size_t)k);
        if (!r) {
            r = json_object();
            json_array_append_new(reps, r);
        }
        json_object_set_new(r, metric, json_real(v[k]));
    }
}

/* The no-cache point of naive points at output length n (policy none), or NULL. */
static json_t *naive_at(json_t *pts, const char *policy, double n) {
    size_t i;
    json_t *p;
    json_array_foreach(pts, i, p) {
        json_t *prm = json_object_get(p, "params");
        if (!strcmp(json_string_value(json_object_get(prm, "kv.policy")), policy) &&
            json_real_value(json_object_get(json_object_get(prm, "workload.output_tokens"), "value")) == n)
            return p;
    }
    return NULL;
}

/* Every point gets three quiet repetitions (±1 %) around its wall time. */
static void quiet_reps(json_t *pts) {
    size_t i;
    json_t *p;
    json_array_foreach(pts, i, p) {
        double w = json_real_value(json_object_get(json_object_get(p, "metrics"), "wall_s"));
        double v[3] = {0.99 * w, w, 1.01 * w};
        set_reps(p, "wall_s", v, 3);
    }
}

Test(claims, a_is_judged_on_the_local_exponent_not_the_fitted_one) {
    /* Not a power law: t = n + 0.02 n² (in ms) without a cache, 0.1 n with one. The
     * fit over n = 4..128 gives n^1.35, pulled down by the short runs where the linear
     * term rules; between the two longest runs the curve grows as n^1.64. Judged on
     * the fitted exponent the claim would only be "partly". */
    json_t *pts = json_array();
    const double ns[] = {4, 8, 16, 32, 64, 128};
    for (int i = 0; i < 6; i++) {
        double n = ns[i];
        json_array_append_new(pts, point(json_pack("{s:s,s:o,s:o}", "kv.policy", "none", "workload.output_tokens",
                                                   fixed(n), "workload.prompt_tokens", fixed(8)),
                                         json_pack("{s:f}", "wall_s", 1e-3 * (n + 0.02 * n * n)), NULL, NULL, NULL));
        json_array_append_new(pts, point(json_pack("{s:s,s:o,s:o}", "kv.policy", "contiguous",
                                                   "workload.output_tokens", fixed(n), "workload.prompt_tokens",
                                                   fixed(8)),
                                         json_pack("{s:f}", "wall_s", 1e-4 * n), NULL, NULL, NULL));
    }
    quiet_reps(pts);
    char dir[512], sub[1100];
    tmpdir("local", dir, sizeof dir);
    write_results(dir, "naive_vs_cache", pts, sub, sizeof sub);
    ibex_claims_sub s = {.name = "naive_vs_cache", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *a = row(c, "a");
    double fitted = ibex_claim_value(a, "exp_none"), local = ibex_claim_value(a, "local_exp_none");
    cr_expect_lt(fitted, 1.5, "the fixture must separate the two: fitted %.3f", fitted);
    cr_expect_float_eq(local, log((128 + 0.02 * 128 * 128) / (64 + 0.02 * 64 * 64)) / log(2.0), 1e-9);
    cr_expect_geq(local, 1.5);
    cr_expect_eq(a->verdict, IBEX_CLAIM_HOLDS, "%s", a->assessment);
    free(c);
}

Test(claims, a_noisy_figure_gives_inconclusive_never_a_flip) {
    char dir[512], sub[1100];
    tmpdir("noisy", dir, sizeof dir);
    json_t *pts = naive_points(2.0, 1.0);
    quiet_reps(pts);
    /* the longest no-cache run: CV 24 % */
    json_t *p = naive_at(pts, "none", 128);
    double w = json_real_value(json_object_get(json_object_get(p, "metrics"), "wall_s"));
    double v[3] = {0.76 * w, w, 1.24 * w};
    set_reps(p, "wall_s", v, 3);
    write_results(dir, "naive_vs_cache", pts, sub, sizeof sub);
    ibex_claims_sub s = {.name = "naive_vs_cache", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *a = row(c, "a");
    cr_expect_eq(a->verdict, IBEX_CLAIM_INCONCLUSIVE, "%s", a->assessment);
    cr_expect(strstr(a->note, "noisy: wall_s of none at n=128 CV 24 %") != NULL, "%s", a->note);
    cr_expect(strstr(a->assessment, "No verdict") == a->assessment, "%s", a->assessment);
    free(c);

    /* one repetition: under-sampled, inconclusive as well */
    pts = naive_points(2.0, 1.0);
    size_t i;
    json_t *q;
    json_array_foreach(pts, i, q) {
        double one = json_real_value(json_object_get(json_object_get(q, "metrics"), "wall_s"));
        set_reps(q, "wall_s", &one, 1);
    }
    write_results(dir, "naive_vs_cache", pts, sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "a")->verdict, IBEX_CLAIM_INCONCLUSIVE);
    cr_expect(strstr(row(c, "a")->note, "under-sampled") != NULL, "%s", row(c, "a")->note);
    free(c);
}

Test(claims, a_spread_straddling_a_threshold_is_inconclusive) {
    /* local exponent exactly 1.55 at the medians, CV about 6 % (not noisy): the range of
     * the repetitions reaches below 1.5, so the verdict could be holds or partly */
    char dir[512], sub[1100];
    tmpdir("straddle", dir, sizeof dir);
    json_t *pts = naive_points(1.55, 1.0);
    quiet_reps(pts);
    json_t *p = naive_at(pts, "none", 128);
    double w = json_real_value(json_object_get(json_object_get(p, "metrics"), "wall_s"));
    double v[3] = {0.94 * w, w, 1.06 * w};
    set_reps(p, "wall_s", v, 3);
    write_results(dir, "naive_vs_cache", pts, sub, sizeof sub);
    ibex_claims_sub s = {.name = "naive_vs_cache", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *a = row(c, "a");
    cr_expect_float_eq(ibex_claim_value(a, "local_exp_none"), 1.55, 1e-9);
    cr_expect_eq(a->verdict, IBEX_CLAIM_INCONCLUSIVE, "%s", a->assessment);
    cr_expect(strstr(a->note, "straddles a threshold") != NULL, "%s", a->note);
    free(c);

    /* the same medians with a spread of ±1 %: far enough from 1.5 to hold */
    pts = naive_points(1.55, 1.0);
    quiet_reps(pts);
    write_results(dir, "naive_vs_cache", pts, sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "a")->verdict, IBEX_CLAIM_HOLDS, "%s", row(c, "a")->assessment);
    free(c);
}

Test(claims, quick_mode_two_point_fit_is_not_judged) {
    char dir[512], sub[1100];
    tmpdir("quick", dir, sizeof dir);
    json_t *pts = quad_points(2.0, 1.2);
    json_array_remove(pts, 2); /* 1024 */
    json_array_remove(pts, 0); /* 256: 512 and 2047 remain */
    snprintf(sub, sizeof sub, "%s/claims_quadratic", dir);
    mkdir(sub, 0755);
    json_t *root = json_pack("{s:i,s:b,s:b,s:{s:s,s:b},s:o}", "schema_version", 1, "complete", 1, "quick", 1, "scenario",
                             "name", "claims_quadratic", "quick", 1, "points", pts);
    char path[1200];
    snprintf(path, sizeof path, "%s/results.json", sub);
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    ibex_claims_sub s = {.name = "claims_quadratic", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *e = row(c, "e");
    cr_expect_eq(e->verdict, IBEX_CLAIM_NOT_JUDGED, "%s", e->assessment);
    cr_expect(strstr(e->measured, "R²") == NULL, "no fit from 2 points: %s", e->measured);
    cr_expect(strstr(e->note, "at least 3") != NULL, "%s", e->note);
    cr_expect(c->quick);
    free(c);
}

/* claims_quantization: decode tok/s per weight type; q8/q4 failing when `failed`. */
static json_t *quant_points_fixture(bool failed, double f16, double q8, double q4) {
    json_t *pts = json_array();
    const char *w[] = {"f16", "q8_0", "q4_0"};
    const double tps[] = {f16, q8, q4}, bytes[] = {268435456, 142606336, 75497472};
    for (int i = 0; i < 3; i++) {
        json_t *p = point(json_pack("{s:s}", "weights", w[i]), json_pack("{s:f}", "decode_tok_per_s", tps[i]), NULL,
                          json_pack("{s:s}", "name", "synthetic:small"), NULL);
        json_object_set_new(p, "memory", json_pack("{s:f}", "weights", bytes[i]));
        double v[3] = {tps[i] * 0.99, tps[i], tps[i] * 1.01};
        set_reps(p, "decode_tok_per_s", v, 3);
        if (failed && i > 0) {
            json_object_set_new(p, "status", json_string("error"));
            json_object_set_new(p, "error", json_string("synthetic weights of type Q8_0 are not supported"));
        }
        json_array_append_new(pts, p);
    }
    return pts;
}

Test(claims, quantization_speed_measured_or_not_measured_with_the_failure) {
    char dir[512], sub[1100];
    tmpdir("quant", dir, sizeof dir);
    write_results(dir, "claims_quantization", quant_points_fixture(true, 100, 120, 140), sub, sizeof sub);
    ibex_claims_sub s = {.name = "claims_quantization", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *h2 = row(c, "h2");
    cr_expect_eq(h2->verdict, IBEX_CLAIM_NOT_MEASURED);
    cr_expect(strstr(h2->measured, "not measured (points failed: q8_0: synthetic weights of type Q8_0") != NULL, "%s",
              h2->measured);
    free(c);

    write_results(dir, "claims_quantization", quant_points_fixture(false, 100, 121, 139), sub, sizeof sub);
    c = eval(&s, 1);
    h2 = row(c, "h2");
    cr_expect_eq(h2->verdict, IBEX_CLAIM_HOLDS, "%s | %s", h2->measured, h2->assessment);
    cr_expect_float_eq(ibex_claim_value(h2, "q8_0_speedup"), 1.21, 1e-12);
    free(c);

    write_results(dir, "claims_quantization", quant_points_fixture(false, 100, 98, 101), sub, sizeof sub);
    c = eval(&s, 1);
    cr_expect_eq(row(c, "h2")->verdict, IBEX_CLAIM_WRONG);
    free(c);
}

Test(claims, kv_size_names_llama2_13b_and_paging_has_a_price) {
    char dir[512], sub[1100];
    tmpdir("c13b", dir, sizeof dir);
    write_results(dir, "claims_kv_7b", kv7b_points(524288), sub, sizeof sub);
    ibex_claims_sub s = {.name = "claims_kv_7b", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *r = row(c, "c");
    cr_expect_float_eq(ibex_claim_value(r, "llama2_13b_2048_f16_bytes"), 1677721600.0, 0.5);
    cr_expect(strstr(r->assessment, "Llama-2-13B") != NULL && strstr(r->assessment, "1677721600 B = 1.68 GB") != NULL,
              "%s", r->assessment);
    free(c);

    json_t *pts = paged_points(0.21, 0.72, 0.985);
    json_t *pg = json_array_get(pts, 2);
    json_t *kv = json_object_get(pg, "kv");
    json_object_set_new(kv, "preemptions", json_integer(1708));
    json_object_set_new(kv, "recomputed_tokens", json_integer(609080));
    json_object_set_new(kv, "prefill_tokens", json_integer(1050000 + 609080)); /* first-time + recomputed */
    write_results(dir, "naive_vs_paged", pts, sub, sizeof sub);
    ibex_claims_sub g = {.name = "naive_vs_paged", .dir = sub};
    c = eval(&g, 1);
    const ibex_claim_row *gr = row(c, "g");
    cr_expect(strstr(gr->measured, "1708 preemptions") != NULL, "%s", gr->measured);
    cr_expect(strstr(gr->measured, "609080 tokens recomputed, +58% of prefill work") != NULL, "%s", gr->measured);
    cr_expect_float_eq(ibex_claim_value(gr, "paged_recompute_share"), 609080.0 / 1050000.0, 1e-12);
    free(c);
}

Test(claims, quick_no_cache_with_two_lengths_is_not_judged_and_not_fitted) {
    char dir[512], sub[1100];
    tmpdir("quick_a", dir, sizeof dir);
    json_t *pts = naive_points(2.0, 1.0);
    /* keep n = 16 and 32 only */
    for (size_t i = json_array_size(pts); i-- > 0;) {
        double n = json_real_value(json_object_get(
            json_object_get(json_object_get(json_array_get(pts, i), "params"), "workload.output_tokens"), "value"));
        if (n > 32) json_array_remove(pts, i);
    }
    snprintf(sub, sizeof sub, "%s/claims_naive_vs_cache", dir);
    mkdir(sub, 0755);
    json_t *root = json_pack("{s:i,s:b,s:{s:s,s:b},s:o}", "schema_version", 1, "complete", 1, "scenario", "name",
                             "claims_naive_vs_cache", "quick", 1, "points", pts);
    char path[1200];
    snprintf(path, sizeof path, "%s/results.json", sub);
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    ibex_claims_sub s = {.name = "claims_naive_vs_cache", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *a = row(c, "a");
    cr_expect_eq(a->verdict, IBEX_CLAIM_NOT_JUDGED, "%s", a->assessment);
    cr_expect(strstr(a->measured, "R²") == NULL, "no fit from 2 lengths: %s", a->measured);
    free(c);
}

Test(claims, a_point_on_a_busy_machine_gives_inconclusive) {
    /* quiet repetitions, but the runner marked the longest no-cache point busy: load
     * drifts between points, so the comparison is not concluded */
    char dir[512], sub[1100];
    tmpdir("busy", dir, sizeof dir);
    json_t *pts = naive_points(2.0, 1.0);
    quiet_reps(pts);
    json_object_set_new(naive_at(pts, "none", 128), "conditions",
                        json_pack("{s:b,s:s}", "busy", 1, "warning", "load 21 on 2 cores"));
    write_results(dir, "naive_vs_cache", pts, sub, sizeof sub);
    ibex_claims_sub s = {.name = "naive_vs_cache", .dir = sub};
    ibex_claims *c = eval(&s, 1);
    const ibex_claim_row *a = row(c, "a");
    cr_expect_eq(a->verdict, IBEX_CLAIM_INCONCLUSIVE, "%s", a->assessment);
    cr_expect(strstr(a->note, "busy machine: load 21 on 2 cores") != NULL, "%s", a->note);
    free(c);
}
