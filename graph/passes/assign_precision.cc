// Half-precision compute (SessionOptions::precision = bf16): MatMul and Gemm
// with constant 2-D FP32 weights, and 2-D Conv with constant weights and
// group 1 (run as kvant.ConvNhwc: a lone NCHW convolution stays FP32), are
// marked `kvant_precision = "bf16"` when their reduction is at least
// kMinBf16Depth deep; their
// kernels then pack the weights as bf16 once and round the activations to
// bf16 as they pack them, accumulating in f32 (ops/cpu/gemm_bf16.h). Every
// other operator, reductions and normalizations included, stays FP32: the
// conversions live inside the GEMM's packing, so the graph gains no Cast
// and no value is ever stored in half precision.
#include "graph/passes/passes.h"

namespace kvant {

// Below this K the BF16 GEMM loses to FP32: rounding A into bf16 pairs per
// call costs as much as the product (EfficientNet-Lite0's 1x1 convolutions:
// K = 16 takes 3x the FP32 time, K = 112 breaks even, K >= 144 takes
// 0.3-0.7x; kvant run --profile --precision bf16).
constexpr int64_t kMinBf16Depth = 128;

absl::Status AssignBf16Compute(Graph& graph) {
  for (Node& n : graph.nodes) {
    const bool conv = n.op_type == "Conv" && n.attrs.GetInt("group", 1) == 1;
    if (!n.domain.empty() || (n.op_type != "MatMul" && n.op_type != "Gemm" && !conv) || n.inputs.size() < 2) continue;
    const Tensor* w = graph.FindConstant(n.inputs[1]);
    const ValueType* a = graph.FindType(n.inputs[0]);
    if (w == nullptr || w->dtype() != DataType::kFloat32 || w->rank() != (conv ? 4 : 2) || a == nullptr ||
        a->dtype != DataType::kFloat32) {
      continue;
    }
    const int64_t depth = conv ? w->shape()[1] * w->shape()[2] * w->shape()[3]
                               : (n.op_type == "Gemm" && n.attrs.GetInt("transB", 0) != 0 ? w->shape()[1] : w->shape()[0]);
    if (depth < kMinBf16Depth) continue;
    n.attrs.SetString("kvant_precision", "bf16");
  }
  return absl::OkStatus();
}

}  // namespace kvant
