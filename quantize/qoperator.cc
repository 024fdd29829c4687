// QDQ -> QOperator rewriting (see the header). One pass in graph order finds
// each group by its QuantizeLinear-free inputs (DequantizeLinear outputs)
// and its single QuantizeLinear consumer, writes the quantized operator in
// the anchor's place, and drops the consumed QuantizeLinear; conversions and
// initializers nobody reads any more go at the end.
#include "quantize/qoperator.h"

#include <cmath>
#include <limits>
#include <optional>

#include "absl/container/flat_hash_set.h"

namespace kvant::quantize {
namespace {

bool IsOnnx(const onnx::NodeProto& n, const char* op) { return n.op_type() == op && n.domain().empty(); }

// A DequantizeLinear's operands: quantized value, scale, zero point.
struct Dq {
  std::string q, scale, zero;
};

class Rewriter {
  OnnxModel& m_;
  onnx::GraphProto& g_;

 public:
  explicit Rewriter(OnnxModel& m) : m_(m), g_(m.graph()), removed_(g_.node_size(), false) {}

  std::vector<bool> removed_;
  int rewritten = 0;
  bool uses_ms_domain_ = false;

  std::optional<Dq> DqOf(const std::string& value) const {
    const int p = m_.Producer(value);
    if (p < 0 || removed_[p] || !IsOnnx(g_.node(p), "DequantizeLinear") || g_.node(p).input_size() < 3) {
      return std::nullopt;
    }
    const auto& n = g_.node(p);
    return Dq{n.input(0), n.input(1), n.input(2)};
  }

  // The QuantizeLinear that is `value`'s only reader, or -1.
  int SoleQ(const std::string& value) const {
    const auto& uses = m_.Consumers(value);
    if (uses.size() != 1 || m_.IsGraphOutput(value) || removed_[uses[0]]) return -1;
    const auto& q = g_.node(uses[0]);
    return IsOnnx(q, "QuantizeLinear") && q.input_size() >= 3 ? uses[0] : -1;
  }

  // Per-tensor float value of a constant scalar initializer.
  std::optional<double> Scalar(const std::string& name) const {
    auto t = m_.InitializerTensor(name);
    if (!t.ok() || t->num_elements() != 1) return std::nullopt;
    switch (t->dtype()) {
      case DataType::kFloat32: return t->data<float>()[0];
      case DataType::kUInt8: return t->data<uint8_t>()[0];
      case DataType::kInt8: return t->data<int8_t>()[0];
      default: return std::nullopt;
    }
  }

  // Whether Q's saturation already does `act` (Relu, or Clip with constant
  // bounds): the representable range lies inside the clip range.
  bool ActivationIsSaturation(const onnx::NodeProto& act, const onnx::NodeProto& q) const {
    auto scale = Scalar(q.input(1)), zero = Scalar(q.input(2));
    const auto* zp = m_.FindInitializer(q.input(2));
    if (!scale || !zero || zp == nullptr) return false;
    const bool s8 = zp->data_type() == onnx::TensorProto::INT8;
    const double lo = ((s8 ? -128.0 : 0.0) - *zero) * *scale, hi = ((s8 ? 127.0 : 255.0) - *zero) * *scale;
    double cmin = 0, cmax = std::numeric_limits<double>::infinity();
    if (IsOnnx(act, "Clip")) {
      cmin = -std::numeric_limits<double>::infinity();
      if (act.input_size() > 1 && !act.input(1).empty()) cmin = Scalar(act.input(1)).value_or(1e30);
      if (act.input_size() > 2 && !act.input(2).empty()) cmax = Scalar(act.input(2)).value_or(-1e30);
      if (act.input_size() == 1) {
        cmin = AttrFloat(act, "min", -3.4e38f);
        cmax = AttrFloat(act, "max", 3.4e38f);
      }
    }
    const double eps = 1e-6 * std::max(1.0, std::fabs(hi - lo));
    return lo >= cmin - eps && hi <= cmax + eps;
  }

  // Rewrites node i when it anchors a group; true if it did.
  bool Visit(int i) {
    const onnx::NodeProto& n = g_.node(i);
    if (!n.domain().empty() || n.output_size() != 1) return false;
    const std::string& op = n.op_type();
    if (op == "Conv" || op == "MatMul" || op == "Gemm") return Product(i);
    if ((op == "Add" || op == "Mul") && n.input_size() == 2) return Binary(i, op == "Add" ? "QLinearAdd" : "QLinearMul");
    if (op == "GlobalAveragePool" || op == "AveragePool") return Pool(i);
    if (op == "MaxPool" || op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" ||
        op == "Transpose" || (op == "Resize" && AttrString(n, "mode", "nearest") == "nearest")) {
      return SameParams(i);
    }
    return false;
  }

