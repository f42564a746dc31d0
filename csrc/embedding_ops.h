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

// Self-attention of one head over one sequence's rows [begin, end) of qkv
// (each row: the query, key and value projections, without their bias),
// written into that head's columns of ctx. No mask: the rows are the
// sequence's real tokens only.
CHROMA_EMB_INLINE void attention_head(const float* qkv, const float* qkv_bias, float* ctx, size_t begin, size_t end,
                                      size_t head, size_t hidden, size_t head_dim, AttentionScratch& s) {
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

// One entry per instruction set, each the same portable body compiled for it.
struct Kernels {
    void (*bias_gelu)(float*, const float*, size_t, size_t);
    void (*residual_layer_norm)(const float*, const float*, float*, const float*, const float*, float, size_t, size_t);
    void (*attention_head)(const float*, const float*, float*, size_t, size_t, size_t, size_t, size_t,
                           AttentionScratch&);
};

#define CHROMA_EMB_KERNELS(SUFFIX, TARGET)                                                                     \
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
    inline const Kernels kernels_##SUFFIX{bias_gelu_##SUFFIX, residual_layer_norm_##SUFFIX, attention_head_##SUFFIX};

CHROMA_EMB_KERNELS(portable, )
#if defined(CHROMA_EMB_X86_TARGETS)
CHROMA_EMB_KERNELS(avx2, CHROMA_EMB_TARGET_AVX2)
CHROMA_EMB_KERNELS(avx512, CHROMA_EMB_TARGET_AVX512)
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

template <class RowsFn>
inline void parallel_rows(size_t rows, const RowsFn& fn) {
    const size_t tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
    ThreadPool::instance().run(tasks, [&](size_t t, size_t) {
        const size_t begin = t * kRowsPerTask, end = std::min(rows, begin + kRowsPerTask);
        fn(begin, end);
    });
}

inline void bias_gelu(const Kernels& k, float* x, const float* bias, size_t rows, size_t width) {
    parallel_rows(rows, [&](size_t b, size_t e) { k.bias_gelu(x + b * width, bias, e - b, width); });
}

inline void residual_layer_norm(const Kernels& k, const float* x, const float* bias, float* hidden,
                                const float* gamma, const float* beta, float eps, size_t rows, size_t width) {
    if (width % kLanes != 0) throw std::invalid_argument("layer norm width must be a multiple of 16");
    parallel_rows(rows, [&](size_t b, size_t e) {
        k.residual_layer_norm(x == nullptr ? nullptr : x + b * width, bias, hidden + b * width, gamma, beta, eps,
                              e - b, width);
    });
}

// ctx (rows x hidden) = multi-head self-attention of every sequence, from
// qkv (rows x 3 hidden) and its bias (3 hidden).
inline void attention(const Kernels& k, const float* qkv, const float* qkv_bias, float* ctx,
                      const int64_t* offsets, size_t nseq, size_t heads, size_t hidden) {
    if (heads == 0 || hidden % heads != 0) throw std::invalid_argument("hidden size must be a multiple of heads");
    const size_t head_dim = hidden / heads;
    ThreadPool& pool = ThreadPool::instance();
    std::vector<AttentionScratch> scratch(pool.max_slots(nseq * heads));
    pool.run(nseq * heads, [&](size_t t, size_t slot) {
        const size_t seq = t / heads, head = t % heads;
        k.attention_head(qkv, qkv_bias, ctx, size_t(offsets[seq]), size_t(offsets[seq + 1]), head, hidden, head_dim,
                         scratch[slot]);
    });
}

}  // namespace embedding_ops
}  // namespace chroma
