// INT8 convolution in NHWC: u8 input with zero point zx, s8 weights, int32
// bias, output through the INT8 GEMM epilogue (s32, f32, u8 or s8 with
// per-channel requantization and clamps; see ops/cpu/gemm_s8.h).
//
//  - group 1: GEMM with A = the input itself for 1x1 / stride 1 / no padding,
//    else an im2col of output positions, built one A panel at a time as the
//    GEMM reaches it (kh x kw x cin bytes per row, padding
//    filled with zx so that it contributes zero); B = the weights packed once.
//  - group 1 on a machine with a direct tap kernel (AMX): no im2col. The
//    input is copied once into a zx-padded image whose pixels hold cin_p
//    (cin rounded up to the kernel's K chunk) bytes. In that image,
//    flattened over batch, rows and padded columns, output position q reads
//    pixel q + ky * Wp + kx for tap (ky, kx) (stride 1): each tap of a panel
//    of consecutive positions is a strided block of rows, loaded as a tile
//    in place. Positions in the padded columns (kw - 1 per row) are computed
//    and dropped by the epilogue. Strides become stride 1 over the image's
//    phases, dilations scale the tap offsets (ops/cpu/conv_s8_direct.cc).
//  - depthwise (group == cin == cout): the input becomes, a few rows at a
//    time (a ring of kh rows per thread), a zx-padded "lane image" whose
//    int32 lanes hold horizontally adjacent taps of one channel: four bytes
//    x[iy][ix + t * dw][c] for VPDPBUSD (AVX-512 VNNI, in the blocked lane
//    order that VPUNPCK leaves, DepthwiseLaneOrder), or two 16-bit halves
//    for VPMADDWD (AVX-512BW, the reference), multiplied by the weights
//    packed the same way (exact, no saturation; taps past kw get weight 0).
//    Each input pixel is widened once instead of once per tap. Channels are
//    the vector dimension (NHWC); the sum less zx * sum(w) per channel goes
//    through the same epilogue, one output row at a time, or the VNNI row
//    requantizes in registers itself, two rows at a time at stride 1 (each
//    lane vector loaded serves both). Kernel rows over the top or bottom
//    padding are left out. Strided layers build only the lane pixels outputs
//    read and go in strips of columns whose lane rows stay in L1.
#ifndef KVANT_OPS_CPU_CONV_S8_H_
#define KVANT_OPS_CPU_CONV_S8_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "ops/cpu/gemm_s8.h"

