// INT8 GEMM: C[M,N] = requantize(sum_k (A[m,k] - za) * (B[k,n] - zb[n]) + bias[n]).
//
// A is u8 (s8 activations run as u8 with za + 128: the +128 shift), B is s8,
// products accumulate in int32. B is packed once at load into panels of nr
// columns whose K runs in groups of 4 (the 4 bytes one VPDPBUSD lane
// multiplies), zero-padded to the microkernel's K alignment (4; 64 for AMX),
// with its column sums. A is read in place when K needs no padding, else
// packed per call into zero-padded rows.
// Microkernels (ops/cpu/gemm_s8_<isa>.cc) compute one mr x nr int32 tile over
// all of K; one epilogue per ISA turns the tile into the output:
//   v = acc + col_offset[n] - row_sum[m] * zb[n]       (exact int32)
//   s32: v;  f32: act(v * scale[n] + bias_f32[n]);
//   u8/s8: clamp(round_half_even(v * scale[n]) + zy, lo, hi)      (float)
//       or clamp(RoundingDivideByPOT(SRDHM(v, m0[n]), shift[n]) + zy, lo, hi)
//          (gemmlowp fixed point, bit exact).
// col_offset[n] = bias[n] - za * colsum(B)[n] + K * za * zb[n] is computed per
// call from the packed column sums (za may change per call: dynamic
// quantization); row sums of A are only needed when some zb[n] != 0.
#ifndef KVANT_OPS_CPU_GEMM_S8_H_
#define KVANT_OPS_CPU_GEMM_S8_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "ops/kernel.h"

