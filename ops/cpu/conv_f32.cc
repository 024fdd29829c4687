// FP32 convolution, NCHW, 1-D to 3-D (lower ranks run as 3-D with unit sizes).
//
// Grouped convolution is one GEMM per group and tile of output positions, in
// one of two orientations chosen at load:
//  - positions as rows (up to kPositionsAsRowsMaxCout channels per group):
//    Y^T[position, channel] = col^T x W^T. The im2col tile (K x T, T = 256
//    positions) is read in place as A, W^T is pre-packed once as B, the bias
//    is a column bias; the small result is transposed into NCHW. Pointwise
//    convolutions read the input itself as A.
//  - channels as rows (wide layers, or weights computed at run time):
//    Y = W x col, W pre-packed as A, bias per row, written straight into Y.
// Small images are batched so a tile holds several images. Depthwise
// convolution (one input channel per group) runs a direct loop.
// kvant_precision = "bf16" (graph/passes/assign_precision.cc) on group 1
// positions as rows: W^T packed once as bf16 and the tile transposed to rows
// of K for the BF16 GEMM, which reads A row-major (a lone NCHW convolution,
// or a 1-D one, that the NHWC layout leaves here).
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/cpu/depthwise_f32.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/cpu/im2col_f32.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

constexpr int64_t kPositionsAsRowsMaxCout = 128;
constexpr int64_t kTilePositions = 256;  // positions-as-rows tile (multiple of 16)

int64_t Align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

// A tile of output positions: positions [p0, p1) of `images` consecutive
// images starting at `image` (several images only when each is small).
struct Tile {
  int64_t image, images, p0, p1;
  int64_t cols() const { return images * (p1 - p0); }
};

class ConvF32 final : public Kernel {
 public:
  ConvF32(const GemmUkernelInfoF32& uk, std::string label, const AttributeMap& attrs, CpuFeatures cpu)
      : uk_(uk), label_(std::move(label)), attrs_(attrs), act_(ReadFusedActivation(attrs)),
        avx512_((cpu & kIsaAvx512) == kIsaAvx512), cpu_(cpu) {}

