/* cmd_run.c — `ibex run SCENARIO.yaml` (run a scenario, write results.json and every
 * report; for a suite, run each scenario it lists into its own folder and write the
 * suite's report) and `ibex report DIR` (re-render the reports from results.json). */
#include <dirent.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness/cli.h"
#include "harness/runner.h"
#include "harness/scenario.h"
#include "harness/shard.h"
#include "reports/claims.h"
#include "reports/reports.h"

static volatile sig_atomic_t g_interrupted;
static volatile sig_atomic_t g_signal; /* the first signal that stopped the run */

/* SIGINT (Ctrl-C) and SIGTERM (a CI runner, Slurm's time limit, kill) both stop after
 * the current step and save; the exit status is then 128 + the signal (130, 143). */
static void on_stop_signal(int sig) {
    if (g_interrupted) _exit(128 + sig); /* a second signal: leave at once */
    g_signal = sig;
    g_interrupted = 1;
}

static int interrupted_status(void) { return 128 + (g_signal ? (int)g_signal : SIGINT); }

static void usage(FILE *f) {
    fprintf(f, "usage: ibex run SCENARIO.yaml [--out DIR] [--quick] [--shard K/N]\n"
               "  SCENARIO   a file, or the name of a shipped scenario (default, quadratic, ...), looked up in\n"
               "             <ibex's folder>/../share/ibex/scenarios/ when no such file is here\n"
               "  --out DIR   where results.json and the reports go (default results/<name>-<timestamp>/)\n"
               "  --quick     first and last value of every swept list, 4 requests, 1 repetition (for CI)\n"
               "  --shard K/N run only shard K of N (1 <= K <= N): points are dealt to shards by estimated\n"
               "              cost, the same way on every machine; 'ibex merge OUT DIR...' joins the shards'\n"
               "              folders (docs/CLUSTER.md; 'ibex slurm' writes the Slurm job array)\n"
               "A suite file (suite: [a.yaml, ...]) runs each listed scenario into DIR/<its name>/, then\n"
               "writes the suite's report (report: claims -> DIR/claims.md, DIR/claims.csv).\n"
               "Ctrl-C (or SIGTERM) stops after the current step, keeps everything measured, marks the run\n"
               "incomplete and exits with 130 (143 for SIGTERM); a second signal exits at once.\n"
               "Exit status: 0; 1 when any point failed (the count is printed) or results.json cannot be\n"
               "read; 2 on bad arguments or scenario; 130/143 when interrupted.\n");
}

static void report_usage(FILE *f) {
    fprintf(f, "usage: ibex report DIR\n"
               "  re-renders results.csv, report.md and the plots of DIR from DIR/results.json\n"
               "  (DIR is a folder written by 'ibex run' or 'ibex bench --out')\n");
}

/* Whether path exists (a file the report writers were meant to produce). */
static bool written(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Points of a results.json that failed: its failed_points, or (older files) the points
 * whose status is "error". */
static int count_failed(json_t *res) {
    json_t *fp = json_object_get(res, "failed_points");
    if (json_is_integer(fp)) return (int)json_integer_value(fp);
    int n = 0;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(res, "points"), i, p) {
        const char *st = json_string_value(json_object_get(p, "status"));
        n += st && !strcmp(st, "error");
    }
    return n;
}

/* Writes every report of dir and prints the terminal summary. Returns the exit status:
 * 1 when results.json cannot be read, a report cannot be written, or any point failed
 * (said on stderr), else 0. */
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
    /* Name only what is on disk: a missing gnuplot must not read as "plots/ written". */
    static const char *const files[] = {"results.json", "results.csv", "kernels.csv", "report.md", "trace.json"};
    char list[256] = "";
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (written(dir, files[i]))
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", files[i]);
    char gp[4096], why[512] = "";
    bool have_gp = ibex_report_gnuplot_find(gp, sizeof gp, why, sizeof why);
    bool plots = false;
    DIR *pd = NULL;
    char pdir[1200];
    snprintf(pdir, sizeof pdir, "%s/plots", dir);
    if ((pd = opendir(pdir))) {
        for (struct dirent *de; (de = readdir(pd));) {
            size_t l = strlen(de->d_name);
            if (l > 4 && !strcmp(de->d_name + l - 4, ".png")) plots = true;
        }
        closedir(pd);
    }
    fprintf(stderr, "reports in %s/: %s%s\n", dir, list, plots ? ", plots/ (PNG, SVG)" : "");
    if (!plots)
        fprintf(stderr, "ibex: plots were NOT rendered (%s)%s\n", have_gp ? "gnuplot wrote no image; see report.md" : why,
                have_gp ? "" : "; install gnuplot (Debian: apt-get install gnuplot-nox) and run 'ibex report DIR'");
    int failed = count_failed(res), n = (int)json_array_size(json_object_get(res, "points"));
    if (failed > 0) {
        fprintf(stderr, "ibex: %d of %d point%s failed (see \"error\" in %s/results.json)\n", failed, n,
                n == 1 ? "" : "s", dir);
        rc = 1;
    }
    json_decref(res);
    return rc;
}

