// Kvant public API: the one header an application includes.
//
// Load an ONNX model into a Session, then call Run with named input tensors.
// A Session is immutable after Load; Run may be called from several threads at
// once (each call plans and uses its own arena). Every failure a caller can
// cause comes back as an absl::Status naming the file, node or tensor at fault.
#ifndef KVANT_KVANT_H_
#define KVANT_KVANT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvant {

// Element types, numbered as ONNX's TensorProto.DataType so conversions are casts.
enum class DataType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
};

// Bytes per element; 0 for kUndefined and kString.
size_t DataTypeSize(DataType type);
// Lower-case short name: "f32", "u8", "s64", "bool" ...
const char* DataTypeName(DataType type);

// A dense, row-major tensor. Copies share the buffer (like a shared_ptr);
// use Clone() for a deep copy.
class Tensor {
 public:
  Tensor() = default;
  // Allocates a zero-filled, 64-byte aligned buffer (throws std::bad_alloc
  // when the heap has none, as std::vector does).
  static Tensor Zeros(DataType dtype, std::vector<int64_t> shape);
  // Allocates a 64-byte aligned buffer whose contents are unspecified.
  static Tensor Uninitialized(DataType dtype, std::vector<int64_t> shape);
  // Wraps memory the caller keeps alive (owner may be null) without copying.
  static Tensor Wrap(DataType dtype, std::vector<int64_t> shape, void* data,
                     std::shared_ptr<void> owner = nullptr);
  template <typename T>
  static Tensor FromVector(DataType dtype, std::vector<int64_t> shape,
                           const std::vector<T>& values);

  DataType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t num_elements() const;
  size_t byte_size() const { return num_elements() * DataTypeSize(dtype_); }
  bool empty() const { return dtype_ == DataType::kUndefined; }

  void* raw_data() { return data_; }
  const void* raw_data() const { return data_; }
  template <typename T>
  T* data() { return static_cast<T*>(data_); }
  template <typename T>
  const T* data() const { return static_cast<const T*>(data_); }

  Tensor Clone() const;
  // Same buffer, new shape with the same element count.
  absl::StatusOr<Tensor> Reshaped(std::vector<int64_t> shape) const;

 private:
  DataType dtype_ = DataType::kUndefined;
  std::vector<int64_t> shape_;
  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
};

template <typename T>
Tensor Tensor::FromVector(DataType dtype, std::vector<int64_t> shape,
                          const std::vector<T>& values) {
  Tensor t = Zeros(dtype, std::move(shape));
  size_t n = std::min(values.size() * sizeof(T), t.byte_size());
  const auto* src = reinterpret_cast<const unsigned char*>(values.data());
  auto* dst = static_cast<unsigned char*>(t.raw_data());
  for (size_t i = 0; i < n; ++i) dst[i] = src[i];
  return t;
}

using TensorMap = std::map<std::string, Tensor>;

// A graph input or output as the model declares it. Symbolic or unknown
// dimensions are -1 in `shape`, with their name (if any) in `dim_names`.
struct ValueInfo {
  std::string name;
  DataType dtype = DataType::kUndefined;
  bool rank_known = false;
  std::vector<int64_t> shape;
  std::vector<std::string> dim_names;
};

// Memory for the buffers a Run allocates: its arena (every intermediate
// tensor and kernel scratch space) and its output tensors. Implementations
// must be thread-safe; Run calls them from the calling thread.
class Allocator {
 public:
  virtual ~Allocator() = default;
  // A 64-byte aligned block of at least `bytes` bytes, or nullptr when none
  // can be had (Run then returns ResourceExhausted).
  virtual void* Allocate(size_t bytes) = 0;
  virtual void Free(void* p) = 0;
};

// Compute precision of matrix products (everything else stays FP32).
enum class Precision {
  kFp32,
  // MatMul/Gemm with constant weights, and 2-D convolutions with group 1 in
  // graphs of two or more, in BF16 with FP32 accumulation where the CPU has
  // BF16 arithmetic (AVX-512 BF16, AMX-BF16) and the reduction is at least
  // 128 deep; FP32 elsewhere.
  kBf16,
  // Constant weights of MatMul, Gemm, group-1 2-D convolutions (in graphs of
  // two or more) and LSTM/GRU/RNN stored in FP16 (half the weight memory
  // and bandwidth) and widened to FP32 as the GEMM uses them: activations,
  // products and sums stay FP32, so nothing can overflow at run time.
  // Weights that do not fit FP16 (above 65504, or a tensor all below its
  // smallest normal) stay FP32. The CPU path of a "FP16" model:
  // this build has no FP16 arithmetic kernels.
  kFp16,
};

