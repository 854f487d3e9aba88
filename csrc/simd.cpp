#include "simd.hpp"

#include <cstdlib>
#include <cstring>

namespace inspector::num {
namespace {

bool detect() {
    const char* off = std::getenv("INSPECTOR_DISABLE_SIMD");
    if (off != nullptr && *off != '\0' && std::strcmp(off, "0") != 0) return false;
#ifdef INSPECTOR_NUM_AVX2
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

}  // namespace

bool simd_enabled() noexcept {
    static const bool on = detect();
    return on;
}

}  // namespace inspector::num
