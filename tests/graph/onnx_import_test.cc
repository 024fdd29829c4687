// ONNX import: a well-formed model round-trips into the IR; malformed,
// truncated, cyclic, unsupported and escaping models give clear statuses.
#include <filesystem>
#include <fstream>

#include "graph/onnx_import.h"
#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::OnnxBuilder;
using testing::RandomF32;
namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("kvant_test_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

OnnxBuilder ReluModel() {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {-1, 3}, {"batch"}).Output("y");
  b.Initializer("c", RandomF32({3}, 1));
  b.Node("Add", {"x", "c"}, {"s"});
  b.Node("Relu", {"s"}, {"y"}, "relu");
  return b;
}

TEST(OnnxImport, ReadsGraphWithSymbolicDims) {
  auto g = ImportOnnxBytes(ReluModel().Serialize(), ".", "relu.onnx");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->nodes.size(), 2u);
  EXPECT_EQ(g->opset, 17);
  EXPECT_EQ(g->values.at("x").shape.ToString(), "[batch,3]");
  EXPECT_NE(g->DebugString().find("Relu 'relu'"), std::string::npos) << g->DebugString();
}

TEST(OnnxImport, ConstantNodesBecomeInitializers) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {2}).Output("y");
  auto& c = b.Node("Constant", {}, {"k"});
  auto* a = c.add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  *a->mutable_t() = testing::ToProto("", RandomF32({2}, 3));
  b.Node("Mul", {"x", "k"}, {"y"});
  auto g = ImportOnnxBytes(b.Serialize(), ".", "const.onnx");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->IsConstant("k"));
  EXPECT_EQ(g->nodes.size(), 1u);
}

TEST(OnnxImport, MalformedAndTruncatedFilesAreInvalidArgument) {
  auto garbage = ImportOnnxBytes("this is not a protobuf \xff\xff\xff", ".", "garbage.onnx");
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(garbage.status().message().find("garbage.onnx"), std::string::npos) << garbage.status();
  std::string bytes = ReluModel().Serialize();
  auto truncated = ImportOnnxBytes(bytes.substr(0, bytes.size() / 2), ".", "cut.onnx");
  EXPECT_FALSE(truncated.ok());
  auto missing = ImportOnnxFile("/nonexistent/model.onnx");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(OnnxImport, StructuralErrorsNameTheNode) {
  {
    OnnxBuilder b;  // a cycle: a = Relu(b), b = Relu(a)
    b.Input("x", DataType::kFloat32, {2}).Output("y");
    b.Node("Relu", {"b"}, {"a"}, "first");
    b.Node("Relu", {"a"}, {"b"}, "second");
    b.Node("Add", {"x", "a"}, {"y"});
    auto g = ImportOnnxBytes(b.Serialize(), ".", "cycle.onnx");
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(g.status().message().find("cycle"), std::string::npos) << g.status();
  }
  {
    OnnxBuilder b;  // an input nobody produces
    b.Input("x", DataType::kFloat32, {2}).Output("y");
    b.Node("Add", {"x", "ghost"}, {"y"}, "adder");
    auto g = ImportOnnxBytes(b.Serialize(), ".", "ghost.onnx");
    EXPECT_NE(g.status().message().find("'ghost' of node Add 'adder'"), std::string::npos) << g.status();
  }
  {
    OnnxBuilder b;  // duplicate output names
    b.Input("x", DataType::kFloat32, {2}).Output("y").Output("y");
    b.Node("Relu", {"x"}, {"y"});
    auto g = ImportOnnxBytes(b.Serialize(), ".", "dup.onnx");
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << g.status();
  }
}

TEST(OnnxImport, UnsupportedOperatorNamesOpNodeAndOpset) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 2}).Output("y");
  b.Node("Det", {"x"}, {"y"}, "determinant");
  auto s = Session::LoadFromBytes(b.Serialize());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnimplemented);
  const std::string msg(s.status().message());
  EXPECT_NE(msg.find("Det"), std::string::npos) << msg;
  EXPECT_NE(msg.find("determinant"), std::string::npos) << msg;
  EXPECT_NE(msg.find("opset 13"), std::string::npos) << msg;
}

TEST(OnnxImport, ExternalDataMustStayInsideModelDirectory) {
  const std::string dir = TempDir("external");
  Tensor w = RandomF32({4}, 9);
  {
    std::ofstream f(dir + "/weights.bin", std::ios::binary);
    f.write(static_cast<const char*>(w.raw_data()), w.byte_size());
  }
  auto model_with_location = [&](const std::string& location) {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {4}).Output("y");
    onnx::TensorProto* t = b.model().mutable_graph()->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_dims(4);
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    auto* kv = t->add_external_data();
    kv->set_key("location");
    kv->set_value(location);
    b.Node("Add", {"x", "w"}, {"y"});
    return b.Serialize();
  };
  auto ok = ImportOnnxBytes(model_with_location("weights.bin"), dir, "ext.onnx");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(std::memcmp(ok->initializers.at("w").raw_data(), w.raw_data(), 16), 0);
  for (const std::string& bad : {std::string("../weights.bin"), std::string("/etc/passwd"), dir + "/weights.bin"}) {
    auto g = ImportOnnxBytes(model_with_location(bad), dir, "ext.onnx");
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument) << bad << ": " << g.status();
  }
  fs::create_symlink("/etc", dir + "/escape");
  auto link = ImportOnnxBytes(model_with_location("escape/passwd"), dir, "ext.onnx");
  EXPECT_EQ(link.status().code(), absl::StatusCode::kInvalidArgument) << link.status();
  fs::remove_all(dir);
}

TEST(OnnxImport, InitializerSizeMustMatchShape) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {4}).Output("y");
  onnx::TensorProto* t = b.model().mutable_graph()->add_initializer();
  t->set_name("w");
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(4);
  t->set_raw_data(std::string(12, '\0'));
  b.Node("Add", {"x", "w"}, {"y"});
  auto g = ImportOnnxBytes(b.Serialize(), ".", "short.onnx");
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(g.status().message().find("must be 16 bytes"), std::string::npos) << g.status();
}

}  // namespace
}  // namespace kvant
