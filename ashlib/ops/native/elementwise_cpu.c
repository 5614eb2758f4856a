/* Adaptive Gumbel, adaptive ReLU (exponential CDF) and Swish on the CPU: forward, analytic
 * backward and the per-channel parameter gradient.
 *
 * The formulas, and why they meet the numerical contract in float32, are those of
 * ashlib/fused_elementwise.py; this file evaluates them in vectorisable loops (our own exp,
 * expm1 and log1p polynomials, no libm calls, no branches in the loops). Elements that float32
 * cannot do (the same policy as the ATen path: Gumbel L > 10, Swish |beta x| > 80 or
 * |x| > 1e18, any non-finite x) are "hard": the kernels count them, leave them out of the
 * parameter-gradient sums and write values that the caller overwrites (in float64) whenever the
 * count is not zero; *_hard_* writes the mask of those elements.
 *
 * Layout: x is contiguous, seen as (outer, K, inner), and element i uses parameter p[(i / inner)
 * % K]. Each call handles the flat element range [e0, e1). With inner > 1 the parameter is
 * constant along runs of `inner` elements (a per-channel parameter of a feature map, or one
 * scalar with K = 1 and inner = the whole tensor); with inner = 1 it varies along the contiguous
 * dimension (the caller repeats the parameter to make inner = 1 when runs would be short).
 * Parameter-gradient sums go to acc[K] (float64; one array per call, summed by the caller),
 * through float32 partial sums over at most EW_BLOCK elements of a run (inner > 1) or over
 * EW_FLUSH_ROWS rows (inner = 1).
 *
 * Every kernel first checks the parameter (finite, and 2^-30 <= alpha <= 2^30 for Gumbel and
 * ReLU, |beta| <= 2^30 for Swish: the range in which no intermediate overflows) and returns -1
 * without touching anything when it is outside (or when the backward cannot allocate its
 * partial sums); else it returns the number of hard elements. Every intermediate stays finite
 * for every finite x, hard elements and the unselected side of each blend included.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vecmath.h"

/* expm1: (e^r - 1 - r)/r^2 on |r| <= ln2/2, degree 4, near-minimax (scripts/fit_polynomials.py;
 * error 6.2e-8 relative to expm1(r)) */
static const float EXPM1_POLY[5] = {0.0013881423913477153f, 0.008363093171707081f, 0.04166709124095812f, 0.166665777444986f, 0.49999999198656614f};
/* log1p: (atanh(s)/s - 1)/s^2 as a polynomial in s^2 for |s| <= 3 - 2 sqrt(2), degree 2 (the same
 * script; error 8.1e-10 relative to atanh(s)/s) */
static const float ATANH_POLY[3] = {0.14935865788949446f, 0.19988770703324032f, 0.33333388191682145f};
/* adaptive Gumbel's e^r on |r| <= ln2/2: 1 + r Q(r), Q of degree 4 (the table ends with the exact
 * 1; the same script; error 9.2e-8 relative, 9.5e-8 with the coefficients rounded): one
 * multiply-add fewer than EXP_POLY, well within the contract (the relative errors of e^x and
 * e^{-L} reach the results at most 10-fold) */
static const float EXP5_POLY[6] = {0.008290312650403798f, 0.04189793029272981f, 0.1666763622781729f, 0.49999149520276015f, 0.9999997071784246f, 1.0f};
/* Swish: silu'(u)/(u - root) near the zero of silu' (see swish_bwd) */
static const float SWISH_ROOT_POLY[7] = {7.9852188183979978e-4f, 1.26627410081122e-4f, -6.6065891383566964e-3f, -1.5222655223188032e-2f, 1.8874814223782313e-2f, 1.466487969969469e-1f, 2.178117057198001e-1f};

#define EW_BLOCK 512 /* elements per float32 partial sum and per int32 count */
#define EW_AI __attribute__((always_inline))

static inline uint32_t f32_bits(float v) {
    union { float f; uint32_t u; } b;
    b.f = v;
    return b.u;
}
static inline float bits_f32(uint32_t u) {
    union { float f; uint32_t u; } b;
    b.u = u;
    return b.f;
}
/* |v| >= 2^128 by the bits: inf or nan (the build assumes finite math, so no comparison sees them) */
static inline int nonfinite_f32(float v) { return (f32_bits(v) & 0x7FFFFFFFu) >= 0x7F800000u; }

/* c ? 0 : v, and c ? a : b, by masking the bits (c is 0 or 1). Written as selects, GCC's partial
 * redundancy elimination may split a loop on them (a constant 0 folds everything downstream under
 * -ffinite-math-only), and the branches keep the loop from vectorising. */
