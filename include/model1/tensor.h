// model1: TensorView, a non-owning DLPack-compatible view of a strided tensor.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace model1 {

/// Element types the library reads and writes. Codes follow DLPack (DLDataTypeCode, bits).
enum class DType : uint8_t {
  kBF16,     ///< bfloat16      (DLPack kDLBfloat, 16 bits)
  kF32,      ///< float32       (DLPack kDLFloat, 32 bits)
  kI32,      ///< int32         (DLPack kDLInt, 32 bits)
  kU8,       ///< uint8         (DLPack kDLUInt, 8 bits); also int8 views of caches
  kFP8E4M3,  ///< float8 e4m3fn (DLPack kDLFloat8_e4m3fn, 8 bits)
};

/// Where the data lives. Codes follow DLPack (kDLCPU = 1, kDLCUDA = 2).
enum class Device : uint8_t { kCPU, kCUDA };

/// Size in bytes of one element of `dtype`.
int64_t dtype_size(DType dtype);
/// Short lower-case name: "bf16", "f32", "int32", "uint8", "fp8_e4m3".
const char* dtype_name(DType dtype);
const char* device_name(Device device);

/// DLPack interop: DLDataType (code, bits, lanes) <-> DType. int8 maps to kU8 (byte views).
/// Throws model1::Error (argument `what`) on types the library does not handle.
DType dtype_from_dlpack(uint8_t code, uint8_t bits, uint16_t lanes, const char* what = "tensor");
void dtype_to_dlpack(DType dtype, uint8_t* code, uint8_t* bits, uint16_t* lanes);
/// DLDeviceType <-> Device (kDLCPU = 1, kDLCUDAHost = 3 count as CPU; kDLCUDA = 2).
Device device_from_dlpack(int32_t device_type, const char* what = "tensor");
int32_t device_to_dlpack(Device device);

inline constexpr int kMaxDims = 6;

/// A non-owning view: data pointer, dtype, device, shape and strides (in elements, as DLPack).
/// A default-constructed view has data == nullptr and ndim == 0 and means "absent" wherever an
/// argument is optional.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  int device_id = 0;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> strides{};  ///< in elements, may be any value (incl. 0)

  /// Contiguous (row-major) view.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                               Device device = Device::kCPU, int device_id = 0);
  /// View with explicit strides (elements).
  static TensorView strided(void* data, DType dtype, std::initializer_list<int64_t> shape,
                            std::initializer_list<int64_t> strides, Device device = Device::kCPU,
                            int device_id = 0);

  bool defined() const { return data != nullptr || ndim != 0; }
  int64_t size(int dim) const { return shape[dim < 0 ? dim + ndim : dim]; }
  int64_t stride(int dim) const { return strides[dim < 0 ? dim + ndim : dim]; }
  int64_t numel() const;
  bool is_contiguous() const;
  /// "[2, 3, 4] bf16 cuda:0 strides [12, 4, 1]"
  std::string describe() const;

  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }
};

}  // namespace model1
