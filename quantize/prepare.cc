// Prepare passes on the ONNX model (see the header).
#include "quantize/prepare.h"

#include <cmath>
#include <functional>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "graph/onnx_import.h"
#include "graph/passes/passes.h"

namespace kvant::quantize {
namespace {

bool IsOnnx(const onnx::NodeProto& n, const char* op) { return n.op_type() == op && n.domain().empty(); }

void RenameUses(onnx::GraphProto& g, const std::string& from, const std::string& to) {
  for (auto& n : *g.mutable_node())
    for (auto& in : *n.mutable_input())
      if (in == from) in = to;
}

void RemoveNodes(onnx::GraphProto& g, const std::vector<bool>& removed) {
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (int i = 0; i < g.node_size(); ++i)
    if (!removed[i]) *kept.Add() = std::move(*g.mutable_node(i));
  g.mutable_node()->Swap(&kept);
}

// A float initializer's values, or null.
std::optional<Tensor> FloatInitializer(const OnnxModel& m, const std::string& name) {
  if (m.FindInitializer(name) == nullptr) return std::nullopt;
  auto t = m.InitializerTensor(name);
  if (!t.ok() || t->dtype() != DataType::kFloat32) return std::nullopt;
  return *std::move(t);
}

// `name` may be rewritten when only `uses` read it; else a fresh copy.
std::string WritableName(OnnxModel& m, const std::string& name, size_t uses) {
  return m.Consumers(name).size() <= uses ? name : m.FreshName(name + "_prepared");
}

// Points conv's bias input at `b`: its own initializer rewritten when only
// conv reads it, else a fresh one.
void SetConvBias(OnnxModel& m, onnx::NodeProto& conv, bool had_bias, const Tensor& b) {
  const std::string name = had_bias ? WritableName(m, conv.input(2), 1) : m.FreshName(conv.name() + "_bias");
  m.SetInitializer(name, b);
  if (conv.input_size() > 2) {
    conv.set_input(2, name);
  } else {
    conv.add_input(name);
  }
}

// The values of a constant operand: a float initializer, or a Reshape of
// one to a constant shape (PaddlePaddle reshapes each bias vector to
// [1, C, 1, 1] in the graph). `reshape` gets the Reshape's node index.
std::optional<Tensor> ConstantOperand(const OnnxModel& m, const std::string& name, int* reshape) {
  *reshape = -1;
  if (auto t = FloatInitializer(m, name)) return t;
  const int ri = m.Producer(name);
  if (ri < 0) return std::nullopt;
  const onnx::NodeProto& r = m.graph().node(ri);
  if (!IsOnnx(r, "Reshape") || r.input_size() != 2 || AttrInt(r, "allowzero", 0) != 0) return std::nullopt;
  auto data = FloatInitializer(m, r.input(0));
  auto target = m.FindInitializer(r.input(1)) ? m.InitializerTensor(r.input(1)) : absl::NotFoundError("");
  if (!data || !target.ok() || target->dtype() != DataType::kInt64) return std::nullopt;
  std::vector<int64_t> shape(target->data<int64_t>(), target->data<int64_t>() + target->num_elements());
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) {
      if (static_cast<int64_t>(i) >= data->rank()) return std::nullopt;
      shape[i] = data->shape()[i];
    }
    if (shape[i] == -1 && infer < 0) {
      infer = static_cast<int64_t>(i);
    } else if (shape[i] <= 0) {
      return std::nullopt;
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) shape[infer] = data->num_elements() / known;
  auto out = data->Reshaped(shape);
  if (!out.ok()) return std::nullopt;
  *reshape = ri;
  return *std::move(out);
}

}  // namespace

absl::Status RemoveNoOps(OnnxModel& m, PrepareReport* report) {
  auto& g = m.graph();
  const auto sub_reads = m.SubgraphReads();
  std::vector<bool> removed(g.node_size(), false);
  for (int i = 0; i < g.node_size(); ++i) {
    const onnx::NodeProto& n = g.node(i);
    if (!IsOnnx(n, "Identity") && !IsOnnx(n, "Dropout")) continue;
    if (n.input_size() < 1 || n.output_size() < 1) continue;
    const std::string in = n.input(0), out = n.output(0);
    const bool mask_used = n.output_size() > 1 && !n.output(1).empty() &&
                           (!m.Consumers(n.output(1)).empty() || m.IsGraphOutput(n.output(1)));
    if (m.IsGraphOutput(out) || mask_used || sub_reads.contains(out)) continue;
    RenameUses(g, out, in);
    removed[i] = true;
    ++report->removed_noops;
  }
  RemoveNodes(g, removed);
  m.Reindex();
  return absl::OkStatus();
}

