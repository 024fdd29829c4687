// Shape rules of the recurrent operators RNN, GRU and LSTM, and of their
// dynamically quantized forms: com.microsoft DynamicQuantizeLSTM and Kvant's
// DynamicQuantizeGRU / DynamicQuantizeRNN (made by QuantizeMatMulsDynamic):
//   X, W, R, B, sequence_lens, initial_h, initial_c, P, W_scale, W_zero_point,
//   R_scale, R_zero_point
// with W [dirs, input, gates * hidden] and R [dirs, hidden, gates * hidden]
// in s8 or u8 (transposed against the float operators' W and R), scales f32
// and zero points of the weights' type, per direction [dirs] or per gate
// column [dirs, gates * hidden]. GRU and RNN leave initial_c and P empty.
#include "absl/strings/str_format.h"
#include "ops/op_schema.h"

namespace kvant {
namespace {

bool IsWeightByte(DataType t) { return t == DataType::kInt8 || t == DataType::kUInt8; }

// W and R of the quantized forms: bytes, with f32 scales and zero points of
// their type, per direction or per gate column.
absl::Status CheckQuantizedWeights(const InferContext& ctx, int64_t dirs, int64_t columns) {
  for (int i : {1, 2}) {
    if (!IsWeightByte(ctx.dtype(i))) {
      return ctx.Error("input %d ('%s') must be s8 or u8, got %s", i, ctx.node().inputs[i], DataTypeName(ctx.dtype(i)));
    }
  }
  for (int i = 8; i < 12; ++i) {
    const bool scale = i % 2 == 0;
    if (!ctx.has_input(i)) {
      if (scale) return ctx.Error("input %d (the %s scale) is required", i, i == 8 ? "W" : "R");
      continue;
    }
    const DataType want = scale ? DataType::kFloat32 : ctx.dtype(i < 10 ? 1 : 2);
    if (ctx.dtype(i) != want) {
      return ctx.Error("input %d ('%s') must be %s, got %s", i, ctx.node().inputs[i], DataTypeName(want),
                       DataTypeName(ctx.dtype(i)));
    }
    const Shape& s = ctx.shape(i);
    const bool per_dir = s.IsStatic() && s.rank() == 1 && s.Sizes()[0] == dirs;
    const bool per_col = s.IsStatic() && s.rank() == 2 && s.Sizes()[0] == dirs && s.Sizes()[1] == columns;
    if (!per_dir && !per_col) {
      return ctx.Error("input %d ('%s') must have shape [%d] or [%d, %d], got %s", i, ctx.node().inputs[i], dirs, dirs,
                       columns, s.ToString());
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status InferRecurrent(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  const Shape& w = ctx.shape(1);
  const int64_t hidden = ctx.attrs().GetInt("hidden_size", -1);
  const std::string dir = ctx.attrs().GetString("direction", "forward");
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional") {
    return ctx.Error("direction must be forward, reverse or bidirectional, got '%s'", dir);
  }
  const int64_t dirs = dir == "bidirectional" ? 2 : 1;
  const std::string& op = ctx.node().op_type;
  const bool quantized = op.starts_with("DynamicQuantize");
  const bool lstm = op == "LSTM" || op == "DynamicQuantizeLSTM";
  const int64_t gates = lstm ? 4 : op == "GRU" || op == "DynamicQuantizeGRU" ? 3 : 1;
  if (hidden > (int64_t{1} << 24)) return ctx.Error("hidden_size must be <= 2^24, got %d", hidden);
  if (!w.IsStatic() || w.rank() != 3) return ctx.Error("W must have a static 3-D shape, got %s", w.ToString());
  auto ws = w.Sizes();
  if (quantized) {
    if (hidden <= 0 || ws[0] != dirs || ws[2] != gates * hidden) {
      return ctx.Error("W must be [%d, input, %d * hidden_size] with hidden_size %d, got %s", dirs, gates, hidden,
                       w.ToString());
    }
    std::swap(ws[1], ws[2]);  // as the float operators' [dirs, gates * hidden, input]
    if (auto s = CheckQuantizedWeights(ctx, dirs, gates * hidden); !s.ok()) return s;
  } else if (hidden <= 0 || ws[0] != dirs || ws[1] != gates * hidden) {
    return ctx.Error("W must be [%d, %d * hidden_size, input] with hidden_size %d, got %s", dirs, gates, hidden, w.ToString());
  }
  if (x.rank_known && x.rank() != 3) return ctx.Error("X must be 3-D, got %s", x.ToString());
  const bool batch_first = ctx.attrs().GetInt("layout", 0) != 0;
  Dim seq = x.rank_known ? x.dims[batch_first ? 1 : 0] : Dim{};
  Dim batch = x.rank_known ? x.dims[batch_first ? 0 : 1] : Dim{};
  if (x.rank_known && x.dims[2].known() && x.dims[2].value != ws[2]) {
    return ctx.Error("X must have %d features (W's input size), got %d", ws[2], x.dims[2].value);
  }
  // R, B, sequence_lens, initial_h, initial_c, P: the kernel reads them at
  // exactly these shapes.
  const Dim h = Dim::Known(hidden), d = Dim::Known(dirs);
  const std::vector<std::pair<int, std::vector<Dim>>> expected = {
      {2, quantized ? std::vector<Dim>{d, h, Dim::Known(gates * hidden)} : std::vector<Dim>{d, Dim::Known(gates * hidden), h}},
      {3, {d, Dim::Known(2 * gates * hidden)}},
      {4, {batch}},
      {5, batch_first ? std::vector<Dim>{batch, d, h} : std::vector<Dim>{d, batch, h}},
      {6, batch_first ? std::vector<Dim>{batch, d, h} : std::vector<Dim>{d, batch, h}},
      {7, {d, Dim::Known(3 * hidden)}},
  };
  for (const auto& [i, dims] : expected) {
    if (i >= ctx.num_inputs() || !ctx.has_input(i)) continue;
    if (i >= 6 && !lstm) {
      return ctx.Error("input %d ('%s') is only defined for LSTM", i, ctx.node().inputs[i]);
    }
    const Shape& got = ctx.shape(i);
    bool ok = !got.rank_known || got.rank() == static_cast<int64_t>(dims.size());
    for (size_t k = 0; ok && got.rank_known && k < dims.size(); ++k) {
      ok = !got.dims[k].known() || !dims[k].known() || got.dims[k].value == dims[k].value;
    }
    if (!ok) {
      return ctx.Error("input %d ('%s') must have shape %s, got %s", i, ctx.node().inputs[i],
                       Shape{true, dims}.ToString(), got.ToString());
    }
  }
  Shape y{true, batch_first ? std::vector<Dim>{batch, seq, Dim::Known(dirs), Dim::Known(hidden)}
                            : std::vector<Dim>{seq, Dim::Known(dirs), batch, Dim::Known(hidden)}};
  Shape state{true, batch_first ? std::vector<Dim>{batch, Dim::Known(dirs), Dim::Known(hidden)}
                                : std::vector<Dim>{Dim::Known(dirs), batch, Dim::Known(hidden)}};
  for (int i = 0; i < ctx.num_outputs(); ++i) ctx.output(i) = ValueType{ctx.dtype(0), i == 0 ? y : state};
  return absl::OkStatus();
}

}  // namespace kvant
