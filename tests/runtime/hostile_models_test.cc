// Hostile and broken models: every one loads or runs to a clear Status
// (InvalidArgument or ResourceExhausted) that names what is wrong; none
// crashes, hangs or allocates without bound. The structural cases (cycles,
// missing producers, duplicate outputs, truncated files, external data) are in
// graph/onnx_import_test.cc; attribute errors in graph/passes_test.cc.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <limits>
#include <random>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "tests/fuzz/load_and_run.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::OnnxBuilder;
using testing::RandomF32;

// Loads and, when that succeeds, runs every input with ones at its declared
// shape (unknown dimensions 2). Returns the first failure.
absl::Status LoadAndRun(const std::string& bytes, const SessionOptions& options = {}) {
  auto s = Session::LoadFromBytes(bytes, options);
  if (!s.ok()) return s.status();
  TensorMap inputs;
  for (const ValueInfo& vi : s->inputs()) {
    std::vector<int64_t> shape;
    for (int64_t d : vi.shape) shape.push_back(d < 0 ? 2 : d);
    if (vi.dtype == DataType::kString || vi.dtype == DataType::kUndefined) continue;
    inputs[vi.name] = Tensor::Zeros(vi.dtype, shape);
  }
  return s->Run(inputs).status();
}

bool IsClearError(const absl::Status& s) {
  return s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kResourceExhausted ||
         s.code() == absl::StatusCode::kUnimplemented;
}

// x[1,3,8,8] -> Conv(4,3x3) -> Relu -> MaxPool -> Flatten -> Gemm(10) -> Softmax
std::string SmallModel() {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {1, 3, 8, 8}).Output("y");
  b.Initializer("w", RandomF32({4, 3, 3, 3}, 1)).Initializer("fw", RandomF32({10, 36}, 2));
  b.Node("Conv", {"x", "w"}, {"c"});
  b.Node("Relu", {"c"}, {"r"});
  onnx::NodeProto& pool = b.Node("MaxPool", {"r"}, {"p"});
  OnnxBuilder::SetInts(pool, "kernel_shape", {2, 2});
  OnnxBuilder::SetInts(pool, "strides", {2, 2});
  b.Node("Flatten", {"p"}, {"f"});
  OnnxBuilder::SetInt(b.Node("Gemm", {"f", "fw"}, {"g"}), "transB", 1);
  b.Node("Softmax", {"g"}, {"y"});
  return b.Serialize();
}

// Every single-bit flip of the first bytes and a seeded sample of the rest,
// and every truncation length in steps: each loads and runs or fails cleanly.
TEST(HostileModels, BitFlippedAndTruncatedFilesFailCleanly) {
  const std::string good = SmallModel();
  ASSERT_TRUE(LoadAndRun(good).ok());
  std::mt19937 rng(5);
  int failed = 0, ran = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    if (i >= 512 && rng() % 8 != 0) continue;
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ (1 << (rng() % 8)));
    const absl::Status s = LoadAndRun(bad);
    if (s.ok()) {
      ++ran;
    } else {
      ++failed;
      EXPECT_TRUE(IsClearError(s)) << "flip at byte " << i << ": " << s;
    }
  }
  for (size_t n = 0; n < good.size(); n += 7) {
    const absl::Status s = LoadAndRun(good.substr(0, n));
    EXPECT_FALSE(s.ok()) << "truncated to " << n << " bytes";
    EXPECT_TRUE(IsClearError(s)) << "truncated to " << n << ": " << s;
  }
  EXPECT_GT(failed, 0);
  std::printf("bit flips: %d ran, %d refused\n", ran, failed);
}

