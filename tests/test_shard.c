/* test_shard.c — `ibex run --shard K/N` (harness/shard.c): K/N parsing, the point
 * assignment (every point in exactly one shard, the same every time, equal-cost points
 * spread evenly, heavy points balanced by the snake order, suites assigned as one), the
 * cost estimate's order, and SHA-256 against the FIPS 180-4 example vectors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/shard.h"

#ifndef IBEX_TEST_TMPDIR
#define IBEX_TEST_TMPDIR "/tmp"
#endif

static ibex_scenario *parse_ok(const char *yaml) {
    ibex_err err = {0};
    ibex_scenario *s = ibex_scenario_parse(yaml, strlen(yaml), "t.yaml", &err);
    cr_assert(s != NULL, "parse failed: %s", err.msg);
    return s;
}

Test(shard, parse) {
    int32_t k = 0, n = 0;
    char why[200];
    cr_assert(ibex_shard_parse("3/4", &k, &n, why, sizeof why));
    cr_expect(k == 3 && n == 4);
    cr_assert(ibex_shard_parse("1/1", &k, &n, why, sizeof why));
    static const char *const bad[] = {"0/2", "3/2", "2", "a/b", "1/0", "1/2x", "-1/2", "1/", "/2", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect(!ibex_shard_parse(bad[i], &k, &n, why, sizeof why), "'%s' accepted", bad[i]);
        cr_expect(strstr(why, "'") != NULL, "'%s': message names the value: %s", bad[i], why);
    }
    cr_expect(!ibex_shard_parse("3/2", &k, &n, why, sizeof why));
    cr_expect(strstr(why, "between 1 and N") != NULL, "%s", why);
}

/* owner[] covers 1..n only, and the shards' point counts differ by at most one when
 * every point costs the same (12 points of one shape over 1..7 shards). */
Test(shard, equal_costs_spread_evenly) {
    ibex_scenario *s = parse_ok("sweep:\n  kv.policy: [contiguous, paged]\n  seed: [1, 2, 3, 4, 5, 6]\n");
    cr_assert_eq(s->n_points, 12);
    int32_t owner[12];
    for (int32_t n = 1; n <= 7; n++) {
        ibex_err err = {0};
        cr_assert(!ibex_shard_assign(s, n, owner, &err));
        int count[8] = {0};
        for (int i = 0; i < 12; i++) {
            cr_assert(owner[i] >= 1 && owner[i] <= n, "point %d in shard %d of %d", i, owner[i], n);
            count[owner[i]]++;
        }
        int lo = 99, hi = 0;
        for (int k = 1; k <= n; k++) lo = count[k] < lo ? count[k] : lo, hi = count[k] > hi ? count[k] : hi;
        cr_expect(hi - lo <= 1, "N=%d: shard sizes %d..%d", n, lo, hi);
        /* equal costs: the index tie-break deals them in index order (1, 2, ..., N, N, ..., 1) */
        cr_expect(owner[0] == 1 && owner[n - 1 < 12 ? n - 1 : 11] == (n <= 12 ? n : 12));
    }
    ibex_scenario_free(s);
}

/* Same scenario text, same assignment: a cluster's nodes agree without talking. */
Test(shard, deterministic) {
    const char *y = "sweep:\n  workload.output_tokens: [4, 64, 16, 8, 32]\n  batch: [1, 2, 4]\n";
    ibex_scenario *a = parse_ok(y), *b = parse_ok(y);
    int32_t oa[15], ob[15];
    ibex_err err = {0};
    cr_assert(!ibex_shard_assign(a, 4, oa, &err));
    cr_assert(!ibex_shard_assign(b, 4, ob, &err));
    cr_expect(!memcmp(oa, ob, sizeof oa));
    ibex_scenario_free(a), ibex_scenario_free(b);
}

