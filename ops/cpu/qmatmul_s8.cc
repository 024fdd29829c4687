// Quantized matrix products on the INT8 GEMM, numpy batch broadcasting:
//   MatMulInteger                      u8/s8 x u8/s8 -> s32
//   QLinearMatMul                      -> u8/s8 requantized; kvant's form (graph/passes/fuse_qdq.cc)
//                                      adds an int32 bias per column at scale sa * sb[n]
//   com.microsoft MatMulIntegerToFloat -> f32: (a - za)(b - zb) * sa * sb[n] + bias[n]
//   com.microsoft DynamicQuantizeMatMul  f32 A quantized per call to u8
//                                      (DynamicQuantizeLinear over all of A), -> f32 as above
//   com.microsoft QGemm                2-D, B optionally transposed, int32 bias C at
//                                      scale sa * sb[n]; u8/s8 out with y_scale, else f32
// Constant 2-D B is packed once at load (with its column sums); other B per call.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/cpu/activation_f32.h"
#include "ops/cpu/gemm_s8.h"
#include "ops/cpu/quantize_common.h"

namespace kvant::cpu {
namespace {

enum class Mode { kInteger, kQLinear, kIntegerToFloat, kDynamic, kQGemm };

// Input positions per operator (-1: the operator has no such input).
struct Inputs {
  int a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp, bias;
};
Inputs InputsOf(Mode mode) {
  switch (mode) {
    case Mode::kInteger: return {0, -1, 2, 1, -1, 3, -1, -1, -1};
    case Mode::kQLinear: return {0, 1, 2, 3, 4, 5, 6, 7, 8};  // kvant's form has the bias
    case Mode::kIntegerToFloat: return {0, 2, 4, 1, 3, 5, -1, -1, 6};
    case Mode::kDynamic: return {0, -1, -1, 1, 2, 3, -1, -1, 4};
    case Mode::kQGemm: return {0, 1, 2, 3, 4, 5, 7, 8, 6};
  }
  return {};
}

bool Has(const KernelContext& ctx, int i) { return i >= 0 && ctx.has_input(i); }

class QMatMul final : public Kernel {
 public:
  QMatMul(const GemmUkernelInfoS8& uk, Mode mode, CpuFeatures cpu)
      : uk_(uk), mode_(mode), in_(InputsOf(mode)), cpu_(cpu) {}

