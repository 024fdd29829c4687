// Activations spelled out in elementary operators, the way exporters write
// them for opsets without the operator, become the one operator (which
// activation fusion can then move into a Conv, Gemm or MatMul epilogue):
//  - HardSwish: x * Clip(x + 3, 0, 6) / 6 (or * 1/6);
//  - Gelu (exact): 0.5 * x * (1 + Erf(x / sqrt 2)) (or x * 1/sqrt 2), the
//    two products in any order and association (PyTorch's nn.GELU, BERT's
//    gelu).
#include <cmath>

#include "graph/passes/passes.h"

namespace kvant {
namespace {

bool ScalarEquals(const Graph& g, const std::string& v, float want) {
  const Tensor* t = g.FindConstant(v);
  return t && t->dtype() == DataType::kFloat32 && t->num_elements() == 1 && std::fabs(t->data<float>()[0] - want) < 1e-6f;
}

// Input of `n` (Add/Mul) that is not the scalar constant `c`, or "".
std::string OtherThan(const Graph& g, const Node& n, float c) {
  if (n.inputs.size() != 2) return "";
  if (ScalarEquals(g, n.inputs[1], c)) return n.inputs[0];
  if (ScalarEquals(g, n.inputs[0], c)) return n.inputs[1];
  return "";
}

}  // namespace

absl::Status FuseHardSwish(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  auto producer = [&](const std::string& v) -> Node* {
    auto it = producers.find(v);
    return it == producers.end() ? nullptr : &graph.nodes[it->second];
  };
  auto single = [&](const std::string& v) { return uses[v] == 1 && !graph.IsGraphOutput(v); };
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& last = graph.nodes[i];  // Div(m, 6) or Mul(m, 1/6)
    if (!last.domain.empty() || last.inputs.size() != 2) continue;
    std::string m;
    if (last.op_type == "Div" && ScalarEquals(graph, last.inputs[1], 6.f)) m = last.inputs[0];
    else if (last.op_type == "Mul") m = OtherThan(graph, last, 1.f / 6.f);
    Node* mul = m.empty() || !single(m) ? nullptr : producer(m);
    if (!mul || mul->op_type != "Mul" || mul->inputs.size() != 2) continue;
    for (int side = 0; side < 2; ++side) {
      const std::string& x = mul->inputs[side];
      const std::string& clipped = mul->inputs[1 - side];
      Node* clip = single(clipped) ? producer(clipped) : nullptr;
      if (!clip || clip->op_type != "Clip" || clip->inputs.size() != 3 || !ScalarEquals(graph, clip->inputs[1], 0.f) ||
          !ScalarEquals(graph, clip->inputs[2], 6.f)) {
        continue;
      }
      Node* add = single(clip->inputs[0]) ? producer(clip->inputs[0]) : nullptr;
      if (!add || add->op_type != "Add" || OtherThan(graph, *add, 3.f) != x) continue;
      // Rewrite `last` in place; the Add, Clip and Mul die in RemoveDeadNodes.
      last.op_type = "HardSwish";
      last.inputs = {x};
      last.attrs = AttributeMap();
      break;
    }
  }
  return absl::OkStatus();
}

absl::Status FuseGelu(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  auto single = [&](const std::string& v) -> Node* {  // the producer of a value read once, or null
    auto it = producers.find(v);
    if (uses[v] != 1 || graph.IsGraphOutput(v) || it == producers.end()) return nullptr;
    Node* n = &graph.nodes[it->second];
    return n->domain.empty() ? n : nullptr;
  };
  // The x of 1 + Erf(x / sqrt 2) if `v` is that sum (read once, as its parts), or "".
  auto erf_sum_of = [&](const std::string& v) -> std::string {
    Node* add = single(v);
    if (!add || add->op_type != "Add") return "";
    Node* erf = single(OtherThan(graph, *add, 1.f));
    if (!erf || erf->op_type != "Erf" || erf->inputs.size() != 1) return "";
    Node* scaled = single(erf->inputs[0]);
    if (!scaled || scaled->inputs.size() != 2) return "";
    if (scaled->op_type == "Div" && ScalarEquals(graph, scaled->inputs[1], 1.41421356f)) return scaled->inputs[0];
    if (scaled->op_type == "Mul") return OtherThan(graph, *scaled, 0.70710678f);
    return "";
  };
  for (Node& last : graph.nodes) {
    if (!last.domain.empty() || last.op_type != "Mul" || last.inputs.size() != 2) continue;
    // last = Mul(inner, leaf), inner = Mul(a, b): {leaf, a, b} = {x, 0.5, 1 + Erf(x / sqrt 2)}.
    for (int side = 0; side < 2; ++side) {
      Node* inner = single(last.inputs[side]);
      if (!inner || inner->op_type != "Mul" || inner->inputs.size() != 2) continue;
      const std::string leaves[3] = {last.inputs[1 - side], inner->inputs[0], inner->inputs[1]};
      std::string x;
      for (int half = 0; half < 3 && x.empty(); ++half) {
        if (!ScalarEquals(graph, leaves[half], 0.5f)) continue;
        const std::string& p = leaves[(half + 1) % 3];
        const std::string& q = leaves[(half + 2) % 3];
        if (erf_sum_of(p) == q && !q.empty()) x = q;
        else if (erf_sum_of(q) == p && !p.empty()) x = p;
      }
      if (x.empty()) continue;
      // Rewrite `last` in place; the rest dies in RemoveDeadNodes.
      last.op_type = "Gelu";
      last.inputs = {x};
      last.attrs = AttributeMap();
      break;
    }
  }
  return absl::OkStatus();
}

}  // namespace kvant
