// model1 bench: the L2 flush by reads (bench/l2_flush.cu; CUDA builds only).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace model1::bench {

/// Reads `bytes` (a multiple of 16; zeros) of device buffer `buf` through L2 with 4 CTAs of 512
/// threads an SM (`sms`); `sink` (4 bytes) is never written. Returns the launch's error.
cudaError_t launch_read_flush(const void* buf, size_t bytes, void* sink, int sms, cudaStream_t stream);

}  // namespace model1::bench
