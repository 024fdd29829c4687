// What each operator means to the graph: input counts and a shape rule that
// computes output dtypes and shapes (symbolic where inputs are), validating
// attributes on the way. Shape inference (graph/passes) drives these rules.
#ifndef KVANT_OPS_OP_SCHEMA_H_
#define KVANT_OPS_OP_SCHEMA_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "graph/graph.h"

namespace kvant {

class InferContext {
 public:
  InferContext(const Node& node, int64_t opset, std::vector<const ValueType*> inputs,
               std::vector<const Tensor*> constants)
      : node_(node), opset_(opset), inputs_(std::move(inputs)), constants_(std::move(constants)),
        outputs_(node.outputs.size()) {}

  const Node& node() const { return node_; }
  const AttributeMap& attrs() const { return node_.attrs; }
  int64_t opset() const { return opset_; }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  bool has_input(int i) const { return i < num_inputs() && inputs_[i] != nullptr; }
  const ValueType& input(int i) const { return *inputs_[i]; }
  const Shape& shape(int i) const { return inputs_[i]->shape; }
  DataType dtype(int i) const { return inputs_[i]->dtype; }
  // Constant value of input i, or null when it is computed at run time.
  const Tensor* constant(int i) const { return i < num_inputs() ? constants_[i] : nullptr; }
  // Output i's type; a rule may set outputs the node does not name (they are
  // dropped), so a node with fewer outputs than its operator has is safe.
  ValueType& output(int i) {
    if (static_cast<size_t>(i) >= outputs_.size()) outputs_.resize(i + 1);
    return outputs_[i];
  }
  std::vector<ValueType>& outputs() { return outputs_; }
  int num_outputs() const { return static_cast<int>(node_.outputs.size()); }

  // InvalidArgument "failed to infer shapes of <node>: <message>".
  template <typename... Args>
  absl::Status Error(const absl::FormatSpec<Args...>& format, const Args&... args) const {
    return absl::InvalidArgumentError(absl::StrCat("failed to infer shapes of node ", node_.Label(),
                                                   ": ", absl::StrFormat(format, args...)));
  }
  // Requires rank known and equal to `rank` for input i.
  absl::Status ExpectRank(int i, int64_t rank) const;

