// A strided view (strided.hpp) whose elements have a numeric dtype (convert.hpp): the input of
// compare, stats and copy. Its itemsize always comes from the dtype (make_view sets both).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convert.hpp"
#include "strided.hpp"

namespace inspector::num {

struct View : StridedView {
    DType dtype = DType::F32;
    bool byteswap = false;  // the buffer holds big-endian elements
};

inline View make_view(const std::uint8_t* data, std::size_t size, DType dtype, std::vector<std::int64_t> shape,
                      std::vector<std::int64_t> strides, std::int64_t offset = 0, bool byteswap = false) {
    View v;
    v.data = data;
    v.size = size;
    v.itemsize = info(dtype).itemsize;
    v.shape = std::move(shape);
    v.strides = std::move(strides);
    v.offset = offset;
    v.dtype = dtype;
    v.byteswap = byteswap;
    return v;
}

// check_bounds, after checking that the itemsize is the dtype's.
inline Extent check_view(const View& v, const std::string& who) {
    if (v.itemsize != info(v.dtype).itemsize)
        bad_view(who, "itemsize " + std::to_string(v.itemsize) + " is not " + info(v.dtype).name + "'s");
    return check_bounds(v, who);
}

inline std::int64_t numel(const View& v) {
    return static_cast<std::int64_t>(logical_bytes(v.shape, v.itemsize, "tensor") / v.itemsize);
}

}  // namespace inspector::num
