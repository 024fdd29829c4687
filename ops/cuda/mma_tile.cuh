// The tensor-core GEMM skeleton shared by the INT8 (IMMA) and FP16 (HMMA)
// kernels: C[M,N] = A[M,K] . B[N,K]^T with both operands K-contiguous.
//
// Both precisions see the operands as rows of bytes: one pipeline stage holds
// 64 bytes of K per row (32 int8 values per MMA k-step, or 16 halves), so the
// loader, the shared-memory swizzle and the ldmatrix fragment addressing are
// the same; only the MMA instruction and the accumulator type differ (the
// m16n8k32 s8 and m16n8k16 f16 fragments have identical byte layouts).
//   1. Each CTA owns a BM x BN tile of C and a contiguous range of K tiles
//      (split K: blockIdx.z); warps own WM x WN sub-tiles.
//   2. A STAGES-deep cp.async pipeline (sm_80+; plain loads on sm_75) fills
//      shared memory; rows are 64 bytes with 16-byte chunks XOR-swizzled by
//      (row / 2) % 4, so every 8-row ldmatrix phase hits 8 distinct bank groups.
//   3. ldmatrix.x4 loads A (one m16 tile) and B (two n8 tiles) fragments;
//      mma.sync accumulates in registers.
//   4. Split K: every CTA writes its accumulators (fragment order, coalesced)
//      to the workspace; the last CTA of a tile (atomic counter) sums the
//      splits in a fixed order (deterministic) and resets the counter.
//   5. The epilogue functor receives pairs of adjacent columns per thread.
#ifndef KVANT_OPS_CUDA_MMA_TILE_CUH_
#define KVANT_OPS_CUDA_MMA_TILE_CUH_

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kvant::cuda {

constexpr int kStageBytes = 64;  // bytes of K per row per stage

struct TileParams {
  int m, n;
  int64_t k_bytes;          // K * element size
  const uint8_t* a;         // [M, K], row stride lda bytes
  int64_t lda;
  const uint8_t* b;         // [N, K], row stride ldb bytes
  int64_t ldb;
  int splits;               // K ranges (gridDim.z)
  void* workspace;          // split K: counters (one int per tile), then partials
};

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ uint32_t Swizzled(int row, int chunk) {
  return row * kStageBytes + ((chunk ^ ((row >> 1) & 3)) << 4);
}

// 16 bytes to shared memory; only the first `bytes` come from src, the rest is
// zero. kAligned: src is 16-byte aligned whenever bytes > 0.
template <bool kAligned>
__device__ __forceinline__ void CopyChunk(uint32_t dst, const uint8_t* src, int bytes) {
#if __CUDA_ARCH__ >= 800
  if constexpr (kAligned) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
    return;
  }
#endif
  uint32_t w[4] = {0, 0, 0, 0};
  if (kAligned && bytes == 16) {
    const uint4 v = *reinterpret_cast<const uint4*>(src);
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  } else {
    for (int i = 0; i < bytes; ++i) w[i >> 2] |= uint32_t{src[i]} << (8 * (i & 3));
  }
  asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(dst), "r"(w[0]), "r"(w[1]), "r"(w[2]),
               "r"(w[3]));
}

__device__ __forceinline__ void CommitCopies() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int kPending>
__device__ __forceinline__ void WaitCopies() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
#endif
}

// Rows [0, ROWS) x bytes [k0, k0 + 64) of a K-contiguous operand into one stage.
template <int ROWS, int THREADS, bool kAligned>
__device__ __forceinline__ void LoadStage(uint32_t stage, const uint8_t* g, int64_t ld, int rows_valid,
                                          int64_t k0, int64_t k_bytes, int tid) {
  constexpr int kChunks = ROWS * 4;
#pragma unroll
  for (int i = 0; i < (kChunks + THREADS - 1) / THREADS; ++i) {
    const int c = tid + i * THREADS;
    if (kChunks % THREADS == 0 || c < kChunks) {
      const int r = c >> 2, ch = c & 3;
      const int64_t k = k0 + ch * 16;
      const int64_t left = k_bytes - k;
      const int bytes = r < rows_valid ? static_cast<int>(left < 0 ? 0 : (left > 16 ? 16 : left)) : 0;
      CopyChunk<kAligned>(stage + Swizzled(r, ch), bytes > 0 ? g + r * ld + k : g, bytes);
    }
  }
}

