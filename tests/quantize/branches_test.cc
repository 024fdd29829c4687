// The quantizer inside If branches (quantize/branches.h): values inside
// branches observed through their If nodes, the branches the calibration
// data takes quantized and run on INT8 kernels once the runtime inlines
// them, the others left float and reported, nested branches, and dynamic
// quantization of a branch's MatMul. (ONNX Runtime runs such a file as
// Kvant does: tests/conformance/ort_oracle.py, kvant_quantized_if.)
#include <cmath>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "quantize/branches.h"
#include "quantize/calibrate.h"
#include "quantize/compare.h"
#include "quantize/mixed_precision.h"
#include "quantize/quantizer.h"
#include "tests/testing/graph_checks.h"
#include "tests/testing/onnx_builder.h"

namespace kvant::quantize {
namespace {

using testing::MaxAbsDiff;
using testing::OnnxBuilder;
using testing::RandomF32;
using testing::ToProto;

// Builds a branch: nodes added with Node(), one float output.
class Branch {
 public:
  explicit Branch(const std::string& name) { g_.set_name(name); }
  onnx::NodeProto& Node(const std::string& op, const std::vector<std::string>& in, const std::string& out,
                        const std::string& name) {
    onnx::NodeProto* n = g_.add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : in) n->add_input(i);
    n->add_output(out);
    return *n;
  }
  // Weights as a Constant node, as PyTorch exports them inside branches.
  void Constant(const std::string& name, const Tensor& value) {
    onnx::AttributeProto* a = Node("Constant", {}, name, name + "_node").add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    *a->mutable_t() = ToProto(name, value);
  }
  onnx::GraphProto Done(const std::string& output) {
    onnx::ValueInfoProto* o = g_.add_output();
    o->set_name(output);
    o->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    return g_;
  }

 private:
  onnx::GraphProto g_;
};

void AddIf(onnx::NodeProto& n, onnx::GraphProto then_branch, onnx::GraphProto else_branch) {
  for (auto [name, g] : {std::pair{"then_branch", &then_branch}, std::pair{"else_branch", &else_branch}}) {
    onnx::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::GRAPH);
    *a->mutable_g() = std::move(*g);
  }
}

// y = If(flag): then 1-D Conv -> Relu -> If(flag): then Conv 1x1, else
// Conv k3 (reading the outer branch's r1); else Conv k3 -> MatMul. Below
// opset 13 the then branch ends in Unsqueeze -> Squeeze with axes attributes
// (which opset 13 made inputs).
std::string IfModel(int64_t opset = 17) {
  OnnxBuilder b(opset);
  b.Input("flag", DataType::kBool, {}).Input("x", DataType::kFloat32, {2, 6, 10}).Output("y");
  Branch inner_then("inner_then"), inner_else("inner_else"), then("then"), other("else");
  inner_then.Constant("w3", RandomF32({4, 8, 1}, 3, -0.3f, 0.3f));
  inner_then.Node("Conv", {"r1", "w3"}, "i1", "conv3");
  inner_else.Constant("w4", RandomF32({4, 8, 3}, 4, -0.3f, 0.3f));
  OnnxBuilder::SetInts(inner_else.Node("Conv", {"r1", "w4"}, "i2", "conv4"), "pads", {1, 1});
  then.Constant("w1", RandomF32({8, 6, 3}, 1, -0.3f, 0.3f));
  then.Constant("b1", RandomF32({8}, 2, -0.1f, 0.1f));
  OnnxBuilder::SetInts(then.Node("Conv", {"x", "w1", "b1"}, "c1", "conv1"), "pads", {1, 1});
  then.Node("Relu", {"c1"}, "r1", "relu1");
  AddIf(then.Node("If", {"flag"}, "io", "inner"), inner_then.Done("i1"), inner_else.Done("i2"));
  if (opset < 13) {
    then.Node("Relu", {"io"}, "r2", "relu2");
    OnnxBuilder::SetInts(then.Node("Unsqueeze", {"r2"}, "u2", "unsqueeze"), "axes", {0});
    OnnxBuilder::SetInts(then.Node("Squeeze", {"u2"}, "t_out", "squeeze"), "axes", {0});
  } else {
    then.Node("Relu", {"io"}, "t_out", "relu2");
  }
  other.Constant("w2", RandomF32({4, 6, 3}, 5, -0.3f, 0.3f));
  OnnxBuilder::SetInts(other.Node("Conv", {"x", "w2"}, "e1", "conv2"), "pads", {1, 1});
  other.Constant("w5", RandomF32({10, 5}, 6, -0.5f, 0.5f));
  other.Node("MatMul", {"e1", "w5"}, "e_out", "matmul");
  AddIf(b.Node("If", {"flag"}, {"y"}, "outer"), then.Done("t_out"), other.Done("e_out"));
  return b.Serialize();
}

