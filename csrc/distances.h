// Distance kernels, one set per SIMD path, selected at run time.
//
// Every path is compiled into the same binary. The x86 paths carry
// __attribute__((target(...))) instead of global -m flags, so the module still
// loads on a CPU without AVX2; only the selected path's code ever executes.
//
// Two kernel shapes cover all query counts:
//  * vertical:   W queries packed transposed (one per SIMD lane); rows are
//                streamed and each row element is broadcast against the lane
//                group. Every lane does useful work and no horizontal reduction
//                is needed, so this is the batch kernel.
//  * horizontal: one query against several rows, vectorized along d, reduced at
//                the end. Used when there are too few queries to fill the lanes.
// Rows come in as pointers so the same kernels serve a contiguous table and a
// filtered (allowed-list) subset without gathering copies.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#define CHROMA_X86 1
#include <immintrin.h>

#include "cpu_features.h"
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

// SSE2 is part of x86-64; MSVC does not define __SSE2__ for x64 targets.
#if defined(__SSE2__) || defined(_M_X64)
#define CHROMA_SSE2 1
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

// GCC and Clang (Linux, macOS) build the AVX2 and AVX-512 paths with
// per-function target attributes (the CPU check is cpu_features.h). MSVC
// has no target attributes, so a Windows build carries the
// portable path only (correct everywhere, not as fast); aarch64 builds carry
// the portable path, which the compiler vectorizes for NEON.
#if defined(CHROMA_X86) && (defined(__GNUC__) || defined(__clang__))
#define CHROMA_HAVE_AVX2 1
#define CHROMA_HAVE_AVX512 1
#define CHROMA_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define CHROMA_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#endif