static inline float zero_if(int c, float v) { return bits_f32(f32_bits(v) & ((uint32_t)c - 1u)); }
static inline float select_f32(int c, float a, float b) {
    uint32_t m = (uint32_t)-(int32_t)c;
    return bits_f32((f32_bits(a) & m) | (f32_bits(b) & ~m));
}

/* |v| by clearing the sign bit (under -fno-signed-zeros the compiler may drop a negation of 0) */
static inline float abs_f32(float v) { return bits_f32(f32_bits(v) & 0x7FFFFFFFu); }

/* exp(min(v, hi)) for hi <= EXP_HI, and exactly 0 below EXP_LO (where exp_f32 alone would clamp
 * to e^-87) */
static inline float exp0_f32(float v, float hi) { return zero_if(v < EXP_LO, exp_estrin_f32(clampf(v, EXP_LO, hi))); }

/* adaptive Gumbel's e^v, v in [EXP_LO, EXP_HI], relative error about 2 ulp: the reduction of
 * exp_f32 and EXP5_POLY, by Estrin's scheme at the head of the kernels' dependency chain (e^x)
 * and by Horner's rule, which takes fewer multiplications, at its tail (e^{-L} in the backward:
 * 3% faster there, measured in one run) */
static inline float gumbel_exp_f32(float v, int estrin) {
    float km;
    float r = exp_reduce_f32(v, &km);
    return exp_scale_f32(estrin ? ESTRIN(r, EXP5_POLY) : horner_f32(r, EXP5_POLY, 6), km);
}

/* expm1(v), relative error about 2 ulp (v is clamped to [EXP_LO, EXP_HI]; expm1(-87) is -1 in
 * float32). The reduction of exp_f32, v = k ln2 + r with |r| <= ln2/2, then
 * expm1(v) = 2^k expm1(r) + (2^k - 1) in one rounding; expm1(r) = r + r^2 P(r), P of degree 4
 * (EXPM1_POLY, by Horner's rule: at the tail of adaptive Gumbel's forward chain its fewer
 * multiplications made the forward 4.6% faster than Estrin's scheme, measured in one run). For
 * k = 0 (|v| < ln2/2) this is expm1(v) itself, with no cancellation; elsewhere |expm1(v)| > 0.29. */
static inline float expm1_inrange_f32(float v) { /* v in [EXP_LO, EXP_HI] already */
    float km;
    float r = exp_reduce_f32(v, &km);
    float p = horner_f32(r, EXPM1_POLY, 5);
    float em = fmaf(r * r, p, r);
    float t = exp_scale_f32(1.0f, km); /* 2^k */
    return fmaf(t, em, t - 1.0f);
}
static inline float expm1_f32(float v) { return expm1_inrange_f32(clampf(v, EXP_LO, EXP_HI)); }

/* log1p(q) for 2^-125 <= q < 2^126 (and 0), relative error about 2 ulp (below 2^-125, s = q/2 is
 * subnormal and loses relative precision; adaptive Gumbel meets such q only for alpha < 1.2e-8,
 * outside the contract's range): m = 1 + q (rounded) gives k with
 * m = 2^k f, f in [sqrt(1/2), sqrt(2)); then 1 + q = 2^k (1 + z) with z = q 2^-k + (2^-k - 1) in
 * one rounding (2^-k - 1 is exact for k <= 24, and z = q exactly for k = 0), and
 * log(1 + z) = 2 atanh(s) = 2s + 2s s^2 P(s^2), s = z/(2 + z), |s| <= 0.172, P of degree 2
 * (ATANH_POLY). The division goes to the divider, which the rest of the loop leaves idle; the
 * series in s needs 3 coefficients where one in z needs 9. */
