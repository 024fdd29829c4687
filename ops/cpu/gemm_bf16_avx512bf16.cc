// BF16 GEMM microkernel for AVX-512 BF16: 14 rows x 32 columns of f32
// accumulators (28 zmm), two B vectors of 16 bf16 pairs, one broadcast A
// pair; VDPBF16PS adds both products of a pair per lane. Compiled with
// -mavx512bf16; selected only when cpu_caps reports it.
#include <immintrin.h>

#include <array>
#include <utility>

#include "ops/cpu/activation_f32_avx512.h"
#include "ops/cpu/gemm_bf16.h"

namespace kvant::cpu::avx512bf16 {
namespace {

template <int R>
void Tile(int64_t pairs, const uint32_t* a, int64_t lda, const uint16_t* b, float* tile) {
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b));
    const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + 32));
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[r * lda + p])));
      acc0[r] = _mm512_dpbf16_ps(acc0[r], av, b0);
      acc1[r] = _mm512_dpbf16_ps(acc1[r], av, b1);
    }
    b += 64;
  }
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(tile + r * 32, acc0[r]);
    _mm512_storeu_ps(tile + r * 32 + 16, acc1[r]);
  }
}

template <size_t... I>
constexpr std::array<GemmUkernelBf16, sizeof...(I)> MakeTable(std::index_sequence<I...>) {
  return {&Tile<static_cast<int>(I) + 1>...};
}

constexpr auto kTable = MakeTable(std::make_index_sequence<14>{});

}  // namespace

const GemmUkernelBf16* GemmBf16ByRows() { return kTable.data(); }

// rows x cols of an f32 tile (row stride ld) + bias, activated, into c.
void StoreTileBf16(const float* tile, int64_t ld, int64_t rows, int64_t cols, const float* bias,
                   const ActivationF32& act, float* c, int64_t ldc) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = cols - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (cols - j)) - 1);
      __m512 v = _mm512_maskz_loadu_ps(m, tile + r * ld + j);
      if (bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + j));
      _mm512_mask_storeu_ps(c + r * ldc + j, m, avx512::Activate(v, act));
    }
  }
}

// A row of k floats as bf16 pairs, in order (pair p = elements 2p, 2p + 1),
// zero-padded to `pairs`: VCVTNE2PS2BF16 rounds 32 values at a time, to
// nearest even as F32ToBf16 does.
void PackRowBf16(const float* src, int64_t k, uint32_t* dst, int64_t pairs) {
  uint16_t* out = reinterpret_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m512 lo = _mm512_loadu_ps(src + i), hi = _mm512_loadu_ps(src + i + 16);
    _mm512_storeu_si512(out + i, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
  }
  for (; i < k; ++i) out[i] = F32ToBf16(src[i]);
  for (; i < 2 * pairs; ++i) out[i] = 0;
}

}  // namespace kvant::cpu::avx512bf16
