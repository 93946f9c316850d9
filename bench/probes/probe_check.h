// Shared by the stand-alone probes of bench/probes: a CUDA runtime call that fails ends the
// probe with its name and the runtime's message (the probes are tools, not library code).
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define PROBE_CHECK(call)                                                                   \
  do {                                                                                      \
    const cudaError_t e_ = (call);                                                          \
    if (e_ != cudaSuccess) {                                                                \
      std::fprintf(stderr, "%s: %s failed: %s\n", kProbeName, #call, cudaGetErrorString(e_)); \
      std::exit(2);                                                                         \
    }                                                                                       \
  } while (0)
