// CUDA GEMMs next to their baselines, timed with CUDA events over batches of
// launches that rotate through enough operand copies to exceed the L2 cache:
//   kvant/s8/...      our INT8 GEMM with the fused s8 requantization epilogue
//   cublaslt/s8s32/...  cuBLASLt int8 (TN, int32 out), and +epi with a separate
//                     requantization pass (what the fused epilogue saves)
//   kvant/f16/... and cublas/f16/...  FP16 in and out, FP32 accumulation
//   copy/d2d          device-to-device copy: the bandwidth the token-shape
//                     floors are computed from (bytes read + written)
// Shapes: M x N x K, with the token shapes M in {1, 16, 128}, N = K = 4096.
// `sweep/...` rows time every tile and split for the token shapes.
// Counters: TOP/s (or TFLOP/s) and GB/s of compulsory traffic.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "benchmarks/kernels/cuda_epilogue_baseline.h"
#include "ops/cuda/gemm_cuda.h"
#include "runtime/gpu_caps.h"

namespace kvant::bench {
namespace {

#define CHECK_CUDA(x)                                                                                  \
  do {                                                                                                 \
    const int err_ = static_cast<int>(x);                                                              \
    if (err_ != 0) {                                                                                   \
      std::fprintf(stderr, "%s:%d: %s failed: %d (%s)\n", __FILE__, __LINE__, #x, err_,                \
                   cudaGetErrorString(static_cast<cudaError_t>(err_)));                                \
      std::exit(1);                                                                                    \
    }                                                                                                  \
  } while (0)

constexpr int64_t kTokenShapes[][3] = {{1, 4096, 4096}, {16, 4096, 4096}, {128, 4096, 4096}};
constexpr int64_t kSquareShapes[][3] = {{1024, 1024, 1024}, {4096, 4096, 4096}};

void* DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, bytes));
  return p;
}

// Random int8 in [-127, 127] or halves in [-1, 1] (never all zeros): one
// host pattern of 64 MiB per kind, generated once, copied from a seed-dependent offset.
void FillRandom(void* dev, size_t bytes, bool halves, uint32_t seed) {
  static std::vector<uint8_t> pattern[2];
  std::vector<uint8_t>& host = pattern[halves];
  if (host.empty()) {
    host.resize(size_t{64} << 20);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    auto next = [&] {  // xorshift64
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      return x;
    };
    for (size_t i = 0; i + 1 < host.size(); i += 2) {
      if (halves) {
        const __half h = __float2half_rn(static_cast<float>(next() >> 40) / 8388608.f - 1.f);
        std::memcpy(&host[i], &h, 2);
      } else {
        host[i] = static_cast<uint8_t>(static_cast<int>(next() % 255) - 127);
        host[i + 1] = static_cast<uint8_t>(static_cast<int>(next() % 255) - 127);
      }
    }
  }
  for (size_t done = 0; done < bytes;) {
    const size_t offset = ((seed * size_t{4096} + done) % (host.size() / 2)) & ~size_t{1};
    const size_t n = std::min(bytes - done, host.size() - offset);
    CHECK_CUDA(cudaMemcpy(static_cast<uint8_t*>(dev) + done, host.data() + offset, n, cudaMemcpyHostToDevice));
    done += n;
  }
}

// Operand sets A, B rotating so that one batch touches several times the L2.
struct Operands {
  std::vector<void*> a, b;
  void* c = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int32_t* col_offset = nullptr;
  float* scale = nullptr;
  Operands(int64_t m, int64_t n, int64_t k, int elem, size_t out_bytes) {
    int device = 0, l2 = 0;
    CHECK_CUDA(cudaGetDevice(&device));
    CHECK_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device));
    const size_t set = static_cast<size_t>((m + n) * k * elem);
    const int sets = static_cast<int>(std::min<size_t>(16, std::max<size_t>(2, 4 * static_cast<size_t>(l2) / set + 1)));
    for (int i = 0; i < sets; ++i) {
      a.push_back(DeviceAlloc(m * k * elem));
      b.push_back(DeviceAlloc(n * k * elem));
      FillRandom(a.back(), m * k * elem, elem == 2, 2 * i + 1);
      FillRandom(b.back(), n * k * elem, elem == 2, 2 * i + 2);
    }
    c = DeviceAlloc(out_bytes);
    workspace_bytes = 64 << 20;
    workspace = DeviceAlloc(workspace_bytes);
    CHECK_CUDA(cudaMemset(workspace, 0, workspace_bytes));
    col_offset = static_cast<int32_t*>(DeviceAlloc(n * 4));
    scale = static_cast<float*>(DeviceAlloc(n * 4));
    std::vector<int32_t> off(n, 1000);
    std::vector<float> s(n, 1e-5f);
    CHECK_CUDA(cudaMemcpy(col_offset, off.data(), n * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(scale, s.data(), n * 4, cudaMemcpyHostToDevice));
  }
  ~Operands() {
    for (void* p : a) cudaFree(p);
    for (void* p : b) cudaFree(p);
    cudaFree(c), cudaFree(workspace), cudaFree(col_offset), cudaFree(scale);
  }
  int sets() const { return static_cast<int>(a.size()); }
};