 private:
  bool Product(int i) {
    const onnx::NodeProto& n = g_.node(i);
    auto x = DqOf(n.input(0));
    auto w = n.input_size() > 1 ? DqOf(n.input(1)) : std::nullopt;
    if (!x || !w || m_.FindInitializer(w->q) == nullptr) return false;
    std::optional<Dq> bias;
    if (n.input_size() > 2 && !n.input(2).empty()) {
      bias = DqOf(n.input(2));
      if (!bias) return false;
    }
    // Output: Q directly, or through a Relu/Clip that Q's saturation covers.
    int act = -1, qi = SoleQ(n.output(0));
    if (qi < 0 && n.op_type() == "MatMul") return FloatMatMul(i, *x, *w);
    if (qi < 0 && n.op_type() == "Gemm" && !AnyQ(n.output(0))) {
      // A float result (logits before Softmax): QGemm without y_scale gives f32.
      onnx::NodeProto out = MakeNode("QGemm", {x->q, x->scale, x->zero, w->q, w->scale, w->zero, bias ? bias->q : ""},
                                     {n.output(0)}, n.name(), "com.microsoft");
      for (const auto& a : n.attribute()) {
        if (a.name() != "beta") *out.add_attribute() = a;
      }
      Replace(i, std::move(out), {});
      uses_ms_domain_ = true;
      return true;
    }
    if (qi < 0) {
      const auto& uses = m_.Consumers(n.output(0));
      if (uses.size() != 1 || m_.IsGraphOutput(n.output(0))) return false;
      const auto& a = g_.node(uses[0]);
      if (!IsOnnx(a, "Relu") && !IsOnnx(a, "Clip")) return false;
      qi = SoleQ(a.output(0));
      if (qi < 0 || !ActivationIsSaturation(a, g_.node(qi))) return false;
      act = uses[0];
    }
    const onnx::NodeProto& q = g_.node(qi);
    onnx::NodeProto out;
    if (n.op_type() == "Conv") {
      out = MakeNode("QLinearConv", {x->q, x->scale, x->zero, w->q, w->scale, w->zero, q.input(1), q.input(2)},
                     {q.output(0)}, n.name());
      if (bias) out.add_input(bias->q);
    } else if (n.op_type() == "MatMul") {
      if (bias) return false;
      out = MakeNode("QLinearMatMul", {x->q, x->scale, x->zero, w->q, w->scale, w->zero, q.input(1), q.input(2)},
                     {q.output(0)}, n.name());
    } else {
      out = MakeNode("QGemm", {x->q, x->scale, x->zero, w->q, w->scale, w->zero, bias ? bias->q : "", q.input(1),
                               q.input(2)}, {q.output(0)}, n.name(), "com.microsoft");
      uses_ms_domain_ = true;
    }
    for (const auto& a : n.attribute()) {
      if (a.name() != "beta") *out.add_attribute() = a;  // QGemm has none (C is added as is)
    }
    Replace(i, std::move(out), {act, qi});
    return true;
  }

  // Whether a QuantizeLinear reads `value`.
  bool AnyQ(const std::string& value) const {
    for (int c : m_.Consumers(value))
      if (IsOnnx(g_.node(c), "QuantizeLinear")) return true;
    return false;
  }

  // A MatMul whose result is float: with a bias Add (DequantizeLinear of
  // int32 values, the quantizer's form of a Linear layer) or without,
  // com.microsoft MatMulIntegerToFloat with the bias in f32 (QLinearMatMul
  // has no bias); a QuantizeLinear after the sum stays.
  bool FloatMatMul(int i, const Dq& x, const Dq& w) {
    const onnx::NodeProto& n = g_.node(i);
    const auto& uses = m_.Consumers(n.output(0));
    const onnx::NodeProto* add = nullptr;
    if (uses.size() == 1 && !m_.IsGraphOutput(n.output(0)) && !removed_[uses[0]] && IsOnnx(g_.node(uses[0]), "Add") &&
        g_.node(uses[0]).input_size() == 2) {
      add = &g_.node(uses[0]);
    }
    std::optional<Dq> bias;
    if (add != nullptr) bias = DqOf(add->input(add->input(0) == n.output(0) ? 1 : 0));
    if (!bias) {
      if (AnyQ(n.output(0))) return false;
      Replace(i, MakeNode("MatMulIntegerToFloat", {x.q, w.q, x.scale, w.scale, x.zero, w.zero}, {n.output(0)}, n.name(),
                          "com.microsoft"), {});
      uses_ms_domain_ = true;
      return true;
    }
    auto q = m_.InitializerTensor(bias->q);
    auto scale = m_.InitializerTensor(bias->scale);
    if (!q.ok() || !scale.ok() || q->dtype() != DataType::kInt32 || q->rank() != 1 ||
        scale->dtype() != DataType::kFloat32 || (scale->num_elements() != 1 && scale->num_elements() != q->num_elements())) {
      return false;
    }
    std::vector<float> b(q->num_elements());
    for (size_t c = 0; c < b.size(); ++c) {
      b[c] = static_cast<float>(q->data<int32_t>()[c]) * scale->data<float>()[scale->num_elements() == 1 ? 0 : c];
    }
    const std::string bn = m_.FreshName(bias->q + "_f32");
    m_.SetInitializer(bn, Tensor::FromVector<float>(DataType::kFloat32, {q->num_elements()}, b));
    onnx::NodeProto out = MakeNode("MatMulIntegerToFloat", {x.q, w.q, x.scale, w.scale, x.zero, w.zero, bn},
                                   {add->output(0)}, n.name(), "com.microsoft");
    const int add_index = uses[0];
    Replace(i, std::move(out), {add_index});
    uses_ms_domain_ = true;
    return true;
  }

