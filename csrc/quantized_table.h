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

// Smallest float >= v (v finite or +inf).
inline float float_up(double v) {
    float f = float(v);
    if (double(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
    return f;
}
inline float float_down(double v) {
    float f = float(v);
    if (double(f) > v) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
    return f;
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
        double maxabs = 0;
        bool finite = true;
        for (size_t j = 0; j < d_; ++j) {
            finite = finite && std::isfinite(x[j]);
            maxabs = std::max(maxabs, std::fabs(double(x[j])));
        }
        int8_t* base = codes_.data() + row / kQTileRows * tile_bytes() + 2 * (row % kQTileRows);
        if (!finite || maxabs > kQuantMaxAbs || maxabs == 0) {
            for (size_t j = 0; j < d_; ++j) base[j / 2 * 2 * kQTileRows + (j & 1)] = 0;
            s_[row] = 0.f;
            h_[row] = 0.f;
            r_[row] = maxabs == 0 && finite ? 0.f : std::numeric_limits<float>::infinity();
            return;
        }
        // x^ = s * c is then exact in double, so r below only carries the
        // (relative) rounding of a double sum, covered by the 1e-12.
        const float s = float(maxabs / 127.0);
        double err2 = 0, c2 = 0;
        for (size_t j = 0; j < d_; ++j) {
            double c = std::nearbyint(double(x[j]) / s);
            c = std::min(127.0, std::max(-127.0, c));
            base[j / 2 * 2 * kQTileRows + (j & 1)] = int8_t(c);
            const double e = double(x[j]) - double(s) * c;
            err2 += e * e;
            c2 += c * c;
        }
        s_[row] = s;
        r_[row] = float_up(std::sqrt(err2) * (1 + 1e-12));
        h_[row] = float(double(s) * double(s) * c2);
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
