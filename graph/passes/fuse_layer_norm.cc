// LayerNormalization recognition, for exports that spell it out (before
// opset 17): mean = ReduceMean(x, last axis); d = x - mean;
// var = ReduceMean(d^2, last axis); y = d / Sqrt(var + eps) * gamma + beta
// becomes LayerNormalization(x, gamma, beta, axis = -1, epsilon = eps).
#include "graph/passes/passes.h"
#include "ops/op_schema.h"

namespace kvant {
namespace {

struct Finder {
  Graph& g;
  absl::flat_hash_map<std::string, int> uses;
  absl::flat_hash_map<std::string, int> producers;

  Node* Producer(const std::string& v, const char* op) {
    auto it = producers.find(v);
    if (it == producers.end()) return nullptr;
    Node& n = g.nodes[it->second];
    return n.op_type == op && n.domain.empty() ? &n : nullptr;
  }
  const Tensor* Scalar(const std::string& v) {
    const Tensor* t = g.FindConstant(v);
    return t && t->dtype() == DataType::kFloat32 && t->num_elements() == 1 ? t : nullptr;
  }
  // ReduceMean over exactly the last axis, keeping dims.
  bool MeanOverLastAxis(const Node& n) {
    const ValueType* t = g.FindType(n.inputs[0]);
    if (!t || !t->shape.rank_known || n.attrs.GetInt("keepdims", 1) != 1) return false;
    std::vector<int64_t> axes = n.attrs.GetInts("axes");
    if (n.inputs.size() > 1 && !n.inputs[1].empty()) {
      const Tensor* a = g.FindConstant(n.inputs[1]);
      if (!a) return false;
      axes = ReadInts(*a);
    }
    const int64_t rank = t->shape.rank();
    return axes.size() == 1 && (axes[0] == -1 || axes[0] == rank - 1);
  }
};

}  // namespace

absl::Status FuseLayerNorm(Graph& graph) {
  Finder f{graph, graph.UseCounts(), graph.Producers()};
  for (Node& add_beta : graph.nodes) {
    if (add_beta.op_type != "Add" || !add_beta.domain.empty() || add_beta.inputs.size() != 2) continue;
    for (int side = 0; side < 2; ++side) {
      const std::string& beta = add_beta.inputs[1 - side];
      Node* mul = f.Producer(add_beta.inputs[side], "Mul");
      if (!graph.IsConstant(beta) || !mul || f.uses[mul->outputs[0]] != 1) continue;
      for (int mside = 0; mside < 2; ++mside) {
        const std::string& gamma = mul->inputs[1 - mside];
        Node* div = f.Producer(mul->inputs[mside], "Div");
        if (!graph.IsConstant(gamma) || !div || f.uses[div->outputs[0]] != 1) continue;
        Node* sqrt = f.Producer(div->inputs[1], "Sqrt");
        Node* sub = f.Producer(div->inputs[0], "Sub");
        if (!sqrt || !sub || f.uses[sqrt->outputs[0]] != 1 || f.uses[sub->outputs[0]] != 2) continue;
        Node* add_eps = f.Producer(sqrt->inputs[0], "Add");
        if (!add_eps || f.uses[add_eps->outputs[0]] != 1) continue;
        const int var_side = f.Scalar(add_eps->inputs[1]) ? 0 : 1;
        const Tensor* eps = f.Scalar(add_eps->inputs[1 - var_side]);
        Node* var = f.Producer(add_eps->inputs[var_side], "ReduceMean");
        if (!eps || !var || !f.MeanOverLastAxis(*var) || f.uses[var->outputs[0]] != 1) continue;
        Node* pow = f.Producer(var->inputs[0], "Pow");
        const Tensor* two = pow ? f.Scalar(pow->inputs[1]) : nullptr;
        if (!pow || !two || two->data<float>()[0] != 2.f || pow->inputs[0] != sub->outputs[0]) continue;
        Node* mean = f.Producer(sub->inputs[1], "ReduceMean");
        if (!mean || !f.MeanOverLastAxis(*mean) || mean->inputs[0] != sub->inputs[0] || f.uses[mean->outputs[0]] != 1) {
          continue;
        }
        const ValueType* x = graph.FindType(sub->inputs[0]);
        const Tensor* gt = graph.FindConstant(gamma);
        const Tensor* bt = graph.FindConstant(beta);
        const Dim last = x->shape.dims.back();
        if (!last.known() || gt->num_elements() != last.value || bt->num_elements() != last.value) continue;
        // Rewrite the final Add; the rest dies in RemoveDeadNodes.
        const float epsilon = eps->data<float>()[0];
        const std::string input = sub->inputs[0];
        add_beta.op_type = "LayerNormalization";
        add_beta.inputs = {input, gamma, beta};
        add_beta.attrs = AttributeMap();
        add_beta.attrs.SetInt("axis", -1);
        add_beta.attrs.SetFloat("epsilon", epsilon);
        side = 2;
        break;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace kvant
