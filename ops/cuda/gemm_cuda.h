// The CUDA GEMMs for the rest of Kvant: argument checks with clear Status
// messages, the tile and split-K plan, and the workspace size. The kernels
// (gemm_s8_imma_sm80.cu, gemm_f16_hmma_sm80.cu) take arguments already checked.
#ifndef KVANT_OPS_CUDA_GEMM_CUDA_H_
#define KVANT_OPS_CUDA_GEMM_CUDA_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ops/cuda/gemm_args.h"

namespace kvant::cuda {

const char* GemmTileName(GemmTile tile);
// BM x BN of a tile (0 x 0 for kAuto).
void GemmTileDims(GemmTile tile, int* bm, int* bn);

// What the plan needs to know about the current device.
struct GemmDevice {
  int sms = 0;
  int smem_optin = 0;  // bytes of shared memory one block may opt into
  int cc = 0;          // compute capability, 10 * major + minor
};
absl::StatusOr<GemmDevice> CurrentGemmDevice();

// 1. Tile by M: 16x64 for token shapes (M <= 16), 64x64 up to M = 64 or
//    when 128x128 tiles would leave most SMs idle, else 128x128 (128x256 is
//    only taken when asked for: slower on Hopper, see gemm_cuda.cc);
// 2. split K until the grid has about two CTAs per SM (one for 128x128),
//    keeping at least two 64-byte K tiles per split.
GemmPlan PlanGemm(const GemmDevice& device, int64_t m, int64_t n, int64_t k_bytes);
// Workspace the plan needs (0 without split K).
size_t GemmWorkspaceBytes(const GemmPlan& plan, int64_t m, int64_t n);

// Checks the arguments, resolves plan.tile == kAuto (split K only when the
// workspace is large enough), and launches on `stream` (a cudaStream_t).
absl::Status GemmS8(const GemmS8Args& args, void* stream);
absl::Status GemmF16(const GemmF16Args& args, void* stream);

}  // namespace kvant::cuda

#endif  // KVANT_OPS_CUDA_GEMM_CUDA_H_
