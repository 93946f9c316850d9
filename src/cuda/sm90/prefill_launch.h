// model1 CUDA Hopper (sm_90a) sparse prefill: host entry points. Compiled only when the build
// has sm_90a enabled (MODEL1_CUDA_SM90A, which defines MODEL1_WITH_SM90A for the backend);
// callers check prefill_supports() before launching and keep the portable kernels otherwise.
#pragma once

#include <cuda_runtime.h>

#include "cuda/portable/prefill_params.h"

namespace model1::cuda::sm90 {

/// True when the sm_90a prefill kernel for d_qk = kDQk (512 or 576) serves this call on
/// `device`: an sm_90 GPU, 64 or 128 heads, 16-byte aligned kv rows, enough shared memory.
template <int kDQk>
bool prefill_supports(const PrefillParams& p, int device);

/// Launches the persistent sm_90a prefill kernel: min(s_q x h_q / 64 work items, SMs) CTAs, at
/// most MODEL1_CUDA_PREFILL_CTAS when set (a positive integer; anything else throws
/// model1::Error naming it).
template <int kDQk>
void launch_sparse_prefill(const PrefillParams& p, cudaStream_t stream, int device);

/// Shared memory of the sm_90a prefill kernel (reports and tests).
template <int kDQk>
int sparse_prefill_smem_bytes();

}  // namespace model1::cuda::sm90
