// INT8 GEMM for outputs of at most 8 columns (a detector's last transposed
// convolution to one channel, a 1x1 convolution to 8 channels), where the
// GEMM's 16- or 32-column tiles would mostly compute padding: rows in lanes
// instead. Per block of 16 rows and group of 4 K values, one VPGATHERDD
// takes each row's 4 bytes (rows lda apart) and one VPDPBUSD per column
// multiplies them by that column's 4 weights broadcast from the packed
// panel. The 16-row column vectors are requantized as the epilogue does
// (float scale per column, round half to even, the packs), a 4 x 4 byte
// transpose within each 128-bit lane (VPSHUFB) makes rows of 4 columns, and
// each row's n bytes go out in one masked store. Compiled with -mavx512vnni.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ops/cpu/gemm_s8.h"
#include "ops/cpu/pack_bytes_avx512.h"

namespace kvant::cpu::avx512vnni {
namespace {

template <bool kSigned>
void Narrow(int64_t m, int64_t k, const uint8_t* a, int64_t lda, const int8_t* b, int64_t nr, int64_t n,
            const GemmS8Output& out, uint8_t* c, int64_t ldc) {
  alignas(64) int32_t rows[16];
  for (int i = 0; i < 16; ++i) rows[i] = static_cast<int32_t>(i * lda);
  const __m512i vidx = _mm512_load_si512(rows);
  alignas(64) uint8_t transpose[64];
  for (int d = 0; d < 64; ++d) transpose[d] = static_cast<uint8_t>(d / 16 * 16 + d % 4 * 4 + d % 16 / 4);
  const __m512i order = _mm512_load_si512(transpose);
  const __m512i zp16 = _mm512_set1_epi16(static_cast<int16_t>(out.zero_point));
  const __m512i lo = _mm512_set1_epi8(static_cast<char>(out.lo)), hi = _mm512_set1_epi8(static_cast<char>(out.hi));
  const int64_t groups = k / 4;
  for (int64_t r0 = 0; r0 < m; r0 += 16) {
    const int64_t valid = std::min<int64_t>(16, m - r0);
    const __mmask16 rmask = valid == 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << valid) - 1);
    __m512i acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = _mm512_setzero_si512();
    const uint8_t* ab = a + r0 * lda;
    for (int64_t g = 0; g < groups; ++g) {
      const __m512i av = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rmask, vidx, ab + 4 * g, 1);
      const int8_t* bg = b + g * nr * 4;
      for (int64_t j = 0; j < n; ++j) {
        int32_t w;
        std::memcpy(&w, bg + 4 * j, 4);
        acc[j] = _mm512_dpbusd_epi32(acc[j], av, _mm512_set1_epi32(w));
      }
    }
    // Rows of 4 columns per group of 4: [16][4] bytes, row-major.
    alignas(64) uint8_t block[2][64];
    for (int64_t j0 = 0; j0 < n; j0 += 4) {
      __m512i r[4];
      for (int z = 0; z < 4; ++z) {
        const int64_t j = std::min<int64_t>(j0 + z, n - 1);  // columns past n: a copy, not stored
        const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc[j], _mm512_set1_epi32(out.col_offset[j]))),
                                       _mm512_set1_ps(out.scale[j]));
        r[z] = pack_bytes::Rounded(f);
      }
      const __m512i v = pack_bytes::Clamp<kSigned>(
          pack_bytes::Bytes<kSigned>(pack_bytes::Words(r[0], r[1], zp16), pack_bytes::Words(r[2], r[3], zp16)), lo, hi);
      _mm512_store_si512(block[j0 / 4], _mm512_shuffle_epi8(v, order));
    }
    // Each row's n bytes by one masked store (no call per row).
    const __mmask16 bytes = static_cast<__mmask16>((1u << n) - 1);
    for (int64_t r = 0; r < valid; ++r) {
      uint32_t w0, w1 = 0;
      std::memcpy(&w0, block[0] + 4 * r, 4);
      if (n > 4) std::memcpy(&w1, block[1] + 4 * r, 4);
      _mm_mask_storeu_epi8(c + (r0 + r) * ldc, bytes, _mm_cvtsi64_si128(static_cast<int64_t>(uint64_t{w1} << 32 | w0)));
    }
  }
}

}  // namespace

void NarrowGemmS8(int64_t m, int64_t k, const uint8_t* a, int64_t lda, const int8_t* b, int64_t nr, int64_t n,
                  const GemmS8Output& out, void* c, int64_t ldc) {
  if (out.kind == GemmS8Output::Kind::kS8) {
    Narrow<true>(m, k, a, lda, b, nr, n, out, static_cast<uint8_t*>(c), ldc);
  } else {
    Narrow<false>(m, k, a, lda, b, nr, n, out, static_cast<uint8_t*>(c), ldc);
  }
}

}  // namespace kvant::cpu::avx512vnni
