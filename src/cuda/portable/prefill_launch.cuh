// model1 CUDA portable sparse prefill: the launcher templates behind prefill_dispatch.h
// (included only by the instantiation files).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/portable/prefill_dispatch.h"
#include "cuda/portable/prefill_kernel.cuh"
#include "model1/error.h"

namespace model1::cuda::portable {

/// h_q -> row groups (16 heads each) per CTA: 8 and 16 heads use one m16 tile (8 padded),
/// 32 two, 64 and 128 four (128 = two head groups of 64). The CTAs per token along the heads
/// (blockIdx.y) are h_q / rows per CTA, rounded up (launch_prefill_config).
template <int kDQk, int kStages, class Fn>
auto dispatch_prefill_heads(int h_q, Fn&& fn) {
  switch (h_q) {
    case 8:
    case 16:
      return fn(PrefillTraits<kDQk, 1, kStages>{});
    case 32:
      return fn(PrefillTraits<kDQk, 2, kStages>{});
    case 64:
    case 128:
      return fn(PrefillTraits<kDQk, 4, kStages>{});
    default:
      MODEL1_THROW("q.shape", "shape[1] (h_q) 8, 16, 32, 64 or 128 (portable CUDA kernels)",
                   std::to_string(h_q));
  }
}

/// The fallback configuration: 16 heads per CTA, one key tile (the h_q 8 / 16 kernel).
template <int kDQk>
using CompactPrefillTraits = PrefillTraits<kDQk, 1, 1>;

/// NOTE: sm_86/89/120 offer 99 KiB (101376 bytes) of shared memory per block.
inline constexpr int kCompactPrefillSmemLimit = 101376;

template <class T>
void launch_prefill_config(const PrefillParams& params, cudaStream_t stream, int device) {
  static std::atomic<uint64_t> smem_raised{0};
  ensure_smem_limit(sparse_prefill_kernel<T>, device, T::kSmemBytes, smem_raised, "sparse_prefill");
  PrefillParams p = params;
  p.num_head_groups = (p.h_q + T::kRows - 1) / T::kRows;  // h_q 8 pads one 16-row group
  const dim3 grid(static_cast<unsigned>(p.s_q), static_cast<unsigned>(p.num_head_groups));
  sparse_prefill_kernel<T><<<grid, T::kThreads, T::kSmemBytes, stream>>>(p);
  MODEL1_CUDA_CHECK_LAUNCH("sparse_prefill", "sparse_prefill_kernel");
}

template <int kDQk, int kStages>
void launch_sparse_prefill(const PrefillParams& p, cudaStream_t stream, int device) {
  dispatch_prefill_heads<kDQk, kStages>(p.h_q, [&](auto traits) {
    using T = decltype(traits);
    launch_prefill_config<T>(p, stream, device);
    return 0;
  });
}

template <int kDQk, int kStages>
int sparse_prefill_smem_bytes(int h_q) {
  return dispatch_prefill_heads<kDQk, kStages>(h_q, [](auto traits) { return decltype(traits)::kSmemBytes; });
}

template <int kDQk>
void launch_sparse_prefill_compact(const PrefillParams& p, cudaStream_t stream, int device) {
  using C = CompactPrefillTraits<kDQk>;
  static_assert(C::kSmemBytes <= kCompactPrefillSmemLimit, "the fallback must fit 99 KiB per block");
  // NOTE: the same h_q validation as the default path (8, 16, 32, 64 or 128).
  dispatch_prefill_heads<kDQk, 1>(p.h_q, [](auto) { return 0; });
  launch_prefill_config<C>(p, stream, device);
}

template <int kDQk>
int sparse_prefill_compact_smem_bytes() {
  return CompactPrefillTraits<kDQk>::kSmemBytes;
}

}  // namespace model1::cuda::portable

#define MODEL1_INSTANTIATE_PORTABLE_PREFILL(kDQk, kStages)                                    \
  template void model1::cuda::portable::launch_sparse_prefill<kDQk, kStages>(                 \
      const model1::cuda::PrefillParams&, cudaStream_t, int);                                 \
  template int model1::cuda::portable::sparse_prefill_smem_bytes<kDQk, kStages>(int);

#define MODEL1_INSTANTIATE_PORTABLE_PREFILL_COMPACT(kDQk)                                     \
  template void model1::cuda::portable::launch_sparse_prefill_compact<kDQk>(                  \
      const model1::cuda::PrefillParams&, cudaStream_t, int);                                 \
  template int model1::cuda::portable::sparse_prefill_compact_smem_bytes<kDQk>();
