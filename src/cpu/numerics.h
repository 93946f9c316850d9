// model1 CPU backend: scalar number formats (bfloat16, float8 e4m3fn, UE8M0) and the reference
// quantization rule of MODEL1.md section 2. Host-only, header-only, bit-exact.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "model1/kv_format.h"

namespace model1::cpu {

// ---- bfloat16 --------------------------------------------------------------------------------

inline float bf16_to_float(uint16_t bits) {
  const uint32_t u = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// Round-to-nearest-even float -> bfloat16 (NaN stays a quiet NaN of the same sign).
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  // NOTE: adding 0x7fff plus the lowest kept bit rounds ties to even; carries into the
  // exponent are correct (they round up to the next binade or to infinity).
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

/// Unaligned little-endian loads/stores from cache bytes (pages need not be 2- or 4-aligned).
inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof v); }
inline float load_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store_f32(uint8_t* p, float v) { std::memcpy(p, &v, sizeof v); }

// ---- float8 e4m3fn -----------------------------------------------------------------------------
// 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; 0x7f / 0xff are NaN; largest
// finite 448; subnormals are multiples of 2^-9.

/// Decodes one e4m3fn byte (exact in float).
inline float e4m3_to_float(uint8_t code) {
  const int exponent = (code >> 3) & 0xf;
  const int mantissa = code & 0x7;
  float magnitude;
  if (exponent == 0xf && mantissa == 0x7) {
    magnitude = NAN;
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);
  } else {
    magnitude = std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
  }
  return (code & 0x80) ? -magnitude : magnitude;
}

/// All 256 decoded values, built once (the hot loops use the table).
inline const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[c] = e4m3_to_float(static_cast<uint8_t>(c));
    return t;
  }();
  return table;
}

/// Encodes `x` (|x| <= 448 by the quantization rule) with round-to-nearest-even, subnormals
/// included. NaN encodes as NaN; values past 448 (impossible under the rule) saturate to 448.
inline uint8_t float_to_e4m3(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fabs(x);
  if (std::isnan(a)) return static_cast<uint8_t>(sign | 0x7f);
  if (a == 0.0f) return sign;
  if (!(a <= 448.0f)) return static_cast<uint8_t>(sign | 0x7e);
  int e2;
  std::frexp(a, &e2);      // a = m * 2^e2, m in [0.5, 1)
  const int ex = e2 - 1;   // floor(log2(a))
  // NOTE: codes are monotonic in the magnitude (code = 8 * biased_exponent + mantissa), so
  // rounding the value to the grid of its binade and adding gives the right code even when the
  // rounding carries into the next binade (or from the subnormals into the normals).
  const int quantum_exp = ex < -6 ? -9 : ex - 3;  // spacing of representable values here
  const float steps = std::nearbyint(std::ldexp(a, -quantum_exp));  // exact scaling; RNE
  int code = ex < -6 ? static_cast<int>(steps) : (ex + 7) * 8 + static_cast<int>(steps) - 8;
  if (code > 0x7e) code = 0x7e;
  return static_cast<uint8_t>(sign | code);
}

// ---- the quantization rule ----------------------------------------------------------------------

/// Exponent k of the tile scale s = 2^ceil(log2(max(amax / 448, 1e-4))), computed exactly:
/// amax / 448 is the float32 quotient; the ceiling of its log2 comes from frexp, so an exact
/// power of two 2^k gives k (not k + 1) and anything above it gives k + 1.
inline int tile_scale_exponent(float amax) {
  float t = amax / kFp8Max;
  if (!(t >= kAmaxFloor)) t = kAmaxFloor;  // NOTE: also maps a NaN amax to the floor
  if (std::isinf(t)) return 127;
  int e2;
  const float m = std::frexp(t, &e2);  // t = m * 2^e2, m in [0.5, 1)
  return m == 0.5f ? e2 - 1 : e2;
}

/// UE8M0 byte of scale 2^k and back.
inline uint8_t ue8m0_encode(int k) { return static_cast<uint8_t>(k + 127); }
inline float ue8m0_decode(uint8_t byte) { return std::ldexp(1.0f, static_cast<int>(byte) - 127); }

}  // namespace model1::cpu
