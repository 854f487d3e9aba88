// XXH3-64/128 with seed 0 and the default secret. Section names follow doc/xxhash_spec.md.
#include "xxh3.hpp"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "simd.hpp"
#include "xxh3_constants.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define INSPECTOR_XXH3_SSE2 1
#endif
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define INSPECTOR_XXH3_AVX2 1
#endif

namespace inspector::xxh3 {
namespace {

using u8 = std::uint8_t;
using u32 = std::uint32_t;
using u64 = std::uint64_t;

// Measured on a 1 GiB buffer: 384 (xxHash's choice) gives 7.4 GB/s, 4096 gives 10 GB/s (AVX2), as
// one thread is bound by memory latency, not compute. Prefetching past the end never faults.
constexpr std::size_t kPrefetchDistance = 4096;

alignas(64) constexpr u8 kSecret[kSecretSize] = {INSPECTOR_XXH3_SECRET};

// ---- Little helpers ----------------------------------------------------------------------------

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

inline u32 bswap32(u32 x) { return __builtin_bswap32(x); }
inline u64 bswap64(u64 x) { return __builtin_bswap64(x); }

inline u32 read32(const u8* p) {
    u32 v;
    std::memcpy(&v, p, sizeof v);
    return kLittleEndian ? v : bswap32(v);
}

inline u64 read64(const u8* p) {
    u64 v;
    std::memcpy(&v, p, sizeof v);
    return kLittleEndian ? v : bswap64(v);
}

inline u64 rotl64(u64 x, int r) { return (x << r) | (x >> (64 - r)); }
inline u32 rotl32(u32 x, int r) { return (x << r) | (x >> (32 - r)); }

struct U128 {
    u64 low;
    u64 high;
};

inline U128 mul64to128(u64 a, u64 b) {
    __extension__ using u128 = unsigned __int128;
    const u128 p = static_cast<u128>(a) * b;
    return {static_cast<u64>(p), static_cast<u64>(p >> 64)};
}

inline u64 mul128_fold64(u64 a, u64 b) {
    const U128 p = mul64to128(a, b);
    return p.low ^ p.high;
}

u64 avalanche(u64 x) {
    x ^= x >> 37;
    x *= kPrimeMx1;
    return x ^ (x >> 32);
}

u64 avalanche_xxh64(u64 x) {
    x ^= x >> 33;
    x *= kPrime64_2;
    x ^= x >> 29;
    x *= kPrime64_3;
    return x ^ (x >> 32);
}

// ---- Small inputs (0-16 bytes) ---------------------------------------------------------------

u32 combine_1to3(const u8* in, std::size_t len) {
    return static_cast<u32>(in[len - 1]) | (static_cast<u32>(len) << 8) |
           (static_cast<u32>(in[0]) << 16) | (static_cast<u32>(in[len >> 1]) << 24);
}

Hash128 h128_0to16(const u8* in, std::size_t len) {
    if (len == 0) {
        return {avalanche_xxh64(read64(kSecret + 64) ^ read64(kSecret + 72)),
                avalanche_xxh64(read64(kSecret + 80) ^ read64(kSecret + 88))};
    }
    if (len <= 3) {
        const u32 combined = combine_1to3(in, len);
        const u64 low = static_cast<u64>(read32(kSecret) ^ read32(kSecret + 4)) ^ combined;
        const u64 high = static_cast<u64>(read32(kSecret + 8) ^ read32(kSecret + 12)) ^
                         rotl32(bswap32(combined), 13);
        return {avalanche_xxh64(low), avalanche_xxh64(high)};
    }
    if (len <= 8) {
        const u64 combined = read32(in) | (static_cast<u64>(read32(in + len - 4)) << 32);
        const u64 value = (read64(kSecret + 16) ^ read64(kSecret + 24)) ^ combined;
        const U128 m = mul64to128(value, kPrime64_1 + (static_cast<u64>(len) << 2));
        u64 high = m.high + (m.low << 1);
        u64 low = m.low ^ (high >> 3);
        low ^= low >> 35;
        low *= kPrimeMx2;
        low ^= low >> 28;
        high = avalanche(high);
        return {low, high};
    }
    const u64 first = read64(in);
    const u64 last = read64(in + len - 8);
    const u64 val1 = (read64(kSecret + 32) ^ read64(kSecret + 40)) ^ first ^ last;
    const u64 val2 = (read64(kSecret + 48) ^ read64(kSecret + 56)) ^ last;
    const U128 m = mul64to128(val1, kPrime64_1);
    u64 low = m.low + (static_cast<u64>(len - 1) << 54);
    u64 high = m.high + (val2 & 0xFFFFFFFF00000000ULL) +
               static_cast<u64>(static_cast<u32>(val2)) * kPrime32_2;
    low ^= bswap64(high);
    const U128 m2 = mul64to128(low, kPrime64_2);
    high = m2.high + high * kPrime64_2;
    return {avalanche(m2.low), avalanche(high)};
}

u64 h64_0to16(const u8* in, std::size_t len) {
    if (len == 0) return avalanche_xxh64(read64(kSecret + 56) ^ read64(kSecret + 64));
    if (len <= 3) return h128_0to16(in, len).low;
    if (len <= 8) {
        const u64 combined = read32(in + len - 4) | (static_cast<u64>(read32(in)) << 32);
        u64 value = (read64(kSecret + 8) ^ read64(kSecret + 16)) ^ combined;
        value ^= rotl64(value, 49) ^ rotl64(value, 24);
        value *= kPrimeMx2;
        value ^= (value >> 35) + len;
        value *= kPrimeMx2;
        return value ^ (value >> 28);
    }
    const u64 low = (read64(kSecret + 24) ^ read64(kSecret + 32)) ^ read64(in);
    const u64 high = (read64(kSecret + 40) ^ read64(kSecret + 48)) ^ read64(in + len - 8);
    return avalanche(len + bswap64(low) + high + mul128_fold64(low, high));
}

// ---- Medium inputs (17-240 bytes) ------------------------------------------------------------

constexpr std::size_t kMidSizeMax = 240;
constexpr std::size_t kMidLastOffset = 17;
constexpr std::size_t kSecretSizeMin = 136;

inline u64 mix_step(const u8* data, const u8* secret) {
    return mul128_fold64(read64(data) ^ read64(secret), read64(data + 8) ^ read64(secret + 8));
}

struct Acc2 {
    u64 a0;
    u64 a1;

