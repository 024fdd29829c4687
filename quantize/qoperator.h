// QOperator form (`kvant quantize --format qoperator`): the QDQ model with
// each DequantizeLinear -> op -> QuantizeLinear group written as one
// quantized operator, as ONNX Runtime's quantizer does in that format:
//   Conv [-> Relu/Clip]  -> QLinearConv (the activation becomes the output
//                           range when that range lies inside the clip's, as
//                           with asymmetric ranges; a symmetric range keeps
//                           the group in QDQ form)
//   MatMul               -> QLinearMatMul
//   MatMul -> Add(bias)  -> com.microsoft MatMulIntegerToFloat with an f32
//                           bias (its QuantizeLinear stays); the same
//                           without a bias for a float MatMul result
//   Gemm, float result   -> com.microsoft QGemm without y_scale (f32 out)
//   Gemm                 -> com.microsoft QGemm
//   Add, Mul             -> com.microsoft QLinearAdd, QLinearMul
//   GlobalAveragePool    -> com.microsoft QLinearGlobalAveragePool
//   AveragePool          -> com.microsoft QLinearAveragePool
//   data movement and MaxPool with equal parameters run on the u8/s8 values.
// Conversions stay where float operators read or write.
#ifndef KVANT_QUANTIZE_QOPERATOR_H_
#define KVANT_QUANTIZE_QOPERATOR_H_

#include "absl/status/statusor.h"
#include "quantize/onnx_model.h"

namespace kvant::quantize {

// Returns the number of groups rewritten.
absl::StatusOr<int> QdqToQOperator(OnnxModel& m);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_QOPERATOR_H_
