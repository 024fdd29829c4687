// libFuzzer target: load (import, optimize, compile) an ONNX model from the
// fuzzer's bytes and run it once with seeded inputs. Any crash, sanitizer
// report, hang or unbounded allocation is a bug; a Status is the expected
// answer to garbage. Built by tools/test in build-fuzz/ with clang.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "kvant/kvant.h"

namespace {

// Fills `t` from a small linear congruential generator: floats in [-2, 2),
// integers in [-1, 3) (valid indices and sizes, mostly), bools.
void Fill(kvant::Tensor& t, uint64_t seed) {
  uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  const int64_t n = t.num_elements();
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t r = next();
    const float f = static_cast<float>(r % 4096) / 1024.f - 2.f;
    const int64_t k = static_cast<int64_t>(r % 4) - 1;
    switch (t.dtype()) {
      case kvant::DataType::kFloat32: t.data<float>()[i] = f; break;
      case kvant::DataType::kFloat64: t.data<double>()[i] = f; break;
      case kvant::DataType::kInt64: t.data<int64_t>()[i] = k; break;
      case kvant::DataType::kInt32: t.data<int32_t>()[i] = static_cast<int32_t>(k); break;
      case kvant::DataType::kInt8: t.data<int8_t>()[i] = static_cast<int8_t>(r); break;
      case kvant::DataType::kUInt8: t.data<uint8_t>()[i] = static_cast<uint8_t>(r); break;
      case kvant::DataType::kBool: t.data<uint8_t>()[i] = r & 1; break;
      default: std::memset(static_cast<char*>(t.raw_data()) + i * kvant::DataTypeSize(t.dtype()), static_cast<int>(r),
                           kvant::DataTypeSize(t.dtype()));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvant::SessionOptions options;
  options.max_arena_bytes = int64_t{256} << 20;
  options.max_weight_bytes = int64_t{256} << 20;
  // External data must resolve inside a directory that does not exist.
  auto session = kvant::Session::LoadFromBytes(std::string_view(reinterpret_cast<const char*>(data), size), options,
                                               "/nonexistent/kvant-fuzz");
  if (!session.ok()) return 0;
  kvant::TensorMap inputs;
  uint64_t seed = size;
  for (const kvant::ValueInfo& vi : session->inputs()) {
    if (vi.dtype == kvant::DataType::kUndefined || vi.dtype == kvant::DataType::kString) return 0;
    std::vector<int64_t> shape;
    int64_t count = 1;
    for (int64_t d : vi.shape) {
      shape.push_back(d >= 0 ? d : 1 + static_cast<int64_t>(seed++ % 3));
      if (shape.back() > (int64_t{1} << 20) || (count *= std::max<int64_t>(shape.back(), 1)) > (int64_t{1} << 20)) {
        return 0;  // inputs of over a million elements: not what this target is for
      }
    }
    kvant::Tensor t = kvant::Tensor::Uninitialized(vi.dtype, shape);
    Fill(t, seed++);
    inputs[vi.name] = t;
  }
  (void)session->Run(inputs);
  return 0;
}
