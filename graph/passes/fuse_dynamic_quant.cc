// Dynamic quantization of matrix products: the activation is quantized per
// call (u8, range measured on the call's data), the constant weights once
// (s8), and the product runs on the INT8 GEMM with a float epilogue
// (com.microsoft DynamicQuantizeMatMul, ops/cpu/qmatmul_s8.cc).
//  - FuseDynamicQuantizeMatMul: ONNX Runtime's quantize_dynamic writes
//      DynamicQuantizeLinear(x) -> MatMulInteger(xq, Wq, x_zp, W_zp)
//      -> Cast(float) -> Mul(., Mul(x_scale, W_scale)) [-> Add(bias)]
//    which becomes DynamicQuantizeMatMul(x, Wq, W_scale, W_zp[, bias]): one
//    kernel instead of five passes over the activations.
//  - QuantizeMatMulsDynamic (SessionOptions::dynamic_int8): FP32 MatMul with
//    constant 2-D weights, and Gemm (alpha = beta = 1, A not transposed, 1-D
//    or no C), become DynamicQuantizeMatMul with s8 weights symmetric per
//    output column (scale = max |w| / 127); a MatMul's fused_bias (its
//    bias Add, graph/passes/fuse_matmul_bias.cc) becomes the bias input.
#include <cmath>

#include "graph/passes/passes.h"

namespace kvant {
namespace {

const Node* Producer(const Graph& g, const absl::flat_hash_map<std::string, int>& producers, const std::string& v,
                     const char* op) {
  auto it = producers.find(v);
  if (it == producers.end()) return nullptr;
  const Node& n = g.nodes[it->second];
  return n.op_type == op && n.domain.empty() ? &n : nullptr;
}

// The only consumer of `value` (a node index), or -1.
int SoleConsumer(const Graph& g, const absl::flat_hash_map<std::string, int>& uses, const std::string& value) {
  auto u = uses.find(value);
  if (u == uses.end() || u->second != 1 || g.IsGraphOutput(value)) return -1;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const std::string& in : g.nodes[i].inputs)
      if (in == value) return static_cast<int>(i);
  }
  return -1;
}

// The other input of a binary node given one of them, or "".
std::string OtherInput(const Node& n, const std::string& one) {
  if (n.inputs.size() != 2) return "";
  if (n.inputs[0] == one) return n.inputs[1];
  if (n.inputs[1] == one) return n.inputs[0];
  return "";
}

// A constant f32 vector of n values (a bias).
bool IsBias(const Graph& g, const std::string& name, int64_t n) {
  const Tensor* t = g.FindConstant(name);
  return t != nullptr && t->dtype() == DataType::kFloat32 && t->rank() == 1 && t->shape()[0] == n;
}

// Follows `value` into an Add with a constant [n] bias, if it is the sole
// consumer: returns its index and sets *bias.
int BiasAdd(const Graph& g, const absl::flat_hash_map<std::string, int>& uses, const std::string& value, int64_t n,
            std::string* bias) {
  const int ai = SoleConsumer(g, uses, value);
  if (ai < 0) return -1;
  const Node& add = g.nodes[ai];
  if (add.op_type != "Add" || !add.domain.empty()) return -1;
  const std::string other = OtherInput(add, value);
  if (other.empty() || !IsBias(g, other, n)) return -1;
  *bias = other;
  return ai;
}

// Symmetric s8 per column of B(k, n) = at(k, n) into dst[k * n_total + n]:
// scale max |column| / 127 (1 for an all-zero or non-finite column).
template <typename At>
void QuantizeColumns(int64_t k, int64_t n, At at, int8_t* dst, int64_t ld, float* scale) {
  for (int64_t c = 0; c < n; ++c) {
    float amax = 0;
    for (int64_t r = 0; r < k; ++r) amax = std::fmax(amax, std::fabs(at(r, c)));
    const float s = amax > 0 && std::isfinite(amax) ? amax / 127.f : 1.f;
    scale[c] = s;
    for (int64_t r = 0; r < k; ++r) {
      const float q = std::nearbyint(at(r, c) / s);
      dst[r * ld + c] = static_cast<int8_t>(q > 127.f ? 127.f : (q < -127.f ? -127.f : q));
    }
  }
}

