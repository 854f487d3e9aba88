// compare() and stats(): fixed-size chunks decoded block by block into double buffers (or, for
// contiguous float tensors with AVX2, read in place by the SIMD kernel: same blocks, same
// figures). Chunk results are combined in chunk order, so figures do not depend on the thread
// count, the memory layout or the kernel.
#include "compare.hpp"
#include "compare_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace inspector::num {
namespace {

constexpr std::int64_t kChunk = 1 << 20;  // elements per task
constexpr std::size_t kBlock = 2048;      // elements decoded at a time (stays in L1/L2)
constexpr double kInf = std::numeric_limits<double>::infinity();

std::int64_t n_chunks(std::int64_t n) { return (n + kChunk - 1) / kChunk; }

using kernels::CompareAcc;

// Decodes the cursor's next n elements into out.
template <class Out>
void read_decoded(Cursor& c, const View& v, Out* out, std::size_t n) {
    visit(v.dtype, [&](auto codec) {
        using C = decltype(codec);
        while (n > 0) {
            const std::size_t take = std::min<std::size_t>(n, static_cast<std::size_t>(c.inner_left()));
            decode_run<C>(c.here(), c.inner_step_bytes(), take, v.byteswap, out);
            out += take;
            n -= take;
            c.advance(static_cast<std::int64_t>(take));
        }
    });
}

// stats() lanes: four interleaved running sums break the add-latency chains, merged in a fixed
// order so the result stays deterministic.
constexpr std::size_t kLanes = 4;

// n is a multiple of kLanes. x - x is 0 for finite x, NaN for NaN and inf.
bool all_finite(const double* x, std::size_t n) {
    double probe[kLanes] = {};
    for (std::size_t i0 = 0; i0 < n; i0 += kLanes)
        for (std::size_t l = 0; l < kLanes; ++l) probe[l] += x[i0 + l] - x[i0 + l];
    return probe[0] + probe[1] + probe[2] + probe[3] == 0;
}

// One block: sums start from zero in the kernel and are added to the chunk's totals afterwards,
// so each running sum holds at most kBlock / kernels::kLanes terms (blockwise summation keeps the
// double error small).
void accumulate(const double* a, const double* b, std::size_t n, const CompareOptions& opt, CompareAcc& acc) {
    if (n % kernels::kLanes == 0 && kernels::finite(a, b, n, opt, acc)) return;
    kernels::general(a, b, n, opt, acc);
}

bool is_wide_int(DType d) { return d == DType::I64 || d == DType::U64; }

CompareAcc compare_chunk(const View& a, const View& b, std::int64_t begin, std::int64_t end,
                         const CompareOptions& opt, bool exact_ints) {
    Cursor ca(a), cb(b);
    ca.seek(begin);
    cb.seek(begin);
    std::vector<double> xa(kBlock), xb(kBlock);
    std::vector<std::uint64_t> ra, rb;
    Cursor raw_a(a), raw_b(b);
    if (exact_ints) {
        ra.resize(kBlock);
        rb.resize(kBlock);
        raw_a.seek(begin);
        raw_b.seek(begin);
    }
    CompareAcc acc;
    for (std::int64_t i = begin; i < end; i += static_cast<std::int64_t>(kBlock)) {
        const auto n = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(kBlock), end - i));
        read_decoded(ca, a, xa.data(), n);
        read_decoded(cb, b, xb.data(), n);
        const std::int64_t approx_diff = acc.n_diff;
        accumulate(xa.data(), xb.data(), n, opt, acc);
        if (exact_ints) {  // int64 beyond 2^53 is not exact in double: count differences on the integers
            read_decoded(raw_a, a, ra.data(), n);
            read_decoded(raw_b, b, rb.data(), n);
            std::int64_t diff = 0;
            for (std::size_t k = 0; k < n; ++k) diff += ra[k] != rb[k];
            acc.n_diff = approx_diff + diff;
        }
    }
    return acc;
}

// The first element when the view is one contiguous run in native byte order, else nullptr.
const std::uint8_t* contiguous_start(const View& v) {
    if (v.byteswap) return nullptr;
    std::vector<std::int64_t> shape = v.shape, strides = v.strides;
    coalesce(shape, strides);
    if (shape.size() != 1 || strides[0] != 1) return nullptr;
    return v.data + static_cast<std::size_t>(v.offset) * info(v.dtype).itemsize;
}

