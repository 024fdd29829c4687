// INT8 convolution in NHWC: u8 input with zero point zx, s8 weights, int32
// bias, output through the INT8 GEMM epilogue (s32, f32, u8 or s8 with
// per-channel requantization and clamps; see ops/cpu/gemm_s8.h).
//
//  - group 1: GEMM with A = the input itself for 1x1 / stride 1 / no padding,
//    else an im2col of output positions (kh x kw x cin bytes per row, padding
//    filled with zx so that it contributes zero); B = the weights packed once.
//  - depthwise (group == cin == cout): a direct kernel over a zx-padded copy
//    of each image; channels are the vector dimension (NHWC), two taps per
//    VPMADDWD (u8 and s8 widened to 16 bits: exact, no saturation), minus
//    zx * sum(w) per channel, then the same epilogue per output row.
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

// One depthwise output row: acc[ow * c + ch] = sum over taps of
// x[(oh * sh + ky * dh) * row + (ow * sw + kx * dw) * c + ch] * w (padded
// input, row = padded width * c); weights as prepared by PrepareDepthwiseS8.
using DepthwiseRowS8 = void (*)(const ConvS8Shape& s, const uint8_t* x_padded, int64_t oh, const int32_t* w_pairs,
                                int32_t* acc);

struct DepthwiseS8Info {
  const char* name;
  CpuFeatures needs;
  DepthwiseRowS8 row;
};
const std::vector<DepthwiseS8Info>& DepthwiseS8Kernels();  // best last (ops/cpu/kernels.inc)

class ConvS8 {
 public:
  // weights: [cout, cin (1 for depthwise), kh, kw] s8 (ONNX layout).
  static absl::StatusOr<std::unique_ptr<ConvS8>> Create(const ConvS8Shape& shape, const int8_t* weights,
                                                        CpuFeatures features);
  // Runs a depthwise convolution with this kernel row instead of the best.
  void ForceDepthwise(const DepthwiseS8Info& k) { dw_ = &k; }

  size_t ScratchBytes(int threads) const;
  // x: NHWC u8; y: NHWC of out.kind. out.scale etc. are per output channel;
  // col_offset / row_sum / col_zb are filled here.
  void Run(const uint8_t* x, int32_t zx, const int32_t* bias, const GemmS8Output& out, void* y, void* scratch,
           ParallelRunner* pool) const;
  const char* kernel_name() const { return shape_.depthwise ? dw_->name : uk_->name; }

 private:
  ConvS8Shape shape_;
  const GemmUkernelInfoS8* uk_ = nullptr;
  PackedBS8 packed_;                // group 1
  const DepthwiseS8Info* dw_ = nullptr;
  std::vector<int32_t> dw_pairs_;   // depthwise: [tap pair][channel] (w0 & 0xffff) | w1 << 16
  std::vector<int32_t> dw_wsum_;    // depthwise: sum of the channel's weights
};

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_CONV_S8_H_
