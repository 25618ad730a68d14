#!/usr/bin/env bash
# Builds the libFuzzer targets (release, AddressSanitizer, and explicit coverage flags: SwiftPM's
# --sanitize=fuzzer alone sometimes left the library modules uninstrumented, which makes libFuzzer a
# blind random tester; the run now fails when the coverage is missing) and runs each for
# FUZZ_SECONDS (default 30) from
# its committed seed corpus (Fuzz/corpus/NAME). Fails on the first crash, leak of a trap, or timeout;
# the reproducer is left in .build-fuzz-CONFIG/artifacts/NAME/ (turn it into a regression test).
#   scripts/fuzz.sh [NAME...]        (default: all targets)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
# FUZZ_RUNS=N runs each target for N executions instead of a time (the long runs in SECURITY.md).
limit=(-max_total_time="$secs")
[ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(FuzzPatch FuzzBundle FuzzManifest FuzzSemver)
config=${FUZZ_CONFIG:-release}
scratch=.build-fuzz-$config
for t in "${targets[@]}"; do
  swift build -c "$config" --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp --scratch-path "$scratch" --product "$t" 2>&1 \
    | grep -vE "ld.gold: warning|^\[|Compiling|Build of product" || true
done
bin=$(swift build -c "$config" --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp --scratch-path "$scratch" --show-bin-path)
status=0
for t in "${targets[@]}"; do
  work="$scratch/corpus/$t"; art="$scratch/artifacts/$t"
  mkdir -p "$work" "$art"
  echo "== $t: ${limit[*]}"
  if ! "$bin/$t" -seed=1 "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art/" "$work" "Fuzz/corpus/$t" >"$scratch/$t.log" 2>&1; then
    echo "$t FAILED: see $scratch/$t.log and $art/"
    grep -E "ERROR|SUMMARY|Fatal|precondition" "$scratch/$t.log" | head -5 || true
    status=1
  elif ! grep -qE "INITED cov: [0-9]{2,}" "$scratch/$t.log"; then
    # Without coverage feedback the run proves little: treat it as a failure.
    echo "$t: the binary has no coverage instrumentation (INITED line: $(grep INITED "$scratch/$t.log" | head -1)); delete $scratch and rebuild"
    status=1
  else
    grep -E "INITED|stat::number_of_executed_units|Done [0-9]+ runs" "$scratch/$t.log" | tail -3 || true
  fi
done
exit $status
