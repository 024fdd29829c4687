// Shape rules of reductions (Reduce*, ArgMax/ArgMin), scans (CumSum) and TopK,
// and the axis resolution their kernels share.
#include "ops/reduce_ops.h"

#include "absl/strings/str_format.h"
#include "ops/op_schema.h"

namespace kvant {

absl::StatusOr<std::vector<bool>> ReduceAxes(const AttributeMap& attrs, const Tensor* axes_input, int64_t opset,
                                             const std::string& op, int64_t rank, const std::string& label) {
  std::vector<int64_t> axes;
  // ReduceSum moved axes to an input at opset 13, the other reductions at 18.
  const bool axes_is_input = op == "ReduceSum" ? opset >= 13 : opset >= 18;
  if (axes_is_input) {
    if (axes_input != nullptr) axes = ReadInts(*axes_input);
  } else {
    axes = attrs.GetInts("axes");
  }
  std::vector<bool> reduce(rank, false);
  if (axes.empty()) {
    const bool noop = attrs.GetInt("noop_with_empty_axes", 0) != 0;
    if (!noop) reduce.assign(rank, true);
    return reduce;
  }
  for (int64_t a : axes) {
    if (a < -rank || a >= rank) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to read axes of node %s: axis must be in [%d, %d], got %d", label, -rank, rank - 1, a));
    }
    reduce[a < 0 ? a + rank : a] = true;
  }
  return reduce;
}

absl::Status InferReduce(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  const std::string& op = ctx.node().op_type;
  const bool axes_is_input = op == "ReduceSum" ? ctx.opset() >= 13 : ctx.opset() >= 18;
  if (!x.rank_known || (axes_is_input && ctx.has_input(1) && ctx.constant(1) == nullptr)) {
    ctx.output(0) = ValueType{ctx.dtype(0), Shape::Unknown()};
    return absl::OkStatus();
  }
  auto reduce = ReduceAxes(ctx.attrs(), ctx.has_input(1) ? ctx.constant(1) : nullptr, ctx.opset(), op, x.rank(),
                           ctx.node().Label());
  if (!reduce.ok()) return reduce.status();
  const bool keep = ctx.attrs().GetInt("keepdims", 1) != 0;
  Shape y;
  y.rank_known = true;
  for (int64_t d = 0; d < x.rank(); ++d) {
    if (!(*reduce)[d]) y.dims.push_back(x.dims[d]);
    else if (keep) y.dims.push_back(Dim::Known(1));
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferArgReduce(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  if (!x.rank_known) {
    ctx.output(0) = ValueType{DataType::kInt64, Shape::Unknown()};
    return absl::OkStatus();
  }
  auto axis = NormalizeAxis(ctx, ctx.attrs().GetInt("axis", 0), x.rank());
  if (!axis.ok()) return axis.status();
  Shape y = x;
  if (ctx.attrs().GetInt("keepdims", 1) != 0) y.dims[*axis] = Dim::Known(1);
  else y.dims.erase(y.dims.begin() + *axis);
  ctx.output(0) = ValueType{DataType::kInt64, y};
  return absl::OkStatus();
}

absl::Status InferCumSum(InferContext& ctx) {
  ctx.output(0) = ctx.input(0);
  return absl::OkStatus();
}

absl::Status InferTopK(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  Shape y = x;
  if (x.rank_known) {
    auto axis = NormalizeAxis(ctx, ctx.attrs().GetInt("axis", -1), x.rank());
    if (!axis.ok()) return axis.status();
    int64_t k = -1;
    if (ctx.opset() < 10) k = ctx.attrs().GetInt("k", -1);
    else if (const Tensor* kt = ctx.constant(1); kt != nullptr) {
      if (kt->num_elements() != 1) return ctx.Error("K must hold one value, got %d", kt->num_elements());
      k = ReadInts(*kt)[0];
    }
    if (k < -1 || (k >= 0 && x.dims[*axis].known() && k > x.dims[*axis].value)) {
      return ctx.Error("k must be in [0, %d], got %d", x.dims[*axis].value, k);
    }
    y.dims[*axis] = k >= 0 ? Dim::Known(k) : Dim{};
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  if (ctx.num_outputs() > 1) ctx.output(1) = ValueType{DataType::kInt64, y};
  return absl::OkStatus();
}

}  // namespace kvant
