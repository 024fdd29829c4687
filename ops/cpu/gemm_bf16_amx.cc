// BF16 GEMM microkernel for AMX-BF16: 32 rows x 32 columns as four 16 x 16
// f32 tiles (tmm0-3), A as two 16-row tiles of 16 K pairs (tmm4-5, from the
// packed rows), B as two tiles of 16 pairs x 16 columns (tmm6-7, strided
// views of the panel the AVX-512 BF16 kernel reads). One step of 32 K values
// is four TDPBF16PS. Pairs are padded to 16 and rows to 32 by the driver;
// a panel of at most 16 rows takes a kernel of two accumulator tiles.
// Only M = 1 runs on the AVX-512 BF16 kernel (28 against 33 us here at
// 1x768x768); from two rows on the padded tile rows cost less than that
// kernel's VDPBF16PS (MiniLM, one 13-token sentence: 5.2 ms in BF16 with it,
// 2.8-3.1 ms with this one, against 3.6 ms in FP32). The tile configuration
// is the INT8 AMX kernel's (amx::Begin/End, ops/cpu/gemm_s8_amx.cc). Compiled with
// -mamx-tile -mamx-bf16; selected only when cpu_caps got the OS permission.
#include <immintrin.h>

#include "ops/cpu/gemm_bf16.h"

namespace kvant::cpu::amx {
namespace {

void Ukernel(int64_t pairs, const uint32_t* a, int64_t lda, const uint16_t* b, float* tile) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const int64_t a_stride = lda * 4;
  for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
    const uint16_t* bk = b + p0 * 64;  // 16 pairs x 32 columns x 2 bf16
    // Each load just before its first use (as in gemm_s8_amx.cc).
    _tile_loadd(4, a + p0, a_stride);
    _tile_loadd(6, bk, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, bk + 32, 128);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a + 16 * lda + p0, a_stride);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, tile, 128);
  _tile_stored(1, tile + 16, 128);
  _tile_stored(2, tile + 16 * 32, 128);
  _tile_stored(3, tile + 16 * 32 + 16, 128);
}

// Up to 16 rows (the last panel, a token's projections): two accumulator
// tiles, half the products of a padded 32-row panel.
void Ukernel16(int64_t pairs, const uint32_t* a, int64_t lda, const uint16_t* b, float* tile) {
  _tile_zero(0);
  _tile_zero(1);
  const int64_t a_stride = lda * 4;
  for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
    const uint16_t* bk = b + p0 * 64;
    _tile_loadd(4, a + p0, a_stride);
    _tile_loadd(6, bk, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, bk + 32, 128);
    _tile_dpbf16ps(1, 4, 7);
  }
  _tile_stored(0, tile, 128);
  _tile_stored(1, tile + 16, 128);
}

const GemmUkernelBf16 kByRows[32] = {Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16,
                                     Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16, Ukernel16,
                                     Ukernel16, Ukernel16, Ukernel,   Ukernel,   Ukernel,   Ukernel,   Ukernel,
                                     Ukernel,   Ukernel,   Ukernel,   Ukernel,   Ukernel,   Ukernel,   Ukernel,
                                     Ukernel,   Ukernel,   Ukernel,   Ukernel};

}  // namespace

const GemmUkernelBf16* GemmBf16ByRows() { return kByRows; }

}  // namespace kvant::cpu::amx
