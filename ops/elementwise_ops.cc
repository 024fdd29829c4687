// Shape rules of elementwise operators: unary maps, Clip, Cast, Dropout,
// Softmax, the broadcasting binary operators, comparisons, Where, and If
// (whose outputs' types come from its branches).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ops/broadcast.h"
#include "ops/op_schema.h"

namespace kvant {

absl::Status InferUnary(InferContext& ctx) {
  ctx.output(0) = ctx.input(0);
  return absl::OkStatus();
}

absl::Status InferClip(InferContext& ctx) {
  for (int i = 1; i < 3; ++i) {
    if (ctx.has_input(i) && ctx.shape(i).rank_known && ctx.shape(i).rank() != 0 &&
        !(ctx.shape(i).rank() == 1 && ctx.shape(i).dims[0].value == 1)) {
      return ctx.Error("min and max must be scalars, got input %d of shape %s", i,
                       ctx.shape(i).ToString());
    }
  }
  ctx.output(0) = ctx.input(0);
  return absl::OkStatus();
}

absl::Status InferCast(InferContext& ctx) {
  int64_t to = ctx.attrs().GetInt("to", -1);
  DataType t = static_cast<DataType>(to);
  if (DataTypeSize(t) == 0) {
    if (to == 8 || (to >= 17 && to <= 26)) {  // string, float8, int4/uint4, float4, e8m0, int2/uint2
      return absl::UnimplementedError(absl::StrFormat(
          "failed to infer shapes of node %s: Cast to ONNX type %d is not supported", ctx.node().Label(), to));
    }
    return ctx.Error("attribute 'to' must name an ONNX element type, got %d", to);
  }
  ctx.output(0) = ValueType{t, ctx.shape(0)};
  return absl::OkStatus();
}

absl::Status InferDropout(InferContext& ctx) {
  // Inference only: training_mode must be absent or a constant false.
  if (ctx.has_input(2)) {
    const Tensor* t = ctx.constant(2);
    if (t == nullptr || t->data<uint8_t>()[0] != 0) {
      return absl::UnimplementedError(absl::StrFormat(
          "failed to infer shapes of node %s: Dropout in training mode is not supported", ctx.node().Label()));
    }
  }
  ctx.output(0) = ctx.input(0);
  if (ctx.num_outputs() > 1) ctx.output(1) = ValueType{DataType::kBool, ctx.shape(0)};
  return absl::OkStatus();
}

absl::Status InferSoftmax(InferContext& ctx) {
  const Shape& s = ctx.shape(0);
  if (s.rank_known) {
    int64_t def = ctx.opset() >= 13 ? -1 : 1;
    auto axis = NormalizeAxis(ctx, ctx.attrs().GetInt("axis", def), s.rank());
    if (!axis.ok()) return axis.status();
  }
  ctx.output(0) = ctx.input(0);
  return absl::OkStatus();
}

absl::Status InferBroadcast(InferContext& ctx) {
  if (ctx.dtype(0) != ctx.dtype(1) && ctx.node().op_type != "Pow") {
    return ctx.Error("inputs must have the same element type, got %s and %s",
                     DataTypeName(ctx.dtype(0)), DataTypeName(ctx.dtype(1)));
  }
  auto out = BroadcastShapes(ctx.shape(0), ctx.shape(1));
  if (!out) {
    return ctx.Error("input shapes must broadcast, got %s and %s", ctx.shape(0).ToString(),
                     ctx.shape(1).ToString());
  }
  ctx.output(0) = ValueType{ctx.dtype(0), *out};
  return absl::OkStatus();
}


absl::Status InferCompare(InferContext& ctx) {
  if (ctx.dtype(0) != ctx.dtype(1)) {
    return ctx.Error("inputs must have the same element type, got %s and %s", DataTypeName(ctx.dtype(0)),
                     DataTypeName(ctx.dtype(1)));
  }
  auto out = BroadcastShapes(ctx.shape(0), ctx.shape(1));
  if (!out) return ctx.Error("input shapes must broadcast, got %s and %s", ctx.shape(0).ToString(), ctx.shape(1).ToString());
  ctx.output(0) = ValueType{DataType::kBool, *out};
  return absl::OkStatus();
}

absl::Status InferWhere(InferContext& ctx) {
  if (ctx.dtype(0) != DataType::kBool) return ctx.Error("condition must be bool, got %s", DataTypeName(ctx.dtype(0)));
  if (ctx.dtype(1) != ctx.dtype(2)) {
    return ctx.Error("X and Y must have the same element type, got %s and %s", DataTypeName(ctx.dtype(1)),
                     DataTypeName(ctx.dtype(2)));
  }
  auto xy = BroadcastShapes(ctx.shape(1), ctx.shape(2));
  auto out = xy ? BroadcastShapes(ctx.shape(0), *xy) : std::nullopt;
  if (!out) {
    return ctx.Error("condition, X and Y must broadcast, got %s, %s and %s", ctx.shape(0).ToString(),
                     ctx.shape(1).ToString(), ctx.shape(2).ToString());
  }
  ctx.output(0) = ValueType{ctx.dtype(1), *out};
  return absl::OkStatus();
}


// If: output types come from the then-branch's declared outputs; shapes are
// known once the condition folds and the branch is inlined.
absl::Status InferIf(InferContext& ctx) {
  const Attribute* then_branch = ctx.attrs().Find("then_branch");
  const Attribute* else_branch = ctx.attrs().Find("else_branch");
  if (!then_branch || !else_branch || then_branch->kind != Attribute::Kind::kGraph ||
      else_branch->kind != Attribute::Kind::kGraph) {
    return ctx.Error("then_branch and else_branch must be graphs");
  }
  if (static_cast<int>(then_branch->g->outputs.size()) != ctx.num_outputs() ||
      static_cast<int>(else_branch->g->outputs.size()) != ctx.num_outputs()) {
    return ctx.Error("both branches must have %d outputs, got %d and %d", ctx.num_outputs(),
                     then_branch->g->outputs.size(), else_branch->g->outputs.size());
  }
  for (int i = 0; i < ctx.num_outputs(); ++i) {
    const ValueType* t = then_branch->g->FindType(then_branch->g->outputs[i]);
    ctx.output(i) = ValueType{t ? t->dtype : DataType::kUndefined, Shape::Unknown()};
  }
  return absl::OkStatus();
}

}  // namespace kvant
