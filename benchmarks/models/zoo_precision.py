#!/usr/bin/env python3
"""Zoo precision table: each zoo model under `kvant bench --precision
fp32,bf16,fp16` on its first input case (real data, one sample per run),
with latency against FP32 and the output's agreement with FP32 (SQNR,
cosine, top-1 agreement where the output is a score vector). Models whose
input files do not share a sample axis (silero VAD's state and sample
rate) are listed as skipped. Markdown on stdout.

usage: zoo_precision.py KVANT_BINARY [--threads 1] [--models a,b] [--precisions fp32,bf16,fp16]
(pip python3: no packages beyond the standard library)
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("KVANT_ZOO_DIR", os.path.join(ROOT, "models", "cache"))


def bench(kvant, model, case, threads, precisions):
    """The rows of one `kvant bench --json` run, or (None, error text)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        args = [kvant, "bench", model, "--precision", precisions, "--data", case, "--threads", str(threads),
                "--json", out]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            return None, (r.stderr.strip().splitlines() or ["failed"])[-1]
        with open(out) as f:
            return json.load(f), None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kvant")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default="")
    p.add_argument("--precisions", default="fp32,bf16,fp16")
    a = p.parse_args()
    wanted = set(filter(None, a.models.split(",")))
    print(f"Kvant precisions on the zoo, {a.threads} thread(s), `kvant bench --precision {a.precisions} --data CASE`\n")
    print("| model (case) | precision | p50 ms | vs FP32 | SQNR dB | cosine | top-1 agree | weights MB | kernel path |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in sorted(glob.glob(os.path.join(CACHE, "*"))):
        name = os.path.basename(d)
        if not os.path.exists(os.path.join(d, "MODEL.json")) or (wanted and name not in wanted):
            continue
        case = sorted(glob.glob(os.path.join(d, "inputs", "*")))[0]
        result, error = bench(a.kvant, os.path.join(d, "model.onnx"), case, a.threads, a.precisions)
        label = f"{name} ({os.path.basename(case)})"
        if result is None:
            print(f"| {label} | skipped: {error} | | | | | | | |")
            continue
        for row in result["rows"]:
            if row.get("skipped"):
                print(f"| {label} | {row['precision']}: skipped ({row['skipped']}) | | | | | | | |")
                continue
            acc = row.get("accuracy") or {}
            ref = row["precision"] == "fp32"
            sqnr = "ref" if ref else "exact" if acc.get("exact") else f"{acc.get('sqnr_db', float('nan')):.1f}"
            cosine = "ref" if ref else f"{acc.get('cosine', float('nan')):.5f}"
            top1 = acc.get("top1_agreement")
            top1 = "ref" if ref else ("-" if top1 is None else f"{100 * top1:.1f}%")
            print(f"| {label} | {row['precision']} | {row['latency_ms']['p50']:.3f} | {row['speedup_vs_fp32']:.2f}x "
                  f"| {sqnr} | {cosine} | {top1} | {row['weight_bytes'] / 1e6:.2f} | {row['kernel_path']} |", flush=True)
        for note in result.get("notes", []):
            print(f"|  | note: {note} | | | | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
