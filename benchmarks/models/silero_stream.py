#!/usr/bin/env python3
"""silero VAD quantized by `kvant quantize`, judged as it is used: streaming.

silero VAD runs one 512-sample chunk at a time (16 kHz, with the previous
chunk's last 64 samples in front, as the package's OnnxWrapper feeds it) and
carries its LSTM state from chunk to chunk; its whole body sits in an If on
the sample rate, so a quantizer that does not enter If branches quantizes
nothing (ONNX Runtime's quantize_static writes no Q/DQ node into it).

Calibration data: the (chunk, state) pairs the FP32 model sees streaming the
calibration clips (7 alsa-utils recordings and 2 espeak-ng sentences).
Evaluation: the held-out clips (2 alsa-utils recordings, 2 other sentences)
streamed through the FP32 and the INT8 file: the speech probability per
chunk, its largest and mean difference from FP32, and how many chunks get
the other speech / non-speech decision at the 0.5 threshold. Both files run
in ONNX Runtime, and `kvant run` must compute what ONNX Runtime computes on
the INT8 file (checked on the evaluation chunks as one batch).

usage: silero_stream.py KVANT_BINARY [--methods minmax,...] [--exclude NODE ...] [--work DIR]
(pip python3: numpy, onnxruntime; espeak-ng and alsa-utils from apt)
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "models", "zoo"))
from silero_vad import read_wav  # noqa: E402

MODEL = os.path.join(ROOT, "models", "cache", "silero_vad", "model.onnx")
ALSA = "/usr/share/sounds/alsa"
CALIB_WAVS = ["Front_Left", "Front_Right", "Rear_Center", "Rear_Right", "Side_Left", "Side_Right", "Noise"]
EVAL_WAVS = ["Front_Center", "Rear_Left"]
CALIB_SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Please call me back after the meeting."]
EVAL_SENTENCES = ["Kvant runs quantized models on every core it can find.", "It is raining again in the city."]
CONTEXT, CHUNK = 64, 512


def clips(wavs, sentences, tmp):
    out = {}
    for w in wavs:
        p = os.path.join(ALSA, w + ".wav")
        if os.path.exists(p):
            out["alsa_" + w.lower()] = read_wav(p)
    for i, s in enumerate(sentences):
        wav = os.path.join(tmp, f"s{i}.wav")
        if subprocess.run(["espeak-ng", "-w", wav, s], capture_output=True).returncode == 0:
            # Half a second of silence on each side: the detector must also turn off.
            pad = np.zeros(8000, np.float32)
            out[f"espeak_{i}"] = np.concatenate([pad, read_wav(wav), pad])
    return out


def stream(session, audio):
    """Probabilities per chunk, and the (input, state) pairs the model saw."""
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros(CONTEXT, np.float32)
    probs, seen = [], []
    for i in range(len(audio) // CHUNK):
        x = np.concatenate([context, audio[i * CHUNK:(i + 1) * CHUNK]])[None, :]
        seen.append((x[0], state[:, 0]))
        p, state = session.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
        probs.append(float(p.reshape(-1)[0]))
        context = x[0, -CONTEXT:]
    return np.array(probs), seen


def main():
    a = argparse.ArgumentParser()
    a.add_argument("kvant")
    a.add_argument("--methods", default="minmax,percentile,entropy,mse")
    a.add_argument("--work", default="")
    a.add_argument("--exclude", action="append", default=[], help="node kept in float (passed to kvant quantize)")
    args = a.parse_args()
    if not os.path.exists(MODEL):
        sys.exit(f"{MODEL} is missing: run models/fetch_zoo")
    work = args.work or tempfile.mkdtemp(prefix="silero_stream_")
    calib_dir = os.path.join(work, "calib")
    os.makedirs(calib_dir, exist_ok=True)
    ort.set_default_logger_severity(3)
    fp32 = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as tmp:
        calib, held_out = clips(CALIB_WAVS, CALIB_SENTENCES, tmp), clips(EVAL_WAVS, EVAL_SENTENCES, tmp)
    pairs = [pair for audio in calib.values() for pair in stream(fp32, audio)[1]]
    np.save(os.path.join(calib_dir, "input.npy"), np.stack([x for x, _ in pairs]))
    np.save(os.path.join(calib_dir, "state.npy"), np.stack([s for _, s in pairs], axis=1))
    np.save(os.path.join(calib_dir, "sr.npy"), np.array(16000, np.int64))
    want = {name: stream(fp32, audio) for name, audio in held_out.items()}
    chunks = sum(len(p) for p, _ in want.values())
    speech = sum(int(np.sum(p >= 0.5)) for p, _ in want.values())
    print(f"calibration: {len(calib)} clips, {len(pairs)} chunks; evaluation: {len(held_out)} clips, {chunks} chunks "
          f"({speech} speech at FP32)")
    print(f"{'method':11s} {'int8 nodes':>10s} {'max |dp|':>9s} {'mean |dp|':>10s} {'decisions':>10s} "
          f"{'kvant vs ort':>13s}")
    failures = []
    for method in args.methods.split(","):
        path = os.path.join(work, f"silero_int8_{method}.onnx")
        excluded = [f for name in args.exclude for f in ("--exclude", name)]
        r = subprocess.run([args.kvant, "quantize", MODEL, "-o", path, "--calib", calib_dir, "--method", method,
                            *excluded], capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"{method}: kvant quantize failed: {r.stderr.strip()}")
            continue
        nodes = next((line.split()[1] for line in r.stdout.splitlines() if line.startswith("static:")), "?")
        int8 = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        worst, total, flips = 0.0, 0.0, 0
        for name, audio in held_out.items():
            p32, seen = want[name]
            p8, _ = stream(int8, audio)
            worst = max(worst, float(np.max(np.abs(p8 - p32))))
            total += float(np.sum(np.abs(p8 - p32)))
            flips += int(np.sum((p8 >= 0.5) != (p32 >= 0.5)))
        # Kvant on the INT8 file, the evaluation chunks of the first clip as one batch.
        p32, seen = next(iter(want.values()))
        feeds = {"input": np.stack([x for x, _ in seen]), "state": np.stack([s for _, s in seen], axis=1),
                 "sr": np.array(16000, np.int64)}
        args_run = [args.kvant, "run", path, "--output-dir", os.path.join(work, "out")]
        for k, v in feeds.items():
            np.save(os.path.join(work, k + ".npy"), v)
            args_run += ["--input", f"{k}={os.path.join(work, k + '.npy')}"]
        r = subprocess.run(args_run, capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"{method}: kvant run failed: {r.stderr.strip()}")
            continue
        ours = np.load(os.path.join(work, "out", "output.npy"))
        parity = float(np.max(np.abs(ours - int8.run(None, feeds)[0])))
        if parity > 1e-5:
            failures.append(f"{method}: kvant and ONNX Runtime differ by {parity:.2e} on the INT8 file")
        print(f"{method:11s} {nodes:>10s} {worst:9.4f} {total / chunks:10.5f} {f'{flips}/{chunks}':>10s} {parity:13.1e}",
              flush=True)
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