Tensor Flag(bool v) { return Tensor::FromVector<uint8_t>(DataType::kBool, {}, {v}); }

TEST(QuantizeBranches, ValuesInsideBranchesAreObservedWhenTheirBranchRuns) {
  auto m = OnnxModel::FromBytes(IfModel(), "if.onnx");
  ASSERT_TRUE(m.ok()) << m.status();
  auto s = SessionWithOutputs(*m, {"r1", "i1", "i2", "e1"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->Conditional("i1"));
  const Tensor x = RandomF32({2, 6, 10}, 7);
  for (bool flag : {true, false}) {
    auto out = s->Run({{"flag", Flag(flag)}, {"x", x}});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->contains("r1"), flag);
    EXPECT_EQ(out->contains("i1"), flag);  // the nested branch the same flag takes
    EXPECT_FALSE(out->contains("i2"));     // nested in the then branch, taken only on false: never
    EXPECT_EQ(out->contains("e1"), !flag);
    if (flag) {
      EXPECT_EQ(out->at("r1").shape(), (std::vector<int64_t>{2, 8, 10}));
      for (int64_t i = 0; i < out->at("r1").num_elements(); ++i) ASSERT_GE(out->at("r1").data<float>()[i], 0.f);
    }
    EXPECT_EQ(out->size(), flag ? 3u : 2u);  // y and the observed values; no placeholder outputs
  }
}

TEST(QuantizeBranches, TakenBranchesAreQuantizedAndRunInt8) {
  auto m = OnnxModel::FromBytes(IfModel(), "if.onnx");
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<CalibrationBatch> batches;
  for (int i = 0; i < 4; ++i) batches.push_back({{{"flag", Flag(true)}, {"x", RandomF32({2, 6, 10}, 20 + i)}}, "b"});
  QuantizeOptions options;
  QuantizeReport report;
  auto q = Quantize(*m, options, batches, nullptr, &report);
  ASSERT_TRUE(q.ok()) << q.status();
  // conv1 with its Relu, and conv3 in the nested then branch.
  EXPECT_EQ(report.quantized_nodes, (std::vector<std::string>{"conv3", "conv1", "relu1"}));
  EXPECT_EQ(report.float_branches,
            (std::vector<std::string>{"if.onnx, If 'outer' then_branch, If 'inner' else_branch",
                                      "if.onnx, If 'outer' else_branch"}));
  EXPECT_EQ(report.float_compute_nodes, 3);  // conv4, conv2, matmul
  const std::string bytes = q->Serialize();
  SessionOptions profiled;
  profiled.profile = true;
  auto fp32 = Session::LoadFromBytes(IfModel());
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  const Tensor x = RandomF32({2, 6, 10}, 30);
  for (bool flag : {true, false}) {
    SCOPED_TRACE(flag ? "then" : "else");
    auto int8 = Session::LoadFromBytes(bytes, profiled);  // (a profile per condition)
    ASSERT_TRUE(int8.ok()) << int8.status();
    const TensorMap in = {{"flag", Flag(flag)}, {"x", x}};
    auto want = fp32->Run(in);
    auto got = int8->Run(in);
    ASSERT_TRUE(want.ok() && got.ok()) << got.status();
    double peak = 0;
    const double err = MaxAbsDiff(want->at("y"), got->at("y"), &peak);
    // The quantized branch within a few steps of FP32; the float one exact.
    EXPECT_LE(err, flag ? 0.03 * peak : 1e-6 * peak) << "peak " << peak;
    int qconv = 0, quantize = 0;
    for (const NodeProfile& p : int8->Profile()) {
      qconv += p.node.rfind("QLinearConv", 0) == 0;
      quantize += p.node.rfind("QuantizeLinear", 0) == 0;
    }
    EXPECT_EQ(qconv, flag ? 2 : 0);
    // Only x is quantized: conv3 reads conv1's bytes (the nested branch's
    // own QuantizeLinear of r1 repeats the outer one's parameters).
    EXPECT_EQ(quantize, flag ? 1 : 0);
  }
}

