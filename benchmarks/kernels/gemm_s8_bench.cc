// INT8 GEMM: every u8 x s8 microkernel row of ops/cpu/kernels.inc the machine
// allows, next to oneDNN's u8s8 matmul (weights reordered once, as in a
// model), our FP32 GEMM, oneDNN's f32 matmul and the VPDPBUSD peak, in one
// run. Both INT8 sides do the same job: u8 activations with zero point 128,
// s8 weights, int32 bias, per-channel requantization to u8 with a zero
// point. GOP/s counts 2 operations per multiply-add. Single thread unless
// --threads is given (oneDNN is limited the same way through OMP_NUM_THREADS).
// `--paired=N [--paired_filter=TEXT]` instead times the selected INT8 kernel
// and oneDNN alternately, call by call, and prints the ratios of medians and
// minima: the comparison to quote on a noisy machine.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "dnnl.hpp"
#include "ops/cpu/gemm_f32.h"
#include "ops/cpu/gemm_s8.h"
#include "benchmarks/kernels/bench_setup.h"
#include "runtime/cpu_caps.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace bench {
int32_t VnniPeakLoop(int64_t iterations, int32_t seed);
}  // namespace bench
namespace {

struct GemmShape {
  const char* name;
  int64_t m, k, n;
};

constexpr GemmShape kShapes[] = {
    {"1x768x768", 1, 768, 768},           {"4x768x768", 4, 768, 768},       {"13x384x1536", 13, 384, 1536},
    {"128x768x3072", 128, 768, 3072},     {"512x512x512", 512, 512, 512},
    {"1024x1024x1024", 1024, 1024, 1024}, {"2048x2048x2048", 2048, 2048, 2048},
};

int g_threads = 1;

void SetCounters(benchmark::State& state, const GemmShape& s) {
  state.counters["GOP/s"] = benchmark::Counter(2.0 * s.m * s.n * s.k * state.iterations() / 1e9,
                                               benchmark::Counter::kIsRate);
}

// Our INT8 GEMM of one shape on one microkernel row, set up once.
struct KvantS8Gemm {
  KvantS8Gemm(const cpu::GemmUkernelInfoS8& uk_in, const GemmShape& s) : uk(uk_in), pool(g_threads) {
    a = bench::RandomInts<uint8_t>(s.m * s.k, 1, 0, 255);
    auto b = bench::RandomInts<int8_t>(s.k * s.n, 2, -127, 127);
    bias = bench::RandomInts<int32_t>(s.n, 3, -1000, 1000);
    scale.assign(s.n, 1e-4f);
    c.resize(s.m * s.n);
    packed = cpu::PackBS8(uk, s.k, s.n, b.data(), s.n, 1);
    scratch.resize(cpu::GemmScratchBytesS8(uk, s.m, s.n, s.k, g_threads) + 64);
    g.m = s.m;
    g.a = a.data();
    g.lda = s.k;
    g.b = &packed;
    g.a_zero_point = 128;
    g.bias = bias.data();
    g.out.kind = cpu::GemmS8Output::Kind::kU8;
    g.out.scale = scale.data();
    g.out.zero_point = 117;
    g.c = c.data();
    g.ldc = s.n;
  }
  void Call() {
    cpu::RunGemmS8(uk, g, bench::Aligned64(scratch), &pool);
    benchmark::DoNotOptimize(c.data());
  }
  const cpu::GemmUkernelInfoS8& uk;
  std::vector<uint8_t> a, c;
  std::vector<int32_t> bias;
  std::vector<float> scale;
  cpu::PackedBS8 packed;
  ThreadPool pool;
  std::vector<char> scratch;
  cpu::GemmArgsS8 g;
};

void BM_KvantS8(benchmark::State& state, const cpu::GemmUkernelInfoS8* uk, GemmShape s) {
  KvantS8Gemm gemm(*uk, s);
  for (auto _ : state) gemm.Call();
  SetCounters(state, s);
}

void BM_KvantF32(benchmark::State& state, GemmShape s) {
  const auto& uk = cpu::SelectGemmUkernelF32(ActiveCpuFeatures());
  std::vector<float> a(s.m * s.k, 0.5f), b(s.k * s.n, 0.25f), c(s.m * s.n);
  cpu::PackedPanelsF32 packed = cpu::PackConstantF32(s.n, s.k, uk.nr, b.data(), 1, s.n, 1.f);
  ThreadPool pool(g_threads);
  std::vector<char> scratch(cpu::GemmScratchBytesF32(uk, s.m, s.n, s.k, false, g_threads) + 64);
  cpu::GemmArgsF32 g;
  g.m = s.m;
  g.n = s.n;
  g.k = s.k;
  g.a = {nullptr, a.data(), s.k, 1};
  g.b.packed = &packed;
  g.c = c.data();
  g.ldc = s.n;
  for (auto _ : state) {
    cpu::RunGemmF32(uk, g, bench::Aligned64(scratch), &pool);
    benchmark::DoNotOptimize(c.data());
  }
  SetCounters(state, s);
}

// oneDNN's u8s8 matmul of one shape (weights reordered once, as in a
// model), set up once.
struct OneDnnU8S8Gemm {
  explicit OneDnnU8S8Gemm(const GemmShape& s) : eng(dnnl::engine::kind::cpu, 0), strm(eng) {
    using dnnl::memory;
    memory::desc ad({s.m, s.k}, memory::data_type::u8, memory::format_tag::ab);
    memory::desc bd_any({s.k, s.n}, memory::data_type::s8, memory::format_tag::any);
    memory::desc bd_plain({s.k, s.n}, memory::data_type::s8, memory::format_tag::ab);
    memory::desc biasd({1, s.n}, memory::data_type::s32, memory::format_tag::ab);
    memory::desc cd({s.m, s.n}, memory::data_type::u8, memory::format_tag::ab);
    dnnl::primitive_attr attr;
    attr.set_output_scales(2, std::vector<float>(s.n, 1e-4f));
    attr.set_zero_points(DNNL_ARG_SRC, 0, {128});
    attr.set_zero_points(DNNL_ARG_DST, 0, {117});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(ad, bd_any, biasd, cd), attr, eng);
    prim = dnnl::matmul(pd);
    impl = pd.impl_info_str();
    a = bench::RandomInts<uint8_t>(s.m * s.k, 1, 0, 255);
    b = bench::RandomInts<int8_t>(s.k * s.n, 2, -127, 127);
    bias = bench::RandomInts<int32_t>(s.n, 3, -1000, 1000);
    c.resize(s.m * s.n);
    am = memory(ad, eng, a.data());
    biasm = memory(biasd, eng, bias.data());
    cm = memory(cd, eng, c.data());
    memory b_plain(bd_plain, eng, b.data());
    bm = memory(pd.weights_desc(), eng);
    dnnl::reorder(b_plain, bm).execute(strm, b_plain, bm);  // pre-packed once, as in a model
    strm.wait();
  }
  void Call() {
    prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_BIAS, biasm}, {DNNL_ARG_DST, cm}});
    strm.wait();
    benchmark::DoNotOptimize(c.data());
  }
  dnnl::engine eng;
  dnnl::stream strm;
  dnnl::matmul prim;
  std::string impl;
  std::vector<uint8_t> a, c;
  std::vector<int8_t> b;
  std::vector<int32_t> bias;
  dnnl::memory am, bm, biasm, cm;
};