// W or R [dirs, gh, k] (f32) as s8 [dirs, k, gh] and scales [dirs, gh].
std::pair<Tensor, Tensor> QuantizeRecurrentWeights(const Tensor& w) {
  const int64_t dirs = w.shape()[0], gh = w.shape()[1], k = w.shape()[2];
  Tensor q = Tensor::Zeros(DataType::kInt8, {dirs, k, gh});
  Tensor scale = Tensor::Zeros(DataType::kFloat32, {dirs, gh});
  for (int64_t d = 0; d < dirs; ++d) {
    const float* src = w.data<float>() + d * gh * k;
    QuantizeColumns(k, gh, [&](int64_t r, int64_t c) { return src[c * k + r]; }, q.data<int8_t>() + d * k * gh, gh,
                    scale.data<float>() + d * gh);
  }
  return {std::move(q), std::move(scale)};
}

// LSTM/GRU/RNN with constant f32 W and R -> their dynamically quantized form.
bool QuantizeRecurrent(Graph& graph, Node& node) {
  const bool lstm = node.op_type == "LSTM";
  if (!node.domain.empty() || (!lstm && node.op_type != "GRU" && node.op_type != "RNN") || node.inputs.size() < 3) {
    return false;
  }
  const Tensor* w = graph.FindConstant(node.inputs[1]);
  const Tensor* r = graph.FindConstant(node.inputs[2]);
  for (const Tensor* t : {w, r}) {
    if (t == nullptr || t->dtype() != DataType::kFloat32 || t->rank() != 3) return false;
  }
  auto [wq, ws] = QuantizeRecurrentWeights(*w);
  auto [rq, rs] = QuantizeRecurrentWeights(*r);
  Node q = node;
  q.op_type = "DynamicQuantize" + node.op_type;
  q.domain = lstm ? "com.microsoft" : "kvant";
  q.inputs.resize(8);
  q.inputs[1] = graph.AddConstant(node.name + "_W_s8", wq);
  q.inputs[2] = graph.AddConstant(node.name + "_R_s8", rq);
  q.inputs.push_back(graph.AddConstant(node.name + "_W_scale", ws));
  q.inputs.push_back("");
  q.inputs.push_back(graph.AddConstant(node.name + "_R_scale", rs));
  q.inputs.push_back("");
  node = std::move(q);
  return true;
}

}  // namespace

absl::Status FuseDynamicQuantizeMatMul(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  std::vector<bool> removed(graph.nodes.size(), false);
  std::vector<std::pair<size_t, Node>> replacements;
  for (size_t mi = 0; mi < graph.nodes.size(); ++mi) {
    const Node& mm = graph.nodes[mi];
    if (mm.op_type != "MatMulInteger" || !mm.domain.empty() || mm.inputs.size() < 3 || removed[mi]) continue;
    const Node* dq = Producer(graph, producers, mm.inputs[0], "DynamicQuantizeLinear");
    const Tensor* w = graph.FindConstant(mm.inputs[1]);
    if (dq == nullptr || w == nullptr || w->rank() != 2 || dq->outputs.size() < 3 || mm.inputs[2] != dq->outputs[2]) {
      continue;
    }
    const int64_t n = w->shape()[1];
    // Cast(to float) -> Mul by x_scale * w_scale.
    const int ci = SoleConsumer(graph, uses, mm.outputs[0]);
    if (ci < 0 || graph.nodes[ci].op_type != "Cast" ||
        graph.nodes[ci].attrs.GetInt("to", 0) != static_cast<int64_t>(DataType::kFloat32)) {
      continue;
    }
    const Node& cast = graph.nodes[ci];
    const int ui = SoleConsumer(graph, uses, cast.outputs[0]);
    if (ui < 0 || graph.nodes[ui].op_type != "Mul") continue;
    const Node& mul = graph.nodes[ui];
    const Node* scales = Producer(graph, producers, OtherInput(mul, cast.outputs[0]), "Mul");
    if (scales == nullptr) continue;
    const std::string w_scale = OtherInput(*scales, dq->outputs[1]);
    const Tensor* ws = w_scale.empty() ? nullptr : graph.FindConstant(w_scale);
    if (ws == nullptr || ws->dtype() != DataType::kFloat32 || ws->rank() > 1 ||
        (ws->num_elements() != 1 && ws->num_elements() != n)) {
      continue;
    }
    std::string bias;
    const int ai = BiasAdd(graph, uses, mul.outputs[0], n, &bias);
    Node fused;
    fused.op_type = "DynamicQuantizeMatMul";
    fused.domain = "com.microsoft";
    fused.name = mm.name;
    fused.inputs = {dq->inputs[0], mm.inputs[1], w_scale, mm.inputs.size() > 3 ? mm.inputs[3] : ""};
    if (ai >= 0) fused.inputs.push_back(bias);
    fused.outputs = ai >= 0 ? graph.nodes[ai].outputs : mul.outputs;
    removed[ci] = removed[ui] = true;
    if (ai >= 0) removed[ai] = true;
    replacements.emplace_back(mi, std::move(fused));
  }
  for (auto& [index, node] : replacements) graph.nodes[index] = std::move(node);
  graph.RemoveNodes(removed);  // the DynamicQuantizeLinear and scale Mul go with dead-node removal
  return absl::OkStatus();
}

