// kvant.ConvChainNhwc in FP32 (graph/passes/fuse_conv_chain.cc): an
// optional 1x1 expand convolution, a depthwise convolution and an optional
// 1x1 project convolution (with a residual), NHWC, run a band of output rows
// at a time so the intermediates never leave L2:
//  - expand: the depthwise input rows a band needs, computed once each into
//    a row buffer (a GEMM over whole rows of x). The rows the next band
//    shares with this one (the kernel's overlap) stay; the buffer slides
//    back to its start only when it is full, so rows are moved rarely.
//  - depthwise: the band's output rows (the NHWC depthwise kernels, given
//    the buffer as a short image: its first row and the band's first output
//    row shift the top padding).
//  - project: a GEMM over the band's pixels, residual and activation in its
//    epilogue, straight into y.
// Threads take whole images, or parts of an image's rows when there are
// fewer images than threads (the expand rows at a part's edge are computed
// by both parts), or several small whole images at once, each stage one
// call over all of them (conv_chain.h); each stage runs single-threaded.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ops/cpu/conv_chain.h"
#include "ops/cpu/conv_product_f32.h"
#include "ops/cpu/depthwise_f32.h"
#include "ops/cpu/im2col_f32.h"

namespace kvant::cpu {
namespace {

constexpr int kX = 0, kExpandW = 1, kExpandB = 2, kDepthW = 3, kDepthB = 4, kProjectW = 5, kProjectB = 6,
              kResidual = 7;

int64_t Align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

// Bytes of intermediate rows (expand rows and depthwise outputs) a band
// keeps: a fifth of this machine's 2 MB L2, so x's and y's rows, the GEMM's
// panels and the other thread's data fit beside them (EfficientNet-Lite0 ran
// fastest between 192 and 768 KB).
constexpr int64_t kBandBytes = 384 * 1024;

// A 1x1 stage: y[p][m] = act(sum_c x[p][c] * w[m][c] + b[m] (+ residual)),
// single-threaded, in the precision its node asks for (conv_product_f32.h).
struct Pointwise {
  ConvProductF32 product;
  int64_t cin = 0, cout = 0;

  void Run(int64_t rows, const float* x, const float* bias, const float* residual, float* y, void* scratch) const {
    InlineRunner inline_runner;
    product.Run(rows, x, cin, bias, residual, y, scratch, &inline_runner);
  }
  size_t ScratchBytes(int64_t rows) const { return product.ScratchBytes(rows, 1); }
};

class ConvChainNhwcF32 final : public Kernel {
 public:
  ConvChainNhwcF32(std::string label, const AttributeMap& attrs, CpuFeatures cpu)
      : label_(std::move(label)), dw_attrs_(attrs.WithPrefix("depthwise:")),
        expand_attrs_(attrs.WithPrefix("expand:")), project_attrs_(attrs.WithPrefix("project:")),
        avx512_((cpu & kIsaAvx512) == kIsaAvx512) {}

