// model1: sparse prefill (MODEL1.md section 4).
#pragma once

#include <cmath>
#include <string>

#include "model1/tensor.h"

namespace model1 {

struct SparsePrefillArgs {
  TensorView q;        ///< bf16 [s_q, h_q, d_qk], d_qk 512 or 576, last dim contiguous
  TensorView kv;       ///< bf16 [s_kv, d_qk] or [s_kv, h_kv = 1, d_qk], last dim contiguous
  TensorView indices;  ///< int32 [s_q, topk] or [s_q, h_kv = 1, topk]; valid iff 0 <= i < s_kv
  TensorView topk_length;  ///< optional int32 [s_q]
  TensorView attn_sink;    ///< optional f32 [h_q]
  float sm_scale = NAN;    ///< NaN means 1 / sqrt(d_qk)
  int d_v = 512;           ///< must be 512

  TensorView out;         ///< bf16 [s_q, h_q, d_v]
  TensorView max_logits;  ///< f32 [s_q, h_q]; -inf when no valid key
  TensorView lse;         ///< f32 [s_q, h_q]; natural log; +inf when no valid key
};

/// Validates (outputs untouched on error) and runs sparse prefill on the tensors' device.
void sparse_prefill(const SparsePrefillArgs& args, void* stream = nullptr);

/// Which kernel family sparse_prefill runs for `args` (same validation; nothing is launched):
/// "cpu", "portable" (mma.sync, every GPU from sm_80), "portable-compact" (its shared-memory
/// fallback) or "sm90a" (the Hopper wgmma kernel: sm_90 GPUs, 64 or 128 heads, 16-byte
/// aligned kv rows; MODEL1_CUDA_PREFILL_KERNEL=portable forces the portable kernels).
std::string prefill_kernel_name(const SparsePrefillArgs& args);

}  // namespace model1
