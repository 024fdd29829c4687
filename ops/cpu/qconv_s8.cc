// ConvInteger, QLinearConv and kvant.QLinearConvNhwc (qconv_s8.h).
//
// Signed operands meet the u8 x s8 kernels by flipping the top bit: an s8
// activation a is the u8 a + 128 with zero point za + 128; a u8 weight b is
// the s8 b - 128 with zero point zb - 128.
#include "ops/cpu/qconv_s8.h"

#include <optional>

#include "absl/strings/str_format.h"
#include "ops/cpu/quantize_common.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

// Strides, dilations and padding of 2-D window parameters; a 1-D window
// is the row of an image one row high.
void SetWindow(const WindowParams& p, ConvS8Shape& s) {
  if (p.spatial == 1) {
    s.sh = s.dh = 1;
    s.pad_t = s.pad_b = 0;
    s.sw = p.strides[0];
    s.dw = p.dilations[0];
    s.pad_l = p.pads[0];
    s.pad_r = p.pads[1];
    return;
  }
  s.sh = p.strides[0];
  s.sw = p.strides[1];
  s.dh = p.dilations[0];
  s.dw = p.dilations[1];
  s.pad_t = p.pads[0];
  s.pad_l = p.pads[1];
  s.pad_b = p.pads[2];
  s.pad_r = p.pads[3];
}

}  // namespace

absl::Status QConv::Prepare(const KernelInit& init) {
  const Tensor* w = init.constant_inputs[w_input()];
  const Shape& wshape = init.input_shapes[w_input()];
  if (!wshape.IsStatic() || (wshape.rank() != 4 && (wshape.rank() != 3 || nhwc_))) {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to compile node %s: INT8 convolution needs 3-D or 4-D weights of a static shape (1-D or 2-D "
        "convolution), got %s", label_, wshape.ToString()));
  }
  const std::vector<int64_t> ws = wshape.Sizes();
  const int64_t group = init.attrs->GetInt("group", 1);
  spatial_ = wshape.rank() - 2;
  shape_.cout = ws[0];
  shape_.cin = ws[1] * group;
  shape_.kh = spatial_ == 1 ? 1 : ws[2];
  shape_.kw = ws.back();
  shape_.depthwise = group > 1;
  if (group > 1 && !(ws[1] == 1 && group == ws[0])) {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to compile node %s: INT8 grouped convolution other than depthwise (group %d)", label_, group));
  }
  attrs_ = init.attrs;
  cpu_ = init.cpu;
  // Strides and explicit padding as far as the attributes tell (auto_pad
  // depends on the image; ShapeFor has the run's), for kernel_name().
  if (auto p = ParseWindow(*attrs_, spatial_, Kernel(), label_); p.ok() && p->auto_pad == "NOTSET") {
    SetWindow(*p, shape_);
    fixed_window_ = true;
  }
  const int zp_input = qlinear_ ? 5 : 3;
  const bool has_zp = zp_input < static_cast<int>(init.input_types.size()) &&
                      init.input_types[zp_input] != DataType::kUndefined;
  if (w == nullptr || (has_zp && init.constant_inputs[zp_input] == nullptr)) {
    // Weights (or their zero points) computed at run time: packed per call;
    // a zero-weight instance sizes the scratch.
    int64_t count = 1;
    for (int64_t d : ws) count *= d;
    std::vector<int8_t> zeros(count, 0);
    auto conv = ConvS8::Create(shape_, zeros.data(), cpu_);
    if (!conv.ok()) return conv.status();
    conv_ = *std::move(conv);
    return absl::OkStatus();
  }
  auto prepared = Weights(w->raw_data(), w->dtype(), has_zp ? init.constant_inputs[zp_input] : nullptr);
  if (!prepared.ok()) return prepared.status();
  conv_ = std::move(prepared->conv);
  w_zp_ = std::move(prepared->zero_points);
  weights_constant_ = true;
  return absl::OkStatus();
}