// compare_chunk() for two contiguous float tensors the SIMD kernel reads in place: the same
// blocks and figures; a block with NaN or inf (or a short tail) is decoded and run as there.
CompareAcc compare_chunk_raw(const View& a, const std::uint8_t* pa, const View& b, const std::uint8_t* pb,
                             std::int64_t begin, std::int64_t end, const CompareOptions& opt) {
    const std::size_t size_a = info(a.dtype).itemsize, size_b = info(b.dtype).itemsize;
    std::vector<double> xa, xb;
    CompareAcc acc;
    for (std::int64_t i = begin; i < end; i += static_cast<std::int64_t>(kBlock)) {
        const auto n = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(kBlock), end - i));
        const std::uint8_t* block_a = pa + static_cast<std::size_t>(i) * size_a;
        const std::uint8_t* block_b = pb + static_cast<std::size_t>(i) * size_b;
        if (n % kernels::kLanes == 0 && kernels::finite_raw(a.dtype, block_a, b.dtype, block_b, n, opt, acc)) continue;
        xa.resize(kBlock);
        xb.resize(kBlock);
        visit(a.dtype, [&](auto c) { decode_run<decltype(c)>(block_a, static_cast<std::int64_t>(size_a), n, false, xa.data()); });
        visit(b.dtype, [&](auto c) { decode_run<decltype(c)>(block_b, static_cast<std::int64_t>(size_b), n, false, xb.data()); });
        kernels::general(xa.data(), xb.data(), n, opt, acc);
    }
    return acc;
}

double safe_ratio(double num, double den) {
    if (num == 0) return 0.0;
    if (den == 0) return std::numeric_limits<double>::infinity();
    return num / den;
}

}  // namespace

Comparison compare(const View& a, const View& b, const CompareOptions& opt, const Watch& watch) {
    check_view(a, "tensor a");
    check_view(b, "tensor b");
    if (a.shape != b.shape) throw std::invalid_argument("tensors a and b have different shapes");
    if (!(opt.rtol >= 0 && opt.rtol < kInf) || !(opt.atol >= 0 && opt.atol < kInf))
        throw std::invalid_argument("rtol and atol must be finite and >= 0");
    const std::int64_t n = numel(a);
    const bool exact_ints = a.dtype == b.dtype && is_wide_int(a.dtype);
    const std::uint8_t* pa = n > 0 ? contiguous_start(a) : nullptr;
    const std::uint8_t* pb = n > 0 ? contiguous_start(b) : nullptr;
    const bool raw = pa && pb && kernels::raw_supported(a.dtype) && kernels::raw_supported(b.dtype);
    std::vector<CompareAcc> parts(static_cast<std::size_t>(n_chunks(n)));
    const auto task = [&](std::size_t t, unsigned) {
        const std::int64_t begin = static_cast<std::int64_t>(t) * kChunk;
        const std::int64_t stop = std::min(n, begin + kChunk);
        parts[t] = raw ? compare_chunk_raw(a, pa, b, pb, begin, stop, opt)
                       : compare_chunk(a, b, begin, stop, opt, exact_ints);
        return static_cast<std::uint64_t>(stop - begin);
    };
    parallel_for(parts.size(), thread_count(opt.threads), static_cast<std::uint64_t>(n), task, watch);
    CompareAcc acc;
    for (const auto& p : parts) acc.merge(p);

    Comparison r;
    r.numel = n;
    r.max_abs_diff = acc.max_abs;
    r.mean_abs_diff = acc.counted ? acc.sum_abs / static_cast<double>(acc.counted) : 0.0;
    r.rel_l2 = safe_ratio(std::sqrt(acc.sum_d2), std::sqrt(acc.sum_b2));
    const double na = std::sqrt(acc.norm_a2), nb = std::sqrt(acc.norm_b2);
    if (na == 0 && nb == 0) r.cosine = 1.0;
    else if (na == 0 || nb == 0) r.cosine = 0.0;
    else {
        // sqrt(|a|^2 |b|^2) is exactly |a|^2 when a == b, so identical tensors give exactly 1.
        const double prod = acc.norm_a2 * acc.norm_b2;
        const double denom = std::isfinite(prod) && prod > 0 ? std::sqrt(prod) : na * nb;
        r.cosine = std::clamp(acc.dot / denom, -1.0, 1.0);
    }
    r.n_diff = acc.n_diff;
    r.n_not_close = acc.n_not_close;
    r.allclose = acc.n_not_close == 0;
    r.nan_a = acc.nan_a;
    r.nan_b = acc.nan_b;
    r.inf_a = acc.inf_a;
    r.inf_b = acc.inf_b;
    return r;
}

