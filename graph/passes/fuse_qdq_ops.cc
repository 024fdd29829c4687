// QDQ groups other than convolutions and MatMul (fuse_qdq.cc), so that a QDQ
// model keeps its activations in u8/s8 between INT8 operators:
//  - DequantizeLinear -> data movement -> QuantizeLinear with the same
//    per-tensor scale and zero point (Reshape, Flatten, Squeeze, Unsqueeze,
//    Transpose, Slice, MaxPool, Pad, nearest Resize) runs the data movement on the quantized
//    values (a Pad's constant value is quantized); both conversions go;
//  - DQ(a), DQ(b) -> Add / Mul -> Q becomes com.microsoft QLinearAdd /
//    QLinearMul; DQ -> GlobalAveragePool / AveragePool -> Q becomes
//    QLinearGlobalAveragePool / QLinearAveragePool; DQ(a), DQ(b), ... ->
//    Concat -> Q becomes QLinearConcat (inputs requantized to the output's
//    parameters: a detector's feature pyramid, whose levels ONNX Runtime
//    calibrates apart); DQ -> Mul/Div by a positive constant scalar ->
//    GlobalAveragePool -> Q becomes QLinearGlobalAveragePool with the
//    constant in its input scale (the average commutes with the scaling; a
//    HardSwish's "/ 6" before a squeeze-excitation pool, whose other reader
//    then becomes a byte table);
//  - DQ(a), DQ(constant weights)[, bias] -> Gemm [-> Q] becomes QGemm
//    (requantized output with Q, float output without);
//  - Shape(DQ(x)) reads x's shape; a Cast to the type a value already has,
//    and Q(DQ(q)) with q's own parameters, are bypassed.
// Every scale and zero point must be a constant, per tensor (weights: per
// tensor or per output column). Runs before constant folding, which would
// turn the weights' DequantizeLinear into float weights.
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "graph/passes/passes.h"

namespace kvant {
namespace {

struct QParams {
  const Tensor* scale = nullptr;
  std::string zero_point;  // "" = absent (u8 zero)
};

bool IsOp(const Node& n, const char* op) { return n.op_type == op && n.domain.empty(); }

// A per-tensor Q/DQ node's constant scale and its zero point, or nothing.
bool PerTensor(const Graph& g, const Node& n, QParams* p) {
  if (n.inputs.size() < 2 || n.attrs.GetInt("block_size", 0) != 0) return false;
  const Tensor* s = g.FindConstant(n.inputs[1]);
  if (s == nullptr || s->dtype() != DataType::kFloat32 || s->num_elements() != 1) return false;
  p->scale = s;
  p->zero_point = n.inputs.size() > 2 ? n.inputs[2] : "";
  if (!p->zero_point.empty()) {
    const Tensor* z = g.FindConstant(p->zero_point);
    if (z == nullptr || z->num_elements() != 1) return false;
  }
  return true;
}

int ZeroPointValue(const Graph& g, const QParams& p) {
  if (p.zero_point.empty()) return 0;
  const Tensor* z = g.FindConstant(p.zero_point);
  return z->dtype() == DataType::kInt8 ? z->data<int8_t>()[0] : static_cast<const uint8_t*>(z->raw_data())[0];
}

DataType ZeroPointType(const Graph& g, const QParams& p) {
  return p.zero_point.empty() ? DataType::kUInt8 : g.FindConstant(p.zero_point)->dtype();
}

bool SameParams(const Graph& g, const QParams& a, const QParams& b) {
  return a.scale->data<float>()[0] == b.scale->data<float>()[0] && ZeroPointType(g, a) == ZeroPointType(g, b) &&
         ZeroPointValue(g, a) == ZeroPointValue(g, b);
}

std::string ZeroPointInput(Graph& g, const QParams& p, const std::string& hint) {
  if (!p.zero_point.empty()) return p.zero_point;
  return g.AddConstant(hint + "_zero_point", Tensor::Zeros(DataType::kUInt8, {}));
}

struct Rewriter {
  Graph& g;
  absl::flat_hash_map<std::string, int> uses = g.UseCounts();
  absl::flat_hash_map<std::string, int> producers = g.Producers();
  std::vector<bool> removed = std::vector<bool>(g.nodes.size(), false);

