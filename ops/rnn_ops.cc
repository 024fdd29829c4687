// Shape rules of the recurrent operators RNN, GRU and LSTM.
#include "absl/strings/str_format.h"
#include "ops/op_schema.h"

namespace kvant {

absl::Status InferRecurrent(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  const Shape& w = ctx.shape(1);
  const int64_t hidden = ctx.attrs().GetInt("hidden_size", -1);
  const std::string dir = ctx.attrs().GetString("direction", "forward");
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional") {
    return ctx.Error("direction must be forward, reverse or bidirectional, got '%s'", dir);
  }
  const int64_t dirs = dir == "bidirectional" ? 2 : 1;
  const int64_t gates = ctx.node().op_type == "LSTM" ? 4 : ctx.node().op_type == "GRU" ? 3 : 1;
  if (hidden > (int64_t{1} << 24)) return ctx.Error("hidden_size must be <= 2^24, got %d", hidden);
  if (!w.IsStatic() || w.rank() != 3) return ctx.Error("W must have a static 3-D shape, got %s", w.ToString());
  const auto ws = w.Sizes();
  if (hidden <= 0 || ws[0] != dirs || ws[1] != gates * hidden) {
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
      {2, {d, Dim::Known(gates * hidden), h}},
      {3, {d, Dim::Known(2 * gates * hidden)}},
      {4, {batch}},
      {5, batch_first ? std::vector<Dim>{batch, d, h} : std::vector<Dim>{d, batch, h}},
      {6, batch_first ? std::vector<Dim>{batch, d, h} : std::vector<Dim>{d, batch, h}},
      {7, {d, Dim::Known(3 * hidden)}},
  };
  for (const auto& [i, dims] : expected) {
    if (i >= ctx.num_inputs() || !ctx.has_input(i)) continue;
    if (i >= 6 && ctx.node().op_type != "LSTM") continue;
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
