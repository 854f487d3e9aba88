// The one strided view of a byte buffer (shape, strides and offset in elements, as torch stores
// them), its bounds check, and C-order traversal in runs. Hashing, compare, stats and copy all
// read tensors through these: one place checks that a view stays inside its buffer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core_error.hpp"

namespace inspector {

struct StridedView {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;               // bytes available at data
    std::size_t itemsize = 1;           // bytes per element
    std::vector<std::int64_t> shape;    // elements, non-negative once checked
    std::vector<std::int64_t> strides;  // elements, may be zero or negative
    std::int64_t offset = 0;            // elements
};

// What a checked view reads: bytes [begin, end) of its buffer (both 0 when it has no elements),
// and its logical size, numel * itemsize.
struct Extent {
    std::uint64_t begin = 0, end = 0, nbytes = 0;
};

[[noreturn]] inline void bad_view(const std::string& who, const std::string& what) {
    throw CoreError(what, "value", who);
}

inline std::int64_t checked_mul(std::int64_t a, std::int64_t b, const std::string& who) {
    std::int64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) bad_view(who, "size overflows");
    return r;
}

// numel * itemsize, at most PTRDIFF_MAX. Throws for a negative dimension or an overflow.
inline std::uint64_t logical_bytes(const std::vector<std::int64_t>& shape, std::size_t itemsize,
                                   const std::string& who) {
    std::uint64_t numel = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] < 0) bad_view(who, "dimension " + std::to_string(d) + " is negative");
        if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(shape[d]), &numel))
            bad_view(who, "element count overflows 64 bits");
    }
    std::uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(itemsize), &nbytes) ||
        nbytes > static_cast<std::uint64_t>(PTRDIFF_MAX))
        bad_view(who, "byte count overflows");
    return nbytes;
}

// The bounds check: every element the view addresses lies inside [data, data + size), and no
// offset arithmetic on it overflows. Throws CoreError (where = `who`).
inline Extent check_bounds(const StridedView& v, const std::string& who) {
    if (v.shape.size() != v.strides.size())
        bad_view(who, "shape has " + std::to_string(v.shape.size()) + " dimensions but strides have " +
                          std::to_string(v.strides.size()));
    if (v.itemsize == 0) bad_view(who, "itemsize is 0");
    Extent e;
    e.nbytes = logical_bytes(v.shape, v.itemsize, who);
    if (e.nbytes == 0) return e;  // nothing is read
    if (v.offset < 0) bad_view(who, "storage offset " + std::to_string(v.offset) + " is negative");
    std::int64_t lo = v.offset, hi = v.offset;
    for (std::size_t d = 0; d < v.shape.size(); ++d) {
        std::int64_t extent = 0;
        bool overflow = __builtin_mul_overflow(v.shape[d] - 1, v.strides[d], &extent);
        overflow = overflow || (extent >= 0 ? __builtin_add_overflow(hi, extent, &hi)
                                            : __builtin_add_overflow(lo, extent, &lo));
        if (overflow) bad_view(who, "strides overflow 64 bits");
    }
    if (lo < 0) bad_view(who, "view reaches element " + std::to_string(lo) + ", before the buffer start");
    const auto item = static_cast<std::uint64_t>(v.itemsize);
    std::uint64_t end = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(hi) + 1, item, &end) || end > v.size)
        bad_view(who, "view spans bytes [" + std::to_string(static_cast<std::uint64_t>(lo) * item) + ", " +
                          (end != 0 ? std::to_string(end) : std::string("overflow")) + ") of a " +
                          std::to_string(v.size) + "-byte buffer");
    if (v.data == nullptr) bad_view(who, "no buffer");
    e.begin = static_cast<std::uint64_t>(lo) * item;  // lo <= hi: no overflow
    e.end = end;
    return e;
}

