// model1 bench/tests: a deliberately naive float64 oracle for sparse decode and prefill.
// Written independently of src/cpu (no shared code): it decodes cache bytes itself.
#pragma once

#include <vector>

#include "model1/decode.h"
#include "model1/prefill.h"

namespace model1::oracle {

/// Dequantizes token `slot` of a CPU cache into `d_qk` doubles (exact e4m3 * scale, bf16 rope).
std::vector<double> dequantize_token(const KvCacheView& cache, int64_t slot, int d_qk);

struct DecodeRef {
  std::vector<double> out;  // [b, s_q, h_q, 512]
  std::vector<double> lse;  // [b, s_q, h_q]; +inf when no valid key
};
/// MODEL1.md section 3 in float64 on CPU tensors (args.out / args.lse are not touched).
DecodeRef decode(const SparseDecodeArgs& args);

struct PrefillRef {
  std::vector<double> out;         // [s_q, h_q, 512]
  std::vector<double> max_logits;  // [s_q, h_q]; -inf when no valid key
  std::vector<double> lse;         // [s_q, h_q]; +inf when no valid key
};
/// MODEL1.md section 4 in float64 on CPU tensors (outputs in args are not touched).
PrefillRef prefill(const SparsePrefillArgs& args);

}  // namespace model1::oracle
