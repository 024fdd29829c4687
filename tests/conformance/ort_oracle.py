#!/usr/bin/env python3
"""ONNX Runtime as the oracle for whole models (pip python3: numpy, onnx, onnxruntime).

Builds small models with onnx.helper, runs each in ONNX Runtime and through
`kvant run` on the same seeded inputs, and requires
    max |kvant - ort| / max(1, |ort|) <= 1e-4
for every output element. Also runs the bundled digits model, and the digits
model quantized by ONNX Runtime's quantizer (QDQ and QOperator, per tensor and per
channel) and by PyTorch's own static quantization (qnnpack and onednn engines,
exported as QDQ by models/digits/quantize_torch.py under /usr/bin/python3) on
both runtimes. Quantized operators built by hand (com.microsoft
QLinearAveragePool, QDQ ConvTranspose) must match ONNX Runtime within one quantization step; the
LSTM digits model quantized dynamically by ONNX Runtime (DynamicQuantizeLSTM,
DynamicQuantizeMatMul) and by `kvant run --dynamic-int8` must agree with
ONNX Runtime's INT8 and FP32 predictions; files written by `kvant quantize`
(static presets and --dynamic, and a model quantized inside If branches) must
run in ONNX Runtime as they do in Kvant.

usage: ort_oracle.py KVANT_BINARY WORK_DIR
"""
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

TOL = 1e-4


