// model1: version and build information.
#pragma once

#include <string>
#include <vector>

namespace model1 {

inline constexpr int kVersionMajor = 0;
inline constexpr int kVersionMinor = 1;
inline constexpr int kVersionPatch = 0;
const char* version_string();  // "0.1.0"

/// True when the library was built with the CUDA backend.
bool cuda_compiled();
/// GPU architectures the CUDA backend carries machine code for, e.g. {"sm_80", "sm_90a"}.
std::vector<std::string> cuda_archs_compiled();

struct GpuInfo {
  int device_id = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int num_sms = 0;
  size_t total_memory = 0;
};
/// GPUs visible at run time (empty without CUDA or without a driver/GPU; never throws).
std::vector<GpuInfo> gpus_found();

}  // namespace model1
