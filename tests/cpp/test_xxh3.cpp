// C++ unit test of the content hash, no Python: XXH3 golden values (from
// tests/vectors/hash_vectors.json), every kernel against the scalar one, the tree hash in its
// one-shot, streamed and threaded forms, gathers, bounds checks and cancellation.
// Build and run: cmake -S . -B build/cpp -DINSPECTOR_TESTS=ON && cmake --build build/cpp &&
// ctest --test-dir build/cpp   (add -DINSPECTOR_SANITIZE=ON for ASan/UBSan)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "check.hpp"
#include "treehash.hpp"
#include "xxh3.hpp"

namespace {


using inspector::treehash::Digest;
namespace th = inspector::treehash;
namespace xxh3 = inspector::xxh3;

// The vectors' input generator: pattern(n, seed)[i] = (i * 31 + seed * 17 + (i >> 11)) % 251.
std::vector<std::uint8_t> pattern(std::size_t n, std::uint64_t seed = 0) {
    std::vector<std::uint8_t> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>((i * 31 + seed * 17 + (i >> 11)) % 251);
    return out;
}

std::string hex(const std::uint8_t* p, std::size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}

std::string hex128(const void* data, std::size_t len, xxh3::Kernel k = xxh3::Kernel::Auto) {
    std::uint8_t out[16];
    xxh3::canonical(xxh3::hash128(data, len, k), out);
    return hex(out, 16);
}

std::string hex(const Digest& d) { return hex(d.data(), d.size()); }

void test_golden_xxh3() {
    const struct {
        std::size_t len;
        const char* digest;
    } golden[] = {
        {0, "99aa06d3014798d86001c324468d497f"},      {1, "a6cd5e9392000f6ac44bdff4074eecdb"},
        {3, "4af3603b5bd30dfe3698b80191e625f9"},      {4, "11527735d62fce43eecdfa5a3b083ba8"},
        {8, "791e22cdc30880ba073a25812fe4f600"},      {9, "22775b5e55c2ace94557529981ebbef0"},
        {16, "4ad789329416e4387df51ed58f26bee2"},     {17, "950dda39877c26d1ff1aad989e0dd9f2"},
        {128, "2420677499e7498929b103324f4df782"},    {129, "385edf5918e02b86a1a1b3d61e7a4029"},
        {240, "7cf77784002208a5423167d7599e74a5"},    {241, "095d0994f2a5191d82d3ebf50a3e9c42"},
        {1024, "5f6ea7ec3ae785ebcbdff56b050f2c1c"},   {1025, "4e0bf1adc121b7df9babf50235cea0a0"},
        {16385, "d19f061678ca137c4d3ad9c852f79698"},  {100003, "3a1d1452f046eeaa132d9611cf777bd7"},
        {1048575, "bc76c1bbc26c7ac6ed80ab2ead2017c9"}, {1048576, "7549f1a6efbc5d05d49b103e7893de08"},
    };
    const auto data = pattern(1 << 20);
    for (const auto& g : golden) {
        for (auto k : {xxh3::Kernel::Scalar, xxh3::Kernel::Sse2, xxh3::Kernel::Avx2, xxh3::Kernel::Avx512}) {
            if (!xxh3::kernel_available(k)) continue;
            if (hex128(data.data(), g.len, k) != g.digest) {
                std::fprintf(stderr, "xxh3_128 length %zu kernel %s: %s != %s\n", g.len, xxh3::kernel_name(k),
                             hex128(data.data(), g.len, k).c_str(), g.digest);
                ++failures;
            }
        }
    }
}

void test_kernels_agree_and_64_is_low_half() {
    std::mt19937_64 rng(1);
    std::vector<std::uint8_t> data(70000);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    std::vector<std::size_t> lengths;
    for (std::size_t n = 0; n <= 4200; ++n) lengths.push_back(n);
    for (int i = 0; i < 50; ++i) lengths.push_back(4200 + rng() % (data.size() - 4300));
    for (std::size_t n : lengths) {
        const auto scalar = xxh3::hash128(data.data() + 1, n, xxh3::Kernel::Scalar);  // unaligned
        for (auto k : {xxh3::Kernel::Sse2, xxh3::Kernel::Avx2, xxh3::Kernel::Avx512}) {
            if (!xxh3::kernel_available(k)) continue;
            const auto h = xxh3::hash128(data.data() + 1, n, k);
            CHECK(h.low == scalar.low && h.high == scalar.high);
        }
        // For inputs above 240 bytes (and 1-3), XXH3-64 is the low half of XXH3-128.
        if (n > 240 || (n >= 1 && n <= 3)) CHECK(xxh3::hash64(data.data() + 1, n) == scalar.low);
    }
}

th::Job contiguous_job(const std::vector<std::uint8_t>& buf, std::string dtype, std::size_t itemsize) {
    th::Job j;
    j.data = buf.data();
    j.size = buf.size();
    j.dtype = std::move(dtype);
    j.itemsize = itemsize;
    j.shape = {static_cast<std::int64_t>(buf.size() / itemsize)};
    j.strides = {1};
    return j;
}

void test_tree_hash_vectors_and_forms() {
    // uint8[2097153] from the vectors: seed 14 (the length of its name)
    const auto buf = pattern(2 * th::kChunk + 1, 14);
    const char* expected = "b2c6a2ea0f5fa6cdd494a29542ca0b00";
    for (unsigned threads : {1U, 2U, 4U}) {
        CHECK(hex(th::hash_all({contiguous_job(buf, "uint8", 1)}, threads)[0]) == expected);
    }
    for (std::size_t piece : {std::size_t{1} << 20, std::size_t{1}, std::size_t{77777}}) {
        th::Hasher h("uint8", {static_cast<std::int64_t>(buf.size())}, 1);
        for (std::size_t pos = 0; pos < buf.size(); pos += piece) {
            h.update(buf.data() + pos, std::min(piece, buf.size() - pos));
        }
        CHECK(hex(h.finish()) == expected);
    }
}

void test_gather_and_byteswap_vectors() {
    // "transpose": float32 (8, 6) strides (1, 8) over 48 elements, seed 9
    const auto storage = pattern(192, 9);
    th::Job t = contiguous_job(storage, "float32", 4);
    t.shape = {8, 6};
    t.strides = {1, 8};
    // "big-endian-float32": float32 (4, 5) big-endian, seed 18
    const auto big = pattern(80, 18);
    th::Job b = contiguous_job(big, "float32", 4);
    b.shape = {4, 5};
    b.strides = {5, 1};
    b.byteswap = true;
    const auto got = th::hash_all({t, b}, 2);
    CHECK(hex(got[0]) == "ca26af017cba544c4a4d9cf250485476");
    CHECK(hex(got[1]) == "c9f5e648ece0478a086fa0a2a80393b9");
}

void test_bounds_are_checked() {
    const std::vector<std::uint8_t> buf(48);
    th::Job ok = contiguous_job(buf, "float32", 4);
    th::Job bad = ok;
    bad.offset = 1;
    try {
        th::hash_all({ok, bad}, 1);
        CHECK(false);
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).rfind("job 1: view spans bytes [4, 52) of a 48-byte buffer", 0) == 0);
    }
    bad = ok;
    bad.strides = {-1};
    bad.offset = 5;
    try {
        th::hash_all({bad}, 1);
        CHECK(false);
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("before the buffer start") != std::string::npos);
    }
}

