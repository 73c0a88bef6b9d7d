//! AVX-512 kernels (F + BW + VL, with FMA and F16C): 16 f32 lanes, masked tails.
//!
//! Every function is `unsafe` and compiled with the `Avx512` level's target features: the
//! caller (`kernels.rs`) guarantees the CPU has them and that every length was checked
//! (raw pointers cover `n` elements; slices have the documented shapes). Tails use masked
//! loads and stores, which never touch memory outside the mask, so a kernel reads and
//! writes exactly the elements it was given.
//!
//! Numerics are described in `x86_common.rs`; the scalar references in `scalar.rs` are
//! the specification.

// Index loops over small const-size register arrays are the clearest form here, and
// they are fully unrolled by the compiler.
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use crate::x86_common::{EXP_HI, EXP_LO, EXP_P, LN2_HI, LN2_LO, LOG2E};
use crate::{BinOp, UnOp};

pub(crate) use crate::x86_avx512_gemm::{dot, matmul_bt_rows};

const L: usize = 16;

/// Mask of the low `n` lanes (`n <= 16`).
#[inline(always)]
pub(crate) fn tail_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// Applies `$body` (an expression in `$x`, `$y`) to 16-lane chunks of `a` and `b`,
/// storing into `d`; `d` may equal `a` or `b` (each chunk is read before it is written).
macro_rules! map2 {
    ($d:expr, $a:expr, $b:expr, $n:expr, |$x:ident, $y:ident| $body:expr) => {{
        let (d, a, b, n): (*mut f32, *const f32, *const f32, usize) = ($d, $a, $b, $n);
        let mut i = 0;
        while i + L <= n {
            let $x = _mm512_loadu_ps(a.add(i));
            let $y = _mm512_loadu_ps(b.add(i));
            _mm512_storeu_ps(d.add(i), $body);
            i += L;
        }
        if i < n {
            let m = tail_mask(n - i);
            let $x = _mm512_maskz_loadu_ps(m, a.add(i));
            let $y = _mm512_maskz_loadu_ps(m, b.add(i));
            _mm512_mask_storeu_ps(d.add(i), m, $body);
        }
    }};
}

/// Like `map2!` for one input.
macro_rules! map1 {
    ($d:expr, $a:expr, $n:expr, |$x:ident| $body:expr) => {{
        let (d, a, n): (*mut f32, *const f32, usize) = ($d, $a, $n);
        let mut i = 0;
        while i + L <= n {
            let $x = _mm512_loadu_ps(a.add(i));
            _mm512_storeu_ps(d.add(i), $body);
            i += L;
        }
        if i < n {
            let m = tail_mask(n - i);
            let $x = _mm512_maskz_loadu_ps(m, a.add(i));
            _mm512_mask_storeu_ps(d.add(i), m, $body);
        }
    }};
}

/// `d[i] = a[i] op b[i]` for `i < n`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn binary(op: BinOp, d: *mut f32, a: *const f32, b: *const f32, n: usize) {
    match op {
        BinOp::Add => map2!(d, a, b, n, |x, y| _mm512_add_ps(x, y)),
        BinOp::Sub => map2!(d, a, b, n, |x, y| _mm512_sub_ps(x, y)),
        BinOp::Mul => map2!(d, a, b, n, |x, y| _mm512_mul_ps(x, y)),
        // maxps returns its second operand unless the first is greater: `scalar::max_f32`.
        BinOp::Max => map2!(d, a, b, n, |x, y| _mm512_max_ps(x, y)),
    }
}

/// `d[i] = fma(a[i], b[i], d[i])`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn fma(d: *mut f32, a: *const f32, b: *const f32, n: usize) {
    let mut i = 0;
    while i + L <= n {
        let v = _mm512_fmadd_ps(
            _mm512_loadu_ps(a.add(i)),
            _mm512_loadu_ps(b.add(i)),
            _mm512_loadu_ps(d.add(i)),
        );
        _mm512_storeu_ps(d.add(i), v);
        i += L;
    }
    if i < n {
        let m = tail_mask(n - i);
        let v = _mm512_fmadd_ps(
            _mm512_maskz_loadu_ps(m, a.add(i)),
            _mm512_maskz_loadu_ps(m, b.add(i)),
            _mm512_maskz_loadu_ps(m, d.add(i)),
        );
        _mm512_mask_storeu_ps(d.add(i), m, v);
    }
}

