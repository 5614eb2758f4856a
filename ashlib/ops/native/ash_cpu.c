/* Fused ASH / Leaky ASH on the CPU: per-sample statistics, forward and analytic backward.
 *
 * Built at first use by ashlib/native/__init__.py (the C compiler, -O3, native instruction set)
 * and called through ctypes; the formulas and their derivation are in ashlib/fused.py. Every
 * function works on `rows` samples of `n` contiguous elements each and handles one sample at a
 * time, so that its data stays in cache between the passes over it. The inner loops are written
 * to be vectorised by the compiler (`#pragma omp simd`, no branches, an exp of our own).
 *
 * Element types: float32 (suffix _f32) and bfloat16 stored as uint16 (suffix _bf16); all
 * arithmetic is float32, per-sample sums are float64.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vecmath.h"

/* A float32 scratch buffer of at least `count` elements, one per thread, kept between calls: a
 * fresh malloc of a few hundred kB per call is an mmap and a page fault per 4 kB. NULL when out
 * of memory. The memory stays with the thread (it is as large as the largest sample seen). */
static float *row_buffer(size_t count) {
    static __thread float *buf = NULL;
    static __thread size_t cap = 0;
    if (count > cap) {
        float *p = (float *)realloc(buf, sizeof(float) * count);
        if (!p) return NULL;
        buf = p;
        cap = count;
    }
    return buf;
}

/* t = mu + z*sigma (float64) as t_hi + t_lo in float32: x - t_hi is exact near t (Sterbenz),
 * so (x - t_hi) - t_lo is x - t to float32 relative precision even where 2*alpha*|t| is large. */
static inline void split_threshold(double t, float *hi, float *lo) {
    *hi = (float)t;
    *lo = (float)(t - (double)*hi);
}

/* The statistics in ash_forward_*: per-sample mean and sigma = sqrt(Var + eps) in float64, one
 * pass for the sum and the sum of squares, a second (centered) pass only for samples where
 * E[x^2] - mu^2 would cancel (mu^2 > ratio * Var). A sample passes the range check when the
 * float32 fast path is accurate for it: no inf or nan, |x - t| <= 2-norm + |t| below
 * FLT_MAX/64, and max|x| below MAXABS (beyond it, x*S(u) can be above 1e-30 where exp(-u)
 * leaves the clamped range of exp_f32). */
#define MAXABS 6.7108864e7 /* 2^26 */
#define WIDEN_CHUNK 2048 /* bfloat16 backward: elements widened to float32 at a time */
/* bwd_pass1 with `leaky` and whether PART is written as literals in each branch: one specialised
 * loop per case, with no condition left inside it (a conditional store keeps the loop from
 * vectorising where the instruction set has no masked stores, as AVX2) */
#define BWD_PASS1(N, XF, GF, PART, OUT)                                                             \
    do {                                                                                           \
        if (leaky && (PART))                                                                       \
            bwd_pass1((N), (XF), (GF), (PART), thi, tlo, A, c, ell, 1, 1, (OUT));                  \
        else if (leaky)                                                                            \
            bwd_pass1((N), (XF), (GF), NULL, thi, tlo, A, c, ell, 1, 0, (OUT));                    \
        else if (PART)                                                                             \
            bwd_pass1((N), (XF), (GF), (PART), thi, tlo, A, c, ell, 0, 1, (OUT));                  \
        else                                                                                       \
            bwd_pass1((N), (XF), (GF), NULL, thi, tlo, A, c, ell, 0, 0, (OUT));                    \
    } while (0)
/* One element of pass 1: w = x g S(u) S(-u) (the terms of R1), w d (R2), g x S(-u) (Rl, leaky
 * only), and the element-wise part of dL/dx into part[i]. */
