// See average.hpp.
#include "average.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "crc32.hpp"

namespace inspector::num {

namespace {

constexpr std::size_t kBlock = 2048;  // elements decoded per input per step (stays in L1/L2)
__extension__ using Wide = __int128;  // GCC/Clang: exact integer sums
__extension__ using UWide = unsigned __int128;

// Encodes m doubles as the destination float dtype at p (one switch per block, not per value).
void store_floats(DType dst, const double* v, std::size_t m, std::uint8_t* p) {
    auto put = [&](auto encode) {
        for (std::size_t i = 0; i < m; ++i) {
            const auto raw = encode(v[i]);
            std::memcpy(p + i * sizeof raw, &raw, sizeof raw);
        }
    };
    switch (dst) {
        case DType::F64: return put([](double x) { return x; });
        case DType::F32: return put([](double x) { return static_cast<float>(x); });
        case DType::F16: return put([](double x) { return f32_to_f16(f64_to_f32_odd(x)); });
        case DType::BF16: return put([](double x) { return f32_to_bf16(f64_to_f32_odd(x)); });
        case DType::F8E4M3FN: return put([](double x) { return f32_to_f8e4m3fn(f64_to_f32_odd(x)); });
        case DType::F8E5M2: return put([](double x) { return f32_to_f8e5m2(f64_to_f32_odd(x)); });
        case DType::F8E4M3FNUZ: return put([](double x) { return f32_to_f8e4m3fnuz(f64_to_f32_odd(x)); });
        case DType::F8E5M2FNUZ: return put([](double x) { return f32_to_f8e5m2fnuz(f64_to_f32_odd(x)); });
        case DType::F8E8M0FNU: return put([](double x) { return f32_to_f8e8m0(f64_to_f32_odd(x)); });
        default: throw std::invalid_argument("average: not a float destination");
    }
}

// Stores the low bytes of an integer value (two's complement wrap, as a cast).
void store_int(DType dst, Wide v, std::uint8_t* p) {
    const auto u = static_cast<UWide>(v);
    const std::size_t size = info(dst).itemsize;
    for (std::size_t b = 0; b < size; ++b) p[b] = static_cast<std::uint8_t>(u >> (8 * b));
}

template <class Out>
void decode_block(DType src, const std::uint8_t* p, std::size_t n, Out* out) {
    visit(src, [&](auto c) {
        using C = decltype(c);
        decode_run<C, Out>(p, static_cast<std::int64_t>(sizeof(typename C::raw_t)), n, false, out);
    });
}

// Knuth's TwoSum, branch-free (so it vectorises and never mispredicts): sum += t, comp gains
// exactly what the rounded sum lost.
inline void add(double& sum, double& comp, double t) {
    const double s = sum + t, tp = s - sum;
    comp += (sum - (s - tp)) + (t - tp);
    sum = s;
}

bool integral(double v);

void average_float(const std::vector<const std::uint8_t*>& srcs, DType src, const std::vector<double>& weights,
                   double divisor, std::size_t n, std::uint8_t* dst, DType dst_dtype) {
    const std::size_t in = info(src).itemsize, out = info(dst_dtype).itemsize;
    // products of a float32-or-narrower value (<= 24 significant bits) and an integer weight
    // below 2^29 are exact in double: no error term needed
    const bool narrow = in <= 4 && info(src).kind == Kind::Float;
    double x[kBlock], sum[kBlock], comp[kBlock], v[kBlock];
    for (std::size_t lo = 0; lo < n; lo += kBlock) {
        const std::size_t m = std::min(kBlock, n - lo);
        std::fill(sum, sum + m, 0.0);
        std::fill(comp, comp + m, 0.0);
        for (std::size_t k = 0; k < srcs.size(); ++k) {
            decode_block(src, srcs[k] + lo * in, m, x);
            const double w = weights[k];
            if (w == 1.0) {
                for (std::size_t i = 0; i < m; ++i) add(sum[i], comp[i], x[i]);
            } else if (narrow && integral(w) && std::fabs(w) < 0x1p29) {
                for (std::size_t i = 0; i < m; ++i) add(sum[i], comp[i], w * x[i]);
            } else {
                for (std::size_t i = 0; i < m; ++i) {
                    const double t = w * x[i];
                    add(sum[i], comp[i], t);
                    comp[i] += std::fma(w, x[i], -t);  // what the product lost
                }
            }
        }
        if (dst_dtype == DType::F64) {  // divide the compensated pair: q + (s - q*d + c) / d
            for (std::size_t i = 0; i < m; ++i) {
                const double q = sum[i] / divisor, r = std::fma(-q, divisor, sum[i]);
                v[i] = q + (r + comp[i]) / divisor;
            }
        } else {  // double has 29 bits to spare over float32: one rounding of the pair is enough
            for (std::size_t i = 0; i < m; ++i) v[i] = (sum[i] + comp[i]) / divisor;
        }
        store_floats(dst_dtype, v, m, dst + lo * out);
    }
}

bool integral(double v) { return std::isfinite(v) && std::fabs(v) < 0x1p62 && v == std::floor(v); }

Wide floor_div(Wide s, Wide d) {
    Wide q = s / d;
    if (s % d != 0 && ((s < 0) != (d < 0))) --q;
    return q;
}

void average_int(const std::vector<const std::uint8_t*>& srcs, DType src, const std::vector<double>& weights,
                 double divisor, std::size_t n, std::uint8_t* dst, DType dst_dtype) {
    bool exact = integral(divisor);
    for (double w : weights) exact = exact && integral(w);
    const std::size_t in = info(src).itemsize, out = info(dst_dtype).itemsize;
    Wide x[kBlock], sum[kBlock];
    double fsum[kBlock];
    for (std::size_t lo = 0; lo < n; lo += kBlock) {
        const std::size_t m = std::min(kBlock, n - lo);
        std::fill(sum, sum + m, Wide{0});
        std::fill(fsum, fsum + m, 0.0);
        for (std::size_t k = 0; k < srcs.size(); ++k) {
            decode_block(src, srcs[k] + lo * in, m, x);
            if (exact) {
                const auto w = static_cast<Wide>(weights[k]);
                for (std::size_t i = 0; i < m; ++i) sum[i] += w * x[i];
            } else {
                for (std::size_t i = 0; i < m; ++i) fsum[i] += weights[k] * static_cast<double>(x[i]);
            }
        }
        for (std::size_t i = 0; i < m; ++i) {
            const Wide v = exact ? floor_div(sum[i], static_cast<Wide>(divisor))
                                 : static_cast<Wide>(std::floor(fsum[i] / divisor));
            store_int(dst_dtype, v, dst + (lo + i) * out);
        }
    }
}

}  // namespace

float f64_to_f32_odd(double d) {
    float f = static_cast<float>(d);
    if (std::isnan(d) || std::isinf(f) || static_cast<double>(f) == d) return f;
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);  // toward zero
    return f32_from_bits(f32_bits(f) | 1U);
}

std::uint32_t average(const std::vector<const std::uint8_t*>& srcs, DType src, const std::vector<double>& weights,
                      double divisor, std::size_t n, std::uint8_t* dst, DType dst_dtype) {
    if (weights.size() != srcs.size()) throw std::invalid_argument("average: one weight per input");
    if (divisor == 0.0 || !std::isfinite(divisor)) throw std::invalid_argument("average: divisor must be finite, not 0");
    const Kind to = info(dst_dtype).kind, from = info(src).kind;
    if (to == Kind::Bool) throw std::invalid_argument("average: bool tensors are not averaged");
    if (to == Kind::Float) {
        average_float(srcs, src, weights, divisor, n, dst, dst_dtype);
    } else if (from == Kind::Float) {
        throw std::invalid_argument("average: a float source cannot be averaged into an integer dtype");
    } else {
        average_int(srcs, src, weights, divisor, n, dst, dst_dtype);
    }
    return crc32(dst, n * info(dst_dtype).itemsize);
}

}  // namespace inspector::num
