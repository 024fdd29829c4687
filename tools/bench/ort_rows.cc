// Driving ort_peer.py: exchange files, its row lines, timing commands.
#include "tools/bench/ort_rows.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tools/npy.h"

namespace kvant::tools::bench {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

absl::Status WriteBatches(const std::vector<TensorMap>& batches, const fs::path& dir) {
  for (size_t b = 0; b < batches.size(); ++b) {
    const fs::path d = dir / absl::StrCat("b", b);
    fs::create_directories(d);
    for (const auto& [name, t] : batches[b]) {
      if (auto s = WriteNpy((d / (name + ".npy")).string(), t); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<json> ReadJsonLine(Peer& peer) {
  auto line = peer.ReadLine();
  if (!line.ok()) return line.status();
  json j = json::parse(*line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InternalError(absl::StrFormat("onnxruntime peer: expected a JSON object, got '%s'", *line));
  }
  return j;
}

// The peer's outputs on every eval batch, named as Kvant's outputs.
absl::StatusOr<std::vector<TensorMap>> ReadOutputs(const fs::path& dir, size_t batches,
                                                   const std::vector<ValueInfo>& outputs) {
  std::vector<TensorMap> all(batches);
  for (size_t b = 0; b < batches; ++b) {
    for (size_t k = 0; k < outputs.size(); ++k) {
      auto t = ReadNpy((dir / absl::StrCat("b", b) / absl::StrCat("o", k, ".npy")).string());
      if (!t.ok()) return t.status();
      all[b][outputs[k].name] = *std::move(t);
    }
  }
  return all;
}

}  // namespace

absl::StatusOr<PeerRows> StartOrtPeer(const PeerJob& job, const quantize::ProgressFn& progress) {
  const fs::path work = job.work_dir;
  if (auto s = WriteBatches(*job.eval, work / "eval"); !s.ok()) return s;
  if (job.calib && !job.calib->empty()) {
    if (auto s = WriteBatches(*job.calib, work / "calib"); !s.ok()) return s;
  }
  json spec = {{"model", fs::absolute(job.model).string()},
               {"work", work.string()},
               {"threads", job.threads},
               {"precisions", job.precisions},
               {"eval_batches", job.eval->size()},
               {"calib_batches", job.calib ? job.calib->size() : 0},
               {"int8_model", job.int8_model.empty() ? "" : fs::absolute(job.int8_model).string()},
               {"model_is_quantized", job.model_is_quantized},
               {"inputs", json::array()}};
  for (const ValueInfo& in : job.inputs) spec["inputs"].push_back(in.name);
  {
    std::ofstream(work / "job.json") << spec.dump(1);
    std::ofstream(work / "ort_peer.py") << OrtPeerScript();
  }
  const char* python = std::getenv("KVANT_PYTHON");
  auto started = Peer::Start({python ? python : "python3", (work / "ort_peer.py").string(), (work / "job.json").string()});
  if (!started.ok()) return started.status();
  PeerRows out;
  out.peer = std::make_shared<Peer>(*std::move(started));
  const size_t expected = job.precisions.size() * job.threads.size();
  while (true) {
    auto j = ReadJsonLine(*out.peer);
    if (!j.ok()) {
      return absl::Status(j.status().code(),
                          absl::StrCat("failed to run ONNX Runtime beside Kvant (pip onnxruntime for ",
                                       python ? python : "python3", "; set KVANT_PYTHON to choose): ",
                                       j.status().message()));
    }
    if (j->value("ready", false)) break;
    BenchRow row;
    row.runtime = "onnxruntime";
    row.precision = j->value("precision", "");
    row.threads = j->value("threads", 1);
    if (!(*j)["skipped"].is_null()) {
      row.skipped = (*j)["skipped"].get<std::string>();
      out.rows.push_back(row);
      continue;
    }
    row.model_file = j->value("file", "");
    row.file_bytes = j->value("file_bytes", int64_t{-1});
    row.peak_rss_bytes = j->value("peak_rss_bytes", int64_t{-1});
    row.kernel_path = j->value("kernel_path", "");
    if (job.reference) {
      auto outputs = ReadOutputs(work / "ort" / j->value("row", ""), job.eval->size(), job.outputs);
      if (!outputs.ok()) return outputs.status();
      auto accuracy = CompareOutputs(*job.reference, *outputs);
      if (!accuracy.ok()) return accuracy.status();
      row.accuracy = *accuracy;
    }
    const std::string id = j->value("row", "");
    std::shared_ptr<Peer> peer = out.peer;
    out.timed.push_back([peer, id](int k) -> absl::StatusOr<std::vector<double>> {
      if (auto s = peer->WriteLine(absl::StrCat("time ", id, " ", k)); !s.ok()) return s;
      auto j = ReadJsonLine(*peer);
      if (!j.ok()) return j.status();
      const json& ms = (*j)["ms"];
      if (!ms.is_array() || ms.size() != static_cast<size_t>(k)) {
        return absl::InternalError(absl::StrFormat("onnxruntime peer: expected %d times, got %s", k, j->dump()));
      }
      return ms.get<std::vector<double>>();
    });
    out.timed_row.push_back(out.rows.size());
    out.rows.push_back(row);
    if (progress) progress("onnxruntime rows", static_cast<int64_t>(out.rows.size()), static_cast<int64_t>(expected));
  }
  for (size_t i = 0; i < out.timed.size(); ++i) {
    auto one = out.timed[i](1);
    if (!one.ok()) return one.status();
    out.first_ms.push_back(one->front());
  }
  return out;
}

}  // namespace kvant::tools::bench
