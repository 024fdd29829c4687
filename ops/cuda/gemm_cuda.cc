// Host side of the CUDA GEMMs: argument checks, planning, launch.
#include "ops/cuda/gemm_cuda.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "absl/strings/str_format.h"

namespace kvant::cuda {
namespace {

struct TileDims {
  GemmTile tile;
  int bm, bn;
};
constexpr TileDims kTiles[] = {{GemmTile::k128x256, 128, 256},
                               {GemmTile::k128x128, 128, 128},
                               {GemmTile::k64x64, 64, 64},
                               {GemmTile::k16x64, 16, 64}};

const TileDims* Dims(GemmTile tile) {
  for (const TileDims& d : kTiles)
    if (d.tile == tile) return &d;
  return nullptr;
}

int64_t Tiles(const TileDims& d, int64_t m, int64_t n) { return ((m + d.bm - 1) / d.bm) * ((n + d.bn - 1) / d.bn); }

absl::Status CudaStatus(int err, const char* what) {
  if (err == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("%s: CUDA error %d (%s)", what, err,
                                             cudaGetErrorString(static_cast<cudaError_t>(err))));
}

// Shared checks; `elem` is the element size of A and B.
absl::Status CheckShapes(const char* op, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda, const void* b,
                         int64_t ldb, const void* c, int64_t ldc) {
  if (m < 0 || n < 0 || k <= 0)
    return absl::InvalidArgumentError(absl::StrFormat("%s: need M, N >= 0 and K > 0, got M=%d N=%d K=%d", op, m, n, k));
  if (m >= (int64_t{1} << 31) || n >= (int64_t{1} << 31))
    return absl::InvalidArgumentError(absl::StrFormat("%s: M=%d or N=%d is 2^31 or more", op, m, n));
  if (a == nullptr || b == nullptr || c == nullptr)
    return absl::InvalidArgumentError(absl::StrFormat("%s: A, B and C must be device pointers, got null", op));
  if (lda < k || ldb < k || ldc < n)
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: leading dimensions too small: lda=%d ldb=%d (K=%d), ldc=%d (N=%d)", op, lda, ldb, k, ldc, n));
  return absl::OkStatus();
}

// Resolves an automatic plan and checks an explicit one against the device.
absl::StatusOr<GemmPlan> ResolvePlan(const char* op, GemmPlan plan, int64_t m, int64_t n, int64_t k_bytes,
                                     size_t workspace_bytes) {
  absl::StatusOr<GemmDevice> device = CurrentGemmDevice();
  if (!device.ok()) return device.status();
  if (plan.tile == GemmTile::kAuto) {
    plan = PlanGemm(*device, m, n, k_bytes);
    if (GemmWorkspaceBytes(plan, m, n) > workspace_bytes) plan.splits = 1;
  }
  const TileDims* d = Dims(plan.tile);
  if (d == nullptr) return absl::InvalidArgumentError(absl::StrFormat("%s: unknown tile", op));
  if (GemmTileSmemBytes(plan.tile) > device->smem_optin)
    return absl::InvalidArgumentError(absl::StrFormat("%s: tile %s needs %d bytes of shared memory, the device allows %d",
                                                      op, GemmTileName(plan.tile), GemmTileSmemBytes(plan.tile),
                                                      device->smem_optin));
  if (plan.splits < 1 || plan.splits > 65535)
    return absl::InvalidArgumentError(absl::StrFormat("%s: splits=%d outside [1, 65535]", op, plan.splits));
  if ((m + d->bm - 1) / d->bm > 65535)
    return absl::InvalidArgumentError(absl::StrFormat("%s: M=%d is too large for tile %s (grid rows > 65535)", op, m,
                                                      GemmTileName(plan.tile)));
  const size_t need = GemmWorkspaceBytes(plan, m, n);
  if (need > workspace_bytes)
    return absl::InvalidArgumentError(absl::StrFormat("%s: split K over %d needs a workspace of %d bytes, got %d", op,
                                                      plan.splits, need, workspace_bytes));
  return plan;
}

}  // namespace

const char* GemmTileName(GemmTile tile) {
  switch (tile) {
    case GemmTile::kAuto: return "auto";
    case GemmTile::k128x256: return "128x256";
    case GemmTile::k128x128: return "128x128";
    case GemmTile::k64x64: return "64x64";
    case GemmTile::k16x64: return "16x64";
  }
  return "?";
}

void GemmTileDims(GemmTile tile, int* bm, int* bn) {
  const TileDims* d = Dims(tile);
  *bm = d ? d->bm : 0;
  *bn = d ? d->bn : 0;
}

absl::StatusOr<GemmDevice> CurrentGemmDevice() {
  static std::mutex mu;
  static std::vector<GemmDevice> cache;
  int dev = 0;
  if (cudaError_t e = cudaGetDevice(&dev); e != cudaSuccess) return CudaStatus(e, "CUDA GEMM: no device");
  std::lock_guard<std::mutex> lock(mu);
  if (dev < static_cast<int>(cache.size()) && cache[dev].sms > 0) return cache[dev];
  GemmDevice g;
  int major = 0, minor = 0;
  cudaError_t e = cudaDeviceGetAttribute(&g.sms, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&g.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (e != cudaSuccess) return CudaStatus(e, "CUDA GEMM: reading device attributes");
  g.cc = major * 10 + minor;
  if (g.cc < 75)
    return absl::FailedPreconditionError(
        absl::StrFormat("CUDA GEMM: device %d is sm_%d; this build runs on sm_75 and newer", dev, g.cc));
  if (dev >= static_cast<int>(cache.size())) cache.resize(dev + 1);
  cache[dev] = g;
  return g;
}

GemmPlan PlanGemm(const GemmDevice& device, int64_t m, int64_t n, int64_t k_bytes) {
  // Measured on an H200 (tools/gpu_check, KVANT_GEMM_SWEEP=1): 128x128 beats
  // 128x256 at 4096^3 (262 vs 395 us: one 256-thread CTA per SM at 254
  // registers hides too little latency), and the 16x64 tile with 4 splits is
  // the fastest token-shape plan (M = 1: 9.9 us; 8 splits 11.0, 16 splits 16.1).
  GemmPlan plan;
  if (m <= 16) {
    plan.tile = GemmTile::k16x64;
  } else if (m <= 64 || Tiles(*Dims(GemmTile::k128x128), m, n) < device.sms / 2) {
    plan.tile = GemmTile::k64x64;
  } else {
    plan.tile = GemmTile::k128x128;
  }
  const int64_t tiles = Tiles(*Dims(plan.tile), m, n);
  const int64_t target = plan.tile == GemmTile::k128x128 ? device.sms : 2 * device.sms;
  const int64_t k_tiles = (k_bytes + 63) / 64;
  const int64_t splits = std::min<int64_t>({target / std::max<int64_t>(tiles, 1), k_tiles / 2, 32});
  plan.splits = static_cast<int>(std::max<int64_t>(splits, 1));
  return plan;
}

size_t GemmWorkspaceBytes(const GemmPlan& plan, int64_t m, int64_t n) { return GemmPlanWorkspaceBytes(plan, m, n); }

absl::Status GemmS8(const GemmS8Args& args, void* stream) {
  const char* op = "CUDA GEMM s8";
  if (absl::Status s = CheckShapes(op, args.m, args.n, args.k, args.a, args.lda, args.b, args.ldb, args.c, args.ldc);
      !s.ok())
    return s;
  if ((args.out == GemmS8Args::Out::kU8 || args.out == GemmS8Args::Out::kS8) && args.lo > args.hi)
    return absl::InvalidArgumentError(absl::StrFormat("%s: clamp range [%d, %d] is empty", op, args.lo, args.hi));
  if (args.m == 0 || args.n == 0) return absl::OkStatus();
  absl::StatusOr<GemmPlan> plan = ResolvePlan(op, args.plan, args.m, args.n, args.k, args.workspace_bytes);
  if (!plan.ok()) return plan.status();
  return CudaStatus(LaunchGemmS8(args, *plan, stream), op);
}

absl::Status GemmF16(const GemmF16Args& args, void* stream) {
  const char* op = "CUDA GEMM f16";
  if (absl::Status s = CheckShapes(op, args.m, args.n, args.k, args.a, args.lda, args.b, args.ldb, args.c, args.ldc);
      !s.ok())
    return s;
  if (args.m == 0 || args.n == 0) return absl::OkStatus();
  absl::StatusOr<GemmPlan> plan = ResolvePlan(op, args.plan, args.m, args.n, args.k * 2, args.workspace_bytes);
  if (!plan.ok()) return plan.status();
  return CudaStatus(LaunchGemmF16(args, *plan, stream), op);
}

}  // namespace kvant::cuda
