// Inverted-bottleneck chains: a depthwise NHWC convolution with the 1x1
// convolution that feeds it (expand) and/or the 1x1 convolution it feeds
// (project) becomes one node whose kernel runs the three a band of rows at
// a time, so the wide intermediate tensors (MobileNet's and EfficientNet's
// expanded activations, six times the block's channels) stay in L2 instead
// of being written to memory and read back: on EfficientNet-Lite0 those
// tensors are most of the early blocks' time.
//  - FP32: kvant.ConvNhwc chains become kvant.ConvChainNhwc
//    (ops/cpu/conv_chain_f32_nhwc.cc): inputs x, expand weights and bias,
//    depthwise weights and bias, project weights and bias, residual.
//  - INT8: kvant.QLinearConvNhwc chains become kvant.QLinearConvChainNhwc
//    (ops/cpu/qconv_chain_s8.cc): input x, then for each stage its eight
//    QLinearConv operands after x (x scale and zero point, w, w scale and
//    zero point, y scale and zero point, bias), the operands and their
//    scales constant; then, where a com.microsoft.QLinearAdd of the same
//    type and shape adds another value to the chain's output (a residual
//    block), that value and the Add's six scales and zero points in its
//    order (attribute add:chain_operand: 0 when the chain's output is the
//    Add's A, 1 when B), so the sum is taken on rows still in cache.
// A stage that is absent has "" inputs; each stage's attributes are kept
// under the prefix "expand:", "depthwise:" or "project:" (a BF16 1x1 stage
// runs on the BF16 GEMM, one with FP16 weights widens them). Left alone:
// NCHW-input convolutions, an expand that takes a residual,
// intermediates read elsewhere or returned as graph outputs.
#include "absl/strings/str_cat.h"
#include "graph/passes/passes.h"

