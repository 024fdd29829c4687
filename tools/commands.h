// Subcommands of the `kvant` command line; each returns the process exit code.
#ifndef KVANT_TOOLS_COMMANDS_H_
#define KVANT_TOOLS_COMMANDS_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvant/kvant.h"

namespace kvant::tools {

// Prints "kvant: <message>" on stderr; the exit code of a failed command.
inline int Fail(const absl::Status& s) {
  std::fprintf(stderr, "kvant: %s\n", std::string(s.message()).c_str());
  return 1;
}

// SessionOptions::precision for a --precision value (fp32, bf16, fp16; other
// values, int8 and int8-dynamic among them, compute in FP32 there).
inline Precision PrecisionOf(const std::string& flag) {
  return flag == "bf16" ? Precision::kBf16 : flag == "fp16" ? Precision::kFp16 : Precision::kFp32;
}

struct RunArgs {
  std::string model;
  std::vector<std::string> inputs;  // NAME=FILE.npy
  std::vector<std::string> shapes;  // NAME=D0,D1,... for random inputs with symbolic dims
  std::vector<std::string> labels;  // OUTPUT=LABELS.npy: report top-1 accuracy of OUTPUT
  std::string output_dir;
  int threads = 1;
  int repeat = 1;
  uint64_t seed = 0;
  bool seed_given = false;
  bool profile = false;
  bool dynamic_int8 = false;
  std::string precision = "fp32";
};
int RunCommand(const RunArgs& args);

struct InspectArgs {
  std::string model;
  bool hardware = false;
  bool graph = false;
  bool plan = false;
  bool dynamic_int8 = false;
  std::string precision = "fp32";
  std::vector<std::string> shapes;
};
int InspectCommand(const InspectArgs& args);

struct QuantizeArgs {
  std::string model, output;
  std::string preset = "x86";
  std::string method = "minmax";
  double percentile = 99.999;
  std::string calib;
  int64_t calib_samples = 0;  // 0: all rows
  int64_t calib_batch = 8;
  bool per_tensor = false;
  bool symmetric_activations = false;
  std::string activation_type;  // u8 | s8 (default: the preset's)
  bool dynamic = false;
  bool equalize = false;
  bool bias_correction = false;
  std::string format = "qdq";
  std::vector<std::string> exclude;
  std::string accuracy_budget;  // "30" (output SQNR, dB) or "top1:0.5" (with labels); empty: off
  std::string labels;           // LABELS.npy for a top-1 budget
  int threads = 1;
};
int QuantizeCommand(const QuantizeArgs& args);

struct CompareArgs {
  std::string float_model, quant_model, data;
  int64_t samples = 0, batch = 8;
  size_t top = 15;        // layers shown
  size_t try_layers = 5;  // worst layers tried in float for the suggestions
  bool no_suggest = false;
  std::string preset = "x86", method = "minmax";
  bool per_tensor = false;
  int threads = 1;
};
int CompareCommand(const CompareArgs& args);

struct BenchArgs {
  std::string model;
  std::string precisions = "fp32,bf16,int8,int8-dynamic";
  std::string int8_model;  // a quantized file for the int8 rows instead of quantizing on the fly
  std::string calib, data;
  int64_t samples = 64;    // evaluation rows at most
  int64_t batch = 1;       // rows per run when the batch dimension is symbolic
  std::string threads = "1";
  std::string vs;          // "onnxruntime" or empty
  std::string device = "cpu";
  std::string json, markdown, chart;
  std::vector<std::string> shapes;
  uint64_t seed = 1;
  bool profile = false;
  double budget_s = 3;     // timing budget per row
  double ci = 0.01;        // stop when the median is known within this fraction
  int min_runs = 10;
};
int BenchCommand(const BenchArgs& args);

// The hidden `kvant bench-memory MODEL --precision P --threads T --inputs DIR`
// that `kvant bench` runs per row: a fresh process's peak RSS growth while
// loading MODEL and running it once.
struct BenchMemoryArgs {
  std::string model, precision = "fp32", inputs;
  int threads = 1;
};
int BenchMemoryCommand(const BenchMemoryArgs& args);

// NAME=D0,D1,... -> map; symbolic dims of other inputs default to 1.
absl::StatusOr<std::map<std::string, std::vector<int64_t>>> ResolveShapes(const Session& session,
                                                                          const std::vector<std::string>& specs);

}  // namespace kvant::tools

#endif  // KVANT_TOOLS_COMMANDS_H_
