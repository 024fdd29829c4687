// FP32 2-D convolution in NHWC (kvant.ConvNhwc, made by
// graph/passes/layout_nhwc.cc from Conv with constant weights): channels
// innermost, as XNNPACK and TFLite keep them, so a pixel's channels are
// one contiguous GEMM row and chains of convolutions need no transposes.
//  - group 1: Y[position][m] = sum over k of A[position][k] * W^T[k][m], K
//    in (kh, kw, c) order, W^T packed once at load. A 1x1, stride-1,
//    unpadded convolution reads X itself as A; others fill A a tile of
//    positions at a time (each tap a run of C channels, zeros in the
//    padding).
//  - depthwise: channels in the vector lanes (depthwise_f32_nhwc_avx512.cc),
//    weights re-laid as [tap][c] at load; a portable loop elsewhere.
//  - a fourth input (group 1, FP32; graph/passes/fuse_conv_residual.cc) is
//    a residual the GEMM adds in its epilogue, before the activation.
//  - kvant_nchw_input = 1 (group 1; graph/passes/layout_nhwc.cc sets it on
//    a chain's first convolution over 1-4 channels): the input is NCHW. A
//    tile of positions is gathered column-major (one row of 16 positions
//    per tap, as NCHW im2col does; K in the weights' (c, kh, kw) order) and
//    the GEMM reads it transposed, so a network's RGB input needs no
//    transpose. The output is NHWC; the product stays FP32 (the BF16 GEMM
//    takes row-major A only).
// With kvant_precision = "bf16" (graph/passes/assign_precision.cc) and BF16
// arithmetic, the group-1 product runs on the BF16 GEMM (weights packed as
// bf16, activations rounded as they are packed, FP32 accumulation); with
// "fp16" its weights are stored as FP16 and widened per panel (gemm_f32.h).
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ops/cpu/conv_product_f32.h"
#include "ops/cpu/depthwise_f32.h"
#include "ops/cpu/im2col_f32.h"

namespace kvant::cpu {
namespace {

int64_t Align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

// A tile of A rows at most this many bytes (kept in L2 for the GEMM).
constexpr int64_t kTileBytes = 512 * 1024;

class ConvNhwcF32 final : public Kernel {
 public:
  ConvNhwcF32(std::string label, const AttributeMap& attrs, CpuFeatures cpu)
      : label_(std::move(label)), attrs_(attrs), act_(ReadFusedActivation(attrs)),
        avx512_((cpu & kIsaAvx512) == kIsaAvx512), nchw_input_(attrs.GetInt("kvant_nchw_input", 0) != 0) {}

  absl::Status Prepare(const KernelInit& init) {
    const Tensor* w = init.constant_inputs.size() > 1 ? init.constant_inputs[1] : nullptr;
    if (w == nullptr || w->rank() != 4) {
      return absl::InternalError(absl::StrFormat("failed to prepare node %s: ConvNhwc needs constant 4-D weights",
                                                 label_));
    }
    const int64_t m = w->shape()[0], cin_g = w->shape()[1], kh = w->shape()[2], kw = w->shape()[3];
    const int64_t group = attrs_.GetInt("group", 1), taps = kh * kw;
    residual_ = init.input_types.size() > 3 && init.input_types[3] != DataType::kUndefined;
    const float* ws = w->data<float>();
    if (group > 1) {
      if (cin_g != 1 || m != group || nchw_input_) {
        return absl::InternalError(absl::StrFormat(
            "failed to prepare node %s: ConvNhwc takes group 1 or depthwise (with an NHWC input), got group %d",
            label_, group));
      }
      depthwise_ = true;
      w_tc_.resize(taps * m);
      for (int64_t ch = 0; ch < m; ++ch) {
        for (int64_t t = 0; t < taps; ++t) w_tc_[t * m + ch] = ws[ch * taps + t];
      }
      return absl::OkStatus();
    }
    // W[m][c][kh][kw] -> rows of K = (kh, kw, c) (an NCHW input keeps
    // (c, kh, kw)), packed as B = W^T.
    const int64_t k = taps * cin_g;
    std::vector<float> reordered(ws, ws + m * k);
    for (int64_t o = 0; o < m && !nchw_input_; ++o) {
      for (int64_t c = 0; c < cin_g; ++c) {
        for (int64_t t = 0; t < taps; ++t) reordered[o * k + t * cin_g + c] = ws[(o * cin_g + c) * taps + t];
      }
    }
    product_.Pack(reordered.data(), m, k, attrs_, init.cpu, /*allow_bf16=*/!nchw_input_);
    return absl::OkStatus();
  }

