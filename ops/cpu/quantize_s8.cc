// Quantization operators on the INT8 kernels: QuantizeLinear and
// DequantizeLinear (per tensor and per axis), MatMulInteger and
// QLinearMatMul (the INT8 GEMM, numpy batch broadcasting), ConvInteger and
// QLinearConv (2-D, group 1 or depthwise, on the NHWC INT8 convolution with
// NCHW <-> NHWC conversion at its edges).
//
// Signed operands meet the u8 x s8 kernels by flipping the top bit: an s8
// activation a is the u8 a + 128 with zero point za + 128; a u8 weight b is
// the s8 b - 128 with zero point zb - 128.
#include <cmath>
#include <cstring>
#include <optional>

#include "absl/strings/str_format.h"
#include "ops/broadcast.h"
#include "ops/cpu/conv_s8.h"
#include "ops/cpu/gemm_s8.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

int64_t Product(absl::Span<const int64_t> s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

bool Signed(DataType t) { return t == DataType::kInt8; }

// Zero point i of an optional u8/s8/s32 input (0 when absent).
int32_t ZeroPointAt(const KernelContext& ctx, int input, int64_t i) {
  if (!ctx.has_input(input)) return 0;
  const TensorArg& t = ctx.input(input);
  const int64_t j = t.num_elements() == 1 ? 0 : i;
  switch (t.dtype) {
    case DataType::kUInt8: return t.as<const uint8_t>()[j];
    case DataType::kInt8: return t.as<const int8_t>()[j];
    case DataType::kInt32: return t.as<const int32_t>()[j];
    default: return 0;
  }
}

float ScaleAt(const KernelContext& ctx, int input, int64_t i) {
  const TensorArg& t = ctx.input(input);
  return t.as<const float>()[t.num_elements() == 1 ? 0 : i];
}

// Outer, axis and inner sizes of a per-axis parameter over x.
struct AxisSplit {
  int64_t outer = 1, axis = 1, inner = 1;
};
AxisSplit SplitAt(absl::Span<const int64_t> shape, int64_t axis, bool per_axis) {
  AxisSplit s;
  if (!per_axis) {
    s.inner = Product(shape);
    return s;
  }
  if (axis < 0) axis += static_cast<int64_t>(shape.size());
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < axis) s.outer *= shape[d];
    if (d == axis) s.axis = shape[d];
    if (d > axis) s.inner *= shape[d];
  }
  return s;
}