namespace kvant::cpu {

struct ActivationF32;  // ops/cpu/activation_f32.h

// int32 tile[r * nr + c] = sum over kp / 4 groups of A(r, g) . B(g, c) for
// r < rows (the by_rows entry). A's group g of row r is the 4 bytes at
// a + r * a_rs + g * a_gs (a_gs is 4: rows are K-contiguous); b_panel holds
// kp * nr bytes (group-major, 4 bytes per column). kp is a multiple of the
// microkernel's k_align.
using GemmUkernelS8 = void (*)(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t a_gs, const int8_t* b_panel,
                               int32_t* tile);

// The requantization of one tile, pointers offset to the tile.
struct GemmS8Output {
  enum class Kind { kS32, kF32, kU8, kS8 };
  Kind kind = Kind::kS32;
  const int32_t* col_offset = nullptr;  // per column (bias and zero-point terms)
  const int32_t* row_sum = nullptr;     // per row, with col_zb (null: all zb are 0)
  const int32_t* col_zb = nullptr;
  const float* scale = nullptr;         // per column (f32, u8, s8 float requantization)
  const float* bias_f32 = nullptr;      // per column (f32 output), may be null
  const ActivationF32* act = nullptr;   // f32 output: applied after the bias (null: none)
  const int32_t* m0 = nullptr;          // per column fixed-point multiplier (null: float)
  const int32_t* shift = nullptr;       // per column right shift, >= 0
  int32_t zero_point = 0;               // output zero point
  int32_t lo = 0, hi = 255;             // clamp after the zero point (u8/s8)
};

// Applies `out` to an int32 tile (rows x cols valid, rows nr apart, any
// alignment) and
// stores it at c (element type per out.kind) with row stride ldc elements.
using GemmEpilogueS8 = void (*)(const int32_t* tile, int64_t nr, int64_t rows, int64_t cols,
                                const GemmS8Output& out, void* c, int64_t ldc);

struct GemmUkernelInfoS8 {
  const char* name;
  CpuFeatures needs;
  int mr;
  int nr;
  int k_align;                   // kp is a multiple of this (4, or 64 for AMX tiles)
  const GemmUkernelS8* by_rows;  // by_rows[r - 1] computes r <= mr rows
  GemmEpilogueS8 epilogue;
  const GemmUkernelS8* half_cols = nullptr;  // by rows, for a panel of at most nr / 2 columns (null: by_rows)
  bool full_panels = false;      // reads mr rows of A even for fewer (the driver pads)
  void (*begin)() = nullptr;     // per thread and task (AMX tile configuration)
  void (*end)() = nullptr;
  int min_m = 0;                 // below this M, or at a K it would mostly pad, run `small_m` (same B panels)
  const char* small_m = nullptr;
  int half_rows = 0;             // full_panels: up to this many rows read only this many (the driver pads less)
};

// `base` for the columns from col on: per-column pointers advanced by col
// (col_zb only where row sums are in use).
GemmS8Output OutputForColumns(const GemmS8Output& base, const int32_t* col_offset, const int32_t* b_zero_points,
                              int64_t col);

// Rows of ops/cpu/kernels.inc (KVANT_GEMM_S8_UKERNEL), best last.
const std::vector<GemmUkernelInfoS8>& GemmUkernelsS8();
const GemmUkernelInfoS8& SelectGemmUkernelS8(CpuFeatures features);
const GemmUkernelInfoS8* FindGemmUkernelS8(const char* name);

// B packed for one microkernel width: K padded to kp, panels of nr columns.
struct PackedBS8 {
  int64_t n = 0, k = 0, kp = 0, nr = 0;
  std::shared_ptr<int8_t> data;
  std::vector<int32_t> col_sums;  // sum over k of B[k, n]
  const int8_t* panel(int64_t col) const { return data.get() + (col / nr) * kp * nr; }
  int64_t bytes() const { return (n + nr - 1) / nr * nr * kp; }
};

// B(k, n) = src[k * sk + n * sn], packed for `uk` (its nr and k_align), or
// for panels of nr columns with K padded to a multiple of k_align.
PackedBS8 PackBS8(const GemmUkernelInfoS8& uk, int64_t k, int64_t n, const int8_t* src, int64_t sk, int64_t sn);
PackedBS8 PackBS8(int64_t nr, int64_t k_align, int64_t k, int64_t n, const int8_t* src, int64_t sk, int64_t sn);

// Writes rows [row0, row0 + rows) of A into dst (row stride kp bytes, the
// first K of each; the driver zero-fills the rest): an implicit A, such as
// the im2col of a convolution built one panel at a time.
using GemmRowsS8 = absl::FunctionRef<void(int64_t row0, int64_t rows, uint8_t* dst, int64_t kp)>;

struct GemmArgsS8 {
  int64_t m = 0;
  const uint8_t* a = nullptr;  // row-major, row stride lda, K contiguous
  int64_t lda = 0;
  const GemmRowsS8* a_rows = nullptr;  // instead of `a`
  const PackedBS8* b = nullptr;
  int32_t a_zero_point = 0;            // za (s8 activations: their zero point + 128)
  const int32_t* b_zero_points = nullptr;  // per column zb, null = all 0
  const int32_t* bias = nullptr;       // per column int32 bias, may be null
  GemmS8Output out;                    // col_offset / row_sum / col_zb are filled by RunGemmS8
  void* c = nullptr;
  int64_t ldc = 0;
};

size_t GemmScratchBytesS8(const GemmUkernelInfoS8& uk, int64_t m, int64_t n, int64_t k, int threads);
void RunGemmS8(const GemmUkernelInfoS8& uk, const GemmArgsS8& args, void* scratch, ParallelRunner* pool);

// RunGemmS8 takes products with at most 8 columns and u8/s8 outputs (float
// scales, A in memory, no weight zero points) to the
// rows-in-lanes kernel (gemm_s8_narrow_avx512vnni.cc) where the row `uk`
// has VNNI and K is a multiple of 4: its name then, for plan reports.
inline constexpr const char* kNarrowGemmS8Name = "gemm_s8_narrow_avx512vnni";
inline bool NarrowGemmS8Applies(const GemmUkernelInfoS8& uk, int64_t n, int64_t k) {
  return n <= 8 && k % 4 == 0 && (uk.needs & kCpuAvx512vnni) != 0;
}

// Scalar requantization, shared by the reference epilogue and the tests.
int32_t RequantizeFloat(int32_t v, float scale);
int32_t RequantizeFixedPoint(int32_t v, int32_t m0, int32_t shift);
// The gemmlowp multiplier of a real scale in (0, 1): scale = m0 * 2^-31 * 2^-shift.
void QuantizeMultiplier(double scale, int32_t* m0, int32_t* shift);

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_GEMM_S8_H_
