/* fuzz_scenario.c — libFuzzer target for the scenario parser and sweep expansion
 * (harness/scenario.c): any text either parses into points that pass the point check,
 * or is refused with a message; quick mode on a parsed scenario keeps it valid. */
#include <stdint.h>
#include <stdlib.h>

#include "harness/scenario.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ibex_err err = {0};
    ibex_scenario *s = ibex_scenario_parse((const char *)data, size, "fuzz.yaml", &err);
    if (!s) {
        if (!err.msg[0]) FUZZ_FAIL("scenario refused without a message");
        return 0;
    }
    for (int32_t i = 0; i < s->n_points; i++) {
        ibex_err e2 = {0};
        if (ibex_point_check(&s->points[i], "", &e2) != IBEX_OK && e2.status != IBEX_ERR_IO)
            FUZZ_FAIL("expanded point %d fails the point check: %s", i, e2.msg);
    }
    ibex_scenario_quick(s);
    ibex_scenario_free(s);
    return 0;
}
