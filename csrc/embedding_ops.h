// The element-wise and attention parts of a BERT encoder layer, fused, for
// chroma.embedding's forward pass (the matrix products stay with numpy's BLAS).
//
// Tokens arrive packed: the rows of every sequence of a batch one after the
// other, with offsets[s]..offsets[s+1] the rows of sequence s, so no padding
// row is ever computed. Each kernel makes one pass over its rows where numpy
// would make several (bias, residual, mean, variance, scale, shift; or the
// eight steps of an exact GELU), and attention runs per (sequence, head) on
// that sequence's rows only.
//
// The loops are written once, portable, and compiled three times (AVX-512,
// AVX2+FMA, baseline x86-64) through always-inline bodies called from
// functions with a target attribute; the CPU check of cpu_features.h picks
// one at first use, so the module still loads on CPUs without AVX-512.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "cpu_features.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#include "thread_pool.h"

#if defined(__GNUC__) || defined(__clang__)
#define CHROMA_EMB_INLINE inline __attribute__((always_inline))
#else
#define CHROMA_EMB_INLINE inline
#endif

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define CHROMA_EMB_X86_TARGETS 1
#define CHROMA_EMB_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define CHROMA_EMB_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#endif

namespace chroma {
namespace embedding_ops {

// Partial sums kept in this many lanes let the compiler vectorize a
// reduction without -ffast-math (which would change NaN compares elsewhere).
constexpr size_t kLanes = 16;

// e^x for x <= 0 (softmax and erf need no more), relative error about 2e-7,
// and 0 below -87 (where float underflows): 2^n * p(r) with r = x - n ln 2,
// |r| <= ln2/2, p a degree-7 Taylor polynomial. Branch-free with integer
// selects only: a float compare-and-select does not vectorize for AVX2 under
// GCC's default -ftrapping-math.
CHROMA_EMB_INLINE float exp_nonpositive(float x) {
    // Round to nearest by adding and taking away 1.5 * 2^23 (not std::floor,
    // which stays a library call, unvectorized, without -fno-trapping-math).
    constexpr float kRound = 12582912.0f;
    const float n = (x * 1.44269504088896341f + kRound) - kRound;
    const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t exponent = std::max(int32_t(n), int32_t(-126));
    const int32_t keep = -int32_t(n >= -126.0f);  // all ones, or zero where e^x underflows
    const int32_t scale_bits = (exponent + 127) << 23;
    float scale;
    std::memcpy(&scale, &scale_bits, sizeof scale);
    const float value = p * scale;
    int32_t value_bits;
    std::memcpy(&value_bits, &value, sizeof value_bits);
    value_bits &= keep;
    float result;
    std::memcpy(&result, &value_bits, sizeof result);
    return result;
}

// erf(x) with absolute error below 2e-7 (Abramowitz and Stegun 7.1.26).
CHROMA_EMB_INLINE float erf_approx(float x) {
    const float a = std::fabs(x);
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float y = 1.0f - p * t * exp_nonpositive(-a * a);
    return std::copysign(y, x);
}

// x[r, :] = gelu(x[r, :] + bias), the exact (erf) GELU BERT uses.
CHROMA_EMB_INLINE void bias_gelu_rows(float* x, const float* bias, size_t rows, size_t width) {
    for (size_t r = 0; r < rows; ++r) {
        float* row = x + r * width;
        for (size_t c = 0; c < width; ++c) {
            const float v = row[c] + bias[c];
            row[c] = 0.5f * v * (1.0f + erf_approx(v * 0.70710678118654752f));
        }
    }
}

CHROMA_EMB_INLINE float lane_sum(const float* lanes) {
    float s = 0.0f;
    for (size_t k = 0; k < kLanes; ++k) s += lanes[k];
    return s;
}

// hidden[r, :] = layer_norm(x[r, :] + bias + hidden[r, :]) * gamma + beta: the
// output projection's bias, the residual connection and the layer norm in one
// pass. Without x (x == nullptr) it is a plain layer norm of hidden + bias.
// width must be a multiple of kLanes (BERT sizes are).
CHROMA_EMB_INLINE void residual_layer_norm_rows(const float* x, const float* bias, float* hidden, const float* gamma,
                                                const float* beta, float eps, size_t rows, size_t width) {
    for (size_t r = 0; r < rows; ++r) {
        float* h = hidden + r * width;
        if (x != nullptr) {
            const float* xr = x + r * width;
            for (size_t c = 0; c < width; ++c) h[c] += xr[c] + bias[c];
        } else if (bias != nullptr) {
            for (size_t c = 0; c < width; ++c) h[c] += bias[c];
        }
        float lanes[kLanes] = {};
        for (size_t c = 0; c < width; c += kLanes)
            for (size_t k = 0; k < kLanes; ++k) lanes[k] += h[c + k];
        const float mean = lane_sum(lanes) / float(width);
        float sq[kLanes] = {};
        for (size_t c = 0; c < width; c += kLanes)
            for (size_t k = 0; k < kLanes; ++k) {
                const float d = h[c + k] - mean;
                sq[k] += d * d;
            }
        const float inv = 1.0f / std::sqrt(lane_sum(sq) / float(width) + eps);
        for (size_t c = 0; c < width; ++c) h[c] = (h[c] - mean) * inv * gamma[c] + beta[c];
    }
}

// Scratch of one (sequence, head) task: the head's Q, K transposed, V, one
// row of scores.
struct AttentionScratch {
    std::vector<float> q, kt, v, scores, out;
};

// Keys per block of scores kept in registers while the head's columns are
// summed over (four AVX2 vectors); the tail of a sequence goes in blocks of 8.
constexpr size_t kKeyBlock = 32;

// scores[0, N) = q . kt[:, 0, N) over the head's D columns, with the N sums
// held in registers for the whole loop (N a multiple of 8, at most 32).
template <size_t D, size_t N>
CHROMA_EMB_INLINE void score_block(const float* q, const float* kt, size_t ld, float* scores) {
    float acc[N] = {};
    for (size_t c = 0; c < D; ++c) {
        const float qc = q[c];
        const float* k = kt + c * ld;
        for (size_t j = 0; j < N; ++j) acc[j] += qc * k[j];
    }
    for (size_t j = 0; j < N; ++j) scores[j] = acc[j];
}

// Self-attention of one head of width D (known at compile time, so that a
// query's block of scores and a row of output stay in registers) over one
// sequence's rows [begin, end) of qkv (each row: the query, key and value
// projections, without their bias), written into that head's columns of ctx.
// No mask: the rows are the sequence's real tokens only.
template <size_t D>
CHROMA_EMB_INLINE void attention_head_fixed(const float* qkv, const float* qkv_bias, float* ctx, size_t begin,
                                            size_t end, size_t head, size_t hidden, AttentionScratch& s) {
    const size_t len = end - begin, stride = 3 * hidden, col = head * D;
    const size_t ld = (len + 7) / 8 * 8;  // keys padded with zero columns to whole blocks of 8
    s.q.resize(len * D);
    s.kt.resize(D * ld);
    s.v.resize(len * D);
    s.scores.resize(ld);
    const float scale = 1.0f / std::sqrt(float(D));
    const float* qb = qkv_bias + col;
    const float* kb = qkv_bias + hidden + col;
    const float* vb = qkv_bias + 2 * hidden + col;
    float* kt = s.kt.data();
    for (size_t i = 0; i < len; ++i) {
        const float* row = qkv + (begin + i) * stride;
        for (size_t c = 0; c < D; ++c) {
            s.q[i * D + c] = (row[col + c] + qb[c]) * scale;
            kt[c * ld + i] = row[hidden + col + c] + kb[c];
            s.v[i * D + c] = row[2 * hidden + col + c] + vb[c];
        }
    }
    for (size_t c = 0; c < D; ++c)
        for (size_t i = len; i < ld; ++i) kt[c * ld + i] = 0.0f;
    float* scores = s.scores.data();
    const float* v = s.v.data();
    for (size_t i = 0; i < len; ++i) {
        const float* q = s.q.data() + i * D;
        size_t j = 0;
        for (; j + kKeyBlock <= ld; j += kKeyBlock) score_block<D, kKeyBlock>(q, kt + j, ld, scores + j);
        switch (ld - j) {
            case 24: score_block<D, 24>(q, kt + j, ld, scores + j); break;
            case 16: score_block<D, 16>(q, kt + j, ld, scores + j); break;
            case 8: score_block<D, 8>(q, kt + j, ld, scores + j); break;
            default: break;
        }
        // Max and sum in 8 lanes over the padded row (pads: a real score for the
        // max, zero for the sum), so that neither is one long dependent chain.
        for (size_t k = len; k < ld; ++k) scores[k] = scores[0];
        float lanes[8];
        for (size_t l = 0; l < 8; ++l) lanes[l] = scores[l];
        for (size_t k = 8; k < ld; k += 8)
            for (size_t l = 0; l < 8; ++l) lanes[l] = std::max(lanes[l], scores[k + l]);
        float top = lanes[0];
        for (size_t l = 1; l < 8; ++l) top = std::max(top, lanes[l]);
        for (size_t k = 0; k < ld; ++k) scores[k] = exp_nonpositive(scores[k] - top);
        for (size_t k = len; k < ld; ++k) scores[k] = 0.0f;
        for (size_t l = 0; l < 8; ++l) lanes[l] = 0.0f;
        for (size_t k = 0; k < ld; k += 8)
            for (size_t l = 0; l < 8; ++l) lanes[l] += scores[k + l];
        float total = 0.0f;
        for (size_t l = 0; l < 8; ++l) total += lanes[l];
        // Two rows of sums, even and odd keys, so that consecutive multiply-adds
        // do not wait on each other.
        float even[D] = {}, odd[D] = {};
        size_t k = 0;
        for (; k + 1 < len; k += 2) {
            const float p0 = scores[k], p1 = scores[k + 1];
            const float* v0 = v + k * D;
            const float* v1 = v0 + D;
            for (size_t c = 0; c < D; ++c) {
                even[c] += p0 * v0[c];
                odd[c] += p1 * v1[c];
            }
        }
        if (k < len) {
            const float p0 = scores[k];
            const float* v0 = v + k * D;
            for (size_t c = 0; c < D; ++c) even[c] += p0 * v0[c];
        }
        float* dst = ctx + (begin + i) * hidden + col;
        const float inv_total = 1.0f / total;
        for (size_t c = 0; c < D; ++c) dst[c] = (even[c] + odd[c]) * inv_total;
    }
}

// The same for a head width with no compiled-in case: sums in memory.
CHROMA_EMB_INLINE void attention_head(const float* qkv, const float* qkv_bias, float* ctx, size_t begin, size_t end,
                                      size_t head, size_t hidden, size_t head_dim, AttentionScratch& s) {
    if (head_dim == 32) return attention_head_fixed<32>(qkv, qkv_bias, ctx, begin, end, head, hidden, s);
    if (head_dim == 64) return attention_head_fixed<64>(qkv, qkv_bias, ctx, begin, end, head, hidden, s);
    const size_t len = end - begin, stride = 3 * hidden, col = head * head_dim;
    s.q.resize(len * head_dim);
    s.kt.resize(head_dim * len);
    s.v.resize(len * head_dim);
    s.scores.resize(len);
    s.out.resize(head_dim);
    const float scale = 1.0f / std::sqrt(float(head_dim));
    const float* qb = qkv_bias + col;
    const float* kb = qkv_bias + hidden + col;
    const float* vb = qkv_bias + 2 * hidden + col;
    for (size_t i = 0; i < len; ++i) {
        const float* row = qkv + (begin + i) * stride;
        for (size_t c = 0; c < head_dim; ++c) {
            s.q[i * head_dim + c] = (row[col + c] + qb[c]) * scale;
            s.kt[c * len + i] = row[hidden + col + c] + kb[c];
            s.v[i * head_dim + c] = row[2 * hidden + col + c] + vb[c];
        }
    }
    float* scores = s.scores.data();
    float* out = s.out.data();
    for (size_t i = 0; i < len; ++i) {
        const float* q = s.q.data() + i * head_dim;
        std::fill(scores, scores + len, 0.0f);
        for (size_t c = 0; c < head_dim; ++c) {
            const float qc = q[c];
            const float* k = s.kt.data() + c * len;
            for (size_t j = 0; j < len; ++j) scores[j] += qc * k[j];
        }
        float top = scores[0];
        for (size_t j = 1; j < len; ++j) top = std::max(top, scores[j]);
        for (size_t j = 0; j < len; ++j) scores[j] = exp_nonpositive(scores[j] - top);
        float total = 0.0f;
        for (size_t j = 0; j < len; ++j) total += scores[j];
        std::fill(out, out + head_dim, 0.0f);
        for (size_t j = 0; j < len; ++j) {
            const float p = scores[j];
            const float* v = s.v.data() + j * head_dim;
            for (size_t c = 0; c < head_dim; ++c) out[c] += p * v[c];
        }
        float* dst = ctx + (begin + i) * hidden + col;
        const float inv_total = 1.0f / total;
        for (size_t c = 0; c < head_dim; ++c) dst[c] = out[c] * inv_total;
    }
}

#if defined(CHROMA_EMB_X86_TARGETS)
// Attention of one head 32 wide (MiniLM's, BERT-small's) in AVX2 intrinsics:
// written out by hand because the portable loops above leave the sums of a
// block of scores in memory, where they cost a load and a store per
// multiply-add, and attention is then a fifth of the whole forward pass.
//
// Two exact shortcuts: the key bias adds q . b_k to every score of a query,
// which softmax cancels, so it is never added; and the value bias comes out
// of the weighted sum whole (the weights sum to one), so it is added once per
// output row.
CHROMA_EMB_TARGET_AVX2 inline __m256 exp_nonpositive_avx2(__m256 x) {
    const __m256 round = _mm256_set1_ps(12582912.0f);
    const __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), round), round);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i keep = _mm256_cmpgt_epi32(ni, _mm256_set1_epi32(-127));  // else e^x underflows: 0
    const __m256i e = _mm256_max_epi32(ni, _mm256_set1_epi32(-126));
    const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
    return _mm256_and_ps(_mm256_mul_ps(p, scale), _mm256_castsi256_ps(keep));
}

