// The f32 and s8 projections of the recurrent operators (see the header).
#include "ops/cpu/rnn_projections.h"

#include <algorithm>
#include <array>
#include <vector>

#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/cpu/gemm_s8.h"
#include "ops/cpu/quantize_common.h"

namespace kvant::cpu {
namespace {

using Which = RnnProjections::Which;

size_t Align64(size_t n) { return (n + 63) / 64 * 64; }

// n and k of each projection.
std::pair<int64_t, int64_t> ShapeOf(const RnnDims& d, Which which) {
  switch (which) {
    case Which::kInput: return {d.gates * d.hidden, d.input};
    case Which::kRecurrent: return {d.gates * d.hidden, d.hidden};
    case Which::kRecurrentH: return {d.hidden, d.hidden};
  }
  return {0, 0};
}

class ProjectionsF32 final : public RnnProjections {
 public:
  ProjectionsF32(const RnnDims& dims, CpuFeatures cpu, const float* w, const float* r, bool half_weights)
      : dims_(dims), uk_(SelectGemmUkernelF32(cpu)) {
    const int64_t gh = dims.gates * dims.hidden, h = dims.hidden;
    for (int64_t d = 0; d < dims.dirs; ++d) {
      // B(k, n) = W[d][n][k]: W^T, likewise R^T.
      panels_[0].push_back(PackConstantF32(gh, dims.input, uk_.nr, w + d * gh * dims.input, dims.input, 1, 1.f));
      panels_[1].push_back(PackConstantF32(gh, h, uk_.nr, r + d * gh * h, h, 1, 1.f));
      if (dims.gru) panels_[2].push_back(PackConstantF32(h, h, uk_.nr, r + d * gh * h + 2 * h * h, h, 1, 1.f));
    }
    for (auto& v : panels_) {
      for (auto& p : v) half_ |= half_weights && NarrowToHalf(p);
    }
  }

  void Run(Which which, int64_t dir, int64_t m, const float* a, float* c, const float* col_bias, void* scratch,
           ParallelRunner* pool) const override {
    const auto [n, k] = ShapeOf(dims_, which);
    GemmArgsF32 args;
    args.m = m;
    args.n = n;
    args.k = k;
    args.a = {nullptr, a, k, 1};
    args.b.packed = &panels_[static_cast<int>(which)][dir];
    args.c = c;
    args.ldc = n;
    args.col_bias = col_bias;
    RunGemmF32(uk_, args, scratch, pool);
  }

  int64_t PackedBytes() const override {
    int64_t b = 0;
    for (const auto& v : panels_)
      for (const auto& p : v) b += p.bytes();
    return b;
  }

  std::string Describe() const override { return std::string(uk_.name) + (half_ ? kHalfWeightsTag : ""); }

 private:
  RnnDims dims_;
  const GemmUkernelInfoF32& uk_;
  bool half_ = false;  // some of the panels hold FP16 weights
  std::array<std::vector<PackedPanelsF32>, 3> panels_;  // by Which, per direction
};

class ProjectionsBf16 final : public RnnProjections {
 public:
  ProjectionsBf16(const RnnDims& dims, const GemmUkernelInfoBf16& uk, const float* w, const float* r)
      : dims_(dims), uk_(uk) {
    const int64_t gh = dims.gates * dims.hidden, h = dims.hidden;
    for (int64_t d = 0; d < dims.dirs; ++d) {
      // B(k, n) = W[d][n][k]: W^T, likewise R^T.
      b_[0].push_back(PackBBf16(uk_, dims.input, gh, w + d * gh * dims.input, 1, dims.input));
      b_[1].push_back(PackBBf16(uk_, h, gh, r + d * gh * h, 1, h));
      if (dims.gru) b_[2].push_back(PackBBf16(uk_, h, h, r + d * gh * h + 2 * h * h, 1, h));
    }
  }

