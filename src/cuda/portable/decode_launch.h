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

/// Which kernel configuration a launch uses. kAuto: the default (fastest) configuration for
/// h_q where the device offers its shared memory per block, else the compact one (16 heads
/// per CTA, no staging buffer: fits 99 KiB). kCompact: always the compact one (tests).
enum class DecodeConfig { kAuto, kCompact };

/// Launches the split kernel for cache format `Format` on `stream` (device `device` current);
/// dispatches h_q to its head configuration and throws model1::Error on others.
template <class Format>
void launch_sparse_decode(const DecodeParams& p, cudaStream_t stream, int device,
                          DecodeConfig config = DecodeConfig::kAuto);

/// Shared memory of the split kernel for `Format` and `h_q` in configuration `config`
/// (kAuto: the default configuration, whatever the device) (for reports/tests).
template <class Format>
int sparse_decode_smem_bytes(int h_q, DecodeConfig config = DecodeConfig::kAuto);

}  // namespace model1::cuda::portable
