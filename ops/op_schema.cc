// The operator table: one row per supported operator with its input counts and
// shape rule. Keep it sorted by family; kernels live in ops/cpu/kernels.inc.
#include "ops/op_schema.h"

#include <cstring>

namespace kvant {
namespace {

constexpr OpSchema kSchemas[] = {
    // Elementwise, unary.
    {"", "Relu", 1, 1, InferUnary},
    {"", "LeakyRelu", 1, 1, InferUnary},
    {"", "Sigmoid", 1, 1, InferUnary},
    {"", "HardSigmoid", 1, 1, InferUnary},
    {"", "HardSwish", 1, 1, InferUnary},
    {"", "Tanh", 1, 1, InferUnary},
    {"", "Erf", 1, 1, InferUnary},
    {"", "Sqrt", 1, 1, InferUnary},
    {"", "Exp", 1, 1, InferUnary},
    {"", "Neg", 1, 1, InferUnary},
    {"", "Reciprocal", 1, 1, InferUnary},
    {"", "Abs", 1, 1, InferUnary},
    {"", "Identity", 1, 1, InferUnary},
    {"", "Clip", 1, 3, InferClip},
    {"", "Cast", 1, 1, InferCast},
    {"", "Dropout", 1, 3, InferDropout},
    {"", "Softmax", 1, 1, InferSoftmax},
    // Elementwise, binary with numpy broadcasting.
    {"", "Add", 2, 2, InferBroadcast},
    {"", "Sub", 2, 2, InferBroadcast},
    {"", "Mul", 2, 2, InferBroadcast},
    {"", "Div", 2, 2, InferBroadcast},
    {"", "Pow", 2, 2, InferBroadcast},
    // Neural-network operators.
    {"", "Conv", 2, 3, InferConv},
    {"", "MaxPool", 1, 1, InferPool},
    {"", "AveragePool", 1, 1, InferPool},
    {"", "GlobalAveragePool", 1, 1, InferGlobalPool},
    {"", "BatchNormalization", 5, 5, InferBatchNorm},
    {"", "Gemm", 2, 3, InferGemm},
    {"", "MatMul", 2, 2, InferMatMul},
    // Shape and data movement.
    {"", "Reshape", 2, 2, InferReshape},
    {"", "Flatten", 1, 1, InferFlatten},
    {"", "Transpose", 1, 1, InferTranspose},
    {"", "Concat", 1, 1 << 20, InferConcat},
    {"", "Slice", 3, 5, InferSlice},
    {"", "Squeeze", 1, 2, InferSqueeze},
    {"", "Unsqueeze", 1, 2, InferUnsqueeze},
    {"", "Gather", 2, 2, InferGather},
    {"", "Shape", 1, 1, InferShape},
    {"", "Size", 1, 1, InferSize},
    {"", "ConstantOfShape", 1, 1, InferConstantOfShape},
    {"", "Range", 3, 3, InferRange},
    {"", "Expand", 2, 2, InferExpand},
    {"", "Tile", 2, 2, InferTile},
    {"", "Pad", 1, 4, InferPad},
    {"", "Split", 1, 2, InferSplit},
    // Reductions and scans.
    {"", "ReduceSum", 1, 2, InferReduce},
    {"", "ReduceMean", 1, 2, InferReduce},
    {"", "ReduceMax", 1, 2, InferReduce},
    {"", "ReduceMin", 1, 2, InferReduce},
    {"", "ReduceProd", 1, 2, InferReduce},
    {"", "ReduceSumSquare", 1, 2, InferReduce},
    {"", "ReduceL1", 1, 2, InferReduce},
    {"", "ReduceL2", 1, 2, InferReduce},
    {"", "ReduceLogSum", 1, 2, InferReduce},
    {"", "ReduceLogSumExp", 1, 2, InferReduce},
    {"", "ArgMax", 1, 1, InferArgReduce},
    {"", "ArgMin", 1, 1, InferArgReduce},
    {"", "CumSum", 2, 2, InferCumSum},
    {"", "TopK", 1, 2, InferTopK},
    // Comparisons, logic, selection.
    {"", "Equal", 2, 2, InferCompare},
    {"", "Less", 2, 2, InferCompare},
    {"", "Greater", 2, 2, InferCompare},
    {"", "LessOrEqual", 2, 2, InferCompare},
    {"", "GreaterOrEqual", 2, 2, InferCompare},
    {"", "And", 2, 2, InferCompare},
    {"", "Or", 2, 2, InferCompare},
    {"", "Xor", 2, 2, InferCompare},
    {"", "Not", 1, 1, InferUnary},
    {"", "Where", 3, 3, InferWhere},
    // Normalization.
    {"", "LayerNormalization", 2, 3, InferLayerNorm},
    {"", "InstanceNormalization", 3, 3, InferInstanceNorm},
    // Resampling and transposed convolution.
    {"", "Resize", 1, 4, InferResize},
    {"", "ConvTranspose", 2, 3, InferConvTranspose},
    // Control flow: If is inlined once its condition folds (graph/passes/fold_constants.cc).
    {"", "If", 1, 1, InferIf},
    // Recurrent.
    {"", "RNN", 3, 6, InferRecurrent},
    {"", "GRU", 3, 6, InferRecurrent},
    {"", "LSTM", 3, 8, InferRecurrent},
};

}  // namespace

const OpSchema* FindSchema(const std::string& domain, const std::string& op) {
  for (const OpSchema& s : kSchemas) {
    if (domain == s.domain && op == s.op) return &s;
  }
  return nullptr;
}

absl::Status InferContext::ExpectRank(int i, int64_t rank) const {
  const Shape& s = shape(i);
  if (s.rank_known && s.rank() != rank) {
    return Error("input %d ('%s') must have rank %d, got %d", i, node_.inputs[i], rank, s.rank());
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> NormalizeAxis(const InferContext& ctx, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) {
    return ctx.Error("axis must be in [%d, %d], got %d", -rank, rank - 1, axis);
  }
  return axis < 0 ? axis + rank : axis;
}

std::vector<int64_t> ReadInts(const Tensor& t) {
  std::vector<int64_t> v(t.num_elements());
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    v[i] = t.dtype() == DataType::kInt32 ? t.data<int32_t>()[i] : t.data<int64_t>()[i];
  }
  return v;
}

}  // namespace kvant
