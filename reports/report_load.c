/* report_load.c — reading results.json and the small tools every report shares: the
 * loader with its schema check, path accessors, swept-key lookup, the power-law fit,
 * atomic file writes and finding gnuplot. */
#include "reports/reports.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- loading */

json_t *ibex_report_load(const char *dir_or_file, ibex_err *err)
{
    if (!dir_or_file) {
        ibex_err_set(err, IBEX_ERR_INVALID, "results: no path given");
        return NULL;
    }
    char path[4096];
    struct stat st;
    if (stat(dir_or_file, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(path, sizeof path, "%s/results.json", dir_or_file);
    else
        snprintf(path, sizeof path, "%s", dir_or_file);

    FILE *f = fopen(path, "rb");
    if (!f) {
        ibex_err_set(err, IBEX_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadf(f, 0, &je);
    fclose(f);
    if (!root) {
        ibex_err_set(err, IBEX_ERR_FORMAT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        ibex_err_set(err, IBEX_ERR_FORMAT, "%s: the top level is not a JSON object", path);
        goto fail;
    }
    const json_t *v = json_object_get(root, "schema_version");
    if (!v) {
        ibex_err_set(err, IBEX_ERR_FORMAT, "%s: schema_version is missing (not an ibex results.json?)",
                     path);
        goto fail;
    }
    if (!json_is_integer(v)) {
        ibex_err_set(err, IBEX_ERR_FORMAT, "%s: schema_version is not an integer", path);
        goto fail;
    }
    if (json_integer_value(v) != IBEX_REPORT_SCHEMA_VERSION) {
        ibex_err_set(err, IBEX_ERR_UNSUPPORTED,
                     "%s: schema_version %" JSON_INTEGER_FORMAT " is not supported (this ibex reads %d)",
                     path, json_integer_value(v), IBEX_REPORT_SCHEMA_VERSION);
        goto fail;
    }
    const json_t *pts = json_object_get(root, "points");
    if (pts && !json_is_array(pts)) {
        ibex_err_set(err, IBEX_ERR_FORMAT, "%s: \"points\" is not an array", path);
        goto fail;
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

/* ---------------------------------------------------------------- accessors */

const json_t *ibex_report_get(const json_t *root, const char *path)
{
    if (!root || !path)
        return NULL;
    const json_t *cur = root;
    const char *p = path;
    char key[256];
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len >= sizeof key || !json_is_object(cur))
            return NULL;
        memcpy(key, p, len);
        key[len] = '\0';
        cur = json_object_get(cur, key);
        if (!cur)
            return NULL;
        if (!slash)
            return cur;
        p = slash + 1;
    }
}

double ibex_report_num(const json_t *root, const char *path)
{
    const json_t *v = ibex_report_get(root, path);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

const char *ibex_report_str(const json_t *root, const char *path)
{
    const json_t *v = ibex_report_get(root, path);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

size_t ibex_report_swept_keys(const json_t *results, const char **keys, size_t max)
{
    size_t n = 0;
    const json_t *sw = ibex_report_get(results, "scenario/swept");
    if (json_is_array(sw)) {
        size_t i;
        const json_t *k;
        json_array_foreach(sw, i, k) {
            if (!json_is_string(k))
                continue;
            if (n < max)
                keys[n] = json_string_value(k);
            n++;
        }
        return n;
    }
    /* No scenario.swept: the union of the points' swept keys, first appearance first. */
    const json_t *pts = ibex_report_get(results, "points");
    size_t i;
    const json_t *pt;
    json_array_foreach(pts, i, pt) {
        const json_t *obj = json_object_get(pt, "swept");
        const char *k;
        const json_t *val;
        json_object_foreach((json_t *)obj, k, val) {
            bool seen = false;
            /* Keys beyond max cannot be compared; a later duplicate then counts twice,
             * which only overstates the total the caller already cannot store. */
            for (size_t j = 0; j < n && j < max; j++)
                if (strcmp(keys[j], k) == 0)
                    seen = true;
            if (seen)
                continue;
            if (n < max)
                keys[n] = k;
            n++;
        }
    }
    return n;
}

/* Shortest "%.*g" text of v that parses back to v exactly. */
static void shortest_double(double v, char *buf, size_t n)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

char *ibex_report_swept_text(const json_t *point, const char *key, char *buf, size_t n)
{
    if (!buf || n == 0)
        return buf;
    buf[0] = '\0';
    const json_t *sw = json_object_get(point, "swept");
    const json_t *v = json_is_object(sw) ? json_object_get(sw, key) : NULL;
    if (!v)
        return buf;
    if (json_is_string(v)) {
        snprintf(buf, n, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        shortest_double(json_real_value(v), buf, n);
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s)
            snprintf(buf, n, "%s", s);
        free(s);
    }
    return buf;
}

double ibex_report_swept_num(const json_t *point, const char *key)
{
    const json_t *sw = json_object_get(point, "swept");
    const json_t *v = json_is_object(sw) ? json_object_get(sw, key) : NULL;
    if (json_is_number(v))
        return json_number_value(v);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (end != s && *end == '\0' && errno == 0)
            return d;
        return NAN;
    }
    if (json_is_object(v))
        return ibex_report_num(v, "value");
    /* Not in "swept": a distribution parameter's resolved value in params. */
    const json_t *pv = ibex_report_get(point, "params");
    pv = json_is_object(pv) ? json_object_get(pv, key) : NULL;
    if (json_is_object(pv))
        return ibex_report_num(pv, "value");
    return NAN;
}

/* ---------------------------------------------------------------- the power-law fit */

bool ibex_report_power_fit(const double *x, const double *y, size_t n, double *a, double *b,
                           double *r2)
{
    if (!x || !y)
        return false;
    double sx = 0, sy = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(isfinite(x[i]) && x[i] > 0 && isfinite(y[i]) && y[i] > 0))
            continue;
        sx += log(x[i]);
        sy += log(y[i]);
        m++;
    }
    if (m < 2)
        return false;
    double mx = sx / (double)m, my = sy / (double)m;
    double sxx = 0, sxy = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(isfinite(x[i]) && x[i] > 0 && isfinite(y[i]) && y[i] > 0))
            continue;
        double dx = log(x[i]) - mx, dy = log(y[i]) - my;
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if (sxx <= 0)
        return false;
    double bb = sxy / sxx;
    double ss_res = syy - bb * sxy; /* residual sum of squares of the least-squares line */
    if (ss_res < 0)
        ss_res = 0;
    if (a)
        *a = exp(my - bb * mx);
    if (b)
        *b = bb;
    if (r2)
        *r2 = syy > 0 ? 1.0 - ss_res / syy : 1.0;
    return true;
}

/* ---------------------------------------------------------------- atomic writes */

ibex_status ibex_report_write_atomic(const char *path,
                                     ibex_status (*fill)(FILE *f, void *ctx, ibex_err *err),
                                     void *ctx, ibex_err *err)
{
    if (!path || !fill)
        return ibex_err_set(err, IBEX_ERR_INVALID, "write: no path or writer given");
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return ibex_err_set(err, IBEX_ERR_INVALID, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return ibex_err_set(err, IBEX_ERR_IO, "%s: %s", tmp, strerror(errno));
    ibex_status st = fill(f, ctx, err);
    bool write_failed = ferror(f) != 0;
    if (fclose(f) != 0)
        write_failed = true;
    if (st == IBEX_OK && write_failed)
        st = ibex_err_set(err, IBEX_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (st == IBEX_OK && rename(tmp, path) != 0)
        st = ibex_err_set(err, IBEX_ERR_IO, "%s: cannot rename to %s: %s", tmp, path,
                          strerror(errno));
    if (st != IBEX_OK)
        remove(tmp);
    return st;
}

/* ---------------------------------------------------------------- gnuplot */

bool ibex_report_gnuplot_find(char *path, size_t n, char *why, size_t why_n)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        why_n = sizeof dummy;
    }
    why[0] = '\0';
    if (!path || n == 0) {
        snprintf(why, why_n, "no buffer for gnuplot's path");
        return false;
    }
    const char *env = getenv("IBEX_GNUPLOT");
    if (env) {
        if (env[0] == '\0' || strcmp(env, "none") == 0) {
            snprintf(why, why_n, "plotting is disabled (IBEX_GNUPLOT=%s)", env);
            return false;
        }
        if (access(env, X_OK) != 0) {
            snprintf(why, why_n, "IBEX_GNUPLOT=%s is not an executable program", env);
            return false;
        }
        snprintf(path, n, "%s", env);
        return true;
    }
    const char *p = getenv("PATH");
    if (!p || !*p)
        p = "/usr/local/bin:/usr/bin:/bin";
    while (*p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char cand[4096];
        snprintf(cand, sizeof cand, "%.*s/gnuplot", (int)len, p);
        struct stat st;
        /* Only absolute directories: gnuplot runs from inside the plots directory. */
        if (len > 0 && p[0] == '/' && stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
            snprintf(path, n, "%s", cand);
            return true;
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    snprintf(why, why_n, "gnuplot was not found on PATH (install it, e.g. apt-get install gnuplot-nox, "
                         "then run `ibex report DIR` again)");
    return false;
}

/* ---------------------------------------------------------------- formatting */

/* v with three significant digits (whole numbers from 100 up). */
static void sig3(double v, char *buf, size_t n)
{
    double a = fabs(v);
    if (a >= 100 || a == 0)
        snprintf(buf, n, "%.0f", v);
    else if (a >= 10)
        snprintf(buf, n, "%.1f", v);
    else if (a >= 1)
        snprintf(buf, n, "%.2f", v);
    else
        snprintf(buf, n, "%.3g", v);
}

char *ibex_report_fmt_seconds(double s, char *buf, size_t n)
{
    if (!isfinite(s)) {
        snprintf(buf, n, "-");
        return buf;
    }
    static const struct {
        double scale;
        const char *unit;
    } u[] = {{1, "s"}, {1e-3, "ms"}, {1e-6, "µs"}, {1e-9, "ns"}};
    size_t k = 0;
    while (k + 1 < sizeof u / sizeof u[0] && fabs(s) < u[k].scale && s != 0)
        k++;
    char num[64];
    sig3(s / u[k].scale, num, sizeof num);
    snprintf(buf, n, "%s %s", num, u[k].unit);
    return buf;
}

char *ibex_report_fmt_bytes(double bytes, char *buf, size_t n)
{
    if (!isfinite(bytes)) {
        snprintf(buf, n, "-");
        return buf;
    }
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t k = 0;
    double v = bytes;
    while (k + 1 < sizeof units / sizeof units[0] && fabs(v) >= 1024) {
        v /= 1024;
        k++;
    }
    char num[64];
    if (k == 0)
        snprintf(num, sizeof num, "%.0f", v);
    else
        sig3(v, num, sizeof num);
    snprintf(buf, n, "%s %s", num, units[k]);
    return buf;
}

char *ibex_report_fmt_value(double v, const char *unit, char *buf, size_t n)
{
    if (!isfinite(v)) {
        snprintf(buf, n, "-");
        return buf;
    }
    char num[64];
    sig3(v, num, sizeof num);
    if (unit && *unit)
        snprintf(buf, n, "%s %s", num, unit);
    else
        snprintf(buf, n, "%s", num);
    return buf;
}
