// .npy datasets and progress lines (see the header).
#include "tools/dataset.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "absl/strings/str_format.h"
#include "ops/float16.h"
#include "tools/npy.h"

namespace kvant::tools {
namespace fs = std::filesystem;

Tensor RandomTensor(DataType type, const std::vector<int64_t>& shape, std::mt19937_64& rng) {
  Tensor t = Tensor::Zeros(type, shape);
  const int64_t n = t.num_elements();
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_int_distribution<int> small(0, 9);
  for (int64_t i = 0; i < n; ++i) {
    switch (type) {
      case DataType::kFloat32: t.data<float>()[i] = normal(rng); break;
      case DataType::kFloat64: t.data<double>()[i] = normal(rng); break;
      case DataType::kFloat16: t.data<uint16_t>()[i] = FloatToHalf(normal(rng)); break;
      case DataType::kInt64: t.data<int64_t>()[i] = small(rng); break;
      case DataType::kInt32: t.data<int32_t>()[i] = small(rng); break;
      case DataType::kUInt8: t.data<uint8_t>()[i] = static_cast<uint8_t>(rng()); break;
      case DataType::kInt8: t.data<int8_t>()[i] = static_cast<int8_t>(rng()); break;
      case DataType::kBool: t.data<uint8_t>()[i] = rng() & 1; break;
      default: break;
    }
  }
  return t;
}

absl::StatusOr<std::vector<quantize::CalibrationBatch>> LoadDataset(const std::string& dir,
                                                                   const std::vector<ValueInfo>& inputs,
                                                                   int64_t max_samples, int64_t batch_rows) {
  if (!fs::is_directory(dir)) {
    return absl::NotFoundError(absl::StrFormat("failed to read the data directory %s: not a directory", dir));
  }
  std::vector<Tensor> data;
  std::vector<std::string> files;
  int64_t rows = -1, batch = std::max<int64_t>(1, batch_rows);
  bool fixed_batch = false;
  for (const ValueInfo& in : inputs) {
    const std::string path = (fs::path(dir) / (in.name + ".npy")).string();
    if (!fs::exists(path)) {
      return absl::NotFoundError(
          absl::StrFormat("failed to read the data directory %s: input '%s' needs %s, which is missing", dir, in.name, path));
    }
    auto t = ReadNpy(path);
    if (!t.ok()) return t.status();
    if (t->dtype() != in.dtype) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to read %s: input '%s' must be %s, got %s", path, in.name,
                                                        DataTypeName(in.dtype), DataTypeName(t->dtype())));
    }
    if (t->rank() == 0 || (in.rank_known && t->rank() != static_cast<int64_t>(in.shape.size()))) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to read %s: input '%s' must have rank %d (samples along the first axis), got %d", path, in.name,
          in.shape.size(), t->rank()));
    }
    quantize::CalibrationBatch whole{{{in.name, *t}}, path};
    if (auto s = quantize::CheckFinite(whole); !s.ok()) return s;
    if (rows >= 0 && t->shape()[0] != rows) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to read %s: every file must have %d rows (samples), got %d",
                                                        path, rows, t->shape()[0]));
    }
    rows = t->shape()[0];
    if (in.rank_known && !in.shape.empty() && in.shape[0] > 0) {  // a fixed batch size: whole batches only
      batch = in.shape[0];
      fixed_batch = true;
    }
    data.push_back(*std::move(t));
    files.push_back(path);
  }
  if (max_samples > 0) rows = std::min(rows, max_samples);
  std::vector<quantize::CalibrationBatch> batches;
  if (fixed_batch && rows < batch) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to read the data directory %s: the model takes batches of %d rows, the files have %d", dir, batch, rows));
  }
  for (int64_t r = 0; fixed_batch ? r + batch <= rows : r < rows; r += batch) {
    const int64_t n = std::min(batch, rows - r);
    quantize::CalibrationBatch b;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& t = data[i];
      std::vector<int64_t> shape = t.shape();
      shape[0] = n;
      const int64_t row_bytes = t.byte_size() / t.shape()[0];
      // A view of rows [r, r + n) that keeps the file's buffer alive.
      auto owner = std::make_shared<Tensor>(t);
      b.inputs[inputs[i].name] = Tensor::Wrap(t.dtype(), shape, static_cast<char*>(owner->raw_data()) + r * row_bytes, owner);
    }
    b.source = absl::StrFormat("%s rows %d..%d", files.empty() ? dir : files[0], r, r + n - 1);
    batches.push_back(std::move(b));
  }
  return batches;
}

quantize::ProgressFn StderrProgress() {
  const bool tty = isatty(2) != 0;
  return [tty, last_tenth = int64_t{-1}](const std::string& stage, int64_t done, int64_t total) mutable {
    if (total <= 0) return;
    if (tty) {
      const int width = 30, filled = static_cast<int>(width * done / total);
      std::fprintf(stderr, "\r%-12s [%s%s] %lld/%lld", stage.c_str(), std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), static_cast<long long>(done), static_cast<long long>(total));
      if (done == total) std::fprintf(stderr, "\n");
      return;
    }
    const int64_t tenth = done * 10 / total;
    if (tenth != last_tenth || done == total) {
      last_tenth = tenth;
      std::fprintf(stderr, "%s %lld/%lld\n", stage.c_str(), static_cast<long long>(done), static_cast<long long>(total));
    }
  };
}

}  // namespace kvant::tools
