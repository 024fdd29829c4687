// Shape rules of Conv, ConvTranspose, pooling, BatchNormalization,
// LayerNormalization, InstanceNormalization, Gemm and MatMul, Kvant's fused
// convolution chains, and the window-geometry helpers their kernels share.
#include "ops/nn_ops.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ops/broadcast.h"
#include "ops/op_schema.h"

namespace kvant {

absl::StatusOr<WindowParams> ParseWindow(const AttributeMap& attrs, int64_t spatial,
                                         std::vector<int64_t> kernel, const std::string& label) {
  auto err = [&](const std::string& msg) {
    return absl::InvalidArgumentError(absl::StrCat("failed to read attributes of node ", label, ": ", msg));
  };
  WindowParams p;
  p.spatial = spatial;
  std::vector<int64_t> ks = attrs.GetInts("kernel_shape");
  if (!ks.empty()) {
    if (!kernel.empty() && ks != kernel) {
      return err(absl::StrFormat("kernel_shape must match the weights [%s], got [%s]",
                                 absl::StrJoin(kernel, ","), absl::StrJoin(ks, ",")));
    }
    kernel = ks;
  }
  if (static_cast<int64_t>(kernel.size()) != spatial) {
    return err(absl::StrFormat("kernel_shape must have %d entries, got %d", spatial, kernel.size()));
  }
  p.kernel = kernel;
  p.strides = attrs.GetInts("strides", std::vector<int64_t>(spatial, 1));
  p.dilations = attrs.GetInts("dilations", std::vector<int64_t>(spatial, 1));
  p.pads = attrs.GetInts("pads", std::vector<int64_t>(2 * spatial, 0));
  p.auto_pad = attrs.GetString("auto_pad", "NOTSET");
  p.group = attrs.GetInt("group", 1);
  p.ceil_mode = attrs.GetInt("ceil_mode", 0) != 0;
  p.count_include_pad = attrs.GetInt("count_include_pad", 0) != 0;
  if (static_cast<int64_t>(p.strides.size()) != spatial || static_cast<int64_t>(p.dilations.size()) != spatial ||
      static_cast<int64_t>(p.pads.size()) != 2 * spatial) {
    return err(absl::StrFormat("strides, dilations and pads must have %d, %d and %d entries, got %d, %d, %d",
                               spatial, spatial, 2 * spatial, p.strides.size(), p.dilations.size(),
                               p.pads.size()));
  }
  for (int64_t i = 0; i < spatial; ++i) {
    if (p.kernel[i] <= 0) return err(absl::StrFormat("kernel sizes must be > 0, got %d", p.kernel[i]));
    if (p.strides[i] <= 0) return err(absl::StrFormat("strides must be > 0, got %d", p.strides[i]));
    if (p.dilations[i] <= 0) return err(absl::StrFormat("dilations must be > 0, got %d", p.dilations[i]));
  }
  for (int64_t v : p.pads) {
    if (v < 0) return err(absl::StrFormat("pads must be >= 0, got %d", v));
  }
  if (p.group <= 0) return err(absl::StrFormat("group must be > 0, got %d", p.group));
  // Window arithmetic stays far from overflow: no real model comes near 2^31.
  constexpr int64_t kMax = int64_t{1} << 31;
  for (const auto* v : {&p.kernel, &p.strides, &p.dilations, &p.pads}) {
    for (int64_t x : *v) {
      if (x > kMax) return err(absl::StrFormat("kernel, strides, dilations and pads must be <= 2^31, got %d", x));
    }
  }
  if (p.group > kMax) return err(absl::StrFormat("group must be <= 2^31, got %d", p.group));
  if (p.auto_pad != "NOTSET" && p.auto_pad != "VALID" && p.auto_pad != "SAME_UPPER" &&
      p.auto_pad != "SAME_LOWER") {
    return err(absl::StrFormat("auto_pad must be NOTSET, VALID, SAME_UPPER or SAME_LOWER, got '%s'", p.auto_pad));
  }
  return p;
}

absl::StatusOr<std::vector<int64_t>> WindowOutputSizes(WindowParams& p, const std::vector<int64_t>& in,
                                                       const std::string& label) {
  std::vector<int64_t> out(p.spatial, -1);
  for (int64_t i = 0; i < p.spatial; ++i) {
    if (in[i] < 0) continue;
    int64_t span = p.dilations[i] * (p.kernel[i] - 1) + 1;
    if (p.auto_pad == "SAME_UPPER" || p.auto_pad == "SAME_LOWER") {
      out[i] = (in[i] + p.strides[i] - 1) / p.strides[i];
      int64_t total = std::max<int64_t>(0, (out[i] - 1) * p.strides[i] + span - in[i]);
      int64_t small = total / 2;
      p.pads[i] = p.auto_pad == "SAME_UPPER" ? small : total - small;
      p.pads[i + p.spatial] = total - p.pads[i];
      continue;
    }
    if (p.auto_pad == "VALID") p.pads[i] = p.pads[i + p.spatial] = 0;
    int64_t padded = in[i] + p.pads[i] + p.pads[i + p.spatial];
    if (padded < span) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to infer shapes of node %s: padded input size must be >= the kernel span %d, got %d",
          label, span, padded));
    }
    int64_t num = padded - span;
    out[i] = (p.ceil_mode ? (num + p.strides[i] - 1) / p.strides[i] : num / p.strides[i]) + 1;
    // A window must start inside the input or its begin padding.
    if (p.ceil_mode && (out[i] - 1) * p.strides[i] >= in[i] + p.pads[i]) --out[i];
  }
  return out;
}