void BM_OneDnnU8S8(benchmark::State& state, GemmShape s) {
  OneDnnU8S8Gemm gemm(s);
  for (auto _ : state) gemm.Call();
  SetCounters(state, s);
  state.SetLabel(gemm.impl);
}

void BM_OneDnnF32(benchmark::State& state, GemmShape s) {
  using dnnl::memory;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  memory::desc ad({s.m, s.k}, memory::data_type::f32, memory::format_tag::ab);
  memory::desc bd_any({s.k, s.n}, memory::data_type::f32, memory::format_tag::any);
  memory::desc bd_plain({s.k, s.n}, memory::data_type::f32, memory::format_tag::ab);
  memory::desc cd({s.m, s.n}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(ad, bd_any, cd), eng);
  dnnl::matmul prim(pd);
  std::vector<float> a(s.m * s.k, 0.5f), b(s.k * s.n, 0.25f), c(s.m * s.n);
  memory am(ad, eng, a.data()), b_plain(bd_plain, eng, b.data()), cm(cd, eng, c.data());
  memory bm(pd.weights_desc(), eng);
  dnnl::reorder(b_plain, bm).execute(strm, b_plain, bm);
  strm.wait();
  for (auto _ : state) {
    prim.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    strm.wait();
    benchmark::DoNotOptimize(c.data());
  }
  SetCounters(state, s);
}

