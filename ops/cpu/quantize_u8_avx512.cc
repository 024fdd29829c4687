// DynamicQuantizeLinear's two passes for AVX-512F: the range (min and max,
// NaN ignored as the scalar fmin/fmax do) and x / scale rounded half to even
// plus the zero point, saturated to u8. Bit-exact with the scalar versions in
// quantize_s8.cc (same division, same rounding). Compiled with -mavx512f.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

namespace kvant::cpu::avx512 {

void RangeF32(const float* x, int64_t n, float* lo, float* hi) {
  __m512 vlo = _mm512_setzero_ps(), vhi = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    // min/max return the second operand when either is NaN: keep the running value.
    vlo = _mm512_min_ps(v, vlo);
    vhi = _mm512_max_ps(v, vhi);
  }
  float l = _mm512_reduce_min_ps(vlo), h = _mm512_reduce_max_ps(vhi);
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

}  // namespace kvant::cpu::avx512
