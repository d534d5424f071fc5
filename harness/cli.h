/* cli.h — shared helpers of the ibex command line: option matching with "did you
 * mean" suggestions, number parsing with clear errors, and the subcommands. */
#ifndef IBEX_CLI_H
#define IBEX_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Edit distance between a and b (for suggestions). */
int ibex_cli_edit_distance(const char *a, const char *b);

/* The candidate closest to word (NULL-terminated list) if it is close enough to be a
 * plausible typo, else NULL. */
const char *ibex_cli_suggest(const char *word, const char *const *candidates);

/* Strict number parsing: the whole string must be a number within [lo, hi].
 * On failure prints "ibex CMD: OPTION: ..." to stderr and returns false. */
bool ibex_cli_int(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out);
bool ibex_cli_float(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);

/* Parses a comma-separated list of integers ("1,2,3") into a malloc'd array. */
bool ibex_cli_int_list(const char *cmd, const char *opt, const char *s, int32_t **out, int32_t *n);

/* Parses a byte size: "512MiB", "80GiB", "1.5GB", "4096" (KiB/MiB/GiB/TiB are powers of
 * 1024, KB/MB/GB/TB of 1000, K/M/G/T of 1024). Prints an error and returns false. */
bool ibex_cli_size(const char *cmd, const char *opt, const char *s, int64_t *out);

/* Seconds on the monotonic clock (for wall-time measurements). */
double ibex_cli_now_s(void);

/* Human-readable bytes ("1.50 GiB"), into buf. */
const char *ibex_cli_bytes(int64_t bytes, char *buf, size_t cap);
/* The default result folder: out when given, else results/<name>-<tag>YYYYmmdd-HHMMSS
 * (local time; tag "" or e.g. "slurm-"). */
void ibex_cli_result_dir(char *dir, size_t cap, const char *out, const char *name, const char *tag);

int ibex_cmd_generate(int argc, char **argv);
int ibex_cmd_model(int argc, char **argv);
int ibex_cmd_batch(int argc, char **argv);
int ibex_cmd_run(int argc, char **argv);
int ibex_cmd_report(int argc, char **argv);
int ibex_cmd_bench(int argc, char **argv);
int ibex_cmd_opbench(int argc, char **argv);
int ibex_cmd_roofline(int argc, char **argv);
int ibex_cmd_compare(int argc, char **argv);
int ibex_cmd_merge(int argc, char **argv);
int ibex_cmd_slurm(int argc, char **argv);

/* Writes every report of a result folder from its results.json and prints the terminal
 * summary, as `ibex run` does at its end (also used by `ibex merge`). Returns the exit
 * status: 1 when results.json cannot be read, a report cannot be written or a point
 * failed, else 0. */
int ibex_cmd_render(const char *dir);

#endif
