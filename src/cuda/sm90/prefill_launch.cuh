// model1 CUDA Hopper (sm_90a) sparse prefill: the launcher template behind prefill_launch.h
// (included only by the sm_90a instantiation files).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/env_switch.h"
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

/// MODEL1_CUDA_PREFILL_TMA: `0` copies the Q tiles with the producer threads' cp.async (the
/// kernel before the TMA path); unset, empty or `1`: by TMA wherever q allows it. Read on every
/// call.
inline bool prefill_tma_enabled() { return env_switch_on("MODEL1_CUDA_PREFILL_TMA"); }

/// MODEL1_CUDA_PREFILL_STAGGER: `0` starts every CTA at once; unset, empty or `1`: the
/// staggered start below. Read on every call.
inline bool prefill_stagger_enabled() { return env_switch_on("MODEL1_CUDA_PREFILL_STAGGER"); }

/// The staggered start of a round-robin grid (no topk_length): every item costs the same, so
/// the CTAs run in lockstep, and at each item boundary all of them load their next Q (64 KiB)
/// and store their out rows together. When `items` is not a multiple of `ctas`, the CTAs from
/// items % ctas on have one item fewer than the busiest: delaying their start by up to half an
/// item (estimated at 3300 cycles a 64-key chunk plus 4500) spreads those bursts without
/// lengthening the call. prefill-h64 0.983-0.996 of the time without (PERF.md, thirtieth
/// session). Items are computed by the same instructions either way: results do not change.
inline void prefill_stagger(PrefillParams& p, int64_t items, int64_t ctas, int block_n) {
  p.stagger_cycles = 0;
  p.stagger_from = 0;
  const bool on = prefill_stagger_enabled();  // validated on every call
  if (!on || p.topk_length != nullptr || items <= ctas || items % ctas == 0) return;
  const int64_t chunks = (static_cast<int64_t>(p.topk) + block_n - 1) / block_n;
  p.stagger_cycles = static_cast<int>(std::min<int64_t>((chunks * 3300 + 4500) / 2, int64_t{1} << 24));
  p.stagger_from = static_cast<int>(items % ctas);
}

/// The driver's cuTensorMapEncodeTiled, through the runtime (no link against libcuda); null
/// where the driver does not provide it.
using TensorMapEncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                          const cuuint64_t*, const cuuint32_t*, const cuuint32_t*,
                                          CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
                                          CUtensorMapFloatOOBfill);
inline TensorMapEncodeTiled tensor_map_encoder() {
  static const TensorMapEncodeTiled fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult status{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &status) !=
            cudaSuccess ||
        status != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return static_cast<TensorMapEncodeTiled>(nullptr);
    }
    return reinterpret_cast<TensorMapEncodeTiled>(f);
  }();
  return fn;
}

/// The TMA path's map of q ({d_qk, h_q, s_q}, boxes of 64 columns x 64 heads x 1 token in the
/// 128-byte swizzle), when q allows it: 16-byte aligned rows (q_aligned16: base and strides),
/// strides below 2^40 bytes, and the driver's encoder accepting it. False: the thread copies.
template <int kDQk>
bool prefill_q_map(const PrefillParams& p, PrefillMaps* maps) {
  if (!prefill_tma_enabled() || !p.q_aligned16 || p.q_stride_h <= 0 || p.q_stride_s < 0) return false;
  const TensorMapEncodeTiled encode = tensor_map_encoder();
  if (encode == nullptr) return false;
  const uint64_t row = static_cast<uint64_t>(p.q_stride_h) * 2;
  // NOTE: a single token's stride is never used; any valid value stands in for it.
  const uint64_t token = p.s_q == 1 ? row * static_cast<uint64_t>(p.h_q) : static_cast<uint64_t>(p.q_stride_s) * 2;
  if (row >= (uint64_t{1} << 40) || token >= (uint64_t{1} << 40) || token % 16 != 0) return false;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(kDQk), static_cast<cuuint64_t>(p.h_q),
                              static_cast<cuuint64_t>(p.s_q)};
  const cuuint64_t strides[2] = {row, token};
  const cuuint32_t box[3] = {64, static_cast<cuuint32_t>(PrefillTraits<kDQk>::kRows), 1};
  const cuuint32_t elem[3] = {1, 1, 1};
  return encode(&maps->q, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<uint16_t*>(p.q), dims, strides, box, elem,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
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
  static std::atomic<uint64_t> smem_raised{0}, smem_raised_tma{0};
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
  prefill_stagger(p, items, ctas, T::kBlockN);
  PrefillMaps maps{};
  if (prefill_q_map<kDQk>(p, &maps)) {
    ensure_smem_limit(sparse_prefill_sm90_kernel<T, true>, device, T::kSmemBytes, smem_raised_tma, "sparse_prefill");
    sparse_prefill_sm90_kernel<T, true><<<static_cast<unsigned>(ctas), T::kThreads, T::kSmemBytes, stream>>>(p, maps);
  } else {
    ensure_smem_limit(sparse_prefill_sm90_kernel<T, false>, device, T::kSmemBytes, smem_raised, "sparse_prefill");
    sparse_prefill_sm90_kernel<T, false><<<static_cast<unsigned>(ctas), T::kThreads, T::kSmemBytes, stream>>>(p, maps);
  }
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
