#!/usr/bin/env python3
"""Every zoo model in models/cache against ONNX Runtime on its real inputs
(pip python3: numpy, onnxruntime). For each output:
    max |kvant - ort| / max |ort|  <=  1e-4
and for classifiers the top-1 agrees. Models not fetched are reported as
skipped; `--require` makes a missing zoo an error.

Dynamic INT8, for the sentence-embedding transformer: the model quantized by
ONNX Runtime's quantize_dynamic (s8 and u8 weights) runs in Kvant (fused into
DynamicQuantizeMatMul) and in ONNX Runtime; the embeddings must agree
(cosine >= 0.99 per sentence: both quantize the activations per call, and
1-ulp float differences flip a few quantized values), and Kvant's own
`--dynamic-int8` (s8 per-column weights) must stay within cosine 0.98 of FP32.

Static INT8, for the CNNs (EfficientNet-Lite0, PP-OCR det/rec/cls): each
model quantized by ONNX Runtime's quantize_static (QOperator and QDQ, per
tensor and per channel; s8 weights, u8 activations, calibrated on the case's
inputs) runs in Kvant and ONNX Runtime; at least 99.9% of the quantized
output elements lie within one quantization step (see STATIC_CNNS), and
classifiers agree on top-1. A failure names the first differing node.

usage: zoo_parity.py KVANT_BINARY WORK_DIR [--require]
"""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import onnxruntime as ort

ort.set_default_logger_severity(3)  # the quantizer and sessions warn about unused initializers

TOL = 1e-4
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "models"))
from ort_quantize import quantize_dynamic_file, quantize_static_file  # noqa: E402
CACHE = os.environ.get("KVANT_ZOO_DIR", os.path.join(ROOT, "models", "cache"))


def safe(name):
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def check(kvant, model_dir, case_dir, work):
    model = os.path.join(model_dir, "model.onnx")
    feeds = {os.path.basename(f)[:-4]: np.load(f) for f in sorted(glob.glob(os.path.join(case_dir, "*.npy")))}
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    out = os.path.join(work, "out")
    args = [kvant, "run", model, "--output-dir", out]
    for k in feeds:
        args += ["--input", f"{k}={os.path.join(case_dir, k + '.npy')}"]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        return [f"kvant failed: {r.stderr.strip()}"], 0.0
    errors, worst = [], 0.0
    for meta, w in zip(sess.get_outputs(), want):
        g = np.load(os.path.join(out, safe(meta.name) + ".npy"))
        if g.shape != w.shape:
            errors.append(f"{meta.name}: shape {g.shape} != {w.shape}")
            continue
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        err = float(np.max(np.abs(g.astype(np.float64) - w))) / scale if scale > 0 else 0.0
        worst = max(worst, err)
        if err > TOL:
            errors.append(f"{meta.name}: error {err:.2e} of scale {scale:.3g} > {TOL}")
    return errors, worst


def cosines(a, b):
    a, b = a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(b.shape[0], -1).astype(np.float64)
    return np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def run_kvant(kvant, model, case_dir, feeds, out, extra=()):
    args = [kvant, "run", model, "--output-dir", out, *extra]
    for k in feeds:
        args += ["--input", f"{k}={os.path.join(case_dir, k + '.npy')}"]
    r = subprocess.run(args, capture_output=True, text=True)
    return r.stderr.strip() if r.returncode != 0 else None


