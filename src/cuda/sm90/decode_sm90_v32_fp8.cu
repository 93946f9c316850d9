// sm_90a sparse decode, v32_fp8 cache format (compiled only for sm_90a).
#include "cuda/sm90/decode_launch.cuh"

MODEL1_INSTANTIATE_SM90_DECODE(model1::cuda::portable::FormatV32Fp8)