def model(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "oracle", inputs, outputs,
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def cases(rng):
    c = {}
    w = rnd(rng, 16, 3, 3, 3, scale=0.3)
    c["conv_same_upper_relu"] = (model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
         helper.make_node("Relu", ["c"], ["y"])],
        [vi("x", [2, 3, 15, 17])], [vi("y", None)], {"w": w, "b": rnd(rng, 16)}), {"x": rnd(rng, 2, 3, 15, 17)})
    c["conv_depthwise_dilated"] = (model(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=8, dilations=[2, 2], pads=[2, 2, 2, 2])],
        [vi("x", [1, 8, 12, 12])], [vi("y", None)], {"w": rnd(rng, 8, 1, 3, 3)}), {"x": rnd(rng, 1, 8, 12, 12)})
    c["conv1d_grouped"] = (model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], group=2, strides=[3], pads=[1, 2])],
        [vi("x", [2, 6, 31])], [vi("y", None)], {"w": rnd(rng, 4, 3, 5), "b": rnd(rng, 4)}), {"x": rnd(rng, 2, 6, 31)})
    c["conv_bn_clip_pool"] = (model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
         helper.make_node("Clip", ["n", "lo", "hi"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
         helper.make_node("AveragePool", ["p"], ["y"], kernel_shape=[2, 2], pads=[0, 0, 1, 1])],
        [vi("x", [1, 3, 20, 20])], [vi("y", None)],
        {"w": w, "s": rnd(rng, 16), "bb": rnd(rng, 16), "m": rnd(rng, 16),
         "v": np.abs(rnd(rng, 16)) + 0.5, "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}),
        {"x": rnd(rng, 1, 3, 20, 20)})
    c["gemm_trans_alpha_beta"] = (model(
        [helper.make_node("Gemm", ["a", "w", "c"], ["y"], transA=1, transB=1, alpha=0.5, beta=2.0)],
        [vi("a", [33, 7])], [vi("y", None)], {"w": rnd(rng, 45, 33), "c": rnd(rng, 7, 45)}),
        {"a": rnd(rng, 33, 7)})
    # A transformer-style attention block: projections, heads, softmax.
    d, h, s = 32, 4, 9
    c["attention_block"] = (model(
        [helper.make_node("MatMul", ["x", "wq"], ["q0"]), helper.make_node("MatMul", ["x", "wk"], ["k0"]),
         helper.make_node("MatMul", ["x", "wv"], ["v0"]),
         helper.make_node("Reshape", ["q0", "hs"], ["q1"]), helper.make_node("Reshape", ["k0", "hs"], ["k1"]),
         helper.make_node("Reshape", ["v0", "hs"], ["v1"]),
         helper.make_node("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
         helper.make_node("Transpose", ["k1"], ["k"], perm=[0, 2, 3, 1]),
         helper.make_node("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
         helper.make_node("MatMul", ["q", "k"], ["qk"]), helper.make_node("Div", ["qk", "scale"], ["qs"]),
         helper.make_node("Softmax", ["qs"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"]),
         helper.make_node("Transpose", ["o"], ["o1"], perm=[0, 2, 1, 3]),
         helper.make_node("Reshape", ["o1", "flat"], ["o2"]), helper.make_node("MatMul", ["o2", "wo"], ["mo"]),
         helper.make_node("Add", ["mo", "x"], ["res"]), helper.make_node("Erf", ["res"], ["er"]),
         helper.make_node("Mul", ["er", "res"], ["y"])],
        [vi("x", [2, s, d])], [vi("y", None)],
        {"wq": rnd(rng, d, d, scale=0.2), "wk": rnd(rng, d, d, scale=0.2), "wv": rnd(rng, d, d, scale=0.2),
         "wo": rnd(rng, d, d, scale=0.2), "hs": np.array([2, s, h, d // h], np.int64),
         "flat": np.array([2, s, d], np.int64), "scale": np.array(np.sqrt(d // h), np.float32)}),
        {"x": rnd(rng, 2, s, d)})
    c["elementwise_zoo"] = (model(
        [helper.make_node("Sigmoid", ["x"], ["a"]), helper.make_node("HardSwish", ["x"], ["b"]),
         helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("LeakyRelu", ["t"], ["l"], alpha=0.2),
         helper.make_node("Mul", ["a", "b"], ["ab"]), helper.make_node("Sub", ["ab", "l"], ["d"]),
         helper.make_node("HardSigmoid", ["d"], ["hs"], alpha=0.3, beta=0.4),
         helper.make_node("Pow", ["hs", "two"], ["p"]), helper.make_node("Sqrt", ["p"], ["q"]),
         helper.make_node("Exp", ["q"], ["e"]), helper.make_node("Reciprocal", ["e"], ["r"]),
         helper.make_node("Neg", ["r"], ["n"]), helper.make_node("GlobalAveragePool", ["n"], ["g"]),
         helper.make_node("Concat", ["g", "g"], ["cc"], axis=1), helper.make_node("Flatten", ["cc"], ["y"], axis=1)],
        [vi("x", [2, 3, 5, 5])], [vi("y", None)], {"two": np.array([2.0], np.float32)}),
        {"x": rnd(rng, 2, 3, 5, 5)})
    c["slice_gather_squeeze"] = (model(
        [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
         helper.make_node("Gather", ["s", "idx"], ["g"], axis=1),
         helper.make_node("Unsqueeze", ["g", "u"], ["u1"]), helper.make_node("Squeeze", ["u1", "u"], ["y"])],
        [vi("x", [4, 10, 6])], [vi("y", None)],
        {"st": np.array([1, 8], np.int64), "en": np.array([4, 0], np.int64), "ax": np.array([0, 1], np.int64),
         "sp": np.array([1, -2], np.int64), "idx": np.array([[0, 3], [2, 1]], np.int64), "u": np.array([0], np.int64)}),
        {"x": rnd(rng, 4, 10, 6)})
    # Operators of the model-zoo issue, on random inputs with ONNX Runtime as the reference.
    c["reduce_argmax_topk_cumsum"] = (model(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 3], keepdims=1),
         helper.make_node("ReduceMax", ["x"], ["mx"], axes=[2], keepdims=0),
         helper.make_node("ArgMax", ["x"], ["am"], axis=3, keepdims=0),
         helper.make_node("TopK", ["flat", "k"], ["tv", "ti"], axis=-1, largest=1),
         helper.make_node("Reshape", ["x", "fs"], ["flat"]),
         helper.make_node("CumSum", ["mx", "ax"], ["cs"], exclusive=1, reverse=1),
         helper.make_node("Cast", ["am"], ["amf"], to=TensorProto.FLOAT),
         helper.make_node("Cast", ["ti"], ["tif"], to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["tv", "ax1"], ["ts"], keepdims=1)],
        [vi("x", [2, 5, 6, 7])], [vi("m", None), vi("cs", None), vi("amf", None), vi("tif", None), vi("ts", None)],
        {"k": np.array([4], np.int64), "fs": np.array([2, 210], np.int64), "ax": np.array(1, np.int64),
         "ax1": np.array([1], np.int64)}, opset=13),
        {"x": rnd(rng, 2, 5, 6, 7)})
    c["where_compare_expand_tile_pad"] = (model(
        [helper.make_node("Less", ["x", "y"], ["lt"]), helper.make_node("Greater", ["x", "z"], ["gt"]),
         helper.make_node("Or", ["lt", "gt"], ["o"]), helper.make_node("Not", ["o"], ["no"]),
         helper.make_node("Where", ["no", "x", "y"], ["w"]), helper.make_node("Expand", ["z", "es"], ["e"]),
         helper.make_node("Add", ["w", "e"], ["s"]), helper.make_node("Tile", ["s", "reps"], ["t"]),
         helper.make_node("Pad", ["t", "p1"], ["pr"], mode="reflect"),
         helper.make_node("Pad", ["pr", "p2"], ["pe"], mode="edge"),
         helper.make_node("Pad", ["pe", "p3", "cv"], ["y_"], mode="constant")],
        [vi("x", [3, 4]), vi("y", [3, 4]), vi("z", [1, 4])], [vi("y_", None)],
        {"es": np.array([3, 4], np.int64), "reps": np.array([2, 1], np.int64),
         "p1": np.array([1, 2, 1, 0], np.int64), "p2": np.array([0, 1, 2, 1], np.int64),
         "p3": np.array([1, 0, 0, 2], np.int64), "cv": np.array(0.5, np.float32)}, opset=13),
        {"x": rnd(rng, 3, 4), "y": rnd(rng, 3, 4), "z": rnd(rng, 1, 4)})
    c["resize_modes"] = (model(
        [helper.make_node("Resize", ["x", "", "s1"], ["a"], mode="linear", coordinate_transformation_mode="half_pixel"),
         helper.make_node("Resize", ["x", "", "s2"], ["b"], mode="nearest", coordinate_transformation_mode="asymmetric",
                          nearest_mode="floor"),
         helper.make_node("Resize", ["x", "", "", "sz"], ["c"], mode="cubic",
                          coordinate_transformation_mode="align_corners"),
         helper.make_node("Resize", ["x", "", "", "sz2"], ["d"], mode="linear",
                          coordinate_transformation_mode="pytorch_half_pixel")],
        [vi("x", [1, 2, 7, 9])], [vi("a", None), vi("b", None), vi("c", None), vi("d", None)],
        {"s1": np.array([1, 1, 1.5, 0.6], np.float32), "s2": np.array([1, 1, 2, 2], np.float32),
         "sz": np.array([1, 2, 11, 5], np.int64), "sz2": np.array([1, 2, 1, 13], np.int64)}, opset=13),
        {"x": rnd(rng, 1, 2, 7, 9)})
    c["conv_transpose_groups_pads"] = (model(
        [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 3], pads=[1, 0, 0, 1],
                          output_padding=[1, 2], group=2, dilations=[1, 2])],
        [vi("x", [2, 4, 5, 6])], [vi("y", None)], {"w": rnd(rng, 4, 3, 3, 2, scale=0.3), "b": rnd(rng, 6)}),
        {"x": rnd(rng, 2, 4, 5, 6)})
    # Stride = kernel: the patches tile the output (a detector's upsampling head).
    c["conv_transpose_tiles_2x2_groups"] = (model(
        [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], group=2)],
        [vi("x", [2, 4, 5, 7])], [vi("y", None)], {"w": rnd(rng, 4, 3, 2, 2, scale=0.3), "b": rnd(rng, 6)}),
        {"x": rnd(rng, 2, 4, 5, 7)})
    c["conv_transpose_tiles_2x3_1d_3d"] = (model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 3]),
         helper.make_node("ConvTranspose", ["x1", "w1"], ["y1"], strides=[3]),
         helper.make_node("ConvTranspose", ["x3", "w3", "b3"], ["y3"], strides=[1, 2, 2])],
        [vi("x", [1, 3, 4, 6]), vi("x1", [2, 3, 5]), vi("x3", [1, 2, 3, 4, 5])],
        [vi("y", None), vi("y1", None), vi("y3", None)],
        {"w": rnd(rng, 3, 5, 2, 3, scale=0.3), "w1": rnd(rng, 3, 2, 3, scale=0.3),
         "w3": rnd(rng, 2, 3, 1, 2, 2, scale=0.3), "b3": rnd(rng, 3)}),
        {"x": rnd(rng, 1, 3, 4, 6), "x1": rnd(rng, 2, 3, 5), "x3": rnd(rng, 1, 2, 3, 4, 5)})
    hid = 8
    c["lstm_bidirectional_seq_lens"] = (model(
        [helper.make_node("LSTM", ["x", "w", "r", "b", "lens", "h0", "c0", "p"], ["y", "yh", "yc"], hidden_size=hid,
                          direction="bidirectional")],
        [vi("x", [6, 3, 5]), helper.make_tensor_value_info("lens", TensorProto.INT32, [3])],
        [vi("y", None), vi("yh", None), vi("yc", None)],
        {"w": rnd(rng, 2, 4 * hid, 5, scale=0.4), "r": rnd(rng, 2, 4 * hid, hid, scale=0.4),
         "b": rnd(rng, 2, 8 * hid, scale=0.2), "h0": rnd(rng, 2, 3, hid), "c0": rnd(rng, 2, 3, hid),
         "p": rnd(rng, 2, 3 * hid, scale=0.2)}),
        {"x": rnd(rng, 6, 3, 5), "lens": np.array([6, 2, 4], np.int32)})
    c["gru_reverse_and_linear_before_reset"] = (model(
        [helper.make_node("GRU", ["x", "w", "r", "b"], ["y1", "h1"], hidden_size=hid, direction="reverse"),
         helper.make_node("GRU", ["x", "w", "r", "b"], ["y2", "h2"], hidden_size=hid, linear_before_reset=1,
                          layout=0)],
        [vi("x", [5, 2, 4])], [vi("y1", None), vi("h1", None), vi("y2", None), vi("h2", None)],
        {"w": rnd(rng, 1, 3 * hid, 4, scale=0.5), "r": rnd(rng, 1, 3 * hid, hid, scale=0.5),
         "b": rnd(rng, 1, 6 * hid, scale=0.3)}),
        {"x": rnd(rng, 5, 2, 4)})
    c["layer_norm_instance_norm_split"] = (model(
        [helper.make_node("LayerNormalization", ["x", "g", "bt"], ["ln"], axis=-1, epsilon=1e-4),
         helper.make_node("InstanceNormalization", ["x4", "s", "bb"], ["inorm"], epsilon=1e-3),
         helper.make_node("Split", ["ln", "sp"], ["a", "b"], axis=2),
         helper.make_node("Mul", ["a", "b"], ["ab"])],
        [vi("x", [2, 3, 8]), vi("x4", [2, 3, 4, 5])], [vi("ab", None), vi("inorm", None)],
        {"g": rnd(rng, 8), "bt": rnd(rng, 8), "s": rnd(rng, 3), "bb": rnd(rng, 3), "sp": np.array([4, 4], np.int64)},
        opset=17),
        {"x": rnd(rng, 2, 3, 8), "x4": rnd(rng, 2, 3, 4, 5)})
    # Two FP32 convolutions run as kvant.ConvNhwc: SAME_UPPER padding with
    # stride 2, a depthwise SAME_LOWER one, and a channel Concat in NHWC.
    c["conv_nhwc_chain_auto_pad"] = (model(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], auto_pad="SAME_UPPER", strides=[2, 2]),
         helper.make_node("Conv", ["c1", "wd"], ["c2"], auto_pad="SAME_LOWER", group=12),
         helper.make_node("Concat", ["c1", "c2"], ["y"], axis=1)],
        [vi("x", [2, 5, 14, 19])], [vi("y", None)], {"w1": rnd(rng, 12, 5, 3, 3), "wd": rnd(rng, 12, 1, 4, 4)}),
        {"x": rnd(rng, 2, 5, 14, 19)})
    return c