namespace chroma {

enum class Metric { L2, IP, Cosine };

inline Metric parse_metric(const std::string& s) {
    if (s == "l2") return Metric::L2;
    if (s == "ip") return Metric::IP;
    if (s == "cosine") return Metric::Cosine;
    throw std::invalid_argument("unknown space '" + s + "'; expected one of 'l2', 'ip', 'cosine'");
}

inline const char* metric_name(Metric m) {
    switch (m) {
        case Metric::L2: return "l2";
        case Metric::IP: return "ip";
        default: return "cosine";
    }
}

// A vertical call covers `nrows` rows against one group of `lanes` queries.
//   xp     : the rows packed in tiles of `tile_rows` (see pack_panel); a tile
//            is read strictly sequentially, which keeps the hardware
//            prefetchers effective where 8+ separate row streams were not
//   qt     : d x lanes, qt[j*lanes + l] = query_l[j] (padding lanes are zero)
//   qscale : per lane 1/|q| (cosine only)
//   xscale : per row 1/|x| (cosine only)
//   thr    : per lane admission threshold; a candidate survives unless
//            dist >= thr, so NaN means "accept anything" (heap not full yet)
//   out    : nrows x lanes distances; mask[r] has bit l set for survivors.
using VerticalFn = void (*)(Metric, const float* xp, size_t nrows, size_t d,
                            const float* qt, const float* qscale, const float* xscale,
                            const float* thr, float* out, uint32_t* mask);
// One query against nrows rows; out[r] is the distance.
using HorizontalFn = void (*)(Metric, const float* const* rows, size_t nrows, size_t d,
                              const float* q, float qscale, const float* xscale, float* out);
// out[r] = 1/|row r|, or 0 for a zero row (its cosine similarity is then 0).
using InvNormsFn = void (*)(const float* const* rows, size_t nrows, size_t d, float* out);

// Compressed first pass of the two-pass search (quantized_table.h): 4-bit
// row codes u in [0, 15] (the code value is u - 8) in tiles of kQTileRows
// rows and groups of kNibbleGroup dimensions; within a tile, group g of row i
// is the 4 bytes at g * kNibbleGroupBytes + 4 * i, whose byte b holds
// dimension 8g + 2b in its low nibble and 8g + 2b + 1 in its high nibble.
// The query is int8, given per group as two int32 of four bytes each: qlo[g]
// holds dimensions 8g, 8g+2, 8g+4, 8g+6 and qhi[g] the odd ones.
// out[t*16 + i] = sum_j k_j u_j - bias, an exact integer (no rounding at all,
// which keeps the error bound of this pass down to the quantization alone).
constexpr size_t kQTileRows = 16;
constexpr size_t kNibbleGroup = 8;
constexpr size_t kNibbleGroupBytes = kQTileRows * kNibbleGroup / 2;
// Groups whose int16 partial sums the SIMD kernels add before widening:
// 4 x 2 x (2 x 15 x 127) = 30480 < 2^15.
constexpr size_t kNibbleBlock = 4;
constexpr size_t kQPrefetch = 1024;  // bytes ahead; 1-4 KiB measured alike
using NibbleDotsFn = void (*)(const uint8_t* tiles, size_t ntiles, size_t ngroups,
                              const int32_t* qlo, const int32_t* qhi, int32_t bias, int32_t* out);
// The same integer dot products for rows kept one by one (2 * npairs codes
// each, row-major, the pad code 0), as a graph index holds them beside each
// vector, against the int16 query q (2 * npairs values, the pad 0).
using RowDotsFn = void (*)(const int8_t* const* rows, size_t nrows, size_t npairs,
                           const int16_t* q, int32_t* out);

// Pass-1 lower bounds of the two-pass searches (the bound argument is in
// two_pass.h): row i's kernel distance provably exceeds tau whenever
// lb[i] > tau (ip, cosine) or lb[i] > l2_limit(tau) (l2, which bounds
// distances, not their squares). Written once as a plain loop and
// instantiated inside each path's target so the compiler vectorizes it for
// that ISA.
struct BoundArgs {
    bool l2;
    float sigma, qn2, qn, edelta, eta, gamma_f, tiny;
};
using LowerBoundsFn = void (*)(const BoundArgs& a, const int32_t* kdot, const float* scale,
                               const float* err, const float* norm, size_t n, float* lb);
// Writes to out, in increasing order, every i < n with !(lb[i] > limit) (NaN
// included) and returns their number. Nearly every row misses, so this is a
// compare per vector and a branch per hit.
using SelectWithinFn = size_t (*)(const float* lb, size_t n, float limit, uint32_t* out);

// Index of the lowest set bit of a non-zero mask.
inline unsigned lowest_set_bit(uint32_t mask) {
#if defined(_MSC_VER) && !defined(__clang__)
    unsigned long index;
    _BitScanForward(&index, mask);
    return unsigned(index);
#else
    return unsigned(__builtin_ctz(mask));
#endif
}

#if defined(__GNUC__) || defined(__clang__)
#define CHROMA_INLINE inline __attribute__((always_inline))
#else
#define CHROMA_INLINE inline
#endif

// N[i] = ||x^|| rounded up; its square is within eta of ||x^||^2.
CHROMA_INLINE void lower_bounds_generic(const BoundArgs& a, const int32_t* kdot, const float* S,
                                        const float* R, const float* N, size_t n, float* lb) {
    const float sig = a.sigma, qn2 = a.qn2, qn = a.qn, ed = a.edelta, eta = a.eta, tiny = a.tiny;
    if (a.l2) {
        for (size_t i = 0; i < n; ++i) {
            // ||q - x^||^2 >= lhs (its float error is inside e), and
            // sqrt(lhs) - r > root implies ||q - x|| > root >= sqrt(tau'),
            // i.e. a kernel distance > tau. The 4e-6 absorbs the rounding of
            // these few float operations.
            const float dot = S[i] * (sig * float(kdot[i])), h = N[i] * N[i];
            const float a2 = qn2 + h - 2 * dot;
            const float e = eta * (qn2 + h + 2 * std::fabs(dot)) + 2 * ed * N[i] + tiny;
            const float lhs = a2 - e;
            lb[i] = std::sqrt((lhs > 0 ? lhs : 0.f) * (1 - 4e-6f)) - R[i];
        }
    } else {
        const float gf = a.gamma_f;
        for (size_t i = 0; i < n; ++i) {
            // 1 - q.x >= (1 - dot) - g and the kernel's error is inside g.
            const float r = R[i], dot = S[i] * (sig * float(kdot[i]));
            const float hn = N[i], xn = hn + r;
            const float g =
                (qn * r + ed * hn + gf * qn * xn + eta * (1 + std::fabs(dot) + qn * xn) + tiny) *
                (1 + 1e-5f);
            lb[i] = (1 - dot) - g;
        }
    }
}

struct KernelTable {
    const char* name;
    size_t lanes;
    size_t tile_rows;
    VerticalFn vertical;
    HorizontalFn horizontal;
    InvNormsFn inv_norms;
    NibbleDotsFn nibble_dots;
    RowDotsFn row_dots;
    LowerBoundsFn lower_bounds;
    SelectWithinFn select_within;
};

// Packs rows into tiles of R: tile t holds rows [tR, tR+R) interleaved,
// panel[(t*d + j)*R + i] = row_{tR+i}[j]. A short last tile repeats its last
// row so kernels never branch on the row count inside the d loop.
inline void pack_panel(const float* const* rows, size_t nrows, size_t d, size_t R, float* panel) {
    for (size_t t = 0; t * R < nrows; ++t)
        for (size_t i = 0; i < R; ++i) {
            const size_t r = t * R + i < nrows ? t * R + i : nrows - 1;
            const float* src = rows[r];
            float* dst = panel + t * d * R + i;
            for (size_t j = 0; j < d; ++j) dst[j * R] = src[j];
        }
}

inline float inv_norm_from_sumsq(float s) { return s > 0.f ? 1.f / std::sqrt(s) : 0.f; }

// Turns an accumulator into a distance. For l2 the accumulator already is the
// squared distance (summed directly, so identical vectors give exactly 0).
inline float finish_scalar(Metric m, float acc, float qs, float xs) {
    if (m == Metric::L2) return acc;
    if (m == Metric::IP) return 1.f - acc;
    return 1.f - acc * (qs * xs);
}

// ---------------------------------------------------------------------------
// portable: plain loops written so that -O3 vectorizes them for the baseline
// ISA (SSE2 on x86-64, NEON on aarch64).
namespace portable {

constexpr size_t W = 8;
constexpr size_t R = 4;

template <bool IsL2>
inline void vertical_impl(Metric metric, const float* xp, size_t nrows, size_t d,
                          const float* qt, const float* qscale, const float* xscale,
                          const float* thr, float* out, uint32_t* mask) {
    for (size_t r0 = 0; r0 < nrows; r0 += R) {
        const size_t nr = nrows - r0 < R ? nrows - r0 : R;
        const float* x = xp + r0 * d;
        float acc[R][W] = {};
        for (size_t j = 0; j < d; ++j) {
            const float* qv = qt + j * W;
            for (size_t i = 0; i < R; ++i) {
                const float xi = x[j * R + i];
                for (size_t l = 0; l < W; ++l) {
                    if (IsL2) {
                        const float t = qv[l] - xi;
                        acc[i][l] += t * t;
                    } else {
                        acc[i][l] += qv[l] * xi;
                    }
                }
            }
        }
        for (size_t i = 0; i < nr; ++i) {
            const float xs = xscale ? xscale[r0 + i] : 1.f;
            float* o = out + (r0 + i) * W;
            uint32_t mk = 0;
            for (size_t l = 0; l < W; ++l) {
                const float dist = finish_scalar(metric, acc[i][l], qscale ? qscale[l] : 1.f, xs);
                o[l] = dist;
                mk |= uint32_t(!(dist >= thr[l])) << l;
            }
            mask[r0 + i] = mk;
        }
    }
}

inline void vertical(Metric metric, const float* xp, size_t nrows, size_t d,
                     const float* qt, const float* qscale, const float* xscale, const float* thr,
                     float* out, uint32_t* mask) {
    if (metric == Metric::L2)
        vertical_impl<true>(metric, xp, nrows, d, qt, qscale, xscale, thr, out, mask);
    else
        vertical_impl<false>(metric, xp, nrows, d, qt, qscale, xscale, thr, out, mask);
}

// The canonical order of a horizontal distance, the same on every path, so a
// graph index built or searched on one path answers exactly as on another:
// 16 lanes, lane l takes dims l, l+16, l+32, ... with one fused multiply-add
// each (zeros past d), then lanes i and i+w are added for w = 8, 4, 2, 1.
// The SIMD paths keep this order with one 16-lane or two 8-lane accumulators.
template <bool IsL2>
inline float canonical_row(const float* x, const float* q, size_t d) {
    float s[16] = {};
    for (size_t j = 0; j < d; j += 16)
        for (size_t l = 0; l < 16; ++l) {
            const bool in = j + l < d;
            const float a = in ? x[j + l] : 0.f, b = in ? q[j + l] : 0.f;
            if (IsL2) {
                const float t = a - b;
                s[l] = std::fma(t, t, s[l]);
            } else {
                s[l] = std::fma(a, b, s[l]);
            }
        }
    for (size_t w = 8; w >= 1; w /= 2)
        for (size_t i = 0; i < w; ++i) s[i] += s[i + w];
    return s[0];
}

// 8 independent partial sums: without -ffast-math the compiler may not
// reassociate a single running sum, so the lanes have to be spelled out.
inline float sum_of_squares(const float* x, size_t d) {
    float s[8] = {};
    size_t j = 0;
    for (; j + 8 <= d; j += 8)
        for (size_t l = 0; l < 8; ++l) s[l] += x[j + l] * x[j + l];
    for (size_t l = 0; j < d; ++j, ++l) s[l] += x[j] * x[j];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

inline void horizontal(Metric metric, const float* const* rows, size_t nrows, size_t d,
                       const float* q, float qscale, const float* xscale, float* out) {
    if (metric == Metric::L2) {
        for (size_t r = 0; r < nrows; ++r) out[r] = canonical_row<true>(rows[r], q, d);
    } else {
        for (size_t r = 0; r < nrows; ++r)
            out[r] = finish_scalar(metric, canonical_row<false>(rows[r], q, d), qscale,
                                   xscale ? xscale[r] : 1.f);
    }
}

inline void inv_norms(const float* const* rows, size_t nrows, size_t d, float* out) {
    for (size_t r = 0; r < nrows; ++r)
        out[r] = inv_norm_from_sumsq(sum_of_squares(rows[r], d));
}

// The query bytes of group g, dimension by dimension (see NibbleDotsFn).
inline void unpack_query_group(int32_t lo, int32_t hi, int32_t* k) {
    for (size_t b = 0; b < 4; ++b) {
        k[2 * b] = int8_t(uint32_t(lo) >> (8 * b));
        k[2 * b + 1] = int8_t(uint32_t(hi) >> (8 * b));
    }
}

inline void nibble_dots(const uint8_t* tiles, size_t ntiles, size_t ngroups, const int32_t* qlo,
                        const int32_t* qhi, int32_t bias, int32_t* out) {
    for (size_t t = 0; t < ntiles; ++t) {
        int32_t acc[kQTileRows] = {};
        for (size_t g = 0; g < ngroups; ++g) {
            const uint8_t* c = tiles + (t * ngroups + g) * kNibbleGroupBytes;
            int32_t k[kNibbleGroup];
            unpack_query_group(qlo[g], qhi[g], k);
            for (size_t i = 0; i < kQTileRows; ++i)
                for (size_t b = 0; b < 4; ++b) {
                    const uint8_t v = c[4 * i + b];
                    acc[i] += int32_t(v & 15) * k[2 * b] + int32_t(v >> 4) * k[2 * b + 1];
                }
        }
        for (size_t i = 0; i < kQTileRows; ++i) out[t * kQTileRows + i] = acc[i] - bias;
    }
}

inline void row_dots(const int8_t* const* rows, size_t nrows, size_t npairs, const int16_t* q,
                     int32_t* out) {
    const size_t n = 2 * npairs;
    for (size_t r = 0; r < nrows; ++r) {
        const int8_t* c = rows[r];
        int32_t sum = 0;
        size_t j = 0;
#if defined(CHROMA_SSE2)
        __m128i acc = _mm_setzero_si128();
        for (; j + 16 <= n; j += 16) {
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + j));
            const __m128i lo = _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8);
            const __m128i hi = _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8);
            acc = _mm_add_epi32(acc, _mm_madd_epi16(lo, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + j))));
            acc = _mm_add_epi32(acc, _mm_madd_epi16(hi, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + j + 8))));
        }
        int32_t lanes[4];
        _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes), acc);
        sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
        for (; j < n; ++j) sum += int32_t(c[j]) * q[j];
        out[r] = sum;
    }
}

