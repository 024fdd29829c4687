// Shape rules of the operators that make or reshape data from shape-like
// inputs: ConstantOfShape, Range, Size, Expand, Tile, Pad, Split.
#include <cmath>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ops/broadcast.h"
#include "ops/generator_ops.h"
#include "ops/op_schema.h"

namespace kvant {

absl::StatusOr<PadSpec> ResolvePads(const AttributeMap& attrs, int64_t opset, const Tensor* pads_input,
                                    const Tensor* axes_input, int64_t rank, const std::string& label) {
  PadSpec p;
  std::vector<int64_t> pads = opset < 11 ? attrs.GetInts("pads") : (pads_input ? ReadInts(*pads_input) : std::vector<int64_t>{});
  std::vector<int64_t> axes;
  if (axes_input != nullptr) axes = ReadInts(*axes_input);
  if (axes.empty()) {
    for (int64_t i = 0; i < rank; ++i) axes.push_back(i);
  }
  if (pads.size() != 2 * axes.size()) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to read pads of node %s: pads must have %d values, got %d",
                                                      label, 2 * axes.size(), pads.size()));
  }
  p.begin.assign(rank, 0);
  p.end.assign(rank, 0);
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t a = axes[i];
    if (a < -rank || a >= rank) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to read pads of node %s: axis must be in [%d, %d], got %d",
                                                        label, -rank, rank - 1, a));
    }
    if (a < 0) a += rank;
    p.begin[a] = pads[i];
    p.end[a] = pads[i + axes.size()];
  }
  p.mode = attrs.GetString("mode", "constant");
  if (p.mode != "constant" && p.mode != "reflect" && p.mode != "edge" && p.mode != "wrap") {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to read attributes of node %s: mode must be constant, reflect, edge or wrap, got '%s'", label, p.mode));
  }
  return p;
}

absl::StatusOr<std::vector<int64_t>> SplitSizes(const AttributeMap& attrs, int64_t opset, const Tensor* split_input,
                                                int64_t dim, int64_t outputs, const std::string& label) {
  std::vector<int64_t> split = opset < 13 ? attrs.GetInts("split") : (split_input ? ReadInts(*split_input) : std::vector<int64_t>{});
  if (split.empty()) {
    const int64_t num = attrs.GetInt("num_outputs", outputs);
    if (num <= 0) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to split in node %s: num_outputs must be > 0, got %d", label, num));
    }
    const int64_t chunk = (dim + num - 1) / num;  // the last piece may be smaller
    for (int64_t i = 0; i < num; ++i) split.push_back(std::max<int64_t>(0, std::min(chunk, dim - i * chunk)));
  }
  int64_t total = 0;
  for (int64_t s : split) {
    if (s < 0) return absl::InvalidArgumentError(absl::StrFormat("failed to split in node %s: sizes must be >= 0", label));
    total += s;
  }
  if (total != dim || static_cast<int64_t>(split.size()) != outputs) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to split in node %s: %d sizes summing to %d must match %d outputs and the axis size %d", label,
        split.size(), total, outputs, dim));
  }
  return split;
}

absl::Status InferConstantOfShape(InferContext& ctx) {
  DataType t = DataType::kFloat32;
  if (const Attribute* v = ctx.attrs().Find("value"); v && v->kind == Attribute::Kind::kTensor) t = v->t.dtype();
  Shape y;
  if (const Tensor* s = ctx.constant(0)) {
    std::vector<int64_t> dims = ReadInts(*s);
    for (int64_t d : dims) {
      if (d < 0) return ctx.Error("shape values must be >= 0, got %d", d);
    }
    auto count = ElementCount(dims);
    if (!count.ok()) return ctx.Error("%s", count.status().message());
    y = Shape::Of(dims);
  } else if (ctx.shape(0).IsStatic() && ctx.shape(0).rank() == 1) {
    y.rank_known = true;
    y.dims.resize(ctx.shape(0).dims[0].value);
  }
  ctx.output(0) = ValueType{t, y};
  return absl::OkStatus();
}

