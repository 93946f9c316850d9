// model1 src/api: argument checks shared by every public function. Each check throws
// model1::Error whose argument() is the field name, optionally with a ".detail" suffix:
//   "<name>"          missing data, wrong dtype
//   "<name>.shape"    wrong rank or extent
//   "<name>.strides"  layout (contiguity) not supported
//   "<name>.device"   device differs from the call's other tensors / no backend for it
// Caches use "<name>.data" for their data tensor, "<name>.page_size", "<name>.format".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "model1/kv_cache.h"
#include "model1/tensor.h"

namespace model1::detail {

std::string shape_str(const TensorView& t);    // "[2, 3, 4]"
std::string strides_str(const TensorView& t);  // "[12, 4, 1]"
std::string device_str(const TensorView& t);   // "cpu:0", "cuda:1"

/// Data pointer present (a tensor that is given must point somewhere).
void check_data(const TensorView& t, const std::string& name);
void check_dtype(const TensorView& t, const std::string& name, DType want);
/// `layout` names the dims, e.g. "[b, s_q, h_q, d_qk]".
void check_rank(const TensorView& t, const std::string& name, int ndim, const char* layout);
/// shape[dim] == want; `what` names the extent ("s_q") and `why` says where `want` comes from.
void check_dim(const TensorView& t, const std::string& name, int dim, int64_t want,
               const char* what, const std::string& why = "");
void check_dim_at_least(const TensorView& t, const std::string& name, int dim, int64_t min,
                        const char* what);
void check_last_dim_contiguous(const TensorView& t, const std::string& name);
void check_contiguous(const TensorView& t, const std::string& name);
void check_same_device(const TensorView& t, const std::string& name, const TensorView& anchor,
                       const std::string& anchor_name);

/// Everything KvCacheView documents (include/model1/kv_cache.h): dtype, rank, extents,
/// strides, page size, page stride. Returns the cache's d_qk (512 or 576).
int check_cache(const KvCacheView& cache, const std::string& name);

/// Throws when `t` is a CUDA tensor and this build has no CUDA backend.
void check_backend_available(const TensorView& t, const std::string& name);

/// sm_scale: NaN means 1 / sqrt(d_qk); otherwise finite and > 0.
float resolve_sm_scale(float sm_scale, int64_t d_qk);

/// h_q must be one of the head counts the kernels are built for.
void check_num_heads(int64_t h_q, const std::string& name);

}  // namespace model1::detail
