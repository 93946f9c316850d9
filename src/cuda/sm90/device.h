// model1 CUDA Hopper (sm_90a): which devices run the sm_90a kernels (host side, shared by the
// decode and prefill launchers).
#pragma once

#include <cuda_runtime.h>

#include <atomic>

namespace model1::cuda::sm90 {

/// True when `device` has compute capability exactly 9.0 (sm_90a code runs there alone);
/// cached per device (read once).
inline bool device_is_sm90(int device) {
  static std::atomic<int> cached[64] = {};
  if (device < 0 || device >= 64) return false;
  int v = cached[device].load(std::memory_order_acquire);
  if (v == 0) {
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    v = major == 9 && minor == 0 ? 1 : 2;
    cached[device].store(v, std::memory_order_release);
  }
  return v == 1;
}

}  // namespace model1::cuda::sm90
