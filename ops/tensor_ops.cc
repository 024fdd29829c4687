// Shape rules of the shape and data-movement operators (Reshape, Flatten,
// Transpose, Concat, Slice, Squeeze, Unsqueeze, Gather, Shape).
#include "ops/tensor_ops.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ops/op_schema.h"

namespace kvant {

absl::StatusOr<SliceRange> ComputeSlice(const std::vector<int64_t>& in, const std::vector<int64_t>& starts,
                                        const std::vector<int64_t>& ends, std::vector<int64_t> axes,
                                        std::vector<int64_t> steps, const std::string& label) {
  const int64_t rank = in.size();
  auto err = [&](const std::string& m) {
    return absl::InvalidArgumentError(absl::StrCat("failed to slice in node ", label, ": ", m));
  };
  if (starts.size() != ends.size()) {
    return err(absl::StrFormat("starts and ends must have equal length, got %d and %d", starts.size(), ends.size()));
  }
  if (axes.empty()) {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (axes.size() != starts.size() || steps.size() != starts.size()) {
    return err(absl::StrFormat("axes and steps must have %d entries, got %d and %d", starts.size(),
                               axes.size(), steps.size()));
  }
  SliceRange r;
  r.start.assign(rank, 0);
  r.step.assign(rank, 1);
  r.out_shape = in;
  std::vector<bool> seen(rank, false);
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t axis = axes[i];
    if (axis < -rank || axis >= rank) return err(absl::StrFormat("axis must be in [%d, %d], got %d", -rank, rank - 1, axis));
    if (axis < 0) axis += rank;
    if (seen[axis]) return err(absl::StrFormat("axes must be distinct, got %d twice", axis));
    seen[axis] = true;
    int64_t dim = in[axis], step = steps[i];
    if (step == 0) return err("steps must be non-zero, got 0");
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      r.out_shape[axis] = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      r.out_shape[axis] = s > e ? (s - e - step - 1) / (-step) : 0;
    }
    r.start[axis] = s;
    r.step[axis] = step;
  }
  return r;
}

absl::StatusOr<std::vector<int64_t>> ResolveReshape(const std::vector<int64_t>& in,
                                                    const std::vector<int64_t>& target, bool allowzero,
                                                    const std::string& label) {
  std::vector<int64_t> out = target;
  int64_t known = 1, infer = -1, total = 1;
  for (int64_t d : in) total *= d;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == 0 && !allowzero) {
      if (i >= in.size()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to reshape in node %s: a 0 in the target must copy an input dimension, got index %d "
            "past input rank %d",
            label, i, in.size()));
      }
      out[i] = in[i];
    }
    if (out[i] == -1) {
      if (infer >= 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("failed to reshape in node %s: target may hold one -1, got [%s]", label,
                            absl::StrJoin(target, ",")));
      }
      infer = i;
    } else if (out[i] < 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to reshape in node %s: target dimensions must be >= -1, got [%s]", label, absl::StrJoin(target, ",")));
    } else if (__builtin_mul_overflow(known, out[i], &known)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to reshape in node %s: target [%s] has more than 2^63 elements", label, absl::StrJoin(target, ",")));
    }
  }
  if (infer >= 0) {
    if (known == 0 || total % known != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to reshape in node %s: [%s] cannot be reshaped to [%s]", label, absl::StrJoin(in, ","),
          absl::StrJoin(target, ",")));
    }
    out[infer] = total / known;
    known *= out[infer];
  }
  if (known != total) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to reshape in node %s: element count must stay %d, got %d for target [%s]", label, total, known,
        absl::StrJoin(target, ",")));
  }
  return out;
}

namespace {

Shape UnknownOfRank(int64_t rank) {
  Shape s;
  s.rank_known = true;
  s.dims.resize(rank);
  return s;
}

// Axes from the attribute (old opsets) or the constant second input.
bool ReadAxes(const InferContext& ctx, std::vector<int64_t>* axes) {
  if (ctx.num_inputs() > 1 && ctx.has_input(1)) {
    if (!ctx.constant(1)) return false;
    *axes = ReadInts(*ctx.constant(1));
    return true;
  }
  *axes = ctx.attrs().GetInts("axes");
  return true;
}

}  // namespace

