// Kvant's rows of `kvant bench`: a session per precision and thread count,
// what its plan says (arena, weights, kernels), its outputs' accuracy,
// its memory in a fresh process, its timed runs and its profile.
#ifndef KVANT_TOOLS_BENCH_KVANT_ROWS_H_
#define KVANT_TOOLS_BENCH_KVANT_ROWS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvant/kvant.h"
#include "tools/bench/report.h"
#include "tools/bench/timing.h"

namespace kvant::tools::bench {

// Where a row's model comes from: a file, and how the report names it.
struct Source {
  std::string path;
  std::string label;
};

// fp32, bf16, int8 (the file decides) and int8-dynamic as session options.
SessionOptions OptionsFor(const std::string& precision, int threads);

// "amx", "avx512_vnni", "avx512", "avx2" or "scalar": what the active
// capability table allows.
std::string IsaLevel();

absl::StatusOr<std::vector<TensorMap>> RunBatches(const Session& session, const std::vector<TensorMap>& batches);
std::map<std::string, std::vector<int64_t>> ShapesOf(const TensorMap& inputs);

// Loads `src` for `row` (precision, threads set), runs eval[0] once
// (`first_ms`), fills the plan columns, and the accuracy columns against
// `reference` (when given, for other than fp32).
absl::StatusOr<Session> LoadRow(const Source& src, const SessionOptions& options, const std::vector<TensorMap>& eval,
                                const std::vector<TensorMap>* reference, BenchRow& row, double* first_ms);

// Peak RSS growth of a fresh process (this binary's hidden `bench-memory`
// command) that loads `src` with `row`'s options and runs the inputs in
// `feed_dir` once.
absl::StatusOr<int64_t> FreshProcessRss(const Source& src, const BenchRow& row, const std::string& feed_dir);

// What `bench-memory` prints: the growth of this process's peak RSS while
// loading `model` and running it once on `feed_dir`'s NAME.npy files.
absl::StatusOr<int64_t> MeasureLoadAndRun(const std::string& model, const SessionOptions& options,
                                          const std::string& feed_dir);

TimedRuns TimeSession(const Session* session, const TensorMap* feed);

// --profile: a profiled session of the row run for about half a second;
// fills row.profile (top operators) and row.precision_share.
absl::Status ProfileRow(const Source& src, SessionOptions options, const TensorMap& feed, BenchRow& row);

}  // namespace kvant::tools::bench

#endif  // KVANT_TOOLS_BENCH_KVANT_ROWS_H_
