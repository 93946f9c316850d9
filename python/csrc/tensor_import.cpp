// model1 Python extension: DLPack import (see tensor_import.h).
#include "tensor_import.h"

#include <nanobind/stl/string.h>

#include "model1/error.h"
#include "model1/kv_format.h"

namespace model1::python {
namespace {

// DLPack device types (dlpack.h DLDeviceType) this file needs by value.
constexpr int kDLCUDA = 2;
constexpr int kDLCUDAManaged = 13;
// DLPack `stream` values: the legacy default stream (0 is reserved as "ambiguous"), and "do
// not synchronise".
constexpr int64_t kDLStreamLegacyDefault = 1;
constexpr int64_t kDLStreamNoSync = -1;

// str(h) as a std::string (nb::str(h) only accepts objects that already are str).
std::string py_str(nb::handle h) {
  PyObject* s = PyObject_Str(h.ptr());
  if (s == nullptr) throw nb::python_error();
  return nb::cast<std::string>(nb::steal<nb::str>(s));
}

std::string object_type_name(nb::handle obj) {
  nb::handle type = obj.type();
  std::string module;
  if (nb::hasattr(type, "__module__")) {
    nb::object m = type.attr("__module__");
    if (nb::isinstance<nb::str>(m)) module = nb::cast<std::string>(m);
  }
  std::string name = py_str(type.attr("__name__"));
  return module.empty() || module == "builtins" ? name : module + "." + name;
}

bool is_numpy_array(nb::handle obj) {
  nb::handle type = obj.type();
  if (!nb::hasattr(type, "__module__")) return false;
  nb::object module = type.attr("__module__");
  return nb::isinstance<nb::str>(module) && nb::cast<std::string>(module) == "numpy" &&
         py_str(type.attr("__name__")) == "ndarray";
}

// An ml_dtypes NumPy array reinterpreted as a plain integer array of the same element size:
// the view to import and the dtype to give it. Empty for every other object.
struct DtypeOverride {
  nb::object view;
  DType dtype = DType::kU8;
};
std::optional<DtypeOverride> ml_dtypes_view(nb::handle obj) {
  if (!is_numpy_array(obj)) return std::nullopt;
  std::string dtype = py_str(obj.attr("dtype").attr("name"));
  // NOTE: numpy refuses to export these custom dtypes through __dlpack__ (BufferError) and
  // through the buffer protocol (no format character), so nanobind cannot see them. A
  // same-size integer view shares the memory and keeps the strides.
  if (dtype == "bfloat16") return DtypeOverride{obj.attr("view")("uint16"), DType::kBF16};
  if (dtype == "float8_e4m3fn") return DtypeOverride{obj.attr("view")("uint8"), DType::kFP8E4M3};
  return std::nullopt;
}

// Calls obj.__dlpack__ for a CUDA tensor with the consumer stream; a null object when the
// producer does not take these keywords (the caller then falls back to the plain import).
nb::object cuda_capsule(nb::handle obj, int64_t dl_stream) {
  try {
    return obj.attr("__dlpack__")(nb::arg("stream") = dl_stream,
                                  nb::arg("max_version") = nb::make_tuple(1, 0));
  } catch (nb::python_error& e) {
    if (!e.matches(PyExc_TypeError)) throw;
  }
  // Producers predating DLPack 1.0 do not know max_version.
  try {
    return obj.attr("__dlpack__")(nb::arg("stream") = dl_stream);
  } catch (nb::python_error& e) {
    if (!e.matches(PyExc_TypeError)) throw;
  }
  return nb::object();
}

int dlpack_device_type(nb::handle obj) {
  if (!nb::hasattr(obj, "__dlpack_device__")) return 0;
  try {
    nb::object dev = obj.attr("__dlpack_device__")();
    return nb::cast<int>(dev[0]);
  } catch (nb::python_error&) {
    return 0;
  } catch (nb::cast_error&) {
    return 0;
  }
}

template <typename Array>
TensorView to_view(const Array& a, const std::string& name, std::optional<DType> dtype) {
  const int ndim = static_cast<int>(a.ndim());
  MODEL1_CHECK(ndim <= kMaxDims, name, "at most " + std::to_string(kMaxDims) + " dimensions",
               std::to_string(ndim) + " dimensions");
  TensorView v;
  v.data = const_cast<void*>(static_cast<const void*>(a.data()));
  const nb::dlpack::dtype dt = a.dtype();
  v.dtype = dtype ? *dtype : dtype_from_dlpack(dt.code, dt.bits, dt.lanes, name.c_str());
  v.device = device_from_dlpack(a.device_type(), name.c_str());
  v.device_id = a.device_id();
  v.ndim = ndim;
  for (int i = 0; i < ndim; ++i) {
    v.shape[i] = static_cast<int64_t>(a.shape(i));
    v.strides[i] = a.stride(i);
  }
  return v;
}

}  // namespace

std::string describe_object(nb::handle obj) {
  if (obj.is_none()) return "None";
  std::string text = object_type_name(obj);
  try {
    if (nb::hasattr(obj, "dtype")) text += " dtype " + py_str(obj.attr("dtype"));
    if (nb::hasattr(obj, "device")) text += " device " + py_str(obj.attr("device"));
  } catch (nb::python_error&) {
    // A description is best effort: some objects raise on these attributes.
  }
  return text;
}

KvFormat parse_kv_format(const std::string& text, const std::string& name) {
  if (text == "model1_fp8") return KvFormat::kModel1Fp8;
  if (text == "v32_fp8") return KvFormat::kV32Fp8;
  if (text == "bf16") return KvFormat::kBf16;
  MODEL1_THROW(name, "format \"model1_fp8\", \"v32_fp8\" or \"bf16\"", "\"" + text + "\"");
}

TensorImporter::TensorImporter(StreamHandle stream, bool sync_producers)
    : stream_(stream),
      dl_stream_(!sync_producers ? kDLStreamNoSync
                 : stream == 0   ? kDLStreamLegacyDefault
                                 : static_cast<int64_t>(stream)) {}

TensorImporter TensorImporter::metadata_only() {
  return TensorImporter(0, /*sync_producers=*/false);
}

TensorView TensorImporter::tensor(nb::handle obj, const std::string& name, Access access) {
  MODEL1_CHECK(!obj.is_none(), name, "an array (NumPy, PyTorch, CuPy, JAX, any DLPack tensor)",
               "None");
  std::optional<DType> dtype_override;
  nb::object source = nb::borrow(obj);
  if (std::optional<DtypeOverride> ml = ml_dtypes_view(obj)) {
    source = ml->view;
    dtype_override = ml->dtype;
  }

  // CUDA tensors: export on our stream (see the class comment).
  nb::object capsule;
  const int device_type = dlpack_device_type(source);
  if (device_type == kDLCUDA || device_type == kDLCUDAManaged) {
    capsule = cuda_capsule(source, dl_stream_);
  }
  nb::handle import_from = capsule.is_valid() ? capsule : source;

  if (access == Access::kWrite) {
    nb::ndarray<> array;
    if (nb::try_cast(import_from, array, /*convert=*/false)) {
      TensorView view = to_view(array, name, dtype_override);
      outputs_.push_back(std::move(array));
      return view;
    }
    // A capsule is consumed by a successful import only, so probing read-only access with the
    // same object is safe and tells the caller why it was refused.
    nb::ndarray<nb::ro> readonly;
    MODEL1_CHECK(!nb::try_cast(import_from, readonly, false), name, "a writable array",
                 "a read-only " + describe_object(obj));
  } else {
    nb::ndarray<nb::ro> array;
    if (nb::try_cast(import_from, array, /*convert=*/false)) {
      TensorView view = to_view(array, name, dtype_override);
      inputs_.push_back(std::move(array));
      return view;
    }
  }
  MODEL1_THROW(name,
               "an array exporting DLPack or the buffer protocol, dtype bf16, f32, int32, uint8, "
               "int8 or float8_e4m3fn",
               describe_object(obj));
}

TensorView TensorImporter::optional(nb::handle obj, const std::string& name, Access access) {
  if (obj.is_none()) return TensorView{};
  return tensor(obj, name, access);
}

KvCacheView TensorImporter::cache(nb::handle data, nb::handle format, int64_t page_size,
                                  const std::string& name, Access access,
                                  std::optional<KvFormat> fallback) {
  KvCacheView cache;
  cache.data = tensor(data, name + ".data", access);
  const TensorView& v = cache.data;
  const bool bytes = v.dtype == DType::kU8 || v.dtype == DType::kFP8E4M3;

  if (!format.is_none()) {
    MODEL1_CHECK(nb::isinstance<nb::str>(format), name + ".format",
                 "a format name (str) or None", describe_object(format));
    cache.format = parse_kv_format(nb::cast<std::string>(format), name + ".format");
  } else if (v.dtype == DType::kBF16) {
    cache.format = KvFormat::kBf16;
  } else if (bytes && v.ndim == 4 && v.shape[3] == model1_fp8::kBytesPerToken) {
    cache.format = KvFormat::kModel1Fp8;
  } else if (bytes && v.ndim == 4 && v.shape[3] == v32_fp8::kBytesPerToken) {
    cache.format = KvFormat::kV32Fp8;
  } else if (fallback) {
    cache.format = *fallback;
  } else {
    MODEL1_THROW(name + ".format",
                 "a format name, or a cache it can be inferred from: bf16, or bytes "
                 "[pages, P, 1, " +
                     std::to_string(model1_fp8::kBytesPerToken) + " (model1_fp8) | " +
                     std::to_string(v32_fp8::kBytesPerToken) + " (v32_fp8)]",
                 v.describe());
  }

  if (page_size > 0) {
    cache.page_size = page_size;
  } else {
    MODEL1_CHECK(page_size == 0, name + ".page_size", "a positive page size (or None to infer it)",
                 std::to_string(page_size));
    MODEL1_CHECK(v.ndim >= 3, name + ".page_size",
                 "page_size given for a [pages, page_stride] cache (P is shape[1] only for "
                 "[pages, P, ...] views)",
                 "none, cache " + v.describe());
    cache.page_size = v.shape[1];
  }
  return cache;
}

KvCacheView TensorImporter::optional_cache(nb::handle data, nb::handle format, int64_t page_size,
                                           const std::string& name, Access access,
                                           std::optional<KvFormat> fallback) {
  if (data.is_none()) return KvCacheView{};
  return cache(data, format, page_size, name, access, fallback);
}

}  // namespace model1::python