static inline float log1p_parts_f32(float q, float extra, float *s_out, float *p_out) {
    float m = 1.0f + q;
    uint32_t ix = f32_bits(m) + (0x3F800000u - 0x3F3504F3u);
    float kf = (float)((int32_t)(ix >> 23) - 127);
    float sc = bits_f32((254u << 23) - (ix & 0xFF800000u)); /* 2^-k */
    float z = fmaf(q, sc, sc - 1.0f);
    float d = fmaf(q, sc, sc + 1.0f); /* 2 + z, formed beside z rather than after it */
    float s = z / d;
    float u = s * s;
    float s2 = s + s;
    float pu = horner_f32(u, ATANH_POLY, 3);
    *s_out = s;
    *p_out = pu;
    /* ln 2 = 0.693359375 - 2.12194440e-4: kf times the first part is exact. The sum is split
     * into hi = k ln2_hi + 2s and lo = 2s s^2 P(s^2) + k ln2_lo + extra, each formed as soon as
     * its inputs are (hi long before lo), so that the polynomial is followed by one fused
     * multiply-add and one addition: the element-wise kernels are limited by their chains of
     * dependent operations as much as by their multiplications. For k = 0 and extra = 0 this
     * rounds like 2s + 2s s^2 P(s^2). */
    float hi = fmaf(kf, 0.693359375f, s2);
    float lo = fmaf(s2 * u, pu, fmaf(kf, -2.12194440e-4f, extra));
    return hi + lo;
}
/* log1p(q) + extra, and (for adaptive Gumbel's backward) s and P(s^2) of the reduction */
static inline float log1p_f32(float q) {
    float s, pu;
    return log1p_parts_f32(q, 0.0f, &s, &pu);
}

/* --- parameter checks ----------------------------------------------------------------------- */

#define EW_PMIN 0x30800000u /* 2^-30 */
#define EW_PMAX 0x4E800000u /* 2^30 */
static int positive_params_ok(int64_t K, const float *p) {
    int bad = 0;
    for (int64_t k = 0; k < K; ++k) {
        uint32_t b = f32_bits(p[k]); /* negative and nan have bits outside [PMIN, PMAX] */
        bad |= b < EW_PMIN || b > EW_PMAX;
    }
    return !bad;
}
static int real_params_ok(int64_t K, const float *p) {
    int bad = 0;
    for (int64_t k = 0; k < K; ++k) bad |= (f32_bits(p[k]) & 0x7FFFFFFFu) > EW_PMAX;
    return !bad;
}

/* --- the element functions ------------------------------------------------------------------
 * Each takes x, the parameter a and the upstream gradient g, computes the outputs whose flag is
 * set (literals at every call, so that the rest is compiled away) and returns 1 for a hard
 * element. dy/dx comes back multiplied by g, dy/da multiplied by g and 0 for a hard element. */

/* Swish y = x S(u), u = b x. dy/dx = S(u)(1 + u S(-u)) has a simple zero at u = R; within
 * |u - R| < SW_BAND it is d P(d), d = u - R from the exact product b x (fmaf gives its rounding
 * error; u - R_HI is exact there), P the Taylor polynomial of degree 7 (relative truncation
 * 5e-10 on the band). Outside, |dy/dx| > 0.046 and the float32 formula is within 1.2e-6. */
#define SW_X_BIG 0x5D5E0B6Bu /* bits of 1e18f */
#define SW_U_BIG 80.0f
#define SW_R_HI (-1.27846455574035645f)
#define SW_R_LO (-1.2784645427610738 - (double)SW_R_HI)
#define SW_BAND 0.2f
static inline EW_AI int swish_elem(float xv, float b, float t, int plain, float gv, int ny, int nx, int na,
                                   float *y, float *dx, float *da) {
    (void)t, (void)plain;
    int hard_x = (f32_bits(xv) & 0x7FFFFFFFu) > SW_X_BIG; /* also inf and nan */
    float xs = clampf(xv, -1e18f, 1e18f);                  /* |u| <= 2^30 1e18: finite */
    float u = b * xs;
    float au = u < 0.0f ? -u : u;
    int hard = hard_x | (au > SW_U_BIG);
    float e = exp_estrin_f32(clampf(-u, EXP_LO, EXP_HI));
    float s = 1.0f / (1.0f + e); /* S(u) */
    if (ny) *y = xs * s;
    if (nx || na) {
        float sm = e * s; /* S(-u), not 1 - S(u) */
        if (nx) {
            float gen = s * fmaf(u, sm, 1.0f);
            float err = fmaf(b, xs, -u);
            float d = ((u - SW_R_HI) - (float)SW_R_LO) + err;
            float p = horner_f32(d, SWISH_ROOT_POLY, 7);
            float ad = d < 0.0f ? -d : d;
            *dx = gv * select_f32(ad < SW_BAND, d * p, gen);
        }
        if (na) {
            float v = gv * (xs * (xs * (s * sm))); /* x^2 S(u) S(-u) */
            *da = zero_if(hard, v);
        }
    }
    return hard;
}

/* Adaptive ReLU, exponential CDF: y = x (1 - e^{-u}), u = a x, for x > 0 (else 0).
 * dy/dx = (1 - e^{-u}) + u e^{-u}; dy/da = x^2 e^{-u} = (x e^{-u/2})^2. u is formed from x capped
 * at 2^96 (a <= 2^30 keeps it finite; beyond the cap e^{-u} is 0 anyway). Only a non-finite x
 * is hard. */
