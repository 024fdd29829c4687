// Dynamic quantization of MatMul, Gemm and LSTM weights (see the header).
#include "quantize/dynamic.h"

#include <algorithm>
#include <optional>

#include "quantize/scheme.h"

namespace kvant::quantize {
namespace {

bool IsOnnx(const onnx::NodeProto& n, const char* op) { return n.op_type() == op && n.domain().empty(); }

std::optional<Tensor> FloatWeight(const OnnxModel& m, const std::string& name, int64_t rank) {
  const onnx::TensorProto* p = m.FindInitializer(name);
  if (p == nullptr || p->data_type() != onnx::TensorProto::FLOAT || p->dims_size() != rank) return std::nullopt;
  auto t = m.InitializerTensor(name);
  return t.ok() ? std::optional<Tensor>(*std::move(t)) : std::nullopt;
}

// s8 weights, scales and zero points as initializers; returns their names.
struct Written {
  std::string values, scale, zero;
};
Written WriteQuantized(OnnxModel& m, const std::string& base, const Tensor& values_layout, const QuantizedWeights& q,
                       const std::vector<int64_t>& param_shape) {
  Tensor v = Tensor::Zeros(DataType::kInt8, values_layout.shape());
  std::copy(q.values.begin(), q.values.end(), v.data<int8_t>());
  Written w{m.FreshName(base + "_quantized"), m.FreshName(base + "_scale"), m.FreshName(base + "_zero_point")};
  m.SetInitializer(w.values, v);
  m.SetInitializer(w.scale, Tensor::FromVector<float>(DataType::kFloat32, param_shape, q.scales));
  m.SetInitializer(w.zero, Tensor::Zeros(DataType::kInt8, param_shape));
  return w;
}

// [dirs, rows, cols] -> [dirs, cols, rows].
Tensor TransposeLast2(const Tensor& t) {
  const int64_t d = t.shape()[0], r = t.shape()[1], c = t.shape()[2];
  Tensor out = Tensor::Zeros(DataType::kFloat32, {d, c, r});
  for (int64_t k = 0; k < d; ++k)
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) out.data<float>()[(k * c + j) * r + i] = t.data<float>()[(k * r + i) * c + j];
  return out;
}

}  // namespace