// VPDPBUSD peak of one thread (g_threads threads run the loop at once).
void BM_VnniPeak(benchmark::State& state) {
  constexpr int64_t kIterations = 1 << 16;
  ThreadPool pool(g_threads);
  for (auto _ : state) {
    pool.ParallelFor(g_threads, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) benchmark::DoNotOptimize(bench::VnniPeakLoop(kIterations, static_cast<int32_t>(t)));
    });
  }
  state.counters["GOP/s"] = benchmark::Counter(2.0 * 64 * 24 * kIterations * g_threads * state.iterations() / 1e9,
                                               benchmark::Counter::kIsRate);
}

// --paired=N: per shape, the INT8 kernel selection picks and oneDNN's u8s8
// matmul alternately, call by call.
void RunPaired(int calls, const std::string& filter) {
  const auto& uk = cpu::SelectGemmUkernelS8(ActiveCpuFeatures());
  bench::PrintPairedHeader("M x K x N (u8 out)");
  for (const auto& s : kShapes) {
    if (!filter.empty() && std::string(s.name).find(filter) == std::string::npos) continue;
    KvantS8Gemm ours(uk, s);
    OneDnnU8S8Gemm theirs(s);
    const bench::PairedTimes t = bench::TimePaired([&] { ours.Call(); }, [&] { theirs.Call(); }, calls);
    bench::PrintPairedRow(s.name, t, uk.name);
  }
  bench::PrintPairedFooter(calls, g_threads);
}

}  // namespace
}  // namespace kvant

int main(int argc, char** argv) {
  kvant::g_threads = kvant::bench::SetUpThreads(argc, argv);
  kvant::bench::PrintCapability(kvant::g_threads);
  std::string filter;
  if (const int paired = kvant::bench::PairedArgs(argc, argv, &filter); paired > 0) {
    kvant::RunPaired(paired, filter);
    return 0;
  }
  const kvant::CpuFeatures f = kvant::ActiveCpuFeatures();
  if (f & kvant::kCpuAvx512vnni) {
    benchmark::RegisterBenchmark("peak/vpdpbusd_zmm", kvant::BM_VnniPeak)->Unit(benchmark::kMicrosecond)->UseRealTime();
  }
  for (const auto& s : kvant::kShapes) {
    for (const auto& uk : kvant::cpu::GemmUkernelsS8()) {
      if ((uk.needs & f) != uk.needs || uk.needs == 0) continue;  // the reference is for tests
      benchmark::RegisterBenchmark((std::string("kvant/") + uk.name + "/" + s.name).c_str(), kvant::BM_KvantS8, &uk, s)
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
    benchmark::RegisterBenchmark((std::string("onednn/matmul_u8s8/") + s.name).c_str(), kvant::BM_OneDnnU8S8, s)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark((std::string("kvant/gemm_f32/") + s.name).c_str(), kvant::BM_KvantF32, s)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark((std::string("onednn/matmul_f32/") + s.name).c_str(), kvant::BM_OneDnnF32, s)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