    void mix_two(const u8* d1, const u8* d2, const u8* secret) {
        a0 += mix_step(d1, secret);
        a1 += mix_step(d2, secret + 16);
        a0 ^= read64(d2) + read64(d2 + 8);
        a1 ^= read64(d1) + read64(d1 + 8);
    }

    Hash128 finish(std::size_t len) const {
        const u64 low = a0 + a1;
        const u64 high = a0 * kPrime64_1 + a1 * kPrime64_4 + static_cast<u64>(len) * kPrime64_2;
        return {avalanche(low), 0 - avalanche(high)};
    }
};

Hash128 h128_17to240(const u8* in, std::size_t len) {
    Acc2 acc{static_cast<u64>(len) * kPrime64_1, 0};
    if (len <= 128) {
        const std::size_t rounds = ((len - 1) >> 5) + 1;
        for (std::size_t i = rounds; i-- > 0;) {
            acc.mix_two(in + 16 * i, in + len - 16 * i - 16, kSecret + 32 * i);
        }
        return acc.finish(len);
    }
    const std::size_t chunks = len >> 5;
    for (std::size_t i = 0; i < 4; ++i) acc.mix_two(in + 32 * i, in + 32 * i + 16, kSecret + 32 * i);
    acc.a0 = avalanche(acc.a0);
    acc.a1 = avalanche(acc.a1);
    for (std::size_t i = 4; i < chunks; ++i) {
        acc.mix_two(in + 32 * i, in + 32 * i + 16, kSecret + 32 * (i - 4) + 3);
    }
    acc.mix_two(in + len - 16, in + len - 32, kSecret + kSecretSizeMin - kMidLastOffset - 16);
    return acc.finish(len);
}

u64 h64_17to240(const u8* in, std::size_t len) {
    u64 acc = static_cast<u64>(len) * kPrime64_1;
    if (len <= 128) {
        const std::size_t rounds = ((len - 1) >> 5) + 1;
        for (std::size_t i = 0; i < rounds; ++i) {
            acc += mix_step(in + 16 * i, kSecret + 32 * i);
            acc += mix_step(in + len - 16 * i - 16, kSecret + 32 * i + 16);
        }
        return avalanche(acc);
    }
    const std::size_t rounds = len >> 4;
    for (std::size_t i = 0; i < 8; ++i) acc += mix_step(in + 16 * i, kSecret + 16 * i);
    acc = avalanche(acc);
    for (std::size_t i = 8; i < rounds; ++i) acc += mix_step(in + 16 * i, kSecret + 16 * (i - 8) + 3);
    acc += mix_step(in + len - 16, kSecret + kSecretSizeMin - kMidLastOffset);
    return avalanche(acc);
}

// ---- Large inputs (> 240 bytes): stripes, blocks, scramble -----------------------------------
// A kernel accumulates `stripes` consecutive 64-byte stripes (secret advancing 8 bytes per
// stripe) and scrambles; the three versions below compute the same thing.

struct LongKernel {
    void (*accumulate)(u64* acc, const u8* in, const u8* secret, std::size_t stripes);
    void (*scramble)(u64* acc, const u8* secret);
};

inline void prefetch(const u8* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p);
#else
    (void)p;
#endif
}

void accumulate_scalar(u64* acc, const u8* in, const u8* secret, std::size_t stripes) {
    for (std::size_t s = 0; s < stripes; ++s) {
        const u8* stripe = in + s * kStripeLen;
        const u8* key = secret + s * kSecretConsumeRate;
        prefetch(stripe + kPrefetchDistance);
        for (std::size_t i = 0; i < 8; ++i) {
            const u64 data = read64(stripe + 8 * i);
            const u64 mixed = data ^ read64(key + 8 * i);
            acc[i ^ 1] += data;
            acc[i] += (mixed & 0xFFFFFFFFULL) * (mixed >> 32);
        }
    }
}

void scramble_scalar(u64* acc, const u8* secret) {
    for (std::size_t i = 0; i < 8; ++i) {
        u64 a = acc[i];
        a ^= a >> 47;
        a ^= read64(secret + 8 * i);
        acc[i] = a * kPrime32_1;
    }
}

#ifdef INSPECTOR_XXH3_SSE2
void accumulate_sse2(u64* acc, const u8* in, const u8* secret, std::size_t stripes) {
    __m128i a[4];
    for (int i = 0; i < 4; ++i) a[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(acc) + i);
    for (std::size_t s = 0; s < stripes; ++s) {
        const u8* stripe = in + s * kStripeLen;
        const u8* key = secret + s * kSecretConsumeRate;
        prefetch(stripe + kPrefetchDistance);
        for (int i = 0; i < 4; ++i) {
            const __m128i data = _mm_loadu_si128(reinterpret_cast<const __m128i*>(stripe) + i);
            const __m128i k = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key) + i);
            const __m128i mixed = _mm_xor_si128(data, k);
            // low 32 bits of each lane times its high 32 bits
            const __m128i product = _mm_mul_epu32(mixed, _mm_shuffle_epi32(mixed, _MM_SHUFFLE(0, 3, 0, 1)));
            // lane i's data goes to lane i ^ 1: swap the two 64-bit halves
            const __m128i swapped = _mm_shuffle_epi32(data, _MM_SHUFFLE(1, 0, 3, 2));
            a[i] = _mm_add_epi64(a[i], _mm_add_epi64(product, swapped));
        }
    }
    for (int i = 0; i < 4; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(acc) + i, a[i]);
}

