// Direct INT8 convolution tiles for AVX-512 VNNI (see conv_s8.h): 14 flat
// positions x 32 output channels in 28 zmm int32 accumulators (for 16
// channels or fewer, 28 positions x 16); per tap and
// group of 4 input channels, the two weight vectors of the packed panel and
// one VPDPBUSD per position and vector with the position's 4 bytes
// broadcast, read in place from the padded image. For few input channels (a
// network's RGB stem: 4 bytes per pixel, one group per tap), where an
// im2col would copy every tap's pixel to multiply it once and AMX's 64-byte
// K steps would mostly multiply padding. Compiled with -mavx512vnni.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace kvant::cpu::avx512vnni {
namespace {

// R positions x V vectors of 16 output channels (the panel is 16 V wide).
template <int R, int V>
void Taps(int64_t taps, const int64_t* tap_offsets, int64_t cin_p, const uint8_t* a, int64_t a_rs, const int8_t* b,
          int32_t* tile) {
  __m512i acc[R][V];
#pragma GCC unroll 28
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_si512();
  }
  for (int64_t t = 0; t < taps; ++t) {
    const uint8_t* at = a + tap_offsets[t];
    for (int64_t i = 0; i < cin_p; i += 4, b += 64 * V) {
      __m512i w[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) w[v] = _mm512_loadu_si512(b + 64 * v);
      // A running pointer: 28 precomputed row offsets would not fit the
      // general registers (each spilled offset cost a load per product).
      const uint8_t* p = at + i;
#pragma GCC unroll 28
      for (int r = 0; r < R; ++r, p += a_rs) {
        int32_t x;
        std::memcpy(&x, p, 4);
        const __m512i xv = _mm512_set1_epi32(x);
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], xv, w[v]);
      }
    }
  }
#pragma GCC unroll 28
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) _mm512_storeu_si512(tile + r * 16 * V + 16 * v, acc[r][v]);
  }
}

}  // namespace

void ConvTapsS8(int64_t taps, const int64_t* tap_offsets, int64_t cin_p, const uint8_t* a, int64_t a_rs,
                const int8_t* b, int32_t* tile) {
  Taps<14, 2>(taps, tap_offsets, cin_p, a, a_rs, b, tile);
}

void ConvTapsNarrowS8(int64_t taps, const int64_t* tap_offsets, int64_t cin_p, const uint8_t* a, int64_t a_rs,
                      const int8_t* b, int32_t* tile) {
  Taps<28, 1>(taps, tap_offsets, cin_p, a, a_rs, b, tile);
}

}  // namespace kvant::cpu::avx512vnni
