// Depthwise INT8 convolution for AVX-512 VNNI: each int32 lane of the lane
// image holds four horizontally adjacent taps of one channel as bytes, so
// one VPDPBUSD (u8 x s8, exact int32 sums) applies four taps to 16
// channels; a 3x3 kernel is three per output vector. Compiled with
// -mavx512f -mavx512bw -mavx512vnni.
#include <immintrin.h>

#include "ops/cpu/conv_s8.h"

namespace kvant::cpu {
namespace ref {
void DepthwiseLanes4RowS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes, int32_t* acc);
}  // namespace ref

namespace avx512vnni {
namespace {

// kTerms > 0 fixes kh * lanes (3x3: 3, 5x5: 10) so that the loop unrolls.
template <int kTerms>
void Columns(const ConvS8Shape& s, const int32_t* const* row_of, const int64_t* off, int64_t terms,
             const int32_t* w_lanes, int32_t* acc) {
  constexpr int kMaxTerms = 16;
  const int64_t c = s.cin, n_terms = kTerms ? kTerms : terms, out_w = s.out_w(), step = s.sw * c;
  for (int64_t ch = 0; ch < c; ch += 16) {
    const int64_t n = std::min<int64_t>(16, c - ch);
    const __mmask16 m = n == 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
    __m512i w[kMaxTerms];
    const int32_t* base[kMaxTerms];
#pragma GCC unroll 16
    for (int64_t t = 0; t < n_terms; ++t) {
      w[t] = _mm512_maskz_loadu_epi32(m, w_lanes + t * c + ch);
      base[t] = row_of[t] + off[t] + ch;
    }
    for (int64_t ow = 0; ow < out_w; ++ow) {
      __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 16
      for (int64_t t = 0; t < n_terms; ++t) {
        sum = _mm512_dpbusd_epi32(sum, _mm512_maskz_loadu_epi32(m, base[t] + ow * step), w[t]);
      }
      _mm512_mask_storeu_epi32(acc + ow * c + ch, m, sum);
    }
  }
}

}  // namespace

void DepthwiseRowS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes, int32_t* acc) {
  constexpr int64_t kMaxTerms = 16;
  const int32_t* row_of[kMaxTerms];
  int64_t off[kMaxTerms];
  const int64_t terms = DepthwiseTerms(s, 4, rows, kMaxTerms, row_of, off);
  if (terms < 0) return ref::DepthwiseLanes4RowS8(s, rows, w_lanes, acc);
  if (terms == 3) return Columns<3>(s, row_of, off, terms, w_lanes, acc);
  if (terms == 10) return Columns<10>(s, row_of, off, terms, w_lanes, acc);
  Columns<0>(s, row_of, off, terms, w_lanes, acc);
}

void LaneRowS8(const uint8_t* x, int64_t n, int64_t partner, int32_t* p) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i v = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) {
      const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + t * partner)));
      v = _mm512_or_si512(v, _mm512_slli_epi32(b, 8 * t));
    }
    _mm512_storeu_si512(p + i, v);
  }
  for (; i < n; ++i) {
    uint32_t lane = 0;
    for (int t = 0; t < 4; ++t) lane |= uint32_t{x[i + t * partner]} << (8 * t);
    p[i] = static_cast<int32_t>(lane);
  }
}

}  // namespace avx512vnni
}  // namespace kvant::cpu
