// model1 CUDA Hopper (sm_90a) sparse prefill: the launcher template behind prefill_launch.h
// (included only by the sm_90a instantiation files).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/sm90/device.h"
#include "cuda/sm90/prefill_kernel.cuh"
#include "cuda/sm90/prefill_launch.h"
#include "model1/error.h"

namespace model1::cuda::sm90 {

/// MODEL1_CUDA_PREFILL_CTAS unset or empty: no cap; a positive integer N: the persistent
/// sm_90a prefill kernel runs at most N CTAs (tests walk many work items per CTA with it).
/// Read on every call.
inline int prefill_cta_cap() {
  const char* env = std::getenv("MODEL1_CUDA_PREFILL_CTAS");
  if (env == nullptr || *env == '\0') return 0;
  char* end = nullptr;
  const long v = std::strtol(env, &end, 10);
  MODEL1_CHECK(*end == '\0' && v > 0 && v <= (1L << 20), "MODEL1_CUDA_PREFILL_CTAS",
               "a positive integer (at most 2^20) or unset", "'" + std::string(env) + "'");
  return static_cast<int>(v);
}

template <int kDQk>
bool prefill_supports(const PrefillParams& p, int device) {
  using T = PrefillTraits<kDQk>;
  return (p.h_q == 64 || p.h_q == 128) && p.kv_aligned16 && device_is_sm90(device) &&
         device_smem_optin(device, "sparse_prefill") >= T::kSmemBytes;
}

template <int kDQk>
void launch_sparse_prefill(const PrefillParams& params, cudaStream_t stream, int device) {
  using T = PrefillTraits<kDQk>;
  static std::atomic<uint64_t> smem_raised{0};
  ensure_smem_limit(sparse_prefill_sm90_kernel<T>, device, T::kSmemBytes, smem_raised, "sparse_prefill");
  PrefillParams p = params;
  MODEL1_CHECK(p.h_q == 64 || p.h_q == 128, "q.shape", "shape[1] (h_q) 64 or 128 (sm_90a kernel)",
               std::to_string(p.h_q));
  MODEL1_CHECK(p.kv_aligned16, "kv", "16-byte aligned rows (sm_90a kernel)", "unaligned rows");
  p.num_head_groups = p.h_q / T::kRows;
  // NOTE: persistent: one CTA per SM (each holds a whole SM's shared memory), or fewer when
  // there are fewer work items or MODEL1_CUDA_PREFILL_CTAS caps them. Every item is computed
  // the same way whichever CTA takes it, so the count never changes results.
  const int64_t items = static_cast<int64_t>(p.s_q) * p.num_head_groups;
  MODEL1_CHECK(items <= (int64_t{1} << 30), "q.shape",
               "s_q * h_q / 64 at most 2^30 work items (sm_90a kernel)", std::to_string(items));
  int64_t ctas = std::min<int64_t>(items, device_sm_count(device, "sparse_prefill"));
  const int cap = prefill_cta_cap();
  if (cap > 0) ctas = std::min<int64_t>(ctas, cap);
  sparse_prefill_sm90_kernel<T><<<static_cast<unsigned>(ctas), T::kThreads, T::kSmemBytes, stream>>>(p);
  MODEL1_CUDA_CHECK_LAUNCH("sparse_prefill", "sparse_prefill_sm90_kernel");
}

template <int kDQk>
int sparse_prefill_smem_bytes() {
  return PrefillTraits<kDQk>::kSmemBytes;
}

}  // namespace model1::cuda::sm90

#define MODEL1_INSTANTIATE_SM90_PREFILL(kDQk)                                                      \
  template bool model1::cuda::sm90::prefill_supports<kDQk>(const model1::cuda::PrefillParams&, int); \
  template void model1::cuda::sm90::launch_sparse_prefill<kDQk>(const model1::cuda::PrefillParams&, \
                                                                cudaStream_t, int);                 \
  template int model1::cuda::sm90::sparse_prefill_smem_bytes<kDQk>();
