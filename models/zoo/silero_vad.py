#!/usr/bin/python3
"""silero VAD (pip silero-vad 6.2.3, MIT): voice-activity detection, conv
front end + LSTM. Inputs: input [batch, 512] 16 kHz audio (256 at 8 kHz),
state [2, batch, 128], sr (int64 scalar). Outputs: output [batch, 1] speech
probability, stateN [2, batch, 128].

Real speech: the recordings Debian's alsa-utils ships (/usr/share/sounds/alsa,
a voice naming each speaker channel) and a sentence spoken by espeak-ng,
resampled to 16 kHz; each case is a batch of consecutive 512-sample chunks.
"""
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np

import common

NAME = "silero_vad"


def read_wav(path):
    with wave.open(path) as w:
        rate, n, ch, width = w.getframerate(), w.getnframes(), w.getnchannels(), w.getsampwidth()
        raw = np.frombuffer(w.readframes(n), dtype={1: np.uint8, 2: np.int16, 4: np.int32}[width])
    x = raw.reshape(-1, ch).mean(axis=1).astype(np.float64)
    x /= {1: 128.0, 2: 32768.0, 4: 2147483648.0}[width]
    if width == 1:
        x -= 1.0
    # Linear resampling to 16 kHz (speech content is far below the new Nyquist).
    t = np.arange(0, len(x) / rate, 1 / 16000)
    return np.interp(t, np.arange(len(x)) / rate, x).astype(np.float32)


def chunks(audio, count):
    n = min(count, len(audio) // 512)
    return audio[: n * 512].reshape(n, 512)


def fetch():
    wheel = common.pip_wheel("silero-vad", "6.2.3")
    d = common.model_dir(NAME)
    common.extract(wheel, "silero_vad/data/silero_vad.onnx", os.path.join(d, "model.onnx"))
    cases = {}
    alsa = "/usr/share/sounds/alsa"
    for f in ["Front_Center.wav", "Rear_Left.wav"]:
        p = os.path.join(alsa, f)
        if os.path.exists(p):
            cases["alsa_" + f[:-4].lower()] = read_wav(p)
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "speech.wav")
        if subprocess.run(["espeak-ng", "-w", wav, "Kvant runs quantized models on every core it can find."],
                          capture_output=True).returncode == 0:
            cases["espeak_sentence"] = read_wav(wav)
    if not cases:
        sys.exit("silero_vad: no speech found (apt install alsa-utils espeak-ng)")
    for case, audio in cases.items():
        x = chunks(audio, 16)
        common.save_inputs(NAME, case, {"input": x, "state": np.zeros((2, len(x), 128), np.float32),
                                        "sr": np.array(16000, np.int64)})
    common.write_manifest(NAME, {
        "source": "pip silero-vad==6.2.3, silero_vad/data/silero_vad.onnx", "licence": "MIT",
        "inputs": {"input": "f32 [batch, 512] audio at 16 kHz in [-1, 1]", "state": "f32 [2, batch, 128] LSTM state",
                   "sr": "int64 scalar sample rate (16000 or 8000)"},
        "outputs": {"output": "f32 [batch, 1] speech probability", "stateN": "f32 [2, batch, 128] next state"},
        "data": "alsa-utils recordings and an espeak-ng sentence, 16 consecutive 512-sample chunks each",
    })


if __name__ == "__main__":
    sys.exit(common.main_guard(NAME, fetch))
