// model1 CUDA: portable (sm_80 mma.sync) sparse prefill, d_qk 512, one key tile (devices with less
// shared memory), all head counts; and the compact fallback (16 heads per CTA, 99 KiB devices).
#include "cuda/portable/prefill_launch.cuh"

MODEL1_INSTANTIATE_PORTABLE_PREFILL(512, 1)
MODEL1_INSTANTIATE_PORTABLE_PREFILL_COMPACT(512)
