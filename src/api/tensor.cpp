// model1: TensorView helpers and DLPack type/device codes (include/model1/tensor.h).
#include "model1/tensor.h"

#include <string>

#include "model1/error.h"

namespace model1 {
namespace {

// DLPack's DLDataTypeCode and DLDeviceType values (dlpack.h), spelled out so that the library
// does not depend on the DLPack header.
constexpr uint8_t kDLInt = 0;
constexpr uint8_t kDLUInt = 1;
constexpr uint8_t kDLFloat = 2;
constexpr uint8_t kDLBfloat = 4;
constexpr uint8_t kDLFloat8E4M3fn = 10;
constexpr int32_t kDLCPU = 1;
constexpr int32_t kDLCUDA = 2;
constexpr int32_t kDLCUDAHost = 3;

std::string list_str(const std::array<int64_t, kMaxDims>& values, int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(values[i]);
  }
  return s + "]";
}

TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     Device device, int device_id) {
  MODEL1_CHECK(static_cast<int>(shape.size()) <= kMaxDims, "shape",
               "at most " + std::to_string(kMaxDims) + " dims",
               std::to_string(shape.size()) + " dims");
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  t.device_id = device_id;
  t.ndim = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t extent : shape) t.shape[i++] = extent;
  return t;
}

}  // namespace

int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return 2;
    case DType::kF32: return 4;
    case DType::kI32: return 4;
    case DType::kU8: return 1;
    case DType::kFP8E4M3: return 1;
  }
  MODEL1_THROW("dtype", "a model1::DType", std::to_string(static_cast<int>(dtype)));
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return "bf16";
    case DType::kF32: return "f32";
    case DType::kI32: return "int32";
    case DType::kU8: return "uint8";
    case DType::kFP8E4M3: return "fp8_e4m3";
  }
  return "unknown";
}

const char* device_name(Device device) {
  switch (device) {
    case Device::kCPU: return "cpu";
    case Device::kCUDA: return "cuda";
  }
  return "unknown";
}

DType dtype_from_dlpack(uint8_t code, uint8_t bits, uint16_t lanes, const char* what) {
  if (lanes == 1) {
    if (code == kDLBfloat && bits == 16) return DType::kBF16;
    if (code == kDLFloat && bits == 32) return DType::kF32;
    if (code == kDLInt && bits == 32) return DType::kI32;
    // NOTE: int8 and uint8 are both byte views of caches; the library never does arithmetic
    // on them, so they share one DType.
    if ((code == kDLUInt || code == kDLInt) && bits == 8) return DType::kU8;
    if (code == kDLFloat8E4M3fn && bits == 8) return DType::kFP8E4M3;
  }
  MODEL1_THROW(what != nullptr ? what : "tensor",
               "dtype bf16, f32, int32, uint8, int8 or float8_e4m3fn",
               "DLPack dtype code " + std::to_string(code) + ", bits " + std::to_string(bits) +
                   ", lanes " + std::to_string(lanes));
}

void dtype_to_dlpack(DType dtype, uint8_t* code, uint8_t* bits, uint16_t* lanes) {
  uint8_t c = 0, b = 0;
  switch (dtype) {
    case DType::kBF16: c = kDLBfloat; b = 16; break;
    case DType::kF32: c = kDLFloat; b = 32; break;
    case DType::kI32: c = kDLInt; b = 32; break;
    case DType::kU8: c = kDLUInt; b = 8; break;
    case DType::kFP8E4M3: c = kDLFloat8E4M3fn; b = 8; break;
  }
  if (code != nullptr) *code = c;
  if (bits != nullptr) *bits = b;
  if (lanes != nullptr) *lanes = 1;
}

Device device_from_dlpack(int32_t device_type, const char* what) {
  // NOTE: pinned host memory (kDLCUDAHost) is ordinary CPU-addressable memory.
  if (device_type == kDLCPU || device_type == kDLCUDAHost) return Device::kCPU;
  if (device_type == kDLCUDA) return Device::kCUDA;
  MODEL1_THROW(what != nullptr ? what : "tensor",
               "DLPack device kDLCPU (1), kDLCUDA (2) or kDLCUDAHost (3)",
               "DLPack device type " + std::to_string(device_type));
}

int32_t device_to_dlpack(Device device) { return device == Device::kCUDA ? kDLCUDA : kDLCPU; }

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                                  Device device, int device_id) {
  TensorView t = make_view(data, dtype, shape, device, device_id);
  int64_t stride = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    t.strides[i] = stride;
    stride *= t.shape[i];
  }
  return t;
}

TensorView TensorView::strided(void* data, DType dtype, std::initializer_list<int64_t> shape,
                               std::initializer_list<int64_t> strides, Device device,
                               int device_id) {
  MODEL1_CHECK(strides.size() == shape.size(), "strides",
               std::to_string(shape.size()) + " strides (one per dim)",
               std::to_string(strides.size()));
  TensorView t = make_view(data, dtype, shape, device, device_id);
  int i = 0;
  for (int64_t s : strides) t.strides[i++] = s;
  return t;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

bool TensorView::is_contiguous() const {
  // NOTE: like PyTorch, strides of size-1 dims do not matter, and an empty tensor is
  // contiguous.
  if (numel() == 0) return true;
  int64_t expected = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

std::string TensorView::describe() const {
  return list_str(shape, ndim) + " " + dtype_name(dtype) + " " + device_name(device) + ":" +
         std::to_string(device_id) + " strides " + list_str(strides, ndim);
}

}  // namespace model1
