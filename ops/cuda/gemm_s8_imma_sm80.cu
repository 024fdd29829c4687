// INT8 GEMM on tensor cores: mma.sync m16n8k32 s8 x s8 -> s32 (sm_80+; four
// m8n8k16 on sm_75), with the fused requantization epilogue of gemm_args.h.
#include "ops/cuda/gemm_args.h"
#include "ops/cuda/gemm_tiles.cuh"

namespace kvant::cuda {
namespace {

struct EpilogueS8 {
  GemmS8Args::Out out;
  const int32_t* col_offset;
  const float* scale;
  bool per_column;
  float alpha;
  const float* bias_f32;
  int32_t zero_point, lo, hi;
  float f_lo, f_hi;
  void* c;
  int64_t ldc;
  int n;

  __device__ __forceinline__ float Scale(int col) const {
    return (scale != nullptr ? scale[per_column ? col : 0] : 1.f) * alpha;
  }
  __device__ __forceinline__ int32_t Quantize(int32_t v, int col) const {
    const long long q = static_cast<long long>(__float2int_rn(static_cast<float>(v) * Scale(col))) + zero_point;
    return static_cast<int32_t>(q < lo ? lo : (q > hi ? hi : q));
  }
  __device__ __forceinline__ void Store(int64_t at, int col, int32_t v) const {
    switch (out) {
      case GemmS8Args::Out::kS32:
        static_cast<int32_t*>(c)[at] = v;
        break;
      case GemmS8Args::Out::kF32: {
        float f = static_cast<float>(v) * Scale(col) + (bias_f32 != nullptr ? bias_f32[col] : 0.f);
        static_cast<float*>(c)[at] = fminf(fmaxf(f, f_lo), f_hi);
        break;
      }
      case GemmS8Args::Out::kU8:
      case GemmS8Args::Out::kS8:
        static_cast<uint8_t*>(c)[at] = static_cast<uint8_t>(Quantize(v, col));
        break;
    }
  }
  __device__ __forceinline__ void operator()(int row, int col, int32_t v0, int32_t v1) const {
    const int64_t at = row * ldc + col;
    if (col_offset != nullptr) {
      v0 += col_offset[col];
      if (col + 1 < n) v1 += col_offset[col + 1];
    }
    Store(at, col, v0);
    if (col + 1 < n) Store(at + 1, col + 1, v1);
  }
};

}  // namespace

int LaunchGemmS8(const GemmS8Args& a, GemmPlan plan, void* stream) {
  const TileParams p{static_cast<int>(a.m), static_cast<int>(a.n), a.k,
                     reinterpret_cast<const uint8_t*>(a.a), a.lda,
                     reinterpret_cast<const uint8_t*>(a.b), a.ldb, plan.splits, a.workspace};
  const EpilogueS8 epi{a.out, a.col_offset, a.scale, a.scale_per_column, a.alpha, a.bias_f32, a.zero_point,
                       a.lo, a.hi, a.f_lo, a.f_hi, a.c, a.ldc, static_cast<int>(a.n)};
  return LaunchPlanned<ImmaS8>(p, plan.tile, RowsAligned(a.a, a.lda, a.b, a.ldb), epi,
                               static_cast<cudaStream_t>(stream));
}

}  // namespace kvant::cuda
