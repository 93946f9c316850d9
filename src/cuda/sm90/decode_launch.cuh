// model1 CUDA Hopper (sm_90a) sparse decode: the launcher template behind decode_launch.h
// (included only by the sm_90a instantiation files).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/env_switch.h"
#include "cuda/sm90/decode_kernel.cuh"
#include "cuda/sm90/decode_small_kernel.cuh"
#include "cuda/sm90/decode_launch.h"
#include "cuda/sm90/device.h"
#include "model1/error.h"

namespace model1::cuda::sm90 {

/// Shared memory of the kernel serving h_q heads (0 when no sm_90a kernel does).
template <class Format>
int smem_for_heads(int h_q) {
  switch (h_q) {
    case 8:
      return DecodeSmallTraits<Format, 8>::kSmemBytes;
    case 16:
      return DecodeSmallTraits<Format, 16>::kSmemBytes;
    case 32:
      return DecodeSmallTraits<Format, 32>::kSmemBytes;
    case 64:
      return DecodeTraits<Format>::kSmemBytes;
    case 128:
      return std::max(DecodeTraits<Format>::kSmemBytes, DecodeTraits<Format, 2>::kSmemBytes);
    default:
      return 0;
  }
}

/// NOTE: the sm_90a kernels take 16-byte aligned q rows and out only: their Q loads and
/// epilogues have no fallback paths, because code size costs speed here (PERF.md: the 64-head
/// kernel's fallbacks alone, never executed, made the 128-head presets 2-4% slower through
/// instruction fetch). Other alignments run the portable kernels, as unaligned caches do.
template <class Format>
bool supports(const DecodeParams& p, int device) {
  const int smem = smem_for_heads<Format>(p.h_q);
  return smem > 0 && p.cache_aligned16 && p.q_aligned16 && p.out_aligned16 && device_is_sm90(device) &&
         device_smem_optin(device, "sparse_decode") >= smem;
}

/// Launches kernel<T> over b * s_q * max_splits * (h_q / kRows) CTAs (the caller checks the
/// launch; a cluster launch's returned error is thrown here). `smem_raised`: the kernel's own flag (each kernel raises its shared-memory limit
/// once per device). T::kCluster 2: the two head groups of a (request, token, split), adjacent
/// in blockIdx.x, form one cluster.
template <class T, class Kernel>
void launch_decode_grid(Kernel kernel, const DecodeParams& params, cudaStream_t stream, int device,
                        std::atomic<uint64_t>& smem_raised) {
  ensure_smem_limit(kernel, device, T::kSmemBytes, smem_raised, "sparse_decode");
  DecodeParams p = params;
  p.num_head_groups = p.h_q / T::kRows;
  MODEL1_CHECK(p.num_head_groups % T::kCluster == 0, "q.shape",
               "h_q a multiple of " + std::to_string(T::kRows * T::kCluster) + " (sm_90a cluster kernel)",
               std::to_string(p.h_q));
  const int64_t ctas = static_cast<int64_t>(p.b) * p.s_q * p.max_splits * p.num_head_groups;
  MODEL1_CHECK(ctas <= 0x7fffffffll, "q.shape", "b * s_q * splits * head groups < 2^31", std::to_string(ctas));
  // NOTE: after the request-order kernel (p.request_order set) a programmatic dependent
  // launch: the CTAs wait in cta_coord until the order is written.
  const bool after_order = p.request_order != nullptr;
  if (T::kCluster == 1 && !after_order) {
    kernel<<<static_cast<unsigned>(ctas), T::kThreads, T::kSmemBytes, stream>>>(p);
    return;
  }
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(ctas));
  cfg.blockDim = dim3(T::kThreads);
  cfg.dynamicSmemBytes = T::kSmemBytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if constexpr (T::kCluster > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = T::kCluster;
    attr[n].val.clusterDim.y = 1;
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  if (after_order) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  MODEL1_CUDA_CHECK("sparse_decode", cudaLaunchKernelEx(&cfg, kernel, p));
}

/// 128 heads as 2-CTA clusters sharing the key conversion (DecodeTraits kCluster 2): on unless
/// MODEL1_CUDA_DECODE_CLUSTER is "0" (comparisons, tests of both paths). NOTE: read once per
/// process.
inline bool cluster_decode_enabled() {
  static const bool value = env_switch_on("MODEL1_CUDA_DECODE_CLUSTER");
  return value;
}

/// The small-head kernel for exactly kHeads heads.
template <class Format, int kHeads>
void launch_small_heads(const DecodeParams& p, cudaStream_t stream, int device) {
  using T = DecodeSmallTraits<Format, kHeads>;
  static std::atomic<uint64_t> smem_raised{0};
  launch_decode_grid<T>(sparse_decode_sm90_small_kernel<T>, p, stream, device, smem_raised);
  MODEL1_CUDA_CHECK_LAUNCH("sparse_decode", "sparse_decode_sm90_small_kernel");
}

template <class Format>
void launch_sparse_decode(const DecodeParams& p, cudaStream_t stream, int device) {
  MODEL1_CHECK(smem_for_heads<Format>(p.h_q) > 0, "q.shape", "shape[2] (h_q) 8, 16, 32, 64 or 128 (sm_90a kernels)",
               std::to_string(p.h_q));
  // NOTE: a latency plan's 16, 32 or 64 heads run as two CTAs of half of them
  // (DecodeParams::half_heads; the plan sets it for those head counts only).
  const int heads_per_cta = p.half_heads ? p.h_q / 2 : p.h_q;
  switch (heads_per_cta) {
    case 8:
      return launch_small_heads<Format, 8>(p, stream, device);
    case 16:
      return launch_small_heads<Format, 16>(p, stream, device);
    case 32:
      return launch_small_heads<Format, 32>(p, stream, device);
    default: {  // 64 or 128 heads: one CTA per 64
      if (p.h_q == 128 && cluster_decode_enabled()) {
        using T = DecodeTraits<Format, 2>;
        static std::atomic<uint64_t> smem_raised{0};
        launch_decode_grid<T>(sparse_decode_sm90_kernel<T>, p, stream, device, smem_raised);
        MODEL1_CUDA_CHECK_LAUNCH("sparse_decode", "sparse_decode_sm90_kernel (2-CTA clusters)");
        return;
      }
      using T = DecodeTraits<Format>;
      static std::atomic<uint64_t> smem_raised{0};
      launch_decode_grid<T>(sparse_decode_sm90_kernel<T>, p, stream, device, smem_raised);
      MODEL1_CUDA_CHECK_LAUNCH("sparse_decode", "sparse_decode_sm90_kernel");
      return;
    }
  }
}

template <class Format>
int sparse_decode_smem_bytes() {
  return DecodeTraits<Format>::kSmemBytes;
}

}  // namespace model1::cuda::sm90

#define MODEL1_INSTANTIATE_SM90_DECODE(Format)                                               \
  template bool model1::cuda::sm90::supports<Format>(const model1::cuda::DecodeParams&, int); \
  template void model1::cuda::sm90::launch_sparse_decode<Format>(const model1::cuda::DecodeParams&, \
                                                                 cudaStream_t, int);        \
  template int model1::cuda::sm90::sparse_decode_smem_bytes<Format>();
