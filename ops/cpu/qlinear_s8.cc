// ONNX Runtime's quantized elementwise and pooling operators (com.microsoft),
// with activations staying u8/s8 between INT8 convolutions:
//   QLinearAdd  c = round(sa/sc (a - za) + sb/sc (b - zb)) + zc
//   QLinearMul  c = round(sa sb/sc (a - za)(b - zb)) + zc
//   QLinearGlobalAveragePool (NCHW, or NHWC with channels_last)
//                y = round(sx/(sy N) (sum x - N zx)) + zy
// saturated to the type's range, rounding half to even, in float as ONNX
// Runtime's MLAS kernels compute them (numpy broadcasting for the binary ops,
// with a plain loop when both shapes are equal).
#include <algorithm>
#include <cmath>

#include "ops/cpu/broadcast_loop.h"
#include "ops/cpu/quantize_common.h"

namespace kvant::cpu {
namespace {

template <typename T>
constexpr float kLo = std::is_signed_v<T> ? -128.f : 0.f;
template <typename T>
constexpr float kHi = std::is_signed_v<T> ? 127.f : 255.f;

template <typename T>
T Saturate(float v, float zero_point) {
  const float q = std::nearbyint(v) + zero_point;
  return static_cast<T>(std::clamp(q, kLo<T>, kHi<T>));
}

enum class BinaryOp { kAdd, kMul };

// Equal shapes: one loop the compiler vectorizes (VRNDSCALEPS on AVX-512).
template <typename T, BinaryOp kOp>
__attribute__((always_inline)) inline void SameShapeBody(const T* a, const T* b, T* c, int64_t n, float za, float zb,
                                                        float zc, float ra, float rb) {
  for (int64_t i = 0; i < n; ++i) {
    const float dx = static_cast<float>(a[i]) - za, dy = static_cast<float>(b[i]) - zb;
    const float v = std::nearbyint(kOp == BinaryOp::kAdd ? ra * dx + rb * dy : ra * (dx * dy)) + zc;
    c[i] = static_cast<T>(std::min(std::max(v, kLo<T>), kHi<T>));
  }
}
template <typename T, BinaryOp kOp>
void SameShape(const T* a, const T* b, T* c, int64_t n, float za, float zb, float zc, float ra, float rb) {
  SameShapeBody<T, kOp>(a, b, c, n, za, zb, zc, ra, rb);
}
template <typename T, BinaryOp kOp>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512"))) void SameShapeAvx512(
    const T* a, const T* b, T* c, int64_t n, float za, float zb, float zc, float ra, float rb) {
  SameShapeBody<T, kOp>(a, b, c, n, za, zb, zc, ra, rb);
}

class QLinearBinary final : public Kernel {
 public:
  QLinearBinary(BinaryOp op, CpuFeatures cpu) : op_(op), avx512_((cpu & kCpuAvx512bw) != 0) {}

  absl::Status Run(const KernelContext& ctx) const override {
    if (ctx.input(0).dtype == DataType::kInt8) return Apply<int8_t>(ctx);
    return Apply<uint8_t>(ctx);
  }

