// FP32 and BF16 GEMM: every FP32 and BF16 microkernel row of
// ops/cpu/kernels.inc the machine allows, next to oneDNN's f32 and bf16
// matmul on the same shapes, in one run. Weights (B) are pre-packed as in a
// model; A is packed per call (for BF16: f32 activations rounded to bf16 as
// they are packed, where oneDNN's bf16 matmul is handed bf16 A already).
// FP32 rows also run with "cold" weights (.../cold_weights: a 64 MiB
// rotation of copies, so every call reads its weights from memory, as each
// layer of a network does once per run). Single thread unless --threads is
// given (oneDNN is limited the same way through OMP_NUM_THREADS).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>
#include <random>
#include <vector>

#include "dnnl.hpp"
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/gemm_f32.h"
#include "benchmarks/kernels/bench_setup.h"
#include "runtime/cpu_caps.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

struct GemmShape {
  const char* name;
  int64_t m, n, k;
};

// Named after the layers they come from.
constexpr GemmShape kShapes[] = {
    {"square/512", 512, 512, 512},
    {"square/1024", 1024, 1024, 1024},
    {"minilm/ffn_up_seq128", 128, 1536, 384},
    {"minilm/ffn_down_seq128", 128, 384, 1536},
    {"resnet50/res2a_2b_im2col", 64, 3136, 576},
    {"digits/fc1_batch360", 360, 64, 1024},
    {"token/m1_768x768", 1, 768, 768},
    // EfficientNet-Lite0's 1x1 convolutions in NHWC (M = positions).
    {"efficientnet_lite0/block0_project_112x112", 12544, 16, 32},
    {"efficientnet_lite0/block1_expand_112x112", 12544, 96, 16},
    {"efficientnet_lite0/block9_expand_14x14", 196, 672, 112},
    {"efficientnet_lite0/block9_project_14x14", 196, 112, 672},
    {"efficientnet_lite0/block15_project_7x7", 49, 320, 1152},
    {"efficientnet_lite0/head_7x7", 49, 1280, 320},
};

int g_threads = 1;

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

void SetCounters(benchmark::State& state, const GemmShape& s) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.m * s.n * s.k * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
  state.counters["GB/s"] = benchmark::Counter((s.m * s.k + s.k * s.n + s.m * s.n) * 4.0 * state.iterations() / 1e9,
                                              benchmark::Counter::kIsRate);
}

// Copies of the weights a "cold" row rotates through: 64 MiB in all, so each
// call finds its weights outside the caches, as a network's layers do
// (every layer's weights are read once per run); other rows keep one copy.
int WeightCopies(const GemmShape& s, bool cold) {
  return cold ? static_cast<int>(std::max<int64_t>(2, (int64_t{64} << 20) / (s.k * s.n * 4))) : 1;
}

void BM_Kvant(benchmark::State& state, const cpu::GemmUkernelInfoF32* uk, GemmShape s, bool cold) {
  std::vector<float> a = Random(s.m * s.k, 1), b = Random(s.k * s.n, 2), c(s.m * s.n);
  std::vector<cpu::PackedPanelsF32> packs;
  for (int i = 0; i < WeightCopies(s, cold); ++i) packs.push_back(cpu::PackConstantF32(s.n, s.k, uk->nr, b.data(), 1, s.n, 1.f));
  ThreadPool pool(g_threads);
  std::vector<char> scratch(cpu::GemmScratchBytesF32(*uk, s.m, s.n, s.k, false, g_threads) + 64);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) & ~uintptr_t{63});
  cpu::GemmArgsF32 g;
  g.m = s.m;
  g.n = s.n;
  g.k = s.k;
  g.a = {nullptr, a.data(), s.k, 1};
  g.c = c.data();
  g.ldc = s.n;
  size_t next = 0;
  for (auto _ : state) {
    g.b.packed = &packs[next++ % packs.size()];
    cpu::RunGemmF32(*uk, g, aligned, &pool);
    benchmark::DoNotOptimize(c.data());
  }
  SetCounters(state, s);
}

