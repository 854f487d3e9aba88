// CRC-32 (zip): slicing-by-8 tables, plus carry-less multiply folding on x86-64 (Gopal et al.,
// "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ", Intel 2009; the fold constants
// are those of zlib/Chromium's crc32_simd.c and the Linux kernel for this polynomial).
#include "crc32.hpp"

#include <cstring>

#include "simd.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define INSPECTOR_CRC_PCLMUL 1
#include <immintrin.h>
#endif

namespace inspector::num {
namespace {

constexpr std::uint32_t kPoly = 0xEDB88320u;

struct Tables {
    std::uint32_t t[8][256];
    Tables() {
        for (std::uint32_t n = 0; n < 256; ++n) {
            std::uint32_t c = n;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
            t[0][n] = c;
        }
        for (std::uint32_t n = 0; n < 256; ++n)
            for (int k = 1; k < 8; ++k) t[k][n] = (t[k - 1][n] >> 8) ^ t[0][t[k - 1][n] & 0xFF];
    }
};

const Tables& tables() {
    static const Tables tab;
    return tab;
}

// `state` is the inverted running CRC (zlib's internal form).
std::uint32_t update_portable(std::uint32_t state, const std::uint8_t* p, std::size_t len) {
    const auto& t = tables().t;
    for (; len >= 8; p += 8, len -= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);  // little-endian hosts only (every platform this project targets)
        w ^= state;
        state = t[7][w & 0xFF] ^ t[6][(w >> 8) & 0xFF] ^ t[5][(w >> 16) & 0xFF] ^ t[4][(w >> 24) & 0xFF] ^
                t[3][(w >> 32) & 0xFF] ^ t[2][(w >> 40) & 0xFF] ^ t[1][(w >> 48) & 0xFF] ^ t[0][w >> 56];
    }
    for (; len > 0; ++p, --len) state = t[0][(state ^ *p) & 0xFF] ^ (state >> 8);
    return state;
}

#ifdef INSPECTOR_CRC_PCLMUL
#define INSPECTOR_PCLMUL_TARGET __attribute__((target("pclmul,sse4.1")))

INSPECTOR_PCLMUL_TARGET inline __m128i load16(const std::uint8_t* p) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
// x * k folded onto the next 16 bytes.
INSPECTOR_PCLMUL_TARGET inline __m128i fold(__m128i x, __m128i k, __m128i next) {
    const __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
    const __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(hi, lo), next);
}

// Folds len bytes (len >= 64, a multiple of 16) into the inverted running CRC `state`.
INSPECTOR_PCLMUL_TARGET std::uint32_t update_pclmul(std::uint32_t state,
                                                                   const std::uint8_t* buf,
                                                                   std::size_t len) {
    alignas(16) static const std::uint64_t k1k2[2] = {0x0154442bd4, 0x01c6e41596};
    alignas(16) static const std::uint64_t k3k4[2] = {0x01751997d0, 0x00ccaa009e};
    alignas(16) static const std::uint64_t k5k0[2] = {0x0163cd6124, 0x0000000000};
    alignas(16) static const std::uint64_t poly[2] = {0x01db710641, 0x01f7011641};

    __m128i x1 = load16(buf), x2 = load16(buf + 16), x3 = load16(buf + 32), x4 = load16(buf + 48);
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128(static_cast<int>(state)));
    __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(k1k2));
    buf += 64;
    len -= 64;
    for (; len >= 64; buf += 64, len -= 64) {
        x1 = fold(x1, k, load16(buf));
        x2 = fold(x2, k, load16(buf + 16));
        x3 = fold(x3, k, load16(buf + 32));
        x4 = fold(x4, k, load16(buf + 48));
    }
    k = _mm_load_si128(reinterpret_cast<const __m128i*>(k3k4));
    x1 = fold(x1, k, x2);
    x1 = fold(x1, k, x3);
    x1 = fold(x1, k, x4);
    for (; len >= 16; buf += 16, len -= 16) x1 = fold(x1, k, load16(buf));

    // 128 -> 64 bits, then Barrett reduction to 32.
    __m128i x2b = _mm_clmulepi64_si128(x1, k, 0x10);
    const __m128i mask32 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2b);
    k = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(k5k0));
    x2b = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, mask32);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, k, 0x00), x2b);
    k = _mm_load_si128(reinterpret_cast<const __m128i*>(poly));
    x2b = _mm_and_si128(x1, mask32);
    x2b = _mm_clmulepi64_si128(x2b, k, 0x10);
    x2b = _mm_and_si128(x2b, mask32);
    x2b = _mm_clmulepi64_si128(x2b, k, 0x00);
    x1 = _mm_xor_si128(x1, x2b);
    return static_cast<std::uint32_t>(_mm_extract_epi32(x1, 1));
}

#endif

// Multiplies two polynomials modulo the CRC polynomial (bit-reflected), as zlib's multmodp.
std::uint32_t multmodp(std::uint32_t a, std::uint32_t b) {
    std::uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;
    }
    return p;
}

}  // namespace

bool crc32_has_pclmul() noexcept {
#ifdef INSPECTOR_CRC_PCLMUL
    const cpu::Features& f = cpu::usable();  // INSPECTOR_DISABLE_SIMD: the portable path
    return f.pclmul && f.sse41;
#else
    return false;
#endif
}

std::uint32_t crc32_portable(const void* data, std::size_t len, std::uint32_t init) noexcept {
    return ~update_portable(~init, static_cast<const std::uint8_t*>(data), len);
}

std::uint32_t crc32(const void* data, std::size_t len, std::uint32_t init) noexcept {
    auto p = static_cast<const std::uint8_t*>(data);
    std::uint32_t state = ~init;
#ifdef INSPECTOR_CRC_PCLMUL
    if (len >= 64 && crc32_has_pclmul()) {
        const std::size_t bulk = len & ~static_cast<std::size_t>(15);
        state = update_pclmul(state, p, bulk);
        p += bulk;
        len -= bulk;
    }
#endif
    return ~update_portable(state, p, len);
}

std::uint32_t crc32_combine(std::uint32_t crc1, std::uint32_t crc2, std::uint64_t len2) noexcept {
    // x^(8*len2) mod P by squaring: x2n[k] = x^(2^k).
    std::uint32_t x2n = 1u << 30;  // x^1
    std::uint32_t p = 1u << 31;    // x^0
    for (unsigned k = 0; len2 != 0 || k < 3; ++k) {
        if (k >= 3) {
            if (len2 & 1) p = multmodp(x2n, p);
            len2 >>= 1;
        }
        x2n = multmodp(x2n, x2n);
    }
    return multmodp(p, crc1) ^ crc2;
}

}  // namespace inspector::num
