// INT8 GEMM microkernel for AVX-512 VNNI: 14 rows x 32 columns, 28 zmm int32
// accumulators; per group of 4 K values, 2 B vectors and one VPDPBUSD per row
// and vector with A's 4 bytes broadcast. Short panels (token-sized M) split K
// over several accumulator sets so that enough VPDPBUSD chains are in flight
// to hide its latency. Compiled with -mavx512vnni.
#include <immintrin.h>

#include <cstring>

#include "ops/cpu/gemm_s8.h"

namespace kvant::cpu::avx512vnni {
namespace {

inline __m512i Broadcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// R rows, U accumulator sets over interleaved K groups.
template <int R, int U>
void Ukernel(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t a_gs, const int8_t* b, int32_t* tile) {
  __m512i acc[U][R][2];
#pragma GCC unroll 16
  for (int u = 0; u < U; ++u) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[u][r][0] = acc[u][r][1] = _mm512_setzero_si512();
  }
  const int64_t groups = kp / 4;
  int64_t g = 0;
  for (; g + U <= groups; g += U) {
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u) {
      const int8_t* bg = b + (g + u) * 128;
      if constexpr (R < 14) _mm_prefetch(reinterpret_cast<const char*>(bg + 1024), _MM_HINT_T0);
      const __m512i b0 = _mm512_load_si512(bg);
      const __m512i b1 = _mm512_load_si512(bg + 64);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i av = Broadcast4(a + r * a_rs + (g + u) * a_gs);
        acc[u][r][0] = _mm512_dpbusd_epi32(acc[u][r][0], av, b0);
        acc[u][r][1] = _mm512_dpbusd_epi32(acc[u][r][1], av, b1);
      }
    }
  }
  for (; g < groups; ++g) {
    const int8_t* bg = b + g * 128;
    const __m512i b0 = _mm512_load_si512(bg);
    const __m512i b1 = _mm512_load_si512(bg + 64);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512i av = Broadcast4(a + r * a_rs + g * a_gs);
      acc[0][r][0] = _mm512_dpbusd_epi32(acc[0][r][0], av, b0);
      acc[0][r][1] = _mm512_dpbusd_epi32(acc[0][r][1], av, b1);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    __m512i v0 = acc[0][r][0], v1 = acc[0][r][1];
#pragma GCC unroll 16
    for (int u = 1; u < U; ++u) {
      v0 = _mm512_add_epi32(v0, acc[u][r][0]);
      v1 = _mm512_add_epi32(v1, acc[u][r][1]);
    }
    _mm512_store_si512(tile + r * 32, v0);
    _mm512_store_si512(tile + r * 32 + 16, v1);
  }
}

const GemmUkernelS8 kByRows[14] = {Ukernel<1, 4>,  Ukernel<2, 3>,  Ukernel<3, 2>,  Ukernel<4, 1>,  Ukernel<5, 1>,
                                   Ukernel<6, 1>,  Ukernel<7, 1>,  Ukernel<8, 1>,  Ukernel<9, 1>,  Ukernel<10, 1>,
                                   Ukernel<11, 1>, Ukernel<12, 1>, Ukernel<13, 1>, Ukernel<14, 1>};

}  // namespace

const GemmUkernelS8* GemmS8ByRows() { return kByRows; }

}  // namespace kvant::cpu::avx512vnni
