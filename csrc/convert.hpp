// Element types: decoding raw bytes to float/double/int64 and encoding back, bit-exact with torch.
//
// The float16/bfloat16/float8 conversions follow c10 (torch/headeronly/util/*.h): round to
// nearest even; float16/bfloat16 overflow to inf (bfloat16 NaN is written as 0xFFFF, as .to() does); float8_e4m3fn saturates to +-448 (torch >= 2.9
// behaviour of `.to()`), e5m2 overflows to inf, the fnuz types map overflow and NaN to their single
// NaN (0x80). A double goes to a narrow float through float32 first, as torch does.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace inspector::num {

enum class DType : std::uint8_t {
    F64, F32, F16, BF16, F8E4M3FN, F8E5M2, F8E4M3FNUZ, F8E5M2FNUZ, F8E8M0FNU,
    I64, I32, I16, I8, U64, U32, U16, U8, Bool,
};
enum class Kind : std::uint8_t { Float, Signed, Unsigned, Bool };

struct DTypeInfo {
    DType dtype;
    const char* name;  // canonical torch name (inspector/dtypes.py)
    std::size_t itemsize;
    Kind kind;
};

inline constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "float64", 8, Kind::Float},
    {DType::F32, "float32", 4, Kind::Float},
    {DType::F16, "float16", 2, Kind::Float},
    {DType::BF16, "bfloat16", 2, Kind::Float},
    {DType::F8E4M3FN, "float8_e4m3fn", 1, Kind::Float},
    {DType::F8E5M2, "float8_e5m2", 1, Kind::Float},
    {DType::F8E4M3FNUZ, "float8_e4m3fnuz", 1, Kind::Float},
    {DType::F8E5M2FNUZ, "float8_e5m2fnuz", 1, Kind::Float},
    {DType::F8E8M0FNU, "float8_e8m0fnu", 1, Kind::Float},
    {DType::I64, "int64", 8, Kind::Signed},
    {DType::I32, "int32", 4, Kind::Signed},
    {DType::I16, "int16", 2, Kind::Signed},
    {DType::I8, "int8", 1, Kind::Signed},
    {DType::U64, "uint64", 8, Kind::Unsigned},
    {DType::U32, "uint32", 4, Kind::Unsigned},
    {DType::U16, "uint16", 2, Kind::Unsigned},
    {DType::U8, "uint8", 1, Kind::Unsigned},
    {DType::Bool, "bool", 1, Kind::Bool},
};

inline const DTypeInfo& info(DType d) { return kDTypes[static_cast<std::size_t>(d)]; }

inline std::optional<DType> find_dtype(std::string_view name) {
    for (const auto& row : kDTypes)
        if (name == row.name) return row.dtype;
    return std::nullopt;
}

// The DType for a canonical name; std::invalid_argument (ValueError in Python) otherwise.
inline DType parse_dtype(std::string_view name) {
    if (auto d = find_dtype(name)) return *d;
    throw std::invalid_argument("unsupported dtype '" + std::string(name) + "'");
}

// ---- bit helpers ---------------------------------------------------------------------------------
inline float f32_from_bits(std::uint32_t w) {
    float f;
    std::memcpy(&f, &w, 4);
    return f;
}
inline std::uint32_t f32_bits(float f) {
    std::uint32_t w;
    std::memcpy(&w, &f, 4);
    return w;
}
inline double f64_from_bits(std::uint64_t w) {
    double d;
    std::memcpy(&d, &w, 8);
    return d;
}

inline std::uint8_t bswap(std::uint8_t v) { return v; }
inline std::uint16_t bswap(std::uint16_t v) { return static_cast<std::uint16_t>((v >> 8) | (v << 8)); }
inline std::uint32_t bswap(std::uint32_t v) { return __builtin_bswap32(v); }
inline std::uint64_t bswap(std::uint64_t v) { return __builtin_bswap64(v); }

// ---- decoders (exact: every narrow float is representable in float32) ----------------------------
inline float f16_to_f32(std::uint16_t h) {
    const std::uint32_t w = static_cast<std::uint32_t>(h) << 16;
    const std::uint32_t sign = w & 0x80000000u;
    const std::uint32_t two_w = w + w;
    const float exp_scale = f32_from_bits(15u << 23);  // 2^-112
    const float normalized = f32_from_bits((two_w >> 4) + (0xE0u << 23)) * exp_scale;
    const float denormalized = f32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
    const std::uint32_t r = two_w < (1u << 27) ? f32_bits(denormalized) : f32_bits(normalized);
    return f32_from_bits(sign | r);
}

