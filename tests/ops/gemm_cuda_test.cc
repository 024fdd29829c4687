// CUDA GEMMs (ops/cuda) against plain CPU loops: INT8 with s32 results equal
// exactly and u8/s8 requantization within 1 LSB of the CPU epilogue's
// RequantizeFloat, f32 (dynamic-quantization) output to float rounding; FP16
// with FP32 accumulation within a bound from the sum of |a*b|. Every tile
// shape and split-K is forced in turn; sizes around the tile edges, K not a
// multiple of 16 (the unaligned loader), activation zero points that stand
// for u8 0/128/255, saturating operands, per-tensor and per-column scales.
// Outputs (and their row padding) are poisoned before each run; padding
// must stay poisoned. Every test skips without a CUDA device; argument errors
// are checked without one.
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/gemm_s8.h"
#include "ops/cuda/gemm_cuda.h"
#include "runtime/gpu_caps.h"

namespace kvant::cuda {
namespace {

bool HaveGpu() {
  static const bool have = !QueryGpuDevices().empty();
  return have;
}

#define KVANT_SKIP_WITHOUT_GPU() \
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device"

constexpr uint8_t kPoison = 0xA5;

// A device allocation filled from and read back to host vectors.
template <class T>
class DeviceVector {
 public:
  explicit DeviceVector(size_t n) : n_(n) { EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)), 0); }
  explicit DeviceVector(const std::vector<T>& v) : DeviceVector(v.size()) {
    EXPECT_EQ(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), 0);
  }
  ~DeviceVector() { cudaFree(p_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  T* get() const { return p_; }
  void Fill(uint8_t byte) { EXPECT_EQ(cudaMemset(p_, byte, n_ * sizeof(T)), 0); }
  std::vector<T> Read() const {
    std::vector<T> v(n_);
    EXPECT_EQ(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), 0);
    return v;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

template <class T>
T PoisonValue() {
  T v;
  std::memset(&v, kPoison, sizeof(T));
  return v;
}

// Runs the GEMM twice with the plan's workspace, zeroed once as the API asks
// (poisoning the output before each run): the second run only succeeds if
// the first left every split-K counter at zero, which is checked as well.
template <class Args, class Fn>
void RunTwiceWithWorkspace(Args& args, Fn gemm, int64_t k_bytes, DeviceVector<uint8_t>& out) {
  GemmPlan plan = args.plan;
  if (plan.tile == GemmTile::kAuto) {
    absl::StatusOr<GemmDevice> dev = CurrentGemmDevice();
    ASSERT_TRUE(dev.ok()) << dev.status();
    plan = PlanGemm(*dev, args.m, args.n, k_bytes);
  }
  const size_t bytes = GemmWorkspaceBytes(plan, args.m, args.n);
  DeviceVector<uint8_t> ws(bytes);
  ws.Fill(0);
  args.workspace = bytes ? ws.get() : nullptr;
  args.workspace_bytes = bytes;
  for (int run = 0; run < 2; ++run) {
    out.Fill(kPoison);
    const absl::Status s = gemm(args, nullptr);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(cudaDeviceSynchronize(), 0);
  }
  if (plan.splits > 1) {
    int bm = 0, bn = 0;
    GemmTileDims(plan.tile, &bm, &bn);
    const int64_t tiles = ((args.m + bm - 1) / bm) * ((args.n + bn - 1) / bn);
    const std::vector<uint8_t> w = ws.Read();
    for (int64_t t = 0; t < tiles; ++t) {
      int32_t c;
      std::memcpy(&c, &w[t * 4], 4);
      ASSERT_EQ(c, 0) << "split-K counter of tile " << t << " left at " << c;
    }
  }
}

class GemmS8CudaTester {
 public:
  using Out = GemmS8Args::Out;
  GemmS8CudaTester& M(int64_t v) { m_ = v; return *this; }
  GemmS8CudaTester& N(int64_t v) { n_ = v; return *this; }
  GemmS8CudaTester& K(int64_t v) { k_ = v; return *this; }
  GemmS8CudaTester& Za(int32_t v) { za_ = v; return *this; }
  GemmS8CudaTester& Output(Out v) { out_ = v; return *this; }
  GemmS8CudaTester& PerColumn(bool v) { per_column_ = v; return *this; }
  GemmS8CudaTester& Saturating(bool v) { saturating_ = v; return *this; }
  GemmS8CudaTester& LdaExtra(int64_t v) { lda_extra_ = v; return *this; }
  GemmS8CudaTester& Plan(GemmTile tile, int splits) { plan_ = {tile, splits}; return *this; }
  GemmS8CudaTester& Alpha(float v) { alpha_ = v; return *this; }

  void Test() const {
    std::mt19937 rng(static_cast<uint32_t>(m_ * 7919 + n_ * 131 + k_));
    std::uniform_int_distribution<int> any(-128, 127), bit(0, 1);
    const int64_t lda = k_ + lda_extra_, ldb = k_ + lda_extra_, ldc = n_ + 3;
    std::vector<int8_t> a(m_ * lda, 0x5A), b(n_ * ldb, 0x5A);
    for (int64_t i = 0; i < m_; ++i)
      for (int64_t k = 0; k < k_; ++k) a[i * lda + k] = static_cast<int8_t>(saturating_ ? (bit(rng) ? 127 : -128) : any(rng));
    for (int64_t j = 0; j < n_; ++j)
      for (int64_t k = 0; k < k_; ++k) b[j * ldb + k] = static_cast<int8_t>(saturating_ ? -128 : any(rng));
    std::vector<int32_t> col_offset(n_);
    std::vector<float> scale(per_column_ ? n_ : 1), bias_f(n_);
    const float typical = 40.f / (std::sqrt(static_cast<float>(k_)) * 5500.f);
    std::uniform_real_distribution<float> spread(0.5f, 2.f), fb(-3.f, 3.f);
    std::uniform_int_distribution<int> bias(-50000, 50000);
    for (int64_t j = 0; j < n_; ++j) {
      int32_t colsum = 0;
      for (int64_t k = 0; k < k_; ++k) colsum += b[j * ldb + k];
      col_offset[j] = bias(rng) - za_ * colsum;
      bias_f[j] = fb(rng);
    }
    for (float& s : scale) s = typical * spread(rng);

    const bool quantized = out_ == Out::kU8 || out_ == Out::kS8;
    const int32_t zp = out_ == Out::kU8 ? 128 : -5, lo = out_ == Out::kU8 ? 0 : -128, hi = out_ == Out::kU8 ? 255 : 127;
    const size_t out_size = out_ == Out::kU8 || out_ == Out::kS8 ? 1 : 4;

    DeviceVector<int8_t> da(a), db(b);
    DeviceVector<int32_t> doff(col_offset);
    DeviceVector<float> dscale(scale), dbias(bias_f);
    DeviceVector<uint8_t> dc(m_ * ldc * out_size);
    GemmS8Args args;
    args.m = m_, args.n = n_, args.k = k_;
    args.a = da.get(), args.lda = lda, args.b = db.get(), args.ldb = ldb;
    args.col_offset = doff.get();
    args.scale = dscale.get(), args.scale_per_column = per_column_, args.alpha = alpha_;
    args.bias_f32 = out_ == Out::kF32 ? dbias.get() : nullptr;
    args.out = out_, args.zero_point = zp, args.lo = lo, args.hi = hi;
    args.c = dc.get(), args.ldc = ldc;
    args.plan = plan_;
    RunTwiceWithWorkspace(args, GemmS8, k_, dc);
    const std::vector<uint8_t> c = dc.Read();

    int64_t off_by_one = 0;
    for (int64_t i = 0; i < m_; ++i) {
      for (int64_t j = 0; j < ldc; ++j) {
        const uint8_t* got = &c[(i * ldc + j) * out_size];
        if (j >= n_) {  // padding stays poisoned
          for (size_t e = 0; e < out_size; ++e) ASSERT_EQ(got[e], kPoison) << "padding written at " << i << "," << j;
          continue;
        }
        int32_t v = col_offset[j];
        for (int64_t k = 0; k < k_; ++k) v += int32_t{a[i * lda + k]} * b[j * ldb + k];
        const float s = scale[per_column_ ? j : 0] * alpha_;
        if (out_ == Out::kS32) {
          int32_t g;
          std::memcpy(&g, got, 4);
          ASSERT_EQ(g, v) << "at " << i << "," << j;
        } else if (out_ == Out::kF32) {
          float g;
          std::memcpy(&g, got, 4);
          const float want = static_cast<float>(v) * s + bias_f[j];
          ASSERT_NEAR(g, want, 1e-5f * std::fabs(want) + 1e-6f) << "at " << i << "," << j;
        } else if (quantized) {
          const int32_t want = std::clamp<int64_t>(int64_t{cpu::RequantizeFloat(v, s)} + zp, lo, hi);
          const int32_t g = out_ == Out::kU8 ? int32_t{got[0]} : int32_t{static_cast<int8_t>(got[0])};
          ASSERT_LE(std::abs(g - want), 1) << "at " << i << "," << j;
          off_by_one += g != want;
        }
      }
    }
    EXPECT_LE(off_by_one, m_ * n_ / 1000 + 1) << "requantization differs by 1 LSB too often";
  }

 private:
  int64_t m_ = 1, n_ = 1, k_ = 1, lda_extra_ = 0;
  int32_t za_ = 0;
  Out out_ = Out::kS32;
  bool per_column_ = false, saturating_ = false;
  float alpha_ = 1.f;
  GemmPlan plan_;
};

constexpr GemmTile kAllTiles[] = {GemmTile::k16x64, GemmTile::k64x64, GemmTile::k128x128, GemmTile::k128x256};

TEST(GemmS8Cuda, TileEdgesEveryTile) {
  KVANT_SKIP_WITHOUT_GPU();
  for (GemmTile tile : kAllTiles) {
    for (int64_t m : {1, 15, 16, 17, 65, 130}) {
      for (int64_t n : {8, 63, 64, 65, 257}) {
        for (int64_t k : {64, 96, 128 + 16, 320}) {
          SCOPED_TRACE(::testing::Message() << GemmTileName(tile) << " M=" << m << " N=" << n << " K=" << k);
          GemmS8CudaTester().M(m).N(n).K(k).Plan(tile, 1).Test();
        }
      }
    }
  }
}

TEST(GemmS8Cuda, KNotMultipleOf16UsesUnalignedLoads) {
  KVANT_SKIP_WITHOUT_GPU();
  for (GemmTile tile : kAllTiles)
    for (int64_t k : {1, 3, 17, 27, 100, 515}) {
      SCOPED_TRACE(::testing::Message() << GemmTileName(tile) << " K=" << k);
      GemmS8CudaTester().M(37).N(70).K(k).Plan(tile, 1).Test();
      GemmS8CudaTester().M(37).N(70).K(k).LdaExtra(16 - k % 16).Plan(tile, 1).Test();  // padded rows: aligned path
    }
}

TEST(GemmS8Cuda, SplitKIsExactAndLeavesCountersZero) {
  KVANT_SKIP_WITHOUT_GPU();
  for (GemmTile tile : kAllTiles)
    for (int splits : {2, 3, 7, 40}) {
      SCOPED_TRACE(::testing::Message() << GemmTileName(tile) << " splits=" << splits);
      GemmS8CudaTester().M(33).N(129).K(1000).Plan(tile, splits).Test();
      GemmS8CudaTester().M(1).N(300).K(2048).Plan(tile, splits).Output(GemmS8Args::Out::kS8).PerColumn(true).Test();
    }
}

TEST(GemmS8Cuda, RequantizedOutputs) {
  KVANT_SKIP_WITHOUT_GPU();
  using Out = GemmS8Args::Out;
  for (Out out : {Out::kU8, Out::kS8, Out::kF32})
    for (bool per_column : {false, true})
      for (int32_t za : {-128, 0, 127}) {  // u8 zero points 0, 128, 255 after the +128 shift
        SCOPED_TRACE(::testing::Message() << "out=" << static_cast<int>(out) << " per_column=" << per_column << " za=" << za);
        GemmS8CudaTester().M(70).N(96).K(200).Za(za).Output(out).PerColumn(per_column).Test();
        GemmS8CudaTester().M(5).N(40).K(77).Za(za).Output(out).PerColumn(per_column).Alpha(0.75f).Test();
      }
}

TEST(GemmS8Cuda, SaturatingOperands) {
  KVANT_SKIP_WITHOUT_GPU();
  for (GemmTile tile : kAllTiles) {
    GemmS8CudaTester().M(64).N(64).K(4096).Saturating(true).Plan(tile, 1).Test();
    GemmS8CudaTester().M(20).N(64).K(999).Saturating(true).Output(GemmS8Args::Out::kS8).Plan(tile, 3).Test();
  }
}

TEST(GemmS8Cuda, AutoPlanOnTransformerShapes) {
  KVANT_SKIP_WITHOUT_GPU();
  for (int64_t m : {1, 16, 128, 384})
    GemmS8CudaTester().M(m).N(768).K(768).Output(GemmS8Args::Out::kS8).PerColumn(true).Test();
}

class GemmF16CudaTester {
 public:
  using Out = GemmF16Args::Out;
  GemmF16CudaTester& M(int64_t v) { m_ = v; return *this; }
  GemmF16CudaTester& N(int64_t v) { n_ = v; return *this; }
  GemmF16CudaTester& K(int64_t v) { k_ = v; return *this; }
  GemmF16CudaTester& Output(Out v) { out_ = v; return *this; }
  GemmF16CudaTester& Plan(GemmTile tile, int splits) { plan_ = {tile, splits}; return *this; }

  void Test() const {
    std::mt19937 rng(static_cast<uint32_t>(m_ * 31 + n_ * 17 + k_));
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    const int64_t ldc = n_ + 1;
    std::vector<uint16_t> a(m_ * k_), b(n_ * k_);
    std::vector<float> af(a.size()), bf(b.size()), bias(n_);
    auto fill = [&](std::vector<uint16_t>& h, std::vector<float>& f) {
      for (size_t i = 0; i < h.size(); ++i) {
        const __half x = __float2half_rn(dist(rng));
        std::memcpy(&h[i], &x, 2);
        f[i] = __half2float(x);
      }
    };
    fill(a, af);
    fill(b, bf);
    for (float& x : bias) x = dist(rng);
    const float alpha = 0.5f;
    const size_t out_size = out_ == Out::kF16 ? 2 : 4;
    DeviceVector<uint16_t> da(a), db(b);
    DeviceVector<float> dbias(bias);
    DeviceVector<uint8_t> dc(m_ * ldc * out_size);
    GemmF16Args args;
    args.m = m_, args.n = n_, args.k = k_;
    args.a = da.get(), args.lda = k_, args.b = db.get(), args.ldb = k_;
    args.alpha = alpha, args.bias = dbias.get(), args.out = out_;
    args.c = dc.get(), args.ldc = ldc;
    args.plan = plan_;
    RunTwiceWithWorkspace(args, GemmF16, k_ * 2, dc);
    const std::vector<uint8_t> c = dc.Read();
    for (int64_t i = 0; i < m_; ++i) {
      for (int64_t j = 0; j < ldc; ++j) {
        const uint8_t* got = &c[(i * ldc + j) * out_size];
        if (j >= n_) {
          for (size_t e = 0; e < out_size; ++e) ASSERT_EQ(got[e], kPoison) << "padding written at " << i << "," << j;
          continue;
        }
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < k_; ++k) {
          ref += double{af[i * k_ + k]} * bf[j * k_ + k];
          mag += std::fabs(double{af[i * k_ + k]} * bf[j * k_ + k]);
        }
        ref = ref * alpha + bias[j];
        double g;
        if (out_ == Out::kF16) {
          __half h;
          std::memcpy(&h, got, 2);
          g = __half2float(h);
        } else {
          float f;
          std::memcpy(&f, got, 4);
          g = f;
        }
        // FP32 accumulation; an f16 store adds 2^-11 relative.
        // (Tensor cores may truncate while aligning products: a generous
        // 2e-5 of the magnitude, still far below a misplaced fragment.)
        const double tol = 2e-5 * mag + 1e-5 +
                           (out_ == Out::kF16 ? std::fabs(ref) / 1024 : 0);
        ASSERT_NEAR(g, ref, tol) << "at " << i << "," << j;
      }
    }
  }

 private:
  int64_t m_ = 1, n_ = 1, k_ = 1;
  Out out_ = Out::kF16;
  GemmPlan plan_;
};

TEST(GemmF16Cuda, TileEdgesEveryTileAndSplit) {
  KVANT_SKIP_WITHOUT_GPU();
  for (GemmTile tile : kAllTiles)
    for (int splits : {1, 3})
      for (int64_t m : {1, 17, 130})
        for (int64_t n : {8, 65, 257})
          for (int64_t k : {8, 40, 333}) {
            SCOPED_TRACE(::testing::Message() << GemmTileName(tile) << " splits=" << splits << " M=" << m
                                            << " N=" << n << " K=" << k);
            GemmF16CudaTester().M(m).N(n).K(k).Plan(tile, splits).Test();
          }
}

TEST(GemmF16Cuda, F32OutputAndAutoPlan) {
  KVANT_SKIP_WITHOUT_GPU();
  for (int64_t m : {1, 16, 128, 300})
    GemmF16CudaTester().M(m).N(512).K(1024).Output(GemmF16Args::Out::kF32).Test();
}

// Argument errors come back as Status, device or not.
TEST(GemmCudaArgs, BadArgumentsAreErrors) {
  GemmS8Args args;
  args.m = 4, args.n = 4, args.k = 0;
  EXPECT_EQ(GemmS8(args, nullptr).code(), absl::StatusCode::kInvalidArgument);
  args.k = 8;
  EXPECT_EQ(GemmS8(args, nullptr).code(), absl::StatusCode::kInvalidArgument);  // null pointers
  int8_t dummy[64];
  args.a = dummy, args.b = dummy, args.c = dummy, args.lda = 4, args.ldb = 8, args.ldc = 4;
  const absl::Status s = GemmS8(args, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("lda=4"), std::string::npos) << s;
}

TEST(GemmCudaPlan, NarrowTilesAndSplitsForTokens) {
  const GemmDevice h100{132, 227 * 1024, 90};
  const GemmPlan token = PlanGemm(h100, 1, 4096, 4096);
  EXPECT_EQ(token.tile, GemmTile::k16x64);
  EXPECT_EQ(token.splits, 4);  // 64 tiles, two CTAs per SM
  const GemmPlan mid = PlanGemm(h100, 128, 4096, 4096);
  EXPECT_EQ(mid.tile, GemmTile::k64x64);  // 32 tiles of 128x128 would idle most SMs
  const GemmPlan big = PlanGemm(h100, 4096, 4096, 4096);
  EXPECT_EQ(big.tile, GemmTile::k128x128);
  EXPECT_EQ(big.splits, 1);
  // A short K never splits below two K tiles per split.
  EXPECT_EQ(PlanGemm(h100, 1, 64, 128).splits, 1);
}

}  // namespace
}  // namespace kvant::cuda
