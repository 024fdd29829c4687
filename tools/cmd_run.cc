// `kvant run`: load, feed .npy or seeded random inputs, run --repeat times,
// print each output's shape, dtype and statistics and the median latency,
// and write outputs as .npy.
#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ops/float16.h"
#include "tools/commands.h"
#include "tools/dataset.h"
#include "tools/npy.h"

namespace kvant::tools {
namespace {

double ValueAt(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DataType::kFloat32: return t.data<float>()[i];
    case DataType::kFloat64: return t.data<double>()[i];
    case DataType::kInt64: return static_cast<double>(t.data<int64_t>()[i]);
    case DataType::kInt32: return t.data<int32_t>()[i];
    case DataType::kUInt8: return t.data<uint8_t>()[i];
    case DataType::kInt8: return t.data<int8_t>()[i];
    case DataType::kBool: return t.data<uint8_t>()[i];
    case DataType::kFloat16: return HalfToFloat(t.data<uint16_t>()[i]);
    case DataType::kBFloat16: return Bf16ToFloat(t.data<uint16_t>()[i]);
    default: return NAN;
  }
}

}  // namespace

absl::StatusOr<std::map<std::string, std::vector<int64_t>>> ResolveShapes(const Session& session,
                                                                          const std::vector<std::string>& specs) {
  std::map<std::string, std::vector<int64_t>> given;
  for (const std::string& spec : specs) {
    std::vector<std::string> kv = absl::StrSplit(spec, absl::MaxSplits('=', 1));
    std::vector<int64_t> dims;
    bool ok = kv.size() == 2;
    for (absl::string_view d : absl::StrSplit(ok ? kv[1] : "", ',', absl::SkipEmpty())) {
      int64_t v;
      ok = ok && absl::SimpleAtoi(d, &v) && v >= 0;
      dims.push_back(v);
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrFormat("--shape must be NAME=D0,D1,..., got '%s'", spec));
    given[kv[0]] = dims;
  }
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const ValueInfo& vi : session.inputs()) {
    if (auto it = given.find(vi.name); it != given.end()) {
      shapes[vi.name] = it->second;
      continue;
    }
    std::vector<int64_t> s = vi.shape;
    for (int64_t& d : s) d = d < 0 ? 1 : d;  // symbolic dimensions default to 1
    shapes[vi.name] = s;
  }
  return shapes;
}