  bool Binary(int i, const char* qop) {
    const onnx::NodeProto& n = g_.node(i);
    auto a = DqOf(n.input(0));
    auto b = DqOf(n.input(1));
    const int qi = SoleQ(n.output(0));
    if (!a || !b || qi < 0) return false;
    const onnx::NodeProto& q = g_.node(qi);
    Replace(i, MakeNode(qop, {a->q, a->scale, a->zero, b->q, b->scale, b->zero, q.input(1), q.input(2)}, {q.output(0)},
                        n.name(), "com.microsoft"), {qi});
    uses_ms_domain_ = true;
    return true;
  }

  bool Pool(int i) {
    const onnx::NodeProto& n = g_.node(i);
    auto x = DqOf(n.input(0));
    const int qi = SoleQ(n.output(0));
    if (!x || qi < 0) return false;
    const onnx::NodeProto& q = g_.node(qi);
    const bool global = n.op_type() == "GlobalAveragePool";
    onnx::NodeProto out = MakeNode(global ? "QLinearGlobalAveragePool" : "QLinearAveragePool",
                                   {x->q, x->scale, x->zero, q.input(1), q.input(2)}, {q.output(0)}, n.name(),
                                   "com.microsoft");
    for (const auto& a : n.attribute()) *out.add_attribute() = a;
    if (global) SetAttrInt(out, "channels_last", 0);
    Replace(i, std::move(out), {qi});
    uses_ms_domain_ = true;
    return true;
  }

  // DQ -> op -> Q with the same scale and zero point names (the quantizer
  // shares them): the op reads and writes the quantized values.
  bool SameParams(int i) {
    onnx::NodeProto& n = *g_.mutable_node(i);
    auto x = DqOf(n.input(0));
    const int qi = SoleQ(n.output(0));
    if (!x || qi < 0) return false;
    const onnx::NodeProto& q = g_.node(qi);
    if (q.input(1) != x->scale || q.input(2) != x->zero) return false;
    n.set_input(0, x->q);
    n.set_output(0, q.output(0));
    removed_[qi] = true;
    ++rewritten;
    return true;
  }

  void Replace(int i, onnx::NodeProto node, std::initializer_list<int> also_removed) {
    *g_.mutable_node(i) = std::move(node);
    for (int r : also_removed)
      if (r >= 0) removed_[r] = true;
    ++rewritten;
  }
};

}  // namespace

absl::StatusOr<int> QdqToQOperator(OnnxModel& m) {
  Rewriter r(m);
  auto& g = m.graph();
  for (int i = 0; i < g.node_size(); ++i) {
    if (!r.removed_[i]) r.Visit(i);
  }
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (int i = 0; i < g.node_size(); ++i)
    if (!r.removed_[i]) *kept.Add() = std::move(*g.mutable_node(i));
  g.mutable_node()->Swap(&kept);
  // Conversions and initializers no one reads any more (If branches read
  // outer values by name: a DequantizeLinear they read stays).
  const auto sub_reads = m.SubgraphReads();
  for (bool changed = true; changed;) {
    m.Reindex();
    changed = false;
    google::protobuf::RepeatedPtrField<onnx::NodeProto> live;
    for (auto& n : *g.mutable_node()) {
      const bool conversion = IsOnnx(n, "DequantizeLinear") || IsOnnx(n, "QuantizeLinear");
      if (conversion && m.Consumers(n.output(0)).empty() && !m.IsGraphOutput(n.output(0)) &&
          !sub_reads.contains(n.output(0))) {
        changed = true;
        continue;
      }
      *live.Add() = std::move(n);
    }
    g.mutable_node()->Swap(&live);
  }
  std::vector<std::string> unused;
  for (const auto& init : g.initializer()) {
    if (m.Consumers(init.name()).empty() && !m.IsGraphOutput(init.name()) && !sub_reads.contains(init.name())) {
      unused.push_back(init.name());
    }
  }
  for (const auto& name : unused) m.RemoveInitializer(name);
  if (r.uses_ms_domain_) m.AddOpsetImport("com.microsoft", 1);
  return r.rewritten;
}

}  // namespace kvant::quantize
