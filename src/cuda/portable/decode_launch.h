// model1 CUDA portable sparse decode: host entry points, one explicit instantiation per cache
// format in src/cuda/instantiations/ (so the heavy kernels compile in parallel).
#pragma once

#include <cuda_runtime.h>

#include "cuda/common/decode_params.h"

namespace model1::cuda::portable {

struct FormatModel1Fp8;
struct FormatV32Fp8;
template <int kDQk>
struct FormatBf16;

/// Launches the split kernel for cache format `Format` on `stream` (device `device` current);
/// dispatches h_q to its head configuration and throws model1::Error on others.
template <class Format>
void launch_sparse_decode(const DecodeParams& p, cudaStream_t stream, int device);

/// Shared memory and threads of the split kernel for `Format` and `h_q` (for reports/tests).
template <class Format>
int sparse_decode_smem_bytes(int h_q);

}  // namespace model1::cuda::portable
