// One fuzzing step, shared by the libFuzzer target and the regression test
// over tests/fuzz/regressions: load an ONNX model from bytes (import,
// optimize, compile) and run it once with seeded inputs. Returns the first
// failure; a crash or sanitizer report is the bug a Status must replace.
#ifndef KVANT_TESTS_FUZZ_LOAD_AND_RUN_H_
#define KVANT_TESTS_FUZZ_LOAD_AND_RUN_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "kvant/kvant.h"

namespace kvant::fuzz {

// Fills `t` from a small linear congruential generator: floats in [-2, 2),
// integers in [-1, 3) (valid indices and sizes, mostly), bools.
inline void Fill(Tensor& t, uint64_t seed) {
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
      case DataType::kFloat32: t.data<float>()[i] = f; break;
      case DataType::kFloat64: t.data<double>()[i] = f; break;
      case DataType::kInt64: t.data<int64_t>()[i] = k; break;
      case DataType::kInt32: t.data<int32_t>()[i] = static_cast<int32_t>(k); break;
      case DataType::kInt8: t.data<int8_t>()[i] = static_cast<int8_t>(r); break;
      case DataType::kUInt8: t.data<uint8_t>()[i] = static_cast<uint8_t>(r); break;
      case DataType::kBool: t.data<uint8_t>()[i] = r & 1; break;
      default:
        std::memset(static_cast<char*>(t.raw_data()) + i * DataTypeSize(t.dtype()), static_cast<int>(r),
                    DataTypeSize(t.dtype()));
    }
  }
}

// Inputs take their declared shapes, unknown dimensions 1 to 3; models whose
// inputs exceed a million elements are skipped (OkStatus). Arena and weights
// are capped at 32 MB each, so that valid but heavy models (a fuzzer-made
// ConvTranspose of 1.7 G multiply-adds ran past the 10-second timeout under
// the sanitizers) are refused at load with a Status instead of timing out:
// the target looks for crashes, not for large computations.
inline absl::Status LoadAndRunOnce(std::string_view bytes) {
  SessionOptions options;
  options.max_arena_bytes = int64_t{32} << 20;
  options.max_weight_bytes = int64_t{32} << 20;
  // External data must resolve inside a directory that does not exist.
  auto session = Session::LoadFromBytes(bytes, options, "/nonexistent/kvant-fuzz");
  if (!session.ok()) return session.status();
  TensorMap inputs;
  uint64_t seed = bytes.size();
  for (const ValueInfo& vi : session->inputs()) {
    if (vi.dtype == DataType::kUndefined || vi.dtype == DataType::kString) return absl::OkStatus();
    std::vector<int64_t> shape;
    int64_t count = 1;
    for (int64_t d : vi.shape) {
      shape.push_back(d >= 0 ? d : 1 + static_cast<int64_t>(seed++ % 3));
      if (shape.back() > (int64_t{1} << 20) || (count *= std::max<int64_t>(shape.back(), 1)) > (int64_t{1} << 20)) {
        return absl::OkStatus();  // inputs of over a million elements: not what this target is for
      }
    }
    Tensor t = Tensor::Uninitialized(vi.dtype, shape);
    Fill(t, seed++);
    inputs[vi.name] = t;
  }
  return session->Run(inputs).status();
}

}  // namespace fuzz

#endif  // KVANT_TESTS_FUZZ_LOAD_AND_RUN_H_
