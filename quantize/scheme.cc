// Presets and the range -> (scale, zero point) arithmetic (see the header).
#include "quantize/scheme.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace kvant::quantize {

absl::StatusOr<Scheme> PresetScheme(const std::string& name) {
  Scheme s;
  s.preset = name;
  if (name == "x86") return s;
  if (name == "tensorrt") {
    s.activations_signed = true;
    s.activations_symmetric = true;
    return s;
  }
  if (name == "tflite") {
    s.activations_signed = true;
    s.fixed_point_requantization = true;
    return s;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("failed to choose a scheme: --preset must be x86, tensorrt or tflite, got '%s'", name));
}

QParams ActivationParams(Range r, const Scheme& s) {
  const double lo = std::min(0.0, double{r.lo}), hi = std::max(0.0, double{r.hi});
  QParams p;
  if (s.activations_symmetric) {
    const double absmax = std::max(-lo, hi);
    p.scale = absmax > 0 ? static_cast<float>(absmax / (s.activations_signed ? 127.0 : 127.5)) : 1.f;
    p.zero_point = s.activations_signed ? 0 : 128;
    return p;
  }
  if (hi - lo <= 0) return p;
  const double qmin = s.activations_signed ? -128 : 0, qmax = s.activations_signed ? 127 : 255;
  const double scale = (hi - lo) / (qmax - qmin);
  p.scale = static_cast<float>(scale);
  p.zero_point = static_cast<int32_t>(std::clamp(std::nearbyint(qmin - lo / scale), qmin, qmax));
  return p;
}

QuantizedWeights QuantizeWeights(const float* w, const std::vector<int64_t>& shape, int64_t axis, bool per_channel,
                                 const std::vector<float>* min_scales) {
  int64_t total = 1;
  for (int64_t d : shape) total *= d;
  int64_t inner = 1;
  for (size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
  const int64_t channels = per_channel ? shape[axis] : 1;
  QuantizedWeights q;
  q.values.resize(total);
  q.scales.assign(channels, 0.f);
  auto channel_of = [&](int64_t i) { return per_channel ? (i / inner) % shape[axis] : 0; };
  for (int64_t i = 0; i < total; ++i) q.scales[channel_of(i)] = std::max(q.scales[channel_of(i)], std::fabs(w[i]));
  for (size_t c = 0; c < q.scales.size(); ++c) {
    float& s = q.scales[c];
    s = s > 0 && std::isfinite(s) ? s / 127.f : 1.f;
    if (min_scales != nullptr && c < min_scales->size() && (*min_scales)[c] > s) s = (*min_scales)[c];
  }
  for (int64_t i = 0; i < total; ++i) {
    const float v = std::nearbyint(w[i] / q.scales[channel_of(i)]);
    q.values[i] = static_cast<int8_t>(std::clamp(v, -127.f, 127.f));
  }
  return q;
}

std::vector<int32_t> QuantizeBias(const float* b, int64_t n, float input_scale, const std::vector<float>& weight_scales) {
  std::vector<int32_t> q(n);
  for (int64_t c = 0; c < n; ++c) {
    const double scale = double{input_scale} * weight_scales[weight_scales.size() == 1 ? 0 : c];
    const double v = scale > 0 ? std::nearbyint(b[c] / scale) : 0.0;
    q[c] = static_cast<int32_t>(std::clamp(v, -1073741824.0, 1073741824.0));
  }
  return q;
}

}  // namespace kvant::quantize
