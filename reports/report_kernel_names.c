/* report_kernel_names.c — kernel names short enough for a table:
 * ibex_report_kernel_short_name (reports.h). */
#include "reports/reports.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CUPTI gives kernel names as the linker sees them: C++ kernels (templates, cuBLAS,
 * CUTLASS) are Itanium-mangled. The tables show them demangled far enough to read: the
 * qualified name and its template arguments, no parameter list, anonymous and nvcc
 * _INTERNAL_ namespaces left out. This is a small best-effort demangler for the forms
 * kernel names take, not a complete one: any construct it does not know (local names,
 * lambdas, operators, expressions) makes it give up, and the name is shown as CUPTI
 * gave it. Every rendered part is cut at DM_LEN bytes. */

#define DM_LEN 256
#define DM_SUBS 48
#define DM_TARGS 16
#define DM_DEPTH 48 /* deepest type / template-argument nesting read */
#define KERNEL_NAME_COLS 80 /* longest shortened name, in characters */

typedef struct dm {
    const char *p;               /* cursor in the mangled name */
    char subs[DM_SUBS][DM_LEN];  /* substitution candidates S_, S0_, S1_ ... in order */
    int n_subs;
    char targs[DM_TARGS][DM_LEN]; /* the outermost template arguments, for T_, T0_ ... */
    int n_targs;
    int depth; /* template-argument nesting */
    int rec;   /* dm_type and dm_template_arg frames active (bounds the recursion) */
} dm;

static void dm_catn(char *o, const char *s, size_t n)
{
    size_t l = strlen(o);
    for (size_t i = 0; i < n && s[i] && l + 1 < DM_LEN; i++)
        o[l++] = s[i];
    o[l] = '\0';
}

static void dm_cat(char *o, const char *s) { dm_catn(o, s, strlen(s)); }

static void dm_copy(char *o, const char *s)
{
    o[0] = '\0';
    dm_cat(o, s);
}

/* A table full drops candidates; a later reference to one of them then fails. */
static void dm_add_sub(dm *d, const char *s)
{
    if (d->n_subs < DM_SUBS)
        dm_copy(d->subs[d->n_subs++], s);
}

static const char *dm_builtin(char c)
{
    switch (c) {
    case 'v': return "void";
    case 'w': return "wchar_t";
    case 'b': return "bool";
    case 'c': return "char";
    case 'a': return "signed char";
    case 'h': return "unsigned char";
    case 's': return "short";
    case 't': return "unsigned short";
    case 'i': return "int";
    case 'j': return "unsigned int";
    case 'l': return "long";
    case 'm': return "unsigned long";
    case 'x': return "long long";
    case 'y': return "unsigned long long";
    case 'n': return "__int128";
    case 'o': return "unsigned __int128";
    case 'f': return "float";
    case 'd': return "double";
    case 'e': return "long double";
    case 'g': return "__float128";
    case 'z': return "...";
    default: return NULL;
    }
}

static bool dm_number(dm *d, long *v)
{
    if (!isdigit((unsigned char)*d->p))
        return false;
    long x = 0;
    while (isdigit((unsigned char)*d->p)) {
        if (x > 100000000L)
            return false;
        x = x * 10 + (*d->p++ - '0');
    }
    *v = x;
    return true;
}

/* <source-name> ::= <length> <identifier>, ABI tags (B <source-name>) skipped. *hidden
 * is set for the namespaces left out (nothing is written for them). */
static bool dm_source_name(dm *d, char *o, bool *hidden)
{
    long len;
    if (!dm_number(d, &len) || len == 0 || strnlen(d->p, (size_t)len) < (size_t)len)
        return false;
    *hidden = (len >= 11 && strncmp(d->p, "_GLOBAL__N_", 11) == 0) ||
              (len >= 10 && strncmp(d->p, "_INTERNAL_", 10) == 0);
    if (!*hidden)
        dm_catn(o, d->p, (size_t)len);
    d->p += len;
    while (*d->p == 'B') {
        d->p++;
        if (!dm_number(d, &len) || strnlen(d->p, (size_t)len) < (size_t)len)
            return false;
        d->p += len;
    }
    return true;
}