inline void lower_bounds(const BoundArgs& a, const int32_t* kdot, const float* S, const float* R,
                         const float* N, size_t n, float* lb) {
    lower_bounds_generic(a, kdot, S, R, N, n, lb);
}

inline size_t select_within(const float* lb, size_t n, float limit, uint32_t* out) {
    size_t c = 0;
    for (size_t i = 0; i < n; ++i)
        if (!(lb[i] > limit)) out[c++] = uint32_t(i);
    return c;
}

}  // namespace portable

#ifdef CHROMA_HAVE_AVX2
// ---------------------------------------------------------------------------
namespace avx2 {

// Same shape as the AVX-512 kernel: 2 groups of 8 queries x 4 rows keeps
// 8 accumulators + 2 query vectors + temporaries within the 16 ymm registers.
constexpr size_t G = 2;
constexpr size_t R = 4;
constexpr size_t W = 8 * G;

template <bool IsL2>
CHROMA_TARGET_AVX2 inline void vertical_impl(Metric metric, const float* xp,
                                             size_t nrows, size_t d, const float* qt,
                                             const float* qscale, const float* xscale,
                                             const float* thr, float* out, uint32_t* mask) {
    const __m256 ones = _mm256_set1_ps(1.f);
    for (size_t r0 = 0; r0 < nrows; r0 += R) {
        const size_t nr = nrows - r0 < R ? nrows - r0 : R;
        const float* x = xp + r0 * d;
        __m256 acc[R][G];
#pragma GCC unroll 4
        for (size_t i = 0; i < R; ++i)
#pragma GCC unroll 2
            for (size_t g = 0; g < G; ++g) acc[i][g] = _mm256_setzero_ps();
        for (size_t j = 0; j < d; ++j) {
            __m256 qv[G];
#pragma GCC unroll 2
            for (size_t g = 0; g < G; ++g) qv[g] = _mm256_loadu_ps(qt + j * W + 8 * g);
#pragma GCC unroll 4
            for (size_t i = 0; i < R; ++i) {
                const __m256 xv = _mm256_broadcast_ss(x + j * R + i);
#pragma GCC unroll 2
                for (size_t g = 0; g < G; ++g) {
                    if (IsL2) {
                        const __m256 t = _mm256_sub_ps(qv[g], xv);
                        acc[i][g] = _mm256_fmadd_ps(t, t, acc[i][g]);
                    } else {
                        acc[i][g] = _mm256_fmadd_ps(qv[g], xv, acc[i][g]);
                    }
                }
            }
        }
#pragma GCC unroll 4
        for (size_t i = 0; i < R; ++i) {
            if (i >= nr) break;
            uint32_t mk = 0;
#pragma GCC unroll 2
            for (size_t g = 0; g < G; ++g) {
                __m256 dist = acc[i][g];
                if (metric == Metric::IP) {
                    dist = _mm256_sub_ps(ones, dist);
                } else if (metric == Metric::Cosine) {
                    const __m256 s = _mm256_mul_ps(_mm256_loadu_ps(qscale + 8 * g),
                                                   _mm256_set1_ps(xscale[r0 + i]));
                    dist = _mm256_sub_ps(ones, _mm256_mul_ps(dist, s));
                }
                _mm256_storeu_ps(out + (r0 + i) * W + 8 * g, dist);
                const __m256 c = _mm256_cmp_ps(dist, _mm256_loadu_ps(thr + 8 * g), _CMP_NGE_UQ);
                mk |= uint32_t(_mm256_movemask_ps(c)) << (8 * g);
            }
            mask[r0 + i] = mk;
        }
    }
}

CHROMA_TARGET_AVX2 inline void vertical(Metric metric, const float* xp, size_t nrows,
                                        size_t d, const float* qt, const float* qscale,
                                        const float* xscale, const float* thr, float* out,
                                        uint32_t* mask) {
    if (metric == Metric::L2)
        vertical_impl<true>(metric, xp, nrows, d, qt, qscale, xscale, thr, out, mask);
    else
        vertical_impl<false>(metric, xp, nrows, d, qt, qscale, xscale, thr, out, mask);
}

CHROMA_TARGET_AVX2 inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Tail mask for maskload: lanes [0, rem) active.
CHROMA_TARGET_AVX2 inline __m256i tail_mask(size_t rem) {
    alignas(32) static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - rem));
}

