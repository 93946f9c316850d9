// model1 CUDA: portable (sm_80 mma.sync) sparse prefill, d_qk 512, two key tiles (double buffered), all head counts.
#include "cuda/portable/prefill_launch.cuh"

MODEL1_INSTANTIATE_PORTABLE_PREFILL(512, 2)
