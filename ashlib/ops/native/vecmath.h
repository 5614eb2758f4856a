/* Vectorisable float32 helpers shared by the native kernels (see ash_cpu.c).
 *
 * The library is built with -ffinite-math-only -fno-signed-zeros but without -ffast-math, so
 * the compiler keeps the order of every floating-point operation; loops stay vectorisable when
 * they avoid library calls (fminf, expf, ...) and branches. */
#ifndef ASHLIB_VECMATH_H
#define ASHLIB_VECMATH_H
#include <float.h>
#include <math.h>
#include <stdint.h>

/* c[0] z^(n-1) + c[1] z^(n-2) + ... + c[n-1] by Horner's rule with fused multiply-adds; called
 * with a constant table and n, it unrolls to the same code as the chain written out. */
static inline float horner_f32(float z, const float *c, int n) {
    float p = c[0];
    for (int i = 1; i < n; ++i) p = fmaf(p, z, c[i]);
    return p;
}

/* The same polynomial by Estrin's scheme: pairs c z + c' first, then pairs of those in z^2, then
 * Horner in z^4. The same number of operations as Horner's rule, but a dependency chain of about
 * log2(n) + 2 fused multiply-adds instead of n - 1, which is what limits the element-wise kernels
 * (long chains of dependent polynomial steps; the out-of-order window holds too few iterations
 * to hide them). Rounds differently from horner_f32 (about the same accuracy). n <= 16: call it
 * through ESTRIN, which takes n from the table and refuses a longer one at compile time. */
static inline float estrin_f32(float z, const float *c, int n) {
    float z2 = z * z, z4 = z2 * z2;
    float t[8], u[4];
    int m = 0, k = 0, i = n % 2, j;
    if (i) t[m++] = c[0]; /* an odd count: the leading coefficient stands alone */
    for (; i < n; i += 2) t[m++] = fmaf(c[i], z, c[i + 1]);
    j = m % 2;
    if (j) u[k++] = t[0];
    for (; j < m; j += 2) u[k++] = fmaf(t[j], z2, t[j + 1]);
    float p = u[0];
    for (int l = 1; l < k; ++l) p = fmaf(p, z4, u[l]);
    return p;
}
#define ESTRIN(z, TABLE)                                                                           \
    (__extension__({                                                                               \
        _Static_assert(sizeof(TABLE) / sizeof((TABLE)[0]) <= 16, "estrin_f32 takes n <= 16");       \
        estrin_f32((z), (TABLE), (int)(sizeof(TABLE) / sizeof((TABLE)[0])));                       \
    }))

/* exp(r) on [-ln2/2, ln2/2]: degree 6, interpolating at the Chebyshev points (relative error
 * 2.5e-9 in exact arithmetic, 1e-7 in float32; checked in tests/test_native.py) */
static const float EXP_POLY[7] = {1.3941108481958508e-3f, 8.37512593716383e-3f, 4.166635125875473e-2f, 1.6666415333747864e-1f, 0.5f, 1.0f, 1.0f};

/* exp(v) for float32 and v in [-87, 88] (the callers clamp), relative error about 1 ulp, written
 * to vectorise: Cody-Waite reduction v = k ln2 + r, |r| <= ln2/2, a polynomial for exp(r), and
 * 2^k added to the exponent bits. The clamp keeps both exp(v) and 1 + exp(v) normal and finite. */
#define EXP_LO (-87.0f)
#define EXP_HI 88.0f
/* The reduction v = k ln2 + r, |r| <= ln2/2 (Cody-Waite: ln2 in two parts, the product of k and
 * the first exact); *km holds k in its low bits */
static inline float exp_reduce_f32(float v, float *km) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float m = fmaf(v, 1.44269504088896341f, magic);
    float kf = m - magic;
    float r = fmaf(kf, -0.693145751953125f, v);  /* ln2, high part: kf * it is exact */
    *km = m;
    return fmaf(kf, -1.428606765330187e-06f, r); /* ln2, low part */
}
/* p 2^k for the k held in km: the low bits of km hold k (two's complement); shifted into the
 * exponent field they multiply p by 2^k, which stays normal for k in [-126, 127] */
static inline float exp_scale_f32(float p, float km) {
    union { float f; uint32_t u; } pk, kb;
    kb.f = km;
    pk.f = p;
    pk.u += kb.u << 23;
    return pk.f;
}
static inline float exp_poly_f32(float v, int estrin) {
    float km;
    float r = exp_reduce_f32(v, &km);
    float p = estrin ? ESTRIN(r, EXP_POLY) : horner_f32(r, EXP_POLY, 7);
    return exp_scale_f32(p, km);
}
/* ASH's kernels take Horner's rule: they are limited by memory traffic, where the shorter chain
 * measured no gain, and they keep their results bit for bit. Adaptive ReLU and Swish take
 * Estrin's scheme. Adaptive Gumbel has its own (elementwise_cpu.c): Estrin's scheme for the
 * exponential at the head of its chain, Horner's rule (fewer multiplications) at its tail. */
static inline float exp_f32(float v) { return exp_poly_f32(v, 0); }
static inline float exp_estrin_f32(float v) { return exp_poly_f32(v, 1); }

/* v finite and v <= lim, by the exponent bits: the build assumes finite math
 * (-ffinite-math-only), under which a comparison may not see a nan or an inf */
static inline int finite_below(double v, double lim) {
    union { double d; uint64_t u; } b;
    b.d = v;
    return (b.u & 0x7FF0000000000000ull) != 0x7FF0000000000000ull && v <= lim;
}

static inline float clampf(float v, float lo, float hi) {
    /* in the operand order of the SSE/AVX min and max instructions (fminf and fmaxf differ on
     * nan and do not vectorise without -ffast-math) */
    v = v < hi ? v : hi;
    return v > lo ? v : lo;
}

static inline float load_f32(const float *p, int64_t i) { return p[i]; }
static inline void store_f32(float *p, int64_t i, float v) { p[i] = v; }
static inline float load_bf16(const uint16_t *p, int64_t i) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)p[i] << 16;
    return v.f;
}
static inline void store_bf16(uint16_t *p, int64_t i, float f) {
    union { uint32_t u; float f; } v;
    v.f = f; /* round to nearest even; inputs are finite (the caller checks the range) */
    p[i] = (uint16_t)((v.u + 0x7FFFu + ((v.u >> 16) & 1u)) >> 16);
}

#endif