void scramble_sse2(u64* acc, const u8* secret) {
    const __m128i prime = _mm_set1_epi32(static_cast<int>(kPrime32_1));
    for (int i = 0; i < 4; ++i) {
        __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(acc) + i);
        a = _mm_xor_si128(a, _mm_srli_epi64(a, 47));
        a = _mm_xor_si128(a, _mm_loadu_si128(reinterpret_cast<const __m128i*>(secret) + i));
        const __m128i lo = _mm_mul_epu32(a, prime);
        const __m128i hi = _mm_mul_epu32(_mm_shuffle_epi32(a, _MM_SHUFFLE(0, 3, 0, 1)), prime);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(acc) + i, _mm_add_epi64(lo, _mm_slli_epi64(hi, 32)));
    }
}
#endif

#ifdef INSPECTOR_XXH3_AVX2
__attribute__((target("avx2"))) void accumulate_avx2(u64* acc, const u8* in, const u8* secret,
                                                     std::size_t stripes) {
    __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc));
    __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc) + 1);
    for (std::size_t s = 0; s < stripes; ++s) {
        const u8* stripe = in + s * kStripeLen;
        const u8* key = secret + s * kSecretConsumeRate;
        prefetch(stripe + kPrefetchDistance);
        const __m256i d0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(stripe));
        const __m256i d1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(stripe) + 1);
        const __m256i m0 = _mm256_xor_si256(d0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(key)));
        const __m256i m1 = _mm256_xor_si256(d1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(key) + 1));
        const __m256i p0 = _mm256_mul_epu32(m0, _mm256_shuffle_epi32(m0, _MM_SHUFFLE(0, 3, 0, 1)));
        const __m256i p1 = _mm256_mul_epu32(m1, _mm256_shuffle_epi32(m1, _MM_SHUFFLE(0, 3, 0, 1)));
        a0 = _mm256_add_epi64(a0, _mm256_add_epi64(p0, _mm256_shuffle_epi32(d0, _MM_SHUFFLE(1, 0, 3, 2))));
        a1 = _mm256_add_epi64(a1, _mm256_add_epi64(p1, _mm256_shuffle_epi32(d1, _MM_SHUFFLE(1, 0, 3, 2))));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc), a0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc) + 1, a1);
}

