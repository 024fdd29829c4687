// MatMul bias fusion: MatMul(A, W) -> Add(., b), W a constant FP32 [K, N]
// and b a constant FP32 of N values ([N] or [1, ..., 1, N], no wider than
// the product), becomes one MatMul whose `fused_bias` attribute holds b; its
// kernels add b in the GEMM epilogue (ops/cpu/matmul_f32.cc). Every Linear
// layer of a transformer exported from PyTorch has this spelling; the bias
// Add would otherwise read and write the whole product once more. The
// product must have no other reader and not be a graph output, so
// calibration, which marks the values it observes as outputs, sees them all.
#include <cstring>

#include "graph/passes/passes.h"

namespace kvant {
namespace {

// `name` as a bias for a product of rank `rank` and `n` columns: false if it
// is not one, else its values as [n] in *v.
bool BiasVector(const Graph& g, const std::string& name, int64_t rank, int64_t n, Tensor* v) {
  const Tensor* t = g.FindConstant(name);
  if (t == nullptr || t->dtype() != DataType::kFloat32 || t->rank() < 1 || t->rank() > rank ||
      t->shape().back() != n || t->num_elements() != n) {
    return false;
  }
  *v = Tensor::Zeros(DataType::kFloat32, {n});
  std::memcpy(v->data<float>(), t->data<float>(), n * sizeof(float));
  return true;
}

bool IsBiasTarget(const Graph& g, const Node& n) {
  if (!n.domain.empty() || n.op_type != "MatMul" || n.inputs.size() != 2 || n.outputs.size() != 1) return false;
  if (n.attrs.Has("fused_bias") || n.attrs.Has("fused_activation") || n.attrs.Has("fused_scale") ||
      n.attrs.Has("fused_shift")) {
    return false;
  }
  const Tensor* w = g.FindConstant(n.inputs[1]);
  const ValueType* a = g.FindType(n.inputs[0]);
  return w != nullptr && w->dtype() == DataType::kFloat32 && w->rank() == 2 && a != nullptr &&
         a->dtype == DataType::kFloat32 && a->shape.rank_known && a->shape.rank() >= 1;
}

}  // namespace

absl::Status FuseMatMulBias(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  std::vector<bool> removed(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& add = graph.nodes[i];
    if (!add.domain.empty() || add.op_type != "Add" || add.inputs.size() != 2 || add.outputs.size() != 1) continue;
    for (int side = 0; side < 2; ++side) {
      const std::string& product = add.inputs[side];
      auto it = producers.find(product);
      if (it == producers.end() || uses[product] != 1 || graph.IsGraphOutput(product)) continue;
      Node& mm = graph.nodes[it->second];
      if (removed[it->second] || !IsBiasTarget(graph, mm)) continue;
      const int64_t n = graph.FindConstant(mm.inputs[1])->shape()[1];
      const int64_t rank = graph.FindType(mm.inputs[0])->shape.rank();  // the product's rank
      Tensor bias;
      if (!BiasVector(graph, add.inputs[1 - side], rank, n, &bias)) continue;
      Attribute a;
      a.kind = Attribute::Kind::kTensor;
      a.t = std::move(bias);
      mm.attrs.Set("fused_bias", std::move(a));
      graph.values.erase(mm.outputs[0]);
      mm.outputs[0] = add.outputs[0];
      removed[i] = true;
      break;
    }
  }
  graph.RemoveNodes(removed);
  return absl::OkStatus();
}

}  // namespace kvant