__device__ __forceinline__ void Ldmatrix4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// MMA policies: one m16 x n8 x (32 bytes of K) product per call.
struct ImmaS8 {
  using Acc = int32_t;
  __device__ __forceinline__ static void Mma(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else  // sm_75: four m8n8k16 products make one m16n8k32
    asm volatile("mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
                 : "+r"(d[0]), "+r"(d[1]) : "r"(a[0]), "r"(b0));
    asm volatile("mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
                 : "+r"(d[0]), "+r"(d[1]) : "r"(a[2]), "r"(b1));
    asm volatile("mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
                 : "+r"(d[2]), "+r"(d[3]) : "r"(a[1]), "r"(b0));
    asm volatile("mma.sync.aligned.m8n8k16.row.col.s32.s8.s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};\n"
                 : "+r"(d[2]), "+r"(d[3]) : "r"(a[3]), "r"(b1));
#endif
  }
};

struct HmmaF16 {
  using Acc = float;
  __device__ __forceinline__ static void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else  // sm_75: two m16n8k8 products make one m16n8k16
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(b0));
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[2]), "r"(a[3]), "r"(b1));
#endif
  }
};

template <int BM, int BN, int WM, int WN, int STAGES>
struct TileShape {
  static constexpr int kWarpsM = BM / WM, kWarpsN = BN / WN;
  static constexpr int kThreads = kWarpsM * kWarpsN * 32;
  static constexpr int kMi = WM / 16, kNi = WN / 8;
  static constexpr int kSmemBytes = STAGES * (BM + BN) * kStageBytes;
  static constexpr int kAccPerThread = kMi * kNi * 4;
  static_assert(WM % 16 == 0 && WN % 16 == 0 && BM % WM == 0 && BN % WN == 0, "tile shape");
};

// Split K: the workspace holds one counter per output tile (zero between
// calls), then splits x tiles x threads x kAccPerThread partial sums.
inline size_t SplitWorkspaceBytes(int tiles, int splits, int threads, int acc_per_thread) {
  if (splits <= 1) return 0;
  const size_t counters = (static_cast<size_t>(tiles) * 4 + 255) / 256 * 256;
  return counters + static_cast<size_t>(splits) * tiles * threads * acc_per_thread * 4;
}

