// model1 CUDA: portable (sm_80 mma.sync) sparse prefill, d_qk 576, two key tiles (double buffered), all head counts.
#include "cuda/portable/prefill_launch.cuh"

MODEL1_INSTANTIATE_PORTABLE_PREFILL(576, 2)
