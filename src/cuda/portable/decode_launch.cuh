// model1 CUDA portable sparse decode: the launcher template behind decode_launch.h (included
// only by the instantiation files).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/portable/decode_kernel.cuh"
#include "cuda/portable/decode_launch.h"
#include "model1/error.h"

namespace model1::cuda::portable {

template <class T>
void launch_decode_config(const DecodeParams& params, cudaStream_t stream, int device) {
  static std::atomic<uint64_t> smem_raised{0};
  ensure_smem_limit(sparse_decode_kernel<T>, device, T::kSmemBytes, smem_raised, "sparse_decode");
  DecodeParams p = params;
  p.num_head_groups = (p.h_q + T::kRows - 1) / T::kRows;  // h_q 8 pads one 16-row group
  const int64_t ctas = static_cast<int64_t>(p.b) * p.s_q * p.max_splits * p.num_head_groups;
  MODEL1_CHECK(ctas <= 0x7fffffffll, "q.shape", "b * s_q * splits * head groups < 2^31",
               std::to_string(ctas));
  sparse_decode_kernel<T><<<static_cast<unsigned>(ctas), T::kThreads, T::kSmemBytes, stream>>>(p);
  MODEL1_CUDA_CHECK_LAUNCH("sparse_decode", "sparse_decode_kernel");
}

/// h_q -> row groups per CTA: 8 and 16 heads use one m16 tile (8 padded), 32 two, 64 and 128
/// four (128 = two head groups of 64).
template <class Format, class Fn>
auto dispatch_heads(int h_q, Fn&& fn) {
  switch (h_q) {
    case 8:
    case 16:
      return fn(DecodeTraits<Format, 1>{});
    case 32:
      return fn(DecodeTraits<Format, 2>{});
    case 64:
    case 128:
      return fn(DecodeTraits<Format, 4>{});
    default:
      MODEL1_THROW("q.shape", "shape[2] (h_q) 8, 16, 32, 64 or 128 (portable CUDA kernels)",
                   std::to_string(h_q));
  }
}

/// The shared-memory fallback of every h_q: 16 heads per CTA (h_q / 16 head groups); FP8
/// formats without the staging buffer (kCompact), BF16 caches as their 16-row default.
template <class Format>
using CompactDecodeTraits = DecodeTraits<Format, 1, Format::kStaged>;

template <class Format>
int sparse_decode_smem_bytes(int h_q, DecodeConfig config) {
  const int default_bytes =
      dispatch_heads<Format>(h_q, [](auto traits) { return decltype(traits)::kSmemBytes; });
  return config == DecodeConfig::kCompact ? CompactDecodeTraits<Format>::kSmemBytes : default_bytes;
}

template <class Format>
void launch_sparse_decode(const DecodeParams& p, cudaStream_t stream, int device, DecodeConfig config) {
  using C = CompactDecodeTraits<Format>;
  static_assert(C::kSmemBytes <= C::kCompactSmemLimit, "the fallback must fit 99 KiB per block");
  // NOTE: both configurations use the same split schedule (64-key chunks, the plan's
  // split_chunks), so the fallback changes no split point and the combine is the same. The
  // choice depends on h_q's default configuration only (as choose_kernel's in backend.cu).
  if (config != DecodeConfig::kAuto ||
      device_smem_optin(device, "sparse_decode") < sparse_decode_smem_bytes<Format>(p.h_q)) {
    launch_decode_config<C>(p, stream, device);
    return;
  }
  // NOTE: half-head plans (DecodeParams::half_heads: 32 or 64 heads) run CTAs of the
  // configuration for half the heads, twice as many head groups (launch_decode_config).
  const bool half = p.half_heads && (p.h_q == 32 || p.h_q == 64);
  dispatch_heads<Format>(half ? p.h_q / 2 : p.h_q, [&](auto traits) {
    launch_decode_config<decltype(traits)>(p, stream, device);
    return 0;
  });
}

}  // namespace model1::cuda::portable

#define MODEL1_INSTANTIATE_PORTABLE_DECODE(Format)                                          \
  template void model1::cuda::portable::launch_sparse_decode<Format>(                       \
      const model1::cuda::DecodeParams&, cudaStream_t, int, model1::cuda::portable::DecodeConfig); \
  template int model1::cuda::portable::sparse_decode_smem_bytes<Format>(                    \
      int, model1::cuda::portable::DecodeConfig);
