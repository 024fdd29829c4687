// Rows of the quantized squeeze-excitation operators for AVX-512
// (ops/cpu/qlinear_s8.cc), over channels under a mask, so a row of 88 or
// 200 channels costs no scalar remainder:
//  - QLinearMul by a per-channel gate, 64 values per step, the scalar loop's
//    arithmetic in its order: round_half_even(rm * ((v - zv) * g)) + zc,
//    saturated by the packs;
//  - QLinearGlobalAveragePool's channel sums over NHWC pixels, 64 channels
//    per pass in int32;
//  - QLinearAdd / QLinearMul of equal-length rows, 64 values per step: the
//    float arithmetic of the scalar loop, then the packs
//    (ops/cpu/pack_bytes_avx512.h) and one VPERMD back to element order (a
//    third fewer operations than converting and clamping 16 values at a time).
// Compiled with -mavx512f -mavx512bw.
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "ops/cpu/pack_bytes_avx512.h"
#include "ops/cpu/quantize_common.h"

namespace kvant::cpu::avx512 {
namespace {

// c[i] for i < n, 64 per step: value(at, mask) gives the float results of
// elements at .. at + 15 (mask: those below n), which are rounded, given the
// zero point and saturated by the packs, and stored back in element order.
template <typename T, typename Value>
inline void PackRows64(T* c, int64_t n, float zc, Value value) {
  const __m512i zc16 = _mm512_set1_epi16(static_cast<int16_t>(zc));
  const __m512i order = pack_bytes::ElementOrder();
  for (int64_t i = 0; i < n; i += 64) {
    const int64_t left = n - i;
    const __mmask64 m = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
    __m512i r[4];
#pragma GCC unroll 4
    for (int z = 0; z < 4; ++z) r[z] = pack_bytes::Rounded(value(i + 16 * z, static_cast<__mmask16>(m >> (16 * z))));
    const __m512i bytes = pack_bytes::Bytes<std::is_signed_v<T>>(pack_bytes::Words(r[0], r[1], zc16),
                                                                 pack_bytes::Words(r[2], r[3], zc16));
    _mm512_mask_storeu_epi8(c + i, m, _mm512_permutexvar_epi32(order, bytes));
  }
}

// Bytes at p under mask m, widened to floats.
template <typename T>
inline __m512 Widen(const T* p, __mmask16 m) {
  const __m128i bytes = _mm_maskz_loadu_epi8(m, p);
  return _mm512_cvtepi32_ps(std::is_signed_v<T> ? _mm512_cvtepi8_epi32(bytes) : _mm512_cvtepu8_epi32(bytes));
}

template <typename T>
void GateRow(const T* v, const float* g, T* c, int64_t n, float zv, float rm, float zc) {
  const __m512 vzv = _mm512_set1_ps(zv), vrm = _mm512_set1_ps(rm);
  PackRows64(c, n, zc, [&](int64_t at, __mmask16 m) {
    const __m512 x = _mm512_sub_ps(Widen(v + at, m), vzv);
    return _mm512_mul_ps(vrm, _mm512_mul_ps(x, _mm512_maskz_loadu_ps(m, g + at)));
  });
}

template <typename T, bool kAdd>
void SameRows(const T* a, const T* b, T* c, int64_t n, float za, float zb, float zc, float ra, float rb) {
  const __m512 vza = _mm512_set1_ps(za), vzb = _mm512_set1_ps(zb), vra = _mm512_set1_ps(ra), vrb = _mm512_set1_ps(rb);
  PackRows64(c, n, zc, [&](int64_t at, __mmask16 m) {
    const __m512 x = _mm512_sub_ps(Widen(a + at, m), vza);
    const __m512 y = _mm512_sub_ps(Widen(b + at, m), vzb);
    return kAdd ? _mm512_fmadd_ps(vrb, y, _mm512_mul_ps(vra, x)) : _mm512_mul_ps(vra, _mm512_mul_ps(x, y));
  });
}

template <typename T>
void SumPixels(const T* x, int64_t pixels, int64_t channels, int32_t* sums) {
  for (int64_t c0 = 0; c0 < channels; c0 += 64) {
    const int64_t left = channels - c0;
    const __mmask64 m = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    for (int64_t p = 0; p < pixels; ++p) {
      const __m512i v = _mm512_maskz_loadu_epi8(m, x + p * channels + c0);
      // (the lane index must be an immediate: four statements, not a loop)
      const __m128i b[4] = {_mm512_castsi512_si128(v), _mm512_extracti32x4_epi32(v, 1),
                            _mm512_extracti32x4_epi32(v, 2), _mm512_extracti32x4_epi32(v, 3)};
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        acc[q] = _mm512_add_epi32(acc[q], std::is_signed_v<T> ? _mm512_cvtepi8_epi32(b[q]) : _mm512_cvtepu8_epi32(b[q]));
      }
    }
    for (int q = 0; q < 4 && 16 * q < left; ++q) {
      const int64_t n = std::min<int64_t>(16, left - 16 * q);
      const __mmask16 mq = n == 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << n) - 1);
      int32_t* s = sums + c0 + 16 * q;
      _mm512_mask_storeu_epi32(s, mq, _mm512_add_epi32(_mm512_maskz_loadu_epi32(mq, s), acc[q]));
    }
  }
}

}  // namespace

void SumPixelsU8(const uint8_t* x, int64_t pixels, int64_t channels, int32_t* sums) {
  SumPixels<uint8_t>(x, pixels, channels, sums);
}
void SumPixelsS8(const int8_t* x, int64_t pixels, int64_t channels, int32_t* sums) {
  SumPixels<int8_t>(x, pixels, channels, sums);
}

void GateRowU8(const uint8_t* v, const float* g, uint8_t* c, int64_t n, float zv, float rm, float zc) {
  GateRow<uint8_t>(v, g, c, n, zv, rm, zc);
}
void SameRowsU8(bool add, const uint8_t* a, const uint8_t* b, uint8_t* c, int64_t n, float za, float zb, float zc,
                float ra, float rb) {
  (add ? SameRows<uint8_t, true> : SameRows<uint8_t, false>)(a, b, c, n, za, zb, zc, ra, rb);
}
void SameRowsS8(bool add, const int8_t* a, const int8_t* b, int8_t* c, int64_t n, float za, float zb, float zc,
                float ra, float rb) {
  (add ? SameRows<int8_t, true> : SameRows<int8_t, false>)(a, b, c, n, za, zb, zc, ra, rb);
}

void GateRowS8(const int8_t* v, const float* g, int8_t* c, int64_t n, float zv, float rm, float zc) {
  GateRow<int8_t>(v, g, c, n, zv, rm, zc);
}

}  // namespace kvant::cpu::avx512
