// safetensors headers parsed into columns and validated like the reference implementation
// (safetensors `tensor.rs`) and like inspector/formats/safetensors.py always did: size caps,
// strict UTF-8 JSON, duplicate names, known dtypes, non-negative shapes, an overflow-checked
// numel * itemsize equal to end - begin, offsets tiling the data section from 0 with no gap, no
// overlap and no trailing bytes. The JSON rules follow Python's `json` module (escapes, surrogate
// pairs, NaN/Infinity literals, the 4300-digit integer limit) so both accept the same headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core_error.hpp"

namespace inspector::st {

constexpr std::uint64_t kMaxHeaderSize = 100'000'000;  // the reference implementation's cap
constexpr int kMaxDepth = 128;                          // levels; serde_json refuses 128 already
constexpr std::size_t kMaxIntDigits = 4300;             // Python's int <-> str digit limit

// One kind per error class of inspector/errors.py.
enum class Fault { header, offset, dtype, shape, duplicate_key, truncated, io };
const char* fault_name(Fault f);

// A CoreError whose kind() is fault_name(kind) and key() the tensor (or __metadata__) concerned.
struct HeaderFault : CoreError {
    HeaderFault(Fault k, std::string what, std::string name = {}, bool has_name = false)
        : CoreError(std::move(what), fault_name(k), {}, has_name ? std::optional<std::string>(name) : std::nullopt),
          kind(k), key(std::move(name)), has_key(has_name) {}
    Fault kind;
    std::string key;  // the tensor (or __metadata__) concerned, when has_key
    bool has_key;
};

struct DtypeSpec {
    std::string name;  // as written in headers: "F32", "BF16", ...
    std::uint64_t itemsize;
};

// The tensors of one file, in file order (sorted by data offsets, ties in header order).
// Strings are UTF-8, except that a lone surrogate escape (`"\ud800"`, which Python's json
// accepts) is kept as its 3-byte encoding: decode with Python's "surrogatepass" handler.
struct Header {
    std::uint64_t data_start = 0;  // 8 + header length: where offsets count from
    std::string names;
    std::vector<std::size_t> name_end;
    std::vector<std::uint64_t> dims;
    std::vector<std::size_t> dims_end;
    std::vector<std::uint32_t> dtype;  // index into the DtypeSpec table
    std::vector<std::uint64_t> begin, end;
    std::vector<std::pair<std::string, std::string>> metadata;

    std::size_t size() const { return name_end.size(); }
    std::string_view name(std::size_t i) const {
        const std::size_t b = i ? name_end[i - 1] : 0;
        return std::string_view(names).substr(b, name_end[i] - b);
    }
    std::pair<const std::uint64_t*, std::size_t> shape(std::size_t i) const {
        const std::size_t b = i ? dims_end[i - 1] : 0;
        return {dims.data() + b, dims_end[i] - b};
    }
};

// `file` holds the file's first bytes: at least 8 + the declared header length (the data after it
// is not needed); `file_size` is the size of the whole file. Throws HeaderFault.
Header parse_header(std::string_view file, std::uint64_t file_size, const std::vector<DtypeSpec>& dtypes);

}  // namespace inspector::st
