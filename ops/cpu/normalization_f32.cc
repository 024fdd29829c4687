// FP32 BatchNormalization (inference: per-channel scale and shift), Softmax
// (max-subtracted, along one axis; opset < 13 flattens to 2-D at the axis),
// LayerNormalization and InstanceNormalization (statistics from float partial
// sums combined in double).
#include <cmath>

#include "ops/cpu/activation_f32.h"
#include "ops/cpu/vector_math.h"
#include "ops/kernel.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

class BatchNormF32 final : public Kernel {
 public:
  BatchNormF32(float epsilon, bool channels_last) : epsilon_(epsilon), channels_last_(channels_last) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    if (channels_last_) return RunChannelsLast(ctx);
    const int64_t n = x.shape[0], c = x.rank() > 1 ? x.shape[1] : 1;
    const int64_t size = x.num_elements() / std::max<int64_t>(n * c, 1);
    const float* scale = ctx.input(1).as<const float>();
    const float* shift = ctx.input(2).as<const float>();
    const float* mean = ctx.input(3).as<const float>();
    const float* var = ctx.input(4).as<const float>();
    const float* xs = x.as<const float>();
    float* ys = ctx.output(0).as<float>();
    ctx.pool->ParallelFor(n * c, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t ch = p % c;
        // (x - mean) * a + shift: subtracting the mean first keeps the
        // digits that x * a + (shift - mean * a) cancels away when x and
        // mean are large (a quantized input at a scale of 100+).
        const float a = scale[ch] / std::sqrt(var[ch] + epsilon_);
        const float m = mean[ch], b = shift[ch];
        for (int64_t i = 0; i < size; ++i) ys[p * size + i] = (xs[p * size + i] - m) * a + b;
      }
    });
    return absl::OkStatus();
  }

 private:
  // Channels innermost (NHWC): per-channel a and shift, one pass over rows.
  absl::Status RunChannelsLast(const KernelContext& ctx) const {
    const TensorArg& x = ctx.input(0);
    const int64_t c = x.shape.back(), rows = c ? x.num_elements() / c : 0;
    std::vector<float> a(c), m(c), b(c);
    for (int64_t ch = 0; ch < c; ++ch) {
      a[ch] = ctx.input(1).as<const float>()[ch] / std::sqrt(ctx.input(4).as<const float>()[ch] + epsilon_);
      m[ch] = ctx.input(3).as<const float>()[ch];
      b[ch] = ctx.input(2).as<const float>()[ch];
    }
    const float* xs = x.as<const float>();
    float* ys = ctx.output(0).as<float>();
    ctx.pool->ParallelFor(rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
#pragma GCC ivdep
        for (int64_t ch = 0; ch < c; ++ch) ys[r * c + ch] = (xs[r * c + ch] - m[ch]) * a[ch] + b[ch];
      }
    });
    return absl::OkStatus();
  }

  float epsilon_;
  bool channels_last_;
};

// Softmax of one contiguous row (the last axis, attention's case), as plain
// loops over pointers the compiler vectorizes: 16 partial maxima and sums.
// (softmax_f32_avx512.cc has the AVX-512 form, with masked tails.)
inline void SoftmaxRowBody(const float* x, float* y, int64_t len) {
  float part[16];
  for (float& p : part) p = -INFINITY;
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    for (int l = 0; l < 16; ++l) part[l] = part[l] < x[i + l] ? x[i + l] : part[l];
  }
  float mx = -INFINITY;
  for (float p : part) mx = std::max(mx, p);
  for (; i < len; ++i) mx = std::max(mx, x[i]);
  for (int64_t j = 0; j < len; ++j) y[j] = FastExp(x[j] - mx);
  for (float& p : part) p = 0.f;
  i = 0;
  for (; i + 16 <= len; i += 16) {
    for (int l = 0; l < 16; ++l) part[l] += y[i + l];
  }
  float sum = 0.f;
  for (float p : part) sum += p;
  for (; i < len; ++i) sum += y[i];
  const float inv = 1.f / sum;
  for (int64_t j = 0; j < len; ++j) y[j] *= inv;
}

void SoftmaxRow(const float* x, float* y, int64_t len) { SoftmaxRowBody(x, y, len); }

