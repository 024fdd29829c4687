// FP32 ConvTranspose, NCHW, 1-D to 3-D: per image and group one GEMM
// col = W_g^T (pre-packed) x X_g, then col2im scatters col into Y (each input
// position adds a kernel-sized patch at stride s), then bias. Where the
// patches tile the output exactly (stride = kernel, no dilation, padding or
// output padding: a detector's 2x2 upsampling) each output element is one
// col element plus the bias, written once, without the clearing pass, the
// accumulation or the bias pass.
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

class ConvTransposeF32 final : public Kernel {
 public:
  ConvTransposeF32(const GemmUkernelInfoF32& uk, std::string label, const AttributeMap& attrs)
      : uk_(uk), label_(std::move(label)), attrs_(attrs) {}

  void Prepare(const KernelInit& init) {
    const Tensor* w = init.constant_inputs[1];
    if (w == nullptr) return;
    const int64_t group = attrs_.GetInt("group", 1), cin_g = w->shape()[0] / group;
    const int64_t m = w->num_elements() / w->shape()[0];  // cout_g * kernel
    for (int64_t g = 0; g < group; ++g) {
      packed_.push_back(PackConstantF32(m, cin_g, uk_.mr, w->data<float>() + g * cin_g * m, 1, m, 1.f));
    }
  }

  struct Geometry {
    int64_t n, cin, cin_g, cout, cout_g, group, m, hw_in;
    int64_t in[3], out[3], k[3], s[3], d[3], p[3];
  };

  absl::StatusOr<Geometry> Resolve(absl::Span<const int64_t> x, absl::Span<const int64_t> w) const {
    const int64_t sp = x.size() - 2;
    if (sp < 1 || sp > 3) {
      return absl::UnimplementedError(absl::StrFormat("failed to run node %s: 1 to 3 spatial dimensions, got %d", label_, sp));
    }
    auto p = ParseWindow(attrs_, sp, std::vector<int64_t>(w.begin() + 2, w.end()), label_);
    if (!p.ok()) return p.status();
    std::vector<int64_t> in(x.begin() + 2, x.end());
    auto r = ConvTransposeOutput(attrs_, *p, in, label_);
    if (!r.ok()) return r.status();
    Geometry g;
    g.n = x[0];
    g.cin = x[1];
    g.group = p->group;
    g.cin_g = g.cin / g.group;
    g.cout_g = w[1];
    g.cout = g.cout_g * g.group;
    const int64_t off = 3 - sp;
    int64_t ksize = 1;
    g.hw_in = 1;
    for (int i = 0; i < 3; ++i) {
      const int64_t j = i - off;
      const bool real = j >= 0;
      g.in[i] = real ? in[j] : 1;
      g.out[i] = real ? r->out[j] : 1;
      g.k[i] = real ? p->kernel[j] : 1;
      g.s[i] = real ? p->strides[j] : 1;
      g.d[i] = real ? p->dilations[j] : 1;
      g.p[i] = real ? r->pads[j] : 0;
      ksize *= g.k[i];
      g.hw_in *= g.in[i];
    }
    g.m = g.cout_g * ksize;
    return g;
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    auto g = Resolve(s.inputs[0], s.inputs[1]);
    if (!g.ok()) return 0;
    return (g->m * g->hw_in * 4 + 63) / 64 * 64 + GemmScratchBytesF32(uk_, g->m, g->hw_in, g->cin_g, true, s.num_threads);
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& w = ctx.input(1);
    auto geom = Resolve(x.shape, w.shape);
    if (!geom.ok()) return geom.status();
    const Geometry& g = *geom;
    float* col = static_cast<float*>(ctx.scratch);
    void* gemm_scratch = static_cast<char*>(ctx.scratch) + (g.m * g.hw_in * 4 + 63) / 64 * 64;
    float* y = ctx.output(0).as<float>();
    const int64_t out_size = g.out[0] * g.out[1] * g.out[2];
    const float* bias = ctx.has_input(2) ? ctx.input(2).as<const float>() : nullptr;
    const bool tiles = Tiles(g);
    if (!tiles) std::memset(y, 0, ctx.output(0).num_elements() * sizeof(float));
    for (int64_t b = 0; b < g.n; ++b) {
      for (int64_t gr = 0; gr < g.group; ++gr) {
        GemmArgsF32 args;
        args.m = g.m;
        args.n = g.hw_in;
        args.k = g.cin_g;
        if (!packed_.empty()) args.a.packed = &packed_[gr];
        else args.a = {nullptr, w.as<const float>() + gr * g.cin_g * g.m, 1, g.m};
        args.b = {nullptr, x.as<const float>() + (b * g.cin + gr * g.cin_g) * g.hw_in, 1, g.hw_in};
        args.c = col;
        args.ldc = g.hw_in;
        RunGemmF32(uk_, args, gemm_scratch, ctx.pool);
        float* yg = y + (b * g.cout + gr * g.cout_g) * out_size;
        if (tiles) {
          Col2ImTiles(g, col, bias ? bias + gr * g.cout_g : nullptr, yg);
        } else {
          Col2Im(g, col, yg);
        }
      }
    }
    if (bias != nullptr && !tiles) {
      for (int64_t b = 0; b < g.n; ++b) {
        for (int64_t c = 0; c < g.cout; ++c) {
          float* plane = y + (b * g.cout + c) * out_size;
          for (int64_t i = 0; i < out_size; ++i) plane[i] += bias[c];
        }
      }
    }
    return absl::OkStatus();
  }

