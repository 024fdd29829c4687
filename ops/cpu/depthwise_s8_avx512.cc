// Depthwise INT8 convolution row for AVX-512BW: 16 channels per vector (NHWC),
// two taps per VPMADDWD: each int32 lane holds the two taps' u8 inputs as
// 16-bit halves, multiplied by the channel's two s8 weights (prepared the same
// way) and summed exactly into int32. Compiled with -mavx512f -mavx512bw.
#include <immintrin.h>

#include "ops/cpu/conv_s8.h"

namespace kvant::cpu {
namespace ref {
void DepthwiseRowS8(const ConvS8Shape& s, const uint8_t* x, int64_t oh, const int32_t* w_pairs, int32_t* acc);
}  // namespace ref

namespace avx512 {

void DepthwiseRowS8(const ConvS8Shape& s, const uint8_t* x, int64_t oh, const int32_t* w_pairs, int32_t* acc) {
  const int64_t c = s.cin, taps = s.kh * s.kw, pairs = (taps + 1) / 2, row = (s.w + s.pad_l + s.pad_r) * c;
  constexpr int64_t kMaxTaps = 64;
  if (taps > kMaxTaps) return ref::DepthwiseRowS8(s, x, oh, w_pairs, acc);
  // Offsets of the taps from the output column's first input.
  int64_t off[kMaxTaps];
  for (int64_t t = 0; t < taps; ++t) off[t] = (oh * s.sh + (t / s.kw) * s.dh) * row + (t % s.kw) * s.dw * c;
  for (int64_t ow = 0; ow < s.out_w(); ++ow) {
    const uint8_t* base = x + ow * s.sw * c;
    for (int64_t ch = 0; ch < c; ch += 16) {
      const int64_t n = std::min<int64_t>(16, c - ch);
      const __mmask16 m = n == 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
      __m512i sum = _mm512_setzero_si512();
      for (int64_t p = 0; p < pairs; ++p) {
        const __m512i x0 = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, base + off[2 * p] + ch));
        __m512i v = x0;
        if (2 * p + 1 < taps) {
          const __m512i x1 = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, base + off[2 * p + 1] + ch));
          v = _mm512_or_si512(x0, _mm512_slli_epi32(x1, 16));
        }
        sum = _mm512_add_epi32(sum, _mm512_madd_epi16(v, _mm512_maskz_loadu_epi32(m, w_pairs + p * c + ch)));
      }
      _mm512_mask_storeu_epi32(acc + ow * c + ch, m, sum);
    }
  }
}

}  // namespace avx512
}  // namespace kvant::cpu
