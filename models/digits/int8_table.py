#!/usr/bin/env python3
"""The quickstart's table: the digits CNN in FP32 and INT8 in Kvant, accuracy
on the held-out split and latency, one run. The INT8 files: Kvant's own
`kvant quantize` (x86 preset: per-channel s8 weights, u8 activations,
calibrated on calib_x.npy; QDQ and QOperator form), and for comparison ONNX
Runtime's quantize_static (QDQ, same scheme and data) and PyTorch's static
quantization (qnnpack, exported by quantize_torch.py under /usr/bin/python3).
pip python3: numpy, onnxruntime.

usage: int8_table.py KVANT_BINARY WORK_DIR
"""
import os
import re
import subprocess
import sys

import numpy as np
from onnxruntime.quantization import QuantFormat

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from ort_quantize import quantize_static_file  # noqa: E402


def run(kvant, model, extra=()):
    out = subprocess.run([kvant, "run", model, "--input", f"image={HERE}/eval_x.npy", "--labels",
                          f"logits={HERE}/eval_y.npy", "--repeat", "50", *extra],
                         capture_output=True, text=True, check=True).stdout
    acc = float(re.search(r"top-1 accuracy of logits: ([0-9.]+)%", out).group(1))
    ms = float(re.search(r"median ([0-9.]+) ms", out).group(1))
    return acc, ms


def main():
    kvant, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    fp32 = os.path.join(HERE, "digits.onnx")
    rows = [("FP32", fp32, ())]
    calib = os.path.join(work, "calib")
    os.makedirs(calib, exist_ok=True)
    np.save(os.path.join(calib, "image.npy"), np.load(os.path.join(HERE, "calib_x.npy")))
    for fmt in ("qdq", "qoperator"):
        path = os.path.join(work, f"digits_kvant_{fmt}.onnx")
        subprocess.run([kvant, "quantize", fp32, "-o", path, "--calib", calib, "--format", fmt], capture_output=True,
                       check=True)
        rows.append((f"INT8 (kvant quantize, {'QDQ' if fmt == 'qdq' else 'QOperator'})", path, ()))
    ort_q = os.path.join(work, "digits_ort_qdq.onnx")
    if not os.path.exists(ort_q):
        quantize_static_file(fp32, ort_q, {"image": np.load(os.path.join(HERE, "calib_x.npy"))}, QuantFormat.QDQ, True)
    rows.append(("INT8 (ONNX Runtime quantizer, QDQ)", ort_q, ()))
    torch_q = os.path.join(work, "digits_qnnpack.onnx")
    if not os.path.exists(torch_q):
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "quantize_torch.py"), work, "qnnpack"],
                       capture_output=True, check=False)
    if os.path.exists(torch_q):
        rows.append(("INT8 (PyTorch qnnpack, QDQ)", torch_q, ()))
    results = [(label, *run(kvant, path, extra)) for label, path, extra in rows]
    base = results[0][2]
    print(f"{'digits CNN, 360 images, 1 thread':36s} {'top-1':>7s} {'latency':>10s} {'vs FP32':>8s}")
    for label, acc, ms in results:
        print(f"{label:36s} {acc:6.2f}% {ms:8.3f} ms {base / ms:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
