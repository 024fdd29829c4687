#!/usr/bin/python3
"""Trains the bundled default model: a small CNN on scikit-learn's 8x8 digits.

Runs under Debian's Python (/usr/bin/python3 with python3-torch and
python3-sklearn). Writes, next to this script:
  digits.onnx        FP32 model, opset 13, input "image" [batch,1,8,8] in [0,1],
                     output "logits" [batch,10]
  eval_x.npy/eval_y.npy   the held-out 20% split (float32 images, int64 labels)
  calib_x.npy        200 training images for calibration
The split and the training are seeded, so reruns give the same files up to
floating-point nondeterminism in training.
"""
import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))


class DigitsNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        c = torch.nn
        self.features = c.Sequential(
            c.Conv2d(1, 16, 3, padding=1), c.BatchNorm2d(16), c.ReLU(),
            c.Conv2d(16, 32, 3, padding=1), c.BatchNorm2d(32), c.ReLU(),
            c.MaxPool2d(2),
            c.Conv2d(32, 64, 3, padding=1), c.BatchNorm2d(64), c.ReLU(),
        )
        self.classifier = c.Sequential(
            c.Flatten(), c.Linear(64 * 4 * 4, 64), c.ReLU(), c.Dropout(0.2), c.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def split():
    """The seeded 80/20 split: x_train, x_eval, y_train, y_eval."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


def train(x_train, y_train, epochs):
    """DigitsNet trained with Adam from seed 0, in eval mode."""
    torch.manual_seed(0)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return model.eval()


def main():
    x_train, x_eval, y_train, y_eval = split()
    model = train(x_train, y_train, 30)
    with torch.no_grad():
        acc = (model(torch.from_numpy(x_eval)).argmax(1).numpy() == y_eval).mean()
    print(f"held-out accuracy (PyTorch): {acc:.4f} on {len(y_eval)} images")
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), os.path.join(HERE, "digits.onnx"),
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=13, do_constant_folding=False)
    np.save(os.path.join(HERE, "eval_x.npy"), x_eval)
    np.save(os.path.join(HERE, "eval_y.npy"), y_eval)
    np.save(os.path.join(HERE, "calib_x.npy"), x_train[:200])
    return 0


if __name__ == "__main__":
    sys.exit(main())