def check_dynamic(kvant, model_dir, case_dir, work):
    """Dynamic INT8 of an embedding model: ONNX Runtime's quantized files and ours."""
    from onnxruntime.quantization import QuantType
    os.makedirs(work, exist_ok=True)
    model = os.path.join(model_dir, "model.onnx")
    feeds = {os.path.basename(f)[:-4]: np.load(f) for f in sorted(glob.glob(os.path.join(case_dir, "*.npy")))}
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = sess.get_outputs()[-1].name
    fp32 = sess.run([name], feeds)[0]
    errors, lines = [], []
    for wt, label in ((QuantType.QInt8, "s8"), (QuantType.QUInt8, "u8")):
        qmodel = os.path.join(work, f"dynamic_{label}.onnx")
        if not os.path.exists(qmodel):
            quantize_dynamic_file(model, qmodel, wt)
        want = ort.InferenceSession(qmodel, providers=["CPUExecutionProvider"]).run([name], feeds)[0]
        out = os.path.join(work, f"out_{label}")
        err = run_kvant(kvant, qmodel, case_dir, feeds, out)
        if err:
            errors.append(f"ORT-quantized ({label} weights): kvant failed: {err}")
            continue
        c = float(np.min(cosines(np.load(os.path.join(out, safe(name) + ".npy")), want)))
        lines.append(f"ORT quantize_dynamic {label}: min cosine kvant/ort {c:.5f}")
        if c < 0.99:
            errors.append(f"ORT-quantized ({label} weights): min cosine to ONNX Runtime {c:.5f} < 0.99")
    out = os.path.join(work, "out_ours")
    err = run_kvant(kvant, model, case_dir, feeds, out, ["--dynamic-int8"])
    if err:
        errors.append(f"--dynamic-int8: kvant failed: {err}")
    else:
        c = float(np.min(cosines(np.load(os.path.join(out, safe(name) + ".npy")), fp32)))
        lines.append(f"--dynamic-int8: min cosine to FP32 {c:.5f}")
        if c < 0.98:
            errors.append(f"--dynamic-int8: min cosine to FP32 {c:.5f} < 0.98")
    return errors, "; ".join(lines)


# Static INT8 checks: the CNNs, and the share of quantized output elements that
# must lie within one quantization step of ONNX Runtime's. PP-OCR's detector
# gets 99.5%: a BatchNormalization between quantized values (ONNX Runtime's
# quantizer leaves it unfolded) multiplies the 1-step differences a
# convolution's rounding may make by up to 5 (see the first differing node
# printed below).
STATIC_CNNS = {"efficientnet_lite0": 0.999, "ppocr_cls": 0.999, "ppocr_rec": 0.999, "ppocr_det": 0.995}
CLASSIFIERS = {"efficientnet_lite0", "ppocr_cls"}


