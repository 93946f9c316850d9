// model1 Python extension: any DLPack tensor (NumPy, ml_dtypes, PyTorch, CuPy, JAX; CPU or
// CUDA) as a model1::TensorView, without copies.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model1/kv_cache.h"
#include "model1/tensor.h"

namespace model1::python {

namespace nb = nanobind;

/// Whether the library writes the array (outputs, caches being filled) or only reads it.
enum class Access { kRead, kWrite };

/// A cudaStream_t passed from Python as an integer (0 = the legacy default stream).
using StreamHandle = uintptr_t;

/// Imports the arrays of one call and keeps them alive until the call returns.
///
/// Import order for an object:
///  1. NumPy arrays of ml_dtypes bfloat16 / float8_e4m3fn (which export neither DLPack nor a
///     buffer format) are viewed as uint16 / uint8 (a NumPy view, no copy) and typed bf16 /
///     fp8_e4m3 here.
///  2. Objects on a CUDA device are exported with `__dlpack__(stream=...)` naming the stream the
///     library will run on, so the producer orders its pending work before ours (DLPack stream
///     semantics; no host synchronisation, and none at all when the streams are the same).
///  3. Anything else goes through nanobind's importer (`__dlpack__()`, then the buffer protocol).
/// Failures throw model1::Error naming the argument.
class TensorImporter {
 public:
  /// Imports for work enqueued on `stream` (0 = the legacy default stream). With
  /// `sync_producers` false, CUDA producers are told the arrays are already ordered on `stream`
  /// (DLPack stream -1: no event is recorded, which is also cheaper).
  explicit TensorImporter(StreamHandle stream, bool sync_producers = true);
  /// Imports that only look at shapes and dtypes: CUDA producers are asked not to order any
  /// work (DLPack stream -1), which is also safe during CUDA-graph capture.
  static TensorImporter metadata_only();

  /// A required tensor: None or a non-array is an error.
  TensorView tensor(nb::handle obj, const std::string& name, Access access);
  /// An optional tensor: None gives an absent (default-constructed) TensorView.
  TensorView optional(nb::handle obj, const std::string& name, Access access);

  /// A paged cache: `data` as above, `format` a str ("model1_fp8", "v32_fp8", "bf16") or None
  /// to infer it (bf16 dtype -> bf16; a byte tensor [pages, P, 1, 584 | 656] -> MODEL1 / V3.2),
  /// `page_size` > 0, or 0 to take P from shape[1] of a rank 3/4 view. `fallback` is the
  /// format of a byte cache whose format is None and cannot be inferred from its shape.
  KvCacheView cache(nb::handle data, nb::handle format, int64_t page_size,
                    const std::string& name, Access access,
                    std::optional<KvFormat> fallback = std::nullopt);
  /// Optional cache: None data gives an absent cache.
  KvCacheView optional_cache(nb::handle data, nb::handle format, int64_t page_size,
                             const std::string& name, Access access,
                             std::optional<KvFormat> fallback = std::nullopt);

  void* stream() const { return reinterpret_cast<void*>(stream_); }

 private:
  StreamHandle stream_;
  int64_t dl_stream_;  // the `stream` value passed to __dlpack__ for CUDA producers
  std::vector<nb::ndarray<nb::ro>> inputs_;  // keep imported inputs alive
  std::vector<nb::ndarray<>> outputs_;       // keep imported outputs alive
};

/// Parses a format name: "model1_fp8", "v32_fp8" or "bf16". Throws model1::Error(name).
KvFormat parse_kv_format(const std::string& text, const std::string& name);

/// A short description of a Python object for error messages, e.g. "numpy.ndarray dtype
/// float16" or "list".
std::string describe_object(nb::handle obj);

}  // namespace model1::python