void BM_KvantBf16(benchmark::State& state, const cpu::GemmUkernelInfoBf16* uk, GemmShape s) {
  std::vector<float> a = Random(s.m * s.k, 1), b = Random(s.k * s.n, 2), c(s.m * s.n);
  const cpu::PackedBBf16 packed = cpu::PackBBf16(*uk, s.k, s.n, b.data(), s.n, 1);
  ThreadPool pool(g_threads);
  std::vector<char> scratch(cpu::GemmScratchBytesBf16(*uk, s.m, s.k, g_threads) + 64);
  cpu::GemmArgsBf16 g;
  g.m = s.m;
  g.a = a.data();
  g.lda = s.k;
  g.b = &packed;
  g.c = c.data();
  g.ldc = s.n;
  for (auto _ : state) {
    cpu::RunGemmBf16(*uk, g, scratch.data(), &pool);
    benchmark::DoNotOptimize(c.data());
  }
  SetCounters(state, s);
}

void BM_OneDnn(benchmark::State& state, GemmShape s, bool bf16, bool cold) {
  using dnnl::memory;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const auto in_type = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  memory::desc ad({s.m, s.k}, in_type, memory::format_tag::ab);
  memory::desc bd({s.k, s.n}, in_type, memory::format_tag::ab);
  memory::desc cd({s.m, s.n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(ad, bd, cd), eng);
  dnnl::matmul prim(pd);
  std::vector<float> a = Random(s.m * s.k, 1), b = Random(s.k * s.n, 2), c(s.m * s.n);
  std::vector<uint16_t> a16(a.size()), b16(b.size());
  for (size_t i = 0; i < a.size(); ++i) a16[i] = cpu::F32ToBf16(a[i]);
  for (size_t i = 0; i < b.size(); ++i) b16[i] = cpu::F32ToBf16(b[i]);
  memory am(ad, eng, bf16 ? static_cast<void*>(a16.data()) : a.data());
  std::vector<std::vector<char>> copies;
  std::vector<memory> bms;
  for (int i = 0; i < WeightCopies(s, cold); ++i) {
    const char* src = bf16 ? reinterpret_cast<const char*>(b16.data()) : reinterpret_cast<const char*>(b.data());
    copies.emplace_back(src, src + b.size() * (bf16 ? 2 : 4));
    bms.emplace_back(bd, eng, copies.back().data());
  }
  memory cm(cd, eng, c.data());
  size_t next = 0;
  for (auto _ : state) {
    const memory& bm = bms[next++ % bms.size()];
    prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    strm.wait();
    benchmark::DoNotOptimize(c.data());
  }
  SetCounters(state, s);
}

}  // namespace
}  // namespace kvant

int main(int argc, char** argv) {
  kvant::g_threads = kvant::bench::SetUpThreads(argc, argv);
  kvant::bench::PrintCapability(kvant::g_threads);
  const kvant::CpuFeatures f = kvant::ActiveCpuFeatures();
  for (const auto& s : kvant::kShapes) {
    for (bool cold : {false, true}) {
      const std::string name = std::string(s.name) + (cold ? "/cold_weights" : "");
      for (const auto& uk : kvant::cpu::GemmUkernelsF32()) {
        if ((uk.needs & f) != uk.needs) continue;
        benchmark::RegisterBenchmark((std::string("kvant/") + uk.name + "/" + name).c_str(), kvant::BM_Kvant, &uk, s,
                                     cold)
            ->Unit(benchmark::kMicrosecond)->UseRealTime();
      }
      benchmark::RegisterBenchmark((std::string("onednn/matmul_f32/") + name).c_str(), kvant::BM_OneDnn, s, false,
                                   cold)
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
    if (!(f & kvant::kCpuAvx512bf16)) continue;
    for (const auto& uk : kvant::cpu::GemmUkernelsBf16()) {
      if ((uk.needs & f) != uk.needs) continue;
      benchmark::RegisterBenchmark((std::string("kvant/") + uk.name + "/" + s.name).c_str(), kvant::BM_KvantBf16, &uk, s)
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
    benchmark::RegisterBenchmark((std::string("onednn/matmul_bf16/") + s.name).c_str(), kvant::BM_OneDnn, s, true, false)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
