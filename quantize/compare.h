// Accuracy tools: where a quantized model departs from its FP32 original.
//   - LayerErrors: every tensor the quantized model dequantizes (each
//     DequantizeLinear fed by a QuantizeLinear of a tensor the FP32 model
//     also has) against the FP32 value, accumulated over the data: SQNR
//     10 log10(sum f^2 / sum (f - q)^2) and cosine similarity, worst first;
//     with the local SQNR of the conversion alone (the quantized model's own
//     value before QuantizeLinear against after DequantizeLinear), which
//     points at the tensor whose range loses the information, where the
//     first number also carries every error upstream.
//   - OutputSqnr: the same over the model outputs (the number budgets use).
//   - Suggest: for the worst layers and the scheme as a whole, the change
//     that would help (keep the layer in float, another range method,
//     per-channel weights, equalization, bias correction), each measured by quantizing the
//     FP32 model with it and running the result.
#ifndef KVANT_QUANTIZE_COMPARE_H_
#define KVANT_QUANTIZE_COMPARE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quantize/calibrate.h"
#include "quantize/onnx_model.h"
#include "quantize/quantizer.h"

namespace kvant::quantize {

struct LayerError {
  std::string tensor;   // the FP32 model's name
  std::string node;     // its producer in the FP32 model ("" for an input)
  std::string op;
  double sqnr_db = 0;
  double cosine = 0;
  double local_sqnr_db = 0;
};

absl::StatusOr<std::vector<LayerError>> LayerErrors(const OnnxModel& fp32, const OnnxModel& quantized,
                                                    const std::vector<CalibrationBatch>& data, int num_threads = 1);

// FP32 outputs of `fp32` on `data`, computed once for many OutputSqnr calls.
using Outputs = std::vector<TensorMap>;
absl::StatusOr<Outputs> RunAll(const OnnxModel& model, const std::vector<CalibrationBatch>& data, int num_threads = 1);
absl::StatusOr<double> OutputSqnr(const Outputs& reference, const OnnxModel& quantized,
                                  const std::vector<CalibrationBatch>& data, int num_threads = 1);

struct Suggestion {
  std::string change;    // "keep Conv '/stem' in float", "--method percentile", ...
  std::string flag;      // the command-line way to get it
  double sqnr_db = 0;    // output SQNR with the change
  double gain_db = 0;    // against the baseline
};
struct SuggestReport {
  double baseline_db = 0;  // `options` as given
  std::vector<Suggestion> suggestions;  // best gain first
};
// `worst`: the layers to try keeping in float (LayerErrors' first few).
absl::StatusOr<SuggestReport> Suggest(const OnnxModel& fp32, const QuantizeOptions& options,
                                      const std::vector<CalibrationBatch>& data, const std::vector<LayerError>& worst,
                                      const ProgressFn& progress);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_COMPARE_H_
