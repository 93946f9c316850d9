// model1 CUDA: portable (sm_80 mma.sync) sparse prefill, d_qk 576, one key tile (devices with less shared memory), all head counts.
#include "cuda/portable/prefill_launch.cuh"

MODEL1_INSTANTIATE_PORTABLE_PREFILL(576, 1)
