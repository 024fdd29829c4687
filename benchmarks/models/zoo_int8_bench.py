#!/usr/bin/env python3
"""INT8 zoo latency, one run per table: each zoo model quantized by ONNX
Runtime's quantizer (CNNs: quantize_static after quant_pre_process, as its
documentation asks, QDQ and QOperator, per-channel s8 weights, u8
activations, calibrated on the model's own inputs; the
transformer: quantize_dynamic, s8 weights) timed in Kvant and in ONNX
Runtime on the same file, next to Kvant FP32 (and Kvant --dynamic-int8 for
the transformer), 1 and 2 threads. Rounds alternate the runners so drift on
a shared machine hits all alike; medians of the rounds' medians.

usage: zoo_int8_bench.py KVANT_BINARY [--threads 1,2] [--rounds 3] [--repeat 20] [--models a,b] [--work DIR]
(pip python3: numpy, onnx, onnxruntime)
"""
import argparse
import glob
import os
import statistics
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_bench import CACHE, ROOT, kvant_median, ort_median  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "models"))
from ort_quantize import quantize_dynamic_file, quantize_static_file  # noqa: E402

ort.set_default_logger_severity(3)
CNNS = {"efficientnet_lite0", "ppocr_cls", "ppocr_det", "ppocr_rec"}


def quantized_files(name, model, case, work):
    """(label, path) of the INT8 files ONNX Runtime's quantizer makes for this model."""
    from onnxruntime.quantization import QuantFormat
    os.makedirs(work, exist_ok=True)
    if name == "minilm":
        path = os.path.join(work, f"{name}_dynamic.onnx")
        if not os.path.exists(path):
            quantize_dynamic_file(model, path)
        return [("ort-dynamic", path)]
    feeds = {os.path.basename(f)[:-4]: np.load(f) for f in sorted(glob.glob(os.path.join(case, "*.npy")))}
    out = []
    for fmt, label in ((QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qoperator")):
        path = os.path.join(work, f"{name}_{label}.onnx")
        if not os.path.exists(path):
            try:
                quantize_static_file(model, path, feeds, fmt, per_channel=True, preprocess=True)
            except Exception:
                continue  # ONNX Runtime's quantizer fails on some graphs
        out.append((label, path))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kvant")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--models", default="")
    p.add_argument("--work", default="/tmp/kvant_zoo_int8")
    a = p.parse_args()
    wanted = set(filter(None, a.models.split(",")))
    print(f"{'model':19s} {'file':12s} {'thr':>3s} {'kvant int8':>10s} {'ort int8':>9s} {'kvant fp32':>10s}"
          f" {'ort/kvant':>9s} {'fp32/int8':>9s}")
    for d in sorted(glob.glob(os.path.join(CACHE, "*"))):
        name = os.path.basename(d)
        if (wanted and name not in wanted) or (name not in CNNS and name != "minilm"):
            continue
        case = sorted(glob.glob(os.path.join(d, "inputs", "*")))[-1 if name == "minilm" else 0]
        feeds = {os.path.basename(f)[:-4]: np.load(f) for f in sorted(glob.glob(os.path.join(case, "*.npy")))}
        model = os.path.join(d, "model.onnx")
        files = quantized_files(name, model, case, a.work)
        if name == "minilm":
            files.append(("kvant-dynamic", model))  # Kvant's own dynamic INT8 of the FP32 file
        for threads in [int(t) for t in a.threads.split(",")]:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sessions = {label: ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                        for label, path in files if label != "kvant-dynamic"}
            times = {label: ([], []) for label, _ in files}
            fp32 = []
            for _ in range(a.rounds):
                fp32.append(kvant_median(a.kvant, model, case, threads, a.repeat))
                for label, path in files:
                    extra = ["--dynamic-int8"] if label == "kvant-dynamic" else []
                    times[label][0].append(kvant_median(a.kvant, path, case, threads, a.repeat, extra))
                    if label in sessions:
                        times[label][1].append(ort_median(sessions[label], feeds, a.repeat))
            f = statistics.median(fp32)
            for label, _ in files:
                k = statistics.median(times[label][0])
                o = statistics.median(times[label][1]) if times[label][1] else float("nan")
                print(f"{name:19s} {label:12s} {threads:3d} {k:10.3f} {o:9.3f} {f:10.3f} {o / k:8.2f}x {f / k:8.2f}x",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
