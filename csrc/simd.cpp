#include "simd.hpp"

#include <strings.h>

#include <cstdlib>
#include <initializer_list>

namespace inspector::cpu {
namespace {

Features probe() noexcept {
    Features f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    f.sse2 = true;
    f.sse41 = __builtin_cpu_supports("sse4.1") != 0;
    f.pclmul = __builtin_cpu_supports("pclmul") != 0;
    f.avx2 = __builtin_cpu_supports("avx2") != 0;
    f.f16c = __builtin_cpu_supports("f16c") != 0;
    f.fma = __builtin_cpu_supports("fma") != 0;
    f.avx512f = __builtin_cpu_supports("avx512f") != 0;
#endif
    return f;
}

}  // namespace

const Features& detected() noexcept {
    static const Features f = probe();
    return f;
}

bool disables_simd(const char* value) noexcept {
    if (value == nullptr || *value == '\0') return false;
    for (const char* on : {"0", "false", "no", "off"})
        if (strcasecmp(value, on) == 0) return false;
    return true;
}

const Features& usable() noexcept {
    static const Features f = disables_simd(std::getenv("INSPECTOR_DISABLE_SIMD")) ? Features{} : detected();
    return f;
}

}  // namespace inspector::cpu

namespace inspector::num {

bool simd_enabled() noexcept {
#ifdef INSPECTOR_NUM_AVX2
    const cpu::Features& f = cpu::usable();
    return f.avx2 && f.f16c && f.fma;
#else
    return false;
#endif
}

}  // namespace inspector::num
