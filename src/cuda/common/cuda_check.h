// model1 CUDA: host-side helpers: turning CUDA errors into model1::Error, a device guard, and
// the one-time raising of a kernel's dynamic shared-memory limit.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "model1/error.h"

namespace model1::cuda {

/// Throws model1::Error(operation, "cudaSuccess", "<error name>: <message> (in <what>)").
[[noreturn]] inline void throw_cuda_error(const char* operation, cudaError_t err, const char* what,
                                          const char* file, int line) {
  throw ::model1::Error(operation, "cudaSuccess",
                        std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err) +
                            " (in " + what + ")",
                        file, line);
}

}  // namespace model1::cuda

/// Checks a CUDA runtime call made on behalf of public operation `op` (e.g. "sparse_decode").
#define MODEL1_CUDA_CHECK(op, call)                                                      \
  do {                                                                                   \
    const cudaError_t model1_err_ = (call);                                              \
    if (model1_err_ != cudaSuccess)                                                      \
      ::model1::cuda::throw_cuda_error((op), model1_err_, #call, __FILE__, __LINE__);    \
  } while (0)

/// Checks that the kernel launch just made by `op` was accepted (launch errors only: it
/// never synchronises).
#define MODEL1_CUDA_CHECK_LAUNCH(op, kernel_name)                                        \
  do {                                                                                   \
    const cudaError_t model1_err_ = cudaGetLastError();                                  \
    if (model1_err_ != cudaSuccess)                                                      \
      ::model1::cuda::throw_cuda_error((op), model1_err_, "launch of " kernel_name,      \
                                       __FILE__, __LINE__);                              \
  } while (0)

namespace model1::cuda {

/// Makes `device` current for the guard's lifetime (restores the previous device after).
class DeviceGuard {
 public:
  DeviceGuard(int device, const char* op) {
    MODEL1_CUDA_CHECK(op, cudaGetDevice(&previous_));
    if (previous_ != device) MODEL1_CUDA_CHECK(op, cudaSetDevice(device));
    device_ = device;
  }
  ~DeviceGuard() {
    if (previous_ != device_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  int device_ = 0;
};

/// A device attribute, queried once per device (ids 0..63; higher ids query every time). `op`
/// names the calling operation in errors.
template <cudaDeviceAttr kAttr>
inline int cached_device_attribute(int device, const char* op) {
  static std::atomic<int> cached[64];  // 0: not queried yet
  const bool cacheable = device >= 0 && device < 64;
  if (cacheable) {
    const int v = cached[device].load(std::memory_order_acquire);
    if (v > 0) return v;
  }
  int value = 0;
  MODEL1_CUDA_CHECK(op, cudaDeviceGetAttribute(&value, kAttr, device));
  if (cacheable && value > 0) cached[device].store(value, std::memory_order_release);
  return value;
}

/// The device's opt-in shared memory per block (cached per device).
inline int device_smem_optin(int device, const char* op) {
  return cached_device_attribute<cudaDevAttrMaxSharedMemoryPerBlockOptin>(device, op);
}

/// The device's number of SMs (cached per device).
inline int device_sm_count(int device, const char* op) {
  return cached_device_attribute<cudaDevAttrMultiProcessorCount>(device, op);
}

/// Raises a kernel's dynamic shared-memory limit once per device (devices 0..63; the
/// attribute call is repeated for higher ids). Safe during stream capture (no stream work).
template <typename Kernel>
void ensure_smem_limit(Kernel kernel, int device, int bytes, std::atomic<uint64_t>& done,
                       const char* op) {
  const uint64_t bit = device < 64 ? (uint64_t{1} << device) : 0;
  if (bit != 0 && (done.load(std::memory_order_acquire) & bit)) return;
  const int optin = device_smem_optin(device, op);
  // NOTE: consumer parts (sm_86/89/120) offer 99 KiB per block, A100 163 KiB, H100/H200 227 KiB.
  MODEL1_CHECK(bytes <= optin, op,
               "a GPU offering " + std::to_string(bytes) + " bytes of shared memory per block "
               "for this configuration",
               "cuda:" + std::to_string(device) + " offers " + std::to_string(optin));
  MODEL1_CUDA_CHECK(op, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             bytes));
  done.fetch_or(bit, std::memory_order_acq_rel);
}

}  // namespace model1::cuda
