// Bias correction (`kvant quantize --bias-correction`, Nagel et al. 2019):
// quantized weights shift each output channel's mean by (W - W_q) E[x]; that
// shift is added back to the bias.
//   1. Run the FP32 model on the calibration data with every quantized
//      Conv/Gemm input exposed, and average each input channel (for 2-D
//      convolutions, each channel at each tap, padding counted as zeros).
//   2. Quantize the weights as the scheme will (per channel or per tensor)
//      and, per output channel, sum (W - W_q) over the input channels and
//      taps times those means.
//   3. Add it to the FP32 bias of the prepared model (creating a bias where
//      there was none); the caller converts with the same ranges.
// Per layer, from the FP32 inputs: correcting every layer from the
// quantized model's own outputs would count each upstream error again at
// every layer (measured: it made every zoo model worse).
#ifndef KVANT_QUANTIZE_BIAS_CORRECTION_H_
#define KVANT_QUANTIZE_BIAS_CORRECTION_H_

#include "absl/status/statusor.h"
#include "quantize/quantizer.h"

namespace kvant::quantize {

// Corrects `prepared` in place; returns the number of biases changed.
absl::StatusOr<int> CorrectBiases(OnnxModel& prepared, const QuantizeOptions& options, const Calibration& calibration,
                                  const std::vector<CalibrationBatch>& data);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_BIAS_CORRECTION_H_