// Lambdas do not inherit the enclosing target attribute, hence a helper.
template <bool IsL2>
CHROMA_TARGET_AVX2 inline void step4(__m256& a0, __m256& a1, __m256& a2, __m256& a3, __m256 qv, __m256 x0, __m256 x1,
                            __m256 x2, __m256 x3) {
    if (IsL2) {
        x0 = _mm256_sub_ps(x0, qv);
        x1 = _mm256_sub_ps(x1, qv);
        x2 = _mm256_sub_ps(x2, qv);
        x3 = _mm256_sub_ps(x3, qv);
        a0 = _mm256_fmadd_ps(x0, x0, a0);
        a1 = _mm256_fmadd_ps(x1, x1, a1);
        a2 = _mm256_fmadd_ps(x2, x2, a2);
        a3 = _mm256_fmadd_ps(x3, x3, a3);
    } else {
        a0 = _mm256_fmadd_ps(x0, qv, a0);
        a1 = _mm256_fmadd_ps(x1, qv, a1);
        a2 = _mm256_fmadd_ps(x2, qv, a2);
        a3 = _mm256_fmadd_ps(x3, qv, a3);
    }
}

// Four rows at a time so each query load feeds four FMAs. Lanes 0-7 and 8-15
// of the canonical order (canonical_row) live in lo and hi; lo + hi is its
// first reduction step and hsum the rest.
template <bool IsL2>
CHROMA_TARGET_AVX2 inline void rows4(const float* const* p, const float* q, size_t d, float* res) {
    __m256 l0 = _mm256_setzero_ps(), l1 = l0, l2 = l0, l3 = l0, h0 = l0, h1 = l0, h2 = l0, h3 = l0;
    size_t j = 0;
    for (; j + 16 <= d; j += 16) {
        step4<IsL2>(l0, l1, l2, l3, _mm256_loadu_ps(q + j), _mm256_loadu_ps(p[0] + j), _mm256_loadu_ps(p[1] + j),
             _mm256_loadu_ps(p[2] + j), _mm256_loadu_ps(p[3] + j));
        step4<IsL2>(h0, h1, h2, h3, _mm256_loadu_ps(q + j + 8), _mm256_loadu_ps(p[0] + j + 8),
             _mm256_loadu_ps(p[1] + j + 8), _mm256_loadu_ps(p[2] + j + 8), _mm256_loadu_ps(p[3] + j + 8));
    }
    if (j < d) {
        const size_t rem = d - j;
        const __m256i ml = tail_mask(rem < 8 ? rem : 8), mh = tail_mask(rem > 8 ? rem - 8 : 0);
        step4<IsL2>(l0, l1, l2, l3, _mm256_maskload_ps(q + j, ml), _mm256_maskload_ps(p[0] + j, ml),
             _mm256_maskload_ps(p[1] + j, ml), _mm256_maskload_ps(p[2] + j, ml),
             _mm256_maskload_ps(p[3] + j, ml));
        step4<IsL2>(h0, h1, h2, h3, _mm256_maskload_ps(q + j + 8, mh), _mm256_maskload_ps(p[0] + j + 8, mh),
             _mm256_maskload_ps(p[1] + j + 8, mh), _mm256_maskload_ps(p[2] + j + 8, mh),
             _mm256_maskload_ps(p[3] + j + 8, mh));
    }
    res[0] = hsum(_mm256_add_ps(l0, h0));
    res[1] = hsum(_mm256_add_ps(l1, h1));
    res[2] = hsum(_mm256_add_ps(l2, h2));
    res[3] = hsum(_mm256_add_ps(l3, h3));
}

