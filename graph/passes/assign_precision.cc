// Half-precision compute (SessionOptions::precision = bf16): MatMul and Gemm
// with constant 2-D FP32 weights, Conv with constant weights and group 1
// (as kvant.ConvNhwc, or a lone or 1-D NCHW convolution whose kernel puts
// positions as rows: ops/cpu/conv_f32.cc), and
// LSTM / GRU / RNN with constant weights, are
// marked `kvant_precision = "bf16"` when their reduction is at least
// kMinBf16Depth deep (a recurrence's hidden size); their
// kernels then pack the weights as bf16 once and round the activations to
// bf16 as they pack them, accumulating in f32 (ops/cpu/gemm_bf16.h). Every
// other operator, reductions and normalizations included, stays FP32: the
// conversions live inside the GEMM's packing, so the graph gains no Cast
// and no value is ever stored in half precision.
//
// FP16 weights (SessionOptions::precision = fp16): MatMul/Gemm with constant
// 2-D weights, group-1 2-D Conv and LSTM/GRU/RNN with constant W and R are
// marked `kvant_precision = "fp16"`; their FP32 kernels store the packed
// weights as FP16 where every value fits and widen a panel at a time
// (NarrowToHalf, ops/cpu/gemm_f32.h). Activations stay FP32.
//
// FP16 weights from the file (KeepFileFp16Weights, every precision): a
// MatMul, Gemm or group-1 Conv whose weights are Cast(to FLOAT) of an FP16
// initializer (kvant quantize's mixed precision writes float layers so) is
// marked the same way before constant folding widens them, so it keeps them
// in FP16 rather than only a widened copy.
#include "graph/passes/passes.h"

namespace kvant {

// Below this K the BF16 GEMM loses to FP32: rounding A into bf16 pairs per
// call costs as much as the product (EfficientNet-Lite0's 1x1 convolutions:
// K = 16 takes 3x the FP32 time, K = 112 breaks even, K >= 144 takes
// 0.3-0.7x; kvant run --profile --precision bf16).
constexpr int64_t kMinBf16Depth = 128;

absl::Status AssignBf16Compute(Graph& graph) {
  for (Node& n : graph.nodes) {
    // LSTM / GRU / RNN: constant W [dirs, gates * hidden, input] and R
    // [dirs, gates * hidden, hidden]; the per-step products read R, so the
    // hidden size is the depth that must pay for the rounding.
    const bool recurrent = n.domain.empty() && (n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN");
    if (recurrent && n.inputs.size() >= 3) {
      const Tensor* w = graph.FindConstant(n.inputs[1]);
      const Tensor* r = graph.FindConstant(n.inputs[2]);
      if (w != nullptr && r != nullptr && w->dtype() == DataType::kFloat32 && r->dtype() == DataType::kFloat32 &&
          w->rank() == 3 && r->rank() == 3 && r->shape()[2] >= kMinBf16Depth) {
        n.attrs.SetString("kvant_precision", "bf16");
      }
      continue;
    }
    const bool conv = n.op_type == "Conv" && n.attrs.GetInt("group", 1) == 1;
    if (!n.domain.empty() || (n.op_type != "MatMul" && n.op_type != "Gemm" && !conv) || n.inputs.size() < 2) continue;
    const Tensor* w = graph.FindConstant(n.inputs[1]);
    const ValueType* a = graph.FindType(n.inputs[0]);
    if (w == nullptr || w->dtype() != DataType::kFloat32 || (conv ? w->rank() < 3 : w->rank() != 2) || a == nullptr ||
        a->dtype != DataType::kFloat32) {
      continue;
    }
    const int64_t depth = conv ? w->num_elements() / w->shape()[0]
                               : (n.op_type == "Gemm" && n.attrs.GetInt("transB", 0) != 0 ? w->shape()[1] : w->shape()[0]);
    if (depth < kMinBf16Depth) continue;
    n.attrs.SetString("kvant_precision", "bf16");
  }
  return absl::OkStatus();
}

absl::Status AssignFp16Weights(Graph& graph) {
  for (Node& n : graph.nodes) {
    if (!n.domain.empty() || n.inputs.size() < 2) continue;
    const bool recurrent = n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN";
    int rank = 2;
    if (n.op_type == "Conv") {
      if (n.attrs.GetInt("group", 1) != 1) continue;
      rank = 4;
    } else if (recurrent) {
      rank = 3;
    } else if (n.op_type != "MatMul" && n.op_type != "Gemm") {
      continue;
    }
    bool constant = true;
    for (size_t i = 1; i < (recurrent ? 3u : 2u) && i < n.inputs.size(); ++i) {
      const Tensor* w = graph.FindConstant(n.inputs[i]);
      constant &= w != nullptr && w->dtype() == DataType::kFloat32 && w->rank() == rank;
    }
    // The kernels check the values' range as they narrow (NarrowToHalf).
    if (constant) n.attrs.SetString("kvant_precision", "fp16");
  }
  return absl::OkStatus();
}

absl::Status KeepFileFp16Weights(Graph& graph) {
  const auto producers = graph.Producers();
  for (Node& n : graph.nodes) {
    const bool conv = n.op_type == "Conv" && n.attrs.GetInt("group", 1) == 1;
    if (!n.domain.empty() || (n.op_type != "MatMul" && n.op_type != "Gemm" && !conv) || n.inputs.size() < 2 ||
        n.attrs.Has("kvant_precision")) {
      continue;
    }
    // Back through Casts to FLOAT (RunFp16ModelInFp32 adds one of its own
    // in front of the file's) to an FP16 constant.
    std::string value = n.inputs[1];
    const Tensor* h = nullptr;
    for (int hops = 0; hops < 4 && h == nullptr; ++hops) {
      auto p = producers.find(value);
      if (p == producers.end()) break;
      const Node& cast = graph.nodes[p->second];
      if (cast.op_type != "Cast" || !cast.domain.empty() || cast.attrs.GetInt("to", 0) != 1 || cast.inputs.empty()) break;
      value = cast.inputs[0];
      const Tensor* c = graph.FindConstant(value);
      if (c != nullptr && c->dtype() == DataType::kFloat16) h = c;
    }
    if (h != nullptr && h->rank() == (conv ? 4 : 2)) n.attrs.SetString("kvant_precision", "fp16");
  }
  return absl::OkStatus();
}

}  // namespace kvant
