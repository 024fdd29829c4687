// INT8 GEMM microkernel for AVX-VNNI (the VEX-encoded VPDPBUSD on 256-bit
// vectors of Alder Lake and later client cores, and Sapphire Rapids): 6 rows
// x 16 columns, 12 ymm int32 accumulators. Epilogue: the AVX2 one.
// Compiled with -mavx2 -mavxvnni.
#include <immintrin.h>

#include <cstring>

#include "ops/cpu/gemm_s8.h"

namespace kvant::cpu::avxvnni {
namespace {

inline __m256i Broadcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <int R>
void Ukernel(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t a_gs, const int8_t* b, int32_t* tile) {
  __m256i acc[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int64_t g = 0; g < kp / 4; ++g) {
    const int8_t* bg = b + g * 64;
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg + 32));
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256i av = Broadcast4(a + r * a_rs + g * a_gs);
      acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], av, b0);
      acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], av, b1);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile + r * 16), acc[r][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile + r * 16 + 8), acc[r][1]);
  }
}

const GemmUkernelS8 kByRows[6] = {Ukernel<1>, Ukernel<2>, Ukernel<3>, Ukernel<4>, Ukernel<5>, Ukernel<6>};

}  // namespace

const GemmUkernelS8* GemmS8ByRows() { return kByRows; }

}  // namespace kvant::cpu::avxvnni