absl::Status InferRange(InferContext& ctx) {
  Shape y;
  y.rank_known = true;
  y.dims.resize(1);
  if (ctx.constant(0) && ctx.constant(1) && ctx.constant(2)) {
    auto scalar = [&](int i) {
      const Tensor* t = ctx.constant(i);
      switch (t->dtype()) {
        case DataType::kFloat32: return double(t->data<float>()[0]);
        case DataType::kFloat64: return t->data<double>()[0];
        case DataType::kInt32: return double(t->data<int32_t>()[0]);
        case DataType::kInt16: return double(t->data<int16_t>()[0]);
        default: return double(t->data<int64_t>()[0]);
      }
    };
    const double start = scalar(0), limit = scalar(1), delta = scalar(2);
    if (delta == 0) return ctx.Error("delta must be non-zero");
    const double n = std::ceil((limit - start) / delta);
    if (n > double(int64_t{1} << 40)) return ctx.Error("range must hold at most 2^40 values, got %g", n);
    y.dims[0] = Dim::Known(std::max<int64_t>(0, static_cast<int64_t>(n)));
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferSize(InferContext& ctx) {
  ctx.output(0) = ValueType{DataType::kInt64, Shape::Of({})};
  return absl::OkStatus();
}

absl::Status InferExpand(InferContext& ctx) {
  const Tensor* s = ctx.constant(1);
  if (s == nullptr) {
    ctx.output(0) = ValueType{ctx.dtype(0), Shape::Unknown()};
    return absl::OkStatus();
  }
  const std::vector<int64_t> dims = ReadInts(*s);
  for (int64_t d : dims) {
    if (d < 0) return ctx.Error("shape values must be >= 0, got [%s]", absl::StrJoin(dims, ","));
  }
  auto out = BroadcastShapes(ctx.shape(0), Shape::Of(dims));
  if (!out) return ctx.Error("input %s must broadcast to the shape input", ctx.shape(0).ToString());
  ctx.output(0) = ValueType{ctx.dtype(0), *out};
  return absl::OkStatus();
}

absl::Status InferTile(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  const Tensor* r = ctx.constant(1);
  if (r == nullptr || !x.rank_known) {
    ctx.output(0) = ValueType{ctx.dtype(0), x.rank_known ? Shape{true, std::vector<Dim>(x.rank())} : Shape::Unknown()};
    return absl::OkStatus();
  }
  std::vector<int64_t> reps = ReadInts(*r);
  if (static_cast<int64_t>(reps.size()) != x.rank()) return ctx.Error("repeats must have %d values, got %d", x.rank(), reps.size());
  Shape y = x;
  for (int64_t d = 0; d < x.rank(); ++d) {
    if (reps[d] < 0) return ctx.Error("repeats must be >= 0, got %d", reps[d]);
    int64_t n = 0;
    if (x.dims[d].known() && __builtin_mul_overflow(x.dims[d].value, reps[d], &n)) {
      return ctx.Error("dimension %d times %d repeats overflows 64 bits", x.dims[d].value, reps[d]);
    }
    y.dims[d] = x.dims[d].known() ? Dim::Known(n) : Dim{};
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferPad(InferContext& ctx) {
  if (ctx.opset() >= 11 && !ctx.has_input(1)) return ctx.Error("input 'pads' is required from opset 11");
  const Shape& x = ctx.shape(0);
  const bool pads_known = ctx.opset() < 11 || ctx.constant(1) != nullptr;
  const bool axes_known = !ctx.has_input(3) || ctx.constant(3) != nullptr;
  if (!x.rank_known || !pads_known || !axes_known) {
    ctx.output(0) = ValueType{ctx.dtype(0), x.rank_known ? Shape{true, std::vector<Dim>(x.rank())} : Shape::Unknown()};
    return absl::OkStatus();
  }
  auto p = ResolvePads(ctx.attrs(), ctx.opset(), ctx.constant(1), ctx.has_input(3) ? ctx.constant(3) : nullptr,
                       x.rank(), ctx.node().Label());
  if (!p.ok()) return p.status();
  Shape y = x;
  for (int64_t d = 0; d < x.rank(); ++d) {
    if (!x.dims[d].known()) {
      y.dims[d] = (p->begin[d] == 0 && p->end[d] == 0) ? x.dims[d] : Dim{};
      continue;
    }
    const int64_t v = x.dims[d].value + p->begin[d] + p->end[d];
    if (v < 0) return ctx.Error("padded dimension %d must be >= 0, got %d", d, v);
    y.dims[d] = Dim::Known(v);
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferSplit(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  if (!x.rank_known) {
    for (auto& o : ctx.outputs()) o = ValueType{ctx.dtype(0), Shape::Unknown()};
    return absl::OkStatus();
  }
  auto axis = NormalizeAxis(ctx, ctx.attrs().GetInt("axis", 0), x.rank());
  if (!axis.ok()) return axis.status();
  const bool sizes_known = ctx.opset() < 13 || !ctx.has_input(1) || ctx.constant(1) != nullptr;
  if (!x.dims[*axis].known() || !sizes_known) {
    for (auto& o : ctx.outputs()) {
      o = ValueType{ctx.dtype(0), x};
      o.shape.dims[*axis] = Dim{};
    }
    return absl::OkStatus();
  }
  auto sizes = SplitSizes(ctx.attrs(), ctx.opset(), ctx.has_input(1) ? ctx.constant(1) : nullptr, x.dims[*axis].value,
                          ctx.num_outputs(), ctx.node().Label());
  if (!sizes.ok()) return sizes.status();
  for (int i = 0; i < ctx.num_outputs(); ++i) {
    ctx.output(i) = ValueType{ctx.dtype(0), x};
    ctx.output(i).shape.dims[*axis] = Dim::Known((*sizes)[i]);
  }
  return absl::OkStatus();
}

}  // namespace kvant