// 8 rows of 8 floats (one per __m256) transposed in place.
CHROMA_EMB_TARGET_AVX2 inline void transpose8(__m256* r) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// scores[0, 8 B) = q . kt[:, 0, 8 B), B blocks of 8 keys, each block's sums
// split over even and odd columns when B < 4 so that the chain of
// multiply-adds into one register is never the limit.
template <int B>
CHROMA_EMB_TARGET_AVX2 inline void score_blocks_avx2(const float* q, const float* kt, size_t ld, float* scores) {
    constexpr int kChains = B < 4 ? 2 : 1;
    __m256 acc[kChains][B];
    for (int h = 0; h < kChains; ++h)
        for (int b = 0; b < B; ++b) acc[h][b] = _mm256_setzero_ps();
    for (size_t c = 0; c < 32; c += kChains)
        for (int h = 0; h < kChains; ++h) {
            const __m256 qc = _mm256_broadcast_ss(q + c + h);
            const float* k = kt + (c + h) * ld;
            for (int b = 0; b < B; ++b) acc[h][b] = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k + 8 * b), acc[h][b]);
        }
    for (int b = 0; b < B; ++b) {
        __m256 sum = acc[0][b];
        if (kChains == 2) sum = _mm256_add_ps(sum, acc[kChains - 1][b]);
        _mm256_storeu_ps(scores + 8 * b, sum);
    }
}

