/* test_inputs.c — bad inputs are refused with file, place and problem before any work:
 * FIFOs, directories and devices as scenario, model or workload file (without blocking:
 * a FIFO with no writer would hang open() forever, so each FIFO case runs under
 * Criterion's timeout); Poisson/gamma rates and their expected arrival span; sweeps too
 * large to expand; JSONL workload numbers checked before narrowing (4294967298 used to
 * wrap to 2); the prompt blamed when the prompt alone exceeds the context; scenario
 * names resolved to the shipped folder. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/fileio.h"
#include "engine/gguf.h"
#include "harness/scenario.h"
#include "harness/workload_file.h"

static char g_dir[512];

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "%s/test_inputs.%d", IBEX_TEST_TMPDIR, (int)getpid());
    mkdir(g_dir, 0755);
}

static void teardown(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(inputs, .init = setup, .fini = teardown, .timeout = 30);

static const char *path_in(const char *name) {
    static char p[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static const char *make_fifo(void) {
    const char *p = path_in("fifo");
    cr_assert_eq(mkfifo(p, 0644), 0);
    return p;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static void expect_parse_error(const char *yaml, const char *a, const char *b) {
    ibex_err err = {0};
    ibex_scenario *s = ibex_scenario_parse(yaml, strlen(yaml), "t.yaml", &err);
    cr_assert_null(s, "accepted: %s", yaml);
    cr_expect(strstr(err.msg, a), "'%s' not in: %s", a, err.msg);
    if (b) cr_expect(strstr(err.msg, b), "'%s' not in: %s", b, err.msg);
}

/* ---- files that are not regular files ---- */

Test(inputs, fifo_as_scenario_is_refused_without_blocking) {
    const char *fifo = make_fifo();
    ibex_err err = {0};
    cr_assert_null(ibex_scenario_load(fifo, &err));
    cr_expect(strstr(err.msg, fifo) && strstr(err.msg, "is a FIFO"), "%s", err.msg);
}

Test(inputs, directory_and_device_as_scenario_say_what_they_are) {
    ibex_err err = {0};
    cr_assert_null(ibex_scenario_load(g_dir, &err));
    cr_expect(strstr(err.msg, "is a directory"), "%s", err.msg);
    cr_assert_null(ibex_scenario_load("/dev/null", &err));
    cr_expect(strstr(err.msg, "is a character device"), "%s", err.msg);
}

Test(inputs, fifo_as_gguf_model_is_refused_without_blocking) {
    const char *fifo = make_fifo();
    ibex_err err = {0};
    cr_assert_null(ibex_gguf_open(fifo, &err));
    cr_expect(strstr(err.msg, "is a FIFO"), "%s", err.msg);
    cr_assert_null(ibex_gguf_open(g_dir, &err));
    cr_expect(strstr(err.msg, "is a directory"), "%s", err.msg);
}

Test(inputs, open_regular_accepts_a_file_and_reads_it_blocking) {
    const char *p = path_in("plain.txt");
    write_file(p, "hello\n");
    ibex_err err = {0};
    FILE *f = ibex_fopen_regular(p, &err);
    cr_assert(f, "%s", err.msg);
    char buf[16] = {0};
    cr_expect(fgets(buf, sizeof buf, f) && !strcmp(buf, "hello\n"));
    fclose(f);
    cr_expect_eq(ibex_open_regular(path_in("missing"), &err), -1);
    cr_expect(strstr(err.msg, "No such file"), "%s", err.msg);
}

Test(inputs, fifo_or_directory_as_model_or_workload_file_is_placed) {
    const char *fifo = make_fifo();
    char yaml[1200];
    snprintf(yaml, sizeof yaml, "model: %s\n", fifo);
    expect_parse_error(yaml, "t.yaml:1:8: model:", "is a FIFO");
    snprintf(yaml, sizeof yaml, "model: synthetic:tiny\nworkload:\n  file: %s\n", fifo);
    expect_parse_error(yaml, "t.yaml:3:9: workload.file:", "is a FIFO");
    snprintf(yaml, sizeof yaml, "model: synthetic:tiny\nworkload:\n  file: %s\n", g_dir);
    expect_parse_error(yaml, "t.yaml:3:9: workload.file:", "is a directory");
}

