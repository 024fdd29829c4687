// Calibration and evaluation data for `kvant quantize` and `kvant compare`:
// a directory with one NAME.npy per model input, each batched along its
// first axis (row i of every file is sample i; where the model fixes an
// input's first dimension and the file's differs from the other inputs'
// sample count, along its first open axis of that extent: silero VAD's
// state [2, N, 128]; a scalar input is shared by every sample), cut into
// batches of rows.
#ifndef KVANT_TOOLS_DATASET_H_
#define KVANT_TOOLS_DATASET_H_

#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvant/kvant.h"
#include "quantize/calibrate.h"

namespace kvant::tools {

// `inputs`: the model's inputs. A fully fixed shape sets the batch size (its
// first dimension); an open dimension takes up to `batch_rows` rows. `max_samples` (0: all) keeps
// the first rows. Missing files, disagreeing row counts and NaN or Inf are
// errors that name the file.
absl::StatusOr<std::vector<quantize::CalibrationBatch>> LoadDataset(const std::string& dir,
                                                                   const std::vector<ValueInfo>& inputs,
                                                                   int64_t max_samples, int64_t batch_rows);

// Seeded random contents for a model input: f32/f64/f16 from N(0, 1), integer
// types small non-negative values (token ids, indices), bytes uniform.
Tensor RandomTensor(DataType type, const std::vector<int64_t>& shape, std::mt19937_64& rng);

// Progress on stderr: a bar redrawn in place on a terminal, else a line at
// every tenth.
quantize::ProgressFn StderrProgress();

}  // namespace kvant::tools

#endif  // KVANT_TOOLS_DATASET_H_
