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

}  // namespace kvant::cpu::avx512vbmi
