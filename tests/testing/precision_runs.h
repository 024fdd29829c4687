// Runs one model (input "x", output "y") in FP32 and at another precision,
// for the tests of SessionOptions::precision (bf16, fp16).
#ifndef KVANT_TESTS_TESTING_PRECISION_RUNS_H_
#define KVANT_TESTS_TESTING_PRECISION_RUNS_H_

#include <string>

#include "gtest/gtest.h"
#include "kvant/kvant.h"

namespace kvant::testing {

// Both outputs and the plan of the session at `precision`; failures are
// gtest assertions (wrap the call in ASSERT_NO_FATAL_FAILURE).
inline void RunFp32And(Precision precision, const std::string& bytes, const Tensor& x, Tensor* y_fp32, Tensor* y,
                       PlanReport* plan) {
  SessionOptions options;
  options.precision = precision;
  auto fp = Session::LoadFromBytes(bytes);
  auto other = Session::LoadFromBytes(bytes, options);
  ASSERT_TRUE(fp.ok()) << fp.status();
  ASSERT_TRUE(other.ok()) << other.status();
  auto a = fp->Run({{"x", x}});
  auto b = other->Run({{"x", x}});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  *y_fp32 = a->at("y");
  *y = b->at("y");
  auto p = other->Plan({{"x", x.shape()}});
  ASSERT_TRUE(p.ok()) << p.status();
  *plan = *p;
}

}  // namespace kvant::testing

#endif  // KVANT_TESTS_TESTING_PRECISION_RUNS_H_