#define RE_X_CAP 7.922816251426434e28f /* 2^96 */
static inline EW_AI int relu_elem(float xv, float a, float t, int plain, float gv, int ny, int nx, int na,
                                  float *y, float *dx, float *da) {
    (void)t, (void)plain;
    int hard = nonfinite_f32(xv);
    float xp = clampf(xv, 0.0f, FLT_MAX);
    float u = a * clampf(xv, 0.0f, RE_X_CAP);
    float f = -expm1_f32(-u); /* 1 - e^{-u}, relative accuracy for small u */
    if (ny) *y = abs_f32(xp * f); /* >= 0: +0, not -0, for x <= 0 (as the ATen path) */
    if (nx || na) {
        float e2 = exp0_f32(-0.5f * u, EXP_HI); /* e^{-u/2}: no overflow of x^2, no underflow of e^{-u} */
        if (nx) *dx = gv * fmaf(clampf(u, 0.0f, 1e4f) * e2, e2, f);
        if (na) {
            float t = e2 * xp;
            float v = gv * (t * t);
            *da = zero_if(hard, v);
        }
    }
    return hard;
}

/* Adaptive Gumbel: y = 1 - e^{-L}, L = log1p(q)/a, q = a e^x (e^x taken at min(x, 60); above,
 * log1p(q) grows by x - 60). Hard where x > t(a) (then L > 10, up to the margin of gumbel_limits)
 * or x is not finite; x is capped at t(a), so that hard elements stay finite and L <= 10 (to
 * float32 rounding) everywhere. dy/dx = e^{-L} e^x/(1 + q);
 * dy/da = -e^{-L} h/a^2, h = log1p(q) - q/(1 + q). For q < 13/32 (< sqrt(2) - 1) the reduction
 * of log1p_f32 has k = 0, z = q and s = q/(2 + q), so that q/(1 + q) = 2s/(1 + s), 2/(1 + s) =
 * 1 + 1/(1 + q) and h = 2 atanh(s) - 2s/(1 + s) = s^2 (1 + 1/(1 + q) + 2s P(s^2)): no
 * cancellation, and no term that underflows where h/a^2 matters (s/a = e^x/(2 + q) is formed
 * first). Above, h >= 0.052: the difference amplifies the rounding errors of its two terms at
 * most 12-fold (1.6e-6 relative just above 13/32, measured against float64). */
#define GU_Q_SERIES 0.40625f /* 13/32 < sqrt(2) - 1: 1 + q rounds below sqrt(2), so k = 0 */
#define GU_X_CLAMP 60.0f
#define GU_A_SPLIT 1.75f

/* t(a) for each parameter: a float32 just below x_h = log(expm1(10 a)/a), where L = 10 (the
 * gradients carry e^{-L}, whose relative error is L times that of L; beyond, float64). Written
 * as log((expm1(10 a)/a - 1) + 1) for a < 1.75 and 10 a - log((a - 1) + 1) above (where
 * expm1(10 a) = e^{10 a} to float32 precision), with the kernels' own expm1 and log1p, so that
 * the loop over a row's parameters vectorises; the result, accurate to a few ulp, is lowered by
 * 2^-18 of itself (x_h >= log 10 > 0). Testing x against t(a) by the bits, once per element,
 * replaces testing L (after the log), the non-finite x and the cap on L. */
