// .npy datasets and progress lines (see the header).
#include "tools/dataset.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
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

namespace {

// The axis an input's samples run along, given the sample count `rows` of
// the inputs whose first dimension the model leaves open (-1: none): axis
// 0, unless the model fixes it and the file's first dimension is not `rows`
// (silero VAD's state [2, N, 128]: axis 1, the first open one of extent
// `rows`); -1 for a scalar, which every batch shares.
int64_t SampleAxis(const ValueInfo& in, const Tensor& t, int64_t rows) {
  if (t.rank() == 0) return -1;
  if (!in.rank_known || in.shape[0] < 0 || rows < 0 || t.shape()[0] == rows) return 0;
  for (size_t i = 1; i < in.shape.size(); ++i) {
    if (in.shape[i] < 0 && t.shape()[i] == rows) return static_cast<int64_t>(i);
  }
  return 0;
}

// Samples [r, r + n) of t along `axis`: a view for axis 0, else a copy.
Tensor SampleRows(const Tensor& t, int64_t axis, int64_t r, int64_t n) {
  if (axis < 0) return t;
  std::vector<int64_t> shape = t.shape();
  int64_t outer = 1, inner = DataTypeSize(t.dtype());
  for (int64_t i = 0; i < axis; ++i) outer *= shape[i];
  for (int64_t i = axis + 1; i < t.rank(); ++i) inner *= shape[i];
  const int64_t rows = shape[axis];
  shape[axis] = n;
  if (axis == 0) {  // a view that keeps the file's buffer alive
    auto owner = std::make_shared<Tensor>(t);
    return Tensor::Wrap(t.dtype(), shape, static_cast<char*>(owner->raw_data()) + r * inner, owner);
  }
  Tensor out = Tensor::Zeros(t.dtype(), shape);
  for (int64_t o = 0; o < outer; ++o) {
    std::memcpy(static_cast<char*>(out.raw_data()) + o * n * inner,
                static_cast<const char*>(t.raw_data()) + (o * rows + r) * inner, n * inner);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<quantize::CalibrationBatch>> LoadDataset(const std::string& dir,
                                                                   const std::vector<ValueInfo>& inputs,
                                                                   int64_t max_samples, int64_t batch_rows) {
  if (!fs::is_directory(dir)) {
    return absl::NotFoundError(absl::StrFormat("failed to read the data directory %s: not a directory", dir));
  }
  std::vector<Tensor> data;
  std::vector<std::string> files;
  int64_t open_rows = -1;  // the sample count of the inputs with an open first dimension
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
    if ((in.rank_known && t->rank() != static_cast<int64_t>(in.shape.size())) || (!in.rank_known && t->rank() == 0)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to read %s: input '%s' must have rank %d (samples along the first axis), got %d", path, in.name,
          in.shape.size(), t->rank()));
    }
    quantize::CalibrationBatch whole{{{in.name, *t}}, path};
    if (auto s = quantize::CheckFinite(whole); !s.ok()) return s;
    if (open_rows < 0 && t->rank() > 0 && (!in.rank_known || in.shape[0] < 0)) open_rows = t->shape()[0];
    data.push_back(*std::move(t));
    files.push_back(path);
  }
  int64_t rows = -1, batch = std::max<int64_t>(1, batch_rows);
  bool fixed_batch = false;
  std::vector<int64_t> axes;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ValueInfo& in = inputs[i];
    const Tensor& t = data[i];
    const int64_t axis = SampleAxis(in, t, open_rows);
    axes.push_back(axis);
    if (axis < 0) continue;
    if (rows >= 0 && t.shape()[axis] != rows) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to read %s: every file must have %d rows (samples), got %d",
                                                        files[i], rows, t.shape()[axis]));
    }
    rows = t.shape()[axis];
    if (in.rank_known && in.shape[axis] > 0) {  // a fixed batch size: whole batches only
      batch = in.shape[axis];
      fixed_batch = true;
    }
  }
  if (rows < 0) rows = 1;  // scalars only: one sample
  if (max_samples > 0) rows = std::min(rows, max_samples);
  std::vector<quantize::CalibrationBatch> batches;
  if (fixed_batch && rows < batch) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to read the data directory %s: the model takes batches of %d rows, the files have %d", dir, batch, rows));
  }
  for (int64_t r = 0; fixed_batch ? r + batch <= rows : r < rows; r += batch) {
    const int64_t n = std::min(batch, rows - r);
    quantize::CalibrationBatch b;
    for (size_t i = 0; i < inputs.size(); ++i) b.inputs[inputs[i].name] = SampleRows(data[i], axes[i], r, n);
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
