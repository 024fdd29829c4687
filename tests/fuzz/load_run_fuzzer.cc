// libFuzzer target: load (import, optimize, compile) an ONNX model from the
// fuzzer's bytes and run it once with seeded inputs. Any crash, sanitizer
// report, hang or unbounded allocation is a bug; a Status is the expected
// answer to garbage. Built by tools/test in build-asan/ with clang; inputs
// that once crashed it are kept in tests/fuzz/regressions.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/load_and_run.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)kvant::fuzz::LoadAndRunOnce(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
