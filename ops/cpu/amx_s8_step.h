// The step both AMX-INT8 kernels (GEMM, gemm_s8_amx.cc; direct convolution,
// conv_s8_amx.cc) are made of: 32 rows x 32 columns in four 16 x 16 int32
// accumulator tiles (tmm0-3), A as two 16-row tiles of 64 K bytes (tmm4-5),
// B as two tiles of 16 K groups x 16 columns, strided views of one packed
// panel step (tmm6-7). Only for files compiled with -mamx-tile -mamx-int8,
// under the configuration of amx::Begin.
#ifndef KVANT_OPS_CPU_AMX_S8_STEP_H_
#define KVANT_OPS_CPU_AMX_S8_STEP_H_

#include <immintrin.h>

#include <cstdint>

namespace kvant::cpu::amx {

inline void ZeroAccumulators() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

// One K step of 64 bytes: rows 0-15 of A at a0, rows 16-31 at a1 (a_rs
// apart), the step's 16 groups x 32 columns x 4 bytes of B at b.
inline void StepS8(const uint8_t* a0, const uint8_t* a1, int64_t a_rs, const int8_t* b) {
  // Each load just before its first use: the next step's loads can then
  // start as soon as the products reading a tile have begun.
  _tile_loadd(4, a0, a_rs);
  _tile_loadd(6, b, 128);
  _tile_dpbusd(0, 4, 6);
  _tile_loadd(7, b + 64, 128);
  _tile_dpbusd(1, 4, 7);
  _tile_loadd(5, a1, a_rs);
  _tile_dpbusd(2, 5, 6);
  _tile_dpbusd(3, 5, 7);
}

// Rows 0-15 only: accumulators tmm0-1, A in tmm4.
inline void ZeroAccumulators16() {
  _tile_zero(0);
  _tile_zero(1);
}

inline void StepS8Rows16(const uint8_t* a0, int64_t a_rs, const int8_t* b) {
  _tile_loadd(4, a0, a_rs);
  _tile_loadd(6, b, 128);
  _tile_dpbusd(0, 4, 6);
  _tile_loadd(7, b + 64, 128);
  _tile_dpbusd(1, 4, 7);
}

inline void StoreAccumulators16(int32_t* tile) {
  _tile_stored(0, tile, 128);
  _tile_stored(1, tile + 16, 128);
}

// The accumulators as a 32 x 32 int32 tile, rows 32 apart.
inline void StoreAccumulators(int32_t* tile) {
  _tile_stored(0, tile, 128);
  _tile_stored(1, tile + 16, 128);
  _tile_stored(2, tile + 16 * 32, 128);
  _tile_stored(3, tile + 16 * 32 + 16, 128);
}

}  // namespace kvant::cpu::amx

#endif  // KVANT_OPS_CPU_AMX_S8_STEP_H_