int RunCommand(const RunArgs& args) {
  SessionOptions options;
  options.num_threads = args.threads;
  options.profile = args.profile;
  options.dynamic_int8 = args.dynamic_int8;
  options.precision = PrecisionOf(args.precision);
  auto session = Session::Load(args.model, options);
  if (!session.ok()) return Fail(session.status());

  TensorMap inputs;
  for (const std::string& spec : args.inputs) {
    std::vector<std::string> kv = absl::StrSplit(spec, absl::MaxSplits('=', 1));
    if (kv.size() != 2) return Fail(absl::InvalidArgumentError(absl::StrFormat("--input must be NAME=FILE.npy, got '%s'", spec)));
    auto t = ReadNpy(kv[1]);
    if (!t.ok()) return Fail(t.status());
    inputs[kv[0]] = *t;
  }
  auto shapes = ResolveShapes(*session, args.shapes);
  if (!shapes.ok()) return Fail(shapes.status());
  const uint64_t seed = args.seed_given ? args.seed : std::random_device{}();
  std::mt19937_64 rng(seed);
  bool random = false;
  for (const ValueInfo& vi : session->inputs()) {
    if (inputs.contains(vi.name)) continue;
    inputs[vi.name] = RandomTensor(vi.dtype, shapes->at(vi.name), rng);
    random = true;
  }
  if (random) std::printf("random inputs: seed %llu\n", static_cast<unsigned long long>(seed));

  std::vector<double> ms;
  absl::StatusOr<TensorMap> outputs;
  for (int r = 0; r < args.repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    outputs = session->Run(inputs);
    auto t1 = std::chrono::steady_clock::now();
    if (!outputs.ok()) return Fail(outputs.status());
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  for (const ValueInfo& vi : session->outputs()) {
    const Tensor& t = outputs->at(vi.name);
    double mn = INFINITY, mx = -INFINITY, sum = 0, sq = 0;
    int64_t nan = 0;
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      const double v = ValueAt(t, i);
      if (std::isnan(v)) {
        ++nan;
        continue;
      }
      mn = std::min(mn, v);
      mx = std::max(mx, v);
      sum += v;
      sq += v * v;
    }
    const double n = std::max<int64_t>(1, t.num_elements() - nan);
    const double mean = sum / n;
    std::printf("output %s: %s [%s]  min %.6g  max %.6g  mean %.6g  std %.6g%s\n", vi.name.c_str(),
                std::string(DataTypeName(t.dtype())).c_str(), absl::StrJoin(t.shape(), ",").c_str(), mn, mx, mean,
                std::sqrt(std::max(0.0, sq / n - mean * mean)),
                nan ? absl::StrFormat("  NaN %d", nan).c_str() : "");
    if (!args.output_dir.empty()) {
      std::filesystem::create_directories(args.output_dir);
      // Output names may hold '/' or ':' (exporters' scopes): anything outside
      // [A-Za-z0-9._-] becomes '_' in the file name.
      std::string base = vi.name;
      for (char& ch : base) {
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-') ch = '_';
      }
      std::string file = (std::filesystem::path(args.output_dir) / (base + ".npy")).string();
      if (auto s = WriteNpy(file, t); !s.ok()) return Fail(s);
    }
  }
  for (const std::string& spec : args.labels) {
    std::vector<std::string> kv = absl::StrSplit(spec, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || !outputs->contains(kv[0])) {
      return Fail(absl::InvalidArgumentError(absl::StrFormat("--labels must be OUTPUT=LABELS.npy for a model output, got '%s'", spec)));
    }
    auto labels = ReadNpy(kv[1]);
    if (!labels.ok()) return Fail(labels.status());
    const Tensor& scores = outputs->at(kv[0]);
    if (scores.dtype() != DataType::kFloat32 || scores.rank() != 2 || labels->num_elements() != scores.shape()[0] ||
        (labels->dtype() != DataType::kInt64 && labels->dtype() != DataType::kInt32)) {
      return Fail(absl::InvalidArgumentError(absl::StrFormat(
          "--labels: output '%s' must be f32 [N,classes] and the labels N integers, got %s [%s] and %s [%s]", kv[0],
          DataTypeName(scores.dtype()), absl::StrJoin(scores.shape(), ","), DataTypeName(labels->dtype()),
          absl::StrJoin(labels->shape(), ","))));
    }
    const int64_t n = scores.shape()[0], classes = scores.shape()[1];
    int64_t correct = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float* row = scores.data<float>() + i * classes;
      const int64_t best = std::max_element(row, row + classes) - row;
      const int64_t want = labels->dtype() == DataType::kInt64 ? labels->data<int64_t>()[i] : labels->data<int32_t>()[i];
      correct += best == want;
    }
    std::printf("top-1 accuracy of %s: %.2f%% (%lld/%lld)\n", kv[0].c_str(), 100.0 * correct / std::max<int64_t>(n, 1),
                static_cast<long long>(correct), static_cast<long long>(n));
  }
  if (args.profile) {
    double total = 0;
    for (const NodeProfile& p : session->Profile()) total += p.total_ms;
    std::printf("%-44s %-38s %10s %7s\n", "node", "kernel", "ms/run", "share");
    for (const NodeProfile& p : session->Profile()) {
      std::printf("%-44s %-38s %10.4f %6.1f%%\n", p.node.c_str(), p.kernel.c_str(), p.total_ms / std::max<int64_t>(p.calls, 1),
                  total > 0 ? 100.0 * p.total_ms / total : 0.0);
    }
  }
  std::sort(ms.begin(), ms.end());
  std::printf("latency: median %.3f ms over %d run(s) (min %.3f, max %.3f), %d thread(s)\n", ms[ms.size() / 2],
              args.repeat, ms.front(), ms.back(), args.threads);
  return 0;
}

}  // namespace kvant::tools
