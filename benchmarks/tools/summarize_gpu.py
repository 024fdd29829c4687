#!/usr/bin/env python3
"""Short table of a gemm_cuda_bench JSON run (median aggregates): per shape
our INT8 and FP16 GEMMs next to cuBLASLt / cuBLAS (ratios of medians), and for
the token shapes the time against the memory-bandwidth floor (compulsory bytes
over the measured device-to-device copy bandwidth). Any python3.

usage: summarize_gpu.py run.json
"""
import collections
import json
import sys


def main():
    data = json.load(open(sys.argv[1]))
    med = {}
    for r in data["benchmarks"]:
        if r.get("aggregate_name", "median") != "median" or r.get("error_occurred"):
            continue
        med[r["run_name"].replace("/manual_time", "")] = r
    copy = med.get("copy/d2d/1GiB", {}).get("GB/s")
    by_shape = collections.defaultdict(dict)
    for name, r in med.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] != "copy":
            by_shape[parts[2]][parts[0] + "/" + parts[1]] = r
    if copy:
        print(f"device-to-device copy: {copy:.0f} GB/s (read + write)")
    direct = sorted(n for n, r in med.items() if not r.get("graph", 1))
    print("timed as CUDA graph replays" + (f", except (direct launches): {', '.join(direct)}" if direct else ""))
    print(f"{'shape MxNxK':18s} {'kvant s8':>11s} {'cuBLASLt':>11s} {'+epilogue':>11s} {'s8 ratio':>9s}"
          f" {'kvant f16':>11s} {'cuBLAS f16':>11s} {'f16 ratio':>9s} {'s8 us':>8s} {'floor us':>9s}")

    def rate(row, key):
        return row[key] if row and key in row else float("nan")

    for shape in sorted(by_shape, key=lambda s: [int(x) for x in s.split("x")]):
        rows = by_shape[shape]
        ks8, lt, lte = (rate(rows.get(k), "TOP/s") for k in ("kvant/s8", "cublaslt/s8s32", "cublaslt/s8s32+epi"))
        kf, cf = (rate(rows.get(k), "TFLOP/s") for k in ("kvant/f16", "cublas/f16"))
        m, n, k = (int(x) for x in shape.split("x"))
        us = rows["kvant/s8"]["us/call"] if "kvant/s8" in rows else float("nan")
        floor = (m * k + n * k + m * n) / (copy * 1e3) if copy else float("nan")
        print(f"{shape:18s} {ks8:9.1f}T {lt:9.1f}T {lte:9.1f}T {ks8 / lte:9.2f} {kf:9.1f}T {cf:9.1f}T "
              f"{kf / cf:9.2f} {us:8.2f} {floor:9.2f}")
    sweep = {n: r for n, r in med.items() if n.startswith("sweep/")}
    if sweep:
        print("token-shape sweep (us):")
        for name in sorted(sweep):
            print(f"  {name:48s} {sweep[name]['us/call']:8.2f}")


if __name__ == "__main__":
    main()
