// Start-up shared by the kernel benchmarks: `--threads=N` (removed from argv),
// oneDNN limited to the same threads, and the capability line every benchmark
// prints first.
#ifndef KVANT_BENCHMARKS_KERNELS_BENCH_SETUP_H_
#define KVANT_BENCHMARKS_KERNELS_BENCH_SETUP_H_

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "runtime/cpu_caps.h"

namespace kvant::bench {

// Returns the thread count. OpenMP (oneDNN) reads OMP_NUM_THREADS when libgomp
// loads, before main, so the process re-executes itself once with it set.
inline int SetUpThreads(int argc, char** argv) {
  std::vector<char*> original(argv, argv + argc + 1);
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::sscanf(argv[i], "--threads=%d", &threads) == 1) argv[i] = const_cast<char*>("");
  }
  const std::string want = std::to_string(threads);
  const char* have = std::getenv("OMP_NUM_THREADS");
  if (have == nullptr || want != have) {
    setenv("OMP_NUM_THREADS", want.c_str(), 1);
    execv("/proc/self/exe", original.data());
  }
  return threads;
}

// n seeded integers in [lo, hi] as T.
template <typename T>
std::vector<T> RandomInts(int64_t n, uint32_t seed, int lo, int hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(u(rng));
  return v;
}

// The first 64-byte aligned address in v (size it 64 bytes larger).
inline void* Aligned64(std::vector<char>& v) {
  return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t{63});
}

// Times two callables alternately, call by call (after 5 warm-up pairs), so
// that a shared machine's drift hits both alike: per-call microseconds,
// medians and minima.
struct PairedTimes {
  double median[2], min[2];
};
template <class A, class B>
PairedTimes TimePaired(A&& a, B&& b, int calls) {
  std::vector<double> t[2];
  auto time_us = [](auto& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int i = 0; i < calls + 5; ++i) {
    const double ta = time_us(a), tb = time_us(b);
    if (i >= 5) {
      t[0].push_back(ta);
      t[1].push_back(tb);
    }
  }
  PairedTimes r;
  for (int v = 0; v < 2; ++v) {
    std::sort(t[v].begin(), t[v].end());
    r.median[v] = t[v][t[v].size() / 2];
    r.min[v] = t[v][0];
  }
  return r;
}

// The table of a paired run: header, one row per case, the footer that says
// how to read it.
inline void PrintPairedHeader(const char* what) {
  std::printf("%-48s %10s %10s %8s %10s %10s %8s  %s\n", what, "kvant p50", "oneDNN p50", "ratio", "kvant min",
              "oneDNN min", "ratio", "kernel");
}
inline void PrintPairedRow(const char* name, const PairedTimes& t, const char* kernel) {
  std::printf("%-48s %10.1f %10.1f %7.2fx %10.1f %10.1f %7.2fx  %s\n", name, t.median[0], t.median[1],
              t.median[1] / t.median[0], t.min[0], t.min[1], t.min[1] / t.min[0], kernel);
}
inline void PrintPairedFooter(int calls, int threads) {
  std::printf("ratio: oneDNN time / ours (above 1: ours is faster); microseconds per call, %d calls each\n", calls);
  if (threads > 1) {
    std::printf("note: with %d threads each side's idle workers spin through the other's calls and take its cores; "
                "compare threaded runs in the Google Benchmark mode instead\n", threads);
  }
}

// `--paired=N` and `--paired_filter=TEXT` (removed from argv): N = 0 when absent.
inline int PairedArgs(int argc, char** argv, std::string* filter) {
  int calls = 0;
  char text[128] = "";
  for (int i = 1; i < argc; ++i) {
    if (std::sscanf(argv[i], "--paired=%d", &calls) == 1) argv[i] = const_cast<char*>("");
    if (std::sscanf(argv[i], "--paired_filter=%127s", text) == 1) argv[i] = const_cast<char*>("");
  }
  *filter = text;
  return calls;
}

inline void PrintCapability(int threads) {
  const CpuFeatures f = ActiveCpuFeatures();
  std::printf("capability: %s | %s | threads %d | device cpu\n", CpuModelName().c_str(), CpuFeatureNames(f).c_str(),
              threads);
}

}  // namespace kvant::bench

#endif  // KVANT_BENCHMARKS_KERNELS_BENCH_SETUP_H_
