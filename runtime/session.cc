// The public Session: load (import, optimize, compile), input validation, the
// per-shape plan cache with its arena pool, and plan execution.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include <sanitizer/asan_interface.h>

#include "absl/base/casts.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "graph/onnx_import.h"
#include "kvant/kvant.h"
#include "runtime/compile.h"
#include "runtime/cpu_caps.h"
#include "runtime/heap_allocator.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace internal {

namespace {

// Under AddressSanitizer the arena stays poisoned except for the buffers of
// the step that runs (its inputs, outputs and scratch), so a kernel that
// reads or writes past its own tensors into a neighbour's is reported as a
// heap overflow is. Without ASan these are no-ops.
void PoisonArgs(absl::Span<const TensorArg> args, char* lo, char* hi, bool poison) {
  for (const TensorArg& a : args) {
    char* p = static_cast<char*>(a.data);
    if (p < lo || p >= hi) continue;  // not in the arena
    const size_t bytes = a.num_elements() * DataTypeSize(a.dtype);
    if (poison) {
      ASAN_POISON_MEMORY_REGION(p, bytes);
    } else {
      ASAN_UNPOISON_MEMORY_REGION(p, bytes);
    }
  }
}

struct ArenaDeleter {
  Allocator* allocator;
  void operator()(char* p) const { allocator->Free(p); }
};
using ArenaBuffer = std::unique_ptr<char, ArenaDeleter>;

// A plan and the arenas of the runs that used it; concurrent runs take
// different arenas.
struct CachedPlan {
  std::unique_ptr<ExecutionPlan> plan;
  std::mutex mu;
  std::vector<ArenaBuffer> free_arenas ABSL_GUARDED_BY(mu);

  // A free arena, or a new one (null when the allocator has none).
  ArenaBuffer Acquire(Allocator* allocator) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!free_arenas.empty()) {
        ArenaBuffer a = std::move(free_arenas.back());
        free_arenas.pop_back();
        return a;
      }
    }
    const size_t bytes = std::max<int64_t>(64, (plan->memory.arena_bytes + 63) / 64 * 64);
    return ArenaBuffer(static_cast<char*>(allocator->Allocate(bytes)), ArenaDeleter{allocator});
  }
  void Release(ArenaBuffer a) {
    std::lock_guard<std::mutex> lock(mu);
    free_arenas.push_back(std::move(a));
  }
};

// An uninitialized tensor from `allocator`, or ResourceExhausted.
absl::StatusOr<Tensor> AllocateTensor(const std::shared_ptr<Allocator>& allocator, DataType dtype,
                                      const std::vector<int64_t>& shape, std::string_view what) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const size_t bytes = n * DataTypeSize(dtype);
  void* p = allocator->Allocate(bytes);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(absl::StrFormat("%s: allocating %d bytes failed", what, bytes));
  }
  return Tensor::Wrap(dtype, shape, p, std::shared_ptr<void>(p, [allocator](void* q) { allocator->Free(q); }));
}

ValueInfo ToValueInfo(const Graph& g, const std::string& name) {
  ValueInfo vi;
  vi.name = name;
  if (const ValueType* t = g.FindType(name)) {
    vi.dtype = t->dtype;
    vi.rank_known = t->shape.rank_known;
    for (const Dim& d : t->shape.dims) {
      vi.shape.push_back(d.value);
      vi.dim_names.push_back(d.symbol);
    }
  }
  return vi;
}

}  // namespace

class SessionImpl {
 public:
  bool profile = false;
  mutable std::mutex profile_mu;
  mutable std::map<std::string, size_t> profile_index ABSL_GUARDED_BY(profile_mu);
  mutable std::vector<NodeProfile> profile_rows ABSL_GUARDED_BY(profile_mu);

  void Record(const PlanStep& step, double ms) const {
    std::lock_guard<std::mutex> lock(profile_mu);
    auto [it, inserted] = profile_index.emplace(step.label, profile_rows.size());
    if (inserted) {
      std::string impl = step.kernel->Describe();
      profile_rows.push_back(NodeProfile{step.label,
                                         impl.empty() ? step.def->name : std::string(step.def->name) + " " + impl,
                                         step.precision});
    }
    NodeProfile& row = profile_rows[it->second];
    ++row.calls;
    row.total_ms += ms;
  }

  static Session Wrap(std::shared_ptr<const SessionImpl> impl) { return Session(std::move(impl)); }

  std::string source;
  std::shared_ptr<Allocator> allocator;
  std::unique_ptr<CompiledModel> model;
  std::unique_ptr<ThreadPool> pool;
  std::vector<ValueInfo> inputs, outputs;
  mutable std::mutex mu;
  mutable absl::flat_hash_map<std::string, std::shared_ptr<CachedPlan>> plans ABSL_GUARDED_BY(mu);

