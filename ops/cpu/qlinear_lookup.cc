// ONNX Runtime's table-shaped quantized operators and Kvant's byte tables:
// QLinearSigmoid and QLinearLeakyRelu (a 256-entry table of the byte map,
// built per call from the scales), kvant.QLinearTable (the bytes a
// quantized unary chain maps to, computed at load by
// graph/passes/fuse_qdq_table.cc; per channel along an axis, channels
// innermost in NHWC), and QLinearConcat (each input requantized to the
// output's parameters through a table, or copied, row by row).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "ops/cpu/lookup_u8.h"
#include "ops/cpu/quantize_common.h"

namespace kvant::cpu {
namespace {

// Byte -> byte through a 256-entry table of the dequantize -> f -> quantize
// map (QLinearSigmoid, QLinearLeakyRelu), built per call from the scales.
// y = table[x] over the tensor, chunks across the session's threads.
void LookupBytes(const KernelContext& ctx, LookupU8 lookup, const uint8_t* table) {
  constexpr int64_t kChunk = 1 << 16;
  const int64_t n = ctx.input(0).num_elements();
  const uint8_t* x = ctx.input(0).as<const uint8_t>();
  uint8_t* y = ctx.output(0).as<uint8_t>();
  ctx.pool->ParallelFor((n + kChunk - 1) / kChunk, [&](int64_t b0, int64_t b1) {
    const int64_t lo = b0 * kChunk, hi = std::min(n, b1 * kChunk);
    lookup(table, x + lo, hi - lo, y + lo);
  });
}

class QLinearLookup final : public ByteKernel<QLinearLookup> {
 public:
  QLinearLookup(bool sigmoid, float alpha, CpuFeatures cpu)
      : sigmoid_(sigmoid), alpha_(alpha), lookup_(SelectLookupU8(cpu)) {}

  template <typename T>
  absl::Status Apply(const KernelContext& ctx) const {
    const float sx = ScaleAt(ctx, 1, 0), sy = ScaleAt(ctx, 3, 0);
    const float zx = static_cast<float>(ZeroPointAt(ctx, 2, 0)), zy = static_cast<float>(ZeroPointAt(ctx, 4, 0));
    uint8_t table[256];
    for (int v = 0; v < 256; ++v) {
      const float x = (static_cast<float>(static_cast<T>(v)) - zx) * sx;
      const float y = sigmoid_ ? 1.f / (1.f + std::exp(-x)) : (x >= 0 ? x : alpha_ * x);
      table[v] = static_cast<uint8_t>(Saturate<T>(y / sy, zy));
    }
    LookupBytes(ctx, lookup_, table);
    return absl::OkStatus();
  }

 private:
  bool sigmoid_;
  float alpha_;
  LookupU8 lookup_;
};

// kvant.QLinearTable(x, table): y = table[x], the 256 outputs of a quantized
// unary chain computed at load (graph/passes/fuse_qdq_table.cc).
class QLinearTable final : public Kernel {
 public:
  QLinearTable(CpuFeatures cpu, std::string label, std::optional<int64_t> axis, const Tensor& table)
      : lookup_(SelectLookupU8(cpu)), lookup_channels_(SelectLookupChannelsU8(cpu)), label_(std::move(label)),
        axis_(axis) {
    if (axis_) {  // padded for LookupChannelsU8's 4-byte gathers
      const auto* t = static_cast<const uint8_t*>(table.raw_data());
      padded_.assign(t, t + table.num_elements());
      padded_.resize(padded_.size() + 4, 0);
    }
  }
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const uint8_t* table = ctx.input(1).as<const uint8_t>();
    if (!axis_) {
      if (ctx.input(1).num_elements() != 256) {
        return absl::InvalidArgumentError(absl::StrFormat("failed to run node %s: table must have 256 entries, got %d",
                                                          label_, ctx.input(1).num_elements()));
      }
      LookupBytes(ctx, lookup_, table);
      return absl::OkStatus();
    }
    // One table per index along the axis: planes of `inner` bytes.
    const int64_t axis = *axis_ < 0 ? *axis_ + x.rank() : *axis_;
    if (axis < 0 || axis >= x.rank() || ctx.input(1).num_elements() != x.shape[axis] * 256) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to run node %s: per-axis table must have %d x 256 entries for axis %d of a rank-%d input, got %d",
          label_, axis >= 0 && axis < x.rank() ? x.shape[axis] : 0, *axis_, x.rank(), ctx.input(1).num_elements()));
    }
    int64_t inner = 1;
    for (int64_t d = axis + 1; d < x.rank(); ++d) inner *= x.shape[d];
    const int64_t c = x.shape[axis], planes = x.num_elements() / std::max<int64_t>(inner, 1);
    const uint8_t* xs = x.as<const uint8_t>();
    uint8_t* ys = ctx.output(0).as<uint8_t>();
    if (inner == 1 && c > 0) {  // channels innermost (NHWC): rows of c bytes, a table per position
      const int64_t rows = planes / c, per_task = std::max<int64_t>(1, (int64_t{1} << 14) / c);
      ctx.pool->ParallelFor((rows + per_task - 1) / per_task, [&](int64_t t0, int64_t t1) {
        const int64_t r0 = t0 * per_task, r1 = std::min(rows, t1 * per_task);
        lookup_channels_(padded_.data(), c, xs + r0 * c, (r1 - r0) * c, ys + r0 * c);
      });
      return absl::OkStatus();
    }
    ctx.pool->ParallelFor(planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) lookup_(table + p % c * 256, xs + p * inner, inner, ys + p * inner);
    });
    return absl::OkStatus();
  }
  std::string Describe() const override {
    return lookup_ == avx512vbmi::LookupU8 ? "lookup_u8_avx512vbmi" : "lookup_u8_ref";
  }

 private:
  LookupU8 lookup_;
  LookupChannelsU8 lookup_channels_;
  std::string label_;
  std::optional<int64_t> axis_;  // set: one table per index along it
  std::vector<uint8_t> padded_;  // axis_: the tables and 4 zero bytes
};

