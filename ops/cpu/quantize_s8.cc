// Quantization operators on the INT8 kernels: QuantizeLinear,
// DequantizeLinear (per tensor and per axis) and DynamicQuantizeLinear;
// ConvInteger,
// QLinearConv and kvant.QLinearConvNhwc are in qconv_s8.cc.
//
// Signed operands meet the u8 x s8 kernels by flipping the top bit: an s8
// activation a is the u8 a + 128 with zero point za + 128; a u8 weight b is
// the s8 b - 128 with zero point zb - 128.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "absl/strings/str_format.h"
#include "ops/broadcast.h"
#include "ops/cpu/gemm_s8.h"
#include "ops/cpu/quantize_common.h"

namespace kvant::cpu {
namespace {

int64_t Product(absl::Span<const int64_t> s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// Outer, axis and inner sizes of a per-axis parameter over x.
struct AxisSplit {
  int64_t outer = 1, axis = 1, inner = 1;
};
AxisSplit SplitAt(absl::Span<const int64_t> shape, int64_t axis, bool per_axis) {
  AxisSplit s;
  if (!per_axis) {
    s.inner = Product(shape);
    return s;
  }
  if (axis < 0) axis += static_cast<int64_t>(shape.size());
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < axis) s.outer *= shape[d];
    if (d == axis) s.axis = shape[d];
    if (d > axis) s.inner *= shape[d];
  }
  return s;
}

// round(x / scale) half to even, + zero point, saturated; NaN -> the zero point.
template <typename T>
__attribute__((always_inline)) inline void QuantizeRowBody(const float* x, int64_t n, float scale, float zp, T* y) {
  constexpr float lo = std::is_signed_v<T> ? -128.f : 0.f, hi = std::is_signed_v<T> ? 127.f : 255.f;
  for (int64_t i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] / scale) + zp;
    v = v != v ? zp : std::min(std::max(v, lo), hi);
    y[i] = static_cast<T>(v);
  }
}
template <typename T>
void QuantizeRow(const float* x, int64_t n, float scale, float zp, T* y) {
  QuantizeRowBody(x, n, scale, zp, y);
}
// The same results, mostly without the division (quantize_u8_avx512.cc).
template <typename T>
void QuantizeRowAvx512(const float* x, int64_t n, float scale, float zp, T* y) {
  if constexpr (std::is_signed_v<T>) {
    avx512::QuantizeRowS8(x, n, scale, zp, y);
  } else {
    avx512::QuantizeRowU8(x, n, scale, zp, y);
  }
}