static void gumbel_limits(int64_t K, const float *p, float *t) {
    _Pragma("omp simd")
    for (int64_t k = 0; k < K; ++k) {
        float a = p[k];
        int low = a < GU_A_SPLIT;
        float w = expm1_inrange_f32(10.0f * clampf(a, 0.0f, GU_A_SPLIT)) / a; /* >= 10 */
        float l = log1p_f32(select_f32(low, w, a) - 1.0f);
        float xh = select_f32(low, l, fmaf(10.0f, a, -l));
        t[k] = xh - xh * 0x1p-18f;
    }
}
/* Swish and the adaptive ReLU need no limits (their hard elements are found after the fact) */
static inline void swish_limits(int64_t K, const float *p, float *t) { (void)K, (void)p, (void)t; }
static inline void relu_limits(int64_t K, const float *p, float *t) { (void)K, (void)p, (void)t; }
static inline EW_AI int gumbel_elem(float xv, float a, float t, int plain, float gv, int ny, int nx, int na,
                                    float *y, float *dx, float *da) {
    float ia = 1.0f / a;
    uint32_t xb = f32_bits(xv);
    /* x > t or nan, by the bits: t > 0, so a positive x (nan and inf included) compares as an
     * integer; the negative non-finite ones (-inf, -nan) are the bit patterns >= that of -inf */
    int hard = plain ? 0 : ((int32_t)xb > (int32_t)f32_bits(t)) | (xb >= 0xFF800000u);
    float xc = xv < t ? xv : t; /* t for nan too (the operand order of the min instruction) */
    /* e^{min(x, t, 60)}, 0 for -inf: the two caps are one (min(t, 60) is hoisted out of the
     * loop for a parameter per run), so that only two comparisons precede the exponential */
    float t60 = t < GU_X_CLAMP ? t : GU_X_CLAMP;
    float xe = xv < t60 ? xv : t60;
    float ex = plain ? gumbel_exp_f32(xv, 1) : zero_if(xe < EXP_LO, gumbel_exp_f32(xe > EXP_LO ? xe : EXP_LO, 1));
    float q = a * ex;
    float s, pu;
    float over = xc - GU_X_CLAMP;
    float lq = log1p_parts_f32(q, plain || over <= 0.0f ? 0.0f : over, &s, &pu);
    float L = lq * ia; /* in [0, 10] */
    if (ny) *y = abs_f32(expm1_inrange_f32(-L)); /* 1 - e^{-L} >= 0: +0, not -0, at L = 0 */
    if (nx || na) {
        float E = gumbel_exp_f32(-L, 0);
        float rm = 1.0f / (1.0f + q);
        float gE = gv * E;
        if (nx) *dx = gE * (ex * rm);
        if (na) {
            /* -h/a^2 for the two ranges of q; the minus sign rides on sn = s (-1/a) and on
             * fmaf(q, rm, -lq), negations that round exactly as the positive forms would */
            float sa = s * ia, sn = s * -ia;
            float small = (sa * sn) * fmaf(s + s, pu, 1.0f + rm);
            float large = fmaf(q, rm, -lq) * (ia * ia);
            float v = gE * (q < GU_Q_SERIES ? small : large);
            *da = plain ? v : zero_if(hard, v);
        }
    }
    return hard;
}

/* 1 when the block [b0, b1) of x needs no cap: adaptive Gumbel's x all finite, in [EXP_LO,
 * min(t, 60)] (so no hard element, no clamp, no x - 60 term), tested on the bits with integer
 * maxima. Such blocks run the element function with plain = 1, which drops those steps and gives
 * the same bits. With alpha near 1 (t about 10) that is nearly every block of activations of unit
 * scale; as alpha falls toward 0, t falls toward log 10 = 2.3, and a block holding a larger x
 * takes the full loop. gumbel_plain_* takes one limit t for the
 * block (a parameter per run), gumbel_plain_lanes_* one per element (tk[j - b0], a parameter
 * per column). Swish and ReLU have no such variant. */
#define EW_PLAIN_TESTS(SUF, T)                                                                     \
static inline int gumbel_plain_##SUF(const T *x, int64_t b0, int64_t b1, float t) {              \
    uint32_t umax = 0;                                                                             \
    int32_t smax = INT32_MIN;                                                                      \
    _Pragma("omp simd reduction(max:umax,smax)")                                                   \
    for (int64_t j = b0; j < b1; ++j) {                                                            \
        uint32_t b = f32_bits(load_##SUF(x, j));                                                   \
        umax = b > umax ? b : umax; /* the negative x: at least EXP_LO */                          \
        smax = (int32_t)b > smax ? (int32_t)b : smax; /* the positive x, inf and nan */            \
    }                                                                                              \
    float t60 = t < GU_X_CLAMP ? t : GU_X_CLAMP;                                                   \
    return smax <= (int32_t)f32_bits(t60) && umax <= f32_bits(EXP_LO);                             \
}                                                                                                  \
static inline int gumbel_plain_lanes_##SUF(const T *x, int64_t b0, int64_t b1, const float *tk) { \
    uint32_t umax = 0;                                                                             \
    int over = 0;                                                                                  \
    _Pragma("omp simd reduction(max:umax) reduction(|:over)")                                      \
    for (int64_t j = b0; j < b1; ++j) {                                                            \
        uint32_t b = f32_bits(load_##SUF(x, j));                                                   \
        float t = tk[j - b0];                                                                      \
        float t60 = t < GU_X_CLAMP ? t : GU_X_CLAMP;                                               \
        umax = b > umax ? b : umax;                                                                \
        over |= (int32_t)b > (int32_t)f32_bits(t60);                                               \
    }                                                                                              \
    return !over && umax <= f32_bits(EXP_LO);                                                      \
}                                                                                                  \
static inline int swish_plain_##SUF(const T *x, int64_t b0, int64_t b1, float t) {               \
    (void)x, (void)b0, (void)b1, (void)t;                                                          \
    return 0;                                                                                      \
}                                                                                                  \
static inline int relu_plain_##SUF(const T *x, int64_t b0, int64_t b1, float t) {                \
    (void)x, (void)b0, (void)b1, (void)t;                                                          \
    return 0;                                                                                      \
}                                                                                                  \
static inline int swish_plain_lanes_##SUF(const T *x, int64_t b0, int64_t b1, const float *tk) { \
    (void)x, (void)b0, (void)b1, (void)tk;                                                         \
    return 0;                                                                                      \
}                                                                                                  \
static inline int relu_plain_lanes_##SUF(const T *x, int64_t b0, int64_t b1, const float *tk) {  \
    (void)x, (void)b0, (void)b1, (void)tk;                                                         \
    return 0;                                                                                      \
}
EW_PLAIN_TESTS(f32, float)
EW_PLAIN_TESTS(bf16, uint16_t)