  const Node* Producer(const std::string& v, const char* op) {
    auto it = producers.find(v);
    if (it == producers.end() || removed[it->second]) return nullptr;
    return IsOp(g.nodes[it->second], op) ? &g.nodes[it->second] : nullptr;
  }
  bool SoleUse(const std::string& v) { return uses[v] == 1 && !g.IsGraphOutput(v); }
  // The DQ node goes if the fused node was its only reader.
  void DropIfUnused(const Node* dq) {
    if (dq != nullptr && SoleUse(dq->outputs[0])) removed[producers[dq->outputs[0]]] = true;
  }
};

// A float scalar known at load: a constant, or (as ONNX Runtime writes a
// Pad's value) DequantizeLinear of a constant or of QuantizeLinear(constant).
bool ConstantScalar(Rewriter& r, const std::string& name, float* value) {
  const Graph& g = r.g;
  if (const Tensor* v = g.FindConstant(name); v != nullptr) {
    if (v->dtype() != DataType::kFloat32 || v->num_elements() != 1) return false;
    *value = v->data<float>()[0];
    return true;
  }
  const Node* dq = r.Producer(name, "DequantizeLinear");
  QParams dp;
  if (dq == nullptr || !PerTensor(g, *dq, &dp)) return false;
  int q = 0;
  if (const Tensor* t = g.FindConstant(dq->inputs[0]); t != nullptr && t->num_elements() == 1) {
    if (t->dtype() == DataType::kInt32) return false;
    q = t->dtype() == DataType::kInt8 ? t->data<int8_t>()[0] : static_cast<const uint8_t*>(t->raw_data())[0];
  } else {
    const Node* qn = r.Producer(dq->inputs[0], "QuantizeLinear");
    QParams qp;
    float x = 0;
    if (qn == nullptr || !PerTensor(g, *qn, &qp) || !ConstantScalar(r, qn->inputs[0], &x)) return false;
    const bool s8 = ZeroPointType(g, qp) == DataType::kInt8;
    q = static_cast<int>(std::clamp(std::nearbyint(x / qp.scale->data<float>()[0]) + ZeroPointValue(g, qp),
                                    s8 ? -128.f : 0.f, s8 ? 127.f : 255.f));
  }
  *value = static_cast<float>(q - ZeroPointValue(g, dp)) * dp.scale->data<float>()[0];
  return true;
}

bool IsDataMovement(const Node& n) {
  static const char* kOps[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "MaxPool", "Pad"};
  for (const char* op : kOps)
    if (IsOp(n, op)) return n.op_type != "MaxPool" || n.outputs.size() == 1;
  // Nearest Resize copies values (a detector's upsampling).
  return IsOp(n, "Resize") && n.attrs.GetString("mode", "nearest") == "nearest";
}

void RemoveAroundDataMovement(Rewriter& r) {
  Graph& g = r.g;
  for (size_t qi = 0; qi < g.nodes.size(); ++qi) {
    const Node& q = g.nodes[qi];
    QParams qp, dp;
    if (!IsOp(q, "QuantizeLinear") || r.removed[qi] || !PerTensor(g, q, &qp)) continue;
    auto mi = r.producers.find(q.inputs[0]);
    if (mi == r.producers.end() || r.removed[mi->second]) continue;
    Node& m = g.nodes[mi->second];
    if (!IsDataMovement(m) || !r.SoleUse(m.outputs[0])) continue;
    const Node* dq = r.Producer(m.inputs[0], "DequantizeLinear");
    if (dq == nullptr || !PerTensor(g, *dq, &dp) || !SameParams(g, dp, qp)) continue;
    if (m.op_type == "Pad") {
      if (m.attrs.GetString("mode", "constant") != "constant") continue;
      float value = 0;
      if (m.inputs.size() > 2 && !m.inputs[2].empty() && !ConstantScalar(r, m.inputs[2], &value)) continue;
      const DataType t = ZeroPointType(g, qp);
      const float lo = t == DataType::kInt8 ? -128.f : 0.f, hi = t == DataType::kInt8 ? 127.f : 255.f;
      const float qv = std::clamp(std::nearbyint(value / qp.scale->data<float>()[0]) + ZeroPointValue(g, qp), lo, hi);
      Tensor c = Tensor::Zeros(t, {});
      if (t == DataType::kInt8) {
        c.data<int8_t>()[0] = static_cast<int8_t>(qv);
      } else {
        static_cast<uint8_t*>(c.raw_data())[0] = static_cast<uint8_t>(qv);
      }
      if (m.inputs.size() < 3) m.inputs.resize(3);
      m.inputs[2] = g.AddConstant(m.name + "_value_quantized", c);
    }
    r.DropIfUnused(dq);
    m.inputs[0] = dq->inputs[0];
    m.outputs = q.outputs;
    r.removed[qi] = true;
  }
}

// Q(op(DQ(a)[, DQ(b) ...])) -> one com.microsoft node (Add, Mul, AveragePool,
// GlobalAveragePool, Concat).
void FuseElementwise(Rewriter& r, std::vector<std::pair<size_t, Node>>& replacements) {
  Graph& g = r.g;
  for (size_t qi = 0; qi < g.nodes.size(); ++qi) {
    const Node& q = g.nodes[qi];
    QParams qp;
    if (!IsOp(q, "QuantizeLinear") || r.removed[qi] || !PerTensor(g, q, &qp)) continue;
    auto oi = r.producers.find(q.inputs[0]);
    if (oi == r.producers.end() || r.removed[oi->second]) continue;
    const Node& op = g.nodes[oi->second];
    const bool binary = IsOp(op, "Add") || IsOp(op, "Mul");
    const bool average = IsOp(op, "AveragePool"), concat = IsOp(op, "Concat");
    if ((!binary && !average && !concat && !IsOp(op, "GlobalAveragePool")) || !r.SoleUse(op.outputs[0])) continue;
    const size_t arity = binary ? 2 : concat ? op.inputs.size() : 1;
    if (arity == 0) continue;
    std::vector<const Node*> dqs;
    std::vector<QParams> params;
    float pool_factor = 1.f;  // GlobalAveragePool of DQ(x) scaled by this
    std::string pool_in;
    if (IsOp(op, "GlobalAveragePool") && !op.inputs.empty() && r.Producer(op.inputs[0], "DequantizeLinear") == nullptr) {
      const Node* scaled = r.Producer(op.inputs[0], "Div");
      if (scaled == nullptr) scaled = r.Producer(op.inputs[0], "Mul");
      const Tensor* k = scaled != nullptr && scaled->inputs.size() == 2 ? g.FindConstant(scaled->inputs[1]) : nullptr;
      if (k == nullptr || k->dtype() != DataType::kFloat32 || k->num_elements() != 1) continue;
      const float v = k->data<float>()[0];
      if (!(v > 0.f) || !std::isfinite(v) || !std::isfinite(1.f / v)) continue;
      pool_factor = scaled->op_type == "Div" ? 1.f / v : v;
      pool_in = scaled->inputs[0];
    }
    for (size_t i = 0; i < arity; ++i) {
      const std::string& in = !pool_in.empty() ? pool_in : i < op.inputs.size() ? op.inputs[i] : std::string();
      const Node* dq = in.empty() ? nullptr : r.Producer(in, "DequantizeLinear");
      QParams p;
      if (dq == nullptr || !PerTensor(g, *dq, &p) || ZeroPointType(g, p) != ZeroPointType(g, qp)) break;
      const ValueType* t = g.FindType(dq->inputs[0]);
      if (t == nullptr || t->dtype != ZeroPointType(g, qp)) break;
      dqs.push_back(dq);
      params.push_back(p);
    }
    if (dqs.size() != arity) continue;
    Node fused;
    fused.domain = "com.microsoft";
    fused.name = op.name;
    fused.outputs = q.outputs;
    if (concat) {  // Y's parameters first, then (x, scale, zero point) per input
      fused.inputs = {q.inputs[1], ZeroPointInput(g, qp, op.name + "_out")};
      fused.attrs.SetInt("axis", op.attrs.GetInt("axis", 0));
    }
    for (size_t i = 0; i < dqs.size(); ++i) {
      fused.inputs.push_back(dqs[i]->inputs[0]);
      fused.inputs.push_back(dqs[i]->inputs[1]);
      fused.inputs.push_back(ZeroPointInput(g, params[i], op.name + "_in" + std::to_string(i)));
    }
    if (!pool_in.empty()) {
      Tensor scale = Tensor::Zeros(DataType::kFloat32, {});
      scale.data<float>()[0] = params[0].scale->data<float>()[0] * pool_factor;
      fused.inputs[1] = g.AddConstant(op.name + "_x_scale", scale);
    }
    if (!concat) {
      fused.inputs.push_back(q.inputs[1]);
      fused.inputs.push_back(ZeroPointInput(g, qp, op.name + "_out"));
    }
    fused.op_type = binary    ? (op.op_type == "Add" ? "QLinearAdd" : "QLinearMul")
                    : average ? "QLinearAveragePool"
                    : concat  ? "QLinearConcat"
                              : "QLinearGlobalAveragePool";
    if (average) fused.attrs = op.attrs;  // the window
    if (pool_in.empty()) {  // (else the DQ's reader is the scaling, which stays for its other readers)
      for (const Node* dq : dqs) r.DropIfUnused(dq);
    }
    r.removed[qi] = true;
    replacements.emplace_back(oi->second, std::move(fused));
  }
}

// Gemm(DQ(a), DQ(constant w)[, bias]) [-> Q] -> QGemm.
void FuseGemm(Rewriter& r, std::vector<std::pair<size_t, Node>>& replacements) {
  Graph& g = r.g;
  for (size_t gi = 0; gi < g.nodes.size(); ++gi) {
    const Node& gemm = g.nodes[gi];
    if (!IsOp(gemm, "Gemm") || r.removed[gi] || gemm.attrs.GetInt("transA", 0) != 0 ||
        gemm.attrs.GetFloat("alpha", 1.f) != 1.f || gemm.attrs.GetFloat("beta", 1.f) != 1.f) {
      continue;
    }
    const Node* dqa = r.Producer(gemm.inputs[0], "DequantizeLinear");
    const Node* dqw = r.Producer(gemm.inputs[1], "DequantizeLinear");
    QParams ap;
    if (dqa == nullptr || dqw == nullptr || !PerTensor(g, *dqa, &ap)) continue;
    const Tensor* w = g.FindConstant(dqw->inputs[0]);
    const ValueType* at = g.FindType(dqa->inputs[0]);
    if (w == nullptr || w->rank() != 2 || at == nullptr || dqw->attrs.GetInt("block_size", 0) != 0) continue;
    const bool trans_b = gemm.attrs.GetInt("transB", 0) != 0;
    const int64_t n = w->shape()[trans_b ? 0 : 1];
    const Tensor* ws = g.FindConstant(dqw->inputs[1]);
    if (ws == nullptr || ws->dtype() != DataType::kFloat32 || (ws->num_elements() != 1 && ws->num_elements() != n)) {
      continue;
    }
    if (ws->num_elements() > 1 && dqw->attrs.GetInt("axis", 1) != (trans_b ? 0 : 1)) continue;
    // Bias: int32 at scale a_scale * w_scale (a DQ of int32 values), or float quantized here.
    std::string bias;
    if (gemm.inputs.size() > 2 && !gemm.inputs[2].empty()) {
      const float sa = ap.scale->data<float>()[0];
      auto w_scale = [&](int64_t j) { return ws->data<float>()[ws->num_elements() == 1 ? 0 : j]; };
      const Node* dqb = r.Producer(gemm.inputs[2], "DequantizeLinear");
      const Tensor* b = g.FindConstant(dqb ? dqb->inputs[0] : gemm.inputs[2]);
      if (b == nullptr || b->num_elements() != n) continue;
      if (dqb != nullptr) {
        const Tensor* bs = g.FindConstant(dqb->inputs[1]);
        bool ok = b->dtype() == DataType::kInt32 && bs != nullptr && bs->dtype() == DataType::kFloat32;
        for (int64_t j = 0; ok && j < n; ++j) {
          const float want = sa * w_scale(j), got = bs->data<float>()[bs->num_elements() == 1 ? 0 : j];
          ok = std::fabs(got - want) <= 1e-6f * std::fabs(want);
        }
        if (!ok) continue;
        bias = dqb->inputs[0];
      } else {
        if (b->dtype() != DataType::kFloat32) continue;
        Tensor bq = Tensor::Zeros(DataType::kInt32, {n});
        bool ok = true;
        for (int64_t j = 0; j < n; ++j) {
          const double v = std::nearbyint(double{b->data<float>()[j]} / (double{sa} * w_scale(j)));
          ok &= std::fabs(v) < 2147483647.0;
          bq.data<int32_t>()[j] = ok ? static_cast<int32_t>(v) : 0;
        }
        if (!ok) continue;
        bias = g.AddConstant(gemm.name + "_bias_quantized", bq);
      }
    }
    Node fused;
    fused.op_type = "QGemm";
    fused.domain = "com.microsoft";
    fused.name = gemm.name;
    fused.attrs.SetInt("transB", trans_b);
    fused.inputs = {dqa->inputs[0], dqa->inputs[1], ZeroPointInput(g, ap, gemm.name + "_a"), dqw->inputs[0],
                    dqw->inputs[1], dqw->inputs.size() > 2 ? dqw->inputs[2] : "", bias};
    fused.outputs = gemm.outputs;
    // A following per-tensor Q becomes the requantized output, with a Relu
    // or Clip between them as the output range.
    if (r.SoleUse(gemm.outputs[0])) {
      std::string value = gemm.outputs[0];
      int act = -1;
      float lo = 0, hi = 0;
      for (size_t ai = 0; ai < g.nodes.size(); ++ai) {
        const Node& a = g.nodes[ai];
        if (!r.removed[ai] && !a.inputs.empty() && a.inputs[0] == value && ActivationRange(g, a, &lo, &hi) &&
            r.SoleUse(a.outputs[0])) {
          act = static_cast<int>(ai);
          value = a.outputs[0];
          break;
        }
      }
      for (size_t qi = 0; qi < g.nodes.size(); ++qi) {
        const Node& q = g.nodes[qi];
        QParams qp;
        if (IsOp(q, "QuantizeLinear") && !r.removed[qi] && q.inputs[0] == value && PerTensor(g, q, &qp)) {
          fused.inputs.push_back(q.inputs[1]);
          fused.inputs.push_back(ZeroPointInput(g, qp, gemm.name + "_y"));
          fused.outputs = q.outputs;
          r.removed[qi] = true;
          if (act >= 0) {
            fused.attrs.SetFloat("kvant_clip_min", lo);
            fused.attrs.SetFloat("kvant_clip_max", hi);
            r.removed[act] = true;
          }
          break;
        }
      }
    }
    r.DropIfUnused(dqa);
    r.DropIfUnused(dqw);
    replacements.emplace_back(gi, std::move(fused));
  }
}

}  // namespace

// Casts to the type a value already has (PyTorch writes Cast(u8 -> u8)
// between its QuantizeLinear and DequantizeLinear), and QuantizeLinear of
// DequantizeLinear(q) with q's own parameters (it gives back q: a quantized
// If branch that requantizes a value its outer branch already quantized),
// are bypassed.
void BypassNoOps(Graph& g) {
  absl::flat_hash_map<std::string, std::string> alias;
  absl::flat_hash_set<std::string> read_by_subgraphs;  // If branches name outer values directly
  for (const Node& n : g.nodes) read_by_subgraphs.insert(n.implicit_inputs.begin(), n.implicit_inputs.end());
  std::vector<bool> removed(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    for (std::string& in : n.inputs) {
      if (auto it = alias.find(in); it != alias.end()) in = it->second;
    }
    if (!IsOp(n, "Cast") || n.inputs.size() != 1 || g.IsGraphOutput(n.outputs[0]) ||
        read_by_subgraphs.contains(n.outputs[0])) {
      continue;
    }
    const ValueType* t = g.FindType(n.inputs[0]);
    if (t == nullptr || static_cast<int64_t>(t->dtype) != n.attrs.GetInt("to", -1)) continue;
    alias[n.outputs[0]] = n.inputs[0];
    removed[i] = true;
  }
  auto producers = g.Producers();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    for (std::string& in : n.inputs) {
      if (auto it = alias.find(in); it != alias.end()) in = it->second;
    }
    QParams qp, dp;
    if (removed[i] || !IsOp(n, "QuantizeLinear") || g.IsGraphOutput(n.outputs[0]) ||
        read_by_subgraphs.contains(n.outputs[0]) || !PerTensor(g, n, &qp)) {
      continue;
    }
    auto pi = producers.find(n.inputs[0]);
    if (pi == producers.end() || removed[pi->second]) continue;
    const Node& dq = g.nodes[pi->second];
    if (!IsOp(dq, "DequantizeLinear") || !PerTensor(g, dq, &dp) || !SameParams(g, dp, qp)) continue;
    const ValueType* t = g.FindType(dq.inputs[0]);
    if (t == nullptr || t->dtype != ZeroPointType(g, qp)) continue;
    alias[n.outputs[0]] = dq.inputs[0];
    removed[i] = true;
  }
  g.RemoveNodes(removed);
}

absl::Status FuseQdqOperators(Graph& graph) {
  BypassNoOps(graph);
  {
    Rewriter r{graph};
    RemoveAroundDataMovement(r);
    // Shape(DQ(x)) is Shape(x): no need to dequantize a tensor to read its shape.
    for (Node& n : graph.nodes) {
      if (!IsOp(n, "Shape") || n.inputs.empty()) continue;
      if (const Node* dq = r.Producer(n.inputs[0], "DequantizeLinear"); dq != nullptr) n.inputs[0] = dq->inputs[0];
    }
    graph.RemoveNodes(r.removed);
  }
  Rewriter r{graph};
  std::vector<std::pair<size_t, Node>> replacements;
  FuseElementwise(r, replacements);
  FuseGemm(r, replacements);
  for (auto& [index, node] : replacements) graph.nodes[index] = std::move(node);
  graph.RemoveNodes(r.removed);
  return absl::OkStatus();
}

}  // namespace kvant
