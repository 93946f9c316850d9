// model1 CUDA: the split-KV combine: log-sum-exp merge of a row's partials in split order,
// then the attention sink; writes out (bf16) and lse (f32, natural log). Rows of requests
// with a single split were written by the split kernel itself and are skipped here.
#pragma once

#include <cstdint>

#include "cuda/common/decode_params.h"
#include "cuda/common/numerics.cuh"
#include "cuda/ptx/mma.cuh"

namespace model1::cuda {

struct CombineTraits {
  static constexpr int kThreads = 256;
  static constexpr int kRowsPerBlock = kThreads / 32;  // one warp per (i, j, h) row
  static constexpr int kDV = 512;
  static constexpr int kVecPerLane = kDV / (32 * 4);   // float4 loads per lane per split
  static_assert(kDV % (32 * 4) == 0, "whole float4 per lane");
  /// The combine grid of a call: one warp per (request, token, head) row.
  static unsigned blocks(const DecodeParams& p) {
    const int64_t rows = static_cast<int64_t>(p.b) * p.s_q * p.h_q;
    return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  }
};

/// kAfterPrimary: launched as a programmatic dependent of the split kernel (sm_90, the sm_90a
/// instantiation in sm90/combine_sm90.cu): its CTAs may start while the split kernel's last
/// CTAs still run, so each first waits (griddepcontrol.wait) until that grid completed and its
/// writes are visible. The portable instantiation (<false>) is launched plainly.
template <bool kAfterPrimary>
__global__ void __launch_bounds__(CombineTraits::kThreads) combine_kernel(const __grid_constant__ DecodeParams p) {
  if constexpr (kAfterPrimary) ptx::griddep_wait();
  using T = CombineTraits;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * T::kRowsPerBlock + threadIdx.x / 32;
  const int64_t rows = static_cast<int64_t>(p.b) * p.s_q * p.h_q;
  if (row >= rows) return;
  const int h = static_cast<int>(row % p.h_q);
  const int i = static_cast<int>(row / (static_cast<int64_t>(p.s_q) * p.h_q));
  const int main_keys = clamp_length(p.topk_length, i, p.topk);
  const int extra_keys =
      p.extra_indices != nullptr ? clamp_length(p.extra_topk_length, i, p.extra_topk) : 0;
  const RequestSchedule sched = request_schedule(main_keys, extra_keys, p.split_chunks);
  if (sched.num_splits == 1) return;  // written by the split kernel

  const float* plse = p.partial_lse + row * p.max_splits;        // [max_splits]
  const float* po = p.partial_o + row * p.max_splits * T::kDV;   // [max_splits, 512]
  uint16_t* out = p.out + row * T::kDV;                          // [512]

  float m = -INFINITY;
  bool any_nan = false;
  for (int s = 0; s < sched.num_splits; ++s) {
    m = fmaxf(m, plse[s]);
    any_nan |= plse[s] != plse[s];
  }
  if (m == -INFINITY && !any_nan) {  // no valid key in any split: out 0, lse +inf
#pragma unroll
    for (int v = 0; v < T::kVecPerLane; ++v) {
      const int d = (v * 32 + lane) * 4;
      for (int e = 0; e < 4; ++e) out[d + e] = 0;
    }
    if (lane == 0) p.lse[row] = INFINITY;
    return;
  }

  float acc[T::kVecPerLane][4] = {};
  float wsum = 0.0f;
  for (int s = 0; s < sched.num_splits; ++s) {  // NOTE: fixed order: bitwise deterministic
    const float w = exp2f(plse[s] - m);
    wsum += w;
#pragma unroll
    for (int v = 0; v < T::kVecPerLane; ++v) {
      const float4 x = *reinterpret_cast<const float4*>(po + s * T::kDV + (v * 32 + lane) * 4);
      acc[v][0] += w * x.x;
      acc[v][1] += w * x.y;
      acc[v][2] += w * x.z;
      acc[v][3] += w * x.w;
    }
  }
  const float lse = (m + log2f(wsum)) * kLn2;
  float factor = 1.0f / wsum;
  if (p.attn_sink != nullptr) factor *= 1.0f / (1.0f + expf(p.attn_sink[h] - lse));
#pragma unroll
  for (int v = 0; v < T::kVecPerLane; ++v) {
    const int d = (v * 32 + lane) * 4;
    const uint32_t lo = pack_bf16x2(acc[v][0] * factor, acc[v][1] * factor);
    const uint32_t hi = pack_bf16x2(acc[v][2] * factor, acc[v][3] * factor);
    if (p.out_aligned8) {
      *reinterpret_cast<uint2*>(out + d) = make_uint2(lo, hi);
    } else {
      out[d] = static_cast<uint16_t>(lo & 0xffffu);
      out[d + 1] = static_cast<uint16_t>(lo >> 16);
      out[d + 2] = static_cast<uint16_t>(hi & 0xffffu);
      out[d + 3] = static_cast<uint16_t>(hi >> 16);
    }
  }
  if (lane == 0) p.lse[row] = lse;
}

}  // namespace model1::cuda