def run_kvant(binary, path, feeds, work):
    args = [binary, "run", path, "--output-dir", os.path.join(work, "out")]
    for name, value in feeds.items():
        f = os.path.join(work, name + ".npy")
        np.save(f, value)
        args += ["--input", f"{name}={f}"]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return os.path.join(work, "out")


def compare(name, binary, path, feeds, work, tol=TOL):
    os.makedirs(work, exist_ok=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    out_dir = run_kvant(binary, path, feeds, work)
    worst = 0.0
    for meta, w in zip(sess.get_outputs(), want):
        got = np.load(os.path.join(out_dir, meta.name + ".npy"))
        if got.shape != w.shape:
            return f"{name}: output {meta.name} shape {got.shape} != {w.shape}"
        if got.dtype != w.dtype:
            return f"{name}: output {meta.name} dtype {got.dtype} != {w.dtype}"
        got, w = got.astype(np.float64), w.astype(np.float64)
        worst = max(worst, float(np.max(np.abs(got - w) / np.maximum(1.0, np.abs(w)))) if w.size else 0.0)
    status = "ok" if worst <= tol else "FAILED"
    print(f"{status:6s} {name:28s} max relative error {worst:.2e}")
    return None if worst <= tol else f"{name}: error {worst:.2e} > {tol}"


def quantized_digits(digits, calib, work, quant_format, per_channel):
    """The digits model quantized by ONNX Runtime's quantizer (u8 activations,
    s8 weights; Conv only for the QOperator form, whose Gemm would become the
    com.microsoft QGemm)."""
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": calib[i:i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self):
            return next(self.batches, None)

    fmt = q.QuantFormat.QDQ if quant_format == "qdq" else q.QuantFormat.QOperator
    path = os.path.join(work, f"digits_{quant_format}_{'pc' if per_channel else 'pt'}.onnx")
    q.quantize_static(digits, path, Reader(), quant_format=fmt, per_channel=per_channel,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      op_types_to_quantize=["Conv"] if quant_format == "qoperator" else None)
    return path


def compare_quantized(name, binary, path, feeds, work):
    """INT8 models: the two runtimes may round a requantization differently
    (ONNX Runtime fuses Q/DQ pairs into integer kernels; Kvant runs a QDQ
    model's float operators on dequantized values), so the logits may differ
    by a few output quantization steps; the predicted class must agree on at
    least 99% of the images."""
    os.makedirs(work, exist_ok=True)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = np.load(os.path.join(run_kvant(binary, path, feeds, work), "logits.npy"))
    diff = float(np.max(np.abs(got - want)))
    spread = float(np.max(want) - np.min(want))
    agree = float(np.mean(np.argmax(got, 1) == np.argmax(want, 1)))
    ok = diff <= 0.05 * spread and agree >= 0.99
    print(f"{'ok' if ok else 'FAILED':6s} {name:28s} max |diff| {diff:.3f} (logit range {spread:.1f}), "
          f"top-1 agreement {agree:.4f}")
    return None if ok else f"{name}: max diff {diff:.3f}, agreement {agree:.4f}"


def qlinear_average_pools(rng):
    """QLinearAveragePool (NCHW and NHWC, padding counted or not, ceil_mode) on u8 and s8."""
    c = {}
    for dtype, zx, zy in ((np.uint8, 131, 118), (np.int8, -7, 3)):
        tp = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
        for channels_last, include_pad, ceil in ((0, 0, 0), (0, 1, 1), (1, 1, 0), (1, 0, 1)):
            shape = [2, 7, 9, 5] if channels_last else [2, 5, 7, 9]
            node = helper.make_node("QLinearAveragePool", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft",
                                    kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 1],
                                    count_include_pad=include_pad, ceil_mode=ceil, channels_last=channels_last)
            g = helper.make_graph([node], "qpool", [helper.make_tensor_value_info("x", tp, shape)],
                                  [helper.make_tensor_value_info("y", tp, None)],
                                  [numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
                                   numpy_helper.from_array(np.array(zx, dtype), "xz"),
                                   numpy_helper.from_array(np.array(0.03, np.float32), "ys"),
                                   numpy_helper.from_array(np.array(zy, dtype), "yz")])
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
            m.ir_version = 8
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max + 1, shape).astype(dtype)
            c[f"qavgpool_{dtype.__name__}_{'nhwc' if channels_last else 'nchw'}_pad{include_pad}_ceil{ceil}"] = (m, {"x": x})
    return c


