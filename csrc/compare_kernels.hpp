// The per-block arithmetic of compare(): an all-finite kernel (portable, and AVX2 selected at run
// time) and a general kernel that handles NaN and inf. Every kernel keeps kLanes running sums per
// figure, lane l taking elements i with i % kLanes == l, and merges the lanes in lane order with
// the same double operations (no fused multiply-add), so every path gives bit-identical figures.
#pragma once

#include <cstddef>
#include <cstdint>

#include "compare.hpp"

namespace inspector::num::kernels {

constexpr std::size_t kLanes = 8;

// Running figures of a block, a chunk or a whole tensor.
struct CompareAcc {
    double max_abs = 0, sum_abs = 0, sum_d2 = 0, sum_b2 = 0, dot = 0, norm_a2 = 0, norm_b2 = 0;
    std::int64_t counted = 0, n_diff = 0, n_not_close = 0, nan_a = 0, nan_b = 0, inf_a = 0, inf_b = 0;

    void merge(const CompareAcc& o);
};

// All-finite kernels. n must be a multiple of kLanes. They return false, leaving acc untouched,
// when a value is NaN or inf (the caller then runs general()).
bool finite(const double* a, const double* b, std::size_t n, const CompareOptions& opt, CompareAcc& acc);

// The same kernel reading float32/float16/bfloat16/float64 elements in place (contiguous, native
// byte order). Only when raw_supported(da) and raw_supported(db).
bool raw_supported(DType d);
bool finite_raw(DType da, const std::uint8_t* a, DType db, const std::uint8_t* b, std::size_t n,
                const CompareOptions& opt, CompareAcc& acc);

// Any values, any n; the same figures as finite() where every value is finite.
void general(const double* a, const double* b, std::size_t n, const CompareOptions& opt, CompareAcc& acc);

}  // namespace inspector::num::kernels
