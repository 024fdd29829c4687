// Pooling, NCHW, 1-D to 3-D: MaxPool (dilations, ceil_mode) on f32, u8 and
// s8 (quantized activations keep their scale through a max; 2-D also in NHWC
// with kvant_channels_last), AveragePool (count_include_pad) and
// GlobalAveragePool on f32, and com.microsoft QLinearAveragePool on u8/s8
// (NCHW, or 2-D NHWC with channels_last): int32 window sums of x - zx,
// requantized once, y = round_half_even(sum * sx / (sy * count)) + zy, padding
// counting as real zero.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_format.h"
#include "ops/cpu/quantize_common.h"
#include "ops/kernel.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

// One NHWC window tap into the output pixel's channels: functions of plain
// restrict pointers, so the loops vectorize (inside the kernel's lambda the
// compiler reloads captured values after every store and did not).
template <typename T>
__attribute__((always_inline)) inline void TapBody(bool is_max, const T* __restrict in, T* __restrict out,
                                                  int32_t* __restrict sums, int64_t c) {
  if (is_max) {
    for (int64_t ch = 0; ch < c; ++ch) out[ch] = in[ch] > out[ch] ? in[ch] : out[ch];
  } else {
    for (int64_t ch = 0; ch < c; ++ch) sums[ch] += in[ch];
  }
}
template <typename T>
void Tap(bool is_max, const T* in, T* out, int32_t* sums, int64_t c) {
  TapBody<T>(is_max, in, out, sums, c);
}
template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512"))) void TapAvx512(
    bool is_max, const T* in, T* out, int32_t* sums, int64_t c) {
  TapBody<T>(is_max, in, out, sums, c);
}

class PoolF32 final : public Kernel {
 public:
  enum class Kind { kMax, kAverage, kQLinearAverage };
  PoolF32(Kind kind, std::string label, const AttributeMap& attrs, CpuFeatures cpu)
      : is_max_(kind == Kind::kMax), quantized_(kind == Kind::kQLinearAverage), avx512_((cpu & kCpuAvx512bw) != 0),
        label_(std::move(label)), attrs_(attrs) {}