absl::StatusOr<QConv::PreparedWeights> QConv::Weights(const void* w, DataType wtype, const Tensor* wzp) const {
  PreparedWeights p;
  p.zero_points.assign(shape_.cout, 0);
  bool any = false;
  for (int64_t m = 0; m < shape_.cout; ++m) {
    int32_t z = 0;
    if (wzp != nullptr) {
      const int64_t j = wzp->num_elements() == 1 ? 0 : m;
      z = wzp->dtype() == DataType::kInt8 ? wzp->data<int8_t>()[j] : wzp->data<uint8_t>()[j];
    }
    p.zero_points[m] = z - (Signed(wtype) ? 0 : 128);
    any |= p.zero_points[m] != 0;
  }
  if (!any) p.zero_points.clear();
  const int64_t count = shape_.cout * (shape_.depthwise ? 1 : shape_.cin) * shape_.kh * shape_.kw;
  std::vector<int8_t> s = ToSigned(w, wtype, count);
  if (any && shape_.depthwise) {
    // w - zw: when every value fits s8 (ONNX Runtime's asymmetric weights
    // have zero points near the middle), those are the weights and the
    // zero points vanish, exactly; else the kernel subtracts zw times the
    // window sums of x.
    const int64_t taps = shape_.kh * shape_.kw;
    bool fits = true;
    for (int64_t m = 0; m < shape_.cout; ++m)
      for (int64_t t = 0; t < taps; ++t) {
        const int v = s[m * taps + t] - p.zero_points[m];
        fits &= v >= -128 && v <= 127;
      }
    if (fits) {
      for (int64_t m = 0; m < shape_.cout; ++m)
        for (int64_t t = 0; t < taps; ++t) s[m * taps + t] = static_cast<int8_t>(s[m * taps + t] - p.zero_points[m]);
      p.zero_points.clear();
    }
  }
  auto conv = ConvS8::Create(shape_, s.data(), cpu_);
  if (!conv.ok()) {
    return absl::Status(conv.status().code(), absl::StrFormat("failed to prepare node %s: %s", label_,
                                                              conv.status().message()));
  }
  p.conv = *std::move(conv);
  return p;
}

absl::StatusOr<ConvS8Shape> QConv::ShapeFor(absl::Span<const int64_t> x) const {
  ConvS8Shape s = shape_;
  s.n = x[0];
  s.h = spatial_ == 1 ? 1 : x[nhwc_ ? 1 : 2];
  s.w = spatial_ == 1 ? x[2] : x[nhwc_ ? 2 : 3];
  // Explicit padding (the attributes parsed once, in Prepare): the window
  // is shape_'s whenever the padded image holds the kernel (every chain
  // band asks, so no attribute lookups here); otherwise the full parse
  // below names the error.
  if (fixed_window_ && s.h + s.pad_t + s.pad_b >= s.dh * (s.kh - 1) + 1 &&
      s.w + s.pad_l + s.pad_r >= s.dw * (s.kw - 1) + 1) {
    return s;
  }
  auto p = ParseWindow(*attrs_, spatial_, Kernel(), label_);
  if (!p.ok()) return p.status();
  auto out = WindowOutputSizes(*p, spatial_ == 1 ? std::vector<int64_t>{s.w} : std::vector<int64_t>{s.h, s.w}, label_);
  if (!out.ok()) return out.status();
  SetWindow(*p, s);
  return s;
}

size_t QConv::ScratchBytes(const KernelShapes& ks) const {
auto s = ShapeFor(ks.inputs[0]);
return s.ok() ? ScratchBytesFor(*s, ks.num_threads) : 0;
}

size_t QConv::ScratchBytesFor(const ConvS8Shape& s, int threads) const {
const int64_t in = s.n * s.h * s.w * s.cin, out = s.n * s.out_h() * s.out_w() * s.cout;
return conv_->ScratchBytes(s, threads) + (in + 63) / 64 * 64 + (out * 4 + 63) / 64 * 64 + 8 * s.cout + 192;
}

absl::Status QConv::Run(const KernelContext& ctx) const {
auto shape = ShapeFor(ctx.input(0).shape);
if (!shape.ok()) return shape.status();
return RunShape(ctx, *shape);
}

