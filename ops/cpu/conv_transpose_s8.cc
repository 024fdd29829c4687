// INT8 ConvTranspose: ONNX Runtime's com.microsoft.QLinearConvTranspose
// (NCHW; QLinearConv's inputs with ConvTranspose's attributes and weights
// [cin, cout, kh, kw]) and its NHWC form kvant.QLinearConvTransposeNhwc
// (graph/passes/layout_nhwc.cc); 2-D, group 1, constant weights.
//
// Each input pixel adds a kh x kw patch to the output: patch(ky, kx, co) =
// sum over ci of (x[ci] - zx) * (w[ci][co][ky][kx] - zw[co]). Per kernel row
// ky that is one INT8 GEMM over input pixels (A = the NHWC input, K = cin)
// with that row's weights packed once as B [cin, kw * cout]
// (ops/cpu/gemm_s8.h):
//  - where the patches tile the output (stride = kernel, no dilation,
//    padding or output padding: a detector's or a U-Net's 2x2 upsampling)
//    each output is one patch element plus the bias, so the GEMM epilogue
//    requantizes it in place: the kw * cout patch bytes of input pixel ix
//    for kernel row ky lie contiguous in output row iy * kh + ky at column
//    ix * kw, which makes one GEMM per input row and ky (ldc = kw * cout),
//    with input rows split over the threads;
//  - otherwise the patches overlap: the GEMM writes int32 patches a few
//    input rows at a time, col2im adds them into an int32 image, and the
//    epilogue requantizes the image with the bias.
// Sums are exact in int32; requantization is the GEMM's (round half to even
// of v * x_scale * w_scale[co] / y_scale, plus the zero point, clamped).
#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/cpu/gemm_s8.h"
#include "ops/cpu/quantize_common.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

