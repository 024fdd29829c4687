// Byte table lookup with AVX-512 VBMI (see lookup_u8.h). Compiled with
// -mavx512f -mavx512bw -mavx512vbmi.
#include <immintrin.h>

#include "ops/cpu/lookup_u8.h"

namespace kvant::cpu::avx512vbmi {

void LookupU8(const uint8_t* table, const uint8_t* x, int64_t n, uint8_t* y) {
  const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
  const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
  for (int64_t i = 0; i < n; i += 64) {
    const __mmask64 m = n - i >= 64 ? ~__mmask64{0} : (__mmask64{1} << (n - i)) - 1;
    const __m512i idx = _mm512_maskz_loadu_epi8(m, x + i);
    const __m512i lo = _mm512_permutex2var_epi8(t0, idx, t1);  // entries 0-127 by bits 0-6
    const __m512i hi = _mm512_permutex2var_epi8(t2, idx, t3);  // entries 128-255
    _mm512_mask_storeu_epi8(y + i, m, _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi));
  }
}

void LookupRowsU8(const uint8_t* table, const uint8_t* x, int64_t rows, int64_t len, int64_t x_stride, uint8_t* y,
                  int64_t y_stride) {
  const __m512i t0 = table ? _mm512_loadu_si512(table) : _mm512_setzero_si512();
  const __m512i t1 = table ? _mm512_loadu_si512(table + 64) : t0;
  const __m512i t2 = table ? _mm512_loadu_si512(table + 128) : t0;
  const __m512i t3 = table ? _mm512_loadu_si512(table + 192) : t0;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* xr = x + r * x_stride;
    uint8_t* yr = y + r * y_stride;
    for (int64_t i = 0; i < len; i += 64) {
      const __mmask64 m = len - i >= 64 ? ~__mmask64{0} : (__mmask64{1} << (len - i)) - 1;
      __m512i v = _mm512_maskz_loadu_epi8(m, xr + i);
      if (table != nullptr) {
        v = _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), _mm512_permutex2var_epi8(t0, v, t1),
                                   _mm512_permutex2var_epi8(t2, v, t3));
      }
      _mm512_mask_storeu_epi8(yr + i, m, v);
    }
  }
}

void LookupChannelsU8(const uint8_t* tables, int64_t c, const uint8_t* x, int64_t n, uint8_t* y) {
  alignas(64) int32_t first[16];
  for (int i = 0; i < 16; ++i) first[i] = static_cast<int32_t>(i % c);
  __m512i ch = _mm512_load_si512(first);  // each lane's channel, < c
  const __m512i step = _mm512_set1_epi32(static_cast<int32_t>(16 % c)), cv = _mm512_set1_epi32(static_cast<int32_t>(c));
  const auto* base = reinterpret_cast<const int*>(tables);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512i xv = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, x + i));
    const __m512i idx = _mm512_add_epi32(_mm512_slli_epi32(ch, 8), xv);
    const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base, 1);
    _mm512_mask_cvtepi32_storeu_epi8(y + i, m, v);
    ch = _mm512_add_epi32(ch, step);
    ch = _mm512_mask_sub_epi32(ch, _mm512_cmpge_epi32_mask(ch, cv), ch, cv);
  }
}

}  // namespace kvant::cpu::avx512vbmi
