/* cmd_run.c — `ibex run SCENARIO.yaml` (run a scenario, write results.json and every
 * report) and `ibex report DIR` (re-render the reports from results.json). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness/cli.h"
#include "harness/runner.h"
#include "harness/scenario.h"
#include "reports/reports.h"

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    if (g_interrupted) _exit(130); /* a second Ctrl-C: leave at once */
    g_interrupted = 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: ibex run SCENARIO.yaml [--out DIR] [--quick]\n"
               "  --out DIR   where results.json and the reports go (default results/<name>-<timestamp>/)\n"
               "  --quick     first and last value of every swept list, 4 requests, 1 repetition (for CI)\n"
               "Ctrl-C stops after the current step, keeps everything measured, marks the run incomplete;\n"
               "a second Ctrl-C exits at once.\n"
               "usage: ibex report DIR   re-renders results.csv, report.md and the plots from DIR/results.json\n");
}

static int render(const char *dir) {
    ibex_err err = {0};
    if (ibex_report_write_all(dir, &err)) {
        fprintf(stderr, "ibex: reports: %s\n", err.msg);
        return 1;
    }
    json_t *res = ibex_report_load(dir, &err);
    if (!res) {
        fprintf(stderr, "ibex: %s\n", err.msg);
        return 1;
    }
    int rc = ibex_report_terminal(res, stdout, &err) ? 1 : 0;
    if (rc) fprintf(stderr, "ibex: %s\n", err.msg);
    json_decref(res);
    fprintf(stderr, "reports in %s/: results.json, results.csv, report.md, plots/\n", dir);
    return rc;
}

int ibex_cmd_report(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help")) {
        usage(argc == 2 ? stdout : stderr);
        return argc == 2 ? 0 : 2;
    }
    return render(argv[1]);
}

int ibex_cmd_run(int argc, char **argv) {
    const char *path = NULL, *out = NULL;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--quick")) {
            quick = true;
        } else if (argv[i][0] == '-' || path) {
            static const char *const opts[] = {"--out", "--quick", "--help", NULL};
            const char *s = ibex_cli_suggest(argv[i], opts);
            fprintf(stderr, "ibex run: unexpected argument '%s'%s%s%s\n", argv[i], s ? " (did you mean '" : "",
                    s ? s : "", s ? "'?)" : "");
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    ibex_err err = {0};
    ibex_scenario *s = ibex_scenario_load(path, &err);
    if (!s) {
        fprintf(stderr, "ibex run: %s\n", err.msg);
        return 2;
    }
    if (quick) ibex_scenario_quick(s);
    char dir[1024];
    if (out) {
        snprintf(dir, sizeof dir, "%s", out);
    } else {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(dir, sizeof dir, "results/%s-%s", s->name, stamp);
    }
    fprintf(stderr, "ibex run: %s (%d point%s%s) -> %s/\n", s->name, s->n_points, s->n_points == 1 ? "" : "s",
            quick ? ", quick" : "", dir);
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    ibex_run_opts o = {.out_dir = dir, .quick = quick, .progress_tty = isatty(2), .interrupted = &g_interrupted};
    ibex_status st = ibex_run_scenario(s, &o, &err);
    ibex_scenario_free(s);
    if (st) {
        fprintf(stderr, "ibex run: %s\n", err.msg);
        return 1;
    }
    int rc = render(dir);
    if (g_interrupted) {
        fprintf(stderr, "ibex run: interrupted; results so far are in %s/ (marked incomplete)\n", dir);
        return 130;
    }
    return rc;
}
