// model1 CUDA Hopper (sm_90a) sparse decode: the launcher template behind decode_launch.h
// (included only by the sm_90a instantiation files).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "cuda/common/cuda_check.h"
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
    case 128:
      return DecodeTraits<Format>::kSmemBytes;
    default:
      return 0;
  }
}

template <class Format>
bool supports(const DecodeParams& p, int device) {
  const int smem = smem_for_heads<Format>(p.h_q);
  return smem > 0 && p.cache_aligned16 && device_is_sm90(device) &&
         device_smem_optin(device, "sparse_decode") >= smem;
}

/// Launches kernel<T> over b * s_q * max_splits * (h_q / kRows) CTAs (the caller checks the
/// launch). `smem_raised`: the kernel's own flag (each kernel raises its shared-memory limit
/// once per device).
template <class T, class Kernel>
void launch_decode_grid(Kernel kernel, const DecodeParams& params, cudaStream_t stream, int device,
                        std::atomic<uint64_t>& smem_raised) {
  ensure_smem_limit(kernel, device, T::kSmemBytes, smem_raised, "sparse_decode");
  DecodeParams p = params;
  p.num_head_groups = p.h_q / T::kRows;
  const int64_t ctas = static_cast<int64_t>(p.b) * p.s_q * p.max_splits * p.num_head_groups;
  MODEL1_CHECK(ctas <= 0x7fffffffll, "q.shape", "b * s_q * splits * head groups < 2^31", std::to_string(ctas));
  kernel<<<static_cast<unsigned>(ctas), T::kThreads, T::kSmemBytes, stream>>>(p);
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
  switch (p.h_q) {
    case 8:
      return launch_small_heads<Format, 8>(p, stream, device);
    case 16:
      return launch_small_heads<Format, 16>(p, stream, device);
    case 32:
      return launch_small_heads<Format, 32>(p, stream, device);
    default: {  // 64 or 128: one CTA per 64 heads
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