struct SessionOptions {
  // Intra-op threads for this session (1 = run on the calling thread).
  int num_threads = 1;
  // Idle pool threads, and a Run waiting for them, poll for up to 200 us
  // before they sleep, so consecutive operators start without a thread
  // wake-up (ONNX Runtime's allow_spinning). False: sleep at once, leaving
  // the cores to other work between runs.
  bool allow_spinning = true;
  // Graph optimizations: constant folding, BatchNorm folding, activation fusion.
  bool optimize = true;
  // Refuse plans whose arena and graph outputs together exceed this many bytes.
  int64_t max_arena_bytes = int64_t{16} << 30;
  // Refuse models whose weights exceed this many bytes.
  int64_t max_weight_bytes = int64_t{16} << 30;
  // Time every kernel call; read the totals with Session::Profile().
  bool profile = false;
  // Dynamic INT8: MatMul and Gemm with constant FP32 weights run on the INT8
  // GEMM, weights quantized once at load (s8, symmetric per output column),
  // activations per call (u8, range of the call's data), output in FP32;
  // LSTM, GRU and RNN likewise (weights per gate column, the input and each
  // step's hidden state quantized per product). The model file is not changed.
  bool dynamic_int8 = false;
  Precision precision = Precision::kFp32;
  // Run-time buffers come from here (null: the C heap, 64-byte aligned).
  // Outputs keep the allocator alive until they are released.
  std::shared_ptr<Allocator> allocator;
};

// Time spent in one graph node over all profiled runs.
struct NodeProfile {
  std::string node;    // "Conv 'conv1'"
  std::string kernel;  // registry row and implementation, e.g. "conv_f32 gemm_f32_avx512_14x32"
  std::string precision;  // what it computed in, as PlanStepReport::precision
  int64_t calls = 0;
  double total_ms = 0;
};

// One executed step of a plan.
struct PlanStepReport {
  std::string node;       // "Conv 'conv1'"
  std::string op;         // the executed operator ("QLinearConvNhwc", "Gemm", ...)
  std::string kernel;     // registry row, e.g. "conv_f32"
  std::string impl;       // implementation, e.g. "gemm_f32_avx512_14x32" (may be empty)
  std::string precision;  // "int8", "bf16", "q/dq" (a conversion), else the output's type ("f32", "s64", ...)
};

// Memory and kernel plan for one input-shape signature.
struct PlanReport {
  int64_t arena_bytes = 0;        // size of the arena this plan needs
  int64_t lower_bound_bytes = 0;  // largest sum of live tensor sizes at any step
  int64_t weight_bytes = 0;       // constant and pre-packed weights
  int num_steps = 0;              // kernels executed per Run
  int int8_steps = 0;             // steps computing in INT8
  int float_steps = 0;            // steps computing in f32 or bf16 (data movement not counted)
  int conversions = 0;            // QuantizeLinear/DequantizeLinear steps left in the plan
  std::vector<PlanStepReport> steps;
  std::string text;               // one line per step: node, op, kernel, outputs
};

namespace internal {
class SessionImpl;
}

class Session {
 public:
  static absl::StatusOr<Session> Load(const std::string& path,
                                      const SessionOptions& options = {});
  static absl::StatusOr<Session> LoadFromBytes(std::string_view bytes,
                                               const SessionOptions& options = {},
                                               const std::string& base_dir = ".");

  const std::vector<ValueInfo>& inputs() const;
  const std::vector<ValueInfo>& outputs() const;

  // Runs the model. Every graph input must be given, with its declared dtype and
  // a shape that matches its static dimensions. Thread-safe.
  absl::StatusOr<TensorMap> Run(const TensorMap& inputs) const;

  // The plan Run would use for inputs of these shapes (planned and cached).
  absl::StatusOr<PlanReport> Plan(const std::map<std::string, std::vector<int64_t>>& shapes) const;
  // The plan Run would use for these inputs: their shapes, and the values of
  // small integer inputs where shapes depend on them (an If on silero VAD's
  // sample rate), as Run decides.
  absl::StatusOr<PlanReport> Plan(const TensorMap& inputs) const;

  // The optimized graph as text.
  std::string GraphText() const;

  // Per-node times accumulated while SessionOptions::profile is set, in
  // execution order (empty otherwise).
  std::vector<NodeProfile> Profile() const;

 private:
  friend class internal::SessionImpl;
  explicit Session(std::shared_ptr<const internal::SessionImpl> impl);
  std::shared_ptr<const internal::SessionImpl> impl_;
};

// The CPU capability table of this machine as text (after KVANT_CPU_ISA).
std::string DescribeHardware();

}  // namespace kvant

#endif  // KVANT_KVANT_H_