def qdq_conv_transposes(rng):
    """DQ -> ConvTranspose -> Q (ONNX Runtime's QDQ form, weights per channel along axis 1, int32 bias):
    patches that tile the output (2x2 / 2) and patches that overlap (3x3 / 2, padding, output padding)."""
    c = {}
    for name, cin, cout, attrs in (("tiles", 24, 5, dict(kernel_shape=[2, 2], strides=[2, 2])),
                                   ("overlap", 7, 17, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                            output_padding=[1, 1]))):
        k = attrs["kernel_shape"]
        w = rng.integers(-100, 101, [cin, cout] + k).astype(np.int8)
        ws = rng.uniform(0.003, 0.01, cout).astype(np.float32)
        b = rng.integers(-2000, 2001, cout).astype(np.int32)
        inits = {"xs": np.array(0.04, np.float32), "xz": np.array(118, np.uint8), "w": w, "ws": ws,
                 "wz": np.zeros(cout, np.int8), "b": b, "bs": (0.04 * ws).astype(np.float32),
                 "bz": np.zeros(cout, np.int32), "ys": np.array(0.08, np.float32), "yz": np.array(128, np.uint8)}
        nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=1),
                 helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], axis=0),
                 helper.make_node("ConvTranspose", ["xd", "wd", "bd"], ["t"], **attrs),
                 helper.make_node("QuantizeLinear", ["t", "ys", "yz"], ["y"])]
        shape = [2, cin, 9, 11]
        g = helper.make_graph(nodes, "qct", [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                              [numpy_helper.from_array(v, n) for n, v in inits.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        c[f"qdq_conv_transpose_{name}"] = (m, {"x": rng.integers(0, 256, shape).astype(np.uint8)})
    return c


def compare_bytes(name, binary, path, feeds, work):
    """Quantized outputs: at most one step apart."""
    os.makedirs(work, exist_ok=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)[0]
    got = np.load(os.path.join(run_kvant(binary, path, feeds, work), sess.get_outputs()[0].name + ".npy"))
    if got.shape != want.shape:
        return f"{name}: shape {got.shape} != {want.shape}"
    worst = int(np.max(np.abs(got.astype(np.int32) - want.astype(np.int32))))
    print(f"{'ok' if worst <= 1 else 'FAILED':6s} {name:28s} max difference {worst} step(s)")
    return None if worst <= 1 else f"{name}: {worst} steps from ONNX Runtime"


def compare_lstm_logits(name, binary, path, rows, work):
    """An INT8 LSTM digits file on both runtimes: logits within 2% of their
    range and the same class on 99% of the rows."""
    os.makedirs(work, exist_ok=True)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"rows": rows})[0]
    got = np.load(os.path.join(run_kvant(binary, path, {"rows": rows}, work), "logits.npy"))
    diff, spread = float(np.max(np.abs(got - want))), float(np.max(want) - np.min(want))
    agree = float(np.mean(np.argmax(got, 1) == np.argmax(want, 1)))
    ok = diff <= 0.02 * spread and agree >= 0.99
    print(f"{'ok' if ok else 'FAILED':6s} {name:28s} max |diff| {diff:.3f} (logit range {spread:.1f}), "
          f"top-1 agreement {agree:.4f}")
    return None if ok else f"{name}: max diff {diff:.3f}, agreement {agree:.4f}"


def dynamic_lstm(binary, root, work):
    """The LSTM digits model with INT8 weights: ONNX Runtime's quantize_dynamic
    file on both runtimes (logits within 2% of their range, the same class on
    99% of the rows), and `kvant run --dynamic-int8` on the FP32 file (the
    same class as FP32 on 99%)."""
    sys.path.insert(0, os.path.join(root, "models"))
    from ort_quantize import quantize_dynamic_file
    lstm = os.path.join(root, "models", "lstm_digits", "lstm_digits.onnx")
    rows = np.load(os.path.join(root, "models", "lstm_digits", "eval_x.npy"))
    os.makedirs(os.path.join(work, "ort_file"), exist_ok=True)
    qpath = os.path.join(work, "lstm_digits_dynamic.onnx")
    quantize_dynamic_file(lstm, qpath)
    if "DynamicQuantizeLSTM" not in {n.op_type for n in onnx.load(qpath).graph.node}:
        return ["lstm_digits_dynamic: ONNX Runtime's quantizer made no DynamicQuantizeLSTM"]
    err = compare_lstm_logits("lstm_digits_dynamic_ort", binary, qpath, rows, os.path.join(work, "ort_file"))
    errors = [err] if err else []
    fp32 = ort.InferenceSession(lstm, providers=["CPUExecutionProvider"]).run(None, {"rows": rows})[0]
    args = [binary, "run", lstm, "--dynamic-int8", "--input", f"rows={os.path.join(work, 'ort_file', 'rows.npy')}",
            "--output-dir", os.path.join(work, "ours")]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        return errors + [f"lstm_digits --dynamic-int8: {r.stderr.strip()}"]
    ours = np.load(os.path.join(work, "ours", "logits.npy"))
    agree = float(np.mean(np.argmax(ours, 1) == np.argmax(fp32, 1)))
    print(f"{'ok' if agree >= 0.99 else 'FAILED':6s} {'lstm_digits --dynamic-int8':28s} top-1 agreement with FP32 "
          f"{agree:.4f}")
    if agree < 0.99:
        errors.append(f"lstm_digits --dynamic-int8: agreement with FP32 {agree:.4f}")
    return errors


def kvant_quantized(binary, root, work):
    """Models quantized by `kvant quantize` run in ONNX Runtime as in Kvant:
    the digits CNN (x86 min-max, tensorrt entropy, per-tensor percentile, QOperator
    form with u8 and s8 activations) and
    the LSTM digits model with --dynamic."""
    errors = []
    digits = os.path.join(root, "models", "digits", "digits.onnx")
    x = np.load(os.path.join(root, "models", "digits", "eval_x.npy"))
    calib = os.path.join(work, "calib")
    os.makedirs(calib, exist_ok=True)
    np.save(os.path.join(calib, "image.npy"), np.load(os.path.join(root, "models", "digits", "calib_x.npy")))
    for label, flags in (("x86_minmax", []), ("tensorrt_entropy", ["--preset", "tensorrt", "--method", "entropy"]),
                         ("per_tensor_percentile", ["--per-tensor", "--method", "percentile"]),
                         ("x86_qoperator", ["--format", "qoperator"]),
                         ("tflite_qoperator", ["--preset", "tflite", "--format", "qoperator"])):
        path = os.path.join(work, f"digits_kvant_{label}.onnx")
        r = subprocess.run([binary, "quantize", digits, "-o", path, "--calib", calib, *flags], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(f"kvant quantize {label}: {r.stderr.strip()}")
            continue
        err = compare_quantized(f"digits_kvant_{label}", binary, path, {"image": x}, os.path.join(work, label))
        if err:
            errors.append(err)
    lstm = os.path.join(root, "models", "lstm_digits", "lstm_digits.onnx")
    rows = np.load(os.path.join(root, "models", "lstm_digits", "eval_x.npy"))
    path = os.path.join(work, "lstm_digits_kvant_dynamic.onnx")
    r = subprocess.run([binary, "quantize", lstm, "-o", path, "--dynamic"], capture_output=True, text=True)
    if r.returncode != 0:
        return errors + [f"kvant quantize --dynamic lstm_digits: {r.stderr.strip()}"]
    err = compare_lstm_logits("lstm_digits_kvant_dynamic", binary, path, rows, os.path.join(work, "lstm"))
    return errors + ([err] if err else [])


def if_model(rng):
    """silero VAD's shape in small: the whole model in an If on an input, weights
    as Constant nodes inside the branches, 1-D convolutions, and a nested If
    reading the outer branch's values."""
    def const(name, value):
        return helper.make_node("Constant", [], [name], name=name + "_node", value=numpy_helper.from_array(value, name))

    def branch(name, nodes, output):
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)])

    inner_then = branch("inner_then", [const("w3", rnd(rng, 4, 8, 1, scale=0.3)),
                                       helper.make_node("Conv", ["r1", "w3"], ["i1"], name="conv3")], "i1")
    inner_else = branch("inner_else", [const("w4", rnd(rng, 4, 8, 3, scale=0.3)),
                                       helper.make_node("Conv", ["r1", "w4"], ["i2"], name="conv4", pads=[1, 1])], "i2")
    then = branch("then", [
        const("w1", rnd(rng, 8, 6, 3, scale=0.3)), const("b1", rnd(rng, 8, scale=0.1)),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("If", ["flag"], ["io"], name="inner", then_branch=inner_then, else_branch=inner_else),
        helper.make_node("Relu", ["io"], ["t_out"], name="relu2")], "t_out")
    other = branch("else", [const("w2", rnd(rng, 4, 6, 3, scale=0.3)),
                            helper.make_node("Conv", ["x", "w2"], ["e_out"], name="conv2", pads=[1, 1])], "e_out")
    m = model([helper.make_node("If", ["flag"], ["y"], name="outer", then_branch=then, else_branch=other)],
              [helper.make_tensor_value_info("flag", TensorProto.BOOL, []), vi("x", [2, 6, 10])], [vi("y", None)], {})
    return m


