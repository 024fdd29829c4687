// ConvInteger (s32 out), QLinearConv (u8/s8 out, NCHW, with NCHW <-> NHWC
// conversion at its edges) and kvant.QLinearConvNhwc (the same in NHWC
// without the conversions, graph/passes/layout_nhwc.cc): 2-D (and 1-D in
// NCW form, as images one row high), group 1 or depthwise, on the NHWC INT8 convolution (ops/cpu/conv_s8.h). Declared here
// so kvant.QLinearConvChainNhwc (qconv_chain_s8.cc) can run its stages on
// bands of rows (RunShape with a shape of its own).
#ifndef KVANT_OPS_CPU_QCONV_S8_H_
#define KVANT_OPS_CPU_QCONV_S8_H_

#include <memory>
#include <string>
#include <vector>

#include "ops/cpu/conv_s8.h"
#include "ops/kernel.h"

namespace kvant::cpu {

class QConv final : public Kernel {
 public:
  QConv(bool qlinear, bool nhwc, std::string label) : qlinear_(qlinear), nhwc_(nhwc), label_(std::move(label)) {}

  absl::Status Prepare(const KernelInit& init);

  // The run's shape: batch and image from x, geometry from the attributes.
  absl::StatusOr<ConvS8Shape> ShapeFor(absl::Span<const int64_t> x) const;
  size_t ScratchBytes(const KernelShapes& ks) const override;
  size_t ScratchBytesFor(const ConvS8Shape& s, int threads) const;

  absl::Status Run(const KernelContext& ctx) const override;
  // Run with the shape `s` instead of ShapeFor(x): x and y must hold s's
  // input and output (a band of rows whose padding `s` describes).
  absl::Status RunShape(const KernelContext& ctx, const ConvS8Shape& s) const;

  std::string Describe() const override { return conv_->kernel_name(); }
  int64_t PackedBytes() const override { return conv_->PackedBytes(); }

 private:
  struct PreparedWeights {
    std::unique_ptr<ConvS8> conv;
    std::vector<int32_t> zero_points;  // after the sign conversion; empty when all 0
  };
  // Packs the weights (u8 flipped to s8) and converts their zero points.
  absl::StatusOr<PreparedWeights> Weights(const void* w, DataType wtype, const Tensor* wzp) const;
  int w_input() const { return qlinear_ ? 3 : 1; }
  std::vector<int64_t> Kernel() const {
    return spatial_ == 1 ? std::vector<int64_t>{shape_.kw} : std::vector<int64_t>{shape_.kh, shape_.kw};
  }

  bool qlinear_;
  bool nhwc_;  // kvant.QLinearConvNhwc: x and y are NHWC
  std::string label_;
  int64_t spatial_ = 2;  // 1: [n, c, w] images run as one row high
  ConvS8Shape shape_;
  std::unique_ptr<ConvS8> conv_;
  const AttributeMap* attrs_ = nullptr;
  bool fixed_window_ = false;  // explicit padding: shape_ holds the window for every image
  CpuFeatures cpu_ = 0;
  std::vector<int32_t> w_zp_;
  bool weights_constant_ = false;
};

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_QCONV_S8_H_