namespace {

absl::Status InferWindowed(InferContext& ctx, int64_t out_channels, std::vector<int64_t> kernel, int x_index = 0,
                           DataType out_dtype = DataType::kUndefined) {
  const Shape& x = ctx.shape(x_index);
  if (out_dtype == DataType::kUndefined) out_dtype = ctx.dtype(x_index);
  if (!x.rank_known) {
    ctx.output(0) = ValueType{out_dtype, Shape::Unknown()};
    return absl::OkStatus();
  }
  if (x.rank() < 3) return ctx.Error("input must have rank >= 3 (N, C, spatial...), got %s", x.ToString());
  int64_t spatial = x.rank() - 2;
  auto p = ParseWindow(ctx.attrs(), spatial, std::move(kernel), ctx.node().Label());
  if (!p.ok()) return p.status();
  std::vector<int64_t> in(spatial);
  for (int64_t i = 0; i < spatial; ++i) in[i] = x.dims[2 + i].value;
  auto out = WindowOutputSizes(*p, in, ctx.node().Label());
  if (!out.ok()) return out.status();
  Shape y;
  y.rank_known = true;
  y.dims.push_back(x.dims[0]);
  y.dims.push_back(out_channels >= 0 ? Dim::Known(out_channels) : x.dims[1]);
  for (int64_t v : *out) y.dims.push_back(v >= 0 ? Dim::Known(v) : Dim{});
  ctx.output(0) = ValueType{out_dtype, y};
  return absl::OkStatus();
}

}  // namespace