  // NHWC (or NCHW) x and MCHW weights as the NCHW geometry.
  absl::StatusOr<ConvGeometry> Geometry(absl::Span<const int64_t> x, absl::Span<const int64_t> w) const {
    if (x.size() != 4) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to run node %s: input must be 4-D %s", label_,
                                                        nchw_input_ ? "NCHW" : "NHWC"));
    }
    if (nchw_input_) return MakeConvGeometry(attrs_, x, w, label_);
    const int64_t nchw[4] = {x[0], x[3], x[1], x[2]};
    return MakeConvGeometry(attrs_, nchw, w, label_);
  }

  // Positions per A tile.
  static int64_t TileRows(const ConvGeometry& c) {
    return std::clamp<int64_t>(kTileBytes / (c.gemm_k() * 4) / 16 * 16, 16, 4096);
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    auto c = Geometry(s.inputs[0], s.inputs[1]);
    if (!c.ok()) return 0;
    if (depthwise_) return 0;
    const int64_t positions = c->n * c->out_size();
    const bool in_place = c->pointwise() && !nchw_input_;
    const int64_t rows = in_place ? positions : std::min(TileRows(*c), positions);
    const size_t gemm = product_.ScratchBytes(rows, s.num_threads);
    return in_place ? gemm : Align64(rows * c->gemm_k() * 4) + gemm;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    auto geom = Geometry(x.shape, ctx.input(1).shape);
    if (!geom.ok()) return geom.status();
    const ConvGeometry& c = *geom;
    const float* xs = x.as<const float>();
    const float* bias = ctx.has_input(2) ? ctx.input(2).as<const float>() : nullptr;
    float* y = ctx.output(0).as<float>();
    // Input 3, a residual added before the activation (graph/passes/
    // fuse_conv_residual.cc fuses Add(conv, r) into group-1 FP32 convolutions).
    const float* residual = nullptr;
    if (ctx.has_input(3)) {
      if (depthwise_ || product_.bf16() || ctx.input(3).shape != ctx.output(0).shape) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to run node %s: the residual input must have the output's shape %s on a group-1 FP32 "
            "convolution, got %s",
            label_, absl::StrJoin(ctx.output(0).shape, "x"), absl::StrJoin(ctx.input(3).shape, "x")));
      }
      residual = ctx.input(3).as<const float>();
    }
    if (depthwise_) {
      RunDepthwise(c, xs, bias, y, ctx.pool);
      return absl::OkStatus();
    }
    const int64_t positions = c.n * c.out_size();
    if (nchw_input_) return RunNchwInput(c, xs, bias, residual, y, ctx);
    if (c.pointwise()) {
      product_.Run(positions, xs, c.cin, bias, residual, y, ctx.scratch, ctx.pool);
      return absl::OkStatus();
    }
    const int64_t rows = std::min(TileRows(c), positions);
    float* col = static_cast<float*>(ctx.scratch);
    void* gemm_scratch = static_cast<char*>(ctx.scratch) + Align64(rows * c.gemm_k() * 4);
    for (int64_t p0 = 0; p0 < positions; p0 += rows) {
      const int64_t p1 = std::min(positions, p0 + rows);
      ctx.pool->ParallelFor(p1 - p0, [&](int64_t q0, int64_t q1) {
        if (avx512_) {
          avx512::FillNhwcRowsF32(c, xs, p0 + q0, p0 + q1, col + q0 * c.gemm_k());
        } else {
          FillNhwcRowsF32(c, xs, p0 + q0, p0 + q1, col + q0 * c.gemm_k());
        }
      });
      product_.Run(p1 - p0, col, c.gemm_k(), bias, residual ? residual + p0 * c.cout : nullptr, y + p0 * c.cout,
                   gemm_scratch, ctx.pool);
    }
    return absl::OkStatus();
  }

  std::string Describe() const override {
    if (depthwise_) return avx512_ ? "depthwise_nhwc_f32_avx512" : "depthwise_nhwc_f32";
    return std::string(product_.name()) + (product_.half() ? kHalfWeightsTag : "") +
           (nchw_input_ ? " nchw->nhwc" : " nhwc") +
           (residual_ ? " +residual" : "");
  }

  int64_t PackedBytes() const override {
    return depthwise_ ? w_tc_.size() * 4 : product_.PackedBytes();
  }

 private:
  // kvant_nchw_input: per image, tiles of positions gathered column-major
  // (col[k * rows + p]), each thread a range of positions.
  absl::Status RunNchwInput(const ConvGeometry& c, const float* x, const float* bias, const float* residual,
                            float* y, const KernelContext& ctx) const {
    const int64_t out_hw = c.out_size(), rows = std::min(TileRows(c), c.n * out_hw);
    float* col = static_cast<float*>(ctx.scratch);
    void* gemm_scratch = static_cast<char*>(ctx.scratch) + Align64(rows * c.gemm_k() * 4);
    for (int64_t img = 0; img < c.n; ++img) {
      const float* xi = x + img * c.cin * c.in_size();
      for (int64_t p0 = 0; p0 < out_hw; p0 += rows) {
        const int64_t p1 = std::min(out_hw, p0 + rows), first = img * out_hw + p0;
        ctx.pool->ParallelFor(p1 - p0, [&](int64_t q0, int64_t q1) {
          if (avx512_) {
            avx512::Im2ColF32(c, xi, p0 + q0, p0 + q1, col + q0, rows);
          } else {
            Im2ColF32(c, xi, p0 + q0, p0 + q1, col + q0, rows);
          }
        });
        product_.Run(p1 - p0, col, 0, bias, residual ? residual + first * c.cout : nullptr, y + first * c.cout,
                     gemm_scratch, ctx.pool, rows);
      }
    }
    return absl::OkStatus();
  }

  void RunDepthwise(const ConvGeometry& c, const float* x, const float* bias, float* y, ParallelRunner* pool) const {
    const DepthwisePlane plane{c.in[1], c.in[2], c.out[1], c.out[2], c.k[1], c.k[2],
                               c.s[1],  c.s[2],  c.d[1],   c.d[2],   c.p[1], c.p[2]};
    const DepthwiseNhwc d{plane, c.cout};
    const int64_t rows = c.n * c.out[1];
    pool->ParallelFor(rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1;) {  // runs of rows within one image
        const int64_t img = r / c.out[1], oh0 = r % c.out[1], oh1 = std::min(c.out[1], oh0 + (r1 - r));
        const float* xi = x + img * c.in_size() * c.cin;
        float* yi = y + img * c.out_size() * c.cout;
        if (avx512_) {
          avx512::DepthwiseNhwcRowsF32(d, xi, w_tc_.data(), bias, act_, oh0, oh1, yi);
        } else {
          DepthwiseNhwcRowsF32(d, xi, w_tc_.data(), bias, act_, oh0, oh1, yi);
        }
        r += oh1 - oh0;
      }
    });
  }

  std::string label_;
  AttributeMap attrs_;
  ActivationF32 act_;
  bool avx512_;
  bool nchw_input_;  // kvant_nchw_input: x is NCHW (group 1 only)
  bool depthwise_ = false;
  bool residual_ = false;  // input 3 (fuse_conv_residual.cc)
  ConvProductF32 product_;  // group 1
  std::vector<float> w_tc_;  // depthwise weights as [tap][channel]
};

}  // namespace

