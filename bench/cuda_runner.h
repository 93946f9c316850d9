// model1 bench internal: the CUDA side of runner.h (bench/cuda_runner.cpp, MODEL1_CUDA builds).
#pragma once

#include "runner.h"

namespace model1::bench::cuda_runner {

Timing time_decode(const DecodeWorkload& workload, const TimingOptions& options);
Timing time_prefill(const PrefillWorkload& workload, const TimingOptions& options);
int run_decode(DecodeWorkload& workload, int device, int split_keys);
void run_prefill(PrefillWorkload& workload, int device);

}  // namespace model1::bench::cuda_runner