#define BWD_ELEMENT(i, W1, W2, WL)                                                                 \
    do {                                                                                           \
        float xv = xr[i], gv = gr[i];                                                              \
        float d = (xv - thi) - tlo;                                                                \
        float e = exp_f32(clampf(-A * d, EXP_LO, EXP_HI));                                         \
        float s = 1.0f / (1.0f + e);   /* S(u) */                                                  \
        float sm = e * s;              /* S(-u), not 1 - S(u) */                                   \
        float gxv = gv * xv;                                                                       \
        float w = gxv * (sm * s);                                                                  \
        W1 = w;                                                                                    \
        W2 = w * d;                                                                                \
        WL = leaky ? gxv * sm : 0.0f;                                                              \
        if (has_part) part[i] = fmaf(gv, leaky ? fmaf(c, s, ell) : s, cA * w);                     \
    } while (0)

/* Pass 1 of the backward over one sample (see ash_backward_*): the sums R1 = sum x q,
 * R2 = sum x q d and, when leaky, Rl = sum g x S(-u) into out[0..2], and the element-wise part of
 * dL/dx, g (ell + c S(u)) + c A x q, into part[] when has_part. A block of LANES * GROUP
 * elements is computed into three small buffers (in L1); then each of LANES lanes adds its GROUP
 * terms (every LANES-th) in float32 and goes into its own float64 sum. The sums are about as
 * accurate as float32 products summed in float64, and they come out the same at any vector width
 * (AVX-512, AVX2, SSE): both loops vectorise without masked stores. `leaky` and `has_part` are
 * literals at each call, so the compiler builds one loop per case. */
#define LANES 16
#define GROUP 8
#define BWD_BLOCK (LANES * GROUP)
static inline __attribute__((always_inline)) void bwd_pass1(
        int64_t n, const float *xr, const float *gr, float *part, float thi, float tlo, float A, float c,
        float ell, int leaky, int has_part, double out[3]) {
    const float cA = c * A;
    float w1[BWD_BLOCK] __attribute__((aligned(64)));
    float w2[BWD_BLOCK] __attribute__((aligned(64)));
    float wl[BWD_BLOCK] __attribute__((aligned(64)));
    double d1[LANES] __attribute__((aligned(64))) = {0};
    double d2[LANES] __attribute__((aligned(64))) = {0};
    double dl[LANES] __attribute__((aligned(64))) = {0};
    for (int64_t b0 = 0; b0 < n; b0 += BWD_BLOCK) {
        const int m = n - b0 < BWD_BLOCK ? (int)(n - b0) : BWD_BLOCK;
        _Pragma("omp simd")
        for (int j = 0; j < m; ++j) {
            BWD_ELEMENT(b0 + j, w1[j], w2[j], wl[j]);
        }
        for (int j = m; j < BWD_BLOCK; ++j) /* the sample's last block: zero padding */
            w1[j] = w2[j] = wl[j] = 0.0f;
        _Pragma("omp simd")
        for (int l = 0; l < LANES; ++l) {
            float s1 = 0.0f, s2 = 0.0f, sl = 0.0f;
            for (int k = 0; k < GROUP; ++k) {
                s1 += w1[l + LANES * k];
                s2 += w2[l + LANES * k];
                sl += wl[l + LANES * k];
            }
            d1[l] += (double)s1;
            d2[l] += (double)s2;
            dl[l] += (double)sl;
        }
    }
    double r1 = 0.0, r2 = 0.0, rl = 0.0;
    for (int l = 0; l < LANES; ++l) {
        r1 += d1[l];
        r2 += d2[l];
        rl += dl[l];
    }
    out[0] = r1;
    out[1] = r2;
    out[2] = rl;
}


#define DEFINE_KERNELS(SUF, T)                                                                     \
/* y = x*(ell + c*S(u)) over one sample, u = A(x - t), c = 1 - ell; ASH is ell = 0.                \
 * S(u) = 1/(1 + e), e = exp(-u): relative accuracy in both tails, no cancellation. */             \