void RemoveUnusedInitializers(OnnxModel& m) {
  auto& g = m.graph();
  absl::flat_hash_set<std::string> used = m.SubgraphReads();
  for (const auto& n : g.node())
    for (const auto& in : n.input()) used.insert(in);
  for (const auto& o : g.output()) used.insert(o.name());
  for (const auto& i : g.input()) used.insert(i.name());
  int unused = 0;
  for (const auto& t : g.initializer()) unused += !used.contains(t.name());
  if (unused == 0) return;
  google::protobuf::RepeatedPtrField<onnx::TensorProto> kept;
  for (auto& t : *g.mutable_initializer())
    if (used.contains(t.name())) *kept.Add() = std::move(t);
  g.mutable_initializer()->Swap(&kept);
  m.Reindex();
}

// A convolution BatchNormalization and bias Adds fold into: Conv (weights
// [cout, cin / group, k...]) or a group-1 ConvTranspose ([cin, cout, k...]).
bool IsFoldTarget(const onnx::NodeProto& n) {
  return IsOnnx(n, "Conv") || (IsOnnx(n, "ConvTranspose") && AttrInt(n, "group", 1) == 1);
}
int64_t OutChannels(const onnx::NodeProto& conv, const Tensor& w) { return w.shape()[IsOnnx(conv, "Conv") ? 0 : 1]; }
// The output channel of weight element i.
int64_t OutChannelOfWeight(const onnx::NodeProto& conv, const Tensor& w, int64_t i) {
  if (IsOnnx(conv, "Conv")) return i / (w.num_elements() / w.shape()[0]);
  return i / (w.num_elements() / (w.shape()[0] * w.shape()[1])) % w.shape()[1];
}

absl::Status FoldBatchNorms(OnnxModel& m, PrepareReport* report) {
  auto& g = m.graph();
  std::vector<bool> removed(g.node_size(), false);
  for (int bi = 0; bi < g.node_size(); ++bi) {
    const onnx::NodeProto& bn = g.node(bi);
    if (!IsOnnx(bn, "BatchNormalization") || bn.input_size() < 5 || bn.output_size() != 1) continue;
    if (AttrInt(bn, "training_mode", 0) != 0) continue;
    const std::string x = bn.input(0);
    const int ci = m.Producer(x);
    if (ci < 0 || removed[ci] || !IsFoldTarget(g.node(ci)) || m.Consumers(x).size() != 1 || m.IsGraphOutput(x)) continue;
    onnx::NodeProto& conv = *g.mutable_node(ci);
    auto w = FloatInitializer(m, conv.input(1));
    auto scale = FloatInitializer(m, bn.input(1));
    auto beta = FloatInitializer(m, bn.input(2));
    auto mean = FloatInitializer(m, bn.input(3));
    auto var = FloatInitializer(m, bn.input(4));
    if (!w || !scale || !beta || !mean || !var || w->rank() < 3) continue;
    const int64_t out_channels = OutChannels(conv, *w);
    if (scale->num_elements() != out_channels || beta->num_elements() != out_channels ||
        mean->num_elements() != out_channels || var->num_elements() != out_channels) {
      continue;
    }
    std::optional<Tensor> bias;
    if (conv.input_size() > 2 && !conv.input(2).empty()) {
      bias = FloatInitializer(m, conv.input(2));
      if (!bias || bias->num_elements() != out_channels) continue;
    }
    const float eps = AttrFloat(bn, "epsilon", 1e-5f);
    Tensor new_w = w->Clone();
    Tensor new_b = Tensor::Zeros(DataType::kFloat32, {out_channels});
    std::vector<float> k(out_channels);
    for (int64_t o = 0; o < out_channels; ++o) {
      k[o] = scale->data<float>()[o] / std::sqrt(var->data<float>()[o] + eps);
      const float b = bias ? bias->data<float>()[o] : 0.f;
      new_b.data<float>()[o] = (b - mean->data<float>()[o]) * k[o] + beta->data<float>()[o];
    }
    for (int64_t j = 0; j < new_w.num_elements(); ++j) new_w.data<float>()[j] *= k[OutChannelOfWeight(conv, *w, j)];
    const std::string w_name = WritableName(m, conv.input(1), 1);
    m.SetInitializer(w_name, new_w);
    conv.set_input(1, w_name);
    SetConvBias(m, conv, bias.has_value(), new_b);
    conv.set_output(0, bn.output(0));
    removed[bi] = true;
    ++report->folded_batchnorms;
  }
  RemoveNodes(g, removed);
  m.Reindex();
  return absl::OkStatus();
}

