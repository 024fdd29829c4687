// ONNX Runtime's quantized elementwise and pooling operators (com.microsoft),
// with activations staying u8/s8 between INT8 convolutions:
//   QLinearAdd  c = round(sa/sc (a - za) + sb/sc (b - zb)) + zc
//   QLinearMul  c = round(sa sb/sc (a - za)(b - zb)) + zc
//   QLinearGlobalAveragePool (NCHW)  y = round(sx/(sy N) (sum x - N zx)) + zy
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

class QLinearBinary final : public Kernel {
 public:
  explicit QLinearBinary(BinaryOp op) : op_(op) {}

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
      for (int64_t i = 0; i < n; ++i) pc[i] = one(pa[i], pb[i]);
    } else {
      ForEachBroadcast<2>({a.shape, b.shape}, c.shape,
                          [&](int64_t o, const std::array<int64_t, 2>& off) { pc[o] = one(pa[off[0]], pb[off[1]]); });
    }
    return absl::OkStatus();
  }

  BinaryOp op_;
};

class QLinearGlobalAveragePool final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    if (ctx.input(0).dtype == DataType::kInt8) return Apply<int8_t>(ctx);
    return Apply<uint8_t>(ctx);
  }

 private:
  template <typename T>
  absl::Status Apply(const KernelContext& ctx) const {
    const TensorArg& x = ctx.input(0);
    const int64_t planes = x.shape[0] * x.shape[1];
    const int64_t size = planes ? x.num_elements() / planes : 0;
    const float zx = static_cast<float>(ZeroPointAt(ctx, 2, 0)), zy = static_cast<float>(ZeroPointAt(ctx, 4, 0));
    const float scale = ScaleAt(ctx, 1, 0) / (ScaleAt(ctx, 3, 0) * static_cast<float>(std::max<int64_t>(size, 1)));
    const T* px = x.as<const T>();
    T* py = ctx.output(0).as<T>();
    ctx.pool->ParallelFor(planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        int64_t sum = 0;
        for (int64_t i = 0; i < size; ++i) sum += px[p * size + i];
        py[p] = Saturate<T>(scale * (static_cast<float>(sum) - static_cast<float>(size) * zx), zy);
      }
    });
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearBinary(const KernelInit& init) {
  return std::make_unique<QLinearBinary>(init.op == "QLinearMul" ? BinaryOp::kMul : BinaryOp::kAdd);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearGlobalAveragePool(const KernelInit&) {
  return std::make_unique<QLinearGlobalAveragePool>();
}

}  // namespace kvant::cpu
