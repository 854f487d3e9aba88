// float32 -> bfloat16 / float16 with AVX2 + F16C, bit-identical to f32_to_bf16 / f32_to_f16
// (round to nearest even; bfloat16 NaN -> 0xFFFF, float16 NaN -> sign | 0x7E00).
#pragma once

#include <cstddef>
#include <cstdint>

#include "convert.hpp"

namespace inspector::num {

// Encodes n float32 values at src (native order, any alignment) as `to` at out. False, writing
// nothing, when `to` is neither bfloat16 nor float16 or the SIMD kernels are off.
bool encode_f32_simd(DType to, const std::uint8_t* src, std::size_t n, std::uint8_t* out);

}  // namespace inspector::num