absl::Status QuantizeMatMulsDynamic(Graph& graph) {
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& node = graph.nodes[i];
    if (!node.domain.empty() || node.inputs.size() < 2 || QuantizeRecurrent(graph, node)) continue;
    const bool gemm = node.op_type == "Gemm";
    if (!gemm && node.op_type != "MatMul") continue;
    if (node.attrs.Has("fused_activation") || node.attrs.Has("fused_scale") || node.attrs.Has("fused_shift")) continue;
    const ValueType* at = graph.FindType(node.inputs[0]);
    const Tensor* w = graph.FindConstant(node.inputs[1]);
    if (at == nullptr || at->dtype != DataType::kFloat32 || w == nullptr || w->dtype() != DataType::kFloat32 ||
        w->rank() != 2) {
      continue;
    }
    bool trans_b = false;
    std::string bias;
    if (gemm) {
      if (node.attrs.GetInt("transA", 0) != 0 || node.attrs.GetFloat("alpha", 1.f) != 1.f ||
          node.attrs.GetFloat("beta", 1.f) != 1.f || !at->shape.rank_known || at->shape.rank() != 2) {
        continue;
      }
      trans_b = node.attrs.GetInt("transB", 0) != 0;
      if (node.inputs.size() > 2 && !node.inputs[2].empty()) {
        bias = node.inputs[2];
        if (!IsBias(graph, bias, trans_b ? w->shape()[0] : w->shape()[1])) continue;
      }
    }
    const int64_t k = trans_b ? w->shape()[1] : w->shape()[0], n = trans_b ? w->shape()[0] : w->shape()[1];
    // s8 weights [K, N], symmetric per column.
    Tensor wq = Tensor::Zeros(DataType::kInt8, {k, n});
    Tensor scale = Tensor::Zeros(DataType::kFloat32, {n});
    const float* src = w->data<float>();
    QuantizeColumns(k, n, [&](int64_t r, int64_t c) { return trans_b ? src[c * k + r] : src[r * n + c]; },
                    wq.data<int8_t>(), n, scale.data<float>());
    if (const Attribute* b = node.attrs.Find("fused_bias"); !gemm && b != nullptr) {
      if (b->kind != Attribute::Kind::kTensor || b->t.dtype() != DataType::kFloat32 || b->t.rank() != 1 ||
          b->t.num_elements() != n) {
        continue;  // the FP32 kernel names what is wrong
      }
      bias = graph.AddConstant(node.name + "_bias", b->t);
    }
    Node fused;
    fused.op_type = "DynamicQuantizeMatMul";
    fused.domain = "com.microsoft";
    fused.name = node.name;
    fused.inputs = {node.inputs[0], graph.AddConstant(node.name + "_weight_s8", wq),
                    graph.AddConstant(node.name + "_weight_scale", scale), ""};
    if (!bias.empty()) fused.inputs.push_back(bias);
    fused.outputs = node.outputs;
    graph.nodes[i] = std::move(fused);
  }
  return absl::OkStatus();
}

}  // namespace kvant
