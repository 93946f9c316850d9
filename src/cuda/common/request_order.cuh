// model1 CUDA: the longest-first order of a decode call's requests. With per-request lengths
// (topk_length / extra_topk_length) the split grid's CTAs do unequal work; once the grid
// overflows one wave, the hardware starts CTAs in blockIdx order as SMs free up, so a long
// request whose CTAs happen to start last sets the call's time. Mapping grid slot r to the r-th
// longest request (longest processing time first) lets the short ones fill the gaps. Each CTA
// computes the same values whichever slot runs it, so no result changes (batch invariance and
// bitwise repeatability hold; tested).
#pragma once

#include <cstdint>

#include "cuda/common/decode_params.h"
#include "cuda/ptx/mma.cuh"

namespace model1::cuda {

struct RequestOrderTraits {
  static constexpr int kThreads = 1024;
  static constexpr int kBins = 1024;  ///< chunk counts; longer requests share the last bin
  static_assert(kBins == kThreads, "one bin per thread in the scan");
};

/// Bin of request i: its chunk count, longest first (bin 0), clamped to the last bin.
__device__ __forceinline__ int request_order_bin(const DecodeParams& p, int i) {
  const int main_keys = clamp_length(p.topk_length, i, p.topk);
  const int extra_keys = p.extra_indices != nullptr ? clamp_length(p.extra_topk_length, i, p.extra_topk) : 0;
  const int chunks = request_schedule(main_keys, extra_keys, p.split_chunks).num_chunks;
  return RequestOrderTraits::kBins - 1 - min(chunks, RequestOrderTraits::kBins - 1);
}

/// Inclusive prefix sum of `v` over the warp's lanes.
__device__ __forceinline__ int warp_inclusive_sum(int v) {
  const int lane = static_cast<int>(threadIdx.x % 32);
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const int u = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += u;
  }
  return v;
}

/// One CTA: a counting sort of the b requests by chunk count, descending, into order[0, b).
/// NOTE: requests of equal chunk counts land in any order (shared-memory atomics): only the
/// start order of CTAs depends on it, never a result.
/// kPrimary (sm_90, the sm_90a instantiation in sm90/request_order_sm90.cu): the sm_90a split
/// kernel after it is a programmatic dependent launch, so its CTAs may be scheduled at once
/// and wait (griddepcontrol.wait in cta_coord) for this grid's completion and writes.
template <bool kPrimary>
__global__ void __launch_bounds__(RequestOrderTraits::kThreads, 1)
    request_order_kernel(const __grid_constant__ DecodeParams p, int32_t* order) {
  if constexpr (kPrimary) ptx::griddep_launch_dependents();
  constexpr int kBins = RequestOrderTraits::kBins;
  __shared__ int count[kBins];
  __shared__ int warp_total[RequestOrderTraits::kThreads / 32];
  const int t = static_cast<int>(threadIdx.x);
  const int lane = t % 32, warp = t / 32;
  count[t] = 0;
  __syncthreads();
  for (int i = t; i < p.b; i += RequestOrderTraits::kThreads) atomicAdd(&count[request_order_bin(p, i)], 1);
  __syncthreads();
  // Exclusive scan of the counts: within each warp by shuffles, then over the warps' totals.
  const int mine = count[t];
  const int incl = warp_inclusive_sum(mine);
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int total = warp_total[lane];
    warp_total[lane] = warp_inclusive_sum(total) - total;  // exclusive prefix of warp `lane`
  }
  __syncthreads();
  count[t] = warp_total[warp] + incl - mine;  // the bin's first slot
  __syncthreads();
  for (int i = t; i < p.b; i += RequestOrderTraits::kThreads) {
    order[atomicAdd(&count[request_order_bin(p, i)], 1)] = i;
  }
}

}  // namespace model1::cuda
