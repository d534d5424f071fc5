/* cmd_roofline.c — `ibex roofline`: the machine's measured roofline on one backend: the
 * read bandwidth of all its threads streaming a buffer far larger than the last-level
 * cache, the peak F32 FMA rate of all its threads, and (CPU) both for one thread. These
 * are the figures `ibex run` places decode and prefill against (results.json
 * "roofline"); a one-thread memcpy is not a roofline for a multi-thread kernel.
 * Results to stdout (text, or --json), progress to stderr. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "engine/backends.h"
#include "harness/cli.h"
#include "harness/roofline.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ibex roofline [options]\n"
            "      --backend B        cpu | cuda | cuda:N | auto (default cpu)\n"
            "  -t, --threads N        CPU threads (default all cores)\n"
            "      --bytes SIZE       read buffer (default 1GiB: far beyond the last-level cache)\n"
            "      --no-single        skip the one-thread figures\n"
            "      --json             print JSON instead of text\n");
}

int ibex_cmd_roofline(int argc, char **argv) {
    const char *backend = "cpu";
    int64_t threads = 0, bytes = 1ll << 30;
    bool json_out = false, single = true;
    static const char *const opts[] = {"--backend", "--threads", "--bytes", "--no-single", "--json", "--help", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json_out = true;
        } else if (!strcmp(a, "--no-single")) {
            single = false;
        } else if (!strcmp(a, "--backend") && v) {
            backend = v, i++;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!ibex_cli_int("roofline", a, v, 1, 1024, &threads)) return 2;
            i++;
        } else if (!strcmp(a, "--bytes")) {
            if (!ibex_cli_size("roofline", a, v, &bytes)) return 2;
            if (bytes < (16ll << 20)) {
                fprintf(stderr, "ibex roofline: --bytes: %lld is below 16MiB\n", (long long)bytes);
                return 2;
            }
            i++;
        } else {
            const char *s = a[0] == '-' ? ibex_cli_suggest(a, opts) : NULL;
            fprintf(stderr, "ibex roofline: unknown option or missing value '%s'%s%s%s\n", a,
                    s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
            return 2;
        }
    }
    ibex_err err = {0};
    const char *note = "";
    ibex_backend *be = ibex_backend_open(backend, (int)threads, &note, &err);
    if (!be) {
        fprintf(stderr, "ibex roofline: %s\n", err.msg);
        return 1;
    }
    if (note[0]) fprintf(stderr, "ibex roofline: %s\n", note);
    fprintf(stderr, "ibex roofline: measuring on %s (%d thread(s))...\n", be->name, ibex_backend_threads(be));
    ibex_roofline r;
    ibex_status st = ibex_roofline_measure(be, (size_t)bytes, single, &r, &err);
    if (json_out) {
        json_t *o = ibex_roofline_json(&r);
        json_dumpf(o, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(8));
        printf("\n");
        json_decref(o);
    } else {
        printf("roofline of backend %s (%s)\n", r.kind, r.method);
        printf("| figure | %d thread(s) | 1 thread |\n|---|---:|---:|\n", r.threads);
        char a1[32] = "–", a2[32] = "–", b1[32] = "–", b2[32] = "–";
        if (r.read_bw > 0) snprintf(a1, sizeof a1, "%.1f GB/s", r.read_bw / 1e9);
        if (r.read_bw_1t > 0) snprintf(a2, sizeof a2, "%.1f GB/s", r.read_bw_1t / 1e9);
        if (r.peak_flops > 0) snprintf(b1, sizeof b1, "%.1f GFLOP/s", r.peak_flops / 1e9);
        if (r.peak_flops_1t > 0) snprintf(b2, sizeof b2, "%.1f GFLOP/s", r.peak_flops_1t / 1e9);
        printf("| read bandwidth | %s | %s |\n| peak F32 FMA | %s | %s |\n", a1, a2, b1, b2);
        if (r.read_bw > 0 && r.peak_flops > 0)
            printf("\nridge point: %.1f FLOP/byte (below it a kernel is bound by memory)\n", r.peak_flops / r.read_bw);
    }
    if (st) fprintf(stderr, "ibex roofline: %s\n", err.msg);
    ibex_backend_free(be);
    return st ? 1 : 0;
}
