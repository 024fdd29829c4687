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
  Shape y{true, batch_first ? std::vector<Dim>{batch, seq, Dim::Known(dirs), Dim::Known(hidden)}
                            : std::vector<Dim>{seq, Dim::Known(dirs), batch, Dim::Known(hidden)}};
  Shape state{true, batch_first ? std::vector<Dim>{batch, Dim::Known(dirs), Dim::Known(hidden)}
                                : std::vector<Dim>{Dim::Known(dirs), batch, Dim::Known(hidden)}};
  for (int i = 0; i < ctx.num_outputs(); ++i) ctx.output(i) = ValueType{ctx.dtype(0), i == 0 ? y : state};
  return absl::OkStatus();
}

}  // namespace kvant
