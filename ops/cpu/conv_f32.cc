// FP32 convolution, NCHW, 1-D to 3-D (lower ranks run as 3-D with unit sizes).
// Grouped convolution runs one GEMM per group: weights (pre-packed A, one panel
// set per group) x im2col columns (B); 1x1/stride-1/unpadded convolutions read
// the input directly. Depthwise convolution (one input channel per group) runs
// a direct loop instead. Bias and the fused activation are the GEMM epilogue.
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

// Geometry of one call, as 3-D.
struct ConvShape {
  int64_t n, cin, cout, group, cin_g, cout_g;
  int64_t in[3], out[3], k[3], s[3], d[3], p[3];
  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t k_size() const { return k[0] * k[1] * k[2]; }
  bool pointwise() const {
    for (int i = 0; i < 3; ++i) {
      if (k[i] != 1 || s[i] != 1 || p[i] != 0) return false;
    }
    return true;
  }
};

class ConvF32 final : public Kernel {
 public:
  ConvF32(const GemmUkernelInfoF32& uk, std::string label, const AttributeMap& attrs)
      : uk_(uk), label_(std::move(label)), attrs_(attrs), act_(ReadFusedActivation(attrs)) {}

  absl::Status Prepare(const KernelInit& init) {
    const Tensor* w = init.constant_inputs[1];
    if (w == nullptr) return absl::OkStatus();
    const int64_t cout = w->shape()[0], group = attrs_.GetInt("group", 1);
    const int64_t cout_g = cout / group, k = w->num_elements() / cout;
    if (w->shape()[1] == 1 && group > 1 && cout_g == 1) return absl::OkStatus();  // depthwise reads W directly
    for (int64_t g = 0; g < group; ++g) {
      packed_w_.push_back(PackConstantF32(cout_g, k, uk_.mr, w->data<float>() + g * cout_g * k, k, 1, 1.f));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ConvShape> Geometry(absl::Span<const int64_t> x, absl::Span<const int64_t> w,
                                     absl::Span<const int64_t> y) const {
    const int64_t spatial = x.size() - 2;
    if (spatial < 1 || spatial > 3) {
      return absl::UnimplementedError(absl::StrFormat(
          "failed to run node %s: convolution must have 1 to 3 spatial dimensions, got %d", label_, spatial));
    }
    auto p = ParseWindow(attrs_, spatial, std::vector<int64_t>(w.begin() + 2, w.end()), label_);
    if (!p.ok()) return p.status();
    std::vector<int64_t> in(x.begin() + 2, x.end());
    auto out = WindowOutputSizes(*p, in, label_);
    if (!out.ok()) return out.status();
    ConvShape c;
    c.n = x[0];
    c.cin = x[1];
    c.cout = w[0];
    c.group = p->group;
    c.cin_g = w[1];
    c.cout_g = c.cout / c.group;
    const int64_t off = 3 - spatial;
    for (int i = 0; i < 3; ++i) {
      const int j = i - off;
      const bool real = j >= 0;
      c.in[i] = real ? in[j] : 1;
      c.out[i] = real ? (*out)[j] : 1;
      c.k[i] = real ? p->kernel[j] : 1;
      c.s[i] = real ? p->strides[j] : 1;
      c.d[i] = real ? p->dilations[j] : 1;
      c.p[i] = real ? p->pads[j] : 0;
    }
    return c;
  }

  // Small outputs batch several images into one GEMM (columns = image x
  // position) so that the GEMM is wide enough to run at speed.
  static int64_t ImagesPerGemm(const ConvShape& c) {
    const int64_t ohw = std::max<int64_t>(1, c.out_size()), k = c.cin_g * c.k_size();
    int64_t per = std::max<int64_t>(1, std::min(c.n, 1024 / ohw));
    while (per > 1 && k * ohw * per * 4 > (int64_t{8} << 20)) per /= 2;  // col buffer <= 8 MiB
    return per;
  }

  struct ScratchLayout {
    int64_t per, col_bytes, staging_bytes;
  };
  static ScratchLayout Layout(const ConvShape& c) {
    ScratchLayout l;
    l.per = ImagesPerGemm(c);
    const int64_t k = c.cin_g * c.k_size(), cols = l.per * c.out_size();
    l.col_bytes = (c.pointwise() && l.per == 1) ? 0 : (k * cols * 4 + 63) / 64 * 64;
    l.staging_bytes = l.per == 1 ? 0 : (c.cout_g * cols * 4 + 63) / 64 * 64;
    return l;
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    auto c = Geometry(s.inputs[0], s.inputs[1], s.outputs[0]);
    if (!c.ok() || Depthwise(*c)) return 0;
    const ScratchLayout l = Layout(*c);
    return l.col_bytes + l.staging_bytes +
           GemmScratchBytesF32(uk_, c->cout_g, l.per * c->out_size(), c->cin_g * c->k_size(), true, s.num_threads);
  }

  static bool Depthwise(const ConvShape& c) { return c.group > 1 && c.cin_g == 1 && c.cout_g == 1; }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& w = ctx.input(1);
    const TensorArg& y = ctx.output(0);
    auto geom = Geometry(x.shape, w.shape, y.shape);
    if (!geom.ok()) return geom.status();
    const ConvShape& c = *geom;
    const float* bias = ctx.has_input(2) ? ctx.input(2).as<const float>() : nullptr;
    if (Depthwise(c)) {
      RunDepthwise(c, x.as<const float>(), w.as<const float>(), bias, y.as<float>(), ctx.pool);
      return absl::OkStatus();
    }
    const int64_t k = c.cin_g * c.k_size(), ohw = c.out_size();
    const ScratchLayout l = Layout(c);
    char* scratch = static_cast<char*>(ctx.scratch);
    float* col = reinterpret_cast<float*>(scratch);
    float* staging = reinterpret_cast<float*>(scratch + l.col_bytes);
    void* gemm_scratch = scratch + l.col_bytes + l.staging_bytes;
    const float* xs = x.as<const float>();
    float* ys = y.as<float>();
    for (int64_t b0 = 0; b0 < c.n; b0 += l.per) {
      const int64_t imgs = std::min(l.per, c.n - b0), cols = imgs * ohw;
      for (int64_t g = 0; g < c.group; ++g) {
        GemmArgsF32 args;
        args.m = c.cout_g;
        args.n = cols;
        args.k = k;
        if (!packed_w_.empty()) args.a.packed = &packed_w_[g];
        else args.a = {nullptr, w.as<const float>() + g * c.cout_g * k, k, 1};
        const float* x0 = xs + (b0 * c.cin + g * c.cin_g) * c.in_size();
        if (l.per == 1 && c.pointwise()) {
          args.b = {nullptr, x0, 1, ohw};
        } else {
          for (int64_t i = 0; i < imgs; ++i) Im2Col(c, x0 + i * c.cin * c.in_size(), col + i * ohw, cols);
          args.b = {nullptr, col, 1, cols};
        }
        args.c = l.per == 1 ? ys + (b0 * c.cout + g * c.cout_g) * ohw : staging;
        args.ldc = cols;
        args.row_bias = bias ? bias + g * c.cout_g : nullptr;
        args.act = act_;
        RunGemmF32(uk_, args, gemm_scratch, ctx.pool);
        if (l.per > 1) {  // [cout_g][image][position] -> NCHW
          for (int64_t i = 0; i < imgs; ++i) {
            for (int64_t m = 0; m < c.cout_g; ++m) {
              std::memcpy(ys + ((b0 + i) * c.cout + g * c.cout_g + m) * ohw, staging + m * cols + i * ohw,
                          ohw * sizeof(float));
            }
          }
        }
      }
    }
    return absl::OkStatus();
  }

  std::string Describe() const override { return uk_.name; }
  int64_t PackedBytes() const override {
    int64_t b = 0;
    for (const auto& p : packed_w_) b += p.bytes();
    return b;
  }

 private:
  // col[(c, kd, kh, kw) * ld + (od, oh, ow)], zero where the window reads
  // padding. Along W only the valid output range is computed; the rest is zero.
  static void Im2Col(const ConvShape& c, const float* x, float* col, int64_t ld) {
    if (c.s[1] == 1 && c.s[2] == 1 && c.d[1] == 1 && c.d[2] == 1 && c.out[1] == c.in[1] && c.out[2] == c.in[2] &&
        c.k[0] == 1 && c.in[0] == 1) {
      Im2ColSame2d(c, x, col, ld);
      return;
    }
    for (int64_t ci = 0; ci < c.cin_g; ++ci) {
      for (int64_t kd = 0; kd < c.k[0]; ++kd) {
        for (int64_t kh = 0; kh < c.k[1]; ++kh) {
          for (int64_t kw = 0; kw < c.k[2]; ++kw) {
            float* row = col + (((ci * c.k[0] + kd) * c.k[1] + kh) * c.k[2] + kw) * ld;
            // Output columns whose input column iw = ow * s - p + kw * d lies in [0, in).
            const int64_t off = kw * c.d[2] - c.p[2];
            const int64_t lo = std::min(c.out[2], off >= 0 ? 0 : (-off + c.s[2] - 1) / c.s[2]);
            const int64_t hi = std::max(lo, std::min(c.out[2], (c.in[2] - off + c.s[2] - 1) / c.s[2]));
            for (int64_t od = 0; od < c.out[0]; ++od) {
              const int64_t id = od * c.s[0] - c.p[0] + kd * c.d[0];
              for (int64_t oh = 0; oh < c.out[1]; ++oh) {
                const int64_t ih = oh * c.s[1] - c.p[1] + kh * c.d[1];
                float* dst = row + (od * c.out[1] + oh) * c.out[2];
                if (id < 0 || id >= c.in[0] || ih < 0 || ih >= c.in[1]) {
                  for (int64_t ow = 0; ow < c.out[2]; ++ow) dst[ow] = 0.f;
                  continue;
                }
                // Plain loops: rows are often short (8-56 values), too short for memcpy calls.
                const float* src = x + ((ci * c.in[0] + id) * c.in[1] + ih) * c.in[2] + off;
                for (int64_t ow = 0; ow < lo; ++ow) dst[ow] = 0.f;
                if (c.s[2] == 1) {
                  for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow];
                } else {
                  for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * c.s[2]];
                }
                for (int64_t ow = hi; ow < c.out[2]; ++ow) dst[ow] = 0.f;
              }
            }
          }
        }
      }
    }
  }

  // Stride 1, "same" size 2-D: each col row is the input plane shifted by
  // (kh - pad_h, kw - pad_w), so it is one contiguous copy followed by zeroing
  // the rows and columns the shift pushed outside the input.
  static void Im2ColSame2d(const ConvShape& c, const float* x, float* col, int64_t ld) {
    const int64_t h = c.in[1], w = c.in[2], plane = h * w;
    for (int64_t ci = 0; ci < c.cin_g; ++ci) {
      const float* xp = x + ci * plane;
      for (int64_t kh = 0; kh < c.k[1]; ++kh) {
        for (int64_t kw = 0; kw < c.k[2]; ++kw) {
          float* dst = col + ((ci * c.k[1] + kh) * c.k[2] + kw) * ld;
          const int64_t sh = kh - c.p[1], sw = kw - c.p[2], shift = sh * w + sw;
          const int64_t begin = std::max<int64_t>(0, -shift), end = std::min(plane, plane - shift);
          for (int64_t i = 0; i < std::min(begin, plane); ++i) dst[i] = 0.f;
          if (end > begin) std::memcpy(dst + begin, xp + begin + shift, (end - begin) * sizeof(float));
          for (int64_t i = std::max(end, begin); i < plane; ++i) dst[i] = 0.f;
          // Rows shifted in from above or below, then columns wrapped from the neighbouring row.
          const int64_t row_lo = std::clamp<int64_t>(-sh, 0, h), row_hi = std::clamp<int64_t>(h - sh, 0, h);
          for (int64_t r = 0; r < row_lo; ++r) std::fill(dst + r * w, dst + (r + 1) * w, 0.f);
          for (int64_t r = row_hi; r < h; ++r) std::fill(dst + r * w, dst + (r + 1) * w, 0.f);
          const int64_t col_lo = std::clamp<int64_t>(-sw, 0, w), col_hi = std::clamp<int64_t>(w - sw, 0, w);
          if (col_lo > 0 || col_hi < w) {
            for (int64_t r = row_lo; r < row_hi; ++r) {
              for (int64_t q = 0; q < col_lo; ++q) dst[r * w + q] = 0.f;
              for (int64_t q = col_hi; q < w; ++q) dst[r * w + q] = 0.f;
            }
          }
        }
      }
    }
  }

  void RunDepthwise(const ConvShape& c, const float* x, const float* w, const float* bias, float* y,
                    ParallelRunner* pool) const {
    pool->ParallelFor(c.n * c.cout, [&](int64_t p0, int64_t p1) {
      for (int64_t plane = p0; plane < p1; ++plane) {
        const int64_t ch = plane % c.cout;
        const float* xp = x + plane * c.in_size();
        const float* wp = w + ch * c.k_size();
        float* yp = y + plane * c.out_size();
        const float b = bias ? bias[ch] : 0.f;
        for (int64_t od = 0; od < c.out[0]; ++od) {
          for (int64_t oh = 0; oh < c.out[1]; ++oh) {
            for (int64_t ow = 0; ow < c.out[2]; ++ow) {
              float acc = b;
              for (int64_t kd = 0; kd < c.k[0]; ++kd) {
                const int64_t id = od * c.s[0] - c.p[0] + kd * c.d[0];
                if (id < 0 || id >= c.in[0]) continue;
                for (int64_t kh = 0; kh < c.k[1]; ++kh) {
                  const int64_t ih = oh * c.s[1] - c.p[1] + kh * c.d[1];
                  if (ih < 0 || ih >= c.in[1]) continue;
                  const float* xr = xp + (id * c.in[1] + ih) * c.in[2];
                  const float* wr = wp + (kd * c.k[1] + kh) * c.k[2];
                  for (int64_t kw = 0; kw < c.k[2]; ++kw) {
                    const int64_t iw = ow * c.s[2] - c.p[2] + kw * c.d[2];
                    if (iw >= 0 && iw < c.in[2]) acc += xr[iw] * wr[kw];
                  }
                }
              }
              yp[(od * c.out[1] + oh) * c.out[2] + ow] = act_.Apply(acc);
            }
          }
        }
      }
    });
  }

  const GemmUkernelInfoF32& uk_;
  std::string label_;
  AttributeMap attrs_;
  ActivationF32 act_;
  std::vector<PackedPanelsF32> packed_w_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateConvF32(const KernelInit& init) {
  auto k = std::make_unique<ConvF32>(SelectGemmUkernelF32(init.cpu), init.node_label, *init.attrs);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
