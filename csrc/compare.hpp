// Value comparison of two tensors and per-tensor statistics, one pass over the bytes, in double.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel.hpp"
#include "typed_view.hpp"

namespace inspector::num {

struct CompareOptions {
    double rtol = 1e-5;
    double atol = 1e-8;       // rtol and atol: finite, >= 0
    bool equal_nan = false;  // allclose: NaN == NaN counts as close
    int threads = 0;         // 0: all cores
};

// Semantics (both tensors decoded exactly to double; shapes must be equal, dtypes may differ):
// - pairs where either value is NaN are left out of the difference figures; they count in
//   nan_a/nan_b and, unless both are NaN, in n_diff;
// - |a-b| is 0 when a == b (so inf vs the same inf is no difference), inf for inf vs anything else;
// - rel_l2 = ||a-b|| / ||b|| over non-NaN pairs, 0/0 = 0, x/0 = inf;
// - cosine over pairs where both are finite; 1 when both norms are 0, 0 when only one is;
// - close (numpy.isclose): a == b, or b finite and |a-b| <= atol + rtol*|b|, or both NaN with
//   equal_nan; allclose = every pair close (vacuously true for empty tensors).
// Sums run over fixed blocks in a fixed order (compare_kernels.hpp), so the figures are
// bit-identical whatever the thread count, memory layout, byte order or kernel (AVX2 or portable).
struct Comparison {
    std::int64_t numel = 0;
    double max_abs_diff = 0, mean_abs_diff = 0, rel_l2 = 0, cosine = 1;
    std::int64_t n_diff = 0, n_not_close = 0;
    bool allclose = true;
    std::int64_t nan_a = 0, nan_b = 0, inf_a = 0, inf_b = 0;
};

// `watch` (parallel.hpp) sees elements compared so far and may cancel by throwing.
Comparison compare(const View& a, const View& b, const CompareOptions& opt, const Watch& watch = {});

// min/max/mean/std over finite values (NaN when there are none); std is the population std.
// hist counts finite values in `bins` equal bins over [min, max] (the last bin includes max;
// [min-0.5, max+0.5] when min == max, [0, 1] when nothing is finite), as numpy.histogram.
struct Stats {
    std::int64_t numel = 0, finite = 0, zeros = 0, nan = 0, inf = 0;
    double min = 0, max = 0, mean = 0, std = 0;
    std::vector<std::int64_t> hist;
    std::vector<double> hist_edges;
};

// `watch` sees elements visited, over two passes (total 2 * numel).
Stats stats(const View& v, int bins, int threads = 0, const Watch& watch = {});

// threads > 0: that many; otherwise all cores (parallel.hpp's 0).
inline unsigned thread_count(int threads) { return threads > 0 ? static_cast<unsigned>(threads) : 0U; }

}  // namespace inspector::num