CHROMA_EMB_TARGET_AVX2 inline void attention_head32_avx2(const float* qkv, const float* qkv_bias, float* ctx,
                                                         size_t begin, size_t end, size_t head, size_t hidden,
                                                         AttentionScratch& s) {
    constexpr size_t D = 32;
    const size_t len = end - begin, stride = 3 * hidden, col = head * D;
    const size_t ld = (len + 7) / 8 * 8;
    s.kt.resize(D * ld);
    s.scores.resize(ld);
    float* kt = s.kt.data();
    float* scores = s.scores.data();
    // K transposed in 8 x 8 blocks, rows past the sequence's end as zeros.
    for (size_t i0 = 0; i0 < ld; i0 += 8)
        for (size_t c0 = 0; c0 < D; c0 += 8) {
            __m256 r[8];
            for (size_t i = 0; i < 8; ++i)
                r[i] = i0 + i < len ? _mm256_loadu_ps(qkv + (begin + i0 + i) * stride + hidden + col + c0)
                                    : _mm256_setzero_ps();
            transpose8(r);
            for (size_t c = 0; c < 8; ++c) _mm256_storeu_ps(kt + (c0 + c) * ld + i0, r[c]);
        }
    const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(float(D)));
    __m256 qb[4], vb[4];
    for (int u = 0; u < 4; ++u) {
        qb[u] = _mm256_loadu_ps(qkv_bias + col + 8 * u);
        vb[u] = _mm256_loadu_ps(qkv_bias + 2 * hidden + col + 8 * u);
    }
    // V copied out contiguous: every query reads all of it, and rows of qkv
    // lie a whole qkv row apart, so few of them would share the L1 cache.
    s.v.resize(len * D);
    float* vbase = s.v.data();
    for (size_t i = 0; i < len; ++i)
        for (int u = 0; u < 4; ++u)
            _mm256_storeu_ps(vbase + i * D + 8 * u, _mm256_loadu_ps(qkv + (begin + i) * stride + 2 * hidden + col + 8 * u));
    alignas(32) float q[D];
    for (size_t i = 0; i < len; ++i) {
        const float* row = qkv + (begin + i) * stride + col;
        for (int u = 0; u < 4; ++u)
            _mm256_store_ps(q + 8 * u, _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(row + 8 * u), qb[u]), scale));
        size_t j = 0;
        for (; j + 32 <= ld; j += 32) score_blocks_avx2<4>(q, kt + j, ld, scores + j);
        switch ((ld - j) / 8) {
            case 3: score_blocks_avx2<3>(q, kt + j, ld, scores + j); break;
            case 2: score_blocks_avx2<2>(q, kt + j, ld, scores + j); break;
            case 1: score_blocks_avx2<1>(q, kt + j, ld, scores + j); break;
            default: break;
        }
        for (size_t k = len; k < ld; ++k) scores[k] = scores[0];  // pads: no effect on the max
        __m256 top = _mm256_loadu_ps(scores);
        for (size_t k = 8; k < ld; k += 8) top = _mm256_max_ps(top, _mm256_loadu_ps(scores + k));
        top = _mm256_max_ps(top, _mm256_permute2f128_ps(top, top, 1));
        top = _mm256_max_ps(top, _mm256_shuffle_ps(top, top, 0x4E));
        top = _mm256_max_ps(top, _mm256_shuffle_ps(top, top, 0xB1));
        __m256 total = _mm256_setzero_ps();
        for (size_t k = 0; k < ld; k += 8) {
            __m256 e = exp_nonpositive_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + k), top));
            if (k + 8 > len) {  // the last block: its pads weigh nothing
                const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(len - k)), lane);
                e = _mm256_and_ps(e, _mm256_castsi256_ps(live));
            }
            _mm256_storeu_ps(scores + k, e);
            total = _mm256_add_ps(total, e);
        }
        total = _mm256_add_ps(total, _mm256_permute2f128_ps(total, total, 1));
        total = _mm256_hadd_ps(total, total);
        total = _mm256_hadd_ps(total, total);
        __m256 acc[2][4];
        for (int h = 0; h < 2; ++h)
            for (int u = 0; u < 4; ++u) acc[h][u] = _mm256_setzero_ps();
        size_t k = 0;
        for (; k + 1 < len; k += 2)
            for (int h = 0; h < 2; ++h) {
                const __m256 p = _mm256_broadcast_ss(scores + k + h);
                const float* v = vbase + (k + h) * D;
                for (int u = 0; u < 4; ++u) acc[h][u] = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 8 * u), acc[h][u]);
            }
        if (k < len) {
            const __m256 p = _mm256_broadcast_ss(scores + k);
            const float* v = vbase + k * D;
            for (int u = 0; u < 4; ++u) acc[0][u] = _mm256_fmadd_ps(p, _mm256_loadu_ps(v + 8 * u), acc[0][u]);
        }
        const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), total);
        float* dst = ctx + (begin + i) * hidden + col;
        for (int u = 0; u < 4; ++u)
            _mm256_storeu_ps(dst + 8 * u, _mm256_fmadd_ps(_mm256_add_ps(acc[0][u], acc[1][u]), inv, vb[u]));
    }
}

