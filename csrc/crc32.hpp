// CRC-32 as used by zip, gzip and zlib.crc32 (reflected polynomial 0xEDB88320).
#pragma once

#include <cstddef>
#include <cstdint>

namespace inspector::num {

// Running CRC: crc32(b, n2, crc32(a, n1, init)) == crc32(a+b, n1+n2, init); init 0 starts fresh.
// Uses PCLMULQDQ folding when the CPU has it, slicing-by-8 otherwise.
std::uint32_t crc32(const void* data, std::size_t len, std::uint32_t init = 0) noexcept;

// The portable slicing-by-8 path, always available; the reference the fast path is tested against.
std::uint32_t crc32_portable(const void* data, std::size_t len, std::uint32_t init = 0) noexcept;

// True when crc32() uses the carry-less multiply path on this CPU.
bool crc32_has_pclmul() noexcept;

// CRC of a+b from crc(a), crc(b) and len(b) (zlib's crc32_combine), O(log len2).
std::uint32_t crc32_combine(std::uint32_t crc1, std::uint32_t crc2, std::uint64_t len2) noexcept;

}  // namespace inspector::num