template <bool IsL2>
CHROMA_TARGET_AVX2 inline void horizontal_impl(Metric metric, const float* const* rows,
                                               size_t nrows, size_t d, const float* q,
                                               float qscale, const float* xscale, float* out) {
    for (size_t r0 = 0; r0 < nrows; r0 += 4) {
        const size_t nr = nrows - r0 < 4 ? nrows - r0 : 4;
        const float* p[4];
        for (size_t i = 0; i < 4; ++i) p[i] = rows[r0 + (i < nr ? i : nr - 1)];
        float res[4];
        rows4<IsL2>(p, q, d, res);
        for (size_t i = 0; i < nr; ++i)
            out[r0 + i] = finish_scalar(metric, res[i], qscale, xscale ? xscale[r0 + i] : 1.f);
    }
}

CHROMA_TARGET_AVX2 inline void horizontal(Metric metric, const float* const* rows, size_t nrows,
                                          size_t d, const float* q, float qscale,
                                          const float* xscale, float* out) {
    if (metric == Metric::L2)
        horizontal_impl<true>(metric, rows, nrows, d, q, qscale, xscale, out);
    else
        horizontal_impl<false>(metric, rows, nrows, d, q, qscale, xscale, out);
}

CHROMA_TARGET_AVX2 inline void inv_norms(const float* const* rows, size_t nrows, size_t d,
                                         float* out) {
    for (size_t r = 0; r < nrows; ++r) {
        __m256 a = _mm256_setzero_ps();
        size_t j = 0;
        for (; j + 8 <= d; j += 8) {
            const __m256 x = _mm256_loadu_ps(rows[r] + j);
            a = _mm256_fmadd_ps(x, x, a);
        }
        if (j < d) {
            const __m256 x = _mm256_maskload_ps(rows[r] + j, tail_mask(d - j));
            a = _mm256_fmadd_ps(x, x, a);
        }
        out[r] = inv_norm_from_sumsq(hsum(a));
    }
}

// vpmaddubsw multiplies a row's four nibbles of one parity by the four
// query bytes and adds them in pairs (at most 2 * 15 * 127, no saturation);
// int16 sums of up to kNibbleBlock groups stay below 2^15, and vpmaddwd by 1
// then adds each row's two halves into its int32 lane: no reduction at all.
// Prefetch: see the AVX-512 version.
CHROMA_TARGET_AVX2 inline void nibble_dots(const uint8_t* tiles, size_t ntiles, size_t ngroups,
                                           const int32_t* qlo, const int32_t* qhi, int32_t bias,
                                           int32_t* out) {
    const __m256i low4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    const __m256i vbias = _mm256_set1_epi32(bias);
    const uint8_t* c = tiles;
    for (size_t t = 0; t < ntiles; ++t) {
        __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
        for (size_t g0 = 0; g0 < ngroups; g0 += kNibbleBlock) {
            __m256i s0 = _mm256_setzero_si256(), s1 = s0;
            const size_t g1 = g0 + kNibbleBlock < ngroups ? g0 + kNibbleBlock : ngroups;
            for (size_t g = g0; g < g1; ++g, c += kNibbleGroupBytes) {
                _mm_prefetch(reinterpret_cast<const char*>(c) + kQPrefetch, _MM_HINT_T0);
                const __m256i kl = _mm256_set1_epi32(qlo[g]), kh = _mm256_set1_epi32(qhi[g]);
                const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
                const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32));
                s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(_mm256_and_si256(v0, low4), kl));
                s0 = _mm256_add_epi16(
                    s0, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), low4), kh));
                s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(_mm256_and_si256(v1, low4), kl));
                s1 = _mm256_add_epi16(
                    s1, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), low4), kh));
            }
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(s0, ones));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(s1, ones));
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + t * kQTileRows), _mm256_sub_epi32(acc0, vbias));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + t * kQTileRows + 8), _mm256_sub_epi32(acc1, vbias));
    }
}