namespace kvant::cpu {

struct ConvS8Shape {
  int64_t n = 1, h = 1, w = 1, cin = 1, cout = 1;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
  bool depthwise = false;  // group == cin == cout
  int64_t out_h() const { return (h + pad_t + pad_b - dh * (kh - 1) - 1) / sh + 1; }
  int64_t out_w() const { return (w + pad_l + pad_r - dw * (kw - 1) - 1) / sw + 1; }
};

// Lanes per kernel row: each int32 lane of the lane image holds
// `taps_per_lane` horizontally adjacent taps (2: 16-bit halves for
// VPMADDWD; 4: bytes for VPDPBUSD).
inline int64_t DepthwiseLanesPerRow(const ConvS8Shape& s, int taps_per_lane) {
  return (s.kw + taps_per_lane - 1) / taps_per_lane;
}

// Where a channel's lane sits in a lane-image pixel (and in the packed
// weights). kNatural: lane ch of c. kBlocked64: channels in blocks of 64 (the
// last block may hold n < 64 over q = ceil(n / 16) 128-bit lanes), each block
// in the order VPUNPCK{L,H}BW then VPUNPCK{L,H}WD leave four byte vectors
// interleaved: channel 16 L + 4 v + i of a block sits at lane v * 4q + 4 L + i;
// a pixel is RoundUp(c, 16) lanes, those past c zero.
enum class DepthwiseLaneOrder { kNatural, kBlocked64 };

inline int64_t DepthwiseLanePitch(DepthwiseLaneOrder order, int64_t c) {
  return order == DepthwiseLaneOrder::kNatural ? c : (c + 15) / 16 * 16;
}

inline int64_t DepthwiseLaneOf(DepthwiseLaneOrder order, int64_t c, int64_t ch) {
  if (order == DepthwiseLaneOrder::kNatural) return ch;
  const int64_t b0 = ch / 64 * 64, n = c - b0 < 64 ? c - b0 : 64, q = (n + 15) / 16, k = ch - b0;
  return b0 + (k % 16 / 4) * 4 * q + 4 * (k / 16) + k % 4;
}

// The terms (kernel row ky, lane j; index ky * lanes + j) of a depthwise
// output row: each term's lane-image row and column offset (pixels `pitch`
// lanes apart). Returns the number of terms, or -1 when there are more than
// max_terms.
inline int64_t DepthwiseTerms(const ConvS8Shape& s, int taps_per_lane, int64_t pitch, const int32_t* const* rows,
                              int64_t max_terms, const int32_t** row_of, int64_t* off) {
  const int64_t lanes = DepthwiseLanesPerRow(s, taps_per_lane);
  if (s.kh * lanes > max_terms) return -1;
  for (int64_t ky = 0; ky < s.kh; ++ky) {
    for (int64_t j = 0; j < lanes; ++j) {
      row_of[ky * lanes + j] = rows[ky];
      off[ky * lanes + j] = taps_per_lane * j * s.dw * pitch;
    }
  }
  return s.kh * lanes;
}

// One depthwise output row: acc[ow * c + ch] (natural order) = sum over ky
// and lanes j of dot(rows[ky][(ow * sw + j * taps_per_lane * dw) * pitch + l],
// w_lanes[(ky * lanes + j) * pitch + l]) with l the channel's lane, where
// rows[ky] is the lane-image row oh * sh + ky * dh and dot multiplies the
// lane's taps by the weights packed the same way.
using DepthwiseRowS8 = void (*)(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes,
                                int32_t* acc);

// One row of the lane image, every step-th pixel of it: the lane of channel
// ch of pixel u (at p[u * step * pitch + l]) packs x[u * step * c + ch + t *
// partner] for the taps_per_lane taps t, for pixels u < pixels and channels
// ch < c. With stride 2 the outputs read only even pixels (when
// taps_per_lane * dw is even): step 2 builds those.
using LaneRowS8 = void (*)(const uint8_t* x, int64_t pixels, int64_t c, int64_t step, int64_t partner, int32_t* p);

// The output row requantized in registers: y[ow * c + ch] as the GEMM
// epilogue would write acc, for the outputs DepthwiseRowRequantApplies to,
// with out.col_offset and out.scale given in lane order (pitch entries, zero
// past c).
using DepthwiseRowRequantS8 = void (*)(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes,
                                       const GemmS8Output& out, void* y);

// Two output rows at once, oh and oh + 1, for stride 1 and dilation 1 down:
// rows holds the kh + 1 lane rows oh .. oh + kh, y0 and y1 the output rows.
// Returns false, having written nothing, for kernels it does not unroll.
using DepthwiseRowPairRequantS8 = bool (*)(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes,
                                           const GemmS8Output& out, void* y0, void* y1);

// u8/s8 outputs with float scales and no zero-point rows.
inline bool DepthwiseRowRequantApplies(const GemmS8Output& out) {
  return (out.kind == GemmS8Output::Kind::kU8 || out.kind == GemmS8Output::Kind::kS8) && out.m0 == nullptr &&
         out.row_sum == nullptr && out.scale != nullptr;
}

struct DepthwiseS8Info {
  const char* name;
  CpuFeatures needs;
  int taps_per_lane;
  DepthwiseLaneOrder order;
  DepthwiseRowS8 row;
  LaneRowS8 lane_row;
  DepthwiseRowRequantS8 row_requant = nullptr;           // optional
  DepthwiseRowPairRequantS8 row_pair_requant = nullptr;  // optional, with row_requant
};
const std::vector<DepthwiseS8Info>& DepthwiseS8Kernels();  // best last (ops/cpu/kernels.inc)

// Direct convolution tile: tile[r * nr + c] = sum over taps t and bytes
// i < cin_p of a[tap_offsets[t] + r * a_rs + i] * B(t * cin_p + i, c), for all
// mr rows, where B is a panel packed as for the GEMM (group-major, nr
// columns). cin_p is a multiple of the row's k_align.
using ConvTapsS8 = void (*)(int64_t taps, const int64_t* tap_offsets, int64_t cin_p, const uint8_t* a,
                            int64_t a_rs, const int8_t* b_panel, int32_t* tile);

struct ConvTapsS8Info {
  const char* name;
  CpuFeatures needs;
  int mr, nr, k_align;
  ConvTapsS8 tile;
  GemmEpilogueS8 epilogue;
  bool preferred;             // faster than im2col + GEMM: chosen by default
  void (*begin)() = nullptr;  // per thread and task (AMX tile configuration)
  void (*end)() = nullptr;
  int64_t max_cin = 0;        // preferred only up to this many input channels (0: any)
  int64_t max_cout = 0;       // and output channels
};
const std::vector<ConvTapsS8Info>& ConvTapsS8Kernels();  // best last (ops/cpu/kernels.inc)

// An RGB row as 4-byte pixels: dst[4 q + c] = src[q * step * 3 + c] for
// c < 3, dst[4 q + 3] = pad, q < count (step 1 or 2: a stride-2 phase).
using ExpandPixelsS8 = void (*)(const uint8_t* src, int64_t count, int64_t step, uint8_t pad, uint8_t* dst);
namespace ref {
void ExpandPixels3To4(const uint8_t* src, int64_t count, int64_t step, uint8_t pad, uint8_t* dst);
}  // namespace ref
namespace avx512vbmi {
void ExpandPixels3To4(const uint8_t* src, int64_t count, int64_t step, uint8_t pad, uint8_t* dst);
}  // namespace avx512vbmi

class ConvS8 {
 public:
  // weights: [cout, cin (1 for depthwise), kh, kw] s8 (ONNX layout).
  static absl::StatusOr<std::unique_ptr<ConvS8>> Create(const ConvS8Shape& shape, const int8_t* weights,
                                                        CpuFeatures features);
  // Runs a depthwise convolution with this kernel row instead of the best.
  void ForceDepthwise(const DepthwiseS8Info& k) {
    dw_ = &k;
    PackDepthwise();
  }