struct Cancelled {};

// A watch that throws stops the run: no further report, fewer bytes than the total, well before
// the 64 GiB could be hashed.
void test_cancel_stops_the_run() {
    const auto row = pattern(th::kChunk);
    th::Job huge = contiguous_job(row, "uint8", 1);
    huge.shape = {1 << 16, static_cast<std::int64_t>(th::kChunk)};  // 64 GiB of logical bytes
    huge.strides = {0, 1};
    std::vector<std::uint64_t> seen;
    const auto start = std::chrono::steady_clock::now();
    try {
        th::hash_all({huge}, 2, [&seen](std::uint64_t done, std::uint64_t total) {
            seen.push_back(done);
            CHECK(total == (std::uint64_t{1} << 36));
            throw Cancelled{};
        });
        CHECK(false);
    } catch (const Cancelled&) {
    }
    CHECK(seen.size() == 1 && seen[0] < (std::uint64_t{1} << 36));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

// Views at the edge of int64 are rejected by the one bounds check, never read.
void test_overflowing_views_are_rejected() {
    const std::vector<std::uint8_t> buf(64);
    const std::int64_t big = std::numeric_limits<std::int64_t>::max();
    const std::vector<std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>>> cases = {
        {{2, 2}, {big, 1}},
        {{3, 1}, {big / 2 + 1, 1}},
        {{big, big}, {1, 1}},
        {{2}, {std::numeric_limits<std::int64_t>::min()}},
    };
    for (const auto& [shape, strides] : cases) {
        th::Job j = contiguous_job(buf, "uint8", 1);
        j.shape = shape;
        j.strides = strides;
        try {
            th::hash_all({j}, 1);
            CHECK(false);
        } catch (const std::invalid_argument& e) {
            CHECK(std::string(e.what()).rfind("job 0: ", 0) == 0);
        }
    }
    // coalesce asks whether stride[0] == stride[1] * shape[1]; here that product overflows.
    std::vector<std::int64_t> shape{2, 2}, strides{std::int64_t{1} << 62, std::int64_t{1} << 62};
    inspector::coalesce(shape, strides);  // 2^62 * 2 overflows: the dims stay apart
    CHECK(shape.size() == 2);
    shape = {3, 4};
    strides = {4, 1};
    inspector::coalesce(shape, strides);
    CHECK(shape == std::vector<std::int64_t>{12} && strides == std::vector<std::int64_t>{1});
}

}  // namespace

int main() {
    test_golden_xxh3();
    test_kernels_agree_and_64_is_low_half();
    test_tree_hash_vectors_and_forms();
    test_gather_and_byteswap_vectors();
    test_bounds_are_checked();
    test_cancel_stops_the_run();
    test_overflowing_views_are_rejected();
    std::printf("test_xxh3: %s (kernel %s)\n", failures == 0 ? "ok" : "FAILED", xxh3::kernel_name(xxh3::Kernel::Auto));
    return failures == 0 ? 0 : 1;
}
