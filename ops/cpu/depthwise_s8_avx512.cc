// Depthwise INT8 convolution for AVX-512BW: the pair-image row (u8 pairs
// widened into int32 lanes) and the output row, 16 channels per vector
// (NHWC), one VPMADDWD per horizontal tap pair with its weights in registers.
// Compiled with -mavx512f -mavx512bw.
#include <immintrin.h>

#include "ops/cpu/conv_s8.h"

namespace kvant::cpu {
namespace ref {
void DepthwiseRowS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_pairs, int32_t* acc);
}  // namespace ref

namespace avx512 {
namespace {

// Channel vectors outer, output columns inner: the weight pairs of a vector
// stay in registers. kTerms > 0 fixes kh * pairs per row (3x3: 6, 5x5: 15)
// so that the loop unrolls; 0 reads it from the shape (at most 16 terms).
template <int kTerms>
void Columns(const ConvS8Shape& s, const int32_t* const* row_of, const int64_t* off, int64_t terms,
             const int32_t* w_pairs, int32_t* acc) {
  constexpr int kMaxTerms = 16;
  const int64_t c = s.cin, n_terms = kTerms ? kTerms : terms, out_w = s.out_w(), step = s.sw * c;
  for (int64_t ch = 0; ch < c; ch += 16) {
    const int64_t n = std::min<int64_t>(16, c - ch);
    const __mmask16 m = n == 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
    __m512i w[kMaxTerms];
#pragma GCC unroll 16
    for (int64_t t = 0; t < n_terms; ++t) w[t] = _mm512_maskz_loadu_epi32(m, w_pairs + t * c + ch);
    const int32_t* base[kMaxTerms];
#pragma GCC unroll 16
    for (int64_t t = 0; t < n_terms; ++t) base[t] = row_of[t] + off[t] + ch;
    for (int64_t ow = 0; ow < out_w; ++ow) {
      __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 16
      for (int64_t t = 0; t < n_terms; ++t) {
        sum = _mm512_add_epi32(sum, _mm512_madd_epi16(_mm512_maskz_loadu_epi32(m, base[t] + ow * step), w[t]));
      }
      _mm512_mask_storeu_epi32(acc + ow * c + ch, m, sum);
    }
  }
}

}  // namespace

void DepthwiseRowS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_pairs, int32_t* acc) {
  constexpr int64_t kMaxTerms = 16;
  const int32_t* row_of[kMaxTerms];
  int64_t off[kMaxTerms];
  const int64_t terms = DepthwiseTerms(s, 2, s.cin, rows, kMaxTerms, row_of, off);
  if (terms < 0) return ref::DepthwiseRowS8(s, rows, w_pairs, acc);
  if (terms == 6) return Columns<6>(s, row_of, off, terms, w_pairs, acc);
  if (terms == 15) return Columns<15>(s, row_of, off, terms, w_pairs, acc);
  Columns<0>(s, row_of, off, terms, w_pairs, acc);
}

namespace {

// n contiguous lanes, the last vector masked.
void PairRun(const uint8_t* x, int64_t n, int64_t partner, int32_t* p) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i lo = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    const __m512i hi = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + partner)));
    _mm512_storeu_si512(p + i, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512i lo = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + i));
    const __m512i hi = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + i + partner));
    _mm512_mask_storeu_epi32(p + i, m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
}

}  // namespace

void PairRowS8(const uint8_t* x, int64_t pixels, int64_t c, int64_t step, int64_t partner, int32_t* p) {
  if (step == 1) return PairRun(x, pixels * c, partner, p);
  for (int64_t u = 0; u < pixels; ++u) PairRun(x + u * step * c, c, partner, p + u * step * c);
}

}  // namespace avx512
}  // namespace kvant::cpu
