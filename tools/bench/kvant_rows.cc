// Kvant's rows of `kvant bench` (see the header).
#include "tools/bench/kvant_rows.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "runtime/cpu_caps.h"
#include "tools/bench/peer.h"
#include "tools/commands.h"
#include "tools/npy.h"

namespace kvant::tools::bench {
namespace fs = std::filesystem;

namespace {

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"); -1 if absent.
int64_t ProcStatusBytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    int64_t kb;
    if (absl::ConsumePrefix(&rest, field + ":") && absl::ConsumeSuffix(&rest, "kB") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kb)) {
      return kb * 1024;
    }
  }
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0; false where /proc forbids it).
bool ResetPeakRss() { return static_cast<bool>(std::ofstream("/proc/self/clear_refs") << "5" << std::flush); }

// The ISA level and the two implementations most steps of the plan use.
// The two kernels most steps run. A convolution chain's stages ("expand
// K1+Clip + K2 + project K3+residual") count one each; fused tags after a
// kernel's name ("+Clip", " +residual") are left out.
std::string KernelPath(const PlanReport& plan) {
  std::map<std::string, int> count;
  for (const PlanStepReport& s : plan.steps) {
    if (s.impl.empty() || s.precision == "q/dq") continue;
    for (absl::string_view part : absl::StrSplit(s.impl, " + ")) {
      absl::ConsumePrefix(&part, "expand ");
      absl::ConsumePrefix(&part, "project ");
      part = absl::StripAsciiWhitespace(part.substr(0, part.find('+')));
      if (!part.empty()) ++count[std::string(part)];
    }
  }
  std::vector<std::pair<std::string, int>> top(count.begin(), count.end());
  std::stable_sort(top.begin(), top.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<std::string> parts;
  for (size_t i = 0; i < std::min<size_t>(2, top.size()); ++i) {
    parts.push_back(absl::StrCat(top[i].first, " x", top[i].second));
  }
  return absl::StrCat(IsaLevel(), parts.empty() ? "" : ": ", absl::StrJoin(parts, ", "));
}

}  // namespace

SessionOptions OptionsFor(const std::string& precision, int threads) {
  SessionOptions options;
  options.num_threads = threads;
  options.precision = PrecisionOf(precision);
  options.dynamic_int8 = precision == "int8-dynamic";
  return options;
}

std::string IsaLevel() {
  const CpuFeatures f = ActiveCpuFeatures();
  if (f & kCpuAmxInt8) return "amx";
  if ((f & kCpuAvx512vnni) && (f & kIsaAvx512) == kIsaAvx512) return "avx512_vnni";
  if ((f & kIsaAvx512) == kIsaAvx512) return "avx512";
  if ((f & kIsaAvx2) == kIsaAvx2) return "avx2";
  return "scalar";
}

absl::StatusOr<std::vector<TensorMap>> RunBatches(const Session& session, const std::vector<TensorMap>& batches) {
  std::vector<TensorMap> out;
  for (const TensorMap& b : batches) {
    auto o = session.Run(b);
    if (!o.ok()) return o.status();
    out.push_back(*std::move(o));
  }
  return out;
}

std::map<std::string, std::vector<int64_t>> ShapesOf(const TensorMap& inputs) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, t] : inputs) shapes[name] = t.shape();
  return shapes;
}

// The plan's columns: memory, step counts by precision, kernel path.
void FillFromPlan(const PlanReport& plan, BenchRow& row) {
  row.arena_bytes = plan.arena_bytes;
  row.weight_bytes = plan.weight_bytes;
  row.int8_steps = plan.int8_steps;
  row.float_steps = plan.float_steps;
  row.conversions = plan.conversions;
  row.bf16_steps = row.fp16_steps = 0;
  for (const PlanStepReport& step : plan.steps) {
    row.bf16_steps += step.precision == "bf16";
    row.fp16_steps += step.precision == "fp16";
  }
  row.kernel_path = KernelPath(plan);
}

