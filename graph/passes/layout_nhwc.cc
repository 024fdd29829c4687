// Convolution chains in NHWC. The INT8 and FP32 NHWC convolution kernels
// keep channels innermost (one GEMM row per pixel, 16 or 64 channels per
// vector, no per-call packing of activations); ONNX's Conv and QLinearConv
// are NCHW. Converting at every convolution costs two full passes over each
// activation, more than a 1x1 convolution itself.
//  1. Every 2-D QLinearConv becomes kvant.QLinearConvNhwc (QLinearConvTranspose:
//     kvant.QLinearConvTransposeNhwc), and every 2-D
//     FP32 Conv with constant weights and group 1 or depthwise (when a
//     graph has two or more) becomes kvant.ConvNhwc, between Transpose(NCHW -> NHWC) and
//     Transpose(NHWC -> NCHW).
//  2. NHWC -> NCHW transposes sink through the operators that do not care
//     about layout or know an NHWC form: per-tensor QuantizeLinear /
//     DequantizeLinear, unary activations, Clip with constant bounds,
//     constant Pad (pads permuted), QLinearAdd / QLinearMul / Add / Mul of
//     two equally shaped transposed values or of one and a scalar constant
//     (also Sub, Div), BatchNormalization and 2-D MaxPool
//     (kvant_channels_last), QLinearGlobalAveragePool / 2-D QLinearAveragePool
//     (channels_last = 1), QLinearSigmoid / QLinearLeakyRelu /
//     kvant.QLinearTable (a per-channel one: axis permuted, its tables then
//     read channels innermost), GlobalAveragePool (kvant_channels_last), Concat
//     and QLinearConcat of transposed values (the axis permuted) and Resize with constant
//     roi/scales/sizes (permuted).
//  3. A transpose whose input is the inverse transpose disappears;
//  4. a constant spatial Pad by the input's zero point before an NHWC
//     convolution becomes the convolution's padding;
//  5. an FP32 group-1 convolution (not 1x1) over 1 to 4 channels whose
//     input is a transpose to NHWC read by nothing else (a network's RGB
//     input) reads the NCHW tensor itself (kvant_nchw_input), so the
//     transpose, a full pass over the input, goes away.
// Repeated to a fixed point; transposes remain only where NCHW is needed
// (graph outputs, float islands, operators without an NHWC form).
#include <algorithm>
#include <cstring>

#include "graph/passes/passes.h"