absl::Status FoldConvBiasAdds(OnnxModel& m, PrepareReport* report) {
  auto& g = m.graph();
  std::vector<bool> removed(g.node_size(), false);
  for (int ai = 0; ai < g.node_size(); ++ai) {
    const onnx::NodeProto& add = g.node(ai);
    if (!IsOnnx(add, "Add") || add.input_size() != 2 || add.output_size() != 1) continue;
    for (int side : {0, 1}) {
      const std::string y = add.input(side);
      const int ci = m.Producer(y);
      if (ci < 0 || removed[ci] || !IsFoldTarget(g.node(ci)) || m.Consumers(y).size() != 1 || m.IsGraphOutput(y)) {
        continue;
      }
      onnx::NodeProto& conv = *g.mutable_node(ci);
      auto w = FloatInitializer(m, conv.input(1));
      int reshape = -1;
      auto v = ConstantOperand(m, add.input(1 - side), &reshape);
      if (!w || !v || w->rank() < 3) continue;
      // One value per output channel, along the channel axis of the
      // output's rank (a [C] vector would broadcast along the last spatial
      // axis instead), or one for all.
      const int64_t out_channels = OutChannels(conv, *w), rank = w->rank();
      bool per_channel = v->rank() >= rank - 1 && v->rank() <= rank;
      for (int64_t d = 0; per_channel && d < v->rank(); ++d) {
        const bool channel_axis = d == v->rank() - (rank - 1);
        per_channel = v->shape()[d] == (channel_axis ? out_channels : 1);
      }
      if (!per_channel && v->num_elements() != 1) continue;
      std::optional<Tensor> bias;
      if (conv.input_size() > 2 && !conv.input(2).empty()) {
        bias = FloatInitializer(m, conv.input(2));
        if (!bias || bias->num_elements() != out_channels) continue;
      }
      Tensor new_b = Tensor::Zeros(DataType::kFloat32, {out_channels});
      for (int64_t o = 0; o < out_channels; ++o) {
        new_b.data<float>()[o] = (bias ? bias->data<float>()[o] : 0.f) + v->data<float>()[per_channel ? o : 0];
      }
      SetConvBias(m, conv, bias.has_value(), new_b);
      conv.set_output(0, add.output(0));
      removed[ai] = true;
      if (reshape >= 0 && m.Consumers(add.input(1 - side)).size() == 1 && !m.IsGraphOutput(add.input(1 - side))) {
        removed[reshape] = true;
      }
      ++report->folded_bias_adds;
      break;
    }
  }
  RemoveNodes(g, removed);
  m.Reindex();
  return absl::OkStatus();
}

absl::Status UpgradeToOpset13(OnnxModel& m, PrepareReport* report) {
  report->opset_before = report->opset_after = m.opset();
  if (m.opset() >= 13) return absl::OkStatus();
  // Ranks for the Softmax family, from Kvant's own shape inference.
  auto graph = ImportOnnxBytes(m.Serialize(), ".", m.source());
  if (!graph.ok()) return graph.status();
  if (auto s = InferShapes(*graph); !s.ok()) return s;
  // The nodes of the graph and of its subgraphs (If branches read the
  // initializers added here from the outer scope).
  std::vector<onnx::NodeProto*> nodes;
  std::function<void(onnx::GraphProto&)> collect = [&](onnx::GraphProto& g) {
    for (auto& n : *g.mutable_node()) {
      nodes.push_back(&n);
      for (auto& a : *n.mutable_attribute()) {
        if (a.has_g()) collect(*a.mutable_g());
        for (auto& sub : *a.mutable_graphs()) collect(sub);
      }
    }
  };
  collect(m.graph());
  for (onnx::NodeProto* node : nodes) {
    onnx::NodeProto& n = *node;
    if (!n.domain().empty()) continue;
    const std::string op = n.op_type();
    const char* attr = op == "Squeeze" || op == "Unsqueeze" || op == "ReduceSum" ? "axes" : op == "Split" ? "split" : nullptr;
    if (attr != nullptr) {
      const std::vector<int64_t> values = AttrInts(n, attr);
      bool has = false;
      for (const auto& a : n.attribute()) has |= a.name() == attr;
      if (!has) continue;
      const std::string name = m.FreshName(n.name() + "_" + attr);
      m.SetInitializer(name, Tensor::FromVector<int64_t>(DataType::kInt64, {static_cast<int64_t>(values.size())}, values));
      if (n.input_size() < 2) n.add_input(name);
      RemoveAttr(n, attr);
      ++report->upgraded_nodes;
    } else if (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") {
      const ValueType* t = graph->FindType(n.input(0));
      const int64_t rank = t != nullptr && t->shape.rank_known ? t->shape.rank() : -1;
      int64_t axis = AttrInt(n, "axis", 1);
      if (rank > 0 && axis < 0) axis += rank;
      if (rank < 0 || axis != rank - 1) {
        return absl::UnimplementedError(absl::StrFormat(
            "failed to upgrade %s to opset 13 for per-channel weights: node %s '%s' normalizes over axes %d.. of a "
            "rank-%d input (opset 13 changed that meaning); quantize with --per-tensor instead",
            m.source(), op, n.name(), axis, rank));
      }
      SetAttrInt(n, "axis", -1);
      ++report->upgraded_nodes;
    }
  }
  m.SetOpset(13);
  report->opset_after = 13;
  m.Reindex();
  return absl::OkStatus();
}

