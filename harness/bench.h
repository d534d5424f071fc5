/* bench.h — the list parsing of `ibex bench` (harness/cmd_bench.c), exposed so the
 * tests can reach it: llama-bench's comma lists and ranges ("1,2,8-32*2,100-300+100",
 * "128-512" with step 1). */
#ifndef IBEX_BENCH_H
#define IBEX_BENCH_H

#include <stdbool.h>
#include <stddef.h>

/* Expands list s into out[0..cap-1] (128 bytes each) and returns how many values it
 * holds, or -1 with the reason in why ("-p: empty range '128-64' (first > last)").
 * numeric: every item must be an integer >= 0 (ranges a-b, a-b+step, a-b*factor are
 * allowed only then); otherwise items are names. Refused: an empty list or an empty
 * item ("1,,2", "1,"), a number or range end beyond 2^31 - 1, a range whose first value
 * exceeds its last, a step <= 0 or a factor <= 1 (or a '*' range from 0), more than cap
 * values. Never overflows: the expansion stops before the next value would pass the
 * last. */
int ibex_bench_expand_list(const char *opt, const char *s, bool numeric, char out[][128], int cap, char *why,
                           size_t why_n);

#endif
