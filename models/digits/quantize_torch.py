#!/usr/bin/python3
"""PyTorch's own static INT8 quantization of the digits CNN, exported to
ONNX: the QDQ files users bring from PyTorch (eager-mode post-training
quantization: Conv+BatchNorm+ReLU fused, per-channel weights as each
engine's default qconfig chooses, calibrated on calib_x.npy).

Runs under Debian's Python (/usr/bin/python3 with python3-torch and
python3-sklearn). Retrains the network with train.py's definition and seed.

usage: quantize_torch.py OUT_DIR ENGINE...      (ENGINE: qnnpack, onednn)
Writes OUT_DIR/digits_<engine>.onnx (opset 13, input "image" [b,1,8,8],
output "logits").
"""
import copy
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train import split, train  # noqa: E402


class Quantized(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.q = torch.ao.quantization.QuantStub()
        self.net = net
        self.dq = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dq(self.net(self.q(x)))


def main():
    out, engines = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    x_train, _, y_train, _ = split()
    model = train(x_train, y_train, 15)
    calib = torch.from_numpy(np.load(os.path.join(HERE, "calib_x.npy")))
    for engine in engines:
        torch.backends.quantized.engine = engine
        net = copy.deepcopy(model)
        # Conv+BN+ReLU fuse; Linear+ReLU does not (torch 1.13 cannot export quantized::linear_relu).
        torch.ao.quantization.fuse_modules(net.features, [["0", "1", "2"], ["3", "4", "5"], ["7", "8", "9"]],
                                           inplace=True)
        q = Quantized(net).eval()
        q.qconfig = torch.ao.quantization.get_default_qconfig(engine)
        torch.ao.quantization.prepare(q, inplace=True)
        with torch.no_grad():
            q(calib)
        torch.ao.quantization.convert(q, inplace=True)
        torch.onnx.export(q, calib[:1], os.path.join(out, f"digits_{engine}.onnx"), opset_version=13,
                          input_names=["image"], output_names=["logits"], dynamic_axes={"image": {0: "batch"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
