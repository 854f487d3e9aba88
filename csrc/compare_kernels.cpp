// compare() kernels. The AVX2 kernel converts 8 elements to two vectors of 4 doubles (lanes 0-3
// and 4-7) and does, lane by lane, exactly the double operations of the portable kernel.
#include "compare_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "simd.hpp"

#ifdef INSPECTOR_NUM_AVX2
#include <immintrin.h>
#endif

// Bit-identical paths need a*b + c rounded twice everywhere: never contract it into an FMA (a
// -march=native build would otherwise fuse the portable loops but not the intrinsics, or both).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace inspector::num::kernels {

void CompareAcc::merge(const CompareAcc& o) {
    max_abs = std::max(max_abs, o.max_abs);
    sum_abs += o.sum_abs;
    sum_d2 += o.sum_d2;
    sum_b2 += o.sum_b2;
    dot += o.dot;
    norm_a2 += o.norm_a2;
    norm_b2 += o.norm_b2;
    counted += o.counted;
    n_diff += o.n_diff;
    n_not_close += o.n_not_close;
    nan_a += o.nan_a;
    nan_b += o.nan_b;
    inf_a += o.inf_a;
    inf_b += o.inf_b;
}

namespace {

// Per-lane sums of the all-finite kernels (sum_b2 doubles as norm_b2: equal when all is finite).
struct Lanes {
    double max_abs[kLanes] = {}, sum_abs[kLanes] = {}, sum_d2[kLanes] = {}, sum_b2[kLanes] = {},
           dot[kLanes] = {}, norm_a2[kLanes] = {};
    std::int64_t n_diff[kLanes] = {}, n_not_close[kLanes] = {};
};

// Adds the lanes to acc in lane order; false when a value was NaN or inf (x*x or y*y summed to a
// non-finite number: finite float32/16 squares cannot overflow, and a float64 that does falls
// back to general(), which computes the same figures).
bool finish(const Lanes& s, std::size_t n, CompareAcc& acc) {
    for (std::size_t l = 0; l < kLanes; ++l)
        if (!std::isfinite(s.norm_a2[l]) || !std::isfinite(s.sum_b2[l])) return false;
    CompareAcc total;
    for (std::size_t l = 0; l < kLanes; ++l) {
        CompareAcc lane;
        lane.max_abs = s.max_abs[l];
        lane.sum_abs = s.sum_abs[l];
        lane.sum_d2 = s.sum_d2[l];
        lane.sum_b2 = lane.norm_b2 = s.sum_b2[l];
        lane.dot = s.dot[l];
        lane.norm_a2 = s.norm_a2[l];
        lane.n_diff = s.n_diff[l];
        lane.n_not_close = s.n_not_close[l];
        lane.counted = static_cast<std::int64_t>(n / kLanes);
        if (l == 0) total = lane;
        else total.merge(lane);
    }
    acc.merge(total);
    return true;
}

bool finite_portable(const double* a, const double* b, std::size_t n, const CompareOptions& opt, CompareAcc& acc) {
    Lanes s;
    for (std::size_t i0 = 0; i0 < n; i0 += kLanes) {
        for (std::size_t l = 0; l < kLanes; ++l) {
            const double x = a[i0 + l], y = b[i0 + l];
            const double d = std::fabs(x - y);
            s.max_abs[l] = s.max_abs[l] > d ? s.max_abs[l] : d;
            s.sum_abs[l] += d;
            s.sum_d2[l] = std::fma(d, d, s.sum_d2[l]);
            s.sum_b2[l] = std::fma(y, y, s.sum_b2[l]);
            s.dot[l] = std::fma(x, y, s.dot[l]);
            s.norm_a2[l] = std::fma(x, x, s.norm_a2[l]);
            s.n_diff[l] += x != y;
            s.n_not_close[l] += !(d <= opt.atol + opt.rtol * std::fabs(y));
        }
    }
    return finish(s, n, acc);
}

#ifdef INSPECTOR_NUM_AVX2
// Loaders: 8 elements at p as two vectors of 4 doubles (elements 0-3, 4-7), and for the narrow
// types also as 8 floats. All exact.
struct Eight {
    __m256 f;
    __m256d d[2];
};
INSPECTOR_AVX2_TARGET inline void widen(Eight& e) {
    e.d[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(e.f));
    e.d[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(e.f, 1));
}
struct LoadF32 {
    static constexpr std::size_t kSize = 4;
    static constexpr bool kFloat = true;
    INSPECTOR_AVX2_TARGET static void load(const std::uint8_t* p, Eight& e) {
        e.f = _mm256_loadu_ps(reinterpret_cast<const float*>(p));
        widen(e);
    }
};
struct LoadF16 {
    static constexpr std::size_t kSize = 2;
    static constexpr bool kFloat = true;
    INSPECTOR_AVX2_TARGET static void load(const std::uint8_t* p, Eight& e) {
        e.f = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        widen(e);
    }
};
struct LoadBF16 {
    static constexpr std::size_t kSize = 2;
    static constexpr bool kFloat = true;
    INSPECTOR_AVX2_TARGET static void load(const std::uint8_t* p, Eight& e) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        e.f = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
        widen(e);
    }
};
struct LoadF64 {
    static constexpr std::size_t kSize = 8;
    static constexpr bool kFloat = false;
    INSPECTOR_AVX2_TARGET static void load(const std::uint8_t* p, Eight& e) {
        e.d[0] = _mm256_loadu_pd(reinterpret_cast<const double*>(p));
        e.d[1] = _mm256_loadu_pd(reinterpret_cast<const double*>(p + 32));
    }
};

