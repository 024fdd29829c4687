// ConvProductF32 (conv_product_f32.h).
#include "ops/cpu/conv_product_f32.h"

namespace kvant::cpu {

void ConvProductF32::Pack(const float* w, int64_t n, int64_t k, const AttributeMap& attrs, CpuFeatures cpu,
                          bool allow_bf16) {
  n_ = n;
  k_ = k;
  uk_ = &SelectGemmUkernelF32(cpu, n);
  act = ReadFusedActivation(attrs);
  if (allow_bf16 && attrs.GetString("kvant_precision", "") == "bf16") bf16_ = SelectGemmUkernelBf16(cpu);
  if (bf16_ != nullptr) {
    packed_bf16_ = PackBBf16(*bf16_, k, n, w, 1, k);  // B(k, n) = W[n][k]
  } else {
    packed_ = PackConstantF32(n, k, uk_->nr, w, k, 1, 1.f);
    half_ = NarrowToHalfIfAsked(attrs, packed_);
  }
}

void ConvProductF32::Run(int64_t m, const float* a, int64_t lda, const float* bias, const float* residual, float* y,
                         void* scratch, ParallelRunner* pool, int64_t lda_t) const {
  if (bf16_ != nullptr) {
    GemmArgsBf16 g;
    g.m = m;
    g.a = a;
    g.lda = lda;
    g.b = &packed_bf16_;
    g.c = y;
    g.ldc = n_;
    g.col_bias = bias;
    g.act = act;
    RunGemmBf16(*bf16_, g, scratch, pool);
    return;
  }
  GemmArgsF32 g;
  g.m = m;
  g.n = n_;
  g.k = k_;
  g.a = lda_t != 0 ? GemmOperandF32{nullptr, a, 1, lda_t} : GemmOperandF32{nullptr, a, lda, 1};
  g.b.packed = &packed_;
  g.c = y;
  g.ldc = n_;
  g.col_bias = bias;
  g.residual = residual;
  g.ld_residual = n_;
  g.act = act;
  RunGemmF32(*uk_, g, scratch, pool);
}

size_t ConvProductF32::ScratchBytes(int64_t m, int threads) const {
  return bf16_ != nullptr ? GemmScratchBytesBf16(*bf16_, m, k_, threads)
                          : GemmScratchBytesF32(*uk_, m, n_, k_, false, threads, half_);
}

}  // namespace kvant::cpu
