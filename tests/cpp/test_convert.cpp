// C++ unit test (no Python): codec round trips over every 16-bit and 8-bit pattern, CRC-32 known
// vectors and fast == portable, copy/compare bounds errors. Torch-exactness is tested from Python
// (tests/test_convert.py); this checks the core's own invariants, also under the sanitizers.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "compare.hpp"
#include "convert.hpp"
#include "copy.hpp"
#include "crc32.hpp"

using namespace inspector::num;

static int failures = 0;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                     \
        }                                                                   \
    } while (0)

template <class Codec>
static void round_trip_all() {
    using R = typename Codec::raw_t;
    const unsigned n = 1u << (8 * sizeof(R));
    for (unsigned i = 0; i < n; ++i) {
        const auto raw = static_cast<R>(i);
        const float f = Codec::decode(raw);
        if (std::isnan(f)) {
            CHECK(std::isnan(Codec::decode(Codec::encode(f))));
            continue;
        }
        if (Codec::encode(f) != raw) {
            std::fprintf(stderr, "round trip of pattern 0x%x gives 0x%x\n", i, static_cast<unsigned>(Codec::encode(f)));
            ++failures;
            return;
        }
    }
}

static void test_codecs() {
    round_trip_all<CodecF16>();
    round_trip_all<CodecBF16>();
    round_trip_all<CodecF8E4M3FN>();
    round_trip_all<CodecF8E5M2>();
    round_trip_all<CodecF8E5M2FNUZ>();
    round_trip_all<CodecF8E4M3FNUZ>();
    CHECK(f16_to_f32(0x3C00) == 1.0f);
    CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
    CHECK(f32_to_f16(65520.0f) == 0x7C00);        // ties to even overflows to inf
    CHECK(f32_to_bf16(1.00390625f) == 0x3F80);    // a tie rounds to the even neighbour
    CHECK(f32_to_f8e4m3fn(1e6f) == 0x7E);         // saturates at 448
    CHECK(f8e4m3fn_to_f32(0x7E) == 448.0f);
    CHECK(f32_to_f8e5m2(1e6f) == 0x7C);           // inf
    CHECK(f32_to_f8e4m3fnuz(-0.0f) == 0x00);      // no negative zero
    CHECK(f8e8m0_to_f32(127) == 1.0f);
    CHECK(decode_one(DType::I16, reinterpret_cast<const std::uint8_t*>("\xff\xfe"), true) == -2.0);
}

static void test_crc() {
    CHECK(crc32("123456789", 9) == 0xCBF43926u);
    CHECK(crc32_portable("123456789", 9) == 0xCBF43926u);
    std::mt19937 rng(1);
    std::vector<std::uint8_t> data(100000);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    for (std::size_t len : {0u, 1u, 63u, 64u, 65u, 1000u, 99999u}) {
        CHECK(crc32(data.data(), len, 7) == crc32_portable(data.data(), len, 7));
        const std::size_t half = len / 2;
        CHECK(crc32_combine(crc32(data.data(), half), crc32(data.data() + half, len - half), len - half) ==
              crc32(data.data(), len));
    }
}

static void test_bounds() {
    std::vector<float> src(10, 1.0f);
    std::vector<std::uint8_t> dst(40);
    View v;
    v.data = reinterpret_cast<const std::uint8_t*>(src.data());
    v.size = 40;
    v.shape = {11};
    v.strides = {1};
    bool threw = false;
    try {
        copy_cast(v, CopyTarget{dst.data(), dst.size(), 0, DType::F32});
    } catch (const std::invalid_argument&) {
        threw = true;
    }
    CHECK(threw);
    v.shape = {10};
    CHECK(copy_cast(v, CopyTarget{dst.data(), dst.size(), 0, DType::F32}) == crc32(src.data(), 40));
    const Comparison c = compare(v, v, CompareOptions{});
    CHECK(c.n_diff == 0 && c.allclose && c.cosine == 1.0);
}

int main() {
    test_codecs();
    test_crc();
    test_bounds();
    if (failures) std::fprintf(stderr, "%d failure(s)\n", failures);
    else std::puts("test_convert: ok");
    return failures ? 1 : 0;
}
