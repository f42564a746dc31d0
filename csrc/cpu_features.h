// Which x86 SIMD extensions this CPU has and the operating system enables.
//
// CPUID says what the CPU implements; XGETBV says which register state the
// OS saves across context switches, without which the wide registers must
// not be used. This is our own check rather than __builtin_cpu_supports
// because Apple's x86-64 toolchain can leave that builtin's runtime symbol
// (___cpu_model) unresolved (reported with Apple Clang 17), and an extension
// module would only fail on it at import; MSVC has no such builtin at all.
// macOS turns AVX-512 state on lazily, so XCR0 does not show it there and a
// Mac with AVX-512 gets the AVX2 path: correct, if not the fastest.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#else
#include <cpuid.h>
#endif

namespace chroma {

struct CpuFeatures {
    bool avx2_fma = false;  // AVX2 and FMA, YMM state enabled
    bool avx512 = false;    // AVX-512 F, DQ, BW, VL on top of that, ZMM state enabled
};

namespace detail {

// Registers eax, ebx, ecx, edx of CPUID leaf/subleaf.
inline void cpuid(unsigned leaf, unsigned subleaf, unsigned r[4]) {
#if defined(_MSC_VER) && !defined(__clang__)
    int out[4];
    __cpuidex(out, int(leaf), int(subleaf));
    for (int i = 0; i < 4; ++i) r[i] = unsigned(out[i]);
#else
    __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
#endif
}

inline uint64_t xcr0() {
#if defined(_MSC_VER) && !defined(__clang__)
    return _xgetbv(0);
#else
    // The instruction directly: the _xgetbv intrinsic needs -mxsave.
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t(hi) << 32) | lo;
#endif
}

inline bool bit(unsigned reg, int n) { return (reg >> n) & 1u; }

}  // namespace detail

inline CpuFeatures detect_cpu_features() {
    CpuFeatures f;
    unsigned r[4];
    detail::cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    if (max_leaf < 7) return f;
    detail::cpuid(1, 0, r);
    const bool fma = detail::bit(r[2], 12), osxsave = detail::bit(r[2], 27), avx = detail::bit(r[2], 28);
    if (!(osxsave && avx)) return f;
    const uint64_t xcr0 = detail::xcr0();
    const bool ymm_state = (xcr0 & 0x6) == 0x6;     // SSE and AVX state
    const bool zmm_state = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
    detail::cpuid(7, 0, r);
    const unsigned b = r[1];
    f.avx2_fma = ymm_state && fma && detail::bit(b, 5);
    f.avx512 = f.avx2_fma && zmm_state && detail::bit(b, 16) /* F */ && detail::bit(b, 17) /* DQ */ &&
               detail::bit(b, 30) /* BW */ && detail::bit(b, 31) /* VL */;
    return f;
}

}  // namespace chroma
#endif  // x86-64