// Per-channel weights need opset 13; the upgrade rewrites the nodes inside
// branches too (axes attributes become inputs).
TEST(QuantizeBranches, OpsetUpgradeReachesBranches) {
  auto m = OnnxModel::FromBytes(IfModel(11), "if11.onnx");
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<CalibrationBatch> batches;
  for (int i = 0; i < 4; ++i) batches.push_back({{{"flag", Flag(true)}, {"x", RandomF32({2, 6, 10}, 20 + i)}}, "b"});
  QuantizeReport report;
  auto q = Quantize(*m, QuantizeOptions{}, batches, nullptr, &report);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->opset(), 13);
  EXPECT_EQ(report.prepare.upgraded_nodes, 2);
  auto fp32 = Session::LoadFromBytes(IfModel(11));
  auto int8 = Session::LoadFromBytes(q->Serialize());
  ASSERT_TRUE(fp32.ok() && int8.ok()) << int8.status();
  const TensorMap in = {{"flag", Flag(true)}, {"x", RandomF32({2, 6, 10}, 30)}};
  auto want = fp32->Run(in);
  auto got = int8->Run(in);
  ASSERT_TRUE(want.ok() && got.ok()) << got.status();
  double peak = 0;
  const double err = MaxAbsDiff(want->at("y"), got->at("y"), &peak);
  EXPECT_LE(err, 0.03 * peak);
}

// `kvant compare` sees the layers inside branches: each quantized value of
// the taken branch with its producer; none of the branch no batch takes.
TEST(QuantizeBranches, LayerErrorsReachInsideBranches) {
  auto m = OnnxModel::FromBytes(IfModel(), "if.onnx");
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<CalibrationBatch> data;
  for (int i = 0; i < 4; ++i) data.push_back({{{"flag", Flag(true)}, {"x", RandomF32({2, 6, 10}, 60 + i)}}, "b"});
  QuantizeReport report;
  auto q = Quantize(*m, QuantizeOptions{}, data, nullptr, &report);
  ASSERT_TRUE(q.ok()) << q.status();
  auto layers = LayerErrors(*m, *q, data, 1);
  ASSERT_TRUE(layers.ok()) << layers.status();
  std::set<std::string> seen;
  for (const LayerError& e : *layers) {
    seen.insert(e.tensor + "<-" + e.op);
    EXPECT_GT(e.sqnr_db, 10) << e.tensor;
    EXPECT_LT(e.sqnr_db, 200) << e.tensor;  // measured, not a layer without data
  }
  EXPECT_EQ(seen, (std::set<std::string>{"x<-input", "r1<-Relu", "i1<-Conv"}));
}

// An accuracy budget above what all-INT8 reaches keeps nodes inside
// branches in float (their FP16 weights stored inside the branch).
TEST(QuantizeBranches, AccuracyBudgetWeighsNodesInsideBranches) {
  auto m = OnnxModel::FromBytes(IfModel(), "if.onnx");
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<CalibrationBatch> data;
  for (int i = 0; i < 4; ++i) data.push_back({{{"flag", Flag(true)}, {"x", RandomF32({2, 6, 10}, 50 + i)}}, "b"});
  AccuracyBudget spec;
  spec.value = 60;  // more than INT8 reaches: every helpful node goes float
  QuantizeReport report;
  BudgetReport budget;
  auto q = QuantizeWithBudget(*m, QuantizeOptions{}, spec, data, nullptr, &report, &budget);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_GT(budget.final_score, budget.all_int8);
  ASSERT_FALSE(budget.kept_float.empty());
  for (const auto& k : budget.kept_float) {
    EXPECT_TRUE(k.node == "conv1" || k.node == "relu1" || k.node == "conv3") << k.node;
  }
}

TEST(QuantizeBranches, DynamicQuantizationEntersBranches) {
  auto m = OnnxModel::FromBytes(IfModel(), "if.onnx");
  ASSERT_TRUE(m.ok()) << m.status();
  QuantizeOptions options;
  options.dynamic = true;
  QuantizeReport report;
  auto q = Quantize(*m, options, {}, nullptr, &report);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(report.dynamic_nodes, 1);  // the else branch's MatMul
  auto s = Session::LoadFromBytes(q->Serialize());
  ASSERT_TRUE(s.ok()) << s.status();
  auto out = s->Run({{"flag", Flag(false)}, {"x", RandomF32({2, 6, 10}, 8)}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->at("y").shape(), (std::vector<int64_t>{2, 4, 5}));
}

}  // namespace
}  // namespace kvant::quantize