// Times batches of `run(i, stream)` with events: one benchmark iteration is
// one batch, captured once into a CUDA graph and replayed, so that host launch
// overhead stays out of the numbers (without a graph, a 4 us kernel measures
// the host). "us/call" is the time per call; the counters count every call.
// If capture fails the batch is launched directly ("graph" = 0), as the copy
// is: a graph's memcpy node ran at 2.7 TB/s on an H200 where cudaMemcpyAsync
// reached 4.2 TB/s.
template <class Fn>
void TimeBatches(benchmark::State& state, int batch, Fn run, bool use_graph = true) {
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  for (int i = 0; i < batch; ++i) run(i, stream);  // warm-up, outside the graph
  CHECK_CUDA(cudaStreamSynchronize(stream));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  if (use_graph && cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
    for (int i = 0; i < batch; ++i) run(i, stream);
    if (cudaStreamEndCapture(stream, &graph) != cudaSuccess || cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess)
      exec = nullptr;
  }
  cudaGetLastError();  // a failed capture leaves an error behind
  double total_ms = 0;
  for (auto _ : state) {
    CHECK_CUDA(cudaEventRecord(start, stream));
    if (exec != nullptr) {
      CHECK_CUDA(cudaGraphLaunch(exec, stream));
    } else {
      for (int i = 0; i < batch; ++i) run(i, stream);
    }
    CHECK_CUDA(cudaEventRecord(stop, stream));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms / 1e3);
    total_ms += ms;
  }
  CHECK_CUDA(cudaGetLastError());
  state.counters["us/call"] = total_ms * 1e3 / (static_cast<double>(state.iterations()) * batch);
  state.counters["calls"] = batch;  // read by SetCounters
  state.counters["graph"] = exec != nullptr;
  if (exec != nullptr) cudaGraphExecDestroy(exec);
  if (graph != nullptr) cudaGraphDestroy(graph);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
}

void SetCounters(benchmark::State& state, int64_t m, int64_t n, int64_t k, int elem, int out_elem, bool flops) {
  const double calls = state.counters["calls"];
  state.counters[flops ? "TFLOP/s" : "TOP/s"] =
      benchmark::Counter(calls * 2.0 * m * n * k / 1e12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(
      calls * static_cast<double>((m * k + n * k) * elem + m * n * out_elem) / 1e9,
      benchmark::Counter::kIsIterationInvariantRate);
}

void KvantS8(benchmark::State& state, int64_t m, int64_t n, int64_t k, cuda::GemmPlan plan) {
  Operands ops(m, n, k, 1, m * n);
  cuda::GemmS8Args args;
  args.m = m, args.n = n, args.k = k, args.lda = k, args.ldb = k, args.ldc = n;
  args.col_offset = ops.col_offset, args.scale = ops.scale, args.scale_per_column = true;
  args.out = cuda::GemmS8Args::Out::kS8;
  args.c = ops.c, args.plan = plan, args.workspace = ops.workspace, args.workspace_bytes = ops.workspace_bytes;
  TimeBatches(state, 4 * ops.sets(), [&](int i, cudaStream_t stream) {
    args.a = static_cast<const int8_t*>(ops.a[i % ops.sets()]);
    args.b = static_cast<const int8_t*>(ops.b[i % ops.sets()]);
    const absl::Status s = cuda::GemmS8(args, stream);
    if (!s.ok()) state.SkipWithError(std::string(s.message()).c_str());
  });
  SetCounters(state, m, n, k, 1, 1, false);
}

void KvantF16(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
  Operands ops(m, n, k, 2, m * n * 2);
  cuda::GemmF16Args args;
  args.m = m, args.n = n, args.k = k, args.lda = k, args.ldb = k, args.ldc = n;
  args.c = ops.c, args.workspace = ops.workspace, args.workspace_bytes = ops.workspace_bytes;
  TimeBatches(state, 4 * ops.sets(), [&](int i, cudaStream_t stream) {
    args.a = static_cast<const uint16_t*>(ops.a[i % ops.sets()]);
    args.b = static_cast<const uint16_t*>(ops.b[i % ops.sets()]);
    const absl::Status s = cuda::GemmF16(args, stream);
    if (!s.ok()) state.SkipWithError(std::string(s.message()).c_str());
  });
  SetCounters(state, m, n, k, 2, 2, true);
}

// cuBLASLt int8 in its required TN layout: C^T[N,M] = B[N,K] . A[M,K]^T in
// column-major terms, int32 out; `epilogue` adds our separate requantization.
void CublasLtS8(benchmark::State& state, int64_t m, int64_t n, int64_t k, bool epilogue) {
  Operands ops(m, n, k, 1, m * n * 4);
  void* out8 = DeviceAlloc(m * n);
  cublasLtHandle_t lt;
  CHECK_CUDA(cublasLtCreate(&lt));
  cublasLtMatmulDesc_t desc;
  CHECK_CUDA(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32I, CUDA_R_32I));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CHECK_CUDA(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  CHECK_CUDA(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  cublasLtMatrixLayout_t la, lb, lc;
  CHECK_CUDA(cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, k, n, k));
  CHECK_CUDA(cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, k, m, k));
  CHECK_CUDA(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32I, n, m, n));
  cublasLtMatmulPreference_t pref;
  CHECK_CUDA(cublasLtMatmulPreferenceCreate(&pref));
  CHECK_CUDA(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &ops.workspace_bytes, sizeof ops.workspace_bytes));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  CHECK_CUDA(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &result, &found));
  if (found == 0) {
    state.SkipWithError("cuBLASLt found no int8 algorithm");
    return;
  }
  const int32_t alpha = 1, beta = 0;
  TimeBatches(state, 4 * ops.sets(), [&](int i, cudaStream_t stream) {
    CHECK_CUDA(cublasLtMatmul(lt, desc, &alpha, ops.b[i % ops.sets()], la, ops.a[i % ops.sets()], lb, &beta, ops.c,
                              lc, ops.c, lc, &result.algo, ops.workspace, ops.workspace_bytes, stream));
    if (epilogue) CHECK_CUDA(RequantizeS32ToS8(static_cast<const int32_t*>(ops.c), m, n, ops.col_offset, ops.scale,
                                               static_cast<int8_t*>(out8), stream));
  });
  SetCounters(state, m, n, k, 1, epilogue ? 1 : 4, false);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatmulDescDestroy(desc);
  cublasLtDestroy(lt);
  cudaFree(out8);
}