absl::Status InferReshape(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  const Tensor* target = ctx.constant(1);
  if (target == nullptr) {
    const Shape& ts = ctx.shape(1);
    ctx.output(0) = ValueType{ctx.dtype(0), ts.IsStatic() && ts.rank() == 1 ? UnknownOfRank(ts.dims[0].value)
                                                                            : Shape::Unknown()};
    return absl::OkStatus();
  }
  std::vector<int64_t> t = ReadInts(*target);
  bool allowzero = ctx.attrs().GetInt("allowzero", 0) != 0;
  if (x.IsStatic()) {
    auto out = ResolveReshape(x.Sizes(), t, allowzero, ctx.node().Label());
    if (!out.ok()) return out.status();
    ctx.output(0) = ValueType{ctx.dtype(0), Shape::Of(*out)};
    return absl::OkStatus();
  }
  Shape y = UnknownOfRank(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] > 0 || (t[i] == 0 && allowzero)) y.dims[i] = Dim::Known(t[i]);
    else if (t[i] == 0 && x.rank_known && static_cast<int64_t>(i) < x.rank()) y.dims[i] = x.dims[i];
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferFlatten(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  if (!x.rank_known) {
    ctx.output(0) = ValueType{ctx.dtype(0), UnknownOfRank(2)};
    return absl::OkStatus();
  }
  int64_t axis = ctx.attrs().GetInt("axis", 1);
  if (axis < -x.rank() || axis > x.rank()) return ctx.Error("axis must be in [%d, %d], got %d", -x.rank(), x.rank(), axis);
  if (axis < 0) axis += x.rank();
  auto product = [&](int64_t b, int64_t e) {
    if (e - b == 1) return x.dims[b];
    int64_t p = 1;
    for (int64_t i = b; i < e; ++i) {
      if (!x.dims[i].known() || __builtin_mul_overflow(p, x.dims[i].value, &p)) return Dim{};
    }
    return Dim::Known(p);
  };
  Shape y = UnknownOfRank(2);
  y.dims[0] = product(0, axis);
  y.dims[1] = product(axis, x.rank());
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferTranspose(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  if (!x.rank_known) {
    ctx.output(0) = ValueType{ctx.dtype(0), Shape::Unknown()};
    return absl::OkStatus();
  }
  std::vector<int64_t> perm = ctx.attrs().GetInts("perm");
  if (perm.empty()) {
    for (int64_t i = x.rank() - 1; i >= 0; --i) perm.push_back(i);
  }
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < static_cast<int64_t>(sorted.size()); ++i) {
    if (sorted.size() != static_cast<size_t>(x.rank()) || sorted[i] != i) {
      return ctx.Error("perm must be a permutation of 0..%d, got [%s]", x.rank() - 1, absl::StrJoin(perm, ","));
    }
  }
  Shape y = UnknownOfRank(x.rank());
  for (int64_t i = 0; i < x.rank(); ++i) y.dims[i] = x.dims[perm[i]];
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferConcat(InferContext& ctx) {
  if (!ctx.attrs().Has("axis")) return ctx.Error("attribute axis is required");
  Shape y;
  for (int i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) continue;
    if (ctx.dtype(i) != ctx.dtype(0)) {
      return ctx.Error("inputs must share one element type, got %s and %s", DataTypeName(ctx.dtype(0)),
                       DataTypeName(ctx.dtype(i)));
    }
    if (!ctx.shape(i).rank_known) {
      ctx.output(0) = ValueType{ctx.dtype(0), Shape::Unknown()};
      return absl::OkStatus();
    }
  }
  const Shape& first = ctx.shape(0);
  auto axis = NormalizeAxis(ctx, ctx.attrs().GetInt("axis", 0), first.rank());
  if (!axis.ok()) return axis.status();
  y = first;
  int64_t total = 0;
  bool total_known = true;
  for (int i = 0; i < ctx.num_inputs(); ++i) {
    const Shape& s = ctx.shape(i);
    if (s.rank() != first.rank()) return ctx.Error("inputs must share rank %d, got %d for input %d", first.rank(), s.rank(), i);
    for (int64_t d = 0; d < s.rank(); ++d) {
      if (d == *axis) continue;
      if (s.dims[d].known() && y.dims[d].known() && s.dims[d].value != y.dims[d].value) {
        return ctx.Error("inputs must match outside axis %d, got %s and %s", *axis, first.ToString(), s.ToString());
      }
      if (!y.dims[d].known()) y.dims[d] = s.dims[d];
    }
    if (s.dims[*axis].known()) total += s.dims[*axis].value;
    else total_known = false;
  }
  y.dims[*axis] = total_known ? Dim::Known(total) : Dim{};
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferSlice(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  for (int i = 1; i < ctx.num_inputs(); ++i) {
    if (ctx.has_input(i) && ctx.constant(i) == nullptr) {
      ctx.output(0) = ValueType{ctx.dtype(0), x.rank_known ? UnknownOfRank(x.rank()) : Shape::Unknown()};
      return absl::OkStatus();
    }
  }
  auto ints = [&](int i) { return ctx.has_input(i) ? ReadInts(*ctx.constant(i)) : std::vector<int64_t>{}; };
  if (!x.rank_known) {
    ctx.output(0) = ValueType{ctx.dtype(0), Shape::Unknown()};
    return absl::OkStatus();
  }
  // Unknown input dimensions stay unknown unless untouched; compute with a placeholder.
  std::vector<int64_t> in = x.Sizes();
  std::vector<int64_t> probe = in;
  for (int64_t& d : probe) d = d < 0 ? 0 : d;
  auto r = ComputeSlice(probe, ints(1), ints(2), ints(3), ints(4), ctx.node().Label());
  if (!r.ok()) return r.status();
  Shape y = x;
  for (int64_t d = 0; d < x.rank(); ++d) {
    bool touched = r->out_shape[d] != probe[d] || r->start[d] != 0 || r->step[d] != 1;
    if (in[d] >= 0) y.dims[d] = Dim::Known(r->out_shape[d]);
    else if (touched) y.dims[d] = Dim{};
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferSqueeze(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  std::vector<int64_t> axes;
  if (!ReadAxes(ctx, &axes) || !x.rank_known) {
    ctx.output(0) = ValueType{ctx.dtype(0), Shape::Unknown()};
    return absl::OkStatus();
  }
  std::vector<bool> drop(x.rank(), false);
  if (axes.empty()) {
    for (int64_t d = 0; d < x.rank(); ++d) {
      if (!x.dims[d].known()) return ctx.Error("squeezing all size-1 axes needs a static shape, got %s", x.ToString());
      drop[d] = x.dims[d].value == 1;
    }
  }
  for (int64_t a : axes) {
    auto axis = NormalizeAxis(ctx, a, x.rank());
    if (!axis.ok()) return axis.status();
    if (x.dims[*axis].known() && x.dims[*axis].value != 1) {
      return ctx.Error("squeezed axis %d must have size 1, got %d", *axis, x.dims[*axis].value);
    }
    drop[*axis] = true;
  }
  Shape y;
  y.rank_known = true;
  for (int64_t d = 0; d < x.rank(); ++d) {
    if (!drop[d]) y.dims.push_back(x.dims[d]);
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferUnsqueeze(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  std::vector<int64_t> axes;
  if (!ReadAxes(ctx, &axes) || !x.rank_known) {
    ctx.output(0) = ValueType{ctx.dtype(0), Shape::Unknown()};
    return absl::OkStatus();
  }
  int64_t rank = x.rank() + axes.size();
  std::vector<bool> insert(rank, false);
  for (int64_t a : axes) {
    auto axis = NormalizeAxis(ctx, a, rank);
    if (!axis.ok()) return axis.status();
    if (insert[*axis]) return ctx.Error("axes must be distinct, got %d twice", *axis);
    insert[*axis] = true;
  }
  Shape y;
  y.rank_known = true;
  int64_t src = 0;
  for (int64_t d = 0; d < rank; ++d) y.dims.push_back(insert[d] ? Dim::Known(1) : x.dims[src++]);
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferGather(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  const Shape& idx = ctx.shape(1);
  if (ctx.dtype(1) != DataType::kInt32 && ctx.dtype(1) != DataType::kInt64) {
    return ctx.Error("indices must be s32 or s64, got %s", DataTypeName(ctx.dtype(1)));
  }
  if (!x.rank_known || !idx.rank_known) {
    ctx.output(0) = ValueType{ctx.dtype(0), Shape::Unknown()};
    return absl::OkStatus();
  }
  auto axis = NormalizeAxis(ctx, ctx.attrs().GetInt("axis", 0), x.rank());
  if (!axis.ok()) return axis.status();
  Shape y;
  y.rank_known = true;
  y.dims.insert(y.dims.end(), x.dims.begin(), x.dims.begin() + *axis);
  y.dims.insert(y.dims.end(), idx.dims.begin(), idx.dims.end());
  y.dims.insert(y.dims.end(), x.dims.begin() + *axis + 1, x.dims.end());
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferShape(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  if (!x.rank_known) {
    ctx.output(0) = ValueType{DataType::kInt64, UnknownOfRank(1)};
    return absl::OkStatus();
  }
  int64_t rank = x.rank();
  int64_t start = ctx.attrs().GetInt("start", 0), end = ctx.attrs().GetInt("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  ctx.output(0) = ValueType{DataType::kInt64, Shape::Of({std::max<int64_t>(0, end - start)})};
  return absl::OkStatus();
}

}  // namespace kvant
