// QDQ planning and writing (see the header).
//
// Planning walks the nodes in topological order once:
//   1. a compute node marks its activation inputs (own parameters unless
//      already quantized) and its output, or its fused activation's output;
//   2. binary, pool and activation nodes whose inputs are all quantized mark
//      their output with own parameters; same-params nodes with the input's;
//   3. excluded nodes and everything else mark nothing.
// Writing then inserts, after each quantized tensor's producer (or first, for
// graph inputs), Q -> DQ, points every consumer at the DQ output, and turns
// each compute node's weights and bias into DequantizeLinear of integers.
#include "quantize/qdq.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace kvant::quantize {
namespace {

enum class Role { kFloat, kCompute, kBinary, kConcat, kPool, kSameParams, kActivation };

Role RoleOf(const OnnxModel& m, const onnx::NodeProto& n) {
  if (!n.domain().empty()) return Role::kFloat;
  const std::string& op = n.op_type();
  auto weight_rank = [&](int i) {
    const onnx::TensorProto* w = n.input_size() > i ? m.FindInitializer(n.input(i)) : nullptr;
    return w != nullptr && w->data_type() == onnx::TensorProto::FLOAT ? w->dims_size() : -1;
  };
  if (op == "Conv") return weight_rank(1) >= 3 ? Role::kCompute : Role::kFloat;
  // The INT8 ConvTranspose kernel: 2-D, group 1 (others stay float).
  if (op == "ConvTranspose") return weight_rank(1) == 4 && AttrInt(n, "group", 1) == 1 ? Role::kCompute : Role::kFloat;
  if (op == "MatMul") return weight_rank(1) == 2 ? Role::kCompute : Role::kFloat;
  if (op == "Gemm") {
    const bool plain = AttrInt(n, "transA", 0) == 0 && AttrFloat(n, "alpha", 1.f) == 1.f && AttrFloat(n, "beta", 1.f) == 1.f;
    return plain && weight_rank(1) == 2 ? Role::kCompute : Role::kFloat;
  }
  if (op == "Add" || op == "Mul") return Role::kBinary;
  if (op == "Concat") return n.output_size() == 1 ? Role::kConcat : Role::kFloat;  // QLinearConcat
  if (op == "AveragePool" || op == "GlobalAveragePool") return Role::kPool;
  if (op == "MaxPool" || op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" ||
      op == "Transpose" || (op == "Resize" && AttrString(n, "mode", "nearest") == "nearest")) {
    return n.output_size() == 1 ? Role::kSameParams : Role::kFloat;
  }
  if (op == "Relu") return Role::kActivation;
  if (op == "Clip") {  // constant bounds only
    for (int i = 1; i < n.input_size(); ++i)
      if (!n.input(i).empty() && m.FindInitializer(n.input(i)) == nullptr) return Role::kFloat;
    return Role::kActivation;
  }
  return Role::kFloat;
}

// A constant scalar initializer's value, or NaN.
float ScalarOf(const OnnxModel& m, const std::string& name) {
  auto t = m.InitializerTensor(name);
  return t.ok() && t->num_elements() == 1 && t->dtype() == DataType::kFloat32 ? t->data<float>()[0] : NAN;
}

// The input x when node n computes HardSwish(x): the operator itself, or
// the spelling Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6) that exporters write
// before opset 14 (PaddlePaddle's, PyTorch's). Empty otherwise. The runtime
// fuses the spelling (fuse_spelled_activations.cc) and, between quantized
// tensors, makes it a 256-entry table.
std::string HardSwishInput(const OnnxModel& m, const onnx::NodeProto& n) {
  if (!n.domain().empty()) return {};
  if (n.op_type() == "HardSwish") return n.input(0);
  if (n.op_type() != "Div" || n.input_size() != 2 || ScalarOf(m, n.input(1)) != 6.f) return {};
  const auto& g = m.graph();
  const int mi = m.Producer(n.input(0));
  if (mi < 0 || g.node(mi).op_type() != "Mul" || g.node(mi).input_size() != 2) return {};
  const onnx::NodeProto& mul = g.node(mi);
  for (int side : {0, 1}) {
    const int ci = m.Producer(mul.input(1 - side));
    if (ci < 0 || g.node(ci).op_type() != "Clip" || g.node(ci).input_size() < 3) continue;
    const onnx::NodeProto& clip = g.node(ci);
    if (ScalarOf(m, clip.input(1)) != 0.f || ScalarOf(m, clip.input(2)) != 6.f) continue;
    const int ai = m.Producer(clip.input(0));
    if (ai < 0 || g.node(ai).op_type() != "Add" || g.node(ai).input_size() != 2) continue;
    const onnx::NodeProto& add = g.node(ai);
    const std::string& x = mul.input(side);
    if ((add.input(0) == x && ScalarOf(m, add.input(1)) == 3.f) || (add.input(1) == x && ScalarOf(m, add.input(0)) == 3.f)) {
      return x;
    }
  }
  return {};
}

// The input x when node n is a unary operator the runtime computes as a
// 256-entry table between quantized tensors (fuse_qdq_table.cc): HardSwish
// (either spelling), and the gates of squeeze-excitation blocks, HardSigmoid
// and Sigmoid. Empty otherwise.
std::string TableInput(const OnnxModel& m, const onnx::NodeProto& n) {
  if (n.domain().empty() && (n.op_type() == "HardSigmoid" || n.op_type() == "Sigmoid") && n.input_size() == 1) {
    return n.input(0);
  }
  return HardSwishInput(m, n);
}

// The largest |int32 bias| written: 2^30 leaves the kernels room to add the
// zero-point terms (za * column sums) without overflow.
constexpr float kMaxBias = 1073741824.f;

// The axis of a compute node's weights that indexes output channels.
int64_t WeightAxis(const onnx::NodeProto& n) {
  if (n.op_type() == "Conv") return 0;
  if (n.op_type() == "ConvTranspose") return 1;  // [cin, cout, kh, kw]
  if (n.op_type() == "Gemm") return AttrInt(n, "transB", 0) != 0 ? 0 : 1;
  return 1;  // MatMul [K, N]
}

// The Add that is MatMul node i's output's only reader and adds a constant
// f32 vector of one value per column (the weights' [K, N]), or -1.
int BiasAddOf(const OnnxModel& m, int i) {
  const onnx::NodeProto& mm = m.graph().node(i);
  const std::string& y = mm.output(0);
  const auto& uses = m.Consumers(y);
  if (mm.op_type() != "MatMul" || uses.size() != 1 || m.IsGraphOutput(y)) return -1;
  const onnx::NodeProto& add = m.graph().node(uses[0]);
  if (add.op_type() != "Add" || !add.domain().empty() || add.input_size() != 2 || add.input(0) == add.input(1)) return -1;
  const onnx::TensorProto* w = m.FindInitializer(mm.input(1));
  const onnx::TensorProto* b = m.FindInitializer(add.input(add.input(0) == y ? 1 : 0));
  if (w == nullptr || b == nullptr || b->data_type() != onnx::TensorProto::FLOAT || b->dims_size() != 1) return -1;
  return b->dims(0) == w->dims(1) ? uses[0] : -1;
}

// The varying input of an elementwise step the runtime folds into a byte
// table when it sits between quantized tensors (graph/passes/fuse_qdq_table.cc):
// HardSwish/HardSigmoid/Sigmoid (TableInput), or Add/Sub/Mul/Div by a scalar
// constant (PaddlePaddle's learnable affine blocks). Empty otherwise.
std::string ChainInput(const OnnxModel& m, const onnx::NodeProto& n) {
  if (std::string x = TableInput(m, n); !x.empty()) return x;
  const std::string& op = n.op_type();
  if (!n.domain().empty() || n.input_size() != 2 || (op != "Add" && op != "Sub" && op != "Mul" && op != "Div")) {
    return {};
  }
  const bool c0 = !std::isnan(ScalarOf(m, n.input(0))), c1 = !std::isnan(ScalarOf(m, n.input(1)));
  if (c0 == c1) return {};
  if (c0 && (op == "Sub" || op == "Div")) return {};  // c - x, c / x: not an affine step (a table would do, but rare)
  return c0 ? n.input(1) : n.input(0);
}

// The Add, Clip and Mul inside each spelled HardSwish, mapped to its Div
// (the node HardSwishInput recognizes): they run as one HardSwish (a table
// between quantized tensors), so they are neither quantized nor readers that
// quantize their inputs.
absl::flat_hash_map<int, int> SpelledHardSwishInsides(const OnnxModel& m) {
  absl::flat_hash_map<int, int> inside;
  const auto& g = m.graph();
  for (int i = 0; i < g.node_size(); ++i) {
    const onnx::NodeProto& div = g.node(i);
    if (div.op_type() != "Div" || HardSwishInput(m, div).empty()) continue;
    const int mul = m.Producer(div.input(0));
    inside[mul] = i;
    for (const std::string& v : g.node(mul).input()) {
      const int clip = m.Producer(v);
      if (clip < 0 || g.node(clip).op_type() != "Clip") continue;
      inside[clip] = i;
      if (const int add = m.Producer(g.node(clip).input(0)); add >= 0) inside[add] = i;
    }
  }
  return inside;
}

// Whether some reader of `t` would take it quantized (a compute node's
// activation input, pooling, an activation, data movement, another binary
// op of two tensors), directly or, with `through_tables`, through table steps
// (ChainInput, a spelled HardSwish) that lead to one. A residual sum that
// only float operators read (LayerNormalization in a transformer) stays
// float: quantizing it would add a conversion pair and the error of an 8-bit
// residual stream, and speed nothing up.
bool ReadQuantized(const OnnxModel& m, const std::string& t, const absl::flat_hash_set<std::string>& excluded,
                   const absl::flat_hash_map<int, int>& spelled, bool through_tables = true, int depth = 0) {
  for (int c : m.Consumers(t)) {
    const onnx::NodeProto& n = m.graph().node(c);
    if (excluded.contains(n.name())) continue;
    int through = -1;  // the table step the value flows on through
    if (auto it = spelled.find(c); it != spelled.end()) {
      through = it->second;
    } else if (ChainInput(m, n) == t && n.output_size() == 1) {
      through = c;
    }
    if (through >= 0) {
      if (through_tables && depth < 16 &&
          ReadQuantized(m, m.graph().node(through).output(0), excluded, spelled, true, depth + 1)) {
        return true;
      }
      continue;
    }
    const Role role = RoleOf(m, n);
    if (role == Role::kFloat || (role == Role::kCompute && n.input(0) != t)) continue;
    return true;
  }
  return false;
}

// Whether a MatMul or Gemm result `t` is better left float: every reader
// needs float and cannot take 8-bit input cheaply (Softmax, LogSoftmax,
// LayerNormalization), or it is only a graph output. Kvant runs the product
// in INT8 with f32 output (MatMulIntegerToFloat, QGemm), so the output's
// quantization would only add error and a conversion pair.
bool KeepsFloatResult(const OnnxModel& m, const onnx::NodeProto& n, const std::string& t) {
  if (n.op_type() != "MatMul" && n.op_type() != "Gemm") return false;
  const auto& uses = m.Consumers(t);
  if (uses.empty()) return m.IsGraphOutput(t);
  for (int c : uses) {
    const onnx::NodeProto& r = m.graph().node(c);
    if (!r.domain().empty() ||
        (r.op_type() != "Softmax" && r.op_type() != "LogSoftmax" && r.op_type() != "LayerNormalization")) {
      return false;
    }
  }
  return true;
}

// The input of Add node `add` that is not `product`.
int OtherInput(const onnx::NodeProto& add, const std::string& product) { return add.input(0) == product ? 1 : 0; }

// Renames reads of outer values inside a subgraph (names are unique across
// scopes, so every match is the outer value).
void RenameOuterReads(onnx::GraphProto& g, const absl::flat_hash_map<std::string, std::string>& renames) {
  for (auto& n : *g.mutable_node()) {
    for (auto& in : *n.mutable_input()) {
      auto it = renames.find(in);
      if (it != renames.end()) in = it->second;
    }
    for (auto& a : *n.mutable_attribute()) {
      if (a.has_g()) RenameOuterReads(*a.mutable_g(), renames);
      for (auto& sub : *a.mutable_graphs()) RenameOuterReads(sub, renames);
    }
  }
  for (auto& o : *g.mutable_output()) {
    auto it = renames.find(o.name());
    if (it != renames.end()) o.set_name(it->second);
  }
}

}  // namespace

