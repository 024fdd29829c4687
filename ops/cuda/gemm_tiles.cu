// Sizes of the GEMM tile configurations (gemm_tiles.cuh), for planning.
#include "ops/cuda/gemm_args.h"
#include "ops/cuda/gemm_tiles.cuh"

namespace kvant::cuda {

int GemmTileSmemBytes(GemmTile tile) {
  switch (tile) {
#define KVANT_CASE(name, bm, bn, wm, wn, st) \
  case GemmTile::name:                       \
    return TileShape<bm, bn, wm, wn, st>::kSmemBytes;
    KVANT_CUDA_GEMM_TILES(KVANT_CASE)
#undef KVANT_CASE
    default:
      return 0;
  }
}

int GemmTileThreads(GemmTile tile) {
  switch (tile) {
#define KVANT_CASE(name, bm, bn, wm, wn, st) \
  case GemmTile::name:                       \
    return TileShape<bm, bn, wm, wn, st>::kThreads;
    KVANT_CUDA_GEMM_TILES(KVANT_CASE)
#undef KVANT_CASE
    default:
      return 0;
  }
}

size_t GemmPlanWorkspaceBytes(GemmPlan plan, int64_t m, int64_t n) {
  switch (plan.tile) {
#define KVANT_CASE(name, bm, bn, wm, wn, st)                                                  \
  case GemmTile::name:                                                                        \
    return SplitWorkspaceBytes(static_cast<int>(((m + bm - 1) / bm) * ((n + bn - 1) / bn)), \
                               plan.splits, TileShape<bm, bn, wm, wn, st>::kThreads,        \
                               TileShape<bm, bn, wm, wn, st>::kAccPerThread);
    KVANT_CUDA_GEMM_TILES(KVANT_CASE)
#undef KVANT_CASE
    default:
      return 0;
  }
}

}  // namespace kvant::cuda
