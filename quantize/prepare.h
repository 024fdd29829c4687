// Prepare: the FP32 model made ready for quantization, still FP32 and with
// the same outputs (up to float rounding).
//   1. Identity and Dropout go (their consumers read the input).
//   2. BatchNormalization after a Conv with constant weights folds into the
//      weights and bias, so one scale per output channel covers both.
//   3. An Add of a constant per-channel vector ([1,C,1,1], [C,1,1]) or a
//      scalar after a Conv whose output only it reads (PaddlePaddle writes
//      every convolution's bias this way) becomes the Conv's bias, so the
//      bias is quantized with the product and an activation after it fuses.
//   4. Opset 13 where per-channel weights need DequantizeLinear's `axis`:
//      Squeeze, Unsqueeze, Split and ReduceSum move their attribute into an
//      input; Softmax-family axes must be the last (their meaning changed).
//   5. Optional cross-layer equalization (Nagel et al. 2019): for each
//      Conv -> [Relu] -> Conv pair where the first output feeds only the
//      second (depthwise or dense), output channel i of the first is divided
//      by s_i and input channel i of the second multiplied by it, with
//      s_i = sqrt(r1_i / r2_i) for the channels' weight ranges r1 and r2:
//      afterwards both ranges are sqrt(r1_i r2_i), so per-tensor scales fit
//      every channel better. ReLU commutes with a positive scale; other
//      activations (Clip, HardSwish) end the pair. Repeated until stable.
//   6. Initializers nothing reads any more are dropped.
#ifndef KVANT_QUANTIZE_PREPARE_H_
#define KVANT_QUANTIZE_PREPARE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "quantize/onnx_model.h"

namespace kvant::quantize {

struct PrepareReport {
  int removed_noops = 0;
  int folded_batchnorms = 0;
  int folded_bias_adds = 0;
  int upgraded_nodes = 0;  // attribute -> input moves for opset 13
  int equalized_pairs = 0;
  int64_t opset_before = 0, opset_after = 0;
};

absl::Status RemoveNoOps(OnnxModel& m, PrepareReport* report);
absl::Status FoldBatchNorms(OnnxModel& m, PrepareReport* report);
absl::Status FoldConvBiasAdds(OnnxModel& m, PrepareReport* report);
absl::Status UpgradeToOpset13(OnnxModel& m, PrepareReport* report);
absl::Status EqualizeCrossLayer(OnnxModel& m, PrepareReport* report);
// Initializers no node, subgraph or graph output reads (the parameters of
// folded BatchNormalizations, a folded bias's shape): dropped, so that the
// written file carries no dead weights.
void RemoveUnusedInitializers(OnnxModel& m);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_PREPARE_H_
