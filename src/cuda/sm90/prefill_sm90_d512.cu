// sm_90a sparse prefill, d_qk 512 (compiled only for sm_90a).
#include "cuda/sm90/prefill_launch.cuh"

MODEL1_INSTANTIATE_SM90_PREFILL(512)