  void Run(Which which, int64_t dir, int64_t m, const float* a, float* c, const float* col_bias, void* scratch,
           ParallelRunner* pool) const override {
    const auto [n, k] = ShapeOf(dims_, which);
    GemmArgsBf16 args;
    args.m = m;
    args.a = a;
    args.lda = k;
    args.b = &b_[static_cast<int>(which)][dir];
    args.c = c;
    args.ldc = n;
    args.col_bias = col_bias;
    RunGemmBf16(uk_, args, scratch, pool);
  }

  int64_t PackedBytes() const override {
    int64_t bytes = 0;
    for (const auto& v : b_)
      for (const auto& p : v) bytes += p.bytes();
    return bytes;
  }

  std::string Describe() const override { return uk_.name; }

 private:
  RnnDims dims_;
  const GemmUkernelInfoBf16& uk_;
  std::array<std::vector<PackedBBf16>, 3> b_;  // by Which, per direction
};

class ProjectionsS8 final : public RnnProjections {
 public:
  ProjectionsS8(const RnnDims& dims, CpuFeatures cpu, const RnnWeightsS8& q)
      : dims_(dims), cpu_(cpu), uk_(SelectGemmUkernelS8(cpu)) {
    const int64_t gh = dims.gates * dims.hidden, h = dims.hidden;
    const DataType type = q.unsigned_weights ? DataType::kUInt8 : DataType::kInt8;
    const std::vector<int8_t> w = ToSigned(q.w, type, dims.dirs * dims.input * gh);
    const std::vector<int8_t> r = ToSigned(q.r, type, dims.dirs * h * gh);
    for (int64_t d = 0; d < dims.dirs; ++d) {
      parts_[0].push_back(MakePart(w.data() + d * dims.input * gh, dims.input, gh, gh, d, 0, q.w_scale, q.w_per_column,
                                   q.w_zero_point, q.w_zp_per_column, q.unsigned_weights));
      parts_[1].push_back(MakePart(r.data() + d * h * gh, h, gh, gh, d, 0, q.r_scale, q.r_per_column, q.r_zero_point,
                                   q.r_zp_per_column, q.unsigned_weights));
      if (dims.gru) {  // columns [2h, 3h) of R
        parts_[2].push_back(MakePart(r.data() + d * h * gh + 2 * h, h, h, gh, d, 2 * h, q.r_scale, q.r_per_column,
                                     q.r_zero_point, q.r_zp_per_column, q.unsigned_weights));
      }
    }
  }

  void Run(Which which, int64_t dir, int64_t m, const float* a, float* c, const float* col_bias, void* scratch,
           ParallelRunner* pool) const override {
    const Part& p = parts_[static_cast<int>(which)][dir];
    const int64_t n = p.b.n, k = p.b.k;
    const DynamicRange range = ComputeDynamicRange(a, m * k, cpu_);
    if (range.scale == 0) {  // all zeros (a zero initial state): only the bias
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * n + j] = col_bias ? col_bias[j] : 0.f;
      return;
    }
    char* cursor = static_cast<char*>(scratch);
    uint8_t* a_u8 = reinterpret_cast<uint8_t*>(cursor);
    cursor += Align64(m * k);
    float* scale = reinterpret_cast<float*>(cursor);
    cursor += Align64(4 * n);
    QuantizeU8(a, m * k, range, a_u8, cpu_);
    for (int64_t j = 0; j < n; ++j) scale[j] = range.scale * p.scale[j];
    GemmArgsS8 g;
    g.m = m;
    g.a = a_u8;
    g.lda = k;
    g.b = &p.b;
    g.a_zero_point = range.zero_point;
    g.b_zero_points = p.any_zb ? p.zb.data() : nullptr;
    g.out.kind = GemmS8Output::Kind::kF32;
    g.out.scale = scale;
    g.out.bias_f32 = col_bias;
    g.c = c;
    g.ldc = n;
    RunGemmS8(uk_, g, cursor, pool);
  }

