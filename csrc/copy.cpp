// copy_region()/copy_cast(): the destination's flat index range is cut into fixed chunks; each
// chunk walks its rows, filling outside the region and converting runs of the source inside it,
// then its CRC is taken while the bytes are still in cache. Chunk CRCs are joined in order.
// float32 -> bfloat16/float16 runs through the AVX2 encoders (cast_simd.hpp) when available.
#include "copy.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "cast_simd.hpp"
#include "crc32.hpp"

namespace inspector::num {
namespace {

constexpr std::int64_t kChunkBytes = 1 << 20;  // destination bytes per task
constexpr std::size_t kBlock = 4096;           // elements converted at a time
constexpr std::size_t kCrcStep = 64 << 10;     // CRC the output every 64 KiB, while it is hot

// Writes n values of intermediate type W as dtype `to` at out (contiguous).
template <class W>
void encode_run(DType to, const W* in, std::size_t n, std::uint8_t* out) {
    if constexpr (std::is_same_v<W, float>) {
        if (encode_f32_simd(to, reinterpret_cast<const std::uint8_t*>(in), n, out)) return;
    }
    visit(to, [&](auto codec) {
        using C = decltype(codec);
        using R = typename C::raw_t;
        for (std::size_t i = 0; i < n; ++i) {
            R r;
            if constexpr (std::is_same_v<C, CodecF64>) {
                const auto d = static_cast<double>(in[i]);
                std::memcpy(&r, &d, sizeof r);
            } else if constexpr (std::is_same_v<C, CodecBool>) {
                r = in[i] != 0 ? 1 : 0;
            } else if constexpr (std::is_floating_point_v<typename C::wide_t>) {
                r = C::encode(static_cast<float>(in[i]));  // double -> float -> narrow, as torch
            } else {
                r = static_cast<R>(in[i]);  // integers: modular; floats never get here (check_cast)
            }
            std::memcpy(out + i * sizeof(R), &r, sizeof(R));
        }
    });
}

// Converts strided source runs into contiguous destination bytes through a bounded buffer.
class Converter {
public:
    Converter(DType from, DType to, bool swap) : from_(from), to_(to), swap_(swap) {}

    void run(const std::uint8_t* src, std::int64_t step, std::size_t n, std::uint8_t* out) {
        if (from_ == to_) return copy_same(src, step, n, out);
        if (from_ == DType::F32 && !swap_ && step == 4 && encode_f32_simd(to_, src, n, out)) return;
        const std::size_t out_item = info(to_).itemsize;
        visit(from_, [&](auto codec) {
            using C = decltype(codec);
            using W = typename C::wide_t;
            W* buf = buffer<W>();
            while (n > 0) {
                const std::size_t k = std::min(n, kBlock);
                decode_run<C>(src, step, k, swap_, buf);
                encode_run(to_, buf, k, out);
                src += static_cast<std::int64_t>(k) * step;
                out += k * out_item;
                n -= k;
            }
        });
    }

private:
    void copy_same(const std::uint8_t* src, std::int64_t step, std::size_t n, std::uint8_t* out) {
        const std::size_t item = info(from_).itemsize;
        if (!swap_ && step == static_cast<std::int64_t>(item)) {
            std::memcpy(out, src, n * item);
            return;
        }
        visit(from_, [&](auto codec) {
            using C = decltype(codec);
            for (std::size_t i = 0; i < n; ++i, src += step) {
                const auto r = load_raw<C>(src, swap_);
                std::memcpy(out + i * sizeof r, &r, sizeof r);
            }
        });
    }

    template <class W>
    W* buffer() {
        if constexpr (std::is_same_v<W, float>) return grow(f_);
        else if constexpr (std::is_same_v<W, double>) return grow(d_);
        else if constexpr (std::is_same_v<W, std::int64_t>) return grow(i_);
        else return grow(u_);
    }
    template <class T>
    static T* grow(std::vector<T>& v) {
        v.resize(kBlock);
        return v.data();
    }