namespace kvant {
namespace {

// The two forms a chain is made of.
struct Form {
  const char* op;        // the convolutions'
  const char* chain_op;  // the fused node's
  int weights;           // index of the weights among a convolution's inputs
  int max_inputs;        // a depthwise or expand convolution's, at most (no residual)
};
constexpr Form kF32{"ConvNhwc", "ConvChainNhwc", 1, 3};
constexpr Form kQ{"QLinearConvNhwc", "QLinearConvChainNhwc", 3, 9};

// A convolution of `form` with constant 4-D weights: FP32 without a
// precision change or an NCHW input; INT8 with every operand but x constant.
const Tensor* PlainWeights(const Graph& g, const Node& n, const Form& form) {
  if (n.op_type != form.op || n.domain != "kvant" || n.inputs.size() <= static_cast<size_t>(form.weights)) {
    return nullptr;
  }
  const ValueType* t = g.FindType(n.outputs[0]);
  const Tensor* w = g.FindConstant(n.inputs[form.weights]);
  if (t == nullptr || w == nullptr || w->rank() != 4) return nullptr;
  if (&form == &kF32) {
    // BF16 products and FP16 weights run in the chain too (its 1x1 stages
    // read kvant_precision as kvant.ConvNhwc does).
    const std::string precision = n.attrs.GetString("kvant_precision", "");
    if ((!precision.empty() && precision != "bf16" && precision != "fp16") ||
        n.attrs.GetInt("kvant_nchw_input", 0) != 0) {
      return nullptr;
    }
    return t->dtype == DataType::kFloat32 ? w : nullptr;
  }
  if (t->dtype != DataType::kUInt8 && t->dtype != DataType::kInt8) return nullptr;
  for (size_t i = 1; i < n.inputs.size(); ++i) {
    if (!n.inputs[i].empty() && !g.IsConstant(n.inputs[i])) return nullptr;
  }
  // The intermediate's type comes from its zero point, which must be there.
  return n.inputs.size() >= 8 && !n.inputs[7].empty() ? w : nullptr;
}

bool AllEqual(const std::vector<int64_t>& v, int64_t value) {
  for (int64_t x : v) {
    if (x != value) return false;
  }
  return true;
}

bool IsPointwise(const Graph& g, const Node& n, const Form& form) {
  const Tensor* w = PlainWeights(g, n, form);
  return w != nullptr && w->shape()[2] == 1 && w->shape()[3] == 1 && n.attrs.GetInt("group", 1) == 1 &&
         AllEqual(n.attrs.GetInts("strides"), 1) && AllEqual(n.attrs.GetInts("pads"), 0) &&
         n.attrs.GetString("auto_pad", "NOTSET") == "NOTSET";
}

bool IsDepthwise(const Graph& g, const Node& n, const Form& form) {
  const Tensor* w = PlainWeights(g, n, form);
  return w != nullptr && w->shape()[1] == 1 && n.attrs.GetInt("group", 1) == w->shape()[0] &&
         w->shape()[0] > 1 && n.inputs.size() <= static_cast<size_t>(form.max_inputs);
}

// The node's input i, or "" when it has none.
std::string InputOr(const Node& n, size_t i) { return i < n.inputs.size() ? n.inputs[i] : ""; }

void CopyAttrs(const Node& from, const std::string& prefix, Node& to) {
  for (const auto& [name, a] : from.attrs.all()) to.attrs.Set(absl::StrCat(prefix, name), a);
}

// Whether the chain's output has its input's shape: a stride-1 depthwise
// stage whose padding keeps the size (1x1 stages keep it), and the last
// stage's channels the first's.
bool KeepsShape(const Graph& g, const Node* expand, const Node& dw, const Node* project) {
  const std::vector<int64_t> pads = dw.attrs.GetInts("pads", {0, 0, 0, 0});
  const std::vector<int64_t> dil = dw.attrs.GetInts("dilations", {1, 1});
  const Tensor& w = *g.FindConstant(dw.inputs[kQ.weights]);
  if (!AllEqual(dw.attrs.GetInts("strides"), 1) || dw.attrs.GetString("auto_pad", "NOTSET") != "NOTSET" ||
      pads.size() != 4 || dil.size() != 2) {
    return false;
  }
  for (int d = 0; d < 2; ++d) {
    if (pads[d] + pads[d + 2] != (w.shape()[2 + d] - 1) * dil[d]) return false;
  }
  const int64_t in_c = expand ? g.FindConstant(expand->inputs[kQ.weights])->shape()[1] : w.shape()[0];
  const int64_t out_c = project ? g.FindConstant(project->inputs[kQ.weights])->shape()[0] : w.shape()[0];
  return in_c == out_c;
}

// Which operand of `add` (0: A, 1: B) is `value`, when `add` is a
// com.microsoft.QLinearAdd of `value` and another value of its type and
// shape (the same sizes or symbols, or the chain's own input where the
// chain keeps the shape), with constant scalar scales and zero points, to
// that type; else -1.
int ResidualAddOperand(const Graph& g, const Node& add, const std::string& value, const std::string& chain_input,
                       bool keeps_shape) {
  if (add.op_type != "QLinearAdd" || add.domain != "com.microsoft" || add.inputs.size() != 8 ||
      add.outputs.size() != 1 || (add.inputs[0] == value) == (add.inputs[3] == value)) {
    return -1;
  }
  for (int i : {1, 2, 4, 5, 6, 7}) {
    const Tensor* t = g.FindConstant(add.inputs[i]);
    if (t == nullptr || t->num_elements() != 1) return -1;
  }
  const int operand = add.inputs[0] == value ? 0 : 1;
  const ValueType* y = g.FindType(value);
  const ValueType* other = g.FindType(add.inputs[operand == 0 ? 3 : 0]);
  const ValueType* sum = g.FindType(add.outputs[0]);
  if (y == nullptr || other == nullptr || sum == nullptr || other->dtype != y->dtype || sum->dtype != y->dtype) return -1;
  const bool same = y->shape.rank_known && other->shape.rank_known && other->shape.dims == y->shape.dims;
  return same || (keeps_shape && add.inputs[operand == 0 ? 3 : 0] == chain_input) ? operand : -1;
}

}  // namespace

absl::Status FuseConvChains(Graph& graph) {
  const auto producers = graph.Producers();
  const auto uses = graph.UseCounts();
  absl::flat_hash_map<std::string, int> reader;  // a value's last reader
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const std::string& in : graph.nodes[i].inputs) reader[in] = static_cast<int>(i);
  }
  // A value only `node` reads, not a graph output.
  auto private_value = [&](const std::string& v) {
    auto u = uses.find(v);
    return u != uses.end() && u->second == 1 && !graph.IsGraphOutput(v);
  };
  std::vector<bool> removed(graph.nodes.size(), false);
  bool any = false;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& dw = graph.nodes[i];
    if (removed[i]) continue;
    const Form& form = IsDepthwise(graph, dw, kF32) ? kF32 : kQ;
    if (!IsDepthwise(graph, dw, form)) continue;
    int e = -1, p = -1;
    if (auto it = producers.find(dw.inputs[0]); it != producers.end() && private_value(dw.inputs[0])) {
      const Node& n = graph.nodes[it->second];
      if (!removed[it->second] && IsPointwise(graph, n, form) && n.inputs.size() <= static_cast<size_t>(form.max_inputs)) {
        e = it->second;
      }
    }
    if (auto it = reader.find(dw.outputs[0]); it != reader.end() && private_value(dw.outputs[0])) {
      const Node& n = graph.nodes[it->second];
      // (An FP32 project's residual, input 3, is another value.)
      if (IsPointwise(graph, n, form) && n.inputs[0] == dw.outputs[0] &&
          (&form == &kQ || InputOr(n, 3) != dw.outputs[0])) {
        p = it->second;
      }
    }
    if (e < 0 && p < 0) continue;
    Node chain;
    chain.name = dw.name;
    chain.op_type = form.chain_op;
    chain.domain = "kvant";
    const Node* expand = e >= 0 ? &graph.nodes[e] : nullptr;
    const Node* project = p >= 0 ? &graph.nodes[p] : nullptr;
    chain.inputs = {expand ? expand->inputs[0] : dw.inputs[0]};
    // Each stage's operands after x ("" for an absent stage), then the
    // FP32 project's residual.
    const int operands = &form == &kF32 ? 2 : 8;
    for (const Node* stage : {expand, &dw, project}) {
      for (int j = 1; j <= operands; ++j) chain.inputs.push_back(stage ? InputOr(*stage, j) : "");
    }
    if (&form == &kF32) chain.inputs.push_back(project ? InputOr(*project, 3) : "");
    chain.outputs = {project ? project->outputs[0] : dw.outputs[0]};
    int a = -1;  // an INT8 residual QLinearAdd the chain takes in
    if (auto it = reader.find(chain.outputs[0]); &form == &kQ && it != reader.end() && private_value(chain.outputs[0])) {
      const Node& add = graph.nodes[it->second];
      const bool keeps = KeepsShape(graph, expand, dw, project);
      if (const int operand = ResidualAddOperand(graph, add, chain.outputs[0], chain.inputs[0], keeps); operand >= 0) {
        a = it->second;
        chain.inputs.push_back(add.inputs[operand == 0 ? 3 : 0]);
        for (int j : {1, 2, 4, 5, 6, 7}) chain.inputs.push_back(add.inputs[j]);
        chain.attrs.SetInt("add:chain_operand", operand);
        graph.values.erase(chain.outputs[0]);
        chain.outputs = add.outputs;
      }
    }
    if (expand) CopyAttrs(*expand, "expand:", chain);
    CopyAttrs(dw, "depthwise:", chain);
    if (project) CopyAttrs(*project, "project:", chain);
    // Intermediates disappear; the chain takes the place of its last node
    // (every input is produced before it).
    if (expand) graph.values.erase(expand->outputs[0]);
    if (project) graph.values.erase(dw.outputs[0]);
    const int last = a >= 0 ? a : p >= 0 ? p : static_cast<int>(i);
    if (e >= 0) removed[e] = true;
    if (p >= 0 && last != p) removed[p] = true;
    if (last != static_cast<int>(i)) removed[i] = true;
    graph.nodes[last] = std::move(chain);
    any = true;
  }
  if (any) graph.RemoveNodes(removed);
  return absl::OkStatus();
}

}  // namespace kvant