void DepthwiseNhwcRowsF32(const DepthwiseNhwc& d, const float* x, const float* w_tc, const float* bias,
                          const ActivationF32& act, int64_t oh0, int64_t oh1, float* y) {
  const DepthwisePlane& p = d.plane;
  const int64_t c = d.c;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    for (int64_t ow = 0; ow < p.out_w; ++ow) {
      float* out = y + (oh * p.out_w + ow) * c;
      for (int64_t ch = 0; ch < c; ++ch) out[ch] = bias ? bias[ch] : 0.f;
      for (int64_t kh = 0; kh < p.k_h; ++kh) {
        const int64_t ih = oh * p.s_h - p.pad_h + kh * p.d_h;
        if (ih < 0 || ih >= p.in_h) continue;
        for (int64_t kw = 0; kw < p.k_w; ++kw) {
          const int64_t iw = ow * p.s_w - p.pad_w + kw * p.d_w;
          if (iw < 0 || iw >= p.in_w) continue;
          const float* src = x + (ih * p.in_w + iw) * c;
          const float* wt = w_tc + (kh * p.k_w + kw) * c;
          for (int64_t ch = 0; ch < c; ++ch) out[ch] += wt[ch] * src[ch];
        }
      }
      ApplyActivationF32(act, out, c);
    }
  }
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateConvNhwcF32(const KernelInit& init) {
  auto k = std::make_unique<ConvNhwcF32>(init.node_label, *init.attrs, init.cpu);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
