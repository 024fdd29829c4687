// The product of an NHWC float convolution with constant weights (group 1):
// y[p][n] = act(sum_k A[p][k] * W[n][k] + bias[n] + residual[p][n]), with W
// packed once at load in the precision its node asks for (kvant_precision,
// graph/passes/assign_precision.cc): FP32; "bf16" on the BF16 GEMM where the
// CPU has BF16 arithmetic (no residual, row-major A only); "fp16" as FP16
// weights the FP32 GEMM widens per panel. kvant.ConvNhwc (conv_f32_nhwc.cc)
// and the chains' 1x1 stages (conv_chain_f32_nhwc.cc) run on it.
#ifndef KVANT_OPS_CPU_CONV_PRODUCT_F32_H_
#define KVANT_OPS_CPU_CONV_PRODUCT_F32_H_

#include <cstdint>

#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/gemm_f32.h"

namespace kvant::cpu {

class ConvProductF32 {
 public:
  // w: n rows of k values. allow_bf16 = false keeps "bf16" nodes in FP32
  // (a residual to add, or a column-major A).
  void Pack(const float* w, int64_t n, int64_t k, const AttributeMap& attrs, CpuFeatures cpu, bool allow_bf16);

  // y rows (ldc = n) for m rows of A: row-major with stride lda or, with
  // lda_t != 0 (FP32 only), column-major with that stride.
  void Run(int64_t m, const float* a, int64_t lda, const float* bias, const float* residual, float* y,
           void* scratch, ParallelRunner* pool, int64_t lda_t = 0) const;
  size_t ScratchBytes(int64_t m, int threads) const;

  int64_t PackedBytes() const { return bf16_ != nullptr ? packed_bf16_.bytes() : packed_.bytes(); }
  // The GEMM's name (FP16 weights: see half()).
  const char* name() const { return bf16_ != nullptr ? bf16_->name : uk_->name; }
  bool bf16() const { return bf16_ != nullptr; }
  bool half() const { return half_; }

  ActivationF32 act;

 private:
  const GemmUkernelInfoF32* uk_ = nullptr;
  PackedPanelsF32 packed_;
  bool half_ = false;                          // packed_ holds FP16 weights
  const GemmUkernelInfoBf16* bf16_ = nullptr;  // set: the product runs in BF16
  PackedBBf16 packed_bf16_;
  int64_t n_ = 0, k_ = 0;
};

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_CONV_PRODUCT_F32_H_
