#!/usr/bin/env python3
"""Quantizer accuracy against ONNX Runtime's: every zoo model (and the bundled
digits CNN) quantized by `kvant quantize` and by onnxruntime.quantization's
quantize_static (after its quant_pre_process, which folds BatchNormalization)
with the same calibration data and scheme (QDQ, u8
asymmetric activations, s8 symmetric per-channel weights), for each range
method both have (minmax, percentile, entropy; Kvant's mse alone). Both files
run in ONNX Runtime (so the runtime is the same) and the table gives the
output SQNR against FP32 (dB) and, for classifiers, top-1 agreement with FP32.
With --check, exits 1 when Kvant's SQNR falls more than 0.5 dB below ORT's
for the same method.

usage: quant_accuracy.py KVANT_BINARY [--models a,b] [--methods minmax,...] [--work DIR] [--check]
(pip python3: numpy, onnx, onnxruntime)
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
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
    a = p.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="quant_accuracy_")
    models = {"digits": (os.path.join(ROOT, "models", "digits", "digits.onnx"), None)}
    for name, case in CASES.items():
        path = os.path.join(CACHE, name, "model.onnx")
        if os.path.exists(path):
            models[name] = (path, os.path.join(CACHE, name, "inputs", case))
    wanted = set(filter(None, a.models.split(",")))
    failures = []
    print(f"{'model':20s} {'method':11s} {'kvant dB':>9s} {'ort dB':>8s} {'kvant top1':>10s} {'ort top1':>9s}")
    for name, (model, case) in models.items():
        if wanted and name not in wanted:
            continue
        d = os.path.join(work, name)
        calib = os.path.join(d, "calib")
        os.makedirs(calib, exist_ok=True)
        if case is None:  # digits: its own calibration split, evaluated on the held-out one
            cal = {"image": np.load(os.path.join(ROOT, "models", "digits", "calib_x.npy"))}
            feeds = {"image": np.load(os.path.join(ROOT, "models", "digits", "eval_x.npy"))}
        else:
            cal = feeds = {os.path.basename(f)[:-4]: np.load(f) for f in glob.glob(os.path.join(case, "*.npy"))}
        for k, v in cal.items():
            np.save(os.path.join(calib, k + ".npy"), v)
        ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        for method in a.methods.split(","):
            ours = os.path.join(d, f"kvant_{method}.onnx")
            r = subprocess.run([a.kvant, "quantize", model, "-o", ours, "--calib", calib, "--method", method],
                               capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"{name} {method}: kvant quantize failed: {r.stderr.strip()}")
                continue
            got = ort.InferenceSession(ours, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
            theirs, want = os.path.join(d, f"ort_{method}.onnx"), None
            if method != "mse":
                try:
                    ort_quantize(model, theirs, cal if case is None else feeds, method)
                    want = ort.InferenceSession(theirs, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
                except Exception as e:  # ONNX Runtime's quantizer fails on some graphs
                    print(f"  (ONNX Runtime's {method} quantization failed: {str(e)[:80]})")
            k_db, o_db = sqnr(ref, got), (sqnr(ref, want) if want is not None else float("nan"))
            top = lambda x: float(np.mean(np.argmax(x.reshape(x.shape[0], -1), 1) == np.argmax(ref.reshape(ref.shape[0], -1), 1)))
            kt = f"{top(got):.3f}" if name in CLASSIFIERS else "-"
            ot = f"{top(want):.3f}" if name in CLASSIFIERS and want is not None else "-"
            print(f"{name:20s} {method:11s} {k_db:9.2f} {o_db:8.2f} {kt:>10s} {ot:>9s}", flush=True)
            if a.check and want is not None and k_db < o_db - 0.5:
                failures.append(f"{name} {method}: Kvant {k_db:.2f} dB < ONNX Runtime {o_db:.2f} dB")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
