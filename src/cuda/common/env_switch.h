// model1 CUDA: host-side on/off switches read from the environment (comparisons and tests of a
// kernel's two paths in one process).
#pragma once

#include <cstdlib>
#include <string>

#include "model1/error.h"

namespace model1::cuda {

/// The switch `name`: unset, empty or "1" is on, "0" is off; any other value throws
/// model1::Error naming the variable. Reads the environment at each call (callers that read it
/// once per process cache the result).
inline bool env_switch_on(const char* name) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return true;
  const std::string v = env;
  MODEL1_CHECK(v == "0" || v == "1", name, "'0', '1' or unset", "'" + v + "'");
  return v == "1";
}

}  // namespace model1::cuda
