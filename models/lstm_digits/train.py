#!/usr/bin/python3
"""Trains the bundled LSTM classifier: scikit-learn's 8x8 digits read as a
sequence of 8 rows of 8 pixels by a bidirectional LSTM (hidden 32), then a
linear layer over the last step. Debian's python3-torch and python3-sklearn.
Writes lstm_digits.onnx (input "rows" [batch, 8, 8] in [0, 1], output
"logits" [batch, 10]) and eval_x.npy / eval_y.npy, the same held-out 20% split
as models/digits. Seeded.
"""
import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))


class RowLstm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 32, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(64, 10)

    def forward(self, rows):
        out, _ = self.lstm(rows)
        return self.head(out[:, -1, :])


def main():
    torch.manual_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_eval, y_train, y_eval = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    model = RowLstm()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(40):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x_eval)).argmax(1).numpy() == y_eval).mean()
    print(f"held-out accuracy (PyTorch): {acc:.4f} on {len(y_eval)} sequences")
    torch.onnx.export(model, torch.zeros(1, 8, 8), os.path.join(HERE, "lstm_digits.onnx"), input_names=["rows"],
                      output_names=["logits"], dynamic_axes={"rows": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=14)
    np.save(os.path.join(HERE, "eval_x.npy"), x_eval)
    np.save(os.path.join(HERE, "eval_y.npy"), y_eval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
