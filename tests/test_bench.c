/* test_bench.c — `ibex bench`'s list parsing (harness/bench.h): llama-bench ranges,
 * and the bad inputs that used to slip through (issue 14): an empty range read as "not
 * an integer", an empty item silently dropped, a signed overflow in a '*' range. */
#include <criterion/criterion.h>

#include <string.h>

#include "harness/bench.h"

static char out[64][128];
static char why[512];

Test(bench, lists_and_ranges) {
    cr_assert_eq(ibex_bench_expand_list("-p", "1,2,8-32*2,100-300+100", true, out, 64, why, sizeof why), 8, "%s", why);
    static const char *const want[] = {"1", "2", "8", "16", "32", "100", "200", "300"};
    for (int i = 0; i < 8; i++) cr_assert_str_eq(out[i], want[i]);
    cr_assert_eq(ibex_bench_expand_list("-p", "3-5", true, out, 64, why, sizeof why), 3, "a-b steps by 1");
    cr_assert_str_eq(out[2], "5");
    cr_assert_eq(ibex_bench_expand_list("-p", "0", true, out, 64, why, sizeof why), 1, "0 means no test, not an error");
    cr_assert_eq(ibex_bench_expand_list("--kv", "paged,none", false, out, 64, why, sizeof why), 2);
    cr_assert_str_eq(out[1], "none");
}

Test(bench, empty_range_says_so) {
    cr_assert_eq(ibex_bench_expand_list("-p", "128-64", true, out, 64, why, sizeof why), -1);
    cr_assert_not_null(strstr(why, "empty range '128-64'"), "%s", why);
}

Test(bench, empty_items_are_errors) {
    static const char *const bad[] = {"1,,2", "1,", ",1", ""};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(ibex_bench_expand_list("-p", bad[i], true, out, 64, why, sizeof why), -1, "'%s' accepted", bad[i]);
        if (*bad[i]) cr_assert_not_null(strstr(why, "empty item"), "%s: %s", bad[i], why);
    }
    cr_assert_eq(ibex_bench_expand_list("--kv", "paged,,none", false, out, 64, why, sizeof why), -1);
}

Test(bench, huge_numbers_and_ranges_never_overflow) {
    cr_assert_eq(ibex_bench_expand_list("-p", "1-9223372036854775807*2", true, out, 64, why, sizeof why), -1);
    cr_assert_not_null(strstr(why, "too large"), "%s", why);
    cr_assert_eq(ibex_bench_expand_list("-p", "99999999999999999999999", true, out, 64, why, sizeof why), -1);
    /* the largest accepted end: doubling stops before passing it, 31 values */
    cr_assert_eq(ibex_bench_expand_list("-p", "1-2147483647*2", true, out, 64, why, sizeof why), 31, "%s", why);
    cr_assert_str_eq(out[30], "1073741824");
    cr_assert_eq(ibex_bench_expand_list("-p", "2147483647-2147483647+2147483647", true, out, 64, why, sizeof why), 1);
}

Test(bench, bad_steps_and_too_many) {
    cr_assert_eq(ibex_bench_expand_list("-p", "1-8*1", true, out, 64, why, sizeof why), -1, "factor 1 loops forever");
    cr_assert_eq(ibex_bench_expand_list("-p", "0-8*2", true, out, 64, why, sizeof why), -1, "0 * 2 loops forever");
    cr_assert_eq(ibex_bench_expand_list("-p", "1-8+0", true, out, 64, why, sizeof why), -1);
    cr_assert_eq(ibex_bench_expand_list("-p", "-3", true, out, 64, why, sizeof why), -1);
    cr_assert_eq(ibex_bench_expand_list("-p", "1-100", true, out, 64, why, sizeof why), -1, "100 values > cap 64");
    cr_assert_not_null(strstr(why, "more than 64"), "%s", why);
}
