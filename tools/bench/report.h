// What `kvant bench` measured, and its three renderings: a text table for
// the terminal, JSON for machines (schema: tools/bench/bench_schema.json),
// Markdown for reports, and an SVG bar chart for people (chart.cc).
#ifndef KVANT_TOOLS_BENCH_REPORT_H_
#define KVANT_TOOLS_BENCH_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tools/bench/stats.h"

namespace kvant::tools::bench {

struct OpShare {
  std::string node, kernel, precision;
  double ms_per_run = 0, share = 0;  // share of the profiled time, 0..1
};

struct BenchRow {
  std::string runtime = "kvant";  // or "onnxruntime"
  std::string precision;          // fp32, bf16, fp16, int8, int8-dynamic
  int threads = 1;
  std::string skipped;            // why the row did not run; empty when it ran
  std::string kernel_path;        // ISA and the main kernels, or the peer's provider
  std::string model_file;         // the file this row loaded ("(in memory)" for an on-the-fly quantization)
  int64_t file_bytes = -1;
  int64_t arena_bytes = -1, weight_bytes = -1;  // -1: not known (peers)
  int64_t peak_rss_bytes = -1;    // growth of the process's peak RSS while loading and first running this row
  int int8_steps = -1, float_steps = -1, bf16_steps = -1, fp16_steps = -1, conversions = -1;
  LatencyStats latency;
  double throughput = 0;          // samples per second at p50
  double speedup = 0;             // Kvant FP32 p50 at the same threads / this p50; 0 when unknown
  double vs_peer = 0;             // Kvant rows: ONNX Runtime's p50 at the same precision and threads / this p50
  std::optional<Accuracy> accuracy;  // against Kvant FP32; none for the FP32 row itself
  std::vector<OpShare> profile;      // --profile: operators by share of time
  std::vector<std::pair<std::string, double>> precision_share;  // --profile: time share per precision
};

struct BenchReport {
  std::string model;
  std::string hardware;    // CPU model and active ISA level
  std::string inputs;      // "seeded random (seed 1)" or the data directory
  std::string calibration; // what the on-the-fly INT8 was calibrated on (empty when no INT8 row)
  int64_t batch = 1;       // samples per run
  int64_t eval_batches = 0;
  std::vector<BenchRow> rows;
  std::vector<std::string> notes;
};

std::string RenderText(const BenchReport& r);
std::string RenderMarkdown(const BenchReport& r);
std::string RenderJson(const BenchReport& r);
std::string RenderSvg(const BenchReport& r);

}  // namespace kvant::tools::bench

#endif  // KVANT_TOOLS_BENCH_REPORT_H_