class QuantizeLinear final : public Kernel {
 public:
  QuantizeLinear(int64_t axis, CpuFeatures cpu) : axis_(axis), avx512_((cpu & kIsaAvx512) == kIsaAvx512) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    const bool per_axis = ctx.input(1).num_elements() > 1;
    const AxisSplit sp = SplitAt(x.shape, axis_, per_axis);
    const float* xs = x.as<const float>();
    for (int64_t o = 0; o < sp.outer; ++o) {
      for (int64_t a = 0; a < sp.axis; ++a) {
        const float scale = ScaleAt(ctx, 1, a);
        const float zp = static_cast<float>(ZeroPointAt(ctx, 2, a));
        const int64_t base = (o * sp.axis + a) * sp.inner;
        // Chunks of the row across the session's threads.
        constexpr int64_t kChunk = 1 << 16;
        ctx.pool->ParallelFor((sp.inner + kChunk - 1) / kChunk, [&](int64_t b0, int64_t b1) {
          const int64_t lo = base + b0 * kChunk, n = std::min(sp.inner, b1 * kChunk) - b0 * kChunk;
          if (Signed(y.dtype)) {
            (avx512_ ? QuantizeRowAvx512<int8_t> : QuantizeRow<int8_t>)(xs + lo, n, scale, zp, y.as<int8_t>() + lo);
          } else {
            (avx512_ ? QuantizeRowAvx512<uint8_t> : QuantizeRow<uint8_t>)(xs + lo, n, scale, zp, y.as<uint8_t>() + lo);
          }
        });
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
  bool avx512_;
};

}  // namespace

namespace avx512vbmi {
// Pixels [0, count) of c <= 4 channel planes `stride` floats apart, quantized
// into count x c NHWC bytes (quantize_nhwc_avx512vbmi.cc).
void QuantizeToNhwcU8(const float* x, int64_t c, int64_t stride, float scale, float zero_point, uint8_t* y,
                      int64_t count);
void QuantizeToNhwcS8(const float* x, int64_t c, int64_t stride, float scale, float zero_point, int8_t* y,
                      int64_t count);
}  // namespace avx512vbmi

namespace {

// kvant.QuantizeLinearNhwc (graph/passes/fuse_quantize_nhwc.cc): an NCHW
// image quantized per tensor into NHWC. Images of at most 4 channels (RGB)
// interleave with VPERMB where the CPU has AVX-512 VBMI; otherwise each
// block of pixels is quantized per channel, then interleaved.
class QuantizeLinearNhwc final : public Kernel {
 public:
  explicit QuantizeLinearNhwc(CpuFeatures cpu)
      : avx512_((cpu & kIsaAvx512) == kIsaAvx512), vbmi_((cpu & (kIsaAvx512 | kCpuAvx512vbmi)) == (kIsaAvx512 | kCpuAvx512vbmi)) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const int64_t n = x.shape[0], c = x.shape[1], pixels = x.shape[2] * x.shape[3];
    const float scale = ScaleAt(ctx, 1, 0), zp = static_cast<float>(ZeroPointAt(ctx, 2, 0));
    const float* xs = x.as<const float>();
    void* y = ctx.output(0).data;
    const bool s8 = Signed(ctx.output(0).dtype);
    // Blocks of pixels across the threads, every image.
    constexpr int64_t kBlock = 1024;
    const int64_t blocks = (pixels + kBlock - 1) / kBlock;
    ctx.pool->ParallelFor(n * blocks, [&](int64_t t0, int64_t t1) {
      alignas(64) uint8_t planes[kBlock * 4];
      std::vector<uint8_t> wide;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t img = t / blocks, p0 = t % blocks * kBlock, len = std::min(kBlock, pixels - p0);
        const float* src = xs + img * c * pixels + p0;
        const int64_t out = (img * pixels + p0) * c;
        if (vbmi_ && c <= 4) {
          if (s8) {
            avx512vbmi::QuantizeToNhwcS8(src, c, pixels, scale, zp, static_cast<int8_t*>(y) + out, len);
          } else {
            avx512vbmi::QuantizeToNhwcU8(src, c, pixels, scale, zp, static_cast<uint8_t*>(y) + out, len);
          }
          continue;
        }
        uint8_t* q = planes;
        if (c > 4) {
          wide.resize(kBlock * c);
          q = wide.data();
        }
        for (int64_t ch = 0; ch < c; ++ch) {
          if (s8) {
            (avx512_ ? QuantizeRowAvx512<int8_t> : QuantizeRow<int8_t>)(src + ch * pixels, len, scale, zp,
                                                                        reinterpret_cast<int8_t*>(q + ch * len));
          } else {
            (avx512_ ? QuantizeRowAvx512<uint8_t> : QuantizeRow<uint8_t>)(src + ch * pixels, len, scale, zp,
                                                                          q + ch * len);
          }
        }
        uint8_t* dst = static_cast<uint8_t*>(y) + out;
        for (int64_t p = 0; p < len; ++p)
          for (int64_t ch = 0; ch < c; ++ch) dst[p * c + ch] = q[ch * len + p];
      }
    });
    return absl::OkStatus();
  }

 private:
  bool avx512_, vbmi_;
};

// DynamicQuantizeLinear: u8 with the scale and zero point of x's range.
class DynamicQuantizeLinear final : public Kernel {
 public:
  explicit DynamicQuantizeLinear(CpuFeatures cpu) : cpu_(cpu) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const DynamicRange r = ComputeDynamicRange(x.as<const float>(), x.num_elements(), cpu_);
    QuantizeU8(x.as<const float>(), x.num_elements(), r, ctx.output(0).as<uint8_t>(), cpu_);
    *ctx.output(1).as<float>() = r.scale;
    *ctx.output(2).as<uint8_t>() = r.zero_point;
    return absl::OkStatus();
  }

 private:
  CpuFeatures cpu_;
};