/* ---- arrival rates ---- */

Test(inputs, rates_are_bounded) {
    expect_parse_error("workload: {arrival: poisson, rate: 1e-300}\n", "workload.rate", "out of range");
    expect_parse_error("workload: {arrival: poisson, rate: 0}\n", "workload.rate", "out of range");
    expect_parse_error("workload: {arrival: poisson, rate: 1e300}\n", "workload.rate", "out of range");
    expect_parse_error("workload: {arrival: gamma, rate: 1, burstiness: 1e-300}\n", "workload.burstiness", "out of range");
}

Test(inputs, expected_arrival_span_is_bounded) {
    /* 8 requests (the default) at 1e-4/s: ~22 h, allowed; 100 at 1e-3/s: ~28 h, refused */
    ibex_err err = {0};
    const char *ok = "workload: {arrival: poisson, rate: 1e-4}\n";
    ibex_scenario *s = ibex_scenario_parse(ok, strlen(ok), "t.yaml", &err);
    cr_assert(s, "%s", err.msg);
    ibex_scenario_free(s);
    expect_parse_error("workload: {arrival: gamma, requests: 100, rate: 1e-3}\n", "t.yaml:1:", "24 h limit");
    expect_parse_error("workload: {arrival: poisson, rate: 2e-6, requests: 1000}\n", "workload.rate", "h limit");
    /* offline and concurrency arrivals do not wait on the rate */
    const char *off = "workload: {arrival: offline, requests: 100, rate: 1e-5}\n";
    s = ibex_scenario_parse(off, strlen(off), "t.yaml", &err);
    cr_assert(s, "%s", err.msg);
    ibex_scenario_free(s);
}

/* ---- sweep size ---- */

Test(inputs, sweep_expansion_is_bounded_by_memory) {
    /* 2^16 points × 16 swept keys: ~257 MB of points and swept values */
    static const char *const keys[] = {
        "workload.prompt_tokens", "workload.output_tokens", "workload.requests", "batch", "threads", "seed",
        "kv.block_size", "warmup", "repeat", "decoding.top_k", "workload.concurrency", "decoding.beam_width",
        "decoding.n", "kv.max_seq_len", "max_step_tokens", "decoding.repeat_last_n"};
    char yaml[4096] = "model: synthetic:tiny\nsweep:\n";
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        snprintf(yaml + strlen(yaml), sizeof yaml - strlen(yaml), "  %s: [1, 2]\n", keys[i]);
    ibex_err err = {0};
    ibex_scenario *s = ibex_scenario_parse(yaml, strlen(yaml), "t.yaml", &err);
    if (s) ibex_scenario_free(s);
    cr_assert_null(s, "a 65,536-point sweep was expanded");
    cr_expect(strstr(err.msg, "t.yaml:2:") && (strstr(err.msg, "MiB") || strstr(err.msg, "unknown key")), "%s",
              err.msg);
    cr_expect(!strstr(err.msg, "unknown key"), "pick valid keys for this test: %s", err.msg);
    cr_expect(strstr(err.msg, "65536 points"), "%s", err.msg);
}

/* ---- context length blame ---- */

Test(inputs, a_prompt_longer_than_the_context_is_the_prompts_fault) {
    expect_parse_error("workload: {prompt_tokens: 3000, output_tokens: 8}\n", "workload.prompt_tokens:", "2048");
    expect_parse_error("workload: {prompt_tokens: 2000, output_tokens: 100}\n", "workload.output_tokens:", "2048");
}

/* ---- JSONL lines ---- */

static void jsonl_bad(const char *line, const char *a, const char *b) {
    ibex_jsonl_req r;
    ibex_err err = {0};
    cr_expect_neq(ibex_jsonl_parse_line(line, strlen(line), "w.jsonl", 3, 2048, &r, &err), IBEX_OK, "accepted %s", line);
    cr_expect(strstr(err.msg, a), "'%s' not in: %s", a, err.msg);
    if (b) cr_expect(strstr(err.msg, b), "'%s' not in: %s", b, err.msg);
    cr_expect_null(r.text);
}

