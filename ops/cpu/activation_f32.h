// Activations that fuse into GEMM and convolution epilogues (Relu, Clip,
// LeakyRelu), read from the attributes graph/passes/fuse_activation.cc sets.
#ifndef KVANT_OPS_CPU_ACTIVATION_F32_H_
#define KVANT_OPS_CPU_ACTIVATION_F32_H_

#include <algorithm>
#include <limits>

#include "graph/graph.h"

namespace kvant::cpu {

struct ActivationF32 {
  enum class Kind { kNone, kRelu, kClip, kLeakyRelu };
  Kind kind = Kind::kNone;
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();
  float alpha = 0.f;

  float Apply(float v) const {
    switch (kind) {
      case Kind::kNone: return v;
      case Kind::kRelu: return v > 0.f ? v : 0.f;
      case Kind::kClip: return std::min(std::max(v, lo), hi);
      case Kind::kLeakyRelu: return v >= 0.f ? v : v * alpha;
    }
    return v;
  }
};

// Attributes "fused_activation" (Relu|Clip|LeakyRelu), "fused_min", "fused_max", "fused_alpha".
ActivationF32 ReadFusedActivation(const AttributeMap& attrs);

// Applies `act` to n values in place.
void ApplyActivationF32(const ActivationF32& act, float* data, int64_t n);

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_ACTIVATION_F32_H_