TEST(HostileModels, ElementCountOverflowIsRefused) {
  {  // an initializer whose dims multiply past 2^63
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {4}).Output("y");
    onnx::TensorProto* t = b.model().mutable_graph()->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int i = 0; i < 4; ++i) t->add_dims(int64_t{1} << 20);
    b.Node("Add", {"x", "w"}, {"y"});
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("'w'"), std::string::npos) << s;
  }
  {  // a declared input shape whose element count overflows
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {int64_t{1} << 40, int64_t{1} << 40}).Output("y");
    b.Node("Relu", {"x"}, {"y"});
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_TRUE(IsClearError(s)) << s;
  }
  {  // Expand to a shape computed at run time that overflows
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {1}).Input("shape", DataType::kInt64, {3}).Output("y");
    b.Node("Expand", {"x", "shape"}, {"y"});
    auto s = Session::LoadFromBytes(b.Serialize());
    ASSERT_TRUE(s.ok()) << s.status();
    const int64_t big = int64_t{1} << 31;
    auto out = s->Run({{"x", Tensor::Zeros(DataType::kFloat32, {1})},
                       {"shape", Tensor::FromVector<int64_t>(DataType::kInt64, {3}, {big, big, big})}});
    EXPECT_TRUE(IsClearError(out.status())) << out.status();
    EXPECT_FALSE(out.ok());
  }
}

// An initializer whose dims claim far more elements than its data holds
// (a fuzzer mutation of a weight's shape: 24 x 2^30 floats backed by 216
// bytes) is refused before anything that size is allocated, for raw data and
// for each typed field; 2^34 bytes is under the loader's 2^40 ceiling, so
// only the count check stands between it and the allocation.
TEST(HostileModels, ShapeLargerThanItsDataIsRefusedBeforeAllocating) {
  for (int field = 0; field < 3; ++field) {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {4}).Output("y");
    onnx::TensorProto* t = b.model().mutable_graph()->add_initializer();
    t->set_name("w");
    t->add_dims(16);
    t->add_dims(int64_t{1} << 30);
    if (field == 0) {
      t->set_data_type(onnx::TensorProto::FLOAT);
      t->set_raw_data(std::string(216, '\0'));
    } else if (field == 1) {
      t->set_data_type(onnx::TensorProto::FLOAT);
      for (int i = 0; i < 54; ++i) t->add_float_data(1.f);
    } else {
      t->set_data_type(onnx::TensorProto::INT8);
      for (int i = 0; i < 54; ++i) t->add_int32_data(1);
    }
    b.Node("Add", {"x", "w"}, {"y"});
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field << ": " << s;
    EXPECT_NE(s.message().find("'w'"), std::string::npos) << s;
  }
}

TEST(HostileModels, NegativeDimensionsAreRefused) {
  {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {4}).Output("y");
    onnx::TensorProto* t = b.model().mutable_graph()->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(-4);
    b.Node("Add", {"x", "w"}, {"y"});
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("'w'"), std::string::npos) << s;
  }
  {  // Reshape to a negative dimension other than -1
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {2, 6}).Output("y");
    b.Initializer("s", Tensor::FromVector<int64_t>(DataType::kInt64, {2}, {-3, -4}));
    b.Node("Reshape", {"x", "s"}, {"y"}, "neg");
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("neg"), std::string::npos) << s;
  }
  {  // a negative shape given at run time
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {1}).Input("shape", DataType::kInt64, {2}).Output("y");
    b.Node("Expand", {"x", "shape"}, {"y"});
    auto s = Session::LoadFromBytes(b.Serialize());
    ASSERT_TRUE(s.ok()) << s.status();
    auto out = s->Run({{"x", Tensor::Zeros(DataType::kFloat32, {1})},
                       {"shape", Tensor::FromVector<int64_t>(DataType::kInt64, {2}, {3, -2})}});
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  }
}

// Shapes that fit in 64 bits but not in memory hit the arena limit (a
// session option, 16 GiB by default) instead of the allocator.
TEST(HostileModels, HugeDimensionsHitTheArenaLimit) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {1}).Input("shape", DataType::kInt64, {2}).Output("y");
  b.Node("Expand", {"x", "shape"}, {"e"});
  b.Node("Relu", {"e"}, {"y"});
  auto s = Session::LoadFromBytes(b.Serialize());
  ASSERT_TRUE(s.ok()) << s.status();
  auto out = s->Run({{"x", Tensor::Zeros(DataType::kFloat32, {1})},
                     {"shape", Tensor::FromVector<int64_t>(DataType::kInt64, {2}, {1 << 20, 1 << 20})}});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted) << out.status();
  EXPECT_NE(out.status().message().find("bytes"), std::string::npos) << out.status();
}

