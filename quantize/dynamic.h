// Dynamic quantization (`kvant quantize --dynamic`): weights to s8, no
// calibration; activations are quantized per call by the runtime. Written as
// the com.microsoft operators ONNX Runtime runs too:
//   MatMul (constant 2-D B) [-> Add of a constant [N] bias], and Gemm
//   (transA = 0, alpha = beta = 1, constant B, 1-D or no C)
//     -> DynamicQuantizeMatMul(A, B s8 [K, N], scale, zero point[, bias]);
//   LSTM with constant W and R
//     -> DynamicQuantizeLSTM (W [dirs, input, 4h], R [dirs, h, 4h]).
// Weights are symmetric, per output column (or per tensor / per direction).
// GRU and RNN stay FP32 in the file (ONNX Runtime has no quantized form of
// them; `kvant run --dynamic-int8` quantizes them at load instead).
#ifndef KVANT_QUANTIZE_DYNAMIC_H_
#define KVANT_QUANTIZE_DYNAMIC_H_

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "quantize/onnx_model.h"

namespace kvant::quantize {

// Returns the number of nodes rewritten.
absl::StatusOr<int> ApplyDynamic(OnnxModel& m, bool per_channel, const absl::flat_hash_set<std::string>& excluded);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_DYNAMIC_H_
