// Copy a strided source view into a contiguous destination (a bytearray, numpy array or a writable
// mmap of the output file), casting dtype and slicing/padding on the way, and return the zip
// CRC-32 of the bytes written. Work is split into fixed chunks of the destination; each thread
// holds one small decode buffer, so memory stays bounded whatever the tensor size. Source and
// destination must not overlap (checked: the bytes the source view spans against the bytes
// written).
#pragma once

#include <cstdint>
#include <vector>

#include "parallel.hpp"
#include "typed_view.hpp"

namespace inspector::num {

struct CopyTarget {
    std::uint8_t* data = nullptr;
    std::size_t size = 0;    // bytes available at data
    std::size_t offset = 0;  // where the tensor starts, in bytes
    DType dtype = DType::F32;
};

// dst (shape dst_shape, C order) gets src[src_start : src_start+count] at dst_start along every
// axis; every other destination element is set to `fill` (in the destination dtype). Ranks of all
// four vectors equal the source's rank. Transposes are expressed by permuting the source's shape
// and strides before the call.
struct Region {
    std::vector<std::int64_t> dst_shape, src_start, dst_start, count;
    double fill = 0.0;
};

// Casting rules: any dtype to a float dtype (as torch's .to(): a double goes through float32 to
// narrow floats, integers through float32 to narrow floats), integers and bool to integers
// (modular, as torch), anything to bool (x != 0). Floating to integer is refused (lossy).
void check_cast(DType from, DType to);

// threads <= 0: all cores. `watch` (parallel.hpp) sees destination bytes written so far and may
// cancel by throwing (the destination is then partly written).
std::uint32_t copy_region(const View& src, const CopyTarget& dst, const Region& region, int threads = 0,
                          const Watch& watch = {});

// The whole source, dst_shape = src.shape.
std::uint32_t copy_cast(const View& src, const CopyTarget& dst, int threads = 0, const Watch& watch = {});

}  // namespace inspector::num
