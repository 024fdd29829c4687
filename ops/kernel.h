// The kernel interface: what a kernel is given (KernelInit once, KernelContext
// per run), what it declares (KernelDef: op, dtypes, required CPU features,
// priority, factory) and the thread-pool interface it parallelizes on.
// A kernel never sees the Graph.
#ifndef KVANT_OPS_KERNEL_H_
#define KVANT_OPS_KERNEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "graph/graph.h"

namespace kvant {

// CPU features as bits; runtime/cpu_caps fills them from cpuid and xgetbv.
enum CpuFeature : uint32_t {
  kCpuSse41 = 1u << 0,
  kCpuAvx2 = 1u << 1,
  kCpuFma = 1u << 2,
  kCpuF16c = 1u << 3,
  kCpuAvx512f = 1u << 4,
  kCpuAvx512bw = 1u << 5,
  kCpuAvx512vl = 1u << 6,
  kCpuAvx512dq = 1u << 7,
  kCpuAvx512vnni = 1u << 8,
  kCpuAvxVnni = 1u << 9,
  kCpuAvx512bf16 = 1u << 10,
  kCpuAvx512fp16 = 1u << 11,
  kCpuAmxInt8 = 1u << 12,
  kCpuAmxBf16 = 1u << 13,
  kCpuAvx512vbmi = 1u << 14,
};
using CpuFeatures = uint32_t;
inline constexpr CpuFeatures kIsaAvx2 = kCpuAvx2 | kCpuFma;
inline constexpr CpuFeatures kIsaAvx512 = kIsaAvx2 | kCpuAvx512f | kCpuAvx512bw | kCpuAvx512vl | kCpuAvx512dq;

// Splits [0, n) into chunks and runs them, possibly on several threads; returns
// when all chunks are done. Implemented by runtime/thread_pool.
class ParallelRunner {
 public:
  virtual ~ParallelRunner() = default;
  virtual int num_threads() const = 0;
  virtual void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t begin, int64_t end)> fn) = 0;
};

// Runs everything on the calling thread.
class InlineRunner final : public ParallelRunner {
 public:
  int num_threads() const override { return 1; }
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn) override {
    if (n > 0) fn(0, n);
  }
};

// One operand at run time: dtype, static shape, data (null for an omitted input).
struct TensorArg {
  DataType dtype = DataType::kUndefined;
  absl::Span<const int64_t> shape;
  void* data = nullptr;

  bool present() const { return dtype != DataType::kUndefined; }
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t num_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  template <typename T>
  T* as() const { return static_cast<T*>(data); }
  // A Tensor over the same memory (no copy), for helpers that take Tensors.
  Tensor View() const { return Tensor::Wrap(dtype, std::vector<int64_t>(shape.begin(), shape.end()), data); }
};

struct KernelContext {
  absl::Span<const TensorArg> inputs;
  absl::Span<const TensorArg> outputs;
  void* scratch = nullptr;  // ScratchBytes() bytes, 64-byte aligned, not zeroed
  ParallelRunner* pool = nullptr;

  int num_inputs() const { return static_cast<int>(inputs.size()); }
  const TensorArg& input(int i) const { return inputs[i]; }
  bool has_input(int i) const { return i < num_inputs() && inputs[i].present(); }
  const TensorArg& output(int i) const { return outputs[i]; }
};

// What a kernel factory sees once per session: attributes, types, which inputs
// are constant (to pre-pack them), shapes as far as they are known, the CPU.
struct KernelInit {
  std::string node_label;
  std::string op;  // operator type, e.g. "Relu"
  const AttributeMap* attrs = nullptr;
  int64_t opset = 0;
  std::vector<DataType> input_types;
  std::vector<DataType> output_types;
  std::vector<const Tensor*> constant_inputs;  // null where not constant
  std::vector<Shape> input_shapes;
  CpuFeatures cpu = 0;
};

// Static shapes of one step, for sizing scratch.
struct KernelShapes {
  std::vector<std::vector<int64_t>> inputs;
  std::vector<std::vector<int64_t>> outputs;
  int num_threads = 1;  // threads of the pool Run will get
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual size_t ScratchBytes(const KernelShapes& shapes) const { return 0; }
  // Only arithmetic: packing and parameter math happened in the factory.
  virtual absl::Status Run(const KernelContext& ctx) const = 0;
  // The implementation actually chosen, e.g. "gemm_f32_avx512_14x32".
  virtual std::string Describe() const { return ""; }
  // Bytes of pre-packed constants this kernel holds.
  virtual int64_t PackedBytes() const { return 0; }
};

// What Describe() adds after the GEMM's name of a kernel whose constant
// weights are stored in FP16 (SessionOptions::precision = fp16); the plan
// report counts such steps as precision "fp16".
inline constexpr const char* kHalfWeightsTag = " fp16-weights";

using KernelFactory = absl::StatusOr<std::unique_ptr<Kernel>> (*)(const KernelInit&);

enum class Backend { kCpu, kCuda };

// Bit set of DataTypes: DtypeBit(kFloat32) | ...
constexpr uint64_t DtypeBit(DataType t) { return uint64_t{1} << static_cast<int>(t); }
inline constexpr uint64_t kAnyDtype = ~uint64_t{0};

// One row of a backend's kernel table (ops/cpu/kernels.inc).
struct KernelDef {
  const char* name;    // grep-able: "conv_f32", "add_f32"
  const char* domain;  // "" = default ONNX domain
  const char* op;
  Backend backend;
  uint64_t dtypes;     // accepted types of input `type_input`
  int type_input;
  CpuFeatures needs;
  int priority;
  KernelFactory factory;
  int inplace_input;   // output 0 may overwrite this input when it dies here; -1 never
};

}  // namespace kvant

#endif  // KVANT_OPS_KERNEL_H_