absl::Status InferConvOf(InferContext& ctx, int x_index, int w_index, int bias_index, DataType out_dtype) {
  const Shape& w = ctx.shape(w_index);
  if (!w.IsStatic()) return ctx.Error("weights must have a static shape, got %s", w.ToString());
  const Shape& x = ctx.shape(x_index);
  if (x.rank_known && w.rank() != x.rank()) {
    return ctx.Error("weights must have the input's rank %d, got %s", x.rank(), w.ToString());
  }
  std::vector<int64_t> ws = w.Sizes();
  if (ws.size() < 3) return ctx.Error("weights must have rank >= 3, got %s", w.ToString());
  int64_t group = ctx.attrs().GetInt("group", 1);
  if (group <= 0 || ws[0] % group != 0) {
    return ctx.Error("group must be > 0 and divide the %d output channels, got %d", ws[0], group);
  }
  if (x.rank_known && x.dims[1].known() && x.dims[1].value != ws[1] * group) {
    return ctx.Error("input channels must be %d (weights %s x group %d), got %d", ws[1] * group,
                     w.ToString(), group, x.dims[1].value);
  }
  if (bias_index >= 0 && ctx.has_input(bias_index) && ctx.shape(bias_index).IsStatic() &&
      (ctx.shape(bias_index).rank() != 1 || ctx.shape(bias_index).dims[0].value != ws[0])) {
    return ctx.Error("bias must have shape [%d], got %s", ws[0], ctx.shape(bias_index).ToString());
  }
  return InferWindowed(ctx, ws[0], std::vector<int64_t>(ws.begin() + 2, ws.end()), x_index, out_dtype);
}

absl::Status InferConv(InferContext& ctx) { return InferConvOf(ctx, 0, 1, 2, DataType::kUndefined); }

absl::Status InferNhwcAsNchw(InferContext& ctx, absl::Status (*nchw_rule)(InferContext&), bool input_nchw) {
  auto permuted = [](const Shape& s, std::initializer_list<int> perm) {
    if (!s.rank_known || s.rank() != 4) return s;
    Shape p = s;
    int d = 0;
    for (int from : perm) p.dims[d++] = s.dims[from];
    return p;
  };
  ValueType x = ctx.input(0);
  if (!input_nchw) x.shape = permuted(x.shape, {0, 3, 1, 2});
  std::vector<const ValueType*> inputs;
  std::vector<const Tensor*> constants;
  for (int i = 0; i < ctx.num_inputs(); ++i) {
    inputs.push_back(i == 0 ? &x : (ctx.has_input(i) ? &ctx.input(i) : nullptr));
    constants.push_back(ctx.constant(i));
  }
  InferContext nchw(ctx.node(), ctx.opset(), inputs, constants);
  if (auto s = nchw_rule(nchw); !s.ok()) return s;
  ValueType y = nchw.output(0);
  y.shape = permuted(y.shape, {0, 2, 3, 1});
  ctx.output(0) = y;
  return absl::OkStatus();
}

absl::Status InferConvNhwc(InferContext& ctx) {
  // kvant_nchw_input: the input is NCHW, only the output NHWC.
  if (auto s = InferNhwcAsNchw(ctx, InferConv, ctx.attrs().GetInt("kvant_nchw_input", 0) != 0); !s.ok()) return s;
  // A fused residual (input 3) is added elementwise: the output's shape.
  if (ctx.has_input(3)) {
    const Shape& r = ctx.shape(3);
    const Shape& y = ctx.output(0).shape;
    bool same = !r.rank_known || !y.rank_known || r.rank() == y.rank();
    for (int64_t d = 0; same && r.rank_known && y.rank_known && d < r.rank(); ++d) {
      same = !r.dims[d].known() || !y.dims[d].known() || r.dims[d].value == y.dims[d].value;
    }
    if (!same) return ctx.Error("residual input must have the output's shape %s, got %s", y.ToString(), r.ToString());
  }
  return absl::OkStatus();
}

