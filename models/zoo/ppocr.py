#!/usr/bin/python3
"""PP-OCRv4 text detector and recogniser and the PP-OCR v2 direction
classifier (pip rapidocr-onnxruntime 1.4.4, Apache-2.0), three models:
  ppocr_det: x [1, 3, H, W] normalized image (H, W multiples of 32)
             -> sigmoid_0.tmp_0 [1, 1, H, W] text probability map
  ppocr_rec: x [batch, 3, 48, W] text-line crops, (x/255 - 0.5) / 0.5
             -> softmax_11.tmp_0 [batch, W/8, 6625] character probabilities
  ppocr_cls: x [batch, 3, 48, 192] text-line crops
             -> save_infer_model/scale_0.tmp_1 [batch, 2] 0/180 degree probabilities
Real inputs: lines of text rendered with Pillow in Debian's DejaVu fonts,
preprocessed as RapidOCR does (det: ImageNet mean/std; rec, cls: +-1).
"""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import common

MEMBERS = {
    "ppocr_det": "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
    "ppocr_rec": "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
    "ppocr_cls": "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
}
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
LINES = ["Kvant runs INT8 and FP16 models", "Invoice 2026-11-26  total 1,234.56 EUR", "The quick brown fox jumps"]


def font(size, bold=False):
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = os.path.join(FONT_DIR, name)
    return ImageFont.truetype(path, size) if os.path.exists(path) else ImageFont.load_default()


def page():
    img = Image.new("RGB", (640, 320), (250, 248, 240))
    d = ImageDraw.Draw(img)
    for i, line in enumerate(LINES):
        d.text((24, 30 + i * 90), line, fill=(20, 20, 30), font=font(34, bold=i == 0))
    return img


def line_crop(text, width):
    img = Image.new("RGB", (width, 48), (255, 255, 255))
    ImageDraw.Draw(img).text((6, 6), text, fill=(0, 0, 0), font=font(30))
    return img


def to_chw(img, mean, std):
    x = np.asarray(img, np.float32) / 255.0
    return ((x - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(2, 0, 1)


def fetch():
    wheel = common.pip_wheel("rapidocr-onnxruntime", "1.4.4")
    for name, member in MEMBERS.items():
        common.extract(wheel, member, os.path.join(common.model_dir(name), "model.onnx"))
    det = to_chw(page(), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])[None]
    common.save_inputs("ppocr_det", "rendered_page", {"x": det})
    rec = np.stack([to_chw(line_crop(t, 320), [0.5] * 3, [0.5] * 3) for t in LINES])
    common.save_inputs("ppocr_rec", "rendered_lines", {"x": rec})
    cls = np.stack([to_chw(line_crop(t, 192).rotate(180 * (i % 2)), [0.5] * 3, [0.5] * 3) for i, t in enumerate(LINES)])
    common.save_inputs("ppocr_cls", "rendered_lines_upright_and_flipped", {"x": cls})
    base = {"source": "pip rapidocr-onnxruntime==1.4.4", "licence": "Apache-2.0",
            "data": "text rendered with Pillow in DejaVu Sans"}
    common.write_manifest("ppocr_det", dict(base, member=MEMBERS["ppocr_det"],
                          inputs={"x": "f32 [1, 3, H, W] image, ImageNet-normalized"},
                          outputs={"sigmoid_0.tmp_0": "f32 [1, 1, H, W] text probability"}))
    common.write_manifest("ppocr_rec", dict(base, member=MEMBERS["ppocr_rec"],
                          inputs={"x": "f32 [batch, 3, 48, 320] text lines in [-1, 1]"},
                          outputs={"softmax_11.tmp_0": "f32 [batch, 40, 6625] character probabilities"}))
    common.write_manifest("ppocr_cls", dict(base, member=MEMBERS["ppocr_cls"],
                          inputs={"x": "f32 [batch, 3, 48, 192] text lines in [-1, 1]"},
                          outputs={"save_infer_model/scale_0.tmp_1": "f32 [batch, 2] 0/180 degree probability"}))


if __name__ == "__main__":
    sys.exit(common.main_guard("ppocr_cls", fetch))