/// `d[i] = a[i] * s`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn scale(d: *mut f32, a: *const f32, s: f32, n: usize) {
    let sv = _mm512_set1_ps(s);
    map1!(d, a, n, |x| _mm512_mul_ps(x, sv));
}

/// `e^x` per lane (see `x86_common.rs` for the algorithm and its error bound).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn exp16(x: __m512) -> __m512 {
    let xc = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(EXP_LO)),
        _mm512_set1_ps(EXP_HI),
    );
    // Round to nearest, suppress exceptions.
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(xc, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_P[0]);
    for &c in &EXP_P[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    let y = _mm512_add_ps(y, _mm512_set1_ps(1.0));
    // y * 2^n with a single rounding (handles overflow to inf and subnormal results).
    let y = _mm512_scalef_ps(y, n);
    // The clamp turned NaN into a number; give NaN back.
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_mov_ps(y, nan, x)
}

/// `silu(x) = x / (1 + e^-x)`, computed as `(x >= 0 ? x : x e) / (1 + e)` with
/// `e = e^-|x|`, so `e` never overflows and large negative inputs keep their tiny value.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn silu16(x: __m512) -> __m512 {
    let sign = _mm512_set1_epi32(i32::MIN);
    let neg_abs = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(x), sign));
    let e = exp16(neg_abs);
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
    let num = _mm512_mask_mul_ps(x, negative, x, e);
    _mm512_div_ps(num, _mm512_add_ps(_mm512_set1_ps(1.0), e))
}

/// `1 / sqrt(x)`: correctly rounded sqrt, then a correctly rounded division.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn rsqrt16(x: __m512) -> __m512 {
    _mm512_div_ps(_mm512_set1_ps(1.0), _mm512_sqrt_ps(x))
}

/// `d[i] = op(a[i])`; `d` may equal `a`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn unary(op: UnOp, d: *mut f32, a: *const f32, n: usize) {
    match op {
        UnOp::Exp => map1!(d, a, n, |x| exp16(x)),
        UnOp::Silu => map1!(d, a, n, |x| silu16(x)),
        UnOp::Rsqrt => map1!(d, a, n, |x| rsqrt16(x)),
    }
}

/// Sum of the 16 lanes in the fixed tree of `x86_common.rs`:
/// `s8[i] = v[i] + v[i+8]`, `s4[i] = s8[i] + s8[i+4]`, `s2[i] = s4[i] + s4[i+2]`, `s2[0] + s2[1]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn hsum(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let s8 = _mm256_add_ps(lo, hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// `[hsum(v[0]), ..., hsum(v[7])]` with the very same additions as [`hsum`] (so the
/// same bits), done for eight vectors at once: 16 shuffles and 8 adds instead of 8 x 8
/// instructions. Each stage pairs the same lanes as `hsum`'s: halves (`v[i] + v[i+8]`),
/// quarters (`+4`), then `+2` and `+1` within each 128-bit chunk. (A variant trading
/// 7 of the shuffles for blends measured the same on Zen 4.)
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn hsum8(v: &[__m512; 8]) -> __m256 {
    // Stage 1, per pair (a, b): [a.s8 | b.s8] with s8[i] = x[i] + x[i + 8].
    let half = |a: __m512, b: __m512| {
        let lo = _mm512_shuffle_f32x4::<0x44>(a, b); // a.c0 a.c1 b.c0 b.c1
        let hi = _mm512_shuffle_f32x4::<0xee>(a, b); // a.c2 a.c3 b.c2 b.c3
        _mm512_add_ps(lo, hi)
    };
    let (w01, w23) = (half(v[0], v[1]), half(v[2], v[3]));
    let (w45, w67) = (half(v[4], v[5]), half(v[6], v[7]));
    // Stage 2, per pair of stage-1 vectors: one 128-bit chunk of s4 per input vector,
    // s4[i] = s8[i] + s8[i + 4].
    let quarter = |p: __m512, q: __m512| {
        let lo = _mm512_shuffle_f32x4::<0x88>(p, q); // s8[0..4] of the four vectors
        let hi = _mm512_shuffle_f32x4::<0xdd>(p, q); // s8[4..8]
        _mm512_add_ps(lo, hi)
    };
    let (x0123, x4567) = (quarter(w01, w23), quarter(w45, w67));
    // Stage 3: chunk c holds [s2 of v[c] | s2 of v[c + 4]], s2[i] = s4[i] + s4[i + 2].
    let (a, b) = (_mm512_castps_pd(x0123), _mm512_castps_pd(x4567));
    let y = _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
        _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
    );
    // Stage 4: s2[0] + s2[1] in lanes 4c (v[c]) and 4c + 2 (v[c + 4]).
    let z = _mm512_add_ps(y, _mm512_movehdup_ps(y));
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castps512_ps256(_mm512_permutexvar_ps(idx, z))
}

