// ONNX backend node tests (from pip onnx<1.23, onnx/backend/test/data/node, or
// another set named by KVANT_ONNX_NODE_TESTS with KVANT_KNOWN_FAILURES_FILE):
// every test whose operators Kvant supports is loaded, run on each of its data
// sets and compared with the expected outputs (rtol 1e-3, atol 1e-5, as the
// ONNX backend runner). Prints passed/failed/skipped counts. A failure listed
// in known_failures.txt (with its reason) is expected; any other fails the test.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "graph/onnx_import.h"
#include "gtest/gtest.h"
#include "kvant/kvant.h"

namespace kvant {
namespace {

namespace fs = std::filesystem;

std::map<std::string, std::string> ReadKnownFailures(const std::string& path) {
  std::map<std::string, std::string> known;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 1));
    known[parts[0]] = parts.size() > 1 ? std::string(absl::StripAsciiWhitespace(parts[1])) : "";
  }
  return known;
}

double ValueAt(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DataType::kFloat32: return t.data<float>()[i];
    case DataType::kFloat64: return t.data<double>()[i];
    case DataType::kInt64: return static_cast<double>(t.data<int64_t>()[i]);
    case DataType::kInt32: return t.data<int32_t>()[i];
    case DataType::kInt16: return t.data<int16_t>()[i];
    case DataType::kUInt16: return t.data<uint16_t>()[i];
    case DataType::kUInt32: return t.data<uint32_t>()[i];
    case DataType::kUInt64: return static_cast<double>(t.data<uint64_t>()[i]);
    case DataType::kUInt8: return t.data<uint8_t>()[i];
    case DataType::kInt8: return t.data<int8_t>()[i];
    case DataType::kBool: return t.data<uint8_t>()[i] != 0;
    case DataType::kFloat16:
    case DataType::kBFloat16: return static_cast<double>(t.data<uint16_t>()[i]);  // bit patterns
    default: return NAN;
  }
}

// Empty string when `got` matches `want`.
std::string Compare(const Tensor& want, const Tensor& got) {
  if (want.dtype() != got.dtype()) {
    return std::string("dtype ") + DataTypeName(got.dtype()) + " != " + DataTypeName(want.dtype());
  }
  if (want.shape() != got.shape()) return "shape differs";
  for (int64_t i = 0; i < want.num_elements(); ++i) {
    const double w = ValueAt(want, i), g = ValueAt(got, i);
    if (std::isnan(w) && std::isnan(g)) continue;
    if (std::isinf(w) && w == g) continue;
    if (!(std::fabs(w - g) <= 1e-5 + 1e-3 * std::fabs(w))) {
      return "value at " + std::to_string(i) + ": " + std::to_string(g) + " != " + std::to_string(w);
    }
  }
  return "";
}

// Empty string on success; "skip:<why>" when unsupported; else the failure.
std::string RunOne(const fs::path& dir) {
  auto session = Session::Load((dir / "model.onnx").string());
  if (!session.ok()) {
    if (session.status().code() == absl::StatusCode::kUnimplemented) return "skip:" + std::string(session.status().message());
    return std::string(session.status().message());
  }
  int sets = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_directory() || entry.path().filename().string().rfind("test_data_set_", 0) != 0) continue;
    ++sets;
    TensorMap inputs;
    for (size_t i = 0; i < session->inputs().size(); ++i) {
      auto t = ReadTensorProtoFile((entry.path() / ("input_" + std::to_string(i) + ".pb")).string());
      if (!t.ok()) return "skip:input " + std::string(t.status().message());
      inputs[session->inputs()[i].name] = *t;
    }
    auto outputs = session->Run(inputs);
    if (!outputs.ok()) {
      if (outputs.status().code() == absl::StatusCode::kUnimplemented) return "skip:" + std::string(outputs.status().message());
      return std::string(outputs.status().message());
    }
    for (size_t i = 0; i < session->outputs().size(); ++i) {
      auto want = ReadTensorProtoFile((entry.path() / ("output_" + std::to_string(i) + ".pb")).string());
      if (!want.ok()) return "skip:output " + std::string(want.status().message());
      std::string diff = Compare(*want, outputs->at(session->outputs()[i].name));
      if (!diff.empty()) return "output " + session->outputs()[i].name + ": " + diff;
    }
  }
  return sets == 0 ? "skip:no data sets" : "";
}

TEST(OnnxNodeTests, SupportedOperatorsMatchExpectedOutputs) {
  const char* root = std::getenv("KVANT_ONNX_NODE_TESTS");
  std::string dir = root ? root : KVANT_ONNX_NODE_TESTS_DEFAULT;
  ASSERT_TRUE(!dir.empty() && fs::exists(dir)) << "ONNX node tests not found at '" << dir
                                              << "': run tools/setup (pip onnx<1.23 ships them)";
  const char* known_file = std::getenv("KVANT_KNOWN_FAILURES_FILE");
  const auto known = ReadKnownFailures(known_file ? known_file : KVANT_KNOWN_FAILURES);
  std::vector<fs::path> tests;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory()) tests.push_back(e.path());
  }
  std::sort(tests.begin(), tests.end());
  int passed = 0, failed = 0, skipped = 0, expected_failures = 0;
  const bool verbose = std::getenv("KVANT_CONFORMANCE_VERBOSE") != nullptr;
  for (const fs::path& t : tests) {
    const std::string name = t.filename().string();
    const std::string result = RunOne(t);
    if (result.rfind("skip:", 0) == 0) {
      ++skipped;
      if (verbose) std::printf("SKIP %s: %s\n", name.c_str(), result.c_str() + 5);
      continue;
    }
    auto k = known.find(name);
    if (result.empty()) {
      ++passed;
      if (k != known.end()) std::printf("NOTE %s passes but is listed in known_failures.txt\n", name.c_str());
      continue;
    }
    if (k != known.end()) {
      ++expected_failures;
      if (verbose) std::printf("KNOWN %s: %s (%s)\n", name.c_str(), result.c_str(), k->second.c_str());
      continue;
    }
    ++failed;
    ADD_FAILURE() << name << ": " << result;
  }
  std::printf("ONNX node tests: %d passed, %d failed, %d known failures, %d skipped (unsupported)\n", passed, failed,
              expected_failures, skipped);
  EXPECT_GT(passed, 100) << "suspiciously few node tests ran";
}

}  // namespace
}  // namespace kvant
