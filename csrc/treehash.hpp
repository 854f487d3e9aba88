// The "ckh1" tensor content hash (docs/hash-spec.md): 1 MiB chunks of the tensor's logical
// little-endian bytes in C order, each hashed with XXH3-128; the leaf digests are hashed again
// behind a header carrying the dtype name, the shape and the byte count.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "parallel.hpp"
#include "strided.hpp"

namespace inspector::treehash {

constexpr std::size_t kChunk = std::size_t{1} << 20;
constexpr std::string_view kVersion = "ckh1";

using Digest = std::array<std::uint8_t, 16>;

// One tensor: a strided view (in elements) of a byte buffer that stays alive while it is hashed.
struct Job : StridedView {
    std::string dtype;     // canonical name, hashed as given
    bool byteswap = false;  // the buffer holds big-endian elements
    bool release = false;   // the buffer is a read-only file map: drop its pages once hashed
};

// Checks everything a Job claims before any byte is read: dtype name, itemsize, and the view's
// bounds (check_bounds). Returns the logical byte count. Throws CoreError with job = `index`.
std::uint64_t validate(const Job& job, std::size_t index);

// Bytes per swapped value: the itemsize, or half of it for complex types (two floats).
std::size_t swap_unit(const Job& job);

Digest leaf(const void* data, std::size_t len) noexcept;

// The final digest from the header fields and the leaf digests (in chunk order).
Digest combine(std::string_view dtype, const std::vector<std::int64_t>& shape, std::uint64_t nbytes,
               const Digest* leaves, std::size_t count);

// Incremental form for bytes that arrive in pieces (a writer copying a tensor, a stream):
// feed exactly the tensor's logical bytes, in order, then finish().
class Hasher {
public:
    Hasher(std::string dtype, std::vector<std::int64_t> shape, std::size_t itemsize);
    void update(const void* data, std::size_t len);  // std::length_error past the tensor's end
    Digest finish();                                 // std::length_error when bytes are missing
    std::uint64_t expected_bytes() const noexcept { return nbytes_; }

private:
    void push_leaf(const std::uint8_t* data, std::size_t len);

    std::string dtype_;
    std::vector<std::int64_t> shape_;
    std::uint64_t nbytes_ = 0;
    std::uint64_t fed_ = 0;
    std::vector<std::uint8_t> pending_;  // a partial chunk
    std::vector<Digest> leaves_;
};

// Hashes many tensors on worker threads (parallel across tensors and across the chunks of each):
// validates every job, then hashes, one digest per job. `watch` (parallel.hpp) sees bytes hashed
// so far and may cancel by throwing.
std::vector<Digest> hash_all(std::vector<Job> jobs, unsigned threads, const Watch& watch = {});

}  // namespace inspector::treehash
