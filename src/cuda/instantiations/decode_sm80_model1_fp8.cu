// model1 CUDA: portable (sm_80 mma.sync) sparse decode for the model1_fp8 cache format, all head counts.
#include "cuda/portable/decode_launch.cuh"

MODEL1_INSTANTIATE_PORTABLE_DECODE(model1::cuda::portable::FormatModel1Fp8)
