#!/usr/bin/env bash
# Runs the load+run fuzzer for a bounded time. Seeds: the models in models/,
# small models of graphs the passes rewrite (tests/fuzz/seeds: convolution
# chains in FP32 and QOperator INT8), the inputs that once crashed it
# (tests/fuzz/regressions),
# and the model.onnx of every ONNX backend node test (pip onnx and Debian's
# libonnx-testdata). New inputs the fuzzer finds go to WORK/corpus; crashes
# to WORK/crashes.
# Usage: run_fuzz.sh FUZZER SOURCE_DIR WORK SECONDS [PYTHON]
set -euo pipefail
fuzzer=$1 src=$2 work=$3 seconds=$4 python=${5:-python3}
mkdir -p "$work/corpus" "$work/seeds" "$work/crashes"
if [[ ! -f $work/seeds/.done ]]; then
  for m in "$src"/models/*/*.onnx; do cp "$m" "$work/seeds/$(basename "$(dirname "$m")")_$(basename "$m")"; done
  cp "$src"/tests/fuzz/seeds/*.onnx "$work/seeds/"
  dirs=(/usr/share/libonnx-testdata/data/node)
  pip_dir=$("$python" -c "import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), 'backend/test/data/node'))" 2>/dev/null || true)
  [[ -n $pip_dir ]] && dirs+=("$pip_dir")
  for d in "${dirs[@]}"; do
    [[ -d $d ]] || continue
    for t in "$d"/*/; do
      [[ -f $t/model.onnx ]] && cp "$t/model.onnx" "$work/seeds/$(basename "$t").onnx"
    done
  done
  touch "$work/seeds/.done"
fi
echo "fuzz: $(ls "$work/seeds" | wc -l) seeds, $(ls "$work/corpus" | wc -l) corpus inputs, ${seconds}s"
# -rss_limit_mb bounds memory (an unbounded allocation is a finding);
# -timeout flags any single input that runs longer than 10 s.
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=524288 -print_final_stats=1 \
  -artifact_prefix="$work/crashes/" "$work/corpus" "$work/seeds" "$src/tests/fuzz/regressions"
