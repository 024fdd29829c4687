// The public Tensor and DataType helpers. They live in graph/ because the IR
// stores initializers as Tensors; every room above uses the same type.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kvant/kvant.h"

namespace kvant {

size_t DataTypeSize(DataType type) {
  switch (type) {
    case DataType::kFloat32: return 4;
    case DataType::kUInt8: return 1;
    case DataType::kInt8: return 1;
    case DataType::kUInt16: return 2;
    case DataType::kInt16: return 2;
    case DataType::kInt32: return 4;
    case DataType::kInt64: return 8;
    case DataType::kBool: return 1;
    case DataType::kFloat16: return 2;
    case DataType::kFloat64: return 8;
    case DataType::kUInt32: return 4;
    case DataType::kUInt64: return 8;
    case DataType::kBFloat16: return 2;
    default: return 0;
  }
}

const char* DataTypeName(DataType type) {
  switch (type) {
    case DataType::kFloat32: return "f32";
    case DataType::kUInt8: return "u8";
    case DataType::kInt8: return "s8";
    case DataType::kUInt16: return "u16";
    case DataType::kInt16: return "s16";
    case DataType::kInt32: return "s32";
    case DataType::kInt64: return "s64";
    case DataType::kString: return "string";
    case DataType::kBool: return "bool";
    case DataType::kFloat16: return "f16";
    case DataType::kFloat64: return "f64";
    case DataType::kUInt32: return "u32";
    case DataType::kUInt64: return "u64";
    case DataType::kBFloat16: return "bf16";
    default: return "undefined";
  }
}

int64_t Tensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

Tensor Tensor::Uninitialized(DataType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  // Exactly the bytes asked for (AddressSanitizer then sees any overflow).
  void* p = nullptr;
  if (posix_memalign(&p, 64, std::max<size_t>(t.byte_size(), 1)) != 0) throw std::bad_alloc();
  t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  t.data_ = p;
  return t;
}

Tensor Tensor::Zeros(DataType dtype, std::vector<int64_t> shape) {
  Tensor t = Uninitialized(dtype, std::move(shape));
  std::memset(t.data_, 0, std::max<size_t>(t.byte_size(), 1));
  return t;
}

Tensor Tensor::Wrap(DataType dtype, std::vector<int64_t> shape, void* data,
                    std::shared_ptr<void> owner) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::Clone() const {
  if (empty()) return Tensor();
  Tensor t = Zeros(dtype_, shape_);
  if (byte_size() > 0) std::memcpy(t.data_, data_, byte_size());
  return t;
}

absl::StatusOr<Tensor> Tensor::Reshaped(std::vector<int64_t> shape) const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (n != num_elements()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to reshape tensor: element count must be %d, got %d for shape [%s]",
        num_elements(), n, absl::StrJoin(shape, ",")));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

}  // namespace kvant
