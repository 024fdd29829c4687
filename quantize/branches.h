// Quantizing inside If branches. A model whose whole body sits in an If on
// an input (silero VAD branches on its sample rate) has nothing to quantize
// at its top level; each branch is quantized as a model of its own
// (OnnxModel::Subgraph) and written back, and calibration observes values
// inside branches by carrying them out through their If nodes.
//
// A branch the calibration data never takes has no ranges: it stays float
// (the report names it), and the taken one runs INT8 (silero calibrated at
// 16 kHz quantizes the 16 kHz branch; 8 kHz audio still runs, in float).
// Only If: a Loop or Scan body runs many times per value name, which one
// range per name cannot describe.
#ifndef KVANT_QUANTIZE_BRANCHES_H_
#define KVANT_QUANTIZE_BRANCHES_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "quantize/onnx_model.h"

namespace kvant::quantize {

// Calls `edit` on every If branch of `m` (nested branches before the branch
// around them), writes each edited branch back, raises m's opset to the
// highest a branch needed and reindexes `m`.
absl::Status ForEachBranch(OnnxModel& m, const std::function<absl::Status(OnnxModel&)>& edit);

// Calls `visit` on every If branch of `m` (the same models ForEachBranch
// builds, in the same order), changing nothing.
absl::Status VisitBranches(const OnnxModel& m, const std::function<absl::Status(const OnnxModel&)>& visit);

// Adds graph outputs to `model` for `values`: a value of the top-level
// graph directly (unless it is an input or already an output); a value made
// inside an If branch through new outputs of that If (and of each If
// around it): the branch that makes it returns it, the other branch an
// empty tensor. Returns, for values carried out of branches, the graph
// output's name -> the value's name; values found nowhere are skipped.
// `model`'s lookups are stale afterwards (it is serialized, not edited further).
absl::flat_hash_map<std::string, std::string> ExposeValues(OnnxModel& model, const std::vector<std::string>& values);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_BRANCHES_H_