namespace {

// A chain of NHWC convolutions (graph/passes/fuse_conv_chain.cc): input 0
// is x, then each of the expand, depthwise and project stages has
// `operands` inputs (its convolution's after x; "" for an absent stage,
// whose weights input `weights` is then empty; a present stage has its
// first `required`), then for FP32 the project's residual. Each stage's
// rule sees its attributes without their prefix and the previous stage's
// output as x.
absl::Status InferChain(InferContext& ctx, const char* stage_op, int operands, int weights, int required,
                        absl::Status (*stage_rule)(InferContext&)) {
  const char* names[3] = {"expand", "depthwise", "project"};
  const char* prefixes[3] = {"expand:", "depthwise:", "project:"};
  ValueType current = ctx.input(0);
  for (int stage = 0; stage < 3; ++stage) {
    const int first = 1 + stage * operands;
    if (!ctx.has_input(first + weights - 1)) continue;
    for (int j = 0; j < required; ++j) {
      if (!ctx.has_input(first + j)) {
        return ctx.Error("the %s stage must have input %d (its %s's input %d), got none", names[stage],
                         first + j, stage_op, j + 1);
      }
    }
    Node conv;
    conv.name = absl::StrCat(ctx.node().name, " (", names[stage], ")");
    conv.op_type = stage_op;
    conv.domain = "kvant";
    conv.inputs = {"x"};
    std::vector<const ValueType*> inputs = {&current};
    std::vector<const Tensor*> constants = {nullptr};
    const bool residual = stage == 2 && operands == 2 && ctx.has_input(1 + 3 * operands);
    for (int j = 0; j < operands + (residual ? 1 : 0); ++j) {
      const int i = j < operands ? first + j : 1 + 3 * operands;
      conv.inputs.push_back(ctx.has_input(i) ? ctx.node().inputs[i] : "");
      inputs.push_back(ctx.has_input(i) ? &ctx.input(i) : nullptr);
      constants.push_back(ctx.constant(i));
    }
    conv.outputs = {"y"};
    conv.attrs = ctx.attrs().WithPrefix(prefixes[stage]);
    InferContext sub(conv, ctx.opset(), inputs, constants);
    if (auto s = stage_rule(sub); !s.ok()) return s;
    current = sub.output(0);
  }
  ctx.output(0) = current;
  return absl::OkStatus();
}

}  // namespace

absl::Status InferConvChainNhwc(InferContext& ctx) { return InferChain(ctx, "ConvNhwc", 2, 1, 1, InferConvNhwc); }

absl::Status InferQLinearConvChainNhwc(InferContext& ctx) {
  if (auto s = InferChain(ctx, "QLinearConvNhwc", 8, 3, 7, InferQLinearConvNhwc); !s.ok()) return s;
  if (!ctx.has_input(25)) return absl::OkStatus();
  // A residual QLinearAdd (input 25, its scales and zero points 26-31):
  // the sum has the chain's type and shape.
  const ValueType& y = ctx.output(0);
  for (int i = 25; i < 32; ++i) {
    if (!ctx.has_input(i)) return ctx.Error("a residual add needs inputs 25 to 31, got none at %d", i);
  }
  if (ctx.dtype(25) != y.dtype || ctx.dtype(27) != y.dtype || ctx.dtype(29) != y.dtype || ctx.dtype(31) != y.dtype) {
    return ctx.Error("the residual add's operand and zero points must have the chain's type %s",
                     DataTypeName(y.dtype));
  }
  const Shape& r = ctx.shape(25);
  if (r.IsStatic() && y.shape.IsStatic() && r.Sizes() != y.shape.Sizes()) {
    return ctx.Error("the residual must have the chain's output shape %s, got %s", y.shape.ToString(), r.ToString());
  }
  return absl::OkStatus();
}

absl::Status InferPool(InferContext& ctx) {
  if (ctx.attrs().GetInt("kvant_channels_last", 0) != 0) {
    // Kvant's NHWC MaxPool (graph/passes/layout_nhwc.cc): the NCHW rule on
    // the input viewed as NCHW, the output permuted back.
    ValueType x = ctx.input(0);
    const bool four_d = x.shape.rank_known && x.shape.rank() == 4;
    if (four_d) x.shape.dims = {x.shape.dims[0], x.shape.dims[3], x.shape.dims[1], x.shape.dims[2]};
    Node plain = ctx.node();
    plain.attrs.Erase("kvant_channels_last");
    InferContext nchw(plain, ctx.opset(), {&x}, {nullptr});
    if (auto s = InferPool(nchw); !s.ok()) return s;
    ValueType y = nchw.output(0);
    if (four_d && y.shape.rank_known) y.shape.dims = {y.shape.dims[0], y.shape.dims[2], y.shape.dims[3], y.shape.dims[1]};
    ctx.output(0) = y;
    return absl::OkStatus();
  }
  if (ctx.attrs().GetInts("kernel_shape").empty()) return ctx.Error("attribute kernel_shape is required");
  if (ctx.num_outputs() > 1 && !ctx.node().outputs[1].empty()) {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to infer shapes of node %s: the Indices output of MaxPool is not supported", ctx.node().Label()));
  }
  return InferWindowed(ctx, -1, {});
}

