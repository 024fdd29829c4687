"""ONNX Runtime beside Kvant in `kvant bench --vs onnxruntime` (pip python3:
numpy, onnxruntime). `kvant bench` embeds this file, writes it next to the
job and runs it; it is not meant to be run by hand.

usage: ort_peer.py JOB.json
       ort_peer.py --rss MODEL THREADS FEED_DIR   (one row's memory, in a fresh process)

The job names the FP32 model, the thread counts and precisions, and a work
directory holding eval/bI/NAME.npy (the evaluation batches; b0 is the timed
input) and calib/bI/NAME.npy (calibration batches). For every precision it
can run, the peer builds the model ONNX Runtime would run (fp32: the file;
int8: quantize_static after quant_pre_process, QDQ, u8 activations, s8
per-channel weights, on the same calibration batches, or the job's int8_model when it names one;
int8-dynamic: quantize_dynamic; fp16: onnxconverter-common's
convert_float_to_float16 with FP32 inputs and outputs, the converter ONNX
Runtime's documentation points to, when pip has it), and for each
thread count loads a session, writes its outputs on the eval batches to
ort/ROW/bI/oK.npy and prints one JSON line about the row. Then {"ready":
true}, and it answers "time ROW K" with {"ms": [K times]} until "quit".
"""
import json
import logging
import os
import sys
import time
import warnings

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static


def batches(work, kind, count, names):
    return [{n: np.load(os.path.join(work, kind, f"b{i}", f"{n}.npy")) for n in names} for i in range(count)]


class Reader(CalibrationDataReader):
    def __init__(self, feeds):
        self.items = iter(feeds)

    def get_next(self):
        return next(self.items, None)


def quiet(fn, *args, **kwargs):
    sys.stdout.flush()
    saved, level = os.dup(1), logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            return fn(*args, **kwargs)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            logging.getLogger().setLevel(level)


def peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return -1


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def make_session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def rss_of_row(path, threads, feed_dir):
    """Peak RSS growth of this fresh process while loading `path` and running it once."""
    feed = {f[:-4]: np.load(os.path.join(feed_dir, f)) for f in os.listdir(feed_dir) if f.endswith(".npy")}
    reset_peak_rss()  # where /proc allows it; a fresh process has had no larger peak anyway
    before = peak_rss()
    make_session(path, threads).run(None, feed)
    return peak_rss() - before


def fresh_process_rss(path, threads, work):
    import subprocess
    out = subprocess.run([sys.executable, __file__, "--rss", path, str(threads), os.path.join(work, "feed")],
                         capture_output=True, text=True)
    try:
        return int(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return -1


def preprocessed(fp32, work):
    """The model after quant_pre_process, which ONNX Runtime's documentation
    asks for before quantize_static (shape inference, graph optimizations
    such as BatchNormalization folded into Conv); retried without symbolic
    shape inference, which fails on some models; the file itself when both
    fail. Below opset 13 the model is converted to 13 first (per-channel QDQ
    needs it, and the quantizer cannot convert the optimizer's output)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process
    out, source = os.path.join(work, "ort_preprocessed.onnx"), fp32
    m = onnx.load(fp32)
    if next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13) < 13:
        source = os.path.join(work, "ort_opset13.onnx")
        onnx.save(version_converter.convert_version(m, 13), source)
    here, source, out = os.getcwd(), os.path.abspath(source), os.path.abspath(out)
    for skip_symbolic_shape in (False, True):
        try:
            # In the work directory: symbolic shape inference leaves
            # sym_shape_infer_temp.onnx in the working directory.
            os.chdir(work)
            quiet(quant_pre_process, source, out, skip_symbolic_shape=skip_symbolic_shape)
            return out
        except Exception:  # noqa: BLE001 - any failure: the next way, then the file itself
            continue
        finally:
            os.chdir(here)
    return fp32


def model_for(job, precision, calib):
    fp32, work = job["model"], job["work"]
    if job.get("model_is_quantized") and precision != "int8":
        return None, "MODEL is quantized; only its int8 row runs"
    if precision == "fp32":
        return fp32, None
    if precision == "int8" and job.get("int8_model"):
        return job["int8_model"], None
    if precision == "int8":
        out = os.path.join(work, "ort_int8_qdq.onnx")
        quiet(quantize_static, preprocessed(fp32, work), out, Reader(calib), quant_format=QuantFormat.QDQ,
              per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return out, None
    if precision == "int8-dynamic":
        out = os.path.join(work, "ort_int8_dynamic.onnx")
        quiet(quantize_dynamic, fp32, out, weight_type=QuantType.QInt8)
        return out, None
    if precision == "fp16":
        try:
            import onnx
            from onnxconverter_common import float16
        except ImportError:
            return None, "pip onnxconverter-common is missing (tools/setup installs it)"
        out = os.path.join(work, "ort_fp16.onnx")
        with warnings.catch_warnings():  # one warning per weight it rounds to 1e-7 or clamps
            warnings.simplefilter("ignore")
            onnx.save(float16.convert_float_to_float16(onnx.load(fp32), keep_io_types=True), out)
        return out, None
    if precision == "bf16":
        return None, "ONNX Runtime's CPU provider has no BF16 matrix products"
    return None, f"no ONNX Runtime counterpart for {precision}"


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    if sys.argv[1] == "--rss":
        print(rss_of_row(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
        return
    with open(sys.argv[1]) as f:
        job = json.load(f)
    work, names = job["work"], job["inputs"]
    evals = batches(work, "eval", job["eval_batches"], names)
    calib = batches(work, "calib", job["calib_batches"], names) if job["calib_batches"] else evals
    sessions = {}
    for precision in job["precisions"]:
        try:
            path, why = model_for(job, precision, calib)
        except Exception as e:  # the quantizer's (or the fp16 converter's) own failure, reported on the row
            tool = "onnxconverter-common's float16 converter" if precision == "fp16" else "ONNX Runtime's quantizer"
            path, why = None, f"{tool} failed: {type(e).__name__}: {e}"
        for threads in job["threads"]:
            row = f"{precision}-{threads}"
            info = {"row": row, "precision": precision, "threads": threads, "skipped": why}
            if path is not None:
                print(f"onnxruntime: loading {precision}, {threads} thread(s)", file=sys.stderr, flush=True)
                try:
                    sess = make_session(path, threads)
                    outs = [sess.run(None, b) for b in evals]
                except Exception as e:
                    info["skipped"] = f"ONNX Runtime failed: {type(e).__name__}: {e}"
                    say(info)
                    continue
                info["peak_rss_bytes"] = fresh_process_rss(path, threads, work)
                for i, out in enumerate(outs):
                    d = os.path.join(work, "ort", row, f"b{i}")
                    os.makedirs(d, exist_ok=True)
                    for k, o in enumerate(out):
                        np.save(os.path.join(d, f"o{k}.npy"), np.asarray(o))
                info.update(file=path, file_bytes=os.path.getsize(path),
                            kernel_path=f"onnxruntime {ort.__version__} CPUExecutionProvider")
                sessions[row] = sess
            say(info)
    say({"ready": True})
    feed = evals[0]
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        sess, k = sessions[parts[1]], int(parts[2])
        ms = []
        for _ in range(k):
            t0 = time.perf_counter()
            sess.run(None, feed)
            ms.append((time.perf_counter() - t0) * 1e3)
        say({"ms": ms})


if __name__ == "__main__":
    main()
