// Activation fusion: Conv/Gemm/MatMul -> Relu | Clip | LeakyRelu becomes one
// node whose kernel applies the activation in its epilogue. The producer's
// output must have no other reader and not be a graph output.
#include <limits>

#include "graph/passes/passes.h"

namespace kvant {
namespace {

bool IsFusionTarget(const Node& n) {
  return n.domain.empty() && (n.op_type == "Conv" || n.op_type == "Gemm" || n.op_type == "MatMul") &&
         !n.attrs.Has("fused_activation");
}

// Writes the activation into `attrs`; false if `act` cannot be fused.
bool ReadActivation(const Graph& g, const Node& act, AttributeMap* attrs) {
  if (!act.domain.empty()) return false;
  if (act.op_type == "Relu") {
    attrs->SetString("fused_activation", "Relu");
    return true;
  }
  if (act.op_type == "LeakyRelu") {
    attrs->SetString("fused_activation", "LeakyRelu");
    attrs->SetFloat("fused_alpha", act.attrs.GetFloat("alpha", 0.01f));
    return true;
  }
  if (act.op_type == "Clip") {
    float lo = act.attrs.GetFloat("min", -std::numeric_limits<float>::infinity());
    float hi = act.attrs.GetFloat("max", std::numeric_limits<float>::infinity());
    for (int i = 1; i <= 2; ++i) {
      if (act.inputs.size() <= static_cast<size_t>(i) || act.inputs[i].empty()) continue;
      const Tensor* t = g.FindConstant(act.inputs[i]);
      if (t == nullptr || t->dtype() != DataType::kFloat32 || t->num_elements() != 1) return false;
      (i == 1 ? lo : hi) = t->data<float>()[0];
    }
    attrs->SetString("fused_activation", "Clip");
    attrs->SetFloat("fused_min", lo);
    attrs->SetFloat("fused_max", hi);
    return true;
  }
  return false;
}

}  // namespace

absl::Status FuseActivations(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  std::vector<bool> removed(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& act = graph.nodes[i];
    if (act.inputs.empty() || act.outputs.size() != 1) continue;
    auto it = producers.find(act.inputs[0]);
    if (it == producers.end() || uses[act.inputs[0]] != 1 || graph.IsGraphOutput(act.inputs[0])) continue;
    Node& prod = graph.nodes[it->second];
    if (!IsFusionTarget(prod) || removed[it->second]) continue;
    const ValueType* t = graph.FindType(prod.outputs[0]);
    if (t == nullptr || t->dtype != DataType::kFloat32) continue;
    if (!ReadActivation(graph, act, &prod.attrs)) continue;
    graph.values.erase(prod.outputs[0]);
    prod.outputs[0] = act.outputs[0];
    removed[i] = true;
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!removed[i]) kept.push_back(std::move(graph.nodes[i]));
  }
  graph.nodes = std::move(kept);
  return absl::OkStatus();
}

}  // namespace kvant
