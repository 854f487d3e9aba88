// ckh1 leaves on a CUDA device: one warp per 1 MiB chunk computes its XXH3-128.
//
// XXH3's long loop updates 8 accumulator lanes stripe by stripe, but within one 1 KiB block the
// per-stripe contributions do not depend on the accumulators (they are sums of products of the
// data with the secret), so the 32 threads of a warp each read 4 words of the block (coalesced),
// sum their contributions, reduce them per lane with shuffles, and only the per-block scramble is
// sequential. Inputs of 240 bytes or less (a small last chunk) take the scalar small/medium paths
// on one thread. The host combines the leaves with treehash::combine, as the CPU does.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/treehash_cuda.hpp"
#include "xxh3_constants.hpp"

namespace inspector::cuda {
namespace {

using u8 = unsigned char;
using u32 = unsigned int;
using u64 = unsigned long long;

using xxh3::kPrime32_1, xxh3::kPrime32_2, xxh3::kPrime32_3, xxh3::kPrime64_1, xxh3::kPrime64_2,
    xxh3::kPrime64_3, xxh3::kPrime64_4, xxh3::kPrime64_5, xxh3::kPrimeMx1, xxh3::kPrimeMx2;

constexpr unsigned kChunk = static_cast<unsigned>(treehash::kChunk);
constexpr unsigned kWarpsPerBlock = 4;
constexpr unsigned kFullMask = 0xFFFFFFFFU;

__constant__ u8 kSecret[xxh3::kSecretSize] = {INSPECTOR_XXH3_SECRET};

// Byte-wise little-endian reads: any alignment (secret offsets, the last stripe, small inputs).
__device__ u64 load64(const u8* p) {
    u64 v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}
__device__ u32 load32_exact(const u8* p) {
    return static_cast<u32>(p[0]) | (static_cast<u32>(p[1]) << 8) | (static_cast<u32>(p[2]) << 16) |
           (static_cast<u32>(p[3]) << 24);
}
__device__ u64 secret64(unsigned offset) { return load64(kSecret + offset); }

__device__ u64 fold64(u64 a, u64 b) { return (a * b) ^ __umul64hi(a, b); }

__device__ u64 avalanche(u64 x) {
    x ^= x >> 37;
    x *= kPrimeMx1;
    return x ^ (x >> 32);
}

__device__ u64 avalanche_xxh64(u64 x) {
    x ^= x >> 33;
    x *= kPrime64_2;
    x ^= x >> 29;
    x *= kPrime64_3;
    return x ^ (x >> 32);
}

__device__ void store_canonical(u64 low, u64 high, u8* out) {
    for (int i = 0; i < 8; ++i) {
        out[i] = static_cast<u8>(high >> (56 - 8 * i));
        out[8 + i] = static_cast<u8>(low >> (56 - 8 * i));
    }
}

// ---- 0..240 bytes, one thread (same formulas as csrc/xxh3.cpp) ---------------------------------

__device__ u64 mix_step(const u8* data, unsigned secret_offset) {
    return fold64(load64(data) ^ secret64(secret_offset), load64(data + 8) ^ secret64(secret_offset + 8));
}

struct Acc2 {
    u64 a0, a1;
    __device__ void mix_two(const u8* d1, const u8* d2, unsigned secret_offset) {
        a0 += mix_step(d1, secret_offset);
        a1 += mix_step(d2, secret_offset + 16);
        a0 ^= load64(d2) + load64(d2 + 8);
        a1 ^= load64(d1) + load64(d1 + 8);
    }
};

__device__ void small_hash(const u8* in, unsigned len, u8* out) {
    u64 low = 0, high = 0;
    if (len == 0) {
        low = avalanche_xxh64(secret64(64) ^ secret64(72));
        high = avalanche_xxh64(secret64(80) ^ secret64(88));
    } else if (len <= 3) {
        const u32 c = static_cast<u32>(in[len - 1]) | (len << 8) | (static_cast<u32>(in[0]) << 16) |
                      (static_cast<u32>(in[len >> 1]) << 24);
        const u32 swapped = __byte_perm(c, 0, 0x0123);
        const u32 rotated = (swapped << 13) | (swapped >> 19);
        low = avalanche_xxh64(static_cast<u64>(load32_exact(kSecret) ^ load32_exact(kSecret + 4)) ^ c);
        high = avalanche_xxh64(static_cast<u64>(load32_exact(kSecret + 8) ^ load32_exact(kSecret + 12)) ^ rotated);
    } else if (len <= 8) {
        const u64 combined = load32_exact(in) | (static_cast<u64>(load32_exact(in + len - 4)) << 32);
        const u64 value = secret64(16) ^ secret64(24) ^ combined;
        const u64 m = kPrime64_1 + (static_cast<u64>(len) << 2);
        const u64 ml = value * m, mh = __umul64hi(value, m);
        high = mh + (ml << 1);
        low = ml ^ (high >> 3);
        low ^= low >> 35;
        low *= kPrimeMx2;
        low ^= low >> 28;
        high = avalanche(high);
    } else if (len <= 16) {
        const u64 first = load64(in), last = load64(in + len - 8);
        const u64 val1 = secret64(32) ^ secret64(40) ^ first ^ last;
        const u64 val2 = secret64(48) ^ secret64(56) ^ last;
        u64 l = val1 * kPrime64_1 + (static_cast<u64>(len - 1) << 54);
        u64 h = __umul64hi(val1, kPrime64_1) + (val2 & 0xFFFFFFFF00000000ULL) +
                static_cast<u64>(static_cast<u32>(val2)) * kPrime32_2;
        l ^= __byte_perm(static_cast<u32>(h >> 32), 0, 0x0123) |
             (static_cast<u64>(__byte_perm(static_cast<u32>(h), 0, 0x0123)) << 32);
        const u64 l2 = l * kPrime64_2;
        h = __umul64hi(l, kPrime64_2) + h * kPrime64_2;
        low = avalanche(l2);
        high = avalanche(h);
    } else {
        Acc2 acc{static_cast<u64>(len) * kPrime64_1, 0};
        if (len <= 128) {
            for (int i = static_cast<int>((len - 1) >> 5); i >= 0; --i) {
                acc.mix_two(in + 16 * i, in + len - 16 * i - 16, 32 * i);
            }
        } else {
            for (unsigned i = 0; i < 4; ++i) acc.mix_two(in + 32 * i, in + 32 * i + 16, 32 * i);
            acc.a0 = avalanche(acc.a0);
            acc.a1 = avalanche(acc.a1);
            for (unsigned i = 4; i < (len >> 5); ++i) acc.mix_two(in + 32 * i, in + 32 * i + 16, 32 * (i - 4) + 3);
            acc.mix_two(in + len - 16, in + len - 32, 136 - 17 - 16);
        }
        low = avalanche(acc.a0 + acc.a1);
        high = 0 - avalanche(acc.a0 * kPrime64_1 + acc.a1 * kPrime64_4 + static_cast<u64>(len) * kPrime64_2);
    }
    store_canonical(low, high, out);
}

// ---- > 240 bytes, one warp ----------------------------------------------------------------

// Adds one block's contributions to the accumulator of lane (thread & 7). Each thread passes the
// sum of its products (for its own lane) and of its raw words (which belong to lane ^ 1).
__device__ u64 add_contributions(u64 acc, u64 products, u64 words) {
    products += __shfl_xor_sync(kFullMask, products, 8);
    products += __shfl_xor_sync(kFullMask, products, 16);
    words += __shfl_xor_sync(kFullMask, words, 8);
    words += __shfl_xor_sync(kFullMask, words, 16);
    return acc + products + __shfl_xor_sync(kFullMask, words, 1);
}

// Stripes [0, stripes) of a 1 KiB block (8-byte aligned): this thread's share.
__device__ void block_share(const u64* block, unsigned stripes, unsigned thread, u64& products, u64& words) {
    const unsigned lane = thread & 7;
#pragma unroll
    for (unsigned r = 0; r < 4; ++r) {
        const unsigned w = thread + 32 * r;
        const unsigned stripe = w >> 3;
        if (stripe < stripes) {
            const u64 data = block[w];
            const u64 mixed = data ^ secret64(8 * (stripe + lane));
            products += (mixed & 0xFFFFFFFFULL) * (mixed >> 32);
            words += data;
        }
    }
}

__device__ u64 merge(const u64 lanes[8], unsigned secret_offset, u64 start) {
    u64 result = start;
    for (unsigned i = 0; i < 4; ++i) {
        result += fold64(lanes[2 * i] ^ secret64(secret_offset + 16 * i),
                         lanes[2 * i + 1] ^ secret64(secret_offset + 16 * i + 8));
    }
    return avalanche(result);
}

__device__ void long_hash(const u8* in, unsigned len, unsigned thread, u8* out) {
    const unsigned lane = thread & 7;
    const u64 init[8] = {kPrime32_3, kPrime64_1, kPrime64_2, kPrime64_3, kPrime64_4, kPrime32_2, kPrime64_5, kPrime32_1};
    u64 acc = init[lane];
    const unsigned blocks = (len - 1) / 1024;
    const u64* words64 = reinterpret_cast<const u64*>(in);  // chunk starts are 16-byte aligned
#pragma unroll 4
    for (unsigned b = 0; b < blocks; ++b) {
        u64 products = 0, words = 0;
        block_share(words64 + 128 * b, 16, thread, products, words);
        acc = add_contributions(acc, products, words);
        acc ^= acc >> 47;
        acc ^= secret64(128 + 8 * lane);
        acc *= kPrime32_1;
    }
    u64 products = 0, words = 0;
    block_share(words64 + 128 * blocks, ((len - 1) - 1024 * blocks) / 64, thread, products, words);
    acc = add_contributions(acc, products, words);
    // The last 64 bytes of the input, at any alignment, with the secret at offset 121.
    products = 0;
    words = 0;
    if (thread < 8) {
        const u64 data = load64(in + len - 64 + 8 * lane);
        const u64 mixed = data ^ secret64(121 + 8 * lane);
        products = (mixed & 0xFFFFFFFFULL) * (mixed >> 32);
        words = data;
    }
    acc = add_contributions(acc, products, words);
    u64 lanes[8];
    for (unsigned i = 0; i < 8; ++i) lanes[i] = __shfl_sync(kFullMask, acc, i);
    if (thread == 0) {
        const u64 n = len;
        store_canonical(merge(lanes, 11, n * kPrime64_1), merge(lanes, 117, ~(n * kPrime64_2)), out);
    }
}

__global__ void leaf_kernel(const u8* data, unsigned long long nbytes, unsigned long long chunks, u8* out) {
    const unsigned long long chunk = blockIdx.x * static_cast<unsigned long long>(kWarpsPerBlock) + threadIdx.x / 32;
    if (chunk >= chunks) return;  // whole warps leave together
    const unsigned thread = threadIdx.x % 32;
    const unsigned long long begin = chunk * kChunk;
    const auto len = static_cast<unsigned>(nbytes - begin < kChunk ? nbytes - begin : kChunk);
    if (len > 240) {
        long_hash(data + begin, len, thread, out + 16 * chunk);
    } else if (thread == 0) {
        small_hash(data + begin, len, out + 16 * chunk);
    }
}

void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) {
        throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorString(err));
    }
}