 private:
  template <typename T>
  absl::Status Apply(const KernelContext& ctx) const {
    const TensorArg& a = ctx.input(0);
    const TensorArg& b = ctx.input(3);
    const TensorArg& c = ctx.output(0);
    const float sa = ScaleAt(ctx, 1, 0), sb = ScaleAt(ctx, 4, 0), sc = ScaleAt(ctx, 6, 0);
    const float za = static_cast<float>(ZeroPointAt(ctx, 2, 0)), zb = static_cast<float>(ZeroPointAt(ctx, 5, 0));
    const float zc = static_cast<float>(ZeroPointAt(ctx, 7, 0));
    const T* pa = a.as<const T>();
    const T* pb = b.as<const T>();
    T* pc = c.as<T>();
    const float ra = sa / sc, rb = sb / sc, rm = sa * sb / sc;
    auto one = [&](T x, T y) {
      const float dx = static_cast<float>(x) - za, dy = static_cast<float>(y) - zb;
      return Saturate<T>(op_ == BinaryOp::kAdd ? ra * dx + rb * dy : rm * (dx * dy), zc);
    };
    if (a.shape == b.shape) {
      const int64_t n = c.num_elements();
      const float r1 = op_ == BinaryOp::kAdd ? ra : rm;
      if (op_ == BinaryOp::kAdd) {
        (avx512_ ? SameShapeAvx512<T, BinaryOp::kAdd> : SameShape<T, BinaryOp::kAdd>)(pa, pb, pc, n, za, zb, zc, r1, rb);
      } else {
        (avx512_ ? SameShapeAvx512<T, BinaryOp::kMul> : SameShape<T, BinaryOp::kMul>)(pa, pb, pc, n, za, zb, zc, r1, rb);
      }
    } else {
      ForEachBroadcast<2>({a.shape, b.shape}, c.shape,
                          [&](int64_t o, const std::array<int64_t, 2>& off) { pc[o] = one(pa[off[0]], pb[off[1]]); });
    }
    return absl::OkStatus();
  }

  BinaryOp op_;
  bool avx512_;
};

class QLinearGlobalAveragePool final : public Kernel {
 public:
  explicit QLinearGlobalAveragePool(bool channels_last) : channels_last_(channels_last) {}

  absl::Status Run(const KernelContext& ctx) const override {
    if (ctx.input(0).dtype == DataType::kInt8) return Apply<int8_t>(ctx);
    return Apply<uint8_t>(ctx);
  }

 private:
  template <typename T>
  absl::Status Apply(const KernelContext& ctx) const {
    const TensorArg& x = ctx.input(0);
    const int64_t channels = x.shape[channels_last_ ? x.rank() - 1 : 1];
    const int64_t planes = x.shape[0] * channels;
    const int64_t size = planes ? x.num_elements() / planes : 0;
    const float zx = static_cast<float>(ZeroPointAt(ctx, 2, 0)), zy = static_cast<float>(ZeroPointAt(ctx, 4, 0));
    const float scale = ScaleAt(ctx, 1, 0) / (ScaleAt(ctx, 3, 0) * static_cast<float>(std::max<int64_t>(size, 1)));
    const T* px = x.as<const T>();
    T* py = ctx.output(0).as<T>();
    if (channels_last_) {  // [N, ..., C]: sums per channel over the pixels
      std::vector<int64_t> sums(channels);
      for (int64_t b = 0; b < x.shape[0]; ++b) {
        std::fill(sums.begin(), sums.end(), 0);
        for (int64_t p = 0; p < size; ++p)
          for (int64_t c = 0; c < channels; ++c) sums[c] += px[(b * size + p) * channels + c];
        for (int64_t c = 0; c < channels; ++c)
          py[b * channels + c] = Saturate<T>(scale * (static_cast<float>(sums[c]) - static_cast<float>(size) * zx), zy);
      }
      return absl::OkStatus();
    }
    ctx.pool->ParallelFor(planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        int64_t sum = 0;
        for (int64_t i = 0; i < size; ++i) sum += px[p * size + i];
        py[p] = Saturate<T>(scale * (static_cast<float>(sum) - static_cast<float>(size) * zx), zy);
      }
    });
    return absl::OkStatus();
  }

  bool channels_last_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearBinary(const KernelInit& init) {
  return std::make_unique<QLinearBinary>(init.op == "QLinearMul" ? BinaryOp::kMul : BinaryOp::kAdd, init.cpu);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearGlobalAveragePool(const KernelInit& init) {
  return std::make_unique<QLinearGlobalAveragePool>(init.attrs->GetInt("channels_last", 0) != 0);
}

}  // namespace kvant::cpu