  // Plans are cached by input shapes. When a plan needs the contents of small
  // inputs to know its shapes (data-dependent shapes: a Reshape target, Pad
  // amounts, Resize scales or an If condition fed by the caller), the session
  // switches to keying plans by the values of its small integer, bool and
  // float inputs too.
  // The cache is cleared past kMaxCachedPlans entries.
  static constexpr int64_t kMaxValueKeyedElements = 64;
  static constexpr size_t kMaxCachedPlans = 256;
  mutable std::atomic<bool> value_keyed{false};

  static bool SmallIntegerInput(const Tensor& t) {
    const bool integer = t.dtype() == DataType::kInt64 || t.dtype() == DataType::kInt32 || t.dtype() == DataType::kBool;
    const bool small_float = t.dtype() == DataType::kFloat32 && t.num_elements() <= 16;
    return (integer && t.num_elements() <= kMaxValueKeyedElements) || small_float;
  }

  absl::StatusOr<std::shared_ptr<CachedPlan>> GetPlan(const std::map<std::string, std::vector<int64_t>>& shapes,
                                                      const TensorMap* inputs = nullptr) const {
    std::string key;
    for (const auto& [name, s] : shapes) absl::StrAppend(&key, name, ":", absl::StrJoin(s, ","), ";");
    TensorMap values;
    if (inputs != nullptr && value_keyed.load()) {
      for (const auto& [name, t] : *inputs) {
        if (!SmallIntegerInput(t)) continue;
        values[name] = t;
        absl::StrAppend(&key, name, "=");
        for (int64_t i = 0; i < t.num_elements(); ++i) {
          switch (t.dtype()) {
            case DataType::kInt64: absl::StrAppend(&key, t.data<int64_t>()[i], ","); break;
            case DataType::kInt32: absl::StrAppend(&key, t.data<int32_t>()[i], ","); break;
            case DataType::kBool: absl::StrAppend(&key, t.data<uint8_t>()[i] ? 1 : 0, ","); break;
            default: absl::StrAppend(&key, absl::bit_cast<uint32_t>(t.data<float>()[i]), ","); break;
          }
        }
        absl::StrAppend(&key, ";");
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = plans.find(key);
      if (it != plans.end()) return it->second;
    }
    auto plan = PlanForShapes(*model, shapes, values.empty() ? nullptr : &values);
    if (!plan.ok() && plan.status().code() == absl::StatusCode::kUnimplemented && inputs != nullptr &&
        !value_keyed.load()) {
      bool any = false;
      for (const auto& [name, t] : *inputs) any |= SmallIntegerInput(t);
      if (any) {
        value_keyed.store(true);
        return GetPlan(shapes, inputs);
      }
    }
    if (!plan.ok()) return plan.status();
    auto cached = std::make_shared<CachedPlan>();
    cached->plan = *std::move(plan);
    std::lock_guard<std::mutex> lock(mu);
    if (plans.size() >= kMaxCachedPlans) plans.clear();  // runs in flight keep their plan alive
    auto [it, inserted] = plans.emplace(key, cached);
    return it->second;
  }

  absl::Status ValidateInputs(const TensorMap& given, std::map<std::string, std::vector<int64_t>>* shapes) const {
    for (const auto& [name, t] : given) {
      bool known = false;
      for (const ValueInfo& vi : inputs) known |= vi.name == name;
      if (!known) {
        std::vector<std::string> names;
        for (const ValueInfo& vi : inputs) names.push_back(vi.name);
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to run %s: input '%s' must be one of the model's inputs [%s], got an unknown name", source, name,
            absl::StrJoin(names, ", ")));
      }
    }
    for (const ValueInfo& vi : inputs) {
      auto it = given.find(vi.name);
      if (it == given.end()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("failed to run %s: input '%s' must be given, got none", source, vi.name));
      }
      const Tensor& t = it->second;
      if (t.dtype() != vi.dtype) {
        return absl::InvalidArgumentError(absl::StrFormat("failed to run %s: input '%s' must be %s, got %s", source,
                                                          vi.name, DataTypeName(vi.dtype), DataTypeName(t.dtype())));
      }
      std::vector<std::string> dims;
      for (size_t d = 0; d < vi.shape.size(); ++d) {
        dims.push_back(vi.shape[d] >= 0 ? absl::StrCat(vi.shape[d]) : vi.dim_names[d].empty() ? "?" : vi.dim_names[d]);
      }
      const std::string want = absl::StrCat("[", absl::StrJoin(dims, ","), "]");
      const std::string got = absl::StrCat("[", absl::StrJoin(t.shape(), ","), "]");
      if (vi.rank_known && t.rank() != static_cast<int64_t>(vi.shape.size())) {
        return absl::InvalidArgumentError(absl::StrFormat("failed to run %s: input '%s' must have shape %s, got %s",
                                                          source, vi.name, want, got));
      }
      for (size_t d = 0; vi.rank_known && d < vi.shape.size(); ++d) {
        if (vi.shape[d] >= 0 && vi.shape[d] != t.shape()[d]) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "failed to run %s: input '%s' must have shape %s, got %s (dimension %d)", source, vi.name, want, got, d));
        }
      }
      auto count = ElementCount(t.shape());
      if (!count.ok()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("failed to run %s: input '%s': %s", source, vi.name, count.status().message()));
      }
      if (*count > 0 && t.raw_data() == nullptr) {
        return absl::InvalidArgumentError(absl::StrFormat("failed to run %s: input '%s' has no data", source, vi.name));
      }
      (*shapes)[vi.name] = t.shape();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<TensorMap> Run(const TensorMap& given) const {
    std::map<std::string, std::vector<int64_t>> shapes;
    if (auto s = ValidateInputs(given, &shapes); !s.ok()) return s;
    auto cached = GetPlan(shapes, &given);
    if (!cached.ok()) return cached.status();
    const ExecutionPlan& plan = *(*cached)->plan;
    const Graph& g = model->graph;

    std::vector<Tensor> outs(g.outputs.size());
    for (size_t i = 0; i < g.outputs.size(); ++i) {
      const ValueSlot& s = plan.slots[plan.output_slots[i]];
      // Kernels write every element of their outputs: no need to zero them.
      if (s.kind != ValueSlot::Kind::kOutput) continue;
      auto t = AllocateTensor(allocator, s.dtype, s.shape,
                              absl::StrFormat("failed to run %s: output '%s'", source, g.outputs[i]));
      if (!t.ok()) return t.status();
      outs[i] = *std::move(t);
    }
    std::vector<const Tensor*> in_tensors;
    for (const std::string& name : g.inputs) in_tensors.push_back(&given.at(name));

    ArenaBuffer arena = (*cached)->Acquire(allocator.get());
    if (arena == nullptr) {
      return absl::ResourceExhaustedError(absl::StrFormat("failed to run %s: allocating the %d-byte arena failed",
                                                          source, plan.memory.arena_bytes));
    }
    auto data_of = [&](const ValueSlot& s) -> void* {
      switch (s.kind) {
        case ValueSlot::Kind::kInput: return const_cast<void*>(in_tensors[s.index]->raw_data());
        case ValueSlot::Kind::kConstant: return const_cast<void*>(s.constant);
        case ValueSlot::Kind::kOutput: return outs[s.index].raw_data();
        case ValueSlot::Kind::kArena: return arena.get() + s.offset;
      }
      return nullptr;
    };
    absl::InlinedVector<TensorArg, 8> in_args, out_args;
    absl::Status status;
    char* const arena_end = arena.get() + plan.memory.arena_bytes;
    ASAN_POISON_MEMORY_REGION(arena.get(), plan.memory.arena_bytes);
    for (const PlanStep& step : plan.steps) {
      in_args.clear();
      out_args.clear();
      for (int s : step.inputs) {
        if (s < 0) {
          in_args.push_back(TensorArg{});
          continue;
        }
        const ValueSlot& v = plan.slots[s];
        in_args.push_back(TensorArg{v.dtype, v.shape, data_of(v)});
      }
      for (int s : step.outputs) {
        if (s < 0) {
          out_args.push_back(TensorArg{});
          continue;
        }
        const ValueSlot& v = plan.slots[s];
        out_args.push_back(TensorArg{v.dtype, v.shape, data_of(v)});
      }
      KernelContext ctx{in_args, out_args, step.scratch_bytes ? arena.get() + step.scratch_offset : nullptr,
                        pool.get()};
      PoisonArgs(in_args, arena.get(), arena_end, false);
      PoisonArgs(out_args, arena.get(), arena_end, false);
      if (ctx.scratch != nullptr) ASAN_UNPOISON_MEMORY_REGION(ctx.scratch, step.scratch_bytes);
      if (profile) {
        const auto t0 = std::chrono::steady_clock::now();
        status = step.kernel->Run(ctx);
        Record(step, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      } else {
        status = step.kernel->Run(ctx);
      }
      if (ctx.scratch != nullptr) ASAN_POISON_MEMORY_REGION(ctx.scratch, step.scratch_bytes);
      PoisonArgs(in_args, arena.get(), arena_end, true);
      PoisonArgs(out_args, arena.get(), arena_end, true);
      if (!status.ok()) break;
    }
    ASAN_UNPOISON_MEMORY_REGION(arena.get(), plan.memory.arena_bytes);
    (*cached)->Release(std::move(arena));
    if (!status.ok()) return status;

    TensorMap result;
    for (size_t i = 0; i < g.outputs.size(); ++i) {
      const ValueSlot& s = plan.slots[plan.output_slots[i]];
      if (s.kind == ValueSlot::Kind::kInput || s.kind == ValueSlot::Kind::kConstant) {
        const Tensor& src = s.kind == ValueSlot::Kind::kInput ? *in_tensors[s.index] : plan.constants.at(s.name);
        auto t = AllocateTensor(allocator, src.dtype(), src.shape(),
                                absl::StrFormat("failed to run %s: output '%s'", source, g.outputs[i]));
        if (!t.ok()) return t.status();
        if (src.byte_size() > 0) std::memcpy(t->raw_data(), src.raw_data(), src.byte_size());
        outs[i] = *std::move(t);
      }
      result[g.outputs[i]] = std::move(outs[i]);
    }
    return result;
  }
};

}  // namespace internal

