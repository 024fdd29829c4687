// INT8 GEMM microkernel for AMX-INT8: 32 rows x 32 columns as four 16 x 16
// int32 tiles (tmm0-3), A as two 16-row tiles of 64 K bytes (tmm4-5, read
// row-major, in place or from the zero-padded packed panel), B as two tiles
// of 16 K groups x 16 columns (tmm6-7, strided views of the same packed
// panel the AVX-512 VNNI kernel reads). One K step is four TDPBUSD. K is
// padded to a multiple of 64; panels are always 32 rows (the driver packs
// short ones), and M < 9 runs on the VNNI kernel instead (gemm_s8_bench,
// 589,824 products: M = 1 7.9 us there against 30 here, M = 4 15 against
// 26, M = 13 41 against 33). The tile
// configuration is loaded once per thread and task (Begin/End). Compiled
// with -mamx-tile -mamx-int8; selected only when cpu_caps got the OS
// permission for the tile data state.
#include <immintrin.h>

#include <cstring>

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
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t k0 = 0; k0 < kp; k0 += 64) {
    const int8_t* bk = b + (k0 / 4) * 128;  // 16 groups x 32 columns x 4 bytes
    // Each load just before its first use: the next step's loads can then
    // start as soon as the products reading a tile have begun.
    _tile_loadd(4, a + k0, a_rs);
    _tile_loadd(6, bk, 128);
    _tile_dpbusd(0, 4, 6);
    _tile_loadd(7, bk + 64, 128);
    _tile_dpbusd(1, 4, 7);
    _tile_loadd(5, a + 16 * a_rs + k0, a_rs);
    _tile_dpbusd(2, 5, 6);
    _tile_dpbusd(3, 5, 7);
  }
  _tile_stored(0, tile, 128);
  _tile_stored(1, tile + 16, 128);
  _tile_stored(2, tile + 16 * 32, 128);
  _tile_stored(3, tile + 16 * 32 + 16, 128);
}

const GemmUkernelS8 kByRows[32] = {Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel,
                                   Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel,
                                   Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel,
                                   Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel, Ukernel};

}  // namespace

const GemmUkernelS8* GemmS8ByRows() { return kByRows; }

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