int ibex_cmd_render(const char *dir) { return render(dir); }

int ibex_cmd_report(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        bool help = argc == 2;
        report_usage(help ? stdout : stderr);
        return help ? 0 : 2;
    }
    return render(argv[1]);
}

/* The base name of path without .yaml/.yml, into buf. */
static void base_name(const char *path, char *buf, size_t n) {
    const char *b = strrchr(path, '/');
    snprintf(buf, n, "%s", b ? b + 1 : path);
    size_t l = strlen(buf);
    if (l > 5 && !strcmp(buf + l - 5, ".yaml")) buf[l - 5] = '\0';
    else if (l > 4 && !strcmp(buf + l - 4, ".yml")) buf[l - 4] = '\0';
}

/* Runs every scenario a suite lists into dir/<name>/ (a scenario that fails to load or
 * run is recorded and the others go on), then writes the suite's report. Returns the
 * exit status: 0, 1 (a scenario failed or a report could not be written), 130
 * (interrupted: the report is still written, marked incomplete). */
/* The points of shard k (ascending global indices) among n_points, given every point's
 * owner; malloc'd (at least one element), count in *n_sel. NULL when out of memory. */
static int32_t *shard_select(const int32_t *owner, int32_t n_points, int32_t k, int32_t *n_sel) {
    int32_t *sel = malloc(((size_t)n_points + 1) * sizeof *sel);
    *n_sel = 0;
    for (int32_t i = 0; sel && i < n_points; i++)
        if (owner[i] == k) sel[(*n_sel)++] = i;
    return sel;
}

/* suite.json: what ibex merge needs to join the shards of a suite (its file's hash, the
 * shard, each listed scenario's folder). Written before the scenarios run. */
static void write_suite_manifest(const ibex_scenario *suite, const char *dir, const char *hash, bool quick, int32_t k,
                                 int32_t n, char (*names)[128]) {
    json_t *subs = json_array();
    for (int i = 0; i < suite->n_suite; i++) json_array_append_new(subs, json_string(names[i]));
    json_t *m = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:o}", "name", suite->name, "path", suite->path, "description",
                          suite->description, "report", suite->report, "sha256", hash, "quick", quick, "scenarios",
                          subs);
    if (n > 0) json_object_set_new(m, "shard", json_pack("{s:i,s:i}", "k", k, "n", n));
    char p[1200];
    snprintf(p, sizeof p, "%s/suite.json", dir);
    if (json_dump_file(m, p, JSON_INDENT(1)))
        fprintf(stderr, "ibex run: cannot write %s (ibex merge needs it to join shards of this suite)\n", p);
    json_decref(m);
}