inline float bf16_to_f32(std::uint16_t h) { return f32_from_bits(static_cast<std::uint32_t>(h) << 16); }

inline float f8e4m3fn_to_f32(std::uint8_t x) {
    const std::uint32_t w = static_cast<std::uint32_t>(x) << 24;
    const std::uint32_t sign = w & 0x80000000u;
    const std::uint32_t nonsign = w & 0x7FFFFFFFu;
    std::uint32_t renorm = nonsign != 0 ? static_cast<std::uint32_t>(__builtin_clz(nonsign)) : 32u;
    renorm = renorm > 4 ? renorm - 4 : 0;
    const std::uint32_t inf_nan = static_cast<std::uint32_t>(
        static_cast<std::int32_t>(nonsign + 0x01000000u) >> 8) & 0x7F800000u;
    const std::uint32_t zero = static_cast<std::uint32_t>(static_cast<std::int32_t>(nonsign - 1) >> 31);
    const std::uint32_t r =
        sign | ((((nonsign << renorm >> 4) + ((0x78u - renorm) << 23)) | inf_nan) & ~zero);
    return f32_from_bits(r);
}

inline float f8e5m2_to_f32(std::uint8_t x) { return f16_to_f32(static_cast<std::uint16_t>(x << 8)); }

// fnuz: no negative zero, no inf, 0x80 is the only NaN; exponent bias one more than the fn types.
template <unsigned WE, unsigned WM>
inline float f8fnuz_to_f32(std::uint8_t x) {
    if (x == 0) return 0.0f;
    if (x == 0x80) return f32_from_bits(0x7F800001u);
    std::uint32_t mantissa = x & ((1u << WM) - 1);
    std::uint32_t exponent = (x & 0x7Fu) >> WM;
    if (exponent == 0) {
        const auto renorm = static_cast<std::uint32_t>(__builtin_clz(mantissa));
        const std::uint32_t sh = 1 + renorm - (32 - WM);
        mantissa <<= sh;
        exponent += 1 - sh;  // wraps; the bias added below brings it back in range
        mantissa &= (1u << WM) - 1;
    }
    exponent += (1u << 7) - (1u << (WE - 1)) - 1;
    mantissa <<= 23 - WM;
    const std::uint32_t sign = static_cast<std::uint32_t>(x >> 7);
    return f32_from_bits((sign << 31) | (exponent << 23) | mantissa);
}

inline float f8e8m0_to_f32(std::uint8_t x) {
    if (x == 0) return f32_from_bits(0x00400000u);  // 2^-127, a float32 subnormal
    if (x == 0xFF) return f32_from_bits(0x7F800001u);
    return f32_from_bits(static_cast<std::uint32_t>(x) << 23);
}