CHROMA_TARGET_AVX2 inline void row_dots(const int8_t* const* rows, size_t nrows, size_t npairs,
                                        const int16_t* q, int32_t* out) {
    const size_t n = 2 * npairs;
    for (size_t r = 0; r < nrows; ++r) {
        const int8_t* c = rows[r];
        __m256i acc = _mm256_setzero_si256();
        size_t j = 0;
        for (; j + 16 <= n; j += 16) {
            const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + j)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + j))));
        }
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        int32_t sum = _mm_cvtsi128_si32(s);
        for (; j < n; ++j) sum += int32_t(c[j]) * q[j];
        out[r] = sum;
    }
}

CHROMA_TARGET_AVX2 inline void lower_bounds(const BoundArgs& a, const int32_t* kdot, const float* S,
                                            const float* R, const float* N, size_t n, float* lb) {
    lower_bounds_generic(a, kdot, S, R, N, n, lb);
}

CHROMA_TARGET_AVX2 inline size_t select_within(const float* lb, size_t n, float limit, uint32_t* out) {
    const __m256 lim = _mm256_set1_ps(limit);
    size_t c = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        unsigned mask = unsigned(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(lb + i), lim, _CMP_NGT_UQ)));
        for (; mask; mask &= mask - 1) out[c++] = uint32_t(i + lowest_set_bit(mask));
    }
    for (; i < n; ++i)
        if (!(lb[i] > limit)) out[c++] = uint32_t(i);
    return c;
}

}  // namespace avx2
#endif  // CHROMA_HAVE_AVX2

#ifdef CHROMA_HAVE_AVX512
// ---------------------------------------------------------------------------
namespace avx512 {

// One call covers G groups of 16 queries against R rows at a time. Each
// broadcast row element then feeds G FMAs; with G = 1 the kernel is bound by
// broadcast loads and reaches only about half the FMA peak. 16 accumulators +
// 2 query vectors + temporaries fit the 32 zmm registers.
constexpr size_t G = 2;
constexpr size_t R = 8;
constexpr size_t W = 16 * G;

template <bool IsL2>
CHROMA_TARGET_AVX512 inline void vertical_impl(Metric metric, const float* xp,
                                               size_t nrows, size_t d, const float* qt,
                                               const float* qscale, const float* xscale,
                                               const float* thr, float* out, uint32_t* mask) {
    const __m512 ones = _mm512_set1_ps(1.f);
    __m512 vthr[G], vqs[G];
    for (size_t g = 0; g < G; ++g) {
        vthr[g] = _mm512_loadu_ps(thr + 16 * g);
        vqs[g] = qscale ? _mm512_loadu_ps(qscale + 16 * g) : ones;
    }
    for (size_t r0 = 0; r0 < nrows; r0 += R) {
        const size_t nr = nrows - r0 < R ? nrows - r0 : R;
        const float* x = xp + r0 * d;
        __m512 acc[R][G];
#pragma GCC unroll 8
        for (size_t i = 0; i < R; ++i)
#pragma GCC unroll 2
            for (size_t g = 0; g < G; ++g) acc[i][g] = _mm512_setzero_ps();
        for (size_t j = 0; j < d; ++j) {
            __m512 qv[G];
#pragma GCC unroll 2
            for (size_t g = 0; g < G; ++g) qv[g] = _mm512_loadu_ps(qt + j * W + 16 * g);
#pragma GCC unroll 8
            for (size_t i = 0; i < R; ++i) {
                const __m512 xv = _mm512_set1_ps(x[j * R + i]);
#pragma GCC unroll 2
                for (size_t g = 0; g < G; ++g) {
                    if (IsL2) {
                        const __m512 t = _mm512_sub_ps(qv[g], xv);
                        acc[i][g] = _mm512_fmadd_ps(t, t, acc[i][g]);
                    } else {
                        acc[i][g] = _mm512_fmadd_ps(qv[g], xv, acc[i][g]);
                    }
                }
            }
        }
#pragma GCC unroll 8
        for (size_t i = 0; i < R; ++i) {
            if (i >= nr) break;
            uint32_t mk = 0;
#pragma GCC unroll 2
            for (size_t g = 0; g < G; ++g) {
                __m512 dist = acc[i][g];
                if (metric == Metric::IP) {
                    dist = _mm512_sub_ps(ones, dist);
                } else if (metric == Metric::Cosine) {
                    const __m512 s = _mm512_mul_ps(vqs[g], _mm512_set1_ps(xscale[r0 + i]));
                    dist = _mm512_sub_ps(ones, _mm512_mul_ps(dist, s));
                }
                _mm512_storeu_ps(out + (r0 + i) * W + 16 * g, dist);
                mk |= uint32_t(_mm512_cmp_ps_mask(dist, vthr[g], _CMP_NGE_UQ)) << (16 * g);
            }
            mask[r0 + i] = mk;
        }
    }
}

CHROMA_TARGET_AVX512 inline void vertical(Metric metric, const float* xp, size_t nrows,
                                          size_t d, const float* qt, const float* qscale,
                                          const float* xscale, const float* thr, float* out,
                                          uint32_t* mask) {
    if (metric == Metric::L2)
        vertical_impl<true>(metric, xp, nrows, d, qt, qscale, xscale, thr, out, mask);
    else
        vertical_impl<false>(metric, xp, nrows, d, qt, qscale, xscale, thr, out, mask);
}

// Lambdas do not inherit the enclosing target attribute, hence a helper.
template <bool IsL2>
CHROMA_TARGET_AVX512 inline void step4(__m512& a0, __m512& a1, __m512& a2, __m512& a3, __m512 qv, __m512 x0, __m512 x1,
                            __m512 x2, __m512 x3) {
    if (IsL2) {
        x0 = _mm512_sub_ps(x0, qv);
        x1 = _mm512_sub_ps(x1, qv);
        x2 = _mm512_sub_ps(x2, qv);
        x3 = _mm512_sub_ps(x3, qv);
        a0 = _mm512_fmadd_ps(x0, x0, a0);
        a1 = _mm512_fmadd_ps(x1, x1, a1);
        a2 = _mm512_fmadd_ps(x2, x2, a2);
        a3 = _mm512_fmadd_ps(x3, x3, a3);
    } else {
        a0 = _mm512_fmadd_ps(x0, qv, a0);
        a1 = _mm512_fmadd_ps(x1, qv, a1);
        a2 = _mm512_fmadd_ps(x2, qv, a2);
        a3 = _mm512_fmadd_ps(x3, qv, a3);
    }
}

// The reduction of the canonical order (canonical_row): lanes i and i+8
// first, then as avx2::hsum.
CHROMA_TARGET_AVX512 inline float canonical_sum(__m512 a) {
    return avx2::hsum(_mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1)));
}

