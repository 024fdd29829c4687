// BF16 GEMM with FP32 accumulation: C[M,N] = act(A[M,K] B[K,N] + bias[N]).
//
// B (weights) is rounded to bf16 and packed once, in panels of nr columns
// whose K runs in pairs: VDPBF16PS multiplies, per 32-bit lane, two bf16 of
// A (k, k+1) by the same two of B and adds both products to an f32
// accumulator. A stays f32 in memory and is rounded to bf16 pairs as it is
// packed per call. Rounding is to nearest even (NaN kept quiet), as the
// hardware's VCVTNE2PS2BF16. The microkernels (ops/cpu/gemm_bf16_<isa>.cc)
// compute an mr x nr tile over all of K; the driver adds the bias, applies
// the activation and stores.
#ifndef KVANT_OPS_CPU_GEMM_BF16_H_
#define KVANT_OPS_CPU_GEMM_BF16_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "ops/cpu/activation_f32.h"
#include "ops/kernel.h"

namespace kvant::cpu {

inline uint16_t F32ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN: stay a (quiet) NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}

inline float Bf16ToF32(uint16_t h) {
  const uint32_t u = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// f32 tile[r * nr + c] = sum over pairs p of A(r, p) . B_panel(p, c), for
// r < rows (by_rows[rows - 1]); A(r, p) is the uint32 holding two bf16 at
// a[r * lda + p]; the panel holds `pairs` rows of nr columns x 2 bf16.
using GemmUkernelBf16 = void (*)(int64_t pairs, const uint32_t* a, int64_t lda, const uint16_t* b_panel, float* tile);

struct GemmUkernelInfoBf16 {
  const char* name;
  CpuFeatures needs;
  int mr;
  int nr;
  const GemmUkernelBf16* by_rows;
  int pair_align = 1;            // K pairs padded to a multiple of this (16 for AMX tiles)
  bool full_rows = false;        // by_rows[r - 1] may read mr rows of A for fewer (the driver pads)
  void (*begin)() = nullptr;     // per thread and task (AMX tile configuration)
  void (*end)() = nullptr;
  int min_m = 0;                 // below this M, run `small_m` (same B packing)
  const char* small_m = nullptr;
};

// Rows of ops/cpu/kernels.inc (KVANT_GEMM_BF16_UKERNEL), best last.
const std::vector<GemmUkernelInfoBf16>& GemmUkernelsBf16();
// Best microkernel the features allow, or null (no BF16 arithmetic).
const GemmUkernelInfoBf16* SelectGemmUkernelBf16(CpuFeatures features);
const GemmUkernelInfoBf16* FindGemmUkernelBf16(const char* name);

struct PackedBBf16 {
  int64_t n = 0, k = 0, pairs = 0, nr = 0;
  std::shared_ptr<uint16_t> data;
  const uint16_t* panel(int64_t col) const { return data.get() + (col / nr) * pairs * nr * 2; }
  int64_t bytes() const { return (n + nr - 1) / nr * nr * pairs * 4; }
};

// B(k, n) = src[k * sk + n * sn] rounded to bf16, packed for `uk` (pairs
// padded to its pair_align with zeros).
PackedBBf16 PackBBf16(const GemmUkernelInfoBf16& uk, int64_t k, int64_t n, const float* src, int64_t sk, int64_t sn);

struct GemmArgsBf16 {
  int64_t m = 0;
  const float* a = nullptr;  // row-major, row stride lda
  int64_t lda = 0;
  const PackedBBf16* b = nullptr;
  float* c = nullptr;
  int64_t ldc = 0;
  const float* col_bias = nullptr;  // may be null
  ActivationF32 act;
};

size_t GemmScratchBytesBf16(const GemmUkernelInfoBf16& uk, int64_t m, int64_t k, int threads);
void RunGemmBf16(const GemmUkernelInfoBf16& uk, const GemmArgsBf16& args, void* scratch, ParallelRunner* pool);

// The specification: A and B rounded to bf16, products summed in double.
void GemmBf16Reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                       const float* col_bias, float* c, int64_t ldc);

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_GEMM_BF16_H_
