"""ONNX Runtime's quantizer applied to zoo models, shared by the zoo test
(tests/models/zoo_parity.py) and the INT8 zoo benchmark
(benchmarks/models/zoo_int8_bench.py). pip python3: numpy, onnxruntime.

quantize_static_file(model, out, feeds, fmt, per_channel, preprocess): calibrated
on the rows of the (single) batched input in `feeds`; u8 activations, s8
weights; with `preprocess`, on the model quant_preprocess makes first (the
benchmarks: ONNX Runtime at its best; the tests keep the raw file, a harder
input for Kvant).
quant_preprocess(model, out): ONNX Runtime's recommended pre-processing.
quantize_dynamic_file(model, out, weight_type).
Both are quiet (the quantizer prints tensor protos from native code and
logs warnings) and raise what the quantizer raises.
"""
import logging
import os
import sys
import tempfile

from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_dynamic, quantize_static


class BatchRows(CalibrationDataReader):
    """One calibration sample per row of the single input's batch."""

    def __init__(self, feeds):
        (name, batch), = feeds.items()
        self.items = iter([{name: batch[i:i + 1]} for i in range(batch.shape[0])])

    def get_next(self):
        return next(self.items, None)


def _quiet(fn, *args, **kwargs):
    sys.stdout.flush()
    saved, level = os.dup(1), logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            return fn(*args, **kwargs)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            logging.getLogger().setLevel(level)


def quant_preprocess(model, out):
    """quant_pre_process, which ONNX Runtime's documentation asks for before
    quantize_static: shape inference and ONNX Runtime's graph optimizations
    (BatchNormalization folded into Conv: PP-OCR's classifier goes from 566 to
    179 nodes). Retried without symbolic shape inference, which fails on the
    PP-OCR models; returns `out`, or `model` when both attempts fail. A model
    below opset 13 is converted to 13 first: per-channel QDQ needs it, and
    the quantizer cannot convert the optimizer's output itself."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process
    source = model
    m = onnx.load(model)
    if next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13) < 13:
        source = out + ".opset13.onnx"
        onnx.save(version_converter.convert_version(m, 13), source)
    source, out = os.path.abspath(source), os.path.abspath(out)
    for skip_symbolic_shape in (False, True):
        try:
            # From a scratch directory: symbolic shape inference leaves
            # sym_shape_infer_temp.onnx in the working directory.
            with tempfile.TemporaryDirectory() as scratch:
                here = os.getcwd()
                os.chdir(scratch)
                try:
                    _quiet(quant_pre_process, source, out, skip_symbolic_shape=skip_symbolic_shape)
                finally:
                    os.chdir(here)
            return out
        except Exception:  # noqa: BLE001 - any failure: try the next way, then the raw model
            continue
    return model


def quantize_static_file(model, out, feeds, fmt, per_channel, preprocess=False):
    if preprocess:
        model = quant_preprocess(model, out + ".preprocessed.onnx")
    _quiet(quantize_static, model, out, BatchRows(feeds), quant_format=fmt, per_channel=per_channel,
           activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def quantize_dynamic_file(model, out, weight_type=QuantType.QInt8):
    _quiet(quantize_dynamic, model, out, weight_type=weight_type)
