#!/usr/bin/env bash
# ci_gate.sh — ibex's own performance-regression gate (docs/COMPARE.md).
#
# Runs scenarios/ci.yaml and compares it with the committed baseline
# scenarios/baselines/ci.json: exact counters strictly, timings strictly only when
# this machine and build match the baseline's provenance (`--timings auto`),
# informative otherwise. Exit status: ibex compare's (0 pass, 1 regression or changed
# counter, 2 incomparable).
#
#   scenarios/ci_gate.sh                  run and compare (what .ci/run does)
#   scenarios/ci_gate.sh --refresh        run and write the baseline(s) instead
#   scenarios/ci_gate.sh --instructions   also count instructions with callgrind
#                                         (scenarios/ci_instructions.yaml, a portable
#                                         -DIBEX_NATIVE=OFF build in build-instr/) and
#                                         gate them against baselines/ci_instructions.json
# Options: --ibex PATH (default build/ibex), --out DIR (default build/ci_gate), and
# anything after -- goes to `ibex compare` (e.g. -- --threshold 10%).
set -euo pipefail
cd "$(dirname "$0")/.."

IBEX=build/ibex
OUT=build/ci_gate
REFRESH=0
INSTR=0
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --refresh) REFRESH=1 ;;
    --instructions) INSTR=1 ;;
    --ibex) IBEX="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "ci_gate.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$IBEX" ] || { echo "ci_gate.sh: $IBEX not found: build first (cmake -S . -B build && cmake --build build)" >&2; exit 2; }
export IBEX_GNUPLOT=none # plots are not what the gate checks
rm -rf "$OUT" && mkdir -p "$OUT"

echo "ci_gate: running scenarios/ci.yaml ($(uptime | sed 's/.*load/load/'))" >&2
"$IBEX" run scenarios/ci.yaml --out "$OUT/ci" >"$OUT/run.log" 2>&1 || { cat "$OUT/run.log" >&2; exit 2; }

if [ "$INSTR" = 1 ]; then
  # callgrind cannot decode AVX-512, so the count comes from a portable build; the same
  # compiler and flags must make the baseline (provenance warnings say when not).
  command -v valgrind >/dev/null || { echo "ci_gate.sh: --instructions needs valgrind (apt-get install valgrind)" >&2; exit 2; }
  if [ ! -x build-instr/ibex ]; then
    echo "ci_gate: building the portable ibex for callgrind in build-instr/" >&2
    cmake -S . -B build-instr -DIBEX_NATIVE=OFF -DIBEX_CUDA=OFF -DIBEX_CUPTI=OFF -DIBEX_BUILD_TESTS=OFF \
      -DCMAKE_BUILD_TYPE=Release >"$OUT/instr_build.log" 2>&1
    cmake --build build-instr -j2 --target ibex >>"$OUT/instr_build.log" 2>&1
  fi
  # only instructions inside engine steps count: model synthesis, I/O and reports stay
  # out, and the count is then exactly repeatable (docs/COMPARE.md)
  valgrind --tool=callgrind --toggle-collect=ibex_engine_step --callgrind-out-file="$OUT/callgrind.out" \
    build-instr/ibex run scenarios/ci_instructions.yaml --out "$OUT/instr" >"$OUT/callgrind.log" 2>&1 \
    || { tail -20 "$OUT/callgrind.log" >&2; exit 2; }
  count=$(sed -n 's/^summary: //p' "$OUT/callgrind.out")
  [ -n "$count" ] || { echo "ci_gate.sh: no instruction count in $OUT/callgrind.out" >&2; exit 2; }
  # the count goes into every point of that run, where `ibex compare` reads it
  python3 - "$OUT/instr/results.json" "$count" <<'EOF'
import json, sys
path, count = sys.argv[1], int(sys.argv[2])
r = json.load(open(path))
for p in r.get("points", []):
    p["instructions"] = {"count": count, "tool": "callgrind", "scope": "ibex_engine_step"}
json.dump(r, open(path, "w"), indent=1)
EOF
  echo "ci_gate: callgrind counted $count instructions" >&2
fi

if [ "$REFRESH" = 1 ]; then
  mkdir -p scenarios/baselines
  cp "$OUT/ci/results.json" scenarios/baselines/ci.json
  [ "$INSTR" = 1 ] && cp "$OUT/instr/results.json" scenarios/baselines/ci_instructions.json
  echo "ci_gate: baseline refreshed: scenarios/baselines/ci.json$([ "$INSTR" = 1 ] && echo ' and ci_instructions.json'); commit it" >&2
  exit 0
fi

rc=0
"$IBEX" compare scenarios/baselines/ci.json "$OUT/ci" --timings auto --json "$OUT/compare.json" "${EXTRA[@]}" || rc=$?
if [ "$INSTR" = 1 ]; then
  if [ -f scenarios/baselines/ci_instructions.json ]; then
    r2=0
    "$IBEX" compare scenarios/baselines/ci_instructions.json "$OUT/instr" --timings info \
      --json "$OUT/compare_instructions.json" "${EXTRA[@]}" || r2=$?
    [ "$r2" -gt "$rc" ] && rc=$r2
  else
    echo "ci_gate: no scenarios/baselines/ci_instructions.json yet (make it with --refresh --instructions)" >&2
  fi
fi
echo "ci_gate: exit $rc (0 pass, 1 regression or changed counter, 2 incomparable); details in $OUT/" >&2
exit $rc
