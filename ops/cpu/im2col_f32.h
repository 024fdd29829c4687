// im2col for FP32 convolution over a range of output positions: row
// r = ((c * kd + z) * kh + y) * kw + x of the column matrix holds, for output
// positions p in [p0, p1), the input value tap r reads (0 in the padding).
// A portable version for any geometry, and an AVX-512 one for the common
// stride-1 "same" 2-D case.
#ifndef KVANT_OPS_CPU_IM2COL_F32_H_
#define KVANT_OPS_CPU_IM2COL_F32_H_

#include <algorithm>
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

// `x` is one image's cin_g input channels; writes col[r * ld + p - p0].
// copy(dst, src, n, stride) sets dst[i] = src[i * stride] for i < n.
template <typename StridedCopy>
void Im2Col(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col, int64_t ld,
            StridedCopy copy) {
  const int64_t plane_out = c.out[1] * c.out[2];
  for (int64_t ci = 0; ci < c.cin_g; ++ci) {
    for (int64_t kd = 0; kd < c.k[0]; ++kd) {
      for (int64_t kh = 0; kh < c.k[1]; ++kh) {
        for (int64_t kw = 0; kw < c.k[2]; ++kw) {
          float* row = col + (((ci * c.k[0] + kd) * c.k[1] + kh) * c.k[2] + kw) * ld - p0;
          // Output columns whose input column ow * s - p + kw * d lies in [0, in).
          const int64_t off = kw * c.d[2] - c.p[2];
          const int64_t lo = std::min(c.out[2], off >= 0 ? 0 : (-off + c.s[2] - 1) / c.s[2]);
          const int64_t hi = std::max(lo, std::min(c.out[2], (c.in[2] - off + c.s[2] - 1) / c.s[2]));
          // Walk the range one output row (fixed od, oh) at a time.
          for (int64_t p = p0; p < p1;) {
            const int64_t od = p / plane_out, oh = (p % plane_out) / c.out[2], ow0 = p % c.out[2];
            const int64_t ow1 = std::min(c.out[2], ow0 + (p1 - p));
            float* dst = row + p - ow0;
            const int64_t id = od * c.s[0] - c.p[0] + kd * c.d[0];
            const int64_t ih = oh * c.s[1] - c.p[1] + kh * c.d[1];
            if (id < 0 || id >= c.in[0] || ih < 0 || ih >= c.in[1]) {
              for (int64_t ow = ow0; ow < ow1; ++ow) dst[ow] = 0.f;
            } else {
              const float* src = x + ((ci * c.in[0] + id) * c.in[1] + ih) * c.in[2] + off;
              const int64_t a = std::clamp(lo, ow0, ow1), b = std::clamp(hi, ow0, ow1);
              for (int64_t ow = ow0; ow < a; ++ow) dst[ow] = 0.f;
              copy(dst + a, src + a * c.s[2], b - a, c.s[2]);
              for (int64_t ow = b; ow < ow1; ++ow) dst[ow] = 0.f;
            }
            p += ow1 - ow0;
          }
        }
      }
    }
  }
}

// Im2Col with portable copies.
void Im2ColF32(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col, int64_t ld);

// Per tap and block of 16 output positions: bit set where a same-size 2-D tap
// reads inside the input.
std::vector<uint16_t> Im2ColSame2dMasks(const ConvGeometry& c);

// NHWC A rows of a group-1 2-D convolution (K in (kh, kw, c) order) for
// output positions [p0, p1) of the batch: row p - p0 at col + (p - p0) *
// gemm_k(), per tap cin channels, zeros where the tap reads padding.
// copy(dst, src, n) and zero(dst, n) move runs of floats.
template <typename Copy, typename Zero>
void FillNhwcRows(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col, Copy copy, Zero zero) {
  const int64_t k = c.gemm_k(), out_hw = c.out_size(), in_hw = c.in_size(), run = c.k[2] * c.cin;
  int64_t img = p0 / out_hw, oh = p0 % out_hw / c.out[2], ow = p0 % c.out[2];
  for (int64_t p = p0; p < p1; ++p) {
    float* row = col + (p - p0) * k;
    const int64_t iw0 = ow * c.s[2] - c.p[2];
    // With dilation 1 a kernel row's taps are k_w adjacent pixels: one run.
    const bool whole_rows = c.d[2] == 1 && iw0 >= 0 && iw0 + c.k[2] <= c.in[2];
    for (int64_t kh = 0; kh < c.k[1]; ++kh) {
      const int64_t ih = oh * c.s[1] - c.p[1] + kh * c.d[1];
      float* dst = row + kh * run;
      if (ih < 0 || ih >= c.in[1]) {
        zero(dst, run);
        continue;
      }
      const float* src_row = x + (img * in_hw + ih * c.in[2]) * c.cin;
      if (whole_rows) {
        copy(dst, src_row + iw0 * c.cin, run);
        continue;
      }
      for (int64_t kw = 0; kw < c.k[2]; ++kw) {
        const int64_t iw = iw0 + kw * c.d[2];
        if (iw >= 0 && iw < c.in[2]) {
          copy(dst + kw * c.cin, src_row + iw * c.cin, c.cin);
        } else {
          zero(dst + kw * c.cin, c.cin);
        }
      }
    }
    if (++ow == c.out[2]) {
      ow = 0;
      if (++oh == c.out[1]) oh = 0, ++img;
    }
  }
}

// FillNhwcRows with portable copies.
void FillNhwcRowsF32(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col);

namespace avx512 {
// Im2Col with AVX-512 copies (stride 2: two loads and a permute per 16
// outputs).
void Im2ColF32(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col, int64_t ld);

// FillNhwcRows with masked AVX-512 moves: a stem's 9-float runs (3x3 taps
// of RGB) are one load and one store each.
void FillNhwcRowsF32(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col);

// Same contract as Im2ColF32 for same_size_2d() geometries; p0 % 16 == 0.
void Im2ColSame2dF32(const ConvGeometry& c, const float* x, const uint16_t* masks, int64_t p0, int64_t p1,
                     float* col, int64_t ld);
}  // namespace avx512

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_IM2COL_F32_H_
