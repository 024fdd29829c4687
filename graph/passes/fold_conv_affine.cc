// Conv -> Mul(constant) / Add(constant) folding: a per-output-channel or
// scalar scale after a convolution with constant weights scales the weights
// and bias; a per-channel or scalar shift adds to the bias. The Conv's output
// must have no other reader and no fused activation yet.
#include "graph/passes/passes.h"

namespace kvant {
namespace {

// Per-channel values (size `channels`) of a constant that broadcasts over an
// output [N, C, spatial...] of rank `rank` along C only, or a scalar.
bool ChannelValues(const Tensor& t, int64_t channels, int64_t rank, std::vector<float>* out) {
  if (t.dtype() != DataType::kFloat32) return false;
  const int64_t n = t.num_elements();
  if (n == 1) {
    out->assign(channels, t.data<float>()[0]);
    return true;
  }
  if (n != channels || t.rank() > rank) return false;
  // Right-aligned, the only non-1 dimension must land on axis 1.
  for (int64_t d = 0; d < t.rank(); ++d) {
    const int64_t axis = rank - t.rank() + d;
    if (t.shape()[d] != 1 && axis != 1) return false;
  }
  out->assign(t.data<float>(), t.data<float>() + n);
  return true;
}

}  // namespace

absl::Status FoldConvAffine(Graph& graph) {
  bool changed = true;
  while (changed) {
    changed = false;
    auto uses = graph.UseCounts();
    auto producers = graph.Producers();
    for (size_t i = 0; i < graph.nodes.size() && !changed; ++i) {
      const Node& op = graph.nodes[i];
      if (!op.domain.empty() || (op.op_type != "Mul" && op.op_type != "Add") || op.inputs.size() != 2) continue;
      for (int side = 0; side < 2 && !changed; ++side) {
        const std::string& data = op.inputs[side];
        const Tensor* c = graph.FindConstant(op.inputs[1 - side]);
        auto it = producers.find(data);
        if (c == nullptr || it == producers.end() || uses[data] != 1 || graph.IsGraphOutput(data)) continue;
        Node& conv = graph.nodes[it->second];
        if (conv.op_type != "Conv" || !conv.domain.empty() || conv.attrs.Has("fused_activation")) continue;
        const Tensor* w = graph.FindConstant(conv.inputs[1]);
        const ValueType* out_type = graph.FindType(op.outputs[0]);
        const ValueType* conv_type = graph.FindType(data);
        if (w == nullptr || w->dtype() != DataType::kFloat32 || !out_type || !conv_type ||
            !conv_type->shape.rank_known || !(out_type->shape.rank() == conv_type->shape.rank())) {
          continue;
        }
        const int64_t cout = w->shape()[0];
        const bool has_bias = conv.inputs.size() > 2 && !conv.inputs[2].empty();
        const Tensor* b = has_bias ? graph.FindConstant(conv.inputs[2]) : nullptr;
        if (has_bias && b == nullptr) continue;
        std::vector<float> v;
        if (!ChannelValues(*c, cout, conv_type->shape.rank(), &v)) continue;
        Tensor nb = Tensor::Zeros(DataType::kFloat32, {cout});
        for (int64_t k = 0; k < cout; ++k) nb.data<float>()[k] = b ? b->data<float>()[k] : 0.f;
        Tensor nw = *w;
        if (op.op_type == "Mul") {
          nw = w->Clone();
          const int64_t per = w->num_elements() / cout;
          for (int64_t k = 0; k < cout; ++k) {
            for (int64_t j = 0; j < per; ++j) nw.data<float>()[k * per + j] *= v[k];
            nb.data<float>()[k] *= v[k];
          }
        } else {
          for (int64_t k = 0; k < cout; ++k) nb.data<float>()[k] += v[k];
        }
        conv.inputs.resize(3);
        conv.inputs[1] = graph.AddConstant(conv.name + "_w", nw);
        conv.inputs[2] = graph.AddConstant(conv.name + "_b", nb);
        graph.values.erase(conv.outputs[0]);
        conv.outputs[0] = op.outputs[0];
        graph.nodes.erase(graph.nodes.begin() + i);
        changed = true;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace kvant