/* <substitution> ::= S_ | S <seq-id> _ | St | Sa | Sb | Ss | Si | So | Sd. *is_std is
 * set for St, which is only the prefix "std" of the name that follows. */
static bool dm_substitution(dm *d, char *o, bool *is_std)
{
    static const struct {
        char c;
        const char *s;
    } k_std[] = {{'t', "std"},          {'a', "std::allocator"}, {'b', "std::basic_string"}, {'s', "std::string"},
                 {'i', "std::istream"}, {'o', "std::ostream"},   {'d', "std::iostream"}};
    d->p++;
    *is_std = false;
    char c = *d->p;
    for (size_t k = 0; k < sizeof k_std / sizeof k_std[0]; k++) {
        if (c == k_std[k].c) {
            d->p++;
            dm_cat(o, k_std[k].s);
            *is_std = c == 't';
            return true;
        }
    }
    long idx = 0;
    if (c != '_') {
        long v = 0;
        while (isdigit((unsigned char)c) || isupper((unsigned char)c)) {
            v = v * 36 + (isdigit((unsigned char)c) ? c - '0' : c - 'A' + 10);
            if (v > DM_SUBS)
                return false;
            c = *++d->p;
        }
        if (c != '_')
            return false;
        idx = v + 1;
    }
    d->p++;
    if (idx >= d->n_subs)
        return false;
    dm_cat(o, d->subs[idx]);
    return true;
}

/* <template-param> ::= T_ | T <number> _ ; one not known yet is shown as "…". */
static bool dm_template_param(dm *d, char *o)
{
    d->p++;
    long idx = 0;
    if (*d->p != '_') {
        if (!dm_number(d, &idx))
            return false;
        idx++;
    }
    if (*d->p != '_')
        return false;
    d->p++;
    dm_cat(o, idx < d->n_targs ? d->targs[idx] : "…");
    return true;
}

static bool dm_type(dm *d, char *o);
static bool dm_template_arg(dm *d, char *o);
static bool dm_name(dm *d, char *o);
static bool dm_template_args(dm *d, char *o);

/* <expr-primary> ::= L <type> <value> E | L _Z <encoding> E */
static bool dm_literal(dm *d, char *o)
{
    d->p++;
    if (d->p[0] == '_' && d->p[1] == 'Z') {
        d->p += 2;
        char n[DM_LEN] = "";
        if (!dm_name(d, n))
            return false;
        while (*d->p != 'E') { /* a function's parameter types */
            char t[DM_LEN] = "";
            if (!*d->p || !dm_type(d, t))
                return false;
        }
        d->p++;
        dm_cat(o, "&");
        dm_cat(o, n);
        return true;
    }
    char tc = *d->p;
    char t[DM_LEN] = "";
    if (!dm_type(d, t))
        return false;
    const char *v = d->p;
    while (*d->p && *d->p != 'E')
        d->p++;
    if (!*d->p)
        return false;
    size_t len = (size_t)(d->p - v);
    d->p++;
    if (len == 0) {
        dm_cat(o, strcmp(t, "decltype(nullptr)") == 0 ? "nullptr" : "…");
    } else if (tc == 'b' && len == 1 && (*v == '0' || *v == '1')) {
        dm_cat(o, *v == '1' ? "true" : "false");
    } else if (strchr("fdeg", tc)) { /* floating-point bits in hex */
        dm_cat(o, "…");
    } else {
        if (!dm_builtin(tc)) { /* an enumeration: (ibex::op)3 */
            dm_cat(o, "(");
            dm_cat(o, t);
            dm_cat(o, ")");
        }
        if (*v == 'n') {
            dm_cat(o, "-");
            v++, len--;
        }
        dm_catn(o, v, len);
    }
    return true;
}

