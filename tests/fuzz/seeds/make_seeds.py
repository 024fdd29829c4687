#!/usr/bin/env python3
"""Writes the small fuzzer seeds in this directory (python3 with pip onnx):
graphs the load-time passes rewrite into fused nodes, so the fuzzer starts
from inputs that reach those kernels.
- conv_chain_f32.onnx: 3x3 conv -> 1x1 expand + Clip -> depthwise 3x3 + Relu
  -> 1x1 project + residual Add (kvant.ConvChainNhwc);
- conv_chain_qlinear.onnx: the same as QOperator QLinearConv nodes and a
  com.microsoft.QLinearAdd residual (kvant.QLinearConvChainNhwc with its
  residual add);
- if_qdq_conv1d.onnx: an If on an input, a QDQ 1-D convolution in its then
  branch (weights as Constant nodes), a float one in its else branch.
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

    # An If on an input whose then branch is a QDQ 1-D convolution with its
    # weights as Constant nodes (what `kvant quantize` writes for silero VAD).
    def const(name, array):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))

    then_nodes = [
        const("t_s", np.array(0.02, np.float32)), const("t_z", np.array(128, np.uint8)),
        const("t_w", rng.integers(-100, 100, (4, 6, 3)).astype(np.int8)), const("t_ws", np.full([4], 0.01, np.float32)),
        const("t_wz", np.zeros([4], np.int8)), const("t_ys", np.array(0.05, np.float32)),
        const("t_yz", np.array(0, np.uint8)),
        helper.make_node("QuantizeLinear", ["s", "t_s", "t_z"], ["t_q"]),
        helper.make_node("DequantizeLinear", ["t_q", "t_s", "t_z"], ["t_x"]),
        helper.make_node("DequantizeLinear", ["t_w", "t_ws", "t_wz"], ["t_wd"], axis=0),
        helper.make_node("Conv", ["t_x", "t_wd"], ["t_c"], pads=[1, 1]),
        helper.make_node("Relu", ["t_c"], ["t_r"]),
        helper.make_node("QuantizeLinear", ["t_r", "t_ys", "t_yz"], ["t_yq"]),
        helper.make_node("DequantizeLinear", ["t_yq", "t_ys", "t_yz"], ["t_y"]),
    ]
    else_nodes = [const("e_w", w(4, 6, 3)), helper.make_node("Conv", ["s", "e_w"], ["e_y"], pads=[1, 1])]
    out_info = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 10])  # noqa: E731
    branch = helper.make_node("If", ["flag"], ["sy"],
                              then_branch=helper.make_graph(then_nodes, "then", [], [out_info("t_y")]),
                              else_branch=helper.make_graph(else_nodes, "else", [], [out_info("e_y")]))
    inputs = [helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
              helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 6, 10])]
    save(helper.make_graph([branch], "if_qdq_conv1d", inputs, [out_info("sy")]),
         os.path.join(out, "if_qdq_conv1d.onnx"))


if __name__ == "__main__":
    main()