// The x86 entry: head width 32 by hand, any other through the portable loops.
#define CHROMA_EMB_X86_ATTENTION(SUFFIX, TARGET)                                                                  \
    TARGET inline void attention_head_x86_##SUFFIX(const float* qkv, const float* qb, float* ctx, size_t begin,   \
                                                   size_t end, size_t head, size_t hidden, size_t head_dim,       \
                                                   AttentionScratch& s) {                                         \
        if (head_dim == 32) return attention_head32_avx2(qkv, qb, ctx, begin, end, head, hidden, s);             \
        attention_head(qkv, qb, ctx, begin, end, head, hidden, head_dim, s);                                      \
    }
CHROMA_EMB_X86_ATTENTION(avx2, CHROMA_EMB_TARGET_AVX2)
CHROMA_EMB_X86_ATTENTION(avx512, CHROMA_EMB_TARGET_AVX512)
#undef CHROMA_EMB_X86_ATTENTION
#endif

// One entry per instruction set, each the same portable body compiled for it.
struct Kernels {
    void (*bias_gelu)(float*, const float*, size_t, size_t);
    void (*residual_layer_norm)(const float*, const float*, float*, const float*, const float*, float, size_t, size_t);
    void (*attention_head)(const float*, const float*, float*, size_t, size_t, size_t, size_t, size_t,
                           AttentionScratch&);
};