Test(inputs, jsonl_numbers_are_checked_before_narrowing) {
    jsonl_bad("{\"prompt_tokens\": 4, \"output_tokens\": 4294967298}\n", "w.jsonl:3:22: output_tokens: 4294967298",
              "out of range (1..2048");
    jsonl_bad("{\"prompt_tokens\": 4, \"output_tokens\": 2147483648}\n", "w.jsonl:3:22:", "2147483648 is out of range");
    jsonl_bad("{\"prompt_tokens\": 2000000000}\n", "w.jsonl:3:2: prompt_tokens: 2000000000", NULL);
    jsonl_bad("{\"prompt_tokens\": 0}\n", "w.jsonl:3:2:", "out of range");
    jsonl_bad("{\"prompt_tokens\": 4, \"output_tokens\": -1}\n", "w.jsonl:3:22:", "out of range");
    jsonl_bad("{\"prompt_tokens\": 2000, \"output_tokens\": 100}\n", "w.jsonl:3:", "exceeds the model's context length");
    jsonl_bad("{\"prompt_tokens\": 4, \"output_tokens\": 2.5}\n", "w.jsonl:3:22:", "must be an integer");
}

Test(inputs, jsonl_shapes_are_placed) {
    jsonl_bad("[1, 2]\n", "w.jsonl:3:1:", "must be a JSON object, not an array");
    jsonl_bad("  \"text\"\n", "w.jsonl:3:3:", "not a string");
    jsonl_bad("{\"prompt\": 12}\n", "w.jsonl:3:2:", "prompt must be a string");
    jsonl_bad("{\"prompt\": \"\"}\n", "w.jsonl:3:2:", "empty prompt");
    jsonl_bad("{\"output_tokens\": 3}\n", "w.jsonl:3:1:", "needs \"prompt\"");
    jsonl_bad("{\"prompt\": \"a\", \"prompt_tokens\": 3}\n", "w.jsonl:3:", "not both");
    jsonl_bad("{\"prompt_tokens\": 3, \"prompt_tokens\": 4}\n", "w.jsonl:3:", "duplicate");
    jsonl_bad("{\"prompt_tokens\": 3\n", "w.jsonl:3:", NULL);
}

Test(inputs, jsonl_good_lines) {
    ibex_jsonl_req r;
    ibex_err err = {0};
    const char *a = "{\"prompt\": \"Once upon a time\", \"output_tokens\": 5}\n";
    cr_assert_eq(ibex_jsonl_parse_line(a, strlen(a), "w.jsonl", 1, 2048, &r, &err), IBEX_OK, "%s", err.msg);
    cr_expect(!r.blank && r.text && !strcmp(r.text, "Once upon a time") && r.output_tokens == 5 && r.prompt_tokens == 0);
    ibex_jsonl_req_clear(&r);
    const char *b = "{\"prompt_tokens\": 2048}";
    cr_assert_eq(ibex_jsonl_parse_line(b, strlen(b), "w.jsonl", 2, 2048, &r, &err), IBEX_OK, "%s", err.msg);
    cr_expect(r.prompt_tokens == 2048 && r.output_tokens == 0 && !r.text);
    cr_assert_eq(ibex_jsonl_parse_line(" \t\r\n", 4, "w.jsonl", 3, 2048, &r, &err), IBEX_OK);
    cr_expect(r.blank);
}

/* ---- `ibex run NAME` ---- */

Test(inputs, scenario_names_resolve_to_the_shipped_folder) {
    char p[1100];
    /* a test binary has no share/ibex/scenarios beside it: the source tree's folder */
    cr_assert(ibex_scenario_find("default", p, sizeof p), "%s", p);
    cr_expect(strstr(p, "/scenarios/default.yaml") && access(p, R_OK) == 0, "%s", p);
    cr_assert(ibex_scenario_find("quadratic.yaml", p, sizeof p), "%s", p);
    cr_expect(strstr(p, "/scenarios/quadratic.yaml"), "%s", p);
    cr_expect(!ibex_scenario_find("no_such_scenario", p, sizeof p));
    cr_expect_str_eq(p, "no_such_scenario");
    cr_expect(!ibex_scenario_find("./default", p, sizeof p), "paths with a '/' are taken as given");
}
