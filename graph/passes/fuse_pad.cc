// Pad -> Conv fusion: a constant-mode Pad with zero value that pads only the
// spatial dimensions (TF "same" padding exported as a separate Pad) becomes
// the convolution's own pads. Also before an INT8 convolution: Pad(float x,
// 0) -> QuantizeLinear -> QLinearConv quantizes x itself and the convolution
// pads with its input zero point, which is Q(0) (EfficientNet-Lite's stem:
// a 0.46 ms float Pad of the image at batch 4).
#include <cstring>
#include <optional>

#include "graph/passes/passes.h"
#include "ops/generator_ops.h"

namespace kvant {
namespace {

// The spatial begin/end pads of a zero-valued constant Pad over all but the
// first two dimensions, or nullopt.
std::optional<PadSpec> ZeroSpatialPads(const Graph& graph, const Node& pad) {
  if (pad.op_type != "Pad" || !pad.domain.empty()) return std::nullopt;
  const ValueType* x = graph.FindType(pad.inputs[0]);
  if (x == nullptr || !x->shape.rank_known) return std::nullopt;
  const int64_t rank = x->shape.rank();
  const bool has_pads = graph.opset < 11 || (pad.inputs.size() > 1 && graph.IsConstant(pad.inputs[1]));
  const bool has_axes = pad.inputs.size() > 3 && !pad.inputs[3].empty();
  if (!has_pads || (has_axes && !graph.IsConstant(pad.inputs[3]))) return std::nullopt;
  auto p = ResolvePads(pad.attrs, graph.opset, graph.opset >= 11 ? graph.FindConstant(pad.inputs[1]) : nullptr,
                       has_axes ? graph.FindConstant(pad.inputs[3]) : nullptr, rank, pad.Label());
  if (!p.ok() || p->mode != "constant") return std::nullopt;
  // The fill value must be zero.
  if (graph.opset < 11 && pad.attrs.GetFloat("value", 0.f) != 0.f) return std::nullopt;
  if (graph.opset >= 11 && pad.inputs.size() > 2 && !pad.inputs[2].empty()) {
    const Tensor* v = graph.FindConstant(pad.inputs[2]);
    if (v == nullptr || v->dtype() != DataType::kFloat32 || (v->num_elements() && v->data<float>()[0] != 0.f)) {
      return std::nullopt;
    }
  }
  bool ok = p->begin[0] == 0 && p->end[0] == 0 && p->begin[1] == 0 && p->end[1] == 0;
  for (int64_t d = 2; d < rank; ++d) ok &= p->begin[d] >= 0 && p->end[d] >= 0;
  return ok ? std::optional<PadSpec>(*std::move(p)) : std::nullopt;
}

// Adds the spatial pads of p to conv's pads attribute; false when they do
// not fit its rank.
bool AddPads(Node& conv, const PadSpec& p) {
  const int64_t spatial = static_cast<int64_t>(p.begin.size()) - 2;
  std::vector<int64_t> pads = conv.attrs.GetInts("pads", std::vector<int64_t>(2 * spatial, 0));
  if (static_cast<int64_t>(pads.size()) != 2 * spatial || conv.attrs.GetString("auto_pad", "NOTSET") != "NOTSET") {
    return false;
  }
  for (int64_t d = 0; d < spatial; ++d) {
    pads[d] += p.begin[2 + d];
    pads[d + spatial] += p.end[2 + d];
  }
  conv.attrs.SetInts("pads", pads);
  return true;
}

bool SameScalar(const Graph& g, const std::string& a, const std::string& b) {
  const Tensor* ta = g.FindConstant(a);
  const Tensor* tb = g.FindConstant(b);
  return ta != nullptr && tb != nullptr && ta->num_elements() == 1 && tb->num_elements() == 1 &&
         ta->dtype() == tb->dtype() && std::memcmp(ta->raw_data(), tb->raw_data(), DataTypeSize(ta->dtype())) == 0;
}

}  // namespace

absl::Status FusePadIntoConv(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  std::vector<bool> removed(graph.nodes.size(), false);
  bool requantized = false;
  auto sole_producer = [&](const std::string& v) -> int {
    auto it = producers.find(v);
    if (it == producers.end() || removed[it->second] || uses[v] != 1 || graph.IsGraphOutput(v)) return -1;
    return it->second;
  };
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& conv = graph.nodes[i];
    const bool float_conv = conv.op_type == "Conv" && conv.domain.empty();
    const bool int8_conv = conv.op_type == "QLinearConv" && conv.domain.empty() && conv.inputs.size() >= 8;
    if (!float_conv && !int8_conv) continue;
    const int pi = sole_producer(conv.inputs[0]);
    if (pi < 0) continue;
    if (float_conv) {
      const Node& pad = graph.nodes[pi];
      auto p = ZeroSpatialPads(graph, pad);
      if (!p || !AddPads(conv, *p)) continue;
      conv.inputs[0] = pad.inputs[0];
      removed[pi] = true;
      continue;
    }
    // Pad(x, 0) -> QuantizeLinear (per tensor, the convolution's x_zero_point) -> QLinearConv.
    Node& q = graph.nodes[pi];
    if (q.op_type != "QuantizeLinear" || !q.domain.empty() || q.inputs.size() < 3 || q.inputs[2].empty()) continue;
    if (!SameScalar(graph, q.inputs[2], conv.inputs[2]) || graph.FindConstant(q.inputs[1]) == nullptr ||
        graph.FindConstant(q.inputs[1])->num_elements() != 1) {
      continue;
    }
    const int qi = sole_producer(q.inputs[0]);
    if (qi < 0) continue;
    const Node& pad = graph.nodes[qi];
    auto p = ZeroSpatialPads(graph, pad);
    if (!p || !AddPads(conv, *p)) continue;
    q.inputs[0] = pad.inputs[0];
    removed[qi] = true;
    requantized = true;
  }
  graph.RemoveNodes(removed);
  // The QuantizeLinear now reads the unpadded image: its output shape changes.
  return requantized ? InferShapes(graph) : absl::OkStatus();
}

}  // namespace kvant