__attribute__((target("avx2"))) void scramble_avx2(u64* acc, const u8* secret) {
    const __m256i prime = _mm256_set1_epi32(static_cast<int>(kPrime32_1));
    for (int i = 0; i < 2; ++i) {
        __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc) + i);
        a = _mm256_xor_si256(a, _mm256_srli_epi64(a, 47));
        a = _mm256_xor_si256(a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(secret) + i));
        const __m256i lo = _mm256_mul_epu32(a, prime);
        const __m256i hi = _mm256_mul_epu32(_mm256_shuffle_epi32(a, _MM_SHUFFLE(0, 3, 0, 1)), prime);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc) + i, _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32)));
    }
}

// GCC 12's AVX-512 intrinsics trip -Wuninitialized on their internal "undefined" operand (GCC bug
// 105593, fixed in 12.3/13); the warning is about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// The 32-bit high halves are brought down with a shift rather than a shuffle: same product.
__attribute__((target("avx512f"))) void accumulate_avx512(u64* acc, const u8* in, const u8* secret,
                                                         std::size_t stripes) {
    const auto swap = static_cast<_MM_PERM_ENUM>(_MM_SHUFFLE(1, 0, 3, 2));
    __m512i a = _mm512_loadu_si512(acc);
    for (std::size_t s = 0; s < stripes; ++s) {
        const u8* stripe = in + s * kStripeLen;
        prefetch(stripe + kPrefetchDistance);
        const __m512i data = _mm512_loadu_si512(stripe);
        const __m512i mixed = _mm512_xor_si512(data, _mm512_loadu_si512(secret + s * kSecretConsumeRate));
        const __m512i product = _mm512_mul_epu32(mixed, _mm512_srli_epi64(mixed, 32));
        a = _mm512_add_epi64(a, _mm512_add_epi64(product, _mm512_shuffle_epi32(data, swap)));
    }
    _mm512_storeu_si512(acc, a);
}

__attribute__((target("avx512f"))) void scramble_avx512(u64* acc, const u8* secret) {
    const __m512i prime = _mm512_set1_epi32(static_cast<int>(kPrime32_1));
    __m512i a = _mm512_loadu_si512(acc);
    a = _mm512_xor_si512(a, _mm512_srli_epi64(a, 47));
    a = _mm512_xor_si512(a, _mm512_loadu_si512(secret));
    const __m512i lo = _mm512_mul_epu32(a, prime);
    const __m512i hi = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), prime);
    _mm512_storeu_si512(acc, _mm512_add_epi64(lo, _mm512_slli_epi64(hi, 32)));
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

LongKernel long_kernel(Kernel kernel) {
    if (kernel == Kernel::Auto) kernel = best_kernel();
    if (!kernel_available(kernel)) kernel = Kernel::Scalar;
    switch (kernel) {
#ifdef INSPECTOR_XXH3_AVX2
        case Kernel::Avx512:
            return {accumulate_avx512, scramble_avx512};
        case Kernel::Avx2:
            return {accumulate_avx2, scramble_avx2};
#endif
#ifdef INSPECTOR_XXH3_SSE2
        case Kernel::Sse2:
            return {accumulate_sse2, scramble_sse2};
#endif
        default:
            return {accumulate_scalar, scramble_scalar};
    }
}

struct Acc8 {
    alignas(32) u64 lane[8] = {kPrime32_3, kPrime64_1, kPrime64_2, kPrime64_3,
                               kPrime64_4, kPrime32_2, kPrime64_5, kPrime32_1};

    u64 merge(const u8* secret, u64 start) const {
        u64 result = start;
        for (std::size_t i = 0; i < 4; ++i) {
            result += mul128_fold64(lane[2 * i] ^ read64(secret + 16 * i),
                                    lane[2 * i + 1] ^ read64(secret + 16 * i + 8));
        }
        return avalanche(result);
    }
};