TEST(HostileModels, AttributesOutOfRangeNameTheNode) {
  struct Case {
    std::string op, attr;
    std::vector<int64_t> value;
    std::string node;
  };
  const std::vector<Case> cases = {
      {"Softmax", "axis", {7}, "softmax_axis"},
      {"Concat", "axis", {-9}, "concat_axis"},
      {"Transpose", "perm", {0, 1, 5, 2}, "transpose_perm"},
      {"Flatten", "axis", {5}, "flatten_axis"},
      {"ReduceMean", "axes", {4}, "reduce_axes"},
      {"Gather", "axis", {-5}, "gather_axis"},
  };
  for (const Case& c : cases) {
    OnnxBuilder b(13);
    b.Input("x", DataType::kFloat32, {2, 3, 4, 5}).Output("y");
    std::vector<std::string> ins = {"x"};
    if (c.op == "Concat") ins.push_back("x");
    if (c.op == "Gather") {
      b.Initializer("i", Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {0}));
      ins.push_back("i");
    }
    onnx::NodeProto& n = b.Node(c.op, ins, {"y"}, c.node);
    if (c.value.size() == 1 && c.attr != "axes" && c.attr != "perm") {
      OnnxBuilder::SetInt(n, c.attr, c.value[0]);
    } else {
      OnnxBuilder::SetInts(n, c.attr, c.value);
    }
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.node << ": " << s;
    EXPECT_NE(s.message().find(c.node), std::string::npos) << s;
  }
  {  // negative pads on a pooling window larger than the input
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {1, 1, 4, 4}).Output("y");
    onnx::NodeProto& n = b.Node("MaxPool", {"x"}, {"y"}, "bad_pool");
    OnnxBuilder::SetInts(n, "kernel_shape", {3, 3});
    OnnxBuilder::SetInts(n, "pads", {-2, -2, -2, -2});
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("bad_pool"), std::string::npos) << s;
  }
}

