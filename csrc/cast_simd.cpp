#include "cast_simd.hpp"

#include <cstring>

#include "simd.hpp"

#ifdef INSPECTOR_NUM_AVX2
#include <immintrin.h>
#endif

namespace inspector::num {
namespace {

template <class Encode>
void encode_tail(const std::uint8_t* src, std::size_t n, std::uint8_t* out, Encode encode) {
    for (std::size_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, src + 4 * i, 4);
        const std::uint16_t h = encode(f);
        std::memcpy(out + 2 * i, &h, 2);
    }
}

#ifdef INSPECTOR_NUM_AVX2
// 8 floats to bfloat16 in the low half of each 32-bit lane: (u + 0x7FFF + lsb) >> 16, NaN 0xFFFF.
INSPECTOR_AVX2_TARGET inline __m256i bf16_lanes(__m256 f) {
    const __m256i u = _mm256_castps_si256(f);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
    return _mm256_or_si256(r, _mm256_and_si256(nan, _mm256_set1_epi32(0xFFFF)));
}

INSPECTOR_AVX2_TARGET void to_bf16_avx2(const std::uint8_t* src, std::size_t n, std::uint8_t* out) {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i lo = bf16_lanes(_mm256_loadu_ps(reinterpret_cast<const float*>(src + 4 * i)));
        const __m256i hi = bf16_lanes(_mm256_loadu_ps(reinterpret_cast<const float*>(src + 4 * i + 32)));
        // packus works per 128-bit half: (lo0-3, hi0-3, lo4-7, hi4-7); reorder the 64-bit quarters.
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * i), packed);
    }
    encode_tail(src + 4 * i, n - i, out + 2 * i, f32_to_bf16);
}

INSPECTOR_AVX2_TARGET void to_f16_avx2(const std::uint8_t* src, std::size_t n, std::uint8_t* out) {
    std::size_t i = 0;
    const __m128i payload = _mm_set1_epi16(0x01FF);
    for (; i + 8 <= n; i += 8) {
        const __m256 f = _mm256_loadu_ps(reinterpret_cast<const float*>(src + 4 * i));
        const __m128i h = _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        // The instruction keeps a NaN's payload bits; f32_to_f16 writes sign | 0x7E00.
        const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
        const __m128i nan16 = _mm_packs_epi32(_mm256_castsi256_si128(nan), _mm256_extracti128_si256(nan, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), _mm_andnot_si128(_mm_and_si128(nan16, payload), h));
    }
    encode_tail(src + 4 * i, n - i, out + 2 * i, f32_to_f16);
}
#endif

}  // namespace

bool encode_f32_simd(DType to, const std::uint8_t* src, std::size_t n, std::uint8_t* out) {
#ifdef INSPECTOR_NUM_AVX2
    if (!simd_enabled()) return false;
    if (to == DType::BF16) to_bf16_avx2(src, n, out);
    else if (to == DType::F16) to_f16_avx2(src, n, out);
    else return false;
    return true;
#else
    (void)to, (void)src, (void)n, (void)out;
    return false;
#endif
}

}  // namespace inspector::num
