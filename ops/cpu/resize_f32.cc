// Resize for f32: nearest (all nearest modes), linear and cubic, with the
// ONNX coordinate transformation modes, as separable passes: one pass per
// resized dimension, each output index a weighted sum of up to four input
// indices along that dimension (taps clamped to the edge).
#include <cmath>
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/kernel.h"
#include "ops/op_schema.h"
#include "ops/resize_ops.h"

namespace kvant::cpu {
namespace {

struct Taps {
  int count = 1;
  std::vector<int64_t> index;  // out_len * count
  std::vector<float> weight;   // out_len * count
};

class ResizeF32 final : public Kernel {
 public:
  ResizeF32(const AttributeMap& attrs, int64_t opset, std::string label, bool bytes)
      : attrs_(attrs), opset_(opset), label_(std::move(label)), bytes_(bytes), mode_(attrs.GetString("mode", "nearest")),
        transform_(attrs.GetString("coordinate_transformation_mode", "half_pixel")),
        nearest_(attrs.GetString("nearest_mode", "round_prefer_floor")),
        cubic_a_(attrs.GetFloat("cubic_coeff_a", -0.75f)), exclude_outside_(attrs.GetInt("exclude_outside", 0) != 0) {
    if (opset < 11) transform_ = "asymmetric";
  }

