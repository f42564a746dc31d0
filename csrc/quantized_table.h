// A compact int8 copy of a float32 row table, for the first pass of the
// two-pass search (two_pass.h), with a per-row bound on its error.
//
// Row x is stored as codes c (|c_j| <= 127) and one scale s, x^ = s * c.
// A per-row scale, not a per-dimension range fixed at the first add: rows
// added later never saturate, so the filter stays as tight as on day one and
// nothing is ever re-quantized. Per row we also keep
//   r = ||x - x^||  (rounded up: the bound everything else rests on)
//   h = ||x^||^2
// Rows with non-finite or huge values (|x_j| > kQuantMaxAbs) get r = inf,
// which makes the search treat them as "could be anything".
//
// Codes live in tiles of kQTileRows rows with dimensions taken in pairs (the
// layout of KernelTable::tile_dots), so one tile is one sequential read.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "distances.h"

namespace chroma {

// Beyond this the float arithmetic of the bounds could overflow.
constexpr double kQuantMaxAbs = 1e15;

// The next float above finite f (std::nextafter is a library call, and
// the bounds take this step for about half their rows).
inline float step_up(float f) {
    if (f == 0) return std::numeric_limits<float>::denorm_min();
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    bits += f > 0 ? 1u : ~0u;
    std::memcpy(&f, &bits, 4);
    return f;
}

// Smallest float >= v, largest float <= v.
inline float float_up(double v) {
    const float f = float(v);
    return double(f) < v ? step_up(f) : f;
}
inline float float_down(double v) {
    const float f = float(v);
    return double(f) > v ? -step_up(-f) : f;
}

// The scale, error bound and code norm of one quantized row (see QuantTable).
struct RowCode {
    float scale, err, norm2;
};

// Quantizes row x: the code of dimension j goes to codes[j / 2 * pair_stride
// + j % 2] (2 for a row-major row, 2 * kQTileRows inside a tile); an odd d
// gets a zero pad code, so a kernel may always take dimensions in pairs.
inline RowCode quantize_row(const float* x, size_t d, int8_t* codes, size_t pair_stride) {
    auto code = [&](size_t j) -> int8_t& { return codes[j / 2 * pair_stride + (j & 1)]; };
    if (d & 1) code(d) = 0;
    double maxabs = 0;
    bool finite = true;
    for (size_t j = 0; j < d; ++j) {
        finite = finite && std::isfinite(x[j]);
        maxabs = std::max(maxabs, std::fabs(double(x[j])));
    }
    if (!finite || maxabs > kQuantMaxAbs || maxabs == 0) {
        for (size_t j = 0; j < d; ++j) code(j) = 0;
        const float err = maxabs == 0 && finite ? 0.f : std::numeric_limits<float>::infinity();
        return {0.f, err, 0.f};
    }
    // x^ = s * c is then exact in double, so r below only carries the
    // (relative) rounding of a double sum, covered by the 1e-12.
    const float s = float(maxabs / 127.0);
    const double inv = 1.0 / double(s);
    // Any code is correct (the error below is that of the code chosen); the
    // nearest one is found by adding and subtracting 1.5 * 2^52 (exact for
    // |v| < 2^51), as baseline x86-64 has no rounding instruction and
    // std::nearbyint would be a library call per value.
    constexpr double kRound = 6755399441055744.0;
    double err2 = 0, c2 = 0;
    for (size_t j = 0; j < d; ++j) {
        double c = (double(x[j]) * inv + kRound) - kRound;
        c = std::min(127.0, std::max(-127.0, c));
        code(j) = int8_t(c);
        const double e = double(x[j]) - double(s) * c;
        err2 += e * e;
        c2 += c * c;
    }
    return {s, float_up(std::sqrt(err2) * (1 + 1e-12)), float(double(s) * double(s) * c2)};
}

class QuantTable {
   public:
    explicit QuantTable(size_t d) : d_(d), npairs_((d + 1) / 2) {}

    size_t npairs() const { return npairs_; }
    size_t tile_bytes() const { return npairs_ * 2 * kQTileRows; }
    const int8_t* tiles() const { return codes_.data(); }
    const float* scale() const { return s_.data(); }
    const float* err() const { return r_.data(); }
    const float* norm2() const { return h_.data(); }

    void reserve(size_t n) {
        codes_.reserve((n + kQTileRows - 1) / kQTileRows * tile_bytes());
        s_.reserve(n);
        r_.reserve(n);
        h_.reserve(n);
    }

    void resize(size_t n) {
        codes_.resize((n + kQTileRows - 1) / kQTileRows * tile_bytes());
        s_.resize(n);
        r_.resize(n);
        h_.resize(n);
    }

    void set(size_t row, const float* x) {
        const RowCode c = quantize_row(x, d_, codes_.data() + row / kQTileRows * tile_bytes() + 2 * (row % kQTileRows),
                                       2 * kQTileRows);
        s_[row] = c.scale;
        r_[row] = c.err;
        h_[row] = c.norm2;
    }

    void move(size_t from, size_t to) {
        const int8_t* src = codes_.data() + from / kQTileRows * tile_bytes() + 2 * (from % kQTileRows);
        int8_t* dst = codes_.data() + to / kQTileRows * tile_bytes() + 2 * (to % kQTileRows);
        for (size_t p = 0; p < npairs_; ++p) {
            dst[p * 2 * kQTileRows] = src[p * 2 * kQTileRows];
            dst[p * 2 * kQTileRows + 1] = src[p * 2 * kQTileRows + 1];
        }
        s_[to] = s_[from];
        r_[to] = r_[from];
        h_[to] = h_[from];
    }

    size_t memory_bytes() const {
        return codes_.capacity() + (s_.capacity() + r_.capacity() + h_.capacity()) * sizeof(float);
    }

   private:
    const size_t d_, npairs_;
    std::vector<int8_t> codes_;
    std::vector<float> s_, r_, h_;
};

}  // namespace chroma