// ---- stats ---------------------------------------------------------------------------------------
namespace {

struct Moments {
    std::int64_t n = 0;  // finite values
    double mean = 0, m2 = 0, min = std::numeric_limits<double>::infinity(),
           max = -std::numeric_limits<double>::infinity();
    std::int64_t zeros = 0, nan = 0, inf = 0;

    // Chan et al.'s parallel update: exact merge of (count, mean, sum of squared deviations).
    void merge(const Moments& o) {
        if (o.n > 0) {
            const double total = static_cast<double>(n + o.n);
            const double delta = o.mean - mean;
            mean += delta * static_cast<double>(o.n) / total;
            m2 += o.m2 + delta * delta * static_cast<double>(n) * static_cast<double>(o.n) / total;
            n += o.n;
            min = std::min(min, o.min);
            max = std::max(max, o.max);
        }
        zeros += o.zeros;
        nan += o.nan;
        inf += o.inf;
    }
};

// All values finite and n a multiple of kLanes: the same figures without per-element branches.
Moments block_moments_finite(const double* x, std::size_t n) {
    double sum[kLanes] = {}, lo[kLanes], hi[kLanes], zeros[kLanes] = {}, m2[kLanes] = {};
    for (std::size_t l = 0; l < kLanes; ++l) lo[l] = hi[l] = x[l];
    for (std::size_t i0 = 0; i0 < n; i0 += kLanes)
        for (std::size_t l = 0; l < kLanes; ++l) {
            const double v = x[i0 + l];
            sum[l] += v;
            lo[l] = lo[l] < v ? lo[l] : v;
            hi[l] = hi[l] > v ? hi[l] : v;
            zeros[l] += v == 0 ? 1.0 : 0.0;
        }
    Moments m;
    m.n = static_cast<std::int64_t>(n);
    m.mean = (sum[0] + sum[1] + sum[2] + sum[3]) / static_cast<double>(n);
    m.min = std::min(std::min(lo[0], lo[1]), std::min(lo[2], lo[3]));
    m.max = std::max(std::max(hi[0], hi[1]), std::max(hi[2], hi[3]));
    m.zeros = static_cast<std::int64_t>(zeros[0] + zeros[1] + zeros[2] + zeros[3]);
    for (std::size_t i0 = 0; i0 < n; i0 += kLanes)
        for (std::size_t l = 0; l < kLanes; ++l) m2[l] += (x[i0 + l] - m.mean) * (x[i0 + l] - m.mean);
    m.m2 = m2[0] + m2[1] + m2[2] + m2[3];
    return m;
}

// Two passes over a block that is already in cache: mean first, then squared deviations.
Moments block_moments(const double* x, std::size_t n) {
    if (n > 0 && n % kLanes == 0 && all_finite(x, n)) return block_moments_finite(x, n);
    Moments m;
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const bool fin = std::isfinite(x[i]);
        m.nan += std::isnan(x[i]);
        m.inf += std::isinf(x[i]);
        m.zeros += x[i] == 0;
        if (fin) {
            ++m.n;
            sum += x[i];
            m.min = std::min(m.min, x[i]);
            m.max = std::max(m.max, x[i]);
        }
    }
    if (m.n == 0) return m;
    m.mean = sum / static_cast<double>(m.n);
    for (std::size_t i = 0; i < n; ++i)
        if (std::isfinite(x[i])) m.m2 += (x[i] - m.mean) * (x[i] - m.mean);
    return m;
}

struct Bins {
    double lo, hi, scale;
    std::vector<double> edges;

