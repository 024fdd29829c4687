// QDQ fusion. DequantizeLinear(x) and DequantizeLinear(constant weights)
// feeding a Conv whose only consumer is a QuantizeLinear become one
// QLinearConv (a ConvTranspose of group 1: ONNX Runtime's
// com.microsoft.QLinearConvTranspose, per-channel weights along axis 1); the
// same around a MatMul becomes QLinearMatMul (a
// MatMul has no bias; transformer exports add it separately). Either way the
// product runs on the INT8 kernels instead of on dequantized floats. The
// bias may be a DequantizeLinear of int32 values at scale x_scale * w_scale
// (what ONNX Runtime's and PyTorch's exporters write) or a float constant,
// quantized here to that scale. A Relu or Clip between the product and the
// QuantizeLinear becomes the output's clamp range. Parameters must be
// constant, per tensor for x and y, and per tensor or per output channel for
// the weights. Runs before constant
// folding, which would otherwise turn the weights' DequantizeLinear into
// float weights. MatMul weights may be per tensor or, for 2-D weights, per
// column (axis 1).
#include <cmath>
#include <optional>

#include "graph/passes/passes.h"

namespace kvant {
namespace {

const Node* ProducerOf(const Graph& g, const absl::flat_hash_map<std::string, int>& producers,
                       const std::string& value, const char* op) {
  auto it = producers.find(value);
  if (it == producers.end()) return nullptr;
  const Node& n = g.nodes[it->second];
  return n.op_type == op && n.domain.empty() ? &n : nullptr;
}

bool IsByteType(DataType t) { return t == DataType::kUInt8 || t == DataType::kInt8; }

// A constant f32 scale with one value or `n` values.
const Tensor* ConstScale(const Graph& g, const std::string& name, int64_t n) {
  const Tensor* t = g.FindConstant(name);
  if (t == nullptr || t->dtype() != DataType::kFloat32 || t->rank() > 1) return nullptr;
  return t->num_elements() == 1 || t->num_elements() == n ? t : nullptr;
}

// The zero point input i of a Q/DQ node: its name, or a new zero of `type`.
std::string ZeroPointOrZero(Graph& g, const Node& n, size_t i, DataType type) {
  if (n.inputs.size() > i && !n.inputs[i].empty()) return n.inputs[i];
  Tensor zero = Tensor::Zeros(type, {});
  return g.AddConstant(n.name + "_zero_point", zero);
}

// A QuantizeLinear's output type: its zero point's, else output_dtype, else
// u8 (kUndefined when the zero point's type is unknown).
DataType QuantizedType(const Graph& g, const Node& q) {
  if (q.inputs.size() > 2 && !q.inputs[2].empty()) {
    const ValueType* t = g.FindType(q.inputs[2]);
    return t == nullptr ? DataType::kUndefined : t->dtype;
  }
  const int64_t t = q.attrs.GetInt("output_dtype", 0);
  return t != 0 ? static_cast<DataType>(t) : DataType::kUInt8;
}

float At(const Tensor& t, int64_t i) { return t.data<float>()[t.num_elements() == 1 ? 0 : i]; }

// A compute node's bias `value` for `m` output channels as int32 at scale
// xs * ws[c]: a DequantizeLinear of int32 values at that scale with zero
// points 0 (what ONNX Runtime's and PyTorch's exporters write; *dq is set to
// it), or a float constant quantized here. Empty when it is neither.
std::string QuantizedBias(Graph& graph, const absl::flat_hash_map<std::string, int>& producers,
                          const std::string& value, const Tensor& xs, const Tensor& ws, int64_t m,
                          const std::string& node_name, const Node** dq) {
  *dq = ProducerOf(graph, producers, value, "DequantizeLinear");
  if (*dq != nullptr) {
    const Node& d = **dq;
    const Tensor* bq = graph.FindConstant(d.inputs[0]);
    const Tensor* bs = ConstScale(graph, d.inputs[1], m);
    const Tensor* bz = d.inputs.size() > 2 && !d.inputs[2].empty() ? graph.FindConstant(d.inputs[2]) : nullptr;
    bool ok = bq != nullptr && bq->dtype() == DataType::kInt32 && bq->rank() == 1 && bq->num_elements() == m &&
              bs != nullptr;
    if (ok && bz != nullptr) {
      for (int64_t i = 0; i < bz->num_elements(); ++i) ok &= bz->data<int32_t>()[i] == 0;
    }
    for (int64_t i = 0; ok && i < m; ++i) {
      const float want = At(xs, 0) * At(ws, i);
      ok = std::abs(At(*bs, i) - want) <= 1e-6f * std::abs(want);
    }
    return ok ? d.inputs[0] : std::string();
  }
  const Tensor* b = graph.FindConstant(value);
  if (b == nullptr || b->dtype() != DataType::kFloat32 || b->rank() != 1 || b->num_elements() != m) return {};
  std::vector<int32_t> bq(m);
  for (int64_t i = 0; i < m; ++i) {
    const double v = std::nearbyint(double(b->data<float>()[i]) / (double(At(xs, 0)) * At(ws, i)));
    if (!(std::abs(v) < 2147483647.0)) return {};
    bq[i] = static_cast<int32_t>(v);
  }
  return graph.AddConstant(node_name + "_bias_quantized", Tensor::FromVector(DataType::kInt32, {m}, bq));
}

// An output read only by the next node of a chain.
bool SoleUse(const Graph& g, const absl::flat_hash_map<std::string, int>& uses, const std::string& value) {
  auto it = uses.find(value);
  return it != uses.end() && it->second == 1 && !g.IsGraphOutput(value);
}

// The operands of MatMul(DQ(a), DQ(constant b)) that the INT8 products
// take: a and b u8/s8, a per tensor, b per tensor or (2-D) per column, no
// blocks. The tensor pointers do not survive AddConstant; the types do.
struct QdqMatMulOperands {
  const Node* dqa = nullptr;
  const Node* dqb = nullptr;
  const Tensor* bq = nullptr;
  const Tensor* as = nullptr;
  const Tensor* bs = nullptr;
  DataType a_type = DataType::kUndefined, b_type = DataType::kUndefined;
  int64_t n = 1;  // columns of b
};

std::optional<QdqMatMulOperands> MatchQdqMatMul(const Graph& graph,
                                                const absl::flat_hash_map<std::string, int>& producers, const Node& mm) {
  QdqMatMulOperands o;
  o.dqa = ProducerOf(graph, producers, mm.inputs[0], "DequantizeLinear");
  o.dqb = ProducerOf(graph, producers, mm.inputs[1], "DequantizeLinear");
  if (o.dqa == nullptr || o.dqb == nullptr) return std::nullopt;
  o.bq = graph.FindConstant(o.dqb->inputs[0]);
  const ValueType* at = graph.FindType(o.dqa->inputs[0]);
  if (o.bq == nullptr || o.bq->rank() < 1 || !IsByteType(o.bq->dtype()) || at == nullptr || !IsByteType(at->dtype)) {
    return std::nullopt;
  }
  o.n = o.bq->rank() == 2 ? o.bq->shape()[1] : 1;
  o.as = ConstScale(graph, o.dqa->inputs[1], 1);
  o.bs = ConstScale(graph, o.dqb->inputs[1], o.n);
  if (o.as == nullptr || o.bs == nullptr) return std::nullopt;
  if (o.bs->num_elements() > 1) {
    const int64_t axis = o.dqb->attrs.GetInt("axis", 1);
    if (o.bq->rank() != 2 || (axis != 1 && axis != -1)) return std::nullopt;  // per column only
  }
  if (o.dqa->attrs.GetInt("block_size", 0) != 0 || o.dqb->attrs.GetInt("block_size", 0) != 0) return std::nullopt;
  o.a_type = at->dtype;
  o.b_type = o.bq->dtype();
  return o;
}

// Q([Relu|Clip](MatMul(DQ(a), DQ(constant b)) [+ bias])) -> QLinearMatMul.
// With a bias (an Add of a constant vector, or of DequantizeLinear(int32) at
// scale sa * sb[n], as kvant quantize writes a Linear layer) it becomes
// kvant's QLinearMatMul, which adds the bias before it requantizes.
absl::Status FuseQdqMatMul(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  std::vector<bool> removed(graph.nodes.size(), false);
  std::vector<std::pair<size_t, Node>> replacements;
  for (size_t qi = 0; qi < graph.nodes.size(); ++qi) {
    const Node& q = graph.nodes[qi];
    if (q.op_type != "QuantizeLinear" || !q.domain.empty() || q.inputs.size() < 2) continue;
    auto mi = producers.find(q.inputs[0]);
    if (mi == producers.end() || removed[mi->second]) continue;
    int act_index = -1, add_index = -1;
    float act_lo = 0, act_hi = 0;
    if (ActivationRange(graph, graph.nodes[mi->second], &act_lo, &act_hi) &&
        SoleUse(graph, uses, graph.nodes[mi->second].outputs[0])) {
      act_index = mi->second;
      mi = producers.find(graph.nodes[act_index].inputs[0]);
      if (mi == producers.end() || removed[mi->second]) continue;
    }
    std::string bias_value;
    if (const Node& add = graph.nodes[mi->second];
        add.op_type == "Add" && add.domain.empty() && add.inputs.size() == 2 && SoleUse(graph, uses, add.outputs[0])) {
      for (int side : {0, 1}) {
        const Node* p = ProducerOf(graph, producers, add.inputs[side], "MatMul");
        if (p == nullptr || add.inputs[0] == add.inputs[1]) continue;
        add_index = mi->second;
        bias_value = add.inputs[1 - side];
        mi = producers.find(add.inputs[side]);
        break;
      }
      if (add_index < 0 || removed[mi->second]) continue;
    }
    const Node& mm = graph.nodes[mi->second];
    if (mm.op_type != "MatMul" || !mm.domain.empty() || !SoleUse(graph, uses, mm.outputs[0])) continue;
    const auto ops = MatchQdqMatMul(graph, producers, mm);
    if (!ops || ConstScale(graph, q.inputs[1], 1) == nullptr) continue;
    const Node *dqa = ops->dqa, *dqb = ops->dqb;
    const DataType yt = QuantizedType(graph, q);
    if (!IsByteType(yt)) continue;
    const std::string name = mm.name.empty() ? q.name : mm.name;
    std::string bias;
    const Node* dqc = nullptr;
    if (add_index >= 0) {
      if (ops->bq->rank() != 2) continue;
      bias = QuantizedBias(graph, producers, bias_value, *ops->as, *ops->bs, ops->n, name, &dqc);
      if (bias.empty()) continue;
    }
    Node fused;
    fused.op_type = "QLinearMatMul";
    fused.name = name;
    fused.inputs = {dqa->inputs[0], dqa->inputs[1], ZeroPointOrZero(graph, *dqa, 2, ops->a_type),
                    dqb->inputs[0], dqb->inputs[1], ZeroPointOrZero(graph, *dqb, 2, ops->b_type),
                    q.inputs[1], ZeroPointOrZero(graph, q, 2, yt)};
    if (!bias.empty()) {
      fused.domain = "kvant";
      fused.inputs.push_back(bias);
    }
    fused.outputs = q.outputs;
    if (act_index >= 0) {
      fused.attrs.SetFloat("kvant_clip_min", act_lo);
      fused.attrs.SetFloat("kvant_clip_max", act_hi);
      removed[act_index] = true;
    }
    if (add_index >= 0) removed[add_index] = true;
    removed[qi] = true;
    for (const Node* dq : {dqa, dqb, dqc}) {
      if (dq == nullptr) continue;
      if (uses[dq->outputs[0]] == 1 && !graph.IsGraphOutput(dq->outputs[0])) removed[producers[dq->outputs[0]]] = true;
    }
    replacements.emplace_back(mi->second, std::move(fused));
  }
  for (auto& [index, node] : replacements) graph.nodes[index] = std::move(node);
  graph.RemoveNodes(removed);
  return absl::OkStatus();
}

// MatMul(DQ(a), DQ(constant b)) [+ bias] whose result stays float (no
// QuantizeLinear reads it: a classifier's logits before Softmax, a graph
// output) -> com.microsoft MatMulIntegerToFloat: the INT8 product with f32
// output and the bias in its epilogue, instead of a float product of
// dequantized values. Runs after the Q-terminated fusion.
absl::Status FuseQdqMatMulToFloat(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  absl::flat_hash_map<std::string, std::vector<int>> consumers;
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    for (const auto& in : graph.nodes[i].inputs) consumers[in].push_back(static_cast<int>(i));
  std::vector<bool> removed(graph.nodes.size(), false);
  std::vector<std::pair<size_t, Node>> replacements;
  for (size_t mi = 0; mi < graph.nodes.size(); ++mi) {
    const Node& mm = graph.nodes[mi];
    if (mm.op_type != "MatMul" || !mm.domain.empty() || removed[mi]) continue;
    const auto ops = MatchQdqMatMul(graph, producers, mm);
    if (!ops || ops->bq->rank() != 2) continue;
    const Node *dqa = ops->dqa, *dqb = ops->dqb;
    const int64_t n = ops->n;
    // The bias Add, when the product's only reader adds a constant vector.
    int add_index = -1;
    std::string bias;
    const Node* dqc = nullptr;
    if (SoleUse(graph, uses, mm.outputs[0])) {
      const int c = consumers[mm.outputs[0]].front();
      const Node& add = graph.nodes[c];
      if (add.op_type == "Add" && add.domain.empty() && add.inputs.size() == 2 && add.inputs[0] != add.inputs[1]) {
        const std::string& other = add.inputs[add.inputs[0] == mm.outputs[0] ? 1 : 0];
        // MatMulIntegerToFloat's bias is f32: a float vector as it is, or
        // int32 values at scale sa * sb[n] (QuantizedBias checks them and,
        // for these, adds no constant that would move `as` and `bs`).
        const Tensor* f = graph.FindConstant(other);
        if (f != nullptr && f->dtype() == DataType::kFloat32 && f->rank() == 1 && f->num_elements() == n) {
          bias = other;
          add_index = c;
        } else if (ProducerOf(graph, producers, other, "DequantizeLinear") != nullptr) {
          const std::string q = QuantizedBias(graph, producers, other, *ops->as, *ops->bs, n, mm.name, &dqc);
          if (!q.empty()) {
            const Tensor* qt = graph.FindConstant(q);
            std::vector<float> b(n);
            for (int64_t j = 0; j < n; ++j) b[j] = static_cast<float>(qt->data<int32_t>()[j]) * At(*ops->as, 0) * At(*ops->bs, j);
            bias = graph.AddConstant(mm.name + "_bias_f32", Tensor::FromVector(DataType::kFloat32, {n}, b));
            add_index = c;
          }
        }
      }
    }
    const std::string& out = add_index >= 0 ? graph.nodes[add_index].outputs[0] : mm.outputs[0];
    bool quantized_reader = false;
    for (int c : consumers[out]) quantized_reader |= graph.nodes[c].op_type == "QuantizeLinear";
    if (quantized_reader) continue;  // the Q-terminated fusion's case, which did not match
    Node fused;
    fused.op_type = "MatMulIntegerToFloat";
    fused.domain = "com.microsoft";
    fused.name = mm.name.empty() ? out : mm.name;
    fused.inputs = {dqa->inputs[0], dqb->inputs[0], dqa->inputs[1], dqb->inputs[1],
                    ZeroPointOrZero(graph, *dqa, 2, ops->a_type), ZeroPointOrZero(graph, *dqb, 2, ops->b_type)};
    if (!bias.empty()) fused.inputs.push_back(bias);
    fused.outputs = {out};
    if (add_index >= 0) removed[add_index] = true;
    for (const Node* dq : {dqa, dqb, dqc}) {
      if (dq != nullptr && uses[dq->outputs[0]] == 1 && !graph.IsGraphOutput(dq->outputs[0])) {
        removed[producers[dq->outputs[0]]] = true;
      }
    }
    replacements.emplace_back(mi, std::move(fused));
  }
  for (auto& [index, node] : replacements) graph.nodes[index] = std::move(node);
  graph.RemoveNodes(removed);
  return absl::OkStatus();
}

}  // namespace

absl::Status FuseQdqConv(Graph& graph) {
  auto uses = graph.UseCounts();
  auto producers = graph.Producers();
  std::vector<bool> removed(graph.nodes.size(), false);
  std::vector<std::pair<size_t, Node>> replacements;
  for (size_t qi = 0; qi < graph.nodes.size(); ++qi) {
    const Node& q = graph.nodes[qi];
    if (q.op_type != "QuantizeLinear" || !q.domain.empty() || q.inputs.size() < 2) continue;
    auto ci = producers.find(q.inputs[0]);
    if (ci == producers.end() || removed[ci->second]) continue;
    // Conv -> Relu / Clip -> Q (PyTorch's exports): the activation becomes the
    // fused node's output range (kvant_clip_min / kvant_clip_max, real values).
    int act_index = -1;
    float act_lo = 0, act_hi = 0;
    if (ActivationRange(graph, graph.nodes[ci->second], &act_lo, &act_hi) &&
        uses[graph.nodes[ci->second].outputs[0]] == 1 && !graph.IsGraphOutput(graph.nodes[ci->second].outputs[0])) {
      act_index = ci->second;
      ci = producers.find(graph.nodes[act_index].inputs[0]);
      if (ci == producers.end() || removed[ci->second]) continue;
    }
    const Node& conv = graph.nodes[ci->second];
    const bool transposed = conv.op_type == "ConvTranspose";
    if ((conv.op_type != "Conv" && !transposed) || !conv.domain.empty() || uses[conv.outputs[0]] != 1 ||
        graph.IsGraphOutput(conv.outputs[0]) || conv.inputs.size() < 2) {
      continue;
    }
    const Node* dqx = ProducerOf(graph, producers, conv.inputs[0], "DequantizeLinear");
    const Node* dqw = ProducerOf(graph, producers, conv.inputs[1], "DequantizeLinear");
    if (dqx == nullptr || dqw == nullptr) continue;
    const Tensor* wq = graph.FindConstant(dqw->inputs[0]);
    const ValueType* xt = graph.FindType(dqx->inputs[0]);
    // 2-D, or 1-D convolution (the INT8 kernel runs it as an image one row high).
    const bool rank_ok = wq != nullptr && (wq->rank() == 4 || (wq->rank() == 3 && !transposed));
    if (!rank_ok || !IsByteType(wq->dtype()) || xt == nullptr || !IsByteType(xt->dtype)) continue;
    // Output channels: Conv's weights are [cout, cin / group, k...],
    // ConvTranspose's [cin, cout / group, k...] (the INT8 kernel: group 1).
    if (transposed && conv.attrs.GetInt("group", 1) != 1) continue;
    const int64_t m = wq->shape()[transposed ? 1 : 0];
    const Tensor* xs = ConstScale(graph, dqx->inputs[1], 1);
    const Tensor* ws = ConstScale(graph, dqw->inputs[1], m);
    const Tensor* ys = ConstScale(graph, q.inputs[1], 1);
    if (xs == nullptr || ws == nullptr || ys == nullptr) continue;
    if (ws->num_elements() > 1 && dqw->attrs.GetInt("axis", 1) != (transposed ? 1 : 0)) continue;  // per output channel
    if (dqx->attrs.GetInt("block_size", 0) != 0 || dqw->attrs.GetInt("block_size", 0) != 0) continue;
    const DataType yt = QuantizedType(graph, q);
    if (!IsByteType(yt)) continue;
    const DataType x_type = xt->dtype, w_type = wq->dtype();  // xt, wq, xs, ws do not survive AddConstant
    // Bias: int32 at scale x_scale * w_scale.
    std::string bias;
    const Node* dqb = nullptr;
    if (conv.inputs.size() > 2 && !conv.inputs[2].empty()) {
      bias = QuantizedBias(graph, producers, conv.inputs[2], *xs, *ws, m, conv.name, &dqb);
      if (bias.empty()) continue;
    }
    Node fused;
    fused.op_type = transposed ? "QLinearConvTranspose" : "QLinearConv";
    if (transposed) fused.domain = "com.microsoft";
    fused.name = conv.name.empty() ? q.name : conv.name;
    fused.attrs = conv.attrs;
    fused.inputs = {dqx->inputs[0], dqx->inputs[1], ZeroPointOrZero(graph, *dqx, 2, x_type),
                    dqw->inputs[0], dqw->inputs[1], ZeroPointOrZero(graph, *dqw, 2, w_type),
                    q.inputs[1], ZeroPointOrZero(graph, q, 2, yt)};
    if (!bias.empty()) fused.inputs.push_back(bias);
    fused.outputs = q.outputs;
    if (act_index >= 0) {
      fused.attrs.SetFloat("kvant_clip_min", act_lo);
      fused.attrs.SetFloat("kvant_clip_max", act_hi);
      removed[act_index] = true;
    }
    // The Q node goes; the DQ nodes go when the Conv was their only reader.
    removed[qi] = true;
    for (const Node* dq : {dqx, dqw, dqb}) {
      if (dq != nullptr && uses[dq->outputs[0]] == 1 && !graph.IsGraphOutput(dq->outputs[0])) {
        removed[producers[dq->outputs[0]]] = true;
      }
    }
    replacements.emplace_back(ci->second, std::move(fused));
  }
  for (auto& [index, node] : replacements) graph.nodes[index] = std::move(node);
  graph.RemoveNodes(removed);
  if (auto s = FuseQdqMatMul(graph); !s.ok()) return s;
  return FuseQdqMatMulToFloat(graph);
}

}  // namespace kvant
