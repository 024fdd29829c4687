// Portable im2col over a range of output positions, and the validity masks
// the AVX-512 variant uses.
#include "ops/cpu/im2col_f32.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {

absl::StatusOr<ConvGeometry> MakeConvGeometry(const AttributeMap& attrs, absl::Span<const int64_t> x,
                                              absl::Span<const int64_t> w, const std::string& label) {
  const int64_t spatial = static_cast<int64_t>(x.size()) - 2;
  if (spatial < 1 || spatial > 3) {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to run node %s: convolution must have 1 to 3 spatial dimensions, got %d", label, spatial));
  }
  auto p = ParseWindow(attrs, spatial, std::vector<int64_t>(w.begin() + 2, w.end()), label);
  if (!p.ok()) return p.status();
  std::vector<int64_t> in(x.begin() + 2, x.end());
  auto out = WindowOutputSizes(*p, in, label);
  if (!out.ok()) return out.status();
  ConvGeometry c;
  c.n = x[0];
  c.cin = x[1];
  c.cout = w[0];
  c.group = p->group;
  c.cin_g = w[1];
  c.cout_g = c.cout / c.group;
  const int64_t off = 3 - spatial;
  for (int i = 0; i < 3; ++i) {
    const int64_t j = i - off;
    const bool real = j >= 0;
    c.in[i] = real ? in[j] : 1;
    c.out[i] = real ? (*out)[j] : 1;
    c.k[i] = real ? p->kernel[j] : 1;
    c.s[i] = real ? p->strides[j] : 1;
    c.d[i] = real ? p->dilations[j] : 1;
    c.p[i] = real ? p->pads[j] : 0;
  }
  return c;
}

void FillNhwcRowsF32(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col) {
  // Short runs (an RGB stem's 3 or 9 floats) copy faster in a loop than by a call.
  auto copy = [](float* dst, const float* src, int64_t n) {
    if (n >= 32) {
      std::memcpy(dst, src, n * sizeof(float));
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
    }
  };
  auto zero = [](float* dst, int64_t n) { std::fill_n(dst, n, 0.f); };
  FillNhwcRows(c, x, p0, p1, col, copy, zero);
}

void Im2ColF32(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col, int64_t ld) {
  Im2Col(c, x, p0, p1, col, ld, [](float* dst, const float* src, int64_t n, int64_t stride) {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i * stride];
  });
}

std::vector<uint16_t> Im2ColSame2dMasks(const ConvGeometry& c) {
  const int64_t h = c.in[1], w = c.in[2], plane = h * w, blocks = (plane + 15) / 16;
  std::vector<uint16_t> masks(c.k[1] * c.k[2] * blocks, 0);
  for (int64_t kh = 0; kh < c.k[1]; ++kh) {
    for (int64_t kw = 0; kw < c.k[2]; ++kw) {
      uint16_t* m = masks.data() + (kh * c.k[2] + kw) * blocks;
      for (int64_t p = 0; p < plane; ++p) {
        const int64_t ih = p / w + kh - c.p[1], iw = p % w + kw - c.p[2];
        if (ih >= 0 && ih < h && iw >= 0 && iw < w) m[p / 16] |= static_cast<uint16_t>(1u << (p % 16));
      }
    }
  }
  return masks;
}

}  // namespace kvant::cpu
