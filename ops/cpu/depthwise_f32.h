// Depthwise convolution over NCHW channel planes, ISA variants.
#ifndef KVANT_OPS_CPU_DEPTHWISE_F32_H_
#define KVANT_OPS_CPU_DEPTHWISE_F32_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "ops/cpu/activation_f32.h"

namespace kvant::cpu {

// One plane's geometry (2-D); pad_h/pad_w are the top and left padding, the
// bottom and right follow from out_h/out_w.
struct DepthwisePlane {
  int64_t in_h, in_w, out_h, out_w, k_h, k_w, s_h, s_w, d_h, d_w, pad_h, pad_w;
};

// NHWC depthwise (kvant.ConvNhwc): one image's input [in_h][in_w][c], the
// weights as [tap][c], output rows [oh0, oh1) of [out_h][out_w][c].
struct DepthwiseNhwc {
  DepthwisePlane plane;
  int64_t c;
};
void DepthwiseNhwcRowsF32(const DepthwiseNhwc& p, const float* x, const float* w_tc, const float* bias,
                          const ActivationF32& act, int64_t oh0, int64_t oh1, float* y);

namespace avx512 {

// The same, with 16 channels per vector and eight pixels per FMA group.
void DepthwiseNhwcRowsF32(const DepthwiseNhwc& p, const float* x, const float* w_tc, const float* bias,
                          const ActivationF32& act, int64_t oh0, int64_t oh1, float* y);

// Scratch one thread needs for DepthwisePlanesF32 (64-byte aligned).
size_t DepthwiseScratchBytesF32(const DepthwisePlane& p);

// Planes [p0, p1) of x (plane i: channel i % channels, weights
// w + channel * k_h * k_w, bias[channel] or 0):
// y[oh][ow] = act(bias + sum over taps of w[kh][kw] * x[ih][iw]), padding 0.
//
// 1. Each plane is copied once into `scratch` with its padding as zeros
//    and its columns split by residue modulo the column stride, so every
//    tap of every output vector is an unmasked load at a fixed offset.
// 2. Output vectors (16 columns of one row) go four at a time through all
//    taps: four independent FMA chains, the tap weights in registers.
void DepthwisePlanesF32(const DepthwisePlane& p, const float* x, const float* w, const float* bias, int64_t channels,
                        int64_t p0, int64_t p1, const ActivationF32& act, float* y, void* scratch);

// The same with channels in the lanes (depthwise_f32_avx512_c16.cc), which
// DepthwisePlanesF32 chooses for planes narrower than 16 output columns.
size_t DepthwiseChannelScratchBytesF32(const DepthwisePlane& p);
void DepthwiseChannelGroupsF32(const DepthwisePlane& p, const float* x, const float* w, const float* bias,
                               int64_t channels, int64_t p0, int64_t p1, const ActivationF32& act, float* y,
                               void* scratch);

}  // namespace avx512

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_DEPTHWISE_F32_H_
