// The pass pipeline run at load, and shape specialization run once per new
// input-shape signature:
//  0. a float16 model gets widening and narrowing casts at its edges (its
//     kernels run in FP32);
//  1. remove Identity/Dropout; infer shapes; turn elementwise QDQ islands of
//     one quantized value into byte tables; fuse DequantizeLinear -> Conv ->
//     QuantizeLinear into QLinearConv (before folding turns the weights'
//     DequantizeLinear into float weights), the other QDQ groups (data
//     movement, Add/Mul, pooling, Gemm) onto quantized operators, and ONNX
//     Runtime's dynamic quantization chains into DynamicQuantizeMatMul;
//  2. infer shapes and fold constants (one sweep);
//  3. fold BatchNorm, constant scales/shifts and zero Pads into Conv/Gemm, recognize
//     HardSwish, Gelu and LayerNormalization, turn what is left of quantized
//     unary chains (DQ -> float ops -> Q) into byte tables, and bias Adds
//     into the MatMuls before them; with dynamic_int8, FP32 MatMul/Gemm
//     with constant weights become DynamicQuantizeMatMul; then fuse
//     activations (and scalar affine tails);
//  4. drop dead nodes and unused initializers; run INT8 convolution chains
//     in NHWC (transposes only at the chains' edges; a float image is
//     quantized straight into NHWC), add residuals in the
//     FP32 NHWC convolutions' epilogues (and activations after them), and
//     run FP32 expand -> depthwise -> project chains a band of rows at a time;
//  5. infer shapes again over the final graph.
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "graph/passes/passes.h"

namespace kvant {

absl::Status OptimizeGraph(Graph& graph, const OptimizeOptions& options) {
  if (options.widen_fp16_model) {
    if (auto s = RunFp16ModelInFp32(graph); !s.ok()) return s;
  }
  if (!options.optimize) return InferShapes(graph);
  if (auto s = RemoveIdentities(graph); !s.ok()) return s;
  if (auto s = InferShapes(graph); !s.ok()) return s;
  if (auto s = KeepFileFp16Weights(graph); !s.ok()) return s;  // before folding widens them
  // Weights some quantizers leave as QuantizeLinear(float constant): quantized
  // now, so that the QDQ fusions below see constant quantized weights.
  auto constant_quantize = [](const Node& n) { return n.op_type == "QuantizeLinear" && n.domain.empty(); };
  if (auto s = FoldConstants(graph, options.cpu, int64_t{64} << 20, constant_quantize); !s.ok()) return s;
  if (auto s = FuseQdqIslandTables(graph, options.cpu); !s.ok()) return s;
  if (auto s = FuseQdqConv(graph); !s.ok()) return s;
  if (auto s = FuseQdqOperators(graph); !s.ok()) return s;
  if (auto s = FuseDynamicQuantizeMatMul(graph); !s.ok()) return s;
  if (auto s = FoldConstants(graph, options.cpu); !s.ok()) return s;
  if (auto s = FoldBatchNorm(graph); !s.ok()) return s;
  if (auto s = FoldConvAffine(graph); !s.ok()) return s;
  if (auto s = FusePadIntoConv(graph); !s.ok()) return s;
  if (auto s = FuseHardSwish(graph); !s.ok()) return s;
  if (auto s = FuseGelu(graph); !s.ok()) return s;
  if (auto s = FuseLayerNorm(graph); !s.ok()) return s;
  // (the operators fusions replaced must be gone: they still read the values)
  if (auto s = RemoveDeadNodes(graph); !s.ok()) return s;
  if (auto s = FuseQdqTables(graph, options.cpu); !s.ok()) return s;
  if (auto s = FuseMatMulBias(graph); !s.ok()) return s;
  if (options.dynamic_int8) {
    if (auto s = QuantizeMatMulsDynamic(graph); !s.ok()) return s;
  }
  if (options.bf16) {
    if (auto s = AssignBf16Compute(graph); !s.ok()) return s;
  }
  if (options.fp16) {
    if (auto s = AssignFp16Weights(graph); !s.ok()) return s;
  }
  if (auto s = RemoveDeadNodes(graph); !s.ok()) return s;
  if (auto s = FuseActivations(graph); !s.ok()) return s;
  if (auto s = RemoveDeadNodes(graph); !s.ok()) return s;
  if (auto s = LayoutConvolutionsNhwc(graph); !s.ok()) return s;
  if (auto s = FuseQuantizeNhwc(graph); !s.ok()) return s;
  if (auto s = FuseConvResiduals(graph); !s.ok()) return s;
  if (auto s = FuseActivations(graph); !s.ok()) return s;
  if (auto s = FuseConvChains(graph); !s.ok()) return s;
  return InferShapes(graph);
}

absl::Status SpecializeShapes(Graph& graph, const std::map<std::string, std::vector<int64_t>>& input_shapes,
                              CpuFeatures cpu, const std::function<bool(const Node&)>& only) {
  for (const std::string& in : graph.inputs) {
    auto it = input_shapes.find(in);
    if (it == input_shapes.end()) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to plan %s: input '%s' must be given, got none",
                                                        graph.source, in));
    }
    graph.values[in].shape = Shape::Of(it->second);
  }
  if (auto s = FoldConstants(graph, cpu, int64_t{64} << 20, only); !s.ok()) return s;
  for (const Node& n : graph.nodes) {
    for (const std::string& o : n.outputs) {
      if (o.empty()) continue;
      const ValueType* t = graph.FindType(o);
      if (t == nullptr || !t->shape.IsStatic()) {
        return absl::UnimplementedError(absl::StrFormat(
            "failed to plan %s: output '%s' of node %s must have a static shape once inputs are known, got %s "
            "(data-dependent shapes are not supported)",
            graph.source, o, n.Label(), t ? t->shape.ToString() : "no type"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace kvant
