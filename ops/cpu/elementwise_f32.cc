// Binary elementwise kernels with numpy broadcasting: Add, Sub, Mul, Div for
// every numeric type (shape arithmetic needs the integer ones), Pow for f32.
// Equal shapes and scalar operands take flat loops; the general case walks
// output rows with per-input strides (0 along broadcast dimensions).
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "absl/strings/str_format.h"
#include "ops/broadcast.h"
#include "ops/kernel.h"

namespace kvant::cpu {
namespace {

enum class BinaryOp { kAdd, kSub, kMul, kDiv, kPow };

// Integer arithmetic wraps (two's complement, as numpy and ONNX Runtime
// produce) instead of overflowing: it is done in the unsigned type, and x / 0
// is 0, INT_MIN / -1 wraps.
template <typename T, BinaryOp kOp>
inline T ApplyInteger(T a, T b) {
  using U = std::make_unsigned_t<std::common_type_t<T, unsigned>>;
  if constexpr (kOp == BinaryOp::kAdd) return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  else if constexpr (kOp == BinaryOp::kSub) return static_cast<T>(static_cast<U>(a) - static_cast<U>(b));
  else if constexpr (kOp == BinaryOp::kMul) return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
  else if constexpr (kOp == BinaryOp::kDiv) {
    if (b == 0) return T{0};
    if constexpr (std::is_signed_v<T>) {
      if (b == T{-1}) return static_cast<T>(U{0} - static_cast<U>(a));
    }
    return static_cast<T>(a / b);
  } else {
    const double p = std::pow(static_cast<double>(a), static_cast<double>(b));
    if (!(p > static_cast<double>(std::numeric_limits<T>::min()))) return std::numeric_limits<T>::min();
    if (!(p < static_cast<double>(std::numeric_limits<T>::max()))) return std::numeric_limits<T>::max();
    return static_cast<T>(p);
  }
}

template <typename T, BinaryOp kOp>
inline T Apply(T a, T b) {
  if constexpr (std::is_integral_v<T>) return ApplyInteger<T, kOp>(a, b);
  else if constexpr (kOp == BinaryOp::kAdd) return a + b;
  else if constexpr (kOp == BinaryOp::kSub) return a - b;
  else if constexpr (kOp == BinaryOp::kMul) return a * b;
  else if constexpr (kOp == BinaryOp::kDiv) return a / b;
  else {
    return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
  }
}

// The loops over one row, as functions of plain pointers: inside
// ParallelFor's lambda the operands are captured references, which the
// compiler reloads after every store (they might alias it) and so never
// vectorized (7 instructions per f32 Add, 4x ONNX Runtime's time).
template <typename T, BinaryOp kOp>
void RowBoth(const T* a, const T* b, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Apply<T, kOp>(a[i], b[i]);
}
template <typename T, BinaryOp kOp>
void RowScalarB(const T* a, T b, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Apply<T, kOp>(a[i], b);
}
template <typename T, BinaryOp kOp>
void RowScalarA(T a, const T* b, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Apply<T, kOp>(a, b[i]);
}

template <typename T, BinaryOp kOp>
void Broadcast(const T* a, const T* b, T* y, const std::vector<int64_t>& as, const std::vector<int64_t>& bs,
               absl::Span<const int64_t> ys, ParallelRunner* pool) {
  int64_t n = 1;
  for (int64_t d : ys) n *= d;
  int64_t na = 1, nb = 1;
  for (int64_t d : as) na *= d;
  for (int64_t d : bs) nb *= d;
  constexpr int64_t kChunk = 16384;
  if (na == n && nb == n) {
    pool->ParallelFor((n + kChunk - 1) / kChunk, [&](int64_t s, int64_t e) {
      const int64_t i0 = s * kChunk;
      RowBoth<T, kOp>(a + i0, b + i0, y + i0, std::min(n, e * kChunk) - i0);
    });
    return;
  }
  if (nb == 1 && na == n) {
    RowScalarB<T, kOp>(a, b[0], y, n);
    return;
  }
  if (na == 1 && nb == n) {
    RowScalarA<T, kOp>(a[0], b, y, n);
    return;
  }
  std::vector<int64_t> out(ys.begin(), ys.end());
  if (out.empty() || n == 0) {
    if (n == 1) y[0] = Apply<T, kOp>(a[0], b[0]);
    return;
  }
  const std::vector<int64_t> sa = BroadcastStrides(as, out), sb = BroadcastStrides(bs, out);
  const int64_t rank = out.size(), inner = out.back(), rows = n / inner;
  const int64_t ia = sa.back(), ib = sb.back();
  pool->ParallelFor(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t oa = 0, ob = 0, rem = r;
      for (int64_t d = rank - 2; d >= 0; --d) {
        const int64_t idx = rem % out[d];
        rem /= out[d];
        oa += idx * sa[d];
        ob += idx * sb[d];
      }
      T* yr = y + r * inner;
      const T* ar = a + oa;
      const T* br = b + ob;
      if (ia == 1 && ib == 1) {
        RowBoth<T, kOp>(ar, br, yr, inner);
      } else if (ia == 1 && ib == 0) {
        RowScalarB<T, kOp>(ar, br[0], yr, inner);
      } else if (ia == 0 && ib == 1) {
        RowScalarA<T, kOp>(ar[0], br, yr, inner);
      } else {
        for (int64_t j = 0; j < inner; ++j) yr[j] = Apply<T, kOp>(ar[j * ia], br[j * ib]);
      }
    }
  });
}

