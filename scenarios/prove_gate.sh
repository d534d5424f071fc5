#!/usr/bin/env bash
# prove_gate.sh — measures how often `ibex compare` is wrong (docs/COMPARE.md):
#   A/A: the same build run twice, N pairs -> false alarms (exit 1) at the given settings;
#   A/B: B slowed down by IBEX_DEBUG_SLOWDOWN_PCT (each engine step busy-waits that share
#        of its own time), for each percentage -> detections (exit 1).
# Every pair i runs its A, A', and slowed B's in a random order, so a drift of the
# machine's load does not always favour one side. The point is scenarios/ci.yaml with
# the contiguous KV policy only (one point, ~9 repetitions of ~0.3 s on one thread).
#
#   scenarios/prove_gate.sh [--pairs N] [--pct "5 10"] [--ibex build/ibex] [--out DIR] [-- compare options]
# Prints one line per pair and a summary; writes DIR/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
IBEX=build/ibex
OUT=build/prove_gate
PAIRS=20
PCTS="5 10"
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) PAIRS="$2"; shift ;;
    --pct) PCTS="$2"; shift ;;
    --ibex) IBEX="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "prove_gate.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
export IBEX_GNUPLOT=none
rm -rf "$OUT" && mkdir -p "$OUT"
sed -e '/^sweep:/,$d' scenarios/ci.yaml >"$OUT/point.yaml"
printf 'kv:\n  budget: 16MiB\n  block_size: 16\n  policy: contiguous\n' >"$OUT/kv.yaml"
# one point: ci.yaml without its sweep, contiguous KV (the kv block is replaced whole)
awk 'BEGIN{skip=0} /^kv:/{skip=1; while ((getline l < "'"$OUT/kv.yaml"'") > 0) print l; next}
     skip && /^  /{next} {skip=0; print}' "$OUT/point.yaml" >"$OUT/point2.yaml"
mv "$OUT/point2.yaml" "$OUT/point.yaml"

run() { # run NAME [PCT]; NAME.cpw gets the process's CPU time / wall time
  local t
  t=$( { TIMEFORMAT='%R %U %S'; time IBEX_DEBUG_SLOWDOWN_PCT="${2:-0}" "$IBEX" run "$OUT/point.yaml" --out "$OUT/$1" \
         >"$OUT/$1.log" 2>&1; } 2>&1 ) || { echo "prove_gate.sh: run $1 failed:" >&2; tail -5 "$OUT/$1.log" >&2; exit 2; }
  echo "$t" | awk '{ printf "%.3f\n", ($2 + $3) / $1 }' >"$OUT/$1.cpw"
}
# Whether both runs of a comparison kept their one thread busy (CPU / wall >= CPW_MIN):
# a stand-in for the runner's conditions.busy guard, which makes `ibex compare` call
# the timings of a starved run inconclusive instead of comparing them.
CPW_MIN=${CPW_MIN:-0.9}
quiet() { awk -v a="$(cat "$OUT/$1.cpw")" -v b="$(cat "$OUT/$2.cpw")" -v m="$CPW_MIN" 'BEGIN { exit !(a >= m && b >= m) }'; }
verdict() { # verdict BASE NEW -> prints the exit code and the failing metrics
  local rc=0
  "$IBEX" compare "$OUT/$1" "$OUT/$2" --json "$OUT/$2.cmp.json" "${EXTRA[@]}" >"$OUT/$2.cmp.md" 2>&1 || rc=$?
  local m
  m=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(",".join(x["metric"] for x in r["rows"] if x["fails"]) or "-")' "$OUT/$2.cmp.json")
  echo "$rc $m"
}

declare -A hits qhits qn
hits[aa]=0 qhits[aa]=0 qn[aa]=0
for p in $PCTS; do hits[$p]=0 qhits[$p]=0 qn[$p]=0; done
tally() { # tally KEY BASE NEW RC
  [ "$4" = 1 ] && hits[$1]=$((hits[$1] + 1))
  if quiet "$2" "$3"; then
    qn[$1]=$((qn[$1] + 1))
    [ "$4" = 1 ] && qhits[$1]=$((qhits[$1] + 1))
  fi
  return 0
}
start=$(date +%s)
echo "prove_gate: $PAIRS pairs, slowdowns: $PCTS %; $(uptime | sed 's/.*load/load/')" | tee "$OUT/summary.txt"
for i in $(seq 1 "$PAIRS"); do
  jobs=("a$i:0" "aa$i:0")
  for p in $PCTS; do jobs+=("s${p}_$i:$p"); done
  for j in $(printf '%s\n' "${jobs[@]}" | shuf); do run "${j%%:*}" "${j##*:}"; done
  line="pair $i:"
  read -r rc m < <(verdict "a$i" "aa$i")
  tally aa "a$i" "aa$i" "$rc"
  line+=" A/A rc=$rc ($m)"
  for p in $PCTS; do
    read -r rc m < <(verdict "a$i" "s${p}_$i")
    tally "$p" "a$i" "s${p}_$i" "$rc"
    line+="; +$p% rc=$rc ($m)"
  done
  line+="; cpu/wall A $(cat "$OUT/a$i.cpw") A' $(cat "$OUT/aa$i.cpw")"
  for p in $PCTS; do line+=" +$p% $(cat "$OUT/s${p}_$i.cpw")"; done
  echo "$line" | tee -a "$OUT/summary.txt"
done
{
  echo "A/A false alarms: ${hits[aa]} / $PAIRS"
  for p in $PCTS; do echo "+$p % slowdown detected: ${hits[$p]} / $PAIRS"; done
  echo "only comparisons whose two runs had CPU/wall >= $CPW_MIN (the busy guard; the others are inconclusive):"
  echo "  A/A false alarms: ${qhits[aa]} / ${qn[aa]}"
  for p in $PCTS; do echo "  +$p % slowdown detected: ${qhits[$p]} / ${qn[$p]}"; done
  echo "settings: ibex compare defaults ${EXTRA[*]:-}; $(($(date +%s) - start)) s; $(uptime | sed 's/.*load/load/')"
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
} | tee -a "$OUT/summary.txt"