  std::string Describe() const override { return uk_.name; }
  int64_t PackedBytes() const override {
    int64_t b = 0;
    for (const auto& p : packed_) b += p.bytes();
    return b;
  }

 private:
  // Every output element is written by exactly one (input position, tap).
  static bool Tiles(const Geometry& g) {
    for (int i = 0; i < 3; ++i) {
      if (g.s[i] != g.k[i] || g.d[i] != 1 || g.p[i] != 0 || g.out[i] != g.in[i] * g.s[i]) return false;
    }
    return true;
  }

  // Col2Im where the patches tile the output: y[c][id * kd_n + kd][ih * kh_n
  // + kh][iw * kw_n + kw] = col[(c, kd, kh, kw)][(id, ih, iw)] + bias[c].
  static void Col2ImTiles(const Geometry& g, const float* col, const float* bias, float* y) {
    const int64_t out_size = g.out[0] * g.out[1] * g.out[2], kw_n = g.k[2];
    for (int64_t c = 0; c < g.cout_g; ++c) {
      const float bc = bias ? bias[c] : 0.f;
      for (int64_t kd = 0; kd < g.k[0]; ++kd) {
        for (int64_t kh = 0; kh < g.k[1]; ++kh) {
          const float* taps = col + ((c * g.k[0] + kd) * g.k[1] + kh) * kw_n * g.hw_in;
          for (int64_t id = 0; id < g.in[0]; ++id) {
            for (int64_t ih = 0; ih < g.in[1]; ++ih) {
              const int64_t src = (id * g.in[1] + ih) * g.in[2];
              float* dst = y + c * out_size + ((id * g.k[0] + kd) * g.out[1] + ih * g.k[1] + kh) * g.out[2];
              if (kw_n == 2) {  // two tap rows interleaved
                const float* a = taps + src;
                const float* b = taps + g.hw_in + src;
                for (int64_t iw = 0; iw < g.in[2]; ++iw) {
                  dst[2 * iw] = a[iw] + bc;
                  dst[2 * iw + 1] = b[iw] + bc;
                }
                continue;
              }
              for (int64_t kw = 0; kw < kw_n; ++kw) {
                const float* a = taps + kw * g.hw_in + src;
                for (int64_t iw = 0; iw < g.in[2]; ++iw) dst[iw * kw_n + kw] = a[iw] + bc;
              }
            }
          }
        }
      }
    }
  }

  // y[c][od][oh][ow] += col[(c, kd, kh, kw)][(id, ih, iw)] where o = i * s - p + k * d.
  static void Col2Im(const Geometry& g, const float* col, float* y) {
    const int64_t out_size = g.out[0] * g.out[1] * g.out[2];
    for (int64_t c = 0; c < g.cout_g; ++c) {
      float* yc = y + c * out_size;
      for (int64_t kd = 0; kd < g.k[0]; ++kd) {
        for (int64_t kh = 0; kh < g.k[1]; ++kh) {
          for (int64_t kw = 0; kw < g.k[2]; ++kw) {
            const float* row = col + (((c * g.k[0] + kd) * g.k[1] + kh) * g.k[2] + kw) * g.hw_in;
            for (int64_t id = 0; id < g.in[0]; ++id) {
              const int64_t od = id * g.s[0] - g.p[0] + kd * g.d[0];
              if (od < 0 || od >= g.out[0]) continue;
              for (int64_t ih = 0; ih < g.in[1]; ++ih) {
                const int64_t oh = ih * g.s[1] - g.p[1] + kh * g.d[1];
                if (oh < 0 || oh >= g.out[1]) continue;
                const float* src = row + (id * g.in[1] + ih) * g.in[2];
                float* dst = yc + (od * g.out[1] + oh) * g.out[2];
                for (int64_t iw = 0; iw < g.in[2]; ++iw) {
                  const int64_t ow = iw * g.s[2] - g.p[2] + kw * g.d[2];
                  if (ow >= 0 && ow < g.out[2]) dst[ow] += src[iw];
                }
              }
            }
          }
        }
      }
    }
  }

  const GemmUkernelInfoF32& uk_;
  std::string label_;
  AttributeMap attrs_;
  std::vector<PackedPanelsF32> packed_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateConvTransposeF32(const KernelInit& init) {
  auto k = std::make_unique<ConvTransposeF32>(SelectGemmUkernelF32(init.cpu), init.node_label, *init.attrs);
  k->Prepare(init);
  return k;
}

}  // namespace kvant::cpu
