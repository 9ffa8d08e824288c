#!/usr/bin/env bash
# Runs the go test benchmarks behind docs/benchmarks.md, 5 times each, and
# prints medians with benchstat. Run it on a quiet machine: nothing else
# heavy. The full comparison table comes from cmd/logx-bench instead.
#   bash scripts/bench.sh [outdir]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
count=${COUNT:-5}
echo "raw results in $out"
# The slog baseline and async Info in one invocation, so their ratio is
# measured on the same machine state.
go test -run '^$' -bench 'BaselineSlogFile|ClusterAsync' -benchtime 200000x -count "$count" . | tee "$out/async.txt"
go test -run '^$' -bench 'ClusterAppend64' -benchtime 50000x -count "$count" . | tee "$out/append64.txt"
go test -run '^$' -bench 'ClusterAppend16' -benchtime 10000x -count "$count" . | tee "$out/append16.txt"
go test -run '^$' -bench 'ClusterAppend1$' -benchtime 3000x -count "$count" . | tee "$out/append1.txt"
# The catch-up (1 GiB copied from a peer) and grep (1 GiB searched) runs take
# about 3 and 2 minutes; EXTRA=1 adds them.
if [ "${EXTRA:-0}" = 1 ]; then
  go test -run '^$' -bench CatchUp -benchtime 1x -count "$count" -timeout 30m . | tee "$out/catchup.txt"
  go test -run '^$' -bench Grep -benchtime 3x -count 3 -timeout 30m . | tee "$out/grep.txt"
fi
benchstat=(go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da)
cat "$out/async.txt" "$out/append64.txt" "$out/append16.txt" "$out/append1.txt" > "$out/all.txt"
"${benchstat[@]}" "$out/all.txt"