template <typename T>
using BroadcastFn = void (*)(const T*, const T*, T*, const std::vector<int64_t>&, const std::vector<int64_t>&,
                             absl::Span<const int64_t>, ParallelRunner*);

template <typename T>
BroadcastFn<T> Pick(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd: return Broadcast<T, BinaryOp::kAdd>;
    case BinaryOp::kSub: return Broadcast<T, BinaryOp::kSub>;
    case BinaryOp::kMul: return Broadcast<T, BinaryOp::kMul>;
    case BinaryOp::kDiv: return Broadcast<T, BinaryOp::kDiv>;
    case BinaryOp::kPow: return Broadcast<T, BinaryOp::kPow>;
  }
  return nullptr;
}

// x^e for the exponents models use (LayerNorm's square, square roots):
// multiplications instead of pow calls. False for other exponents.
bool PowByConstant(const float* x, float e, float* y, int64_t nx, int64_t ny) {
  if (nx != ny) return false;
  if (e == 2.f) {
    for (int64_t i = 0; i < ny; ++i) y[i] = x[i] * x[i];
  } else if (e == 3.f) {
    for (int64_t i = 0; i < ny; ++i) y[i] = x[i] * x[i] * x[i];
  } else if (e == 1.f) {
    for (int64_t i = 0; i < ny; ++i) y[i] = x[i];
  } else if (e == 0.5f) {
    for (int64_t i = 0; i < ny; ++i) y[i] = std::sqrt(x[i]);
  } else if (e == -1.f) {
    for (int64_t i = 0; i < ny; ++i) y[i] = 1.f / x[i];
  } else {
    return false;
  }
  return true;
}

class Binary final : public Kernel {
 public:
  explicit Binary(BinaryOp op) : op_(op) {}

  size_t ScratchBytes(const KernelShapes& shapes) const override {
    // Pow with an integer or f64 exponent converts it to f32 first.
    if (op_ != BinaryOp::kPow) return 0;
    int64_t n = 1;
    for (int64_t d : shapes.inputs[1]) n *= d;
    return n * 4;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& a = ctx.input(0);
    const TensorArg& b = ctx.input(1);
    const TensorArg& y = ctx.output(0);
    std::vector<int64_t> as(a.shape.begin(), a.shape.end()), bs(b.shape.begin(), b.shape.end());
    switch (a.dtype) {
      case DataType::kFloat32: {
        const float* bp = b.as<const float>();
        if (b.dtype != DataType::kFloat32) {
          float* conv = static_cast<float*>(ctx.scratch);
          for (int64_t i = 0; i < b.num_elements(); ++i) {
            switch (b.dtype) {
              case DataType::kInt64: conv[i] = static_cast<float>(b.as<const int64_t>()[i]); break;
              case DataType::kInt32: conv[i] = static_cast<float>(b.as<const int32_t>()[i]); break;
              case DataType::kFloat64: conv[i] = static_cast<float>(b.as<const double>()[i]); break;
              default: return absl::UnimplementedError("Pow exponent must be f32, f64, s32 or s64");
            }
          }
          bp = conv;
        }
        if (op_ == BinaryOp::kPow && b.num_elements() == 1 && PowByConstant(a.as<const float>(), bp[0], y.as<float>(),
                                                                             a.num_elements(), y.num_elements())) {
          break;
        }
        Pick<float>(op_)(a.as<const float>(), bp, y.as<float>(), as, bs, y.shape, ctx.pool);
        break;
      }
#define KVANT_BINARY_CASE(dtype, T) \
      case dtype: Pick<T>(op_)(a.as<const T>(), b.as<const T>(), y.as<T>(), as, bs, y.shape, ctx.pool); break;
      KVANT_BINARY_CASE(DataType::kFloat64, double)
      KVANT_BINARY_CASE(DataType::kInt8, int8_t)
      KVANT_BINARY_CASE(DataType::kUInt8, uint8_t)
      KVANT_BINARY_CASE(DataType::kInt16, int16_t)
      KVANT_BINARY_CASE(DataType::kUInt16, uint16_t)
      KVANT_BINARY_CASE(DataType::kInt32, int32_t)
      KVANT_BINARY_CASE(DataType::kUInt32, uint32_t)
      KVANT_BINARY_CASE(DataType::kInt64, int64_t)
      KVANT_BINARY_CASE(DataType::kUInt64, uint64_t)
#undef KVANT_BINARY_CASE
      default:
        return absl::UnimplementedError(absl::StrFormat("binary op on %s", DataTypeName(a.dtype)));
    }
    return absl::OkStatus();
  }

 private:
  BinaryOp op_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateBinary(const KernelInit& init) {
  BinaryOp op;
  if (init.op == "Add") op = BinaryOp::kAdd;
  else if (init.op == "Sub") op = BinaryOp::kSub;
  else if (init.op == "Mul") op = BinaryOp::kMul;
  else if (init.op == "Div") op = BinaryOp::kDiv;
  else if (init.op == "Pow") op = BinaryOp::kPow;
  else return absl::InternalError(absl::StrFormat("no binary op for %s", init.node_label));
  return std::make_unique<Binary>(op);
}

}  // namespace kvant::cpu
