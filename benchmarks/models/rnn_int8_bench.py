#!/usr/bin/env python3
"""Dynamic INT8 recurrent layers, one run per table: single LSTM layers of
speech/text sizes (seeded weights) and the bundled LSTM digits model, each
quantized by ONNX Runtime's quantize_dynamic (DynamicQuantizeLSTM, s8
weights), timed in Kvant and ONNX Runtime on the same file, next to Kvant and
ONNX Runtime FP32 and `kvant run --dynamic-int8` on the FP32 file, at one
thread. Rounds alternate the runners; medians of the rounds' medians.

usage: rnn_int8_bench.py KVANT_BINARY [--rounds 3] [--repeat 30] [--work DIR]
(pip python3: numpy, onnx, onnxruntime)
"""
import argparse
import os
import statistics
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_bench import ROOT, kvant_median, ort_median  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "models"))
from ort_quantize import quantize_dynamic_file  # noqa: E402

ort.set_default_logger_severity(3)

# (label, hidden, input, sequence, batch)
LAYERS = [("lstm h256 seq50 b1", 256, 128, 50, 1), ("lstm h256 seq50 b16", 256, 128, 50, 16),
          ("lstm h512 seq20 b4", 512, 256, 20, 4)]


def lstm_layer(path, hidden, inp, rng):
    w = (rng.standard_normal((1, 4 * hidden, inp)) * 0.1).astype(np.float32)
    r = (rng.standard_normal((1, 4 * hidden, hidden)) * 0.1).astype(np.float32)
    g = helper.make_graph([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=hidden)], "lstm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", inp])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    onnx.save(m, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kvant")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--work", default="")
    a = p.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="rnn_int8_bench_")
    rng = np.random.default_rng(0)
    cases = []
    for label, hidden, inp, seq, batch in LAYERS:
        d = os.path.join(work, label.replace(" ", "_"))
        os.makedirs(d, exist_ok=True)
        lstm_layer(os.path.join(d, "fp32.onnx"), hidden, inp, rng)
        np.save(os.path.join(d, "x.npy"), rng.standard_normal((seq, batch, inp)).astype(np.float32))
        cases.append((label, d, os.path.join(d, "fp32.onnx")))
    d = os.path.join(work, "lstm_digits")
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "rows.npy"), np.load(os.path.join(ROOT, "models", "lstm_digits", "eval_x.npy")))
    cases.append(("lstm_digits b360", d, os.path.join(ROOT, "models", "lstm_digits", "lstm_digits.onnx")))
    print("1 thread, ms (median of rounds); ratios > 1: the first is faster")
    print(f"{'model':22s} {'kvant fp32':>10s} {'ort fp32':>9s} {'kvant int8':>10s} {'ort int8':>9s} "
          f"{'--dyn-int8':>10s} {'int8 vs ort':>11s} {'int8 vs fp32':>12s}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    for label, d, fp32 in cases:
        qpath = os.path.join(d, "dynamic.onnx")
        quantize_dynamic_file(fp32, qpath)
        feeds = {f[:-4]: np.load(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".npy")}
        sessions = {k: ort.InferenceSession(v, so, providers=["CPUExecutionProvider"]) for k, v in
                    (("ort fp32", fp32), ("ort int8", qpath))}
        t = {k: [] for k in ("kvant fp32", "ort fp32", "kvant int8", "ort int8", "dyn")}
        for _ in range(a.rounds):
            t["kvant fp32"].append(kvant_median(a.kvant, fp32, d, 1, a.repeat))
            t["ort fp32"].append(ort_median(sessions["ort fp32"], feeds, a.repeat))
            t["kvant int8"].append(kvant_median(a.kvant, qpath, d, 1, a.repeat))
            t["ort int8"].append(ort_median(sessions["ort int8"], feeds, a.repeat))
            t["dyn"].append(kvant_median(a.kvant, fp32, d, 1, a.repeat, ["--dynamic-int8"]))
        m = {k: statistics.median(v) for k, v in t.items()}
        print(f"{label:22s} {m['kvant fp32']:10.3f} {m['ort fp32']:9.3f} {m['kvant int8']:10.3f} {m['ort int8']:9.3f} "
              f"{m['dyn']:10.3f} {m['ort int8'] / m['kvant int8']:10.2f}x {m['kvant fp32'] / m['kvant int8']:11.2f}x")


if __name__ == "__main__":
    main()