static bool dm_template_arg_at(dm *d, char *o)
{
    if (*d->p == 'L')
        return dm_literal(d, o);
    if (*d->p == 'J') { /* an argument pack */
        d->p++;
        for (int k = 0; *d->p != 'E'; k++) {
            char a[DM_LEN] = "";
            if (!*d->p || !dm_template_arg(d, a))
                return false;
            if (k)
                dm_cat(o, ", ");
            dm_cat(o, a);
        }
        d->p++;
        return true;
    }
    if (*d->p == 'X') /* an expression: not read */
        return false;
    return dm_type(d, o);
}

static bool dm_template_arg(dm *d, char *o)
{
    if (d->rec >= DM_DEPTH)
        return false;
    d->rec++;
    bool ok = dm_template_arg_at(d, o);
    d->rec--;
    return ok;
}

/* <template-args> ::= I <template-arg>+ E, appended to o as "<a, b>". */
static bool dm_template_args(dm *d, char *o)
{
    d->p++;
    bool outer = d->depth == 0;
    if (outer)
        d->n_targs = 0;
    d->depth++;
    dm_cat(o, "<");
    for (int k = 0; *d->p != 'E'; k++) {
        char a[DM_LEN] = "";
        if (!*d->p || !dm_template_arg(d, a))
            return false;
        if (k)
            dm_cat(o, ", ");
        dm_cat(o, a);
        if (outer && d->n_targs < DM_TARGS)
            dm_copy(d->targs[d->n_targs++], a);
    }
    d->p++;
    d->depth--;
    dm_cat(o, ">");
    return true;
}

/* <nested-name> ::= N [<CV-qualifiers>] [<ref-qualifier>] <prefix> <unqualified-name> E.
 * Every prefix followed by more (a template name before its arguments included) is a
 * substitution candidate; a bare substitution is not a new one; the whole name is left
 * to the caller (a type is a candidate, a function name is not). */
static bool dm_nested(dm *d, char *o)
{
    d->p++;
    while (*d->p == 'r' || *d->p == 'V' || *d->p == 'K')
        d->p++;
    if (*d->p == 'R' || *d->p == 'O')
        d->p++;
    char acc[DM_LEN] = "", last[DM_LEN] = "";
    bool have = false, candidate = false;
    while (*d->p != 'E') {
        if (*d->p == 'L') /* internal linkage */
            d->p++;
        char c = *d->p;
        if (!c)
            return false;
        if (have && candidate)
            dm_add_sub(d, acc);
        candidate = true;
        if (c == 'I') {
            if (!have || !dm_template_args(d, acc))
                return false;
            continue;
        }
        char comp[DM_LEN] = "";
        bool hidden = false, is_std = false;
        if (isdigit((unsigned char)c)) {
            if (!dm_source_name(d, comp, &hidden))
                return false;
            if (!hidden)
                dm_copy(last, comp);
        } else if (c == 'S' && !have) {
            if (!dm_substitution(d, comp, &is_std))
                return false;
            candidate = false;
            const char *colon = strrchr(comp, ':');
            dm_copy(last, colon ? colon + 1 : comp);
        } else if (c == 'T' && !have) {
            if (!dm_template_param(d, comp))
                return false;
        } else if (c == 'C' && have && d->p[1] >= '1' && d->p[1] <= '5') { /* constructor */
            d->p += 2;
            dm_copy(comp, last);
        } else if (c == 'D' && have && d->p[1] >= '0' && d->p[1] <= '2') { /* destructor */
            d->p += 2;
            dm_copy(comp, "~");
            dm_cat(comp, last);
        } else {
            return false;
        }
        if (acc[0] && comp[0])
            dm_cat(acc, "::");
        dm_cat(acc, comp);
        have = true;
    }
    d->p++;
    dm_cat(o, acc);
    return have;
}

