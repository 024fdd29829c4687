// Half-precision compute (SessionOptions::precision = bf16): MatMul and Gemm
// with constant 2-D FP32 weights are marked `kvant_precision = "bf16"`; their
// kernels then pack the weights as bf16 once and round the activations to
// bf16 as they pack them, accumulating in f32 (ops/cpu/gemm_bf16.h). Every
// other operator, reductions and normalizations included, stays FP32: the
// conversions live inside the GEMM's packing, so the graph gains no Cast
// and no value is ever stored in half precision.
#include "graph/passes/passes.h"

namespace kvant {

absl::Status AssignBf16Compute(Graph& graph) {
  for (Node& n : graph.nodes) {
    if (!n.domain.empty() || (n.op_type != "MatMul" && n.op_type != "Gemm") || n.inputs.size() < 2) continue;
    const Tensor* w = graph.FindConstant(n.inputs[1]);
    const ValueType* a = graph.FindType(n.inputs[0]);
    if (w == nullptr || w->dtype() != DataType::kFloat32 || w->rank() != 2 || a == nullptr ||
        a->dtype != DataType::kFloat32) {
      continue;
    }
    n.attrs.SetString("kvant_precision", "bf16");
  }
  return absl::OkStatus();
}

}  // namespace kvant
