// `kvant bench MODEL.onnx`: FP32 against BF16, INT8 (quantized on the fly
// with the quantizer's defaults, or a given file) and dynamic INT8, with
// ONNX Runtime beside it on request: latency, memory and accuracy in one
// table (tools/bench/report.h), timed interleaved (tools/bench/timing.h).
//
// 1. Evaluation inputs: --data DIR, or seeded random batches.
// 2. FP32 reference outputs on them (Kvant's FP32 session).
// 3. The INT8 model: --int8-model, MODEL itself when it is quantized, or
//    `kvant quantize`'s defaults calibrated on --calib (else the eval data).
// 4. One row per precision and thread count: load (peak RSS growth), plan
//    (arena, weights, kernels), outputs on the eval batches (accuracy).
// 5. ONNX Runtime's rows (--vs onnxruntime), then all rows timed together.
// 6. Speedups, --profile, and the table, JSON, Markdown and SVG.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "quantize/quantizer.h"
#include "runtime/cpu_caps.h"
#include "tools/bench/kvant_rows.h"
#include "tools/bench/ort_rows.h"
#include "tools/bench/report.h"
#include "tools/bench/stats.h"
#include "tools/bench/timing.h"
#include "tools/commands.h"
#include "tools/dataset.h"
#include "tools/npy.h"

