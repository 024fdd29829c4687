#!/usr/bin/env python3
"""`kvant bench` on the bundled digits CNN: the JSON against its schema
(tools/bench/bench_schema.json), what each column means (recomputed here
from `kvant run` and `kvant inspect` outputs), a deliberately broken
quantization scoring low, the Markdown table and the SVG chart, and bad
arguments. No timing is asserted; only relations that hold by definition
(p50 <= p90 <= p99, speedup = FP32 p50 / p50, ...).
pip python3: numpy, onnx, onnxruntime, jsonschema.

usage: bench_test.py KVANT_BINARY SOURCE_DIR WORK_DIR
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import jsonschema
import numpy as np
import onnx
from onnx import numpy_helper

kvant, src, work = sys.argv[1:4]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
digits = os.path.join(src, "models", "digits", "digits.onnx")
schema = json.load(open(os.path.join(src, "tools", "bench", "bench_schema.json")))
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def run(*args, want_ok=True):
    p = subprocess.run([kvant, *args], capture_output=True, text=True)
    if want_ok and p.returncode != 0:
        raise SystemExit(f"kvant {' '.join(args)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p


def bench(name, *args):
    out = os.path.join(work, name)
    p = run("bench", *args, "--budget", "0.1", "--min-runs", "3", "--json", out + ".json", "--markdown",
            out + ".md", "--chart", out + ".svg")
    report = json.load(open(out + ".json"))
    jsonschema.validate(report, schema, cls=jsonschema.Draft202012Validator)
    return report, p.stdout, out


# Data: 64 held-out rows as one batch; calibration on the calibration split.
for d, f in (("eval", "eval_x.npy"), ("calib", "calib_x.npy")):
    os.makedirs(os.path.join(work, d))
    x = np.load(os.path.join(src, "models", "digits", f))
    np.save(os.path.join(work, d, "image.npy"), x[:64] if d == "eval" else x)
eval_dir, calib_dir = os.path.join(work, "eval"), os.path.join(work, "calib")

# A good INT8 file and a broken one (every weight scale tripled).
good = os.path.join(work, "good.onnx")
run("quantize", digits, "-o", good, "--calib", calib_dir)
m = onnx.load(good)
weights = {n.input[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
scales = {n.input[1] for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in
          {i.name for i in m.graph.initializer}}
for init in m.graph.initializer:
    if init.name in scales:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3, init.name))
broken = os.path.join(work, "broken.onnx")
onnx.save(m, broken)

# 1. Every column on a run with ONNX Runtime beside, two thread counts.
report, text, out = bench("full", digits, "--data", eval_dir, "--calib", calib_dir, "--batch", "64",
                          "--threads", "1,2", "--vs", "onnxruntime", "--precision", "fp32,bf16,fp16,int8,int8-dynamic")
rows = report["rows"]
ran = [r for r in rows if r["skipped"] is None]
check("schema valid, batch 64, one eval batch", report["batch"] == 64 and report["eval_batches"] == 1)
check("a kvant row per precision and thread count",
      sorted((r["precision"], r["threads"]) for r in rows if r["runtime"] == "kvant") ==
      sorted((p, t) for p in ("fp32", "bf16", "fp16", "int8", "int8-dynamic") for t in (1, 2)))
fp16_rows = [r for r in rows if r["precision"] == "fp16" and r["runtime"] == "kvant"]
check("fp16 rows ran with FP16 weights and keep accuracy (SQNR > 40 dB)",
      all(r["skipped"] is None and r["plan"]["fp16_steps"] > 0 and r["accuracy"]["sqnr_db"] > 40 for r in fp16_rows),
      [(r["skipped"], r["plan"], r["accuracy"]) for r in fp16_rows])
ort_rows = [r for r in rows if r["runtime"] == "onnxruntime"]
check("onnxruntime rows for fp32, fp16 (onnxconverter-common's FP16 model), int8, int8-dynamic ran",
      {(r["precision"], r["threads"]) for r in ort_rows if r["skipped"] is None} ==
      {(p, t) for p in ("fp32", "fp16", "int8", "int8-dynamic") for t in (1, 2)}, ort_rows)
ort_fp16 = next(r for r in ort_rows if r["precision"] == "fp16" and r["threads"] == 1)
check("onnxruntime fp16 row is an FP16 file, accuracy measured against Kvant FP32 (SQNR > 30 dB)",
      ort_fp16["file_bytes"] < os.path.getsize(digits) and ort_fp16["accuracy"]["sqnr_db"] > 30,
      (ort_fp16["file_bytes"], ort_fp16["accuracy"]))
for r in ran:
    lat = r["latency_ms"]
    tag = f'{r["runtime"]} {r["precision"]} x{r["threads"]}'
    check(f"{tag}: min <= p50 <= p90 <= p99, runs >= 3",
          lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] and lat["runs"] >= 3, lat)
    check(f"{tag}: throughput = batch / p50", math.isclose(r["throughput_per_s"], 64e3 / lat["p50"], rel_tol=1e-9))
    base = next(b for b in ran if b["runtime"] == "kvant" and b["precision"] == "fp32" and b["threads"] == r["threads"])
    check(f"{tag}: speedup = FP32 p50 / p50",
          math.isclose(r["speedup_vs_fp32"], base["latency_ms"]["p50"] / lat["p50"], rel_tol=1e-9))
    if r["runtime"] == "kvant":
        peer = [p for p in ort_rows if p["skipped"] is None and p["precision"] == r["precision"] and
                p["threads"] == r["threads"]]
        want = peer[0]["latency_ms"]["p50"] / lat["p50"] if peer else None
        got = r["speedup_vs_onnxruntime"]
        check(f"{tag}: vs ORT = ORT p50 / p50", (got is None and want is None) or
              (got is not None and want is not None and math.isclose(got, want, rel_tol=1e-9)), (got, want))
    check(f"{tag}: peak RSS measured", r["peak_rss_bytes"] is not None and r["peak_rss_bytes"] > 0, r["peak_rss_bytes"])

fp32 = next(r for r in ran if r["runtime"] == "kvant" and r["precision"] == "fp32" and r["threads"] == 1)
check("fp32 row is the reference (no accuracy), its file size is the file's",
      fp32["accuracy"] is None and fp32["file_bytes"] == os.path.getsize(digits))
plan = run("inspect", digits, "--plan", "--shape", "image=64,1,8,8").stdout
arena, weights_b = (int(v) for v in re.search(r"arena (\d+) bytes.*weights (\d+) bytes", plan).groups())
check("arena and weight bytes are the plan's", fp32["arena_bytes"] == arena and fp32["weight_bytes"] == weights_b,
      (fp32["arena_bytes"], arena, fp32["weight_bytes"], weights_b))
int8 = next(r for r in ran if r["runtime"] == "kvant" and r["precision"] == "int8" and r["threads"] == 1)
check("int8 row ran INT8 steps", int8["plan"]["int8_steps"] > 0, int8["plan"])
check("int8 file (quantized on the fly) is smaller than FP32", 0 < int8["file_bytes"] < fp32["file_bytes"])
check("on-the-fly INT8 keeps accuracy (SQNR > 25 dB, top-1 agreement > 95%)",
      int8["accuracy"]["sqnr_db"] > 25 and int8["accuracy"]["top1_agreement"] > 0.95, int8["accuracy"])
ort_fp32 = next(r for r in ort_rows if r["precision"] == "fp32" and r["threads"] == 1)
check("ONNX Runtime FP32 agrees with Kvant FP32 (> 80 dB)",
      ort_fp32["accuracy"]["exact"] or ort_fp32["accuracy"]["sqnr_db"] > 80, ort_fp32["accuracy"])

md = open(out + ".md").read().splitlines()
table = [l for l in md if l.startswith("|")]
check("markdown: header, rule and one line per row that ran", len(table) == 2 + len(ran), len(table))
svg = ET.parse(out + ".svg").getroot()
bars = [e for e in svg.iter("{http://www.w3.org/2000/svg}rect") if e.get("class") == "latency"]
check("chart: valid SVG with one latency bar per row that ran", svg.tag.endswith("svg") and len(bars) == len(ran),
      len(bars))
check("text table lists every row that ran",
      sum(1 for l in text.splitlines() if re.match(r"(kvant|onnxruntime) +\S+ +\d+ +[0-9.]+ ", l)) == len(ran))

# 2. Accuracy columns recomputed from `kvant run` outputs: the broken file scores low.
report, _, _ = bench("broken", digits, "--data", eval_dir, "--batch", "64", "--precision", "fp32,int8",
                     "--int8-model", broken, "--vs", "onnxruntime")
acc = next(r for r in report["rows"] if r["precision"] == "int8" and r["runtime"] == "kvant")["accuracy"]
ort_acc = next(r for r in report["rows"] if r["precision"] == "int8" and r["runtime"] == "onnxruntime")["accuracy"]
check("--int8-model: ONNX Runtime runs the same file (its SQNR within 0.5 dB of ours)",
      abs(ort_acc["sqnr_db"] - acc["sqnr_db"]) < 0.5, (acc, ort_acc))
outs = {}
for name, model in (("fp32", digits), ("int8", broken)):
    d = os.path.join(work, "run_" + name)
    run("run", model, "--input", f"image={eval_dir}/image.npy", "--output-dir", d)
    outs[name] = np.load(os.path.join(d, "logits.npy")).astype(np.float64)
ref, q = outs["fp32"], outs["int8"]
sqnr = 10 * math.log10((ref ** 2).sum() / ((ref - q) ** 2).sum())
cos = (ref * q).sum() / math.sqrt((ref ** 2).sum() * (q ** 2).sum())
top1 = float((ref.argmax(1) == q.argmax(1)).mean())
check("SQNR, cosine and top-1 agreement are those of the outputs",
      math.isclose(acc["sqnr_db"], sqnr, abs_tol=1e-3) and math.isclose(acc["cosine"], cos, abs_tol=1e-6) and
      math.isclose(acc["top1_agreement"], top1), (acc, sqnr, cos, top1))
check("broken quantization shows low SQNR (< 15 dB)", acc["sqnr_db"] < 15, acc)

# 3. An already quantized model: only its int8 row, no reference; random inputs.
report, _, _ = bench("given", good, "--precision", "fp32,int8", "--vs", "onnxruntime")
ran = [r for r in report["rows"] if r["skipped"] is None]
check("quantized MODEL: an int8 row per runtime, no accuracy, a note",
      sorted((r["runtime"], r["precision"]) for r in ran) == [("kvant", "int8"), ("onnxruntime", "int8")] and
      all(r["accuracy"] is None for r in ran) and report["notes"], (ran, report["notes"]))
check("random inputs are named with their seed", "seed 1" in report["inputs"], report["inputs"])

# 4. Bad arguments: a message, exit 1, no crash.
for args, pattern in ((["--precision", "fp8"], "fp8"), (["--device", "cuda"], "CUDA backend"),
                      (["--vs", "tensorflow"], "must be onnxruntime"), (["--threads", "0"], "--threads"),
                      (["--data", os.path.join(work, "missing")], "not a directory")):
    p = run("bench", digits, *args, want_ok=False)
    check(f"bad {' '.join(args)}: exit 1 with a message", p.returncode == 1 and re.search(pattern, p.stderr),
          (p.returncode, p.stderr[-300:]))

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
