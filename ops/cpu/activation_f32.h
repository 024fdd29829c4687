// Activations that fuse into GEMM and convolution epilogues (Relu, Clip,
// LeakyRelu, HardSigmoid, HardSwish, Gelu), read from the attributes
// graph/passes/fuse_activation.cc sets.
#ifndef KVANT_OPS_CPU_ACTIVATION_F32_H_
#define KVANT_OPS_CPU_ACTIVATION_F32_H_

#include <algorithm>
#include <limits>

#include "graph/graph.h"
#include "ops/cpu/vector_math.h"
#include "ops/kernel.h"

namespace kvant::cpu {

// y = act(x) * post_scale + post_shift.
struct ActivationF32 {
  enum class Kind { kNone, kRelu, kClip, kLeakyRelu, kHardSigmoid, kHardSwish, kGelu };
  Kind kind = Kind::kNone;
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();
  float alpha = 0.f;  // LeakyRelu slope; HardSigmoid alpha
  float beta = 0.f;   // HardSigmoid beta
  float post_scale = 1.f;
  float post_shift = 0.f;

  // Gelu with the exact erf (ONNX Gelu, approximate = "none").
  static float Gelu(float v) { return 0.5f * v * (1.f + FastErf(v * 0.70710678118654752f)); }

  bool identity() const { return kind == Kind::kNone && post_scale == 1.f && post_shift == 0.f; }

  float Apply(float v) const {
    switch (kind) {
      case Kind::kNone: break;
      case Kind::kRelu: v = v > 0.f ? v : 0.f; break;
      case Kind::kClip: v = std::min(std::max(v, lo), hi); break;
      case Kind::kLeakyRelu: v = v >= 0.f ? v : v * alpha; break;
      case Kind::kHardSigmoid: v = std::min(1.f, std::max(0.f, alpha * v + beta)); break;
      case Kind::kHardSwish: v = v * std::min(1.f, std::max(0.f, v * (1.f / 6.f) + 0.5f)); break;
      case Kind::kGelu: v = Gelu(v); break;
    }
    return v * post_scale + post_shift;
  }
};

// Attributes "fused_activation" (Relu|Clip|LeakyRelu|HardSigmoid|HardSwish|Gelu),
// "fused_min", "fused_max", "fused_alpha", "fused_beta", "fused_scale", "fused_shift".
ActivationF32 ReadFusedActivation(const AttributeMap& attrs);

// Applies `act` to n values in place.
void ApplyActivationF32(const ActivationF32& act, float* data, int64_t n);

// Sigmoid and Tanh of n values in place, as the unary operators compute them
// (AVX-512 when `cpu` has it): the recurrent operators' gates.
using RowFnF32 = void (*)(float* x, int64_t n);
RowFnF32 SigmoidRowsF32(CpuFeatures cpu);
RowFnF32 TanhRowsF32(CpuFeatures cpu);

// Softmax of one contiguous row of `len` values with AVX-512
// (softmax_f32_avx512.cc; the Softmax kernel's last-axis rows).
void SoftmaxRowAvx512(const float* x, float* y, int64_t len);

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_ACTIVATION_F32_H_
