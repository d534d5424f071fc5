/* claims.h — the seed-claims report: each claim of the article ibex grew from
 * (seeds/000_3ae1b1ba8fccc1c7.txt, DESIGN.md "Seed claims") set beside what a suite
 * of scenarios measured, with a verdict and by how much the article is off.
 *
 * Input: the results.json of each scenario of the suite (scenarios/seed_claims.yaml).
 * A scenario is found by its name: the role ("quadratic") or any name ending in
 * "_" + role ("claims_quadratic"). Roles and the claims they feed:
 *   naive_vs_cache  a  no KV cache: token k runs the model k times (total ~n²)
 *   decoding        b  greedy fast, sampling medium, beam search slow
 *   kv_7b           c  Llama-2-7B, 2048 tokens: KV cache 1.6 GB (also h1, h2)
 *   kv_memory       d  KV cache > 60% of memory, limits concurrency (also c, h1, h2)
 *   quadratic       e  attention O(n²): 512 → 1×, 1024 → 4×, 2048 → 16×
 *   batching        f  per-request batching wastes the GPU
 *   naive_vs_paged  g  paging raises KV utilisation from ~30% to 70%+ (also h1, h2)
 *                   h1 INT8 −50% memory, INT4 −75%, 7B 14 GB → 6 GB
 *                   h2 INT8 ~+20% speed, INT4 ~+40%
 * Every measured number comes from a results.json (or from the KV formula
 * 2·layers·kv_heads·head_dim·bytes·tokens applied to the model's numbers there); the
 * article's numbers are the only constants. A claim whose scenario is missing, failed
 * or lacks the points it needs is "not measured", with the reason.
 *
 * Verdicts (the thresholds are printed at the end of claims.md, "How the verdicts are
 * decided"): holds / partly / wrong from the measured figures; inconclusive when a
 * timed figure is noisy (CV > 10 % or < 3 repetitions) or the verdict changes within
 * the spread of the repetitions (every corner of the figures' intervals is tried: a
 * dead zone around each threshold as wide as the noise); not judged when a --quick run
 * dropped what the claim needs; not measured when a scenario or its points are missing
 * or failed, with the reason. (a) and (e) are judged on local exponents (a: the two
 * longest runs; e: between 512 and 2048), never on the fit over all points.
 *   quantization    h1 (loaded weight bytes), h2 (decode tok/s of F16 / Q8_0 / Q4_0)
 *
 * Nothing here prints except into a FILE the caller passes. */
#ifndef IBEX_CLAIMS_H
#define IBEX_CLAIMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kernels/status.h"

#define IBEX_CLAIMS_MAX_ROWS 10
#define IBEX_CLAIMS_MAX_SUBS 16
#define IBEX_CLAIMS_MAX_NUMS 16

typedef enum ibex_claim_verdict {
    IBEX_CLAIM_NOT_MEASURED = 0,
    IBEX_CLAIM_HOLDS,
    IBEX_CLAIM_PARTLY,
    IBEX_CLAIM_WRONG,
    IBEX_CLAIM_INCONCLUSIVE, /* measured, but the figures are noisy or their spread straddles a threshold */
    IBEX_CLAIM_NOT_JUDGED,   /* a quick run kept too little of the experiment to judge it */
    IBEX_CLAIM_VERDICTS      /* the number of verdicts */
} ibex_claim_verdict;

/* "not measured", "holds", "partly", "wrong", "inconclusive", "not judged". Cannot fail. */
const char *ibex_claim_verdict_name(ibex_claim_verdict v);

/* A named number behind a verdict ("exp_none", "kv_2048_formula_bytes"), for tests and
 * for readers of the CSV. */
typedef struct ibex_claim_num {
    char name[40];
    double value;
} ibex_claim_num;

