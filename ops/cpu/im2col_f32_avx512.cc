// im2col for stride-1, same-size 2-D convolutions with AVX-512: each column
// row is the input plane shifted by (kh - pad_h, kw - pad_w); 16 positions
// are copied with one masked load whose mask marks the positions that read
// inside the input (masked-out lanes never touch memory, so the shift may
// point before or after the plane). Also the NHWC row filler
// (FillNhwcRows) with masked moves. Compiled with -mavx512f.
#include <immintrin.h>

#include "ops/cpu/im2col_f32.h"

namespace kvant::cpu::avx512 {

void FillNhwcRowsF32(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col) {
  auto copy = [](float* dst, const float* src, int64_t n) {
    for (; n >= 16; n -= 16, dst += 16, src += 16) _mm512_storeu_ps(dst, _mm512_loadu_ps(src));
    if (n > 0) {
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      _mm512_mask_storeu_ps(dst, m, _mm512_maskz_loadu_ps(m, src));
    }
  };
  auto zero = [](float* dst, int64_t n) {
    for (; n >= 16; n -= 16, dst += 16) _mm512_storeu_ps(dst, _mm512_setzero_ps());
    if (n > 0) _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << n) - 1), _mm512_setzero_ps());
  };
  FillNhwcRows(c, x, p0, p1, col, copy, zero);
}

void Im2ColF32(const ConvGeometry& c, const float* x, int64_t p0, int64_t p1, float* col, int64_t ld) {
  auto copy = [](float* dst, const float* src, int64_t n, int64_t stride) {
    auto first = [](int64_t k) { return k >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << k) - 1); };
    if (stride == 1) {
      for (; n >= 16; n -= 16, dst += 16, src += 16) _mm512_storeu_ps(dst, _mm512_loadu_ps(src));
      if (n > 0) _mm512_mask_storeu_ps(dst, first(n), _mm512_maskz_loadu_ps(first(n), src));
    } else if (stride == 2) {
      // dst[i] = src[2 i]: 16 outputs read src[0..30], the even lanes of two
      // vectors (the second masked to 15 lanes: src[31] may lie past the row).
      const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      for (; n >= 16; n -= 16, dst += 16, src += 32) {
        const __m512 lo = _mm512_loadu_ps(src), hi = _mm512_maskz_loadu_ps(0x7FFF, src + 16);
        _mm512_storeu_ps(dst, _mm512_permutex2var_ps(lo, even, hi));
      }
      if (n > 0) {
        const int64_t used = 2 * n - 1;  // src[0 .. 2n - 2]
        const __m512 lo = _mm512_maskz_loadu_ps(first(used), src);
        const __m512 hi = _mm512_maskz_loadu_ps(first(std::max<int64_t>(0, used - 16)), src + 16);
        _mm512_mask_storeu_ps(dst, first(n), _mm512_permutex2var_ps(lo, even, hi));
      }
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i * stride];
    }
  };
  Im2Col(c, x, p0, p1, col, ld, copy);
}

void Im2ColSame2dF32(const ConvGeometry& c, const float* x, const uint16_t* masks, int64_t p0, int64_t p1,
                     float* col, int64_t ld) {
  const int64_t w = c.in[2], plane = c.in[1] * w, blocks = (plane + 15) / 16;
  const int64_t b0 = p0 / 16, b1 = (p1 + 15) / 16;
  const __mmask16 tail = p1 % 16 ? static_cast<__mmask16>((1u << (p1 % 16)) - 1) : 0xFFFF;
  for (int64_t ci = 0; ci < c.cin_g; ++ci) {
    const float* xp = x + ci * plane;
    for (int64_t kh = 0; kh < c.k[1]; ++kh) {
      for (int64_t kw = 0; kw < c.k[2]; ++kw) {
        float* dst = col + ((ci * c.k[1] + kh) * c.k[2] + kw) * ld - p0;
        const float* src = xp + (kh - c.p[1]) * w + (kw - c.p[2]);
        const uint16_t* m = masks + (kh * c.k[2] + kw) * blocks;
        int64_t b = b0;
        for (; b + 1 < b1; ++b) _mm512_storeu_ps(dst + b * 16, _mm512_maskz_loadu_ps(m[b], src + b * 16));
        _mm512_mask_storeu_ps(dst + b * 16, tail, _mm512_maskz_loadu_ps(m[b] & tail, src + b * 16));
      }
    }
  }
}

}  // namespace kvant::cpu::avx512
