// Runtime choice of the x86-64 AVX2 kernels used by compare() and copy_cast(). The portable
// kernels compute bit-identical results; INSPECTOR_DISABLE_SIMD=1 forces them (as for CRC-32).
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define INSPECTOR_NUM_AVX2 1
// Every AVX2 CPU also has F16C (float16 conversion) and FMA.
#define INSPECTOR_AVX2_TARGET __attribute__((target("avx2,f16c,fma")))
#endif

namespace inspector::num {

// True when the AVX2 kernels run: the CPU has AVX2, F16C and FMA and INSPECTOR_DISABLE_SIMD is unset
// (or "0"). Read once.
bool simd_enabled() noexcept;

}  // namespace inspector::num