/* --- the loops --------------------------------------------------------------------------------
 * EW_RUNS walks [e0, e1) in runs of constant parameter (inner > 1) or of one row of K parameters
 * (inner == 1), within a run in blocks of at most EW_BLOCK elements, and runs AFTER_RUN after
 * each run. */

#define EW_RUNS(BODY_SCALAR, BODY_VECTOR, AFTER_RUN)                                               \
    int64_t row = inner == 1 ? 0 : e0 / inner; /* one division per call, none per run */           \
    int64_t k0 = inner == 1 ? e0 % K : row % K;                                                    \
    for (int64_t i = e0; i < e1;) {                                                                \
        int64_t end = inner == 1 ? i + (K - k0) : (row + 1) * inner;                               \
        if (end > e1) end = e1;                                                                    \
        for (int64_t b0 = i; b0 < end; b0 += EW_BLOCK) {                                           \
            const int64_t b1 = b0 + EW_BLOCK < end ? b0 + EW_BLOCK : end;                          \
            if (inner == 1) {                                                                      \
                const float *pk = p + k0 + (b0 - i);                                               \
                const float *tk = th + k0 + (b0 - i);                                              \
                (void)tk;                                                                          \
                float *fk = fb ? fb + k0 + (b0 - i) : NULL;                                        \
                (void)fk;                                                                          \
                BODY_VECTOR                                                                        \
            } else {                                                                               \
                const float pa = p[k0], pt = th[k0];                                               \
                (void)pt;                                                                          \
                BODY_SCALAR                                                                        \
            }                                                                                      \
        }                                                                                          \
        AFTER_RUN                                                                                  \
        i = end;                                                                                   \
        if (inner == 1) {                                                                          \
            k0 = 0;                                                                                \
        } else {                                                                                   \
            ++row;                                                                                 \
            if (++k0 == K) k0 = 0;                                                                 \
        }                                                                                          \
    }

/* One block of the forward or the hard-element scan: the element function at parameter PARAM and
 * limit LIMIT (y wanted when NEED_Y; PLAIN: the block needs no cap, see EW_PLAIN_TESTS), SINK per
 * element (h is 1 for a hard element), and the hard count. */
#define EW_SCAN(OP, SUF, PARAM, LIMIT, PLAIN, NEED_Y, SINK)                                        \
    {                                                                                              \
        int nh = 0;                                                                                \
        _Pragma("omp simd reduction(+:nh)")                                                        \
        for (int64_t j = b0; j < b1; ++j) {                                                        \
            float yv; float d1; float d2;                                                          \
            int h = OP##_elem(load_##SUF(x, j), PARAM, LIMIT, PLAIN, 0.0f, NEED_Y, 0, 0, &yv, &d1,  \
                              &d2);                                                                \
            SINK;                                                                                  \
            nh += h;                                                                               \
        }                                                                                          \
        hard += nh;                                                                                \
    }

/* th: the per-parameter limits of OP (OP##_limits) when HAS_LIMITS, else p itself (the element
 * function ignores it); thb is what the entry point frees. */
#define EW_LIMITS(OP, HAS_LIMITS)                                                                  \
    float *thb = NULL;                                                                             \
    const float *th = p;                                                                           \
    if (HAS_LIMITS) {                                                                              \
        thb = (float *)malloc((size_t)K * sizeof(float));                                          \
        if (!thb) return -1;                                                                       \
        OP##_limits(K, p, thb);                                                                    \
        th = thb;                                                                                  \
    }