static int run_suite(const ibex_scenario *suite, const char *dir, bool quick, int32_t shard_k, int32_t shard_n) {
    int n = suite->n_suite, rc = 0;
    ibex_scenario **pre = calloc((size_t)n + 1, sizeof *pre); /* every listed scenario, loaded up front for --shard */
    int32_t *owner = NULL, owner_off = 0;
    char(*names)[128] = calloc((size_t)n, sizeof *names);
    char(*dirs)[1100] = calloc((size_t)n, sizeof *dirs);
    char(*errors)[640] = calloc((size_t)n, sizeof *errors);
    ibex_claims_sub *subs = calloc((size_t)n, sizeof *subs);
    ibex_claims *claims = calloc(1, sizeof *claims);
    ibex_err err = {0};
    if (!names || !dirs || !errors || !subs || !claims || !pre) {
        fprintf(stderr, "ibex run: out of memory\n");
        rc = 1;
        goto done;
    }
    if (shard_n > 0) { /* the shard assignment spans the whole suite, so every file must load */
        int32_t total = 0;
        for (int i = 0; i < n; i++) {
            if (!(pre[i] = ibex_scenario_load(suite->suite[i], &err))) {
                fprintf(stderr, "ibex run: %s (with --shard every scenario of the suite must load)\n", err.msg);
                rc = 2;
                goto done;
            }
            if (quick) ibex_scenario_quick(pre[i]);
            total += pre[i]->n_points;
        }
        if (!(owner = calloc((size_t)total + 1, sizeof *owner)) ||
            ibex_shard_assign_many((const ibex_scenario *const *)pre, n, shard_n, owner, &err)) {
            fprintf(stderr, "ibex run: shards: %s\n", err.msg[0] ? err.msg : "out of memory");
            rc = 1;
            goto done;
        }
    }
    if (ibex_mkdir_p(dir, &err)) {
        fprintf(stderr, "ibex run: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    bool complete = true;
    if (shard_n > 0) { /* the folder names as the loop below makes them: suite.json lists them first */
        for (int i = 0; i < n; i++) {
            snprintf(names[i], sizeof names[i], "%s", pre[i]->name);
            for (int j = 0, k = 2; j < i; j++)
                if (!strcmp(names[j], names[i])) {
                    snprintf(names[i], sizeof names[i], "%s-%d", pre[i]->name, k++);
                    j = -1;
                }
        }
        char hash[65] = "";
        if (ibex_sha256_file(suite->path, hash, &err)) hash[0] = 0;
        write_suite_manifest(suite, dir, hash, quick, shard_k, shard_n, names);
    }
    for (int i = 0; i < n; i++) {
        base_name(suite->suite[i], names[i], sizeof names[i]);
        subs[i].name = names[i];
        if (g_interrupted) {
            snprintf(errors[i], sizeof errors[i], "not run: the suite was interrupted");
            subs[i].error = errors[i];
            complete = false;
            continue;
        }
        ibex_scenario *s = pre[i] ? pre[i] : ibex_scenario_load(suite->suite[i], &err);
        pre[i] = NULL;
        if (!s) {
            fprintf(stderr, "ibex run: %s\n", err.msg);
            snprintf(errors[i], sizeof errors[i], "%s", err.msg);
            subs[i].error = errors[i];
            complete = false;
            rc = 1;
            continue;
        }
        snprintf(names[i], sizeof names[i], "%s", s->name);
        for (int j = 0, k = 2; j < i; j++) /* two scenarios of the same name get their own folders */
            if (!strcmp(names[j], names[i])) {
                snprintf(names[i], sizeof names[i], "%s-%d", s->name, k++);
                j = -1;
            }
        if (quick && shard_n == 0) ibex_scenario_quick(s); /* (preloaded ones already are) */
        snprintf(dirs[i], sizeof dirs[i], "%s/%s", dir, names[i]);
        char hash[65] = "";
        if (ibex_sha256_file(s->path, hash, &err)) hash[0] = 0;
        int32_t n_sel = 0, *sel = NULL;
        if (shard_n > 0 && !(sel = shard_select(owner + owner_off, s->n_points, shard_k, &n_sel))) {
            fprintf(stderr, "ibex run: out of memory\n");
            ibex_scenario_free(s);
            rc = 1;
            goto done;
        }
        owner_off += s->n_points;
        fprintf(stderr, "ibex run: [%d/%d] %s (%d point%s%s) -> %s/\n", i + 1, n, names[i],
                shard_n > 0 ? n_sel : s->n_points, (shard_n > 0 ? n_sel : s->n_points) == 1 ? "" : "s",
                quick ? ", quick" : "", dirs[i]);
        int failed = 0;
        ibex_run_opts o = {.out_dir = dirs[i], .quick = quick, .progress_tty = isatty(2), .interrupted = &g_interrupted,
                           .failed_points = &failed, .shard_k = shard_k, .shard_n = shard_n, .shard_points = sel,
                           .n_shard_points = n_sel, .scenario_sha256 = hash[0] ? hash : NULL};
        ibex_status st = ibex_run_scenario(s, &o, &err);
        free(sel);
        ibex_scenario_free(s);
        if (!st && failed > 0) {
            fprintf(stderr, "ibex run: %s: %d point%s failed\n", names[i], failed, failed == 1 ? "" : "s");
            rc = 1;
        }
        if (st) {
            fprintf(stderr, "ibex run: %s: %s\n", names[i], err.msg);
            snprintf(errors[i], sizeof errors[i], "%s", err.msg);
            subs[i].error = errors[i];
            complete = false;
            rc = 1;
            continue;
        }
        subs[i].dir = dirs[i];
        if (g_interrupted) complete = false;
        if (ibex_report_write_all(dirs[i], &err)) fprintf(stderr, "ibex run: %s: reports: %s\n", names[i], err.msg);
    }
    if (!strcmp(suite->report, "claims")) {
        if (ibex_report_claims(dir, suite->name, suite->description, subs, (size_t)n, complete && !g_interrupted, claims,
                               &err)) {
            fprintf(stderr, "ibex run: claims report: %s\n", err.msg);
            rc = 1;
        } else {
            if (ibex_claims_terminal(claims, stdout, &err)) fprintf(stderr, "ibex run: %s\n", err.msg);
            fprintf(stderr, "claims report in %s/: claims.md, claims.csv; each scenario's reports in %s/<name>/\n", dir,
                    dir);
        }
    } else {
        for (int i = 0; i < n; i++)
            printf("%s: %s\n", names[i], subs[i].dir ? subs[i].dir : errors[i]);
    }
    if (g_interrupted) {
        fprintf(stderr, "ibex run: interrupted; results so far are in %s/ (marked incomplete)\n", dir);
        rc = interrupted_status();
    }
done:
    for (int i = 0; pre && i < n; i++) ibex_scenario_free(pre[i]);
    free(pre);
    free(owner);
    free(names);
    free(dirs);
    free(errors);
    free(subs);
    free(claims);
    return rc;
}

int ibex_cmd_run(int argc, char **argv) {
    const char *path = NULL, *out = NULL;
    bool quick = false;
    int32_t shard_k = 0, shard_n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--quick")) {
            quick = true;
        } else if (!strcmp(argv[i], "--shard") && i + 1 < argc) {
            char why[200];
            if (!ibex_shard_parse(argv[++i], &shard_k, &shard_n, why, sizeof why)) {
                fprintf(stderr, "ibex run: --shard %s\n", why);
                return 2;
            }
        } else if (argv[i][0] == '-' || path) {
            static const char *const opts[] = {"--out", "--quick", "--shard", "--help", NULL};
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
    char found[1100]; /* `ibex run default`: the installed (or source) scenarios folder */
    ibex_scenario_find(path, found, sizeof found);
    path = found;
    ibex_scenario *s = ibex_scenario_load(path, &err);
    if (!s) {
        fprintf(stderr, "ibex run: %s\n", err.msg);
        return 2;
    }
    if (quick) ibex_scenario_quick(s);
    char dir[900];
    ibex_cli_result_dir(dir, sizeof dir, out, s->name, "");
    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (s->n_suite > 0) {
        fprintf(stderr, "ibex run: suite %s (%d scenario%s%s) -> %s/\n", s->name, s->n_suite, s->n_suite == 1 ? "" : "s",
                quick ? ", quick" : "", dir);
        int rc = run_suite(s, dir, quick, shard_k, shard_n);
        ibex_scenario_free(s);
        return rc;
    }
    char hash[65] = "";
    if (ibex_sha256_file(s->path, hash, &err)) hash[0] = 0;
    int32_t *owner = NULL, *sel = NULL, n_sel = 0;
    if (shard_n > 0) {
        if (!(owner = calloc((size_t)s->n_points + 1, sizeof *owner)) || ibex_shard_assign(s, shard_n, owner, &err) ||
            !(sel = shard_select(owner, s->n_points, shard_k, &n_sel))) {
            fprintf(stderr, "ibex run: shards: %s\n", err.msg[0] ? err.msg : "out of memory");
            free(owner);
            ibex_scenario_free(s);
            return 1;
        }
        free(owner);
        fprintf(stderr, "ibex run: %s, shard %d/%d: %d of %d point%s%s -> %s/\n", s->name, shard_k, shard_n, n_sel,
                s->n_points, s->n_points == 1 ? "" : "s", quick ? ", quick" : "", dir);
    } else {
        fprintf(stderr, "ibex run: %s (%d point%s%s) -> %s/\n", s->name, s->n_points, s->n_points == 1 ? "" : "s",
                quick ? ", quick" : "", dir);
    }
    ibex_run_opts o = {.out_dir = dir, .quick = quick, .progress_tty = isatty(2), .interrupted = &g_interrupted,
                       .shard_k = shard_k, .shard_n = shard_n, .shard_points = sel, .n_shard_points = n_sel,
                       .scenario_sha256 = hash[0] ? hash : NULL};
    ibex_status st = ibex_run_scenario(s, &o, &err);
    free(sel);
    ibex_scenario_free(s);
    if (st) {
        fprintf(stderr, "ibex run: %s\n", err.msg);
        return 1;
    }
    int rc = render(dir);
    if (g_interrupted) {
        fprintf(stderr, "ibex run: interrupted; results so far are in %s/ (marked incomplete)\n", dir);
        return interrupted_status();
    }
    return rc;
}