std::vector<std::string> QdqPlan::Observed() const {
  std::vector<std::string> out;
  for (const auto& [t, source] : tensors)
    if (t == source) out.push_back(t);
  return out;
}

QdqPlan PlanQdq(const OnnxModel& m, const absl::flat_hash_set<std::string>& excluded) {
  QdqPlan plan;
  absl::flat_hash_map<std::string, std::string> source;  // quantized tensor -> parameter source
  absl::flat_hash_set<int> fused;                         // activation nodes absorbed by their producer
  auto mark = [&](const std::string& t, const std::string& from) {
    if (t.empty() || source.contains(t)) return;
    source[t] = from;
    plan.tensors.emplace_back(t, from);
  };
  auto quantized = [&](const std::string& t) { return source.contains(t); };
  // Values computed from one quantized tensor by table steps (ChainInput):
  // the runtime folds such a chain into one byte table, so only where a
  // quantized reader takes a value is it quantized (HardSwish feeding a
  // squeeze-excitation pool, an affine block's output feeding a
  // convolution), not at every step.
  absl::flat_hash_set<std::string> chained;
  const absl::flat_hash_map<int, int> spelled = SpelledHardSwishInsides(m);
  const auto& g = m.graph();
  for (int i = 0; i < g.node_size(); ++i) {
    const onnx::NodeProto& n = g.node(i);
    if (excluded.contains(n.name()) || fused.contains(i) || spelled.contains(i)) continue;
    auto chain_step = [&] {
      const std::string x = ChainInput(m, n);
      if (x.empty() || n.output_size() != 1 || (!quantized(x) && !chained.contains(x))) return;
      if (!ReadQuantized(m, n.output(0), excluded, spelled)) return;  // the chain ends in float: leave it float
      chained.insert(n.output(0));
      plan.quantized_nodes.insert(n.name());
      if (ReadQuantized(m, n.output(0), excluded, spelled, /*through_tables=*/false)) mark(n.output(0), n.output(0));
    };
    const Role role = RoleOf(m, n);
    switch (role) {
      case Role::kFloat:
        chain_step();
        break;
      case Role::kCompute: {
        mark(n.input(0), n.input(0));
        plan.compute_nodes.push_back(i);
        plan.quantized_nodes.insert(n.name());
        std::string y = n.output(0);
        if (const int add = BiasAddOf(m, i); add >= 0 && !excluded.contains(g.node(add).name())) {
          plan.bias_adds[i] = add;
          fused.insert(add);
          plan.quantized_nodes.insert(g.node(add).name());
          y = g.node(add).output(0);
        }
        const auto& uses = m.Consumers(y);
        if (uses.size() == 1 && !m.IsGraphOutput(y)) {
          const onnx::NodeProto& act = g.node(uses[0]);
          if (RoleOf(m, act) == Role::kActivation && !excluded.contains(act.name())) {
            fused.insert(uses[0]);
            plan.quantized_nodes.insert(act.name());
            if (!KeepsFloatResult(m, n, act.output(0))) mark(act.output(0), act.output(0));
            break;
          }
        }
        if (!KeepsFloatResult(m, n, y)) mark(y, y);
        break;
      }
      case Role::kBinary:
        if (!ChainInput(m, n).empty()) {
          chain_step();
          break;
        }
        if (n.input_size() == 2 && quantized(n.input(0)) && quantized(n.input(1)) &&
            m.FindInitializer(n.input(0)) == nullptr && m.FindInitializer(n.input(1)) == nullptr &&
            ReadQuantized(m, n.output(0), excluded, spelled)) {
          plan.quantized_nodes.insert(n.name());
          mark(n.output(0), n.output(0));
        }
        break;
      case Role::kConcat: {  // every input quantized (each its own parameters), the output read quantized
        bool all = n.input_size() > 0;
        for (const std::string& in : n.input()) all &= quantized(in) && m.FindInitializer(in) == nullptr;
        if (all && ReadQuantized(m, n.output(0), excluded, spelled)) {
          plan.quantized_nodes.insert(n.name());
          mark(n.output(0), n.output(0));
        }
        break;
      }
      case Role::kPool:
      case Role::kActivation:
        if (quantized(n.input(0))) {
          plan.quantized_nodes.insert(n.name());
          mark(n.output(0), n.output(0));
        }
        break;
      case Role::kSameParams:
        if (quantized(n.input(0))) {
          plan.quantized_nodes.insert(n.name());
          const std::string from = source[n.input(0)];  // a copy: mark() may rehash `source`
          mark(n.output(0), from);
        }
        break;
    }
  }
  return plan;
}

