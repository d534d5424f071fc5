#!/bin/sh
# plots_rendered.sh IBEX WORKDIR — a small sweep renders PNG and SVG plots, and the run's
# summary names plots/ only because they are there.
set -u
ibex=$1 work=$2
mkdir -p "$work" && rm -rf "$work/out"
cat >"$work/plots.yaml" <<'YAML'
name: plots
model: synthetic:tiny
threads: 1
warmup: 0
repeat: 1
workload: {requests: 2, output_tokens: 4, ignore_eos: true}
sweep:
  workload.prompt_tokens: [16, 64]
YAML
"$ibex" run "$work/plots.yaml" --out "$work/out" >"$work/out.txt" 2>"$work/err.txt"
rc=$?
cat "$work/err.txt"
[ $rc -eq 0 ] || { echo "FAIL: ibex run exited $rc"; exit 1; }
png=$(ls "$work"/out/plots/*.png 2>/dev/null | wc -l)
svg=$(ls "$work"/out/plots/*.svg 2>/dev/null | wc -l)
[ "$png" -gt 0 ] && [ "$svg" -gt 0 ] || { echo "FAIL: $png PNG and $svg SVG plots in $work/out/plots"; exit 1; }
grep -q 'plots/ (PNG, SVG)' "$work/err.txt" || { echo "FAIL: the summary does not name plots/"; exit 1; }
if grep -q 'plots were NOT rendered' "$work/err.txt"; then echo "FAIL: says plots were not rendered"; exit 1; fi
echo "ok: $png PNG and $svg SVG plots"