  absl::Status Validate() const {
    if (mode_ != "nearest" && mode_ != "linear" && mode_ != "cubic") {
      return absl::InvalidArgumentError(
          absl::StrFormat("failed to compile node %s: mode must be nearest, linear or cubic, got '%s'", label_, mode_));
    }
    if (bytes_ && mode_ != "nearest") {
      return absl::UnimplementedError(absl::StrFormat(
          "failed to compile node %s: Resize of u8/s8 values supports mode nearest only, got '%s'", label_, mode_));
    }
    if (transform_ == "tf_crop_and_resize" || attrs_.GetInt("antialias", 0) != 0) {
      return absl::UnimplementedError(absl::StrFormat(
          "failed to compile node %s: tf_crop_and_resize and antialias are not supported", label_));
    }
    static const char* kModes[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                   "asymmetric", "tf_half_pixel_for_nn"};
    for (const char* m : kModes) {
      if (transform_ == m) return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to compile node %s: unknown coordinate_transformation_mode '%s'", label_, transform_));
  }

  // Elements of the largest intermediate shape (dimensions before d resized).
  static int64_t LargestIntermediate(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
    int64_t best = 0;
    for (size_t d = 0; d <= in.size(); ++d) {
      int64_t n = 1;
      for (size_t i = 0; i < in.size(); ++i) n *= i < d ? out[i] : in[i];
      best = std::max(best, n);
    }
    return best;
  }

  // Two ping-pong buffers, 64-byte aligned.
  size_t ScratchBytes(const KernelShapes& s) const override {
    return 2 * ((LargestIntermediate(s.inputs[0], s.outputs[0]) * 4 + 63) / 64 * 64);
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    const int scales_index = opset_ < 11 ? 1 : 2;
    Tensor scales, sizes;
    if (ctx.has_input(scales_index)) scales = ctx.input(scales_index).View();
    if (opset_ >= 11 && ctx.has_input(3)) sizes = ctx.input(3).View();
    std::vector<int64_t> in(x.shape.begin(), x.shape.end());
    auto spec = ResolveResize(attrs_, in, scales.empty() ? nullptr : &scales, sizes.empty() ? nullptr : &sizes, label_);
    if (!spec.ok()) return spec.status();
    const int64_t rank = in.size();
    std::vector<int64_t> cur = in;
    const float* src = x.as<const float>();
    const int64_t half = (LargestIntermediate(in, spec->out) * 4 + 63) / 64 * 64;
    float* bufs[2] = {static_cast<float*>(ctx.scratch),
                      reinterpret_cast<float*>(static_cast<char*>(ctx.scratch) + half)};
    int which = 0;
    std::vector<int> resized;
    for (int64_t d = 0; d < rank; ++d) {
      if (spec->out[d] != in[d] || spec->scales[d] != 1.0) resized.push_back(d);
    }
    if (resized.empty()) {
      std::memcpy(y.data, x.data, x.num_elements() * (bytes_ ? 1 : 4));
      return absl::OkStatus();
    }
    if (mode_ == "nearest" && bytes_) {
      RunNearest(x.as<const uint8_t>(), in, spec->out, spec->scales, y.as<uint8_t>(), ctx.pool);
      return absl::OkStatus();
    }
    if (mode_ == "nearest") {
      RunNearest(x.as<const float>(), in, spec->out, spec->scales, y.as<float>(), ctx.pool);
      return absl::OkStatus();
    }
    for (size_t r = 0; r < resized.size(); ++r) {
      const int64_t d = resized[r];
      const Taps taps = MakeTaps(in[d], spec->out[d], spec->scales[d]);
      int64_t outer = 1, inner = 1;
      for (int64_t i = 0; i < d; ++i) outer *= cur[i];
      for (int64_t i = d + 1; i < rank; ++i) inner *= cur[i];
      float* dst = r + 1 == resized.size() ? y.as<float>() : bufs[which];
      const int64_t in_len = cur[d], out_len = spec->out[d];
      for (int64_t o = 0; o < outer; ++o) {
        const float* s = src + o * in_len * inner;
        float* t = dst + o * out_len * inner;
        for (int64_t j = 0; j < out_len; ++j) {
          float* trow = t + j * inner;
          const int64_t* idx = taps.index.data() + j * taps.count;
          const float* w = taps.weight.data() + j * taps.count;
          for (int64_t i = 0; i < inner; ++i) trow[i] = w[0] * s[idx[0] * inner + i];
          for (int c = 1; c < taps.count; ++c) {
            const float* srow = s + idx[c] * inner;
            for (int64_t i = 0; i < inner; ++i) trow[i] += w[c] * srow[i];
          }
        }
      }
      cur[d] = out_len;
      src = dst;
      which ^= 1;
    }
    return absl::OkStatus();
  }

 private:
  // Nearest: one pass; each output row copies (or gathers) from the input row
  // its leading indices select. Rows are split over the threads.
  // T: float, or uint8_t for u8 and s8 (ONNX Runtime's QOperator models
  // resize quantized values; nearest only copies them).
  template <typename T>
  void RunNearest(const T* x, const std::vector<int64_t>& in, const std::vector<int64_t>& out,
                  const std::vector<double>& scales, T* y, ParallelRunner* pool) const {
    const int64_t rank = in.size();
    std::vector<std::vector<int64_t>> idx(rank);
    for (int64_t d = 0; d < rank; ++d) idx[d] = MakeTaps(in[d], out[d], scales[d]).index;
    std::vector<int64_t> in_strides(rank, 1);
    for (int64_t d = rank - 2; d >= 0; --d) in_strides[d] = in_strides[d + 1] * in[d + 1];
    const int64_t ow = rank ? out[rank - 1] : 1;
    int64_t rows = 1;
    for (int64_t d = 0; d + 1 < rank; ++d) rows *= out[d];
    const std::vector<int64_t>& col = idx[rank - 1];
    bool identity = ow == (rank ? in[rank - 1] : 1);  // last axis kept: rows copy whole (NHWC channels)
    for (int64_t j = 0; identity && j < ow; ++j) identity = col[j] == j;
    pool->ParallelFor(rows, [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> pos(rank, 0);
      for (int64_t d = rank - 2, rest = r0; d >= 0; --d) {
        pos[d] = rest % out[d];
        rest /= out[d];
      }
      for (int64_t r = r0; r < r1; ++r) {
        int64_t off = 0;
        for (int64_t d = 0; d + 1 < rank; ++d) off += idx[d][pos[d]] * in_strides[d];
        const T* src = x + off;
        T* dst = y + r * ow;
        if (identity) {
          std::memcpy(dst, src, ow * sizeof(T));
        } else {
          for (int64_t j = 0; j < ow; ++j) dst[j] = src[col[j]];
        }
        for (int64_t d = rank - 2; d >= 0; --d) {
          if (++pos[d] < out[d]) break;
          pos[d] = 0;
        }
      }
    });
  }

  double Original(int64_t x, int64_t in_len, int64_t out_len, double scale) const {
    if (transform_ == "align_corners") {
      // The resized length is in_len * scale, fractional when scales are given.
      const double resized = in_len * scale;
      return out_len == 1 || resized <= 1 ? 0.0 : double(x) * (in_len - 1) / (resized - 1);
    }
    if (transform_ == "asymmetric") return x / scale;
    if (transform_ == "tf_half_pixel_for_nn") return (x + 0.5) / scale;
    if (transform_ == "pytorch_half_pixel") return out_len > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    if (transform_ == "half_pixel_symmetric") {
      const double adjustment = out_len / (scale * in_len);
      const double offset = in_len / 2.0 * (1 - adjustment);
      return offset + (x + 0.5) / scale - 0.5;
    }
    return (x + 0.5) / scale - 0.5;  // half_pixel
  }

  Taps MakeTaps(int64_t in_len, int64_t out_len, double scale) const {
    Taps t;
    t.count = mode_ == "nearest" ? 1 : mode_ == "linear" ? 2 : 4;
    t.index.resize(out_len * t.count);
    t.weight.resize(out_len * t.count);
    auto clamp = [&](int64_t i) { return std::min<int64_t>(std::max<int64_t>(i, 0), in_len - 1); };
    for (int64_t j = 0; j < out_len; ++j) {
      const double xo = Original(j, in_len, out_len, scale);
      int64_t* idx = t.index.data() + j * t.count;
      float* w = t.weight.data() + j * t.count;
      if (mode_ == "nearest") {
        double r;
        const double fl = std::floor(xo), frac = xo - fl;
        if (nearest_ == "floor") r = fl;
        else if (nearest_ == "ceil") r = std::ceil(xo);
        else if (nearest_ == "round_prefer_ceil") r = frac >= 0.5 ? fl + 1 : fl;
        else r = frac > 0.5 ? fl + 1 : fl;  // round_prefer_floor
        idx[0] = clamp(static_cast<int64_t>(r));
        w[0] = 1.f;
      } else if (mode_ == "linear") {
        const double c = std::min<double>(std::max<double>(xo, 0.0), in_len - 1);
        const int64_t i0 = static_cast<int64_t>(std::floor(c));
        const double f = c - i0;
        idx[0] = clamp(i0);
        idx[1] = clamp(i0 + 1);
        w[0] = static_cast<float>(1 - f);
        w[1] = static_cast<float>(f);
      } else {
        const int64_t i0 = static_cast<int64_t>(std::floor(xo));
        const double s = xo - i0, a = cubic_a_;
        const double d[4] = {s + 1, s, 1 - s, 2 - s};
        double sum = 0;
        double c[4];
        for (int k = 0; k < 4; ++k) {
          const double v = d[k];
          c[k] = v <= 1 ? ((a + 2) * v - (a + 3)) * v * v + 1 : ((a * v - 5 * a) * v + 8 * a) * v - 4 * a;
          const int64_t i = i0 - 1 + k;
          if (exclude_outside_ && (i < 0 || i >= in_len)) c[k] = 0;
          sum += c[k];
        }
        for (int k = 0; k < 4; ++k) {
          idx[k] = clamp(i0 - 1 + k);
          w[k] = static_cast<float>(exclude_outside_ && sum != 0 ? c[k] / sum : c[k]);
        }
      }
    }
    return t;
  }

  AttributeMap attrs_;
  int64_t opset_;
  std::string label_;
  bool bytes_;  // u8/s8 elements (nearest only)
  std::string mode_, transform_, nearest_;
  float cubic_a_;
  bool exclude_outside_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateResizeF32(const KernelInit& init) {
  const bool bytes = !init.input_types.empty() &&
                     (init.input_types[0] == DataType::kUInt8 || init.input_types[0] == DataType::kInt8);
  auto k = std::make_unique<ResizeF32>(*init.attrs, init.opset, init.node_label, bytes);
  if (auto s = k->Validate(); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
