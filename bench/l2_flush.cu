// model1 bench: the L2 flush by reads (`model1 bench --flush-reads`), a kernel over the flush
// buffer, so the timed run follows a kernel as it does after the default flush (a memset).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "l2_flush.h"

namespace model1::bench {
namespace {

/// Reads every 16 bytes of `buf` through L2 (ld.global.cg). The buffer holds zeros, so the
/// store to `sink` never happens; it only keeps the loads.
__global__ void read_buffer_kernel(const uint4* buf, size_t n, unsigned int* sink) {
  unsigned int acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint4 v = __ldcg(buf + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;
}

}  // namespace

cudaError_t launch_read_flush(const void* buf, size_t bytes, void* sink, int sms, cudaStream_t stream) {
  const size_t n = bytes / sizeof(uint4);
  read_buffer_kernel<<<4 * sms, 512, 0, stream>>>(static_cast<const uint4*>(buf), n,
                                                  static_cast<unsigned int*>(sink));
  return cudaGetLastError();
}

}  // namespace model1::bench