// finite_portable() on vectors: vector h holds lanes 4h..4h+3. x != y is decided on the floats
// when both sides have them (one compare for 8 lanes; the same answer as in double).
template <class LA, class LB>
INSPECTOR_AVX2_TARGET bool finite_avx2(const std::uint8_t* a, const std::uint8_t* b, std::size_t n,
                                       const CompareOptions& opt, CompareAcc& acc) {
    constexpr bool kFloatNeq = LA::kFloat && LB::kFloat;
    const __m256d sign = _mm256_set1_pd(-0.0), atol = _mm256_set1_pd(opt.atol), rtol = _mm256_set1_pd(opt.rtol);
    __m256d mx[2], sa[2], sd2[2], sb2[2], dot[2], a2[2];
    __m256i nd[2], far[2];
    __m256i nd8 = _mm256_setzero_si256();  // 32-bit counts per lane: at most kBlock / kLanes each
    for (int h = 0; h < 2; ++h) {
        mx[h] = sa[h] = sd2[h] = sb2[h] = dot[h] = a2[h] = _mm256_setzero_pd();
        nd[h] = far[h] = _mm256_setzero_si256();
    }
    for (std::size_t i = 0; i < n; i += kLanes) {
        Eight x, y;
        LA::load(a + i * LA::kSize, x);
        LB::load(b + i * LB::kSize, y);
        // A true compare is all ones (-1): subtracting it counts one.
        if constexpr (kFloatNeq) nd8 = _mm256_sub_epi32(nd8, _mm256_castps_si256(_mm256_cmp_ps(x.f, y.f, _CMP_NEQ_OQ)));
        for (int h = 0; h < 2; ++h) {
            const __m256d xv = x.d[h], yv = y.d[h];
            const __m256d d = _mm256_andnot_pd(sign, _mm256_sub_pd(xv, yv));
            mx[h] = _mm256_max_pd(mx[h], d);  // mx > d ? mx : d
            sa[h] = _mm256_add_pd(sa[h], d);
            sd2[h] = _mm256_fmadd_pd(d, d, sd2[h]);
            sb2[h] = _mm256_fmadd_pd(yv, yv, sb2[h]);
            dot[h] = _mm256_fmadd_pd(xv, yv, dot[h]);
            a2[h] = _mm256_fmadd_pd(xv, xv, a2[h]);
            if constexpr (!kFloatNeq)
                nd[h] = _mm256_sub_epi64(nd[h], _mm256_castpd_si256(_mm256_cmp_pd(xv, yv, _CMP_NEQ_OQ)));
            const __m256d tol = _mm256_add_pd(atol, _mm256_mul_pd(rtol, _mm256_andnot_pd(sign, yv)));
            far[h] = _mm256_sub_epi64(far[h], _mm256_castpd_si256(_mm256_cmp_pd(d, tol, _CMP_NLE_UQ)));
        }
    }
    Lanes s;
    for (int h = 0; h < 2; ++h) {
        const std::size_t l = 4 * static_cast<std::size_t>(h);
        _mm256_storeu_pd(s.max_abs + l, mx[h]);
        _mm256_storeu_pd(s.sum_abs + l, sa[h]);
        _mm256_storeu_pd(s.sum_d2 + l, sd2[h]);
        _mm256_storeu_pd(s.sum_b2 + l, sb2[h]);
        _mm256_storeu_pd(s.dot + l, dot[h]);
        _mm256_storeu_pd(s.norm_a2 + l, a2[h]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.n_diff + l), nd[h]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.n_not_close + l), far[h]);
    }
    if constexpr (kFloatNeq) {
        std::int32_t counts[kLanes];
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(counts), nd8);
        for (std::size_t l = 0; l < kLanes; ++l) s.n_diff[l] = counts[l];
    }
    return finish(s, n, acc);
}

