// Static quantization in QDQ form: which tensors get QuantizeLinear ->
// DequantizeLinear pairs (the plan, from the op policy), and the edit that
// writes them with their parameters, the s8 weights and int32 biases.
//
// The op policy (what Kvant runs in INT8, and so what is worth quantizing):
//   compute     Conv, MatMul, Gemm: activation inputs quantized (a float
//               producer gets its conversion here), weights s8 symmetric per
//               output channel (or per tensor), bias int32 at x_scale *
//               w_scale; the output quantized, or, when its only consumer is
//               a Relu/Clip, that activation's output instead (it fuses);
//               a MatMul's bias Add (the sole reader, adding a constant
//               vector of one value per column: every Linear layer PyTorch
//               exports) takes that vector as its int32 bias, and the
//               Add's output is quantized instead of the product, so the
//               kernel adds the bias before it requantizes, as for Conv;
//               a MatMul or Gemm result that only Softmax, LogSoftmax or
//               LayerNormalization read, or only the graph returns, stays
//               float (Kvant's INT8 product writes f32 there);
//   binary      Add, Mul of two quantized tensors (a residual connection);
//   pool        AveragePool, GlobalAveragePool of a quantized tensor;
//   same params MaxPool, Reshape, Flatten, Squeeze, Unsqueeze, Transpose and
//               nearest Resize of a quantized tensor keep its scale and zero point, so the
//               conversions around them cancel;
//   tables      HardSwish (the operator or its pre-opset-14 spelling),
//               HardSigmoid, Sigmoid, and Add/Sub/Mul/Div by a scalar
//               constant (an affine block) of a quantized tensor, or of a
//               value such steps computed from one: the value is quantized
//               where a quantized reader takes it (a convolution, a
//               squeeze-excitation pool or gate product), not at every step;
//               the runtime folds each chain into one table;
//   everything else (Softmax, LayerNormalization, GELU's Erf, ...)
//   stays in float, fed by DequantizeLinear where its input was quantized.
#ifndef KVANT_QUANTIZE_QDQ_H_
#define KVANT_QUANTIZE_QDQ_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "quantize/onnx_model.h"
#include "quantize/scheme.h"

namespace kvant::quantize {

struct QdqPlan {
  // Tensors to quantize, in discovery order, each with the tensor whose
  // parameters it uses (itself, or the input of a same-params operator).
  std::vector<std::pair<std::string, std::string>> tensors;
  std::vector<int> compute_nodes;  // node indices whose weights become s8
  // MatMul node index -> the Add node whose constant vector becomes its bias.
  absl::flat_hash_map<int, int> bias_adds;
  absl::flat_hash_set<std::string> quantized_nodes;  // node names (the report)
  // The tensors whose range calibration must measure.
  std::vector<std::string> Observed() const;
};

// `excluded`: node names kept in float (user choice or mixed precision).
QdqPlan PlanQdq(const OnnxModel& m, const absl::flat_hash_set<std::string>& excluded);

// Writes the plan: Q/DQ pairs with `params` (one entry per observed tensor),
// weights and biases. Sets opset >= 13 when any weight is per channel (the
// caller upgraded the model first).
absl::Status ApplyQdq(OnnxModel& m, const QdqPlan& plan, const absl::flat_hash_map<std::string, QParams>& params,
                      const Scheme& scheme);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_QDQ_H_