absl::StatusOr<int> ApplyDynamic(OnnxModel& m, bool per_channel, const absl::flat_hash_set<std::string>& excluded) {
  auto& g = m.graph();
  std::vector<bool> removed(g.node_size(), false);
  int rewritten = 0;
  for (int i = 0; i < g.node_size(); ++i) {
    onnx::NodeProto& n = *g.mutable_node(i);
    if (excluded.contains(n.name()) || removed[i]) continue;
    if (IsOnnx(n, "MatMul") || IsOnnx(n, "Gemm")) {
      const bool gemm = n.op_type() == "Gemm";
      if (gemm && (AttrInt(n, "transA", 0) != 0 || AttrFloat(n, "alpha", 1.f) != 1.f || AttrFloat(n, "beta", 1.f) != 1.f)) {
        continue;
      }
      auto b = FloatWeight(m, n.input(1), 2);
      if (!b) continue;
      // B as [K, N].
      Tensor kn = *b;
      if (gemm && AttrInt(n, "transB", 0) != 0) {
        auto t = b->Reshaped({1, b->shape()[0], b->shape()[1]});
        Tensor tr = TransposeLast2(*t);
        kn = *tr.Reshaped({b->shape()[1], b->shape()[0]});
      }
      const int64_t k = kn.shape()[0], cols = kn.shape()[1];
      std::string bias;
      std::vector<std::string> outputs(n.output().begin(), n.output().end());
      if (gemm && n.input_size() > 2 && !n.input(2).empty()) {
        auto c = FloatWeight(m, n.input(2), 1);
        if (!c || c->num_elements() != cols) continue;
        bias = n.input(2);
      }
      if (!gemm) {  // absorb Add(y, bias[N])
        const auto& uses = m.Consumers(n.output(0));
        if (uses.size() == 1 && !m.IsGraphOutput(n.output(0)) && IsOnnx(g.node(uses[0]), "Add")) {
          const onnx::NodeProto& add = g.node(uses[0]);
          const std::string other = add.input(0) == n.output(0) ? add.input(1) : add.input(0);
          auto c = FloatWeight(m, other, 1);
          if (c && c->num_elements() == cols) {
            bias = other;
            outputs = {add.output(0)};
            removed[uses[0]] = true;
          }
        }
      }
      const QuantizedWeights q = QuantizeWeights(kn.data<float>(), {k, cols}, 1, per_channel);
      const Written w = WriteQuantized(m, n.input(1), kn, q,
                                       per_channel ? std::vector<int64_t>{cols} : std::vector<int64_t>{});
      std::vector<std::string> inputs = {n.input(0), w.values, w.scale, w.zero};
      if (!bias.empty()) inputs.push_back(bias);
      n = MakeNode("DynamicQuantizeMatMul", inputs, outputs, n.name(), "com.microsoft");
      ++rewritten;
    } else if (IsOnnx(n, "LSTM") && n.input_size() >= 3) {
      auto w = FloatWeight(m, n.input(1), 3);
      auto r = FloatWeight(m, n.input(2), 3);
      if (!w || !r || AttrInt(n, "layout", 0) != 0) continue;
      const int64_t dirs = w->shape()[0], gh = w->shape()[1];
      // Per gate column (axis 1 of [dirs, gh, k]) or per direction.
      auto quantize = [&](const Tensor& t) {
        const Tensor tr = TransposeLast2(t);  // [dirs, k, gh]
        const int64_t kk = tr.shape()[1];
        QuantizedWeights all;
        for (int64_t d = 0; d < dirs; ++d) {
          const QuantizedWeights q = QuantizeWeights(tr.data<float>() + d * kk * gh, {kk, gh}, 1, per_channel);
          all.values.insert(all.values.end(), q.values.begin(), q.values.end());
          all.scales.insert(all.scales.end(), q.scales.begin(), q.scales.end());
        }
        return std::make_pair(tr, all);
      };
      const std::vector<int64_t> pshape = per_channel ? std::vector<int64_t>{dirs, gh} : std::vector<int64_t>{dirs};
      auto [wt, wq] = quantize(*w);
      auto [rt, rq] = quantize(*r);
      const Written wn = WriteQuantized(m, n.input(1), wt, wq, pshape);
      const Written rn = WriteQuantized(m, n.input(2), rt, rq, pshape);
      std::vector<std::string> inputs(n.input().begin(), n.input().end());
      inputs.resize(8);
      inputs[1] = wn.values;
      inputs[2] = rn.values;
      inputs.insert(inputs.end(), {wn.scale, wn.zero, rn.scale, rn.zero});
      onnx::NodeProto q = MakeNode("DynamicQuantizeLSTM", inputs, {n.output().begin(), n.output().end()}, n.name(),
                                   "com.microsoft");
      for (const auto& a : n.attribute())
        if (a.name() != "layout") *q.add_attribute() = a;
      n = std::move(q);
      ++rewritten;
    }
  }
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (int i = 0; i < g.node_size(); ++i)
    if (!removed[i]) *kept.Add() = std::move(*g.mutable_node(i));
  g.mutable_node()->Swap(&kept);
  m.Reindex();
  // The FP32 weights no node reads any more.
  std::vector<std::string> unused;
  const auto sub_reads = m.SubgraphReads();
  for (const auto& init : g.initializer()) {
    if (init.data_type() == onnx::TensorProto::FLOAT && m.Consumers(init.name()).empty() &&
        !m.IsGraphOutput(init.name()) && !sub_reads.contains(init.name())) {
      unused.push_back(init.name());
    }
  }
  for (const auto& name : unused) m.RemoveInitializer(name);
  if (rewritten > 0) m.AddOpsetImport("com.microsoft", 1);
  return rewritten;
}

}  // namespace kvant::quantize