    Bins(double lo_, double hi_, int bins) : lo(lo_), hi(hi_) {
        const double step = (hi - lo) / bins;
        for (int i = 0; i < bins; ++i) edges.push_back(lo + step * i);  // numpy.linspace's formula
        edges.push_back(hi);
        scale = bins / (hi - lo);
    }
    // searchsorted(edges, x, 'right') - 1, the last bin closed: numpy.histogram with these edges.
    std::size_t index(double x) const {
        const auto last = edges.size() - 2;
        const double f = (x - lo) * scale;
        std::size_t j = !(f > 0) ? 0 : f >= static_cast<double>(last) ? last : static_cast<std::size_t>(f);
        while (j > 0 && x < edges[j]) --j;
        while (j < last && x >= edges[j + 1]) ++j;
        return j;
    }
};

template <class Fn>
void for_each_block(const View& v, std::int64_t begin, std::int64_t end, Fn&& fn) {
    Cursor c(v);
    c.seek(begin);
    std::vector<double> x(kBlock);
    for (std::int64_t i = begin; i < end; i += static_cast<std::int64_t>(kBlock)) {
        const auto n = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(kBlock), end - i));
        read_decoded(c, v, x.data(), n);
        fn(x.data(), n);
    }
}

}  // namespace

Stats stats(const View& v, int bins, int threads, const Watch& watch) {
    check_view(v, "tensor");
    if (bins < 1 || bins > (1 << 20)) throw std::invalid_argument("bins must be between 1 and 1048576");
    const std::int64_t n = numel(v);
    const auto chunks = static_cast<std::size_t>(n_chunks(n));
    const unsigned workers = thread_count(threads);
    // Two passes (moments, then the histogram): progress counts both, total 2 * numel.
    const auto total = 2 * static_cast<std::uint64_t>(n);
    const Watch first_pass = watch ? Watch([&](std::uint64_t d, std::uint64_t) { watch(d, total); }) : Watch();
    const Watch second_pass = watch ? Watch([&](std::uint64_t d, std::uint64_t) { watch(total / 2 + d, total); })
                                    : Watch();

    std::vector<Moments> parts(chunks);
    parallel_for(chunks, workers, total / 2, [&](std::size_t t, unsigned) {
        const std::int64_t begin = static_cast<std::int64_t>(t) * kChunk, end = std::min(n, begin + kChunk);
        for_each_block(v, begin, end, [&](const double* x, std::size_t k) { parts[t].merge(block_moments(x, k)); });
        return static_cast<std::uint64_t>(end - begin);
    }, first_pass);
    Moments m;
    for (const auto& p : parts) m.merge(p);

    Stats s;
    s.numel = n;
    s.finite = m.n;
    s.zeros = m.zeros;
    s.nan = m.nan;
    s.inf = m.inf;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    s.min = m.n ? m.min : nan;
    s.max = m.n ? m.max : nan;
    s.mean = m.n ? m.mean : nan;
    s.std = m.n ? std::sqrt(m.m2 / static_cast<double>(m.n)) : nan;

    double lo = m.n ? m.min : 0.0, hi = m.n ? m.max : 1.0;
    if (lo == hi) {
        lo -= 0.5;
        hi += 0.5;
    }
    const Bins binning(lo, hi, bins);
    std::vector<std::vector<std::int64_t>> counts(chunks);
    if (m.n > 0) {
        parallel_for(chunks, workers, total / 2, [&](std::size_t t, unsigned) {
            auto& h = counts[t];
            h.assign(static_cast<std::size_t>(bins), 0);
            const std::int64_t begin = static_cast<std::int64_t>(t) * kChunk, end = std::min(n, begin + kChunk);
            for_each_block(v, begin, end, [&](const double* x, std::size_t k) {
                for (std::size_t i = 0; i < k; ++i)
                    if (std::isfinite(x[i])) ++h[binning.index(x[i])];
            });
            return static_cast<std::uint64_t>(end - begin);
        }, second_pass);
    } else if (watch) {
        watch(total, total);  // nothing finite: no second pass
    }
    s.hist.assign(static_cast<std::size_t>(bins), 0);
    for (const auto& h : counts)
        for (std::size_t i = 0; i < h.size(); ++i) s.hist[i] += h[i];
    s.hist_edges = binning.edges;
    return s;
}

}  // namespace inspector::num
