// The one CPU-feature probe of the core, and the one INSPECTOR_DISABLE_SIMD rule. Every fast path
// (xxh3's SSE2/AVX2/AVX-512 stripe loops, CRC-32's carry-less multiply, the AVX2 kernels of
// compare() and copy_cast()) asks usable() whether it may run; each has a portable twin that
// computes bit-identical results.
//
// INSPECTOR_DISABLE_SIMD: unset, empty, "0", "false", "no" or "off" (any case) leaves the fast
// paths on; any other value ("1", "yes", "true", ...) turns every one of them off for the process.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define INSPECTOR_NUM_AVX2 1
// Every AVX2 CPU also has F16C (float16 conversion) and FMA.
#define INSPECTOR_AVX2_TARGET __attribute__((target("avx2,f16c,fma")))
#endif

namespace inspector::cpu {

struct Features {
    bool sse2 = false;  // compiled in (baseline x86-64)
    bool sse41 = false;
    bool pclmul = false;
    bool avx2 = false;
    bool f16c = false;
    bool fma = false;
    bool avx512f = false;
};

// What the running CPU has. Read once.
const Features& detected() noexcept;

// True when a value of INSPECTOR_DISABLE_SIMD turns the fast paths off (nullptr: unset).
bool disables_simd(const char* value) noexcept;

// What the fast paths may use: detected(), or nothing when INSPECTOR_DISABLE_SIMD says so. Read once.
const Features& usable() noexcept;

}  // namespace inspector::cpu

namespace inspector::num {

// True when the AVX2 kernels of compare() and copy_cast() run (AVX2, F16C and FMA usable).
bool simd_enabled() noexcept;

}  // namespace inspector::num