class QuantizeLinear final : public Kernel {
 public:
  explicit QuantizeLinear(int64_t axis) : axis_(axis) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    const bool per_axis = ctx.input(1).num_elements() > 1;
    const AxisSplit sp = SplitAt(x.shape, axis_, per_axis);
    const float lo = Signed(y.dtype) ? -128.f : 0.f, hi = Signed(y.dtype) ? 127.f : 255.f;
    const float* xs = x.as<const float>();
    for (int64_t o = 0; o < sp.outer; ++o) {
      for (int64_t a = 0; a < sp.axis; ++a) {
        const float scale = ScaleAt(ctx, 1, a);
        const float zp = static_cast<float>(ZeroPointAt(ctx, 2, a));
        const int64_t base = (o * sp.axis + a) * sp.inner;
        for (int64_t i = 0; i < sp.inner; ++i) {
          // round(x / scale) half to even, + zero point, saturated; NaN -> the zero point.
          float v = std::nearbyint(xs[base + i] / scale) + zp;
          v = v != v ? zp : std::min(std::max(v, lo), hi);
          if (Signed(y.dtype)) {
            y.as<int8_t>()[base + i] = static_cast<int8_t>(v);
          } else {
            y.as<uint8_t>()[base + i] = static_cast<uint8_t>(v);
          }
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
};

class DequantizeLinear final : public Kernel {
 public:
  explicit DequantizeLinear(int64_t axis) : axis_(axis) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    float* ys = ctx.output(0).as<float>();
    const bool per_axis = ctx.input(1).num_elements() > 1;
    const AxisSplit sp = SplitAt(x.shape, axis_, per_axis);
    for (int64_t o = 0; o < sp.outer; ++o) {
      for (int64_t a = 0; a < sp.axis; ++a) {
        const float scale = ScaleAt(ctx, 1, a);
        const float zp = static_cast<float>(ZeroPointAt(ctx, 2, a));
        const int64_t base = (o * sp.axis + a) * sp.inner;
        for (int64_t i = 0; i < sp.inner; ++i) {
          float v;
          switch (x.dtype) {
            case DataType::kUInt8: v = x.as<const uint8_t>()[base + i]; break;
            case DataType::kInt8: v = x.as<const int8_t>()[base + i]; break;
            default: v = static_cast<float>(x.as<const int32_t>()[base + i]); break;
          }
          ys[base + i] = (v - zp) * scale;
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
};

// u8 or s8 bytes as the u8 the GEMM takes (s8: top bit flipped).
void ToUnsigned(const void* src, DataType t, int64_t n, uint8_t* dst) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  if (!Signed(t)) {
    std::memcpy(dst, s, n);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = s[i] ^ 0x80;
  }
}

// u8 or s8 bytes as the s8 the GEMM takes (u8: top bit flipped).
std::vector<int8_t> ToSigned(const void* src, DataType t, int64_t n) {
  std::vector<int8_t> out(n);
  const uint8_t* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(Signed(t) ? s[i] : s[i] ^ 0x80);
  return out;
}

// MatMulInteger (s32 out) and QLinearMatMul (u8/s8 out).
class QMatMul final : public Kernel {
 public:
  QMatMul(const GemmUkernelInfoS8& uk, bool qlinear) : uk_(uk), qlinear_(qlinear) {}

  int b_input() const { return qlinear_ ? 3 : 1; }

  absl::Status Prepare(const KernelInit& init) {
    const Tensor* b = init.constant_inputs[b_input()];
    if (b != nullptr && b->rank() == 2) {
      const int64_t k = b->shape()[0], n = b->shape()[1];
      std::vector<int8_t> s = ToSigned(b->raw_data(), b->dtype(), k * n);
      packed_ = PackBS8(uk_, k, n, s.data(), n, 1);
      has_packed_ = true;
    }
    return absl::OkStatus();
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    const auto& a = s.inputs[0];
    const auto& b = s.inputs[b_input()];
    const int64_t k = a.back(), m = a.size() > 1 ? a[a.size() - 2] : 1, n = b.size() > 1 ? b.back() : 1;
    return GemmScratchBytesS8(uk_, m, n, k, s.num_threads) + (m * k + 63) / 64 * 64 + 8 * n + 128;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& a = ctx.input(0);
    const TensorArg& b = ctx.input(b_input());
    const TensorArg& y = ctx.output(0);
    const int a_zp = 2, b_zp = qlinear_ ? 5 : 3;
    // Matrix dimensions (1-D operands as a row / a column).
    const int64_t k = a.shape.back();
    const int64_t m = a.rank() > 1 ? a.shape[a.rank() - 2] : 1;
    const int64_t n = b.rank() > 1 ? b.shape.back() : 1;
    std::vector<int64_t> a_batch(a.shape.begin(), a.shape.end() - std::min<int64_t>(a.rank(), 2));
    std::vector<int64_t> b_batch(b.shape.begin(), b.shape.end() - std::min<int64_t>(b.rank(), 2));
    const int64_t batches = y.num_elements() / std::max<int64_t>(1, m * n);
    std::vector<int64_t> y_batch(y.shape.begin(), y.shape.begin() + (y.rank() - (a.rank() > 1) - (b.rank() > 1)));
    char* cursor = static_cast<char*>(ctx.scratch);
    uint8_t* a_u8 = reinterpret_cast<uint8_t*>(cursor);
    cursor += (m * k + 63) / 64 * 64;
    int32_t* zb = reinterpret_cast<int32_t*>(cursor);
    float* scale = reinterpret_cast<float*>(cursor + 4 * n);
    cursor += (8 * n + 63) / 64 * 64;
    // Zero points (flipped for the sign conversions) and output scales.
    const int32_t za = ZeroPointAt(ctx, a_zp, 0) + (Signed(a.dtype) ? 128 : 0);
    bool any_zb = false;
    for (int64_t j = 0; j < n; ++j) {
      zb[j] = ZeroPointAt(ctx, b_zp, j) - (Signed(b.dtype) ? 0 : 128);
      any_zb |= zb[j] != 0;
      if (qlinear_) scale[j] = ScaleAt(ctx, 1, 0) * ScaleAt(ctx, 4, j) / ScaleAt(ctx, 6, 0);
    }
    GemmArgsS8 g;
    g.m = m;
    g.lda = k;
    g.a_zero_point = za;
    g.b_zero_points = any_zb ? zb : nullptr;
    g.ldc = n;
    if (qlinear_) {
      const bool s8 = Signed(y.dtype);
      g.out.kind = s8 ? GemmS8Output::Kind::kS8 : GemmS8Output::Kind::kU8;
      g.out.scale = scale;
      g.out.zero_point = ZeroPointAt(ctx, 7, 0);
      g.out.lo = s8 ? -128 : 0;
      g.out.hi = s8 ? 127 : 255;
    } else {
      g.out.kind = GemmS8Output::Kind::kS32;
    }
    const size_t esize = qlinear_ ? 1 : 4;
    std::vector<int64_t> idx(y_batch.size(), 0);
    for (int64_t bi = 0; bi < batches; ++bi) {
      // Offsets of this batch entry in A and B (broadcast dimensions repeat).
      int64_t ao = 0, bo = 0, astride = 1, bstride = 1;
      for (int64_t d = static_cast<int64_t>(y_batch.size()) - 1, rem = bi; d >= 0; --d) {
        idx[d] = rem % y_batch[d];
        rem /= y_batch[d];
      }
      for (int64_t d = static_cast<int64_t>(a_batch.size()) - 1; d >= 0; --d) {
        const int64_t yd = d + static_cast<int64_t>(y_batch.size() - a_batch.size());
        if (a_batch[d] != 1) ao += idx[yd] * astride;
        astride *= a_batch[d];
      }
      for (int64_t d = static_cast<int64_t>(b_batch.size()) - 1; d >= 0; --d) {
        const int64_t yd = d + static_cast<int64_t>(y_batch.size() - b_batch.size());
        if (b_batch[d] != 1) bo += idx[yd] * bstride;
        bstride *= b_batch[d];
      }
      ToUnsigned(static_cast<const char*>(a.data) + ao * m * k, a.dtype, m * k, a_u8);
      PackedBS8 local;
      if (!has_packed_) {
        std::vector<int8_t> s = ToSigned(static_cast<const char*>(b.data) + bo * k * n, b.dtype, k * n);
        local = PackBS8(uk_, k, n, s.data(), n, 1);
      }
      g.a = a_u8;
      g.b = has_packed_ ? &packed_ : &local;
      g.c = static_cast<char*>(y.data) + bi * m * n * esize;
      RunGemmS8(uk_, g, cursor, ctx.pool);
    }
    return absl::OkStatus();
  }

  std::string Describe() const override { return uk_.name; }
  int64_t PackedBytes() const override { return has_packed_ ? packed_.bytes() : 0; }

 private:
  const GemmUkernelInfoS8& uk_;
  bool qlinear_;
  PackedBS8 packed_;
  bool has_packed_ = false;
};

// ConvInteger (s32 out) and QLinearConv (u8/s8 out), 2-D, NCHW.
class QConv final : public Kernel {
 public:
  QConv(bool qlinear, std::string label) : qlinear_(qlinear), label_(std::move(label)) {}

  int w_input() const { return qlinear_ ? 3 : 1; }

  absl::Status Prepare(const KernelInit& init) {
    const Tensor* w = init.constant_inputs[w_input()];
    const Shape& wshape = init.input_shapes[w_input()];
    if (!wshape.IsStatic() || wshape.rank() != 4) {
      return absl::UnimplementedError(absl::StrFormat(
          "failed to compile node %s: INT8 convolution needs 4-D weights of a static shape (2-D convolution)", label_));
    }
    const std::vector<int64_t> ws = wshape.Sizes();
    const int64_t group = init.attrs->GetInt("group", 1);
    shape_.cout = ws[0];
    shape_.cin = ws[1] * group;
    shape_.kh = ws[2];
    shape_.kw = ws[3];
    shape_.depthwise = group > 1;
    if (group > 1 && !(ws[1] == 1 && group == ws[0])) {
      return absl::UnimplementedError(absl::StrFormat(
          "failed to compile node %s: INT8 grouped convolution other than depthwise (group %d)", label_, group));
    }
    attrs_ = init.attrs;
    cpu_ = init.cpu;
    const int zp_input = qlinear_ ? 5 : 3;
    const bool has_zp = zp_input < static_cast<int>(init.input_types.size()) &&
                        init.input_types[zp_input] != DataType::kUndefined;
    if (w == nullptr || (has_zp && init.constant_inputs[zp_input] == nullptr)) {
      // Weights (or their zero points) computed at run time: packed per call;
      // a zero-weight instance sizes the scratch.
      std::vector<int8_t> zeros(Product(ws), 0);
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

  struct PreparedWeights {
    std::unique_ptr<ConvS8> conv;
    std::vector<int32_t> zero_points;  // after the sign conversion; empty when all 0
  };

  // Packs the weights (u8 flipped to s8) and converts their zero points.
  absl::StatusOr<PreparedWeights> Weights(const void* w, DataType wtype, const Tensor* wzp) const {
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
    if (any && shape_.depthwise) {
      return absl::UnimplementedError(
          absl::StrFormat("failed to run node %s: INT8 depthwise convolution with weight zero points", label_));
    }
    const int64_t count = shape_.cout * (shape_.depthwise ? 1 : shape_.cin) * shape_.kh * shape_.kw;
    std::vector<int8_t> s = ToSigned(w, wtype, count);
    auto conv = ConvS8::Create(shape_, s.data(), cpu_);
    if (!conv.ok()) {
      return absl::Status(conv.status().code(), absl::StrFormat("failed to prepare node %s: %s", label_,
                                                                conv.status().message()));
    }
    p.conv = *std::move(conv);
    return p;
  }

  // The run's shape: batch and image from x, geometry from the attributes.
  absl::StatusOr<ConvS8Shape> ShapeFor(absl::Span<const int64_t> x) const {
    ConvS8Shape s = shape_;
    s.n = x[0];
    s.h = x[2];
    s.w = x[3];
    auto p = ParseWindow(*attrs_, 2, {s.kh, s.kw}, label_);
    if (!p.ok()) return p.status();
    auto out = WindowOutputSizes(*p, {s.h, s.w}, label_);
    if (!out.ok()) return out.status();
    s.sh = p->strides[0];
    s.sw = p->strides[1];
    s.dh = p->dilations[0];
    s.dw = p->dilations[1];
    s.pad_t = p->pads[0];
    s.pad_l = p->pads[1];
    s.pad_b = p->pads[2];
    s.pad_r = p->pads[3];
    return s;
  }

  size_t ScratchBytes(const KernelShapes& ks) const override {
    auto s = ShapeFor(ks.inputs[0]);
    if (!s.ok()) return 0;
    const int64_t in = s->n * s->h * s->w * s->cin, out = s->n * s->out_h() * s->out_w() * s->cout;
    return conv_->ScratchBytes(*s, ks.num_threads) + (in + 63) / 64 * 64 + (out * 4 + 63) / 64 * 64 +
           8 * s->cout + 192;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    auto shape = ShapeFor(x.shape);
    if (!shape.ok()) return shape.status();
    const ConvS8Shape& s = *shape;
    const int64_t hw = s.h * s.w, ohw = s.out_h() * s.out_w();
    char* cursor = static_cast<char*>(ctx.scratch);
    auto take = [&](int64_t bytes) {
      char* p = cursor;
      cursor += (bytes + 63) / 64 * 64;
      return p;
    };
    uint8_t* xn = reinterpret_cast<uint8_t*>(take(s.n * hw * s.cin));
    const size_t esize = qlinear_ ? 1 : 4;
    char* yn = take(s.n * ohw * s.cout * esize);
    float* scale = reinterpret_cast<float*>(take(4 * s.cout));
    const int32_t* bias = qlinear_ && ctx.has_input(8) ? ctx.input(8).as<const int32_t>() : nullptr;
    // NCHW -> NHWC, as u8.
    const uint8_t flip = Signed(x.dtype) ? 0x80 : 0;
    const uint8_t* xs = x.as<const uint8_t>();
    for (int64_t b = 0; b < s.n; ++b) {
      for (int64_t c = 0; c < s.cin; ++c) {
        const uint8_t* src = xs + (b * s.cin + c) * hw;
        for (int64_t p = 0; p < hw; ++p) xn[(b * hw + p) * s.cin + c] = src[p] ^ flip;
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
    // NHWC -> NCHW.
    for (int64_t b = 0; b < s.n; ++b) {
      for (int64_t m = 0; m < s.cout; ++m) {
        char* dst = static_cast<char*>(y.data) + (b * s.cout + m) * ohw * esize;
        for (int64_t p = 0; p < ohw; ++p) std::memcpy(dst + p * esize, yn + ((b * ohw + p) * s.cout + m) * esize, esize);
      }
    }
    return absl::OkStatus();
  }

  std::string Describe() const override { return conv_->kernel_name(); }
  int64_t PackedBytes() const override { return conv_->PackedBytes(); }

 private:
  bool qlinear_;
  std::string label_;
  ConvS8Shape shape_;
  std::unique_ptr<ConvS8> conv_;
  const AttributeMap* attrs_ = nullptr;
  CpuFeatures cpu_ = 0;
  std::vector<int32_t> w_zp_;
  bool weights_constant_ = false;
};

int64_t AxisAttr(const KernelInit& init) { return init.attrs->GetInt("axis", 1); }

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateQuantizeLinear(const KernelInit& init) {
  return std::make_unique<QuantizeLinear>(AxisAttr(init));
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateDequantizeLinear(const KernelInit& init) {
  return std::make_unique<DequantizeLinear>(AxisAttr(init));
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQMatMul(const KernelInit& init) {
  auto k = std::make_unique<QMatMul>(SelectGemmUkernelS8(init.cpu), init.op == "QLinearMatMul");
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQConv(const KernelInit& init) {
  auto k = std::make_unique<QConv>(init.op == "QLinearConv", init.node_label);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
