// tools/dataset: .npy data cut into batches of samples, along each input's
// sample axis (the first, or for an input whose first dimension the model
// fixes and the file's differs, its first open axis: silero VAD's state
// [2, N, 128]), scalars shared by every batch, and the errors that name the
// file.
#include "tools/dataset.h"

#include <unistd.h>

#include <filesystem>
#include <numeric>

#include "gtest/gtest.h"
#include "tools/npy.h"

namespace kvant::tools {
namespace {

namespace fs = std::filesystem;

ValueInfo Input(const std::string& name, DataType type, std::vector<int64_t> shape) {
  ValueInfo v;
  v.name = name;
  v.dtype = type;
  v.rank_known = true;
  v.shape = std::move(shape);
  return v;
}

// values 0, 1, 2, ... in the given shape
Tensor Iota(std::vector<int64_t> shape) {
  Tensor t = Tensor::Zeros(DataType::kFloat32, std::move(shape));
  std::iota(t.data<float>(), t.data<float>() + t.num_elements(), 0.f);
  return t;
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("kvant_dataset_test_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Save(const std::string& name, const Tensor& t) { ASSERT_TRUE(WriteNpy(dir_ + "/" + name + ".npy", t).ok()); }
  std::string dir_;
};

TEST_F(DatasetTest, StateAlongItsOpenAxisAndScalarsShared) {
  // silero VAD: input [N, 4], state [2, N, 3] (first dimension fixed), sr [].
  Save("input", Iota({10, 4}));
  Save("state", Iota({2, 10, 3}));
  Save("sr", Tensor::FromVector<int64_t>(DataType::kInt64, {}, {16000}));
  const std::vector<ValueInfo> inputs = {Input("input", DataType::kFloat32, {-1, 4}),
                                         Input("state", DataType::kFloat32, {2, -1, 3}),
                                         Input("sr", DataType::kInt64, {})};
  auto batches = LoadDataset(dir_, inputs, 0, 4);
  ASSERT_TRUE(batches.ok()) << batches.status();
  ASSERT_EQ(batches->size(), 3u);  // rows 0-3, 4-7, 8-9
  const std::vector<int64_t> rows = {4, 4, 2};
  for (size_t b = 0; b < batches->size(); ++b) {
    const TensorMap& in = (*batches)[b].inputs;
    const int64_t r0 = static_cast<int64_t>(b) * 4, n = rows[b];
    ASSERT_EQ(in.at("input").shape(), (std::vector<int64_t>{n, 4}));
    ASSERT_EQ(in.at("state").shape(), (std::vector<int64_t>{2, n, 3}));
    ASSERT_EQ(in.at("sr").shape(), std::vector<int64_t>{});
    EXPECT_EQ(in.at("sr").data<int64_t>()[0], 16000);
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t c = 0; c < 3; ++c) {
          EXPECT_EQ(in.at("state").data<float>()[(h * n + i) * 3 + c], static_cast<float>((h * 10 + r0 + i) * 3 + c))
              << "batch " << b << " state[" << h << "," << i << "," << c << "]";
        }
      }
    }
    EXPECT_EQ(in.at("input").data<float>()[0], static_cast<float>(r0 * 4));
  }
}

TEST_F(DatasetTest, FixedFirstDimensionThatAgreesStaysTheSampleAxis) {
  // A [1, T] token input beside an open [N, T] one of one row: one sample, not T.
  Save("ids", Iota({1, 13}));
  Save("mask", Iota({1, 13}));
  const std::vector<ValueInfo> inputs = {Input("ids", DataType::kFloat32, {1, -1}),
                                         Input("mask", DataType::kFloat32, {-1, -1})};
  auto batches = LoadDataset(dir_, inputs, 0, 8);
  ASSERT_TRUE(batches.ok()) << batches.status();
  ASSERT_EQ(batches->size(), 1u);
  EXPECT_EQ((*batches)[0].inputs.at("ids").shape(), (std::vector<int64_t>{1, 13}));
}

TEST_F(DatasetTest, DisagreeingSampleCountsNameTheFile) {
  Save("input", Iota({10, 4}));
  Save("state", Iota({2, 7, 3}));
  const std::vector<ValueInfo> inputs = {Input("input", DataType::kFloat32, {-1, 4}),
                                         Input("state", DataType::kFloat32, {2, -1, 3})};
  auto batches = LoadDataset(dir_, inputs, 0, 4);
  ASSERT_FALSE(batches.ok());
  EXPECT_NE(batches.status().message().find("state.npy: every file must have 10 rows"), std::string::npos)
      << batches.status();
}

}  // namespace
}  // namespace kvant::tools