Session::Session(std::shared_ptr<const internal::SessionImpl> impl) : impl_(std::move(impl)) {}

namespace {

absl::StatusOr<Session> Build(absl::StatusOr<Graph> graph, const SessionOptions& options, const std::string& source,
                              std::shared_ptr<internal::SessionImpl> impl) {
  if (!graph.ok()) return graph.status();
  if (options.num_threads < 1 || options.num_threads > 1024) {
    return absl::InvalidArgumentError(
        absl::StrFormat("failed to load %s: num_threads must be in [1, 1024], got %d", source, options.num_threads));
  }
  impl->source = source;
  impl->profile = options.profile;
  impl->allocator = options.allocator ? options.allocator : std::make_shared<internal::HeapAllocator>();
  for (const std::string& in : graph->inputs) impl->inputs.push_back(internal::ToValueInfo(*graph, in));
  for (const std::string& out : graph->outputs) impl->outputs.push_back(internal::ToValueInfo(*graph, out));
  auto model = CompileModel(*std::move(graph), options, ActiveCpuFeatures());
  if (!model.ok()) return model.status();
  impl->model = *std::move(model);
  for (size_t i = 0; i < impl->outputs.size(); ++i) {
    impl->outputs[i] = internal::ToValueInfo(impl->model->graph, impl->outputs[i].name);
  }
  impl->pool = std::make_unique<ThreadPool>(options.num_threads, options.allow_spinning);
  return internal::SessionImpl::Wrap(std::move(impl));
}

}  // namespace

