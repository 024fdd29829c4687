// DynamicQuantizeLinear's two passes for AVX-512F: the range (min and max,
// NaN ignored as the scalar fmin/fmax do) and x / scale rounded half to even
// plus the zero point, saturated to u8. Bit-exact with the scalar versions in
// quantize_s8.cc (same division, same rounding). And QuantizeLinear's row,
// bit-exact with its scalar loop but mostly without the division (VDIVPS
// takes 16 cycles per vector here): x times 1 / scale differs from x / scale
// by under 2^-22 relative, so it rounds to the same integer unless one of
// them lies within 2^-11 of a half (the few vectors that have such a value
// divide); beyond 1024 in magnitude the result saturates either way.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace kvant::cpu::avx512 {
namespace {

// The smallest and largest of a vector's lanes, which hold no NaN (GCC 12's
// _mm512_reduce_min_ps reads an undefined vector: a -Wuninitialized warning
// in every build). Once per call.
float Lanes(__m512 v, bool largest) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float r = lanes[0];
  for (int i = 1; i < 16; ++i) r = largest ? std::max(r, lanes[i]) : std::min(r, lanes[i]);
  return r;
}

}  // namespace

void RangeF32(const float* x, int64_t n, float* lo, float* hi) {
  __m512 vlo = _mm512_setzero_ps(), vhi = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    // min/max return the second operand when either is NaN: keep the running value.
    vlo = _mm512_min_ps(v, vlo);
    vhi = _mm512_max_ps(v, vhi);
  }
  float l = Lanes(vlo, false), h = Lanes(vhi, true);
  for (; i < n; ++i) {
    l = std::fmin(l, x[i]);
    h = std::fmax(h, x[i]);
  }
  *lo = l;
  *hi = h;
}

void QuantizeU8(const float* x, int64_t n, float scale, float zero_point, uint8_t* y) {
  const __m512 vs = _mm512_set1_ps(scale), vz = _mm512_set1_ps(zero_point);
  const __m512 v0 = _mm512_setzero_ps(), v255 = _mm512_set1_ps(255.f);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 q = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(x + i), vs),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_add_ps(q, vz);
    q = _mm512_min_ps(_mm512_max_ps(q, v0), v255);  // NaN -> 0 (max returns v0)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)));
  }
  for (; i < n; ++i) {
    const float q = std::nearbyint(x[i] / scale) + zero_point;
    y[i] = static_cast<uint8_t>(q >= 255.f ? 255.f : (q > 0.f ? q : 0.f));
  }
}

namespace {

template <typename T>
void QuantizeRow(const float* x, int64_t n, float scale, float zero_point, T* y) {
  constexpr float kLoT = std::is_signed_v<T> ? -128.f : 0.f, kHiT = std::is_signed_v<T> ? 127.f : 255.f;
  const float inv = 1.f / scale;
  // A reciprocal that is not a normal float (scale subnormal or huge) loses
  // the bound above: divide throughout.
  const bool divide = !(std::fabs(inv) >= 0x1p-126f && std::fabs(inv) < 0x1p127f);
  const __m512 vs = _mm512_set1_ps(scale), vinv = _mm512_set1_ps(inv), vz = _mm512_set1_ps(zero_point);
  const __m512 lo = _mm512_set1_ps(kLoT), hi = _mm512_set1_ps(kHiT), near = _mm512_set1_ps(0.5f - 0x1p-11f);
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    __m512 q;
    if (divide) {
      q = _mm512_roundscale_ps(_mm512_div_ps(v, vs), kRound);
    } else {
      const __m512 r = _mm512_mul_ps(v, vinv);
      q = _mm512_roundscale_ps(r, kRound);
      const __m512 off = _mm512_abs_ps(_mm512_sub_ps(r, q));  // NaN for NaN and infinities: not near
      if (_mm512_cmp_ps_mask(off, near, _CMP_GT_OQ) != 0) q = _mm512_roundscale_ps(_mm512_div_ps(v, vs), kRound);
    }
    q = _mm512_add_ps(q, vz);
    q = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(q, q, _CMP_UNORD_Q), q, vz);  // NaN -> the zero point
    q = _mm512_min_ps(_mm512_max_ps(q, lo), hi);
    _mm_mask_storeu_epi8(y + i, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)));
  }
}

}  // namespace

void QuantizeRowU8(const float* x, int64_t n, float scale, float zero_point, uint8_t* y) {
  QuantizeRow(x, n, scale, zero_point, y);
}
void QuantizeRowS8(const float* x, int64_t n, float scale, float zero_point, int8_t* y) {
  QuantizeRow(x, n, scale, zero_point, y);
}

}  // namespace kvant::cpu::avx512
