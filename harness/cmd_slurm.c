/* cmd_slurm.c — `ibex slurm FILE`: writes the two sbatch scripts that run a scenario's
 * points as a Slurm job array (task K runs `ibex run FILE --shard K/N` into its own
 * folder) and then merge the shards (`ibex merge`), and with --submit submits both, the
 * merge job depending on the array (docs/CLUSTER.md). ibex schedules nothing itself.
 *
 * Choices, and why:
 * - The merge job waits with --dependency=afterany (not afterok): it runs however the
 *   shards ended, so a shard that failed, hit its time limit or was cancelled still
 *   gives a merged folder. It first merges strictly; when points are missing it says
 *   which, merges what there is with --allow-missing (marked incomplete) and exits 1,
 *   so the job shows as failed in sacct/squeue.
 * - Requeue-safe: a task removes and rewrites only its own folder OUT/shard-K, so a
 *   requeued or rerun task never touches another shard's results.
 * - The task execs ibex, so Slurm's SIGTERM (time limit, scancel, preemption) reaches
 *   it directly: it stops after the current step and saves what was measured (exit
 *   143), as Ctrl-C does; the merge then reports those points as missing.
 * - Absolute paths everywhere (ibex, the scenario, OUT): the jobs may start in another
 *   directory on another node (a shared file system is assumed). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/cli.h"
#include "harness/runner.h"
#include "harness/scenario.h"

static void usage(FILE *f) {
    fprintf(f, "usage: ibex slurm SCENARIO.yaml [--shards N] [--partition P] [--gpus-per-task G] [--cpus-per-task C]\n"
               "                  [--time T] [--out DIR] [--quick] [--sbatch-arg ARG]... [--submit]\n"
               "  writes DIR/ibex-shards.sbatch (a job array 1..N: task K runs 'ibex run SCENARIO --shard K/N\n"
               "  --out DIR/shard-K') and DIR/ibex-merge.sbatch ('ibex merge DIR/merged DIR/shard-*'),\n"
               "  logs in DIR/logs/. DIR must be on a file system every node sees.\n"
               "  --shards N          tasks in the array (default 2)\n"
               "  --partition P       sbatch --partition for both jobs\n"
               "  --gpus-per-task G   sbatch --gpus-per-task for each shard\n"
               "  --cpus-per-task C   sbatch --cpus-per-task for each shard\n"
               "  --time T            sbatch --time for each job (Slurm's format: MM, HH:MM:SS, D-HH)\n"
               "  --out DIR           default results/<name>-slurm-<timestamp>\n"
               "  --quick             pass --quick to every shard\n"
               "  --sbatch-arg ARG    one more #SBATCH line for both jobs (e.g. --account=perf); repeatable\n"
               "  --submit            submit: 'sbatch' the array, then the merge job with\n"
               "                      --dependency=afterany:ARRAY (it runs however the shards ended);\n"
               "                      prints the two job ids\n"
               "exit: 0; 1 a file cannot be written or sbatch failed; 2 bad arguments or scenario.\n");
}

/* s in single quotes for bash ('it'\''s'), into buf. */
static const char *shq(const char *s, char *buf, size_t n) {
    size_t o = 0;
    if (o + 1 < n) buf[o++] = '\'';
    for (; *s && o + 5 < n; s++) {
        if (*s == '\'') {
            memcpy(buf + o, "'\\''", 4);
            o += 4;
        } else {
            buf[o++] = *s;
        }
    }
    if (o + 1 < n) buf[o++] = '\'';
    buf[o] = 0;
    return buf;
}

/* Whether an #SBATCH value is safe on one line (no newline: it would end the directive). */
static bool one_line(const char *s) { return !strchr(s, '\n') && !strchr(s, '\r'); }

typedef struct slurm_opts {
    int shards;
    const char *partition, *gpus, *cpus, *time;
    const char *extra[16];
    int n_extra;
    bool quick;
} slurm_opts;

static void directives(FILE *f, const slurm_opts *o, bool shard) {
    if (o->partition) fprintf(f, "#SBATCH --partition=%s\n", o->partition);
    if (o->time) fprintf(f, "#SBATCH --time=%s\n", o->time);
    if (shard && o->gpus) fprintf(f, "#SBATCH --gpus-per-task=%s\n", o->gpus);
    if (shard && o->cpus) fprintf(f, "#SBATCH --cpus-per-task=%s\n", o->cpus);
    for (int i = 0; i < o->n_extra; i++) fprintf(f, "#SBATCH %s\n", o->extra[i]);
}

static bool write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(text, f) >= 0;
    if (f && fclose(f)) ok = false;
    if (!ok) {
        fprintf(stderr, "ibex slurm: cannot write %s: %s\n", path, strerror(errno));
        return false;
    }
    chmod(path, 0755);
    return true;
}

/* Runs sbatch with args (NULL-terminated, args[0] = "sbatch") and parses the job id
 * from its --parsable output ("ID" or "ID;CLUSTER") into id. Returns false after
 * printing why. */
