// shape_diff(): an open-addressing table over each side's names (which also catches duplicate
// names), then one probe per tensor of a.
#include "shapediff.hpp"

#include "name_hash.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>


// A hint only: the join's hash tables are far bigger than the cache for million-name checkpoints.
#if defined(__GNUC__)
#define INSPECTOR_PREFETCH(p) __builtin_prefetch(p)
#else
#define INSPECTOR_PREFETCH(p) ((void)(p))
#endif

namespace inspector::num {

void Signatures::add(std::string_view nm, const std::int64_t* shape, std::size_t rank, std::uint32_t dtype_id) {
    names.append(nm.data(), nm.size());
    name_end.push_back(names.size());
    dims.insert(dims.end(), shape, shape + rank);
    dims_end.push_back(dims.size());
    dtype.push_back(dtype_id);
}

bool Signatures::same_shape(std::size_t i, const Signatures& o, std::size_t j) const {
    const std::size_t b1 = i ? dims_end[i - 1] : 0, e1 = dims_end[i];
    const std::size_t b2 = j ? o.dims_end[j - 1] : 0, e2 = o.dims_end[j];
    return e1 - b1 == e2 - b2 && std::equal(dims.begin() + static_cast<std::ptrdiff_t>(b1),
                                            dims.begin() + static_cast<std::ptrdiff_t>(e1),
                                            o.dims.begin() + static_cast<std::ptrdiff_t>(b2));
}

namespace {


class NameTable {
public:
    NameTable(const Signatures& sig, const char* side) : sig_(sig) {
        std::size_t cap = 16;
        while (cap < sig.size() * 2) cap *= 2;
        mask_ = cap - 1;
        slots_.assign(cap, 0);
        hashes_.resize(sig.size());
        for (std::size_t i = 0; i < sig.size(); ++i) hashes_[i] = hash_name(sig.name(i));
        for (std::size_t i = 0; i < sig.size(); ++i) {
            if (i + 16 < sig.size()) INSPECTOR_PREFETCH(&slots_[hashes_[i + 16] & mask_]);
            std::size_t s = hashes_[i] & mask_;
            for (; slots_[s] != 0; s = (s + 1) & mask_) {
                const std::size_t j = slots_[s] - 1;
                if (hashes_[j] == hashes_[i] && sig.name(j) == sig.name(i))
                    throw std::invalid_argument("tensor name '" + std::string(sig.name(i)) + "' appears twice in " +
                                                side);
            }
            slots_[s] = i + 1;
        }
    }

    // Index of `name` in this side, or -1.
    std::int64_t find(std::string_view name, std::uint64_t h) const {
        for (std::size_t s = h & mask_; slots_[s] != 0; s = (s + 1) & mask_) {
            const std::size_t j = slots_[s] - 1;
            if (hashes_[j] == h && sig_.name(j) == name) return static_cast<std::int64_t>(j);
        }
        return -1;
    }

    std::uint64_t hash_of(std::size_t i) const { return hashes_[i]; }
    void prefetch(std::uint64_t h) const { INSPECTOR_PREFETCH(&slots_[h & mask_]); }

private:
    const Signatures& sig_;
    std::size_t mask_ = 0;
    std::vector<std::size_t> slots_;  // index + 1, 0 = empty
    std::vector<std::uint64_t> hashes_;
};

}  // namespace

ShapeDiff shape_diff(const Signatures& a, const Signatures& b) {
    const NameTable ta(a, "a"), tb(b, "b");
    ShapeDiff r;
    std::vector<bool> matched(b.size(), false);
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (i + 16 < a.size()) tb.prefetch(ta.hash_of(i + 16));
        const auto ia = static_cast<std::int64_t>(i);
        const std::int64_t j = tb.find(a.name(i), ta.hash_of(i));
        if (j < 0) {
            r.only_a.push_back(ia);
            continue;
        }
        const auto ju = static_cast<std::size_t>(j);
        matched[ju] = true;
        if (!a.same_shape(i, b, ju)) {
            r.shape_a.push_back(ia);
            r.shape_b.push_back(j);
        } else if (a.dtype[i] != b.dtype[ju]) {
            r.dtype_a.push_back(ia);
            r.dtype_b.push_back(j);
        } else {
            r.equal_a.push_back(ia);
            r.equal_b.push_back(j);
        }
    }
    for (std::size_t j = 0; j < b.size(); ++j)
        if (!matched[j]) r.only_b.push_back(static_cast<std::int64_t>(j));
    return r;
}

}  // namespace inspector::num