void CublasF16(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
  Operands ops(m, n, k, 2, m * n * 2);
  cublasHandle_t h;
  CHECK_CUDA(cublasCreate(&h));
  const float alpha = 1, beta = 0;
  TimeBatches(state, 4 * ops.sets(), [&](int i, cudaStream_t stream) {
    CHECK_CUDA(cublasSetStream(h, stream));
    CHECK_CUDA(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, ops.b[i % ops.sets()], CUDA_R_16F, k,
                            ops.a[i % ops.sets()], CUDA_R_16F, k, &beta, ops.c, CUDA_R_16F, n, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
  });
  SetCounters(state, m, n, k, 2, 2, true);
  cublasDestroy(h);
}

void CopyD2D(benchmark::State& state) {
  const size_t bytes = size_t{1} << 30;
  void* src = DeviceAlloc(bytes);
  void* dst = DeviceAlloc(bytes);
  CHECK_CUDA(cudaMemset(src, 1, bytes));
  TimeBatches(state, 4, [&](int, cudaStream_t stream) {
    CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  }, /*use_graph=*/false);
  state.counters["GB/s"] =
      benchmark::Counter(4 * 2.0 * bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  cudaFree(src), cudaFree(dst);
}

std::string Shape(const int64_t* s) {
  return std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" + std::to_string(s[2]);
}

void Register() {
  auto reg = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->UseManualTime()->Unit(benchmark::kMicrosecond);
  };
  reg("copy/d2d/1GiB", [](benchmark::State& s) { CopyD2D(s); });
  std::vector<const int64_t*> shapes;
  for (const auto& s : kTokenShapes) shapes.push_back(s);
  for (const auto& s : kSquareShapes) shapes.push_back(s);
  for (const int64_t* s : shapes) {
    const int64_t m = s[0], n = s[1], k = s[2];
    reg("kvant/s8/" + Shape(s), [=](benchmark::State& st) { KvantS8(st, m, n, k, {}); });
    reg("cublaslt/s8s32/" + Shape(s), [=](benchmark::State& st) { CublasLtS8(st, m, n, k, false); });
    reg("cublaslt/s8s32+epi/" + Shape(s), [=](benchmark::State& st) { CublasLtS8(st, m, n, k, true); });
    reg("kvant/f16/" + Shape(s), [=](benchmark::State& st) { KvantF16(st, m, n, k); });
    reg("cublas/f16/" + Shape(s), [=](benchmark::State& st) { CublasF16(st, m, n, k); });
  }
  // Tile and split sweep for the token shapes (informs cuda::PlanGemm).
  if (std::getenv("KVANT_GEMM_SWEEP") != nullptr) {
    for (const auto& s : kTokenShapes)
      for (cuda::GemmTile tile : {cuda::GemmTile::k16x64, cuda::GemmTile::k64x64})
        for (int splits : {1, 4, 16}) {
          const int64_t m = s[0], n = s[1], k = s[2];
          reg(std::string("sweep/s8-") + cuda::GemmTileName(tile) + "-split" + std::to_string(splits) + "/" + Shape(s),
              [=](benchmark::State& st) { KvantS8(st, m, n, k, {tile, splits}); });
        }
    for (cuda::GemmTile tile : {cuda::GemmTile::k128x128, cuda::GemmTile::k128x256})
      reg(std::string("sweep/s8-") + cuda::GemmTileName(tile) + "-split1/4096x4096x4096",
          [=](benchmark::State& st) { KvantS8(st, 4096, 4096, 4096, {tile, 1}); });
  }
}

}  // namespace
}  // namespace kvant::bench

int main(int argc, char** argv) {
  std::printf("%s", kvant::DescribeGpus().c_str());
  if (kvant::QueryGpuDevices().empty()) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  kvant::bench::Register();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