static inline __attribute__((always_inline)) void fwd_row_##SUF(int64_t n, const T *xr, T *yr,     \
                                                                double t, float A, float ell) {    \
    const float c = 1.0f - ell;                                                                    \
    float thi, tlo;                                                                                \
    split_threshold(t, &thi, &tlo);                                                                \
    _Pragma("omp simd")                                                                            \
    for (int64_t i = 0; i < n; ++i) {                                                              \
        float xv = load_##SUF(xr, i);                                                              \
        float e = exp_f32(clampf(-A * ((xv - thi) - tlo), EXP_LO, EXP_HI));                        \
        float s = 1.0f / (1.0f + e);                                                               \
        store_##SUF(yr, i, xv * fmaf(c, s, ell));                                                  \
    }                                                                                              \
}                                                                                                  \
/* The forward: per sample, the statistics (mu, sigma into mu[], sigma[]) and, while the sample    \
 * is in cache, y (skipped when y is NULL or the sample fails the range check). Returns 1 when     \
 * every sample passed, else 0 (the caller then discards y and uses the reference). */             \
int ash_forward_##SUF(int64_t rows, int64_t n, const T *x, T *y, double eps, double z, double ratio,\
                      float A, float ell, double *mu, double *sigma) {                             \
    int ok = 1;                                                                                    \
    for (int64_t r = 0; r < rows; ++r) {                                                           \
        const T *xr = x + r * n;                                                                   \
        double a = 0.0, b = 0.0;                                                                   \
        float mx = 0.0f;                                                                           \
        _Pragma("omp simd reduction(+:a,b) reduction(max:mx)")                                     \
        for (int64_t i = 0; i < n; ++i) {                                                          \
            float f = load_##SUF(xr, i);                                                           \
            double v = (double)f;                                                                  \
            a += v;                                                                                \
            b += v * v;                                                                            \
            float af = f < 0.0f ? -f : f;                                                          \
            mx = mx > af ? mx : af;                                                                \
        }                                                                                          \
        double m = a / (double)n;                                                                  \
        double var = fmax(b / (double)n - m * m, 0.0);                                             \
        if (m * m > ratio * var) {                                                                 \
            double c2 = 0.0;                                                                       \
            _Pragma("omp simd reduction(+:c2)")                                                    \
            for (int64_t i = 0; i < n; ++i) {                                                      \
                double v = (double)load_##SUF(xr, i) - m;                                          \
                c2 += v * v;                                                                       \
            }                                                                                      \
            var = c2 / (double)n;                                                                  \
        }                                                                                          \
        double s = sqrt(var + eps);                                                                \
        double bound = sqrt(b) + fabs(m + z * s);                                                  \
        mu[r] = m;                                                                                 \
        sigma[r] = s;                                                                              \
        if (!finite_below(bound, (double)FLT_MAX / 64.0) || !finite_below(mx, MAXABS)) {           \
            ok = 0;                                                                                \
            continue;                                                                              \
        }                                                                                          \
        if (y) fwd_row_##SUF(n, xr, y + r * n, m + z * s, A, ell);                                 \
    }                                                                                              \
    return ok;                                                                                     \
}                                                                                                  \
/* Backward, two passes per sample: pass 1 (bwd_pass1) gives the sums R1, R2, Rl and the           \
 * element-wise part of dL/dx (in gx itself for float32, else in a float32 row buffer); pass 2     \
 * adds the path through mu and sigma. bfloat16 samples are first widened to float32 row buffers,  \
 * so that both types run the same float32 loops. gx may be NULL when not needed; Rl is computed   \
 * when need_l or ell != 0. The parameters' gradients need only totals over the samples, which go  \
 * into tot[0..2]: sum of sigma R1, sum of R2, sum of Rl (in sample order, float64).               \
 * Returns 0, or -1 if the row buffers could not be allocated. */                                  \