    DType from_, to_;
    bool swap_;
    std::vector<float> f_;
    std::vector<double> d_;
    std::vector<std::int64_t> i_;
    std::vector<std::uint64_t> u_;
};

// One axis of the joint (source, destination, region) iteration space.
struct Axis {
    std::int64_t dshape, count, sstart, dstart, sstride, sshape;
};

// Drops unit axes and merges an axis into the previous one when the region covers it entirely
// and the source is contiguous across the pair: a plain cast becomes one long run.
// A dropped unit axis moves src.offset to the element it selects.
std::vector<Axis> joint_axes(View& src, const Region& r) {
    std::vector<Axis> out;
    for (std::size_t i = 0; i < src.shape.size(); ++i) {
        const Axis ax{r.dst_shape[i], r.count[i], r.src_start[i], r.dst_start[i], src.strides[i], src.shape[i]};
        if (ax.dshape == 1 && ax.count == 1) {
            src.offset += ax.sstart * ax.sstride;
            continue;
        }
        if (!out.empty()) {
            Axis& b = out.back();
            const bool whole = ax.count == ax.dshape && ax.count == ax.sshape && ax.sstart == 0 && ax.dstart == 0;
            std::int64_t span = 0;  // checked: at the edge of int64 the axes simply stay apart
            if (whole && !__builtin_mul_overflow(ax.sstride, ax.count, &span) && b.sstride == span) {
                b = Axis{b.dshape * ax.dshape, b.count * ax.count, b.sstart * ax.count, b.dstart * ax.dshape,
                         ax.sstride, b.sshape * ax.count};
                continue;
            }
        }
        out.push_back(ax);
    }
    if (out.empty()) out.push_back(Axis{1, 1, 0, 0, 1, 1});
    return out;
}

struct Plan {
    const View* src;
    std::vector<Axis> axes;
    bool empty_region;
    std::uint8_t* dst;  // start of the destination tensor
    DType dst_dtype;
    std::vector<std::uint8_t> fill;  // one encoded element
    bool fill_zero;
};

void fill_run(const Plan& p, std::uint8_t* out, std::int64_t n) {
    if (n <= 0) return;
    const std::size_t item = p.fill.size();
    if (p.fill_zero) {
        std::memset(out, 0, static_cast<std::size_t>(n) * item);
        return;
    }
    for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) std::memcpy(out + i * item, p.fill.data(), item);
}

// Where destination row `row` reads from: false when the row lies outside the region, else the
// source element offset of the region's first column in that row.
bool row_source(const Plan& p, std::int64_t row, std::int64_t& src_elem) {
    if (p.empty_region) return false;
    src_elem = p.src->offset;
    for (std::size_t k = p.axes.size() - 1; k-- > 0;) {
        const Axis& ax = p.axes[k];
        const std::int64_t o = row % ax.dshape - ax.dstart;
        row /= ax.dshape;
        if (o < 0 || o >= ax.count) return false;
        src_elem += (ax.sstart + o) * ax.sstride;
    }
    return true;
}

// Destination elements [begin, end) of the flat index; returns the CRC of their bytes.
std::uint32_t copy_chunk(const Plan& p, std::int64_t begin, std::int64_t end) {
    const View& src = *p.src;
    const auto src_item = static_cast<std::int64_t>(info(src.dtype).itemsize);
    const auto item = static_cast<std::int64_t>(p.fill.size());
    const Axis& in = p.axes.back();
    Converter convert(src.dtype, p.dst_dtype, src.byteswap);
    std::uint8_t* crc_done = p.dst + begin * item;
    std::uint32_t crc = 0;
    const std::int64_t max_piece = std::max<std::int64_t>(1, static_cast<std::int64_t>(kCrcStep) / item);
    for (std::int64_t idx = begin; idx < end;) {
        const std::int64_t row = idx / in.dshape, col = idx % in.dshape;
        const std::int64_t stop = std::min(in.dshape, col + std::min(end - idx, max_piece));
        std::uint8_t* out = p.dst + idx * item;
        std::int64_t src_elem = 0;
        if (!row_source(p, row, src_elem)) {
            fill_run(p, out, stop - col);
        } else {
            const std::int64_t c0 = std::max(col, in.dstart), c1 = std::min(stop, in.dstart + in.count);
            fill_run(p, out, std::min(stop, in.dstart) - col);
            if (c1 > c0) {
                const std::int64_t first = src_elem + (in.sstart + c0 - in.dstart) * in.sstride;
                convert.run(src.data + first * src_item, in.sstride * src_item, static_cast<std::size_t>(c1 - c0),
                            p.dst + (row * in.dshape + c0) * item);
            }
            const std::int64_t tail = std::max(col, in.dstart + in.count);
            fill_run(p, p.dst + (row * in.dshape + tail) * item, stop - tail);
        }
        idx += stop - col;
        std::uint8_t* written = p.dst + idx * item;
        if (static_cast<std::size_t>(written - crc_done) >= kCrcStep || idx == end) {
            crc = crc32(crc_done, static_cast<std::size_t>(written - crc_done), crc);
            crc_done = written;
        }
    }
    return crc;
}

std::vector<std::uint8_t> encode_fill(double fill, DType to) {
    std::vector<std::uint8_t> out(info(to).itemsize);
    if (info(to).kind == Kind::Float) {
        encode_run(to, &fill, 1, out.data());
        return out;
    }
    if (!std::isfinite(fill) || fill != std::trunc(fill) || std::fabs(fill) >= 9.2e18)
        throw std::invalid_argument("fill value " + std::to_string(fill) + " is not an integer for dtype " +
                                    info(to).name);
    const auto v = static_cast<std::int64_t>(fill);
    encode_run(to, &v, 1, out.data());
    return out;
}

void check_region(const View& src, const Region& r) {
    const std::size_t rank = src.shape.size();
    if (r.dst_shape.size() != rank || r.src_start.size() != rank || r.dst_start.size() != rank ||
        r.count.size() != rank)
        throw std::invalid_argument("copy region: dst_shape, src_start, dst_start and count need " +
                                    std::to_string(rank) + " entries (the source's rank)");
    for (std::size_t i = 0; i < rank; ++i) {
        const std::string axis = "copy region axis " + std::to_string(i) + ": ";
        if (r.dst_shape[i] < 0 || r.count[i] < 0 || r.src_start[i] < 0 || r.dst_start[i] < 0)
            throw std::invalid_argument(axis + "negative size or start");
        if (r.count[i] > src.shape[i] - r.src_start[i])
            throw std::invalid_argument(axis + "source range [" + std::to_string(r.src_start[i]) + ", " +
                                        std::to_string(r.src_start[i] + r.count[i]) + ") exceeds size " +
                                        std::to_string(src.shape[i]));
        if (r.count[i] > r.dst_shape[i] - r.dst_start[i])
            throw std::invalid_argument(axis + "destination range [" + std::to_string(r.dst_start[i]) + ", " +
                                        std::to_string(r.dst_start[i] + r.count[i]) + ") exceeds size " +
                                        std::to_string(r.dst_shape[i]));
    }
}

// Throws unless [src begin, src end) and the destination's bytes are disjoint (both non-empty).
void check_disjoint(const View& src, const Extent& read, const CopyTarget& dst, std::uint64_t nbytes) {
    if (read.end == read.begin || nbytes == 0) return;
    const auto s0 = reinterpret_cast<std::uintptr_t>(src.data) + read.begin;
    const auto s1 = reinterpret_cast<std::uintptr_t>(src.data) + read.end;
    const auto d0 = reinterpret_cast<std::uintptr_t>(dst.data) + dst.offset;
    const auto d1 = d0 + nbytes;
    if (s0 < d1 && d0 < s1)
        throw std::invalid_argument("source and destination overlap: the source reads bytes [" +
                                    std::to_string(read.begin) + ", " + std::to_string(read.end) +
                                    ") of its buffer, the destination writes " + std::to_string(nbytes) +
                                    " bytes over them");
}

}  // namespace