  // Runs group-1 convolutions with this direct tap kernel row (but for
  // weight zero points and 1x1 read in place).
  void ForceDirect(const ConvTapsS8Info& k) { PackDirect(k); }

  // The weights depend only on channels and kernel size: `s` may change the
  // batch, image size, strides, dilations and padding of the one given to
  // Create (the overloads without it use that one).
  size_t ScratchBytes(int threads) const { return ScratchBytes(shape_, threads); }
  size_t ScratchBytes(const ConvS8Shape& s, int threads) const;
  // x: NHWC u8; y: NHWC of out.kind. out.scale etc. are per output channel;
  // col_offset / row_sum / col_zb are filled here. w_zero_points: per output
  // channel, null = 0 (depthwise: a second pass over the same lane rows with
  // weight 1 gives the window sums of x they multiply).
  void Run(const uint8_t* x, int32_t zx, const int32_t* bias, const GemmS8Output& out, void* y, void* scratch,
           ParallelRunner* pool) const {
    Run(shape_, x, zx, bias, nullptr, out, y, scratch, pool);
  }
  void Run(const ConvS8Shape& s, const uint8_t* x, int32_t zx, const int32_t* bias, const int32_t* w_zero_points,
           const GemmS8Output& out, void* y, void* scratch, ParallelRunner* pool) const;
  int64_t PackedBytes() const {
    if (!packed_.data) return static_cast<int64_t>(dw_lanes_.size() * 4);
    return packed_.bytes() + (direct_packed_.data && direct_packed_.data != packed_.data ? direct_packed_.bytes() : 0);
  }
  // The kernel a run of the shape given to Create takes (a 1x1 convolution
  // over 8 or fewer channels: the narrow GEMM, whose conditions
  // NarrowGemmS8Applies checks, but for weight zero points and u8/s8 output).
  const char* kernel_name() const {
    if (shape_.depthwise) return dw_->name;
    if (direct_uk_ != nullptr) return direct_uk_->name;
    const bool pointwise = shape_.kh == 1 && shape_.kw == 1 && shape_.sh == 1 && shape_.sw == 1 &&
                           shape_.pad_t == 0 && shape_.pad_l == 0 && shape_.pad_b == 0 && shape_.pad_r == 0;
    return pointwise && NarrowGemmS8Applies(*uk_, shape_.cout, shape_.cin) ? kNarrowGemmS8Name : uk_->name;
  }

 private:
  ConvS8Shape shape_;
  const GemmUkernelInfoS8* uk_ = nullptr;
  PackedBS8 packed_;                // group 1
  void PackDepthwise();  // dw_lanes_ for dw_'s lane layout

  // Direct tap kernel: its row and the weights packed with K = taps * cin_p
  // (rows past cin zero).
  void PackDirect(const ConvTapsS8Info& k);
  size_t DirectScratchBytes(const ConvS8Shape& s, int threads) const;
  void RunDirect(const ConvS8Shape& s, const uint8_t* x, int32_t zx, const int32_t* bias, const GemmS8Output& out,
                 void* y, void* scratch, ParallelRunner* pool) const;
  const ConvTapsS8Info* direct_uk_ = nullptr;
  PackedBS8 direct_packed_;  // shares packed_'s data when the layouts agree
  ExpandPixelsS8 expand_rgb_ = ref::ExpandPixels3To4;

  const DepthwiseS8Info* dw_ = nullptr;
  std::vector<int8_t> dw_weights_;  // depthwise: [channel][kh * kw] as given
  std::vector<int32_t> dw_lanes_;   // depthwise: [ky][lane][pitch], taps packed as dw_ multiplies them
  std::vector<int32_t> dw_ones_;    // depthwise: the same layout, weight 1 on every tap
  std::vector<int32_t> dw_wsum_;    // depthwise: sum of the channel's weights
  std::vector<int32_t> dw_lane_of_;    // depthwise: each channel's lane (DepthwiseLaneOf)
  std::vector<int32_t> dw_wsum_rows_;  // depthwise: [k][pitch] sum of kernel rows ky < k's weights, in lane order
};

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_CONV_S8_H_
