// ONNX Runtime's rows of `kvant bench --vs onnxruntime`: the peer process
// (ort_peer.py) runs the same FP32 file, and INT8 files from ONNX Runtime's
// own quantizer on the same calibration batches, with the same thread
// counts and inputs; its outputs are scored against Kvant's FP32 outputs.
#ifndef KVANT_TOOLS_BENCH_ORT_ROWS_H_
#define KVANT_TOOLS_BENCH_ORT_ROWS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvant/kvant.h"
#include "quantize/calibrate.h"
#include "tools/bench/peer.h"
#include "tools/bench/report.h"
#include "tools/bench/timing.h"

namespace kvant::tools::bench {

struct PeerRows {
  std::vector<BenchRow> rows;   // one per precision x threads, skipped ones included
  std::vector<TimedRuns> timed; // for the rows that ran, in order
  std::vector<double> first_ms; // one run's time each, to size the timing rounds
  std::vector<size_t> timed_row;  // index into `rows` of each timed entry
  std::shared_ptr<Peer> peer;
};

struct PeerJob {
  std::string model;  // the FP32 file
  std::vector<std::string> precisions;
  std::vector<int> threads;
  const std::vector<TensorMap>* eval = nullptr;   // eval[0] is the timed input
  const std::vector<TensorMap>* calib = nullptr;  // may be empty: the peer calibrates on eval
  std::vector<ValueInfo> inputs, outputs;
  const std::vector<TensorMap>* reference = nullptr;  // Kvant FP32 outputs per eval batch; null: no accuracy
  std::string work_dir;  // an empty directory for the exchange files
  std::string int8_model;  // run this file for int8 instead of quantizing `model`
  bool model_is_quantized = false;  // `model` itself is INT8: only the int8 row runs
};

absl::StatusOr<PeerRows> StartOrtPeer(const PeerJob& job, const quantize::ProgressFn& progress);

}  // namespace kvant::tools::bench

#endif  // KVANT_TOOLS_BENCH_ORT_ROWS_H_