void check_cast(DType from, DType to) {
    const Kind f = info(from).kind, t = info(to).kind;
    if (f == Kind::Float && (t == Kind::Signed || t == Kind::Unsigned))
        throw std::invalid_argument(std::string("casting ") + info(from).name + " to " + info(to).name +
                                    " is not supported (floating to integer loses values)");
}

std::uint32_t copy_region(const View& src_in, const CopyTarget& dst, const Region& region_in, int threads,
                          const Watch& watch) {
    const Extent read = check_view(src_in, "source");
    check_cast(src_in.dtype, dst.dtype);
    // A scalar is copied as a one-element vector.
    View src = src_in;
    Region region = region_in;
    if (src.shape.empty() && region.dst_shape.empty() && region.src_start.empty() && region.dst_start.empty() &&
        region.count.empty()) {
        src.shape = {1};
        src.strides = {1};
        region.dst_shape = {1};
        region.src_start = {0};
        region.dst_start = {0};
        region.count = {1};
    }
    check_region(src, region);
    const auto item = static_cast<std::int64_t>(info(dst.dtype).itemsize);
    const auto nbytes = static_cast<std::int64_t>(logical_bytes(region.dst_shape, info(dst.dtype).itemsize, "destination"));
    const std::int64_t n = nbytes / item;
    if (dst.offset > dst.size || static_cast<std::uint64_t>(nbytes) > dst.size - dst.offset)
        throw std::invalid_argument("destination: " + std::to_string(nbytes) + " bytes at offset " +
                                    std::to_string(dst.offset) + " do not fit a buffer of " +
                                    std::to_string(dst.size) + " bytes");
    check_disjoint(src_in, read, dst, static_cast<std::uint64_t>(nbytes));
    if (n == 0) {
        if (watch) watch(0, 0);
        return 0;
    }

    std::vector<Axis> axes = joint_axes(src, region);
    Plan p{&src, std::move(axes), false, dst.data + dst.offset, dst.dtype, encode_fill(region.fill, dst.dtype), false};
    p.empty_region = std::any_of(region.count.begin(), region.count.end(), [](std::int64_t c) { return c == 0; });
    p.fill_zero = std::all_of(p.fill.begin(), p.fill.end(), [](std::uint8_t b) { return b == 0; });

    const std::int64_t per_task = std::max<std::int64_t>(1, kChunkBytes / item);
    const std::int64_t tasks = (n + per_task - 1) / per_task;
    std::vector<std::uint32_t> crcs(static_cast<std::size_t>(tasks));
    const auto task = [&](std::size_t t, unsigned) {
        const std::int64_t begin = static_cast<std::int64_t>(t) * per_task, end = std::min(n, begin + per_task);
        crcs[t] = copy_chunk(p, begin, end);
        return static_cast<std::uint64_t>((end - begin) * item);
    };
    parallel_for(crcs.size(), threads > 0 ? static_cast<unsigned>(threads) : 0U, static_cast<std::uint64_t>(nbytes),
                 task, watch);
    std::uint32_t crc = 0;
    for (std::int64_t t = 0; t < tasks; ++t) {
        const std::int64_t len = std::min(n, (t + 1) * per_task) - t * per_task;
        crc = crc32_combine(crc, crcs[static_cast<std::size_t>(t)], static_cast<std::uint64_t>(len * item));
    }
    return crc;
}

std::uint32_t copy_cast(const View& src, const CopyTarget& dst, int threads, const Watch& watch) {
    Region r;
    r.dst_shape = src.shape;
    r.src_start.assign(src.shape.size(), 0);
    r.dst_start.assign(src.shape.size(), 0);
    r.count = src.shape;
    return copy_region(src, dst, r, threads, watch);
}

}  // namespace inspector::num
