/* fuzz_results.c — libFuzzer target for the results.json loader (reports/report_load.c)
 * and the readers that follow it (CSV and the terminal summary): any input is loaded or
 * refused with a message, and a loaded document renders without memory errors. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "reports/reports.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setenv("IBEX_GNUPLOT", "none", 1); /* the terminal summary must not fork gnuplot */
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    ibex_err err = {0};
    json_t *res = ibex_report_load(path, &err);
    close(fd);
    if (!res) {
        if (!err.msg[0]) FUZZ_FAIL("results refused without a message");
        return 0;
    }
    static FILE *null_out;
    if (!null_out) null_out = fopen("/dev/null", "w");
    ibex_report_csv(res, null_out, &err);
    ibex_report_terminal(res, null_out, &err);
    json_decref(res);
    return 0;
}
