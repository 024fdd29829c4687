#!/usr/bin/env python3
"""Summarizes a Google Benchmark JSON run with repetitions: per benchmark the
median and best rate (GFLOP/s or GOP/s), and each kvant row's ratio to the
oneDNN row of the same shape and precision (u8s8 for INT8 rows, f32
otherwise; median over median, best over best).

usage: gemm_f32_bench --benchmark_repetitions=9 --benchmark_enable_random_interleaving=true \
           --benchmark_out=run.json --benchmark_out_format=json && summarize.py run.json
"""
import collections
import json
import statistics
import sys


def main():
    runs = json.load(open(sys.argv[1]))["benchmarks"]
    rates = collections.defaultdict(list)
    for r in runs:
        if r.get("run_type") != "iteration":
            continue
        for counter in ("GFLOP/s", "GOP/s"):
            if counter in r:
                rates[r["run_name"].replace("/real_time", "")].append(r[counter])
    shapes = collections.defaultdict(dict)
    for name, v in rates.items():
        parts = name.split("/", 2)
        lib, impl, shape = parts if len(parts) == 3 else (*parts, "-")
        shapes[shape][f"{lib}/{impl}"] = (statistics.median(v), max(v))
    print(f"{'shape':28s} {'implementation':34s} {'median rate':>15s} {'best':>8s} {'vs oneDNN (median, best)':>26s}")
    for shape, impls in shapes.items():
        for impl, (med, best) in impls.items():
            want = "u8s8" if "_s8" in impl or "u8s8" in impl else "f32"
            base = next((v for k, v in impls.items() if k.startswith("onednn") and want in k), None)
            ratio = f"{med / base[0]:.2f}x, {best / base[1]:.2f}x" if base else ""
            print(f"{shape:28s} {impl:34s} {med:15.1f} {best:8.1f} {ratio:>26s}")


if __name__ == "__main__":
    main()
