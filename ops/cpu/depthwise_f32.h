// Depthwise convolution of one channel plane, ISA variants.
#ifndef KVANT_OPS_CPU_DEPTHWISE_F32_H_
#define KVANT_OPS_CPU_DEPTHWISE_F32_H_

#include <algorithm>
#include <cstdint>

#include "ops/cpu/activation_f32.h"

namespace kvant::cpu {

struct DepthwisePlane {
  int64_t in_h, in_w, out_h, out_w, k_h, k_w, s_h, s_w, d_h, d_w, pad_h, pad_w;
};

namespace avx512 {
// y[oh][ow] = act(bias + sum over taps of w[kh][kw] * x[ih][iw]), padding reads 0.
void DepthwisePlaneF32(const DepthwisePlane& p, const float* x, const float* w, float bias, const ActivationF32& act,
                       float* y);
}  // namespace avx512

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_DEPTHWISE_F32_H_
