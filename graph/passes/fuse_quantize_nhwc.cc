// QuantizeLinear -> Transpose(NCHW -> NHWC) becomes kvant.QuantizeLinearNhwc:
// an INT8 convolution chain fed by a float NCHW image (every CNN's input)
// quantizes it straight into the NHWC layout, one pass over the floats
// instead of a quantization and a byte transpose (PP-OCR's classifier:
// 0.03 + 0.03 ms before). Per-tensor parameters only, rank 4.
#include "graph/passes/passes.h"

namespace kvant {

absl::Status FuseQuantizeNhwc(Graph& graph) {
  static const std::vector<int64_t> kToNhwc = {0, 2, 3, 1};
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  std::vector<bool> removed(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& t = graph.nodes[i];
    if (t.op_type != "Transpose" || !t.domain.empty() || t.inputs.size() != 1 || t.attrs.GetInts("perm") != kToNhwc) {
      continue;
    }
    auto it = producers.find(t.inputs[0]);
    if (it == producers.end() || uses[t.inputs[0]] != 1 || graph.IsGraphOutput(t.inputs[0])) continue;
    Node& q = graph.nodes[it->second];
    if (q.op_type != "QuantizeLinear" || !q.domain.empty() || q.inputs.size() < 2 || q.outputs.size() != 1) continue;
    const ValueType* x = graph.FindType(q.inputs[0]);
    const Tensor* scale = graph.FindConstant(q.inputs[1]);
    const bool zero_point = q.inputs.size() > 2 && !q.inputs[2].empty();
    const Tensor* zp = zero_point ? graph.FindConstant(q.inputs[2]) : nullptr;
    if (x == nullptr || x->dtype != DataType::kFloat32 || !x->shape.rank_known || x->shape.rank() != 4) continue;
    if (scale == nullptr || scale->num_elements() != 1 || (zero_point && (zp == nullptr || zp->num_elements() != 1))) {
      continue;
    }
    q.op_type = "QuantizeLinearNhwc";
    q.domain = "kvant";
    q.outputs[0] = t.outputs[0];
    removed[i] = true;
  }
  graph.RemoveNodes(removed);
  return InferShapes(graph);
}

}  // namespace kvant