// ---- encoders from float32 -----------------------------------------------------------------------
inline std::uint16_t f32_to_f16(float f) {
    const float scale_to_inf = f32_from_bits(239u << 23);
    const float scale_to_zero = f32_from_bits(17u << 23);
    float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
    const std::uint32_t w = f32_bits(f);
    const std::uint32_t shl1_w = w + w;
    const std::uint32_t sign = w & 0x80000000u;
    std::uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const std::uint32_t bits = f32_bits(base);
    const std::uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const std::uint32_t mantissa_bits = bits & 0x00000FFFu;
    const std::uint32_t nonsign = exp_bits + mantissa_bits;
    return static_cast<std::uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

inline std::uint16_t f32_to_bf16(float f) {
    // c10's scalar code writes 0x7FC0, but torch's .to() (vectorised CPU path) writes 0xFFFF for
    // every NaN; that is what a torch-written checkpoint holds, so do the same.
    if (std::isnan(f)) return 0xFFFF;
    const std::uint32_t u = f32_bits(f);
    const std::uint32_t rounding_bias = ((u >> 16) & 1u) + 0x7FFFu;
    return static_cast<std::uint16_t>((u + rounding_bias) >> 16);
}

inline std::uint8_t f32_to_f8e4m3fn(float f) {
    std::uint32_t b = f32_bits(f);
    const std::uint32_t sign = b & 0x80000000u;
    b ^= sign;
    std::uint8_t r;
    if (b >= (1087u << 20)) {  // >= 480: saturate, NaN stays NaN
        r = b > 0x7F800000u ? 0x7F : 0x7E;
    } else if (b < (121u << 23)) {  // below the smallest normal: let the FPU round the denormal
        const std::uint32_t denorm_mask = 141u << 23;
        b = f32_bits(f32_from_bits(b) + f32_from_bits(denorm_mask));
        r = static_cast<std::uint8_t>(b - denorm_mask);
    } else {
        const std::uint32_t mant_odd = (b >> 20) & 1u;
        b += (static_cast<std::uint32_t>(7 - 127) << 23) + 0x7FFFFu;
        b += mant_odd;
        r = static_cast<std::uint8_t>(b >> 20);
        if (r == 0x7F) r = 0x7E;
    }
    return static_cast<std::uint8_t>(r | (sign >> 24));
}

inline std::uint8_t f32_to_f8e5m2(float f) {
    std::uint32_t b = f32_bits(f);
    const std::uint32_t sign = b & 0x80000000u;
    b ^= sign;
    std::uint8_t r;
    if (b >= (143u << 23)) {  // >= 65536: inf, or NaN
        r = b > (255u << 23) ? 0x7F : 0x7C;
    } else if (b < (113u << 23)) {
        const std::uint32_t denorm_mask = 134u << 23;
        b = f32_bits(f32_from_bits(b) + f32_from_bits(denorm_mask));
        r = static_cast<std::uint8_t>(b - denorm_mask);
    } else {
        const std::uint32_t mant_odd = (b >> 21) & 1u;
        b += (static_cast<std::uint32_t>(15 - 127) << 23) + 0xFFFFFu;
        b += mant_odd;
        r = static_cast<std::uint8_t>(b >> 21);
    }
    return static_cast<std::uint8_t>(r | (sign >> 24));
}

// Shared by e4m3fnuz (bias 8) and e5m2fnuz (bias 16): overflow and NaN become 0x80, -0 becomes 0.
template <unsigned WM, std::uint32_t MaxExp, std::uint32_t DenormExp, std::uint32_t MinNormalExp,
          std::uint32_t Bias>
inline std::uint8_t f32_to_f8fnuz(float f) {
    std::uint32_t b = f32_bits(f);
    const std::uint32_t sign = b & 0x80000000u;
    b ^= sign;
    if (b >= (MaxExp << 23)) return 0x80;
    std::uint32_t r;
    if (b < (MinNormalExp << 23)) {
        const std::uint32_t denorm_mask = DenormExp << 23;
        b = f32_bits(f32_from_bits(b) + f32_from_bits(denorm_mask));
        r = static_cast<std::uint8_t>(b - denorm_mask);
        if (r == 0) return 0;
    } else {
        const std::uint32_t mant_odd = (b >> (23 - WM)) & 1u;
        b += ((Bias - 127u) << 23) + ((1u << (22 - WM)) - 1u);  // unsigned wrap is intended
        b += mant_odd;
        r = static_cast<std::uint8_t>(b >> (23 - WM));
    }
    return static_cast<std::uint8_t>(r | (sign >> 24));
}
inline std::uint8_t f32_to_f8e4m3fnuz(float f) { return f32_to_f8fnuz<3, 0x87, 0x8C, 0x78, 8>(f); }
inline std::uint8_t f32_to_f8e5m2fnuz(float f) { return f32_to_f8fnuz<2, 0x8F, 0x85, 0x70, 16>(f); }

inline std::uint8_t f32_to_f8e8m0(float f) {
    const std::uint32_t b = f32_bits(f);
    std::uint32_t exponent = (b >> 23) & 0xFFu;
    if (exponent == 0xFF) return 0xFF;
    const bool g = (b & 0x400000u) != 0;
    const bool rest = (b & 0x3FFFFFu) != 0;
    const bool lsb = exponent > 0;
    if (g && (rest || lsb)) ++exponent;
    return static_cast<std::uint8_t>(exponent);
}

// ---- codecs: one struct per dtype, used by the templated run loops -------------------------------
// raw_t: the stored integer; wide_t: the exact intermediate (float for narrow floats, double for
// float64, int64/uint64 for integers and bool).
struct CodecF64 {
    using raw_t = std::uint64_t; using wide_t = double;
    static wide_t decode(raw_t r) { return f64_from_bits(r); }
};
struct CodecF32 {
    using raw_t = std::uint32_t; using wide_t = float;
    static wide_t decode(raw_t r) { return f32_from_bits(r); }
    static raw_t encode(float f) { return f32_bits(f); }
};
#define INSPECTOR_NARROW_FLOAT(NAME, RAW, DEC, ENC)                   \
    struct NAME {                                                      \
        using raw_t = RAW; using wide_t = float;                       \
        static wide_t decode(raw_t r) { return DEC(r); }               \
        static raw_t encode(float f) { return ENC(f); }                \
    };
INSPECTOR_NARROW_FLOAT(CodecF16, std::uint16_t, f16_to_f32, f32_to_f16)
INSPECTOR_NARROW_FLOAT(CodecBF16, std::uint16_t, bf16_to_f32, f32_to_bf16)
INSPECTOR_NARROW_FLOAT(CodecF8E4M3FN, std::uint8_t, f8e4m3fn_to_f32, f32_to_f8e4m3fn)
INSPECTOR_NARROW_FLOAT(CodecF8E5M2, std::uint8_t, f8e5m2_to_f32, f32_to_f8e5m2)
INSPECTOR_NARROW_FLOAT(CodecF8E4M3FNUZ, std::uint8_t, (f8fnuz_to_f32<4, 3>), f32_to_f8e4m3fnuz)
INSPECTOR_NARROW_FLOAT(CodecF8E5M2FNUZ, std::uint8_t, (f8fnuz_to_f32<5, 2>), f32_to_f8e5m2fnuz)
INSPECTOR_NARROW_FLOAT(CodecF8E8M0FNU, std::uint8_t, f8e8m0_to_f32, f32_to_f8e8m0)
#undef INSPECTOR_NARROW_FLOAT

template <class Stored, class Wide>
struct CodecInt {
    using raw_t = std::make_unsigned_t<Stored>; using wide_t = Wide;
    static wide_t decode(raw_t r) { return static_cast<wide_t>(static_cast<Stored>(r)); }
};
using CodecI64 = CodecInt<std::int64_t, std::int64_t>;
using CodecI32 = CodecInt<std::int32_t, std::int64_t>;
using CodecI16 = CodecInt<std::int16_t, std::int64_t>;
using CodecI8 = CodecInt<std::int8_t, std::int64_t>;
using CodecU64 = CodecInt<std::uint64_t, std::uint64_t>;
using CodecU32 = CodecInt<std::uint32_t, std::int64_t>;
using CodecU16 = CodecInt<std::uint16_t, std::int64_t>;
using CodecU8 = CodecInt<std::uint8_t, std::int64_t>;
struct CodecBool {
    using raw_t = std::uint8_t; using wide_t = std::int64_t;
    static wide_t decode(raw_t r) { return r != 0; }
};

// Calls f(Codec{}) for the codec of `d`.
template <class F>
decltype(auto) visit(DType d, F&& f) {
    switch (d) {
        case DType::F64: return f(CodecF64{});
        case DType::F32: return f(CodecF32{});
        case DType::F16: return f(CodecF16{});
        case DType::BF16: return f(CodecBF16{});
        case DType::F8E4M3FN: return f(CodecF8E4M3FN{});
        case DType::F8E5M2: return f(CodecF8E5M2{});
        case DType::F8E4M3FNUZ: return f(CodecF8E4M3FNUZ{});
        case DType::F8E5M2FNUZ: return f(CodecF8E5M2FNUZ{});
        case DType::F8E8M0FNU: return f(CodecF8E8M0FNU{});
        case DType::I64: return f(CodecI64{});
        case DType::I32: return f(CodecI32{});
        case DType::I16: return f(CodecI16{});
        case DType::I8: return f(CodecI8{});
        case DType::U64: return f(CodecU64{});
        case DType::U32: return f(CodecU32{});
        case DType::U16: return f(CodecU16{});
        case DType::U8: return f(CodecU8{});
        case DType::Bool: return f(CodecBool{});
    }
    throw std::invalid_argument("unknown dtype");
}

template <class Codec>
inline typename Codec::raw_t load_raw(const std::uint8_t* p, bool swap) {
    typename Codec::raw_t r;
    std::memcpy(&r, p, sizeof r);
    return swap ? bswap(r) : r;
}

// Decodes n elements at p, `step` bytes apart, into out. Out is float, double or an integer type.
template <class Codec, class Out>
inline void decode_run(const std::uint8_t* p, std::int64_t step, std::size_t n, bool swap, Out* out) {
    using R = typename Codec::raw_t;
    if (!swap && step == static_cast<std::int64_t>(sizeof(R))) {
        for (std::size_t i = 0; i < n; ++i) {
            R r;
            std::memcpy(&r, p + i * sizeof(R), sizeof(R));
            out[i] = static_cast<Out>(Codec::decode(r));
        }
        return;
    }
    for (std::size_t i = 0; i < n; ++i, p += step) out[i] = static_cast<Out>(Codec::decode(load_raw<Codec>(p, swap)));
}

// One element of dtype `d` as a double (slow path, for tests and fill values).
inline double decode_one(DType d, const std::uint8_t* p, bool swap = false) {
    return visit(d, [&](auto c) {
        using C = decltype(c);
        return static_cast<double>(C::decode(load_raw<C>(p, swap)));
    });
}

}  // namespace inspector::num
