// Arguments of the CUDA GEMMs, in plain types so that both the .cu kernel
// files (nvcc) and the host wrappers (gemm_cuda.h, absl::Status) include them.
// All pointers are device pointers. C[M,N] = A[M,K] . B[N,K]^T: activations
// row-major, weights [N, K] with K contiguous (ONNX's [K, N] transposed once
// at load), as cuBLASLt's "TN" int8 layout.
#ifndef KVANT_OPS_CUDA_GEMM_ARGS_H_
#define KVANT_OPS_CUDA_GEMM_ARGS_H_

#include <cstddef>
#include <cstdint>
#include <limits>

namespace kvant::cuda {

// CTA tile shapes (BM x BN); kAuto picks one from M, N, K and the device.
enum class GemmTile { kAuto, k128x256, k128x128, k64x64, k16x64 };

struct GemmPlan {
  GemmTile tile = GemmTile::kAuto;
  int splits = 1;  // K ranges, reduced in one launch (deterministic order)
};

// INT8: v = sum_k A[m,k] * B[n,k] + col_offset[n] (exact int32), then
//   s32: v;  f32: v * (alpha * scale[n]) + bias_f32[n], clamped to [f_lo, f_hi];
//   u8/s8: clamp(round_half_even(v * (alpha * scale[n])) + zero_point, lo, hi)
// which are the CPU epilogue's (ops/cpu/gemm_s8.h) formulas. Weights are
// symmetric (zero point 0); the activation zero point za enters through
// col_offset[n] = bias[n] - za * sum_k B[n,k] (u8 activations run as s8 with
// za - 128 after flipping their top bit).
struct GemmS8Args {
  enum class Out { kS32, kF32, kU8, kS8 };
  int64_t m = 0, n = 0, k = 0;
  const int8_t* a = nullptr;
  int64_t lda = 0;  // elements
  const int8_t* b = nullptr;
  int64_t ldb = 0;
  const int32_t* col_offset = nullptr;  // [N] or null
  const float* scale = nullptr;         // [N] if scale_per_column, else [1]; null means 1
  bool scale_per_column = false;
  float alpha = 1.f;                    // per call (dynamic quantization: the activation scale)
  const float* bias_f32 = nullptr;      // [N] or null (f32 output)
  Out out = Out::kS32;
  int32_t zero_point = 0, lo = -128, hi = 127;
  float f_lo = -std::numeric_limits<float>::infinity(), f_hi = std::numeric_limits<float>::infinity();
  void* c = nullptr;
  int64_t ldc = 0;
  GemmPlan plan;             // tile kAuto: chosen by PlanGemm
  void* workspace = nullptr; // split K (GemmWorkspaceBytes); zeroed once when allocated, left zeroed
  size_t workspace_bytes = 0;
};

// FP16 with FP32 accumulation: c = clamp(alpha * sum_k A[m,k] B[n,k] + bias[n], f_lo, f_hi)
// stored as f16 or f32. A, B are IEEE half bit patterns.
struct GemmF16Args {
  enum class Out { kF16, kF32 };
  int64_t m = 0, n = 0, k = 0;
  const uint16_t* a = nullptr;
  int64_t lda = 0;
  const uint16_t* b = nullptr;
  int64_t ldb = 0;
  float alpha = 1.f;
  const float* bias = nullptr;
  Out out = Out::kF16;
  float f_lo = -std::numeric_limits<float>::infinity(), f_hi = std::numeric_limits<float>::infinity();
  void* c = nullptr;
  int64_t ldc = 0;
  GemmPlan plan;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Launches (ops/cuda/gemm_*_sm80.cu); the plan is resolved, arguments checked.
// Return a cudaError_t value (0: success).
int LaunchGemmS8(const GemmS8Args& args, GemmPlan plan, void* stream);
int LaunchGemmF16(const GemmF16Args& args, GemmPlan plan, void* stream);
// Shared memory and threads of a tile; workspace bytes of a plan.
int GemmTileSmemBytes(GemmTile tile);
int GemmTileThreads(GemmTile tile);
size_t GemmPlanWorkspaceBytes(GemmPlan plan, int64_t m, int64_t n);

}  // namespace kvant::cuda

#endif  // KVANT_OPS_CUDA_GEMM_ARGS_H_
