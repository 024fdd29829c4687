// FP32 pooling, NCHW, 1-D to 3-D: MaxPool (dilations, ceil_mode),
// AveragePool (count_include_pad) and GlobalAveragePool.
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"
#include "ops/kernel.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

class PoolF32 final : public Kernel {
 public:
  PoolF32(bool is_max, std::string label, const AttributeMap& attrs)
      : is_max_(is_max), label_(std::move(label)), attrs_(attrs) {}

  absl::Status Run(const KernelContext& ctx) const override {
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
    const float* xs = x.as<const float>();
    float* ys = y.as<float>();
    ctx.pool->ParallelFor(planes, [&](int64_t p0, int64_t p1) {
      for (int64_t plane = p0; plane < p1; ++plane) {
        const float* xp = xs + plane * in_size;
        float* yp = ys + plane * out_size;
        for (int64_t o0 = 0; o0 < out[0]; ++o0) {
          for (int64_t o1 = 0; o1 < out[1]; ++o1) {
            for (int64_t o2 = 0; o2 < out[2]; ++o2) {
              const int64_t o[3] = {o0, o1, o2};
              float acc = is_max_ ? -std::numeric_limits<float>::infinity() : 0.f;
              int64_t count = 0, padded_count = 1;
              for (int i = 0; i < 3; ++i) {
                // Window positions inside [-pad_begin, in + pad_end) for count_include_pad.
                int64_t n = 0;
                for (int64_t t = 0; t < k[i]; ++t) {
                  const int64_t pos = o[i] * s[i] - pb[i] + t * d[i];
                  if (pos >= -pb[i] && pos < in[i] + pe[i]) ++n;
                }
                padded_count *= n;
              }
              for (int64_t t0 = 0; t0 < k[0]; ++t0) {
                const int64_t i0 = o0 * s[0] - pb[0] + t0 * d[0];
                if (i0 < 0 || i0 >= in[0]) continue;
                for (int64_t t1 = 0; t1 < k[1]; ++t1) {
                  const int64_t i1 = o1 * s[1] - pb[1] + t1 * d[1];
                  if (i1 < 0 || i1 >= in[1]) continue;
                  const float* row = xp + (i0 * in[1] + i1) * in[2];
                  for (int64_t t2 = 0; t2 < k[2]; ++t2) {
                    const int64_t i2 = o2 * s[2] - pb[2] + t2 * d[2];
                    if (i2 < 0 || i2 >= in[2]) continue;
                    const float v = row[i2];
                    if (is_max_) acc = (v > acc || std::isnan(v)) ? v : acc;
                    else acc += v;
                    ++count;
                  }
                }
              }
              if (!is_max_) acc /= static_cast<float>(include_pad ? padded_count : std::max<int64_t>(count, 1));
              yp[(o0 * out[1] + o1) * out[2] + o2] = acc;
            }
          }
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  bool is_max_;
  std::string label_;
  AttributeMap attrs_;
};

class GlobalAveragePoolF32 final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const int64_t planes = x.shape[0] * x.shape[1];
    const int64_t size = x.num_elements() / std::max<int64_t>(planes, 1);
    const float* xs = x.as<const float>();
    float* ys = ctx.output(0).as<float>();
    ctx.pool->ParallelFor(planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        double acc = 0;
        for (int64_t i = 0; i < size; ++i) acc += xs[p * size + i];
        ys[p] = static_cast<float>(acc / size);
      }
    });
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreatePoolF32(const KernelInit& init) {
  return std::make_unique<PoolF32>(init.op == "MaxPool", init.node_label, *init.attrs);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateGlobalAveragePoolF32(const KernelInit&) {
  return std::make_unique<GlobalAveragePoolF32>();
}

}  // namespace kvant::cpu