absl::Status ApplyQdq(OnnxModel& m, const QdqPlan& plan, const absl::flat_hash_map<std::string, QParams>& params,
                      const Scheme& scheme) {
  auto& g = m.graph();
  const DataType act_type = scheme.activations_signed ? DataType::kInt8 : DataType::kUInt8;
  // Scale and zero-point initializers per parameter source.
  absl::flat_hash_map<std::string, std::pair<std::string, std::string>> param_names;
  auto params_of = [&](const std::string& src) -> absl::StatusOr<std::pair<std::string, std::string>> {
    auto it = param_names.find(src);
    if (it != param_names.end()) return it->second;
    auto p = params.find(src);
    if (p == params.end()) {
      return absl::InternalError(absl::StrFormat("failed to quantize %s: no range for tensor '%s'", m.source(), src));
    }
    const std::string scale = m.FreshName(src + "_scale"), zero = m.FreshName(src + "_zero_point");
    m.SetInitializer(scale, Tensor::FromVector<float>(DataType::kFloat32, {}, {p->second.scale}));
    Tensor z = Tensor::Zeros(act_type, {});
    if (act_type == DataType::kInt8) {
      z.data<int8_t>()[0] = static_cast<int8_t>(p->second.zero_point);
    } else {
      z.data<uint8_t>()[0] = static_cast<uint8_t>(p->second.zero_point);
    }
    m.SetInitializer(zero, z);
    return param_names[src] = {scale, zero};
  };

  // New nodes to place: at the front (graph inputs, weights) or after a node.
  std::vector<onnx::NodeProto> front;
  absl::flat_hash_map<int, std::vector<onnx::NodeProto>> after;
  // Renames of consumer inputs: tensor -> its dequantized name.
  absl::flat_hash_map<std::string, std::string> dequantized;
  for (const auto& [t, src] : plan.tensors) {
    auto names = params_of(src);
    if (!names.ok()) return names.status();
    const auto& [scale, zero] = *names;
    const int producer = m.Producer(t);
    const std::string q = m.FreshName(t + "_quantized");
    std::string q_in = t, dq_out;
    if (m.IsGraphOutput(t) && producer >= 0) {
      // The graph output keeps its name, now the DequantizeLinear's.
      q_in = m.FreshName(t + "_prequant");
      for (auto& out : *g.mutable_node(producer)->mutable_output())
        if (out == t) out = q_in;
      dq_out = t;
    } else {
      dq_out = m.FreshName(t + "_dequantized");
      dequantized[t] = dq_out;
    }
    std::vector<onnx::NodeProto>& dst = producer >= 0 ? after[producer] : front;
    dst.push_back(MakeNode("QuantizeLinear", {q_in, scale, zero}, {q}, m.FreshName(t + "_QuantizeLinear")));
    dst.push_back(MakeNode("DequantizeLinear", {q, scale, zero}, {dq_out}, m.FreshName(t + "_DequantizeLinear")));
  }
  // Each compute node's activation parameters (for its bias), before renaming.
  absl::flat_hash_map<std::string, std::string> source_of(plan.tensors.begin(), plan.tensors.end());
  absl::flat_hash_map<int, std::string> x_source;
  for (int i : plan.compute_nodes) x_source[i] = source_of[g.node(i).input(0)];
  for (auto& n : *g.mutable_node()) {
    for (auto& in : *n.mutable_input()) {
      auto it = dequantized.find(in);
      if (it != dequantized.end()) in = it->second;
    }
    // Subgraphs (If branches) that read a quantized tensor read it dequantized too.
    for (auto& a : *n.mutable_attribute()) {
      if (a.has_g()) RenameOuterReads(*a.mutable_g(), dequantized);
      for (auto& sub : *a.mutable_graphs()) RenameOuterReads(sub, dequantized);
    }
  }
  // Weights and biases.
  bool per_axis = false;
  absl::flat_hash_map<std::string, std::pair<std::string, std::vector<float>>> weight_dq;  // float name -> DQ output, scales
  std::vector<std::string> replaced;  // float weights and biases now read through DequantizeLinear
  for (int i : plan.compute_nodes) {
    onnx::NodeProto& n = *g.mutable_node(i);
    const std::string w_name = n.input(1);
    auto w = m.InitializerTensor(w_name);
    if (!w.ok()) return w.status();
    const int64_t axis = WeightAxis(n);
    const bool per_channel = scheme.weights_per_channel;
    auto cached = weight_dq.find(w_name);
    // The bias, if any, at scale x_scale * w_scale[c] must fit in int32 with
    // room for the kernels' zero-point terms: a channel of near-zero weights
    // with a large bias gets a coarser weight scale (as ONNX Runtime does).
    // The bias is Conv's or ConvTranspose's B, Gemm's 1-D C, or the vector a MatMul's bias Add adds.
    onnx::NodeProto* bias_holder = nullptr;
    int bias_input = 2;
    if ((n.op_type() == "Conv" || n.op_type() == "ConvTranspose" || n.op_type() == "Gemm") && n.input_size() > 2 &&
        !n.input(2).empty()) {
      bias_holder = &n;
    } else if (auto add = plan.bias_adds.find(i); add != plan.bias_adds.end()) {
      bias_holder = g.mutable_node(add->second);
      bias_input = OtherInput(*bias_holder, n.output(0));
    }
    const bool has_bias = bias_holder != nullptr;
    std::vector<float> min_scales;
    auto x_params = params.find(x_source[i]);
    if (has_bias && x_params != params.end()) {
      auto b = m.InitializerTensor(bias_holder->input(bias_input));
      if (b.ok() && b->dtype() == DataType::kFloat32) {
        const int64_t channels = per_channel ? w->shape()[axis] : 1;
        min_scales.assign(channels, 0.f);
        for (int64_t c = 0; c < b->num_elements(); ++c) {
          const float need = std::fabs(b->data<float>()[c]) / (x_params->second.scale * kMaxBias);
          float& slot = min_scales[per_channel ? std::min(c, channels - 1) : 0];
          slot = std::max(slot, need);
        }
      }
    }
    if (cached == weight_dq.end()) {
      QuantizedWeights q = QuantizeWeights(w->data<float>(), w->shape(), axis, per_channel,
                                           min_scales.empty() ? nullptr : &min_scales);
      Tensor values = Tensor::Zeros(DataType::kInt8, w->shape());
      std::copy(q.values.begin(), q.values.end(), values.data<int8_t>());
      const std::string qn = m.FreshName(w_name + "_quantized"), sn = m.FreshName(w_name + "_scale");
      const std::string zn = m.FreshName(w_name + "_zero_point"), dn = m.FreshName(w_name + "_dequantized");
      m.SetInitializer(qn, values);
      const std::vector<int64_t> pshape = per_channel ? std::vector<int64_t>{static_cast<int64_t>(q.scales.size())}
                                                      : std::vector<int64_t>{};
      m.SetInitializer(sn, Tensor::FromVector<float>(DataType::kFloat32, pshape, q.scales));
      m.SetInitializer(zn, Tensor::Zeros(DataType::kInt8, pshape));
      onnx::NodeProto dq = MakeNode("DequantizeLinear", {qn, sn, zn}, {dn}, m.FreshName(w_name + "_DequantizeLinear"));
      if (per_channel) {
        SetAttrInt(dq, "axis", axis);
        per_axis = true;
      }
      front.push_back(std::move(dq));
      cached = weight_dq.emplace(w_name, std::make_pair(dn, q.scales)).first;
      replaced.push_back(w_name);
    }
    n.set_input(1, cached->second.first);
    if (!has_bias) continue;
    auto b = m.InitializerTensor(bias_holder->input(bias_input));
    const int64_t channels = w->shape()[axis];
    if (!b.ok() || b->dtype() != DataType::kFloat32 || b->rank() != 1 || b->num_elements() != channels) continue;
    if (x_params == params.end()) continue;
    const std::vector<float>& w_scales = cached->second.second;
    std::vector<int32_t> qb = QuantizeBias(b->data<float>(), channels, x_params->second.scale, w_scales);
    std::vector<float> b_scales(w_scales.size());
    for (size_t c = 0; c < w_scales.size(); ++c) b_scales[c] = x_params->second.scale * w_scales[c];
    const std::string bn = bias_holder->input(bias_input);
    const std::string qn = m.FreshName(bn + "_quantized"), sn = m.FreshName(bn + "_scale");
    const std::string zn = m.FreshName(bn + "_zero_point"), dn = m.FreshName(bn + "_dequantized");
    m.SetInitializer(qn, Tensor::FromVector<int32_t>(DataType::kInt32, {channels}, qb));
    const std::vector<int64_t> pshape = per_channel ? std::vector<int64_t>{channels} : std::vector<int64_t>{};
    m.SetInitializer(sn, Tensor::FromVector<float>(DataType::kFloat32, pshape, b_scales));
    m.SetInitializer(zn, Tensor::Zeros(DataType::kInt32, pshape));
    onnx::NodeProto dq = MakeNode("DequantizeLinear", {qn, sn, zn}, {dn}, m.FreshName(bn + "_DequantizeLinear"));
    if (per_channel) SetAttrInt(dq, "axis", 0);
    front.push_back(std::move(dq));
    bias_holder->set_input(bias_input, dn);
    replaced.push_back(bn);
  }
  // The new node order: front, then each node followed by its conversions.
  google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
  for (auto& n : front) *nodes.Add() = std::move(n);
  for (int i = 0; i < g.node_size(); ++i) {
    *nodes.Add() = std::move(*g.mutable_node(i));
    auto it = after.find(i);
    if (it == after.end()) continue;
    for (auto& n : it->second) *nodes.Add() = std::move(n);
  }
  g.mutable_node()->Swap(&nodes);
  m.Reindex();
  // Float weights no one reads any more.
  const auto sub_reads = m.SubgraphReads();
  for (const auto& name : replaced) {
    if (m.Consumers(name).empty() && !m.IsGraphOutput(name) && !sub_reads.contains(name)) m.RemoveInitializer(name);
  }
  if (per_axis && m.opset() < 13) m.SetOpset(13);
  if (m.opset() < 10) m.SetOpset(10);
  return absl::OkStatus();
}

}  // namespace kvant::quantize
