// kvant.QLinearConvChainNhwc (graph/passes/fuse_conv_chain.cc): an optional
// 1x1 expand kvant.QLinearConvNhwc, a depthwise one and an optional 1x1
// project one, run a band of depthwise output rows at a time as the FP32
// chain does (conv_chain_f32_nhwc.cc): the expand rows a band reads go into
// a sliding row buffer, the band's depthwise rows into a second buffer, the
// project writes y. Each stage is the QLinearConv kernel itself (QConv,
// qconv_s8.h) run single-threaded on a band's shape: the depthwise band is
// an image of exactly the input rows it reads, its top and bottom padding
// what the image's padding leaves of the band's window. Requantization is
// per stage, as unfused: the outputs are the unfused graph's, bit for bit.
// Threads take images, parts of images or groups of small images
// (conv_chain.h). A residual QLinearAdd the pass took in (inputs 25-31)
// is applied to each band's output rows right after the last stage writes
// them, with the QLinearAdd kernel's own row function (QLinearAddRows).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "ops/cpu/conv_chain.h"
#include "ops/cpu/qconv_s8.h"
#include "ops/cpu/quantize_common.h"

namespace kvant::cpu {
namespace {

constexpr int kOperands = 8;  // a stage's QLinearConv inputs after x
constexpr int kResidual = 1 + 3 * kOperands;  // a residual add's other operand, then its scales and zero points
constexpr const char* kStages[3] = {"expand", "depthwise", "project"};

// Bytes of intermediate rows a band keeps (both buffers).
constexpr int64_t kBandBytes = 256 * 1024;

int64_t Align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

class QConvChain final : public Kernel {
 public:
  explicit QConvChain(std::string label) : label_(std::move(label)) {}

  absl::Status Prepare(const KernelInit& init) {
    DataType x_type = init.input_types[0];
    for (int k = 0; k < 3; ++k) {
      const int first = 1 + k * kOperands;
      const auto present = [&](int i) {
        return static_cast<size_t>(i) < init.input_types.size() && init.input_types[i] != DataType::kUndefined;
      };
      if (!present(first + 2)) continue;  // no weights: no stage
      // The stage's output type is its zero point's (the fusion requires one).
      if (!present(first + 6) ||
          (init.input_types[first + 6] != DataType::kUInt8 && init.input_types[first + 6] != DataType::kInt8)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to prepare node %s: the %s stage needs a u8 or s8 y_zero_point", label_, kStages[k]));
      }
      Stage& s = stages_[k];
      s.attrs = init.attrs->WithPrefix(absl::StrCat(kStages[k], ":"));
      KernelInit sub;
      sub.node_label = absl::StrCat(label_, " (", kStages[k], ")");
      sub.op = "QLinearConvNhwc";
      sub.attrs = &s.attrs;
      sub.opset = init.opset;
      sub.cpu = init.cpu;
      sub.input_types = {x_type};
      sub.constant_inputs = {nullptr};
      sub.input_shapes = {Shape()};
      for (int j = 0; j < kOperands; ++j) {
        const size_t i = first + j;
        sub.input_types.push_back(i < init.input_types.size() ? init.input_types[i] : DataType::kUndefined);
        sub.constant_inputs.push_back(i < init.constant_inputs.size() ? init.constant_inputs[i] : nullptr);
        sub.input_shapes.push_back(i < init.input_shapes.size() ? init.input_shapes[i] : Shape());
      }
      s.out_type = init.input_types[first + 6];
      sub.output_types = {s.out_type};
      s.conv = std::make_unique<QConv>(true, true, sub.node_label);
      if (auto st = s.conv->Prepare(sub); !st.ok()) return st;
      s.in_type = x_type;
      x_type = s.out_type;
    }
    if (!stages_[1].conv) {
      return absl::InvalidArgumentError(
          absl::StrFormat("failed to prepare node %s: QLinearConvChainNhwc needs depthwise weights", label_));
    }
    return PrepareAdd(init, x_type);
  }