  absl::Status Prepare(const KernelInit& init) {
    const Tensor* w = init.constant_inputs[1];
    if (w == nullptr) return absl::OkStatus();
    const int64_t cout = w->shape()[0], group = attrs_.GetInt("group", 1);
    const int64_t cout_g = cout / group, k = w->num_elements() / cout;
    if (w->shape()[1] == 1 && group > 1 && cout_g == 1) {  // depthwise reads W directly
      depthwise_ = true;
      return absl::OkStatus();
    }
    positions_as_rows_ = cout_g <= kPositionsAsRowsMaxCout && k >= cout_g;
    if (positions_as_rows_ && group == 1 && attrs_.GetString("kvant_precision", "") == "bf16") {
      bf16_ = SelectGemmUkernelBf16(cpu_);
      if (bf16_ != nullptr) {
        packed_bf16_ = PackBBf16(*bf16_, k, cout, w->data<float>(), 1, k);  // B(k, n) = W[n][k]
        return absl::OkStatus();
      }
    }
    for (int64_t g = 0; g < group; ++g) {
      const float* wg = w->data<float>() + g * cout_g * k;
      // Positions as rows: W^T is B (panels of nr channels); else W is A (panels of mr channels).
      packed_w_.push_back(PackConstantF32(cout_g, k, positions_as_rows_ ? uk_.nr : uk_.mr, wg, k, 1, 1.f));
    }
    // FP16 weights (kvant_precision = "fp16": --precision fp16, or a layer
    // mixed precision keeps in FP16) where W^T is the GEMM's B, which the
    // FP32 kernels widen panel by panel; as A (wide layers) W stays FP32.
    if (positions_as_rows_ && attrs_.GetString("kvant_precision", "") == "fp16") {
      bool all = true;
      for (auto& p : packed_w_) all &= NarrowToHalf(p);
      half_ = all;
      if (!all) {  // one group could not narrow (a value past FP16's range): all stay FP32
        packed_w_.clear();
        for (int64_t g = 0; g < group; ++g) {
          packed_w_.push_back(PackConstantF32(cout_g, k, uk_.nr, w->data<float>() + g * cout_g * k, k, 1, 1.f));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ConvGeometry> Geometry(absl::Span<const int64_t> x, absl::Span<const int64_t> w) const {
    return MakeConvGeometry(attrs_, x, w, label_);
  }

  static bool Depthwise(const ConvGeometry& c) { return c.group > 1 && c.cin_g == 1 && c.cout_g == 1; }

  // Positions per tile: kTilePositions for positions as rows; whole images
  // (at least 1024 columns, col buffer at most 8 MiB) for channels as rows.
  int64_t TileColumns(const ConvGeometry& c) const {
    const int64_t ohw = std::max<int64_t>(1, c.out_size());
    if (positions_as_rows_) return ohw >= kTilePositions ? kTilePositions : (kTilePositions / ohw) * ohw;
    int64_t per = std::max<int64_t>(1, std::min(c.n, 1024 / ohw));
    while (per > 1 && c.gemm_k() * ohw * per * 4 > (int64_t{8} << 20)) per /= 2;
    return per * ohw;
  }

  std::vector<Tile> Tiles(const ConvGeometry& c) const {
    std::vector<Tile> tiles;
    const int64_t ohw = c.out_size(), cols = TileColumns(c);
    if (cols <= ohw) {
      for (int64_t b = 0; b < c.n; ++b) {
        for (int64_t p = 0; p < ohw; p += cols) tiles.push_back({b, 1, p, std::min(ohw, p + cols)});
      }
    } else {
      const int64_t per = cols / ohw;
      for (int64_t b = 0; b < c.n; b += per) tiles.push_back({b, std::min(per, c.n - b), 0, ohw});
    }
    return tiles;
  }

  struct Scratch {
    int64_t col_bytes, staging_bytes, rows_bytes;
  };
  Scratch Layout(const ConvGeometry& c) const {
    const int64_t cols = TileColumns(c);
    const int64_t col = Align64(c.gemm_k() * cols * 4);
    return {col, Align64(c.cout_g * cols * 4), bf16_ != nullptr ? col : 0};
  }

  // One slot (col, staging, GEMM scratch) per thread: threads take whole
  // tiles when there are enough of them, else the GEMM itself is threaded.
  int64_t SlotBytes(const ConvGeometry& c, int threads) const {
    const Scratch l = Layout(c);
    const int64_t cols = TileColumns(c);
    const size_t gemm = bf16_ != nullptr     ? GemmScratchBytesBf16(*bf16_, cols, c.gemm_k(), threads)
                        : positions_as_rows_ ? GemmScratchBytesF32(uk_, cols, c.cout_g, c.gemm_k(), false, threads, half_)
                                             : GemmScratchBytesF32(uk_, c.cout_g, cols, c.gemm_k(), true, threads);
    return Align64(l.col_bytes + l.staging_bytes + l.rows_bytes + gemm);
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    auto c = Geometry(s.inputs[0], s.inputs[1]);
    if (!c.ok()) return 0;
    if (Depthwise(*c)) return DirectDepthwise(*c) ? Align64(avx512::DepthwiseScratchBytesF32(Plane(*c))) * s.num_threads : 0;
    return SlotBytes(*c, s.num_threads) * s.num_threads;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& w = ctx.input(1);
    auto geom = Geometry(x.shape, w.shape);
    if (!geom.ok()) return geom.status();
    const ConvGeometry& c = *geom;
    const float* bias = ctx.has_input(2) ? ctx.input(2).as<const float>() : nullptr;
    float* y = ctx.output(0).as<float>();
    if (Depthwise(c)) {
      RunDepthwise(c, x.as<const float>(), w.as<const float>(), bias, y, ctx.scratch, ctx.pool);
      return absl::OkStatus();
    }
    const Scratch l = Layout(c);
    const int threads = ctx.pool->num_threads();
    const int64_t slot_bytes = SlotBytes(c, threads);
    const std::vector<uint16_t> masks =
        avx512_ && c.same_size_2d() ? Im2ColSame2dMasks(c) : std::vector<uint16_t>{};
    const std::vector<Tile> tiles = Tiles(c);
    const int64_t tasks = static_cast<int64_t>(tiles.size()) * c.group;
    auto run_tasks = [&](int64_t slot, int64_t t0, int64_t t1, ParallelRunner* gemm_pool) {
      char* base = static_cast<char*>(ctx.scratch) + slot * slot_bytes;
      Buffers buf{reinterpret_cast<float*>(base), reinterpret_cast<float*>(base + l.col_bytes),
                  base + l.col_bytes + l.staging_bytes + l.rows_bytes, &masks,
                  reinterpret_cast<float*>(base + l.col_bytes + l.staging_bytes)};
      for (int64_t task = t0; task < t1; ++task) {
        const Tile& t = tiles[task / c.group];
        const int64_t g = task % c.group;
        const float* xg = x.as<const float>() + (t.image * c.cin + g * c.cin_g) * c.in_size();
        const float* bg = bias ? bias + g * c.cout_g : nullptr;
        if (positions_as_rows_) {
          RunPositionsAsRows(c, t, g, xg, bg, y, buf, gemm_pool);
        } else {
          RunChannelsAsRows(c, t, g, xg, w.as<const float>(), bg, y, buf, gemm_pool);
        }
      }
    };
    if (threads > 1 && tasks >= 2 * threads) {
      ctx.pool->ParallelFor(threads, [&](int64_t s0, int64_t s1) {
        InlineRunner inline_runner;
        for (int64_t slot = s0; slot < s1; ++slot) {
          run_tasks(slot, tasks * slot / threads, tasks * (slot + 1) / threads, &inline_runner);
        }
      });
    } else {
      run_tasks(0, 0, tasks, ctx.pool);
    }
    return absl::OkStatus();
  }

  std::string Describe() const override {
    if (depthwise_) return avx512_ ? "depthwise_f32_avx512" : "depthwise_f32_direct";
    if (bf16_ != nullptr) return std::string(bf16_->name) + " positions-as-rows";
    return std::string(uk_.name) + (positions_as_rows_ ? " positions-as-rows" : "") + (half_ ? kHalfWeightsTag : "");
  }

  int64_t PackedBytes() const override {
    if (bf16_ != nullptr) return packed_bf16_.bytes();
    int64_t b = 0;
    for (const auto& p : packed_w_) b += p.bytes();
    return b;
  }

 private:
  struct Buffers {
    float* col;
    float* staging;
    void* gemm;
    const std::vector<uint16_t>* masks;  // AVX-512 same-size im2col, when it applies
    float* rows;                         // BF16: the tile as rows of K
  };

  // Fills col[K][t.cols()] for tile t of group input `xg`.
  void Im2ColTile(const ConvGeometry& c, const Tile& t, const float* xg, const Buffers& buf) const {
    const int64_t cols = t.cols(), span = t.p1 - t.p0;
    for (int64_t i = 0; i < t.images; ++i) {
      const float* xi = xg + i * c.cin * c.in_size();
      float* dst = buf.col + i * span;
      if (!buf.masks->empty()) {
        avx512::Im2ColSame2dF32(c, xi, buf.masks->data(), t.p0, t.p1, dst, cols);
      } else {
        Im2ColF32(c, xi, t.p0, t.p1, dst, cols);
      }
    }
  }

  void RunPositionsAsRows(const ConvGeometry& c, const Tile& t, int64_t g, const float* xg, const float* bias,
                          float* y, const Buffers& buf, ParallelRunner* pool) const {
    const int64_t ohw = c.out_size(), cols = t.cols();
    if (bf16_ != nullptr) {
      RunGemmBf16Tile(c, t, xg, bias, buf, pool);
      ScatterToNchw(c, t, g, y, buf.staging);
      return;
    }
    GemmArgsF32 args;
    args.m = cols;
    args.n = c.cout_g;
    args.k = c.gemm_k();
    if (t.images == 1 && c.pointwise()) {
      args.a = {nullptr, xg + t.p0, 1, ohw};  // the input plane is already col for 1x1
    } else {
      Im2ColTile(c, t, xg, buf);
      args.a = {nullptr, buf.col, 1, cols};
    }
    args.b.packed = &packed_w_[g];
    args.c = buf.staging;
    args.ldc = c.cout_g;
    args.col_bias = bias;
    args.act = act_;
    RunGemmF32(uk_, args, buf.gemm, pool);
    ScatterToNchw(c, t, g, y, buf.staging);
  }

  // staging [image][position][channel] -> NCHW.
  static void ScatterToNchw(const ConvGeometry& c, const Tile& t, int64_t g, float* y, const float* staging) {
    const int64_t ohw = c.out_size(), span = t.p1 - t.p0;
    for (int64_t i = 0; i < t.images; ++i) {
      for (int64_t m = 0; m < c.cout_g; ++m) {
        float* dst = y + ((t.image + i) * c.cout + g * c.cout_g + m) * ohw + t.p0;
        const float* src = staging + i * span * c.cout_g + m;
        for (int64_t p = 0; p < span; ++p) dst[p] = src[p * c.cout_g];
      }
    }
  }

  // The tile's product on the BF16 GEMM (group 1): the K x T columns (im2col,
  // or the input plane of a 1x1) transposed to T rows of K.
  void RunGemmBf16Tile(const ConvGeometry& c, const Tile& t, const float* x, const float* bias, const Buffers& buf,
                       ParallelRunner* pool) const {
    const int64_t cols = t.cols(), k = c.gemm_k();
    const float* col = x + t.p0;
    int64_t ld = c.out_size();
    if (t.images != 1 || !c.pointwise()) {
      Im2ColTile(c, t, x, buf);
      col = buf.col;
      ld = cols;
    }
    constexpr int64_t kBlock = 16;  // transposed in 16 x 16 blocks
    for (int64_t p0 = 0; p0 < cols; p0 += kBlock) {
      for (int64_t k0 = 0; k0 < k; k0 += kBlock) {
        for (int64_t p = p0; p < std::min(cols, p0 + kBlock); ++p) {
          for (int64_t kk = k0; kk < std::min(k, k0 + kBlock); ++kk) buf.rows[p * k + kk] = col[kk * ld + p];
        }
      }
    }
    GemmArgsBf16 args;
    args.m = cols;
    args.a = buf.rows;
    args.lda = k;
    args.b = &packed_bf16_;
    args.c = buf.staging;
    args.ldc = c.cout_g;
    args.col_bias = bias;
    args.act = act_;
    RunGemmBf16(*bf16_, args, buf.gemm, pool);
  }

  void RunChannelsAsRows(const ConvGeometry& c, const Tile& t, int64_t g, const float* xg, const float* w,
                         const float* bias, float* y, const Buffers& buf, ParallelRunner* pool) const {
    const int64_t ohw = c.out_size(), cols = t.cols(), k = c.gemm_k();
    GemmArgsF32 args;
    args.m = c.cout_g;
    args.n = cols;
    args.k = k;
    if (!packed_w_.empty()) args.a.packed = &packed_w_[g];
    else args.a = {nullptr, w + g * c.cout_g * k, k, 1};
    if (t.images == 1 && c.pointwise()) {
      args.b = {nullptr, xg + t.p0, 1, ohw};
    } else {
      Im2ColTile(c, t, xg, buf);
      args.b = {nullptr, buf.col, 1, cols};
    }
    // One image: write straight into Y (rows are channels, ldc the plane).
    const bool direct = t.images == 1;
    args.c = direct ? y + (t.image * c.cout + g * c.cout_g) * ohw + t.p0 : buf.staging;
    args.ldc = direct ? ohw : cols;
    args.row_bias = bias;
    args.act = act_;
    RunGemmF32(uk_, args, buf.gemm, pool);
    if (direct) return;
    for (int64_t i = 0; i < t.images; ++i) {  // [channel][image][position] -> NCHW
      for (int64_t m = 0; m < c.cout_g; ++m) {
        std::memcpy(y + ((t.image + i) * c.cout + g * c.cout_g + m) * ohw, buf.staging + m * cols + i * ohw,
                    ohw * sizeof(float));
      }
    }
  }

  // Depthwise without AVX-512, or 3-D: each output row accumulates one tap
  // (kd, kh, kw) at a time over the output columns that tap reads inside
  // the input, so the inner loop is a plain multiply-add over a row.
  // 2-D depthwise on AVX-512 runs the staged kernel (depthwise_f32.h); the
  // rest the row loop below.
  bool DirectDepthwise(const ConvGeometry& c) const { return avx512_ && c.in[0] == 1 && c.k[0] == 1; }
  static DepthwisePlane Plane(const ConvGeometry& c) {
    return {c.in[1], c.in[2], c.out[1], c.out[2], c.k[1], c.k[2], c.s[1], c.s[2], c.d[1], c.d[2], c.p[1], c.p[2]};
  }

  void RunDepthwise(const ConvGeometry& c, const float* x, const float* w, const float* bias, float* y, void* scratch,
                    ParallelRunner* pool) const {
    if (DirectDepthwise(c)) {
      const DepthwisePlane dp = Plane(c);
      const int64_t slot_bytes = Align64(avx512::DepthwiseScratchBytesF32(dp));
      const int64_t planes = c.n * c.cout, threads = std::min<int64_t>(pool->num_threads(), planes);
      pool->ParallelFor(threads, [&](int64_t s0, int64_t s1) {
        for (int64_t slot = s0; slot < s1; ++slot) {
          avx512::DepthwisePlanesF32(dp, x, w, bias, c.cout, planes * slot / threads, planes * (slot + 1) / threads,
                                     act_, y, static_cast<char*>(scratch) + slot * slot_bytes);
        }
      });
      return;
    }
    std::vector<int64_t> lo(c.k[2]), hi(c.k[2]);
    for (int64_t kw = 0; kw < c.k[2]; ++kw) {
      const int64_t off = kw * c.d[2] - c.p[2];
      lo[kw] = std::min(c.out[2], off >= 0 ? 0 : (-off + c.s[2] - 1) / c.s[2]);
      hi[kw] = std::max(lo[kw], std::min(c.out[2], (c.in[2] - off + c.s[2] - 1) / c.s[2]));
    }
    const int64_t s2 = c.s[2];
    pool->ParallelFor(c.n * c.cout, [&](int64_t p0, int64_t p1) {
      for (int64_t plane = p0; plane < p1; ++plane) {
        const int64_t ch = plane % c.cout;
        const float* xp = x + plane * c.in_size();
        const float* wp = w + ch * c.k_size();
        float* yp = y + plane * c.out_size();
        const float b = bias ? bias[ch] : 0.f;
        for (int64_t od = 0; od < c.out[0]; ++od) {
          for (int64_t oh = 0; oh < c.out[1]; ++oh) {
            float* yr = yp + (od * c.out[1] + oh) * c.out[2];
            for (int64_t ow = 0; ow < c.out[2]; ++ow) yr[ow] = b;
            for (int64_t kd = 0; kd < c.k[0]; ++kd) {
              const int64_t id = od * c.s[0] - c.p[0] + kd * c.d[0];
              if (id < 0 || id >= c.in[0]) continue;
              for (int64_t kh = 0; kh < c.k[1]; ++kh) {
                const int64_t ih = oh * c.s[1] - c.p[1] + kh * c.d[1];
                if (ih < 0 || ih >= c.in[1]) continue;
                const float* xr = xp + (id * c.in[1] + ih) * c.in[2];
                const float* wr = wp + (kd * c.k[1] + kh) * c.k[2];
                for (int64_t kw = 0; kw < c.k[2]; ++kw) {
                  const float wv = wr[kw];
                  const float* src = xr + kw * c.d[2] - c.p[2];
                  if (s2 == 1) {
                    for (int64_t ow = lo[kw]; ow < hi[kw]; ++ow) yr[ow] += wv * src[ow];
                  } else {
                    for (int64_t ow = lo[kw]; ow < hi[kw]; ++ow) yr[ow] += wv * src[ow * s2];
                  }
                }
              }
            }
            ApplyActivationF32(act_, yr, c.out[2]);
          }
        }
      }
    });
  }

  const GemmUkernelInfoF32& uk_;
  std::string label_;
  AttributeMap attrs_;
  ActivationF32 act_;
  bool avx512_;
  bool positions_as_rows_ = false;
  bool depthwise_ = false;
  bool half_ = false;  // packed_w_ holds FP16 weights
  std::vector<PackedPanelsF32> packed_w_;
  CpuFeatures cpu_;
  const GemmUkernelInfoBf16* bf16_ = nullptr;  // set: the product runs in BF16
  PackedBBf16 packed_bf16_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateConvF32(const KernelInit& init) {
  auto k = std::make_unique<ConvF32>(SelectGemmUkernelF32(init.cpu), init.node_label, *init.attrs, init.cpu);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
