// FP16 GEMM on tensor cores with FP32 accumulation: mma.sync m16n8k16 (sm_80+;
// two m16n8k8 on sm_75), epilogue alpha, bias, clamp, f16 or f32 store.
#include "ops/cuda/gemm_args.h"
#include "ops/cuda/gemm_tiles.cuh"

namespace kvant::cuda {
namespace {

struct EpilogueF16 {
  GemmF16Args::Out out;
  float alpha;
  const float* bias;
  float f_lo, f_hi;
  void* c;
  int64_t ldc;
  int n;

  __device__ __forceinline__ void Store(int64_t at, int col, float v) const {
    float f = v * alpha + (bias != nullptr ? bias[col] : 0.f);
    f = fminf(fmaxf(f, f_lo), f_hi);
    if (out == GemmF16Args::Out::kF16) {
      static_cast<__half*>(c)[at] = __float2half_rn(f);
    } else {
      static_cast<float*>(c)[at] = f;
    }
  }
  __device__ __forceinline__ void operator()(int row, int col, float v0, float v1) const {
    const int64_t at = row * ldc + col;
    Store(at, col, v0);
    if (col + 1 < n) Store(at + 1, col + 1, v1);
  }
};

}  // namespace

int LaunchGemmF16(const GemmF16Args& a, GemmPlan plan, void* stream) {
  const TileParams p{static_cast<int>(a.m), static_cast<int>(a.n), a.k * 2,
                     reinterpret_cast<const uint8_t*>(a.a), a.lda * 2,
                     reinterpret_cast<const uint8_t*>(a.b), a.ldb * 2, plan.splits, a.workspace};
  const EpilogueF16 epi{a.out, a.alpha, a.bias, a.f_lo, a.f_hi, a.c, a.ldc, static_cast<int>(a.n)};
  return LaunchPlanned<HmmaF16>(p, plan.tile, RowsAligned(a.a, a.lda * 2, a.b, a.ldb * 2), epi,
                                static_cast<cudaStream_t>(stream));
}

}  // namespace kvant::cuda