  // The residual QLinearAdd: constant scalar scales (f32) and zero points
  // (the chain's output type), as ScaleAt/ZeroPointAt read them.
  absl::Status PrepareAdd(const KernelInit& init, DataType y_type) {
    const auto& k = init.constant_inputs;
    if (init.input_types.size() <= static_cast<size_t>(kResidual) ||
        init.input_types[kResidual] == DataType::kUndefined) {
      return absl::OkStatus();
    }
    float v[6];
    for (int j = 0; j < 6; ++j) {
      const size_t i = kResidual + 1 + j;
      const DataType want = j % 2 == 0 ? DataType::kFloat32 : y_type;
      if (i >= k.size() || k[i] == nullptr || k[i]->num_elements() != 1 || k[i]->dtype() != want) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to prepare node %s: the residual add's input %d must be a constant %s scalar", label_, i,
            DataTypeName(want)));
      }
      const uint8_t bits = static_cast<const uint8_t*>(k[i]->raw_data())[0];
      v[j] = j % 2 == 0 ? k[i]->data<float>()[0]
                        : y_type == DataType::kInt8 ? static_cast<float>(static_cast<int8_t>(bits)) : bits;
    }
    add_.present = true;
    add_.chain_is_a = init.attrs->GetInt("add:chain_operand", 0) == 0;
    add_.za = v[1];
    add_.zb = v[3];
    add_.zc = v[5];
    add_.ra = v[0] / v[4];
    add_.rb = v[2] / v[4];
    add_.u8 = y_type == DataType::kUInt8;
    add_.avx512 = (init.cpu & kIsaAvx512) == kIsaAvx512;
    return absl::OkStatus();
  }

  // y[0, n) = QLinearAdd(y, r) (operands in the Add's order).
  void AddResidual(uint8_t* y, const uint8_t* r, int64_t n) const {
    QLinearAddRows(add_.avx512, add_.u8, add_.chain_is_a ? y : r, add_.chain_is_a ? r : y, y, n, add_.za, add_.zb,
                   add_.zc, add_.ra, add_.rb);
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    auto plan = MakePlan(s.inputs[0], s.num_threads);
    return plan.ok() ? plan->chain.slots * plan->slot_bytes + 64 : 0;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    auto planned = MakePlan(ctx.input(0).shape, ctx.pool->num_threads());
    if (!planned.ok()) return planned.status();
    const Plan& plan = *planned;
    const ConvS8Shape& last = stages_[2].conv ? plan.shape[2] : plan.shape[1];
    if (ctx.output(0).shape != std::vector<int64_t>{last.n, last.out_h(), last.out_w(), last.cout}) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to run node %s: output must be [%d,%d,%d,%d], got %s",
                                                        label_, last.n, last.out_h(), last.out_w(), last.cout,
                                                        absl::StrJoin(ctx.output(0).shape, "x")));
    }
    if (add_.present && ctx.input(kResidual).shape != ctx.output(0).shape) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to run node %s: the residual must be [%s], got [%s]",
                                                        label_, absl::StrJoin(ctx.output(0).shape, ","),
                                                        absl::StrJoin(ctx.input(kResidual).shape, ",")));
    }
    char* scratch = static_cast<char*>(ctx.scratch);
    absl::Status status;
    absl::Mutex mu;
    ForEachChainTask(ctx.pool, plan.chain, plan.chain.tasks(plan.shape[1].n), [&](int64_t t, int64_t slot) {
      absl::Status s = RunPart(plan, ctx, t, scratch + slot * plan.slot_bytes);
      if (!s.ok()) {
        absl::MutexLock lock(&mu);
        status.Update(s);
      }
    });
    return status;
  }

  std::string Describe() const override {
    std::string s;
    for (int k = 0; k < 3; ++k) {
      if (!stages_[k].conv) continue;
      if (!s.empty()) s += " + ";
      s += absl::StrCat(k == 1 ? "" : absl::StrCat(kStages[k], " "), stages_[k].conv->Describe());
    }
    return add_.present ? s + " + residual add" : s;
  }

  int64_t PackedBytes() const override {
    int64_t bytes = 0;
    for (const Stage& s : stages_) bytes += s.conv ? s.conv->PackedBytes() : 0;
    return bytes;
  }

 private:
  struct Stage {
    AttributeMap attrs;  // the stage's, without the prefix (QConv keeps a pointer)
    std::unique_ptr<QConv> conv;
    DataType in_type = DataType::kUndefined, out_type = DataType::kUndefined;
  };
  struct ResidualAdd {
    bool present = false, chain_is_a = true, u8 = true, avx512 = false;
    float za = 0, zb = 0, zc = 0, ra = 0, rb = 0;
  };
  struct Plan {
    ConvS8Shape shape[3];  // each present stage over the whole batch
    ChainRows rows;
    ChainPlan chain;
    int64_t stage_scratch = 0;  // the most any stage call needs
    int64_t slot_bytes = 0;
  };

  // The depthwise stage over output rows [o0, o1) of one image whose input
  // rows [first_input(o0), end_input(o0, o1)) are given: an image of those
  // rows, its vertical padding the part of the band's window outside them.
  static ConvS8Shape BandShape(const ConvS8Shape& dw, const ChainRows& r, int64_t o0, int64_t o1) {
    ConvS8Shape s = dw;
    s.n = 1;
    const int64_t i0 = r.first_input(o0), i1 = r.end_input(o0, o1);
    s.h = i1 - i0;
    s.pad_t = i0 - (o0 * dw.sh - dw.pad_t);
    s.pad_b = (o1 - o0 - 1) * dw.sh + (dw.kh - 1) * dw.dh + 1 - s.pad_t - s.h;
    return s;
  }

  absl::StatusOr<Plan> MakePlan(absl::Span<const int64_t> x, int threads) const {
    Plan p;
    std::vector<int64_t> shape(x.begin(), x.end());
    for (int k = 0; k < 3; ++k) {
      if (!stages_[k].conv) continue;
      if (shape.size() != 4) {
        return absl::InvalidArgumentError(
            absl::StrFormat("failed to run node %s: input must be 4-D NHWC, got %s", label_, absl::StrJoin(x, "x")));
      }
      auto s = stages_[k].conv->ShapeFor(shape);
      if (!s.ok()) return s.status();
      if (s->cin != shape[3] || s->out_h() < 1 || s->out_w() < 1) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to run node %s: the %s stage takes %d channels and gives a non-empty image, got input %s",
            label_, kStages[k], s->cin, absl::StrJoin(shape, "x")));
      }
      p.shape[k] = *s;
      shape = {s->n, s->out_h(), s->out_w(), s->cout};
    }
    const ConvS8Shape& dw = p.shape[1];
    const bool expand = stages_[0].conv != nullptr, project = stages_[2].conv != nullptr;
    p.rows = ChainRows{dw.h, dw.out_h(), dw.kh, dw.sh, dw.dh, dw.pad_t};
    p.chain = PlanChain(p.rows, dw.n, threads, kBandBytes, expand ? dw.w * dw.cin : 0,
                        project ? dw.out_w() * dw.cout : 0);
    // Every band's stage calls, for their scratch.
    int64_t most = 0;
    for (int k = 0; k < 3 && p.chain.images > 1; ++k) {
      if (stages_[k].conv) most = std::max<int64_t>(most, stages_[k].conv->ScratchBytesFor(Images(p.shape[k], p.chain.images), 1));
    }
    for (int64_t part = 0; part < p.chain.parts && p.chain.images == 1; ++part) {
      int64_t o_begin, o_end;
      ChainPartRows(p.chain, p.rows, part, &o_begin, &o_end);
      for (int64_t o0 = o_begin; o0 < o_end; o0 += p.chain.band) {
        const int64_t o1 = std::min(o_end, o0 + p.chain.band);
        most = std::max<int64_t>(most, stages_[1].conv->ScratchBytesFor(BandShape(dw, p.rows, o0, o1), 1));
        if (project) most = std::max<int64_t>(most, stages_[2].conv->ScratchBytesFor(Rows(p.shape[2], o1 - o0), 1));
      }
    }
    if (expand && p.chain.images == 1) {
      most = std::max<int64_t>(most, stages_[0].conv->ScratchBytesFor(Rows(p.shape[0], p.chain.buffer_rows), 1));
    }
    p.stage_scratch = Align64(most);
    p.slot_bytes = Align64(p.chain.buffer_rows * dw.w * dw.cin) + Align64(p.chain.band * dw.out_w() * dw.cout) +
                   p.stage_scratch;
    return p;
  }

  // A pointwise stage over `rows` rows of one image.
  static ConvS8Shape Rows(const ConvS8Shape& s, int64_t rows) {
    ConvS8Shape r = s;
    r.n = 1;
    r.h = rows;
    return r;
  }
  // A stage over `n` whole images.
  static ConvS8Shape Images(const ConvS8Shape& s, int64_t n) {
    ConvS8Shape r = s;
    r.n = n;
    return r;
  }

  // Stage k on shape s: x and y as [n, h, w, c] views, its operands the chain's.
  absl::Status RunStage(int k, const KernelContext& ctx, const ConvS8Shape& s, const void* x, void* y,
                        void* scratch) const {
    const Stage& st = stages_[k];
    const int64_t x_shape[4] = {s.n, s.h, s.w, s.cin}, y_shape[4] = {s.n, s.out_h(), s.out_w(), s.cout};
    TensorArg args[1 + kOperands];
    args[0] = TensorArg{st.in_type, absl::MakeConstSpan(x_shape), const_cast<void*>(x)};
    for (int j = 0; j < kOperands; ++j) {
      const int i = 1 + k * kOperands + j;
      if (ctx.has_input(i)) args[1 + j] = ctx.input(i);
    }
    const TensorArg out{st.out_type, absl::MakeConstSpan(y_shape), y};
    InlineRunner inline_runner;
    KernelContext sub;
    sub.inputs = absl::MakeConstSpan(args);
    sub.outputs = absl::MakeConstSpan(&out, 1);
    sub.scratch = scratch;
    sub.pool = &inline_runner;
    return st.conv->RunShape(sub, s);
  }

  absl::Status RunPart(const Plan& plan, const KernelContext& ctx, int64_t t, char* scratch) const {
    const ChainPlan& cp = plan.chain;
    const ConvS8Shape& dw = plan.shape[1];
    const bool expand = stages_[0].conv != nullptr, project = stages_[2].conv != nullptr;
    const int64_t img = cp.first_image(t);
    if (cp.images > 1) return RunImages(plan, ctx, img, scratch);
    int64_t o_begin, o_end;
    ChainPartRows(cp, plan.rows, t % cp.parts, &o_begin, &o_end);
    const int64_t x_c = expand ? plan.shape[0].cin : dw.cin, y_c = project ? plan.shape[2].cout : dw.cout;
    const int64_t in_row = dw.w * dw.cin, out_w = dw.out_w();
    const auto* x = static_cast<const uint8_t*>(ctx.input(0).data) + img * dw.h * dw.w * x_c;
    auto* y = static_cast<uint8_t*>(ctx.output(0).data) + img * dw.out_h() * out_w * y_c;
    ChainRowBuffer rows{scratch, in_row, cp.buffer_rows};
    uint8_t* band_out = reinterpret_cast<uint8_t*>(scratch + Align64(cp.buffer_rows * in_row));
    void* stage_scratch = reinterpret_cast<char*>(band_out) + Align64(cp.band * out_w * dw.cout);
    for (int64_t o0 = o_begin; o0 < o_end; o0 += cp.band) {
      const int64_t o1 = std::min(o_end, o0 + cp.band);
      const int64_t i0 = plan.rows.first_input(o0), i1 = plan.rows.end_input(o0, o1);
      const uint8_t* src = x + i0 * in_row;
      if (expand) {
        if (const int64_t first = rows.Reserve(i0, i1); first < i1) {
          const absl::Status s = RunStage(0, ctx, Rows(plan.shape[0], i1 - first), x + first * dw.w * x_c,
                                          rows.row(first), stage_scratch);
          if (!s.ok()) return s;
        }
        src = reinterpret_cast<const uint8_t*>(rows.row(i0));
      }
      void* dst = project ? static_cast<void*>(band_out) : y + o0 * out_w * y_c;
      if (absl::Status s = RunStage(1, ctx, BandShape(dw, plan.rows, o0, o1), src, dst, stage_scratch); !s.ok()) {
        return s;
      }
      if (project) {
        const absl::Status s =
            RunStage(2, ctx, Rows(plan.shape[2], o1 - o0), band_out, y + o0 * out_w * y_c, stage_scratch);
        if (!s.ok()) return s;
      }
      if (add_.present) {
        const int64_t at = (img * dw.out_h() + o0) * out_w * y_c;
        AddResidual(static_cast<uint8_t*>(ctx.output(0).data) + at,
                    static_cast<const uint8_t*>(ctx.input(kResidual).data) + at, (o1 - o0) * out_w * y_c);
      }
    }
    return absl::OkStatus();
  }

  // Whole images [img, img + plan.chain.images) (fewer at the batch's end),
  // each stage one call over all of them.
  absl::Status RunImages(const Plan& plan, const KernelContext& ctx, int64_t img, char* scratch) const {
    const ChainPlan& cp = plan.chain;
    const ConvS8Shape& dw = plan.shape[1];
    const bool expand = stages_[0].conv != nullptr, project = stages_[2].conv != nullptr;
    const int64_t n = std::min(cp.images, dw.n - img);
    const int64_t x_c = expand ? plan.shape[0].cin : dw.cin, y_c = project ? plan.shape[2].cout : dw.cout;
    const auto* x = static_cast<const uint8_t*>(ctx.input(0).data) + img * dw.h * dw.w * x_c;
    auto* y = static_cast<uint8_t*>(ctx.output(0).data) + img * dw.out_h() * dw.out_w() * y_c;
    uint8_t* mid = reinterpret_cast<uint8_t*>(scratch);
    uint8_t* band_out = mid + Align64(cp.buffer_rows * dw.w * dw.cin);
    void* stage_scratch = band_out + Align64(cp.band * dw.out_w() * dw.cout);
    if (expand) {
      if (absl::Status s = RunStage(0, ctx, Images(plan.shape[0], n), x, mid, stage_scratch); !s.ok()) return s;
    }
    if (absl::Status s = RunStage(1, ctx, Images(dw, n), expand ? mid : x, project ? band_out : y, stage_scratch);
        !s.ok()) {
      return s;
    }
    if (project) {
      if (absl::Status s = RunStage(2, ctx, Images(plan.shape[2], n), band_out, y, stage_scratch); !s.ok()) return s;
    }
    if (add_.present) {
      const int64_t at = img * dw.out_h() * dw.out_w() * y_c;
      AddResidual(y, static_cast<const uint8_t*>(ctx.input(kResidual).data) + at, n * dw.out_h() * dw.out_w() * y_c);
    }
    return absl::OkStatus();
  }

  std::string label_;
  Stage stages_[3];
  ResidualAdd add_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateQConvChain(const KernelInit& init) {
  auto k = std::make_unique<QConvChain>(init.node_label);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
