// A fast non-cryptographic hash of tensor names for the hash tables of the shape join and the
// safetensors duplicate check (one definition for both).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace inspector {

inline std::uint64_t mix64(std::uint64_t h) {  // murmur3's finaliser
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

inline std::uint64_t hash_name(std::string_view s) {  // a word at a time
    std::uint64_t h = s.size() * 0x9E3779B97F4A7C15ULL;
    std::size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, s.data() + i, 8);
        h = (h ^ mix64(w)) * 0x9E3779B97F4A7C15ULL;
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, s.data() + i, s.size() - i);
    return mix64(h ^ tail);
}

}  // namespace inspector