absl::StatusOr<Session> LoadRow(const Source& src, const SessionOptions& options, const std::vector<TensorMap>& eval,
                                const std::vector<TensorMap>* reference, BenchRow& row, double* first_ms) {
  auto session = Session::Load(src.path, options);
  if (!session.ok()) return session.status();
  const auto t0 = std::chrono::steady_clock::now();
  auto first = session->Run(eval[0]);
  *first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!first.ok()) return first.status();
  row.model_file = src.label;
  row.file_bytes = static_cast<int64_t>(fs::file_size(src.path));
  // With the values: a plan that depends on them (silero VAD's If on its
  // sample rate) is the one Run used.
  auto plan = session->Plan(eval[0]);
  if (!plan.ok()) return plan.status();
  FillFromPlan(*plan, row);
  if (reference && row.precision != "fp32") {
    auto outs = RunBatches(*session, eval);
    if (!outs.ok()) return outs.status();
    auto accuracy = CompareOutputs(*reference, *outs);
    if (!accuracy.ok()) return accuracy.status();
    row.accuracy = *accuracy;
  }
  return session;
}

absl::StatusOr<int64_t> FreshProcessRss(const Source& src, const BenchRow& row, const std::string& feed_dir) {
  auto child = Peer::Start({"/proc/self/exe", "bench-memory", src.path, "--precision", row.precision, "--threads",
                            absl::StrCat(row.threads), "--inputs", feed_dir});
  if (!child.ok()) return child.status();
  auto line = child->ReadLine();
  if (!line.ok()) return line.status();
  int64_t bytes;
  absl::string_view rest = *line;
  if (!absl::ConsumePrefix(&rest, "peak_rss_growth_bytes ") || !absl::SimpleAtoi(rest, &bytes)) {
    return absl::InternalError(absl::StrFormat("bench-memory: expected 'peak_rss_growth_bytes N', got '%s'", *line));
  }
  return bytes;
}

absl::StatusOr<int64_t> MeasureLoadAndRun(const std::string& model, const SessionOptions& options,
                                          const std::string& feed_dir) {
  TensorMap feed;
  for (const auto& entry : fs::directory_iterator(feed_dir)) {
    if (entry.path().extension() != ".npy") continue;
    auto t = ReadNpy(entry.path().string());
    if (!t.ok()) return t.status();
    feed[entry.path().stem().string()] = *std::move(t);
  }
  // A fresh process has had no peak above its start-up yet; resetting the
  // high-water mark (where /proc allows it) also drops reading the inputs.
  ResetPeakRss();
  const int64_t before = ProcStatusBytes("VmHWM");
  if (before < 0) return absl::UnavailableError("failed to read the peak RSS: no VmHWM in /proc/self/status");
  auto session = Session::Load(model, options);
  if (!session.ok()) return session.status();
  if (auto out = session->Run(feed); !out.ok()) return out.status();
  return ProcStatusBytes("VmHWM") - before;
}

TimedRuns TimeSession(const Session* session, const TensorMap* feed) {
  return [session, feed](int k) -> absl::StatusOr<std::vector<double>> {
    std::vector<double> ms;
    for (int i = 0; i < k; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto out = session->Run(*feed);
      const auto t1 = std::chrono::steady_clock::now();
      if (!out.ok()) return out.status();
      ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    return ms;
  };
}

absl::Status ProfileRow(const Source& src, SessionOptions options, const TensorMap& feed, BenchRow& row) {
  options.profile = true;
  auto session = Session::Load(src.path, options);
  if (!session.ok()) return session.status();
  const int runs = static_cast<int>(std::clamp(500.0 / std::max(row.latency.p50_ms, 1e-3), 5.0, 1000.0));
  for (int i = 0; i < runs; ++i) {
    if (auto out = session->Run(feed); !out.ok()) return out.status();
  }
  std::vector<NodeProfile> nodes = session->Profile();
  double total = 0;
  std::map<std::string, double> by_precision;
  for (const NodeProfile& n : nodes) {
    total += n.total_ms;
    by_precision[n.precision] += n.total_ms;
  }
  std::stable_sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a.total_ms > b.total_ms; });
  for (size_t i = 0; i < std::min<size_t>(nodes.size(), 10); ++i) {
    const NodeProfile& n = nodes[i];
    row.profile.push_back({n.node, n.kernel, n.precision, n.total_ms / runs, total > 0 ? n.total_ms / total : 0});
  }
  for (const auto& [p, ms] : by_precision) row.precision_share.emplace_back(p, total > 0 ? ms / total : 0);
  std::stable_sort(row.precision_share.begin(), row.precision_share.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return absl::OkStatus();
}

}  // namespace kvant::tools::bench
