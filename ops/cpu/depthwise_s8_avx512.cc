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
namespace {

// Channel vectors outer, output columns inner: the weight pairs of a vector
// stay in registers. kPairs > 0 fixes the pair count (3x3: 5, 5x5: 13) so
// the tap loop unrolls; 0 reads it from `taps` (at most 13 pairs).
template <int kPairs>
void Columns(const ConvS8Shape& s, const uint8_t* x, const int64_t* off, int64_t taps, const int32_t* w_pairs,
             int32_t* acc) {
  constexpr int kMaxPairs = 13;
  const int64_t c = s.cin, pairs = kPairs ? kPairs : (taps + 1) / 2, out_w = s.out_w(), step = s.sw * c;
  for (int64_t ch = 0; ch < c; ch += 16) {
    const int64_t n = std::min<int64_t>(16, c - ch);
    const __mmask16 m = n == 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
    __m512i w[kMaxPairs];
#pragma GCC unroll 13
    for (int64_t p = 0; p < pairs; ++p) w[p] = _mm512_maskz_loadu_epi32(m, w_pairs + p * c + ch);
    const uint8_t* base = x + ch;
    for (int64_t ow = 0; ow < out_w; ++ow, base += step) {
      __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 13
      for (int64_t p = 0; p < pairs; ++p) {
        const __m512i x0 = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, base + off[2 * p]));
        __m512i v = x0;
        if (2 * p + 1 < taps) {
          const __m512i x1 = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, base + off[2 * p + 1]));
          v = _mm512_or_si512(x0, _mm512_slli_epi32(x1, 16));
        }
        sum = _mm512_add_epi32(sum, _mm512_madd_epi16(v, w[p]));
      }
      _mm512_mask_storeu_epi32(acc + ow * c + ch, m, sum);
    }
  }
}

}  // namespace

void DepthwiseRowS8(const ConvS8Shape& s, const uint8_t* x, int64_t oh, const int32_t* w_pairs, int32_t* acc) {
  const int64_t c = s.cin, taps = s.kh * s.kw, pairs = (taps + 1) / 2, row = (s.w + s.pad_l + s.pad_r) * c;
  constexpr int64_t kMaxTaps = 64;
  if (taps > kMaxTaps) return ref::DepthwiseRowS8(s, x, oh, w_pairs, acc);
  // Offsets of the taps from the output column's first input.
  int64_t off[kMaxTaps];
  for (int64_t t = 0; t < taps; ++t) off[t] = (oh * s.sh + (t / s.kw) * s.dh) * row + (t % s.kw) * s.dw * c;
  if (taps == 9) return Columns<5>(s, x, off, taps, w_pairs, acc);
  if (taps == 25) return Columns<13>(s, x, off, taps, w_pairs, acc);
  if ((taps + 1) / 2 > 13) return ref::DepthwiseRowS8(s, x, oh, w_pairs, acc);
  Columns<0>(s, x, off, taps, w_pairs, acc);
}

}  // namespace avx512
}  // namespace kvant::cpu