static bool dm_type_at(dm *d, char *o)
{
    char c = *d->p;
    const char *b = dm_builtin(c);
    if (b) { /* builtin types are no substitution candidates */
        d->p++;
        dm_cat(o, b);
        return true;
    }
    char t[DM_LEN] = "";
    bool hidden = false, is_std = false;
    long n;
    switch (c) {
    case 'r':
    case 'V':
    case 'K':
        d->p++;
        if (!dm_type(d, t))
            return false;
        dm_cat(t, c == 'K' ? " const" : c == 'V' ? " volatile" : " __restrict");
        break;
    case 'P':
    case 'R':
    case 'O':
        d->p++;
        if (!dm_type(d, t))
            return false;
        dm_cat(t, c == 'P' ? "*" : c == 'R' ? "&" : "&&");
        break;
    case 'D':
        c = d->p[1];
        d->p += 2;
        switch (c) {
        case 'h': dm_cat(o, "half"); return true;
        case 'n': dm_cat(o, "decltype(nullptr)"); return true;
        case 'i': dm_cat(o, "char32_t"); return true;
        case 's': dm_cat(o, "char16_t"); return true;
        case 'u': dm_cat(o, "char8_t"); return true;
        case 'a': dm_cat(o, "auto"); return true;
        case 'F':
            if (!dm_number(d, &n) || *d->p != '_')
                return false;
            d->p++;
            snprintf(t, sizeof t, "_Float%ld", n);
            dm_cat(o, t);
            return true;
        case 'p': /* pack expansion */
            if (!dm_type(d, t))
                return false;
            dm_cat(t, "...");
            break;
        case 'v': { /* vector of n */
            if (!dm_number(d, &n) || *d->p != '_')
                return false;
            d->p++;
            if (!dm_type(d, t))
                return false;
            char v[48];
            snprintf(v, sizeof v, " __vector(%ld)", n);
            dm_cat(t, v);
            break;
        }
        default: return false;
        }
        break;
    case 'A': {
        d->p++;
        if (!dm_number(d, &n) || *d->p != '_')
            return false;
        d->p++;
        if (!dm_type(d, t))
            return false;
        char a[48];
        snprintf(a, sizeof a, "[%ld]", n);
        dm_cat(t, a);
        break;
    }
    case 'N':
        if (!dm_nested(d, t))
            return false;
        break;
    case 'S':
        if (!dm_substitution(d, t, &is_std))
            return false;
        if (is_std) {
            dm_cat(t, "::");
            if (!dm_source_name(d, t, &hidden))
                return false;
            if (*d->p == 'I')
                dm_add_sub(d, t);
        } else if (*d->p != 'I') {
            dm_cat(o, t);
            return true;
        }
        if (*d->p == 'I' && !dm_template_args(d, t))
            return false;
        break;
    case 'T':
        if (!dm_template_param(d, t))
            return false;
        if (*d->p == 'I') {
            dm_add_sub(d, t);
            if (!dm_template_args(d, t))
                return false;
        }
        break;
    case 'u': /* vendor extended type */
        d->p++;
        if (!dm_source_name(d, t, &hidden))
            return false;
        break;
    default:
        if (!isdigit((unsigned char)c) || !dm_source_name(d, t, &hidden))
            return false;
        if (*d->p == 'I') {
            dm_add_sub(d, t);
            if (!dm_template_args(d, t))
                return false;
        }
        break;
    }
    dm_add_sub(d, t);
    dm_cat(o, t);
    return true;
}

static bool dm_type(dm *d, char *o)
{
    if (d->rec >= DM_DEPTH)
        return false;
    d->rec++;
    bool ok = dm_type_at(d, o);
    d->rec--;
    return ok;
}

/* The name of an <encoding> after _Z: nested, or unscoped (std:: or internal linkage
 * included) with optional template arguments. The parameter types are not read. */
