// Shape and type rules of the quantization operators: QuantizeLinear,
// DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, QLinearMatMul,
// ConvInteger, QLinearConv, and ONNX Runtime's com.microsoft
// MatMulIntegerToFloat and DynamicQuantizeMatMul.
// Supported: u8 and s8 data, f32 scales, per-tensor parameters and per-axis
// (per output channel) ones where the operator allows them; anything else
// (float8, int4/int16, blocked quantization, per-row A zero points) is
// Unimplemented with the reason.
#include "absl/strings/str_format.h"
#include "ops/broadcast.h"
#include "ops/op_schema.h"

namespace kvant {
namespace {

bool IsByte(DataType t) { return t == DataType::kUInt8 || t == DataType::kInt8; }

absl::Status Unsupported(const InferContext& ctx, const std::string& what) {
  return absl::UnimplementedError(
      absl::StrFormat("failed to infer shapes of node %s: %s is not supported", ctx.node().Label(), what));
}

// A scale or zero point: one value, or (per_axis_size >= 0) a 1-D tensor of
// that many values. Unknown sizes pass.
absl::Status CheckParam(const InferContext& ctx, int i, int64_t per_axis_size, const char* name) {
  if (!ctx.has_input(i)) return absl::OkStatus();
  const Shape& s = ctx.shape(i);
  if (!s.rank_known) return absl::OkStatus();
  if (s.rank() == 0 || (s.rank() == 1 && s.dims[0].known() && s.dims[0].value == 1)) return absl::OkStatus();
  if (s.rank() == 1 && per_axis_size != -2 && (!s.dims[0].known() || per_axis_size < 0 ||
                                               s.dims[0].value == per_axis_size)) {
    return absl::OkStatus();
  }
  if (per_axis_size == -2) return ctx.Error("%s must be a scalar, got %s", name, s.ToString());
  return ctx.Error("%s must be a scalar or have %d values, got %s", name, per_axis_size, s.ToString());
}

absl::Status ExpectType(const InferContext& ctx, int i, bool ok, const char* want) {
  if (!ctx.has_input(i) || ok) return absl::OkStatus();
  return Unsupported(ctx, absl::StrFormat("input %d ('%s') of type %s (want %s)", i, ctx.node().inputs[i],
                                          DataTypeName(ctx.dtype(i)), want));
}

bool IsPerTensor(const InferContext& ctx, int i) {
  if (!ctx.has_input(i)) return true;
  const Shape& s = ctx.shape(i);
  return s.rank_known && (s.rank() == 0 || (s.rank() == 1 && s.dims[0].known() && s.dims[0].value == 1));
}

// The size of x along `axis` when the scale (input 1) is per axis (-1:
// unknown); the axis is ignored for per-tensor parameters, as ONNX says.
absl::StatusOr<int64_t> AxisSize(const InferContext& ctx, const Shape& x) {
  if (IsPerTensor(ctx, 1) || !x.rank_known) return -1;
  auto axis = NormalizeAxis(ctx, ctx.attrs().GetInt("axis", 1), x.rank());
  if (!axis.ok()) return axis.status();
  return x.dims[*axis].known() ? x.dims[*axis].value : -1;
}

}  // namespace

absl::Status InferQuantizeLinear(InferContext& ctx) {
  if (ctx.attrs().GetInt("block_size", 0) != 0) return Unsupported(ctx, "blocked quantization");
  if (auto s = ExpectType(ctx, 0, ctx.dtype(0) == DataType::kFloat32, "f32"); !s.ok()) return s;
  if (auto s = ExpectType(ctx, 1, ctx.dtype(1) == DataType::kFloat32, "f32"); !s.ok()) return s;
  DataType out = DataType::kUInt8;
  if (ctx.has_input(2)) {
    out = ctx.dtype(2);
  } else if (const int64_t t = ctx.attrs().GetInt("output_dtype", 0); t != 0) {
    out = static_cast<DataType>(t);
  }
  if (!IsByte(out)) return Unsupported(ctx, absl::StrFormat("quantizing to %s (u8 and s8 are)", DataTypeName(out)));
  auto axis_size = AxisSize(ctx, ctx.shape(0));
  if (!axis_size.ok()) return axis_size.status();
  if (auto s = CheckParam(ctx, 1, *axis_size, "y_scale"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, 2, *axis_size, "y_zero_point"); !s.ok()) return s;
  ctx.output(0) = ValueType{out, ctx.shape(0)};
  return absl::OkStatus();
}

// kvant.QuantizeLinearNhwc: QuantizeLinear of an NCHW image, written NHWC.
absl::Status InferQuantizeLinearNhwc(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  if (!x.rank_known || x.rank() != 4) return ctx.Error("x must be a 4-D NCHW image, got %s", x.ToString());
  if (auto s = InferQuantizeLinear(ctx); !s.ok()) return s;
  Shape& y = ctx.output(0).shape;
  y.dims = {x.dims[0], x.dims[2], x.dims[3], x.dims[1]};
  return absl::OkStatus();
}

absl::Status InferDequantizeLinear(InferContext& ctx) {
  if (ctx.attrs().GetInt("block_size", 0) != 0) return Unsupported(ctx, "blocked quantization");
  const DataType t = ctx.dtype(0);
  if (auto s = ExpectType(ctx, 0, IsByte(t) || t == DataType::kInt32, "u8, s8 or s32"); !s.ok()) return s;
  if (auto s = ExpectType(ctx, 1, ctx.dtype(1) == DataType::kFloat32, "f32"); !s.ok()) return s;
  if (ctx.has_input(2) && ctx.dtype(2) != t) {
    return ctx.Error("x_zero_point must have x's type %s, got %s", DataTypeName(t), DataTypeName(ctx.dtype(2)));
  }
  auto axis_size = AxisSize(ctx, ctx.shape(0));
  if (!axis_size.ok()) return axis_size.status();
  if (auto s = CheckParam(ctx, 1, *axis_size, "x_scale"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, 2, *axis_size, "x_zero_point"); !s.ok()) return s;
  ctx.output(0) = ValueType{DataType::kFloat32, ctx.shape(0)};
  return absl::OkStatus();
}

namespace {

// The N of a MatMul's B: its last dimension, -1 when unknown.
int64_t ColumnsOf(const Shape& b) {
  if (!b.rank_known || b.rank() == 0 || !b.dims.back().known()) return -1;
  return b.rank() == 1 ? 1 : b.dims.back().value;
}

// The output channels of Conv weights, -1 when unknown.
int64_t OutChannelsOf(const Shape& w) { return w.rank_known && w.rank() > 0 && w.dims[0].known() ? w.dims[0].value : -1; }

}  // namespace

absl::Status InferMatMulInteger(InferContext& ctx) {
  for (int i : {0, 1}) {
    if (auto s = ExpectType(ctx, i, IsByte(ctx.dtype(i)), "u8 or s8"); !s.ok()) return s;
  }
  for (int i : {2, 3}) {
    if (ctx.has_input(i) && ctx.dtype(i) != ctx.dtype(i - 2)) {
      return ctx.Error("input %d must have the type of input %d, got %s", i, i - 2, DataTypeName(ctx.dtype(i)));
    }
  }
  if (ctx.has_input(2) && ctx.shape(2).rank_known && ctx.shape(2).rank() > 0 &&
      !(ctx.shape(2).rank() == 1 && ctx.shape(2).dims[0].known() && ctx.shape(2).dims[0].value == 1)) {
    return Unsupported(ctx, "a per-row a_zero_point");
  }
  if (auto s = CheckParam(ctx, 3, ColumnsOf(ctx.shape(1)), "b_zero_point"); !s.ok()) return s;
  return InferMatMulOf(ctx, 0, 1, DataType::kInt32);
}

absl::Status InferQLinearMatMul(InferContext& ctx) {
  // a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point
  for (int i : {0, 3, 7}) {
    if (auto s = ExpectType(ctx, i, IsByte(ctx.dtype(i)), "u8 or s8"); !s.ok()) return s;
  }
  for (int i : {1, 4, 6}) {
    if (auto s = ExpectType(ctx, i, ctx.dtype(i) == DataType::kFloat32, "f32"); !s.ok()) return s;
  }
  for (int i : {2, 5}) {
    if (ctx.dtype(i) != ctx.dtype(i - 2)) {
      return ctx.Error("input %d must have the type of input %d, got %s", i, i - 2, DataTypeName(ctx.dtype(i)));
    }
  }
  const int64_t n = ColumnsOf(ctx.shape(3));
  for (auto [i, name] : {std::pair{1, "a_scale"}, {2, "a_zero_point"}, {6, "y_scale"}, {7, "y_zero_point"}}) {
    if (auto s = CheckParam(ctx, i, -2, name); !s.ok()) return s;
  }
  if (auto s = CheckParam(ctx, 4, n, "b_scale"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, 5, n, "b_zero_point"); !s.ok()) return s;
  if (ctx.num_inputs() > 8) {  // kvant's form: an int32 bias per column
    if (auto s = ExpectType(ctx, 8, ctx.dtype(8) == DataType::kInt32, "int32"); !s.ok()) return s;
    if (auto s = CheckParam(ctx, 8, n, "bias"); !s.ok()) return s;
  }
  return InferMatMulOf(ctx, 0, 3, ctx.dtype(7));
}

absl::Status InferConvInteger(InferContext& ctx) {
  for (int i : {0, 1}) {
    if (auto s = ExpectType(ctx, i, IsByte(ctx.dtype(i)), "u8 or s8"); !s.ok()) return s;
  }
  if (auto s = CheckParam(ctx, 2, -2, "x_zero_point"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, 3, OutChannelsOf(ctx.shape(1)), "w_zero_point"); !s.ok()) return s;
  return InferConvOf(ctx, 0, 1, -1, DataType::kInt32);
}

namespace {

// QLinearConv's and QLinearConvTranspose's operands: x, x_scale,
// x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B (m output
// channels, -1 unknown).
absl::Status CheckQLinearConvOperands(const InferContext& ctx, int64_t m) {
  for (int i : {0, 3, 7}) {
    if (auto s = ExpectType(ctx, i, IsByte(ctx.dtype(i)), "u8 or s8"); !s.ok()) return s;
  }
  for (int i : {1, 4, 6}) {
    if (auto s = ExpectType(ctx, i, ctx.dtype(i) == DataType::kFloat32, "f32"); !s.ok()) return s;
  }
  if (auto s = ExpectType(ctx, 8, !ctx.has_input(8) || ctx.dtype(8) == DataType::kInt32, "s32"); !s.ok()) return s;
  for (auto [i, name] : {std::pair{1, "x_scale"}, {2, "x_zero_point"}, {6, "y_scale"}, {7, "y_zero_point"}}) {
    if (auto s = CheckParam(ctx, i, -2, name); !s.ok()) return s;
  }
  if (auto s = CheckParam(ctx, 4, m, "w_scale"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, 5, m, "w_zero_point"); !s.ok()) return s;
  return CheckParam(ctx, 8, m, "B");
}

}  // namespace

absl::Status InferQLinearConv(InferContext& ctx) {
  if (auto s = CheckQLinearConvOperands(ctx, OutChannelsOf(ctx.shape(3))); !s.ok()) return s;
  return InferConvOf(ctx, 0, 3, 8, ctx.dtype(7));
}

absl::Status InferQLinearConvTranspose(InferContext& ctx) {
  // QLinearConv's operands; w is [cin, cout / group, k...], B [cout].
  const Shape& w = ctx.shape(3);
  int64_t m = -1;
  if (w.rank_known && w.rank() > 1 && w.dims[1].known()) m = w.dims[1].value * ctx.attrs().GetInt("group", 1);
  if (auto s = CheckQLinearConvOperands(ctx, m); !s.ok()) return s;
  InferContext float_rule(ctx.node(), ctx.opset(), {&ctx.input(0), &ctx.input(3)}, {ctx.constant(0), ctx.constant(3)});
  if (auto s = InferConvTranspose(float_rule); !s.ok()) return s;
  ctx.output(0) = ValueType{ctx.dtype(7), float_rule.output(0).shape};
  return absl::OkStatus();
}

absl::Status InferDynamicQuantizeLinear(InferContext& ctx) {
  if (auto s = ExpectType(ctx, 0, ctx.dtype(0) == DataType::kFloat32, "f32"); !s.ok()) return s;
  ctx.output(0) = ValueType{DataType::kUInt8, ctx.shape(0)};
  ctx.output(1) = ValueType{DataType::kFloat32, Shape::Of({})};
  ctx.output(2) = ValueType{DataType::kUInt8, Shape::Of({})};
  return absl::OkStatus();
}

namespace {

// B, its scale and zero point, and the bias of the com.microsoft products
// with float output.
absl::Status CheckFloatOutputProduct(InferContext& ctx, int b, int b_scale, int b_zp, int bias) {
  if (auto s = ExpectType(ctx, b, IsByte(ctx.dtype(b)), "u8 or s8"); !s.ok()) return s;
  if (auto s = ExpectType(ctx, b_scale, ctx.dtype(b_scale) == DataType::kFloat32, "f32"); !s.ok()) return s;
  if (ctx.has_input(b_zp) && ctx.dtype(b_zp) != ctx.dtype(b)) {
    return ctx.Error("b_zero_point must have B's type %s, got %s", DataTypeName(ctx.dtype(b)),
                     DataTypeName(ctx.dtype(b_zp)));
  }
  const int64_t n = ColumnsOf(ctx.shape(b));
  if (auto s = CheckParam(ctx, b_scale, n, "b_scale"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, b_zp, n, "b_zero_point"); !s.ok()) return s;
  if (ctx.has_input(bias)) {
    if (auto s = ExpectType(ctx, bias, ctx.dtype(bias) == DataType::kFloat32, "f32"); !s.ok()) return s;
    const Shape& bs = ctx.shape(bias);
    if (bs.rank_known && !(bs.rank() == 1 && (!bs.dims[0].known() || n < 0 || bs.dims[0].value == n))) {
      return ctx.Error("bias must have shape [%d], got %s", n, bs.ToString());
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status InferMatMulIntegerToFloat(InferContext& ctx) {
  // A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias
  if (auto s = ExpectType(ctx, 0, IsByte(ctx.dtype(0)), "u8 or s8"); !s.ok()) return s;
  if (auto s = ExpectType(ctx, 2, ctx.dtype(2) == DataType::kFloat32, "f32"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, 2, -2, "a_scale"); !s.ok()) return s;
  if (ctx.has_input(4) && ctx.dtype(4) != ctx.dtype(0)) {
    return ctx.Error("a_zero_point must have A's type %s, got %s", DataTypeName(ctx.dtype(0)),
                     DataTypeName(ctx.dtype(4)));
  }
  if (auto s = CheckParam(ctx, 4, -2, "a_zero_point"); !s.ok()) return s;
  if (auto s = CheckFloatOutputProduct(ctx, 1, 3, 5, 6); !s.ok()) return s;
  return InferMatMulOf(ctx, 0, 1, DataType::kFloat32);
}

absl::Status InferDynamicQuantizeMatMul(InferContext& ctx) {
  // A (f32), B, b_scale, b_zero_point, bias
  if (auto s = ExpectType(ctx, 0, ctx.dtype(0) == DataType::kFloat32, "f32"); !s.ok()) return s;
  if (auto s = CheckFloatOutputProduct(ctx, 1, 2, 3, 4); !s.ok()) return s;
  return InferMatMulOf(ctx, 0, 1, DataType::kFloat32);
}

namespace {

// The (scale, zero point) pair at inputs i, i + 1: f32 scalar, and a scalar
// of the quantized value's type when present.
absl::Status CheckScalarPair(const InferContext& ctx, int i, DataType value_type, const char* what) {
  if (auto s = ExpectType(ctx, i, ctx.dtype(i) == DataType::kFloat32, "f32"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, i, -2, what); !s.ok()) return s;
  if (ctx.has_input(i + 1) && ctx.dtype(i + 1) != value_type) {
    return ctx.Error("the zero point of %s must have type %s, got %s", what, DataTypeName(value_type),
                     DataTypeName(ctx.dtype(i + 1)));
  }
  return CheckParam(ctx, i + 1, -2, what);
}

}  // namespace

absl::Status InferQLinearBinary(InferContext& ctx) {
  // A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale, C_zero_point
  const DataType t = ctx.dtype(0);
  if (auto s = ExpectType(ctx, 0, IsByte(t), "u8 or s8"); !s.ok()) return s;
  if (ctx.dtype(3) != t) return ctx.Error("A and B must have the same type, got %s and %s", DataTypeName(t),
                                          DataTypeName(ctx.dtype(3)));
  for (auto [i, what] : {std::pair{1, "A"}, {4, "B"}, {6, "C"}}) {
    if (auto s = CheckScalarPair(ctx, i, t, what); !s.ok()) return s;
  }
  auto out = BroadcastShapes(ctx.shape(0), ctx.shape(3));
  if (!out) {
    return ctx.Error("input shapes must broadcast, got %s and %s", ctx.shape(0).ToString(), ctx.shape(3).ToString());
  }
  ctx.output(0) = ValueType{t, *out};
  return absl::OkStatus();
}

absl::Status InferQLinearGlobalAveragePool(InferContext& ctx) {
  // X, x_scale, x_zero_point, y_scale, y_zero_point; NCHW unless channels_last
  const DataType t = ctx.dtype(0);
  if (auto s = ExpectType(ctx, 0, IsByte(t), "u8 or s8"); !s.ok()) return s;
  const bool channels_last = ctx.attrs().GetInt("channels_last", 0) != 0;
  for (auto [i, what] : {std::pair{1, "x"}, {3, "y"}}) {
    if (auto s = CheckScalarPair(ctx, i, t, what); !s.ok()) return s;
  }
  Shape y = ctx.shape(0);
  if (y.rank_known) {
    if (y.rank() < 3) return ctx.Error("input must have rank >= 3, got %s", y.ToString());
    for (int64_t i = channels_last ? 1 : 2; i < y.rank() - (channels_last ? 1 : 0); ++i) y.dims[i] = Dim::Known(1);
  }
  ctx.output(0) = ValueType{t, y};
  return absl::OkStatus();
}

absl::Status InferQLinearAveragePool(InferContext& ctx) {
  // X, x_scale, x_zero_point, y_scale, y_zero_point; NCHW, or NHWC (2-D) with
  // channels_last: the window rule of AveragePool.
  const DataType t = ctx.dtype(0);
  if (auto s = ExpectType(ctx, 0, IsByte(t), "u8 or s8"); !s.ok()) return s;
  for (auto [i, what] : {std::pair{1, "x"}, {3, "y"}}) {
    if (auto s = CheckScalarPair(ctx, i, t, what); !s.ok()) return s;
  }
  Node plain = ctx.node();
  plain.attrs.Erase("channels_last");
  if (ctx.attrs().GetInt("channels_last", 0) != 0) {
    if (ctx.shape(0).rank_known && ctx.shape(0).rank() != 4) {
      return Unsupported(ctx, absl::StrFormat("channels_last on a rank-%d input (4-D NHWC is)", ctx.shape(0).rank()));
    }
    plain.attrs.SetInt("kvant_channels_last", 1);
  }
  ValueType x = ctx.input(0);
  InferContext pool(plain, ctx.opset(), {&x}, {nullptr});
  if (auto s = InferPool(pool); !s.ok()) return s;
  ctx.output(0) = ValueType{t, pool.output(0).shape};
  return absl::OkStatus();
}

absl::Status InferQGemm(InferContext& ctx) {
  // A, a_scale, a_zero_point, B, b_scale, b_zero_point, C (int32), y_scale, y_zero_point
  if (ctx.attrs().GetInt("transA", 0) != 0) return Unsupported(ctx, "transA = 1");
  for (int i : {0, 3}) {
    if (auto s = ExpectType(ctx, i, IsByte(ctx.dtype(i)), "u8 or s8"); !s.ok()) return s;
  }
  if (auto s = ctx.ExpectRank(0, 2); !s.ok()) return s;
  if (auto s = ctx.ExpectRank(3, 2); !s.ok()) return s;
  if (auto s = CheckScalarPair(ctx, 1, ctx.dtype(0), "a"); !s.ok()) return s;
  const bool tb = ctx.attrs().GetInt("transB", 0) != 0;
  const Shape& a = ctx.shape(0);
  const Shape& b = ctx.shape(3);
  const Dim m = a.rank_known ? a.dims[0] : Dim(), k = a.rank_known ? a.dims[1] : Dim();
  const Dim kb = b.rank_known ? b.dims[tb ? 1 : 0] : Dim(), n = b.rank_known ? b.dims[tb ? 0 : 1] : Dim();
  if (k.known() && kb.known() && k.value != kb.value) {
    return ctx.Error("A has K=%d but B has K=%d", k.value, kb.value);
  }
  const int64_t nn = n.known() ? n.value : -1;
  if (auto s = ExpectType(ctx, 4, ctx.dtype(4) == DataType::kFloat32, "f32"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, 4, nn, "b_scale"); !s.ok()) return s;
  if (auto s = CheckParam(ctx, 5, nn, "b_zero_point"); !s.ok()) return s;
  if (ctx.has_input(5) && ctx.dtype(5) != ctx.dtype(3)) return ctx.Error("b_zero_point must have B's type");
  if (auto s = ExpectType(ctx, 6, !ctx.has_input(6) || ctx.dtype(6) == DataType::kInt32, "s32"); !s.ok()) return s;
  if (ctx.has_input(6)) {
    const Shape& c = ctx.shape(6);
    if (c.rank_known && !(c.rank() == 1 && (!c.dims[0].known() || nn < 0 || c.dims[0].value == nn)) &&
        !(c.rank() == 0)) {
      return Unsupported(ctx, absl::StrFormat("C of shape %s (a per-column bias [%d] is)", c.ToString(), nn));
    }
  }
  DataType out = DataType::kFloat32;
  if (ctx.has_input(7)) {
    out = ctx.has_input(8) ? ctx.dtype(8) : DataType::kUInt8;
    if (auto s = CheckScalarPair(ctx, 7, out, "y"); !s.ok()) return s;
  }
  Shape y = Shape::Of({});
  y.dims = {m, n};
  ctx.output(0) = ValueType{out, y};
  return absl::OkStatus();
}

absl::Status InferQLinearConvNhwc(InferContext& ctx) { return InferNhwcAsNchw(ctx, InferQLinearConv); }

absl::Status InferQLinearConvTransposeNhwc(InferContext& ctx) {
  return InferNhwcAsNchw(ctx, InferQLinearConvTranspose);
}

absl::Status InferQLinearSoftmax(InferContext& ctx) {
  // X, x_scale, x_zero_point, y_scale, y_zero_point
  const DataType t = ctx.dtype(0);
  if (auto s = ExpectType(ctx, 0, IsByte(t), "u8 or s8"); !s.ok()) return s;
  for (auto [i, what] : {std::pair{1, "x"}, {3, "y"}}) {
    if (auto s = CheckScalarPair(ctx, i, t, what); !s.ok()) return s;
  }
  const Shape& x = ctx.shape(0);
  if (x.rank_known) {
    const int64_t opset = ctx.attrs().GetInt("opset", 13);
    if (auto a = NormalizeAxis(ctx, ctx.attrs().GetInt("axis", opset < 13 ? 1 : -1), x.rank()); !a.ok()) {
      return a.status();
    }
  }
  ctx.output(0) = ValueType{t, x};
  return absl::OkStatus();
}

absl::Status InferQLinearUnary(InferContext& ctx) {
  // X, x_scale, x_zero_point, y_scale, y_zero_point (QLinearSigmoid, QLinearLeakyRelu)
  const DataType t = ctx.dtype(0);
  if (auto s = ExpectType(ctx, 0, IsByte(t), "u8 or s8"); !s.ok()) return s;
  for (auto [i, what] : {std::pair{1, "X"}, {3, "Y"}}) {
    if (auto s = CheckScalarPair(ctx, i, t, what); !s.ok()) return s;
  }
  ctx.output(0) = ValueType{t, ctx.shape(0)};
  return absl::OkStatus();
}

absl::Status InferQLinearTable(InferContext& ctx) {
  // X (u8 or s8), table: 256 values of Y's type (u8 or s8), indexed by X's
  // bits; with attribute axis, [C, 256]: one table per index along that axis.
  if (auto s = ExpectType(ctx, 0, IsByte(ctx.dtype(0)), "u8 or s8"); !s.ok()) return s;
  if (auto s = ExpectType(ctx, 1, IsByte(ctx.dtype(1)), "u8 or s8"); !s.ok()) return s;
  ctx.output(0) = ValueType{ctx.dtype(1), ctx.shape(0)};
  return absl::OkStatus();
}

absl::Status InferQLinearConcat(InferContext& ctx) {
  // Y_scale, Y_zero_point, then (X, x_scale, x_zero_point) per input
  if (ctx.num_inputs() < 5 || (ctx.num_inputs() - 2) % 3 != 0) {
    return ctx.Error("needs Y_scale, Y_zero_point and (tensor, scale, zero point) triples, got %d inputs",
                     ctx.num_inputs());
  }
  const DataType t = ctx.dtype(2);
  if (auto s = ExpectType(ctx, 2, IsByte(t), "u8 or s8"); !s.ok()) return s;
  if (auto s = CheckScalarPair(ctx, 0, t, "Y"); !s.ok()) return s;
  std::vector<const ValueType*> xs;
  std::vector<const Tensor*> constants;
  for (int i = 2; i < ctx.num_inputs(); i += 3) {
    if (auto s = CheckScalarPair(ctx, i + 1, t, "an input"); !s.ok()) return s;
    xs.push_back(&ctx.input(i));
    constants.push_back(ctx.constant(i));
  }
  InferContext concat(ctx.node(), ctx.opset(), xs, constants);
  if (auto s = InferConcat(concat); !s.ok()) return s;
  ctx.output(0) = concat.output(0);
  return absl::OkStatus();
}

}  // namespace kvant
