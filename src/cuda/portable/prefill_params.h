// model1 CUDA portable sparse prefill: the plain parameter block passed from the host launcher
// (src/cuda/prefill_portable.cu) to the kernels. Pointers, sizes and strides only.
#pragma once

#include <cstdint>

namespace model1::cuda {

/// Everything the sparse prefill kernel reads (MODEL1.md section 4). Strides are in elements.
struct PrefillParams {
  const uint16_t* q = nullptr;  // [s_q, h_q, d_qk] bf16, last dim contiguous
  int64_t q_stride_s = 0, q_stride_h = 0;
  int s_q = 0, h_q = 0;
  int num_head_groups = 1;  ///< CTAs per query token along the heads (h_q / rows per CTA)

  const uint16_t* kv = nullptr;  // [s_kv, d_qk] bf16, last dim contiguous
  int64_t kv_stride = 0;         ///< elements between consecutive kv rows
  int64_t s_kv = 0;              ///< an index is valid iff 0 <= index < s_kv

  const int32_t* indices = nullptr;  // [s_q, topk] int32, last dim contiguous
  int64_t idx_stride = 0;            ///< elements between consecutive query tokens' index rows
  int topk = 0;
  const int32_t* topk_length = nullptr;  // [s_q] or null (all topk)

  const float* attn_sink = nullptr;  // [h_q] or null
  float scale_log2 = 0.0f;           ///< sm_scale * log2(e): logits in base 2

  uint16_t* out = nullptr;      // [s_q, h_q, 512] bf16, contiguous
  float* max_logits = nullptr;  // [s_q, h_q] f32, contiguous
  float* lse = nullptr;         // [s_q, h_q] f32, contiguous

  /// sm_90a kernel (persistent grid): a work item's cost besides its 64-key chunks, in quarters
  /// of a chunk, for the split of the query tokens by topk_length (prefill_item_range); 2, 6,
  /// 12 and 24 timed within 2% of each other on prefill-h64-len, 6 the fastest (PERF.md).
  int item_cost = 6;

  /// sm_90a kernel, round-robin items (no topk_length): the CTAs from `stagger_from` on have one
  /// item fewer than the busiest, and their producers start up to `stagger_cycles` late, in 16
  /// phases by head-group set, so the grid's Q loads and out stores stop arriving in lockstep
  /// (prefill_stagger in prefill_launch.cuh; 0: no delay).
  int stagger_cycles = 0;
  int stagger_from = 0;

  bool q_aligned16 = true;   ///< q rows 16-byte aligned: 16-byte vector loads
  bool kv_aligned16 = true;  ///< kv rows 16-byte aligned: cp.async gathers
  bool out_aligned4 = true;  ///< out 4-byte aligned: bf16x2 stores
  bool out_aligned16 = true;  ///< out 16-byte aligned: 16-byte stores (sm_90a epilogue)
};

}  // namespace model1::cuda