namespace kvant::tools {
namespace {
namespace fs = std::filesystem;
using bench::BenchReport;
using bench::BenchRow;
using bench::Source;

constexpr const char* kPrecisions[] = {"fp32", "bf16", "fp16", "int8", "int8-dynamic"};

absl::StatusOr<std::vector<std::string>> ParsePrecisions(const std::string& list) {
  std::vector<std::string> out;
  for (absl::string_view p : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    if (std::find(std::begin(kPrecisions), std::end(kPrecisions), p) == std::end(kPrecisions)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to parse --precision: each must be one of fp32, bf16, fp16, int8, int8-dynamic, got '%s'", p));
    }
    if (std::find(out.begin(), out.end(), p) == out.end()) out.emplace_back(p);
  }
  if (out.empty()) return absl::InvalidArgumentError("failed to parse --precision: no precision given");
  return out;
}

absl::StatusOr<std::vector<int>> ParseThreads(const std::string& list) {
  std::vector<int> out;
  for (absl::string_view t : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int v;
    if (!absl::SimpleAtoi(t, &v) || v < 1 || v > 1024) {
      return absl::InvalidArgumentError(
          absl::StrFormat("failed to parse --threads: each must be an integer in [1, 1024], got '%s'", t));
    }
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError("failed to parse --threads: no thread count given");
  return out;
}

bool IsQuantized(const quantize::OnnxModel& model) {
  static const char* kOps[] = {"QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger", "QGemm",
                               "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                               "DynamicQuantizeLSTM"};
  for (const auto& node : model.graph().node()) {
    if (node.op_type().rfind("QLinear", 0) == 0) return true;
    for (const char* op : kOps) {
      if (node.op_type() == op) return true;
    }
  }
  return false;
}

// 1. The evaluation batches and a description of them.
absl::StatusOr<std::vector<TensorMap>> EvalBatches(const BenchArgs& args, const Session& session, std::string* what) {
  std::vector<TensorMap> out;
  if (!args.data.empty()) {
    auto data = LoadDataset(args.data, session.inputs(), args.samples, args.batch);
    if (!data.ok()) return data.status();
    for (auto& b : *data) out.push_back(std::move(b.inputs));
    *what = absl::StrFormat("%s (%d batch(es))", args.data, out.size());
    return out;
  }
  auto shapes = ResolveShapes(session, args.shapes);
  if (!shapes.ok()) return shapes.status();
  for (const ValueInfo& vi : session.inputs()) {  // a symbolic batch dimension takes --batch
    const bool given = std::any_of(args.shapes.begin(), args.shapes.end(),
                                   [&](const std::string& s) { return s.rfind(vi.name + "=", 0) == 0; });
    if (!given && !vi.shape.empty() && vi.shape[0] < 0) (*shapes)[vi.name][0] = args.batch;
  }
  const std::vector<int64_t>* first = shapes->empty() ? nullptr : &shapes->begin()->second;
  const int64_t rows = first == nullptr || first->empty() ? 1 : std::max<int64_t>(1, (*first)[0]);
  const int64_t count = std::clamp<int64_t>((args.samples + rows - 1) / rows, 1, 64);
  std::mt19937_64 rng(args.seed);
  for (int64_t b = 0; b < count; ++b) {
    TensorMap m;
    for (const ValueInfo& vi : session.inputs()) m[vi.name] = RandomTensor(vi.dtype, shapes->at(vi.name), rng);
    out.push_back(std::move(m));
  }
  *what = absl::StrFormat("seeded random (seed %d, %d batch(es); give --data DIR for real inputs)", args.seed, count);
  return out;
}

// A fresh directory under $TMPDIR for the files the child processes read,
// removed with everything in it at the end.
class WorkDir {
 public:
  static absl::StatusOr<WorkDir> Create() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(tmp ? tmp : "/tmp", "/kvant-bench-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      return absl::InternalError(absl::StrFormat("failed to create a work directory %s", pattern));
    }
    return WorkDir(pattern);
  }
  WorkDir(WorkDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  ~WorkDir() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  explicit WorkDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// 3. The INT8 model quantized by `kvant quantize`'s defaults (x86 preset,
// min-max ranges, QDQ), written to `out`.
absl::StatusOr<Source> QuantizeOnTheFly(const BenchArgs& args, const quantize::OnnxModel& model,
                                        const std::vector<TensorMap>& eval, const std::vector<ValueInfo>& inputs,
                                        int threads, const std::string& out, std::string* calibrated_on,
                                        std::vector<TensorMap>* calib_inputs) {
  std::vector<quantize::CalibrationBatch> batches;
  if (!args.calib.empty()) {
    auto loaded = LoadDataset(args.calib, inputs, 0, 8);
    if (!loaded.ok()) return loaded.status();
    batches = *std::move(loaded);
    *calibrated_on = absl::StrFormat("%s (%d batch(es))", args.calib, batches.size());
  } else {
    for (size_t i = 0; i < eval.size(); ++i) batches.push_back({eval[i], absl::StrFormat("eval batch %d", i)});
    *calibrated_on = args.data.empty() ? "the seeded random inputs (not representative: give --calib DIR)"
                                       : "the --data batches (give --calib DIR to keep calibration and evaluation apart)";
  }
  for (const auto& b : batches) calib_inputs->push_back(b.inputs);
  quantize::QuantizeOptions options;
  auto scheme = quantize::PresetScheme("x86");
  if (!scheme.ok()) return scheme.status();
  options.scheme = *scheme;
  options.num_threads = threads;
  quantize::QuantizeReport report;
  auto q = quantize::Quantize(model, options, batches, StderrProgress(), &report);
  if (!q.ok()) return q.status();
  if (auto s = q->Save(out); !s.ok()) return s;
  return Source{out, "on the fly: x86 preset, min-max, QDQ"};
}

// Why a Kvant row cannot run, or empty.
std::string SkipReason(const std::string& precision, bool given_quantized, const absl::StatusOr<Source>* int8) {
  if (given_quantized && precision != "int8") return "MODEL is quantized; only its int8 row runs";
  if (precision == "int8" && !int8->ok()) return absl::StrCat("quantization failed: ", int8->status().message());
  return "";
}

// 4. Kvant's rows, with their sessions (empty for rows that did not run).
struct KvantRows {
  std::vector<BenchRow> rows;
  std::vector<std::optional<Session>> sessions;
  std::vector<Source> sources;
  std::vector<double> first_ms;
};

absl::StatusOr<KvantRows> LoadKvantRows(const BenchArgs& args, const std::vector<std::string>& precisions,
                                        const std::vector<int>& threads, const absl::StatusOr<Source>* int8,
                                        bool given_quantized, const std::vector<TensorMap>& eval,
                                        const std::vector<TensorMap>* reference, const std::string& feed_dir,
                                        std::vector<std::string>* notes) {
  KvantRows out;
  for (const std::string& p : precisions) {
    for (int t : threads) {
      BenchRow row;
      row.precision = p;
      row.threads = t;
      row.skipped = SkipReason(p, given_quantized, int8);
      const Source src = p == "int8" && int8->ok() ? **int8 : Source{args.model, args.model};
      std::optional<Session> session;
      double ms = 0;
      if (row.skipped.empty()) {
        std::fprintf(stderr, "bench: loading %s, %d thread(s)\n", p.c_str(), t);
        auto loaded = bench::LoadRow(src, bench::OptionsFor(p, t), eval, reference, row, &ms);
        if (!loaded.ok() && p == "fp32") return loaded.status();
        if (loaded.ok()) {
          session.emplace(*std::move(loaded));
          auto rss = bench::FreshProcessRss(src, row, feed_dir);
          if (rss.ok()) row.peak_rss_bytes = *rss;
        } else {
          row.skipped = std::string(loaded.status().message());
        }
      }
      if (p == "bf16" && session && row.bf16_steps == 0) {
        notes->push_back((ActiveCpuFeatures() & (kCpuAvx512bf16 | kCpuAmxBf16))
                             ? "bf16: no MatMul, Gemm or group-1 convolution with constant weights and K >= 128 nor "
                               "LSTM/GRU/RNN with hidden size >= 128, the layers BF16 covers, so the bf16 rows ran in "
                               "FP32"
                             : "bf16: this CPU has no BF16 arithmetic Kvant uses (AVX-512 BF16, AMX-BF16), so the "
                               "bf16 rows ran in FP32");
      } else if (p == "bf16" && session && t == threads.front()) {
        notes->push_back(absl::StrFormat("bf16: %d step(s) in BF16 (MatMul, Gemm and group-1 convolutions with "
                                         "constant weights and K >= 128, LSTM/GRU/RNN with hidden size >= 128); "
                                         "the rest in FP32", row.bf16_steps));
      }
      if (p == "fp16" && session && t == threads.front()) {
        notes->push_back(absl::StrFormat("fp16: %d step(s) with FP16 weights (MatMul, Gemm, group-1 convolutions and "
                                         "LSTM/GRU/RNN with constant weights), widened to FP32 for the arithmetic: "
                                         "Kvant has no FP16 arithmetic kernels",
                                         row.fp16_steps));
      }
      if (p == "int8-dynamic" && session && row.int8_steps == 0) {
        notes->push_back("int8-dynamic: no MatMul, Gemm or recurrent layer with constant weights, so nothing ran in "
                         "INT8");
      }
      out.rows.push_back(row);
      out.sessions.push_back(std::move(session));
      out.sources.push_back(src);
      out.first_ms.push_back(ms);
    }
  }
  return out;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.close();
  if (!f) return absl::PermissionDeniedError(absl::StrFormat("failed to write %s", path));
  return absl::OkStatus();
}

// 6. Speedup against Kvant's FP32 row of the same thread count, and of
// Kvant's rows against ONNX Runtime's of the same precision and threads.
void FillSpeedups(std::vector<BenchRow>& rows, int64_t batch) {
  for (BenchRow& row : rows) {
    if (!row.skipped.empty() || row.latency.p50_ms <= 0) continue;
    row.throughput = 1e3 * static_cast<double>(batch) / row.latency.p50_ms;
    for (const BenchRow& base : rows) {
      if (!base.skipped.empty() || base.threads != row.threads) continue;
      if (base.runtime == "kvant" && base.precision == "fp32") row.speedup = base.latency.p50_ms / row.latency.p50_ms;
      if (row.runtime == "kvant" && base.runtime == "onnxruntime" && base.precision == row.precision) {
        row.vs_peer = base.latency.p50_ms / row.latency.p50_ms;
      }
    }
  }
}

absl::Status Bench(const BenchArgs& args, BenchReport& report) {
  if (args.device != "cpu") {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to bench %s on --device %s: the CUDA backend does not run whole models yet; tools/gpu_check "
        "benchmarks the CUDA kernels", args.model, args.device));
  }
  if (!args.vs.empty() && args.vs != "onnxruntime") {
    return absl::InvalidArgumentError(absl::StrFormat("failed to parse --vs: must be onnxruntime, got '%s'", args.vs));
  }
  auto precisions = ParsePrecisions(args.precisions);
  if (!precisions.ok()) return precisions.status();
  auto threads = ParseThreads(args.threads);
  if (!threads.ok()) return threads.status();
  const int max_threads = *std::max_element(threads->begin(), threads->end());
  auto onnx = quantize::OnnxModel::Load(args.model);
  if (!onnx.ok()) return onnx.status();
  const bool given_quantized = IsQuantized(*onnx);
  auto reference_session = Session::Load(args.model, bench::OptionsFor("fp32", max_threads));
  if (!reference_session.ok()) return reference_session.status();
  auto work = WorkDir::Create();
  if (!work.ok()) return work.status();
  report.model = args.model;
  report.hardware = absl::StrFormat("%s (%s)", CpuModelName(), bench::IsaLevel());
  // 1-2.
  auto eval = EvalBatches(args, *reference_session, &report.inputs);
  if (!eval.ok()) return eval.status();
  if (eval->empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to bench %s: no evaluation rows in %s", args.model,
                                                      report.inputs));
  }
  report.eval_batches = static_cast<int64_t>(eval->size());
  const TensorMap& feed = eval->front();
  report.batch = !feed.empty() && feed.begin()->second.rank() > 0 ? feed.begin()->second.shape()[0] : 1;
  const std::string feed_dir = (fs::path(work->path()) / "feed").string();
  fs::create_directories(feed_dir);
  for (const auto& [name, t] : feed) {
    if (auto s = WriteNpy((fs::path(feed_dir) / (name + ".npy")).string(), t); !s.ok()) return s;
  }
  std::optional<std::vector<TensorMap>> reference;
  if (!given_quantized) {
    std::fprintf(stderr, "bench: FP32 reference outputs on %zu batch(es)\n", eval->size());
    auto outs = bench::RunBatches(*reference_session, *eval);
    if (!outs.ok()) return outs.status();
    reference = *std::move(outs);
  } else {
    report.notes.push_back(absl::StrCat(args.model, " is already quantized: it is the int8 row, with no FP32 reference "
                                        "for speedup and accuracy (bench the FP32 file with --int8-model for those)"));
  }
  // 3.
  absl::StatusOr<Source> int8 = absl::NotFoundError("no int8 row");
  std::vector<TensorMap> calib_inputs;
  if (given_quantized) {
    int8 = Source{args.model, args.model};
  } else if (std::find(precisions->begin(), precisions->end(), "int8") != precisions->end()) {
    if (!args.int8_model.empty()) {
      int8 = Source{args.int8_model, args.int8_model};
      report.calibration = absl::StrCat("(given: ", args.int8_model, ")");
    } else {
      int8 = QuantizeOnTheFly(args, *onnx, *eval, reference_session->inputs(), max_threads,
                              (fs::path(work->path()) / "int8.onnx").string(), &report.calibration, &calib_inputs);
    }
  }
  // 4.
  auto kvant = LoadKvantRows(args, *precisions, *threads, &int8, given_quantized, *eval,
                             reference ? &*reference : nullptr, feed_dir, &report.notes);
  if (!kvant.ok()) return kvant.status();
  std::vector<BenchRow> rows = kvant->rows;
  // 5.
  std::vector<bench::TimedRuns> timed;
  std::vector<size_t> timed_row;
  std::vector<double> timed_first;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!kvant->sessions[i]) continue;
    timed.push_back(bench::TimeSession(&*kvant->sessions[i], &feed));
    timed_row.push_back(i);
    timed_first.push_back(kvant->first_ms[i]);
  }
  std::optional<bench::PeerRows> peer;
  if (args.vs == "onnxruntime") {
    bench::PeerJob job{args.model, *precisions, *threads, &*eval, &calib_inputs, reference_session->inputs(),
                       reference_session->outputs(), reference ? &*reference : nullptr, work->path()};
    // The same INT8 file on both runtimes when there is one; else ONNX
    // Runtime quantizes the FP32 file itself.
    if (given_quantized) job.int8_model = args.model;
    if (!args.int8_model.empty()) job.int8_model = args.int8_model;
    job.model_is_quantized = given_quantized;
    auto started = bench::StartOrtPeer(job, StderrProgress());
    if (!started.ok()) return started.status();
    peer = *std::move(started);
    for (size_t i = 0; i < peer->timed.size(); ++i) {
      timed.push_back(peer->timed[i]);
      timed_row.push_back(rows.size() + peer->timed_row[i]);
      timed_first.push_back(peer->first_ms[i]);
    }
    rows.insert(rows.end(), peer->rows.begin(), peer->rows.end());
  }
  bench::TimingPolicy policy;
  policy.budget_s = args.budget_s;
  policy.rel_ci = args.ci;
  policy.min_runs = args.min_runs;
  auto samples = bench::TimeInterleaved(timed, timed_first, policy, StderrProgress());
  if (!samples.ok()) return samples.status();
  // 6.
  for (size_t i = 0; i < timed.size(); ++i) rows[timed_row[i]].latency = bench::Summarize((*samples)[i]);
  FillSpeedups(rows, report.batch);
  if (args.profile) {
    for (size_t i = 0; i < kvant->sessions.size(); ++i) {
      if (!kvant->sessions[i]) continue;
      std::fprintf(stderr, "bench: profiling %s, %d thread(s)\n", rows[i].precision.c_str(), rows[i].threads);
      auto s = bench::ProfileRow(kvant->sources[i], bench::OptionsFor(rows[i].precision, rows[i].threads), feed, rows[i]);
      if (!s.ok()) return s;
    }
  }
  report.rows = std::move(rows);
  return absl::OkStatus();
}

}  // namespace

int BenchCommand(const BenchArgs& args) {
  BenchReport report;
  if (auto s = Bench(args, report); !s.ok()) return Fail(s);
  std::fputs(bench::RenderText(report).c_str(), stdout);
  for (const auto& [path, render] : {std::pair{args.json, &bench::RenderJson},
                                     std::pair{args.markdown, &bench::RenderMarkdown},
                                     std::pair{args.chart, &bench::RenderSvg}}) {
    if (path.empty()) continue;
    if (auto s = WriteFile(path, render(report)); !s.ok()) return Fail(s);
    std::fprintf(stderr, "bench: wrote %s\n", path.c_str());
  }
  return 0;
}

int BenchMemoryCommand(const BenchMemoryArgs& args) {
  auto bytes = bench::MeasureLoadAndRun(args.model, bench::OptionsFor(args.precision, args.threads), args.inputs);
  if (!bytes.ok()) return Fail(bytes.status());
  std::printf("peak_rss_growth_bytes %lld\n", static_cast<long long>(*bytes));
  return 0;
}

}  // namespace kvant::tools
