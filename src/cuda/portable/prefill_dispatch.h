// model1 CUDA portable sparse prefill: the per-configuration entry points behind
// src/cuda/prefill_portable.cu, one explicit instantiation per (d_qk, pipeline depth) in
// src/cuda/instantiations/prefill_sm80_*.cu (so the kernels compile in parallel).
#pragma once

#include <cuda_runtime.h>

#include "cuda/portable/prefill_params.h"

namespace model1::cuda::portable {

/// Launches the prefill kernel for head dim kDQk with kStages key tiles on `stream` (device
/// `device` current); dispatches h_q to its heads-per-CTA configuration and throws
/// model1::Error on head counts without one.
template <int kDQk, int kStages>
void launch_sparse_prefill(const PrefillParams& p, cudaStream_t stream, int device);

/// Dynamic shared memory of that configuration for `h_q` (throws like the launcher).
template <int kDQk, int kStages>
int sparse_prefill_smem_bytes(int h_q);

/// The shared-memory fallback for every h_q: the 16-row single-buffered kernel (the h_q 8 / 16
/// configuration) over h_q / 16 head groups. Instantiated with kStages 1 (same kernel).
template <int kDQk>
void launch_sparse_prefill_compact(const PrefillParams& p, cudaStream_t stream, int device);

/// Dynamic shared memory of the compact configuration (every h_q).
template <int kDQk>
int sparse_prefill_compact_smem_bytes();

}  // namespace model1::cuda::portable
