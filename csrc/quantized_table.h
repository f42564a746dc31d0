// Compact copies of float32 rows for the first pass of the two-pass searches
// (two_pass.h), each with a per-row bound on its error.
//
// Row x is stored as integer codes c and one scale s, x^ = s * c: int8 codes
// (|c_j| <= 127) beside each graph node (quantize_row), 4-bit codes
// (|c_j| <= 7) in the flat index's QuantTable.
// A per-row scale, not a per-dimension range fixed at the first add: rows
// added later never saturate, so the filter stays as tight as on day one and
// nothing is ever re-quantized. Per row we also keep
//   r = ||x - x^||  (rounded up: the bound everything else rests on)
//   ||x^||          (rounded up)
// Rows with non-finite or huge values (|x_j| > kQuantMaxAbs) get r = inf,
// which makes the search treat them as "could be anything".
//
// QuantTable keeps the 4-bit codes in tiles of kQTileRows rows (the layout of
// KernelTable::nibble_dots), so one tile is one sequential read: an eighth of
// the float table's bytes. Four bits suffice because that pass only has to
// rule rows out against exact distances (two_pass_search); about 1.5% of the
// rows of 100k x 128 Gaussian data survive it.
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
    float scale, err, norm;
};

// Quantizes row x to integer codes |c_j| <= cmax with s = max|x_j| / cmax,
// handing each to store(j, c); a row that cannot be quantized gets zero codes.
template <class Store>
inline RowCode quantize_codes(const float* x, size_t d, int cmax, const Store& store) {
    double maxabs = 0;
    bool finite = true;
    for (size_t j = 0; j < d; ++j) {
        finite = finite && std::isfinite(x[j]);
        maxabs = std::max(maxabs, std::fabs(double(x[j])));
    }
    if (!finite || maxabs > kQuantMaxAbs || maxabs == 0) {
        for (size_t j = 0; j < d; ++j) store(j, 0);
        const float err = maxabs == 0 && finite ? 0.f : std::numeric_limits<float>::infinity();
        return {0.f, err, 0.f};
    }
    // x^ = s * c is then exact in double, so r below only carries the
    // (relative) rounding of a double sum, covered by the 1e-12.
    const float s = float(maxabs / cmax);
    const double inv = 1.0 / double(s);
    // Any code is correct (the error below is that of the code chosen); the
    // nearest one is found by adding and subtracting 1.5 * 2^52 (exact for
    // |v| < 2^51), as baseline x86-64 has no rounding instruction and
    // std::nearbyint would be a library call per value.
    constexpr double kRound = 6755399441055744.0;
    double err2 = 0, c2 = 0;
    for (size_t j = 0; j < d; ++j) {
        double c = (double(x[j]) * inv + kRound) - kRound;
        c = std::min(double(cmax), std::max(-double(cmax), c));
        store(j, int(c));
        const double e = double(x[j]) - double(s) * c;
        err2 += e * e;
        c2 += c * c;
    }
    return {s, float_up(std::sqrt(err2) * (1 + 1e-12)), float_up(double(s) * std::sqrt(c2) * (1 + 1e-12))};
}

// int8 codes, row-major; an odd d gets a zero pad code, so a kernel may
// always take dimensions in pairs.
inline RowCode quantize_row(const float* x, size_t d, int8_t* codes) {
    if (d & 1) codes[d] = 0;
    return quantize_codes(x, d, 127, [&](size_t j, int c) { codes[j] = int8_t(c); });
}

class QuantTable {
   public:
    explicit QuantTable(size_t d)
        : d_(d), ngroups_((d + kNibbleGroup - 1) / kNibbleGroup) {}

    size_t ngroups() const { return ngroups_; }
    size_t tile_bytes() const { return ngroups_ * kNibbleGroupBytes; }
    const uint8_t* tiles() const { return codes_.data(); }
    const float* scale() const { return s_.data(); }
    const float* err() const { return r_.data(); }
    const float* norm() const { return norm_.data(); }

    void reserve(size_t n) {
        codes_.reserve((n + kQTileRows - 1) / kQTileRows * tile_bytes());
        s_.reserve(n);
        r_.reserve(n);
        norm_.reserve(n);
    }

    void resize(size_t n) {
        codes_.resize((n + kQTileRows - 1) / kQTileRows * tile_bytes());
        s_.resize(n);
        r_.resize(n);
        norm_.resize(n);
    }

    void set(size_t row, const float* x) {
        // stored as c + 8 (see KernelTable::nibble_dots); padding codes are 0
        for (size_t j = d_; j < ngroups_ * kNibbleGroup; ++j) put(row, j, 8);
        const RowCode c = quantize_codes(x, d_, 7, [&](size_t j, int code) { put(row, j, unsigned(code + 8)); });
        s_[row] = c.scale;
        r_[row] = c.err;
        norm_[row] = c.norm;
    }

    void move(size_t from, size_t to) {
        for (size_t j = 0; j < ngroups_ * kNibbleGroup; ++j) put(to, j, get(from, j));
        s_[to] = s_[from];
        r_[to] = r_[from];
        norm_[to] = norm_[from];
    }

    size_t memory_bytes() const {
        return codes_.capacity() + (s_.capacity() + r_.capacity() + norm_.capacity()) * sizeof(float);
    }

   private:
    // The byte holding dimension j of `row`, and the shift of its nibble.
    uint8_t& byte(size_t row, size_t j, unsigned& shift) {
        shift = unsigned(j & 1) * 4;
        return codes_[row / kQTileRows * tile_bytes() + j / kNibbleGroup * kNibbleGroupBytes +
                      4 * (row % kQTileRows) + (j % kNibbleGroup) / 2];
    }
    void put(size_t row, size_t j, unsigned u) {
        unsigned shift;
        uint8_t& b = byte(row, j, shift);
        b = uint8_t((b & ~(15u << shift)) | (u << shift));
    }
    unsigned get(size_t row, size_t j) {
        unsigned shift;
        return (byte(row, j, shift) >> shift) & 15u;
    }

    const size_t d_, ngroups_;
    std::vector<uint8_t> codes_;
    std::vector<float> s_, r_, norm_;
};

}  // namespace chroma
