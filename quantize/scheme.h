// Quantization schemes: the element types, symmetry and granularity of
// activations and weights, the presets that name a target's choice, and the
// arithmetic that turns a range into a scale and zero point.
//   x86       u8 asymmetric activations, s8 symmetric per-channel weights
//   tensorrt  s8 symmetric per-tensor activations, s8 symmetric per-channel
//             weights, float requantization
//   tflite    s8 asymmetric activations, s8 symmetric per-channel weights,
//             fixed-point requantization (recorded in the model's metadata)
#ifndef KVANT_QUANTIZE_SCHEME_H_
#define KVANT_QUANTIZE_SCHEME_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quantize/observer.h"

namespace kvant::quantize {

struct Scheme {
  std::string preset = "x86";
  bool activations_signed = false;     // s8 (else u8)
  bool activations_symmetric = false;  // zero point 0 (s8) or 128 (u8)
  bool weights_per_channel = true;
  bool fixed_point_requantization = false;
};

absl::StatusOr<Scheme> PresetScheme(const std::string& name);

// ONNX QuantizeLinear parameters of one tensor.
struct QParams {
  float scale = 1.f;
  int32_t zero_point = 0;
};

// Parameters for activations in `r` (widened to hold 0, as every runtime
// needs an exact zero for padding): asymmetric scale (hi - lo) / 255 with the
// zero point rounded into range; symmetric max(|lo|, |hi|) / 127 (s8, zero
// point 0) or / 127.5 (u8, zero point 128). A zero range gets scale 1.
QParams ActivationParams(Range r, const Scheme& s);

// Symmetric s8 weights: per output channel along `axis` (or one scale when
// `per_channel` is false), scale max |w| / 127 (at least min_scales[c] when
// given), values in [-127, 127].
struct QuantizedWeights {
  std::vector<int8_t> values;
  std::vector<float> scales;  // one per channel, or one
};
QuantizedWeights QuantizeWeights(const float* w, const std::vector<int64_t>& shape, int64_t axis, bool per_channel,
                                 const std::vector<float>* min_scales = nullptr);

// int32 bias at scale input_scale * weight_scale[c] (zero point 0), saturated
// to +-2^30.
std::vector<int32_t> QuantizeBias(const float* b, int64_t n, float input_scale, const std::vector<float>& weight_scales);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_SCHEME_H_