  absl::Status Run(const KernelContext& ctx) const override {
    if (attrs_.GetInt("kvant_channels_last", 0) != 0 || (quantized_ && attrs_.GetInt("channels_last", 0) != 0)) {
      return RunNhwc(ctx);
    }
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    const int64_t spatial = x.rank() - 2;
    if (spatial < 1 || spatial > 3) {
      return absl::UnimplementedError(absl::StrFormat(
          "failed to run node %s: pooling must have 1 to 3 spatial dimensions, got %d", label_, spatial));
    }
    auto p = ParseWindow(attrs_, spatial, {}, label_);
    if (!p.ok()) return p.status();
    std::vector<int64_t> in_sizes(x.shape.begin() + 2, x.shape.end());
    if (auto out = WindowOutputSizes(*p, in_sizes, label_); !out.ok()) return out.status();
    int64_t in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
    const int64_t off = 3 - spatial;
    for (int i = 0; i < 3; ++i) {
      const int64_t j = i - off;
      const bool real = j >= 0;
      in[i] = real ? x.shape[2 + j] : 1;
      out[i] = real ? y.shape[2 + j] : 1;
      k[i] = real ? p->kernel[j] : 1;
      s[i] = real ? p->strides[j] : 1;
      d[i] = real ? p->dilations[j] : 1;
      pb[i] = real ? p->pads[j] : 0;
      pe[i] = real ? p->pads[j + spatial] : 0;
    }
    const int64_t planes = x.shape[0] * x.shape[1];
    const int64_t in_size = in[0] * in[1] * in[2], out_size = out[0] * out[1] * out[2];
    const bool include_pad = p->count_include_pad;
    // Per output position and dimension: the window's taps inside the input
    // [lo, hi) (tap indices) and its size counting padding, computed once.
    struct Taps {
      int64_t lo, hi, padded;
    };
    std::vector<Taps> taps[3];
    for (int i = 0; i < 3; ++i) {
      for (int64_t o = 0; o < out[i]; ++o) {
        const int64_t start = o * s[i] - pb[i];
        Taps t{0, 0, 0};
        t.lo = start >= 0 ? 0 : (-start + d[i] - 1) / d[i];
        t.hi = std::min(k[i], (in[i] - start + d[i] - 1) / d[i]);
        if (t.hi < t.lo) t.hi = t.lo;
        for (int64_t q = 0; q < k[i]; ++q) {
          const int64_t pos = start + q * d[i];
          t.padded += pos < in[i] + pe[i];
        }
        taps[i].push_back(t);
      }
    }
    // Rows are computed a tap at a time: for tap q2 of the innermost window
    // dimension, output columns [lo2[q2], hi2[q2]) read inside the input; each
    // pass is a plain loop over the output row.
    std::vector<int64_t> lo2(k[2]), hi2(k[2]), count2(out[2]);
    for (int64_t q = 0; q < k[2]; ++q) {
      const int64_t off = q * d[2] - pb[2];
      lo2[q] = std::min(out[2], off >= 0 ? 0 : (-off + s[2] - 1) / s[2]);
      hi2[q] = std::max(lo2[q], std::min(out[2], (in[2] - off + s[2] - 1) / s[2]));
    }
    for (int64_t o = 0; o < out[2]; ++o) {
      count2[o] = include_pad ? taps[2][o].padded : taps[2][o].hi - taps[2][o].lo;
    }
    const bool is_max = is_max_;
    const int64_t s2 = s[2];
    const Requant rq = quantized_ ? ReadRequant(ctx) : Requant{};
    auto run = [&](const auto* xs, auto* ys) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(xs)>>;
    // Window maxima and sums: in the output row for f32, in an int32 row for
    // bytes (stored at the end, requantized by QLinearAveragePool).
    constexpr bool kIntSum = !std::is_floating_point_v<T>;
    using Acc = std::conditional_t<kIntSum, int32_t, T>;
    ctx.pool->ParallelFor(planes, [&](int64_t p0, int64_t p1) {
      std::vector<int32_t> sums(kIntSum ? out[2] : 0);
      for (int64_t plane = p0; plane < p1; ++plane) {
        const T* xp = xs + plane * in_size;
        T* yp = ys + plane * out_size;
        for (int64_t o0 = 0; o0 < out[0]; ++o0) {
          const Taps& t0 = taps[0][o0];
          for (int64_t o1 = 0; o1 < out[1]; ++o1) {
            const Taps& t1 = taps[1][o1];
            T* yrow = yp + (o0 * out[1] + o1) * out[2];
            Acc* acc = nullptr;
            if constexpr (kIntSum) {
              acc = sums.data();
            } else {
              acc = yrow;
            }
            const Acc init = !is_max ? Acc(0)
                           : std::is_floating_point_v<T> ? -std::numeric_limits<Acc>::infinity()
                                                         : static_cast<Acc>(std::numeric_limits<T>::lowest());
            for (int64_t o2 = 0; o2 < out[2]; ++o2) acc[o2] = init;
            for (int64_t q0 = t0.lo; q0 < t0.hi; ++q0) {
              const int64_t i0 = o0 * s[0] - pb[0] + q0 * d[0];
              for (int64_t q1 = t1.lo; q1 < t1.hi; ++q1) {
                const int64_t i1 = o1 * s[1] - pb[1] + q1 * d[1];
                const T* xrow = xp + (i0 * in[1] + i1) * in[2];
                for (int64_t q2 = 0; q2 < k[2]; ++q2) {
                  const T* src = xrow + q2 * d[2] - pb[2];
                  if (is_max) {
                    for (int64_t o2 = lo2[q2]; o2 < hi2[q2]; ++o2) acc[o2] = std::max<Acc>(acc[o2], src[o2 * s2]);
                  } else {
                    for (int64_t o2 = lo2[q2]; o2 < hi2[q2]; ++o2) acc[o2] += src[o2 * s2];
                  }
                }
              }
            }
            if constexpr (kIntSum) {
              if (is_max) {
                for (int64_t o2 = 0; o2 < out[2]; ++o2) yrow[o2] = static_cast<T>(acc[o2]);
              }
            }
            if (!is_max) {
              const int64_t c01 = include_pad ? t0.padded * t1.padded : (t0.hi - t0.lo) * (t1.hi - t1.lo);
              if constexpr (kIntSum) {
                // Taps inside the input carry zx; padded ones are real zeros.
                const int64_t inside01 = (t0.hi - t0.lo) * (t1.hi - t1.lo);
                for (int64_t o2 = 0; o2 < out[2]; ++o2) {
                  const int64_t inside = inside01 * (taps[2][o2].hi - taps[2][o2].lo);
                  const float count = static_cast<float>(std::max<int64_t>(c01 * count2[o2], 1));
                  yrow[o2] = rq.Apply<T>(acc[o2], inside, count);
                }
              } else {
                for (int64_t o2 = 0; o2 < out[2]; ++o2) {
                  yrow[o2] /= static_cast<T>(std::max<int64_t>(c01 * count2[o2], 1));
                }
              }
            }
          }
        }
      }
    });
    };
    switch (x.dtype) {
      case DataType::kUInt8: run(x.as<const uint8_t>(), y.as<uint8_t>()); break;
      case DataType::kInt8: run(x.as<const int8_t>(), y.as<int8_t>()); break;
      default: run(x.as<const float>(), y.as<float>()); break;
    }
    return absl::OkStatus();
  }

 private:
  // QLinearAveragePool's scales and zero points.
  struct Requant {
    float zx = 0, zy = 0, sx = 1, sy = 1;
    template <typename T>
    T Apply(int32_t sum, int64_t inside, float count) const {
      const float centred = static_cast<float>(sum) - static_cast<float>(inside) * zx;
      return Saturate<T>(centred * (sx / (sy * count)), zy);
    }
  };
  static Requant ReadRequant(const KernelContext& ctx) {
    return Requant{static_cast<float>(ZeroPointAt(ctx, 2, 0)), static_cast<float>(ZeroPointAt(ctx, 4, 0)),
                   ScaleAt(ctx, 1, 0), ScaleAt(ctx, 3, 0)};
  }

  // 2-D pooling on NHWC (MaxPool with kvant_channels_last, QLinearAveragePool
  // with channels_last): per output pixel, whole channel rows over the window.
  absl::Status RunNhwc(const KernelContext& ctx) const {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    if (x.rank() != 4) {
      return absl::UnimplementedError(absl::StrFormat(
          "failed to run node %s: channels-last pooling needs a 4-D NHWC input, got rank %d", label_, x.rank()));
    }
    auto p = ParseWindow(attrs_, 2, {}, label_);
    if (!p.ok()) return p.status();
    if (auto out = WindowOutputSizes(*p, {x.shape[1], x.shape[2]}, label_); !out.ok()) return out.status();
    const int64_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3];
    const int64_t oh = y.shape[1], ow = y.shape[2];
    const Requant rq = quantized_ ? ReadRequant(ctx) : Requant{};
    const bool is_max = is_max_, include_pad = p->count_include_pad;
    auto run = [&](const auto* xs, auto* ys) {
      using T = std::remove_const_t<std::remove_pointer_t<decltype(xs)>>;
      const T lowest = std::is_floating_point_v<T> ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
      const auto tap = avx512_ ? TapAvx512<T> : Tap<T>;
      ctx.pool->ParallelFor(n * oh, [&](int64_t r0, int64_t r1) {
        std::vector<int32_t> sums(is_max ? 0 : c);
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t b = r / oh, oy = r % oh;
          for (int64_t ox = 0; ox < ow; ++ox) {
            T* out = ys + ((b * oh + oy) * ow + ox) * c;
            if (is_max) {
              std::fill(out, out + c, lowest);  // memset for bytes (the loop here was per element)
            } else {
              std::fill(sums.begin(), sums.end(), 0);
            }
            int64_t inside = 0, padded = 0;
            for (int64_t ky = 0; ky < p->kernel[0]; ++ky) {
              const int64_t iy = oy * p->strides[0] - p->pads[0] + ky * p->dilations[0];
              for (int64_t kx = 0; kx < p->kernel[1]; ++kx) {
                const int64_t ix = ox * p->strides[1] - p->pads[1] + kx * p->dilations[1];
                // The window's taps over the end padding count when
                // count_include_pad; those past it (ceil_mode) never do.
                padded += iy < h + p->pads[2] && ix < w + p->pads[3];
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                ++inside;
                tap(is_max, xs + ((b * h + iy) * w + ix) * c, out, sums.data(), c);
              }
            }
            if (!is_max) {
              if constexpr (!std::is_floating_point_v<T>) {
                const float count = static_cast<float>(std::max<int64_t>(include_pad ? padded : inside, 1));
                for (int64_t ch = 0; ch < c; ++ch) out[ch] = rq.Apply<T>(sums[ch], inside, count);
              }
            }
          }
        }
      });
    };
    switch (x.dtype) {
      case DataType::kUInt8: run(x.as<const uint8_t>(), y.as<uint8_t>()); break;
      case DataType::kInt8: run(x.as<const int8_t>(), y.as<int8_t>()); break;
      default:
        if (!is_max) return absl::UnimplementedError(absl::StrFormat("failed to run node %s: f32 NHWC average pooling", label_));
        run(x.as<const float>(), y.as<float>());
        break;
    }
    return absl::OkStatus();
  }

  bool is_max_;
  bool quantized_;  // QLinearAveragePool
  bool avx512_;
  std::string label_;
  AttributeMap attrs_;
};

