/* cli.c — option helpers shared by the ibex subcommands. */
#include "harness/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ibex_cli_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

const char *ibex_cli_suggest(const char *word, const char *const *candidates) {
    const char *best = NULL;
    int bd = 1 << 30;
    for (const char *const *c = candidates; *c; c++) {
        int d = ibex_cli_edit_distance(word, *c);
        if (d < bd) bd = d, best = *c;
    }
    int limit = (int)strlen(word) / 3 + 1;
    return bd <= limit ? best : NULL;
}

bool ibex_cli_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s) {
        fprintf(stderr, "ibex %s: %s needs a value\n", cmd, opt);
        return false;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) {
        fprintf(stderr, "ibex %s: %s: '%s' is not an integer\n", cmd, opt, s);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "ibex %s: %s: %lld is out of range (%lld..%lld)\n", cmd, opt, v, (long long)lo, (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

bool ibex_cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    if (!s) {
        fprintf(stderr, "ibex %s: %s needs a value\n", cmd, opt);
        return false;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || isnan(v)) {
        fprintf(stderr, "ibex %s: %s: '%s' is not a number\n", cmd, opt, s);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "ibex %s: %s: %g is out of range (%g..%g)\n", cmd, opt, v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool ibex_cli_int_list(const char *cmd, const char *opt, const char *s, int32_t **out, int32_t *n) {
    if (!s || !*s) {
        fprintf(stderr, "ibex %s: %s needs a comma-separated list of integers\n", cmd, opt);
        return false;
    }
    int32_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return false;
    int32_t k = 0;
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item) {
            fprintf(stderr, "ibex %s: %s: bad list item at position %d of '%s'\n", cmd, opt, k + 1, s);
            free(v);
            return false;
        }
        memcpy(item, p, len);
        item[len] = 0;
        int64_t x;
        if (!ibex_cli_int(cmd, opt, item, INT32_MIN, INT32_MAX, &x)) {
            free(v);
            return false;
        }
        v[k++] = (int32_t)x;
        p += len + (comma ? 1 : 0);
        if (comma && !*p) {
            fprintf(stderr, "ibex %s: %s: trailing comma in '%s'\n", cmd, opt, s);
            free(v);
            return false;
        }
    }
    *out = v;
    *n = k;
    return true;
}

bool ibex_cli_size(const char *cmd, const char *opt, const char *s, int64_t *out) {
    if (!s) {
        fprintf(stderr, "ibex %s: %s needs a value\n", cmd, opt);
        return false;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    static const struct { const char *suffix; double mul; } units[] = {
        {"", 1}, {"B", 1}, {"K", 1024.0}, {"KiB", 1024.0}, {"KB", 1e3}, {"M", 1048576.0}, {"MiB", 1048576.0},
        {"MB", 1e6}, {"G", 1073741824.0}, {"GiB", 1073741824.0}, {"GB", 1e9}, {"T", 1099511627776.0},
        {"TiB", 1099511627776.0}, {"TB", 1e12}};
    if (errno || end == s || isnan(v) || v < 0) goto bad;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            double b = v * units[i].mul;
            if (b > 9.0e18) goto bad;
            *out = (int64_t)b;
            return true;
        }
    }
bad:
    fprintf(stderr, "ibex %s: %s: '%s' is not a size (e.g. 512MiB, 80GiB, 1.5GB, 4096)\n", cmd, opt, s);
    return false;
}

double ibex_cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char *ibex_cli_bytes(int64_t bytes, char *buf, size_t cap) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (fabs(v) >= 1024 && u < 4) v /= 1024, u++;
    if (u == 0)
        snprintf(buf, cap, "%lld B", (long long)bytes);
    else
        snprintf(buf, cap, "%.2f %s", v, units[u]);
    return buf;
}

void ibex_cli_result_dir(char *dir, size_t cap, const char *out, const char *name, const char *tag) {
    if (out) {
        snprintf(dir, cap, "%s", out);
        return;
    }
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
    snprintf(dir, cap, "results/%s-%s%s", name, tag, stamp);
}
