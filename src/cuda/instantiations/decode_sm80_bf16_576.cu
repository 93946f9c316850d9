// model1 CUDA: portable (sm_80 mma.sync) sparse decode for the bf16_576 cache format, all head counts.
#include "cuda/portable/decode_launch.cuh"

MODEL1_INSTANTIATE_PORTABLE_DECODE(model1::cuda::portable::FormatBf16<576>)