// y = (x - zero point) * scale over a row; the AVX-512 twin of the loop
// (the file is baseline x86-64).
template <typename T>
__attribute__((always_inline)) inline void DequantizeRowBody(const T* x, int64_t n, float scale, float zp, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = (static_cast<float>(x[i]) - zp) * scale;
}
template <typename T>
void DequantizeRow(const T* x, int64_t n, float scale, float zp, float* y) {
  DequantizeRowBody(x, n, scale, zp, y);
}
template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512"))) void DequantizeRowAvx512(
    const T* x, int64_t n, float scale, float zp, float* y) {
  DequantizeRowBody(x, n, scale, zp, y);
}

class DequantizeLinear final : public Kernel {
 public:
  DequantizeLinear(int64_t axis, CpuFeatures cpu) : axis_(axis), avx512_((cpu & kIsaAvx512) == kIsaAvx512) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    float* ys = ctx.output(0).as<float>();
    const bool per_axis = ctx.input(1).num_elements() > 1;
    const AxisSplit sp = SplitAt(x.shape, axis_, per_axis);
    for (int64_t o = 0; o < sp.outer; ++o) {
      for (int64_t a = 0; a < sp.axis; ++a) {
        const float scale = ScaleAt(ctx, 1, a);
        const float zp = static_cast<float>(ZeroPointAt(ctx, 2, a));
        const int64_t base = (o * sp.axis + a) * sp.inner;
        // One loop per type (a switch inside kept it scalar).
        auto row = [&](const auto* xs) {
          using T = std::remove_cv_t<std::remove_pointer_t<decltype(xs)>>;
          (avx512_ ? DequantizeRowAvx512<T> : DequantizeRow<T>)(xs + base, sp.inner, scale, zp, ys + base);
        };
        switch (x.dtype) {
          case DataType::kUInt8: row(x.as<const uint8_t>()); break;
          case DataType::kInt8: row(x.as<const int8_t>()); break;
          default: row(x.as<const int32_t>()); break;
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
  bool avx512_;
};

int64_t AxisAttr(const KernelInit& init) { return init.attrs->GetInt("axis", 1); }

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateQuantizeLinear(const KernelInit& init) {
  return std::make_unique<QuantizeLinear>(AxisAttr(init), init.cpu);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQuantizeLinearNhwc(const KernelInit& init) {
  return std::make_unique<QuantizeLinearNhwc>(init.cpu);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateDynamicQuantizeLinear(const KernelInit& init) {
  return std::make_unique<DynamicQuantizeLinear>(init.cpu);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateDequantizeLinear(const KernelInit& init) {
  return std::make_unique<DequantizeLinear>(AxisAttr(init), init.cpu);
}

namespace avx512 {
void RangeF32(const float* x, int64_t n, float* lo, float* hi);
void QuantizeU8(const float* x, int64_t n, float scale, float zero_point, uint8_t* y);
}  // namespace avx512

DynamicRange ComputeDynamicRange(const float* x, int64_t n, CpuFeatures cpu) {
  // The ONNX formula in float: range widened to hold 0, scale = range / 255,
  // zero point round(0 - lo / scale) saturated to [0, 255].
  float lo = 0, hi = 0;
  if (cpu & kCpuAvx512f) {
    avx512::RangeF32(x, n, &lo, &hi);
  } else {
    for (int64_t i = 0; i < n; ++i) {
      lo = std::fmin(lo, x[i]);
      hi = std::fmax(hi, x[i]);
    }
  }
  DynamicRange r;
  r.scale = (hi - lo) / 255.f;
  if (!(r.scale > 0) || !std::isfinite(r.scale)) {  // all zeros, or infinities
    r.scale = 0;
    return r;
  }
  const float zp = std::nearbyint(0.f - lo / r.scale);
  r.zero_point = static_cast<uint8_t>(std::clamp(zp, 0.f, 255.f));
  return r;
}

void QuantizeU8(const float* x, int64_t n, DynamicRange r, uint8_t* y, CpuFeatures cpu) {
  if (!(r.scale > 0) || !std::isfinite(r.scale)) {
    std::memset(y, r.zero_point, n);
    return;
  }
  const float zp = r.zero_point;
  if (cpu & kCpuAvx512f) return avx512::QuantizeU8(x, n, r.scale, zp, y);
  for (int64_t i = 0; i < n; ++i) {
    const float q = std::nearbyint(x[i] / r.scale) + zp;
    y[i] = static_cast<uint8_t>(q >= 255.f ? 255.f : (q > 0.f ? q : 0.f));  // NaN -> 0
  }
}

}  // namespace kvant::cpu