  absl::Status Prepare(const KernelInit& init) {
    attrs_ = init.attrs;
    // A fused activation (graph/passes/fuse_activation.cc) on f32 output.
    act_ = ReadFusedActivation(*init.attrs);
    if (mode_ == Mode::kQGemm) {
      trans_b_ = init.attrs->GetInt("transB", 0) != 0;
      alpha_ = init.attrs->GetFloat("alpha", 1.f);
      const bool has_c = static_cast<int>(init.input_types.size()) > in_.bias &&
                         init.input_types[in_.bias] != DataType::kUndefined;
      if (alpha_ != 1.f && has_c) {
        return absl::UnimplementedError(absl::StrFormat(
            "failed to prepare node %s: QGemm with alpha != 1 and a bias C is not supported", init.node_label));
      }
    }
    const Tensor* b = init.constant_inputs[in_.b];
    if (b != nullptr && b->rank() == 2) {
      const int64_t k = b->shape()[trans_b_ ? 1 : 0], n = b->shape()[trans_b_ ? 0 : 1];
      std::vector<int8_t> s = ToSigned(b->raw_data(), b->dtype(), k * n);
      packed_ = trans_b_ ? PackBS8(uk_, k, n, s.data(), 1, k) : PackBS8(uk_, k, n, s.data(), n, 1);
      has_packed_ = true;
    }
    return absl::OkStatus();
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    const auto& a = s.inputs[in_.a];
    const auto& b = s.inputs[in_.b];
    const int64_t k = a.back(), n = trans_b_ ? b.front() : (b.size() > 1 ? b.back() : 1);
    int64_t m = a.size() > 1 ? a[a.size() - 2] : 1;
    if (b.size() <= 2) {  // every batch entry of A in one GEMM (Run)
      for (size_t d = 0; d + 2 < a.size(); ++d) m *= a[d];
    }
    return GemmScratchBytesS8(uk_, m, n, k, s.num_threads) + (m * k + 63) / 64 * 64 + 12 * n + 256;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& a = ctx.input(in_.a);
    const TensorArg& b = ctx.input(in_.b);
    const TensorArg& y = ctx.output(0);
    // Matrix dimensions (1-D operands as a row / a column).
    const int64_t k = a.shape.back();
    int64_t m = a.rank() > 1 ? a.shape[a.rank() - 2] : 1;
    const int64_t n = trans_b_ ? b.shape[0] : (b.rank() > 1 ? b.shape.back() : 1);
    std::vector<int64_t> a_batch(a.shape.begin(), a.shape.end() - std::min<int64_t>(a.rank(), 2));
    std::vector<int64_t> b_batch(b.shape.begin(), b.shape.end() - std::min<int64_t>(b.rank(), 2));
    std::vector<int64_t> y_batch(y.shape.begin(), y.shape.begin() + (y.rank() - (a.rank() > 1) - (b.rank() > 1)));
    if (b_batch.empty() && !a_batch.empty()) {
      // One B for every batch entry of A (a Linear layer over [batch, tokens,
      // K]): the rows of all entries are one matrix, so one GEMM with more rows.
      for (int64_t d : a_batch) m *= d;
      a_batch.clear();
      y_batch.clear();
    }
    const int64_t batches = y.num_elements() / std::max<int64_t>(1, m * n);
    char* cursor = static_cast<char*>(ctx.scratch);
    uint8_t* a_u8 = reinterpret_cast<uint8_t*>(cursor);
    cursor += (m * k + 63) / 64 * 64;
    int32_t* zb = reinterpret_cast<int32_t*>(cursor);
    float* scale = reinterpret_cast<float*>(cursor + 4 * n);
    cursor += (8 * n + 63) / 64 * 64;
    // Activation scale and zero point: measured over all of A (dynamic),
    // else read (s8 activations: zero point + 128 after the sign flip).
    DynamicRange range;
    float a_scale = 1.f;
    int32_t za = 0;
    if (mode_ == Mode::kDynamic) {
      range = ComputeDynamicRange(a.as<const float>(), a.num_elements(), cpu_);
      a_scale = range.scale;
      za = range.zero_point;
    } else {
      za = ZeroPointAt(ctx, in_.a_zp, 0) + (Signed(a.dtype) ? 128 : 0);
      if (in_.a_scale >= 0) a_scale = ScaleAt(ctx, in_.a_scale, 0);
    }
    bool any_zb = false;
    for (int64_t j = 0; j < n; ++j) {
      zb[j] = ZeroPointAt(ctx, in_.b_zp, j) - (Signed(b.dtype) ? 0 : 128);
      any_zb |= zb[j] != 0;
      if (mode_ == Mode::kQLinear || (mode_ == Mode::kQGemm && Has(ctx, in_.y_scale))) {
        scale[j] = alpha_ * a_scale * ScaleAt(ctx, in_.b_scale, j) / ScaleAt(ctx, in_.y_scale, 0);
      } else if (in_.b_scale >= 0) {
        scale[j] = alpha_ * a_scale * ScaleAt(ctx, in_.b_scale, j);
      }
    }
    GemmArgsS8 g;
    g.m = m;
    g.lda = k;
    g.a_zero_point = za;
    g.b_zero_points = any_zb ? zb : nullptr;
    g.ldc = n;
    size_t esize = 4;
    Mode out_mode = mode_;
    if (mode_ == Mode::kQGemm) out_mode = Has(ctx, in_.y_scale) ? Mode::kQLinear : Mode::kIntegerToFloat;
    if (mode_ == Mode::kQGemm || mode_ == Mode::kQLinear) {
      if (Has(ctx, in_.bias)) {
        const TensorArg& c = ctx.input(in_.bias);  // int32, per column or one value
        int32_t* bias = reinterpret_cast<int32_t*>(cursor);
        cursor += (4 * n + 63) / 64 * 64;
        for (int64_t j = 0; j < n; ++j) bias[j] = c.as<const int32_t>()[c.num_elements() == 1 ? 0 : j];
        g.bias = bias;
      }
    }
    switch (out_mode) {
      case Mode::kInteger:
        g.out.kind = GemmS8Output::Kind::kS32;
        break;
      case Mode::kQLinear: {
        const bool s8 = Signed(y.dtype);
        g.out.kind = s8 ? GemmS8Output::Kind::kS8 : GemmS8Output::Kind::kU8;
        g.out.scale = scale;
        g.out.zero_point = ZeroPointAt(ctx, in_.y_zp, 0);
        g.out.lo = s8 ? -128 : 0;
        g.out.hi = s8 ? 127 : 255;
        ApplyClipRange(*attrs_, ScaleAt(ctx, in_.y_scale, 0), g.out.zero_point, &g.out.lo, &g.out.hi);
        esize = 1;
        break;
      }
      case Mode::kIntegerToFloat:
      case Mode::kDynamic:
        g.out.kind = GemmS8Output::Kind::kF32;
        g.out.scale = scale;
        if (mode_ != Mode::kQGemm) g.out.bias_f32 = Has(ctx, in_.bias) ? ctx.input(in_.bias).as<const float>() : nullptr;
        if (!act_.identity()) g.out.act = &act_;
        break;
      case Mode::kQGemm:
        break;
    }
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
      if (mode_ == Mode::kDynamic) {
        QuantizeU8(a.as<const float>() + ao * m * k, m * k, range, a_u8, cpu_);
      } else {
        ToUnsigned(static_cast<const char*>(a.data) + ao * m * k, a.dtype, m * k, a_u8);
      }
      PackedBS8 local;
      if (!has_packed_) {
        std::vector<int8_t> s = ToSigned(static_cast<const char*>(b.data) + bo * k * n, b.dtype, k * n);
        local = trans_b_ ? PackBS8(uk_, k, n, s.data(), 1, k) : PackBS8(uk_, k, n, s.data(), n, 1);
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
  Mode mode_;
  Inputs in_;
  CpuFeatures cpu_;
  const AttributeMap* attrs_ = nullptr;
  ActivationF32 act_;
  bool trans_b_ = false;  // QGemm's transB: B is [N, K]
  float alpha_ = 1.f;
  PackedBS8 packed_;
  bool has_packed_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateQMatMul(const KernelInit& init) {
  const Mode mode = init.op == "QLinearMatMul"          ? Mode::kQLinear
                    : init.op == "MatMulIntegerToFloat" ? Mode::kIntegerToFloat
                    : init.op == "DynamicQuantizeMatMul" ? Mode::kDynamic
                    : init.op == "QGemm"                 ? Mode::kQGemm
                                                         : Mode::kInteger;
  auto k = std::make_unique<QMatMul>(SelectGemmUkernelS8(init.cpu), mode, init.cpu);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
