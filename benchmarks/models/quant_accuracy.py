#!/usr/bin/env python3
"""Quantizer accuracy against ONNX Runtime's: every zoo model (and the bundled
digits CNN) quantized by `kvant quantize` and by onnxruntime.quantization's
quantize_static (after its quant_pre_process, which folds BatchNormalization)
with the same calibration data and scheme (QDQ, u8
asymmetric activations, s8 symmetric per-channel weights), for each range
method both have (minmax, percentile, entropy; Kvant's mse alone). Both files
run in ONNX Runtime (so the runtime is the same) and the table gives the
output SQNR against FP32 (dB) and, for classifiers, top-1 agreement with FP32.
Data: the held-out sets of models/zoo/quant_sets.py (calibrate on
quant/calib, evaluate on quant/eval: 64 text lines, 8 pages, 32 photo crops;
made here with /usr/bin/python3 when missing); a model without them
(MiniLM) calibrates and evaluates on its zoo inputs, and the digits CNN on
its own calibration and held-out splits.
A model whose output is a Softmax or Sigmoid also gets the SQNR of that
node's input as each file computes it (the logits, "pre dB"): probabilities
near 0 and 1 hide logit errors, and ONNX Runtime's quantizer quantizes the
probabilities themselves (u8 steps of 1/255), which rounds saturated values
onto the float reference and raises the output SQNR without making the
logits any better (PP-OCR's direction classifier: output 23.6 vs 26.7 dB,
logits 21.1 vs 18.8). With --check, exits 1 when Kvant's SQNR falls more
than 0.5 dB below ORT's for the same method (the logits' where there are).

usage: quant_accuracy.py KVANT_BINARY [--models a,b] [--methods minmax,...] [--work DIR] [--check]
                         [--kvant-args=--bias-correction]
(pip python3: numpy, onnx, onnxruntime)
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, "models", "cache")
sys.path.insert(0, os.path.join(ROOT, "models"))
from ort_quantize import _quiet, quant_preprocess  # noqa: E402

ort.set_default_logger_severity(3)
CLASSIFIERS = {"digits", "efficientnet_lite0", "ppocr_cls"}
# Zoo model -> the input case used both to calibrate and to evaluate.
CASES = {"efficientnet_lite0": "skimage_photos", "ppocr_cls": "rendered_lines_upright_and_flipped",
         "ppocr_rec": "rendered_lines", "ppocr_det": "rendered_page", "minilm": "sentences"}


def sqnr(ref, x):
    noise = float(np.sum((ref.astype(np.float64) - x) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)


def run(path, feeds):
    """The model's first output and, where it comes from a Softmax or Sigmoid
    (through Q/DQ pairs and reshapes), that node's input as this file computes
    it, flattened."""
    m = onnx.load(path)
    producer = {o: n for n in m.graph.node for o in n.output}
    node = producer.get(m.graph.output[0].name)
    while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear", "Reshape", "Flatten", "Identity",
                                                "Squeeze", "Unsqueeze"):
        node = producer.get(node.input[0])
    pre = node.input[0] if node is not None and node.op_type in ("Softmax", "Sigmoid") else None
    if pre is not None:
        m.graph.output.append(onnx.ValueInfoProto(name=pre))
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    return got[0], (got[-1].reshape(-1) if pre is not None else None)


def ort_quantize(model, out, feeds, method):
    from onnxruntime import quantization as q

    class Rows(q.CalibrationDataReader):
        def __init__(self):
            rows = next(iter(feeds.values())).shape[0]
            self.items = iter([{k: v[i:i + 1] for k, v in feeds.items()} for i in range(rows)])

        def get_next(self):
            return next(self.items, None)

    m = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
         "entropy": q.CalibrationMethod.Entropy}[method]
    model = quant_preprocess(model, out + ".preprocessed.onnx")
    _quiet(q.quantize_static, model, out, Rows(), quant_format=q.QuantFormat.QDQ, per_channel=True,
           activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8, calibrate_method=m)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kvant")
    p.add_argument("--models", default="")
    p.add_argument("--methods", default="minmax,percentile,entropy,mse")
    p.add_argument("--work", default="")
    p.add_argument("--check", action="store_true")
    p.add_argument("--kvant-args", default="", help="more flags for kvant quantize (e.g. --bias-correction)")
    a = p.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="quant_accuracy_")
    if os.path.isdir(os.path.join(CACHE, "ppocr_det")) or os.path.isdir(os.path.join(CACHE, "efficientnet_lite0")):
        # (cached unless missing or of an older version)
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "models", "zoo", "quant_sets.py")], check=False)
    models = {"digits": (os.path.join(ROOT, "models", "digits", "digits.onnx"), None)}
    for name, case in CASES.items():
        path = os.path.join(CACHE, name, "model.onnx")
        if os.path.exists(path):
            models[name] = (path, os.path.join(CACHE, name, "inputs", case))
    wanted = set(filter(None, a.models.split(",")))
    failures = []
    print(f"{'model':20s} {'method':11s} {'kvant dB':>9s} {'ort dB':>8s} {'kvant pre':>10s} {'ort pre':>8s} "
          f"{'kvant top1':>10s} {'ort top1':>9s}")
    for name, (model, case) in models.items():
        if wanted and name not in wanted:
            continue
        d = os.path.join(work, name)
        calib = os.path.join(d, "calib")
        os.makedirs(calib, exist_ok=True)
        held_out = os.path.join(CACHE, name, "quant")
        if case is None:  # digits: its own calibration split, evaluated on the held-out one
            cal = {"image": np.load(os.path.join(ROOT, "models", "digits", "calib_x.npy"))}
            feeds = {"image": np.load(os.path.join(ROOT, "models", "digits", "eval_x.npy"))}
        elif os.path.isdir(held_out):
            cal, feeds = ({os.path.basename(f)[:-4]: np.load(f) for f in glob.glob(os.path.join(held_out, split, "*.npy"))}
                          for split in ("calib", "eval"))
        else:
            cal = feeds = {os.path.basename(f)[:-4]: np.load(f) for f in glob.glob(os.path.join(case, "*.npy"))}
        for k, v in cal.items():
            np.save(os.path.join(calib, k + ".npy"), v)
        ref, ref_pre = run(model, feeds)
        for method in a.methods.split(","):
            ours = os.path.join(d, f"kvant_{method}.onnx")
            r = subprocess.run([a.kvant, "quantize", model, "-o", ours, "--calib", calib, "--method", method,
                                *a.kvant_args.split()], capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"{name} {method}: kvant quantize failed: {r.stderr.strip()}")
                continue
            got, got_pre = run(ours, feeds)
            theirs, want, want_pre = os.path.join(d, f"ort_{method}.onnx"), None, None
            if method != "mse":
                try:
                    ort_quantize(model, theirs, cal, method)
                    want, want_pre = run(theirs, feeds)
                except Exception as e:  # ONNX Runtime's quantizer fails on some graphs
                    print(f"  (ONNX Runtime's {method} quantization failed: {str(e)[:80]})")
            k_db, o_db = sqnr(ref, got), (sqnr(ref, want) if want is not None else float("nan"))
            k_pre = sqnr(ref_pre, got_pre) if ref_pre is not None and got_pre is not None else float("nan")
            o_pre = sqnr(ref_pre, want_pre) if ref_pre is not None and want_pre is not None else float("nan")
            top = lambda x: float(np.mean(np.argmax(x.reshape(x.shape[0], -1), 1) == np.argmax(ref.reshape(ref.shape[0], -1), 1)))
            kt = f"{top(got):.3f}" if name in CLASSIFIERS else "-"
            ot = f"{top(want):.3f}" if name in CLASSIFIERS and want is not None else "-"
            print(f"{name:20s} {method:11s} {k_db:9.2f} {o_db:8.2f} {k_pre:10.2f} {o_pre:8.2f} {kt:>10s} {ot:>9s}",
                  flush=True)
            k_cmp, o_cmp = (k_pre, o_pre) if ref_pre is not None else (k_db, o_db)
            if a.check and want is not None and k_cmp < o_cmp - 0.5:
                failures.append(f"{name} {method}: Kvant {k_cmp:.2f} dB < ONNX Runtime {o_cmp:.2f} dB")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
