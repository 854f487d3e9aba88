// C++ unit test (no Python): codec round trips over every 16-bit and 8-bit pattern, CRC-32 known
// vectors and fast == portable, copy/compare bounds errors, compare's in-place and decoding paths
// bit-identical, SIMD casts == scalar encoders. Torch-exactness is tested from Python
// (tests/test_convert.py); this checks the core's own invariants, also under the sanitizers.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.hpp"
#include "compare.hpp"
#include "convert.hpp"
#include "copy.hpp"
#include "crc32.hpp"

using namespace inspector::num;


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
    View v = make_view(reinterpret_cast<const std::uint8_t*>(src.data()), 40, DType::F32, {11}, {1});
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

static View flat_view(const void* data, std::size_t bytes, DType d, std::int64_t n, std::int64_t stride,
                      std::int64_t offset) {
    return make_view(static_cast<const std::uint8_t*>(data), bytes, d, {n}, {stride}, offset);
}

static bool same_bits(double x, double y) { return std::memcmp(&x, &y, sizeof x) == 0; }

static bool same(const Comparison& x, const Comparison& y) {
    return x.numel == y.numel && same_bits(x.max_abs_diff, y.max_abs_diff) &&
           same_bits(x.mean_abs_diff, y.mean_abs_diff) && same_bits(x.rel_l2, y.rel_l2) &&
           same_bits(x.cosine, y.cosine) && x.n_diff == y.n_diff && x.n_not_close == y.n_not_close &&
           x.allclose == y.allclose && x.nan_a == y.nan_a && x.nan_b == y.nan_b && x.inf_a == y.inf_a &&
           x.inf_b == y.inf_b;
}

// The in-place kernel (contiguous) and the decoding path (a stride-2 copy) give the same bits,
// with a NaN block, a tail, and any thread count.
static void test_compare_paths() {
    const std::int64_t n = 3 * 2048 + 5;
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    std::vector<float> a(n), b(n), a2(2 * n), b2(2 * n);
    for (std::int64_t i = 0; i < n; ++i) {
        a[i] = normal(rng);
        b[i] = i % 7 ? a[i] + 1e-3f * normal(rng) : a[i];
    }
    a[100] = std::nanf("");
    for (std::int64_t i = 0; i < n; ++i) {
        a2[2 * i] = a[i];
        b2[2 * i] = b[i];
    }
    const View va = flat_view(a.data(), 4 * a.size(), DType::F32, n, 1, 0);
    const View vb = flat_view(b.data(), 4 * b.size(), DType::F32, n, 1, 0);
    const View sa = flat_view(a2.data(), 4 * a2.size(), DType::F32, n, 2, 0);
    const View sb = flat_view(b2.data(), 4 * b2.size(), DType::F32, n, 2, 0);
    CompareOptions opt;
    const Comparison ref = compare(va, vb, opt);
    CHECK(ref.nan_a == 1 && ref.n_diff > 0);
    for (int threads : {1, 3}) {
        opt.threads = threads;
        CHECK(same(compare(sa, sb, opt), ref));
        CHECK(same(compare(va, vb, opt), ref));
    }
}

// copy_cast to bfloat16/float16 (SIMD where available) against the scalar encoders, every tail.
static void test_cast_matches_scalar() {
    std::mt19937 rng(4);
    std::vector<std::uint32_t> bits(4099);
    for (auto& w : bits) w = static_cast<std::uint32_t>(rng());
    std::vector<std::uint16_t> out(bits.size());
    for (std::int64_t n : {4099, 17, 8, 7, 1}) {
        const View v = flat_view(bits.data(), 4 * bits.size(), DType::F32, n, 1, 0);
        copy_cast(v, CopyTarget{reinterpret_cast<std::uint8_t*>(out.data()), 2 * out.size(), 0, DType::BF16});
        for (std::int64_t i = 0; i < n; ++i) CHECK(out[i] == f32_to_bf16(f32_from_bits(bits[i])));
        copy_cast(v, CopyTarget{reinterpret_cast<std::uint8_t*>(out.data()), 2 * out.size(), 0, DType::F16});
        for (std::int64_t i = 0; i < n; ++i) CHECK(out[i] == f32_to_f16(f32_from_bits(bits[i])));
    }
}

template <class Fn>
static bool throws_invalid(Fn&& fn) {
    try {
        fn();
    } catch (const std::invalid_argument&) {
        return true;
    }
    return false;
}

// Overlapping source and destination are refused before any write; adjacent ones are fine.
static void test_overlap() {
    std::vector<std::uint8_t> buf(64, 0);
    const View all = make_view(buf.data(), buf.size(), DType::U8, {32}, {1});
    CHECK(throws_invalid([&] { copy_cast(all, CopyTarget{buf.data(), buf.size(), 16, DType::U8}); }));
    CHECK(throws_invalid([&] { copy_cast(all, CopyTarget{buf.data(), buf.size(), 0, DType::I16}); }));
    for (std::size_t i = 0; i < 32; ++i) buf[i] = static_cast<std::uint8_t>(i);
    copy_cast(all, CopyTarget{buf.data(), buf.size(), 32, DType::U8});
    CHECK(std::memcmp(buf.data(), buf.data() + 32, 32) == 0);
}

struct Stop {};

// A watch that throws stops compare, stats and copy: one report, before the total.
static void test_watch_cancels() {
    std::vector<float> row(1 << 20, 1.0f);
    const View huge = make_view(reinterpret_cast<const std::uint8_t*>(row.data()), 4 * row.size(), DType::F32,
                                {1 << 14, 1 << 20}, {0, 1});
    for (int threads : {1, 2}) {
        int calls = 0;
        const inspector::Watch stop = [&calls](std::uint64_t done, std::uint64_t total) {
            ++calls;
            CHECK(done < total);
            throw Stop{};
        };
        CompareOptions opt;
        opt.threads = threads;
        try {
            compare(huge, huge, opt, stop);
            CHECK(false);
        } catch (const Stop&) {
        }
        try {
            stats(huge, 16, threads, stop);
            CHECK(false);
        } catch (const Stop&) {
        }
        std::vector<std::uint8_t> out(std::size_t{1} << 28);  // 256 M float8 of the 16 G
        const View part = make_view(huge.data, huge.size, DType::F32, {1 << 8, 1 << 20}, {0, 1});
        try {
            copy_cast(part, CopyTarget{out.data(), out.size(), 0, DType::F8E4M3FN}, threads, stop);
            CHECK(false);
        } catch (const Stop&) {
        }
        CHECK(calls == 3);
    }
}

int main() {
    test_codecs();
    test_crc();
    test_bounds();
    test_compare_paths();
    test_cast_matches_scalar();
    test_overlap();
    test_watch_cancels();
    if (failures) std::fprintf(stderr, "%d failure(s)\n", failures);
    else std::puts("test_convert: ok");
    return failures ? 1 : 0;
}