typedef struct ibex_claim_row {
    char id[8];             /* "a" .. "h2" */
    char claim[400];        /* the article's words, in English, with its numbers */
    char source[160];       /* the scenario(s) measured */
    char measured[2048];    /* what ibex measured: numbers with units */
    ibex_claim_verdict verdict;
    char assessment[1400];  /* where the article is right or wrong, and by how much */
    char note[256];         /* why inconclusive or not judged ("noisy: wall_s of none at n=128 CV 24 %") */
    int n_nums;
    ibex_claim_num nums[IBEX_CLAIMS_MAX_NUMS];
} ibex_claim_row;

/* One scenario of the suite as the caller ran it. */
typedef struct ibex_claims_sub {
    const char *name;  /* the scenario's name (its `name:`), which gives its role */
    const char *dir;   /* the directory holding its results.json; NULL when it did not run */
    const char *error; /* why it did not run or failed (shown as "not measured: ..."); NULL if it ran */
} ibex_claims_sub;

typedef struct ibex_claims {
    char suite[128];         /* the suite's name */
    char description[1024];
    bool complete;           /* false when the suite was interrupted or a scenario did not run */
    int n_subs;
    struct {
        char name[128];
        char dir[512];       /* relative to the suite's directory when inside it */
        char status[640];    /* "ok", "incomplete: ...", "not measured: ..." */
    } subs[IBEX_CLAIMS_MAX_SUBS];
    int n_rows;
    ibex_claim_row rows[IBEX_CLAIMS_MAX_ROWS];
    bool quick;              /* a scenario ran with --quick */
    char warnings[1024];     /* the scenarios' busy-machine warnings (conditions.warning), "" when none */
} ibex_claims;

/* Reads each sub's DIR/results.json (ibex_report_load) and fills out->subs and
 * out->rows (a .. h2, always all of them; out's suite, description and complete are
 * left as they are). A sub that cannot be read is recorded as not measured, never an
 * error. Errors: IBEX_ERR_INVALID (out NULL, subs NULL with n > 0, more than
 * IBEX_CLAIMS_MAX_SUBS subs). */
ibex_status ibex_claims_evaluate(const ibex_claims_sub *subs, size_t n, ibex_claims *out, ibex_err *err);

/* The row with id ("a", "h1"), or NULL. */
const ibex_claim_row *ibex_claims_row(const ibex_claims *c, const char *id);

/* The number named name of row r, or NaN when absent (or r NULL). */
double ibex_claim_value(const ibex_claim_row *r, const char *name);

/* claims.md: title, what was run (every sub with its status and a link to its
 * report.md), the claims table (claim, measured, verdict, assessment), the thresholds
 * and formulas. Same input, same bytes. Errors: IBEX_ERR_INVALID, IBEX_ERR_IO. */
ibex_status ibex_claims_markdown(const ibex_claims *c, FILE *out, ibex_err *err);

/* claims.csv: header id,claim,source,verdict,measured,assessment,numbers then one
 * row per claim (RFC 4180 quoting; numbers as "name=value;..."). Errors as above. */
ibex_status ibex_claims_csv(const ibex_claims *c, FILE *out, ibex_err *err);

/* The claims table for a terminal: one block per claim (verdict, claim, measured,
 * assessment) and a count of verdicts. Errors as above. */
ibex_status ibex_claims_terminal(const ibex_claims *c, FILE *out, ibex_err *err);

/* Evaluates subs and writes suite_out_dir/claims.md and suite_out_dir/claims.csv, each
 * atomically. suite_name and description may be NULL; complete false marks the report
 * incomplete. When out is non-NULL it receives the evaluated claims (else a temporary
 * is used). Errors: those of ibex_claims_evaluate, IBEX_ERR_IO, IBEX_ERR_NOMEM. */
ibex_status ibex_report_claims(const char *suite_out_dir, const char *suite_name, const char *description,
                               const ibex_claims_sub *subs, size_t n, bool complete, ibex_claims *out,
                               ibex_err *err);

#endif
