// Branch-free float approximations of exp, sigmoid, tanh and erf that
// compilers vectorize inside plain loops (libm's scalar calls do not):
//  - exp: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2], degree-6 polynomial
//    (Cephes expf coefficients), about 1 ulp; clamped to [-87.3, 88.7], and
//    0 below -87.3 (never a denormal);
//  - sigmoid = 1 / (1 + exp(-x)); tanh = 1 - 2 / (exp(2x) + 1), with its
//    Taylor series below |x| < 0.1 where the subtraction would lose digits;
//  - erf: Abramowitz-Stegun 7.1.26 with this exp, absolute error < 2e-7.
#ifndef KVANT_OPS_CPU_VECTOR_MATH_H_
#define KVANT_OPS_CPU_VECTOR_MATH_H_

#include <cmath>
#include <cstdint>
#include <cstring>

namespace kvant::cpu {

inline float FastExp(float in) {
  // Clamp so that NaN becomes -87.3 (no float->int conversion of NaN, which is
  // undefined behaviour), and give NaN back at the end.
  const float x = -87.3f < in ? (in < 88.7f ? in : 88.7f) : -87.3f;
  // Round to nearest by adding and removing 1.5 * 2^23 (vectorizes without SSE4.1).
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  // Below the clamp the true value is under FLT_MIN: give 0, not 2^-126, so
  // that a Softmax over masked (-1e4, -FLT_MAX) scores yields zeros rather
  // than denormals, which cost a microcode assist in every later multiply.
  return in == in ? (in < -87.3f ? 0.f : p * scale) : in;
}

inline float FastSigmoid(float x) { return 1.f / (1.f + FastExp(-x)); }

inline float FastTanh(float x) {
  const float ax = x < 0 ? -x : x;
  const float t = 1.f - 2.f / (FastExp(2.f * ax) + 1.f);
  const float a2 = ax * ax;
  const float series = ax * (1.f + a2 * (-1.f / 3.f + a2 * (2.f / 15.f)));  // exact enough below 0.1
  const float r = ax < 0.1f ? series : t;
  return x < 0 ? -r : r;
}

inline float FastErf(float x) {
  // fabs/copysign rather than branches: GCC if-converts these, so the loop
  // vectorizes (NaN propagates through t).
  const float ax = std::fabs(x);
  const float t = 1.f / (1.f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float r = 1.f - p * t * FastExp(-ax * ax);
  return std::copysign(r, x);
}

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_VECTOR_MATH_H_
