// model1 CUDA Hopper (sm_90a) sparse decode: the launcher template behind decode_launch.h
// (included only by the sm_90a instantiation files).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/sm90/decode_kernel.cuh"
#include "cuda/sm90/decode_launch.h"
#include "cuda/sm90/device.h"
#include "model1/error.h"

namespace model1::cuda::sm90 {

template <class Format>
bool supports(const DecodeParams& p, int device) {
  using T = DecodeTraits<Format>;
  return (p.h_q == 64 || p.h_q == 128) && p.cache_aligned16 && device_is_sm90(device) &&
         device_smem_optin(device, "sparse_decode") >= T::kSmemBytes;
}

template <class Format>
void launch_sparse_decode(const DecodeParams& params, cudaStream_t stream, int device) {
  using T = DecodeTraits<Format>;
  static std::atomic<uint64_t> smem_raised{0};
  ensure_smem_limit(sparse_decode_sm90_kernel<T>, device, T::kSmemBytes, smem_raised, "sparse_decode");
  DecodeParams p = params;
  MODEL1_CHECK(p.h_q == 64 || p.h_q == 128, "q.shape", "shape[2] (h_q) 64 or 128 (sm_90a kernel)",
               std::to_string(p.h_q));
  p.num_head_groups = p.h_q / T::kRows;
  const int64_t ctas = static_cast<int64_t>(p.b) * p.s_q * p.max_splits * p.num_head_groups;
  MODEL1_CHECK(ctas <= 0x7fffffffll, "q.shape", "b * s_q * splits * head groups < 2^31", std::to_string(ctas));
  sparse_decode_sm90_kernel<T><<<static_cast<unsigned>(ctas), T::kThreads, T::kSmemBytes, stream>>>(p);
  MODEL1_CUDA_CHECK_LAUNCH("sparse_decode", "sparse_decode_sm90_kernel");
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
