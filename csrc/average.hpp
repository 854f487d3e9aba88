// Weighted mean of several tensors of one shape, element by element, for `ckpt average`:
//
//   dst[i] = round(sum_k weights[k] * src_k[i] / divisor)
//
// Floating destinations: the sum is accumulated in double with Neumaier compensation (so that
// cancellation between inputs does not cost the small terms; the products' rounding errors are
// kept too, by fma), divided once, and rounded once to
// the destination dtype, round to nearest even. Narrow floats (float16, bfloat16, float8) go
// through float32 with round-to-odd, which makes the two steps one correctly rounded step: each
// value is within one ulp of the exact weighted mean (half an ulp but for the sum's own error).
// Integer destinations: the floor of the mean (Python's and torch's `//`), exact in 128-bit
// integers when the weights and the divisor are integers, else floor() of the double mean; the
// result wraps to the destination width as a cast does. Inputs are C-contiguous, little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "convert.hpp"

namespace inspector::num {

// `n` elements of dtype `src` at each srcs[k]; writes n elements of `dst_dtype` at dst and
// returns the zip CRC-32 of the bytes written. std::invalid_argument for a divisor of 0, a
// weight count other than the input count, or a float source with an integer destination.
std::uint32_t average(const std::vector<const std::uint8_t*>& srcs, DType src, const std::vector<double>& weights,
                      double divisor, std::size_t n, std::uint8_t* dst, DType dst_dtype);

// double -> float rounding to odd (exact values unchanged; inexact ones truncated toward zero with
// the last bit set), so that a second rounding to a narrower float is a single correct rounding.
float f64_to_f32_odd(double d);

}  // namespace inspector::num
