#!/usr/bin/env python3
"""Writes the small fuzzer seeds in this directory (python3 with pip onnx):
graphs the load-time passes rewrite into fused nodes, so the fuzzer starts
from inputs that reach those kernels.
- conv_chain_f32.onnx: 3x3 conv -> 1x1 expand + Clip -> depthwise 3x3 + Relu
  -> 1x1 project + residual Add (kvant.ConvChainNhwc);
- conv_chain_qlinear.onnx: the same as QOperator QLinearConv nodes and a
  com.microsoft.QLinearAdd residual (kvant.QLinearConvChainNhwc with its
  residual add).
usage: make_seeds.py [OUT_DIR]"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])

    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("w0", w(8, 8, 3, 3)), ("we", w(24, 8, 1, 1)), ("be", w(24)), ("wd", w(24, 1, 3, 3)), ("bd", w(24)),
        ("wp", w(8, 24, 1, 1)), ("lo", np.array(0, np.float32)), ("hi", np.array(6, np.float32))]]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["x0"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x0", "we", "be"], ["e"]),
        helper.make_node("Clip", ["e", "lo", "hi"], ["ea"]),
        helper.make_node("Conv", ["ea", "wd", "bd"], ["d"], group=24, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d"], ["da"]),
        helper.make_node("Conv", ["da", "wp"], ["p"]),
        helper.make_node("Add", ["p", "x0"], ["y"]),
    ]
    save(helper.make_graph(nodes, "chain_f32", [x], [y], inits), os.path.join(out, "conv_chain_f32.onnx"))

    inits = []

    def add(name, array):
        inits.append(numpy_helper.from_array(array, name))

    add("x_s", np.array(2 / 255, np.float32))
    add("x_z", np.array(128, np.uint8))
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["q"])]

    def qconv(inp, scale_of, out_name, cin, cout, k, group=1, pads=None):
        add(out_name + "_w", rng.integers(-100, 100, (cout, cin // group, k, k)).astype(np.int8))
        add(out_name + "_ws", np.full([cout], 0.005, np.float32))
        add(out_name + "_wz", np.zeros([cout], np.int8))
        add(out_name + "_s", np.array(0.05, np.float32))
        add(out_name + "_z", np.array(120, np.uint8))
        add(out_name + "_b", rng.integers(-500, 500, [cout]).astype(np.int32))
        attrs = {"group": group}
        if pads:
            attrs["pads"] = pads
        nodes.append(helper.make_node(
            "QLinearConv", [inp, scale_of + "_s", scale_of + "_z", out_name + "_w", out_name + "_ws", out_name + "_wz",
                            out_name + "_s", out_name + "_z", out_name + "_b"], [out_name], **attrs))

    qconv("q", "x", "a0", 8, 8, 3, pads=[1, 1, 1, 1])
    qconv("a0", "a0", "ae", 8, 24, 1)
    qconv("ae", "ae", "ad", 24, 24, 3, group=24, pads=[1, 1, 1, 1])
    qconv("ad", "ad", "ap", 24, 8, 1)
    add("r_s", np.array(0.07, np.float32))
    add("r_z", np.array(125, np.uint8))
    nodes.append(helper.make_node("QLinearAdd", ["ap", "ap_s", "ap_z", "a0", "a0_s", "a0_z", "r_s", "r_z"], ["r"],
                                  domain="com.microsoft"))
    nodes.append(helper.make_node("DequantizeLinear", ["r", "r_s", "r_z"], ["y"]))
    save(helper.make_graph(nodes, "chain_qlinear", [x], [y], inits), os.path.join(out, "conv_chain_qlinear.onnx"))


if __name__ == "__main__":
    main()