int ash_backward_##SUF(int64_t rows, int64_t n, const T *x, const T *g, T *gx, const double *mu,   \
                       const double *sigma, double z, float A, float ell, int need_l, double *tot) {\
    const float c = 1.0f - ell;                                                                    \
    const int leaky = ell != 0.0f || need_l;                                                       \
    double t_sr1 = 0.0, t_r2 = 0.0, t_rl = 0.0;                                                    \
    const int direct = sizeof(T) == sizeof(float); /* float32: no widening, pass 1 writes into gx */\
    float *buf = NULL;                                                                             \
    if (!direct) {                                                                                 \
        buf = row_buffer(2 * (size_t)n + WIDEN_CHUNK); /* part, widened x, a chunk of g */         \
        if (!buf) return -1;                                                                       \
    }                                                                                              \
    for (int64_t r = 0; r < rows; ++r) {                                                           \
        const T *xr = x + r * n, *gr = g + r * n;                                                  \
        T *gxr = gx ? gx + r * n : NULL;                                                           \
        float thi, tlo;                                                                            \
        split_threshold(mu[r] + z * sigma[r], &thi, &tlo);                                         \
        double sums[3] = {0.0, 0.0, 0.0};                                                          \
        const float *xf;                                                                           \
        float *part;                                                                               \
        if (direct) {                                                                              \
            xf = (const float *)(const void *)xr;                                                  \
            part = gx ? (float *)(void *)gxr : NULL;                                               \
            BWD_PASS1(n, xf, (const float *)(const void *)gr, part, sums);                         \
        } else {                                                                                   \
            /* widen a chunk at a time and run pass 1 on it while it is in L1, so that the         \
             * loads of the next chunk overlap with arithmetic; x stays widened for pass 2 */      \
            float *xw = buf + n, *gw = buf + 2 * n;                                                \
            part = gx ? buf : NULL;                                                                \
            for (int64_t c0 = 0; c0 < n; c0 += WIDEN_CHUNK) {                                      \
                const int64_t len = n - c0 < WIDEN_CHUNK ? n - c0 : WIDEN_CHUNK;                   \
                _Pragma("omp simd")                                                                \
                for (int64_t i = 0; i < len; ++i) {                                                \
                    xw[c0 + i] = load_##SUF(xr, c0 + i);                                           \
                    gw[i] = load_##SUF(gr, c0 + i);                                                \
                }                                                                                  \
                /* ask for the next chunk now: its loads then overlap with this chunk's work */    \
                for (int64_t i = c0 + WIDEN_CHUNK; i < c0 + 2 * WIDEN_CHUNK && i < n; i += 32) {   \
                    __builtin_prefetch(xr + i);                                                    \
                    __builtin_prefetch(gr + i);                                                    \
                }                                                                                  \
                double part_sums[3];                                                               \
                BWD_PASS1(len, xw + c0, gw, part ? part + c0 : NULL, part_sums);                   \
                sums[0] += part_sums[0];                                                           \
                sums[1] += part_sums[1];                                                           \
                sums[2] += part_sums[2];                                                           \
            }                                                                                      \
            xf = xw;                                                                               \
        }                                                                                          \
        t_sr1 += sigma[r] * sums[0];                                                               \
        t_r2 += sums[1];                                                                           \
        t_rl += sums[2];                                                                           \
        if (!gx) continue;                                                                         \
        /* pass 2: the path through mu and sigma, -(W/n)(1 + z^2 + z d/sigma), W = c A R1 */       \
        double wn = sums[0] * (double)(c * A) / (double)n;                                         \
        float k1 = (float)(-wn * z / sigma[r]);                                                    \
        float k0 = (float)(-wn * (1.0 + z * z));                                                   \
        _Pragma("omp simd")                                                                        \
        for (int64_t i = 0; i < n; ++i) {                                                          \
            float d = (xf[i] - thi) - tlo;                                                         \
            store_##SUF(gxr, i, fmaf(k1, d, part[i] + k0));                                        \
        }                                                                                          \
    }                                                                                              \
    tot[0] = t_sr1;                                                                                \
    tot[1] = t_r2;                                                                                 \
    tot[2] = t_rl;                                                                                 \
    return 0;                                                                                      \
}

DEFINE_KERNELS(f32, float)
DEFINE_KERNELS(bf16, uint16_t)

/* For the tests: the vectorised exp on an array. */
void ash_exp_f32(int64_t n, const float *x, float *y) {
    _Pragma("omp simd")
    for (int64_t i = 0; i < n; ++i) y[i] = exp_f32(x[i]);
}
