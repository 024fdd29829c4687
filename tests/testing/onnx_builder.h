// Builds small ONNX models in memory for tests: inputs, initializers, nodes
// with attributes, outputs; serialized bytes for Session::LoadFromBytes.
#ifndef KVANT_TESTS_TESTING_ONNX_BUILDER_H_
#define KVANT_TESTS_TESTING_ONNX_BUILDER_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kvant/kvant.h"
#include "onnx/onnx_pb.h"

namespace kvant::testing {

class OnnxBuilder {
 public:
  explicit OnnxBuilder(int64_t opset = 17);

  // A dimension < 0 becomes the symbolic dimension named by `symbols` (or "N").
  OnnxBuilder& Input(const std::string& name, DataType type, const std::vector<int64_t>& shape,
                     const std::vector<std::string>& symbols = {});
  OnnxBuilder& Output(const std::string& name, DataType type = DataType::kFloat32);
  OnnxBuilder& Initializer(const std::string& name, const Tensor& t);
  onnx::NodeProto& Node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::string& name = "");

  static void SetInt(onnx::NodeProto& n, const std::string& name, int64_t v);
  static void SetFloat(onnx::NodeProto& n, const std::string& name, float v);
  static void SetInts(onnx::NodeProto& n, const std::string& name, const std::vector<int64_t>& v);
  static void SetString(onnx::NodeProto& n, const std::string& name, const std::string& v);

  onnx::ModelProto& model() { return model_; }
  std::string Serialize() const;

 private:
  onnx::ModelProto model_;
};

onnx::TensorProto ToProto(const std::string& name, const Tensor& t);

// Scalar (rank 0) tensors: scales and zero points of QDQ test models.
inline Tensor ScalarF32(float v) { return Tensor::FromVector<float>(DataType::kFloat32, {}, {v}); }
inline Tensor ScalarU8(uint8_t v) { return Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {v}); }
inline Tensor ScalarS8(int8_t v) { return Tensor::FromVector<int8_t>(DataType::kInt8, {}, {v}); }

// Seeded uniform f32 tensor in [lo, hi).
Tensor RandomF32(const std::vector<int64_t>& shape, uint64_t seed, float lo = -1.f, float hi = 1.f);

}  // namespace kvant::testing

#endif  // KVANT_TESTS_TESTING_ONNX_BUILDER_H_