class DeviceBuffer {
public:
    explicit DeviceBuffer(std::size_t n) { check(cudaMalloc(&ptr_, n), "cudaMalloc"); }
    ~DeviceBuffer() { cudaFree(ptr_); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    u8* get() const { return static_cast<u8*>(ptr_); }

private:
    void* ptr_ = nullptr;
};

class DeviceScope {  // makes `device` current, restores the caller's device
public:
    explicit DeviceScope(int device) {
        check(cudaGetDevice(&previous_), "cudaGetDevice");
        check(cudaSetDevice(device), "cudaSetDevice");
    }
    ~DeviceScope() { cudaSetDevice(previous_); }
    DeviceScope(const DeviceScope&) = delete;
    DeviceScope& operator=(const DeviceScope&) = delete;

private:
    int previous_ = 0;
};

}  // namespace

std::vector<treehash::Digest> leaf_digests(std::uintptr_t ptr, std::size_t nbytes, int device) {
    const std::size_t chunks = (nbytes + kChunk - 1) / kChunk;
    std::vector<treehash::Digest> leaves(chunks);
    if (chunks == 0) return leaves;
    if (ptr % 16 != 0) throw std::invalid_argument("hash_device: the device pointer must be 16-byte aligned");
    DeviceScope scope(device);
    cudaPointerAttributes attrs{};
    check(cudaPointerGetAttributes(&attrs, reinterpret_cast<const void*>(ptr)), "cudaPointerGetAttributes");
    if (attrs.type != cudaMemoryTypeDevice && attrs.type != cudaMemoryTypeManaged) {
        throw std::invalid_argument("hash_device: the pointer is not CUDA device memory");
    }
    if (attrs.device != device) throw std::invalid_argument("hash_device: the pointer belongs to another device");
    DeviceBuffer out(chunks * 16);
    const auto grid = static_cast<unsigned>((chunks + kWarpsPerBlock - 1) / kWarpsPerBlock);
    leaf_kernel<<<grid, 32 * kWarpsPerBlock>>>(reinterpret_cast<const u8*>(ptr), nbytes, chunks, out.get());
    check(cudaGetLastError(), "kernel launch");
    check(cudaMemcpy(leaves.data(), out.get(), chunks * 16, cudaMemcpyDeviceToHost), "cudaMemcpy");
    return leaves;
}

}  // namespace inspector::cuda
