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
  // NOTE: 4 rows per CTA: a batch-2 decode has only 256-512 rows; small CTAs spread them over
  // 64-128 SMs, each pulling a few tens of KiB of partials.
  static constexpr int kThreads = 128;
  static constexpr int kRowsPerBlock = kThreads / 32;  // one warp per (i, j, h) row
  static constexpr int kDV = 512;
  static constexpr int kVecPerLane = kDV / (32 * 4);   // float4 loads per lane per split
  static_assert(kDV % (32 * 4) == 0, "whole float4 per lane");
  // Splits whose partial rows a lane has in flight at once (kBatch * kVecPerLane float4): 8 when
  // a call has at most kLatencyRows rows (a few rows per SM: each row's memory round trips are
  // the time), else 1 (many rows: occupancy hides the latency; 8 takes 164 registers, 3 CTAs
  // per SM, and measured 3% slower at model1-c2 b = 128). Either sums in the same order, so the
  // choice changes no bit.
  static constexpr int kLatencyBatch = 8;
  static constexpr int kThroughputBatch = 1;
  static constexpr int64_t kLatencyRows = 2048;
  __host__ __device__ static int64_t rows(const DecodeParams& p) {
    return static_cast<int64_t>(p.b) * p.s_q * p.h_q;
  }
  /// The combine grid of a call: one warp per (request, token, head) row.
  static unsigned blocks(const DecodeParams& p) {
    return static_cast<unsigned>((rows(p) + kRowsPerBlock - 1) / kRowsPerBlock);
  }
};

/// kAfterPrimary: launched as a programmatic dependent of the split kernel (sm_90, the sm_90a
/// instantiation in sm90/combine_sm90.cu): its CTAs may start while the split kernel's last
/// CTAs still run, so each warp reads what the split kernel never writes (the row's lengths,
/// hence its schedule, and its sink) and then waits (griddepcontrol.wait) until that grid
/// completed and its writes are visible. The portable instantiation (<false>) is launched
/// plainly.
/// NOTE: latency-bound at small batches (a few rows per SM): the partial rows of kBatch splits
/// are loaded together, the first batch before the lse maximum is known, so a row costs about
/// one memory round trip per kBatch splits instead of one per split. The sums run in split
/// order whatever kBatch is (the same operations in the same order: bitwise deterministic).
template <bool kAfterPrimary, int kBatch>
__global__ void __launch_bounds__(CombineTraits::kThreads) combine_kernel(const __grid_constant__ DecodeParams p) {
  using T = CombineTraits;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * T::kRowsPerBlock + threadIdx.x / 32;
  if (row >= T::rows(p)) return;
  const int h = static_cast<int>(row % p.h_q);
  const int i = static_cast<int>(row / (static_cast<int64_t>(p.s_q) * p.h_q));
  const int main_keys = clamp_length(p.topk_length, i, p.topk);
  const int extra_keys =
      p.extra_indices != nullptr ? clamp_length(p.extra_topk_length, i, p.extra_topk) : 0;
  const RequestSchedule sched = request_schedule(main_keys, extra_keys, p.split_chunks);
  const int n = sched.num_splits;
  if (n == 1) return;  // written by the split kernel
  const float sink = p.attn_sink != nullptr ? p.attn_sink[h] : 0.0f;
  // NOTE: the lengths' loads (model1-c3 / c4) and the sink's go out before the wait: at b = 2
  // the combine's time is its chain of memory round trips after the split kernel ends.
  if constexpr (kAfterPrimary) ptx::griddep_wait();

  const float* plse = p.partial_lse + row * p.max_splits;        // [max_splits]
  const float* po = p.partial_o + row * p.max_splits * T::kDV;   // [max_splits, 512]
  uint16_t* out = p.out + row * T::kDV;                          // [512]

  // This lane's float4 v of splits s0 .. s0 + kBatch - 1 (zeros past the last split).
  float4 x[kBatch][T::kVecPerLane];
  auto load_batch = [&](int s0) {
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
#pragma unroll
      for (int v = 0; v < T::kVecPerLane; ++v) {
        x[u][v] = s0 + u < n ? *reinterpret_cast<const float4*>(po + (s0 + u) * T::kDV + (v * 32 + lane) * 4)
                             : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
    }
  };
  load_batch(0);

  // The maximum of the splits' lse (NaN ignored, as fmaxf does; exact in any order), lanes in
  // parallel over the splits.
  float m = -INFINITY;
  bool any_nan = false;
  for (int s = lane; s < n; s += 32) {
    const float v = plse[s];
    m = fmaxf(m, v);
    any_nan |= v != v;
  }
#pragma unroll
  for (int d = 16; d > 0; d /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, d));
  any_nan = __any_sync(0xffffffffu, any_nan);
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
  for (int s0 = 0; s0 < n; s0 += kBatch) {  // NOTE: fixed order: bitwise deterministic
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int s = s0 + u;
      if (s < n) {
        const float w = exp2f(plse[s] - m);
        wsum += w;
#pragma unroll
        for (int v = 0; v < T::kVecPerLane; ++v) {
          acc[v][0] += w * x[u][v].x;
          acc[v][1] += w * x[u][v].y;
          acc[v][2] += w * x[u][v].z;
          acc[v][3] += w * x[u][v].w;
        }
      }
    }
    if (s0 + kBatch < n) load_batch(s0 + kBatch);
  }
  const float lse = (m + log2f(wsum)) * kLn2;
  float factor = 1.0f / wsum;
  if (p.attn_sink != nullptr) factor *= 1.0f / (1.0f + expf(sink - lse));
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

/// The combine instantiation for a call (CombineTraits::kLatencyRows).
template <bool kAfterPrimary>
inline void (*combine_kernel_for(const DecodeParams& p))(DecodeParams) {
  using T = CombineTraits;
  return T::rows(p) <= T::kLatencyRows ? combine_kernel<kAfterPrimary, T::kLatencyBatch>
                                      : combine_kernel<kAfterPrimary, T::kThroughputBatch>;
}

}  // namespace model1::cuda