// One launch computes the whole GEMM; `epi(row, col, v0, v1)` stores columns
// col and col + 1 of a row (col + 1 may be >= N; row and col are < M, N).
template <class Mma, int BM, int BN, int WM, int WN, int STAGES, bool kAligned, class Epi>
__global__ void __launch_bounds__(TileShape<BM, BN, WM, WN, STAGES>::kThreads)
    MmaGemmKernel(TileParams p, Epi epi) {
  using Shape = TileShape<BM, BN, WM, WN, STAGES>;
  using Acc = typename Mma::Acc;
  constexpr int kThreads = Shape::kThreads, kMi = Shape::kMi, kNi = Shape::kNi;
  extern __shared__ __align__(128) uint8_t smem[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp / Shape::kWarpsN, wn = warp % Shape::kWarpsN;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const uint8_t* ga = p.a + static_cast<int64_t>(m0) * p.lda;
  const uint8_t* gb = p.b + static_cast<int64_t>(n0) * p.ldb;
  const int rows_a = p.m - m0, rows_b = p.n - n0;

  // 1. This CTA's K tiles.
  const int64_t k_tiles = (p.k_bytes + kStageBytes - 1) / kStageBytes;
  const int64_t per_split = (k_tiles + p.splits - 1) / p.splits;
  const int64_t kt_begin = blockIdx.z * per_split;
  const int64_t kt_end = kt_begin + per_split < k_tiles ? kt_begin + per_split : k_tiles;
  const int kt_count = kt_end > kt_begin ? static_cast<int>(kt_end - kt_begin) : 0;

  const uint32_t smem0 = SmemAddr(smem);
  auto stage_a = [&](int s) { return smem0 + s * (BM + BN) * kStageBytes; };
  auto stage_b = [&](int s) { return stage_a(s) + BM * kStageBytes; };
  auto load = [&](int s, int kt) {
    const int64_t k0 = (kt_begin + kt) * kStageBytes;
    LoadStage<BM, kThreads, kAligned>(stage_a(s), ga, p.lda, rows_a, k0, p.k_bytes, tid);
    LoadStage<BN, kThreads, kAligned>(stage_b(s), gb, p.ldb, rows_b, k0, p.k_bytes, tid);
  };

  Acc acc[kMi][kNi][4];
#pragma unroll
  for (int i = 0; i < kMi; ++i)
#pragma unroll
    for (int j = 0; j < kNi; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = Acc(0);

  // 2. Prologue: STAGES - 1 stages in flight (empty groups keep the count).
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < kt_count) load(s, s);
    CommitCopies();
  }
  for (int kt = 0; kt < kt_count; ++kt) {
    WaitCopies<STAGES - 2>();
    __syncthreads();
    // The stage refilled here was consumed in the previous iteration, which
    // every thread finished before the barrier above.
    const int next = kt + STAGES - 1;
    if (next < kt_count) load(next % STAGES, next);
    CommitCopies();

    // 3. Two 32-byte k-steps per stage.
    const uint32_t sa = stage_a(kt % STAGES), sb = stage_b(kt % STAGES);
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      uint32_t af[kMi][4], bf[kNi / 2][4];
#pragma unroll
      for (int i = 0; i < kMi; ++i) {
        const int row = wm * WM + i * 16 + (lane & 15);
        Ldmatrix4(sa + Swizzled(row, ks * 2 + (lane >> 4)), af[i]);
      }
#pragma unroll
      for (int j = 0; j < kNi / 2; ++j) {
        const int row = wn * WN + j * 16 + (lane & 7) + ((lane >> 4) << 3);
        Ldmatrix4(sb + Swizzled(row, ks * 2 + ((lane >> 3) & 1)), bf[j]);
      }
#pragma unroll
      for (int i = 0; i < kMi; ++i)
#pragma unroll
        for (int j = 0; j < kNi; ++j)
          Mma::Mma(acc[i][j], af[i], bf[j / 2][(j & 1) * 2], bf[j / 2][(j & 1) * 2 + 1]);
    }
  }
  WaitCopies<0>();

  // 4. Split K: the last CTA to finish a tile sums the partials in split order.
  if (p.splits > 1) {
    const int tiles = gridDim.x * gridDim.y;
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    int* counters = static_cast<int*>(p.workspace);
    Acc* partials = reinterpret_cast<Acc*>(static_cast<uint8_t*>(p.workspace) + (tiles * 4 + 255) / 256 * 256);
    auto slot = [&](int z) {
      return reinterpret_cast<uint4*>(partials + ((static_cast<int64_t>(z) * tiles + tile) * kThreads + tid) *
                                                     Shape::kAccPerThread);
    };
    uint4* mine = slot(blockIdx.z);
#pragma unroll
    for (int i = 0; i < kMi; ++i)
#pragma unroll
      for (int j = 0; j < kNi; ++j) {
        uint4 v;
        v.x = reinterpret_cast<const uint32_t&>(acc[i][j][0]);
        v.y = reinterpret_cast<const uint32_t&>(acc[i][j][1]);
        v.z = reinterpret_cast<const uint32_t&>(acc[i][j][2]);
        v.w = reinterpret_cast<const uint32_t&>(acc[i][j][3]);
        __stcg(mine + i * kNi + j, v);
      }
    __threadfence();
    __syncthreads();
    __shared__ int is_last;
    if (tid == 0) is_last = atomicAdd(counters + tile, 1) == p.splits - 1;
    __syncthreads();
    if (!is_last) return;
    __threadfence();
#pragma unroll
    for (int i = 0; i < kMi; ++i)
#pragma unroll
      for (int j = 0; j < kNi; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = Acc(0);
    for (int z = 0; z < p.splits; ++z) {
      const uint4* part = slot(z);
#pragma unroll
      for (int i = 0; i < kMi; ++i)
#pragma unroll
        for (int j = 0; j < kNi; ++j) {
          const uint4 v = __ldcg(part + i * kNi + j);
          const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[i][j][e] += reinterpret_cast<const Acc&>(w[e]);
        }
    }
    if (tid == 0) counters[tile] = 0;
  }

  // 5. Epilogue: thread holds rows g and g + 8, columns 2t and 2t + 1 of each n8 tile.
#pragma unroll
  for (int i = 0; i < kMi; ++i)
#pragma unroll
    for (int j = 0; j < kNi; ++j) {
      const int row = m0 + wm * WM + i * 16 + (lane >> 2);
      const int col = n0 + wn * WN + j * 8 + (lane & 3) * 2;
      if (col < p.n) {
        if (row < p.m) epi(row, col, acc[i][j][0], acc[i][j][1]);
        if (row + 8 < p.m) epi(row + 8, col, acc[i][j][2], acc[i][j][3]);
      }
    }
}

}  // namespace kvant::cuda

#endif  // KVANT_OPS_CUDA_MMA_TILE_CUH_
