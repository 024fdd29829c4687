// Helpers for the graph-pass tests: the optimized graph of a serialized
// model, operator counts, and one model run with and without optimization.
#ifndef KVANT_TESTS_TESTING_GRAPH_CHECKS_H_
#define KVANT_TESTS_TESTING_GRAPH_CHECKS_H_

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "graph/graph.h"
#include "kvant/kvant.h"

namespace kvant::testing {

// Nodes of `op` (any domain).
int CountOps(const Graph& g, const std::string& op);
// Steps of `op` (any domain) in a session's plan.
int CountSteps(const PlanReport& plan, const std::string& op);

// The graph the load pipeline makes of `bytes` on this machine's CPU.
absl::StatusOr<Graph> OptimizedGraph(const std::string& bytes, bool dynamic_int8 = false);

// max |a - b| over two f32 tensors of one shape (a gtest failure if the
// shapes differ), and max |a| in *magnitude when it is given.
double MaxAbsDiff(const Tensor& a, const Tensor& b, double* magnitude = nullptr);

// Output `output` of the model run unoptimized (first) and with `options` (second).
absl::StatusOr<std::pair<Tensor, Tensor>> RunPlainAndOptimized(const std::string& bytes, const TensorMap& inputs,
                                                               const SessionOptions& options = {},
                                                               const std::string& output = "y");

}  // namespace kvant::testing

#endif  // KVANT_TESTS_TESTING_GRAPH_CHECKS_H_