// Four rows at a time so each query load feeds four FMAs.
template <bool IsL2>
CHROMA_TARGET_AVX512 inline void rows4(const float* const* p, const float* q, size_t d,
                                       float* res) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t j = 0;
    for (; j + 16 <= d; j += 16)
        step4<IsL2>(a0, a1, a2, a3, _mm512_loadu_ps(q + j), _mm512_loadu_ps(p[0] + j), _mm512_loadu_ps(p[1] + j),
             _mm512_loadu_ps(p[2] + j), _mm512_loadu_ps(p[3] + j));
    if (j < d) {
        const __mmask16 m = __mmask16((1u << (d - j)) - 1);
        step4<IsL2>(a0, a1, a2, a3, _mm512_maskz_loadu_ps(m, q + j), _mm512_maskz_loadu_ps(m, p[0] + j),
             _mm512_maskz_loadu_ps(m, p[1] + j), _mm512_maskz_loadu_ps(m, p[2] + j),
             _mm512_maskz_loadu_ps(m, p[3] + j));
    }
    res[0] = canonical_sum(a0);
    res[1] = canonical_sum(a1);
    res[2] = canonical_sum(a2);
    res[3] = canonical_sum(a3);
}

template <bool IsL2>
CHROMA_TARGET_AVX512 inline void horizontal_impl(Metric metric, const float* const* rows,
                                                 size_t nrows, size_t d, const float* q,
                                                 float qscale, const float* xscale, float* out) {
    for (size_t r0 = 0; r0 < nrows; r0 += 4) {
        const size_t nr = nrows - r0 < 4 ? nrows - r0 : 4;
        const float* p[4];
        for (size_t i = 0; i < 4; ++i) p[i] = rows[r0 + (i < nr ? i : nr - 1)];
        float res[4];
        rows4<IsL2>(p, q, d, res);
        for (size_t i = 0; i < nr; ++i)
            out[r0 + i] = finish_scalar(metric, res[i], qscale, xscale ? xscale[r0 + i] : 1.f);
    }
}

CHROMA_TARGET_AVX512 inline void horizontal(Metric metric, const float* const* rows,
                                            size_t nrows, size_t d, const float* q, float qscale,
                                            const float* xscale, float* out) {
    if (metric == Metric::L2)
        horizontal_impl<true>(metric, rows, nrows, d, q, qscale, xscale, out);
    else
        horizontal_impl<false>(metric, rows, nrows, d, q, qscale, xscale, out);
}

CHROMA_TARGET_AVX512 inline void inv_norms(const float* const* rows, size_t nrows, size_t d,
                                           float* out) {
    for (size_t r = 0; r < nrows; ++r) {
        __m512 a = _mm512_setzero_ps();
        size_t j = 0;
        for (; j + 16 <= d; j += 16) {
            const __m512 x = _mm512_loadu_ps(rows[r] + j);
            a = _mm512_fmadd_ps(x, x, a);
        }
        if (j < d) {
            const __m512 x = _mm512_maskz_loadu_ps(__mmask16((1u << (d - j)) - 1), rows[r] + j);
            a = _mm512_fmadd_ps(x, x, a);
        }
        out[r] = inv_norm_from_sumsq(_mm512_reduce_add_ps(a));
    }
}