// Inputs that break an operator's type constraint or the shapes its kernel
// reads (found by the fuzzer: each read out of bounds before it was refused).
TEST(HostileModels, InputTypesAndShapesMustMatchTheOperator) {
  {
    OnnxBuilder b;
    b.Input("a", DataType::kFloat32, {2, 3}).Input("b", DataType::kInt8, {3, 2}).Output("c");
    b.Node("MatMul", {"a", "b"}, {"c"}, "mixed");
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("must be f32 like input 0 ('a'), got s8"), std::string::npos) << s;
    EXPECT_NE(s.message().find("mixed"), std::string::npos) << s;
  }
  {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {2, 6}).Input("s", DataType::kFloat32, {2}).Output("y");
    b.Node("Reshape", {"x", "s"}, {"y"}, "float_shape");
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("must be s64, got f32"), std::string::npos) << s;
  }
  for (int64_t entries : {int64_t{-1}, int64_t{255}}) {  // kvant.QLinearTable: a computed table, or one short
    OnnxBuilder b;
    b.Input("x", DataType::kUInt8, {2, 3}).Output("y");
    if (entries < 0) {
      b.Input("t", DataType::kUInt8, {256});
    } else {
      b.Initializer("t", Tensor::Zeros(DataType::kUInt8, {entries}));
    }
    b.Node("QLinearTable", {"x", "t"}, {"y"}, "table").set_domain("kvant");
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_TRUE(IsClearError(s)) << s;
    EXPECT_NE(s.message().find("table"), std::string::npos) << s;
  }
  {  // LSTM whose recurrence weights R are too small for hidden_size 7
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {3, 1, 2}).Output("y");
    b.Initializer("w", RandomF32({1, 28, 2}, 1)).Initializer("r", RandomF32({1, 27, 7}, 2));
    OnnxBuilder::SetInt(b.Node("LSTM", {"x", "w", "r"}, {"y"}, "short_r"), "hidden_size", 7);
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("must have shape [1,28,7], got [1,27,7]"), std::string::npos) << s;
  }
  {  // a MatMul carrying a fused_bias of 3 values for 4 columns
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {2, 5}).Output("y");
    b.Initializer("w", RandomF32({5, 4}, 3));
    auto* a = b.Node("MatMul", {"x", "w"}, {"y"}, "short_bias").add_attribute();
    a->set_name("fused_bias");
    a->set_type(onnx::AttributeProto::TENSOR);
    *a->mutable_t() = testing::ToProto("", RandomF32({3}, 4));
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("fused_bias must have 4 values (columns), got 3"), std::string::npos) << s;
  }
  {  // Resize of an empty dimension to 4 (the fuzzer read the empty input)
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {1, 0, 4, 4}).Output("y");
    b.Initializer("sizes", Tensor::FromVector<int64_t>(DataType::kInt64, {4}, {1, 4, 4, 4}));
    OnnxBuilder::SetString(b.Node("Resize", {"x", "", "", "sizes"}, {"y"}, "empty"), "mode", "nearest");
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("dimension 1 is empty and cannot be resized to 4"), std::string::npos) << s;
  }
  {  // 2-D ConvTranspose whose output_shape names one spatial size (the fuzzer read past it)
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {1, 1, 3, 3}).Output("y");
    b.Initializer("w", RandomF32({1, 1, 3, 3}, 3));
    OnnxBuilder::SetInts(b.Node("ConvTranspose", {"x", "w"}, {"y"}, "short_shape"), "output_shape", {7});
    const absl::Status s = LoadAndRun(b.Serialize());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("output_shape must have 2 spatial values, got 1"), std::string::npos) << s;
  }
}

// Floats that become integers (indices, shapes): NaN and infinities convert
// to defined values (NaN -> 0, saturation) and out-of-range indices are
// refused, whatever the float was.
TEST(HostileModels, NaNWhereIntegersAreExpected) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {3}).Output("y").Output("k", DataType::kInt32);
  b.Initializer("data", RandomF32({5, 2}, 3));
  OnnxBuilder::SetInt(b.Node("Cast", {"x"}, {"i"}), "to", static_cast<int64_t>(DataType::kInt64));
  OnnxBuilder::SetInt(b.Node("Cast", {"x"}, {"k"}), "to", static_cast<int64_t>(DataType::kInt32));
  b.Node("Gather", {"data", "i"}, {"y"}, "lookup");
  auto s = Session::LoadFromBytes(b.Serialize());
  ASSERT_TRUE(s.ok()) << s.status();
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto defined = s->Run({{"x", Tensor::FromVector<float>(DataType::kFloat32, {3}, {nan, 1.5f, -2.f})}});
  ASSERT_TRUE(defined.ok()) << defined.status();
  EXPECT_EQ(defined->at("k").data<int32_t>()[0], 0);
  EXPECT_EQ(defined->at("k").data<int32_t>()[1], 1);
  const Tensor data = RandomF32({5, 2}, 3);
  const int64_t rows[] = {0, 1, 3};  // NaN -> 0, 1.5 -> 1, -2 -> 3 (from the end)
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 2; ++c) {
      EXPECT_EQ(defined->at("y").data<float>()[r * 2 + c], data.data<float>()[rows[r] * 2 + c]) << r;
    }
  }
  auto refused = s->Run({{"x", Tensor::FromVector<float>(DataType::kFloat32, {3}, {inf, 0.f, -inf})}});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_NE(refused.status().message().find("lookup"), std::string::npos) << refused.status();
}