  absl::Status Prepare(const KernelInit& init) {
    auto weights = [&](int i) -> const Tensor* {
      const Tensor* w = static_cast<size_t>(i) < init.constant_inputs.size() ? init.constant_inputs[i] : nullptr;
      return w != nullptr && w->rank() == 4 && w->dtype() == DataType::kFloat32 ? w : nullptr;
    };
    for (size_t i = 0; i < init.input_types.size(); ++i) {
      if (init.input_types[i] != DataType::kUndefined && init.input_types[i] != DataType::kFloat32) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to prepare node %s: ConvChainNhwc input %d must be float32, got %s", label_, i,
            DataTypeName(init.input_types[i])));
      }
    }
    const Tensor* wd = weights(kDepthW);
    if (wd == nullptr || wd->shape()[1] != 1) {
      return absl::InternalError(absl::StrFormat(
          "failed to prepare node %s: ConvChainNhwc needs constant 4-D depthwise weights [C,1,KH,KW]", label_));
    }
    channels_ = wd->shape()[0];
    kh_ = wd->shape()[2];
    kw_ = wd->shape()[3];
    const int64_t taps = kh_ * kw_;
    w_tc_.resize(taps * channels_);
    const float* ws = wd->data<float>();
    for (int64_t ch = 0; ch < channels_; ++ch) {
      for (int64_t t = 0; t < taps; ++t) w_tc_[t * channels_ + ch] = ws[ch * taps + t];
    }
    dw_act_ = ReadFusedActivation(dw_attrs_);
    has_expand_ = init.input_types.size() > kExpandW && init.input_types[kExpandW] != DataType::kUndefined;
    has_project_ = init.input_types.size() > kProjectW && init.input_types[kProjectW] != DataType::kUndefined;
    residual_ = init.input_types.size() > kResidual && init.input_types[kResidual] != DataType::kUndefined;
    if (has_expand_) {
      if (auto s = PreparePointwise(weights(kExpandW), expand_attrs_, init.cpu, "expand", expand_); !s.ok()) return s;
      if (expand_.cout != channels_) {
        return absl::InternalError(absl::StrFormat("failed to prepare node %s: expand gives %d channels, depthwise "
                                                   "takes %d", label_, expand_.cout, channels_));
      }
    }
    if (has_project_) {
      // (The BF16 GEMM adds no residual: a project with one stays FP32.)
      if (auto s = PreparePointwise(weights(kProjectW), project_attrs_, init.cpu, "project", project_, !residual_);
          !s.ok()) {
        return s;
      }
      if (project_.cin != channels_) {
        return absl::InternalError(absl::StrFormat("failed to prepare node %s: project takes %d channels, depthwise "
                                                   "gives %d", label_, project_.cin, channels_));
      }
    }
    return absl::OkStatus();
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    auto plan = MakePlan(s.inputs[kX], s.num_threads);
    if (!plan.ok()) return 0;
    return plan->chain.slots * plan->slot_bytes + 64;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(kX);
    auto planned = MakePlan(x.shape, ctx.pool->num_threads());
    if (!planned.ok()) return planned.status();
    const Plan& plan = *planned;
    const ConvGeometry& c = plan.dw;
    const int64_t out_c = has_project_ ? project_.cout : channels_;
    if (ctx.output(0).shape != std::vector<int64_t>{c.n, c.out[1], c.out[2], out_c} ||
        (ctx.has_input(kResidual) && ctx.input(kResidual).shape != ctx.output(0).shape)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to run node %s: output %s and residual must be [%d,%d,%d,%d]", label_,
          absl::StrJoin(ctx.output(0).shape, "x"), c.n, c.out[1], c.out[2], out_c));
    }
    const int64_t bias_sizes[3] = {channels_, channels_, out_c};
    for (int stage = 0; stage < 3; ++stage) {
      const int b = kExpandB + 2 * stage;
      if (ctx.has_input(b) && ctx.input(b).num_elements() != bias_sizes[stage]) {
        return absl::InvalidArgumentError(absl::StrFormat("failed to run node %s: input %d (a bias) must have %d "
                                                          "values, got %d", label_, b, bias_sizes[stage],
                                                          ctx.input(b).num_elements()));
      }
    }
    Buffers io;
    io.x = x.as<const float>();
    io.residual = ctx.has_input(kResidual) ? ctx.input(kResidual).as<const float>() : nullptr;
    io.y = ctx.output(0).as<float>();
    io.expand_bias = ctx.has_input(kExpandB) ? ctx.input(kExpandB).as<const float>() : nullptr;
    io.dw_bias = ctx.has_input(kDepthB) ? ctx.input(kDepthB).as<const float>() : nullptr;
    io.project_bias = ctx.has_input(kProjectB) ? ctx.input(kProjectB).as<const float>() : nullptr;
    char* scratch = static_cast<char*>(ctx.scratch);
    ForEachChainTask(ctx.pool, plan.chain, plan.chain.tasks(c.n),
                     [&](int64_t t, int64_t slot) { RunPart(plan, io, t, scratch + slot * plan.slot_bytes); });
    return absl::OkStatus();
  }

  std::string Describe() const override {
    // Each stage's kernel and fused activation, e.g. "expand gemm_f32_avx512_14x32+Clip".
    auto act = [](const AttributeMap& a) {
      const std::string kind = a.GetString("fused_activation", "");
      return kind.empty() ? kind : "+" + kind;
    };
    auto gemm = [](const Pointwise& pw) {
      return absl::StrCat(pw.product.name(), pw.product.half() ? kHalfWeightsTag : "");
    };
    std::string s = has_expand_ ? absl::StrCat("expand ", gemm(expand_), act(expand_attrs_), " + ") : "";
    s += absl::StrCat(avx512_ ? "depthwise_nhwc_f32_avx512" : "depthwise_nhwc_f32", act(dw_attrs_));
    if (has_project_) {
      s += absl::StrCat(" + project ", gemm(project_), residual_ ? "+residual" : "", act(project_attrs_));
    }
    return s;
  }

  int64_t PackedBytes() const override {
    return static_cast<int64_t>(w_tc_.size()) * 4 + (has_expand_ ? expand_.product.PackedBytes() : 0) +
           (has_project_ ? project_.product.PackedBytes() : 0);
  }

 private:
  struct Plan {
    ConvGeometry dw;  // the depthwise stage (NCHW geometry)
    ChainRows rows;
    ChainPlan chain;
    int64_t slot_bytes = 0;
  };
  struct Buffers {
    const float* x;
    const float* residual;
    float* y;
    const float *expand_bias, *dw_bias, *project_bias;
  };

  absl::Status PreparePointwise(const Tensor* w, const AttributeMap& attrs, CpuFeatures cpu, const char* stage,
                                Pointwise& pw, bool allow_bf16 = true) const {
    if (w == nullptr || w->shape()[2] != 1 || w->shape()[3] != 1) {
      return absl::InternalError(
          absl::StrFormat("failed to prepare node %s: the %s stage needs constant 1x1 weights", label_, stage));
    }
    pw.cout = w->shape()[0];
    pw.cin = w->shape()[1];
    pw.product.Pack(w->data<float>(), pw.cout, pw.cin, attrs, cpu, allow_bf16);
    return absl::OkStatus();
  }

  absl::StatusOr<Plan> MakePlan(absl::Span<const int64_t> x, int threads) const {
    if (x.size() != 4 || x[3] != (has_expand_ ? expand_.cin : channels_)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to run node %s: input must be NHWC with %d channels, got %s", label_,
          has_expand_ ? expand_.cin : channels_, absl::StrJoin(x, "x")));
    }
    const int64_t nchw[4] = {x[0], channels_, x[1], x[2]};
    const int64_t w_shape[4] = {channels_, 1, kh_, kw_};
    auto geom = MakeConvGeometry(dw_attrs_, nchw, w_shape, label_);
    if (!geom.ok()) return geom.status();
    Plan p;
    p.dw = *geom;
    const ConvGeometry& c = p.dw;
    p.rows = ChainRows{c.in[1], c.out[1], c.k[1], c.s[1], c.d[1], c.p[1]};
    const int64_t in_row = c.in[2] * channels_ * 4, out_row = c.out[2] * channels_ * 4;
    p.chain = PlanChain(p.rows, c.n, threads, kBandBytes, has_expand_ ? in_row : 0, has_project_ ? out_row : 0);
    const ChainPlan& cp = p.chain;
    const int64_t gemm = std::max<int64_t>(has_expand_ ? expand_.ScratchBytes(cp.buffer_rows * c.in[2]) : 0,
                                           has_project_ ? project_.ScratchBytes(cp.band * c.out[2]) : 0);
    p.slot_bytes = Align64(cp.buffer_rows * in_row) + (has_project_ ? Align64(cp.band * out_row) : 0) + Align64(gemm);
    return p;
  }

  // Task t: image t / parts, its part t % parts of the output rows.
  void RunPart(const Plan& plan, const Buffers& io, int64_t t, char* scratch) const {
    const ConvGeometry& c = plan.dw;
    const ChainPlan& cp = plan.chain;
    const int64_t img = cp.first_image(t);
    int64_t o_begin, o_end;
    ChainPartRows(cp, plan.rows, t % cp.parts, &o_begin, &o_end);
    const int64_t in_w = c.in[2], out_w = c.out[2], ch = channels_;
    const int64_t x_c = has_expand_ ? expand_.cin : ch, y_c = has_project_ ? project_.cout : ch;
    const float* x = io.x + img * c.in[1] * in_w * x_c;
    float* y = io.y + img * c.out[1] * out_w * y_c;
    const float* residual = io.residual ? io.residual + img * c.out[1] * out_w * y_c : nullptr;
    if (cp.images > 1) {
      RunImages(plan, io, std::min(cp.images, c.n - img), x, residual, y, scratch);
      return;
    }
    ChainRowBuffer rows{scratch, in_w * ch * 4, cp.buffer_rows};  // expand rows
    float* band_out = reinterpret_cast<float*>(scratch + Align64(cp.buffer_rows * in_w * ch * 4));
    void* gemm_scratch = reinterpret_cast<char*>(band_out) + (has_project_ ? Align64(cp.band * out_w * ch * 4) : 0);
    for (int64_t o0 = o_begin; o0 < o_end; o0 += cp.band) {
      const int64_t o1 = std::min(o_end, o0 + cp.band);
      const float* src = x;
      int64_t src_lo = 0, src_rows = c.in[1];
      if (has_expand_) {
        const int64_t i0 = plan.rows.first_input(o0), i1 = plan.rows.end_input(o0, o1);
        if (const int64_t first = rows.Reserve(i0, i1); first < i1) {
          expand_.Run((i1 - first) * in_w, x + first * in_w * x_c, io.expand_bias, nullptr,
                      reinterpret_cast<float*>(rows.row(first)), gemm_scratch);
        }
        src = reinterpret_cast<const float*>(rows.data);
        src_lo = rows.lo;
        src_rows = rows.hi - rows.lo;
      }
      // The band as its own image: output rows [0, o1 - o0) over input rows
      // [src_lo, src_lo + src_rows); padding moves by the offsets.
      const DepthwisePlane plane{src_rows, in_w,   o1 - o0, out_w,  c.k[1], c.k[2],
                                 c.s[1],   c.s[2], c.d[1],  c.d[2], c.p[1] + src_lo - o0 * c.s[1], c.p[2]};
      const DepthwiseNhwc d{plane, ch};
      float* dst = has_project_ ? band_out : y + o0 * out_w * ch;
      if (avx512_) {
        avx512::DepthwiseNhwcRowsF32(d, src, w_tc_.data(), io.dw_bias, dw_act_, 0, o1 - o0, dst);
      } else {
        DepthwiseNhwcRowsF32(d, src, w_tc_.data(), io.dw_bias, dw_act_, 0, o1 - o0, dst);
      }
      if (has_project_) {
        project_.Run((o1 - o0) * out_w, band_out, io.project_bias, residual ? residual + o0 * out_w * y_c : nullptr,
                     y + o0 * out_w * y_c, gemm_scratch);
      }
    }
  }

  // `n` whole images from x, each stage one call over all of them (the
  // depthwise kernel one per image).
  void RunImages(const Plan& plan, const Buffers& io, int64_t n, const float* x, const float* residual, float* y,
                 char* scratch) const {
    const ConvGeometry& c = plan.dw;
    const ChainPlan& cp = plan.chain;
    const int64_t in_px = c.in[1] * c.in[2], out_px = c.out[1] * c.out[2], ch = channels_;
    float* mid = reinterpret_cast<float*>(scratch);
    float* band_out = reinterpret_cast<float*>(scratch + Align64(cp.buffer_rows * c.in[2] * ch * 4));
    void* gemm_scratch = reinterpret_cast<char*>(band_out) + (has_project_ ? Align64(cp.band * c.out[2] * ch * 4) : 0);
    if (has_expand_) expand_.Run(n * in_px, x, io.expand_bias, nullptr, mid, gemm_scratch);
    const float* src = has_expand_ ? mid : x;
    float* dst = has_project_ ? band_out : y;
    const DepthwiseNhwc d{{c.in[1], c.in[2], c.out[1], c.out[2], c.k[1], c.k[2], c.s[1], c.s[2], c.d[1], c.d[2],
                           c.p[1], c.p[2]},
                          ch};
    for (int64_t i = 0; i < n; ++i) {
      if (avx512_) {
        avx512::DepthwiseNhwcRowsF32(d, src + i * in_px * ch, w_tc_.data(), io.dw_bias, dw_act_, 0, c.out[1],
                                     dst + i * out_px * ch);
      } else {
        DepthwiseNhwcRowsF32(d, src + i * in_px * ch, w_tc_.data(), io.dw_bias, dw_act_, 0, c.out[1],
                             dst + i * out_px * ch);
      }
    }
    if (has_project_) project_.Run(n * out_px, band_out, io.project_bias, residual, y, gemm_scratch);
  }

  std::string label_;
  AttributeMap dw_attrs_, expand_attrs_, project_attrs_;
  bool avx512_;
  bool has_expand_ = false, has_project_ = false, residual_ = false;
  int64_t channels_ = 0, kh_ = 0, kw_ = 0;
  std::vector<float> w_tc_;  // depthwise weights as [tap][channel]
  ActivationF32 dw_act_;
  Pointwise expand_, project_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateConvChainNhwcF32(const KernelInit& init) {
  auto k = std::make_unique<ConvChainNhwcF32>(init.node_label, *init.attrs, init.cpu);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