/* Costs rise with tokens, requests and repetitions and drop for accounting-only points. */
Test(shard, cost_order) {
    ibex_scenario *s = parse_ok("sweep:\n  workload.output_tokens: [8, 64]\n  compute: [true, false]\n");
    cr_assert_eq(s->n_points, 4); /* (8,T) (8,F) (64,T) (64,F) */
    double c[4];
    for (int i = 0; i < 4; i++) c[i] = ibex_shard_cost(&s->points[i]);
    cr_expect(c[2] > c[0], "more tokens cost more");
    cr_expect(c[1] < c[0] / 100 && c[3] < c[2] / 100, "accounting-only points are cheap");
    ibex_scenario_free(s);
    ibex_scenario *m = parse_ok("sweep:\n  model: ['synthetic:tiny', 'synthetic:llama2-7b']\n");
    cr_assert_eq(m->n_points, 2);
    cr_expect(ibex_shard_cost(&m->points[1]) > 10 * ibex_shard_cost(&m->points[0]));
    ibex_scenario_free(m);
}

/* Heavy points balanced: the two heaviest go to different shards and the shards' cost
 * sums are closer than plain round-robin over the sorted list would make them. */
Test(shard, heavy_points_balanced) {
    ibex_scenario *s = parse_ok("sweep:\n  workload.output_tokens: [1000, 900, 800, 700, 600, 500, 400, 300]\n");
    cr_assert_eq(s->n_points, 8);
    int32_t owner[8];
    ibex_err err = {0};
    cr_assert(!ibex_shard_assign(s, 2, owner, &err));
    double sum[3] = {0};
    for (int i = 0; i < 8; i++) sum[owner[i]] += ibex_shard_cost(&s->points[i]);
    cr_expect(owner[0] != owner[1], "the two heaviest points share shard %d", owner[0]);
    /* round-robin gives 1000+800+600+400 vs 900+700+500+300: a gap of 4 units of the
     * smallest step; snake gives 1000+700+600+300 vs 900+800+500+400: equal */
    double unit = ibex_shard_cost(&s->points[0]) - ibex_shard_cost(&s->points[1]);
    cr_expect(sum[1] - sum[2] < 0.5 * unit && sum[2] - sum[1] < 0.5 * unit, "sums %g vs %g", sum[1], sum[2]);
    ibex_scenario_free(s);
}

/* A suite of one-point scenarios still spreads over every shard. */
Test(shard, many_scenarios_assigned_together) {
    ibex_scenario *s[4];
    for (int i = 0; i < 4; i++) s[i] = parse_ok("workload:\n  output_tokens: 8\n");
    int32_t owner[4];
    ibex_err err = {0};
    cr_assert(!ibex_shard_assign_many((const ibex_scenario *const *)s, 4, 2, owner, &err));
    int count[3] = {0};
    for (int i = 0; i < 4; i++) count[owner[i]]++;
    cr_expect(count[1] == 2 && count[2] == 2, "%d / %d", count[1], count[2]);
    for (int i = 0; i < 4; i++) ibex_scenario_free(s[i]);
}

Test(shard, zero_shards_refused) {
    ibex_scenario *s = parse_ok("workload:\n  output_tokens: 8\n");
    int32_t owner[1];
    ibex_err err = {0};
    cr_expect(ibex_shard_assign(s, 0, owner, &err) == IBEX_ERR_INVALID);
    ibex_scenario_free(s);
}

/* FIPS 180-4 / NIST example vectors: empty, one block, two blocks (the 448-bit message
 * whose padding spills into a second block), a million 'a's (many blocks, fed at once). */
Test(shard, sha256_vectors) {
    char h[65];
    ibex_sha256_hex("", 0, h);
    cr_expect_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ibex_sha256_hex("abc", 3, h);
    cr_expect_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ibex_sha256_hex(two, strlen(two), h);
    cr_expect_str_eq(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *a = malloc(1000000);
    cr_assert(a);
    memset(a, 'a', 1000000);
    ibex_sha256_hex(a, 1000000, h);
    cr_expect_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* the file path reads in 8 KiB pieces: the same digest as the buffer at once */
    char path[512];
    snprintf(path, sizeof path, "%s/test_shard_sha.bin", IBEX_TEST_TMPDIR);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fwrite(a, 1, 1000000, f);
    fclose(f);
    ibex_err err = {0};
    cr_assert(!ibex_sha256_file(path, h, &err), "%s", err.msg);
    cr_expect_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    remove(path);
    free(a);
    cr_expect(ibex_sha256_file("/nonexistent/x.yaml", h, &err) == IBEX_ERR_IO);
    cr_expect(strstr(err.msg, "/nonexistent/x.yaml") != NULL, "%s", err.msg);
}
