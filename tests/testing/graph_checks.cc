// Helpers for the graph-pass tests (graph_checks.h).
#include "tests/testing/graph_checks.h"

#include <algorithm>
#include <cmath>

#include "gtest/gtest.h"

#include "graph/onnx_import.h"
#include "graph/passes/passes.h"
#include "runtime/cpu_caps.h"

namespace kvant::testing {

int CountOps(const Graph& g, const std::string& op) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.op_type == op;
  return n;
}

int CountSteps(const PlanReport& plan, const std::string& op) {
  int n = 0;
  for (const PlanStepReport& step : plan.steps) n += step.op == op;
  return n;
}

absl::StatusOr<Graph> OptimizedGraph(const std::string& bytes, bool dynamic_int8) {
  auto g = ImportOnnxBytes(bytes, ".", "test.onnx");
  if (!g.ok()) return g.status();
  OptimizeOptions opt;
  opt.cpu = ActiveCpuFeatures();
  opt.dynamic_int8 = dynamic_int8;
  if (auto s = OptimizeGraph(*g, opt); !s.ok()) return s;
  return *std::move(g);
}

double MaxAbsDiff(const Tensor& a, const Tensor& b, double* magnitude) {
  EXPECT_EQ(a.shape(), b.shape());
  double err = 0, mag = 0;
  for (int64_t i = 0; i < std::min(a.num_elements(), b.num_elements()); ++i) {
    err = std::max(err, std::fabs(double{a.data<float>()[i]} - b.data<float>()[i]));
    mag = std::max(mag, std::fabs(double{a.data<float>()[i]}));
  }
  if (magnitude != nullptr) *magnitude = mag;
  return err;
}

absl::StatusOr<std::pair<Tensor, Tensor>> RunPlainAndOptimized(const std::string& bytes, const TensorMap& inputs,
                                                               const SessionOptions& options, const std::string& output) {
  SessionOptions plain = options;
  plain.optimize = false;
  plain.dynamic_int8 = false;
  auto a = Session::LoadFromBytes(bytes, plain);
  if (!a.ok()) return a.status();
  auto b = Session::LoadFromBytes(bytes, options);
  if (!b.ok()) return b.status();
  auto ya = a->Run(inputs);
  if (!ya.ok()) return ya.status();
  auto yb = b->Run(inputs);
  if (!yb.ok()) return yb.status();
  return std::make_pair(ya->at(output), yb->at(output));
}

}  // namespace kvant::testing