static bool dm_name(dm *d, char *o)
{
    if (*d->p == 'N')
        return dm_nested(d, o);
    char t[DM_LEN] = "";
    bool hidden = false, is_std = false;
    if (*d->p == 'L')
        d->p++;
    if (*d->p == 'S') {
        if (!dm_substitution(d, t, &is_std))
            return false;
        if (is_std) {
            dm_cat(t, "::");
            if (!dm_source_name(d, t, &hidden))
                return false;
            if (*d->p == 'I')
                dm_add_sub(d, t);
        } else if (*d->p != 'I') {
            return false;
        }
    } else if (isdigit((unsigned char)*d->p)) {
        if (!dm_source_name(d, t, &hidden))
            return false;
        if (*d->p == 'I')
            dm_add_sub(d, t);
    } else {
        return false;
    }
    if (*d->p == 'I' && !dm_template_args(d, t))
        return false;
    dm_cat(o, t);
    return t[0] != '\0';
}

/* Bytes of the first k code points of s (or all of s). */
static size_t utf8_prefix(const char *s, size_t k)
{
    size_t i = 0;
    for (size_t cp = 0; s[i] && cp < k; cp++) {
        i++;
        while (((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
    }
    return i;
}

static size_t utf8_len(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Rewrites a demangled name in place without the namespace qualifiers inside its
 * template arguments ("k<at::native::F<float>>" becomes "k<F<float>>"). */
static void strip_inner_qualifiers(char *s)
{
    char *w = s;
    int depth = 0;
    for (const char *r = s; *r;) {
        if (depth > 0 && (isalpha((unsigned char)*r) || *r == '_') &&
            (r == s || !(isalnum((unsigned char)r[-1]) || r[-1] == '_'))) {
            const char *e = r;
            while (isalnum((unsigned char)*e) || *e == '_')
                e++;
            if (e[0] == ':' && e[1] == ':') {
                r = e + 2;
                continue;
            }
            while (r < e)
                *w++ = *r++;
            continue;
        }
        depth += *r == '<';
        depth -= *r == '>' && depth > 0;
        *w++ = *r++;
    }
    *w = '\0';
}

/* Rewrites a demangled name in place with every template argument list nested inside
 * another shown as "<…>". */
static void collapse_inner_args(char *s)
{
    char *w = s;
    int depth = 0;
    for (const char *r = s; *r; r++) {
        if (*r == '<' && ++depth == 2) {
            memcpy(w, "<…", strlen("<…"));
            w += strlen("<…");
        } else if (*r == '>' && depth > 0 && depth-- == 2) {
            *w++ = '>';
        } else if (depth < 2) {
            *w++ = *r;
        }
    }
    *w = '\0';
}

char *ibex_report_kernel_short_name(const char *name, char *buf, size_t n)
{
    if (!buf || n == 0)
        return buf;
    const char *show = name ? name : "?";
    dm *d = NULL;
    bool cut = false;
    if (name && name[0] == '_' && name[1] == 'Z' && (d = calloc(1, sizeof *d))) {
        char full[DM_LEN] = "";
        d->p = name + 2;
        if (dm_name(d, full) && full[0]) {
            cut = strlen(full) >= DM_LEN - 1; /* the rendering hit its bound: its tail is not the name's */
            if (!cut && utf8_len(full) > KERNEL_NAME_COLS)
                strip_inner_qualifiers(full);
            if (!cut && utf8_len(full) > KERNEL_NAME_COLS)
                collapse_inner_args(full);
            dm_copy(d->subs[0], full); /* reuse the table's storage for the result */
            show = d->subs[0];
        }
    }
    size_t w = utf8_len(show);
    if (w <= KERNEL_NAME_COLS && !cut) {
        snprintf(buf, n, "%s", show);
    } else {
        /* Keep the head and the tail, where kernel names carry their variant. */
        size_t head = cut ? KERNEL_NAME_COLS - 1 : KERNEL_NAME_COLS * 2 / 3;
        size_t tail = cut ? 0 : KERNEL_NAME_COLS - 1 - head;
        size_t hb = utf8_prefix(show, head), tb = strlen(show) - utf8_prefix(show, w - tail);
        snprintf(buf, n, "%.*s…%s", (int)hb, show, show + strlen(show) - tb);
    }
    free(d);
    return buf;
}

