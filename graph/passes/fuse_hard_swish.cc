// HardSwish recognition: x * Clip(x + 3, 0, 6) / 6 (or * 1/6), the way
// exporters without a HardSwish operator spell it, becomes one HardSwish node
// (which activation fusion can then move into a Conv or Gemm epilogue).
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
  std::vector<bool> removed(graph.nodes.size(), false);
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

}  // namespace kvant
