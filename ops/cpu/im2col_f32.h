// im2col for FP32 convolution over a range of output positions: row
// r = ((c * kd + z) * kh + y) * kw + x of the column matrix holds, for output
// positions p in [p0, p1), the input value tap r reads (0 in the padding).
// A portable version for any geometry, and an AVX-512 one for the common
// stride-1 "same" 2-D case.
#ifndef KVANT_OPS_CPU_IM2COL_F32_H_
#define KVANT_OPS_CPU_IM2COL_F32_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "graph/graph.h"

namespace kvant::cpu {

// Convolution geometry as 3-D (lower ranks have unit leading sizes).
struct ConvGeometry {
  int64_t n, cin, cout, group, cin_g, cout_g;
  int64_t in[3], out[3], k[3], s[3], d[3], p[3];
  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t k_size() const { return k[0] * k[1] * k[2]; }
  int64_t gemm_k() const { return cin_g * k_size(); }
  bool pointwise() const {
    for (int i = 0; i < 3; ++i) {
      if (k[i] != 1 || s[i] != 1 || p[i] != 0) return false;
    }
    return true;
  }
  // Stride 1, dilation 1, output the size of the input, 2-D.
  bool same_size_2d() const {
    return s[1] == 1 && s[2] == 1 && d[1] == 1 && d[2] == 1 && out[1] == in[1] && out[2] == in[2] && k[0] == 1 &&
           in[0] == 1;
  }
};

// Conv's attributes on input x and weights w (NCHW and MCHW shapes, 1 to 3
// spatial dimensions); `label` names the node in errors.
absl::StatusOr<ConvGeometry> MakeConvGeometry(const AttributeMap& attrs, absl::Span<const int64_t> x,
                                              absl::Span<const int64_t> w, const std::string& label);

// Portable: `x` is one image's cin_g input channels; writes col[r * ld + p - p0].
void Im2ColF32(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col, int64_t ld);

// Per tap and block of 16 output positions: bit set where a same-size 2-D tap
// reads inside the input.
std::vector<uint16_t> Im2ColSame2dMasks(const ConvGeometry& c);

namespace avx512 {
// Same contract as Im2ColF32 for same_size_2d() geometries; p0 % 16 == 0.
void Im2ColSame2dF32(const ConvGeometry& c, const float* x, const uint16_t* masks, int64_t p0, int64_t p1,
                     float* col, int64_t ld);
}  // namespace avx512

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_IM2COL_F32_H_