def kvant_quantized_if(binary, rng, work):
    """An If model quantized by `kvant quantize` (QDQ and QOperator forms) with
    calibration data that takes the then branches: ONNX Runtime computes what
    Kvant does on both conditions (the branches not taken stay float)."""
    os.makedirs(os.path.join(work, "calib"), exist_ok=True)
    src = os.path.join(work, "if.onnx")
    onnx.save(if_model(rng), src)
    np.save(os.path.join(work, "calib", "x.npy"), rnd(rng, 16, 6, 10))
    np.save(os.path.join(work, "calib", "flag.npy"), np.array(True))
    errors = []
    for fmt in ("qdq", "qoperator"):
        path = os.path.join(work, f"if_int8_{fmt}.onnx")
        r = subprocess.run([binary, "quantize", src, "-o", path, "--calib", os.path.join(work, "calib"), "--format", fmt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(f"kvant quantize if_model --format {fmt}: {r.stderr.strip()}")
            continue
        if "kept in float" not in r.stdout:
            errors.append(f"kvant quantize if_model: no branch reported float: {r.stdout.strip()}")
        for flag in (True, False):
            feeds = {"flag": np.array(flag), "x": rnd(rng, 2, 6, 10)}
            # One output quantization step (the output's range is about 4, 255 steps).
            err = compare(f"if_kvant_{fmt}_{'then' if flag else 'else'}", binary, path, feeds,
                          os.path.join(work, f"{fmt}_{flag}"), tol=0.02)
            if err:
                errors.append(err)
    return errors


def to_fp16(m):
    """Every float tensor of `m` (weights, inputs, outputs) as float16."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    for i, t in enumerate(m.graph.initializer):
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(a.astype(np.float16), t.name))
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.FLOAT16
    return m


def fp16_models(binary, root, x, rng, work):
    """Models stored in float16 (Kvant computes them in FP32 between casts,
    as ONNX Runtime's CPU provider does around its FP32 kernels): the digits
    CNN converted, and a hand-built graph with a Cast to float16 inside, an
    f16 ConstantOfShape and a float32 output beside a float16 one. Outputs
    must agree within two float16 steps."""
    os.makedirs(work, exist_ok=True)
    failures = []
    digits16 = os.path.join(work, "digits_f16.onnx")
    onnx.save(to_fp16(onnx.load(os.path.join(root, "models", "digits", "digits.onnx"))), digits16)
    err = compare("digits_fp16", binary, digits16, {"image": x.astype(np.float16)}, os.path.join(work, "digits"),
                  tol=2e-3)
    if err:
        failures.append(err)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("ConstantOfShape", ["shape"], ["ones"],
                         value=numpy_helper.from_array(np.array([0.5], np.float16))),
        helper.make_node("Add", ["h", "ones"], ["a"]),
        helper.make_node("Softmax", ["a"], ["p"], axis=-1),
        helper.make_node("Cast", ["p"], ["y32"], to=TensorProto.FLOAT),
        helper.make_node("Relu", ["y32"], ["r32"]),
        helper.make_node("Cast", ["r32"], ["y16"], to=TensorProto.FLOAT16),
    ]
    m = model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [3, 8])],
              [helper.make_tensor_value_info("y16", TensorProto.FLOAT16, [3, 5]),
               helper.make_tensor_value_info("y32", TensorProto.FLOAT, [3, 5])],
              {"w": rnd(rng, 8, 5).astype(np.float16), "shape": np.array([3, 5], np.int64)})
    path = os.path.join(work, "mixed_f16.onnx")
    onnx.save(m, path)
    err = compare("mixed_fp16_graph", binary, path, {"x": rnd(rng, 3, 8).astype(np.float16)},
                  os.path.join(work, "mixed"), tol=2e-3)
    if err:
        failures.append(err)
    return failures


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(1234)
    failures = []
    for name, (m, feeds) in cases(rng).items():
        path = os.path.join(work, name + ".onnx")
        onnx.save(m, path)
        err = compare(name, binary, path, feeds, os.path.join(work, name))
        if err:
            failures.append(err)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    digits = os.path.join(root, "models", "digits", "digits.onnx")
    x = np.load(os.path.join(root, "models", "digits", "eval_x.npy"))
    err = compare("digits_eval", binary, digits, {"image": x}, os.path.join(work, "digits"))
    if err:
        failures.append(err)
    calib = np.load(os.path.join(root, "models", "digits", "calib_x.npy"))
    for fmt in ("qdq", "qoperator"):
        for per_channel in (False, True):
            qpath = quantized_digits(digits, calib, work, fmt, per_channel)
            name = f"digits_{fmt}_{'per_channel' if per_channel else 'per_tensor'}"
            err = compare_quantized(name, binary, qpath, {"image": x}, os.path.join(work, name))
            if err:
                failures.append(err)
    # PyTorch's own static quantization (qnnpack and onednn engines), exported
    # as QDQ by Debian's python3-torch (tools/setup installs it).
    torch_dir = os.path.join(work, "torch_quantized")
    engines = ("qnnpack", "onednn")
    if not all(os.path.exists(os.path.join(torch_dir, f"digits_{e}.onnx")) for e in engines):
        r = subprocess.run(["/usr/bin/python3", os.path.join(root, "models", "digits", "quantize_torch.py"), torch_dir,
                            *engines], capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"PyTorch quantization of digits failed: {r.stderr.strip()[-500:]}")
    for e in engines:
        path = os.path.join(torch_dir, f"digits_{e}.onnx")
        if os.path.exists(path):
            err = compare_quantized(f"digits_torch_{e}", binary, path, {"image": x}, os.path.join(work, f"torch_{e}"))
            if err:
                failures.append(err)
    lstm = os.path.join(root, "models", "lstm_digits", "lstm_digits.onnx")
    rows = np.load(os.path.join(root, "models", "lstm_digits", "eval_x.npy"))
    err = compare("lstm_digits_eval", binary, lstm, {"rows": rows}, os.path.join(work, "lstm_digits"))
    if err:
        failures.append(err)
    failures += fp16_models(binary, root, x, rng, os.path.join(work, "fp16"))
    failures += dynamic_lstm(binary, root, os.path.join(work, "lstm_dynamic"))
    failures += kvant_quantized(binary, root, os.path.join(work, "kvant_quantized"))
    failures += kvant_quantized_if(binary, rng, os.path.join(work, "kvant_quantized_if"))
    for name, (m, feeds) in {**qlinear_average_pools(rng), **qdq_conv_transposes(rng)}.items():
        path = os.path.join(work, name + ".onnx")
        onnx.save(m, path)
        err = compare_bytes(name, binary, path, feeds, os.path.join(work, name))
        if err:
            failures.append(err)
    for f in failures:
        print("FAILED:", f)
    print(f"{len(failures) == 0 and 'all' or 'not all'} ORT oracle cases passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