// QLinearConcat: each input requantized to Y's scale and zero point (a copy
// when they are equal), concatenated along the axis.
class QLinearConcat final : public ByteKernel<QLinearConcat, 2> {
 public:
  QLinearConcat(int64_t axis, CpuFeatures cpu) : axis_(axis), lookup_rows_(SelectLookupRowsU8(cpu)) {}

  template <typename T>
  absl::Status Apply(const KernelContext& ctx) const {
    const TensorArg& y = ctx.output(0);
    const int64_t axis = axis_ < 0 ? axis_ + y.rank() : axis_;
    int64_t outer = 1, after = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= y.shape[d];
    for (int64_t d = axis + 1; d < y.rank(); ++d) after *= y.shape[d];
    const int64_t y_row = y.shape[axis] * after;
    const float sy = ScaleAt(ctx, 0, 0), zy = static_cast<float>(ZeroPointAt(ctx, 1, 0));
    uint8_t* ys = y.as<uint8_t>();
    // Per input: its rows' offset in y's rows and a requantization table
    // (none when its parameters are Y's: a copy).
    const int inputs = (ctx.num_inputs() - 2) / 3;
    std::vector<int64_t> offset(inputs + 1, 0);
    std::vector<std::array<uint8_t, 256>> tables(inputs);
    std::vector<bool> copy(inputs);
    for (int j = 0; j < inputs; ++j) {
      const int i = 2 + 3 * j;
      offset[j + 1] = offset[j] + ctx.input(i).shape[axis] * after;
      const float sx = ScaleAt(ctx, i + 1, 0), zx = static_cast<float>(ZeroPointAt(ctx, i + 2, 0));
      copy[j] = sx == sy && zx == zy;
      for (int v = 0; !copy[j] && v < 256; ++v) {
        const T q = Saturate<T>((static_cast<float>(static_cast<T>(v)) - zx) * sx / sy, zy);
        std::memcpy(&tables[j][v], &q, 1);
      }
    }
    // Blocks of outer rows across the threads; in each, every input's rows
    // in one call (along NHWC channels they are a few dozen bytes each).
    const int64_t block = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(y_row, 1));
    ctx.pool->ParallelFor((outer + block - 1) / block, [&](int64_t b0, int64_t b1) {
      const int64_t o0 = b0 * block, o1 = std::min(outer, b1 * block);
      for (int j = 0; j < inputs; ++j) {
        const int64_t row = offset[j + 1] - offset[j];
        const uint8_t* xs = ctx.input(2 + 3 * j).template as<const uint8_t>();
        lookup_rows_(copy[j] ? nullptr : tables[j].data(), xs + o0 * row, o1 - o0, row, row,
                     ys + o0 * y_row + offset[j], y_row);
      }
    });
    return absl::OkStatus();
  }


 private:
  int64_t axis_;
  LookupRowsU8 lookup_rows_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearLookup(const KernelInit& init) {
  return std::make_unique<QLinearLookup>(init.op == "QLinearSigmoid", init.attrs->GetFloat("alpha", 0.01f), init.cpu);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearTable(const KernelInit& init) {
  const Tensor* table = init.constant_inputs.size() == 2 ? init.constant_inputs[1] : nullptr;
  const bool per_axis = init.attrs->Has("axis");
  if (table == nullptr || (per_axis ? table->num_elements() % 256 != 0 || table->num_elements() == 0
                                    : table->num_elements() != 256)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to compile node %s: input 'table' must be a constant of %s bytes, got %s", init.node_label,
        per_axis ? "C x 256" : "256", table ? std::to_string(table->num_elements()) + " values" : "a computed value"));
  }
  return std::make_unique<QLinearTable>(init.cpu, init.node_label,
                                        per_axis ? std::optional<int64_t>(init.attrs->GetInt("axis", 1)) : std::nullopt,
                                        *table);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearConcat(const KernelInit& init) {
  return std::make_unique<QLinearConcat>(init.attrs->GetInt("axis", 0), init.cpu);
}

}  // namespace kvant::cpu