absl::Status QConv::RunShape(const KernelContext& ctx, const ConvS8Shape& s) const {
  const TensorArg& x = ctx.input(0);
  const TensorArg& y = ctx.output(0);
  const int64_t hw = s.h * s.w, ohw = s.out_h() * s.out_w();
  char* cursor = static_cast<char*>(ctx.scratch);
  auto take = [&](int64_t bytes) {
    char* p = cursor;
    cursor += (bytes + 63) / 64 * 64;
    return p;
  };
  uint8_t* xn = reinterpret_cast<uint8_t*>(take(s.n * hw * s.cin));
  const size_t esize = qlinear_ ? 1 : 4;
  // NHWC form: the kernel writes y in place; else an NHWC buffer converted below.
  char* yn = nhwc_ ? static_cast<char*>(y.data) : take(s.n * ohw * s.cout * esize);
  float* scale = reinterpret_cast<float*>(take(4 * s.cout));
  const int32_t* bias = qlinear_ && ctx.has_input(8) ? ctx.input(8).as<const int32_t>() : nullptr;
  // To NHWC u8 (s8 inputs: top bit flipped); an NHWC u8 input is read in place.
  const uint8_t flip = Signed(x.dtype) ? 0x80 : 0;
  const uint8_t* xs = x.as<const uint8_t>();
  if (nhwc_ && flip == 0) {
    xn = const_cast<uint8_t*>(xs);  // the kernel only reads it
  } else if (nhwc_) {
    const int64_t count = s.n * hw * s.cin;
    for (int64_t i = 0; i < count; ++i) xn[i] = xs[i] ^ flip;
  } else {
    for (int64_t b = 0; b < s.n; ++b) {
      for (int64_t c = 0; c < s.cin; ++c) {
        const uint8_t* src = xs + (b * s.cin + c) * hw;
        for (int64_t p = 0; p < hw; ++p) xn[(b * hw + p) * s.cin + c] = src[p] ^ flip;
      }
    }
  }
  const int x_zp = 2;
  const int32_t zx = ZeroPointAt(ctx, x_zp, 0) + (Signed(x.dtype) ? 128 : 0);
  GemmS8Output out;
  if (qlinear_) {
    const bool s8 = Signed(y.dtype);
    for (int64_t m = 0; m < s.cout; ++m) scale[m] = ScaleAt(ctx, 1, 0) * ScaleAt(ctx, 4, m) / ScaleAt(ctx, 6, 0);
    out.kind = s8 ? GemmS8Output::Kind::kS8 : GemmS8Output::Kind::kU8;
    out.scale = scale;
    out.zero_point = ZeroPointAt(ctx, 7, 0);
    out.lo = s8 ? -128 : 0;
    out.hi = s8 ? 127 : 255;
    ApplyClipRange(*attrs_, ScaleAt(ctx, 6, 0), out.zero_point, &out.lo, &out.hi);
  } else {
    out.kind = GemmS8Output::Kind::kS32;
  }
  if (weights_constant_) {
    conv_->Run(s, xn, zx, bias, w_zp_.empty() ? nullptr : w_zp_.data(), out, yn, cursor, ctx.pool);
  } else {
    const int zp_input = qlinear_ ? 5 : 3;
    std::optional<Tensor> wzp;
    if (ctx.has_input(zp_input)) {
      const TensorArg& z = ctx.input(zp_input);
      wzp = Tensor::Wrap(z.dtype, std::vector<int64_t>(z.shape.begin(), z.shape.end()), z.data);
    }
    auto w = Weights(ctx.input(w_input()).data, ctx.input(w_input()).dtype, wzp ? &*wzp : nullptr);
    if (!w.ok()) return w.status();
    w->conv->Run(s, xn, zx, bias, w->zero_points.empty() ? nullptr : w->zero_points.data(), out, yn, cursor,
                 ctx.pool);
  }
  if (nhwc_) return absl::OkStatus();
  // NHWC -> NCHW.
  auto to_nchw = [&](auto* dst, const auto* src) {
    for (int64_t b = 0; b < s.n; ++b)
      for (int64_t m = 0; m < s.cout; ++m)
        for (int64_t p = 0; p < ohw; ++p) dst[(b * s.cout + m) * ohw + p] = src[(b * ohw + p) * s.cout + m];
  };
  if (esize == 1) {
    to_nchw(static_cast<uint8_t*>(y.data), reinterpret_cast<const uint8_t*>(yn));
  } else {
    to_nchw(static_cast<int32_t*>(y.data), reinterpret_cast<const int32_t*>(yn));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQConv(const KernelInit& init) {
  auto k = std::make_unique<QConv>(init.op != "ConvInteger", init.op == "QLinearConvNhwc", init.node_label);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
