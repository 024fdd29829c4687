// INT8 GEMM microkernel for AVX-512 VNNI: 14 rows x 32 columns, 28 zmm int32
// accumulators; per group of 4 K values, 2 B vectors and one VPDPBUSD per row
// and vector with A's 4 bytes broadcast. Short panels (token-sized M) split K
// over several accumulator sets so that enough VPDPBUSD chains are in flight
// to hide its latency. A last panel of at most 16 columns (the outputs of
// a convolution with 8 or 16 channels) takes the same kernel on the first
// vector of each group only: half the products and loads. Compiled with
// -mavx512vnni.
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

// R rows, U accumulator sets over interleaved K groups, V vectors of 16
// columns (2: the whole panel; 1: its first 16 columns).
template <int R, int U, int V = 2>
void Ukernel(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t a_gs, const int8_t* b, int32_t* tile) {
  __m512i acc[U][R][V];
#pragma GCC unroll 16
  for (int u = 0; u < U; ++u) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[u][r][v] = _mm512_setzero_si512();
    }
  }
  const int64_t groups = kp / 4;
  int64_t g = 0;
  for (; g + U <= groups; g += U) {
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u) {
      const int8_t* bg = b + (g + u) * 128;
      if constexpr (R < 14) _mm_prefetch(reinterpret_cast<const char*>(bg + 1024), _MM_HINT_T0);
      __m512i bv[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) bv[v] = _mm512_load_si512(bg + 64 * v);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i av = Broadcast4(a + r * a_rs + (g + u) * a_gs);
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[u][r][v] = _mm512_dpbusd_epi32(acc[u][r][v], av, bv[v]);
      }
    }
  }
  for (; g < groups; ++g) {
    const int8_t* bg = b + g * 128;
    __m512i bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = _mm512_load_si512(bg + 64 * v);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512i av = Broadcast4(a + r * a_rs + g * a_gs);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[0][r][v] = _mm512_dpbusd_epi32(acc[0][r][v], av, bv[v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      __m512i sum = acc[0][r][v];
#pragma GCC unroll 16
      for (int u = 1; u < U; ++u) sum = _mm512_add_epi32(sum, acc[u][r][v]);
      _mm512_store_si512(tile + r * 32 + 16 * v, sum);
    }
  }
}

const GemmUkernelS8 kByRows[14] = {Ukernel<1, 4>,  Ukernel<2, 3>,  Ukernel<3, 2>,  Ukernel<4, 1>,  Ukernel<5, 1>,
                                   Ukernel<6, 1>,  Ukernel<7, 1>,  Ukernel<8, 1>,  Ukernel<9, 1>,  Ukernel<10, 1>,
                                   Ukernel<11, 1>, Ukernel<12, 1>, Ukernel<13, 1>, Ukernel<14, 1>};
const GemmUkernelS8 kHalfByRows[14] = {
    Ukernel<1, 4, 1>,  Ukernel<2, 4, 1>,  Ukernel<3, 3, 1>,  Ukernel<4, 2, 1>,  Ukernel<5, 2, 1>,
    Ukernel<6, 2, 1>,  Ukernel<7, 1, 1>,  Ukernel<8, 1, 1>,  Ukernel<9, 1, 1>,  Ukernel<10, 1, 1>,
    Ukernel<11, 1, 1>, Ukernel<12, 1, 1>, Ukernel<13, 1, 1>, Ukernel<14, 1, 1>};

}  // namespace

const GemmUkernelS8* GemmS8ByRows() { return kByRows; }
const GemmUkernelS8* GemmS8HalfByRows() { return kHalfByRows; }

}  // namespace kvant::cpu::avx512vnni