class SoftmaxF32 final : public Kernel {
 public:
  SoftmaxF32(int64_t axis, bool coerce_2d, CpuFeatures cpu)
      : axis_(axis), coerce_2d_(coerce_2d), row_((cpu & kCpuAvx512f) ? SoftmaxRowAvx512 : SoftmaxRow) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    // Plain locals, not a structured binding: clang 14 cannot capture those.
    const SoftmaxRows rows = SoftmaxRowsOf(x.shape, axis_, coerce_2d_);
    const int64_t outer = rows.outer, len = rows.len, inner = rows.inner;
    const float* xs = x.as<const float>();
    float* ys = ctx.output(0).as<float>();
    if (inner == 1) {
      ctx.pool->ParallelFor(outer, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) row_(xs + r * len, ys + r * len, len);
      });
      return absl::OkStatus();
    }
    ctx.pool->ParallelFor(outer * inner, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t base = (r / inner) * len * inner + r % inner;
        float mx = -INFINITY;
        for (int64_t i = 0; i < len; ++i) mx = std::max(mx, xs[base + i * inner]);
        float sum = 0.f;
        for (int64_t i = 0; i < len; ++i) {
          const float e = FastExp(xs[base + i * inner] - mx);
          ys[base + i * inner] = e;
          sum += e;
        }
        const float inv = 1.f / sum;
        for (int64_t i = 0; i < len; ++i) ys[base + i * inner] *= inv;
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
  bool coerce_2d_;
  void (*row_)(const float*, float*, int64_t);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateBatchNormF32(const KernelInit& init) {
  return std::make_unique<BatchNormF32>(init.attrs->GetFloat("epsilon", 1e-5f),
                                        init.attrs->GetInt("kvant_channels_last", 0) != 0);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateSoftmaxF32(const KernelInit& init) {
  const bool old = init.opset < 13;
  return std::make_unique<SoftmaxF32>(init.attrs->GetInt("axis", old ? 1 : -1), old, init.cpu);
}

}  // namespace kvant::cpu

namespace kvant::cpu {
namespace {

// Sum and sum of squared deviations of n floats, via 16 independent float
// partial sums (a vectorizable loop) combined in double.
inline void MeanAndVariance(const float* x, int64_t n, double* mean, double* var) {
  float part[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 16; ++l) part[l] += x[i + l];
  }
  double sum = 0;
  for (int l = 0; l < 16; ++l) sum += part[l];
  for (; i < n; ++i) sum += x[i];
  const double m = n ? sum / n : 0.0;
  const float mf = static_cast<float>(m);
  float sq[16] = {};
  i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 16; ++l) {
      const float d = x[i + l] - mf;
      sq[l] += d * d;
    }
  }
  double ss = 0;
  for (int l = 0; l < 16; ++l) ss += sq[l];
  for (; i < n; ++i) ss += (x[i] - m) * (x[i] - m);
  *mean = m;
  *var = n ? ss / n : 0.0;
}

// LayerNormalization over the trailing dimensions from `axis`: statistics in
// double, Y = (X - mean) / sqrt(var + eps) * scale + bias, scale and bias
// broadcast over the normalized block.
class LayerNormF32 final : public Kernel {
 public:
  LayerNormF32(int64_t axis, float epsilon) : axis_(axis), epsilon_(epsilon) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const int64_t axis = axis_ < 0 ? axis_ + x.rank() : axis_;
    int64_t outer = 1, len = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= x.shape[i];
    for (int64_t i = axis; i < x.rank(); ++i) len *= x.shape[i];
    const float* scale = ctx.input(1).as<const float>();
    const int64_t scale_n = ctx.input(1).num_elements();
    const float* bias = ctx.has_input(2) ? ctx.input(2).as<const float>() : nullptr;
    const int64_t bias_n = bias ? ctx.input(2).num_elements() : 1;
    const float* xs = x.as<const float>();
    float* ys = ctx.output(0).as<float>();
    float* mean_out = ctx.outputs.size() > 1 && ctx.output(1).present() ? ctx.output(1).as<float>() : nullptr;
    float* inv_out = ctx.outputs.size() > 2 && ctx.output(2).present() ? ctx.output(2).as<float>() : nullptr;
    ctx.pool->ParallelFor(outer, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = xs + r * len;
        float* yr = ys + r * len;
        double mean, var;
        MeanAndVariance(xr, len, &mean, &var);
        const float inv = static_cast<float>(1.0 / std::sqrt(var + epsilon_));
        const float m = static_cast<float>(mean);
        if (scale_n == len && (bias == nullptr || bias_n == len)) {
          // The usual case, with no per-element modulo (which kept this loop
          // scalar at ~8 ns per element).
#pragma GCC ivdep
          for (int64_t i = 0; i < len; ++i) yr[i] = (xr[i] - m) * inv * scale[i];
          if (bias != nullptr) {
#pragma GCC ivdep
            for (int64_t i = 0; i < len; ++i) yr[i] += bias[i];
          }
        } else {
          for (int64_t i = 0; i < len; ++i) {
            yr[i] = (xr[i] - m) * inv * scale[i % scale_n] + (bias ? bias[i % bias_n] : 0.f);
          }
        }
        if (mean_out) mean_out[r] = m;
        if (inv_out) inv_out[r] = inv;
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
  float epsilon_;
};

class InstanceNormF32 final : public Kernel {
 public:
  explicit InstanceNormF32(float epsilon) : epsilon_(epsilon) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const int64_t c = x.shape[1], planes = x.shape[0] * c, size = x.num_elements() / std::max<int64_t>(planes, 1);
    const float* scale = ctx.input(1).as<const float>();
    const float* bias = ctx.input(2).as<const float>();
    const float* xs = x.as<const float>();
    float* ys = ctx.output(0).as<float>();
    ctx.pool->ParallelFor(planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const float* xr = xs + p * size;
        double mean, var;
        MeanAndVariance(xr, size, &mean, &var);
        const float a = static_cast<float>(scale[p % c] / std::sqrt(var + epsilon_));
        const float b = static_cast<float>(bias[p % c] - mean * a);
        for (int64_t i = 0; i < size; ++i) ys[p * size + i] = xr[i] * a + b;
      }
    });
    return absl::OkStatus();
  }

 private:
  float epsilon_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateLayerNormF32(const KernelInit& init) {
  return std::make_unique<LayerNormF32>(init.attrs->GetInt("axis", -1), init.attrs->GetFloat("epsilon", 1e-5f));
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateInstanceNormF32(const KernelInit& init) {
  return std::make_unique<InstanceNormF32>(init.attrs->GetFloat("epsilon", 1e-5f));
}

}  // namespace kvant::cpu
