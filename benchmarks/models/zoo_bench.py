#!/usr/bin/env python3
"""Zoo model latency: Kvant next to ONNX Runtime (pip), same inputs, same
thread count, in one run. Kvant's median comes from `kvant run --repeat`
(session Run only); ONNX Runtime's from timing session.run the same way.
Each pair is measured alternately in rounds and the medians of all rounds
are reported, so drift on a shared machine hits both alike; "per round" is
the median of the rounds' own ratios (each round's two medians were taken
seconds apart), the steadier number when the machine's speed wanders.

usage: zoo_bench.py KVANT_BINARY [--threads 1,2] [--rounds 3] [--repeat 30] [--models a,b] [--case NAME]
(--case: the input case under models/cache/MODEL/inputs, e.g. sentences for
MiniLM's batch of 6; default the first by name)
"""
import argparse
import glob
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("KVANT_ZOO_DIR", os.path.join(ROOT, "models", "cache"))


def kvant_median(kvant, model, case, threads, repeat, extra=()):
    args = [kvant, "run", model, "--threads", str(threads), "--repeat", str(repeat), *extra]
    for f in sorted(glob.glob(os.path.join(case, "*.npy"))):
        args += ["--input", f"{os.path.basename(f)[:-4]}={f}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"median ([0-9.]+) ms", out).group(1))


def ort_median(sess, feeds, repeat):
    for _ in range(3):
        sess.run(None, feeds)
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        t.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kvant")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--models", default="")
    p.add_argument("--case", default="")
    a = p.parse_args()
    wanted = set(filter(None, a.models.split(",")))
    models = sorted(d for d in glob.glob(os.path.join(CACHE, "*")) if os.path.exists(os.path.join(d, "MODEL.json")))
    print(f"{'model':14s} {'thr':>3s} {'kvant ms':>9s} {'ort ms':>9s} {'kvant/ort':>9s} {'per round':>9s}")
    for d in models:
        name = os.path.basename(d)
        if wanted and name not in wanted:
            continue
        cases = sorted(glob.glob(os.path.join(d, "inputs", "*")))
        named = [c for c in cases if os.path.basename(c) == a.case]
        if a.case and not named:
            continue
        case = named[0] if named else cases[0]
        feeds = {os.path.basename(f)[:-4]: np.load(f) for f in sorted(glob.glob(os.path.join(case, "*.npy")))}
        model = os.path.join(d, "model.onnx")
        for threads in [int(t) for t in a.threads.split(",")]:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            kv, ox = [], []
            for _ in range(a.rounds):
                kv.append(kvant_median(a.kvant, model, case, threads, a.repeat))
                ox.append(ort_median(sess, feeds, a.repeat))
            k, o = statistics.median(kv), statistics.median(ox)
            paired = statistics.median(x / y for x, y in zip(kv, ox))
            print(f"{name:14s} {threads:3d} {k:9.3f} {o:9.3f} {k / o:8.2f}x {paired:8.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
