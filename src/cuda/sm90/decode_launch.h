// model1 CUDA Hopper (sm_90a) sparse decode: host entry points. The kernels are compiled only
// when the build has sm_90a enabled (MODEL1_CUDA_SM90A, which defines MODEL1_WITH_SM90A for the
// backend); callers check supports() before launching, and keep the portable kernels for everything else.
#pragma once

#include <cuda_runtime.h>

#include "cuda/common/decode_params.h"

namespace model1::cuda::portable {
struct FormatModel1Fp8;
struct FormatV32Fp8;
}  // namespace model1::cuda::portable

namespace model1::cuda::sm90 {

/// True when an sm_90a decode kernel serves this call on `device`: an sm_90 GPU (H100/H200),
/// 8, 16 or 32 heads (the small-head kernel: keys on wgmma M) or 64 or 128 (the 64-head kernel,
/// one CTA per 64 heads), 16-byte aligned cache rows, q rows and out, and enough shared memory
/// per block.
/// `Format`: portable::FormatModel1Fp8 or portable::FormatV32Fp8.
template <class Format>
bool supports(const DecodeParams& p, int device);

/// Launches the sm_90a split kernel for p.h_q (the combine is the caller's, as for the portable
/// path).
template <class Format>
void launch_sparse_decode(const DecodeParams& p, cudaStream_t stream, int device);

/// Launches the combine kernel's sm_90a instantiation as a programmatic dependent launch of
/// the split kernel before it on `stream` (sm_90 GPUs only): its launch overlaps the split
/// kernel's tail, and each CTA waits for the split kernel's completion before reading.
void launch_combine_after_split(const DecodeParams& p, cudaStream_t stream);

/// Launches the request-order kernel's sm_90a instantiation (common/request_order.cuh), which
/// lets the sm_90a split kernel after it start early (a programmatic dependent launch whenever
/// p.request_order is set; its CTAs wait for the order before reading it).
void launch_request_order(const DecodeParams& p, int32_t* order, cudaStream_t stream);

/// Shared memory of the 64-head sm_90a split kernel for `Format` (reports and tests).
template <class Format>
int sparse_decode_smem_bytes();

}  // namespace model1::cuda::sm90
