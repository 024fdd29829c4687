// FP32 GEMM: C[M,N] = act(alpha * A[M,K] * B[K,N] + bias + residual), BLIS-style.
//
// Both operands are packed into panels (one layout for A and B: per K block of
// kKc rows, per panel of `tile` outer indices, kc x tile values), constants once
// at load. The driver walks tiles of kMc x nc over the thread pool and calls an
// ISA microkernel (ops/cpu/gemm_f32_<isa>.cc) per mr x nr block; bias and the
// fused activation are applied as the last K block is stored.
#ifndef KVANT_OPS_CPU_GEMM_F32_H_
#define KVANT_OPS_CPU_GEMM_F32_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ops/cpu/activation_f32.h"
#include "ops/kernel.h"

namespace kvant::cpu {

inline constexpr int64_t kGemmKc = 256;  // K block (rows of a packed panel)

// Epilogue of one microkernel call, pointers already offset to the tile.
struct GemmEpilogueF32 {
  const float* row_bias = nullptr;  // one value per row of the tile
  const float* col_bias = nullptr;  // one value per column of the tile
  // A tile to add after the biases, before the activation (a residual
  // connection): residual[r * ld_residual + j].
  const float* residual = nullptr;
  int64_t ld_residual = 0;
  ActivationF32 act;
};

// c[m_valid x n_valid] (+)= A (m_valid x kc) * b_panel (kc x nr); the
// epilogue is applied when `ep` is non-null (last K block). A(r, k) is read at
// a[r * a_rs + k * a_cs]: a packed panel has a_rs = 1, a_cs = mr; row-major
// A read in place has a_rs = lda, a_cs = 1.
using GemmUkernelF32 = void (*)(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b_panel,
                                float* c, int64_t ldc, int64_t m_valid, int64_t n_valid, bool accumulate,
                                const GemmEpilogueF32* ep);

struct GemmUkernelInfoF32 {
  const char* name;
  CpuFeatures needs;
  int mr;
  int nr;
  // by_rows[r - 1] handles r <= mr rows at full nr width.
  const GemmUkernelF32* by_rows;
  // The same kernels reading B panels of float16 (FP16 weights: b_panel
  // points at uint16_t data); null: the driver widens each panel first.
  const GemmUkernelF32* half_by_rows = nullptr;
  // Kernels for an f32 B panel whose valid columns fit in its first nr / 2
  // (the last panel of an N that is not a multiple of nr): they read the
  // same nr-wide panel and skip its empty half. Null: the full-width
  // kernels, masked.
  const GemmUkernelF32* tail_by_rows = nullptr;
};

// Rows of ops/cpu/kernels.inc (KVANT_GEMM_F32_UKERNEL), best last.
const std::vector<GemmUkernelInfoF32>& GemmUkernelsF32();
// Best microkernel the features allow.
const GemmUkernelInfoF32& SelectGemmUkernelF32(CpuFeatures features);
// The same for a product whose output has `n` columns: at most 16 take the
// best row 16 wide (no half-empty tiles).
const GemmUkernelInfoF32& SelectGemmUkernelF32(CpuFeatures features, int64_t n);

// A matrix packed into panels of `tile` along its outer dimension, in f32
// (`data`) or, for weights narrowed by NarrowToHalf, in IEEE float16
// (`half`, same layout; the driver widens a panel as it uses it).
struct PackedPanelsF32 {
  int64_t outer = 0;  // M for A, N for B
  int64_t k = 0;
  int64_t tile = 0;
  std::shared_ptr<float> data;
  std::shared_ptr<uint16_t> half;
  int64_t padded_outer() const { return (outer + tile - 1) / tile * tile; }
  int64_t bytes() const { return padded_outer() * k * (half ? 2 : 4); }
  int64_t offset(int64_t o, int64_t k0) const {
    return k0 * padded_outer() + (o / tile) * std::min(kGemmKc, k - k0) * tile;
  }
  // Panel holding outer index `o` (multiple of tile) in the K block starting at `k0`.
  const float* panel(int64_t o, int64_t k0) const { return data.get() + offset(o, k0); }
  const uint16_t* half_panel(int64_t o, int64_t k0) const { return half.get() + offset(o, k0); }
};

inline int64_t PackedPanelFloats(int64_t outer, int64_t k, int64_t tile) {
  return (outer + tile - 1) / tile * tile * k;
}

// Packs value(o, k) for o < outer, k < K into `dst` (PackedPanelFloats floats).
template <typename ValueFn>
void PackPanelsF32(int64_t outer, int64_t k_total, int64_t tile, float* dst, ValueFn value) {
  const int64_t padded = (outer + tile - 1) / tile * tile;
  for (int64_t k0 = 0; k0 < k_total; k0 += kGemmKc) {
    const int64_t kc = std::min(kGemmKc, k_total - k0);
    float* block = dst + k0 * padded;
    for (int64_t p = 0; p < padded; p += tile) {
      float* panel = block + (p / tile) * kc * tile;
      const int64_t valid = std::min(tile, outer - p);
      for (int64_t kk = 0; kk < kc; ++kk) {
        float* row = panel + kk * tile;
        for (int64_t t = 0; t < valid; ++t) row[t] = value(p + t, k0 + kk);
        for (int64_t t = valid; t < tile; ++t) row[t] = 0.f;
      }
    }
  }
}

// Strided source: value(o, k) = src[o * so + k * sk] * scale.
void PackStridedF32(int64_t outer, int64_t k, int64_t tile, const float* src, int64_t so, int64_t sk,
                    float scale, float* dst);
PackedPanelsF32 PackConstantF32(int64_t outer, int64_t k, int64_t tile, const float* src, int64_t so,
                                int64_t sk, float scale);

// Weights in FP16 (SessionOptions::precision = fp16): replaces `p.data` by
// its float16 rounding (half the memory and bandwidth; the products still
// run in FP32 on the widened values), unless a value would overflow FP16
// (|w| > 65504, Inf, NaN) or the largest |w| is below FP16's smallest
// normal (2^-14: every weight would lose precision), in which case `p`
// stays f32. Values below 2^-25 flush to zero: their error is at most the
// rounding error of the largest weight (>= 2^-14 * 2^-11), so they do not
// stop a tensor (EfficientNet-Lite0's stem has 18 such weights of 826).
// Returns whether it narrowed.
bool NarrowToHalf(PackedPanelsF32& p);
// NarrowToHalf when the node asks for it (attribute kvant_precision = "fp16",
// graph/passes/assign_precision.cc); false when it does not or cannot.
inline bool NarrowToHalfIfAsked(const AttributeMap& attrs, PackedPanelsF32& p) {
  return attrs.GetString("kvant_precision", "") == "fp16" && NarrowToHalf(p);
}

// Operand A or B: pre-packed, or strided memory to pack per call.
struct GemmOperandF32 {
  const PackedPanelsF32* packed = nullptr;
  const float* src = nullptr;
  int64_t so = 0;  // stride between outer indices (rows of A, columns of B)
  int64_t sk = 0;  // stride along K
};

struct GemmArgsF32 {
  int64_t m = 0, n = 0, k = 0;
  GemmOperandF32 a, b;
  float alpha = 1.f;      // applied when packing A at run time; pre-packed A must include it
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;  // add to the existing contents of C
  const float* row_bias = nullptr;
  const float* col_bias = nullptr;
  // C = act(... + bias + residual): an M x N matrix added before the
  // activation (it may not overlap C).
  const float* residual = nullptr;
  int64_t ld_residual = 0;
  ActivationF32 act;
};

// Scratch bytes RunGemmF32 needs for these sizes and threads (`half_b`: B
// is a pre-packed FP16 operand, widened a panel at a time). Enough for any
// call whose m is at most this m.
size_t GemmScratchBytesF32(const GemmUkernelInfoF32& uk, int64_t m, int64_t n, int64_t k, bool pack_b,
                           int threads, bool half_b = false);
void RunGemmF32(const GemmUkernelInfoF32& uk, const GemmArgsF32& args, void* scratch, ParallelRunner* pool);

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_GEMM_F32_H_