constexpr int64_t kAlign = 64;
int64_t Aligned(int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

struct Geometry {
  int64_t n, h, w, oh, ow, sh, sw, dh, dw, pad_t, pad_l;
  bool tiles;  // every output element is one patch element
};

class QConvTranspose final : public Kernel {
 public:
  QConvTranspose(const GemmUkernelInfoS8& uk, bool nhwc, std::string label, const AttributeMap& attrs)
      : uk_(uk), nhwc_(nhwc), label_(std::move(label)), attrs_(attrs) {}

  absl::Status Prepare(const KernelInit& init) {
    const Tensor* w = init.constant_inputs[3];
    const Shape& wshape = init.input_shapes[3];
    if (w == nullptr || wshape.rank() != 4 || attrs_.GetInt("group", 1) != 1) {
      return absl::UnimplementedError(absl::StrFormat(
          "failed to compile node %s: INT8 ConvTranspose needs constant 4-D weights [cin, cout, kh, kw] and group 1",
          label_));
    }
    const std::vector<int64_t> ws = wshape.Sizes();
    cin_ = ws[0], cout_ = ws[1], kh_ = ws[2], kw_ = ws[3];
    const int64_t cols = kw_ * cout_;
    // Weight zero points per output channel, after the sign conversion.
    const Tensor* zp = init.input_types.size() > 5 && init.input_types[5] != DataType::kUndefined
                           ? init.constant_inputs[5] : nullptr;
    if (zp == nullptr && init.input_types.size() > 5 && init.input_types[5] != DataType::kUndefined) {
      return absl::UnimplementedError(
          absl::StrFormat("failed to compile node %s: w_zero_point must be constant", label_));
    }
    const bool u8_weights = !Signed(w->dtype());
    bool any_zp = false;
    std::vector<int32_t> zw(cout_);
    for (int64_t co = 0; co < cout_; ++co) {
      int32_t z = 0;
      if (zp != nullptr) {
        const int64_t j = zp->num_elements() == 1 ? 0 : co;
        z = zp->dtype() == DataType::kInt8 ? zp->data<int8_t>()[j] : zp->data<uint8_t>()[j];
      }
      zw[co] = z - (u8_weights ? 128 : 0);
      any_zp |= zw[co] != 0;
    }
    if (any_zp) {
      zb_cols_.resize(cols);
      for (int64_t j = 0; j < cols; ++j) zb_cols_[j] = zw[j % cout_];
    }
    // B of kernel row ky: [ci][kx * cout + co] = w[ci][co][ky][kx].
    const std::vector<int8_t> s = ToSigned(w->raw_data(), w->dtype(), w->num_elements());
    std::vector<int8_t> b(cin_ * cols);
    for (int64_t ky = 0; ky < kh_; ++ky) {
      for (int64_t ci = 0; ci < cin_; ++ci)
        for (int64_t co = 0; co < cout_; ++co)
          for (int64_t kx = 0; kx < kw_; ++kx) {
            b[ci * cols + kx * cout_ + co] = s[((ci * cout_ + co) * kh_ + ky) * kw_ + kx];
          }
      packed_.push_back(PackBS8(uk_, cin_, cols, b.data(), cols, 1));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Geometry> Resolve(absl::Span<const int64_t> x) const {
    if (x.size() != 4) {
      return absl::InvalidArgumentError(
          absl::StrFormat("failed to run node %s: input must be 4-D, got rank %d", label_, x.size()));
    }
    const int64_t c = x[nhwc_ ? 3 : 1];
    if (c != cin_) {
      return absl::InvalidArgumentError(
          absl::StrFormat("failed to run node %s: input must have %d channels, got %d", label_, cin_, c));
    }
    auto p = ParseWindow(attrs_, 2, {kh_, kw_}, label_);
    if (!p.ok()) return p.status();
    Geometry g;
    g.n = x[0];
    g.h = x[nhwc_ ? 1 : 2];
    g.w = x[nhwc_ ? 2 : 3];
    auto r = ConvTransposeOutput(attrs_, *p, {g.h, g.w}, label_);
    if (!r.ok()) return r.status();
    g.oh = r->out[0], g.ow = r->out[1];
    g.sh = p->strides[0], g.sw = p->strides[1];
    g.dh = p->dilations[0], g.dw = p->dilations[1];
    g.pad_t = r->pads[0], g.pad_l = r->pads[1];
    g.tiles = g.sh == kh_ && g.sw == kw_ && g.dh == 1 && g.dw == 1 && g.pad_t == 0 && g.pad_l == 0 &&
              g.oh == g.h * kh_ && g.ow == g.w * kw_;
    return g;
  }

  // Input rows per int32 patch chunk of the overlapping path (about 256 KB).
  int64_t ChunkRows(const Geometry& g) const {
    return std::clamp<int64_t>((256 << 10) / std::max<int64_t>(g.w * kw_ * cout_ * 4, 1), 1, g.h);
  }

  size_t ScratchBytes(const KernelShapes& ks) const override {
    auto g = Resolve(ks.inputs[0]);
    if (!g.ok()) return 0;
    const int64_t cols = kw_ * cout_, threads = std::max(ks.num_threads, 1);
    // x as NHWC u8 (unless read in place), y's NHWC buffer (NCHW form only), scales and biases per column.
    int64_t bytes = Aligned(g->n * g->h * g->w * cin_) + (nhwc_ ? 0 : Aligned(g->n * g->oh * g->ow * cout_)) +
                    2 * Aligned(4 * cols);
    if (g->tiles) {
      bytes += threads * Aligned(GemmScratchBytesS8(uk_, g->w, cols, cin_, 1));
    } else {
      const int64_t rows = ChunkRows(*g) * g->w;
      bytes += Aligned(4 * g->n * g->oh * g->ow * cout_) + Aligned(4 * rows * cols) +
               Aligned(GemmScratchBytesS8(uk_, rows, cols, cin_, static_cast<int>(threads)));
    }
    return bytes + kAlign;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    auto geom = Resolve(x.shape);
    if (!geom.ok()) return geom.status();
    const Geometry& g = *geom;
    const int64_t cols = kw_ * cout_, hw = g.h * g.w, ohw = g.oh * g.ow;
    char* cursor = static_cast<char*>(ctx.scratch);
    auto take = [&](int64_t bytes) {
      char* p = cursor;
      cursor += Aligned(bytes);
      return p;
    };
    // x as NHWC u8 (s8: top bit flipped, zero point + 128); read in place when it is one.
    const bool flip = Signed(x.dtype);
    const uint8_t* xs = x.as<const uint8_t>();
    uint8_t* xn = reinterpret_cast<uint8_t*>(take(g.n * hw * cin_));
    if (nhwc_ && !flip) {
      xn = const_cast<uint8_t*>(xs);  // only read
    } else if (nhwc_) {
      ToUnsigned(xs, x.dtype, g.n * hw * cin_, xn);
    } else {
      const uint8_t f = flip ? 0x80 : 0;
      for (int64_t b = 0; b < g.n; ++b)
        for (int64_t c = 0; c < cin_; ++c) {
          const uint8_t* src = xs + (b * cin_ + c) * hw;
          for (int64_t p = 0; p < hw; ++p) xn[(b * hw + p) * cin_ + c] = src[p] ^ f;
        }
    }
    const int32_t zx = ZeroPointAt(ctx, 2, 0) + (flip ? 128 : 0);
    uint8_t* yn = nhwc_ ? static_cast<uint8_t*>(y.data) : reinterpret_cast<uint8_t*>(take(g.n * ohw * cout_));
    // Per column (kx, co): scale, bias.
    float* scale = reinterpret_cast<float*>(take(4 * cols));
    int32_t* bias = reinterpret_cast<int32_t*>(take(4 * cols));
    const float sx = ScaleAt(ctx, 1, 0), sy = ScaleAt(ctx, 6, 0);
    const bool has_bias = ctx.has_input(8);
    for (int64_t j = 0; j < cols; ++j) {
      scale[j] = sx * ScaleAt(ctx, 4, j % cout_) / sy;
      bias[j] = has_bias ? ctx.input(8).as<const int32_t>()[j % cout_] : 0;
    }
    const bool s8 = Signed(y.dtype);
    GemmS8Output out;
    out.kind = s8 ? GemmS8Output::Kind::kS8 : GemmS8Output::Kind::kU8;
    out.scale = scale;
    out.zero_point = ZeroPointAt(ctx, 7, 0);
    out.lo = s8 ? -128 : 0;
    out.hi = s8 ? 127 : 255;
    ApplyClipRange(attrs_, sy, out.zero_point, &out.lo, &out.hi);
    const int32_t* zb = zb_cols_.empty() ? nullptr : zb_cols_.data();
    if (g.tiles) {
      RunTiles(g, xn, zx, zb, has_bias ? bias : nullptr, out, yn, cursor, ctx.pool);
    } else {
      RunOverlapping(g, xn, zx, zb, bias, out, yn, cursor, ctx.pool);
    }
    if (!nhwc_) {  // NHWC -> NCHW
      uint8_t* dst = static_cast<uint8_t*>(y.data);
      for (int64_t b = 0; b < g.n; ++b)
        for (int64_t c = 0; c < cout_; ++c)
          for (int64_t p = 0; p < ohw; ++p) dst[(b * cout_ + c) * ohw + p] = yn[(b * ohw + p) * cout_ + c];
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
  GemmArgsS8 Args(const uint8_t* a, int64_t m, int64_t ky, int32_t zx, const int32_t* zb, const int32_t* bias,
                  const GemmS8Output& out, void* c) const {
    GemmArgsS8 args;
    args.m = m;
    args.a = a;
    args.lda = cin_;
    args.b = &packed_[ky];
    args.a_zero_point = zx;
    args.b_zero_points = zb;
    args.bias = bias;
    args.out = out;
    args.c = c;
    args.ldc = kw_ * cout_;
    return args;
  }

  // One GEMM per input row and kernel row, straight into y; rows over threads.
  void RunTiles(const Geometry& g, const uint8_t* x, int32_t zx, const int32_t* zb, const int32_t* bias,
                const GemmS8Output& out, uint8_t* y, char* scratch, ParallelRunner* pool) const {
    const int64_t rows = g.n * g.h, cols = kw_ * cout_;
    const int64_t slot = Aligned(GemmScratchBytesS8(uk_, g.w, cols, cin_, 1));
    const int64_t tasks = std::min<int64_t>(pool->num_threads(), rows);
    pool->ParallelFor(tasks, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        for (int64_t r = rows * t / tasks; r < rows * (t + 1) / tasks; ++r) {
          const int64_t b = r / g.h, iy = r % g.h;
          for (int64_t ky = 0; ky < kh_; ++ky) {
            uint8_t* dst = y + ((b * g.oh + iy * kh_ + ky) * g.ow) * cout_;
            RunGemmS8(uk_, Args(x + r * g.w * cin_, g.w, ky, zx, zb, bias, out, dst), scratch + t * slot, nullptr);
          }
        }
      }
    });
  }

  // int32 patches of a few input rows at a time, added into an int32 image,
  // then requantized with the bias.
  void RunOverlapping(const Geometry& g, const uint8_t* x, int32_t zx, const int32_t* zb, const int32_t* bias,
                      const GemmS8Output& out, uint8_t* y, char* cursor, ParallelRunner* pool) const {
    const int64_t cols = kw_ * cout_, chunk = ChunkRows(g);
    int32_t* image = reinterpret_cast<int32_t*>(cursor);
    cursor += Aligned(4 * g.n * g.oh * g.ow * cout_);
    int32_t* patches = reinterpret_cast<int32_t*>(cursor);
    cursor += Aligned(4 * chunk * g.w * cols);
    std::memset(image, 0, 4 * g.n * g.oh * g.ow * cout_);
    GemmS8Output s32;
    s32.kind = GemmS8Output::Kind::kS32;
    for (int64_t b = 0; b < g.n; ++b) {
      for (int64_t iy0 = 0; iy0 < g.h; iy0 += chunk) {
        const int64_t iy1 = std::min(g.h, iy0 + chunk);
        for (int64_t ky = 0; ky < kh_; ++ky) {
          GemmArgsS8 args = Args(x + (b * g.h + iy0) * g.w * cin_, (iy1 - iy0) * g.w, ky, zx, zb, nullptr, s32, patches);
          RunGemmS8(uk_, args, cursor, pool);
          for (int64_t iy = iy0; iy < iy1; ++iy) {
            const int64_t oy = iy * g.sh - g.pad_t + ky * g.dh;
            if (oy < 0 || oy >= g.oh) continue;
            int32_t* row = image + (b * g.oh + oy) * g.ow * cout_;
            for (int64_t ix = 0; ix < g.w; ++ix) {
              const int32_t* src = patches + ((iy - iy0) * g.w + ix) * cols;
              for (int64_t kx = 0; kx < kw_; ++kx) {
                const int64_t ox = ix * g.sw - g.pad_l + kx * g.dw;
                if (ox < 0 || ox >= g.ow) continue;
                int32_t* dst = row + ox * cout_;
                const int32_t* s = src + kx * cout_;
                for (int64_t c = 0; c < cout_; ++c) dst[c] += s[c];
              }
            }
          }
        }
      }
    }
    GemmS8Output fin = out;
    fin.col_offset = bias;  // cout entries: the bias (or zeros) once per output
    const int64_t pixels = g.n * g.oh * g.ow;
    pool->ParallelFor(pixels, [&](int64_t p0, int64_t p1) {
      uk_.epilogue(image + p0 * cout_, cout_, p1 - p0, cout_, fin, y + p0 * cout_, cout_);
    });
  }

  const GemmUkernelInfoS8& uk_;
  bool nhwc_;
  std::string label_;
  AttributeMap attrs_;
  int64_t cin_ = 0, cout_ = 0, kh_ = 0, kw_ = 0;
  std::vector<PackedBS8> packed_;  // per kernel row: [cin, kw * cout]
  std::vector<int32_t> zb_cols_;   // per column (kx, co): zw[co] (empty: all 0)
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateQConvTranspose(const KernelInit& init) {
  auto k = std::make_unique<QConvTranspose>(SelectGemmUkernelS8(init.cpu), init.op == "QLinearConvTransposeNhwc",
                                            init.node_label, *init.attrs);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
