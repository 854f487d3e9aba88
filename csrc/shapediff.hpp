// Joining two tensor lists by name and comparing their signatures (shape, dtype), sized for
// checkpoints with millions of tensors (MoE, sharded): a hash join, linear in the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace inspector::num {

// One side's tensors, flattened: name i is names[name_end[i-1], name_end[i]), dims likewise.
// dtype ids must be comparable between the two sides (the caller interns the dtype strings).
struct Signatures {
    std::string names;
    std::vector<std::size_t> name_end;
    std::vector<std::int64_t> dims;
    std::vector<std::size_t> dims_end;
    std::vector<std::uint32_t> dtype;

    std::size_t size() const { return name_end.size(); }
    std::string_view name(std::size_t i) const {
        const std::size_t begin = i ? name_end[i - 1] : 0;
        return std::string_view(names).substr(begin, name_end[i] - begin);
    }
    bool same_shape(std::size_t i, const Signatures& o, std::size_t j) const;
    void add(std::string_view name, const std::int64_t* shape, std::size_t rank, std::uint32_t dtype_id);
};

// Indices into a (…_a) and b (…_b). Pairs (present on both sides) are parallel lists in a's
// order: shape_* (shapes differ; dtypes may too), dtype_* (same shape, dtypes differ), equal_*.
// only_a is in a's order, only_b in b's order. A name twice on one side is a std::invalid_argument.
struct ShapeDiff {
    std::vector<std::int64_t> only_a, only_b, shape_a, shape_b, dtype_a, dtype_b, equal_a, equal_b;
};

ShapeDiff shape_diff(const Signatures& a, const Signatures& b);

}  // namespace inspector::num