absl::Status InferGlobalPool(InferContext& ctx) {
  Shape y = ctx.shape(0);
  if (y.rank_known) {
    if (y.rank() < 3) return ctx.Error("input must have rank >= 3, got %s", y.ToString());
    // Spatial dimensions: 2.. in NCHW, 1..rank-2 with Kvant's kvant_channels_last (NHWC).
    const bool last = ctx.attrs().GetInt("kvant_channels_last", 0) != 0;
    for (int64_t i = last ? 1 : 2; i < y.rank() - (last ? 1 : 0); ++i) y.dims[i] = Dim::Known(1);
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferBatchNorm(InferContext& ctx) {
  if (ctx.attrs().GetInt("training_mode", 0) != 0 || ctx.num_outputs() > 1) {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to infer shapes of node %s: training mode (running statistics outputs) is not supported",
        ctx.node().Label()));
  }
  const Shape& x = ctx.shape(0);
  if (x.rank_known && x.rank() < 1) return ctx.Error("input must have rank >= 1, got %s", x.ToString());
  // Channels: dimension 1, or 1 for a 1-D input; the last dimension with
  // Kvant's kvant_channels_last (graph/passes/layout_nhwc.cc).
  const bool last = ctx.attrs().GetInt("kvant_channels_last", 0) != 0;
  const Dim channels = !x.rank_known ? Dim{} : last ? x.dims.back() : x.rank() >= 2 ? x.dims[1] : Dim::Known(1);
  for (int i = 1; i < 5; ++i) {
    const Shape& s = ctx.shape(i);
    if (s.rank_known && s.rank() != 1) return ctx.Error("input %d must be 1-D, got %s", i, s.ToString());
    if (channels.known() && s.IsStatic() && s.dims[0].value != channels.value) {
      return ctx.Error("input %d must have %d entries (channels), got %d", i, channels.value, s.dims[0].value);
    }
  }
  ctx.output(0) = ctx.input(0);
  return absl::OkStatus();
}