// Every input that once crashed the fuzzer (tests/fuzz/regressions) now loads
// and runs, or fails with a clear Status; the ASan build checks the memory.
TEST(HostileModels, FuzzerFindingsStayFixed) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(KVANT_SOURCE_DIR "/tests/fuzz/regressions")) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    const absl::Status s = fuzz::LoadAndRunOnce(bytes.str());
    EXPECT_TRUE(s.ok() || IsClearError(s)) << entry.path() << ": " << s;
    ++files;
  }
  EXPECT_GT(files, 0);
  // One of them, an If node without its condition (constant folding read
  // past its inputs), by name.
  std::ifstream in(KVANT_SOURCE_DIR "/tests/fuzz/regressions/crash-413db15c58b758522d13b4b5261259d8d1f958f0.onnx",
                   std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  auto s = Session::LoadFromBytes(bytes.str());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
  EXPECT_NE(s.status().message().find("must have 1 input (the condition), got 0"), std::string::npos) << s.status();
}

// INT8 transposed convolutions with broken geometry (com.microsoft
// QLinearConvTranspose as written in a file): each loads and runs, or fails
// with a clear status that names the node; none reads out of bounds.
TEST(HostileModels, BrokenQLinearConvTransposeNamesTheNode) {
  struct Case {
    std::string name;
    std::vector<int64_t> x, w, strides, pads, output_shape;
    int64_t w_scales = 1;
  };
  const std::vector<Case> cases = {
      {"zero_kernel", {1, 4, 5, 5}, {4, 2, 0, 2}, {2, 2}, {}, {}},
      {"negative_pads", {1, 4, 5, 5}, {4, 2, 3, 3}, {1, 1}, {-3, -3, -3, -3}, {}},
      {"pads_past_output", {1, 4, 2, 2}, {4, 2, 2, 2}, {1, 1}, {4, 4, 4, 4}, {}},
      {"huge_output_shape", {1, 4, 5, 5}, {4, 2, 2, 2}, {2, 2}, {}, {1 << 20, 1 << 20}},
      {"zero_stride", {1, 4, 5, 5}, {4, 2, 2, 2}, {0, 2}, {}, {}},
      {"channels_differ", {1, 3, 5, 5}, {4, 2, 2, 2}, {2, 2}, {}, {}},
      {"one_d_weights", {1, 4, 5}, {4, 2, 2}, {2}, {}, {}},
      {"scales_per_channel_mismatch", {1, 4, 5, 5}, {4, 2, 2, 2}, {2, 2}, {}, {}, 3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    OnnxBuilder b(13);
    b.Input("x", DataType::kUInt8, c.x).Output("y", DataType::kUInt8);
    int64_t wn = 1;
    for (int64_t d : c.w) wn *= d;
    b.Initializer("w", Tensor::FromVector<int8_t>(DataType::kInt8, c.w, std::vector<int8_t>(wn, 3)));
    b.Initializer("s", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.1f}));
    b.Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {c.w_scales}, std::vector<float>(c.w_scales, 0.1f)));
    b.Initializer("z", Tensor::Zeros(DataType::kUInt8, {})).Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
    onnx::NodeProto& n = b.Node("QLinearConvTranspose", {"x", "s", "z", "w", "ws", "wz", "s", "z"}, {"y"}, c.name);
    n.set_domain("com.microsoft");
    OnnxBuilder::SetInts(n, "strides", c.strides);
    if (!c.pads.empty()) OnnxBuilder::SetInts(n, "pads", c.pads);
    if (!c.output_shape.empty()) OnnxBuilder::SetInts(n, "output_shape", c.output_shape);
    const absl::Status s = LoadAndRun(b.Serialize());
    if (s.ok()) continue;
    EXPECT_TRUE(IsClearError(s)) << s;
    // The planner's arena limit names the sizes; every other error the node.
    if (s.code() != absl::StatusCode::kResourceExhausted) EXPECT_NE(s.message().find(c.name), std::string::npos) << s;
  }
}

}  // namespace
}  // namespace kvant
