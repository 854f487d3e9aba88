// XXH3 (64- and 128-bit, seed 0, default secret), written from the xxHash specification
// (doc/xxhash_spec.md in the xxHash repository). Results are bit-exact with the reference library
// (tests/cpp/test_xxh3.cpp and tests/test_xxh3.py check every length path against python-xxhash).
#pragma once

#include <cstddef>
#include <cstdint>

namespace inspector::xxh3 {

struct Hash128 {
    std::uint64_t low;
    std::uint64_t high;
};

// Implementations of the long-input (> 240 bytes) stripe loop. All give identical results; Auto
// picks the fastest one the running CPU supports. Scalar is always available (and always tested).
enum class Kernel { Auto, Scalar, Sse2, Avx2, Avx512 };

bool kernel_available(Kernel kernel) noexcept;
Kernel best_kernel() noexcept;
const char* kernel_name(Kernel kernel) noexcept;

// An unavailable kernel falls back to Scalar.
Hash128 hash128(const void* data, std::size_t len, Kernel kernel = Kernel::Auto) noexcept;
std::uint64_t hash64(const void* data, std::size_t len, Kernel kernel = Kernel::Auto) noexcept;

// Canonical 16-byte form: high half then low half, each big-endian (= xxhash's digest()).
void canonical(Hash128 h, std::uint8_t out[16]) noexcept;

}  // namespace inspector::xxh3