absl::Status InferGemm(InferContext& ctx) {
  if (auto s = ctx.ExpectRank(0, 2); !s.ok()) return s;
  if (auto s = ctx.ExpectRank(1, 2); !s.ok()) return s;
  const Shape& a = ctx.shape(0);
  const Shape& b = ctx.shape(1);
  bool ta = ctx.attrs().GetInt("transA", 0) != 0, tb = ctx.attrs().GetInt("transB", 0) != 0;
  Dim m = a.rank_known ? a.dims[ta ? 1 : 0] : Dim{};
  Dim ka = a.rank_known ? a.dims[ta ? 0 : 1] : Dim{};
  Dim kb = b.rank_known ? b.dims[tb ? 1 : 0] : Dim{};
  Dim n = b.rank_known ? b.dims[tb ? 0 : 1] : Dim{};
  if (ka.known() && kb.known() && ka.value != kb.value) {
    return ctx.Error("inner dimensions must match, got A %s%s and B %s%s", a.ToString(), ta ? "^T" : "",
                     b.ToString(), tb ? "^T" : "");
  }
  Shape y;
  y.rank_known = true;
  y.dims = {m, n};
  if (ctx.has_input(2) && !BroadcastShapes(ctx.shape(2), y)) {
    return ctx.Error("C %s must broadcast to [%s,%s]", ctx.shape(2).ToString(), m.ToString(), n.ToString());
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

absl::Status InferMatMul(InferContext& ctx) { return InferMatMulOf(ctx, 0, 1, ctx.dtype(0)); }

absl::Status InferMatMulOf(InferContext& ctx, int a_index, int b_index, DataType out_dtype) {
  Shape a = ctx.shape(a_index), b = ctx.shape(b_index);
  if (!a.rank_known || !b.rank_known) {
    ctx.output(0) = ValueType{out_dtype, Shape::Unknown()};
    return absl::OkStatus();
  }
  if (a.rank() == 0 || b.rank() == 0) return ctx.Error("inputs must not be scalars");
  bool a_vec = a.rank() == 1, b_vec = b.rank() == 1;
  if (a_vec) a.dims.insert(a.dims.begin(), Dim::Known(1));
  if (b_vec) b.dims.push_back(Dim::Known(1));
  Dim ka = a.dims.back(), kb = b.dims[b.rank() - 2];
  if (ka.known() && kb.known() && ka.value != kb.value) {
    return ctx.Error("inner dimensions must match, got %s and %s", ctx.shape(a_index).ToString(),
                     ctx.shape(b_index).ToString());
  }
  Shape ab{true, std::vector<Dim>(a.dims.begin(), a.dims.end() - 2)};
  Shape bb{true, std::vector<Dim>(b.dims.begin(), b.dims.end() - 2)};
  auto batch = BroadcastShapes(ab, bb);
  if (!batch) return ctx.Error("batch dimensions must broadcast, got %s and %s", a.ToString(), b.ToString());
  Shape y = *batch;
  if (!a_vec) y.dims.push_back(a.dims[a.rank() - 2]);
  if (!b_vec) y.dims.push_back(b.dims.back());
  ctx.output(0) = ValueType{out_dtype, y};
  return absl::OkStatus();
}


absl::Status InferLayerNorm(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  ctx.output(0) = ctx.input(0);
  if (!x.rank_known) return absl::OkStatus();
  auto axis = NormalizeAxis(ctx, ctx.attrs().GetInt("axis", -1), x.rank());
  if (!axis.ok()) return axis.status();
  // Scale and bias must broadcast to the normalized dimensions.
  Shape normalized{true, std::vector<Dim>(x.dims.begin() + *axis, x.dims.end())};
  for (int i = 1; i < 3 && i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) continue;
    auto b = BroadcastShapes(normalized, ctx.shape(i));
    if (!b || (normalized.IsStatic() && b->IsStatic() && b->Sizes() != normalized.Sizes())) {
      return ctx.Error("input %d %s must broadcast to the normalized dimensions %s", i, ctx.shape(i).ToString(),
                       normalized.ToString());
    }
  }
  Shape stats = x;
  for (int64_t d = *axis; d < x.rank(); ++d) stats.dims[d] = Dim::Known(1);
  for (int i = 1; i < ctx.num_outputs(); ++i) ctx.output(i) = ValueType{DataType::kFloat32, stats};
  return absl::OkStatus();
}

absl::Status InferInstanceNorm(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  if (x.rank_known && x.rank() < 3) return ctx.Error("input must have rank >= 3, got %s", x.ToString());
  for (int i = 1; i < 3; ++i) {  // scale and bias: one value per channel
    const Shape& s = ctx.shape(i);
    if (s.rank_known && s.rank() != 1) return ctx.Error("input %d must be 1-D, got %s", i, s.ToString());
    if (x.rank_known && x.dims[1].known() && s.IsStatic() && s.dims[0].value != x.dims[1].value) {
      return ctx.Error("input %d must have %d entries (channels), got %d", i, x.dims[1].value, s.dims[0].value);
    }
  }
  ctx.output(0) = ctx.input(0);
  return absl::OkStatus();
}


absl::StatusOr<ConvTransposeSizes> ConvTransposeOutput(const AttributeMap& attrs, const WindowParams& p,
                                                       const std::vector<int64_t>& in, const std::string& label) {
  const int64_t sp = p.spatial;
  std::vector<int64_t> out_pad = attrs.GetInts("output_padding", std::vector<int64_t>(sp, 0));
  std::vector<int64_t> out_shape = attrs.GetInts("output_shape");
  if (static_cast<int64_t>(out_pad.size()) != sp) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to read attributes of node %s: output_padding must have %d values, got %d", label, sp, out_pad.size()));
  }
  if (out_shape.size() > static_cast<size_t>(sp)) out_shape.erase(out_shape.begin(), out_shape.end() - sp);
  if (!out_shape.empty() && static_cast<int64_t>(out_shape.size()) != sp) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to read attributes of node %s: output_shape must have %d spatial values, got %d", label, sp,
        out_shape.size()));
  }
  ConvTransposeSizes r;
  r.out.resize(sp);
  r.pads = p.pads;
  for (int64_t i = 0; i < sp; ++i) {
    const int64_t span = p.dilations[i] * (p.kernel[i] - 1) + 1;
    const int64_t full = p.strides[i] * (in[i] - 1) + out_pad[i] + span;
    if (!out_shape.empty() || p.auto_pad == "SAME_UPPER" || p.auto_pad == "SAME_LOWER") {
      const int64_t target = !out_shape.empty() ? out_shape[i] : in[i] * p.strides[i];
      const int64_t total = full - target;
      const int64_t half = total / 2;
      const bool upper = p.auto_pad != "SAME_LOWER";
      r.pads[i] = upper ? half : total - half;
      r.pads[i + sp] = total - r.pads[i];
      r.out[i] = target;
    } else {
      if (p.auto_pad == "VALID") r.pads[i] = r.pads[i + sp] = 0;
      r.out[i] = full - r.pads[i] - r.pads[i + sp];
    }
    if (r.out[i] < 0) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to infer shapes of node %s: output size must be >= 0, got %d", label, r.out[i]));
    }
  }
  return r;
}

