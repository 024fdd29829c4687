// The executor on random graphs: random DAGs of elementwise, concat, slice and
// matmul nodes are compiled and planned; the arena plan must have no two
// co-live buffers overlapping (Verify), stay within 1.10x of the lower bound
// on average, and the outputs must equal a node-by-node evaluation in which
// every tensor has its own buffer (so in-place reuse cannot hide a bug).
#include <random>

#include "graph/onnx_import.h"
#include "gtest/gtest.h"
#include "ops/registry.h"
#include "runtime/compile.h"
#include "runtime/cpu_caps.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::OnnxBuilder;
using testing::RandomF32;

constexpr int64_t kRows = 6, kCols = 8;

// Values all have shape [kRows, kCols] so any two can be combined.
std::string RandomGraph(uint64_t seed, int nodes) {
  std::mt19937_64 rng(seed);
  OnnxBuilder b;
  std::vector<std::string> values = {"x0", "x1"};
  b.Input("x0", DataType::kFloat32, {kRows, kCols}).Input("x1", DataType::kFloat32, {kRows, kCols});
  b.Initializer("w", RandomF32({kCols, kCols}, seed, -0.5f, 0.5f));
  b.Initializer("half", Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {kCols / 2}));
  b.Initializer("zero", Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {0}));
  b.Initializer("one", Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {1}));
  b.Initializer("full", Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {kCols}));
  std::vector<int> uses(2, 0);
  for (int i = 0; i < nodes; ++i) {
    auto pick = [&] {
      // Prefer recent values so lifetimes vary from short to long.
      std::uniform_int_distribution<int> d(std::max<int>(0, values.size() - 6), values.size() - 1);
      int v = std::uniform_int_distribution<int>(0, 4)(rng) == 0 ? std::uniform_int_distribution<int>(0, values.size() - 1)(rng) : d(rng);
      ++uses[v];
      return values[v];
    };
    const std::string out = "v" + std::to_string(i);
    switch (std::uniform_int_distribution<int>(0, 6)(rng)) {
      case 0: b.Node("Add", {pick(), pick()}, {out}); break;
      case 1: b.Node("Mul", {pick(), pick()}, {out}); break;
      case 2: b.Node("Relu", {pick()}, {out}); break;
      case 3: b.Node("Sigmoid", {pick()}, {out}); break;
      case 4: b.Node("MatMul", {pick(), "w"}, {out}); break;
      case 5: {  // split in halves along columns and concatenate them swapped
        const std::string in = pick();
        b.Node("Slice", {in, "zero", "half", "one"}, {out + "_a"});
        b.Node("Slice", {in, "half", "full", "one"}, {out + "_b"});
        OnnxBuilder::SetInt(b.Node("Concat", {out + "_b", out + "_a"}, {out}), "axis", 1);
        break;
      }
      default: b.Node("Sub", {pick(), pick()}, {out}); break;
    }
    values.push_back(out);
    uses.push_back(0);
  }
  // Every value nobody reads becomes an output, so nothing is dead.
  for (size_t v = 2; v < values.size(); ++v) {
    if (uses[v] == 0 || v + 1 == values.size()) b.Output(values[v]);
  }
  return b.Serialize();
}

// Evaluates the graph one node at a time, each value in its own tensor.
absl::flat_hash_map<std::string, Tensor> Reference(const Graph& g, const TensorMap& inputs) {
  absl::flat_hash_map<std::string, Tensor> env(g.initializers.begin(), g.initializers.end());
  for (const auto& [k, v] : inputs) env[k] = v;
  for (const Node& n : g.nodes) {
    const ValueType* t = g.FindType(n.inputs[0]);
    auto def = SelectKernel(CpuKernelDefs(), n.domain, n.op_type, t->dtype, 0, n.Label(), g.opset);
    KernelInit init;
    init.node_label = n.Label();
    init.op = n.op_type;
    init.attrs = &n.attrs;
    init.opset = g.opset;
    std::vector<const Tensor*> ins;
    for (const std::string& in : n.inputs) {
      ins.push_back(&env.at(in));
      init.input_types.push_back(env.at(in).dtype());
      init.constant_inputs.push_back(nullptr);
      init.input_shapes.push_back(Shape::Of(env.at(in).shape()));
    }
    std::vector<ValueType> outs;
    for (const std::string& o : n.outputs) outs.push_back(*g.FindType(o));
    auto r = EvaluateOnCpu(**def, init, ins, outs);
    EXPECT_TRUE(r.ok()) << r.status();
    for (size_t i = 0; i < n.outputs.size(); ++i) env[n.outputs[i]] = (*r)[i];
  }
  return env;
}

TEST(RandomGraphs, PlansNeverOverlapAndOutputsMatchReference) {
  double ratio_sum = 0;
  int count = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    const std::string bytes = RandomGraph(seed, 5 + seed % 30);
    auto graph = ImportOnnxBytes(bytes, ".", "random.onnx");
    ASSERT_TRUE(graph.ok()) << graph.status();
    SessionOptions options;
    auto model = CompileModel(*graph, options, ActiveCpuFeatures());
    ASSERT_TRUE(model.ok()) << model.status();
    auto plan = PlanForShapes(**model, {{"x0", {kRows, kCols}}, {"x1", {kRows, kCols}}});
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_TRUE((*plan)->memory.Verify((*plan)->buffers).ok())
        << (*plan)->memory.Verify((*plan)->buffers) << "\n" << (*plan)->memory.DebugString((*plan)->buffers);
    if ((*plan)->memory.lower_bound > 0) {
      ratio_sum += double((*plan)->memory.arena_bytes) / (*plan)->memory.lower_bound;
      ++count;
    }
    // Outputs against the one-buffer-per-value evaluation of the unoptimized graph.
    auto session = Session::LoadFromBytes(bytes);
    ASSERT_TRUE(session.ok()) << session.status();
    TensorMap inputs = {{"x0", RandomF32({kRows, kCols}, seed * 2)}, {"x1", RandomF32({kRows, kCols}, seed * 2 + 1)}};
    auto out = session->Run(inputs);
    ASSERT_TRUE(out.ok()) << out.status();
    auto raw = ImportOnnxBytes(bytes, ".", "random.onnx");
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE(CompileModel(*raw, options, 0).ok());  // types for every value
    Graph typed = (*CompileModel(*raw, SessionOptions{.optimize = false}, 0))->graph;
    auto want = Reference(typed, inputs);
    for (const auto& [name, t] : *out) {
      const Tensor& w = want.at(name);
      for (int64_t i = 0; i < t.num_elements(); ++i) {
        ASSERT_NEAR(t.data<float>()[i], w.data<float>()[i], 1e-4 * (1 + std::fabs(w.data<float>()[i])))
            << "seed " << seed << " output " << name << " index " << i;
      }
    }
  }
  EXPECT_LE(ratio_sum / count, 1.10) << "mean arena / lower bound over " << count << " random graphs";
}

}  // namespace
}  // namespace kvant