absl::StatusOr<Session> Session::Load(const std::string& path, const SessionOptions& options) {
  ImportOptions io;
  io.max_weight_bytes = options.max_weight_bytes;
  return Build(ImportOnnxFile(path, io), options, path, std::make_shared<internal::SessionImpl>());
}

absl::StatusOr<Session> Session::LoadFromBytes(std::string_view bytes, const SessionOptions& options,
                                               const std::string& base_dir) {
  ImportOptions io;
  io.max_weight_bytes = options.max_weight_bytes;
  return Build(ImportOnnxBytes(bytes, base_dir, "<memory>", io), options, "<memory>",
               std::make_shared<internal::SessionImpl>());
}

const std::vector<ValueInfo>& Session::inputs() const { return impl_->inputs; }
const std::vector<ValueInfo>& Session::outputs() const { return impl_->outputs; }

absl::StatusOr<TensorMap> Session::Run(const TensorMap& inputs) const { return impl_->Run(inputs); }

absl::StatusOr<PlanReport> Session::Plan(const std::map<std::string, std::vector<int64_t>>& shapes) const {
  for (const ValueInfo& vi : impl_->inputs) {
    if (!shapes.contains(vi.name)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("failed to plan %s: input '%s' must have a shape, got none", impl_->source, vi.name));
    }
  }
  auto cached = impl_->GetPlan(shapes);
  if (!cached.ok()) return cached.status();
  return (*cached)->plan->report;
}

absl::StatusOr<PlanReport> Session::Plan(const TensorMap& inputs) const {
  std::map<std::string, std::vector<int64_t>> shapes;
  if (auto s = impl_->ValidateInputs(inputs, &shapes); !s.ok()) return s;
  auto cached = impl_->GetPlan(shapes, &inputs);
  if (!cached.ok()) return cached.status();
  return (*cached)->plan->report;
}

std::string Session::GraphText() const { return impl_->model->graph.DebugString(); }

std::vector<NodeProfile> Session::Profile() const {
  std::lock_guard<std::mutex> lock(impl_->profile_mu);
  return impl_->profile_rows;
}

}  // namespace kvant
