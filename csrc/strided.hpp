// A strided view of a byte buffer (shape, strides and offset in elements, as torch stores them),
// its bounds check, C-order traversal in runs, and a small fixed-chunk parallel loop.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "convert.hpp"

namespace inspector::num {

struct View {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;  // bytes available at data
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    std::vector<std::int64_t> strides;  // elements
    std::int64_t offset = 0;            // elements
    bool byteswap = false;
};

inline std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what) {
    std::int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) throw std::invalid_argument(std::string(what) + ": size overflows");
    return r;
}
inline std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* what) {
    std::int64_t r;
    if (__builtin_add_overflow(a, b, &r)) throw std::invalid_argument(std::string(what) + ": size overflows");
    return r;
}

inline std::int64_t numel_of(const std::vector<std::int64_t>& shape, const char* what) {
    std::int64_t n = 1;
    for (auto d : shape) {
        if (d < 0) throw std::invalid_argument(std::string(what) + ": negative dimension " + std::to_string(d));
        n = checked_mul(n, d, what);
    }
    return n;
}

inline std::int64_t numel(const View& v) { return numel_of(v.shape, "tensor"); }

// Throws std::invalid_argument unless every element of the view lies inside the buffer.
inline void check_view(const View& v, const char* what) {
    const std::string w(what);
    if (v.shape.size() != v.strides.size())
        throw std::invalid_argument(w + ": shape has " + std::to_string(v.shape.size()) + " dims, strides " +
                                    std::to_string(v.strides.size()));
    if (numel_of(v.shape, what) == 0) return;
    if (v.offset < 0) throw std::invalid_argument(w + ": negative storage offset");
    std::int64_t lo = v.offset, hi = v.offset;
    for (std::size_t i = 0; i < v.shape.size(); ++i) {
        const std::int64_t span = checked_mul(v.shape[i] - 1, v.strides[i], what);
        if (span >= 0) hi = checked_add(hi, span, what);
        else lo = checked_add(lo, span, what);
    }
    const auto item = static_cast<std::int64_t>(info(v.dtype).itemsize);
    const std::int64_t end = checked_mul(checked_add(hi, 1, what), item, what);
    if (lo < 0 || static_cast<std::uint64_t>(end) > v.size)
        throw std::invalid_argument(w + ": elements [" + std::to_string(lo) + ", " + std::to_string(hi + 1) +
                                    ") of " + info(v.dtype).name + " lie outside a buffer of " +
                                    std::to_string(v.size) + " bytes");
}

// Drops size-1 dims and merges dims that are contiguous with each other; never returns rank 0.
inline void coalesce(std::vector<std::int64_t>& shape, std::vector<std::int64_t>& strides) {
    std::vector<std::int64_t> s, t;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == 1) continue;
        if (!s.empty() && t.back() == strides[i] * shape[i]) {
            s.back() *= shape[i];
            t.back() = strides[i];
        } else {
            s.push_back(shape[i]);
            t.push_back(strides[i]);
        }
    }
    if (s.empty()) {
        s.push_back(1);
        t.push_back(1);
    }
    shape.swap(s);
    strides.swap(t);
}

// Walks a checked view in C order, decoding runs of the innermost dimension.
class Cursor {
public:
    explicit Cursor(const View& v) : v_(v), item_(static_cast<std::int64_t>(info(v.dtype).itemsize)) {
        coalesce(v_.shape, v_.strides);
        idx_.assign(v_.shape.size(), 0);
    }

    void seek(std::int64_t index) {
        pos_ = v_.offset;
        for (std::size_t k = v_.shape.size(); k-- > 0;) {
            idx_[k] = index % v_.shape[k];
            index /= v_.shape[k];
            pos_ += idx_[k] * v_.strides[k];
        }
    }

    // Decodes the next n elements into out (the caller keeps within numel).
    template <class Out>
    void read(Out* out, std::size_t n) {
        visit(v_.dtype, [&](auto codec) {
            using C = decltype(codec);
            while (n > 0) {
                const std::size_t take = std::min<std::size_t>(n, static_cast<std::size_t>(inner_left()));
                decode_run<C>(here(), v_.strides.back() * item_, take, v_.byteswap, out);
                out += take;
                n -= take;
                advance(static_cast<std::int64_t>(take));
            }
        });
    }

    // Raw access for byte-copy fast paths: pointer to the current element, elements left in the
    // innermost run, the run's stride in bytes.
    const std::uint8_t* here() const { return v_.data + pos_ * item_; }
    std::int64_t inner_left() const { return v_.shape.back() - idx_.back(); }
    std::int64_t inner_step_bytes() const { return v_.strides.back() * item_; }

    void advance(std::int64_t k) {  // k never crosses more than the current innermost run
        const std::size_t last = v_.shape.size() - 1;
        idx_[last] += k;
        pos_ += k * v_.strides[last];
        for (std::size_t d = last; d > 0 && idx_[d] == v_.shape[d]; --d) {
            pos_ -= idx_[d] * v_.strides[d];
            idx_[d] = 0;
            ++idx_[d - 1];
            pos_ += v_.strides[d - 1];
        }
    }

private:
    View v_;
    std::int64_t item_;
    std::vector<std::int64_t> idx_;
    std::int64_t pos_ = 0;
};

inline unsigned resolve_threads(int threads) {
    if (threads > 0) return static_cast<unsigned>(threads);
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1u : hw;
}

// Runs fn(task) for task in [0, n_tasks) on up to `threads` threads. Results must not depend on
// which thread runs a task (callers keep per-task results and combine them in task order). The
// first exception is rethrown on the calling thread once all threads have stopped.
template <class Fn>
void parallel_tasks(std::int64_t n_tasks, unsigned threads, Fn&& fn) {
    const auto workers = static_cast<unsigned>(std::min<std::int64_t>(threads, n_tasks));
    if (workers <= 1) {
        for (std::int64_t t = 0; t < n_tasks; ++t) fn(t);
        return;
    }
    std::atomic<std::int64_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&] {
        for (std::int64_t t; (t = next.fetch_add(1)) < n_tasks;) {
            try {
                fn(t);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                next.store(n_tasks);
            }
        }
    };
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < workers; ++i) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace inspector::num
