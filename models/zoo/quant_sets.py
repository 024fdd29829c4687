#!/usr/bin/python3
"""Calibration and held-out evaluation sets for the quantizer comparison
(benchmarks/models/quant_accuracy.py): the zoo's own inputs are three or
four samples, too few to tell one quantizer from another (a two-class
softmax over three lines moves by dB when one logit does). Written to
models/cache/<model>/quant/{calib,eval}/<input>.npy, disjoint by content:
  ppocr_rec, ppocr_cls: 64 text lines each (different sentences, the
      DejaVu faces of fonts-dejavu-core, sizes; cls: every other line
      turned 180 degrees);
  ppocr_det: 8 pages of 3 lines each;
  efficientnet_lite0: 32 crops each (calib from 3 of scikit-image's photos,
      eval from 3 others, random 224-pixel crops of the 256-pixel image,
      mirrored at random).
Deterministic (seeded); cached (quant/VERSION in each model's directory)
unless --force. Needs Debian's python3-pil and
python3-skimage: /usr/bin/python3 models/zoo/quant_sets.py [--force]
"""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import common
import ppocr

WORDS = ("invoice total amount paid due date order number customer account balance receipt tax net gross "
         "shipping address phone email street city country quantity price discount item code serial model "
         "version page section chapter table figure note warning error status ready running stopped the of "
         "and to in for with on by from at as quick brown fox jumps over lazy dog kernel tensor runtime").split()
# The six faces of Debian's fonts-dejavu-core (tools/setup installs it).
FACES = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf",
         "DejaVuSansMono-Bold.ttf"]
CALIB_PHOTOS = ["chelsea", "coffee", "astronaut"]
EVAL_PHOTOS = ["rocket", "retina", "immunohistochemistry"]


def sentence(rng):
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(3, 7))]
    if rng.random() < 0.5:
        words.insert(int(rng.integers(0, len(words))), f"{rng.integers(1, 99999):,}.{rng.integers(0, 99):02d}")
    text = " ".join(words)
    return text[0].upper() + text[1:]


def face(rng, size):
    path = os.path.join(ppocr.FONT_DIR, FACES[int(rng.integers(0, len(FACES)))])
    if not os.path.exists(path):
        raise SystemExit(f"quant_sets: {path} is missing (Debian package fonts-dejavu-core)")
    return ImageFont.truetype(path, size)


def line(rng, width):
    size = int(rng.integers(22, 34))
    f = face(rng, size)
    shade = int(rng.integers(0, 80))
    img = Image.new("RGB", (width, 48), tuple(int(v) for v in rng.integers(225, 256, 3)))
    ImageDraw.Draw(img).text((int(rng.integers(2, 12)), int(rng.integers(2, 48 - size))), sentence(rng),
                             fill=(shade, shade, shade), font=f)
    return img


def page(rng):
    img = Image.new("RGB", (640, 320), (250, 248, 240))
    d = ImageDraw.Draw(img)
    for i in range(3):
        d.text((24, 30 + i * 90), sentence(rng), fill=(20, 20, 30), font=face(rng, 30))
    return img


def crops(photos, rng, count):
    import skimage.data
    out = []
    for i in range(count):
        im = Image.fromarray(getattr(skimage.data, photos[i % len(photos)])()).convert("RGB")
        w, h = im.size
        s = 256 / min(w, h)
        im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
        x0, y0 = int(rng.integers(0, im.size[0] - 223)), int(rng.integers(0, im.size[1] - 223))
        im = im.crop((x0, y0, x0 + 224, y0 + 224))
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(((np.asarray(im, np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def save(model, split, arrays):
    d = os.path.join(common.CACHE, model, "quant", split)
    os.makedirs(d, exist_ok=True)
    for k, v in arrays.items():
        np.save(os.path.join(d, k + ".npy"), v)
    with open(os.path.join(common.CACHE, model, "quant", "VERSION"), "w") as f:
        f.write(VERSION + "\n")


VERSION = "2"  # 64 lines, 8 pages, 32 crops per split


def cached():
    dirs = [d for d in ("ppocr_det", "efficientnet_lite0") if os.path.isdir(os.path.join(common.CACHE, d))]
    for d in dirs:
        path = os.path.join(common.CACHE, d, "quant", "VERSION")
        if not os.path.exists(path) or open(path).read().strip() != VERSION:
            return False
    return bool(dirs)


def main():
    if cached() and "--force" not in sys.argv:
        print("quant_sets: cached")
        return 0
    for split, seed in (("calib", 1), ("eval", 2)):
        rng = np.random.default_rng(seed)
        rec = np.stack([ppocr.to_chw(line(rng, 320), [0.5] * 3, [0.5] * 3) for _ in range(64)])
        cls = np.stack([ppocr.to_chw(line(rng, 192).rotate(180 * (i % 2)), [0.5] * 3, [0.5] * 3) for i in range(64)])
        det = np.stack([ppocr.to_chw(page(rng), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) for _ in range(8)])
        photos = crops(CALIB_PHOTOS if split == "calib" else EVAL_PHOTOS, rng, 32)
        if os.path.isdir(os.path.join(common.CACHE, "ppocr_rec")):
            save("ppocr_rec", split, {"x": rec})
            save("ppocr_cls", split, {"x": cls})
            save("ppocr_det", split, {"x": det})
        if os.path.isdir(os.path.join(common.CACHE, "efficientnet_lite0")):
            save("efficientnet_lite0", split, {"image": photos})
    print("quant_sets: calibration and evaluation sets written under", common.CACHE)


if __name__ == "__main__":
    sys.exit(main())
