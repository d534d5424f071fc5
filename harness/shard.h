/* shard.h — splitting a scenario's points over N processes (`ibex run --shard K/N`,
 * `ibex slurm`) and naming the scenario file they came from (SHA-256 of its bytes), so
 * `ibex merge` can join the shards' result folders (docs/CLUSTER.md).
 *
 * The assignment is a pure function of the loaded scenario (after --quick) and N: every
 * node of a cluster computes the same one from the same file, whatever its hardware or
 * the files beside it. Points are sorted by an analytic cost estimate (descending, ties
 * by index) and dealt to the shards in snake order (1..N, then N..1, ...), so points of
 * equal cost are spread evenly and no shard always receives the heaviest of each round.
 * Every point keeps its global index. */
#ifndef IBEX_SHARD_H
#define IBEX_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness/scenario.h"
#include "kernels/status.h"

/* Parses "K/N" (1 <= K <= N <= 100000) into *k and *n. On failure writes why into
 * why[0..why_n-1] ("'3/2': K must be between 1 and N") and returns false. */
bool ibex_shard_parse(const char *s, int32_t *k, int32_t *n, char *why, size_t why_n);

/* A relative cost of running point p (arbitrary units; only the order matters):
 *   (warmup + repeat) x requests x (mean prompt + mean output tokens) x parameters,
 * parameters from the synthetic preset's shape (1e9 for a GGUF file: its size is not
 * read, so the estimate depends on the scenario file alone), x 1/1000 for
 * accounting-only points (compute: false). Cannot fail. */
double ibex_shard_cost(const ibex_point *p);

/* Fills owner[i] (i < s->n_points) with the shard (1..n) that runs point i. owner has
 * s->n_points entries. Errors: IBEX_ERR_INVALID (n < 1), IBEX_ERR_NOMEM. */
ibex_status ibex_shard_assign(const ibex_scenario *s, int32_t n, int32_t *owner, ibex_err *err);

/* The same over several scenarios at once (a suite): their points are numbered
 * scenario by scenario (s[0]'s first, ...) and assigned together, so a suite of many
 * one-point scenarios is still spread over every shard. owner[j] gets the shard of the
 * j-th point in that numbering. */
ibex_status ibex_shard_assign_many(const ibex_scenario *const *s, int32_t n_s, int32_t n, int32_t *owner,
                                   ibex_err *err);

/* SHA-256 (FIPS 180-4) of len bytes at data, as 64 lowercase hex digits into hex[65]. */
void ibex_sha256_hex(const void *data, size_t len, char hex[65]);

/* SHA-256 of a file's bytes into hex[65] (the value `sha256sum FILE` prints).
 * Errors: IBEX_ERR_IO naming the file and the reason. */
ibex_status ibex_sha256_file(const char *path, char hex[65], ibex_err *err);

#endif
