// The tile configurations of the tensor-core GEMMs and one launcher for all of
// them, shared by the INT8 and FP16 kernel files.
#ifndef KVANT_OPS_CUDA_GEMM_TILES_CUH_
#define KVANT_OPS_CUDA_GEMM_TILES_CUH_

#include "ops/cuda/gemm_args.h"
#include "ops/cuda/mma_tile.cuh"

namespace kvant::cuda {

// BM, BN, WM, WN, STAGES per tile.
#define KVANT_CUDA_GEMM_TILES(X)          \
  X(k128x256, 128, 256, 64, 64, 4)        \
  X(k128x128, 128, 128, 64, 32, 4)        \
  X(k64x64, 64, 64, 32, 32, 4)            \
  X(k16x64, 16, 64, 16, 16, 6)

template <class Mma, int BM, int BN, int WM, int WN, int STAGES, class Epi>
cudaError_t LaunchTile(const TileParams& p, bool aligned, const Epi& epi, cudaStream_t stream) {
  using Shape = TileShape<BM, BN, WM, WN, STAGES>;
  const dim3 grid((p.n + BN - 1) / BN, (p.m + BM - 1) / BM, p.splits);
  auto kernel = aligned ? MmaGemmKernel<Mma, BM, BN, WM, WN, STAGES, true, Epi>
                        : MmaGemmKernel<Mma, BM, BN, WM, WN, STAGES, false, Epi>;
  if (Shape::kSmemBytes > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Shape::kSmemBytes);
    if (e != cudaSuccess) return e;
  }
  kernel<<<grid, Shape::kThreads, Shape::kSmemBytes, stream>>>(p, epi);
  return cudaGetLastError();
}

template <class Mma, class Epi>
cudaError_t LaunchPlanned(const TileParams& p, GemmTile tile, bool aligned, const Epi& epi, cudaStream_t stream) {
  switch (tile) {
#define KVANT_CASE(name, bm, bn, wm, wn, st) \
  case GemmTile::name:                       \
    return LaunchTile<Mma, bm, bn, wm, wn, st>(p, aligned, epi, stream);
    KVANT_CUDA_GEMM_TILES(KVANT_CASE)
#undef KVANT_CASE
    default:
      return cudaErrorInvalidValue;
  }
}

// 16-byte cp.async needs aligned rows.
inline bool RowsAligned(const void* a, int64_t lda_bytes, const void* b, int64_t ldb_bytes) {
  return reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0 &&
         lda_bytes % 16 == 0 && ldb_bytes % 16 == 0;
}

}  // namespace kvant::cuda

#endif  // KVANT_OPS_CUDA_GEMM_TILES_CUH_
