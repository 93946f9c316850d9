// model1: version and build information (include/model1/version.h).
#include "model1/version.h"

#include "backend.h"

namespace model1 {

const char* version_string() {
  // NOTE: built from the header's constants so the two can never disagree.
  static const std::string version = std::to_string(kVersionMajor) + "." +
                                     std::to_string(kVersionMinor) + "." +
                                     std::to_string(kVersionPatch);
  return version.c_str();
}

bool cuda_compiled() {
#ifdef MODEL1_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::vector<std::string> cuda_archs_compiled() {
#ifdef MODEL1_WITH_CUDA
  return model1::cuda::archs_compiled();
#else
  return {};
#endif
}

std::vector<GpuInfo> gpus_found() {
#ifdef MODEL1_WITH_CUDA
  // NOTE: documented as never throwing: a missing driver or GPU means "none found".
  try {
    return model1::cuda::gpus_found();
  } catch (...) {
    return {};
  }
#else
  return {};
#endif
}

}  // namespace model1
