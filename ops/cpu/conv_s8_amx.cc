// Direct INT8 convolution tile for AMX-INT8 (see conv_s8.h): 32 flat
// positions x 32 output channels as four 16 x 16 int32 tiles (tmm0-3). Each
// tap's rows of the padded image are loaded in place as two 16-row A tiles
// of 64 channel bytes (tmm4-5, row stride cin_p), B as two tiles of the
// packed weight panel (tmm6-7), as in the AMX GEMM kernel; no im2col. Uses
// the tile configuration of amx::Begin (gemm_s8_amx.cc).
#include <immintrin.h>

#include <cstdint>

namespace kvant::cpu::amx {

void ConvTapsS8(int64_t taps, const int64_t* tap_offsets, int64_t cin_p, const uint8_t* a, int64_t a_rs,
                const int8_t* b, int32_t* tile) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t t = 0; t < taps; ++t) {
    const uint8_t* at = a + tap_offsets[t];
    for (int64_t c0 = 0; c0 < cin_p; c0 += 64, b += 16 * 128) {  // 16 groups x 32 columns x 4 bytes
      // Each load just before its first use: the next step's loads can
      // then start as soon as the products reading a tile have begun.
      _tile_loadd(4, at + c0, a_rs);
      _tile_loadd(6, b, 128);
      _tile_dpbusd(0, 4, 6);
      _tile_loadd(7, b + 64, 128);
      _tile_dpbusd(1, 4, 7);
      _tile_loadd(5, at + 16 * a_rs + c0, a_rs);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
  }
  _tile_stored(0, tile, 128);
  _tile_stored(1, tile + 16, 128);
  _tile_stored(2, tile + 16 * 32, 128);
  _tile_stored(3, tile + 16 * 32 + 16, 128);
}

}  // namespace kvant::cpu::amx
