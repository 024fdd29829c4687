// Resize shape rule and the output-size computation shared with the kernel.
#include "ops/resize_ops.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "ops/op_schema.h"

namespace kvant {

absl::StatusOr<ResizeSpec> ResolveResize(const AttributeMap& attrs, const std::vector<int64_t>& in,
                                         const Tensor* scales, const Tensor* sizes, const std::string& label) {
  const int64_t rank = in.size();
  auto err = [&](const std::string& m) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to resize in node %s: %s", label, m));
  };
  std::vector<int64_t> axes = attrs.GetInts("axes");
  if (axes.empty()) {
    for (int64_t i = 0; i < rank; ++i) axes.push_back(i);
  }
  for (int64_t& a : axes) {
    if (a < -rank || a >= rank) return err(absl::StrFormat("axes must be in [%d, %d], got %d", -rank, rank - 1, a));
    if (a < 0) a += rank;
  }
  ResizeSpec r;
  r.out = in;
  r.scales.assign(rank, 1.0);
  const bool have_sizes = sizes != nullptr && sizes->num_elements() > 0;
  const bool have_scales = scales != nullptr && scales->num_elements() > 0;
  if (have_sizes == have_scales) return err("exactly one of scales and sizes must be given");
  if (have_scales) {
    if (scales->dtype() != DataType::kFloat32) return err(absl::StrFormat("scales must be f32, got %s", DataTypeName(scales->dtype())));
    if (scales->num_elements() != static_cast<int64_t>(axes.size())) {
      return err(absl::StrFormat("scales must have %d values, got %d", axes.size(), scales->num_elements()));
    }
    for (size_t i = 0; i < axes.size(); ++i) {
      const double s = scales->data<float>()[i];
      if (!(s > 0)) return err(absl::StrFormat("scales must be > 0, got %g", s));
      r.scales[axes[i]] = s;
      const double out = std::floor(in[axes[i]] * s);
      if (!(out < 0x1p40)) return err(absl::StrFormat("scale %g makes dimension %d larger than 2^40", s, axes[i]));
      r.out[axes[i]] = static_cast<int64_t>(out);
    }
    return r;
  }
  std::vector<int64_t> sz = ReadInts(*sizes);
  if (sz.size() != axes.size()) return err(absl::StrFormat("sizes must have %d values, got %d", axes.size(), sz.size()));
  const std::string policy = attrs.GetString("keep_aspect_ratio_policy", "stretch");
  if (policy == "stretch") {
    for (size_t i = 0; i < axes.size(); ++i) {
      if (sz[i] < 0) return err(absl::StrFormat("sizes must be >= 0, got %d", sz[i]));
      if (in[axes[i]] == 0 && sz[i] > 0) {
        return err(absl::StrFormat("dimension %d is empty and cannot be resized to %d", axes[i], sz[i]));
      }
      r.out[axes[i]] = sz[i];
      r.scales[axes[i]] = in[axes[i]] ? double(sz[i]) / in[axes[i]] : 1.0;
    }
    return r;
  }
  if (policy != "not_larger" && policy != "not_smaller") {
    return err(absl::StrFormat("keep_aspect_ratio_policy must be stretch, not_larger or not_smaller, got '%s'", policy));
  }
  double scale = policy == "not_larger" ? INFINITY : 0;
  for (size_t i = 0; i < axes.size(); ++i) {
    const double s = in[axes[i]] ? double(sz[i]) / in[axes[i]] : 1.0;
    scale = policy == "not_larger" ? std::min(scale, s) : std::max(scale, s);
  }
  for (int64_t a : axes) {
    r.scales[a] = scale;
    const double out = std::round(in[a] * scale);
    if (!(out < 0x1p40)) return err(absl::StrFormat("sizes make dimension %d larger than 2^40", a));
    r.out[a] = static_cast<int64_t>(out);
  }
  return r;
}

absl::Status InferResize(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  // Opset 10: (X, scales); later: (X, roi, scales, sizes).
  const int scales_index = ctx.opset() < 11 ? 1 : 2;
  const Tensor* scales = ctx.has_input(scales_index) ? ctx.constant(scales_index) : nullptr;
  const Tensor* sizes = ctx.opset() >= 11 && ctx.has_input(3) ? ctx.constant(3) : nullptr;
  const bool scales_missing = ctx.has_input(scales_index) && scales == nullptr;
  const bool sizes_missing = ctx.opset() >= 11 && ctx.has_input(3) && sizes == nullptr;
  if (!x.IsStatic() || scales_missing || sizes_missing) {
    ctx.output(0) = ValueType{ctx.dtype(0), x.rank_known ? Shape{true, std::vector<Dim>(x.rank())} : Shape::Unknown()};
    return absl::OkStatus();
  }
  auto r = ResolveResize(ctx.attrs(), x.Sizes(), scales, sizes, ctx.node().Label());
  if (!r.ok()) return r.status();
  ctx.output(0) = ValueType{ctx.dtype(0), Shape::Of(r->out)};
  return absl::OkStatus();
}

}  // namespace kvant
