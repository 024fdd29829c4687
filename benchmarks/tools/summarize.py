#!/usr/bin/env python3
"""Summarizes a Google Benchmark JSON run with repetitions: per benchmark the
median and best GFLOP/s, and each kvant row's ratio to the onednn row of the
same shape (median over median, best over best).

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
        if r.get("run_type") == "iteration" and "GFLOP/s" in r:
            rates[r["run_name"].replace("/real_time", "")].append(r["GFLOP/s"] / 1e0)
    shapes = collections.defaultdict(dict)
    for name, v in rates.items():
        lib, impl, shape = name.split("/", 2)
        shapes[shape][f"{lib}/{impl}"] = (statistics.median(v), max(v))
    print(f"{'shape':28s} {'implementation':34s} {'median GFLOP/s':>15s} {'best':>8s} {'vs oneDNN (median, best)':>26s}")
    for shape, impls in shapes.items():
        base = next((v for k, v in impls.items() if k.startswith("onednn")), None)
        for impl, (med, best) in impls.items():
            ratio = f"{med / base[0]:.2f}x, {best / base[1]:.2f}x" if base else ""
            print(f"{shape:28s} {impl:34s} {med:15.1f} {best:8.1f} {ratio:>26s}")


if __name__ == "__main__":
    main()
