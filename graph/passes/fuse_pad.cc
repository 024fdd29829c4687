// Pad -> Conv fusion: a constant-mode Pad with zero value that pads only the
// spatial dimensions (TF "same" padding exported as a separate Pad) becomes
// the convolution's own pads.
#include "graph/passes/passes.h"
#include "ops/generator_ops.h"

namespace kvant {

absl::Status FusePadIntoConv(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  std::vector<bool> removed(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& conv = graph.nodes[i];
    if (conv.op_type != "Conv" || !conv.domain.empty() || conv.attrs.GetString("auto_pad", "NOTSET") != "NOTSET") continue;
    auto it = producers.find(conv.inputs[0]);
    if (it == producers.end() || removed[it->second] || uses[conv.inputs[0]] != 1 || graph.IsGraphOutput(conv.inputs[0])) {
      continue;
    }
    const Node& pad = graph.nodes[it->second];
    if (pad.op_type != "Pad" || !pad.domain.empty()) continue;
    const ValueType* x = graph.FindType(pad.inputs[0]);
    if (x == nullptr || !x->shape.rank_known) continue;
    const int64_t rank = x->shape.rank(), spatial = rank - 2;
    const bool has_pads = graph.opset < 11 || (pad.inputs.size() > 1 && graph.IsConstant(pad.inputs[1]));
    const bool has_axes = pad.inputs.size() > 3 && !pad.inputs[3].empty();
    if (!has_pads || (has_axes && !graph.IsConstant(pad.inputs[3]))) continue;
    auto p = ResolvePads(pad.attrs, graph.opset, graph.opset >= 11 ? graph.FindConstant(pad.inputs[1]) : nullptr,
                         has_axes ? graph.FindConstant(pad.inputs[3]) : nullptr, rank, pad.Label());
    if (!p.ok() || p->mode != "constant") continue;
    // The fill value must be zero.
    if (graph.opset < 11 && pad.attrs.GetFloat("value", 0.f) != 0.f) continue;
    if (graph.opset >= 11 && pad.inputs.size() > 2 && !pad.inputs[2].empty()) {
      const Tensor* v = graph.FindConstant(pad.inputs[2]);
      if (v == nullptr || v->dtype() != DataType::kFloat32 || (v->num_elements() && v->data<float>()[0] != 0.f)) continue;
    }
    bool ok = p->begin[0] == 0 && p->end[0] == 0 && p->begin[1] == 0 && p->end[1] == 0;
    for (int64_t d = 2; d < rank; ++d) ok &= p->begin[d] >= 0 && p->end[d] >= 0;
    if (!ok) continue;
    std::vector<int64_t> pads = conv.attrs.GetInts("pads", std::vector<int64_t>(2 * spatial, 0));
    if (static_cast<int64_t>(pads.size()) != 2 * spatial) continue;
    for (int64_t d = 0; d < spatial; ++d) {
      pads[d] += p->begin[2 + d];
      pads[d + spatial] += p->end[2 + d];
    }
    conv.attrs.SetInts("pads", pads);
    conv.inputs[0] = pad.inputs[0];
    removed[it->second] = true;
  }
  graph.RemoveNodes(removed);
  return absl::OkStatus();
}

}  // namespace kvant
