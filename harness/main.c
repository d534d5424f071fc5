/* main.c — the ibex command line: dispatches to the subcommands. Results go to
 * stdout, progress and diagnostics to stderr; only this file decides to exit. */
#include <stdio.h>
#include <string.h>

#include "harness/cli.h"
#include "ibex_build.h"

static void usage(FILE *f) {
    fprintf(f,
            "ibex %s — Inference Bottleneck EXplorer\n"
            "\n"
            "usage: ibex COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  run        run a scenario file: sweeps, metrics, results.json, CSV, Markdown, plots\n"
            "  bench      llama-bench-style tests: -p 512 -n 128 -pg 512,128 -d 0,512 -c 1,4 --kv contiguous,paged -o sql\n"
            "  compare    regression gate: 'compare BASE NEW' (results.json, run folders or suites);\n"
            "             Mann-Whitney U on repetitions + a floor, exact counters; exit 1 on a regression\n"
            "  report     re-render the reports of a results directory from its results.json\n"
            "  merge      'merge OUT DIR...': join the folders of 'run --shard K/N' into one result folder\n"
            "  slurm      write (and with --submit, submit) a Slurm job array running a scenario's shards,\n"
            "             plus the job that merges them (docs/CLUSTER.md)\n"
            "  generate   run a prompt through a model and print text and prefill/decode speed\n"
            "  opbench    single-op microbenchmarks on a backend: decode attention (contiguous vs paged,\n"
            "             each CUDA kernel), matmuls (decode and prefill), read bandwidth\n"
            "  roofline   the machine's measured roofline: multi-thread read bandwidth and peak FMA rate\n"
            "  batch      run a seeded mixed-length workload through the scheduler and KV cache;\n"
            "             prints throughput and the exact KV accounting (also with --no-compute)\n"
            "  model      'model info MODEL' (shape, parameters, bytes, KV per token),\n"
            "             'model write synthetic:NAME OUT.gguf', 'model list'\n"
            "  version    print version, commit and build type\n"
            "\n"
            "MODEL is a GGUF file or synthetic:NAME (see 'ibex model list').\n"
            "'ibex COMMAND --help' shows a command's options.\n",
            IBEX_VERSION);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "generate")) return ibex_cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "model")) return ibex_cmd_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "batch")) return ibex_cmd_batch(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return ibex_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return ibex_cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return ibex_cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "compare")) return ibex_cmd_compare(argc - 1, argv + 1);
    if (!strcmp(cmd, "merge")) return ibex_cmd_merge(argc - 1, argv + 1);
    if (!strcmp(cmd, "slurm")) return ibex_cmd_slurm(argc - 1, argv + 1);
    if (!strcmp(cmd, "opbench")) return ibex_cmd_opbench(argc - 1, argv + 1);
    if (!strcmp(cmd, "roofline")) return ibex_cmd_roofline(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("ibex %s (commit %s, %s build)\n", IBEX_VERSION, IBEX_GIT_COMMIT, IBEX_BUILD_TYPE);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    static const char *const cmds[] = {"run", "report", "merge", "slurm", "compare", "bench", "opbench", "roofline", "generate", "batch", "model", "version", "help", NULL};
    /* A prefix ("gen", "rep") or an extension ("benchmark") first, then the nearest spelling. */
    const char *s = NULL;
    for (const char *const *c = cmds; !s && *c; c++) {
        size_t lc = strlen(*c), lw = strlen(cmd);
        if (lw >= 2 && (!strncmp(*c, cmd, lw) || (lw > lc && !strncmp(cmd, *c, lc)))) s = *c;
    }
    if (!s) s = ibex_cli_suggest(cmd, cmds);
    if (s)
        fprintf(stderr, "ibex: unknown command '%s' (did you mean '%s'?); 'ibex help' lists the commands\n", cmd, s);
    else
        fprintf(stderr, "ibex: unknown command '%s'; 'ibex help' lists the commands\n", cmd);
    return 2;
}
