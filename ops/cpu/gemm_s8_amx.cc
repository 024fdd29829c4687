// INT8 GEMM microkernel for AMX-INT8: 32 rows x 32 columns as four 16 x 16
// int32 tiles, A read row-major (in place or from the zero-padded packed
// panel), B from the same packed panels the AVX-512 VNNI kernel reads; one K
// step of 64 is amx::StepS8 (amx_s8_step.h). K is padded to a multiple of
// 64; panels are 32 rows (the driver packs short ones), or 16 for panels of
// at most 16 rows, which take a kernel of two accumulator tiles (and a last
// panel of at most 16 columns one of one B tile): half the
// products of a padded 32-row panel (gemm_s8_bench --paired, 4 x 768 x 768:
// 10.6 us on the VNNI kernel, 5.7 here; 13 x 384 x 1536 11.4 -> 9.0). One
// row, and K that 64-byte steps would mostly pad, run on the VNNI kernel
// instead (a GEMV is bound by B's bandwidth there as here). The tile
// configuration is loaded once per thread and task (Begin/End). Compiled
// with -mamx-tile -mamx-int8; selected only when cpu_caps got the OS
// permission for the tile data state.
#include <immintrin.h>

#include <cstring>

#include "ops/cpu/amx_s8_step.h"
#include "ops/cpu/gemm_s8.h"

namespace kvant::cpu::amx {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

void Ukernel(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t /*a_gs*/, const int8_t* b, int32_t* tile) {
  ZeroAccumulators();
  for (int64_t k0 = 0; k0 < kp; k0 += 64) {
    StepS8(a + k0, a + 16 * a_rs + k0, a_rs, b + (k0 / 4) * 128);  // 16 groups x 32 columns x 4 bytes per step
  }
  StoreAccumulators(tile);
}

// Up to 16 rows (a token's projections, the last panel of a GEMM): half the
// products and half the A loads of the 32-row kernel.
void Ukernel16(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t /*a_gs*/, const int8_t* b, int32_t* tile) {
  ZeroAccumulators16();
  for (int64_t k0 = 0; k0 < kp; k0 += 64) StepS8Rows16(a + k0, a_rs, b + (k0 / 4) * 128);
  StoreAccumulators16(tile);
}

// A last panel of at most 16 columns: one B tile, accumulators tmm0 (rows
// 0-15) and tmm2 (rows 16-31).
template <bool kRows32>
void UkernelHalf(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t /*a_gs*/, const int8_t* b, int32_t* tile) {
  _tile_zero(0);
  if constexpr (kRows32) _tile_zero(2);
  for (int64_t k0 = 0; k0 < kp; k0 += 64) {
    _tile_loadd(4, a + k0, a_rs);
    _tile_loadd(6, b + (k0 / 4) * 128, 128);
    _tile_dpbusd(0, 4, 6);
    if constexpr (kRows32) {
      _tile_loadd(5, a + 16 * a_rs + k0, a_rs);
      _tile_dpbusd(2, 5, 6);
    }
  }
  _tile_stored(0, tile, 128);
  if constexpr (kRows32) _tile_stored(2, tile + 16 * 32, 128);
}

const GemmUkernelS8 kHalfByRows[32] = {
    UkernelHalf<false>, UkernelHalf<false>, UkernelHalf<false>, UkernelHalf<false>, UkernelHalf<false>,
    UkernelHalf<false>, UkernelHalf<false>, UkernelHalf<false>, UkernelHalf<false>, UkernelHalf<false>,
    UkernelHalf<false>, UkernelHalf<false>, UkernelHalf<false>, UkernelHalf<false>, UkernelHalf<false>,
    UkernelHalf<false>, UkernelHalf<true>,  UkernelHalf<true>,  UkernelHalf<true>,  UkernelHalf<true>,
    UkernelHalf<true>,  UkernelHalf<true>,  UkernelHalf<true>,  UkernelHalf<true>,  UkernelHalf<true>,
    UkernelHalf<true>,  UkernelHalf<true>,  UkernelHalf<true>,  UkernelHalf<true>,  UkernelHalf<true>,
    UkernelHalf<true>,  UkernelHalf<true>};

const GemmUkernelS8 kByRows[32] = {Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16,
                                   Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16,
                                   Ukernel16, Ukernel16, Ukernel,   Ukernel,   Ukernel,   Ukernel,   Ukernel,
                                   Ukernel,   Ukernel,   Ukernel,   Ukernel,   Ukernel,   Ukernel,   Ukernel,
                                   Ukernel,   Ukernel,   Ukernel,   Ukernel};

}  // namespace

const GemmUkernelS8* GemmS8ByRows() { return kByRows; }
const GemmUkernelS8* GemmS8HalfByRows() { return kHalfByRows; }

void Begin() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  // GCC 12 models LDTILECFG as reading only part of the 64 bytes and drops
  // the stores of rows and colsb without this barrier.
  __asm__ volatile("" : : "m"(cfg) : "memory");
  _tile_loadconfig(&cfg);
}

void End() { _tile_release(); }

}  // namespace kvant::cpu::amx
