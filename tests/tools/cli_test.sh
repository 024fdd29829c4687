#!/usr/bin/env bash
# `kvant` on good and bad input: each bad case must exit non-zero with a
# message naming what is wrong, never crash (exit codes >= 128 are signals).
# usage: cli_test.sh KVANT_BINARY SOURCE_DIR WORK_DIR   (needs pip python3 with numpy, onnx)
set -u
kvant=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
digits=$src/models/digits/digits.onnx
pass=0 fail=0

expect() {  # expect NAME WANT_EXIT(0|fail) PATTERN -- command...
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [[ $want == 0 && $rc -ne 0 ]] || [[ $want == fail && ( $rc -eq 0 || $rc -ge 128 ) ]] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name (exit $rc): $out" | head -5
    fail=$((fail + 1))
  else
    echo "ok   $name"
    pass=$((pass + 1))
  fi
}

python3 - "$work" "$src" <<'PY'
import sys, numpy as np, onnx
from onnx import helper, TensorProto
work, src = sys.argv[1], sys.argv[2]
open(f"{work}/garbage.onnx", "wb").write(b"\x00\x01not an onnx model at all\xff" * 10)
data = open(f"{src}/models/digits/digits.onnx", "rb").read()
open(f"{work}/truncated.onnx", "wb").write(data[: len(data) // 3])
g = helper.make_graph([helper.make_node("Det", ["x"], ["y"], name="det_node")], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), f"{work}/unsupported.onnx")
np.save(f"{work}/wrong_shape.npy", np.zeros((2, 1, 7, 8), np.float32))
np.save(f"{work}/wrong_dtype.npy", np.zeros((2, 1, 8, 8), np.float64))
np.save(f"{work}/good.npy", np.load(f"{src}/models/digits/eval_x.npy")[:5])
import os
for d in ("calib", "calib_nan", "calib_wrong"):
    os.makedirs(f"{work}/{d}", exist_ok=True)
calib = np.load(f"{src}/models/digits/calib_x.npy")
np.save(f"{work}/calib/image.npy", calib)
bad = calib.copy(); bad[7, 0, 3, 4] = np.nan
np.save(f"{work}/calib_nan/image.npy", bad)
np.save(f"{work}/calib_wrong/pixels.npy", calib)
PY

expect run_random 0 "seed 42" -- "$kvant" run "$digits" --seed 42 --repeat 3
expect run_npy_writes_output 0 "output logits: f32 \[5,10\]" -- "$kvant" run "$digits" --input image="$work/good.npy" --output-dir "$work/out"
[[ -f $work/out/logits.npy ]] && pass=$((pass + 1)) || { echo "FAIL output file missing"; fail=$((fail + 1)); }
expect malformed fail "garbage.onnx.*ModelProto" -- "$kvant" run "$work/garbage.onnx"
expect truncated fail "truncated.onnx" -- "$kvant" run "$work/truncated.onnx"
expect missing_file fail "no such file" -- "$kvant" run "$work/nope.onnx"
expect unsupported_op fail "Det.*det_node.*opset 13" -- "$kvant" run "$work/unsupported.onnx"
expect wrong_shape fail "input 'image' must have shape \[batch,1,8,8\], got \[2,1,7,8\]" -- "$kvant" run "$digits" --input image="$work/wrong_shape.npy"
expect wrong_dtype fail "input 'image' must be f32, got f64" -- "$kvant" run "$digits" --input image="$work/wrong_dtype.npy"
expect unknown_input fail "input 'pixels' must be one of" -- "$kvant" run "$digits" --input pixels="$work/good.npy"
expect missing_npy fail "no such file" -- "$kvant" run "$digits" --input image="$work/none.npy"
expect inspect_model 0 "operators: Conv x3" -- "$kvant" inspect "$digits"
expect inspect_plan 0 "lower bound" -- "$kvant" inspect "$digits" --plan --shape image=4,1,8,8
expect inspect_hardware 0 "avx2" -- "$kvant" inspect --hardware
expect inspect_hardware_bf16 0 "  bf16   " -- "$kvant" inspect --hardware
expect run_bf16 0 "top-1 accuracy of logits: 9[0-9]" -- "$kvant" run "$digits" --precision bf16 --input image="$src/models/digits/eval_x.npy" --labels logits="$src/models/digits/eval_y.npy"
expect run_fp16 0 "top-1 accuracy of logits: 9[0-9]" -- "$kvant" run "$digits" --precision fp16 --input image="$src/models/digits/eval_x.npy" --labels logits="$src/models/digits/eval_y.npy"
expect inspect_plan_fp16 0 "fp16-weights" -- "$kvant" inspect "$digits" --plan --precision fp16 --shape image=4,1,8,8
expect run_bad_precision fail "precision.*fp8" -- "$kvant" run "$digits" --precision fp8
# The quantizer: digits INT8 within 0.5% top-1 of FP32 on the held-out split.
expect quantize_digits 0 "static: 11 node\(s\) quantized" -- "$kvant" quantize "$digits" -o "$work/digits_int8.onnx" --calib "$work/calib"
fp32_acc=$("$kvant" run "$digits" --input image="$src/models/digits/eval_x.npy" --labels logits="$src/models/digits/eval_y.npy" | sed -n 's/.*accuracy of logits: \([0-9.]*\)%.*/\1/p')
int8_acc=$("$kvant" run "$work/digits_int8.onnx" --input image="$src/models/digits/eval_x.npy" --labels logits="$src/models/digits/eval_y.npy" | sed -n 's/.*accuracy of logits: \([0-9.]*\)%.*/\1/p')
if [[ -n $fp32_acc && -n $int8_acc ]] && python3 -c "import sys; sys.exit(0 if $fp32_acc - $int8_acc <= 0.5 else 1)"; then
  echo "ok   quantized_accuracy (FP32 $fp32_acc%, INT8 $int8_acc%)"; pass=$((pass + 1))
else
  echo "FAIL quantized_accuracy (FP32 '$fp32_acc'%, INT8 '$int8_acc'%)"; fail=$((fail + 1))
fi
expect quantize_plan_is_int8 0 "steps: 5 int8, 0 float, 1 Q/DQ conversions" -- "$kvant" inspect "$work/digits_int8.onnx" --plan
expect quantize_tensorrt 0 "static: 11" -- "$kvant" quantize "$digits" -o "$work/digits_trt.onnx" --calib "$work/calib" --preset tensorrt --method entropy
expect quantize_qoperator 0 "qoperator: 7 group" -- "$kvant" quantize "$digits" -o "$work/digits_qop.onnx" --calib "$work/calib" --format qoperator
expect quantize_qoperator_runs 0 "top-1 accuracy of logits: 9[0-9]" -- "$kvant" run "$work/digits_qop.onnx" --input image="$src/models/digits/eval_x.npy" --labels logits="$src/models/digits/eval_y.npy"
expect quantize_dynamic 0 "dynamic: 2 node" -- "$kvant" quantize "$digits" -o "$work/digits_dyn.onnx" --dynamic
expect quantize_nan fail "calib_nan/image.npy.*must be finite, got nan at element 476 \\(row 7\\)" -- "$kvant" quantize "$digits" -o "$work/x.onnx" --calib "$work/calib_nan"
expect quantize_no_calib fail "needs --calib DIR" -- "$kvant" quantize "$digits" -o "$work/x.onnx"
expect quantize_missing_input fail "input 'image' needs .*calib_wrong/image.npy, which is missing" -- "$kvant" quantize "$digits" -o "$work/x.onnx" --calib "$work/calib_wrong"
expect quantize_bad_method fail "must be minmax, moving-average, percentile, entropy or mse, got 'kl'" -- "$kvant" quantize "$digits" -o "$work/x.onnx" --calib "$work/calib" --method kl
expect quantize_bad_preset fail "--preset must be x86, tensorrt or tflite, got 'arm'" -- "$kvant" quantize "$digits" -o "$work/x.onnx" --calib "$work/calib" --preset arm
python3 -c "import numpy as np; np.save('$work/calib_labels.npy', np.arange(len(np.load('$work/calib/image.npy'))) % 10)"
expect quantize_top1_budget 0 "accuracy budget: top-1 at least" -- "$kvant" quantize "$digits" -o "$work/x.onnx" --calib "$work/calib" --accuracy-budget top1:1 --labels "$work/calib_labels.npy"
expect quantize_top1_needs_labels fail "a top-1 budget needs --labels" -- "$kvant" quantize "$digits" -o "$work/x.onnx" --calib "$work/calib" --accuracy-budget top1:1
expect quantize_bad_budget fail "must be an output SQNR in dB" -- "$kvant" quantize "$digits" -o "$work/x.onnx" --calib "$work/calib" --accuracy-budget lots
expect compare_digits 0 "model outputs: SQNR [0-9]" -- "$kvant" compare "$digits" "$work/digits_int8.onnx" --data "$work/calib" --samples 64 --no-suggest
expect compare_suggests 0 "dB ->.*--method" -- "$kvant" compare "$digits" "$work/digits_int8.onnx" --data "$work/calib" --samples 64 --try-layers 2
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
