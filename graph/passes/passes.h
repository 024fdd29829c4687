// Graph transformations, one per file. Each takes a Graph and leaves it valid:
// topologically ordered, every value typed. See pipeline.cc for the order.
#ifndef KVANT_GRAPH_PASSES_PASSES_H_
#define KVANT_GRAPH_PASSES_PASSES_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "graph/graph.h"
#include "ops/kernel.h"

namespace kvant {

// A fresh value or node name from `hint`, reserved in graph.values so the
// next fresh name differs (the passes that add Casts and Transposes).
inline std::string ReserveName(Graph& graph, const std::string& hint) {
  std::string name = graph.UniqueName(hint);
  graph.values[name];
  return name;
}

// A new one-input, one-output node of `op` (ONNX domain), named from `hint`
// (the Casts and Transposes the passes add; the caller sets attributes).
inline Node MakeUnaryNode(Graph& graph, const std::string& op, const std::string& in, const std::string& out,
                          const std::string& hint) {
  Node n;
  n.op_type = op;
  n.name = ReserveName(graph, hint);
  n.inputs = {in};
  n.outputs = {out};
  return n;
}

// shape_inference.cc: runs node's shape rule and records its output types.
// Unknown operators are Unimplemented (naming op, node and opset).
absl::Status InferNodeShapes(Graph& graph, const Node& node);
absl::Status InferShapes(Graph& graph);

// fold_constants.cc: in one topological sweep, infers each node's shapes and
// replaces it by initializers when all its inputs are constant (evaluated with
// the CPU kernels), or when it is a Shape of a statically shaped value.
// Outputs larger than `max_fold_bytes` are left to run time; `only`, when
// given, limits folding to the nodes it accepts.
absl::Status FoldConstants(Graph& graph, CpuFeatures cpu, int64_t max_fold_bytes = int64_t{64} << 20,
                           const std::function<bool(const Node&)>& only = nullptr);

// fold_batchnorm.cc: BatchNormalization after Conv or Gemm with constant
// weights folds into those weights and bias.
absl::Status FoldBatchNorm(Graph& graph);

// fold_conv_affine.cc: Mul/Add by a scalar or per-channel constant after a
// Conv folds into its weights and bias.
absl::Status FoldConvAffine(Graph& graph);

// fuse_pad.cc: a zero constant Pad of spatial dimensions before a Conv
// becomes the Conv's pads.
absl::Status FusePadIntoConv(Graph& graph);
// DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv, and -> MatMul ->
// into QLinearMatMul (fuse_qdq.cc).
absl::Status FuseQdqConv(Graph& graph);
// fuse_qdq_ops.cc: DQ -> data movement -> Q with equal parameters runs on the
// quantized values; DQ -> Add/Mul/GlobalAveragePool -> Q and DQ -> Gemm [-> Q]
// become com.microsoft QLinearAdd/QLinearMul/QLinearGlobalAveragePool/QGemm.
absl::Status FuseQdqOperators(Graph& graph);
// fuse_qdq_table.cc: DQ -> unary float operators (or binary ones with a scalar
// constant) -> Q, per tensor, becomes kvant.QLinearTable: 256 output bytes
// computed at load by folding the chain over every input byte.
absl::Status FuseQdqTables(Graph& graph, CpuFeatures cpu);
// The 256 bytes `out` takes when the value x (of x_type) is each byte in
// turn: `nodes` (any order; their constant operands come from `graph`)
// copied into a scratch graph and folded with the CPU kernels. With
// channels > 0, x is of rank `rank` with channels along axis 1 (a
// BatchNormalization in the chain): [channels, 256] bytes, one row per channel.
absl::StatusOr<Tensor> FoldByteTable(const Graph& graph, const std::vector<const Node*>& nodes, const std::string& x,
                                     DataType x_type, const std::string& out, CpuFeatures cpu, int64_t channels = 0,
                                     int64_t rank = 1);

// fuse_qdq_islands.cc: elementwise QDQ islands that depend on one per-tensor
// quantized value only (ONNX Runtime's QDQ HardSwish, affine Mul/Add by
// quantized scalars) become kvant.QLinearTable, folded over the 256 bytes.
absl::Status FuseQdqIslandTables(Graph& graph, CpuFeatures cpu);

// fuse_dynamic_quant.cc: ONNX Runtime's dynamically quantized MatMul
// (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul [-> Add bias])
// becomes com.microsoft DynamicQuantizeMatMul; QuantizeMatMulsDynamic turns
// FP32 MatMul/Gemm with constant weights into it (SessionOptions::dynamic_int8).
absl::Status FuseDynamicQuantizeMatMul(Graph& graph);
absl::Status QuantizeMatMulsDynamic(Graph& graph);
// fuse_conv_residual.cc: Add(FP32 group-1 kvant.ConvNhwc, r of the same
// shape) becomes the convolution with r as a fourth input, added in the
// GEMM's epilogue before the activation.
absl::Status FuseConvResiduals(Graph& graph);
// fuse_conv_chain.cc: FP32 1x1 (expand) -> depthwise -> 1x1 (project)
// kvant.ConvNhwc chains, or two of them, become one kvant.ConvChainNhwc run
// a band of rows at a time.
absl::Status FuseConvChains(Graph& graph);
// layout_nhwc.cc: QLinearConv becomes kvant.QLinearConvNhwc and FP32 Conv
// (constant weights, group 1 or depthwise) kvant.ConvNhwc, and the layout
// transposes around them sink through layout-agnostic operators and cancel,
// so convolution chains stay NHWC.
absl::Status LayoutConvolutionsNhwc(Graph& graph);
// fuse_quantize_nhwc.cc: QuantizeLinear (per tensor) -> Transpose(NCHW ->
// NHWC) becomes kvant.QuantizeLinearNhwc, one pass from the float image.
absl::Status FuseQuantizeNhwc(Graph& graph);
// fuse_layer_norm.cc: the ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add
// spelling of layer normalization becomes LayerNormalization.
absl::Status FuseLayerNorm(Graph& graph);

// fuse_matmul_bias.cc: MatMul by constant FP32 [K, N] weights followed by an
// Add of a constant N-vector becomes one MatMul with a fused_bias attribute.
absl::Status FuseMatMulBias(Graph& graph);

// fuse_spelled_activations.cc: x * Clip(x + 3, 0, 6) / 6 becomes
// HardSwish(x); 0.5 * x * (1 + Erf(x / sqrt 2)) becomes Gelu(x).
absl::Status FuseHardSwish(Graph& graph);
absl::Status FuseGelu(Graph& graph);

// fuse_activation.cc: Relu, Clip (constant bounds), LeakyRelu, HardSigmoid
// and HardSwish after Conv, Gemm or MatMul become the producer's
// fused_activation attribute; a following Mul/Add/Div by a scalar constant
// becomes its fused_scale / fused_shift.
absl::Status FuseActivations(Graph& graph);
// Relu, or Clip with constant bounds, as the range [lo, hi] it clamps to.
bool ActivationRange(const Graph& g, const Node& act, float* lo, float* hi);

// remove_identity.cc: Identity and inference-mode Dropout are bypassed.
absl::Status RemoveIdentities(Graph& graph);

// remove_dead_nodes.cc: nodes none of whose outputs are used, and unused
// initializers, are dropped.
absl::Status RemoveDeadNodes(Graph& graph);

// assign_precision.cc: MatMul/Gemm with constant 2-D FP32 weights compute
// in BF16 with FP32 accumulation (attribute kvant_precision = "bf16").
absl::Status AssignBf16Compute(Graph& graph);
// assign_precision.cc: MatMul/Gemm/group-1 Conv/LSTM/GRU/RNN with constant
// FP32 weights store them in FP16 (attribute kvant_precision = "fp16").
absl::Status AssignFp16Weights(Graph& graph);
// The same for the weights a file stores as FP16 behind Cast(to FLOAT).
absl::Status KeepFileFp16Weights(Graph& graph);
// fp16_model.cc: a model stored in float16 computes in FP32 between widening
// casts at its inputs and weights and narrowing casts at its outputs.
absl::Status RunFp16ModelInFp32(Graph& graph);

// pipeline.cc
struct OptimizeOptions {
  bool optimize = true;  // false: shape inference only
  bool widen_fp16_model = true;  // RunFp16ModelInFp32 first (not again on a graph it widened)
  bool dynamic_int8 = false;  // QuantizeMatMulsDynamic
  bool bf16 = false;          // AssignBf16Compute
  bool fp16 = false;          // AssignFp16Weights
  CpuFeatures cpu = 0;
};
absl::Status OptimizeGraph(Graph& graph, const OptimizeOptions& options);

// Gives the graph inputs these static shapes, re-infers and folds until every
// value is static. Errors name the input or node whose shape stays unknown.
// `only`, when given, limits folding as FoldConstants's does.
absl::Status SpecializeShapes(Graph& graph, const std::map<std::string, std::vector<int64_t>>& input_shapes,
                              CpuFeatures cpu, const std::function<bool(const Node&)>& only = nullptr);

}  // namespace kvant

#endif  // KVANT_GRAPH_PASSES_PASSES_H_