#define CHROMA_EMB_KERNELS(SUFFIX, TARGET, ATTENTION)                                                                   \
    TARGET inline void bias_gelu_##SUFFIX(float* x, const float* b, size_t rows, size_t width) {              \
        bias_gelu_rows(x, b, rows, width);                                                                    \
    }                                                                                                         \
    TARGET inline void residual_layer_norm_##SUFFIX(const float* x, const float* b, float* h, const float* g, \
                                                    const float* be, float eps, size_t rows, size_t width) {  \
        residual_layer_norm_rows(x, b, h, g, be, eps, rows, width);                                           \
    }                                                                                                         \
    TARGET inline void attention_head_##SUFFIX(const float* qkv, const float* qb, float* ctx, size_t begin,   \
                                               size_t end, size_t head, size_t hidden, size_t head_dim,       \
                                               AttentionScratch& s) {                                         \
        attention_head(qkv, qb, ctx, begin, end, head, hidden, head_dim, s);                                  \
    }                                                                                                         \
    inline const Kernels kernels_##SUFFIX{bias_gelu_##SUFFIX, residual_layer_norm_##SUFFIX, ATTENTION};

CHROMA_EMB_KERNELS(portable, , attention_head_portable)
#if defined(CHROMA_EMB_X86_TARGETS)
CHROMA_EMB_KERNELS(avx2, CHROMA_EMB_TARGET_AVX2, attention_head_x86_avx2)
CHROMA_EMB_KERNELS(avx512, CHROMA_EMB_TARGET_AVX512, attention_head_x86_avx512)
#endif
#undef CHROMA_EMB_KERNELS