def output_step(model_path, output):
    """The scale of the DequantizeLinear producing `output` (its quantization step)."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(model_path)
    init = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:
        if output in n.output and n.op_type == "DequantizeLinear" and n.input[1] in init:
            return float(numpy_helper.to_array(init[n.input[1]]).ravel()[0])
    return None


def first_differing_node(kvant, qmodel, case_dir, feeds, work):
    """Every QuantizeLinear output exposed: the first more than one step off."""
    import onnx
    from onnx import helper
    m = onnx.load(qmodel)
    qs = [n.output[0] for n in m.graph.node if n.op_type == "QuantizeLinear"]
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_empty_tensor_value_info(q) for q in qs if q not in have)
    path = os.path.join(work, "all_quantized.onnx")
    onnx.save(m, path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    out = os.path.join(work, "all_quantized_out")
    if run_kvant(kvant, path, case_dir, feeds, out):
        return "(could not run the model with every quantized value exposed)"
    producer = {o: n for n in m.graph.node for o in n.output}
    for q in qs:
        got = np.load(os.path.join(out, safe(q) + ".npy")).astype(np.int32)
        bad = np.abs(got - want[q].astype(np.int32)) > 1
        if bad.any():
            src = producer.get(producer[q].input[0])
            return (f"first differing node: {src.op_type if src else '?'} '{src.name if src else q}' "
                    f"({100 * bad.mean():.3f}% of {q} off by more than one step)")
    return "(every quantized value within one step)"


def check_static(kvant, model_dir, case_dir, work):
    """Static INT8 of a CNN quantized by ONNX Runtime (QOperator and QDQ, per tensor and per channel) and by
    `kvant quantize` (QDQ, per channel): Kvant against ONNX Runtime on each file."""
    from onnxruntime.quantization import QuantFormat
    os.makedirs(work, exist_ok=True)
    name = os.path.basename(model_dir)
    model = os.path.join(model_dir, "model.onnx")
    feeds = {os.path.basename(f)[:-4]: np.load(f) for f in sorted(glob.glob(os.path.join(case_dir, "*.npy")))}

    errors, lines = [], []
    variants = [(fmt, label, pc) for fmt, label in ((QuantFormat.QOperator, "qoperator"), (QuantFormat.QDQ, "qdq"))
                for pc in (False, True)] + [(None, "kvant-quantize", True)]
    for fmt, label, per_channel in variants:
        tag = f"{label}/{'per-channel' if per_channel else 'per-tensor'}"
        qmodel = os.path.join(work, f"static_{label}_{'pc' if per_channel else 'pt'}.onnx")
        if fmt is None:  # Kvant's own quantizer, calibrated on the same inputs
            r = subprocess.run([kvant, "quantize", model, "-o", qmodel, "--calib", case_dir], capture_output=True,
                               text=True)
            if r.returncode != 0:
                errors.append(f"{tag}: kvant quantize failed: {r.stderr.strip()}")
                continue
        elif not os.path.exists(qmodel):
            try:
                quantize_static_file(model, qmodel, feeds, fmt, per_channel)
            except Exception as e:  # ONNX Runtime's quantizer fails on some graphs (PP-OCR det/rec QOperator)
                lines.append(f"{tag}: ONNX Runtime's quantizer failed ({type(e).__name__}), skipped")
                continue
        sess = ort.InferenceSession(qmodel, providers=["CPUExecutionProvider"])
        oname = sess.get_outputs()[0].name
        want = sess.run([oname], feeds)[0]
        out = os.path.join(work, f"out_{label}_{'pc' if per_channel else 'pt'}")
        err = run_kvant(kvant, qmodel, case_dir, feeds, out)
        if err:
            errors.append(f"{tag}: kvant failed: {err}")
            continue
        got = np.load(os.path.join(out, safe(oname) + ".npy"))
        step = output_step(qmodel, oname) or 0.01 * float(np.ptp(want))
        within = float(np.mean(np.abs(got.astype(np.float64) - want) <= step * 1.001))
        line = f"{tag}: {100 * within:.3f}% within one step"
        ok = within >= STATIC_CNNS[name]
        if name in CLASSIFIERS:
            same = float(np.mean(got.reshape(got.shape[0], -1).argmax(-1) == want.reshape(want.shape[0], -1).argmax(-1)))
            line += f", top-1 agreement {same:.2f}"
            ok &= same == 1.0
        lines.append(line)
        if not ok:
            errors.append(f"{tag}: {line}; {first_differing_node(kvant, qmodel, case_dir, feeds, out + '_diag')}")
    return errors, "; ".join(lines)


def main():
    kvant, work = sys.argv[1], sys.argv[2]
    models = sorted(d for d in glob.glob(os.path.join(CACHE, "*")) if os.path.exists(os.path.join(d, "MODEL.json")))
    if not models:
        print("zoo: no models fetched (models/fetch_zoo); skipped")
        return 1 if "--require" in sys.argv else 0
    failures = 0
    for d in models:
        for case in sorted(glob.glob(os.path.join(d, "inputs", "*"))):
            name = f"{os.path.basename(d)}/{os.path.basename(case)}"
            errors, worst = check(kvant, d, case, os.path.join(work, safe(name)))
            print(f"{'ok' if not errors else 'FAILED':6s} {name:52s} max error / scale {worst:.2e}")
            for e in errors:
                print("       ", e)
            failures += bool(errors)
            first_case = case == sorted(glob.glob(os.path.join(d, "inputs", "*")))[0]
            key = os.path.basename(d)
            extra = None
            if key == "minilm" and os.path.basename(case) == "sentences":
                extra = ("dynamic int8", check_dynamic)
            elif key in STATIC_CNNS and first_case:
                extra = ("static int8", check_static)
            if extra:
                label, fn = extra
                errors, summary = fn(kvant, d, case, os.path.join(work, safe(name) + "_int8"))
                print(f"{'ok' if not errors else 'FAILED':6s} {name + ' ' + label:52s} {summary}")
                for e in errors:
                    print("       ", e)
                failures += bool(errors)
    print(f"zoo parity: {'all' if not failures else failures} case(s) {'passed' if not failures else 'failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