absl::Status InferConvTranspose(InferContext& ctx) {
  const Shape& x = ctx.shape(0);
  const Shape& w = ctx.shape(1);
  if (!w.IsStatic()) return ctx.Error("weights must have a static shape, got %s", w.ToString());
  std::vector<int64_t> ws = w.Sizes();
  if (ws.size() < 3) return ctx.Error("weights must have rank >= 3, got %s", w.ToString());
  const int64_t group = ctx.attrs().GetInt("group", 1);
  if (group <= 0 || ws[0] % group != 0) return ctx.Error("group must be > 0 and divide %d input channels, got %d", ws[0], group);
  const int64_t cout = ws[1] * group;
  if (!x.rank_known) {
    ctx.output(0) = ValueType{ctx.dtype(0), Shape::Unknown()};
    return absl::OkStatus();
  }
  if (x.rank() != static_cast<int64_t>(ws.size())) return ctx.Error("weights must have the input's rank %d, got %s", x.rank(), w.ToString());
  if (x.dims[1].known() && x.dims[1].value != ws[0]) return ctx.Error("input channels must be %d, got %d", ws[0], x.dims[1].value);
  const int64_t sp = x.rank() - 2;
  auto p = ParseWindow(ctx.attrs(), sp, std::vector<int64_t>(ws.begin() + 2, ws.end()), ctx.node().Label());
  if (!p.ok()) return p.status();
  Shape y;
  y.rank_known = true;
  y.dims = {x.dims[0], Dim::Known(cout)};
  std::vector<int64_t> in(sp);
  bool known = true;
  for (int64_t i = 0; i < sp; ++i) {
    in[i] = x.dims[2 + i].value;
    known &= x.dims[2 + i].known();
  }
  if (!known) {
    for (int64_t i = 0; i < sp; ++i) y.dims.push_back(Dim{});
  } else {
    auto r = ConvTransposeOutput(ctx.attrs(), *p, in, ctx.node().Label());
    if (!r.ok()) return r.status();
    for (int64_t v : r->out) y.dims.push_back(Dim::Known(v));
  }
  ctx.output(0) = ValueType{ctx.dtype(0), y};
  return absl::OkStatus();
}

}  // namespace kvant