  int64_t PackedBytes() const override {
    int64_t b = 0;
    for (const auto& v : parts_)
      for (const auto& p : v) b += p.b.bytes();
    return b;
  }

  std::string Describe() const override { return std::string(uk_.name) + " (dynamic u8 activations)"; }

 private:
  struct Part {
    PackedBS8 b;
    std::vector<float> scale;   // per column
    std::vector<int32_t> zb;    // per column, of the s8 weights
    bool any_zb = false;
  };

  // B(k, n) = src[k * ld + n] for k < rows, n < cols; the column's scale and
  // zero point are entry d (per direction) or d * gh + col0 + n (per column).
  Part MakePart(const int8_t* src, int64_t rows, int64_t cols, int64_t ld, int64_t d, int64_t col0, const float* scale,
                bool scale_per_column, const void* zero_point, bool zp_per_column, bool unsigned_weights) const {
    const int64_t gh = dims_.gates * dims_.hidden;
    Part p;
    p.b = PackBS8(uk_, rows, cols, src, ld, 1);
    p.scale.resize(cols);
    p.zb.resize(cols);
    for (int64_t j = 0; j < cols; ++j) {
      p.scale[j] = scale[scale_per_column ? d * gh + col0 + j : d];
      const int64_t zi = zp_per_column ? d * gh + col0 + j : d;
      int32_t z = 0;
      if (zero_point != nullptr) {
        z = unsigned_weights ? static_cast<const uint8_t*>(zero_point)[zi] - 128 : static_cast<const int8_t*>(zero_point)[zi];
      } else if (unsigned_weights) {
        z = -128;  // u8 weights with zero point 0, as s8
      }
      p.zb[j] = z;
      p.any_zb |= z != 0;
    }
    return p;
  }

  RnnDims dims_;
  CpuFeatures cpu_;
  const GemmUkernelInfoS8& uk_;
  std::array<std::vector<Part>, 3> parts_;  // by Which, per direction
};

}  // namespace

std::unique_ptr<RnnProjections> MakeRnnProjectionsF32(const RnnDims& dims, CpuFeatures cpu, const float* w,
                                                      const float* r, bool half_weights) {
  return std::make_unique<ProjectionsF32>(dims, cpu, w, r, half_weights);
}

std::unique_ptr<RnnProjections> MakeRnnProjectionsBf16(const RnnDims& dims, const GemmUkernelInfoBf16& uk,
                                                       const float* w, const float* r) {
  return std::make_unique<ProjectionsBf16>(dims, uk, w, r);
}

std::unique_ptr<RnnProjections> MakeRnnProjectionsS8(const RnnDims& dims, CpuFeatures cpu, const RnnWeightsS8& weights) {
  return std::make_unique<ProjectionsS8>(dims, cpu, weights);
}

size_t RnnProjectionScratchBytes(const RnnDims& dims, bool quantized, CpuFeatures cpu, int64_t m, int threads,
                                 bool bf16) {
  size_t most = 0;
  const GemmUkernelInfoBf16* bf16_uk = bf16 ? SelectGemmUkernelBf16(cpu) : nullptr;
  for (Which w : {Which::kInput, Which::kRecurrent, Which::kRecurrentH}) {
    const auto [n, k] = ShapeOf(dims, w);
    if (bf16_uk != nullptr) {
      most = std::max(most, GemmScratchBytesBf16(*bf16_uk, m, k, threads));
      continue;
    }
    // s8: the quantized rows and the column scales, then the GEMM's scratch.
    const size_t bytes = quantized ? Align64(m * k) + Align64(4 * n) + GemmScratchBytesS8(SelectGemmUkernelS8(cpu), m, n, k, threads)
                                   : GemmScratchBytesF32(SelectGemmUkernelF32(cpu), m, n, k, false, threads, true);
    most = std::max(most, bytes);
  }
  return most + 64;
}

}  // namespace kvant::cpu
