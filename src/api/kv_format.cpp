// model1: cache format names and sizes (include/model1/kv_format.h).
#include "model1/kv_format.h"

#include <string>

#include "model1/error.h"

namespace model1 {

const char* kv_format_name(KvFormat format) {
  switch (format) {
    case KvFormat::kModel1Fp8: return "model1_fp8";
    case KvFormat::kV32Fp8: return "v32_fp8";
    case KvFormat::kBf16: return "bf16";
  }
  return "unknown";
}

int kv_format_d_qk(KvFormat format, int bf16_d_qk) {
  switch (format) {
    case KvFormat::kModel1Fp8: return model1_fp8::kDQk;
    case KvFormat::kV32Fp8: return v32_fp8::kDQk;
    case KvFormat::kBf16:
      MODEL1_CHECK(bf16_d_qk == 512 || bf16_d_qk == 576, "d_qk", "512 or 576",
                   std::to_string(bf16_d_qk));
      return bf16_d_qk;
  }
  MODEL1_THROW("format", "a model1::KvFormat", std::to_string(static_cast<int>(format)));
}

int64_t kv_bytes_per_token(KvFormat format, int bf16_d_qk) {
  switch (format) {
    case KvFormat::kModel1Fp8: return model1_fp8::kBytesPerToken;
    case KvFormat::kV32Fp8: return v32_fp8::kBytesPerToken;
    case KvFormat::kBf16: return int64_t{2} * kv_format_d_qk(format, bf16_d_qk);
  }
  MODEL1_THROW("format", "a model1::KvFormat", std::to_string(static_cast<int>(format)));
}

int64_t kv_min_page_stride(KvFormat format, int64_t page_size, int bf16_d_qk) {
  MODEL1_CHECK(page_size >= 1, "page_size", "page_size >= 1", std::to_string(page_size));
  switch (format) {
    case KvFormat::kModel1Fp8: return model1_fp8::min_page_stride(page_size);
    case KvFormat::kV32Fp8: return v32_fp8::min_page_stride(page_size);
    case KvFormat::kBf16: return kv_bytes_per_token(format, bf16_d_qk) * page_size;
  }
  MODEL1_THROW("format", "a model1::KvFormat", std::to_string(static_cast<int>(format)));
}

}  // namespace model1