absl::Status EqualizeCrossLayer(OnnxModel& m, PrepareReport* report) {
  auto& g = m.graph();
  absl::flat_hash_set<int> counted;
  for (int round = 0; round < 8; ++round) {
    bool changed = false;
    for (int i1 = 0; i1 < g.node_size(); ++i1) {
      onnx::NodeProto& c1 = *g.mutable_node(i1);
      if (!IsOnnx(c1, "Conv") || c1.input_size() < 2) continue;
      std::string y = c1.output(0);
      if (m.Consumers(y).size() != 1 || m.IsGraphOutput(y)) continue;
      int next = m.Consumers(y)[0];
      if (IsOnnx(g.node(next), "Relu")) {
        y = g.node(next).output(0);
        if (m.Consumers(y).size() != 1 || m.IsGraphOutput(y)) continue;
        next = m.Consumers(y)[0];
      }
      onnx::NodeProto& c2 = *g.mutable_node(next);
      if (!IsOnnx(c2, "Conv") || c2.input(0) != y) continue;
      const std::string w1n = c1.input(1), w2n = c2.input(1);
      if (m.Consumers(w1n).size() != 1 || m.Consumers(w2n).size() != 1) continue;
      auto w1 = FloatInitializer(m, w1n);
      auto w2 = FloatInitializer(m, w2n);
      if (!w1 || !w2 || w1->rank() < 3 || w2->rank() != w1->rank()) continue;
      std::optional<Tensor> b1;
      if (c1.input_size() > 2 && !c1.input(2).empty()) {
        b1 = FloatInitializer(m, c1.input(2));
        if (!b1 || m.Consumers(c1.input(2)).size() != 1) continue;
      }
      const int64_t channels = w1->shape()[0], group2 = AttrInt(c2, "group", 1);
      const int64_t per1 = w1->num_elements() / channels;
      const int64_t out2 = w2->shape()[0], in2 = w2->shape()[1], per2 = w2->num_elements() / (out2 * in2);
      const bool dense = group2 == 1 && in2 == channels;
      const bool depthwise = group2 == channels && in2 == 1 && out2 % channels == 0;
      if (!dense && !depthwise) continue;
      const int64_t mult = depthwise ? out2 / channels : 1;
      // The weights of conv2 that read input channel c.
      auto for_input = [&](int64_t c, auto fn) {
        float* w = w2->data<float>();
        if (dense) {
          for (int64_t o = 0; o < out2; ++o)
            for (int64_t j = 0; j < per2; ++j) fn(w[(o * in2 + c) * per2 + j]);
        } else {
          for (int64_t o = c * mult; o < (c + 1) * mult; ++o)
            for (int64_t j = 0; j < per2; ++j) fn(w[o * per2 + j]);
        }
      };
      bool pair_changed = false;
      for (int64_t c = 0; c < channels; ++c) {
        float r1 = 0, r2 = 0;
        for (int64_t j = 0; j < per1; ++j) r1 = std::max(r1, std::fabs(w1->data<float>()[c * per1 + j]));
        for_input(c, [&](float& v) { r2 = std::max(r2, std::fabs(v)); });
        if (!(r1 > 0) || !(r2 > 0)) continue;
        const float s = std::sqrt(r1 / r2);
        if (!std::isfinite(s) || std::fabs(s - 1.f) < 1e-3f) continue;
        for (int64_t j = 0; j < per1; ++j) w1->data<float>()[c * per1 + j] /= s;
        if (b1) b1->data<float>()[c] /= s;
        for_input(c, [&](float& v) { v *= s; });
        pair_changed = true;
      }
      if (!pair_changed) continue;
      m.SetInitializer(w1n, *w1);
      m.SetInitializer(w2n, *w2);
      if (b1) m.SetInitializer(c1.input(2), *b1);
      if (counted.insert(i1).second) ++report->equalized_pairs;
      changed = true;
    }
    if (!changed) break;
  }
  return absl::OkStatus();
}

}  // namespace kvant::quantize
