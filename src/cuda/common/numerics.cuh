// model1 CUDA: number formats on the device (float8 e4m3fn, UE8M0, bf16) and the reference
// quantization rule of MODEL1.md section 2, bit-exact with the CPU backend.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/ptx/mma.cuh"
#include "model1/kv_format.h"

namespace model1::cuda {

inline constexpr float kLog2e = 1.4426950408889634f;  // log2(e): natural -> base-2 logits
inline constexpr float kLn2 = 0.6931471805599453f;    // ln(2): base-2 -> natural lse
inline constexpr uint32_t kE4m3ToFloatBits = 20;      // e4m3 exponent|mantissa -> float bits
inline constexpr float kE4m3Rebias = 0x1p120f;        // 2^(127 - 7): fixes the shifted exponent
inline constexpr uint32_t kF32MantissaBits = 23;
inline constexpr uint32_t kF32ExponentBias = 127;
inline constexpr int kE4m3SubnormalShift = 9;         // e4m3 subnormals are multiples of 2^-9
inline constexpr float kE4m3MinNormal = 0x1p-6f;
inline constexpr uint8_t kE4m3MaxCode = 0x7e;         // 448
inline constexpr uint8_t kE4m3NanCode = 0x7f;
inline constexpr uint32_t kQuietNanBits = 0x7fc00000u;

/// Decodes one e4m3fn code exactly into float. NOTE: moving the 7 exponent|mantissa bits to
/// the top of a float gives 2^-120 times the value for normals and subnormals alike (a float
/// subnormal has the same spacing), so one exact multiply by 2^120 finishes the job; code
/// 0x7f / 0xff is NaN (e4m3fn has no infinities).
__device__ __forceinline__ float e4m3_to_float(uint32_t code) {
  const uint32_t bits = ((code & 0x80u) << 24) | ((code & 0x7fu) << kE4m3ToFloatBits);
  const float v = __uint_as_float(bits) * kE4m3Rebias;
  // NOTE: the quiet NaN of the code's sign, as the CPU backend decodes it (same bits).
  return (code & 0x7fu) == kE4m3NanCode ? __uint_as_float(((code & 0x80u) << 24) | kQuietNanBits) : v;
}

/// UE8M0 byte e -> 2^(e - 127) as float (e = 0 is the subnormal 2^-127, e = 255 gives +inf,
/// as ldexp does on the CPU).
__device__ __forceinline__ float ue8m0_to_float(uint32_t e) {
  return e == 0 ? __uint_as_float(1u << (kF32MantissaBits - 1)) : __uint_as_float(e << kF32MantissaBits);
}

/// 2^k as float for k in [-126, 127].
__device__ __forceinline__ float exp2_int(int k) {
  return __uint_as_float(static_cast<uint32_t>(k + static_cast<int>(kF32ExponentBias)) << kF32MantissaBits);
}

/// Exponent k of the tile scale 2^ceil(log2(max(amax / 448, 1e-4))), exactly: amax / 448 is
/// the float32 quotient (IEEE division, no fast math), its ceil(log2) comes from the bits.
__device__ __forceinline__ int tile_scale_exponent(float amax) {
  float t = amax / kFp8Max;
  if (!(t >= kAmaxFloor)) t = kAmaxFloor;  // NOTE: also maps a NaN amax to the floor
  const uint32_t bits = __float_as_uint(t);
  const int e = static_cast<int>(bits >> kF32MantissaBits);
  if (e == 0xff) return 127;  // infinite amax (as the CPU rule)
  const bool power_of_two = (bits & ((1u << kF32MantissaBits) - 1)) == 0;
  return e - static_cast<int>(kF32ExponentBias) + (power_of_two ? 0 : 1);
}

/// float -> e4m3fn code with round-to-nearest-even, subnormals included; NaN -> NaN code,
/// magnitudes past 448 (impossible under the rule) saturate to 448.
__device__ __forceinline__ uint32_t float_to_e4m3(float x) {
  const uint32_t sign = (__float_as_uint(x) >> 24) & 0x80u;
  const float a = fabsf(x);
  if (a != a) return sign | kE4m3NanCode;
  uint32_t code;
  if (a < kE4m3MinNormal) {
    // NOTE: a * 2^9 is exact; rint rounds half to even. 8 steps is the smallest normal code.
    code = static_cast<uint32_t>(rintf(a * static_cast<float>(1 << kE4m3SubnormalShift)));
  } else if (!(a <= kFp8Max)) {
    code = kE4m3MaxCode;
  } else {
    // Round the float mantissa to 3 bits, ties to even; a carry moves into the exponent.
    uint32_t bits = __float_as_uint(a);
    const uint32_t drop = kF32MantissaBits - 3;
    bits += ((1u << (drop - 1)) - 1) + ((bits >> drop) & 1u);
    bits &= ~((1u << drop) - 1);
    const uint32_t exp_f32 = bits >> kF32MantissaBits;
    const uint32_t exp_e4m3 = exp_f32 - kF32ExponentBias + 7;
    code = (exp_e4m3 << 3) | ((bits >> drop) & 7u);
    if (code > kE4m3MaxCode) code = kE4m3MaxCode;
  }
  return sign | code;
}

/// float -> bf16 bits, round to nearest even; a NaN stays a quiet NaN with its sign and top
/// payload bits (the CPU backend's rule, so dequantized caches compare bitwise).
__device__ __forceinline__ uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/// Eight consecutive bf16 values at `src` as one 16-byte word: one vector load when `aligned16`,
/// else element loads (q rows with strides that are not multiples of 8 elements).
__device__ __forceinline__ uint4 load_bf16x8(const uint16_t* src, bool aligned16) {
  if (aligned16) return __ldg(reinterpret_cast<const uint4*>(src));
  uint16_t e[8];
#pragma unroll
  for (int k = 0; k < 8; ++k) e[k] = src[k];
  return make_uint4(e[0] | (uint32_t{e[1]} << 16), e[2] | (uint32_t{e[3]} << 16),
                    e[4] | (uint32_t{e[5]} << 16), e[6] | (uint32_t{e[7]} << 16));
}

/// Two floats -> packed bf16x2 bits (round to nearest even), low half = first.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// ---- fast exact dequantization to bf16 -------------------------------------------------------
// For a normal code (exponent field e >= 1) and a scale 2^k, e4m3 * 2^k in bf16 is the code's
// 7 magnitude bits shifted into the bf16 exponent|mantissa position plus (120 + k) << 7 on the
// exponent: integer work on two values at a time, no float math. Zero and subnormal codes
// (e = 0), NaN codes and scales outside [2^-120, 2^119] take the float path instead.

inline constexpr uint32_t kExpFieldMask4 = 0x78787878u;  // e4m3 exponent bits of 4 codes
inline constexpr uint32_t kExpOne4 = 0x08080808u;        // exponent field 1 in each code
inline constexpr uint32_t kMagMask4 = 0x7f7f7f7fu;       // e4m3 magnitude bits of 4 codes
inline constexpr uint32_t kOnes4 = 0x01010101u;
inline constexpr uint32_t kTopBits4 = 0x80808080u;
inline constexpr uint32_t kBf16MagMask2 = 0x07f007f0u;   // bf16x2 exponent[3:0]|mantissa[6:4]
inline constexpr uint32_t kBf16SignMask2 = 0x80008000u;
inline constexpr uint32_t kBf16MantissaBits = 7;
inline constexpr uint32_t kE4m3Bias = 7;
inline constexpr uint32_t kMinFastScaleExp = kE4m3Bias;  // biased exponent of 2^-120
inline constexpr uint32_t kMaxFastScaleExp = 246;        // 15 + 246 - 7 = 254: largest finite

/// True when any of the 4 codes is zero/subnormal (exponent 0) or NaN. NOTE: a borrow can only
/// start at a flagged byte, so "any" is exact even though single-byte flags may smear upwards.
__device__ __forceinline__ bool e4m3x4_has_special(uint32_t codes) {
  const uint32_t zero_exp = ((codes & kExpFieldMask4) - kExpOne4) & kTopBits4;
  const uint32_t nan = (((codes & kMagMask4) ^ kMagMask4) - kOnes4) & kTopBits4;
  return (zero_exp | nan) != 0;
}

/// Biased float exponent E of a scale that is exactly 2^(E - 127) with E in the fast range, or
/// 0 when the scale needs the float path.
__device__ __forceinline__ uint32_t fast_scale_exp(float scale) {
  const uint32_t bits = __float_as_uint(scale);
  const uint32_t e = bits >> kF32MantissaBits;
  const bool power_of_two = (bits & ((1u << kF32MantissaBits) - 1)) == 0;  // also excludes sign
  return power_of_two && e >= kMinFastScaleExp && e <= kMaxFastScaleExp ? e : 0;
}

/// Four normal e4m3 codes times 2^(scale_exp - 127) -> two bf16x2 words (exact).
__device__ __forceinline__ uint2 dequant4_bf16_fast(uint32_t codes, uint32_t scale_exp) {
  const uint32_t bias = (scale_exp - kE4m3Bias) << kBf16MantissaBits;
  const uint32_t bias2 = bias | (bias << 16);
  // Code i moves to the top byte of its bf16 lane: sign at bit 15, magnitude at bits 14:8.
  const uint32_t lo = __byte_perm(codes, 0, 0x1404);
  const uint32_t hi = __byte_perm(codes, 0, 0x3424);
  uint2 r;
  r.x = (((lo >> 4) & kBf16MagMask2) + bias2) | (lo & kBf16SignMask2);
  r.y = (((hi >> 4) & kBf16MagMask2) + bias2) | (hi & kBf16SignMask2);
  return r;
}

/// Four e4m3 codes (one per byte of `codes`) times `scale` -> two packed bf16x2 words.
/// NOTE: e4m3 * 2^k has at most 4 significant bits, so the bf16 rounding is exact.
__device__ __forceinline__ uint2 dequant4_bf16(uint32_t codes, float scale) {
  uint2 r;
  r.x = pack_bf16x2(e4m3_to_float(codes & 0xffu) * scale, e4m3_to_float((codes >> 8) & 0xffu) * scale);
  r.y = pack_bf16x2(e4m3_to_float((codes >> 16) & 0xffu) * scale, e4m3_to_float(codes >> 24) * scale);
  return r;
}

/// The factor a finished softmax row's O values are multiplied by: 1 / l_total, times
/// 1 / (1 + exp(sink - lse)) when the row's head has an attention sink (MODEL1.md: the sink
/// joins the denominator only). `lse` is the row's natural-log sum. One definition for every
/// decode and prefill epilogue.
__device__ __forceinline__ float softmax_out_factor(float l_total, float lse, bool has_sink, float sink) {
  float factor = 1.0f / l_total;
  if (has_sink) factor *= 1.0f / (1.0f + expf(sink - lse));
  return factor;
}

// NOTE: the softmax of the portable kernels and the sm_90a small-head kernel as the sm_90a
// 64-head kernels': exp2 by `ex2.approx.ftz` (probabilities below 2^-126 become 0; exp2f's
// range test and multiplies cost three instructions an element) and the scale fused into its
// argument (fma(s, scale, -m): one rounding fewer than scaling first, within the tolerances).
// 0 at build time: exp2f of the scaled logits.
#ifndef MODEL1_SOFTMAX_FAST_EXP
#define MODEL1_SOFTMAX_FAST_EXP 1
#endif
inline constexpr bool kFastExp = MODEL1_SOFTMAX_FAST_EXP != 0;

/// A masked logit as the softmax keeps it: -inf for an invalid key (selected, never
/// multiplied), else unscaled under kFastExp (the scale goes into exp2_logit), else scaled.
__device__ __forceinline__ float masked_logit(float s, bool valid, float scale_log2) {
  return valid ? (kFastExp ? s : s * scale_log2) : -INFINITY;
}

/// 2^x for the rescale factors (x = old maximum - new maximum, -inf before any valid key).
__device__ __forceinline__ float exp2_chunk(float x) { return kFastExp ? ptx::ex2_ftz(x) : exp2f(x); }

/// The unnormalised probability of logit `s` (unscaled under kFastExp, else already scaled)
/// against the row's reference maximum `m` (scaled, base 2).
__device__ __forceinline__ float exp2_logit(float s, float m, float scale_log2) {
  return kFastExp ? ptx::ex2_ftz(fmaf(s, scale_log2, -m)) : exp2f(s - m);
}

}  // namespace model1::cuda
