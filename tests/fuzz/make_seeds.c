/* make_seeds.c — writes the fuzzers' seed corpora at build time (make_seeds OUTDIR):
 * OUTDIR/gguf (small valid GGUF v3 files made by ibex's own writer), OUTDIR/jsonl,
 * OUTDIR/tokenizer and OUTDIR/results. The scenario corpus is the shipped scenarios,
 * copied by CMake. Small seeds keep libFuzzer's input length, and each run, short. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/gguf.h"

static int put(const char *dir, const char *name, const void *data, size_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(p);
        return 1;
    }
    return 0;
}

static int gguf_seed(const char *dir, const char *name, int variant) {
    ibex_gguf_writer *w = ibex_gguf_writer_new();
    ibex_gguf_writer_set_str(w, "general.architecture", "llama");
    ibex_gguf_writer_set_str(w, "general.name", "fuzz seed");
    ibex_gguf_writer_set_u32(w, "llama.context_length", 64);
    ibex_gguf_writer_set_u32(w, "llama.embedding_length", 8);
    ibex_gguf_writer_set_u32(w, "llama.block_count", 1);
    ibex_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    ibex_gguf_writer_set_bool(w, "fuzz.flag", variant & 1);
    ibex_gguf_writer_set_i64(w, "fuzz.i64", -7);
    ibex_gguf_writer_set_f64(w, "fuzz.f64", 0.5);
    const char *toks[] = {"<unk>", "<s>", "</s>", ("\xe2\x96\x81" "a"), "b"};
    ibex_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5);
    float scores[] = {0, 0, 0, -1, -2};
    ibex_gguf_writer_set_arr(w, "tokenizer.ggml.scores", IBEX_GGUF_F32, scores, 5);
    int32_t types[] = {2, 3, 3, 1, 1};
    ibex_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", IBEX_GGUF_I32, types, 5);
    static float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)i * 0.25f;
    int64_t ne1[1] = {8}, ne2[2] = {8, variant ? 4 : 2};
    ibex_gguf_writer_add_tensor(w, "token_embd.weight", IBEX_TYPE_F32, 2, ne2, data);
    ibex_gguf_writer_add_tensor(w, "output_norm.weight", IBEX_TYPE_F32, 1, ne1, data);
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ibex_err err = {0};
    ibex_status st = ibex_gguf_writer_write(w, p, &err);
    ibex_gguf_writer_free(w);
    if (st) fprintf(stderr, "make_seeds: %s\n", err.msg);
    return st != IBEX_OK;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds OUTDIR\n");
        return 2;
    }
    const char *out = argv[1];
    static const char *const sub[] = {"gguf", "jsonl", "tokenizer", "results"};
    char d[4][1024];
    mkdir(out, 0755);
    for (int i = 0; i < 4; i++) {
        snprintf(d[i], sizeof d[i], "%s/%s", out, sub[i]);
        mkdir(d[i], 0755);
    }
    int bad = gguf_seed(d[0], "a.gguf", 0) + gguf_seed(d[0], "b.gguf", 1);
    static const char jl1[] = "{\"prompt\": \"Once upon a time\", \"output_tokens\": 5}\n\n{\"prompt_tokens\": 40}\n";
    static const char jl2[] = "{\"prompt_tokens\": 7, \"output_tokens\": 6}\n[1, 2]\n{\"prompt\": 12}\n";
    bad += put(d[1], "ok.jsonl", jl1, sizeof jl1 - 1) + put(d[1], "bad.jsonl", jl2, sizeof jl2 - 1);
    static const char t1[] = "\xe2\x96\x81" "the\n" "\xe2\x96\x81" "a\nhe\nll\nllo\n" "\0" "Hello world, the cat";
    static const char t2[] = "\0" "caf\xc3\xa9 \xf0\x9f\x90\x90 \xff\xfe tabs\tand\nnewlines";
    bad += put(d[2], "merges", t1, sizeof t1 - 1) + put(d[2], "bytes", t2, sizeof t2 - 1);
    static const char r1[] =
        "{\"schema_version\": 1, \"ibex\": {\"version\": \"0.1.0\", \"commit\": \"x\", \"build_type\": \"Release\"},\n"
        " \"complete\": true, \"scenario\": {\"name\": \"s\", \"path\": \"s.yaml\", \"description\": \"\", \"quick\": true,\n"
        "  \"swept\": [\"kv.policy\"]},\n"
        " \"points\": [{\"index\": 0, \"label\": \"kv.policy=paged\", \"status\": \"ok\", \"error\": null,\n"
        "   \"swept\": {\"kv.policy\": \"paged\"}, \"params\": {\"compute\": true, \"model\": \"synthetic:tiny\"},\n"
        "   \"metrics\": {\"steps\": 10, \"output_tok_per_s\": 100.5, \"ttft\": {\"count\": 4, \"p50\": 0.01, \"p99\": 0.02}},\n"
        "   \"kv\": {\"peak_reserved\": 4096, \"peak_used\": 2048, \"n_blocks\": 8},\n"
        "   \"ops\": {\"prefill\": {\"matmul\": {\"ns\": 1000, \"flops\": 2000, \"bytes\": 3000}}, \"decode\": {}},\n"
        "   \"raw\": {\"ttft\": [0.01, 0.02], \"tpot\": [], \"itl\": [], \"e2e\": [0.1]}}]}\n";
    bad += put(d[3], "results.json", r1, sizeof r1 - 1);
    return bad ? 1 : 0;
}
