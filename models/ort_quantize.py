"""ONNX Runtime's quantizer applied to zoo models, shared by the zoo test
(tests/models/zoo_parity.py) and the INT8 zoo benchmark
(benchmarks/models/zoo_int8_bench.py). pip python3: numpy, onnxruntime.

quantize_static_file(model, out, feeds, fmt, per_channel): calibrated on the
rows of the (single) batched input in `feeds`; u8 activations, s8 weights.
quantize_dynamic_file(model, out, weight_type).
Both are quiet (the quantizer prints tensor protos from native code and
logs warnings) and raise what the quantizer raises.
"""
import logging
import os
import sys

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


def quantize_static_file(model, out, feeds, fmt, per_channel):
    _quiet(quantize_static, model, out, BatchRows(feeds), quant_format=fmt, per_channel=per_channel,
           activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def quantize_dynamic_file(model, out, weight_type=QuantType.QInt8):
    _quiet(quantize_dynamic, model, out, weight_type=weight_type)