// The fastest set this CPU runs, or the one named by CHROMA_EMBEDDING_SIMD
// (portable, avx2, avx512), which the tests use to check every set here.
inline const Kernels& select_kernels(const std::string& name) {
#if defined(CHROMA_EMB_X86_TARGETS)
    const CpuFeatures f = detect_cpu_features();
    if (name == "avx512" || (name.empty() && f.avx512)) {
        if (!f.avx512) throw std::invalid_argument("this CPU has no AVX-512");
        return kernels_avx512;
    }
    if (name == "avx2" || (name.empty() && f.avx2_fma)) {
        if (!f.avx2_fma) throw std::invalid_argument("this CPU has no AVX2/FMA");
        return kernels_avx2;
    }
#endif
    if (name.empty() || name == "portable") return kernels_portable;
    throw std::invalid_argument("unknown SIMD path '" + name + "' (portable, avx2, avx512)");
}

// Rows per pool task of the row-wise kernels: enough to amortize a handout.
constexpr size_t kRowsPerTask = 32;

// Each kernel below runs on the core's thread pool when `parallel`, else
// entirely on the calling thread: for callers that already keep every core
// busy with batches of their own, where handing rows to the pool would only
// make the threads wait on each other.
template <class RowsFn>
inline void parallel_rows(size_t rows, bool parallel, const RowsFn& fn) {
    if (!parallel) return fn(size_t(0), rows);
    const size_t tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
    ThreadPool::instance().run(tasks, [&](size_t t, size_t) {
        const size_t begin = t * kRowsPerTask, end = std::min(rows, begin + kRowsPerTask);
        fn(begin, end);
    });
}