static bool sbatch(char *const *args, char *id, size_t n) {
    int fd[2];
    if (pipe(fd)) {
        fprintf(stderr, "ibex slurm: pipe: %s\n", strerror(errno));
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "ibex slurm: fork: %s\n", strerror(errno));
        return false;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]), close(fd[1]);
        execvp(args[0], args);
        fprintf(stderr, "ibex slurm: cannot run %s: %s (is Slurm installed and on PATH?)\n", args[0], strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    char buf[256] = "";
    size_t got = 0;
    ssize_t r;
    while ((r = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    buf[got] = 0;
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 127))
            fprintf(stderr, "ibex slurm: sbatch failed (exit %d)%s%s\n",
                    WIFEXITED(st) ? WEXITSTATUS(st) : -1, buf[0] ? ": " : "", buf);
        return false;
    }
    size_t l = strspn(buf, "0123456789");
    if (l == 0 || l >= n) {
        fprintf(stderr, "ibex slurm: cannot read a job id from sbatch's output '%s'\n", buf);
        return false;
    }
    memcpy(id, buf, l);
    id[l] = 0;
    return true;
}

int ibex_cmd_slurm(int argc, char **argv) {
    const char *path = NULL, *out = NULL;
    slurm_opts o = {.shards = 2};
    bool submit = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--shards") && val) {
            int64_t v;
            if (!ibex_cli_int("slurm", "--shards", argv[++i], 1, 100000, &v)) return 2;
            o.shards = (int)v;
        } else if (!strcmp(a, "--partition") && val) {
            o.partition = argv[++i];
        } else if (!strcmp(a, "--gpus-per-task") && val) {
            o.gpus = argv[++i];
        } else if (!strcmp(a, "--cpus-per-task") && val) {
            o.cpus = argv[++i];
        } else if (!strcmp(a, "--time") && val) {
            o.time = argv[++i];
        } else if (!strcmp(a, "--out") && val) {
            out = argv[++i];
        } else if (!strcmp(a, "--sbatch-arg") && val) {
            if (o.n_extra == 16) {
                fprintf(stderr, "ibex slurm: at most 16 --sbatch-arg\n");
                return 2;
            }
            o.extra[o.n_extra++] = argv[++i];
        } else if (!strcmp(a, "--quick")) {
            o.quick = true;
        } else if (!strcmp(a, "--submit")) {
            submit = true;
        } else if (a[0] == '-' || path) {
            static const char *const opts[] = {"--shards", "--partition", "--gpus-per-task", "--cpus-per-task", "--time",
                                               "--out", "--quick", "--sbatch-arg", "--submit", "--help", NULL};
            const char *s = ibex_cli_suggest(a, opts);
            fprintf(stderr, "ibex slurm: unexpected argument '%s'%s%s%s\n", a, s ? " (did you mean '" : "", s ? s : "",
                    s ? "'?)" : "");
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    const char *vals[] = {o.partition, o.gpus, o.cpus, o.time, out};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++)
        if (vals[i] && (!one_line(vals[i]) || !vals[i][0])) {
            fprintf(stderr, "ibex slurm: an option value is empty or spans lines\n");
            return 2;
        }
    for (int i = 0; i < o.n_extra; i++)
        if (!one_line(o.extra[i]) || o.extra[i][0] != '-') {
            fprintf(stderr, "ibex slurm: --sbatch-arg '%s': expected one sbatch option (--name=value)\n", o.extra[i]);
            return 2;
        }
    ibex_err err = {0};
    char found[1100];
    ibex_scenario_find(path, found, sizeof found);
    ibex_scenario *s = ibex_scenario_load(found, &err); /* refuse a bad file now, not on the cluster */
    if (!s) {
        fprintf(stderr, "ibex slurm: %s\n", err.msg);
        return 2;
    }
    char name[128];
    snprintf(name, sizeof name, "%s", s->name);
    ibex_scenario_free(s);
    char dir[900];
    ibex_cli_result_dir(dir, sizeof dir, out, name, "slurm-");
    char logs[1000];
    snprintf(logs, sizeof logs, "%s/logs", dir);
    if (ibex_mkdir_p(logs, &err)) { /* sbatch opens --output files at start: the folder must exist */
        fprintf(stderr, "ibex slurm: %s\n", err.msg);
        return 1;
    }
    char adir[4096], scen[4096], exe[4096];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (!realpath(dir, adir) || !realpath(found, scen) || el <= 0) {
        fprintf(stderr, "ibex slurm: cannot resolve the absolute paths of %s, %s or ibex itself: %s\n", dir, found,
                strerror(errno));
        return 1;
    }
    exe[el] = 0;
    if (!one_line(adir) || !one_line(scen) || !one_line(exe) || strpbrk(adir, "% \t")) {
        /* #SBATCH --output=DIR/... is not shell-quoted, and '%' is a Slurm file pattern */
        fprintf(stderr, "ibex slurm: %s: a folder with a space, '%%' or a newline cannot go into #SBATCH lines; "
                        "choose another --out\n", adir);
        return 2;
    }
    char q_exe[8200], q_scen[8200], q_dir[8200], q_name[300];
    shq(exe, q_exe, sizeof q_exe), shq(scen, q_scen, sizeof q_scen), shq(adir, q_dir, sizeof q_dir);
    shq(name, q_name, sizeof q_name);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return 1;
    fprintf(f, "#!/bin/bash\n"
               "# Written by 'ibex slurm' (docs/CLUSTER.md): task K of this job array runs shard K/%d of\n"
               "# %s into its own folder; ibex-merge.sbatch joins them.\n"
               "#SBATCH --job-name=ibex-%s\n"
               "#SBATCH --array=1-%d\n"
               "#SBATCH --ntasks=1\n"
               "#SBATCH --output=%s/logs/shard-%%a.out\n"
               "#SBATCH --requeue\n",
            o.shards, scen, name, o.shards, adir);
    directives(f, &o, true);
    fprintf(f, "set -eu\n"
               "K=${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array (sbatch submits it)}\n"
               "D=%s/shard-$K\n"
               "# requeue-safe: a rerun of this task replaces its own folder, never another shard's\n"
               "rm -rf -- \"$D\"\n"
               "# exec: Slurm's SIGTERM (time limit, scancel) reaches ibex, which saves what it measured\n"
               "exec %s run %s --shard \"$K/%d\" --out \"$D\"%s\n",
            q_dir, q_exe, q_scen, o.shards, o.quick ? " --quick" : "");
    fclose(f);
    char p_shards[4200], p_merge[4200];
    snprintf(p_shards, sizeof p_shards, "%s/ibex-shards.sbatch", adir);
    snprintf(p_merge, sizeof p_merge, "%s/ibex-merge.sbatch", adir);
    bool ok = write_file(p_shards, text);
    free(text);
    if (!(f = open_memstream(&text, &len))) return 1;
    fprintf(f, "#!/bin/bash\n"
               "# Written by 'ibex slurm' (docs/CLUSTER.md): merges the %d shards of ibex-shards.sbatch into\n"
               "# %s/merged. Submitted with --dependency=afterany:<array job>, so it runs however the\n"
               "# shards ended: a strict merge first; when points are missing it names them, merges what\n"
               "# there is (marked incomplete) and exits 1.\n"
               "#SBATCH --job-name=ibex-%s-merge\n"
               "#SBATCH --ntasks=1\n"
               "#SBATCH --output=%s/logs/merge.out\n",
            o.shards, adir, name, adir);
    directives(f, &o, false);
    fprintf(f, "set -u\n"
               "D=%s\n"
               "S=()\n"
               "for k in $(seq 1 %d); do S+=(\"$D/shard-$k\"); done\n"
               "rm -rf -- \"$D/merged\"\n"
               "if %s merge \"$D/merged\" \"${S[@]}\"; then exit 0; fi\n"
               "echo \"ibex-merge.sbatch: the strict merge failed (above); merging what there is into $D/merged\" >&2\n"
               "%s merge --allow-missing \"$D/merged\" \"${S[@]}\"\n"
               "exit 1\n",
            q_dir, o.shards, q_exe, q_exe);
    fclose(f);
    ok = ok && write_file(p_merge, text);
    free(text);
    if (!ok) return 1;
    fprintf(stderr, "ibex slurm: %s: %d shard%s%s -> %s/ibex-shards.sbatch and ibex-merge.sbatch\n", name, o.shards,
            o.shards == 1 ? "" : "s", o.quick ? " (quick)" : "", adir);
    if (!submit) {
        printf("%s\n%s\n", p_shards, p_merge);
        fprintf(stderr, "submit with: J=$(sbatch --parsable %s) && sbatch --dependency=afterany:${J%%%%;*} %s\n",
                p_shards, p_merge);
        return 0;
    }
    char array_id[64], merge_id[64], dep[128];
    char *a1[] = {"sbatch", "--parsable", p_shards, NULL};
    if (!sbatch(a1, array_id, sizeof array_id)) return 1;
    snprintf(dep, sizeof dep, "--dependency=afterany:%s", array_id);
    char *a2[] = {"sbatch", "--parsable", dep, p_merge, NULL};
    if (!sbatch(a2, merge_id, sizeof merge_id)) {
        fprintf(stderr, "ibex slurm: the shards were submitted as job %s, but the merge job was not; run "
                        "'sbatch %s %s' yourself\n", array_id, dep, p_merge);
        return 1;
    }
    fprintf(stderr, "ibex slurm: submitted the shards as job array %s (tasks 1-%d) and the merge as job %s (after "
                    "every shard ends); results in %s/merged/\n", array_id, o.shards, merge_id, adir);
    printf("%s %s\n", array_id, merge_id);
    return 0;
}