Acc8 hash_long(const u8* in, std::size_t len, Kernel kernel) {
    const LongKernel k = long_kernel(kernel);
    Acc8 acc;
    const std::size_t blocks = (len - 1) / kBlockLen;
    for (std::size_t b = 0; b < blocks; ++b) {
        k.accumulate(acc.lane, in + b * kBlockLen, kSecret, kStripesPerBlock);
        k.scramble(acc.lane, kSecret + kSecretSize - kStripeLen);
    }
    // The last block (1..1024 bytes) is accumulated without scrambling; its last stripe is
    // always the input's final 64 bytes, with a secret offset of its own.
    const std::size_t stripes = ((len - 1) - blocks * kBlockLen) / kStripeLen;
    k.accumulate(acc.lane, in + blocks * kBlockLen, kSecret, stripes);
    k.accumulate(acc.lane, in + len - kStripeLen, kSecret + kSecretSize - kStripeLen - 7, 1);
    return acc;
}

}  // namespace

bool kernel_available(Kernel kernel) noexcept {
    switch (kernel) {
        case Kernel::Auto:
        case Kernel::Scalar:
            return true;
        case Kernel::Sse2:
#ifdef INSPECTOR_XXH3_SSE2
            return true;
#else
            return false;
#endif
        case Kernel::Avx2:
#ifdef INSPECTOR_XXH3_AVX2
            return cpu::detected().avx2;
#else
            return false;
#endif
        case Kernel::Avx512:
#ifdef INSPECTOR_XXH3_AVX2
            return cpu::detected().avx512f;
#else
            return false;
#endif
    }
    return false;
}

namespace {

// INSPECTOR_XXH3_KERNEL=scalar|sse2|avx2|avx512 forces a kernel (when the CPU has it), so that a test run
// can exercise the portable path on any machine; INSPECTOR_DISABLE_SIMD (simd.hpp: the rule every
// fast path of the core follows) means scalar.
Kernel pick_kernel() {
    if (!cpu::usable().sse2) return Kernel::Scalar;
    const char* forced = std::getenv("INSPECTOR_XXH3_KERNEL");
    for (Kernel k : {Kernel::Scalar, Kernel::Sse2, Kernel::Avx2, Kernel::Avx512}) {
        if (forced != nullptr && std::strcmp(forced, kernel_name(k)) == 0 && kernel_available(k)) return k;
    }
    if (kernel_available(Kernel::Avx512)) return Kernel::Avx512;
    if (kernel_available(Kernel::Avx2)) return Kernel::Avx2;
    return kernel_available(Kernel::Sse2) ? Kernel::Sse2 : Kernel::Scalar;
}

}  // namespace

Kernel best_kernel() noexcept {
    static const Kernel best = pick_kernel();
    return best;
}

const char* kernel_name(Kernel kernel) noexcept {
    switch (kernel) {
        case Kernel::Auto:
            return kernel_name(best_kernel());
        case Kernel::Scalar:
            return "scalar";
        case Kernel::Sse2:
            return "sse2";
        case Kernel::Avx2:
            return "avx2";
        case Kernel::Avx512:
            return "avx512";
    }
    return "unknown";
}

Hash128 hash128(const void* data, std::size_t len, Kernel kernel) noexcept {
    const u8* in = static_cast<const u8*>(data);
    if (len <= 16) return h128_0to16(in, len);
    if (len <= kMidSizeMax) return h128_17to240(in, len);
    const Acc8 acc = hash_long(in, len, kernel);
    return {acc.merge(kSecret + 11, static_cast<u64>(len) * kPrime64_1),
            acc.merge(kSecret + kSecretSize - kStripeLen - 11, ~(static_cast<u64>(len) * kPrime64_2))};
}

std::uint64_t hash64(const void* data, std::size_t len, Kernel kernel) noexcept {
    const u8* in = static_cast<const u8*>(data);
    if (len <= 16) return h64_0to16(in, len);
    if (len <= kMidSizeMax) return h64_17to240(in, len);
    return hash_long(in, len, kernel).merge(kSecret + 11, static_cast<u64>(len) * kPrime64_1);
}

void canonical(Hash128 h, std::uint8_t out[16]) noexcept {
    for (int i = 0; i < 8; ++i) {
        out[i] = static_cast<u8>(h.high >> (56 - 8 * i));
        out[8 + i] = static_cast<u8>(h.low >> (56 - 8 * i));
    }
}

}  // namespace inspector::xxh3