inline void bias_gelu(const Kernels& k, float* x, const float* bias, size_t rows, size_t width, bool parallel) {
    parallel_rows(rows, parallel, [&](size_t b, size_t e) { k.bias_gelu(x + b * width, bias, e - b, width); });
}

inline void residual_layer_norm(const Kernels& k, const float* x, const float* bias, float* hidden,
                                const float* gamma, const float* beta, float eps, size_t rows, size_t width,
                                bool parallel) {
    if (width % kLanes != 0) throw std::invalid_argument("layer norm width must be a multiple of 16");
    parallel_rows(rows, parallel, [&](size_t b, size_t e) {
        k.residual_layer_norm(x == nullptr ? nullptr : x + b * width, bias, hidden + b * width, gamma, beta, eps,
                              e - b, width);
    });
}

// ctx (rows x hidden) = multi-head self-attention of every sequence, from
// qkv (rows x 3 hidden) and its bias (3 hidden).
inline void attention(const Kernels& k, const float* qkv, const float* qkv_bias, float* ctx,
                      const int64_t* offsets, size_t nseq, size_t heads, size_t hidden, bool parallel) {
    if (heads == 0 || hidden % heads != 0) throw std::invalid_argument("hidden size must be a multiple of heads");
    const size_t head_dim = hidden / heads;
    auto task = [&](size_t t, AttentionScratch& scratch) {
        const size_t seq = t / heads, head = t % heads;
        k.attention_head(qkv, qkv_bias, ctx, size_t(offsets[seq]), size_t(offsets[seq + 1]), head, hidden, head_dim,
                         scratch);
    };
    if (!parallel) {
        AttentionScratch scratch;
        for (size_t t = 0; t < nseq * heads; ++t) task(t, scratch);
        return;
    }
    ThreadPool& pool = ThreadPool::instance();
    std::vector<AttentionScratch> scratch(pool.max_slots(nseq * heads));
    pool.run(nseq * heads, [&](size_t t, size_t slot) { task(t, scratch[slot]); });
}

}  // namespace embedding_ops
}  // namespace chroma