using RawKernel = bool (*)(const std::uint8_t*, const std::uint8_t*, std::size_t, const CompareOptions&, CompareAcc&);

template <class LA>
RawKernel pick_b(DType db) {
    switch (db) {
        case DType::F32: return finite_avx2<LA, LoadF32>;
        case DType::F16: return finite_avx2<LA, LoadF16>;
        case DType::BF16: return finite_avx2<LA, LoadBF16>;
        case DType::F64: return finite_avx2<LA, LoadF64>;
        default: return nullptr;
    }
}

RawKernel pick(DType da, DType db) {
    switch (da) {
        case DType::F32: return pick_b<LoadF32>(db);
        case DType::F16: return pick_b<LoadF16>(db);
        case DType::BF16: return pick_b<LoadBF16>(db);
        case DType::F64: return pick_b<LoadF64>(db);
        default: return nullptr;
    }
}
#endif

}  // namespace

bool finite(const double* a, const double* b, std::size_t n, const CompareOptions& opt, CompareAcc& acc) {
#ifdef INSPECTOR_NUM_AVX2
    if (simd_enabled())
        return finite_avx2<LoadF64, LoadF64>(reinterpret_cast<const std::uint8_t*>(a),
                                             reinterpret_cast<const std::uint8_t*>(b), n, opt, acc);
#endif
    return finite_portable(a, b, n, opt, acc);
}

bool raw_supported(DType d) {
#ifdef INSPECTOR_NUM_AVX2
    return simd_enabled() && pick(d, d) != nullptr;
#else
    (void)d;
    return false;
#endif
}

bool finite_raw(DType da, const std::uint8_t* a, DType db, const std::uint8_t* b, std::size_t n,
                const CompareOptions& opt, CompareAcc& acc) {
#ifdef INSPECTOR_NUM_AVX2
    if (RawKernel k = pick(da, db)) return k(a, b, n, opt, acc);
#else
    (void)da, (void)a, (void)db, (void)b, (void)n, (void)opt, (void)acc;
#endif
    throw std::logic_error("finite_raw called for unsupported dtypes");
}

void general(const double* a, const double* b, std::size_t n, const CompareOptions& opt, CompareAcc& acc) {
    CompareAcc lane[kLanes];
    for (std::size_t i0 = 0; i0 < n; i0 += kLanes) {
        const std::size_t m = std::min(kLanes, n - i0);
        for (std::size_t l = 0; l < m; ++l) {
            const double x = a[i0 + l], y = b[i0 + l];
            CompareAcc& s = lane[l];
            const bool xn = std::isnan(x), yn = std::isnan(y);
            const bool xi = std::isinf(x), yi = std::isinf(y);
            const bool eq = x == y;
            const double d = eq ? 0.0 : std::fabs(x - y);  // NaN when either is NaN
            const bool valid = !(xn || yn);
            const bool finite_pair = valid && !xi && !yi;
            const bool close = eq || (!yi && d <= opt.atol + opt.rtol * std::fabs(y)) || (opt.equal_nan && xn && yn);
            const double dv = valid ? d : 0.0;
            s.nan_a += xn;
            s.nan_b += yn;
            s.inf_a += xi;
            s.inf_b += yi;
            s.n_diff += !(eq || (xn && yn));
            s.n_not_close += !close;
            s.counted += valid;
            s.max_abs = std::max(s.max_abs, dv);
            s.sum_abs += dv;
            s.sum_d2 += dv * dv;
            s.sum_b2 += valid ? y * y : 0.0;
            s.dot += finite_pair ? x * y : 0.0;
            s.norm_a2 += finite_pair ? x * x : 0.0;
            s.norm_b2 += finite_pair ? y * y : 0.0;
        }
    }
    for (std::size_t l = 1; l < kLanes; ++l) lane[0].merge(lane[l]);
    acc.merge(lane[0]);
}

}  // namespace inspector::num::kernels
