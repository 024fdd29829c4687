// BatchNormalization folding: y = (x - mean) * s / sqrt(var + eps) + b after a
// Conv or Gemm with constant weights becomes a per-output-channel scale of the
// weights and a new bias, when the BatchNorm is the producer's only reader.
#include <cmath>

#include "graph/passes/passes.h"

namespace kvant {
namespace {

struct Affine {
  std::vector<float> scale, shift;  // y = x * scale + shift, per channel
};

bool ReadBatchNorm(const Graph& g, const Node& bn, int64_t channels, Affine* out) {
  const Tensor* p[4];
  for (int i = 0; i < 4; ++i) {
    p[i] = g.FindConstant(bn.inputs[i + 1]);
    if (p[i] == nullptr || p[i]->dtype() != DataType::kFloat32 || p[i]->num_elements() != channels) return false;
  }
  const float eps = bn.attrs.GetFloat("epsilon", 1e-5f);
  out->scale.resize(channels);
  out->shift.resize(channels);
  for (int64_t c = 0; c < channels; ++c) {
    const float a = p[0]->data<float>()[c] / std::sqrt(p[3]->data<float>()[c] + eps);
    out->scale[c] = a;
    out->shift[c] = p[1]->data<float>()[c] - p[2]->data<float>()[c] * a;
  }
  return true;
}

// Folds into Conv: W[c, ...] *= scale[c]; B[c] = B[c] * scale[c] + shift[c].
bool FoldIntoConv(Graph& g, Node& conv, const Node& bn) {
  const Tensor* w = g.FindConstant(conv.inputs[1]);
  if (w == nullptr || w->dtype() != DataType::kFloat32) return false;
  const int64_t cout = w->shape()[0];
  const Tensor* b = conv.inputs.size() > 2 && !conv.inputs[2].empty() ? g.FindConstant(conv.inputs[2]) : nullptr;
  if (conv.inputs.size() > 2 && !conv.inputs[2].empty() && b == nullptr) return false;
  Affine f;
  if (!ReadBatchNorm(g, bn, cout, &f)) return false;
  Tensor nw = w->Clone();
  const int64_t per = w->num_elements() / cout;
  for (int64_t c = 0; c < cout; ++c) {
    for (int64_t i = 0; i < per; ++i) nw.data<float>()[c * per + i] *= f.scale[c];
  }
  Tensor nb = Tensor::Zeros(DataType::kFloat32, {cout});
  for (int64_t c = 0; c < cout; ++c) nb.data<float>()[c] = (b ? b->data<float>()[c] : 0.f) * f.scale[c] + f.shift[c];
  conv.inputs.resize(3);
  conv.inputs[1] = g.AddConstant(conv.name + "_bn_weight", nw);
  conv.inputs[2] = g.AddConstant(conv.name + "_bn_bias", nb);
  return true;
}

// Folds into Gemm (output channels are columns): B columns and C scale.
bool FoldIntoGemm(Graph& g, Node& gemm, const Node& bn) {
  const Tensor* w = g.FindConstant(gemm.inputs[1]);
  if (w == nullptr || w->dtype() != DataType::kFloat32 || w->rank() != 2) return false;
  const bool tb = gemm.attrs.GetInt("transB", 0) != 0;
  const int64_t n = w->shape()[tb ? 0 : 1], k = w->shape()[tb ? 1 : 0];
  const Tensor* c = gemm.inputs.size() > 2 && !gemm.inputs[2].empty() ? g.FindConstant(gemm.inputs[2]) : nullptr;
  if (gemm.inputs.size() > 2 && !gemm.inputs[2].empty() && (c == nullptr || c->num_elements() != n)) return false;
  Affine f;
  if (!ReadBatchNorm(g, bn, n, &f)) return false;
  const float alpha = gemm.attrs.GetFloat("alpha", 1.f), beta = gemm.attrs.GetFloat("beta", 1.f);
  Tensor nw = w->Clone();
  for (int64_t kk = 0; kk < k; ++kk) {
    for (int64_t j = 0; j < n; ++j) nw.data<float>()[tb ? j * k + kk : kk * n + j] *= f.scale[j];
  }
  Tensor nc = Tensor::Zeros(DataType::kFloat32, {n});
  for (int64_t j = 0; j < n; ++j) nc.data<float>()[j] = (c ? beta * c->data<float>()[j] : 0.f) * f.scale[j] + f.shift[j];
  gemm.inputs.resize(3);
  gemm.inputs[1] = g.AddConstant(gemm.name + "_bn_weight", nw);
  gemm.inputs[2] = g.AddConstant(gemm.name + "_bn_bias", nc);
  gemm.attrs.SetFloat("beta", 1.f);
  (void)alpha;  // alpha scales only A*B, which the weight scale already covers
  return true;
}

}  // namespace

absl::Status FoldBatchNorm(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  std::vector<bool> removed(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& bn = graph.nodes[i];
    if (bn.op_type != "BatchNormalization" || !bn.domain.empty() || bn.outputs.size() != 1) continue;
    auto it = producers.find(bn.inputs[0]);
    if (it == producers.end() || removed[it->second] || uses[bn.inputs[0]] != 1 ||
        graph.IsGraphOutput(bn.inputs[0])) {
      continue;
    }
    Node& prod = graph.nodes[it->second];
    if (!prod.domain.empty() || prod.attrs.Has("fused_activation")) continue;
    bool folded = false;
    if (prod.op_type == "Conv") folded = FoldIntoConv(graph, prod, bn);
    else if (prod.op_type == "Gemm") folded = FoldIntoGemm(graph, prod, bn);
    if (!folded) continue;
    graph.values[bn.outputs[0]] = graph.values[prod.outputs[0]];
    graph.values.erase(prod.outputs[0]);
    prod.outputs[0] = bn.outputs[0];
    removed[i] = true;
  }
  graph.RemoveNodes(removed);
  return absl::OkStatus();
}

}  // namespace kvant