/// Max of the 16 lanes (same tree as `hsum`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn hmax(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let s8 = _mm256_max_ps(lo, hi);
    let s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_max_ss(s2, _mm_movehdup_ps(s2)))
}

/// Vector sum (`SQ = false`) or sum of squares (`SQ = true`) of `n` floats at `a`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn sum_vec<const SQ: bool>(a: *const f32, n: usize) -> __m512 {
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    while i + L <= n {
        let x = _mm512_loadu_ps(a.add(i));
        acc = if SQ {
            _mm512_fmadd_ps(x, x, acc)
        } else {
            _mm512_add_ps(acc, x)
        };
        i += L;
    }
    if i < n {
        let x = _mm512_maskz_loadu_ps(tail_mask(n - i), a.add(i));
        acc = if SQ {
            _mm512_fmadd_ps(x, x, acc)
        } else {
            _mm512_add_ps(acc, x)
        };
    }
    acc
}

/// Lane-wise max of `n` floats at `a` (lanes never loaded stay -inf).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
unsafe fn max_vec(a: *const f32, n: usize) -> __m512 {
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut acc = ninf;
    let mut i = 0;
    while i + L <= n {
        acc = _mm512_max_ps(_mm512_loadu_ps(a.add(i)), acc);
        i += L;
    }
    if i < n {
        acc = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tail_mask(n - i), a.add(i)), acc);
    }
    acc
}

/// `d[r] = sum of row r` of the `rows x cols` matrix `a` (lengths checked by the caller).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn row_sum(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (r, d) in d.iter_mut().enumerate().take(rows) {
        *d = hsum(sum_vec::<false>(a.as_ptr().add(r * cols), cols));
    }
}

/// `d[r] = sum of squares of row r`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn row_sumsq(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (r, d) in d.iter_mut().enumerate().take(rows) {
        *d = hsum(sum_vec::<true>(a.as_ptr().add(r * cols), cols));
    }
}

/// `d[r] = max of row r`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn row_max(d: &mut [f32], a: &[f32], rows: usize, cols: usize) {
    for (r, d) in d.iter_mut().enumerate().take(rows) {
        *d = hmax(max_vec(a.as_ptr().add(r * cols), cols));
    }
}

/// In place, per row: `x = exp(x - max) * (1 / sum)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
pub(crate) unsafe fn softmax_rows(x: &mut [f32], rows: usize, cols: usize) {
    for r in 0..rows {
        let p = x.as_mut_ptr().add(r * cols);
        let mv = _mm512_set1_ps(hmax(max_vec(p, cols)));
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i + L <= cols {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), mv));
            _mm512_storeu_ps(p.add(i), e);
            acc = _mm512_add_ps(acc, e);
            i += L;
        }
        if i < cols {
            let m = tail_mask(cols - i);
            let e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), mv));
            _mm512_mask_storeu_ps(p.add(i), m, e);
            acc = _mm512_mask_add_ps(acc, m, acc, e);
        }
        let inv = _mm512_set1_ps(1.0 / hsum(acc));
        map1!(p, p, cols, |v| _mm512_mul_ps(v, inv));
    }
}
