#!/bin/sh
# run.sh BUILD_DIR [SECONDS] — runs every libFuzzer target for SECONDS (default 30) on its
# seed corpus (copied, so the source corpus is not grown), one after another; stops at
# the first crash, leak or sanitizer report, leaving the reproducer in BUILD_DIR/tests/fuzz/.
set -eu
build=$1
secs=${2:-30}
dir="$build/tests/fuzz"
export IBEX_GNUPLOT=none
for t in gguf scenario tokenizer jsonl results; do
  work="$dir/work/$t"
  rm -rf "$work"
  mkdir -p "$work"
  cp -r "$dir/corpus/$t/." "$work/"
  echo "fuzz_$t: ${secs} s"
  (cd "$dir" && "./fuzz_$t" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1 "work/$t" 2>&1 | grep -E 'stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY|Done|crash-|leak-|timeout-' ) || true
  # a finding leaves crash-*/leak-*/timeout-* files; make them fail the run
  for f in "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-*; do
    if [ -e "$f" ]; then
      echo "fuzz_$t: FOUND a failing input: $f (reproduce: $dir/fuzz_$t $f)"
      exit 1
    fi
  done
done
echo "fuzz: all targets ran ${secs} s without findings"
