// Activation fusion: Conv/Gemm/MatMul (and the dynamically quantized
// DynamicQuantizeMatMul/MatMulIntegerToFloat) -> Relu | Clip | LeakyRelu |
// HardSigmoid | HardSwish | Gelu (exact) becomes one node whose kernel
// applies the activation in its epilogue, followed by any scalar
// Mul/Add/Div (the affine tail). The producer's output must have no other
// reader and not be a graph output.
#include <limits>

#include "graph/passes/passes.h"

namespace kvant {
namespace {

bool IsFusionTarget(const Node& n) {
  return (n.domain.empty() && (n.op_type == "Conv" || n.op_type == "Gemm" || n.op_type == "MatMul")) ||
         (n.domain == "kvant" && n.op_type == "ConvNhwc") ||  // after a residual fusion (fuse_conv_residual.cc)
         // INT8 products with f32 output (ops/cpu/qmatmul_s8.cc): dynamic quantization.
         (n.domain == "com.microsoft" && (n.op_type == "DynamicQuantizeMatMul" || n.op_type == "MatMulIntegerToFloat"));
}

bool HasPostAffine(const Node& n) { return n.attrs.Has("fused_scale") || n.attrs.Has("fused_shift"); }

// A Mul/Add/Div of the producer's output by a scalar constant, folded into
// the producer's post-activation affine tail. False if `op` is not one.
bool ReadAffineTail(const Graph& g, const Node& op, const std::string& data, AttributeMap* attrs) {
  if (!op.domain.empty() || op.inputs.size() != 2) return false;
  const bool data_first = op.inputs[0] == data;
  if (!data_first && op.inputs[1] != data) return false;
  const Tensor* c = g.FindConstant(op.inputs[data_first ? 1 : 0]);
  if (c == nullptr || c->dtype() != DataType::kFloat32 || c->num_elements() != 1) return false;
  const float v = c->data<float>()[0];
  float scale = attrs->GetFloat("fused_scale", 1.f), shift = attrs->GetFloat("fused_shift", 0.f);
  if (op.op_type == "Mul") {
    scale *= v;
    shift *= v;
  } else if (op.op_type == "Add") {
    shift += v;
  } else if (op.op_type == "Div" && data_first && v != 0.f) {
    scale /= v;
    shift /= v;
  } else {
    return false;
  }
  attrs->SetFloat("fused_scale", scale);
  attrs->SetFloat("fused_shift", shift);
  return true;
}

// Writes the activation into `attrs`; false if `act` cannot be fused.
bool ReadActivation(const Graph& g, const Node& act, AttributeMap* attrs) {
  if (!act.domain.empty()) return false;
  if (act.op_type == "Relu") {
    attrs->SetString("fused_activation", "Relu");
    return true;
  }
  if (act.op_type == "HardSwish") {
    attrs->SetString("fused_activation", "HardSwish");
    return true;
  }
  if (act.op_type == "Gelu" && act.attrs.GetString("approximate", "none") == "none") {
    attrs->SetString("fused_activation", "Gelu");
    return true;
  }
  if (act.op_type == "HardSigmoid") {
    attrs->SetString("fused_activation", "HardSigmoid");
    attrs->SetFloat("fused_alpha", act.attrs.GetFloat("alpha", 0.2f));
    attrs->SetFloat("fused_beta", act.attrs.GetFloat("beta", 0.5f));
    return true;
  }
  if (act.op_type == "LeakyRelu") {
    attrs->SetString("fused_activation", "LeakyRelu");
    attrs->SetFloat("fused_alpha", act.attrs.GetFloat("alpha", 0.01f));
    return true;
  }
  if (act.op_type == "Clip") {
    float lo, hi;
    if (!ActivationRange(g, act, &lo, &hi)) return false;
    attrs->SetString("fused_activation", "Clip");
    attrs->SetFloat("fused_min", lo);
    attrs->SetFloat("fused_max", hi);
    return true;
  }
  return false;
}

}  // namespace

bool ActivationRange(const Graph& g, const Node& act, float* lo, float* hi) {
  if (!act.domain.empty()) return false;
  if (act.op_type == "Relu") {
    *lo = 0.f;
    *hi = std::numeric_limits<float>::infinity();
    return true;
  }
  if (act.op_type != "Clip") return false;
  *lo = act.attrs.GetFloat("min", -std::numeric_limits<float>::infinity());
  *hi = act.attrs.GetFloat("max", std::numeric_limits<float>::infinity());
  for (int i = 1; i <= 2; ++i) {
    if (act.inputs.size() <= static_cast<size_t>(i) || act.inputs[i].empty()) continue;
    const Tensor* t = g.FindConstant(act.inputs[i]);
    if (t == nullptr || t->dtype() != DataType::kFloat32 || t->num_elements() != 1) return false;
    (i == 1 ? *lo : *hi) = t->data<float>()[0];
  }
  return true;
}

absl::Status FuseActivations(Graph& graph) {
  bool changed = true;
  while (changed) {
    changed = false;
    auto uses = graph.UseCounts();
    auto producers = graph.Producers();
    for (size_t i = 0; i < graph.nodes.size() && !changed; ++i) {
      const Node& op = graph.nodes[i];
      if (op.inputs.empty() || op.outputs.size() != 1) continue;
      for (const std::string& data : op.inputs) {
        auto it = producers.find(data);
        if (data.empty() || it == producers.end() || uses[data] != 1 || graph.IsGraphOutput(data)) continue;
        Node& prod = graph.nodes[it->second];
        const ValueType* t = graph.FindType(prod.outputs[0]);
        if (!IsFusionTarget(prod) || t == nullptr || t->dtype != DataType::kFloat32) continue;
        // An activation goes before any affine tail; the tail absorbs scalar Mul/Add/Div.
        AttributeMap attrs = prod.attrs;
        const bool fused = (op.inputs[0] == data && !attrs.Has("fused_activation") && !HasPostAffine(prod) &&
                            ReadActivation(graph, op, &attrs)) ||
                           ReadAffineTail(graph, op, data, &attrs);
        if (!fused) continue;
        prod.attrs = attrs;
        graph.values.erase(prod.outputs[0]);
        prod.outputs[0] = op.outputs[0];
        graph.nodes.erase(graph.nodes.begin() + i);
        changed = true;
        break;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace kvant