/* rows of K float32 partial sums per flush into the float64 sums (inner == 1) */
#define EW_FLUSH_ROWS 16

/* One block of the backward with a parameter constant along it (PLAIN as in EW_SCAN): dy/dx to gx,
 * the block's float32 sum of g dy/da added to acc[k0] */
#define EW_BWD_BLOCK(OP, SUF, PLAIN)                                                               \
    {                                                                                              \
        int nh = 0;                                                                                \
        float sa = 0.0f;                                                                           \
        _Pragma("omp simd reduction(+:nh,sa)")                                                     \
        for (int64_t j = b0; j < b1; ++j) {                                                        \
            float yv; float dxv; float dav;                                                        \
            nh += OP##_elem(load_##SUF(x, j), pa, pt, PLAIN, load_##SUF(g, j), 0, nx, na, &yv,     \
                            &dxv, &dav);                                                           \
            if (nx) store_##SUF(gx, j, dxv);                                                       \
            if (na) sa += dav;                                                                     \
        }                                                                                          \
        if (na) acc[k0] += (double)sa;                                                             \
        hard += nh;                                                                                \
    }

/* One block of the backward with a parameter per element (a row of K, inner == 1): dy/dx to gx,
 * g dy/da added to the float32 partial sums fk */
#define EW_BWD_LANES(OP, SUF, PLAIN)                                                               \
    {                                                                                              \
        int nh = 0;                                                                                \
        _Pragma("omp simd reduction(+:nh)")                                                        \
        for (int64_t j = b0; j < b1; ++j) {                                                        \
            float yv; float dxv; float dav;                                                        \
            nh += OP##_elem(load_##SUF(x, j), pk[j - b0], tk[j - b0], PLAIN, load_##SUF(g, j), 0,  \
                            nx, na, &yv, &dxv, &dav);                                              \
            if (nx) store_##SUF(gx, j, dxv);                                                       \
            if (na) fk[j - b0] += dav;                                                             \
        }                                                                                          \
        hard += nh;                                                                                \
    }

