// Copy a run of a strided view's elements, in logical (C) order, into a flat buffer; optional
// per-element byte swap. Callers validate the view against its buffer first (treehash::validate):
// these functions trust the view and do no bounds checks of their own.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace inspector {

struct StridedView {
    const std::uint8_t* base = nullptr;  // start of the storage
    std::size_t itemsize = 1;
    std::vector<std::int64_t> shape;    // non-negative
    std::vector<std::int64_t> strides;  // in elements, may be zero or negative
    std::int64_t offset = 0;            // in elements
};

namespace detail {

template <std::size_t N>
void copy_strided(const std::uint8_t* src, std::int64_t step_bytes, std::size_t n, std::uint8_t* out) {
    for (std::size_t i = 0; i < n; ++i, src += step_bytes, out += N) std::memcpy(out, src, N);
}

inline void copy_strided_any(const std::uint8_t* src, std::int64_t step_bytes, std::size_t n,
                             std::size_t itemsize, std::uint8_t* out) {
    switch (itemsize) {
        case 1: return copy_strided<1>(src, step_bytes, n, out);
        case 2: return copy_strided<2>(src, step_bytes, n, out);
        case 4: return copy_strided<4>(src, step_bytes, n, out);
        case 8: return copy_strided<8>(src, step_bytes, n, out);
        case 16: return copy_strided<16>(src, step_bytes, n, out);
        default:
            for (std::size_t i = 0; i < n; ++i, src += step_bytes, out += itemsize) {
                std::memcpy(out, src, itemsize);
            }
    }
}

}  // namespace detail

// Writes elements [first, first + count) of the view's C-order sequence to `out`
// (count * itemsize bytes). Rows whose innermost stride is 1 are copied with memcpy.
inline void gather(const StridedView& v, std::size_t first, std::size_t count, std::uint8_t* out) {
    const auto elem_ptr = [&v](std::int64_t element) {
        return v.base + static_cast<std::ptrdiff_t>(element) * static_cast<std::ptrdiff_t>(v.itemsize);
    };
    const std::size_t ndim = v.shape.size();
    if (count == 0) return;
    if (ndim == 0) {  // a scalar: one element
        std::memcpy(out, elem_ptr(v.offset), v.itemsize);
        return;
    }
    // Unravel `first` into an index, and find the element it addresses.
    std::vector<std::int64_t> index(ndim, 0);
    std::size_t rest = first;
    std::int64_t pos = v.offset;
    for (std::size_t d = ndim; d-- > 0;) {
        const auto n = static_cast<std::size_t>(v.shape[d]);
        index[d] = static_cast<std::int64_t>(rest % n);
        rest /= n;
        pos += index[d] * v.strides[d];
    }
    const std::size_t inner = ndim - 1;
    const auto inner_n = static_cast<std::size_t>(v.shape[inner]);
    const std::int64_t inner_stride = v.strides[inner];
    while (count > 0) {
        const std::size_t run = std::min(count, inner_n - static_cast<std::size_t>(index[inner]));
        if (inner_stride == 1) {
            std::memcpy(out, elem_ptr(pos), run * v.itemsize);
        } else {
            detail::copy_strided_any(elem_ptr(pos), inner_stride * static_cast<std::int64_t>(v.itemsize),
                                     run, v.itemsize, out);
        }
        out += run * v.itemsize;
        count -= run;
        if (count == 0) break;
        // Move to the start of the next row, carrying into the outer dimensions.
        pos -= index[inner] * inner_stride;
        index[inner] = 0;
        for (std::size_t d = inner; d-- > 0;) {
            ++index[d];
            pos += v.strides[d];
            if (index[d] < v.shape[d]) break;
            pos -= index[d] * v.strides[d];
            index[d] = 0;
        }
    }
}

// Reverses the bytes of each `unit`-byte value in place (unit 1: nothing to do).
inline void byteswap(std::uint8_t* data, std::size_t nbytes, std::size_t unit) {
    if (unit <= 1) return;
    for (std::size_t i = 0; i + unit <= nbytes; i += unit) std::reverse(data + i, data + i + unit);
}

}  // namespace inspector
