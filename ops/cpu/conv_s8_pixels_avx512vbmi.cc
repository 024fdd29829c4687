// An RGB image's pixels as the 4-byte pixels of the direct convolution's
// padded image (conv_s8_direct.cc), with AVX-512 VBMI: 16 pixels per step,
// one VPERMT2B over 128 input bytes (every pixel, or every other one for a
// stride-2 phase) and the zero point blended into each fourth byte. Loads
// are masked to the row. Compiled with -mavx512vbmi.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace kvant::cpu::avx512vbmi {

void ExpandPixels3To4(const uint8_t* src, int64_t count, int64_t step, uint8_t pad, uint8_t* dst) {
  alignas(64) uint8_t idx[64];
  for (int j = 0; j < 64; ++j) idx[j] = static_cast<uint8_t>(j % 4 < 3 ? (j / 4) * step * 3 + j % 4 : 0);
  const __m512i index = _mm512_load_si512(idx);
  const __m512i padv = _mm512_set1_epi8(static_cast<char>(pad));
  constexpr __mmask64 kData = 0x7777777777777777ull;
  auto low_bits = [](int64_t n) { return n >= 64 ? ~__mmask64{0} : n <= 0 ? __mmask64{0} : (__mmask64{1} << n) - 1; };
  for (int64_t q = 0; q < count; q += 16) {
    const int64_t n = std::min<int64_t>(16, count - q), need = ((n - 1) * step + 1) * 3;
    const uint8_t* p = src + q * step * 3;
    const __m512i lo = _mm512_maskz_loadu_epi8(low_bits(need), p);
    const __m512i hi = _mm512_maskz_loadu_epi8(low_bits(need - 64), p + 64);
    const __m512i v = _mm512_mask_blend_epi8(kData, padv, _mm512_permutex2var_epi8(lo, index, hi));
    _mm512_mask_storeu_epi8(dst + 4 * q, low_bits(4 * n), v);
  }
}

}  // namespace kvant::cpu::avx512vbmi
