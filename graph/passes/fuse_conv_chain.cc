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
//    scales constant.
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
    if (expand) CopyAttrs(*expand, "expand:", chain);
    CopyAttrs(dw, "depthwise:", chain);
    if (project) CopyAttrs(*project, "project:", chain);
    // Intermediates disappear; the chain takes the place of its last node
    // (every input is produced before it).
    if (expand) graph.values.erase(expand->outputs[0]);
    if (project) graph.values.erase(dw.outputs[0]);
    const int last = p >= 0 ? p : static_cast<int>(i);
    if (e >= 0) removed[e] = true;
    if (last != static_cast<int>(i)) removed[i] = true;
    graph.nodes[last] = std::move(chain);
    any = true;
  }
  if (any) graph.RemoveNodes(removed);
  return absl::OkStatus();
}

}  // namespace kvant
