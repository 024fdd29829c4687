// The operator table: one row per supported operator with its input counts and
// shape rule. Keep it sorted by family; kernels live in ops/cpu/kernels.inc.
#include "ops/op_schema.h"

#include <cstring>

namespace kvant {
namespace {

constexpr OpSchema kSchemas[] = {
    // Elementwise, unary.
    {"", "Relu", 1, 1, "T", InferUnary},
    {"", "LeakyRelu", 1, 1, "T", InferUnary},
    {"", "Sigmoid", 1, 1, "T", InferUnary},
    {"", "HardSigmoid", 1, 1, "T", InferUnary},
    {"", "HardSwish", 1, 1, "T", InferUnary},
    {"", "Tanh", 1, 1, "T", InferUnary},
    {"", "Erf", 1, 1, "T", InferUnary},
    {"", "Gelu", 1, 1, "T", InferUnary},
    {"", "Sqrt", 1, 1, "T", InferUnary},
    {"", "Exp", 1, 1, "T", InferUnary},
    {"", "Neg", 1, 1, "T", InferUnary},
    {"", "Reciprocal", 1, 1, "T", InferUnary},
    {"", "Abs", 1, 1, "T", InferUnary},
    {"", "Identity", 1, 1, "T", InferUnary},
    {"", "Clip", 1, 3, "TTT", InferClip},
    {"", "Cast", 1, 1, ".", InferCast},
    {"", "Dropout", 1, 3, "T..", InferDropout},
    {"", "Softmax", 1, 1, "T", InferSoftmax},
    // Elementwise, binary with numpy broadcasting.
    {"", "Add", 2, 2, "TT", InferBroadcast},
    {"", "Sub", 2, 2, "TT", InferBroadcast},
    {"", "Mul", 2, 2, "TT", InferBroadcast},
    {"", "Div", 2, 2, "TT", InferBroadcast},
    {"", "Pow", 2, 2, "T.", InferBroadcast},
    // Neural-network operators.
    {"", "Conv", 2, 3, "TTT", InferConv},
    {"", "MaxPool", 1, 1, "T", InferPool},
    {"", "AveragePool", 1, 1, "T", InferPool},
    {"", "GlobalAveragePool", 1, 1, "T", InferGlobalPool},
    {"", "BatchNormalization", 5, 5, "TTTTT", InferBatchNorm},
    {"", "Gemm", 2, 3, "TTT", InferGemm},
    {"", "MatMul", 2, 2, "TT", InferMatMul},
    // Shape and data movement.
    {"", "Reshape", 2, 2, "Ti", InferReshape},
    {"", "Flatten", 1, 1, "T", InferFlatten},
    {"", "Transpose", 1, 1, "T", InferTranspose},
    {"", "Concat", 1, 1 << 20, "T", InferConcat},
    {"", "Slice", 3, 5, "Tjjjj", InferSlice},
    {"", "Squeeze", 1, 2, "Ti", InferSqueeze},
    {"", "Unsqueeze", 1, 2, "Ti", InferUnsqueeze},
    {"", "Gather", 2, 2, "Tj", InferGather},
    {"", "Shape", 1, 1, ".", InferShape},
    {"", "Size", 1, 1, ".", InferSize},
    {"", "ConstantOfShape", 1, 1, "i", InferConstantOfShape},
    {"", "Range", 3, 3, "TTT", InferRange},
    {"", "Expand", 2, 2, "Ti", InferExpand},
    {"", "Tile", 2, 2, "Ti", InferTile},
    {"", "Pad", 1, 4, "TiTj", InferPad},
    {"", "Split", 1, 2, "Ti", InferSplit},
    // Reductions and scans.
    {"", "ReduceSum", 1, 2, "Ti", InferReduce},
    {"", "ReduceMean", 1, 2, "Ti", InferReduce},
    {"", "ReduceMax", 1, 2, "Ti", InferReduce},
    {"", "ReduceMin", 1, 2, "Ti", InferReduce},
    {"", "ReduceProd", 1, 2, "Ti", InferReduce},
    {"", "ReduceSumSquare", 1, 2, "Ti", InferReduce},
    {"", "ReduceL1", 1, 2, "Ti", InferReduce},
    {"", "ReduceL2", 1, 2, "Ti", InferReduce},
    {"", "ReduceLogSum", 1, 2, "Ti", InferReduce},
    {"", "ReduceLogSumExp", 1, 2, "Ti", InferReduce},
    {"", "ArgMax", 1, 1, "T", InferArgReduce},
    {"", "ArgMin", 1, 1, "T", InferArgReduce},
    {"", "CumSum", 2, 2, "Tj", InferCumSum},
    {"", "TopK", 1, 2, "Ti", InferTopK},
    // Comparisons, logic, selection.
    {"", "Equal", 2, 2, "TT", InferCompare},
    {"", "Less", 2, 2, "TT", InferCompare},
    {"", "Greater", 2, 2, "TT", InferCompare},
    {"", "LessOrEqual", 2, 2, "TT", InferCompare},
    {"", "GreaterOrEqual", 2, 2, "TT", InferCompare},
    {"", "And", 2, 2, "TT", InferCompare},
    {"", "Or", 2, 2, "TT", InferCompare},
    {"", "Xor", 2, 2, "TT", InferCompare},
    {"", "Not", 1, 1, "T", InferUnary},
    {"", "Where", 3, 3, "bTT", InferWhere},
    // Normalization.
    {"", "LayerNormalization", 2, 3, "TTT", InferLayerNorm},
    {"", "InstanceNormalization", 3, 3, "TTT", InferInstanceNorm},
    // Resampling and transposed convolution.
    {"", "Resize", 1, 4, "T..i", InferResize},
    {"", "ConvTranspose", 2, 3, "TTT", InferConvTranspose},
    // Control flow: If is inlined once its condition folds (graph/passes/fold_constants.cc).
    {"", "If", 1, 1, "b", InferIf},
    // Quantization (ops/quantize_ops.cc).
    {"", "QuantizeLinear", 2, 3, "...", InferQuantizeLinear},
    {"", "DequantizeLinear", 2, 3, "...", InferDequantizeLinear},
    {"", "MatMulInteger", 2, 4, "....", InferMatMulInteger},
    {"", "QLinearMatMul", 8, 8, "........", InferQLinearMatMul},
    {"", "ConvInteger", 2, 4, "....", InferConvInteger},
    {"", "QLinearConv", 8, 9, ".........", InferQLinearConv},
    {"", "DynamicQuantizeLinear", 1, 1, ".", InferDynamicQuantizeLinear},
    {"com.microsoft", "MatMulIntegerToFloat", 4, 7, ".......", InferMatMulIntegerToFloat},
    {"com.microsoft", "DynamicQuantizeMatMul", 3, 5, ".....", InferDynamicQuantizeMatMul},
    {"com.microsoft", "QLinearAdd", 7, 8, "..?..?.?", InferQLinearBinary},
    {"com.microsoft", "QLinearMul", 7, 8, "..?..?.?", InferQLinearBinary},
    {"com.microsoft", "QLinearGlobalAveragePool", 4, 5, "..?.?", InferQLinearGlobalAveragePool},
    {"com.microsoft", "QLinearAveragePool", 4, 5, "..?.?", InferQLinearAveragePool},
    {"com.microsoft", "QLinearSoftmax", 4, 5, ".....", InferQLinearSoftmax},
    {"com.microsoft", "QLinearSigmoid", 4, 5, "..?.?", InferQLinearUnary},
    {"com.microsoft", "QLinearLeakyRelu", 4, 5, "..?.?", InferQLinearUnary},
    {"com.microsoft", "QLinearConcat", 5, 1024, "", InferQLinearConcat},
    {"com.microsoft", "QGemm", 6, 9, ".........", InferQGemm},
    {"com.microsoft", "QLinearConvTranspose", 8, 9, ".........", InferQLinearConvTranspose},
    // Kvant's internal forms (created by graph/passes, never read from files).
    {"kvant", "QLinearConvNhwc", 8, 9, ".........", InferQLinearConvNhwc},
    {"kvant", "QLinearConvTransposeNhwc", 8, 9, ".........", InferQLinearConvTransposeNhwc},
    {"kvant", "ConvNhwc", 2, 4, "TTTT", InferConvNhwc},
    {"kvant", "ConvChainNhwc", 4, 8, "T??T????", InferConvChainNhwc},
    {"kvant", "QLinearConvChainNhwc", 12, 32, ".???????????????????????????????", InferQLinearConvChainNhwc},
    {"kvant", "QLinearTable", 2, 2, "..", InferQLinearTable},
    {"kvant", "QuantizeLinearNhwc", 2, 3, "...", InferQuantizeLinearNhwc},
    {"kvant", "QLinearMatMul", 9, 9, ".........", InferQLinearMatMul},  // + int32 bias
    {"kvant", "DynamicQuantizeGRU", 3, 12, "T..TITTT....", InferRecurrent},
    {"kvant", "DynamicQuantizeRNN", 3, 12, "T..TITTT....", InferRecurrent},
    // Recurrent.
    {"", "RNN", 3, 6, "TTTTIT", InferRecurrent},
    {"", "GRU", 3, 6, "TTTTIT", InferRecurrent},
    {"", "LSTM", 3, 8, "TTTTITTT", InferRecurrent},
    {"com.microsoft", "DynamicQuantizeLSTM", 3, 12, "T..TITTT....", InferRecurrent},
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
