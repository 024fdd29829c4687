// Cast between all numeric types and bool. Integers convert through int64,
// floats (f16, bf16 by their bit patterns) through double. Float to integer
// truncates toward zero; values outside the target type saturate and NaN
// becomes 0 (ONNX leaves these undefined; C++ makes them undefined behaviour).
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/float16.h"
#include "ops/kernel.h"

namespace kvant::cpu {
namespace {

bool IsFloat(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat64 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

double LoadFloat(const void* p, int64_t i, DataType t) {
  switch (t) {
    case DataType::kFloat32: return static_cast<const float*>(p)[i];
    case DataType::kFloat64: return static_cast<const double*>(p)[i];
    case DataType::kFloat16: return HalfToFloat(static_cast<const uint16_t*>(p)[i]);
    case DataType::kBFloat16: return Bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
    default: return 0;
  }
}

int64_t LoadInt(const void* p, int64_t i, DataType t) {
  switch (t) {
    case DataType::kUInt8: return static_cast<const uint8_t*>(p)[i];
    case DataType::kInt8: return static_cast<const int8_t*>(p)[i];
    case DataType::kUInt16: return static_cast<const uint16_t*>(p)[i];
    case DataType::kInt16: return static_cast<const int16_t*>(p)[i];
    case DataType::kInt32: return static_cast<const int32_t*>(p)[i];
    case DataType::kUInt32: return static_cast<const uint32_t*>(p)[i];
    case DataType::kInt64: return static_cast<const int64_t*>(p)[i];
    case DataType::kUInt64: return static_cast<int64_t>(static_cast<const uint64_t*>(p)[i]);
    case DataType::kBool: return static_cast<const uint8_t*>(p)[i] != 0;
    default: return 0;
  }
}

// Float to integer without undefined behaviour, as Rust's `as` does: NaN -> 0,
// out-of-range values saturate. Integer to narrower integer keeps the low bits.
template <typename I>
I ToInt(double v) {
  if (std::isnan(v)) return 0;
  // Bounds as doubles: the max of 64-bit types rounds up to 2^63 / 2^64, so
  // compare with >= there.
  constexpr double lo = static_cast<double>(std::numeric_limits<I>::min());
  constexpr double hi = static_cast<double>(std::numeric_limits<I>::max());
  if (v <= lo) return std::numeric_limits<I>::min();
  if (v >= hi) return std::numeric_limits<I>::max();
  return static_cast<I>(v);
}
template <typename I>
I ToInt(int64_t v) {
  return static_cast<I>(v);
}

template <typename T>
void Store(void* p, int64_t i, T v, DataType t) {
  switch (t) {
    case DataType::kFloat32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DataType::kFloat64: static_cast<double*>(p)[i] = static_cast<double>(v); break;
    case DataType::kFloat16: static_cast<uint16_t*>(p)[i] = FloatToHalf(static_cast<float>(v)); break;
    case DataType::kBFloat16: static_cast<uint16_t*>(p)[i] = FloatToBf16(static_cast<float>(v)); break;
    case DataType::kUInt8: static_cast<uint8_t*>(p)[i] = ToInt<uint8_t>(v); break;
    case DataType::kInt8: static_cast<int8_t*>(p)[i] = ToInt<int8_t>(v); break;
    case DataType::kUInt16: static_cast<uint16_t*>(p)[i] = ToInt<uint16_t>(v); break;
    case DataType::kInt16: static_cast<int16_t*>(p)[i] = ToInt<int16_t>(v); break;
    case DataType::kInt32: static_cast<int32_t*>(p)[i] = ToInt<int32_t>(v); break;
    case DataType::kUInt32: static_cast<uint32_t*>(p)[i] = ToInt<uint32_t>(v); break;
    case DataType::kInt64: static_cast<int64_t*>(p)[i] = ToInt<int64_t>(v); break;
    case DataType::kUInt64: static_cast<uint64_t*>(p)[i] = ToInt<uint64_t>(v); break;
    case DataType::kBool: static_cast<uint8_t*>(p)[i] = v != T{0}; break;
    default: break;
  }
}

class Cast final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    const int64_t n = x.num_elements();
    if (x.dtype == y.dtype) {
      std::memcpy(y.data, x.data, n * DataTypeSize(x.dtype));
    } else if (IsFloat(x.dtype)) {
      for (int64_t i = 0; i < n; ++i) Store<double>(y.data, i, LoadFloat(x.data, i, x.dtype), y.dtype);
    } else {
      for (int64_t i = 0; i < n; ++i) Store<int64_t>(y.data, i, LoadInt(x.data, i, x.dtype), y.dtype);
    }
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateCast(const KernelInit&) { return std::make_unique<Cast>(); }

}  // namespace kvant::cpu