// Tiles are consecutive in memory, so this is one sequential stream; the
// explicit prefetch keeps it flowing across 4 KiB page boundaries, where the
// hardware prefetchers stop and restart (measured ~1.2x on 100k x 128).
// One group of a tile is one 64-byte register; the arithmetic is the AVX2
// version's.
CHROMA_TARGET_AVX512 inline void nibble_dots(const uint8_t* tiles, size_t ntiles, size_t ngroups,
                                             const int32_t* qlo, const int32_t* qhi, int32_t bias,
                                             int32_t* out) {
    const __m512i low4 = _mm512_set1_epi8(15), ones = _mm512_set1_epi16(1);
    const __m512i vbias = _mm512_set1_epi32(bias);
    const uint8_t* c = tiles;
    for (size_t t = 0; t < ntiles; ++t) {
        __m512i acc = _mm512_setzero_si512();
        for (size_t g0 = 0; g0 < ngroups; g0 += kNibbleBlock) {
            __m512i s = _mm512_setzero_si512();
            const size_t g1 = g0 + kNibbleBlock < ngroups ? g0 + kNibbleBlock : ngroups;
            for (size_t g = g0; g < g1; ++g, c += kNibbleGroupBytes) {
                _mm_prefetch(reinterpret_cast<const char*>(c) + kQPrefetch, _MM_HINT_T0);
                const __m512i v = _mm512_loadu_si512(c);
                s = _mm512_add_epi16(s, _mm512_maddubs_epi16(_mm512_and_si512(v, low4), _mm512_set1_epi32(qlo[g])));
                s = _mm512_add_epi16(s, _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(v, 4), low4),
                                                             _mm512_set1_epi32(qhi[g])));
            }
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(s, ones));
        }
        _mm512_storeu_si512(out + t * kQTileRows, _mm512_sub_epi32(acc, vbias));
    }
}

// Masked loads for the last (< 32) dimensions, so no byte past a row is read.
CHROMA_TARGET_AVX512 inline void row_dots(const int8_t* const* rows, size_t nrows, size_t npairs,
                                          const int16_t* q, int32_t* out) {
    const size_t n = 2 * npairs;
    const __mmask32 tail = __mmask32((uint64_t(1) << (n % 32)) - 1);
    for (size_t r = 0; r < nrows; ++r) {
        const int8_t* c = rows[r];
        __m512i acc = _mm512_setzero_si512();
        size_t j = 0;
        for (; j + 32 <= n; j += 32) {
            const __m512i v = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + j)));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(v, _mm512_loadu_si512(q + j)));
        }
        if (j < n) {
            const __m512i v = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(tail, c + j));
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(v, _mm512_maskz_loadu_epi16(tail, q + j)));
        }
        out[r] = _mm512_reduce_add_epi32(acc);
    }
}

CHROMA_TARGET_AVX512 inline void lower_bounds(const BoundArgs& a, const int32_t* kdot, const float* S,
                                              const float* R, const float* N, size_t n, float* lb) {
    lower_bounds_generic(a, kdot, S, R, N, n, lb);
}

CHROMA_TARGET_AVX512 inline size_t select_within(const float* lb, size_t n, float limit, uint32_t* out) {
    const __m512 lim = _mm512_set1_ps(limit);
    const __m512i step = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t c = 0, i = 0;
    for (; i + 16 <= n; i += 16, idx = _mm512_add_epi32(idx, step)) {
        const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_loadu_ps(lb + i), lim, _CMP_NGT_UQ);
        if (!hit) continue;
        _mm512_mask_compressstoreu_epi32(out + c, hit, idx);
        c += size_t(__builtin_popcount(hit));
    }
    for (; i < n; ++i)
        if (!(lb[i] > limit)) out[c++] = uint32_t(i);
    return c;
}

}  // namespace avx512
#endif  // CHROMA_HAVE_AVX512

// ---------------------------------------------------------------------------
// Dispatch

inline const KernelTable& portable_kernels() {
    static const KernelTable t{"portable", portable::W, portable::R, portable::vertical, portable::horizontal,
                               portable::inv_norms, portable::nibble_dots, portable::row_dots,
                               portable::lower_bounds, portable::select_within};
    return t;
}

// Paths this CPU can run, slowest first.
inline std::vector<const KernelTable*> available_kernels() {
    std::vector<const KernelTable*> out{&portable_kernels()};
#ifdef CHROMA_HAVE_AVX2
    static const CpuFeatures cpu = detect_cpu_features();
    if (cpu.avx2_fma) {
        static const KernelTable t{"avx2", avx2::W, avx2::R, avx2::vertical, avx2::horizontal,
                                   avx2::inv_norms, avx2::nibble_dots, avx2::row_dots, avx2::lower_bounds, avx2::select_within};
        out.push_back(&t);
    }
#endif
#ifdef CHROMA_HAVE_AVX512
    if (cpu.avx512) {
        static const KernelTable t{"avx512", avx512::W, avx512::R, avx512::vertical, avx512::horizontal,
                                   avx512::inv_norms, avx512::nibble_dots, avx512::row_dots,
                                   avx512::lower_bounds, avx512::select_within};
        out.push_back(&t);
    }
#endif
    return out;
}

inline const KernelTable& find_kernels(const std::string& name) {
    const auto avail = available_kernels();
    std::string names;
    for (const KernelTable* k : avail) {
        if (name == k->name) return *k;
        names += names.empty() ? "" : ", ";
        names += k->name;
    }
    const bool known = name == "portable" || name == "avx2" || name == "avx512";
    throw std::invalid_argument(
        (known ? "SIMD path '" + name + "' is not supported by this CPU"
               : "unknown SIMD path '" + name + "'") +
        "; allowed: " + names);
}

}  // namespace chroma