#define DEFINE_ELEMENTWISE(OP, SUF, T, PARAMS_OK, HAS_LIMITS)                                      \
int64_t OP##_fwd_##SUF(int64_t e0, int64_t e1, int64_t inner, int64_t K, const T *x, T *y,         \
                       const float *p) {                                                           \
    if (!PARAMS_OK(K, p)) return -1;                                                               \
    EW_LIMITS(OP, HAS_LIMITS)                                                                      \
    float *fb = NULL;                                                                              \
    int64_t hard = 0;                                                                              \
    EW_RUNS(if (OP##_plain_##SUF(x, b0, b1, pt)) EW_SCAN(OP, SUF, pa, pt, 1, 1, store_##SUF(y, j, yv))  \
            else EW_SCAN(OP, SUF, pa, pt, 0, 1, store_##SUF(y, j, yv)),                            \
            if (OP##_plain_lanes_##SUF(x, b0, b1, tk))                                             \
                EW_SCAN(OP, SUF, pk[j - b0], tk[j - b0], 1, 1, store_##SUF(y, j, yv))              \
            else EW_SCAN(OP, SUF, pk[j - b0], tk[j - b0], 0, 1, store_##SUF(y, j, yv)), )          \
    free(thb);                                                                                     \
    return hard;                                                                                   \
}                                                                                                  \
static inline EW_AI int64_t OP##_bwd_loop_##SUF(int64_t e0, int64_t e1, int64_t inner, int64_t K,  \
        const T *x, const T *g, T *gx, const float *p, const float *th, double *acc, float *fb,    \
        int nx, int na) {                                                                          \
    int64_t hard = 0;                                                                              \
    int rows = 0;                                                                                  \
    EW_RUNS(if (OP##_plain_##SUF(x, b0, b1, pt)) EW_BWD_BLOCK(OP, SUF, 1)                       \
            else EW_BWD_BLOCK(OP, SUF, 0),                                                         \
            if (OP##_plain_lanes_##SUF(x, b0, b1, tk)) EW_BWD_LANES(OP, SUF, 1)                    \
            else EW_BWD_LANES(OP, SUF, 0), {                                                       \
        if (na && inner == 1) {                                                                    \
            rows += end == i + (K - k0);                                                           \
            if (rows == EW_FLUSH_ROWS || end == e1) {                                              \
                _Pragma("omp simd")                                                                \
                for (int64_t k = 0; k < K; ++k) {                                                  \
                    acc[k] += (double)fb[k];                                                       \
                    fb[k] = 0.0f;                                                                  \
                }                                                                                  \
                rows = 0;                                                                          \
            }                                                                                      \
        }                                                                                          \
    })                                                                                             \
    return hard;                                                                                   \
}                                                                                                  \
/* gx (may be NULL) = g dy/dx; acc (may be NULL) += the per-parameter sums of g dy/da. Returns the \
 * hard count, or -1 (nothing done) for a parameter out of range or a failed allocation. */        \
int64_t OP##_bwd_##SUF(int64_t e0, int64_t e1, int64_t inner, int64_t K, const T *x, const T *g,   \
                       T *gx, const float *p, double *acc) {                                       \
    if (!PARAMS_OK(K, p)) return -1;                                                               \
    EW_LIMITS(OP, HAS_LIMITS)                                                                      \
    float *fb = NULL;                                                                              \
    if (acc && inner == 1) { /* float32 partial sums per parameter, flushed every few rows */      \
        fb = (float *)calloc((size_t)K, sizeof(float));                                            \
        if (!fb) {                                                                                 \
            free(thb);                                                                             \
            return -1;                                                                             \
        }                                                                                          \
    }                                                                                              \
    int64_t hard = 0;                                                                              \
    if (gx && acc)                                                                                 \
        hard = OP##_bwd_loop_##SUF(e0, e1, inner, K, x, g, gx, p, th, acc, fb, 1, 1);              \
    else if (gx)                                                                                   \
        hard = OP##_bwd_loop_##SUF(e0, e1, inner, K, x, g, gx, p, th, acc, fb, 1, 0);              \
    else if (acc)                                                                                  \
        hard = OP##_bwd_loop_##SUF(e0, e1, inner, K, x, g, gx, p, th, acc, fb, 0, 1);              \
    free(fb);                                                                                      \
    free(thb);                                                                                     \
    return hard;                                                                                   \
}                                                                                                  \
/* mask[i] = 1 for the hard elements of [e0, e1) (mask indexed like x), else 0 */                  \
int64_t OP##_hard_##SUF(int64_t e0, int64_t e1, int64_t inner, int64_t K, const T *x,              \
                        const float *p, uint8_t *mask) {                                           \
    if (!PARAMS_OK(K, p)) return -1;                                                               \
    EW_LIMITS(OP, HAS_LIMITS)                                                                      \
    float *fb = NULL;                                                                              \
    int64_t hard = 0;                                                                              \
    EW_RUNS(EW_SCAN(OP, SUF, pa, pt, 0, 0, mask[j] = (uint8_t)h),                                  \
            EW_SCAN(OP, SUF, pk[j - b0], tk[j - b0], 0, 0, mask[j] = (uint8_t)h), )                \
    free(thb);                                                                                     \
    return hard;                                                                                   \
}

DEFINE_ELEMENTWISE(swish, f32, float, real_params_ok, 0)
DEFINE_ELEMENTWISE(swish, bf16, uint16_t, real_params_ok, 0)
DEFINE_ELEMENTWISE(relu, f32, float, positive_params_ok, 0)
DEFINE_ELEMENTWISE(relu, bf16, uint16_t, positive_params_ok, 0)
DEFINE_ELEMENTWISE(gumbel, f32, float, positive_params_ok, 1)
DEFINE_ELEMENTWISE(gumbel, bf16, uint16_t, positive_params_ok, 1)

/* For the tests: the vectorised exp (Estrin), adaptive Gumbel's exp (both schemes), expm1 and
 * log1p on an array. */
void ew_exp_f32(int64_t n, const float *x, float *y) {
    _Pragma("omp simd")
    for (int64_t i = 0; i < n; ++i) y[i] = exp_estrin_f32(x[i]);
}
void ew_gumbel_exp_f32(int64_t n, const float *x, float *y) {
    _Pragma("omp simd")
    for (int64_t i = 0; i < n; ++i) y[i] = gumbel_exp_f32(x[i], 1);
}
void ew_gumbel_exp_horner_f32(int64_t n, const float *x, float *y) {
    _Pragma("omp simd")
    for (int64_t i = 0; i < n; ++i) y[i] = gumbel_exp_f32(x[i], 0);
}
void ew_expm1_f32(int64_t n, const float *x, float *y) {
    _Pragma("omp simd")
    for (int64_t i = 0; i < n; ++i) y[i] = expm1_f32(x[i]);
}
void ew_log1p_f32(int64_t n, const float *x, float *y) {
    _Pragma("omp simd")
    for (int64_t i = 0; i < n; ++i) y[i] = log1p_f32(x[i]);
}
