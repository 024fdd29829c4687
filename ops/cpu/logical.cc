// Comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual -> bool),
// logical operators (Not, And, Or, Xor) and Where, with numpy broadcasting.
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/cpu/broadcast_loop.h"
#include "ops/kernel.h"

namespace kvant::cpu {
namespace {

enum class CompareOp { kEqual, kLess, kGreater, kLessOrEqual, kGreaterOrEqual, kAnd, kOr, kXor };

template <typename T>
bool Compare(CompareOp op, T a, T b) {
  switch (op) {
    case CompareOp::kEqual: return a == b;
    case CompareOp::kLess: return a < b;
    case CompareOp::kGreater: return a > b;
    case CompareOp::kLessOrEqual: return a <= b;
    case CompareOp::kGreaterOrEqual: return a >= b;
    case CompareOp::kAnd: return a && b;
    case CompareOp::kOr: return a || b;
    case CompareOp::kXor: return bool(a) != bool(b);
  }
  return false;
}

template <typename T>
void CompareAll(CompareOp op, const TensorArg& a, const TensorArg& b, const TensorArg& y) {
  const T* pa = a.as<const T>();
  const T* pb = b.as<const T>();
  uint8_t* py = y.as<uint8_t>();
  ForEachBroadcast<2>({a.shape, b.shape}, y.shape,
                      [&](int64_t o, const std::array<int64_t, 2>& off) { py[o] = Compare(op, pa[off[0]], pb[off[1]]); });
}

class CompareKernel final : public Kernel {
 public:
  explicit CompareKernel(CompareOp op) : op_(op) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& a = ctx.input(0);
    switch (a.dtype) {
      case DataType::kFloat32: CompareAll<float>(op_, a, ctx.input(1), ctx.output(0)); break;
      case DataType::kFloat64: CompareAll<double>(op_, a, ctx.input(1), ctx.output(0)); break;
      case DataType::kInt8: CompareAll<int8_t>(op_, a, ctx.input(1), ctx.output(0)); break;
      case DataType::kUInt8: case DataType::kBool: CompareAll<uint8_t>(op_, a, ctx.input(1), ctx.output(0)); break;
      case DataType::kInt16: CompareAll<int16_t>(op_, a, ctx.input(1), ctx.output(0)); break;
      case DataType::kUInt16: CompareAll<uint16_t>(op_, a, ctx.input(1), ctx.output(0)); break;
      case DataType::kInt32: CompareAll<int32_t>(op_, a, ctx.input(1), ctx.output(0)); break;
      case DataType::kUInt32: CompareAll<uint32_t>(op_, a, ctx.input(1), ctx.output(0)); break;
      case DataType::kInt64: CompareAll<int64_t>(op_, a, ctx.input(1), ctx.output(0)); break;
      case DataType::kUInt64: CompareAll<uint64_t>(op_, a, ctx.input(1), ctx.output(0)); break;
      default: return absl::UnimplementedError(absl::StrFormat("comparison on %s", DataTypeName(a.dtype)));
    }
    return absl::OkStatus();
  }

 private:
  CompareOp op_;
};

class NotKernel final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    const uint8_t* x = ctx.input(0).as<const uint8_t>();
    uint8_t* y = ctx.output(0).as<uint8_t>();
    for (int64_t i = 0; i < ctx.output(0).num_elements(); ++i) y[i] = !x[i];
    return absl::OkStatus();
  }
};

class WhereKernel final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& c = ctx.input(0);
    const TensorArg& x = ctx.input(1);
    const TensorArg& yv = ctx.input(2);
    const TensorArg& out = ctx.output(0);
    const size_t es = DataTypeSize(out.dtype);
    const uint8_t* pc = c.as<const uint8_t>();
    const char* px = static_cast<const char*>(x.data);
    const char* py = static_cast<const char*>(yv.data);
    char* po = static_cast<char*>(out.data);
    ForEachBroadcast<3>({c.shape, x.shape, yv.shape}, out.shape, [&](int64_t o, const std::array<int64_t, 3>& off) {
      std::memcpy(po + o * es, pc[off[0]] ? px + off[1] * es : py + off[2] * es, es);
    });
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateCompare(const KernelInit& init) {
  static const std::pair<const char*, CompareOp> kOps[] = {
      {"Equal", CompareOp::kEqual},     {"Less", CompareOp::kLess},
      {"Greater", CompareOp::kGreater}, {"LessOrEqual", CompareOp::kLessOrEqual},
      {"GreaterOrEqual", CompareOp::kGreaterOrEqual}, {"And", CompareOp::kAnd},
      {"Or", CompareOp::kOr},           {"Xor", CompareOp::kXor}};
  for (const auto& [name, op] : kOps) {
    if (init.op == name) return std::make_unique<CompareKernel>(op);
  }
  return absl::InternalError("unknown comparison " + init.op);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateNot(const KernelInit&) { return std::make_unique<NotKernel>(); }
absl::StatusOr<std::unique_ptr<Kernel>> CreateWhere(const KernelInit&) { return std::make_unique<WhereKernel>(); }

}  // namespace kvant::cpu
