// model1 GPU tests: an environment variable set for one scope (the CUDA backend reads some of
// its switches on every call; the tests compare both settings in one process).
#pragma once

#include <cstdlib>
#include <string>

namespace model1::test_env {

/// Sets an environment variable for one scope (restoring its previous value after).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace model1::test_env
