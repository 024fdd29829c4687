"""Per-node latency of ONNX Runtime (pip) on one model, to set beside
`kvant run MODEL --profile`: median kernel time per node over the runs, in
ms, and the median whole run. Uses python3 (pip onnxruntime, numpy).

usage: ort_profile.py MODEL.onnx NAME=FILE.npy [NAME=FILE.npy ...] [--runs 200] [--threads 1]
"""
import argparse
import collections
import json
import os
import statistics
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("inputs", nargs="+", help="NAME=FILE.npy")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    feeds = {}
    for spec in a.inputs:
        name, _, path = spec.partition("=")
        if not path:
            sys.exit(f"ort_profile: input '{spec}' must be NAME=FILE.npy")
        feeds[name] = np.load(path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    for _ in range(a.runs):
        sess.run(None, feeds)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    per_node = collections.defaultdict(list)
    runs = []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"][: -len("_kernel_time")]].append(e["dur"])
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            runs.append(e["dur"])
    for node, durs in per_node.items():
        print(f"{node:60s} {statistics.median(durs) / 1000:.4f}")
    print(f"model_run median ms {statistics.median(runs) / 1000:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
