// Residual fusion: Add(y, r), where y = kvant.ConvNhwc(...) of group 1 in
// FP32 is read by nothing else and r has y's shape, becomes the convolution
// with r as its fourth input: the GEMM adds r in its epilogue, before the
// activation, so the sum is written once instead of the convolution's
// output being written, read back and written again (ONNX Runtime's
// Conv+Sum fusion). An activation after the Add then fuses into the
// convolution as well (FuseActivations runs again after this pass). Left
// alone: a convolution with a fused activation (it comes before the Add), a
// BF16 or depthwise one, broadcasting Adds.
#include "graph/passes/passes.h"

namespace kvant {
namespace {

bool SameShape(const Shape& a, const Shape& b) {
  if (!a.rank_known || !b.rank_known || a.rank() != b.rank()) return false;
  for (int64_t d = 0; d < a.rank(); ++d) {
    if (!(a.dims[d] == b.dims[d])) return false;
  }
  return true;
}

// A convolution that can take a residual into its epilogue.
bool TakesResidual(const Graph& g, const Node& conv) {
  if (conv.op_type != "ConvNhwc" || conv.domain != "kvant" || conv.inputs.size() > 3) return false;
  if (conv.attrs.GetInt("group", 1) != 1 || conv.attrs.Has("fused_activation") || conv.attrs.Has("fused_scale") ||
      conv.attrs.Has("fused_shift") || conv.attrs.GetString("kvant_precision", "") == "bf16") {
    return false;
  }
  const ValueType* t = g.FindType(conv.outputs[0]);
  return t != nullptr && t->dtype == DataType::kFloat32;
}

}  // namespace

absl::Status FuseConvResiduals(Graph& graph) {
  auto producers = graph.Producers();
  auto uses = graph.UseCounts();
  std::vector<bool> removed(graph.nodes.size(), false);
  bool any = false;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& add = graph.nodes[i];
    if (add.op_type != "Add" || !add.domain.empty() || add.inputs.size() != 2 || add.inputs[0] == add.inputs[1]) {
      continue;
    }
    const ValueType* out = graph.FindType(add.outputs[0]);
    if (out == nullptr) continue;
    for (int side = 0; side < 2; ++side) {
      const std::string& y = add.inputs[side];
      const std::string& r = add.inputs[1 - side];
      auto it = producers.find(y);
      if (it == producers.end() || removed[it->second] || uses[y] != 1 || graph.IsGraphOutput(y)) continue;
      Node& conv = graph.nodes[it->second];
      const ValueType* ty = graph.FindType(y);
      const ValueType* tr = graph.FindType(r);
      if (!TakesResidual(graph, conv) || ty == nullptr || tr == nullptr || tr->dtype != DataType::kFloat32 ||
          !SameShape(ty->shape, tr->shape) || !SameShape(ty->shape, out->shape)) {
        continue;
      }
      conv.inputs.resize(3);  // an absent bias stays "" (optional input)
      conv.inputs.push_back(r);
      graph.values.erase(y);
      conv.outputs[0] = add.outputs[0];
      removed[i] = true;
      any = true;
      break;
    }
  }
  if (!any) return absl::OkStatus();
  graph.RemoveNodes(removed);
  // The convolution now reads r, which may have come after it.
  return graph.TopologicalSort();
}

}  // namespace kvant