namespace kvant {
namespace {

const std::vector<int64_t> kToNhwc = {0, 2, 3, 1};
const std::vector<int64_t> kToNchw = {0, 3, 1, 2};

bool IsTranspose(const Node& n, const std::vector<int64_t>& perm) {
  return n.op_type == "Transpose" && n.domain.empty() && n.attrs.GetInts("perm") == perm;
}

Node MakeTranspose(Graph& g, const std::string& in, const std::string& out, const std::vector<int64_t>& perm,
                   const std::string& name) {
  Node t = MakeUnaryNode(g, "Transpose", in, out, name);
  t.attrs.SetInts("perm", perm);
  return t;
}

bool IsScalarConstant(const Graph& g, const std::string& v) {
  const Tensor* t = g.FindConstant(v);
  return t != nullptr && t->num_elements() == 1;
}

// A constant operand an elementwise op can take in NHWC: a scalar, or 4-D
// (transposed along with the data).
bool IsLayoutConstant(const Graph& g, const std::string& v) {
  const Tensor* t = g.FindConstant(v);
  return t != nullptr && (t->num_elements() == 1 || t->rank() == 4);
}

// The NHWC copy of a 4-D NCHW constant (any element type).
Tensor ToNhwc(const Tensor& t) {
  const std::vector<int64_t> s = t.shape();
  Tensor out = Tensor::Zeros(t.dtype(), {s[0], s[2], s[3], s[1]});
  const size_t es = t.byte_size() / std::max<int64_t>(t.num_elements(), 1);
  const auto* src = static_cast<const uint8_t*>(t.raw_data());
  auto* dst = static_cast<uint8_t*>(out.raw_data());
  for (int64_t n = 0; n < s[0]; ++n)
    for (int64_t c = 0; c < s[1]; ++c)
      for (int64_t h = 0; h < s[2]; ++h)
        for (int64_t w = 0; w < s[3]; ++w)
          std::memcpy(dst + (((n * s[2] + h) * s[3] + w) * s[1] + c) * es,
                      src + (((n * s[1] + c) * s[2] + h) * s[3] + w) * es, es);
  return out;
}

// Resize with constant per-axis inputs (roi, scales or sizes; no `axes`):
// permuting them moves it to NHWC (the kernel resizes any axes).
bool ResizeSinks(const Graph& g, const Node& n) {
  if (n.attrs.Has("axes") || n.inputs.size() < 2) return false;
  bool any = false;
  for (size_t i = 1; i < n.inputs.size(); ++i) {
    if (n.inputs[i].empty()) continue;
    const Tensor* t = g.FindConstant(n.inputs[i]);
    const int64_t want = n.inputs.size() >= 3 && i == 1 ? 8 : 4;  // roi has starts and ends (opset >= 11)
    if (t == nullptr || (t->num_elements() != want && t->num_elements() != 0)) return false;
    any |= t->num_elements() == 4;
  }
  return any;
}

// NCHW-ordered per-axis values (4, or 8 for roi's starts and ends) in NHWC order.
Tensor PermuteAxesValues(const Tensor& t) {
  Tensor out = t.Clone();
  const size_t es = DataTypeSize(t.dtype());
  const int64_t halves = t.num_elements() / 4;
  for (int64_t h = 0; h < halves; ++h) {
    for (int d = 0; d < 4; ++d) {
      std::memcpy(static_cast<char*>(out.raw_data()) + (h * 4 + kToNchw[d]) * es,
                  static_cast<const char*>(t.raw_data()) + (h * 4 + d) * es, es);
    }
  }
  return out;
}

// Inputs of `n` that carry the data (the rest are scales, zero points, pads,
// or a scalar constant operand).
std::vector<int> DataInputs(const Graph& g, const Node& n) {
  if (n.domain == "kvant" && n.op_type == "QLinearTable") {  // a per-axis table once (its axis is permuted)
    return n.attrs.GetInt("kvant_nhwc", 0) == 0 ? std::vector<int>{0} : std::vector<int>{};
  }
  if (!n.domain.empty() && n.domain != "com.microsoft") return {};
  const std::string& op = n.op_type;
  if (n.domain.empty()) {
    if (op == "Relu" || op == "Sigmoid" || op == "HardSigmoid" || op == "HardSwish" || op == "Tanh") return {0};
    if (op == "Clip") {
      for (size_t i = 1; i < n.inputs.size(); ++i)
        if (!n.inputs[i].empty() && !IsScalarConstant(g, n.inputs[i])) return {};
      return {0};
    }
    if (op == "BatchNormalization" && n.attrs.GetInt("kvant_channels_last", 0) == 0 && n.outputs.size() == 1) {
      return {0};
    }
    if (op == "GlobalAveragePool" && n.attrs.GetInt("kvant_channels_last", 0) == 0) return {0};
    if (op == "Resize" && ResizeSinks(g, n)) return {0};
    if (op == "Concat" && n.attrs.GetInt("kvant_nhwc", 0) == 0 && !n.inputs.empty()) {
      std::vector<int> all(n.inputs.size());
      for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
      return all;
    }
    if (op == "MaxPool" && n.attrs.GetInt("kvant_channels_last", 0) == 0 && n.attrs.GetInts("kernel_shape").size() == 2 &&
        n.outputs.size() == 1 && n.attrs.GetString("auto_pad", "NOTSET") == "NOTSET") {
      return {0};
    }
    if (op == "Add" || op == "Mul" || op == "Sub" || op == "Div") {
      if (n.inputs.size() == 2 && IsLayoutConstant(g, n.inputs[1])) return {0};
      if (n.inputs.size() == 2 && IsLayoutConstant(g, n.inputs[0])) return {1};
      return {0, 1};
    }
    if (op == "QuantizeLinear" || op == "DequantizeLinear") {
      const Tensor* s = n.inputs.size() > 1 ? g.FindConstant(n.inputs[1]) : nullptr;
      return s != nullptr && s->num_elements() == 1 ? std::vector<int>{0} : std::vector<int>{};
    }
    if (op == "Pad") {
      const bool constant_mode = n.attrs.GetString("mode", "constant") == "constant";
      const Tensor* pads = n.inputs.size() > 1 ? g.FindConstant(n.inputs[1]) : nullptr;
      const bool no_axes = n.inputs.size() < 4 || n.inputs[3].empty();
      return constant_mode && no_axes && pads != nullptr && pads->num_elements() == 8 ? std::vector<int>{0}
                                                                                       : std::vector<int>{};
    }
    return {};
  }
  if (op == "QLinearAdd" || op == "QLinearMul") {
    if (n.inputs.size() > 3 && IsLayoutConstant(g, n.inputs[3])) return {0};
    if (IsLayoutConstant(g, n.inputs[0])) return {3};
    return {0, 3};
  }
  if (op == "QLinearSigmoid" || op == "QLinearLeakyRelu") return {0};
  if (op == "QLinearConcat" && n.attrs.GetInt("kvant_nhwc", 0) == 0 && n.inputs.size() >= 5) {
    std::vector<int> xs;  // (x, scale, zero point) triples after Y's parameters
    for (size_t i = 2; i + 2 < n.inputs.size(); i += 3) xs.push_back(static_cast<int>(i));
    return xs;
  }
  if (op == "QLinearGlobalAveragePool" && n.attrs.GetInt("channels_last", 0) == 0) return {0};
  if (op == "QLinearAveragePool" && n.attrs.GetInt("channels_last", 0) == 0 &&
      n.attrs.GetInts("kernel_shape").size() == 2) {
    return {0};
  }
  return {};
}

// An FP32 Conv kvant.ConvNhwc runs: constant 4-D weights, group 1 or
// depthwise (one input channel per group, one output channel per group).
bool IsNhwcFloatConv(const Graph& g, const Node& n) {
  if (n.op_type != "Conv" || !n.domain.empty() || n.inputs.size() < 2) return false;
  const Tensor* w = g.FindConstant(n.inputs[1]);
  if (w == nullptr || w->rank() != 4 || w->dtype() != DataType::kFloat32) return false;
  if (n.inputs.size() > 2 && !n.inputs[2].empty() && g.FindConstant(n.inputs[2]) == nullptr) return false;
  const int64_t group = n.attrs.GetInt("group", 1);
  return group == 1 || (w->shape()[1] == 1 && w->shape()[0] == group);
}

bool IsInt8ConvTranspose(const Node& n) {
  return n.op_type == "QLinearConvTranspose" && n.domain == "com.microsoft" && n.inputs.size() >= 8;
}

// Step 1. FP32 convolutions only when there are at least two: a lone one
// would pay two transposes and save nothing.
void ConvertConvolutions(Graph& g) {
  int float_convs = 0;
  for (const Node& n : g.nodes) float_convs += IsNhwcFloatConv(g, n);
  std::vector<Node> added;
  for (Node& n : g.nodes) {
    const bool float_conv = float_convs >= 2 && IsNhwcFloatConv(g, n);
    const bool transposed = IsInt8ConvTranspose(n);
    if (!float_conv && !transposed && (n.op_type != "QLinearConv" || !n.domain.empty() || n.inputs.size() < 8)) {
      continue;
    }
    const Tensor* w = g.FindConstant(n.inputs[float_conv ? 1 : 3]);
    if (w == nullptr || w->rank() != 4) continue;
    const std::string x_nhwc = ReserveName(g, n.inputs[0] + "_nhwc");
    const std::string y_nhwc = ReserveName(g, n.outputs[0] + "_nhwc");
    added.push_back(MakeTranspose(g, n.inputs[0], x_nhwc, kToNhwc, n.name + "_to_nhwc"));
    added.push_back(MakeTranspose(g, y_nhwc, n.outputs[0], kToNchw, n.name + "_to_nchw"));
    n.op_type = float_conv ? "ConvNhwc" : transposed ? "QLinearConvTransposeNhwc" : "QLinearConvNhwc";
    n.domain = "kvant";
    n.inputs[0] = x_nhwc;
    n.outputs[0] = y_nhwc;
  }
  for (Node& t : added) g.nodes.push_back(std::move(t));
}

bool op_is_binary(const Node& n) {
  static const char* kOps[] = {"Add", "Mul", "Sub", "Div", "QLinearAdd", "QLinearMul"};
  for (const char* op : kOps)
    if (n.op_type == op) return true;
  return false;
}

// Steps 2 and 3, one sweep; returns whether anything changed.
bool SinkAndCancel(Graph& g) {
  auto producers = g.Producers();
  auto producer = [&](const std::string& v) -> const Node* {
    auto it = producers.find(v);
    return it == producers.end() ? nullptr : &g.nodes[it->second];
  };
  bool changed = false;
  std::vector<Node> added;
  for (Node& n : g.nodes) {
    // 3. Transpose(NCHW -> NHWC) of Transpose(NHWC -> NCHW)(x) is x.
    if (IsTranspose(n, kToNhwc)) {
      const Node* p = producer(n.inputs[0]);
      if (p != nullptr && IsTranspose(*p, kToNchw)) {
        n.op_type = "Identity";
        n.attrs = AttributeMap();
        n.inputs[0] = p->inputs[0];
        changed = true;
      }
      continue;
    }
    // 2. Sink NHWC -> NCHW transposes feeding every data input of n.
    const std::vector<int> data = DataInputs(g, n);
    if (data.empty()) continue;
    std::vector<std::string> sources;
    for (int i : data) {
      const Node* p = i < static_cast<int>(n.inputs.size()) ? producer(n.inputs[i]) : nullptr;
      if (p == nullptr || !IsTranspose(*p, kToNchw)) break;
      sources.push_back(p->inputs[0]);
    }
    if (sources.size() != data.size()) continue;
    // Two data inputs: both 4-D transposes by the same permutation, so numpy
    // broadcasting between them survives the permutation. One data input of
    // a binary op: the other operand is a constant, transposed here if 4-D.
    const bool binary = op_is_binary(n);
    if (binary && data.size() == 1) {
      const int other = data[0] == 0 ? (n.domain.empty() ? 1 : 3) : 0;
      const Tensor* t = g.FindConstant(n.inputs[other]);
      if (t->rank() == 4) n.inputs[other] = g.AddConstant(n.inputs[other] + "_nhwc", ToNhwc(*t));
    }
    if (n.op_type == "Pad") {
      const Tensor* pads = g.FindConstant(n.inputs[1]);
      Tensor permuted = Tensor::Zeros(DataType::kInt64, {8});
      for (int d = 0; d < 4; ++d) {  // NCHW dimension d is NHWC dimension kToNchw[d]
        permuted.data<int64_t>()[kToNchw[d]] = pads->data<int64_t>()[d];
        permuted.data<int64_t>()[4 + kToNchw[d]] = pads->data<int64_t>()[4 + d];
      }
      n.inputs[1] = g.AddConstant(n.name + "_pads_nhwc", permuted);
    }
    if (n.op_type == "QLinearGlobalAveragePool" || n.op_type == "QLinearAveragePool") n.attrs.SetInt("channels_last", 1);
    if (n.op_type == "BatchNormalization" || n.op_type == "MaxPool" || n.op_type == "GlobalAveragePool") {
      n.attrs.SetInt("kvant_channels_last", 1);
    }
    if (n.op_type == "Resize") {
      for (size_t i = 1; i < n.inputs.size(); ++i) {
        const Tensor* t = n.inputs[i].empty() ? nullptr : g.FindConstant(n.inputs[i]);
        if (t != nullptr && t->num_elements() > 0) n.inputs[i] = g.AddConstant(n.inputs[i] + "_nhwc", PermuteAxesValues(*t));
      }
    }
    if (n.op_type == "QLinearTable" && n.attrs.Has("axis")) {  // NCHW axis d is NHWC axis kToNchw[d]
      int64_t axis = n.attrs.GetInt("axis", 1);
      if (axis < 0) axis += 4;
      n.attrs.SetInt("axis", kToNchw[axis]);
      n.attrs.SetInt("kvant_nhwc", 1);
    }
    if (n.op_type == "Concat" || n.op_type == "QLinearConcat") {  // NCHW axis d is NHWC axis kToNchw[d]
      int64_t axis = n.attrs.GetInt("axis", 1);
      if (axis < 0) axis += 4;
      n.attrs.SetInt("axis", kToNchw[axis]);
      n.attrs.SetInt("kvant_nhwc", 1);
    }
    for (size_t j = 0; j < data.size(); ++j) n.inputs[data[j]] = sources[j];
    const std::string y_nhwc = ReserveName(g, n.outputs[0] + "_nhwc");
    added.push_back(MakeTranspose(g, y_nhwc, n.outputs[0], kToNchw, n.name + "_to_nchw"));
    n.outputs[0] = y_nhwc;
    changed = true;
  }
  for (Node& t : added) g.nodes.push_back(std::move(t));
  return changed;
}

// Step 4: a constant spatial Pad with the input's zero point as its value,
// read only by an NHWC convolution, becomes the convolution's own padding
// (which the INT8 kernels fill with the zero point).
void FusePads(Graph& g) {
  auto producers = g.Producers();
  auto uses = g.UseCounts();
  std::vector<bool> removed(g.nodes.size(), false);
  for (Node& conv : g.nodes) {
    if (conv.op_type != "QLinearConvNhwc" || conv.domain != "kvant") continue;
    if (conv.attrs.GetString("auto_pad", "NOTSET") != "NOTSET") continue;
    auto it = producers.find(conv.inputs[0]);
    if (it == producers.end() || removed[it->second]) continue;
    // The Pad may also sit before the NCHW -> NHWC transpose at a chain's start.
    Node* transpose = nullptr;
    if (IsTranspose(g.nodes[it->second], kToNhwc) && uses[g.nodes[it->second].outputs[0]] == 1) {
      transpose = &g.nodes[it->second];
      it = producers.find(transpose->inputs[0]);
      if (it == producers.end() || removed[it->second]) continue;
    }
    const int h = transpose ? 2 : 1, w = transpose ? 3 : 2;  // H and W in the Pad's layout
    const Node& pad = g.nodes[it->second];
    if (pad.op_type != "Pad" || !pad.domain.empty() || uses[pad.outputs[0]] != 1 ||
        g.IsGraphOutput(pad.outputs[0]) || pad.attrs.GetString("mode", "constant") != "constant" ||
        pad.inputs.size() < 2 || (pad.inputs.size() > 3 && !pad.inputs[3].empty())) {
      continue;
    }
    const Tensor* pads = g.FindConstant(pad.inputs[1]);
    const Tensor* value = pad.inputs.size() > 2 && !pad.inputs[2].empty() ? g.FindConstant(pad.inputs[2]) : nullptr;
    const Tensor* zero_point = g.FindConstant(conv.inputs[2]);
    if (pads == nullptr || pads->num_elements() != 8 || zero_point == nullptr || zero_point->num_elements() != 1) {
      continue;
    }
    if ((pad.inputs.size() > 2 && !pad.inputs[2].empty()) &&
        (value == nullptr || value->dtype() != zero_point->dtype() || value->num_elements() != 1)) {
      continue;
    }
    const uint8_t fill = value ? static_cast<const uint8_t*>(value->raw_data())[0] : 0;
    if (fill != static_cast<const uint8_t*>(zero_point->raw_data())[0]) continue;
    const int64_t* p = pads->data<int64_t>();
    // Only H and W, non-negative.
    bool spatial = true;
    for (int d = 0; d < 4; ++d) {
      const bool hw = d == h || d == w;
      spatial &= hw ? (p[d] >= 0 && p[4 + d] >= 0) : (p[d] == 0 && p[4 + d] == 0);
    }
    if (!spatial) continue;
    std::vector<int64_t> cp = conv.attrs.GetInts("pads", {0, 0, 0, 0});
    if (cp.size() != 4) continue;
    cp[0] += p[h], cp[1] += p[w], cp[2] += p[4 + h], cp[3] += p[4 + w];
    conv.attrs.SetInts("pads", cp);
    (transpose ? transpose->inputs[0] : conv.inputs[0]) = pad.inputs[0];
    removed[it->second] = true;
  }
  g.RemoveNodes(removed);
}

// Step 5.
void ReadNchwInputs(Graph& g) {
  auto producers = g.Producers();
  auto uses = g.UseCounts();
  for (Node& conv : g.nodes) {
    if (conv.op_type != "ConvNhwc" || conv.domain != "kvant" || conv.attrs.GetInt("group", 1) != 1) continue;
    const Tensor* w = g.FindConstant(conv.inputs[1]);
    if (w == nullptr || w->rank() != 4 || w->shape()[1] > 4 || (w->shape()[2] == 1 && w->shape()[3] == 1)) continue;
    auto it = producers.find(conv.inputs[0]);
    if (it == producers.end()) continue;
    const Node& t = g.nodes[it->second];
    if (!IsTranspose(t, kToNhwc) || uses[t.outputs[0]] != 1 || g.IsGraphOutput(t.outputs[0])) continue;
    conv.inputs[0] = t.inputs[0];
    conv.attrs.SetInt("kvant_nchw_input", 1);
  }
}

}  // namespace

absl::Status LayoutConvolutionsNhwc(Graph& graph) {
  bool any = false;
  int float_convs = 0;
  for (const Node& n : graph.nodes) {
    any |= (n.op_type == "QLinearConv" && n.domain.empty()) || IsInt8ConvTranspose(n);
    float_convs += IsNhwcFloatConv(graph, n);
  }
  any |= float_convs >= 2;
  if (!any) return absl::OkStatus();
  ConvertConvolutions(graph);
  if (auto s = graph.TopologicalSort(); !s.ok()) return s;
  if (auto s = InferShapes(graph); !s.ok()) return s;
  for (int round = 0; round < 64; ++round) {
    if (!SinkAndCancel(graph)) break;
    if (auto s = graph.TopologicalSort(); !s.ok()) return s;
    if (auto s = InferShapes(graph); !s.ok()) return s;
  }
  if (auto s = RemoveIdentities(graph); !s.ok()) return s;
  if (auto s = RemoveDeadNodes(graph); !s.ok()) return s;
  FusePads(graph);
  ReadNchwInputs(graph);
  return RemoveDeadNodes(graph);
}

}  // namespace kvant