class GlobalAveragePoolF32 final : public Kernel {
 public:
  explicit GlobalAveragePoolF32(bool channels_last) : channels_last_(channels_last) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    if (channels_last_) return RunNhwc(ctx);
    const int64_t planes = x.shape[0] * x.shape[1];
    const int64_t size = x.num_elements() / std::max<int64_t>(planes, 1);
    const float* xs = x.as<const float>();
    float* ys = ctx.output(0).as<float>();
    ctx.pool->ParallelFor(planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        // 16 independent partial sums (a vectorizable loop), combined in double.
        const float* row = xs + p * size;
        float part[16] = {};
        int64_t i = 0;
        for (; i + 16 <= size; i += 16) {
          for (int l = 0; l < 16; ++l) part[l] += row[i + l];
        }
        double acc = 0;
        for (int l = 0; l < 16; ++l) acc += part[l];
        for (; i < size; ++i) acc += row[i];
        ys[p] = static_cast<float>(acc / size);
      }
    });
    return absl::OkStatus();
  }

 private:
  // [N, ..., C] with kvant_channels_last: the mean of every pixel's channel
  // row, summed row by row (a vectorizable loop over channels).
  absl::Status RunNhwc(const KernelContext& ctx) const {
    const TensorArg& x = ctx.input(0);
    const int64_t n = x.shape[0], c = x.shape.back();
    const int64_t pixels = x.num_elements() / std::max<int64_t>(n * c, 1);
    const float* xs = x.as<const float>();
    float* ys = ctx.output(0).as<float>();
    // Chunks of 16 channels (a cache line of each pixel) over the threads.
    const int64_t chunks = (c + 15) / 16;
    ctx.pool->ParallelFor(n * chunks, [&](int64_t t0, int64_t t1) {
      double acc[16];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i = t / chunks, c0 = t % chunks * 16, cn = std::min<int64_t>(16, c - c0);
        std::fill_n(acc, cn, 0.0);
        const float* img = xs + i * pixels * c + c0;
        for (int64_t p = 0; p < pixels; ++p) {
          const float* row = img + p * c;
          for (int64_t ch = 0; ch < cn; ++ch) acc[ch] += row[ch];
        }
        for (int64_t ch = 0; ch < cn; ++ch) ys[i * c + c0 + ch] = static_cast<float>(acc[ch] / pixels);
      }
    });
    return absl::OkStatus();
  }

  bool channels_last_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreatePoolF32(const KernelInit& init) {
  return std::make_unique<PoolF32>(init.op == "MaxPool" ? PoolF32::Kind::kMax : PoolF32::Kind::kAverage, init.node_label,
                                   *init.attrs, init.cpu);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearAveragePool(const KernelInit& init) {
  return std::make_unique<PoolF32>(PoolF32::Kind::kQLinearAverage, init.node_label, *init.attrs, init.cpu);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateGlobalAveragePoolF32(const KernelInit& init) {
  return std::make_unique<GlobalAveragePoolF32>(init.attrs->GetInt("kvant_channels_last", 0) != 0);
}

}  // namespace kvant::cpu
