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
// With kRequant the sums go through the float requantization of
// avx512::GemmS8Epilogue (same operations, same order) to u8/s8 in y;
// else they are stored to acc.
template <int kTerms, bool kRequant = false>
void Columns(const ConvS8Shape& s, const int32_t* const* row_of, const int64_t* off, int64_t terms,
             const int32_t* w_lanes, int32_t* acc, const GemmS8Output* out = nullptr, void* y = nullptr) {
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
    __m512i col_offset = _mm512_setzero_si512(), zp = col_offset;
    __m512 scale = _mm512_setzero_ps(), flo = scale, fhi = scale;
    if constexpr (kRequant) {
      col_offset = _mm512_maskz_loadu_epi32(m, out->col_offset + ch);
      scale = _mm512_maskz_loadu_ps(m, out->scale + ch);
      zp = _mm512_set1_epi32(out->zero_point);
      flo = _mm512_cvtepi32_ps(_mm512_set1_epi32(out->lo - out->zero_point));
      fhi = _mm512_cvtepi32_ps(_mm512_set1_epi32(out->hi - out->zero_point));
    }
    for (int64_t ow = 0; ow < out_w; ++ow) {
      __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 16
      for (int64_t t = 0; t < n_terms; ++t) {
        sum = _mm512_dpbusd_epi32(sum, _mm512_maskz_loadu_epi32(m, base[t] + ow * step), w[t]);
      }
      if constexpr (kRequant) {
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(sum, col_offset)), scale);
        f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
        const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
        _mm_mask_storeu_epi8(static_cast<uint8_t*>(y) + ow * c + ch, m, _mm512_cvtepi32_epi8(q));
      } else {
        _mm512_mask_storeu_epi32(acc + ow * c + ch, m, sum);
      }
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

namespace {

// n contiguous lanes, the last vector masked.
void LaneRun(const uint8_t* x, int64_t n, int64_t partner, int32_t* p) {
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
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512i v = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) {
      const __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + i + t * partner));
      v = _mm512_or_si512(v, _mm512_slli_epi32(b, 8 * t));
    }
    _mm512_mask_storeu_epi32(p + i, m, v);
  }
}

}  // namespace

bool DepthwiseRowRequantS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes,
                           const GemmS8Output& out, void* y) {
  if (out.kind != GemmS8Output::Kind::kU8 && out.kind != GemmS8Output::Kind::kS8) return false;
  if (out.m0 != nullptr || out.row_sum != nullptr) return false;  // fixed point, zero-point rows: the epilogue
  constexpr int64_t kMaxTerms = 16;
  const int32_t* row_of[kMaxTerms];
  int64_t off[kMaxTerms];
  const int64_t terms = DepthwiseTerms(s, 4, rows, kMaxTerms, row_of, off);
  if (terms < 0) return false;
  if (terms == 3) {
    Columns<3, true>(s, row_of, off, terms, w_lanes, nullptr, &out, y);
  } else if (terms == 10) {
    Columns<10, true>(s, row_of, off, terms, w_lanes, nullptr, &out, y);
  } else {
    Columns<0, true>(s, row_of, off, terms, w_lanes, nullptr, &out, y);
  }
  return true;
}

void LaneRowS8(const uint8_t* x, int64_t pixels, int64_t c, int64_t step, int64_t partner, int32_t* p) {
  if (step == 1) return LaneRun(x, pixels * c, partner, p);
  for (int64_t u = 0; u < pixels; ++u) LaneRun(x + u * step * c, c, partner, p + u * step * c);
}

}  // namespace avx512vnni
}  // namespace kvant::cpu