 private:
  const Node& node_;
  int64_t opset_;
  std::vector<const ValueType*> inputs_;
  std::vector<const Tensor*> constants_;
  std::vector<ValueType> outputs_;
};

using ShapeRule = absl::Status (*)(InferContext&);

struct OpSchema {
  const char* domain;
  const char* op;
  int min_inputs;
  int max_inputs;
  // Element types of the inputs, one letter each, the last repeated for
  // variadic inputs: T = the type of the first T input (ONNX's shared type
  // constraint), i = s64, j = s32 or s64, I = s32, b = bool, . = any (the
  // shape rule or kernel checks it), ? = any and optional (an empty name
  // within min_inputs: ONNX Runtime's omitted zero points). Kernels rely on
  // it: a MatMul of f32 by s8 is refused here, not read out of bounds.
  const char* types;
  ShapeRule infer;
};

// Null when the operator is unknown.
const OpSchema* FindSchema(const std::string& domain, const std::string& op);

// Normalizes a possibly negative axis against `rank`; error names the node.
absl::StatusOr<int64_t> NormalizeAxis(const InferContext& ctx, int64_t axis, int64_t rank);

// Integer values of a constant 1-D (or scalar) int32/int64 tensor.
std::vector<int64_t> ReadInts(const Tensor& t);

// Rules by family (ops/elementwise_ops.cc, ops/nn_ops.cc, ops/tensor_ops.cc,
// ops/reduce_ops.cc, ops/generator_ops.cc).
absl::Status InferUnary(InferContext& ctx);
// Conv and MatMul rules over chosen input positions and output type, shared
// with their quantized forms (ops/quantize_ops.cc).
absl::Status InferConvOf(InferContext& ctx, int x_index, int w_index, int bias_index, DataType out_dtype);
absl::Status InferMatMulOf(InferContext& ctx, int a_index, int b_index, DataType out_dtype);
absl::Status InferQuantizeLinear(InferContext& ctx);
absl::Status InferDequantizeLinear(InferContext& ctx);
absl::Status InferMatMulInteger(InferContext& ctx);
absl::Status InferDynamicQuantizeLinear(InferContext& ctx);
absl::Status InferMatMulIntegerToFloat(InferContext& ctx);
absl::Status InferDynamicQuantizeMatMul(InferContext& ctx);
absl::Status InferQLinearBinary(InferContext& ctx);
absl::Status InferQLinearGlobalAveragePool(InferContext& ctx);
absl::Status InferQLinearAveragePool(InferContext& ctx);
absl::Status InferQGemm(InferContext& ctx);
absl::Status InferQLinearSoftmax(InferContext& ctx);
absl::Status InferQLinearUnary(InferContext& ctx);
absl::Status InferQLinearTable(InferContext& ctx);
absl::Status InferQuantizeLinearNhwc(InferContext& ctx);
absl::Status InferQLinearConcat(InferContext& ctx);
absl::Status InferQLinearConvNhwc(InferContext& ctx);
absl::Status InferQLinearMatMul(InferContext& ctx);
absl::Status InferConvInteger(InferContext& ctx);
absl::Status InferQLinearConv(InferContext& ctx);
absl::Status InferQLinearConvTranspose(InferContext& ctx);
absl::Status InferQLinearConvTransposeNhwc(InferContext& ctx);
absl::Status InferBroadcast(InferContext& ctx);
absl::Status InferClip(InferContext& ctx);
absl::Status InferCast(InferContext& ctx);
absl::Status InferSoftmax(InferContext& ctx);
absl::Status InferDropout(InferContext& ctx);
absl::Status InferConv(InferContext& ctx);
// kvant.ConvNhwc: Conv's rule with X (unless kvant_nchw_input) and Y in NHWC.
absl::Status InferConvNhwc(InferContext& ctx);
// kvant.ConvChainNhwc and kvant.QLinearConvChainNhwc: ConvNhwc's and
// QLinearConvNhwc's rules through their expand, depthwise and project stages
// (graph/passes/fuse_conv_chain.cc).
absl::Status InferConvChainNhwc(InferContext& ctx);
absl::Status InferQLinearConvChainNhwc(InferContext& ctx);
// `nchw_rule` applied to a 4-D NHWC input 0 viewed as NCHW (`input_nchw`:
// input 0 is NCHW already), its output 0 permuted back to NHWC.
absl::Status InferNhwcAsNchw(InferContext& ctx, absl::Status (*nchw_rule)(InferContext&), bool input_nchw = false);
absl::Status InferPool(InferContext& ctx);
absl::Status InferGlobalPool(InferContext& ctx);
absl::Status InferBatchNorm(InferContext& ctx);
absl::Status InferGemm(InferContext& ctx);
absl::Status InferMatMul(InferContext& ctx);
absl::Status InferReshape(InferContext& ctx);
absl::Status InferFlatten(InferContext& ctx);
absl::Status InferTranspose(InferContext& ctx);
absl::Status InferConcat(InferContext& ctx);
absl::Status InferSlice(InferContext& ctx);
absl::Status InferSqueeze(InferContext& ctx);
absl::Status InferUnsqueeze(InferContext& ctx);
absl::Status InferGather(InferContext& ctx);
absl::Status InferShape(InferContext& ctx);
absl::Status InferReduce(InferContext& ctx);
absl::Status InferArgReduce(InferContext& ctx);
absl::Status InferCumSum(InferContext& ctx);
absl::Status InferTopK(InferContext& ctx);
absl::Status InferCompare(InferContext& ctx);
absl::Status InferWhere(InferContext& ctx);
absl::Status InferConstantOfShape(InferContext& ctx);
absl::Status InferRange(InferContext& ctx);
absl::Status InferSize(InferContext& ctx);
absl::Status InferExpand(InferContext& ctx);
absl::Status InferTile(InferContext& ctx);
absl::Status InferPad(InferContext& ctx);
absl::Status InferSplit(InferContext& ctx);
absl::Status InferLayerNorm(InferContext& ctx);
absl::Status InferInstanceNorm(InferContext& ctx);
absl::Status InferResize(InferContext& ctx);
absl::Status InferConvTranspose(InferContext& ctx);
absl::Status InferRecurrent(InferContext& ctx);
absl::Status InferIf(InferContext& ctx);

}  // namespace kvant

#endif  // KVANT_OPS_OP_SCHEMA_H_