// Drops size-1 dims and merges dims that are contiguous with each other; never returns rank 0.
// A merge whose stride product would overflow is not made (the dims stay apart).
inline void coalesce(std::vector<std::int64_t>& shape, std::vector<std::int64_t>& strides) {
    std::vector<std::int64_t> s, t;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == 1) continue;
        std::int64_t span = 0;
        const bool fits = !__builtin_mul_overflow(strides[i], shape[i], &span);
        std::int64_t merged = 0;
        if (!s.empty() && fits && t.back() == span && !__builtin_mul_overflow(s.back(), shape[i], &merged)) {
            s.back() = merged;
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

namespace detail {

template <std::size_t N>
void copy_strided(const std::uint8_t* src, std::int64_t step_bytes, std::size_t n, std::uint8_t* out) {
    for (std::size_t i = 0; i < n; ++i, src += step_bytes, out += N) std::memcpy(out, src, N);
}

inline void copy_strided_any(const std::uint8_t* src, std::int64_t step_bytes, std::size_t n, std::size_t itemsize,
                             std::uint8_t* out) {
    switch (itemsize) {
        case 1: return copy_strided<1>(src, step_bytes, n, out);
        case 2: return copy_strided<2>(src, step_bytes, n, out);
        case 4: return copy_strided<4>(src, step_bytes, n, out);
        case 8: return copy_strided<8>(src, step_bytes, n, out);
        case 16: return copy_strided<16>(src, step_bytes, n, out);
        default:
            for (std::size_t i = 0; i < n; ++i, src += step_bytes, out += itemsize) std::memcpy(out, src, itemsize);
    }
}

}  // namespace detail

// Walks a view that passed check_bounds in C order, one run of the (coalesced) innermost
// dimension at a time. The caller keeps within numel.
class Cursor {
public:
    explicit Cursor(const StridedView& v)
        : data_(v.data), item_(static_cast<std::int64_t>(v.itemsize)), shape_(v.shape), strides_(v.strides) {
        coalesce(shape_, strides_);
        idx_.assign(shape_.size(), 0);
        offset_ = pos_ = v.offset;
    }

    void seek(std::int64_t index) {
        pos_ = offset_;
        for (std::size_t k = shape_.size(); k-- > 0;) {
            idx_[k] = index % shape_[k];
            index /= shape_[k];
            pos_ += idx_[k] * strides_[k];
        }
    }

    // The current element, the elements left in its innermost run, the run's stride in bytes.
    const std::uint8_t* here() const { return data_ + pos_ * item_; }
    std::int64_t inner_left() const { return shape_.back() - idx_.back(); }
    std::int64_t inner_step_bytes() const { return strides_.back() * item_; }

    void advance(std::int64_t k) {  // k never crosses more than the current innermost run
        const std::size_t last = shape_.size() - 1;
        idx_[last] += k;
        pos_ += k * strides_[last];
        for (std::size_t d = last; d > 0 && idx_[d] == shape_[d]; --d) {
            pos_ -= idx_[d] * strides_[d];
            idx_[d] = 0;
            ++idx_[d - 1];
            pos_ += strides_[d - 1];
        }
    }

    // Copies the next n elements' bytes to `out` (n * itemsize bytes), memcpy for unit-stride runs.
    void gather(std::uint8_t* out, std::size_t n) {
        const auto item = static_cast<std::size_t>(item_);
        while (n > 0) {
            const std::size_t run = std::min(n, static_cast<std::size_t>(inner_left()));
            if (strides_.back() == 1) std::memcpy(out, here(), run * item);
            else detail::copy_strided_any(here(), inner_step_bytes(), run, item, out);
            out += run * item;
            n -= run;
            advance(static_cast<std::int64_t>(run));
        }
    }

private:
    const std::uint8_t* data_;
    std::int64_t item_;
    std::vector<std::int64_t> shape_, strides_, idx_;
    std::int64_t offset_ = 0, pos_ = 0;
};

// Reverses the bytes of each `unit`-byte value in place (unit 1: nothing to do).
inline void byteswap(std::uint8_t* data, std::size_t nbytes, std::size_t unit) {
    if (unit <= 1) return;
    for (std::size_t i = 0; i + unit <= nbytes; i += unit) std::reverse(data + i, data + i + unit);
}

}  // namespace inspector
